// Tiled backward of causal sliding-window attention (whole sequences from position 0, no cache), the
// flash-attention-2 scheme in f32 with no atomics (fixed summation orders, bitwise reproducible).
// With s_ij = q_i·k_j/√hs, p_ij = exp(s_ij − L_i), δ_i = dO_i·o_i:
//   dp_ij = dO_i·v_j ;  ds_ij = p_ij (dp_ij − δ_i) / √hs
//   dq_i = Σ_j ds_ij k_j ;  dk_j = Σ_i ds_ij q_i ;  dv_j = Σ_i p_ij dO_i
// Three dispatches:
// 1. the forward (flash-attention.ts) in its statistics mode: L_i and δ_i per query row; or, where
//    the training forward kept L_i (its 'logsumexp' mode), δ_i alone from the saved o (flash_delta);
// 2. per tile of BQ query rows: the key tiles inside the window, dq (same tiling as the forward);
// 3. per tile of BQ keys of one KV head: the tiles of query rows (t, g) of every head of the group
//    that see them (t = j … j + window − 1), dk and dv — GQA's sum over heads stays in a workgroup.
// Both tiled kernels share one layout: the workgroup's BQ "rows" (queries, or keys) against tiles of
// BK "columns" (keys, or queries), each addressed through an offset table in workgroup memory, so
// one staged product (rows·colsᵀ over hs in DC-dim chunks) and one accumulation (P·cols over VC
// value columns at a time) serve all four products. Thread layout as in flash-attention.ts.
import { type GpuContext, type Kernel, Params, kernelCache } from './context.js';
import type { AttentionGradDims } from './grad-attention.js';
import { type FlashTile, TX, WG, flashAttention, pvProduct } from './flash-attention.js';
import { KEY_TILE, flashBackwardTensorCores, tcFor } from './flash-tc.js';
import { scratch } from './grad-reduce.js';
import type { TensorCores } from './matmul-f16.js';
import { type GpuTensor, bind } from './tensor.js';
import { BUILTINS, WG_INDEX, lines } from './wgsl.js';

const NONE = '0xffffffffu';

function stageFloats(t: FlashTile): number {
  return Math.max(t.DC * (t.BQ + 1 + t.BK + 1), t.BK * t.VC);
}

/** Workgroup memory of these kernels for a tile (bytes). */
export function backwardTileBytes(t: FlashTile): number {
  return 4 * (t.BQ * (t.BK + 1) + stageFloats(t) + 2 * t.BQ + 3 * t.BK);
}

function generator(tile: FlashTile, hs: number) {
  const { BQ, BK, DC } = tile;
  const RI = BQ / TX, CJ = BK / TX, EJ = Math.ceil(hs / TX);
  const QST = BQ + 1, KST = BK + 1, PST = BK + 1, KOFF = DC * QST;

  const decls = /* wgsl */ `
var<workgroup> PS: array<f32, ${BQ * PST}>;
var<workgroup> ST: array<f32, ${stageFloats(tile)}>;
// offset of each row's / column's vector (of hs floats) in its buffers; NONE when out of range
var<workgroup> ROWOFF: array<u32, ${BQ}>;
var<workgroup> COLOFF: array<u32, ${BK}>;
// per query row: L and δ (rows of the dq kernel, columns of the dk/dv kernel)
var<workgroup> RL: array<f32, ${Math.max(BQ, BK)}>;
var<workgroup> RD: array<f32, ${Math.max(BQ, BK)}>;`;

  /** dst[i·CJ + j] = Σ_e A[ROWOFF[row i] + e] · B[COLOFF[col j] + e] */
  const product = (dst: string, A: string, Bb: string) => /* wgsl */ `
    for (var x = 0u; x < ${RI * CJ}u; x++) { ${dst}[x] = 0.0; }
    for (var d0 = 0u; d0 < p.hs; d0 += ${DC}u) {
      workgroupBarrier();
      for (var x = li; x < ${BQ * DC}u; x += ${WG}u) {
        let r = x / ${DC}u;
        let d = d0 + x % ${DC}u;
        var val = 0.0;
        if (ROWOFF[r] != ${NONE} && d < p.hs) { val = ${A}[ROWOFF[r] + d]; }
        ST[(x % ${DC}u) * ${QST}u + r] = val;
      }
      for (var x = li; x < ${BK * DC}u; x += ${WG}u) {
        let c = x / ${DC}u;
        let d = d0 + x % ${DC}u;
        var val = 0.0;
        if (COLOFF[c] != ${NONE} && d < p.hs) { val = ${Bb}[COLOFF[c] + d]; }
        ST[${KOFF}u + (x % ${DC}u) * ${KST}u + c] = val;
      }
      workgroupBarrier();
      for (var dd = 0u; dd < ${DC}u; dd++) {
${lines(RI, (i) => `        let a${i} = ST[dd * ${QST}u + ty + ${TX * i}u];`)}
${lines(CJ, (j) => `        let k${j} = ST[${KOFF}u + dd * ${KST}u + tx + ${TX * j}u];`)}
${lines(RI, (i) => lines(CJ, (j) => `        ${dst}[${i * CJ + j}] = fma(a${i}, k${j}, ${dst}[${i * CJ + j}]);`))}
      }
    }`;

  /** acc[i·EJ + e] += Σ_c PS[row i][c] · V[COLOFF[c] + e] (PS published by the caller) */
  const accumulate = (acc: string, V: string) => pvProduct(tile, hs, acc, `if (COLOFF[c] != ${NONE} && e < p.hs) { val = ${V}[COLOFF[c] + e]; }`);

  /** Writes acc's rows to OUT at ROWOFF (columns below hs). */
  const store = (acc: string, OUT: string) => /* wgsl */ `
  for (var i = 0u; i < ${RI}u; i++) {
    let o = ROWOFF[ty + i * ${TX}u];
    if (o == ${NONE}) { continue; }
    for (var jj = 0u; jj < ${EJ}u; jj++) {
      let e = tx + jj * ${TX}u;
      if (e < p.hs) { ${OUT}[o + e] = ${acc}[i * ${EJ}u + jj]; }
    }
  }`;

  return { RI, CJ, EJ, PST, decls, product, accumulate, store };
}

