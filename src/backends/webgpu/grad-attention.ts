// Backward of causal sliding-window attention (whole sequences, no cache), flash-style: nothing of
// size T×T exists, and each softmax row is recomputed rather than stored. With s_ij = q_i·k_j/√hs,
// p_ij = softmax_j(s_ij), o_i = Σ_j p_ij v_j and δ_i = dO_i·o_i:
//   dp_ij = dO_i·v_j ;  ds_ij = p_ij (dp_ij − δ_i) / √hs
//   dq_i = Σ_j ds_ij k_j ;  dk_j = Σ_i ds_ij q_i ;  dv_j = Σ_i p_ij dO_i
// Two kernels, each owning the rows it writes (no atomics, a fixed summation order):
// - per query row (b, t, h): an online-softmax pass over the keys recomputes the row's log-sum-exp
//   L_i and o_i (hence δ_i), then a second pass over the keys accumulates dq_i; L_i and δ_i go to a
//   scratch buffer of 2 floats per query row.
// - per key row (b, j, kv head): the queries that see key j (i = j … j+window−1) of every query
//   head of the group recompute p_ij = exp(s_ij − L_i) and ds_ij, and accumulate dk_j and dv_j, so
//   GQA/MQA's sums over the heads of a group happen inside one workgroup.
// Memory beyond the inputs and outputs is linear in T.
// These per-row kernels serve short sequences; from a tile of query rows per KV head on, the tiled
// kernels of flash-backward.ts take over (same formulas, keys and values staged per tile).
import { type GpuContext, type Kernel, Params, kernelCache } from './context.js';
import { scratch } from './grad-reduce.js';
import { type GpuTensor, bind } from './tensor.js';
import { BUILTINS, NEG_BIG, WG_INDEX } from './wgsl.js';
import { type FlashTile, pickTile } from './flash-attention.js';
import { flashAttentionBackward } from './flash-backward.js';
import type { TensorCores } from './matmul-f16.js';

const WG = 64;

