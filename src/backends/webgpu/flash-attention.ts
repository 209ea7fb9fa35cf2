// Tiled causal sliding-window attention for prefill (flash attention, f32 throughout): one
// workgroup owns a tile of BQ query rows of one KV head and walks the key tiles of BK keys that some
// row of the tile can see, staging them in workgroup memory, with an online softmax per row
// (running max m, denominator l, rescaled output accumulators). Only keys inside the tile's window
// are visited: max(0, i₀ − window + 1) … i_last, so the cost per tile is O((BQ + window)·hs) and the
// whole call is linear in T for a finite window. Nothing of size T×T (or T×window) is stored.
//
// GQA: the rows of a tile are (t, g) pairs, t-major, over the `group` query heads that share this KV
// head, so every staged key and value serves all heads of its group (for MHA a row is just t).
//
// Keys come from the same two places as in the per-row kernel (attention.ts): key j of sequence b
// is in the ring-buffer cache (slot j mod C) when it precedes this call's first position pos0[b],
// else it is new row j − pos0[b]; a query at position i sees max(0, i − window + 1, pos0 − C) … i.
//
// Layout of the 256 invocations: ty = li / 16 owns rows ty + 16·ri (ri < BQ/16), tx = li % 16 owns
// score columns tx + 16·cj (cj < BK/16) and output columns tx + 16·ej (ej < ⌈hs/16⌉). Products go
// through workgroup memory in chunks of DC dims (S = Q·Kᵀ) and VC value columns (O += P·V), one
// array serving both stages. The per-row softmax step runs on BQ invocations.
import { type GpuContext, type Kernel, Params, kernelCache } from './context.js';
import { flashForwardTensorCores, tcFor } from './flash-tc.js';
import type { TensorCores } from './matmul-f16.js';
import { type GpuTensor, bind } from './tensor.js';
import { BUILTINS, NEG_BIG, WG_INDEX, cacheReaders, lines } from './wgsl.js';

/** A tile shape; workgroup memory ≈ 4·(BQ·(BK+1) + max(DC·(BQ+BK+2), BK·VC) + 4·BQ) bytes. */
export interface FlashTile {
  /** Query rows per workgroup (multiple of 16). */
  BQ: number;
  /** Keys per staged tile (multiple of 16). */
  BK: number;
  /** Dims of q and k staged at a time (S = Q·Kᵀ). */
  DC: number;
  /** Value columns staged at a time (O += P·V; multiple of 16). */
  VC: number;
}

/** Fits the 16 KiB that every WebGPU device offers (browsers' default). */
export const TILE_16K: FlashTile = { BQ: 64, BK: 32, DC: 16, VC: 32 };
/** Needs ~26 KiB: lavapipe (32 KiB), most discrete GPUs when asked for their maximum. */
export const TILE_32K: FlashTile = { BQ: 64, BK: 64, DC: 16, VC: 32 };
/** Needs ~34 KiB (the H100 offers 48): half the barriers of TILE_32K per key tile. */
export const TILE_48K: FlashTile = { BQ: 64, BK: 64, DC: 32, VC: 64 };

export function tileBytes(t: FlashTile): number {
  return 4 * (t.BQ * (t.BK + 1) + stageFloats(t) + 4 * t.BQ);
}

function stageFloats(t: FlashTile): number {
  return Math.max(t.DC * (t.BQ + 1 + t.BK + 1), t.BK * t.VC);
}

/** The largest tile this device's workgroup memory holds. */
export function pickTile(device: GPUDevice): FlashTile {
  const room = device.limits.maxComputeWorkgroupStorageSize;
  for (const t of [TILE_48K, TILE_32K]) if (tileBytes(t) <= room) return t;
  return TILE_16K;
}

/** Invocations per workgroup of the tiled kernels, and the side of their 16 × 16 invocation grid. */
export const WG = 256;
export const TX = 16;

/**
 * WGSL: acc[i·EJ + e] += Σ_c PS[row ty + TX·i][c] · V[key c of the tile][column e] for every value
 * column, VC at a time, each chunk staged through ST and unrolled so every accumulator index is a
 * constant (barriers included; the caller has written PS). `load` runs with the key c and column e
 * in scope and sets `val` (left 0 for keys or columns out of range).
 */
