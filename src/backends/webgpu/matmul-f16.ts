// f16 fast paths for y = x · wᵀ (x [M, K], w [N, K], y [M, N] f32), picked by feature detection.
//
// Every path computes the same function: both operands rounded to f16 (to nearest, ties to even,
// saturating at ±65504), products formed exactly (an f16 × f16 product fits an f32 significand)
// and summed in f32. WGSL leaves the rounding of f32 → f16 conversions to the implementation
// (either neighbour; lavapipe's pack2x16float truncates), so the kernels round in f32 arithmetic
// first (round_f16 below), after which every conversion is exact and every device agrees. Only
// the summation order differs between paths, so prefill (tiled), decode (gemv) and tensor-core
// results agree to f32 accuracy with each other, and to f16 operand rounding with the f32 kernels.
//
// Paths:
// - tiled (needs `shader-f16`): like the f32 tiled kernel, but tiles are staged in workgroup memory
//   as vec4<f16> (half the bytes: 128×128 output tiles fit where f32 fits 64×64), and every
//   invocation accumulates an 8×8 (or 4×4) block in f32.
// - gemv (decode: one row; batched decoding up to 32 rows in blocks of 16): reads weights stored
//   as f16 (see packF16) with 16-byte loads, every weight once per block of rows. The one-row
//   kernel sums its columns in groups of invocations, by subgroupAdd where the device's subgroups
//   are the group's width (gemvLayout picks the shape per product). f32 weights in
//   f16 mode go through the f32 gemv with operand rounding instead (matmul.ts): there is no
//   bandwidth to win when the weights are f32 in memory. Where the device has subgroup matrices,
//   9 to 32 rows go to tensor cores in one dispatch, x staged as left matrices and w loaded as
//   right matrices straight from global memory (tcRowsGemvKernel).
// - subgroup matrix (`chromium-experimental-subgroup-matrix`, tensor cores): x and w are first
//   packed into zero-padded f16 copies (rows to a multiple of 64, K to a multiple of 16). The
//   staged kernel (the default) gives a workgroup of 2×2 subgroups a 128×128 output tile (64×128
//   for outputs too small to fill the GPU with those): each
//   32-wide slab of K is loaded once per workgroup with 16-byte loads, staged in workgroup memory
//   and multiplied there by every subgroup, 4×4 result matrices each, while the next slab's loads
//   are in flight. The direct kernel (one subgroup per workgroup, 64×64, matrices loaded straight
//   from global memory, where Dawn clamps an out-of-bounds load to offset 0, hence the padding) is
//   kept for comparison. Edge tiles go through a small workgroup buffer so that only in-range
//   outputs are written.
//
// pack2x16float/unpack2x16float need no `shader-f16`, so packing and the packed gemv run on any
// WebGPU device; the f16 types (tiled, subgroup matrix) are only compiled where the feature exists.
//
// Measured on an H100 (Dawn through Vulkan, bench/matmul.ts): 4096³ f32 tiled 64×64 23.6 TFLOP/s,
// f16 tiled 128×128 29.4 (30.6 with f16 weights), subgroup matrix direct 56, staged 176-187 with
// f16 weights (bench/matmul.js --sweep compares tilings; staging by whole subgroup matrices
// instead of 16-byte loads ran at a third of that, double-buffered slabs at a quarter to a half);
// decode 1×4096×4096 f32 gemv 1.55 TB/s (43 µs), f16-weight
// gemv 22 µs (1.50 TB/s), 1×14336×4096 f16-weight gemv 1.98 TB/s vs 1.29 for f32 weights.
import { type Binding, GpuContext, type Kernel, Params, kernelCache } from './context.js';
import type { PooledBuffer } from './pool.js';
import { GpuTensor, Storage, bind } from './tensor.js';
import { BUILTINS, MATH, WG_INDEX, lines, rowScalePass, rowScaleVar, workgroupReduce, workgroupReduceRows } from './wgsl.js';
import { F16_MAX } from '../../io/half.js';

/**
 * WGSL: x rounded to the nearest f16 value (ties to even; saturating at ±65504), as an f32, for
 * scalars (round_f16) and vec4 (round_f16v). Normal range: add half an f16 ulp (less one, plus the
 * kept bit for ties to even) to the f32 bits and clear the 13 bits f16 lacks. Below 2⁻¹⁴ f16 is
 * subnormal with a fixed spacing of 2⁻²⁴: round(x · 2²⁴) / 2²⁴, exact in f32. Needs no `shader-f16`.
 */
export const ROUND_F16 = /* wgsl */ `
fn round_f16v(x: vec4<f32>) -> vec4<f32> {
  let u = bitcast<vec4<u32>>(x);
  let normal = bitcast<vec4<f32>>((u + vec4<u32>(0xfffu) + ((u >> vec4<u32>(13u)) & vec4<u32>(1u))) & vec4<u32>(0xffffe000u));
  let sub = round(clamp(x, vec4<f32>(-1.0), vec4<f32>(1.0)) * 16777216.0) * 5.9604644775390625e-8; // · 2⁻²⁴, exact
  return clamp(select(normal, sub, abs(x) < vec4<f32>(6.103515625e-5)), vec4<f32>(-${F16_MAX}.0), vec4<f32>(${F16_MAX}.0));
}
fn round_f16(x: f32) -> f32 { return round_f16v(vec4<f32>(x)).x; }`;

/** A tensor-core shape the adapter reports for f16 operands and f32 results. */
export interface SubgroupMatrixShape { M: number; N: number; K: number }

/** What the device offers the f16 paths; null fields mean that path is unavailable. */
export interface F16Caps {
  /** `shader-f16`: the tiled kernel. */
  readonly shaderF16: boolean;
  /** The subgroup-matrix shape in use, with the subgroup size its workgroups are sized to. */
  readonly subgroupMatrix: (SubgroupMatrixShape & { subgroupSize: number }) | null;
}

/** Row padding of packed f16 matrices: a subgroup's output block is this tall and wide. */
export const PACK_ROWS = 64;
/** K padding of packed f16 matrices: a multiple of every f16 subgroup-matrix K and of 8 (16-byte loads). */
export const PACK_K = 16;

const roundUp = (n: number, m: number) => Math.ceil(n / m) * m;

/** The subgroup width where the device has subgroups of one width only (adapter info: min = max), else 0. */
export function uniformSubgroupSize(device: GPUDevice, adapterInfo?: GPUAdapterInfo): number {
  if (!device.features.has('subgroups' as GPUFeatureName)) return 0;
  type Info = { subgroupMinSize?: number; subgroupMaxSize?: number };
  const info = (adapterInfo ?? (device as { adapterInfo?: unknown }).adapterInfo) as Info | undefined;
  const min = info?.subgroupMinSize ?? 0, max = info?.subgroupMaxSize ?? 0;
  return min > 0 && min === max ? max : 0;
}

/**
 * The f16 capabilities of a device. The subgroup-matrix path is taken only with a shape whose
 * blocks tile 64×64 (16×16×16 preferred, then 16×8×16 or 8×… shapes), and only where every
 * subgroup has the same size (min = max): workgroups are sized in whole subgroups.
 */
export function detectF16(device: GPUDevice, adapterInfo?: GPUAdapterInfo): F16Caps {
  const shaderF16 = device.features.has('shader-f16');
  let subgroupMatrix: F16Caps['subgroupMatrix'] = null;
  if (shaderF16 && device.features.has('chromium-experimental-subgroup-matrix' as GPUFeatureName) && device.features.has('subgroups' as GPUFeatureName)) {
    type Info = {
      subgroupMinSize?: number; subgroupMaxSize?: number;
      subgroupMatrixConfigs?: readonly { componentType: string; resultComponentType: string; M: number; N: number; K: number }[];
    };
    // Dawn for Node leaves device.adapterInfo.subgroupMatrixConfigs empty: the adapter's info has them
    const own = (device as { adapterInfo?: unknown }).adapterInfo as Info | undefined, given = adapterInfo as Info | undefined;
    const info = given?.subgroupMatrixConfigs?.length ? given : own;
    const min = info?.subgroupMinSize ?? 0, max = info?.subgroupMaxSize ?? 0;
    const configs = [...(info?.subgroupMatrixConfigs ?? [])].filter((c) =>
      c.componentType === 'f16' && c.resultComponentType === 'f32' &&
      PACK_ROWS % c.M === 0 && PACK_ROWS % c.N === 0 && PACK_K % c.K === 0 && (PACK_ROWS / c.M) * (PACK_ROWS / c.N) <= 32);
    // fewest matrices per 64×64 block first (16×16×16 before 16×8×16), then the larger K
    configs.sort((a, b) => (b.M * b.N - a.M * a.N) || (b.K - a.K));
    if (configs.length && min > 0 && min === max) {
      const c = configs[0];
      subgroupMatrix = { M: c.M, N: c.N, K: c.K, subgroupSize: max };
    }
  }
  return { shaderF16, subgroupMatrix };
}

// ---- packing: f32 [rows, cols] → zero-padded f16 [rowsP, colsP] ----

/** A matrix [rows, cols] stored as f16, zero-padded to [rowsP, colsP] (see PACK_ROWS, PACK_K). */
export interface F16Matrix {
  readonly buf: PooledBuffer;
  /** Where the matrix starts in buf, in bytes (a range of a buffer of weights: gatherWeights); 0 if absent. */
  readonly offset?: number;
  readonly rows: number;
  readonly cols: number;
  readonly rowsP: number;
  readonly colsP: number;
}

const PACK_WG = 256;
const PACK: Kernel = {
  key: 'f16_pack',
  bindings: ['read', 'write'],
  code: () => /* wgsl */ `
struct P { rows: u32, cols: u32, pairsPerRow: u32, n: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<u32>;
${ROUND_F16}
@compute @workgroup_size(${PACK_WG})
fn main(${BUILTINS}) {
  ${WG_INDEX}
  let i = wg * ${PACK_WG}u + li;
  if (i >= p.n) { return; }
  let r = i / p.pairsPerRow;
  let c = (i % p.pairsPerRow) * 2u;
  var v = vec2<f32>(0.0);
  if (r < p.rows) {
    if (c < p.cols) { v.x = X[r * p.cols + c]; }
    if (c + 1u < p.cols) { v.y = X[r * p.cols + c + 1u]; }
  }
  Y[i] = pack2x16float(round_f16v(vec4<f32>(v, 0.0, 0.0)).xy); // exact: the values are f16 already
}`,
};

/**
 * The packing of xᵀ: 32 × 32 tiles of x [rows, cols] pass through workgroup memory, so that both
 * the reads (along x's rows) and the writes (along xᵀ's rows, two halves per u32) are coalesced.
 */
const PACK_T: Kernel = {
  key: 'f16_pack_transposed',
  bindings: ['read', 'write'],
  code: () => /* wgsl */ `
struct P { rows: u32, cols: u32, rowsP: u32, colsP: u32, tilesC: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<u32>;
${ROUND_F16}
var<workgroup> tile: array<f32, ${32 * 33}>; // [x's row in the tile][x's column], rows padded to 33 against bank conflicts
@compute @workgroup_size(256)
fn main(${BUILTINS}) {
  ${WG_INDEX}
  let r0 = (wg / p.tilesC) * 32u;  // the tile's first row of xᵀ (a column of x)
  let c0 = (wg % p.tilesC) * 32u;  // its first column of xᵀ (a row of x)
  let tx = li % 32u;
  for (var j = li / 32u; j < 32u; j += 8u) {
    let xr = c0 + j;
    let xc = r0 + tx;
    var v = 0.0;
    if (xr < p.rows && xc < p.cols) { v = X[xr * p.cols + xc]; }
    tile[j * 33u + tx] = round_f16(v);
  }
  workgroupBarrier();
  let pair = li % 16u;
  for (var j = li / 16u; j < 32u; j += 16u) {
    let r = r0 + j;
    let c = c0 + 2u * pair;
    if (r < p.rowsP && c < p.colsP) {
      Y[(r * p.colsP + c) / 2u] = pack2x16float(vec2<f32>(tile[2u * pair * 33u + j], tile[(2u * pair + 1u) * 33u + j])); // exact: f16 values
    }
  }
}`,
};

/**
 * Records the conversion of `x` (f32, read as [rows, cols]) into a new zero-padded f16 matrix, or
 * with `transposed` of xᵀ ([cols, rows]: the backward's products reduce over x's rows); the caller
 * releases `buf` (ctx.release) when done with it.
 */