function queryKernel(D: number): Kernel {
  return {
    key: `grad_attention_q_${D}`,
    bindings: ['read', 'read', 'read', 'read', 'write', 'write'],
    code: () => /* wgsl */ `
struct P { T: u32, H: u32, hs: u32, F: u32, group: u32, window: i32, rows: u32, scale: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> Q: array<f32>;
@group(0) @binding(2) var<storage, read> K: array<f32>;
@group(0) @binding(3) var<storage, read> V: array<f32>;
@group(0) @binding(4) var<storage, read> DO: array<f32>;
@group(0) @binding(5) var<storage, read_write> DQ: array<f32>;
// per query row: L (log-sum-exp of the scaled scores) and δ = dO·o
@group(0) @binding(6) var<storage, read_write> LD: array<f32>;
var<workgroup> qs: array<f32, ${D * WG}>;
var<workgroup> dos: array<f32, ${D * WG}>;
var<workgroup> w: array<f32, ${WG}>;
var<workgroup> red: array<f32, ${WG}>;

fn reduceMax(v: f32, li: u32) -> f32 {
  red[li] = v;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s >>= 1u) {
    if (li < s) { red[li] = max(red[li], red[li + s]); }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}

fn reduceSum(v: f32, li: u32) -> f32 {
  red[li] = v;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s >>= 1u) {
    if (li < s) { red[li] += red[li + s]; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}

@compute @workgroup_size(${WG})
fn main(${BUILTINS}) {
  ${WG_INDEX}
  if (wg >= p.rows) { return; }
  let h = wg % p.H;
  let bt = wg / p.H;
  let b = bt / p.T;
  let i = i32(bt % p.T);
  let kvOff = (h / p.group) * p.hs;
  let jLo = max(0, i - p.window + 1);
  let qo = wg * p.hs;              // q, dO and dq share the [B, T, H, hs] layout
  let kRow0 = b * p.T;

  for (var e = li; e < p.hs; e += ${WG}u) {
    qs[e] = Q[qo + e] * p.scale;
    dos[e] = DO[qo + e];
  }
  workgroupBarrier();

  // pass 1: the softmax row and o_i, online (running max, denominator and weighted sum of values)
  var mRun = ${NEG_BIG};
  var lRun = 0.0;
  var acc: array<f32, ${D}>;
  for (var c0 = jLo; c0 <= i; c0 += ${WG}) {
    let j = c0 + i32(li);
    var s = ${NEG_BIG};
    if (j <= i) {
      let o = (kRow0 + u32(j)) * p.F + kvOff;
      var dot = 0.0;
      for (var e = 0u; e < p.hs; e++) { dot = fma(qs[e], K[o + e], dot); }
      s = dot;
    }
    let mNew = max(mRun, reduceMax(s, li));
    var pj = 0.0;
    if (j <= i) { pj = exp(s - mNew); }
    w[li] = pj;
    let corr = exp(mRun - mNew);
    lRun = lRun * corr + reduceSum(pj, li); // the reduction's barriers also publish w
    mRun = mNew;
    let count = u32(min(${WG}, i - c0 + 1));
    for (var d = 0u; d < ${D}u; d++) {
      let e = li + d * ${WG}u;
      if (e < p.hs) {
        var a = acc[d] * corr;
        for (var jj = 0u; jj < count; jj++) {
          a = fma(w[jj], V[(kRow0 + u32(c0) + jj) * p.F + kvOff + e], a);
        }
        acc[d] = a;
      }
    }
    workgroupBarrier();
  }
  var part = 0.0;
  for (var d = 0u; d < ${D}u; d++) {
    let e = li + d * ${WG}u;
    if (e < p.hs) { part = fma(dos[e], acc[d] / lRun, part); }
  }
  let delta = reduceSum(part, li);
  let L = mRun + log(lRun);

  // pass 2: dq_i = Σ_j ds_ij k_j
  var dq: array<f32, ${D}>;
  for (var c0 = jLo; c0 <= i; c0 += ${WG}) {
    let j = c0 + i32(li);
    var ds = 0.0;
    if (j <= i) {
      let o = (kRow0 + u32(j)) * p.F + kvOff;
      var s = 0.0;
      var dp = 0.0;
      for (var e = 0u; e < p.hs; e++) {
        s = fma(qs[e], K[o + e], s);
        dp = fma(dos[e], V[o + e], dp);
      }
      ds = exp(s - L) * (dp - delta) * p.scale;
    }
    w[li] = ds;
    workgroupBarrier();
    let count = u32(min(${WG}, i - c0 + 1));
    for (var d = 0u; d < ${D}u; d++) {
      let e = li + d * ${WG}u;
      if (e < p.hs) {
        var a = dq[d];
        for (var jj = 0u; jj < count; jj++) {
          a = fma(w[jj], K[(kRow0 + u32(c0) + jj) * p.F + kvOff + e], a);
        }
        dq[d] = a;
      }
    }
    workgroupBarrier();
  }
  for (var d = 0u; d < ${D}u; d++) {
    let e = li + d * ${WG}u;
    if (e < p.hs) { DQ[qo + e] = dq[d]; }
  }
  if (li == 0u) {
    LD[2u * wg] = L;
    LD[2u * wg + 1u] = delta;
  }
}`,
  };
}