export function pvProduct(tile: FlashTile, hs: number, acc: string, load: string): string {
  const { BK, VC } = tile;
  const RI = tile.BQ / TX, EJ = Math.ceil(hs / TX), VJ = VC / TX, PST = BK + 1;
  return lines(Math.ceil(EJ / VJ), (k) => {
    const js = Array.from({ length: VJ }, (_, v) => k * VJ + v).filter((j) => j < EJ);
    return /* wgsl */ `
    workgroupBarrier();
    for (var x = li; x < ${BK * VC}u; x += ${WG}u) {
      let c = x / ${VC}u;
      let e = ${k * VC}u + x % ${VC}u;
      var val = 0.0;
      ${load}
      ST[x] = val;
    }
    workgroupBarrier();
    for (var c = 0u; c < ${BK}u; c++) {
${lines(RI, (i) => `      let p${i} = PS[(ty + ${TX * i}u) * ${PST}u + c];`)}
${js.map((j) => `      let v${j} = ST[c * ${VC}u + tx + ${(j - k * VJ) * TX}u];`).join('\n')}
${lines(RI, (i) => js.map((j) => `      ${acc}[${i * EJ + j}] = fma(p${i}, v${j}, ${acc}[${i * EJ + j}]);`).join('\n'))}
    }`;
  });
}

/**
 * What the forward writes besides o, per query row (b, t, h), into LD [B·T·H, 2] for the tiled
 * backward: nothing; L = m + log l, the log-sum-exp of its scaled scores (a training forward keeps
 * it for its backward); or L and δ = dO·o, taking dO (the backward's recomputation, where L was not kept).
 */
export type FlashStats = 'none' | 'logsumexp' | 'logsumexp+delta';