export function packF16(ctx: GpuContext, x: GpuTensor, rows: number, cols: number, rowPad = PACK_ROWS, transposed = false): F16Matrix {
  const [r, c] = transposed ? [cols, rows] : [rows, cols];
  const rowsP = Math.max(rowPad, roundUp(r, rowPad)), colsP = Math.max(PACK_K, roundUp(c, PACK_K));
  const n = (rowsP * colsP) / 2;
  const buf = ctx.alloc(n * 4, () => `f16 copy of a [${r}, ${c}] matrix`);
  if (transposed) {
    const tilesC = Math.ceil(colsP / 32), tiles = tilesC * Math.ceil(rowsP / 32);
    ctx.dispatch(PACK_T, new Params().u32(rows, cols, rowsP, colsP, tilesC), [bind(x), { buf, size: n * 4 }], tiles);
  } else {
    ctx.dispatch(PACK, new Params().u32(rows, cols, colsP / 2, n), [bind(x), { buf, size: n * 4 }], Math.ceil(n / PACK_WG));
  }
  return { buf, rows: r, cols: c, rowsP, colsP };
}

export const bindF16 = (m: F16Matrix) => ({ buf: m.buf, offset: m.offset ?? 0, size: m.rowsP * m.colsP * 2 });

// ---- tiled kernel (shader-f16) ----

export interface TileConfig { BM: number; BN: number; TM: number; TN: number }
/** 128×128 tiles with an 8×8 block per invocation for large outputs, 64×64 with 4×4 otherwise. */
export const TILE_LARGE: TileConfig = { BM: 128, BN: 128, TM: 8, TN: 8 };
export const TILE_SMALL: TileConfig = { BM: 64, BN: 64, TM: 4, TN: 4 };
const TBK = 16; // K per slab
const TROW = TBK / 4 + 1; // vec4<f16> per slab row, padded by one so the 16 rows read at once hit distinct banks

/**
 * x is f32 (`vec`: K % 4 == 0, read as vec4); w is f32 (same) or a packed f16 matrix ('f16').
 * Slabs are stored row-major (tileA[m][k..k+3] as vec4<f16>); invocation (tx, ty) owns rows
 * ty + 16i and columns tx + 16j, reading four k at a time from each of its rows.
 */
function tiledKernel(cfg: TileConfig, vec: boolean, w: 'f32' | 'f16'): Kernel {
  const { BM, BN, TM, TN } = cfg;
  const WX = BN / TN, WY = BM / TM, THREADS = WX * WY;
  const xDecl = vec ? 'array<vec4<f32>>' : 'array<f32>';
  const wDecl = w === 'f16' ? 'array<vec4<f16>>' : xDecl;
  // loads of one vec4 (four consecutive k) of row `row` (< rows) of an f32 matrix with K columns
  const load32 = (A: string, row: string, rows: string) => vec
    ? `if (${row} < ${rows} && k < p.K) { v = ${A}[(${row} * p.K + k) / 4u]; }`
    : `if (${row} < ${rows}) { for (var q = 0u; q < 4u; q++) { if (k + q < p.K) { v[q] = ${A}[${row} * p.K + k + q]; } } }`;
  // one step of four k: TM + TN vec4 reads of workgroup memory, TM·TN·4 fma (a loop over the
  // four steps of a slab rather than unrolled: lavapipe's compile time grows steeply with length)
  const lines: string[] = [];
  for (let i = 0; i < TM; i++) lines.push(`let a${i} = vec4<f32>(tileA[(lid.y + ${i * WY}u) * ${TROW}u + kq]);`);
  for (let j = 0; j < TN; j++) lines.push(`let b${j} = vec4<f32>(tileB[(lid.x + ${j * WX}u) * ${TROW}u + kq]);`);
  for (let i = 0; i < TM; i++) {
    for (let j = 0; j < TN; j++) {
      const c = `c${i}_${j}`;
      lines.push(`${c} = fma(a${i}.w, b${j}.w, fma(a${i}.z, b${j}.z, fma(a${i}.y, b${j}.y, fma(a${i}.x, b${j}.x, ${c}))));`);
    }
  }
  const accDecl: string[] = [], stores: string[] = [];
  for (let i = 0; i < TM; i++) {
    stores.push(`{ let m = m0 + lid.y + ${i * WY}u; if (m < p.M) {`);
    for (let j = 0; j < TN; j++) {
      accDecl.push(`var c${i}_${j} = 0.0;`);
      stores.push(`  { let n = n0 + lid.x + ${j * WX}u; if (n < p.N) { Y[m * p.N + n] = c${i}_${j}; } }`);
    }
    stores.push('} }');
  }
  const perThread = (rows: number) => (rows * TBK) / 4 / THREADS; // vec4 slots of a slab per invocation
  return {
    key: `matmul_f16_tiled_${BM}x${BN}_${vec ? 'v' : 's'}_${w}`,
    bindings: ['read', 'read', 'write'],
    code: () => /* wgsl */ `enable f16;
struct P { M: u32, N: u32, K: u32, tilesN: u32, tiles: u32, ldw: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> X: ${xDecl};
@group(0) @binding(2) var<storage, read> W: ${wDecl};
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;
var<workgroup> tileA: array<vec4<f16>, ${BM * TROW}>;
var<workgroup> tileB: array<vec4<f16>, ${BN * TROW}>;
${ROUND_F16}
fn h4(v: vec4<f32>) -> vec4<f16> { return vec4<f16>(round_f16v(v)); } // exact: the values are f16 already

@compute @workgroup_size(${WX}, ${WY})
fn main(${BUILTINS}, @builtin(local_invocation_id) lid: vec3<u32>) {
  ${WG_INDEX}
  if (wg >= p.tiles) { return; }
  let m0 = (wg / p.tilesN) * ${BM}u;
  let n0 = (wg % p.tilesN) * ${BN}u;
  ${accDecl.join(' ')}
  for (var k0 = 0u; k0 < p.K; k0 += ${TBK}u) {
    // slab slot e: row e / ${TBK / 4}, k0 + 4·(e % ${TBK / 4}); neighbouring invocations read along k
    for (var l = 0u; l < ${perThread(BM)}u; l++) {
      let e = li + l * ${THREADS}u;
      let r = e / ${TBK / 4}u;
      let k = k0 + (e % ${TBK / 4}u) * 4u;
      var v = vec4<f32>(0.0);
      let row = m0 + r;
      ${load32('X', 'row', 'p.M')}
      tileA[r * ${TROW}u + e % ${TBK / 4}u] = h4(v);
    }
    for (var l = 0u; l < ${perThread(BN)}u; l++) {
      let e = li + l * ${THREADS}u;
      let r = e / ${TBK / 4}u;
      let k = k0 + (e % ${TBK / 4}u) * 4u;
      let row = n0 + r;
      ${w === 'f16'
        // packed: K is zero-padded to a multiple of 16, so only the row needs a check
        ? `var h = vec4<f16>(0.0h);
      if (row < p.N) { h = W[(row * p.ldw + k) / 4u]; }
      tileB[r * ${TROW}u + e % ${TBK / 4}u] = h;`
        : `var v = vec4<f32>(0.0);
      ${load32('W', 'row', 'p.N')}
      tileB[r * ${TROW}u + e % ${TBK / 4}u] = h4(v);`}
    }
    workgroupBarrier();
    for (var kq = 0u; kq < ${TBK / 4}u; kq++) {
      ${lines.join('\n      ')}
    }
    workgroupBarrier();
  }
  ${stores.join('\n  ')}
}`,
  };
}

const tiledCache = kernelCache();
function tiled(cfg: TileConfig, vec: boolean, w: 'f32' | 'f16'): Kernel {
  const key = `${cfg.BM}|${vec}|${w}`;
  const k = tiledCache(key, () => tiledKernel(cfg, vec, w));
  return k;
}

/** Output tiles below which the 64×64 tile is used (a 128×128 tile would leave most of the GPU idle). */
const LARGE_TILE_MIN_TILES = 64;

/** Which tile the tiled kernel uses for an [M, N] output. */
export function tileFor(M: number, N: number): TileConfig {
  return Math.ceil(M / 128) * Math.ceil(N / 128) >= LARGE_TILE_MIN_TILES ? TILE_LARGE : TILE_SMALL;
}

/** The weight operand of an f16 matmul: an f32 tensor [N, K] or a packed f16 matrix. */
export type F16Weight = { f32: GpuTensor } | { f16: F16Matrix };

/** y = x · wᵀ with the tiled f16-staging kernel (needs `shader-f16`). */
export function matmulF16Tiled(
  ctx: GpuContext, out: GpuTensor, x: GpuTensor, w: F16Weight, M: number, N: number, K: number, cfg = tileFor(M, N),
): void {
  const vec = K % 4 === 0;
  const tilesN = Math.ceil(N / cfg.BN), tiles = tilesN * Math.ceil(M / cfg.BM);
  if ('f16' in w) {
    checkPacked(w.f16, N, K);
    ctx.dispatch(tiled(cfg, vec, 'f16'), new Params().u32(M, N, K, tilesN, tiles, w.f16.colsP), [bind(x), bindF16(w.f16), bind(out)], tiles);
  } else {
    ctx.dispatch(tiled(cfg, vec, 'f32'), new Params().u32(M, N, K, tilesN, tiles, K), [bind(x), bind(w.f32), bind(out)], tiles);
  }
}

function checkPacked(w: F16Matrix, N: number, K: number): void {
  if (w.rows !== N || w.cols !== K) throw new Error(`matmul: packed f16 weight is [${w.rows}, ${w.cols}], expected [${N}, ${K}]`);
}

/** WGSL names of a subgroup-matrix shape's left (f16, M × K), right (f16, K × N) and result (f32, M × N) matrix types. */
export const matrixTypes = (s: SubgroupMatrixShape) => ({
  L: `subgroup_matrix_left<f16, ${s.K}, ${s.M}>`,
  R: `subgroup_matrix_right<f16, ${s.N}, ${s.K}>`,
  C: `subgroup_matrix_result<f32, ${s.N}, ${s.M}>`,
});
/**
 * The start of a kernel whose matrix offsets derive from its subgroup's index: the matrix builtins
 * want offsets the uniformity analysis can prove subgroup-uniform, and it only knows workgroup
 * uniformity (the offsets are uniform within a subgroup, not across the workgroup).
 */
export const SGM_PREAMBLE = 'enable f16;\nenable chromium_experimental_subgroup_matrix;\ndiagnostic(off, chromium.subgroup_matrix_uniformity);';

// ---- gemv over packed f16 weights (decode) ----

/** The device's subgroup-matrix shape (F16Caps.subgroupMatrix) where the batched gemvs may use tensor cores; null: they do not. */
export type TensorCores = F16Caps['subgroupMatrix'];

/** Packed rows of a gemv weight are a multiple of this (the one-row kernel reads no row past N, so its columns per workgroup need not divide it). */
const GV_COLS = 8;

/**
 * The one-row gemv's shape. A workgroup of `wg` invocations is wg / group groups; a group of `group`
 * invocations (a power of two) sums `cols` columns over k, each invocation issuing loads for
 * `unroll` steps of k at once. Decoding one sequence is bound by how many weight bytes are in
 * flight and by each dispatch's start and drain, so the shape follows the product (gemvLayout).
 */
export interface GemvLayout { wg: number; unroll: number; group: number; cols: number }

/** The one-row gemv's shape where no subgroups 32 wide sum the groups: one group of 256, 8 columns. */
const GEMV_TREE: GemvLayout = { wg: 256, unroll: 2, group: 256, cols: 8 };
/**
 * Products of fewer columns than this, over reductions of at least GEMV_NARROW_MIN_K, take one
 * column a workgroup (GEMV_NARROW).
 */
const GEMV_NARROW_BELOW = 1024, GEMV_NARROW_MIN_K = 2048;
/**
 * A narrow product with a long reduction (a Mamba mixer's x_proj: 160 × 4096 for samba-1.7b) as 8
 * columns a workgroup is 20 workgroups on a GPU of 132 multiprocessors; one column each fills more
 * of it. A short reduction would leave most of a workgroup of 256 idle (the small models of tests,
 * where lavapipe ran 3× slower).
 */
const GEMV_NARROW: GemvLayout = { wg: 256, unroll: 2, group: 256, cols: 1 };
/**
 * Wide products with short reductions (N ≥ 4096, K ≤ 4096: an MLP's gate and up, a Mamba mixer's
 * input, MHA's qkv, the head), where subgroups are 32 wide: groups of two subgroups summing 2
 * columns each, 8 columns a workgroup. Groups of one subgroup (16 columns a workgroup) were chosen
 * first, from each product alone; in whole tokens (bench/decode-gpu.ts --gemv-shapes) two
 * subgroups took samba-1.7b from 1.953–1.954 to 1.911–1.917 ms, samba-1.3b from 1.774–1.779 to
 * 1.739–1.743 and samba-421m from 0.768–0.769 to 0.730. One column a group, or 4, was slower.
 */
