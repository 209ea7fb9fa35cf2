// The two matmuls of a linear layer's backward, as the forward's tiled kernel (a 64×64 output tile
// per workgroup, the reduction streamed through workgroup memory in slabs of 16, a 4×4 block of
// accumulators per invocation) with the operands read in other layouts:
//   matmulNN: x [M, N] · w [N, K] → [M, K]         (input gradient: dy · W)
//   matmulTN: aᵀ · b, a [M, N], b [M, K] → [N, K]   (weight gradient: dyᵀ · x)
// An operand is either reduction-contiguous ('r': A[row · R + k]) or output-contiguous
// ('o': A[k · rows + row]); each slab load is laid out so neighbouring invocations read
// neighbouring addresses.
//
// matmulTN reduces over the batch·time rows, which are many in training while the output may be a
// handful of tiles (a small weight); then the reduction is split into S ranges whose tiles go to
// separate workgroups, each writing its own partial product, and a second kernel adds the S
// partials in order. No atomics, and the result does not depend on scheduling.
//
// In 'f16-matmul' precision (mixed-precision training) both operands are rounded to f16 as they
// are loaded, the products summed in f32 — as the forward's f16 paths do. Where the device has
// subgroup matrices, those products go to the forward's tensor-core kernel instead, the operands
// that reduce over their rows packed transposed (packF16's `transposed`).
import { type GpuContext, type Kernel, Params } from './context.js';
import { scratch, sumRows } from './grad-reduce.js';
import { type GpuTensor, bind } from './tensor.js';
import { BUILTINS, WG_INDEX } from './wgsl.js';
import { PACK_K, PACK_ROWS, ROUND_F16, type TensorCores, matmulSubgroupMatrix, packF16 } from './matmul-f16.js';

type Layout = 'r' | 'o';

const BM = 64, BN = 64, BK = 16, TM = 4, TN = 4;
const WX = BN / TN, WY = BM / TM; // 16 × 16 invocations
const THREADS = WX * WY;
const SA = BM + 4, SB = BN + 4;
const LOADS = (BM * BK) / THREADS; // values of each slab one invocation loads

/** Loads of one slab: `tile[c][r]` = operand(row0 + r, k0 + c), zero outside the matrix or the range. */
function slabLoad(tile: string, stride: number, src: string, layout: Layout, row0: string, rows: string, f16: boolean): string {
  // 'r': consecutive invocations walk k (contiguous); 'o': they walk the rows (contiguous)
  const rc = layout === 'r'
    ? `let r = e / ${BK}u;\n      let c = e % ${BK}u;`
    : `let r = e % ${BM}u;\n      let c = e / ${BM}u;`;
  const at = layout === 'r' ? `(${row0} + r) * p.R + k` : `k * ${rows} + ${row0} + r`;
  return `for (var l = 0u; l < ${LOADS}u; l++) {
      let e = li + l * ${THREADS}u;
      ${rc}
      let k = k0 + c;
      var v = 0.0;
      if (${row0} + r < ${rows} && k < kEnd) { v = ${f16 ? `round_f16(${src}[${at}])` : `${src}[${at}]`}; }
      ${tile}[c * ${stride}u + r] = v;
    }`;
}

function tiledKernel(a: Layout, b: Layout, f16: boolean): Kernel {
  return {
    key: `grad_matmul_${a}${b}${f16 ? '_f16' : ''}`,
    bindings: ['read', 'read', 'write'],
    code: () => /* wgsl */ `${f16 ? ROUND_F16 : ''}
struct P { M: u32, N: u32, R: u32, tilesN: u32, tiles: u32, kPer: u32, total: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(2) var<storage, read> B: array<f32>;
// [M, N], or with splits the partials [splits, M, N]
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;
var<workgroup> tileA: array<f32, ${BK * SA}>;
var<workgroup> tileB: array<f32, ${BK * SB}>;

@compute @workgroup_size(${WX}, ${WY})
fn main(${BUILTINS}, @builtin(local_invocation_id) lid: vec3<u32>) {
  ${WG_INDEX}
  if (wg >= p.total) { return; }
  let split = wg / p.tiles;
  let tile = wg % p.tiles;
  let m0 = (tile / p.tilesN) * ${BM}u;
  let n0 = (tile % p.tilesN) * ${BN}u;
  let kBeg = split * p.kPer;
  let kEnd = min(p.R, kBeg + p.kPer);
  var acc: array<f32, ${TM * TN}>;
  for (var k0 = kBeg; k0 < kEnd; k0 += ${BK}u) {
    ${slabLoad('tileA', SA, 'A', a, 'm0', 'p.M', f16)}
    ${slabLoad('tileB', SB, 'B', b, 'n0', 'p.N', f16)}
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
  let base = split * p.M * p.N;
  for (var i = 0u; i < ${TM}u; i++) {
    let m = m0 + lid.y + i * ${WY}u;
    if (m >= p.M) { break; }
    for (var j = 0u; j < ${TN}u; j++) {
      let n = n0 + lid.x + j * ${WX}u;
      if (n < p.N) { Y[base + m * p.N + n] = acc[i * ${TN}u + j]; }
    }
  }
}`,
  };
}

