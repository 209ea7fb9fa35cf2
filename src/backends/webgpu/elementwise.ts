// Pointwise and per-row kernels: add, siluMul, rmsNorm, rope.
import { type GpuContext, type Kernel, Params } from './context.js';
import { type GpuTensor, bind } from './tensor.js';
import { BUILTINS, MATH, WG_INDEX } from './wgsl.js';

const WG = 256;

/** out[i] = EXPR(a[i], b[i]) over n elements, one invocation each. */
function binaryKernel(name: string, expr: string): Kernel {
  return {
    key: `binary_${name}`,
    bindings: ['read', 'read', 'write'],
    code: () => /* wgsl */ `
${MATH}
struct P { n: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(2) var<storage, read> B: array<f32>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;
@compute @workgroup_size(${WG})
fn main(${BUILTINS}) {
  ${WG_INDEX}
  let i = wg * ${WG}u + li;
  if (i >= p.n) { return; }
  let a = A[i];
  let b = B[i];
  Y[i] = ${expr};
}`,
  };
}

const ADD = binaryKernel('add', 'a + b');
const SILU_MUL = binaryKernel('silu_mul', 'silu(a) * b');

function binary(ctx: GpuContext, k: Kernel, out: GpuTensor, a: GpuTensor, b: GpuTensor): void {
  ctx.dispatch(k, new Params().u32(out.size), [bind(a), bind(b), bind(out)], Math.ceil(out.size / WG));
}

export const add = (ctx: GpuContext, out: GpuTensor, a: GpuTensor, b: GpuTensor) => binary(ctx, ADD, out, a, b);
export const siluMul = (ctx: GpuContext, out: GpuTensor, a: GpuTensor, b: GpuTensor) => binary(ctx, SILU_MUL, out, a, b);

const RMS_WG = 256;
/**
 * One workgroup per row: a strided sum of squares, a tree reduction, then the scaled row. (When
 * decoding, the norm runs inside the next product instead: rowScalePass.)
 */
const RMS_NORM: Kernel = {
  key: 'rms_norm',
  bindings: ['read', 'read', 'write'],
  code: () => /* wgsl */ `
struct P { rows: u32, D: u32, eps: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> G: array<f32>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;
var<workgroup> part: array<f32, ${RMS_WG}>;
@compute @workgroup_size(${RMS_WG})
fn main(${BUILTINS}) {
  ${WG_INDEX}
  if (wg >= p.rows) { return; }
  let o = wg * p.D;
  var ss = 0.0;
  for (var j = li; j < p.D; j += ${RMS_WG}u) {
    let v = X[o + j];
    ss += v * v;
  }
  part[li] = ss;
  workgroupBarrier();
  for (var s = ${RMS_WG / 2}u; s > 0u; s >>= 1u) {
    if (li < s) { part[li] += part[li + s]; }
    workgroupBarrier();
  }
  let r = 1.0 / sqrt(part[0] / f32(p.D) + p.eps);
  for (var j = li; j < p.D; j += ${RMS_WG}u) {
    Y[o + j] = X[o + j] * r * G[j];
  }
}`,
};

export function rmsNorm(ctx: GpuContext, out: GpuTensor, x: GpuTensor, g: GpuTensor, D: number, eps: number): void {
  const rows = D ? x.size / D : 0;
  ctx.dispatch(RMS_NORM, new Params().u32(rows, D).f32(eps), [bind(x), bind(g), bind(out)], rows);
}

// One invocation per rotated pair (row m, head h, index i < hs/2).
const ROPE: Kernel = {
  key: 'rope',
  bindings: ['read', 'read', 'read', 'write'],
  code: () => /* wgsl */ `
struct P { n: u32, H: u32, half: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> COS: array<f32>;
@group(0) @binding(3) var<storage, read> SIN: array<f32>;
@group(0) @binding(4) var<storage, read_write> Y: array<f32>;
@compute @workgroup_size(${WG})
fn main(${BUILTINS}) {
  ${WG_INDEX}
  let idx = wg * ${WG}u + li;
  if (idx >= p.n) { return; }
  let i = idx % p.half;
  let mh = idx / p.half;           // row · H + head
  let m = mh / p.H;
  let o = mh * 2u * p.half + i;    // x[m, h, i]
  let x1 = X[o];
  let x2 = X[o + p.half];
  let c = COS[m * p.half + i];
  let s = SIN[m * p.half + i];
  Y[o] = x1 * c - x2 * s;
  Y[o + p.half] = x2 * c + x1 * s;
}`,
};

export function rope(ctx: GpuContext, out: GpuTensor, x: GpuTensor, cos: GpuTensor, sin: GpuTensor, M: number, H: number, half: number): void {
  const n = M * H * half;
  if (n === 0) return;
  ctx.dispatch(ROPE, new Params().u32(n, H, half), [bind(x), bind(cos), bind(sin), bind(out)], Math.ceil(n / WG));
}