const GEMV_WIDE: GemvLayout = { wg: 256, unroll: 2, group: 64, cols: 2 };
/**
 * Products of 1024 to 4096 columns over reductions of at least GEMV_WAVE_MIN_K (the residual
 * products of decoding: an MLP's down, a Mamba mixer's out, attention's out; GQA's qkv) take as few
 * columns a workgroup as keep the workgroups within GEMV_WAVE: one wave of 8 workgroups of 256 on
 * each of an H100's 132 multiprocessors. More workgroups start sooner and end more evenly; more
 * than a wave leave a tail. Measured in whole tokens (bench/decode-gpu.ts --gemv-shapes), ms a
 * token against 8 columns: samba-1.7b (N = 2048, 2560: 2 columns) 2.085–2.093 → 1.958–1.964 ms,
 * samba-1.3b (N = 2304: 4) 1.843–1.845 → 1.773–1.774, samba-421m (N = 1536: 2) 0.827–0.828 →
 * 0.771–0.773. One column fewer or more was slower in each.
 */
const GEMV_WAVE = 1024, GEMV_WAVE_MIN_K = 1024;

/**
 * The one-row gemv's shape for N columns and a reduction of K:
 * - wide products with short reductions, where subgroups are 32 wide: GEMV_WIDE;
 * - narrow products with long reductions (N < 1024, K ≥ 2048), on any device: one column a
 *   workgroup (GEMV_NARROW; 160 × 4096 8.7 → 5.6 µs);
 * - products of 1024 to 4096 columns: as few columns a workgroup as fill a wave (GEMV_WAVE);
 * - the rest: GEMV_TREE.
 * Chosen on the H100 at samba-1.7b's, samba-1.3b's and samba-421m's shapes, first from each product
 * alone (bench/matmul.ts --gemv-sweep … --cold --gpu-time: groups of one subgroup for the wide
 * products, 8192 × 2048 19.7 → 16.1 µs, 50304 × 2048 78.3 → 71.6), then in whole tokens
 * (bench/decode-gpu.ts --gemv-shapes), which moved the wide and the residual products.
 */
export function gemvLayout(N: number, K: number, subgroupSize: number): GemvLayout {
  if (gemvShape.oneRow) return gemvShape.oneRow;
  const chosen = gemvShape.byProduct.size ? gemvShape.byProduct.get(`${N}x${K}`) : undefined;
  if (chosen) return chosen;
  if (!gemvShape.subgroupReduce) return GEMV_TREE;
  if (N < GEMV_NARROW_BELOW && K >= GEMV_NARROW_MIN_K) return GEMV_NARROW;
  if (subgroupSize === 32 && N >= 4096 && K <= 4096) return GEMV_WIDE;
  if (N >= GEMV_NARROW_BELOW && N < 4096 && K >= GEMV_WAVE_MIN_K) {
    let cols = 1;
    while (cols < GEMV_TREE.cols && Math.ceil(N / cols) > GEMV_WAVE) cols *= 2;
    return { ...GEMV_TREE, cols };
  }
  return GEMV_TREE;
}

export const gemvShape = {
  /** The one-row gemv's shape where set (the bench's sweep, tests); null: gemvLayout's choice. */
  oneRow: null as GemvLayout | null,
  /** The one-row gemv's shape for the product `${N}x${K}` where set (the decode bench's tuning of a whole token). */
  byProduct: new Map<string, GemvLayout>(),
  /** Groups one subgroup wide are summed with subgroupAdd; false: by trees in workgroup memory, and gemvLayout keeps to GEMV_TREE for every product (bench --gemv-subgroups off). */
  subgroupReduce: true,
  /**
   * Groups of several subgroups (the trees' 256) also sum by subgroupAdd, then the subgroups' sums
   * in one step, instead of a tree of log2(group) barriered levels.
   */
  wideGroupSubgroups: true,
  /** The rows gemv (rowsGemvKernel): columns per workgroup (0: by N), rows per dispatch (8 or 16), halves of k per step (8 or 16). */
  rowsCols: 0, rowsBlock: 16, rowsStep: 16,
};

/**
 * y[0, n] for one row of x (decoding one sequence; more rows go to rowsGemvKernel). A workgroup is
 * NG = WG / TPC groups of TPC invocations, and group g sums CPT consecutive columns n: each step an
 * invocation reads 8 consecutive k of every one of its columns as one vec4<u32> (eight f16) and the
 * matching eight x values; the group's partial sums are then reduced: where `sg` (the device's
 * subgroup width, 0 for none) divides the group, by subgroupAdd, then, for groups of several
 * subgroups, the subgroups' sums through workgroup memory in one step; else by a tree in workgroup
 * memory. Padded K of the packed weight is
 * zeros, so the loop has no bounds checks on k; columns past N read row N − 1 and are not written.
 */
function gemvKernel(vec: boolean, o: GemvFusion, shape: GemvLayout, sg: number): Kernel {
  // swiglu: a second weight W2 over the same x, and y = silu(x·Wᵀ) ⊙ (x·W2ᵀ): an MLP's gate, up and
  // product in one dispatch. Each product is summed exactly as the plain kernel sums it.
  // norm: x is rmsNorm(x) ⊙ G, scaled as the rmsNorm kernel scales it before the f16 rounding;
  // residual: Y = R + the product (the add kernel's sum). Both need vec (K % 4 == 0).
  // conv: the first p.C columns are a Mamba mixer's x, each turned by
  // its channel's causal conv1d and SiLU as conv1d_silu_step turns it, the channel's next conv
  // state written to NEXT; the rest (z) stay as they are.
  const { swiglu = false, norm = false, residual = false, conv = false } = o;
  if ((norm || residual) && !vec) throw new Error('gemvKernel: the fused norm and residual need K % 4 == 0');
  if (swiglu && residual) throw new Error('gemvKernel: swiglu has no residual');
  if (conv && (swiglu || residual)) throw new Error('gemvKernel: the fused conv takes no swiglu or residual');
  const { wg: WG, unroll: U, group: TPC, cols: CPT } = shape;
  if (WG % TPC !== 0 || (TPC & (TPC - 1)) !== 0) throw new Error(`gemvKernel: groups of ${TPC} invocations do not split a workgroup of ${WG} in powers of two`);
  if (CPT > TPC) throw new Error(`gemvKernel: ${CPT} columns per group of ${TPC} invocations (one writes each column)`);
  const NG = WG / TPC, COLS = NG * CPT, AA = swiglu ? 2 * CPT : CPT;
  // the tree's accumulators per round: as many as 16 KB of workgroup memory holds (one round at the
  // default shapes; each round is more code for the shader compiler)
  const CH = Math.min(AA, Math.max(CPT, Math.floor(4096 / WG / CPT) * CPT));
  if (AA % CH !== 0) throw new Error(`gemvKernel: ${AA} sums do not split into rounds of ${CH}`);
  const s = norm ? ', rs0' : '';
  const xs = vec
    ? `let x0l = rx4(k, p.row0 * p.K + k${s}); let x0h = rx4(k + 4u, p.row0 * p.K + k + 4u${s});`
    : 'let x0l = rx1(k, p.row0 * p.K + k); let x0h = rx1(k + 4u, p.row0 * p.K + k + 4u);';
  const extra = [...(swiglu ? ['W2'] : []), ...(norm ? ['G'] : []), ...(residual ? ['R'] : []), ...(conv ? ['S', 'CW', 'CB'] : [])];
  const body: string[] = [];
  for (const [W, base] of swiglu ? [['W', 0], ['W2', CPT]] as const : [['W', 0]] as const) {
    for (let c = 0; c < CPT; c++) {
      body.push(`{ let w = ${W}[row${c} + qw];`);
      body.push(`  let wl = vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y)); let wh = vec4<f32>(unpack2x16float(w.z), unpack2x16float(w.w));`);
      body.push(`  acc[${base + c}] += dot(x0l, wl) + dot(x0h, wh);`);
      body.push('}');
    }
  }
  // U steps of k per turn: step u reads weight column block qw (clamped in range: past K8 its x is
  // zero, so it adds nothing) and x at k; the sums run in the same order as one step per turn
  const steps = Array.from({ length: U }, (_, u) => u === 0
    ? `{ let qw = q; let k = q * 8u;\n    ${xs}\n    ${body.join('\n    ')}\n    }`
    : `{ let qw = min(q + ${u * TPC}u, p.K8 - 1u); let k = (q + ${u * TPC}u) * 8u;\n    ${xs}\n    ${body.join('\n    ')}\n    }`);
  // the group's sums: sum(second) is the total of the product (of W, or of W2 when second) for the
  // column of the group's invocation `lane` < CPT
  let reduce: string, sum: (second: boolean) => string;
  // groups of several subgroups: each subgroup's sums, then the group's from workgroup memory
  const SPG = sg ? TPC / sg : 0, NSG = sg ? WG / sg : 0;
  if (sg && SPG > 1) {
    reduce = `${lines(AA, (a) => `let t${a} = subgroupAdd(acc[${a}]);`, '\n  ')}
  if (li % ${sg}u == 0u) { ${lines(AA, (a) => `part[${a * NSG}u + li / ${sg}u] = t${a};`, ' ')} }
  workgroupBarrier();
  var s0 = 0.0; var s1 = 0.0;
  if (lane < ${CPT}u) {
    for (var j = 0u; j < ${SPG}u; j++) {
      s0 += part[lane * ${NSG}u + grp * ${SPG}u + j];${swiglu ? `
      s1 += part[(lane + ${CPT}u) * ${NSG}u + grp * ${SPG}u + j];` : ''}
    }
  }`;
    sum = (second) => (second ? 's1' : 's0');
  } else if (sg) {
    reduce = `${lines(AA, (a) => `let t${a} = subgroupAdd(acc[${a}]);`, '\n  ')}
  var s0 = 0.0; var s1 = 0.0;
  ${lines(CPT, (c) => `if (lane == ${c}u) { s0 = t${c};${swiglu ? ` s1 = t${c + CPT};` : ''} }`, '\n  ')}`;
    sum = (second) => (second ? 's1' : 's0');
  } else {
    // CH accumulators per round; group g's sums land in sums[g · AA …]
    reduce = lines(AA / CH, (g) => `${lines(CH, (c) => `part[${c * WG}u + li] = acc[${g * CH + c}];`, ' ')} // constant indices keep acc in registers
  workgroupBarrier();
  for (var s = ${TPC / 2}u; s > 0u; s >>= 1u) {
    if (lane < s) {
      for (var a = 0u; a < ${CH}u; a++) { part[a * ${WG}u + li] += part[a * ${WG}u + li + s]; }
    }
    workgroupBarrier();
  }
  for (var a = lane; a < ${CH}u; a += ${TPC}u) { sums[grp * ${AA}u + ${g * CH}u + a] = part[a * ${WG}u + grp * ${TPC}u]; }
  workgroupBarrier();`, '\n  ');
    sum = (second) => `sums[grp * ${AA}u + lane${second ? ` + ${CPT}u` : ''}]`;
  }
  const out = swiglu ? `silu(${sum(false)}) * ${sum(true)}` : sum(false);
  return {
    key: `matmul_f16_gemv_1_${vec ? 'v' : 's'}${swiglu ? '_swiglu' : ''}${norm ? '_norm' : ''}${residual ? '_res' : ''}${conv ? '_conv' : ''}_${WG}x${U}${TPC === WG && CPT === GV_COLS ? '' : `_g${TPC}c${CPT}`}${sg ? (SPG > 1 ? `_sg${sg}x${SPG}` : '_sg') : ''}`,
    bindings: ['read', 'read', ...extra.map(() => 'read' as const), 'write', ...(conv ? ['write' as const] : [])],
    code: () => /* wgsl */ `${sg ? 'enable subgroups;\n' : ''}${ROUND_F16}${MATH}
struct P { M: u32, N: u32, K: u32, K8: u32, groups: u32, row0: u32, eps: f32${conv ? ', C: u32, CK: u32, hasState: u32' : ''} }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> X: ${vec ? 'array<vec4<f32>>' : 'array<f32>'};
@group(0) @binding(2) var<storage, read> W: array<vec4<u32>>;
${extra.map((name, i) => `@group(0) @binding(${3 + i}) var<storage, read> ${name}: ${name === 'W2' ? 'array<vec4<u32>>' : name === 'G' ? 'array<vec4<f32>>' : 'array<f32>'};`).join('\n')}
@group(0) @binding(${3 + extra.length}) var<storage, read_write> Y: array<f32>;
${conv ? `@group(0) @binding(${4 + extra.length}) var<storage, read_write> NEXT: array<f32>;
/** input k < CK of channel c's conv window: the carried state's CK - 1 values (zeros without one), then x */
fn convTap(c: u32, k: u32, x: f32) -> f32 {
  if (k + 1u == p.CK) { return x; }
  if (p.hasState == 0u) { return 0.0; }
  return S[c * (p.CK - 1u) + k];
}
/** silu(bias + Σ_k w · input) for channel c's new input x; stores the channel's next state */
fn convStep(c: u32, x: f32) -> f32 {
  var s = CB[c];
  for (var k = 0u; k < p.CK; k++) { s = fma(CW[c * p.CK + k], convTap(c, k, x), s); }
  for (var k = 0u; k + 1u < p.CK; k++) { NEXT[c * (p.CK - 1u) + k] = convTap(c, k + 1u, x); }
  return silu(s);
}` : ''}
var<workgroup> part: array<f32, ${sg ? Math.max(WG, AA * NSG) : WG * CH}>; // also the norm's sums (rowScalePass)
${sg ? '' : `var<workgroup> sums: array<f32, ${NG * AA}>;`}
${norm ? rowScaleVar(1) : ''}
fn r4(v: vec4<f32>) -> vec4<f32> { return round_f16v(v); }
${vec
  ? `/** x[i .. i+3] (k .. k+3 of a row; K % 4 == 0, so all or none are in range)${norm ? ', normalised,' : ''} rounded to f16 */
fn rx4(k: u32, i: u32${norm ? ', rs: f32' : ''}) -> vec4<f32> { if (k < p.K) { return r4(${norm ? 'X[i / 4u] * rs * G[k / 4u]' : 'X[i / 4u]'}); } return vec4<f32>(0.0); }`
  : `fn rx1(k: u32, i: u32) -> vec4<f32> {
  var v = vec4<f32>(0.0);
  for (var q = 0u; q < 4u; q++) { if (k + q < p.K) { v[q] = X[i + q]; } }
  return r4(v);
}`}

@compute @workgroup_size(${WG})
fn main(${BUILTINS}) {
  ${WG_INDEX}
  if (wg >= p.groups) { return; }
  let grp = li / ${TPC}u;
  let lane = li % ${TPC}u;
  let n0 = wg * ${COLS}u + grp * ${CPT}u;
  ${norm ? `${rowScalePass(1, WG, true, () => 'p.row0', sg)}
  let rs0 = rowScale[0];` : ''}
  // the weight rows of this group's columns (past N: row N − 1, read but not written)
  ${lines(CPT, (c) => `let row${c} = min(n0 + ${c}u, p.N - 1u) * p.K8;`, '\n  ')}
  var acc: array<f32, ${AA}>;
  for (var q = lane; q < p.K8; q += ${U * TPC}u) {
    ${steps.join('\n    ')}
  }
  ${reduce}
  if (lane < ${CPT}u) {
    let n = n0 + lane;
    let y = p.row0 * p.N + n;
    ${conv ? `if (n < p.C) { Y[y] = convStep(n, ${out}); } else if (n < p.N) { Y[y] = ${out}; }`
    : `if (n < p.N) { Y[y] = ${residual ? `${out} + R[y]` : out}; }`}
  }
}`,
  };
}

