// Windowed attention on tensor cores (mixed precision, or tensor cores asked for): the tiled
// forward, over a KV cache as flash-attention.ts reads it or, for training, keeping each row's
// log-sum-exp L (its 'logsumexp' mode); and the backward of flash-backward.ts. Their products are
// subgroup-matrix multiply-adds on f16 copies of q, k, v (and dO), accumulated in f32.
//
// A workgroup is SGS subgroups; subgroup sg owns s.M "rows" (queries of one head, or for dk/dv keys
// of one KV head) and walks the tiles of BC "columns" (keys; or queries of one head of the group,
// head by head) that its workgroup's rows see. A product over hs (S = rows·colsᵀ) lands in the
// subgroup's [s.M, BC] slice of workgroup memory, where its lanes apply the softmax's elementwise
// steps (masking, exp) and write f16 probabilities back as the left matrix of the next product.
// Accumulators are result matrices that live across the tiles, so nothing is rescaled online:
//   forward: pass 1 walks the tiles for each row's max and Σ exp, giving L; pass 2 recomputes S and
//     accumulates o += exp(S/√hs − L)·V, already normalised (three products instead of two, all on
//     tensor cores);
//   backward, per tile: S → p = exp(S/√hs − L), masked, kept per lane; dP = (dO or v rows)·(v or dO
//     cols)ᵀ → dS = p (dP − δ)/√hs as f16; dq += dS·K (rows: queries), or dv += P·dO and dk += dS·Q
//     (rows: keys).
// The rows' matrices load straight from the packed f16 copies in global memory (each s.M-row block
// at one row stride: a head's consecutive positions); each column tile (k and v, or q and dO) is
// staged once in workgroup memory with 16-byte loads and read there by every subgroup (H100: the
// three kernels 20.9 / 19.4 / 29.3 → 16.4 / 14.1 / 15.7 ms a samba-421m step, against every
// subgroup loading its right matrices from global memory, with 64-column tiles). Rows past T read
// finite values that masked zeros multiply.
import { type GpuContext, type Kernel, Params, kernelCache } from './context.js';
import type { AttentionGradDims } from './grad-attention.js';
import { type SubgroupMatrixShape, type TensorCores, SGM_PREAMBLE, bindF16, matrixTypes, packF16 } from './matmul-f16.js';
import { type GpuTensor, bind } from './tensor.js';
import { BUILTINS, NEG_BIG, WG_INDEX, lines } from './wgsl.js';

type Shape = SubgroupMatrixShape & { subgroupSize: number };
type FlashDims = Pick<AttentionGradDims, 'B' | 'T' | 'H' | 'Hkv' | 'hs' | 'window'> & { C?: number };

/** Subgroups per workgroup, and columns per tile. */
const SGS = 4;
const BC = 32;
/** Row stride (halves) of a staged column tile: 16 bytes of padding spread its rows over the banks. */
const tileStride = (hs: number) => hs + 8;

/**
 * Workgroup memory of the largest kernel, the dk/dv one: S or dP (f32), P and dS (f16), the two
 * staged column tiles, L and δ.
 */
function tcBytes(s: Shape, hs: number): number {
  return SGS * s.M * BC * (4 + 2 + 2) + 2 * BC * tileStride(hs) * 2 + 2 * 4 * Math.max(BC, SGS * s.M, SGS * s.subgroupSize);
}

/** For benches (throughput.ts --tc-attention off): false keeps every attention on the f32 kernels. */
export const tcAttention = { enabled: true };

/** Whether attention on tensor cores takes head size hs on this subgroup-matrix shape and device. */
export function tcFits(s: Shape, hs: number, maxWorkgroupBytes: number): boolean {
  return tcAttention.enabled && hs > 0 && hs <= 256 && hs % s.K === 0 && hs % s.N === 0 && BC % s.N === 0 && BC % s.K === 0
    && (s.M * BC) % s.subgroupSize === 0 && s.subgroupSize % s.M === 0 && tcBytes(s, hs) <= maxWorkgroupBytes;
}

