// y = x · wᵀ with x [M, K] and w [N, K] (PyTorch's [out, in] layout, so both operands are
// K-contiguous). Two kernels:
// - tiled: a 64×64 output tile per workgroup, K streamed through workgroup memory in slabs of 16,
//   every invocation accumulating a 4×4 block in registers; for prefill and training sizes.
// - gemv: a few output columns (for all M rows) per workgroup, K split across the invocations and
//   a tree reduction; for decode (M of 1 to a few), where the tiled kernel would idle 63 of 64 rows.
// The weight's element type is a template parameter (an f16 variant for weights stored as f16);
// only f32 weights are dispatched from here.
//
// With f16 capabilities passed in (the backend's 'f16-matmul' precision), matmul takes the f16
// paths of matmul-f16.ts instead: operands rounded to f16, products exact, f32 accumulation. For
// decode sizes that is this file's gemv with both operands rounded (the weights are f32 in memory,
// so the f32 gemv reads them no slower than any f16 kernel could).
import { type GpuContext, type Kernel, Params, kernelCache } from './context.js';
import {
  type F16Caps, type F16Matrix, F16_GEMV_MAX_ROWS, type GemvEnds, ROUND_F16, endsBindings, matmulF16Gemv, matmulF16Tiled, matmulSubgroupMatrix,
} from './matmul-f16.js';
import { type GpuTensor, bind } from './tensor.js';
import { BUILTINS, WG_INDEX, rowScalePass, rowScaleVar } from './wgsl.js';

export type WeightType = 'f32' | 'f16';

const BM = 64, BN = 64, BK = 16, TM = 4, TN = 4;
const WX = BN / TN, WY = BM / TM; // 16 × 16 invocations
const THREADS = WX * WY;
/** Row stride of a workgroup-memory slab, padded so the transposing stores spread over banks. */
const SA = BM + 4, SB = BN + 4;

/** Up to this many rows of x, the gemv kernel wins. */
export const GEMV_MAX_ROWS = 4;

function header(w: WeightType): string {
  return w === 'f16' ? 'enable f16;\n' : '';
}

function tiledKernel(w: WeightType): Kernel {
  return {
    key: `matmul_tiled_${w}`,
    bindings: ['read', 'read', 'write'],
    code: () => /* wgsl */ `${header(w)}
struct P { M: u32, N: u32, K: u32, tilesN: u32, tiles: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> W: array<${w}>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;
// k-major slabs: tileA[k][m], tileB[k][n], so the inner loop reads rows of both
var<workgroup> tileA: array<f32, ${BK * SA}>;
var<workgroup> tileB: array<f32, ${BK * SB}>;

@compute @workgroup_size(${WX}, ${WY})
fn main(${BUILTINS}, @builtin(local_invocation_id) lid: vec3<u32>) {
  ${WG_INDEX}
  if (wg >= p.tiles) { return; }
  let m0 = (wg / p.tilesN) * ${BM}u;
  let n0 = (wg % p.tilesN) * ${BN}u;
  var acc: array<f32, ${TM * TN}>;
  for (var k0 = 0u; k0 < p.K; k0 += ${BK}u) {
    // each invocation loads ${(BM * BK) / THREADS} values of each slab; neighbours read along k
    for (var l = 0u; l < ${(BM * BK) / THREADS}u; l++) {
      let e = li + l * ${THREADS}u;
      let r = e / ${BK}u;
      let c = e % ${BK}u;
      let k = k0 + c;
      var a = 0.0;
      if (m0 + r < p.M && k < p.K) { a = X[(m0 + r) * p.K + k]; }
      tileA[c * ${SA}u + r] = a;
      var b = 0.0;
      if (n0 + r < p.N && k < p.K) { b = f32(W[(n0 + r) * p.K + k]); }
      tileB[c * ${SB}u + r] = b;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < ${BK}u; kk++) {
      var av: array<f32, ${TM}>;
      var bv: array<f32, ${TN}>;
      for (var i = 0u; i < ${TM}u; i++) { av[i] = tileA[kk * ${SA}u + lid.y + i * ${WY}u]; }
      for (var j = 0u; j < ${TN}u; j++) { bv[j] = tileB[kk * ${SB}u + lid.x + j * ${WX}u]; }
      for (var i = 0u; i < ${TM}u; i++) {
        for (var j = 0u; j < ${TN}u; j++) {
          acc[i * ${TN}u + j] = fma(av[i], bv[j], acc[i * ${TN}u + j]);
        }
      }
    }
    workgroupBarrier();
  }
  // rows lid.y + 16i and columns lid.x + 16j: neighbouring invocations write neighbouring columns
  for (var i = 0u; i < ${TM}u; i++) {
    let m = m0 + lid.y + i * ${WY}u;
    if (m >= p.M) { break; }
    for (var j = 0u; j < ${TN}u; j++) {
      let n = n0 + lid.x + j * ${WX}u;
      if (n < p.N) { Y[m * p.N + n] = acc[i * ${TN}u + j]; }
    }
  }
}`,
  };
}