/** What a gemv fuses into its product: see gemvKernel. */
export interface GemvFusion { swiglu?: boolean; norm?: boolean; residual?: boolean; conv?: boolean }
/** The tensors of a gemv's fused ends: an RMSNorm's weight and epsilon, a residual [M, N]. */
export interface GemvEnds { norm?: { g: GpuTensor; eps: number }; residual?: GpuTensor }
/** The bindings a gemv kernel with these ends takes between its weights and its output (G, then R). */
export const endsBindings = (ends: GemvEnds): Binding[] => [...(ends.norm ? [bind(ends.norm.g)] : []), ...(ends.residual ? [bind(ends.residual)] : [])];
const gemvCache = kernelCache();
// a numeric key: decoding looks a kernel up for every product, and a string would be built each time
/** The one-row gemv's kernel for N columns and a reduction of K, and its workgroups. */
function gemvFor(ctx: GpuContext, vec: boolean, o: GemvFusion, N: number, K: number): { kernel: Kernel; groups: number } {
  const shape = gemvLayout(N, K, ctx.subgroupSize), { wg, unroll, group, cols } = shape;
  // subgroupAdd where the group is whole subgroups of the device's one width (wider groups only where asked)
  const w = ctx.subgroupSize, sg = gemvShape.subgroupReduce && w > 0 && group % w === 0 && (group === w || gemvShape.wideGroupSubgroups) ? w : 0;
  const kernel = gemvCache(
    +vec + 2 * +!!o.swiglu + 4 * +!!o.norm + 8 * +!!o.residual + 16 * +!!o.conv + 32 * (sg + 256 * (wg + 2048 * (unroll + 64 * (group + 2048 * cols)))),
    () => gemvKernel(vec, o, shape, sg));
  return { kernel, groups: Math.ceil(N / ((wg / group) * cols)) };
}

/** A packed weight for the gemv kernels: its shape, and rows padded to whole workgroups' columns. */
function checkGemvWeight(op: string, w: F16Matrix, N: number, K: number): void {
  checkPacked(w, N, K);
  if (w.rowsP % GV_COLS !== 0) throw new Error(`${op}: packed rows ${w.rowsP} are not a multiple of ${GV_COLS}`);
}

/**
 * silu(x · w1ᵀ) ⊙ (x · w2ᵀ) for M ≤ F16_GEMV_MAX_ROWS rows of x and two packed f16 weights of one
 * shape: a SwiGLU MLP's gate, up and product in one dispatch per block of rows when decoding; x
 * normalised first with `norm` (K % 4 == 0).
 */
export function swigluF16Gemv(
  ctx: GpuContext, out: GpuTensor, x: GpuTensor, w1: F16Matrix, w2: F16Matrix, M: number, N: number, K: number, norm?: GemvEnds['norm'], tc: TensorCores = null,
): void {
  checkGemvWeight('swigluF16Gemv', w1, N, K); checkGemvWeight('swigluF16Gemv', w2, N, K);
  if (M < 1 || M > F16_GEMV_MAX_ROWS) throw new Error(`swigluF16Gemv: ${M} rows, expected 1 to ${F16_GEMV_MAX_ROWS}`);
  const vec = K % 4 === 0, fusion = { swiglu: true, norm: !!norm }, eps = norm?.eps ?? 0;
  const bindings = [bind(x), bindF16(w1), bindF16(w2), ...endsBindings({ norm }), bind(out)];
  const s = tcRowsFor(ctx, tc, M, N, K);
  if (s) { tcRowsGemv(ctx, s, bindings, M, N, K, w1, vec, fusion, eps); return; }
  if (M > 1) { rowsGemv(ctx, bindings, M, N, K, w1.colsP, vec, fusion, eps); return; }
  const { kernel, groups } = gemvFor(ctx, vec, fusion, N, K);
  ctx.dispatch(kernel, new Params().u32(1, N, K, w1.colsP / 8, groups, 0).f32(eps), bindings, groups);
}

/**
 * A Mamba mixer's input side for one token (Backend.mambaInput): out [1, 2C] = [x̃; z] with
 * [x; z] = x·wᵀ (x normalised first with `norm`, K % 4 == 0) and x̃ = silu(conv1d(x)) continuing
 * from `conv.state` [C, CK-1] (null: zeros); next [C, CK-1] gets the next conv state.
 */
export function mambaInputF16Gemv(
  ctx: GpuContext, out: GpuTensor, next: GpuTensor, x: GpuTensor, w: F16Matrix, N: number, K: number,
  conv: { w: GpuTensor; b: GpuTensor; state: GpuTensor | null; width: number }, norm?: GemvEnds['norm'],
): void {
  checkGemvWeight('mambaInputF16Gemv', w, N, K);
  if (K % 4 !== 0 || N % 2 !== 0) throw new Error(`mambaInputF16Gemv: needs K % 4 == 0 and an even N, got ${N} × ${K}`);
  const { kernel, groups } = gemvFor(ctx, true, { norm: !!norm, conv: true }, N, K), C = N / 2;
  const bindings = [bind(x), bindF16(w), ...endsBindings({ norm }), bind(conv.state ?? conv.w), bind(conv.w), bind(conv.b), bind(out), bind(next)];
  const params = new Params().u32(1, N, K, w.colsP / 8, groups, 0).f32(norm?.eps ?? 0).u32(C, conv.width, conv.state ? 1 : 0);
  ctx.dispatch(kernel, params, bindings, groups);
}

/**
 * Rows of x up to which the packed gemvs are used: from TC_ROWS_MIN rows on tensor cores in one
 * dispatch (tcRowsGemvKernel), else one per block of 16 rows (rowsGemvKernel). Batched decoding reads the weights once per 32
 * or 16 sequences, where the staged tensor-core kernel would spend most of a 64-row tile on padding.
 */
export const F16_GEMV_MAX_ROWS = 32;
/**
 * y = x · wᵀ for M ≤ F16_GEMV_MAX_ROWS rows and a packed f16 weight (rows padded to a multiple of
 * 8); with `ends`, rmsNorm(x) · wᵀ and/or plus a residual (K % 4 == 0).
 */
export function matmulF16Gemv(
  ctx: GpuContext, out: GpuTensor, x: GpuTensor, w: F16Matrix, M: number, N: number, K: number, ends: GemvEnds = {}, tc: TensorCores = null,
): void {
  checkGemvWeight('matmulF16Gemv', w, N, K);
  if (M < 1 || M > F16_GEMV_MAX_ROWS) throw new Error(`matmulF16Gemv: ${M} rows, expected 1 to ${F16_GEMV_MAX_ROWS}`);
  const vec = K % 4 === 0, { norm, residual } = ends, fusion = { norm: !!norm, residual: !!residual }, eps = norm?.eps ?? 0;
  const bindings = [bind(x), bindF16(w), ...endsBindings(ends), bind(out)];
  const s = tcRowsFor(ctx, tc, M, N, K);
  if (s) { tcRowsGemv(ctx, s, bindings, M, N, K, w, vec, fusion, eps); return; }
  if (M > 1) { rowsGemv(ctx, bindings, M, N, K, w.colsP, vec, fusion, eps); return; }
  const { kernel, groups } = gemvFor(ctx, vec, fusion, N, K);
  ctx.dispatch(kernel, new Params().u32(M, N, K, w.colsP / 8, groups, 0).f32(eps), bindings, groups);
}

// ---- gemv for blocks of rows (batched decoding) ----

/** Invocations of a rows-gemv workgroup, and the vec4s of its one workgroup array (16 KiB, WebGPU's default limit). */
const RG_THREADS = 256, RG_VEC4S = 1024;

/**
 * y[m, n] for R (4, 8 or 16) rows m of x, of which the first p.M - p.row0 (at most R) are real.
 * The weight is read once for all R rows, which the one-row kernel's layout (invocations across K,
 * a reduction of every sum over the workgroup) makes costly: with R rows its sums crowd the
 * registers and the reduction outweighs the products. Here each invocation owns one column n
 * (a row of w, read 16 halves at a time) and one of S = 256 / COLS slices of K, and keeps R sums
 * (2R for swiglu); x is staged in workgroup memory a tile of k at a time, rounded to f16 (and
 * normalised) once per workgroup, and read back as broadcasts; at the end the S slices' sums of
 * each column are added in slice order.
 */