/** The tensor-core shape attention of head size hs takes on ctx's device (from the caller's `tc`), or null: the f32 kernels. */
export const tcFor = (ctx: GpuContext, tc: TensorCores, hs: number): Shape | null =>
  (tc && tcFits(tc, hs, ctx.device.limits.maxComputeWorkgroupStorageSize) ? tc : null);

/**
 * WGSL pieces shared by the kernels, for rows read at row stride RS and columns at CS (the packed
 * copies' widths). In scope where they run: li, sg, lane, slice (this subgroup's offset in SF),
 * aOff (the subgroup's first row, head offset included) and bOff (the tile's first column, likewise).
 * Rows' matrices load from global memory; a tile's columns are staged in workgroup memory first,
 * where all subgroups read them.
 */
function pieces(s: Shape, hs: number, RS: string, CS: string) {
  const SG = s.subgroupSize, NT = BC / s.N, ET = hs / s.N, PER = (s.M * BC) / SG, HP = tileStride(hs), V = hs / 8;
  const { L, R, C } = matrixTypes(s);
  return {
    ET, PER, C,
    /** Declares a staged column tile [BC, hs] (row stride HP). */
    tile: (T: string) => `var<workgroup> ${T}: array<f16, ${BC * HP}>;`,
    /**
     * Copies the tile's BC rows of B (an array of 8-half vectors) into T, 16 bytes per load (the
     * caller adds the barriers). With `cache` (the forward over a KV cache), row j = kt0 + row is
     * key position j: from the cache's ring buffer (slot j mod C) before p0, else new row j − p0.
     */
    stage: (B: string, T: string, cache?: string) => /* wgsl */ `
    for (var x = li; x < ${BC * V}u; x += ${SGS * SG}u) {
      let row = x / ${V}u;
      let col = (x % ${V}u) * 8u;
      var v = vec4<u32>();
      ${cache ? `let j = kt0 + i32(row);
      if (j < p0) {
        if (p.C > 0u) {
          let gi = ((b * p.C + u32(j) % p.C) * ${CS} + kvh * ${hs}u + col) / 8u;
          if (gi < arrayLength(&${cache})) { v = ${cache}[gi]; }
        }
      } else {
        let gi = ((b * p.T + u32(j - p0)) * ${CS} + kvh * ${hs}u + col) / 8u;
        if (gi < arrayLength(&${B})) { v = ${B}[gi]; }
      }` : `let gi = (bOff + row * ${CS} + col) / 8u;
      if (gi < arrayLength(&${B})) { v = ${B}[gi]; }`}
      let o = row * ${HP}u + col;
      ${lines(4, (q) => `let h${q} = bitcast<vec2<f16>>(v[${q}]); ${T}[o + ${2 * q}u] = h${q}.x; ${T}[o + ${2 * q + 1}u] = h${q}.y;`, '\n      ')}
    }`,
    /** rows·colsᵀ over hs (the columns staged in T) into this subgroup's slice of SF: [s.M, BC] */
    product: (A: string, T: string) => /* wgsl */ `{
      ${lines(NT, (n) => `var s${n} = ${C}();`, '\n      ')}
      for (var kk = 0u; kk < ${hs}u; kk += ${s.K}u) {
        let a = subgroupMatrixLoad<${L}, row_major>(&${A}, aOff + kk, ${RS});
        ${lines(NT, (n) => `s${n} = subgroupMatrixMultiplyAccumulate(a, subgroupMatrixLoad<${R}, col_major>(&${T}, ${n * s.N * HP}u + kk, ${HP}u), s${n});`, '\n        ')}
      }
      ${lines(NT, (n) => `subgroupMatrixStore<row_major>(&SF, slice + ${n * s.N}u, s${n}, ${BC}u);`, '\n      ')}
    }`,
    /** acc0 … acc(ET−1) += (this slice of P, an f16 [s.M, BC] array) · the columns staged in T [BC, hs] */
    accumulate: (acc: string, P: string, T: string) => /* wgsl */ `
    for (var kc = 0u; kc < ${BC}u; kc += ${s.K}u) {
      let a = subgroupMatrixLoad<${L}, row_major>(&${P}, slice + kc, ${BC}u);
      ${lines(ET, (e) => `${acc}${e} = subgroupMatrixMultiplyAccumulate(a, subgroupMatrixLoad<${R}, row_major>(&${T}, kc * ${HP}u + ${e * s.N}u, ${HP}u), ${acc}${e});`, '\n      ')}
    }`,
    /** body for each of the lane's elements of the slice: e = lane + SG·x, at row r (of the workgroup's) and column c */
    elementwise: (body: string) => /* wgsl */ `
    for (var x = 0u; x < ${PER}u; x++) {
      let e = lane + x * ${SG}u;
      let r = sg * ${s.M}u + e / ${BC}u;
      let c = e % ${BC}u;
      ${body}
    }`,
    /** Writes accumulators acc·e to OUT [B·T, width] at the rows' positions pos0 + …, through SF */
    store: (acc: string, OUT: string, width: string, pos0: string, head: string) => lines(ET, (e) => /* wgsl */ `
  subgroupMatrixStore<row_major>(&SF, slice, ${acc}${e}, ${s.N}u);
  workgroupBarrier();
  for (var x = lane; x < ${s.M * s.N}u; x += ${SG}u) {
    let t = ${pos0} + sg * ${s.M}u + x / ${s.N}u;
    if (t < p.T) { ${OUT}[(b * p.T + t) * ${width} + ${head} * ${hs}u + ${e * s.N}u + x % ${s.N}u] = SF[slice + x]; }
  }
  workgroupBarrier();`),
  };
}