const GV_WG = 128, GV_COLS = 4;
if (GV_COLS !== 4 || GEMV_MAX_ROWS > 4) throw new Error('the f16-rounded gemv packs columns and rows into vec4');

/**
 * One k of the gemv with both operands rounded to f16: the GV_COLS (= 4) weights and the ≤ 4 x
 * values are rounded as one vec4 each (the rounding is ALU work in a kernel bound by memory).
 */
const ROUNDED_STEP = (rows: number) => `var wr = vec4<f32>(0.0);
    for (var c = 0u; c < ${GV_COLS}u; c++) { if (n0 + c < p.N) { wr[c] = f32(W[(n0 + c) * p.K + k]); } }
    wr = round_f16v(wr);
    var xr = vec4<f32>(0.0);
    for (var m = 0u; m < ${rows}u; m++) { xr[m] = xat(m, k); }
    xr = round_f16v(xr);
    for (var m = 0u; m < ${rows}u; m++) {
      for (var c = 0u; c < ${GV_COLS}u; c++) { acc[m * ${GV_COLS}u + c] = fma(xr[m], wr[c], acc[m * ${GV_COLS}u + c]); }
    }`;

/**
 * The gemv kernel for exactly `rows` rows of x (compiled per row count: the reduction's cost grows
 * with it). `round`: both operands rounded to f16 first (the f16-matmul precision). `norm`: x is
 * rmsNorm(x) ⊙ G, scaled as the rmsNorm kernel scales it; `residual`: Y = R + the product.
 */
function gemvKernel(w: WeightType, rows: number, round = false, norm = false, residual = false): Kernel {
  const A = rows * GV_COLS; // accumulators per invocation: rows × columns
  const extra = [...(norm ? ['G'] : []), ...(residual ? ['R'] : [])];
  return {
    key: `matmul_gemv_${w}_${rows}${round ? '_r16' : ''}${norm ? '_norm' : ''}${residual ? '_res' : ''}`,
    bindings: ['read', 'read', ...extra.map(() => 'read' as const), 'write'],
    code: () => /* wgsl */ `${header(w)}${round ? ROUND_F16 : ''}
struct P { M: u32, N: u32, K: u32, groups: u32, eps: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> W: array<${w}>;
${extra.map((name, i) => `@group(0) @binding(${3 + i}) var<storage, read> ${name}: array<f32>;`).join('\n')}
@group(0) @binding(${3 + extra.length}) var<storage, read_write> Y: array<f32>;
var<workgroup> part: array<f32, ${GV_WG * A}>;
${norm ? rowScaleVar(rows) : ''}
/** x[m, k]${norm ? ', normalised' : ''} */
fn xat(m: u32, k: u32) -> f32 { return ${norm ? 'X[m * p.K + k] * rowScale[m] * G[k]' : 'X[m * p.K + k]'}; }

@compute @workgroup_size(${GV_WG})
fn main(${BUILTINS}) {
  ${WG_INDEX}
  if (wg >= p.groups) { return; }
  let n0 = wg * ${GV_COLS}u;
  ${norm ? rowScalePass(rows, GV_WG, false, (m) => `${m}u`) : ''}
  // acc[m · ${GV_COLS} + c]: every weight value is read once and used for all M rows of x
  var acc: array<f32, ${A}>;
  for (var k = li; k < p.K; k += ${GV_WG}u) {
    ${round ? ROUNDED_STEP(rows) : `for (var c = 0u; c < ${GV_COLS}u; c++) {
      if (n0 + c < p.N) {
        let wv = f32(W[(n0 + c) * p.K + k]);
        for (var m = 0u; m < ${rows}u; m++) { acc[m * ${GV_COLS}u + c] = fma(xat(m, k), wv, acc[m * ${GV_COLS}u + c]); }
      }
    }`}
  }
  for (var a = 0u; a < ${A}u; a++) { part[a * ${GV_WG}u + li] = acc[a]; }
  workgroupBarrier();
  for (var s = ${GV_WG / 2}u; s > 0u; s >>= 1u) {
    if (li < s) {
      for (var a = 0u; a < ${A}u; a++) { part[a * ${GV_WG}u + li] += part[a * ${GV_WG}u + li + s]; }
    }
    workgroupBarrier();
  }
  if (li < ${A}u) {
    let m = li / ${GV_COLS}u;
    let n = n0 + li % ${GV_COLS}u;
    if (n < p.N) { Y[m * p.N + n] = part[li * ${GV_WG}u]${residual ? ' + R[m * p.N + n]' : ''}; }
  }
}`,
  };
}