function rowsGemvKernel(R: number, COLS: number, STEP: number, vec: boolean, o: GemvFusion): Kernel {
  const { swiglu = false, norm = false, residual = false } = o;
  if (![4, 8, 16].includes(R) || RG_THREADS % COLS !== 0) throw new Error(`rowsGemvKernel: ${R} rows or ${COLS} columns do not fit`);
  if (norm && !vec) throw new Error('rowsGemvKernel: the fused norm needs K % 4 == 0');
  const S = RG_THREADS / COLS, KT = (RG_VEC4S * 4) / R, NW = swiglu ? 2 : 1, R4 = R / 4;
  if ((STEP !== 8 && STEP !== 16) || KT % (STEP * S) !== 0) throw new Error(`rowsGemvKernel: a tile of ${KT} k does not split into ${S} slices of ${STEP}`);
  const extra = [...(swiglu ? ['W2'] : []), ...(norm ? ['G'] : []), ...(residual ? ['R'] : [])];
  const acc = (w: number, r: number) => `acc${w}_${r}`;
  // one step: STEP halves of column n at k (16-byte loads), against each row's x
  const V = STEP / 4; // vec4s of k per step
  const step = Array.from({ length: NW }, (_, w) => {
    const W = w === 0 ? 'W' : 'W2';
    return `{ ${lines(STEP / 8, (h) => `let h${h} = ${W}[wi + ${h}u];`, ' ')}
        ${lines(STEP / 8, (h) => `let a${2 * h} = vec4<f32>(unpack2x16float(h${h}.x), unpack2x16float(h${h}.y)); let a${2 * h + 1} = vec4<f32>(unpack2x16float(h${h}.z), unpack2x16float(h${h}.w));`, '\n        ')}
        ${lines(R, (r) => `${acc(w, r)} += ${Array.from({ length: V }, (_, i) => `dot(xs[${r * (KT / 4)}u + q4${i ? ` + ${i}u` : ''}], a${i})`).join(' + ')};`, '\n        ')}
      }`;
  }).join('\n      ');
  // sums of weight w: each invocation's R sums as R/4 vec4s, then per (column, 4 rows) the S slices in order
  const reduce = (w: number, into: string) => `workgroupBarrier();
  ${lines(R4, (j) => `xs[${j * RG_THREADS}u + li] = vec4<f32>(${[0, 1, 2, 3].map((i) => acc(w, 4 * j + i)).join(', ')});`, '\n  ')}
  workgroupBarrier();
  var ${into} = vec4<f32>(0.0);
  if (li < ${COLS * R4}u) {
    let c = li % ${COLS}u;
    let j = li / ${COLS}u;
    for (var s = 0u; s < ${S}u; s++) { ${into} += xs[j * ${RG_THREADS}u + s * ${COLS}u + c]; }
  }`;
  return {
    key: `matmul_f16_gemv_rows${R}_c${COLS}_k${STEP}_${vec ? 'v' : 's'}${swiglu ? '_swiglu' : ''}${norm ? '_norm' : ''}${residual ? '_res' : ''}`,
    bindings: ['read', 'read', ...extra.map(() => 'read' as const), 'write'],
    code: () => /* wgsl */ `${ROUND_F16}${MATH}
struct P { M: u32, N: u32, K: u32, Kp: u32, row0: u32, eps: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> X: ${vec ? 'array<vec4<f32>>' : 'array<f32>'};
@group(0) @binding(2) var<storage, read> W: array<vec4<u32>>;
${extra.map((name, i) => `@group(0) @binding(${3 + i}) var<storage, read> ${name}: ${name === 'W2' ? 'array<vec4<u32>>' : name === 'G' ? 'array<vec4<f32>>' : 'array<f32>'};`).join('\n')}
@group(0) @binding(${3 + extra.length}) var<storage, read_write> Y: array<f32>;
// a tile of x (R rows × ${KT} k, rounded), and at the ends the row scales' and the products' partial sums
var<workgroup> xs: array<vec4<f32>, ${RG_VEC4S}>;

@compute @workgroup_size(${RG_THREADS})
fn main(${BUILTINS}) {
  ${WG_INDEX}
  let c = li % ${COLS}u;
  let s = li / ${COLS}u;
  let n = wg * ${COLS}u + c;     // this invocation's column; packed rows are zeros past N
  let rows = min(p.M - p.row0, ${R}u);
  ${norm ? `// the rows' scales, as rmsNorm computes them: sums of squares split over the workgroup (reduced
  // in xs, as R/4 vec4s per invocation; rowScalePass's own array would need another 16 KiB)
  ${lines(R, (r) => `var ss${r} = 0.0;`, ' ')}
  for (var i = li; i < p.K / 4u; i += ${RG_THREADS}u) {
    ${lines(R, (r) => `if (${r}u < rows) { let v = X[(p.row0 + ${r}u) * (p.K / 4u) + i]; ss${r} += dot(v, v); }`, '\n    ')}
  }
  ${lines(R4, (j) => `xs[${j * RG_THREADS}u + li] = vec4<f32>(${[0, 1, 2, 3].map((i) => `ss${4 * j + i}`).join(', ')});`, '\n  ')}
  ${workgroupReduceRows('xs', RG_THREADS, R4, '+')}
  var scale = array<vec4<f32>, ${R4}>(${lines(R4, (j) => `1.0 / sqrt(xs[${j * RG_THREADS}u] / f32(p.K) + p.eps)`, ', ')});` : ''}
  ${lines(NW * R, (i) => `var ${acc(Math.floor(i / R), i % R)} = 0.0;`, ' ')}
  for (var k0 = 0u; k0 < p.Kp; k0 += ${KT}u) {
    workgroupBarrier(); // the last tile has been read
    for (var e = li; e < ${R * (KT / 4)}u; e += ${RG_THREADS}u) {
      let r = e / ${KT / 4}u;
      let k = k0 + (e % ${KT / 4}u) * 4u;
      var v = vec4<f32>(0.0);
      if (r < rows && k < p.K) {
        let i = (p.row0 + r) * p.K + k;
        ${vec ? `v = X[i / 4u];${norm ? ' v = v * scale[r / 4u][r % 4u] * G[k / 4u];' : ''}`
          : 'for (var q = 0u; q < 4u; q++) { if (k + q < p.K) { v[q] = X[i + q]; } }'}
      }
      xs[e] = round_f16v(v);
    }
    workgroupBarrier();
    // this slice's steps of ${STEP} k in the tile (K is padded to a multiple of 16 with zeros)
    for (var q = s * ${STEP}u; q < ${KT}u; q += ${S * STEP}u) {
      if (k0 + q >= p.Kp) { break; }
      let wi = (n * p.Kp + k0 + q) / 8u;
      let q4 = q / 4u;
      ${step}
    }
  }
  ${swiglu ? `${reduce(0, 'gate')}
  ${reduce(1, 'up')}
  let y = vec4<f32>(silu(gate.x), silu(gate.y), silu(gate.z), silu(gate.w)) * up;` : `${reduce(0, 'y')}`}
  if (li < ${COLS * R4}u) {
    let col = wg * ${COLS}u + li % ${COLS}u;
    let r0 = (li / ${COLS}u) * 4u;
    if (col < p.N) {
      for (var i = 0u; i < 4u; i++) {
        if (r0 + i < rows) {
          let o = (p.row0 + r0 + i) * p.N + col;
          Y[o] = ${residual ? 'y[i] + R[o]' : 'y[i]'};
        }
      }
    }
  }
}`,
  };
}

const rowsGemvCache = kernelCache();

/**
 * Columns per rows-gemv workgroup: 16 (so that a tile's k splits into whole steps), 32 from 512
 * workgroups on. H100, 16 rows (bench/matmul.ts --rows-cols, GPU time): 16×2048×8192 86 µs with 16
 * columns, 120 with 32, 197 with 64; 16×4096×4096 61, 69–73, 103; 16×8192×2048 66–72, 50, 56.
 */
const rowsGemvCols = (N: number) => gemvShape.rowsCols || (N >= 512 * 16 ? 32 : 16);

/** Dispatches rowsGemvKernel over M rows in blocks of gemvShape.rowsBlock; bindings as the kernel takes them. */
function rowsGemv(ctx: GpuContext, bindings: Binding[], M: number, N: number, K: number, Kp: number, vec: boolean, o: GemvFusion, eps: number): void {
  const COLS = rowsGemvCols(N), groups = Math.ceil(N / COLS), block = gemvShape.rowsBlock, STEP = gemvShape.rowsStep;
  for (let row0 = 0; row0 < M; row0 += block) {
    const left = M - row0, R = left <= 4 ? 4 : left <= 8 || block === 8 ? 8 : 16; // compiled for 4, 8 or 16 rows
    const kernel = rowsGemvCache(`${R}|${COLS}|${STEP}|${vec}|${!!o.swiglu}|${!!o.norm}|${!!o.residual}`, () => rowsGemvKernel(R, COLS, STEP, vec, o));
    ctx.dispatch(kernel, new Params().u32(M, N, K, Kp, row0).f32(eps), bindings, groups);
  }
}

// ---- rows gemv on tensor cores (batched decoding where the device has subgroup matrices) ----

/**
 * The tensor-core rows gemv's shape, where not 0 (by the product: tcRowsTiling): subgroups per
 * workgroup, 16-column tiles per workgroup, and the k-width of the staged x tile at 16 rows
 * (halved at 32); with subgroups set, `stream` picks the kernel, and `weightsOnly` is a timing
 * ablation (see TcRowsTiling). bench/matmul.ts --tc-rows sets them.
 */
export const tcRowsShape = { subgroups: 0, colTiles: 0, kTile: 0, weightsOnly: false, stream: false };
/** Rows of x one tensor-core rows gemv serves: two 16-row matrices per k step. */
export const TC_ROWS_MAX = 32;

/** The tensor-core rows kernels' start: this invocation's subgroup, column tile, k slice and rows. */
const tcRowsStart = (s: SubgroupMatrixShape & { subgroupSize: number }, CT: number, ROWS: number): string => `// subgroups are consecutive runs of local_invocation_index (checked by checkSubgroupMatrix)
  let sg = li / ${s.subgroupSize}u;
  let ct = sg % ${CT}u;
  let ks = sg / ${CT}u;
  let n0 = wg * ${CT * s.N}u + ct * ${s.N}u;
  let live = n0 < p.rowsW;       // packed rows are zeros past N, up to rowsW
  let nOff = n0 * p.Kp;
  let kLast = p.Kp - ${s.K}u;
  let rows = min(p.M - p.row0, ${ROWS}u);`;

/** The tensor-core rows kernels' accumulators c{w}_{i}: weight w (2 for SwiGLU) against row matrix i. */
const tcAccumulators = (NW: number, MT: number, C: string): string => lines(NW * MT, (j) => `var c${Math.floor(j / MT)}_${j % MT} = ${C}();`, ' ');
/** Step u's multiply-adds: every accumulator c{w}_{i} += a{i}_u · b{w}_u. */
const tcProducts = (NW: number, MT: number, u: number): string =>
  lines(NW * MT, (j) => `c${Math.floor(j / MT)}_${j % MT} = subgroupMatrixMultiplyAccumulate(a${j % MT}_${u}, b${Math.floor(j / MT)}_${u}, c${Math.floor(j / MT)}_${j % MT});`, ' ');

/**
 * The tensor-core rows kernels' end: weight w's sums (each subgroup's result matrices into red,
 * then each output element's KS slices added in order), SwiGLU, the residual, and the store of
 * the real rows and columns. Needs live, ks, ct, rows, wg, li and the accumulators c{w}_{i}.
 */
function tcRowsEnd(s: SubgroupMatrixShape, MT: number, CT: number, KS: number, T: number, o: GemvFusion): string {
  const { swiglu = false, residual = false } = o, NW = swiglu ? 2 : 1;
  const ROWS = MT * s.M, COLS = CT * s.N, MN = s.M * s.N, EPT = (ROWS * COLS) / T;
  const reduce = (w: number) => `workgroupBarrier();
  if (live) {
    ${lines(MT, (i) => `subgroupMatrixStore<row_major>(&red, ((ks * ${CT}u + ct) * ${MT}u + ${i}u) * ${MN}u, c${w}_${i}, ${s.N}u);`, '\n    ')}
  }
  workgroupBarrier();
  ${lines(EPT, (j) => `var y${w}_${j} = 0.0;
  {
    let e = li + ${j * T}u;
    let r = e / ${COLS}u;
    let c = e % ${COLS}u;
    let at = ((c / ${s.N}u) * ${MT}u + r / ${s.M}u) * ${MN}u + (r % ${s.M}u) * ${s.N}u + c % ${s.N}u;
    for (var k = 0u; k < ${KS}u; k++) { y${w}_${j} += red[k * ${CT * MT * MN}u + at]; }
  }`, '\n  ')}`;
  return `${lines(NW, reduce, '\n  ')}
  ${lines(EPT, (j) => `{
    let e = li + ${j * T}u;
    let r = e / ${COLS}u;
    let col = wg * ${COLS}u + e % ${COLS}u;
    if (r < rows && col < p.N) {
      let o = (p.row0 + r) * p.N + col;
      Y[o] = ${swiglu ? `silu(y0_${j}) * y1_${j}` : `y0_${j}`}${residual ? ' + R[o]' : ''};
    }
  }`, '\n  ')}`;
}

/**
 * y[m, n] for up to 32 rows m of x on tensor cores, the packed weight read once. The rows gemv
 * above multiplies on the f32 units: 16 FMAs and a broadcast read of x per weight, which holds it
 * at 0.4–0.7 TB/s. Here x (rounded to f16, normalised with `norm`) is staged in workgroup memory as
 * MT = 1 or 2 left matrices per k step, and each subgroup loads its right matrices (16 columns × 16
 * k of w) straight from global memory: CT column tiles per workgroup, its SG subgroups splitting
 * each x tile's k into SG / CT slices, all of a slice's loads issued before its multiply-adds. The
 * slices' result matrices are summed in slice order through workgroup memory at the end, where
 * SwiGLU and the residual are applied as in the other gemv kernels.
 */