function flashKernel(tile: FlashTile, hs: number, mode: FlashStats, kvF16: boolean): Kernel {
  const stats = mode !== 'none', delta = mode === 'logsumexp+delta';
  const { BQ, BK, DC, VC } = tile;
  const RI = BQ / TX, CJ = BK / TX, EJ = Math.ceil(hs / TX);
  const QST = BQ + 1, KST = BK + 1, PST = BK + 1; // +1: transposed stores hit distinct banks
  const KOFF = DC * QST; // Ks after Qs in the stage

  return {
    key: `flash_attention_${BQ}_${BK}_${DC}_${VC}_${hs}${delta ? '_stats' : stats ? '_lse' : ''}${kvF16 ? '_kvf16' : ''}`,
    // the stats modes have no cache (whole sequences from 0): no KC/VC, which keeps them within the 8
    // storage buffers every device offers
    bindings: delta ? ['ints', 'read', 'read', 'read', 'write', 'read', 'write']
      : stats ? ['ints', 'read', 'read', 'read', 'write', 'write'] : ['ints', 'read', 'read', 'read', 'read', 'read', 'write'],
    code: () => /* wgsl */ `
struct P {
  T: u32, H: u32, Hkv: u32, hs: u32, C: u32, F: u32, group: u32, window: i32, nTiles: u32, total: u32,
  scale: f32,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> POS0: array<i32>;
@group(0) @binding(2) var<storage, read> Q: array<f32>;
@group(0) @binding(3) var<storage, read> K: array<f32>;
@group(0) @binding(4) var<storage, read> V: array<f32>;
${stats ? `@group(0) @binding(5) var<storage, read_write> Y: array<f32>;
${delta ? `@group(0) @binding(6) var<storage, read> DO: array<f32>;
@group(0) @binding(7) var<storage, read_write> LD: array<f32>;` : '@group(0) @binding(6) var<storage, read_write> LD: array<f32>;'}` : `${cacheReaders(kvF16, false)}
@group(0) @binding(7) var<storage, read_write> Y: array<f32>;`}
// scores, then probabilities, of the current key tile [BQ, BK+1]
var<workgroup> PS: array<f32, ${BQ * PST}>;
// Qs [DC, BQ+1] and Ks [DC, BK+1] (transposed) while scoring, Vs [BK, VC] while accumulating
var<workgroup> ST: array<f32, ${stageFloats(tile)}>;
var<workgroup> rowM: array<f32, ${BQ}>;
var<workgroup> rowL: array<f32, ${BQ}>;
var<workgroup> rowCorr: array<f32, ${BQ}>;
// offset of each row's q (and output) in [B, T, H, hs]; 0xffffffff past the last row
var<workgroup> rowQ: array<u32, ${BQ}>;

// key/value e of KV head kvOff at position j of sequence b: cached before pos0, else new
fn keyAt(b: u32, j: i32, p0: i32, kvOff: u32) -> u32 {
  if (j < p0) { return (b * p.C + u32(j) % p.C) * p.F + kvOff; }
  return (b * p.T + u32(j - p0)) * p.F + kvOff;
}

@compute @workgroup_size(${WG})
fn main(${BUILTINS}) {
  ${WG_INDEX}
  if (wg >= p.total) { return; }
  // late tiles see the most keys under full attention: start them first
  let tile = p.nTiles - 1u - wg % p.nTiles;
  let bh = wg / p.nTiles;
  let kvh = bh % p.Hkv;
  let b = bh / p.Hkv;
  let kvOff = kvh * p.hs;
  let nRows = p.T * p.group;
  let row0 = tile * ${BQ}u;
  let rowEnd = min(row0 + ${BQ}u, nRows);
  let p0 = POS0[b];
  let tFirst = row0 / p.group;
  let tLast = (rowEnd - 1u) / p.group;
  let jStart = max(max(0, p0 + i32(tFirst) - p.window + 1), p0 - i32(p.C));
  let jEnd = p0 + i32(tLast);
  let ty = li / ${TX}u;
  let tx = li % ${TX}u;

  if (li < ${BQ}u) {
    let r = row0 + li;
    var o = 0xffffffffu;
    if (r < nRows) { o = ((b * p.T + r / p.group) * p.H + kvh * p.group + r % p.group) * p.hs; }
    rowQ[li] = o;
    rowM[li] = ${NEG_BIG};
    rowL[li] = 0.0;
  }
  // each row's visible keys lo … hi (hi < lo for rows past the end)
  var lo: array<i32, ${RI}>;
  var hi: array<i32, ${RI}>;
  for (var i = 0u; i < ${RI}u; i++) {
    let r = row0 + ty + i * ${TX}u;
    let pos = p0 + i32(r / p.group);
    lo[i] = max(max(0, pos - p.window + 1), p0 - i32(p.C));
    hi[i] = select(-1, pos, r < nRows);
  }
  var acc: array<f32, ${RI * EJ}>;

  for (var kt0 = jStart; kt0 <= jEnd; kt0 += ${BK}) {
    // ---- S = (scale·Q)·Kᵀ over DC-dim chunks ----
    // zeroed by hand: a loop-local array was seen keeping the last iteration's values (lavapipe)
    var s: array<f32, ${RI * CJ}>;
    for (var x = 0u; x < ${RI * CJ}u; x++) { s[x] = 0.0; }
    for (var d0 = 0u; d0 < p.hs; d0 += ${DC}u) {
      workgroupBarrier(); // the stage's last readers are done
      for (var x = li; x < ${BQ * DC}u; x += ${WG}u) {
        let r = x / ${DC}u;
        let d = d0 + x % ${DC}u;
        var val = 0.0;
        if (rowQ[r] != 0xffffffffu && d < p.hs) { val = Q[rowQ[r] + d] * p.scale; }
        ST[(x % ${DC}u) * ${QST}u + r] = val;
      }
      for (var x = li; x < ${BK * DC}u; x += ${WG}u) {
        let c = x / ${DC}u;
        let d = d0 + x % ${DC}u;
        let j = kt0 + i32(c);
        var val = 0.0;
        if (j <= jEnd && d < p.hs) {
          ${stats ? 'val = K[keyAt(b, j, p0, kvOff) + d];' : 'if (j < p0) { val = kc(keyAt(b, j, p0, kvOff) + d); } else { val = K[keyAt(b, j, p0, kvOff) + d]; }'}
        }
        ST[${KOFF}u + (x % ${DC}u) * ${KST}u + c] = val;
      }
      workgroupBarrier();
      for (var dd = 0u; dd < ${DC}u; dd++) {
${lines(RI, (i) => `        let a${i} = ST[dd * ${QST}u + ty + ${TX * i}u];`)}
${lines(CJ, (j) => `        let k${j} = ST[${KOFF}u + dd * ${KST}u + tx + ${TX * j}u];`)}
${lines(RI, (i) => lines(CJ, (j) => `        s[${i * CJ + j}] = fma(a${i}, k${j}, s[${i * CJ + j}]);`))}
      }
    }
    // masked scores become NEG_BIG, which no real score is below
    for (var i = 0u; i < ${RI}u; i++) {
      for (var jj = 0u; jj < ${CJ}u; jj++) {
        let c = tx + jj * ${TX}u;
        let j = kt0 + i32(c);
        let ok = j >= lo[i] && j <= hi[i];
        PS[(ty + i * ${TX}u) * ${PST}u + c] = select(${NEG_BIG}, s[i * ${CJ}u + jj], ok);
      }
    }
    workgroupBarrier();
    // ---- online softmax, one invocation per row ----
    if (li < ${BQ}u) {
      let base = li * ${PST}u;
      let mOld = rowM[li];
      var m = mOld;
      for (var c = 0u; c < ${BK}u; c++) { m = max(m, PS[base + c]); }
      var sum = 0.0;
      for (var c = 0u; c < ${BK}u; c++) {
        let sc = PS[base + c];
        let e = select(0.0, exp(sc - m), sc > -1.0e38);
        PS[base + c] = e;
        sum += e;
      }
      // exp underflows to 0 when the first real score arrives (mOld = NEG_BIG)
      let corr = exp(mOld - m);
      rowCorr[li] = corr;
      rowL[li] = rowL[li] * corr + sum;
      rowM[li] = m;
    }
    // ---- O = corr·O + P·V, VC value columns at a time (the first barrier publishes P) ----
    workgroupBarrier();
    for (var i = 0u; i < ${RI}u; i++) {
      let corr = rowCorr[ty + i * ${TX}u];
      for (var jj = 0u; jj < ${EJ}u; jj++) { acc[i * ${EJ}u + jj] *= corr; }
    }
${pvProduct(tile, hs, 'acc', `let j = kt0 + i32(c);
      if (j <= jEnd && e < p.hs) {
        ${stats ? 'val = V[keyAt(b, j, p0, kvOff) + e];' : 'if (j < p0) { val = vc(keyAt(b, j, p0, kvOff) + e); } else { val = V[keyAt(b, j, p0, kvOff) + e]; }'}
      }`)}
  }
  workgroupBarrier();
  ${delta ? `var part: array<f32, ${RI}>; // this invocation's share of dO·o per row` : ''}
  for (var i = 0u; i < ${RI}u; i++) {
    let r = ty + i * ${TX}u;
    let o = rowQ[r];
    if (o == 0xffffffffu) { continue; }
    let inv = 1.0 / rowL[r];
    for (var jj = 0u; jj < ${EJ}u; jj++) {
      let e = tx + jj * ${TX}u;
      if (e < p.hs) {
        let y = acc[i * ${EJ}u + jj] * inv;
        Y[o + e] = y;
        ${delta ? 'part[i] = fma(DO[o + e], y, part[i]);' : ''}
      }
    }
  }
${delta ? `  // δ: the ${TX} shares of each row through PS (free now), summed in a fixed order (as flash-backward.ts's flash_delta sums them)
  for (var i = 0u; i < ${RI}u; i++) { PS[(ty + i * ${TX}u) * ${PST}u + tx] = part[i]; }
  workgroupBarrier();` : ''}
${stats ? `  if (li < ${BQ}u && rowQ[li] != 0xffffffffu) {
    let row = rowQ[li] / p.hs;
    LD[2u * row] = rowM[li] + log(rowL[li]);${delta ? `
    var delta = 0.0;
    for (var x = 0u; x < ${TX}u; x++) { delta += PS[li * ${PST}u + x]; }
    LD[2u * row + 1u] = delta;` : ''}
  }` : ''}
}`,
  };
}

const cached = kernelCache();

export interface FlashDims {
  B: number; T: number; H: number; Hkv: number; hs: number; C: number; window: number;
}

/** Query tiles per (sequence, KV head). */
export function flashTiles(d: FlashDims, tile: FlashTile): number {
  return Math.ceil((d.T * (d.H / d.Hkv)) / tile.BQ);
}

/**
 * kc/vc: the cache's k and v, or any buffer when C = 0 (never read then). stats: the [B·T·H, 2]
 * buffer for each query row's L, and δ too where dO is given (see FlashStats).
 */
export function flashAttention(
  ctx: GpuContext, out: GpuTensor, q: GpuTensor, k: GpuTensor, v: GpuTensor,
  kc: GpuTensor, vc: GpuTensor, pos0: Int32Array, d: FlashDims, tile: FlashTile,
  stats?: { dO?: GpuTensor; ld: GpuTensor }, tensorCores: TensorCores = null,
): void {
  if (d.B * d.T * d.H === 0 || d.hs === 0) return;
  // on tensor cores: the training forward (keeping L), and any forward over a cache or none (f16 q, k and v)
  const tc = stats?.dO ? null : tcFor(ctx, tensorCores, d.hs);
  if (tc) {
    flashForwardTensorCores(ctx, out, q, k, v, d, tc, stats ? { ld: stats.ld } : { kc, vc, pos0 });
    return;
  }
  const kvF16 = !stats && kc.dtype === 'f16';
  const mode: FlashStats = !stats ? 'none' : stats.dO ? 'logsumexp+delta' : 'logsumexp';
  const key = `${tile.BQ}_${tile.BK}_${tile.DC}_${tile.VC}_${d.hs}_${mode}${kvF16 ? '_kvf16' : ''}`;
  const kernel = cached(key, () => flashKernel(tile, d.hs, mode, kvF16));
  const window = Math.min(d.window, 2 ** 30); // beyond any position: as infinite
  const nTiles = flashTiles(d, tile), total = d.B * d.Hkv * nTiles;
  const params = new Params()
    .u32(d.T, d.H, d.Hkv, d.hs, d.C, d.Hkv * d.hs, d.H / d.Hkv).i32(window).u32(nTiles, total).f32(1 / Math.sqrt(d.hs));
  const bindings = stats
    ? [pos0, bind(q), bind(k), bind(v), bind(out), ...(stats.dO ? [bind(stats.dO)] : []), bind(stats.ld)]
    : [pos0, bind(q), bind(k), bind(v), bind(kc), bind(vc), bind(out)];
  ctx.dispatch(kernel, params, bindings, total);
}
