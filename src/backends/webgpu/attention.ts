// Causal sliding-window attention with an online softmax: one workgroup per (sequence, query,
// head) walks its keys in chunks of 64, one key per invocation, keeping a running max, running
// denominator and running weighted sum of values. Nothing of size T×T (or even T×window) exists;
// the work per query is linear in the keys it sees.
//
// Key j of sequence b comes from the ring-buffer cache (slot j mod C) when it precedes this call's
// first position pos0[b], else from the new keys at row j - pos0[b].
import { type GpuContext, type Kernel, Params } from './context.js';
import { type GpuTensor, bind } from './tensor.js';
import { BUILTINS, NEG_BIG, WG_INDEX } from './wgsl.js';

const WG = 64;

function attentionKernel(dimsPerThread: number): Kernel {
  const D = dimsPerThread;
  return {
    key: `attention_${D}`,
    bindings: ['ints', 'read', 'read', 'read', 'read', 'read', 'write'],
    code: () => /* wgsl */ `
struct P { T: u32, H: u32, hs: u32, C: u32, F: u32, group: u32, window: i32, total: u32, scale: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> POS0: array<i32>;
@group(0) @binding(2) var<storage, read> Q: array<f32>;
@group(0) @binding(3) var<storage, read> K: array<f32>;
@group(0) @binding(4) var<storage, read> V: array<f32>;
@group(0) @binding(5) var<storage, read> KC: array<f32>;
@group(0) @binding(6) var<storage, read> VC: array<f32>;
@group(0) @binding(7) var<storage, read_write> Y: array<f32>;
var<workgroup> qs: array<f32, ${D * WG}>;
var<workgroup> probs: array<f32, ${WG}>;
var<workgroup> redMax: array<f32, ${WG}>;
var<workgroup> redSum: array<f32, ${WG}>;

@compute @workgroup_size(${WG})
fn main(${BUILTINS}) {
  ${WG_INDEX}
  if (wg >= p.total) { return; }
  let h = wg % p.H;
  let bt = wg / p.H;            // b · T + t
  let b = bt / p.T;
  let t = bt % p.T;
  let kvOff = (h / p.group) * p.hs;
  let p0 = POS0[b];
  let i = p0 + i32(t);          // this query's position
  let jLo = max(max(0, i - p.window + 1), p0 - i32(p.C));
  let qo = wg * p.hs;           // q and y share the [B, T, H, hs] layout

  for (var e = li; e < p.hs; e += ${WG}u) { qs[e] = Q[qo + e] * p.scale; }
  workgroupBarrier();

  var mRun = ${NEG_BIG};
  var lRun = 0.0;
  var acc: array<f32, ${D}>;
  for (var c0 = jLo; c0 <= i; c0 += ${WG}) {
    let j = c0 + i32(li);
    var s = ${NEG_BIG};
    if (j <= i) {
      var dot = 0.0;
      if (j < p0) {
        let o = (b * p.C + u32(j) % p.C) * p.F + kvOff;
        for (var e = 0u; e < p.hs; e++) { dot = fma(qs[e], KC[o + e], dot); }
      } else {
        let o = (b * p.T + u32(j - p0)) * p.F + kvOff;
        for (var e = 0u; e < p.hs; e++) { dot = fma(qs[e], K[o + e], dot); }
      }
      s = dot;
    }
    redMax[li] = s;
    workgroupBarrier();
    for (var w = ${WG / 2}u; w > 0u; w >>= 1u) {
      if (li < w) { redMax[li] = max(redMax[li], redMax[li + w]); }
      workgroupBarrier();
    }
    let mNew = max(mRun, redMax[0]);
    var pj = 0.0;
    if (j <= i) { pj = exp(s - mNew); }
    probs[li] = pj;
    redSum[li] = pj;
    workgroupBarrier();
    for (var w = ${WG / 2}u; w > 0u; w >>= 1u) {
      if (li < w) { redSum[li] += redSum[li + w]; }
      workgroupBarrier();
    }
    // rescale what was summed under the old max (exp underflows to 0 on the first chunk)
    let corr = exp(mRun - mNew);
    lRun = lRun * corr + redSum[0];
    mRun = mNew;
    let count = u32(min(${WG}, i - c0 + 1));
    for (var d = 0u; d < ${D}u; d++) {
      let e = li + d * ${WG}u;
      if (e < p.hs) {
        var a = acc[d] * corr;
        for (var jj = 0u; jj < count; jj++) {
          let jk = c0 + i32(jj);
          if (jk < p0) {
            a = fma(probs[jj], VC[(b * p.C + u32(jk) % p.C) * p.F + kvOff + e], a);
          } else {
            a = fma(probs[jj], V[(b * p.T + u32(jk - p0)) * p.F + kvOff + e], a);
          }
        }
        acc[d] = a;
      }
    }
    workgroupBarrier();
  }
  for (var d = 0u; d < ${D}u; d++) {
    let e = li + d * ${WG}u;
    if (e < p.hs) { Y[qo + e] = acc[d] / lRun; }
  }
}`,
  };
}

const kernels = new Map<number, Kernel>();

export interface AttentionDims {
  B: number; T: number; H: number; Hkv: number; hs: number; C: number; window: number;
}

/** kc/vc: the cache's k and v, or any buffer when C = 0 (never read then). */
export function attention(
  ctx: GpuContext, out: GpuTensor, q: GpuTensor, k: GpuTensor, v: GpuTensor,
  kc: GpuTensor, vc: GpuTensor, pos0: Int32Array, d: AttentionDims,
): void {
  const total = d.B * d.T * d.H;
  if (total === 0 || d.hs === 0) return;
  const dpt = Math.ceil(d.hs / WG);
  let kernel = kernels.get(dpt);
  if (!kernel) kernels.set(dpt, (kernel = attentionKernel(dpt)));
  // positions stay far below 2^30, so a clamped window behaves as an infinite one
  const window = Math.min(d.window, 2 ** 30);
  const params = new Params()
    .u32(d.T, d.H, d.hs, d.C, d.Hkv * d.hs, d.H / d.Hkv).i32(window).u32(total).f32(1 / Math.sqrt(d.hs));
  ctx.dispatch(kernel, params, [pos0, bind(q), bind(k), bind(v), bind(kc), bind(vc), bind(out)], total);
}