function tcRowsGemvKernel(s: SubgroupMatrixShape & { subgroupSize: number }, MT: number, t: TcRowsTiling, vec: boolean, o: GemvFusion): Kernel {
  const { swiglu = false, norm = false, residual = false } = o;
  const { subgroups: SG, colTiles: CT } = t, T = SG * s.subgroupSize, KS = SG / CT, KT = t.kTile / MT, SK = KT / KS;
  const ROWS = MT * s.M, COLS = CT * s.N, KTP = KT + 8, MN = s.M * s.N, PARTS = T / ROWS;
  if (SG % CT !== 0 || SK % s.K !== 0 || KT % 16 !== 0 || (ROWS * COLS) % T !== 0 || T % ROWS !== 0) {
    throw new Error(`tcRowsGemvKernel: ${SG} subgroups, ${CT} column tiles, ${MT} row tiles and a ${KT}-wide x tile do not fit together`);
  }
  if (norm && !vec) throw new Error('tcRowsGemvKernel: the fused norm needs K % 4 == 0');
  const NW = swiglu ? 2 : 1, STEPS = SK / s.K;
  const extra = [...(swiglu ? ['W2'] : []), ...(norm ? ['G'] : []), ...(residual ? ['R'] : [])];
  const { L, R, C } = matrixTypes(s);
  const W = (w: number) => (w === 0 ? 'W' : 'W2');
  // a slice's steps: every right matrix's load first (the weight bytes in flight), then x's matrices and the products.
  // Past Kp the load is clamped to the last block of k: x is zero there, and packed weights are finite.
  const slice = [
    ...Array.from({ length: STEPS }, (_, u) => lines(NW, (w) => `let b${w}_${u} = subgroupMatrixLoad<${R}, col_major>(&${W(w)}, nOff + min(kb + ${u * s.K}u, kLast), p.Kp);`, ' ')),
    ...Array.from({ length: STEPS }, (_, u) => [
      lines(MT, (i) => `let a${i}_${u} = subgroupMatrixLoad<${L}, row_major>(&xs, ${i * s.M * KTP}u + xk + ${u * s.K}u, ${KTP}u);`, ' '),
      tcProducts(NW, MT, u),
    ].join('\n      ')),
  ];
  return {
    key: `matmul_f16_gemv_tc_${s.M}x${s.N}x${s.K}_${s.subgroupSize}_sg${SG}_m${MT}_c${CT}_k${KT}${t.weightsOnly ? '_weights_only' : ''}_${vec ? 'v' : 's'}${swiglu ? '_swiglu' : ''}${norm ? '_norm' : ''}${residual ? '_res' : ''}`,
    bindings: ['read', 'read', ...extra.map(() => 'read' as const), 'write'],
    code: () => /* wgsl */ `${SGM_PREAMBLE}
${ROUND_F16}${MATH}
struct P { M: u32, N: u32, K: u32, Kp: u32, rowsW: u32, row0: u32, eps: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> X: ${vec ? 'array<vec4<f32>>' : 'array<f32>'};
@group(0) @binding(2) var<storage, read> W: array<f16>;
${extra.map((name, i) => `@group(0) @binding(${3 + i}) var<storage, read> ${name}: ${name === 'W2' ? 'array<f16>' : name === 'G' ? 'array<vec4<f32>>' : 'array<f32>'};`).join('\n')}
@group(0) @binding(${3 + extra.length}) var<storage, read_write> Y: array<f32>;
var<workgroup> xs: array<f16, ${ROWS * KTP}>;          // a tile of x: ${ROWS} rows × ${KT} k, rounded (and normalised)
var<workgroup> red: array<f32, ${Math.max(KS * CT * MT * MN, T)}>; // the row scales' and the slices' partial sums
var<workgroup> rowScale: array<f32, ${ROWS}>;

@compute @workgroup_size(${T})
fn main(${BUILTINS}) {
  ${WG_INDEX}
  ${tcRowsStart(s, CT, ROWS)}
  ${norm ? `// the rows' scales, as rmsNorm computes them: ${PARTS} invocations per row, their partial sums added in order
  {
    let r = li % ${ROWS}u;
    var ss = 0.0;
    if (r < rows) {
      for (var i = li / ${ROWS}u; i < p.K / 4u; i += ${PARTS}u) { let v = X[(p.row0 + r) * (p.K / 4u) + i]; ss += dot(v, v); }
    }
    red[li] = ss;
    workgroupBarrier();
    if (li < ${ROWS}u) {
      var t = 0.0;
      for (var j = 0u; j < ${PARTS}u; j++) { t += red[j * ${ROWS}u + li]; }
      rowScale[li] = 1.0 / sqrt(t / f32(p.K) + p.eps);
    }
  }` : ''}
  ${tcAccumulators(NW, MT, C)}
  let xk = ks * ${SK}u;         // this subgroup's slice of each x tile
  for (var k0 = 0u; k0 < p.Kp; k0 += ${KT}u) {
    ${t.weightsOnly ? 'if (k0 == 0u) {' : ''}
    workgroupBarrier(); // the last tile has been read (and the row scales written)
    for (var e = li; e < ${(ROWS * KT) / 4}u; e += ${T}u) {
      let r = e / ${KT / 4}u;
      let kq = (e % ${KT / 4}u) * 4u;
      let k = k0 + kq;
      var v = vec4<f32>(0.0);
      if (r < rows && k < p.K) {
        let i = (p.row0 + r) * p.K + k;
        ${vec ? `v = X[i / 4u];${norm ? ' v = v * rowScale[r] * G[k / 4u];' : ''}`
          : 'for (var q = 0u; q < 4u; q++) { if (k + q < p.K) { v[q] = X[i + q]; } }'}
      }
      let h = vec4<f16>(round_f16v(v));
      let o = r * ${KTP}u + kq;
      xs[o] = h.x; xs[o + 1u] = h.y; xs[o + 2u] = h.z; xs[o + 3u] = h.w;
    }
    workgroupBarrier();
    ${t.weightsOnly ? '}' : ''}
    if (live) {
      let kb = k0 + xk;
      ${slice.join('\n      ')}
    }
  }
  ${tcRowsEnd(s, MT, CT, KS, T, o)}
}`,
  };
}

const tcRowsCache = kernelCache();

/**
 * The streaming variant (TcRowsTiling.stream): x arrives packed as f16 rows (packRowsKernel, the
 * norm applied there), and each subgroup loads its left matrices from global memory like its
 * right ones: no workgroup staging and no barriers in the loop, where the staged kernel has every
 * workgroup round and store all of x. Subgroup ks walks k from ks·SK in strides of KS·SK.
 */
function tcRowsStreamKernel(s: SubgroupMatrixShape & { subgroupSize: number }, MT: number, t: TcRowsTiling, o: GemvFusion): Kernel {
  const { swiglu = false, residual = false } = o;
  const { subgroups: SG, colTiles: CT } = t, T = SG * s.subgroupSize, KS = SG / CT, SK = t.kTile / MT / KS;
  const ROWS = MT * s.M, COLS = CT * s.N, MN = s.M * s.N;
  if (SG % CT !== 0 || SK % s.K !== 0 || (ROWS * COLS) % T !== 0) {
    throw new Error(`tcRowsStreamKernel: ${SG} subgroups, ${CT} column tiles, ${MT} row tiles and ${SK} k per step do not fit together`);
  }
  const NW = swiglu ? 2 : 1, STEPS = SK / s.K;
  const extra = [...(swiglu ? ['W2'] : []), ...(residual ? ['R'] : [])];
  const { L, R, C } = matrixTypes(s);
  const W = (w: number) => (w === 0 ? 'W' : 'W2');
  // every load of a trip first (clamped to the last block of k: in bounds), then the products of the steps inside Kp
  const trip = [
    ...Array.from({ length: STEPS }, (_, u) => `let k${u} = min(kb + ${u * s.K}u, kLast); ${lines(NW, (w) => `let b${w}_${u} = subgroupMatrixLoad<${R}, col_major>(&${W(w)}, nOff + k${u}, p.Kp);`, ' ')} ${lines(MT, (i) => `let a${i}_${u} = subgroupMatrixLoad<${L}, row_major>(&XH, ${i * s.M}u * p.Kp + k${u}, p.Kp);`, ' ')}`),
    ...Array.from({ length: STEPS }, (_, u) => `if (kb + ${u * s.K}u < p.Kp) { ${tcProducts(NW, MT, u)} }`),
  ];
  return {
    key: `matmul_f16_gemv_tc_stream_${s.M}x${s.N}x${s.K}_${s.subgroupSize}_sg${SG}_m${MT}_c${CT}_k${SK}${swiglu ? '_swiglu' : ''}${residual ? '_res' : ''}`,
    bindings: ['read', 'read', ...extra.map(() => 'read' as const), 'write'],
    code: () => /* wgsl */ `${SGM_PREAMBLE}
${MATH}
struct P { M: u32, N: u32, K: u32, Kp: u32, rowsW: u32, row0: u32, eps: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> XH: array<f16>; // this block's ${ROWS} rows of x, rounded (and normalised), [${ROWS}, Kp]
@group(0) @binding(2) var<storage, read> W: array<f16>;
${extra.map((name, i) => `@group(0) @binding(${3 + i}) var<storage, read> ${name}: ${name === 'W2' ? 'array<f16>' : 'array<f32>'};`).join('\n')}
@group(0) @binding(${3 + extra.length}) var<storage, read_write> Y: array<f32>;
var<workgroup> red: array<f32, ${KS * CT * MT * MN}>; // the slices' partial sums

@compute @workgroup_size(${T})
fn main(${BUILTINS}) {
  ${WG_INDEX}
  ${tcRowsStart(s, CT, ROWS)}
  ${tcAccumulators(NW, MT, C)}
  if (live) {
    for (var kb = ks * ${SK}u; kb < p.Kp; kb += ${KS * SK}u) {
      ${trip.join('\n      ')}
    }
  }
  ${tcRowsEnd(s, MT, CT, KS, T, o)}
}`,
  };
}

/**
 * x's rows row0 … row0 + p.rows − 1 as f16 [rows, Kp] for tcRowsStreamKernel: rounded as the
 * other f16 paths round, zeros past M and K; with norm, rmsNorm(x) ⊙ G first (the row's sum of
 * squares reduced over the workgroup, one workgroup per row).
 */
const packRowsKernel = (norm: boolean): Kernel => ({
  key: `f16_pack_rows${norm ? '_norm' : ''}`,
  bindings: norm ? ['read', 'read', 'write'] : ['read', 'write'],
  code: () => /* wgsl */ `${ROUND_F16}
struct P { M: u32, K: u32, Kp: u32, row0: u32, eps: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> X: array<f32>;
${norm ? '@group(0) @binding(2) var<storage, read> G: array<f32>;\n@group(0) @binding(3) var<storage, read_write> Y: array<u32>;' : '@group(0) @binding(2) var<storage, read_write> Y: array<u32>;'}
var<workgroup> part: array<f32, 256>;
@compute @workgroup_size(256)
fn main(${BUILTINS}) {
  ${WG_INDEX}
  let row = p.row0 + wg;
  let real = row < p.M;
  var scale = 1.0;
  ${norm ? `var ss = 0.0;
  if (real) { for (var k = li; k < p.K; k += 256u) { let v = X[row * p.K + k]; ss += v * v; } }
  ${workgroupReduce('part', 256, 'ss', '+')}
  scale = 1.0 / sqrt(part[0] / f32(p.K) + p.eps);` : ''}
  for (var i = li; i < p.Kp / 2u; i += 256u) {
    let k = 2u * i;
    var v = vec2<f32>(0.0);
    if (real && k < p.K) { v.x = X[row * p.K + k]${norm ? ' * scale * G[k]' : ''}; }
    if (real && k + 1u < p.K) { v.y = X[row * p.K + k + 1u]${norm ? ' * scale * G[k + 1u]' : ''}; }
    Y[wg * (p.Kp / 2u) + i] = pack2x16float(round_f16v(vec4<f32>(v, 0.0, 0.0)).xy); // exact: f16 values
  }
}`,
});

/**
 * stream: tcRowsStreamKernel (x packed first) instead of the staged kernel. weightsOnly
 * (bench/matmul.ts --tc-rows …:w, wrong results): x staged for the first tile only, to time the
 * weights' loads and the products alone.
 */
interface TcRowsTiling { subgroups: number; colTiles: number; kTile: number; weightsOnly?: boolean; stream?: boolean }
/**
 * The tensor-core rows gemv's kernel and tiling for MT row matrices, N columns and a reduction of
 * K (tcRowsShape overrides it). H100, GPU time (bench/matmul.ts --tc-rows), against the f32-unit
 * rows gemv: 16 rows × 8192 × 2048 35 µs staged with 8 subgroups, 2 column tiles and a 256-wide x
 * tile (48; streaming 43); 16 × 4096 × 4096 42 staged with 16, 2, 512 (64; streaming 44);
 * 16 × 2048 × 8192 48 streaming with 8, 1, 512 (94.5; staged 80: every workgroup staged all 8192 k
 * of x); 32 × 4096 × 4096 63 streaming with 8, 2, 512 (118 in two passes; staged 78).
 */