const PARAMS = /* wgsl */ `
struct P {
  T: u32, H: u32, Hkv: u32, hs: u32, F: u32, group: u32, window: i32, nTiles: u32, total: u32, scale: f32,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> Q: array<f32>;
@group(0) @binding(2) var<storage, read> K: array<f32>;
@group(0) @binding(3) var<storage, read> V: array<f32>;
@group(0) @binding(4) var<storage, read> DO: array<f32>;
@group(0) @binding(5) var<storage, read> LD: array<f32>;`;

/** Offset of query row x = t·group + g of (b, kv head) in [B, T, H, hs]; its index in LD is that / hs. */
const QROW = /* wgsl */ `
fn qRow(b: u32, kvh: u32, x: u32) -> u32 {
  return ((b * p.T + x / p.group) * p.H + kvh * p.group + x % p.group) * p.hs;
}`;

function dqKernel(tile: FlashTile, hs: number): Kernel {
  const { BQ, BK } = tile;
  const g = generator(tile, hs);
  return {
    key: `flash_bwd_dq_${BQ}_${BK}_${tile.DC}_${tile.VC}_${hs}`,
    bindings: ['read', 'read', 'read', 'read', 'read', 'write'],
    code: () => /* wgsl */ `
${PARAMS}
@group(0) @binding(6) var<storage, read_write> DQ: array<f32>;
${g.decls}
${QROW}

@compute @workgroup_size(${WG})
fn main(${BUILTINS}) {
  ${WG_INDEX}
  if (wg >= p.total) { return; }
  let tile = p.nTiles - 1u - wg % p.nTiles; // the longest rows first
  let bh = wg / p.nTiles;
  let kvh = bh % p.Hkv;
  let b = bh / p.Hkv;
  let nRows = p.T * p.group;
  let row0 = tile * ${BQ}u;
  let tFirst = i32(row0 / p.group);
  let jStart = max(0, tFirst - p.window + 1);
  let jEnd = i32((min(row0 + ${BQ}u, nRows) - 1u) / p.group);
  let ty = li / ${TX}u;
  let tx = li % ${TX}u;
  if (li < ${BQ}u) {
    var o = ${NONE};
    if (row0 + li < nRows) {
      o = qRow(b, kvh, row0 + li);
      RL[li] = LD[2u * (o / p.hs)];
      RD[li] = LD[2u * (o / p.hs) + 1u];
    }
    ROWOFF[li] = o;
  }
  var lo: array<i32, ${g.RI}>;
  var hi: array<i32, ${g.RI}>;
  for (var i = 0u; i < ${g.RI}u; i++) {
    let r = row0 + ty + i * ${TX}u;
    let t = i32(r / p.group);
    lo[i] = max(0, t - p.window + 1);
    hi[i] = select(-1, t, r < nRows);
  }
  var acc: array<f32, ${g.RI * g.EJ}>;
  var s: array<f32, ${g.RI * g.CJ}>;
  var dp: array<f32, ${g.RI * g.CJ}>;
  for (var kt0 = jStart; kt0 <= jEnd; kt0 += ${BK}) {
    workgroupBarrier(); // COLOFF's last readers are done
    if (li < ${BK}u) {
      let j = kt0 + i32(li);
      COLOFF[li] = select(${NONE}, (b * p.T + u32(j)) * p.F + kvh * p.hs, j <= jEnd);
    }
${g.product('s', 'Q', 'K')}
${g.product('dp', 'DO', 'V')}
    for (var i = 0u; i < ${g.RI}u; i++) {
      let r = ty + i * ${TX}u;
      for (var jj = 0u; jj < ${g.CJ}u; jj++) {
        let c = tx + jj * ${TX}u;
        let j = kt0 + i32(c);
        var ds = 0.0;
        if (j >= lo[i] && j <= hi[i]) {
          let x = i * ${g.CJ}u + jj;
          ds = exp(s[x] * p.scale - RL[r]) * (dp[x] - RD[r]) * p.scale;
        }
        PS[r * ${g.PST}u + c] = ds;
      }
    }
${g.accumulate('acc', 'K')}
  }
${g.store('acc', 'DQ')}
}`,
  };
}