const KERNELS = { tiled: { f32: tiledKernel('f32'), f16: tiledKernel('f16') } };
const gemvCache = kernelCache();
/** The f32-weight gemv; `round`: both operands rounded to f16 (f32 weights, f16-matmul precision). */
const gemvFor = (rows: number, round: boolean, ends: GemvEnds): Kernel =>
  gemvCache(`${rows}${round ? 'r' : ''}${ends.norm ? 'n' : ''}${ends.residual ? 'a' : ''}`, () => gemvKernel('f32', rows, round, !!ends.norm, !!ends.residual));

/**
 * Whether matmul (f32 weights) or matmulPackedF16 (`packed`: the f16 capabilities it runs with)
 * takes a product's norm and residual into its kernel: the gemv paths of decoding, over K % 4 == 0
 * for packed weights, and not an empty product. Otherwise the caller computes them around it.
 */
export function productFusesEnds(M: number, N: number, K: number, packed: F16Caps | null): boolean {
  if (M === 0 || N === 0 || K === 0) return false;
  return packed ? M <= F16_GEMV_MAX_ROWS && K % 4 === 0 : M <= GEMV_MAX_ROWS;
}

function checkEnds(op: string, ends: GemvEnds, fuses: boolean): void {
  if ((ends.norm || ends.residual) && !fuses) throw new Error(`${op}: this product cannot take a norm or residual (see productFusesEnds)`);
}

function dispatchGemv(ctx: GpuContext, out: GpuTensor, x: GpuTensor, w: GpuTensor, M: number, N: number, K: number, round: boolean, ends: GemvEnds): void {
  const groups = Math.ceil(N / GV_COLS);
  ctx.dispatch(gemvFor(M, round, ends), new Params().u32(M, N, K, groups).f32(ends.norm?.eps ?? 0), [bind(x), bind(w), ...endsBindings(ends), bind(out)], groups);
}

/**
 * y = x · wᵀ. `f16`: the device's f16 capabilities when the f16-matmul precision is on (null: f32
 * kernels). f16 paths: gemv with rounded operands for M ≤ 4, else tensor cores where the device
 * has subgroup matrices, else the f16-staging tiled kernel.
 */
export function matmul(
  ctx: GpuContext, out: GpuTensor, x: GpuTensor, w: GpuTensor, M: number, N: number, K: number, f16: F16Caps | null = null, ends: GemvEnds = {},
): void {
  checkEnds('matmul', ends, productFusesEnds(M, N, K, null));
  if (M === 0 || N === 0) return;
  if (K === 0) { ctx.clear(out.buf!, 0, out.bytes); return; }
  if (f16) {
    if (M <= GEMV_MAX_ROWS) {
      dispatchGemv(ctx, out, x, w, M, N, K, true, ends);
    } else if (f16.subgroupMatrix) {
      matmulSubgroupMatrix(ctx, out, x, { f32: w }, M, N, K, f16.subgroupMatrix);
    } else if (f16.shaderF16) {
      matmulF16Tiled(ctx, out, x, { f32: w }, M, N, K);
    } else {
      throw new Error('matmul: the f16 kernels need the shader-f16 feature');
    }
    return;
  }
  const wt: WeightType = 'f32';
  if (M <= GEMV_MAX_ROWS) {
    dispatchGemv(ctx, out, x, w, M, N, K, false, ends);
  } else {
    const tilesN = Math.ceil(N / BN), tiles = tilesN * Math.ceil(M / BM);
    ctx.dispatch(KERNELS.tiled[wt], new Params().u32(M, N, K, tilesN, tiles), [bind(x), bind(w), bind(out)], tiles);
  }
}

/**
 * y = x · wᵀ with w an f16 matrix (packF16, kept for inference): the f16 gemv for a few rows
 * (decoding: every weight byte read once per 8 rows), else tensor cores or the f16 tiled kernel.
 */
export function matmulPackedF16(
  ctx: GpuContext, out: GpuTensor, x: GpuTensor, w: F16Matrix, M: number, N: number, K: number, f16: F16Caps, ends: GemvEnds = {},
): void {
  checkEnds('matmul', ends, productFusesEnds(M, N, K, f16));
  if (M === 0 || N === 0) return;
  if (K === 0) { ctx.clear(out.buf!, 0, out.bytes); return; }
  // up to F16_GEMV_MAX_ROWS rows, the gemvs (on tensor cores from TC_ROWS_MIN rows where the device
  // has them: the staged kernel's 64- and 128-row tiles would be mostly padding)
  if (M <= F16_GEMV_MAX_ROWS) matmulF16Gemv(ctx, out, x, w, M, N, K, ends, f16.subgroupMatrix);
  else if (f16.subgroupMatrix) matmulSubgroupMatrix(ctx, out, x, { f16: w }, M, N, K, f16.subgroupMatrix);
  else if (f16.shaderF16) matmulF16Tiled(ctx, out, x, { f16: w }, M, N, K);
  else throw new Error(`matmul: f16 weights need the shader-f16 feature for more than ${F16_GEMV_MAX_ROWS} rows`);
}
