// Deterministic reductions shared by the training kernels. WGSL has no float atomics, and summing
// in whatever order workgroups happen to finish would make gradients differ from run to run, so a
// sum over many workgroups' work is always two passes: each workgroup writes its partial sums to a
// scratch buffer, and a second kernel adds the partials in a fixed order.
import { type GpuContext, type Kernel, Params } from './context.js';
import { GpuTensor, Storage, bind } from './tensor.js';
import { BUILTINS, WG_INDEX } from './wgsl.js';

const WG = 256;

/** A pooled buffer for one op's intermediate values; the caller hands it back with ctx.release. */
export function scratch(ctx: GpuContext, n: number, what: () => string): GpuTensor {
  return new GpuTensor([n], 'f32', new Storage(ctx.alloc(n * 4, what)));
}

// Y[w] = Σ_{s < S} SRC[base + s·W + w], s ascending: one invocation per output value.
const SUM_ROWS: Kernel = {
  key: 'grad_sum_rows',
  bindings: ['read', 'write'],
  code: () => /* wgsl */ `
struct P { W: u32, S: u32, base: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> SRC: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
@compute @workgroup_size(${WG})
fn main(${BUILTINS}) {
  ${WG_INDEX}
  let w = wg * ${WG}u + li;
  if (w >= p.W) { return; }
  var acc = 0.0;
  for (var s = 0u; s < p.S; s++) { acc += SRC[p.base + s * p.W + w]; }
  Y[w] = acc;
}`,
};

/** out[0 … W) = Σ over S rows of src (starting at element `base`), in row order. */
export function sumRows(ctx: GpuContext, out: GpuTensor, src: GpuTensor, S: number, W: number, base = 0): void {
  if (W === 0) return;
  ctx.dispatch(SUM_ROWS, new Params().u32(W, S, base), [bind(src), bind(out)], Math.ceil(W / WG));
}

// Σ x (or Σ x²) in two passes: each workgroup sums a contiguous block, strided over its
// invocations, and reduces it with a tree; one workgroup then does the same over the partials.
function sumKernel(square: boolean): Kernel {
  return {
    key: `grad_sum_${square ? 'sq' : 'id'}`,
    bindings: ['read', 'write'],
    code: () => /* wgsl */ `
struct P { n: u32, per: u32, groups: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
var<workgroup> part: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(${BUILTINS}) {
  ${WG_INDEX}
  if (wg >= p.groups) { return; }
  let lo = wg * p.per;
  let hi = min(p.n, lo + p.per);
  var acc = 0.0;
  for (var i = lo + li; i < hi; i += ${WG}u) {
    let v = X[i];
    acc += ${square ? 'v * v' : 'v'};
  }
  part[li] = acc;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s >>= 1u) {
    if (li < s) { part[li] += part[li + s]; }
    workgroupBarrier();
  }
  if (li == 0u) { Y[wg] = part[0]; }
}`,
  };
}

const SUM = { sq: sumKernel(true), id: sumKernel(false) };
/** Elements per workgroup of the first pass (at least); the partials stay few enough for one workgroup. */
const PER_GROUP = 4096;
const MAX_GROUPS = 1024;

/** out[0] = Σ x (square: Σ x²) over the first n values of x; deterministic. */
export function sum(ctx: GpuContext, out: GpuTensor, x: GpuTensor, n: number, square: boolean): void {
  if (n === 0) { ctx.clear(out.buf!, 0, 4); return; }
  const groups = Math.min(MAX_GROUPS, Math.ceil(n / PER_GROUP));
  const per = Math.ceil(n / groups);
  const k = square ? SUM.sq : SUM.id;
  if (groups === 1) {
    ctx.dispatch(k, new Params().u32(n, per, 1), [bind(x), bind(out)], 1);
    return;
  }
  const part = scratch(ctx, groups, () => `partial sums of ${n} values`);
  ctx.dispatch(k, new Params().u32(n, per, groups), [bind(x), bind(part)], groups);
  ctx.dispatch(SUM.id, new Params().u32(groups, groups, 1), [bind(part), bind(out)], 1);
  ctx.release(part.buf!); // later commands may reuse it; they run after these
}