function dkvKernel(tile: FlashTile, hs: number): Kernel {
  const { BQ, BK } = tile;
  const g = generator(tile, hs);
  return {
    key: `flash_bwd_dkv_${BQ}_${BK}_${tile.DC}_${tile.VC}_${hs}`,
    bindings: ['read', 'read', 'read', 'read', 'read', 'write', 'write'],
    code: () => /* wgsl */ `
${PARAMS}
@group(0) @binding(6) var<storage, read_write> DK: array<f32>;
@group(0) @binding(7) var<storage, read_write> DV: array<f32>;
${g.decls}
${QROW}

@compute @workgroup_size(${WG})
fn main(${BUILTINS}) {
  ${WG_INDEX}
  if (wg >= p.total) { return; }
${KEY_TILE(BQ)}
  // query rows (t, g), t-major, of the positions that see some key of the tile
  let xStart = j0 * p.group;
  let xEnd = (tEnd + 1u) * p.group; // exclusive
  let ty = li / ${TX}u;
  let tx = li % ${TX}u;
  if (li < ${BQ}u) {
    let j = j0 + li;
    ROWOFF[li] = select(${NONE}, (b * p.T + j) * p.F + kvh * p.hs, j < p.T);
  }
  var kpos: array<i32, ${g.RI}>;
  for (var i = 0u; i < ${g.RI}u; i++) {
    let j = j0 + ty + i * ${TX}u;
    kpos[i] = select(-1, i32(j), j < p.T); // -1: no query sees it
  }
  var dk: array<f32, ${g.RI * g.EJ}>;
  var dv: array<f32, ${g.RI * g.EJ}>;
  var s: array<f32, ${g.RI * g.CJ}>;
  var dp: array<f32, ${g.RI * g.CJ}>;
  for (var x0 = xStart; x0 < xEnd; x0 += ${BK}u) {
    workgroupBarrier(); // COLOFF, RL, RD's last readers are done
    if (li < ${BK}u) {
      var o = ${NONE};
      if (x0 + li < xEnd) {
        o = qRow(b, kvh, x0 + li);
        RL[li] = LD[2u * (o / p.hs)];
        RD[li] = LD[2u * (o / p.hs) + 1u];
      }
      COLOFF[li] = o;
    }
${g.product('s', 'K', 'Q')}
${g.product('dp', 'V', 'DO')}
    // p_ij into PS for dv; ds_ij kept in s for dk
    for (var i = 0u; i < ${g.RI}u; i++) {
      let r = ty + i * ${TX}u;
      for (var jj = 0u; jj < ${g.CJ}u; jj++) {
        let c = tx + jj * ${TX}u;
        let xq = x0 + c;
        let t = i32(xq / p.group);
        let x = i * ${g.CJ}u + jj;
        var pij = 0.0;
        if (xq < xEnd && kpos[i] >= 0 && t >= kpos[i] && t - kpos[i] < p.window) {
          pij = exp(s[x] * p.scale - RL[c]);
        }
        PS[r * ${g.PST}u + c] = pij;
        s[x] = pij * (dp[x] - RD[c]) * p.scale;
      }
    }
${g.accumulate('dv', 'DO')}
    workgroupBarrier(); // PS's readers are done
    for (var i = 0u; i < ${g.RI}u; i++) {
      for (var jj = 0u; jj < ${g.CJ}u; jj++) {
        PS[(ty + i * ${TX}u) * ${g.PST}u + tx + jj * ${TX}u] = s[i * ${g.CJ}u + jj];
      }
    }
${g.accumulate('dk', 'Q')}
  }
  workgroupBarrier();
${g.store('dk', 'DK')}
${g.store('dv', 'DV')}
}`,
  };
}