const NN = [tiledKernel('r', 'o', false), tiledKernel('r', 'o', true)];
const TN_ = [tiledKernel('o', 'o', false), tiledKernel('o', 'o', true)];

/** Workgroups worth having before a long reduction is split across more of them. */
const TARGET_WORKGROUPS = 128;
/** Fewest reduction steps a split should get. */
const MIN_SPLIT_R = 256;
const MAX_SPLITS = 32;

/** out [M, N] = Σ_k A(m, k) · B(n, k) over k < R. */
function run(ctx: GpuContext, kernel: Kernel, out: GpuTensor, a: GpuTensor, b: GpuTensor, M: number, N: number, R: number): void {
  if (M === 0 || N === 0) return;
  if (R === 0) { ctx.clear(out.buf!, 0, out.bytes); return; }
  const tilesN = Math.ceil(N / BN), tiles = tilesN * Math.ceil(M / BM);
  let splits = Math.max(1, Math.min(MAX_SPLITS, Math.ceil(TARGET_WORKGROUPS / tiles), Math.floor(R / MIN_SPLIT_R)));
  // the partials must fit one binding
  splits = Math.max(1, Math.min(splits, Math.floor(ctx.maxBinding / (M * N * 4))));
  const kPer = Math.ceil(Math.ceil(R / splits) / BK) * BK;
  splits = Math.ceil(R / kPer); // no empty ranges
  const params = new Params().u32(M, N, R, tilesN, tiles, kPer, tiles * splits);
  if (splits === 1) {
    ctx.dispatch(kernel, params, [bind(a), bind(b), bind(out)], tiles);
    return;
  }
  const part = scratch(ctx, splits * M * N, () => `matmul partials (${splits} × [${M}, ${N}])`);
  ctx.dispatch(kernel, params, [bind(a), bind(b), bind(part)], tiles * splits);
  sumRows(ctx, out, part, splits, M * N);
  ctx.release(part.buf!);
}

/**
 * Whether an f16 product with `rows` × `cols` outputs and a reduction of R goes to tensor cores
 * (tc: the device's shape): the kernel writes whole result matrices through its output binding,
 * and both operands' f16 copies (rows and cols padded to PACK_ROWS, R to PACK_K) must fit one binding each;
 * else the tiled kernel, which needs no copies.
 */
export function onTensorCores(ctx: Pick<GpuContext, 'maxBinding'>, tc: TensorCores, rows: number, cols: number, R: number): tc is NonNullable<TensorCores> {
  const copy = (n: number) => Math.ceil(n / PACK_ROWS) * PACK_ROWS * Math.ceil(R / PACK_K) * PACK_K * 2;
  return tc !== null && R > 0 && rows * cols >= tc.M * tc.N && Math.max(copy(rows), copy(cols)) <= ctx.maxBinding;
}

/** out [M, K] = x [M, N] · w [N, K]; f16: operands rounded to f16 (on tensor cores where `tc` is given) */
export function matmulNN(ctx: GpuContext, out: GpuTensor, x: GpuTensor, w: GpuTensor, M: number, N: number, K: number, f16 = false, tc: TensorCores = null): void {
  if (f16 && onTensorCores(ctx, tc, M, K, N)) {
    const wT = packF16(ctx, w, N, K, PACK_ROWS, true); // [K, N]: x · (wᵀ)ᵀ
    matmulSubgroupMatrix(ctx, out, x, { f16: wT }, M, K, N, tc);
    ctx.release(wT.buf);
    return;
  }
  run(ctx, NN[+f16], out, x, w, M, K, N);
}

/** out [N, K] = a [M, N]ᵀ · b [M, K]; f16: operands rounded to f16 (on tensor cores where `tc` is given) */
export function matmulTN(ctx: GpuContext, out: GpuTensor, a: GpuTensor, b: GpuTensor, M: number, N: number, K: number, f16 = false, tc: TensorCores = null): void {
  if (f16 && onTensorCores(ctx, tc, N, K, M)) {
    const aT = packF16(ctx, a, M, N, PACK_ROWS, true), bT = packF16(ctx, b, M, K, PACK_ROWS, true); // [N, M], [K, M]
    matmulSubgroupMatrix(ctx, out, { f16: aT }, { f16: bT }, N, K, M, tc);
    ctx.release(aT.buf); ctx.release(bT.buf);
    return;
  }
  run(ctx, TN_[+f16], out, a, b, N, K, M);
}