/**
 * Parameters (C: the KV cache's capacity, 0 without one) and the packed q, k, v (and dO) from
 * binding `first` on: the rows' operands as f16 arrays, the staged columns' as 8-half vectors.
 */
const HEAD = (columns: string[], dO: boolean, first = 1) => /* wgsl */ `
struct P { T: u32, H: u32, Hkv: u32, group: u32, window: i32, nTiles: u32, total: u32, QS: u32, KS: u32, scale: f32, C: u32 }
@group(0) @binding(0) var<uniform> p: P;
${['QH', 'KH', 'VH', ...(dO ? ['DOH'] : [])].map((x, i) => `@group(0) @binding(${i + first}) var<storage, read> ${x}: array<${columns.includes(x) ? 'vec4<u32>' : 'f16'}>;`).join('\n')}`;

// the workgroup's head h (of KV head kvh) of sequence b, its rows t0 … tLast, the subgroup's first
// row in QH (aOff)
const QUERY_TILE = (RW: number, s: Shape, hs: number) => /* wgsl */ `
  let tile = p.nTiles - 1u - wg % p.nTiles; // the longest rows first
  let bh = wg / p.nTiles;
  let h = bh % p.H;
  let b = bh / p.H;
  let kvh = h / p.group;
  let t0 = tile * ${RW}u;
  let tLast = min(t0 + ${RW}u, p.T) - 1u;
  let aOff = (b * p.T + t0 + sg * ${s.M}u) * p.QS + h * ${hs}u;`;

/** The first key tile: the first key that row t0 (at position p0 + t0) sees, down to a whole block. */
const FIRST_KEY = (s: Shape) => `let jStart = max(max(0, p0 + i32(t0) - p.window + 1), p0 - i32(p.C)) & ~${s.N - 1};`;

/**
 * The dk/dv kernels' tile (here and in flash-backward.ts) of `rows` keys j0 … jLast of KV head kvh
 * of sequence b, and the last query position tEnd that sees one of them.
 */
export const KEY_TILE = (rows: number): string => /* wgsl */ `  let tile = wg % p.nTiles; // the earliest keys are seen by the most queries under full attention
  let bh = wg / p.nTiles;
  let kvh = bh % p.Hkv;
  let b = bh / p.Hkv;
  let j0 = tile * ${rows}u;
  let jLast = min(j0 + ${rows}u, p.T) - 1u;
  let tEnd = u32(min(i32(p.T) - 1, i32(jLast) + p.window - 1));`;

/** L and δ of query positions pos0 … pos0 + n − 1 of head h into RL and RD (zeros past T). */
const loadStats = (n: number, pos0: string): string => /* wgsl */ `if (li < ${n}u) {
    var l = 0.0;
    var d = 0.0;
    if (${pos0} + li < p.T) { let row = (b * p.T + ${pos0} + li) * p.H + h; l = LD[2u * row]; d = LD[2u * row + 1u]; }
    RL[li] = l;
    RD[li] = d;
  }`;