function keyKernel(D: number): Kernel {
  return {
    key: `grad_attention_kv_${D}`,
    bindings: ['read', 'read', 'read', 'read', 'read', 'write', 'write'],
    code: () => /* wgsl */ `
struct P { T: u32, H: u32, Hkv: u32, hs: u32, group: u32, window: i32, rows: u32, scale: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> Q: array<f32>;
@group(0) @binding(2) var<storage, read> K: array<f32>;
@group(0) @binding(3) var<storage, read> V: array<f32>;
@group(0) @binding(4) var<storage, read> DO: array<f32>;
@group(0) @binding(5) var<storage, read> LD: array<f32>;
@group(0) @binding(6) var<storage, read_write> DK: array<f32>;
@group(0) @binding(7) var<storage, read_write> DV: array<f32>;
var<workgroup> ks: array<f32, ${D * WG}>;
var<workgroup> vs: array<f32, ${D * WG}>;
var<workgroup> pw: array<f32, ${WG}>;
var<workgroup> dsw: array<f32, ${WG}>;
var<workgroup> qoff: array<u32, ${WG}>;

@compute @workgroup_size(${WG})
fn main(${BUILTINS}) {
  ${WG_INDEX}
  if (wg >= p.rows) { return; }
  let kvh = wg % p.Hkv;
  let bj = wg / p.Hkv;
  let b = bj / p.T;
  let j = i32(bj % p.T);
  let ko = wg * p.hs;              // k, v, dk and dv share the [B, T, Hkv, hs] layout
  for (var e = li; e < p.hs; e += ${WG}u) {
    ks[e] = K[ko + e];
    vs[e] = V[ko + e];
  }
  workgroupBarrier();
  // the queries that see key j: i = j … min(T−1, j+window−1), for each head of the group
  let nI = u32(min(i32(p.T) - 1, j + p.window - 1) - j + 1);
  let total = p.group * nI;
  var dk: array<f32, ${D}>;
  var dv: array<f32, ${D}>;
  for (var c0 = 0u; c0 < total; c0 += ${WG}u) {
    let x = c0 + li;
    var pij = 0.0;
    var ds = 0.0;
    var off = 0u;
    if (x < total) {
      let h = kvh * p.group + x / nI;
      let i = u32(j) + x % nI;
      let row = (b * p.T + i) * p.H + h;
      off = row * p.hs;
      var s = 0.0;
      var dp = 0.0;
      for (var e = 0u; e < p.hs; e++) {
        s = fma(Q[off + e] * p.scale, ks[e], s);
        dp = fma(DO[off + e], vs[e], dp);
      }
      pij = exp(s - LD[2u * row]);
      ds = pij * (dp - LD[2u * row + 1u]) * p.scale;
    }
    pw[li] = pij;
    dsw[li] = ds;
    qoff[li] = off;
    workgroupBarrier();
    let count = min(${WG}u, total - c0);
    for (var d = 0u; d < ${D}u; d++) {
      let e = li + d * ${WG}u;
      if (e < p.hs) {
        var a = dv[d];
        var c = dk[d];
        for (var xx = 0u; xx < count; xx++) {
          a = fma(pw[xx], DO[qoff[xx] + e], a);
          c = fma(dsw[xx], Q[qoff[xx] + e], c);
        }
        dv[d] = a;
        dk[d] = c;
      }
    }
    workgroupBarrier();
  }
  for (var d = 0u; d < ${D}u; d++) {
    let e = li + d * ${WG}u;
    if (e < p.hs) {
      DK[ko + e] = dk[d];
      DV[ko + e] = dv[d];
    }
  }
}`,
  };
}

const cached = kernelCache();

export interface AttentionGradDims { B: number; T: number; H: number; Hkv: number; hs: number; window: number }

/**
 * policy: from how many query rows per (sequence, KV head), T·H/Hkv, the tiled kernels run (default
 * 64), and their tile (default: the largest the device holds); see attention.ts's SplitPolicy.
 */
export function attentionBackward(
  ctx: GpuContext, dq: GpuTensor, dk: GpuTensor, dv: GpuTensor,
  q: GpuTensor, k: GpuTensor, v: GpuTensor, dO: GpuTensor, d: AttentionGradDims,
  policy: { flashMinRows?: number; flashTile?: FlashTile } = {},
  kept?: { o: GpuTensor; ld: GpuTensor }, tensorCores: TensorCores = null,
): void {
  const qRows = d.B * d.T * d.H, kRows = d.B * d.T * d.Hkv;
  if (qRows === 0 || d.hs === 0) return;
  if (d.T * (d.H / d.Hkv) >= (policy.flashMinRows ?? 64)) {
    flashAttentionBackward(ctx, dq, dk, dv, q, k, v, dO, d, policy.flashTile ?? pickTile(ctx.device), kept, tensorCores);
    return;
  }
  const D = Math.ceil(d.hs / WG);
  const window = Math.min(d.window, 2 ** 30); // beyond any position: as infinite
  const scale = 1 / Math.sqrt(d.hs), group = d.H / d.Hkv;
  const ld = scratch(ctx, 2 * qRows, () => `attentionBackward row statistics of ${qRows} rows`);
  ctx.dispatch(
    cached(`q${D}`, () => queryKernel(D)),
    new Params().u32(d.T, d.H, d.hs, d.Hkv * d.hs, group).i32(window).u32(qRows).f32(scale),
    [bind(q), bind(k), bind(v), bind(dO), bind(dq), bind(ld)], qRows,
  );
  ctx.dispatch(
    cached(`kv${D}`, () => keyKernel(D)),
    new Params().u32(d.T, d.H, d.Hkv, d.hs, group).i32(window).u32(kRows).f32(scale),
    [bind(q), bind(k), bind(v), bind(dO), bind(ld), bind(dk), bind(dv)], kRows,
  );
  ctx.release(ld.buf!);
}