const cached = kernelCache();

/**
 * δ_i = dO_i·o_i into LD[2i + 1] for each query row, summed in the order the forward's
 * 'logsumexp+delta' mode sums it (TX strided shares, then the shares in order): the same bits.
 */
const DELTA: Kernel = {
  key: 'flash_delta',
  bindings: ['read', 'read', 'write'],
  code: () => /* wgsl */ `
struct P { rows: u32, hs: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> O: array<f32>;
@group(0) @binding(2) var<storage, read> DO: array<f32>;
@group(0) @binding(3) var<storage, read_write> LD: array<f32>;
var<workgroup> shares: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(${BUILTINS}) {
  ${WG_INDEX}
  let row = wg * ${WG / TX}u + li / ${TX}u;
  let x = li % ${TX}u;
  var part = 0.0;
  if (row < p.rows) {
    for (var e = x; e < p.hs; e += ${TX}u) { part = fma(DO[row * p.hs + e], O[row * p.hs + e], part); }
  }
  shares[li] = part;
  workgroupBarrier();
  if (x == 0u && row < p.rows) {
    var delta = 0.0;
    for (var s = 0u; s < ${TX}u; s++) { delta += shares[li + s]; }
    LD[2u * row + 1u] = delta;
  }
}`,
};

/**
 * kept: the training forward's output o and the [B·T·H, 2] buffer where it kept each row's L
 * (flashAttention's 'logsumexp' mode, same tile); without it the forward is recomputed for L.
 */
export function flashAttentionBackward(
  ctx: GpuContext, dq: GpuTensor, dk: GpuTensor, dv: GpuTensor,
  q: GpuTensor, k: GpuTensor, v: GpuTensor, dO: GpuTensor, d: AttentionGradDims, tile: FlashTile,
  kept?: { o: GpuTensor; ld: GpuTensor }, tensorCores: TensorCores = null,
): void {
  const qRows = d.B * d.T * d.H;
  if (qRows === 0 || d.hs === 0) return;
  // 1. L and δ per query row
  let ld: GpuTensor, o: GpuTensor | null = null;
  if (kept) {
    ld = kept.ld;
    ctx.dispatch(DELTA, new Params().u32(qRows, d.hs), [bind(kept.o), bind(dO), bind(ld)], Math.ceil(qRows / (WG / TX)));
  } else { // the forward recomputed (its output o lands in scratch, unused after)
    ld = scratch(ctx, 2 * qRows, () => `attentionBackward row statistics of ${qRows} rows`);
    o = scratch(ctx, qRows * d.hs, () => `attentionBackward recomputed output of ${qRows} rows`);
    flashAttention(ctx, o, q, k, v, k, v, new Int32Array(d.B), { ...d, C: 0 }, tile, { dO, ld });
  }
  const tc = tcFor(ctx, tensorCores, d.hs);
  if (tc) {
    flashBackwardTensorCores(ctx, dq, dk, dv, q, k, v, dO, ld, d, tc);
  } else {
    f32Kernels(ctx, dq, dk, dv, q, k, v, dO, ld, d, tile);
  }
  if (o) { ctx.release(o.buf!); ctx.release(ld.buf!); }
}

/** Steps 2 and 3 on the f32 units. */
function f32Kernels(
  ctx: GpuContext, dq: GpuTensor, dk: GpuTensor, dv: GpuTensor,
  q: GpuTensor, k: GpuTensor, v: GpuTensor, dO: GpuTensor, ld: GpuTensor, d: AttentionGradDims, tile: FlashTile,
): void {
  const window = Math.min(d.window, 2 ** 30), group = d.H / d.Hkv, scale = 1 / Math.sqrt(d.hs), F = d.Hkv * d.hs;
  const ins = [bind(q), bind(k), bind(v), bind(dO), bind(ld)];
  const params = (nTiles: number) =>
    new Params().u32(d.T, d.H, d.Hkv, d.hs, F, group).i32(window).u32(nTiles, d.B * d.Hkv * nTiles).f32(scale);
  // 2. dq per tile of query rows
  const qTiles = Math.ceil((d.T * group) / tile.BQ);
  ctx.dispatch(cached(`dq${d.hs}_${JSON.stringify(tile)}`, () => dqKernel(tile, d.hs)), params(qTiles), [...ins, bind(dq)], d.B * d.Hkv * qTiles);
  // 3. dk, dv per tile of keys
  const kTiles = Math.ceil(d.T / tile.BQ);
  ctx.dispatch(cached(`dkv${d.hs}_${JSON.stringify(tile)}`, () => dkvKernel(tile, d.hs)), params(kTiles), [...ins, bind(dk), bind(dv)], d.B * d.Hkv * kTiles);
}