function tcRowsTiling(MT: number, N: number, K: number): TcRowsTiling {
  const auto = MT > 1 ? { subgroups: 8, colTiles: 2, kTile: 512, stream: true }
    : K >= 2 * N ? { subgroups: 8, colTiles: 1, kTile: 512, stream: true }
      : N >= 8192 ? { subgroups: 8, colTiles: 2, kTile: 256, stream: false } : { subgroups: 16, colTiles: 2, kTile: 512, stream: false };
  const o = tcRowsShape;
  return {
    subgroups: o.subgroups || auto.subgroups, colTiles: o.colTiles || auto.colTiles, kTile: o.kTile || auto.kTile,
    ...(o.weightsOnly ? { weightsOnly: true } : {}),
    ...((o.subgroups ? o.stream : auto.stream) ? { stream: true } : {}),
  };
}

/** Workgroup memory the tensor-core rows gemv needs for M rows (at most TC_ROWS_MAX), N columns and a reduction of K. */
export function tcRowsBytes(s: SubgroupMatrixShape & { subgroupSize: number }, M: number, N: number, K: number): number {
  const MT = Math.ceil(M / s.M), { subgroups: SG, kTile, stream } = tcRowsTiling(MT, N, K), KT = kTile / MT;
  if (stream) return SG * MT * s.M * s.N * 4;
  return MT * s.M * (KT + 8) * 2 + Math.max(SG * MT * s.M * s.N, SG * s.subgroupSize) * 4 + MT * s.M * 4;
}
/**
 * Rows of x from which batched products take the tensor cores: at 4 rows the f32-unit rows gemv
 * took 24 µs for 4 × 4096 × 4096 against 39, at 8 both took 38 (H100).
 */
export const TC_ROWS_MIN = 9;
/** The device's subgroup-matrix shape where the tensor-core rows gemv serves M rows and fits its workgroup memory, else null. */
const tcRowsFor = (ctx: GpuContext, tc: TensorCores, M: number, N: number, K: number): TensorCores =>
  (tc && M >= TC_ROWS_MIN && tcRowsBytes(tc, Math.min(M, TC_ROWS_MAX), N, K) <= ctx.device.limits.maxComputeWorkgroupStorageSize ? tc : null);

/** Dispatches tcRowsGemvKernel over M rows in blocks of TC_ROWS_MAX; bindings as the kernel takes them (W, W2 bound as f16). */
function tcRowsGemv(
  ctx: GpuContext, s: SubgroupMatrixShape & { subgroupSize: number }, bindings: Binding[], M: number, N: number, K: number, w: F16Matrix, vec: boolean, o: GemvFusion, eps: number,
): void {
  for (let row0 = 0; row0 < M; row0 += TC_ROWS_MAX) {
    const MT = Math.ceil(Math.min(M - row0, TC_ROWS_MAX) / s.M), t = tcRowsTiling(MT, N, K), groups = Math.ceil(N / (t.colTiles * s.N));
    const params = new Params().u32(M, N, K, w.colsP, w.rowsP, row0).f32(eps);
    if (t.stream) {
      // x's rows packed (and normalised) first; then the kernel takes them in x's place, and no G
      const nw = o.swiglu ? 2 : 1, ROWS = MT * s.M, xh = { buf: ctx.alloc(ROWS * w.colsP * 2, () => `f16 rows of x [${ROWS}, ${w.colsP}]`), size: ROWS * w.colsP * 2 };
      const pack = tcRowsCache(`pack|${!!o.norm}`, () => packRowsKernel(!!o.norm));
      ctx.dispatch(pack, new Params().u32(M, K, w.colsP, row0).f32(eps), [bindings[0], ...(o.norm ? [bindings[1 + nw]] : []), xh], ROWS);
      const kernel = tcRowsCache(`stream|${s.M}x${s.N}x${s.K}|${s.subgroupSize}|${MT}|${t.subgroups}|${t.colTiles}|${t.kTile}|${!!o.swiglu}|${!!o.residual}`,
        () => tcRowsStreamKernel(s, MT, t, o));
      ctx.dispatch(kernel, params, [xh, ...bindings.slice(1, 1 + nw), ...bindings.slice(1 + nw + (o.norm ? 1 : 0))], groups);
      ctx.release(xh.buf);
      continue;
    }
    const kernel = tcRowsCache(`${s.M}x${s.N}x${s.K}|${s.subgroupSize}|${MT}|${t.subgroups}|${t.colTiles}|${t.kTile}|${!!t.weightsOnly}|${vec}|${!!o.swiglu}|${!!o.norm}|${!!o.residual}`,
      () => tcRowsGemvKernel(s, MT, t, vec, o));
    ctx.dispatch(kernel, params, bindings, groups);
  }
}

// ---- subgroup matrix (tensor cores) ----

/** Subgroup-matrix blocking: each subgroup (= workgroup) computes a BLOCK×BLOCK output block. */
const BLOCK = PACK_ROWS;

/**
 * One subgroup per workgroup; (BLOCK/M)×(BLOCK/N) result matrices per subgroup, all unrolled into
 * named variables so none is indexed dynamically (that could spill them to memory).
 */
function subgroupMatrixKernel(s: SubgroupMatrixShape & { subgroupSize: number }): Kernel {
  const TI = BLOCK / s.M, TJ = BLOCK / s.N;
  const { L, R, C } = matrixTypes(s);
  const decl: string[] = [], loop: string[] = [], full: string[] = [], edge: string[] = [];
  for (let i = 0; i < TI; i++) {
    loop.push(`let a${i} = subgroupMatrixLoad<${L}, row_major>(&X, (m0 + ${i * s.M}u) * p.Kp + k, p.Kp);`);
  }
  for (let j = 0; j < TJ; j++) {
    // w is [N, K] row-major, so wᵀ (K rows × N columns) is column-major with stride Kp
    loop.push(`let b${j} = subgroupMatrixLoad<${R}, col_major>(&W, (n0 + ${j * s.N}u) * p.Kp + k, p.Kp);`);
  }
  for (let i = 0; i < TI; i++) {
    for (let j = 0; j < TJ; j++) {
      const c = `c${i}_${j}`;
      decl.push(`var ${c} = ${C}();`);
      loop.push(`${c} = subgroupMatrixMultiplyAccumulate(a${i}, b${j}, ${c});`);
      full.push(`subgroupMatrixStore<row_major>(&Y, (m0 + ${i * s.M}u) * p.N + n0 + ${j * s.N}u, ${c}, p.N);`);
      edge.push(`subgroupMatrixStore<row_major>(&edge, 0u, ${c}, ${s.N}u);
    workgroupBarrier();
    for (var e = li; e < ${s.M * s.N}u; e += ${s.subgroupSize}u) {
      let m = m0 + ${i * s.M}u + e / ${s.N}u;
      let n = n0 + ${j * s.N}u + e % ${s.N}u;
      if (m < p.M && n < p.N) { Y[m * p.N + n] = edge[e]; }
    }
    workgroupBarrier();`);
    }
  }
  return {
    key: `matmul_f16_sgmat_${s.M}x${s.N}x${s.K}_${s.subgroupSize}`,
    bindings: ['read', 'read', 'write'],
    code: () => /* wgsl */ `enable f16;
enable chromium_experimental_subgroup_matrix;
struct P { M: u32, N: u32, Kp: u32, tilesN: u32, tiles: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> X: array<f16>;
@group(0) @binding(2) var<storage, read> W: array<f16>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;
var<workgroup> edge: array<f32, ${s.M * s.N}>;

@compute @workgroup_size(${s.subgroupSize})
fn main(${BUILTINS}) {
  ${WG_INDEX}
  if (wg >= p.tiles) { return; }
  let m0 = (wg / p.tilesN) * ${BLOCK}u;
  let n0 = (wg % p.tilesN) * ${BLOCK}u;
  ${decl.join('\n  ')}
  for (var k = 0u; k < p.Kp; k += ${s.K}u) {
    ${loop.join('\n    ')}
  }
  if (m0 + ${BLOCK}u <= p.M && n0 + ${BLOCK}u <= p.N) {
    ${full.join('\n    ')}
  } else {
    ${edge.join('\n    ')}
  }
}`,
  };
}

/**
 * The staged tensor-core kernel's tiling. A workgroup of SGM × SGN subgroups computes a
 * BM × BN = (SGM·TI·M) × (SGN·TJ·N) output tile; each subgroup owns TI × TJ result matrices. Every
 * BK-wide slab of x and w is read from global memory once per workgroup (16-byte loads, held in
 * registers while the previous slab is multiplied) and staged in workgroup memory, where the
 * subgroups load their matrices from.
 */
export interface StagedConfig {
  SGM: number; SGN: number; TI: number; TJ: number; BK: number;
  /**
   * For bench/matmul.ts only, to find what bounds the kernel: each drops parts of its loop, so
   * its results are wrong. 'mma': the multiply-adds alone, on matrices loaded once; 'smem': the
   * matrix loads from workgroup memory and the multiply-adds; 'no-global': everything but the
   * global loads (the same registers staged every slab); 'stores': that without the barriers;
   * 'barriers': the barriers, matrix loads and multiply-adds, no staging; 'memory': global loads,
   * staging and barriers, no matrix loads or multiply-adds.
   */
  ablate?: 'mma' | 'smem' | 'no-global' | 'memory' | 'stores' | 'barriers';
}
/** The tiling for large outputs (bench/matmul.ts --sweep compares them). */
export const STAGED_DEFAULT: StagedConfig = { SGM: 2, SGN: 2, TI: 4, TJ: 4, BK: 32 };
/** Half as many rows per tile (64×128), for outputs too small to fill the GPU with 128×128 tiles. */
export const STAGED_SMALL: StagedConfig = { SGM: 2, SGN: 2, TI: 2, TJ: 4, BK: 32 };
/**
 * 128×128 tiles below which STAGED_SMALL is used: about two per SM of an H100 (132 SMs). There
 * 1000³ ran at 54 TFLOP/s with 64×128 tiles against 37 with 128×128, and 16×4096×4096 at 4.9
 * against 3.1; 2048×5632×2048 (704 tiles) and 4096³ are faster with 128×128.
 */
const STAGED_SMALL_BELOW_TILES = 264;

/** Workgroup memory a staged tiling needs: both slabs, and each subgroup's edge matrix. */
export function stagedBytes(c: StagedConfig, s: SubgroupMatrixShape): number {
  const { BM, BN } = stagedTile(c, s);
  return (BM + BN) * (c.BK + 8) * 2 + c.SGM * c.SGN * s.M * s.N * 4;
}

/**
 * The tiling for an [M, N] output: staged (large or small tiles) where the device gives workgroups
 * the memory for it (WebGPU's default limit is 16 KiB, which it exceeds), else direct.
 */
export function stagedFor(M: number, N: number, s: SubgroupMatrixShape, maxWorkgroupBytes: number): StagedConfig | 'direct' {
  const c = Math.ceil(M / 128) * Math.ceil(N / 128) < STAGED_SMALL_BELOW_TILES ? STAGED_SMALL : STAGED_DEFAULT;
  return stagedBytes(c, s) <= maxWorkgroupBytes ? c : 'direct';
}

/** The output tile of a staged config for a subgroup-matrix shape. */
export const stagedTile = (c: StagedConfig, s: SubgroupMatrixShape) => ({ BM: c.SGM * c.TI * s.M, BN: c.SGN * c.TJ * s.N });

/**
 * Staged kernel: x [rowsX, Kp] and w [rowsW, Kp] are packed f16 (K zero-padded to a multiple of
 * 16, so every 8-half load is all in or all out of range); loads outside the packed matrices read
 * as zeros, so any M, N and K work. Workgroup rows are padded by 8 halves (16 bytes) so that rows
 * start in different banks.
 */