/** Key position j inside the causal window of position t. */
const IN_WINDOW = 'j <= t && t - j < p.window';

const SUBGROUP = (s: Shape) => /* wgsl */ `
  // subgroups are consecutive runs of local_invocation_index (checked by checkSubgroupMatrix)
  let sg = li / ${s.subgroupSize}u;
  let lane = li % ${s.subgroupSize}u;
  let slice = sg * ${s.M * BC}u;`;

/**
 * The forward: o [B·T, H·hs] and, for training (whole sequences from 0), each row's L into
 * LD [B·T·H, 2]; or, with `cache`, over a KV cache (keys before each sequence's pos0 in its ring
 * buffer, f16) and the new keys, as flash-attention.ts reads them.
 */
function forwardKernel(s: Shape, hs: number, cache: boolean): Kernel {
  const SG = s.subgroupSize, RW = SGS * s.M, LPR = SG / s.M, CPL = BC / LPR;
  const k = pieces(s, hs, 'p.QS', 'p.KS');
  // key position j, seen from position t: inside the window and, with a cache, still in it
  const visible = `${IN_WINDOW} && j >= p0 - i32(p.C)`;
  // the lane's columns in a rotated order, so that at each step the lanes of a subgroup read
  // different banks (rows are BC floats apart: without it, every lane of the same column half
  // would hit one bank)
  const column = `let c = c0 + (cc + myRow + ${s.M}u * (lane % ${LPR}u)) % ${CPL}u; let t = p0 + tr; let j = kt0 + i32(c);`;
  return {
    key: `flash_attention_tc_${s.M}x${s.N}x${s.K}_${SG}_${hs}${cache ? '_cache' : ''}`,
    bindings: cache ? ['ints', 'read', 'read', 'read', 'read', 'read', 'write'] : ['read', 'read', 'read', 'write', 'write'],
    code: () => /* wgsl */ `${SGM_PREAMBLE}
${cache ? `${HEAD(['KH', 'VH'], false, 2)}
@group(0) @binding(1) var<storage, read> POS0: array<i32>;
@group(0) @binding(5) var<storage, read> KC: array<vec4<u32>>;
@group(0) @binding(6) var<storage, read> VC: array<vec4<u32>>;
@group(0) @binding(7) var<storage, read_write> Y: array<f32>;` : `${HEAD(['KH', 'VH'], false)}
@group(0) @binding(4) var<storage, read_write> Y: array<f32>;
@group(0) @binding(5) var<storage, read_write> LD: array<f32>;`}
${k.tile('TK')}
${k.tile('TV')}
var<workgroup> SF: array<f32, ${SGS * s.M * BC}>;
var<workgroup> SP: array<f16, ${SGS * s.M * BC}>;
var<workgroup> laneM: array<f32, ${SGS * SG}>;
var<workgroup> laneL: array<f32, ${SGS * SG}>;
var<workgroup> RL: array<f32, ${RW}>;

@compute @workgroup_size(${SGS * SG})
fn main(${BUILTINS}) {
  ${WG_INDEX}
  if (wg >= p.total) { return; }
  ${SUBGROUP(s)}
  ${QUERY_TILE(RW, s, hs)}
  let p0 = ${cache ? 'POS0[b]' : '0'};
  ${FIRST_KEY(s)}
  let jEnd = p0 + i32(tLast);
  // pass 1: ${LPR} lanes per row, ${CPL} columns each, keep a running max m and Σ exp(s − m)
  let myRow = lane / ${LPR}u;
  let c0 = (lane % ${LPR}u) * ${CPL}u;
  let tr = i32(t0 + sg * ${s.M}u + myRow);
  var m = ${NEG_BIG};
  var l = 0.0;
  for (var kt0 = jStart; kt0 <= jEnd; kt0 += ${BC}) {
    let bOff = (b * p.T + u32(kt0)) * p.KS + kvh * ${hs}u;
    ${k.stage('KH', 'TK', cache ? 'KC' : undefined)}
    workgroupBarrier();
    ${k.product('QH', 'TK')}
    workgroupBarrier();
    var tm = ${NEG_BIG};
    for (var cc = 0u; cc < ${CPL}u; cc++) {
      ${column}
      if (${visible}) { tm = max(tm, SF[slice + myRow * ${BC}u + c] * p.scale); }
    }
    let mNew = max(m, tm);
    var sum = 0.0;
    for (var cc = 0u; cc < ${CPL}u; cc++) {
      ${column}
      if (${visible}) { sum += exp(SF[slice + myRow * ${BC}u + c] * p.scale - mNew); }
    }
    l = l * exp(m - mNew) + sum;
    m = mNew;
    workgroupBarrier(); // SF's and TK's readers are done
  }
  laneM[li] = m;
  laneL[li] = l;
  workgroupBarrier();
  if (lane % ${LPR}u == 0u) {
    var mRow = ${NEG_BIG};
    for (var q = 0u; q < ${LPR}u; q++) { mRow = max(mRow, laneM[li + q]); }
    var lRow = 0.0;
    for (var q = 0u; q < ${LPR}u; q++) { lRow += laneL[li + q] * exp(laneM[li + q] - mRow); }
    RL[sg * ${s.M}u + myRow] = mRow + log(lRow);
  }
  // pass 2: o += exp(S/√hs − L)·V
  ${lines(k.ET, (e) => `var o${e} = ${k.C}();`, ' ')}
  for (var kt0 = jStart; kt0 <= jEnd; kt0 += ${BC}) {
    let bOff = (b * p.T + u32(kt0)) * p.KS + kvh * ${hs}u;
    workgroupBarrier(); // the last tile's readers are done
    ${k.stage('KH', 'TK', cache ? 'KC' : undefined)}
    ${k.stage('VH', 'TV', cache ? 'VC' : undefined)}
    workgroupBarrier();
    ${k.product('QH', 'TK')}
    workgroupBarrier();
    ${k.elementwise(/* wgsl */ `let t = p0 + i32(t0 + r);
      let j = kt0 + i32(c);
      var pr = 0.0;
      if (t0 + r < p.T && ${visible}) { pr = exp(SF[slice + e] * p.scale - RL[r]); }
      SP[slice + e] = f16(pr);`)}
    workgroupBarrier();
    ${k.accumulate('o', 'SP', 'TV')}
  }
  ${cache ? '' : `if (li < ${RW}u && t0 + li < p.T) { LD[2u * ((b * p.T + t0 + li) * p.H + h)] = RL[li]; }`}
  workgroupBarrier();
  ${k.store('o', 'Y', 'p.QS', 't0', 'h')}
}`,
  };
}