export function stagedKernel(s: SubgroupMatrixShape & { subgroupSize: number }, c: StagedConfig): Kernel {
  const { SGM, SGN, TI, TJ, BK } = c;
  const { BM, BN } = stagedTile(c, s);
  const SG = SGM * SGN, T = SG * s.subgroupSize, BKP = BK + 8, V = BK / 8; // V: 8-half loads per slab row
  if (BK % s.K !== 0 || BK % 16 !== 0) throw new Error(`staged matmul: BK ${BK} must be a multiple of 16 and of ${s.K}`);
  if ((BM * V) % T !== 0 || (BN * V) % T !== 0) throw new Error(`staged matmul: a ${BM}×${BK} or ${BN}×${BK} slab does not split over ${T} invocations`);
  const LA = (BM * V) / T, LB = (BN * V) / T;
  const { L, R, C } = matrixTypes(s);
  const pre: string[] = [], fetch: string[] = [], stage: string[] = [];
  // invocation li's share of a slab: slot e = li + l·T is row e / V, halves 8·(e % V) .. +7
  for (const [name, count, G, rows, base, tile] of [['a', LA, 'X', 'p.rowsX', 'm0', 'sa'], ['b', LB, 'W', 'p.rowsW', 'n0', 'sb']] as const) {
    for (let l = 0; l < count; l++) {
      const v = `${name}${l}`;
      pre.push(`let ${v}row = ${base} + (li + ${l * T}u) / ${V}u; let ${v}k = ((li + ${l * T}u) % ${V}u) * 8u; let ${v}o = ((li + ${l * T}u) / ${V}u) * ${BKP}u + ${v}k;`);
      pre.push(`var ${v} = vec4<u32>();`);
      fetch.push(`${v} = vec4<u32>(); if (${v}row < ${rows} && k1 + ${v}k < p.Kp) { ${v} = ${G}[(${v}row * p.Kp + k1 + ${v}k) / 8u]; }`);
      const h = [0, 1, 2, 3].map((q) => `let ${v}h${q} = bitcast<vec2<f16>>(${v}[${q}]);`).join(' ');
      const st = [0, 1, 2, 3].map((q) => `${tile}[${v}o + ${2 * q}u] = ${v}h${q}.x; ${tile}[${v}o + ${2 * q + 1}u] = ${v}h${q}.y;`).join(' ');
      stage.push(`{ ${h} ${st} }`);
    }
  }
  const decl: string[] = [], mma: string[] = [], full: string[] = [], edge: string[] = [];
  for (let kk = 0; kk < BK; kk += s.K) {
    for (let i = 0; i < TI; i++) mma.push(`let a${i}_${kk} = subgroupMatrixLoad<${L}, row_major>(&sa, (am + ${i * s.M}u) * ${BKP}u + ${kk}u, ${BKP}u);`);
    for (let j = 0; j < TJ; j++) mma.push(`let b${j}_${kk} = subgroupMatrixLoad<${R}, col_major>(&sb, (bn + ${j * s.N}u) * ${BKP}u + ${kk}u, ${BKP}u);`);
    for (let i = 0; i < TI; i++) for (let j = 0; j < TJ; j++) mma.push(`c${i}_${j} = subgroupMatrixMultiplyAccumulate(a${i}_${kk}, b${j}_${kk}, c${i}_${j});`);
  }
  for (let i = 0; i < TI; i++) {
    for (let j = 0; j < TJ; j++) {
      const cv = `c${i}_${j}`;
      decl.push(`var ${cv} = ${C}();`);
      full.push(`subgroupMatrixStore<row_major>(&Y, (m0 + am + ${i * s.M}u) * p.N + n0 + bn + ${j * s.N}u, ${cv}, p.N);`);
      edge.push(`subgroupMatrixStore<row_major>(&edge, sg * ${s.M * s.N}u, ${cv}, ${s.N}u);
    workgroupBarrier();
    for (var e = lane; e < ${s.M * s.N}u; e += ${s.subgroupSize}u) {
      let m = m0 + am + ${i * s.M}u + e / ${s.N}u;
      let n = n0 + bn + ${j * s.N}u + e % ${s.N}u;
      if (m < p.M && n < p.N) { Y[m * p.N + n] = edge[sg * ${s.M * s.N}u + e]; }
    }
    workgroupBarrier();`);
    }
  }
  const loop = (): string => {
    const body = (parts: string[]) => `for (var k0 = 0u; k0 < p.Kp; k0 += ${BK}u) {\n    ${parts.join('\n    ')}\n  }`;
    const matrices = mma.filter((l) => l.startsWith('let ')), products = mma.filter((l) => !l.startsWith('let '));
    switch (c.ablate) {
      case 'mma': return `${matrices.join('\n  ')}\n  ${body(products)}`;
      case 'smem': return body(mma);
      case 'no-global': return body([...stage, 'workgroupBarrier();', ...mma, 'workgroupBarrier();']);
      case 'memory': return body([...stage, 'workgroupBarrier();', `k1 = k0 + ${BK}u;`, ...fetch, 'workgroupBarrier();']);
      case 'stores': return body([...stage, ...mma]);
      case 'barriers': return body(['workgroupBarrier();', ...mma, 'workgroupBarrier();']);
    }
    return body([
      ...stage, 'workgroupBarrier();',
      `k1 = k0 + ${BK}u; // the next slab's loads are in flight while this one is multiplied`, ...fetch,
      ...mma, 'workgroupBarrier();',
    ]);
  };
  return {
    key: `matmul_f16_sgmat_staged_${s.M}x${s.N}x${s.K}_${s.subgroupSize}_${SGM}x${SGN}_${TI}x${TJ}_${BK}${c.ablate ? `_${c.ablate}` : ''}`,
    bindings: ['read', 'read', 'write'],
    code: () => /* wgsl */ `${SGM_PREAMBLE}
struct P { M: u32, N: u32, Kp: u32, rowsX: u32, rowsW: u32, tilesN: u32, tiles: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> X: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read> W: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;
var<workgroup> sa: array<f16, ${BM * BKP}>;
var<workgroup> sb: array<f16, ${BN * BKP}>;
var<workgroup> edge: array<f32, ${SG * s.M * s.N}>;

@compute @workgroup_size(${T})
fn main(${BUILTINS}) {
  ${WG_INDEX}
  if (wg >= p.tiles) { return; }
  let m0 = (wg / p.tilesN) * ${BM}u;
  let n0 = (wg % p.tilesN) * ${BN}u;
  // subgroups are consecutive runs of local_invocation_index (checked by checkSubgroupMatrix)
  let sg = li / ${s.subgroupSize}u;
  let lane = li % ${s.subgroupSize}u;
  let am = (sg / ${SGN}u) * ${TI * s.M}u;
  let bn = (sg % ${SGN}u) * ${TJ * s.N}u;
  ${decl.join('\n  ')}
  ${pre.join('\n  ')}
  var k1 = 0u;
  ${fetch.join('\n  ')}
  ${loop()}
  if (m0 + ${BM}u <= p.M && n0 + ${BN}u <= p.N) {
    ${full.join('\n    ')}
  } else {
    ${edge.join('\n    ')}
  }
}`,
  };
}

const sgmCache = kernelCache();

/**
 * y = x · wᵀ on tensor cores. x is packed here (and released) unless given packed (f16 in, as
 * bench/matmul.ts times the kernel alone); w is packed here too unless given packed already (an
 * f16 weight kept for inference).
 */
export function matmulSubgroupMatrix(
  ctx: GpuContext, out: GpuTensor, x: GpuTensor | { f16: F16Matrix }, w: F16Weight, M: number, N: number, K: number,
  shape: NonNullable<F16Caps['subgroupMatrix']>,
  tiling: StagedConfig | 'direct' = stagedFor(M, N, shape, ctx.device.limits.maxComputeWorkgroupStorageSize),
): void {
  if (M * N < shape.M * shape.N) {
    // Dawn sizes the output binding for at least one whole result matrix; so few outputs gain nothing anyway
    if ('f16' in x) throw new Error('matmul: a packed f16 x needs an output of at least one subgroup matrix');
    matmulF16Tiled(ctx, out, x, w, M, N, K);
    return;
  }
  const xp = 'f16' in x ? x.f16 : packF16(ctx, x, M, K);
  if ('f16' in x) checkPacked(xp, M, K);
  const wp = 'f16' in w ? w.f16 : packF16(ctx, w.f32, N, K);
  if ('f16' in w) {
    checkPacked(wp, N, K);
    if (wp.rowsP % BLOCK !== 0 || wp.colsP !== xp.colsP) throw new Error('matmul: packed f16 weight is not padded for the subgroup-matrix kernel');
  }
  if (tiling === 'direct') {
    const kernel = sgmCache(`${shape.M}x${shape.N}x${shape.K}_${shape.subgroupSize}`, () => subgroupMatrixKernel(shape));
    const tilesN = Math.ceil(N / BLOCK), tiles = tilesN * Math.ceil(M / BLOCK);
    ctx.dispatch(kernel, new Params().u32(M, N, xp.colsP, tilesN, tiles), [bindF16(xp), bindF16(wp), bind(out)], tiles);
  } else {
    const c = tiling, { BM, BN } = stagedTile(c, shape);
    const kernel = sgmCache(`staged_${shape.M}x${shape.N}x${shape.K}_${shape.subgroupSize}_${c.SGM}_${c.SGN}_${c.TI}_${c.TJ}_${c.BK}_${c.ablate ?? ''}`, () => stagedKernel(shape, c));
    const tilesN = Math.ceil(N / BN), tiles = tilesN * Math.ceil(M / BM);
    ctx.dispatch(kernel, new Params().u32(M, N, xp.colsP, xp.rowsP, wp.rowsP, tilesN, tiles), [bindF16(xp), bindF16(wp), bind(out)], tiles);
  }
  if (!('f16' in x)) ctx.release(xp.buf);
  if (!('f16' in w)) ctx.release(wp.buf);
}

/**
 * Runs the subgroup-matrix kernel once on a small matmul that crosses every block edge, with small
 * integers (exact in f16, exact sums), and compares it with the host: null when it compiles and
 * is exact, else what went wrong. The feature is experimental and its WGSL still changes between
 * Dawn versions, so the path is trusted only after this check (WebGpuBackend.create runs it). It also checks what the staged
 * kernel assumes: that subgroups are consecutive runs of local_invocation_index.
 */
export async function checkSubgroupMatrix(device: GPUDevice, adapterInfo?: GPUAdapterInfo): Promise<string | null> {
  const shape = detectF16(device, adapterInfo).subgroupMatrix;
  if (!shape) return 'the device offers no usable f16 → f32 subgroup-matrix shape';
  const M = 150, N = 140, K = 72; // one whole 128×128 tile, edge tiles, and a partial last slab of K
  const x = Float32Array.from({ length: M * K }, (_, i) => ((i * 7) % 11) - 5);
  const w = Float32Array.from({ length: N * K }, (_, i) => ((i * 5) % 9) - 4);
  const ctx = new GpuContext(device, { poolKeepBytes: 0 });
  const tensor = (shape: number[], data?: Float32Array) => {
    const t = new GpuTensor(shape, 'f32', new Storage(ctx.alloc(shape[0] * shape[1] * 4, () => 'check')));
    if (data) ctx.upload(t.buf!, data);
    return t;
  };
  device.pushErrorScope('validation');
  device.pushErrorScope('internal');
  let problem: string | null = null;
  try {
    const gx = tensor([M, K], x), gw = tensor([N, K], w);
    // every tiling matmulSubgroupMatrix picks by itself on this device
    const fits = (c: StagedConfig) => (stagedBytes(c, shape) <= device.limits.maxComputeWorkgroupStorageSize ? c : 'direct' as const);
    const tilings = [...new Set([fits(STAGED_DEFAULT), fits(STAGED_SMALL)])];
    const check = async (name: string, rows: number, run: (out: GpuTensor) => void) => {
      const out = tensor([rows, N]);
      run(out);
      const y = new Float32Array(await ctx.readBytes(out.buf!, rows * N * 4));
      for (let m = 0; m < rows && !problem; m++) {
        for (let n = 0; n < N; n++) {
          let ref = 0;
          for (let k = 0; k < K; k++) ref += x[m * K + k] * w[n * K + k];
          if (y[m * N + n] !== ref) { problem = `${name}: y[${m}, ${n}] = ${y[m * N + n]}, expected ${ref}`; break; }
        }
      }
    };
    for (const tiling of tilings) {
      const name = tiling === 'direct' ? 'direct 64×64' : `${stagedTile(tiling, shape).BM}×${stagedTile(tiling, shape).BN}`;
      await check(`${name} tiles`, M, (out) => matmulSubgroupMatrix(ctx, out, gx, { f32: gw }, M, N, K, shape, tiling));
    }
    // the batched decoding gemv, with one and two row matrices, where it fits
    const wp = packF16(ctx, gw, N, K);
    // (with N = 140 and K = 72: 9 rows staged, 20 streaming)
    for (const rows of [9, 20].filter((r) => tcRowsFor(ctx, shape, r, N, K))) {
      await check(`tensor-core gemv of ${rows} rows`, rows, (out) => matmulF16Gemv(ctx, out, gx, wp, rows, N, K, {}, shape));
    }
  } catch (e) {
    problem = (e as Error).message;
  }
  const internal = await device.popErrorScope(), validation = await device.popErrorScope();
  ctx.destroy();
  const err = validation ?? internal;
  return err ? `subgroup-matrix kernel failed to compile or run: ${err.message}` : problem;
}