/** The backward's dq kernel (rows: queries of one head), or its dk/dv kernel (rows: keys of one KV head). */
function backwardKernel(s: Shape, hs: number, dq: boolean): Kernel {
  const SG = s.subgroupSize, RW = SGS * s.M;
  // rows' operands (A1 with the columns' B1 for S, A2 with B2 for dP; B1 and B2 staged in T1 and T2)
  const [A1, A2, B1, B2] = dq ? ['QH', 'DOH', 'KH', 'VH'] : ['KH', 'VH', 'QH', 'DOH'];
  const k = dq ? pieces(s, hs, 'p.QS', 'p.KS') : pieces(s, hs, 'p.KS', 'p.QS');
  const accs = dq ? ['dq'] : ['dv', 'dk'];
  // row r's (dq: query) or column c's (dk/dv: query) position t, key position j
  const positions = dq ? 'let t = i32(t0 + r); let j = kt0 + i32(c);' : 'let t = i32(tq0 + c); let j = i32(j0 + r);';
  const stats = dq ? 'r' : 'c';
  return {
    key: `flash_bwd_tc_${dq ? 'dq' : 'dkv'}_${s.M}x${s.N}x${s.K}_${SG}_${hs}`,
    bindings: ['read', 'read', 'read', 'read', 'read', 'write', ...(dq ? [] : ['write' as const])],
    code: () => /* wgsl */ `${SGM_PREAMBLE}
${HEAD([B1, B2], true)}
@group(0) @binding(5) var<storage, read> LD: array<f32>;
${k.tile('T1')}
${k.tile('T2')}
${dq ? '@group(0) @binding(6) var<storage, read_write> DQ: array<f32>;' : '@group(0) @binding(6) var<storage, read_write> DK: array<f32>;\n@group(0) @binding(7) var<storage, read_write> DV: array<f32>;'}
var<workgroup> SF: array<f32, ${SGS * s.M * BC}>;
var<workgroup> SDS: array<f16, ${SGS * s.M * BC}>;
${dq ? '' : `var<workgroup> SP: array<f16, ${SGS * s.M * BC}>;`}
// L and δ of the ${dq ? 'rows' : "current tile's columns"} (0 past T)
var<workgroup> RL: array<f32, ${dq ? RW : BC}>;
var<workgroup> RD: array<f32, ${dq ? RW : BC}>;

@compute @workgroup_size(${SGS * SG})
fn main(${BUILTINS}) {
  ${WG_INDEX}
  if (wg >= p.total) { return; }
  ${SUBGROUP(s)}
  ${accs.map((a) => lines(k.ET, (e) => `var ${a}${e} = ${k.C}();`, ' ')).join('\n  ')}
  var pv: array<f32, ${k.PER}>;
${dq ? /* wgsl */ `${QUERY_TILE(RW, s, hs)}
  let p0 = 0; // whole sequences
  ${FIRST_KEY(s)}
  ${loadStats(RW, 't0')}
  for (var kt0 = jStart; kt0 <= i32(tLast); kt0 += ${BC}) {
    let bOff = (b * p.T + u32(kt0)) * p.KS + kvh * ${hs}u;
    workgroupBarrier(); // the last tile's readers are done` : /* wgsl */ `${KEY_TILE(RW)}
  let aOff = (b * p.T + j0 + sg * ${s.M}u) * p.KS + kvh * ${hs}u;
  for (var g = 0u; g < p.group; g++) {
    let h = kvh * p.group + g;
    for (var tq0 = j0; tq0 <= tEnd; tq0 += ${BC}u) {
    workgroupBarrier(); // RL, RD and the staged tiles' last readers are done
    ${loadStats(BC, 'tq0')}
    let bOff = (b * p.T + tq0) * p.QS + h * ${hs}u;`}
    ${k.stage(B1, 'T1')}
    ${k.stage(B2, 'T2')}
    workgroupBarrier();
    ${k.product(A1, 'T1')}
    workgroupBarrier();
    ${k.elementwise(/* wgsl */ `${positions}
      var pr = 0.0;
      if (t < i32(p.T) && ${IN_WINDOW}) { pr = exp(SF[slice + e] * p.scale - RL[${stats}]); }
      pv[x] = pr;${dq ? '' : '\n      SP[slice + e] = f16(pr);'}`)}
    workgroupBarrier();
    ${k.product(A2, 'T2')}
    workgroupBarrier();
    ${k.elementwise(`SDS[slice + e] = f16(pv[x] * (SF[slice + e] - RD[${stats}]) * p.scale);`)}
    workgroupBarrier();
    ${dq ? k.accumulate('dq', 'SDS', 'T1') : `${k.accumulate('dv', 'SP', 'T2')}
    ${k.accumulate('dk', 'SDS', 'T1')}`}
  }${dq ? '' : '\n  }'}
  workgroupBarrier();
  ${dq ? k.store('dq', 'DQ', 'p.QS', 't0', 'h') : `${k.store('dk', 'DK', 'p.KS', 'j0', 'kvh')}\n${k.store('dv', 'DV', 'p.KS', 'j0', 'kvh')}`}
}`,
  };
}

const cached = kernelCache();

/** f16 copies of [B·T, width] tensors, the kernels' parameters for grids over h heads, the tiles per (b, head), a cache key. */
function setup(ctx: GpuContext, d: FlashDims, s: Shape, xs: [GpuTensor, number][]) {
  const packed = xs.map(([x, width]) => packF16(ctx, x, d.B * d.T, width));
  if (packed.some((m, i) => m.colsP !== xs[i][1])) throw new Error('attention on tensor cores: the head size must be a multiple of 16');
  const tiles = Math.ceil(d.T / (SGS * s.M));
  const params = (h: number) => new Params().u32(d.T, d.H, d.Hkv, d.H / d.Hkv).i32(Math.min(d.window, 2 ** 30))
    .u32(tiles, d.B * h * tiles, d.H * d.hs, d.Hkv * d.hs).f32(1 / Math.sqrt(d.hs)).u32(d.C ?? 0);
  return { packed, params, tiles, key: `${s.M}x${s.N}x${s.K}_${s.subgroupSize}_${d.hs}` };
}

/**
 * The forward on tensor cores (tcFits must hold). Training (`ld`): whole sequences from position
 * 0, each query row's L into ld[2·row] (flashAttention's 'logsumexp' mode). Otherwise over the KV
 * cache kc/vc [B, C, Hkv·hs] (f32, packed to f16 here, or f16 as stored; unread when C = 0) from
 * each sequence's pos0, as flashAttention reads it.
 */
export function flashForwardTensorCores(
  ctx: GpuContext, out: GpuTensor, q: GpuTensor, k: GpuTensor, v: GpuTensor, d: FlashDims, s: Shape,
  at: { ld: GpuTensor } | { kc: GpuTensor; vc: GpuTensor; pos0: Int32Array },
): void {
  const x = setup(ctx, d, s, [[q, d.H * d.hs], [k, d.Hkv * d.hs], [v, d.Hkv * d.hs]]);
  if ('ld' in at) {
    ctx.dispatch(cached(`fwd${x.key}`, () => forwardKernel(s, d.hs, false)), x.params(d.H), [...x.packed.map(bindF16), bind(out), bind(at.ld)], d.B * d.H * x.tiles);
  } else {
    // the cache as halves: an f16 cache is bound as it is stored; an f32 one (or none: any buffer) is packed
    const C = d.C ?? 0, F = d.Hkv * d.hs;
    const halves = (c: GpuTensor) => (c.dtype === 'f16' ? { buf: c.buf!, size: c.bytes, offset: c.offset, pooled: null }
      : C > 0 ? (({ buf, rowsP, colsP }) => ({ buf, size: rowsP * colsP * 2, offset: 0, pooled: buf }))(packF16(ctx, c, d.B * C, F))
        : { buf: x.packed[1].buf, size: 16, offset: 0, pooled: null });
    const [kc, vc] = [halves(at.kc), halves(at.vc)];
    const [qh, kh, vh] = x.packed.map(bindF16);
    ctx.dispatch(cached(`fwdc${x.key}`, () => forwardKernel(s, d.hs, true)), x.params(d.H),
      [at.pos0, qh, kh, vh, { buf: kc.buf, size: kc.size, offset: kc.offset }, { buf: vc.buf, size: vc.size, offset: vc.offset }, bind(out)], d.B * d.H * x.tiles);
    for (const c of [kc, vc]) if (c.pooled) ctx.release(c.pooled);
  }
  for (const m of x.packed) ctx.release(m.buf);
}

/**
 * dq, dk, dv on tensor cores (tcFits must hold), from L and δ per query row in ld [B·T·H, 2].
 * q, k, v and dO are packed to f16 here and released after.
 */
export function flashBackwardTensorCores(
  ctx: GpuContext, dq: GpuTensor, dk: GpuTensor, dv: GpuTensor,
  q: GpuTensor, k: GpuTensor, v: GpuTensor, dO: GpuTensor, ld: GpuTensor, d: FlashDims, s: Shape,
): void {
  const x = setup(ctx, d, s, [[q, d.H * d.hs], [k, d.Hkv * d.hs], [v, d.Hkv * d.hs], [dO, d.H * d.hs]]);
  const ins = [...x.packed.map(bindF16), bind(ld)];
  ctx.dispatch(cached(`dq${x.key}`, () => backwardKernel(s, d.hs, true)), x.params(d.H), [...ins, bind(dq)], d.B * d.H * x.tiles);
  ctx.dispatch(cached(`dkv${x.key}`, () => backwardKernel(s, d.hs, false)), x.params(d.Hkv), [...ins, bind(dk), bind(dv)], d.B * d.Hkv * x.tiles);
  for (const m of x.packed) ctx.release(m.buf);
}
