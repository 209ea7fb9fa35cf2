// Causal sliding-window attention with an online softmax: one workgroup per (sequence, query,
// head) walks its keys in chunks of 64, one key per invocation, keeping a running max, running
// denominator and running weighted sum of values. Nothing of size T×T (or even T×window) exists;
// the work per query is linear in the keys it sees.
//
// Key j of sequence b comes from the ring-buffer cache (slot j mod C) when it precedes this call's
// first position pos0[b], else from the new keys at row j - pos0[b].
//
// Decoding has few query rows (B·H) but up to a window of keys each, which would leave most of a
// GPU idle; there the keys of each row are split into S ranges that separate workgroups reduce to
// partial (max, denominator, weighted sum) triples, and a second kernel merges them
// (flash-decoding). Where each split would still walk many keys (long caches, large batches), the
// query heads of one KV head share a workgroup (GQA), which reads each key and value once for
// all of them. One new token of one sequence goes to the step kernel (attention-step.ts) instead,
// where its shape fits.
//
// Prefill with at least a tile of query rows per KV head goes to the tiled kernel of
// flash-attention.ts instead, which stages keys and values in workgroup memory once per tile of
// queries rather than once per query.
import { type GpuContext, type Kernel, Params, kernelCache } from './context.js';
import { GpuTensor, Storage, bind } from './tensor.js';
import { BUILTINS, NEG_BIG, WG_INDEX, lines, workgroupReduce, workgroupReduceRows } from './wgsl.js';
import { attentionInputs, attentionStepKernel, ropeTables, stepFits, stepSplits, storeNewKv, turnQueries } from './attention-step.js';
import { type FlashTile, flashAttention, pickTile } from './flash-attention.js';
import type { TensorCores } from './matmul-f16.js';

const WG = 64;
/**
 * pvLoads: loads each invocation issues at once in the P·V sums, which read one value per key:
 * decoding attention is bound by their latency, not by its bytes (H100, samba-1.7b's heads over
 * 2048 keys: 20.7 µs a call on the GPU; docs/PERFORMANCE.md). groupPvLoads: the same
 * where G query heads share a workgroup, each load then feeding G sums (H100, 16 sequences of
 * llama3-1.6b's heads over 65536 keys, G = 8, f16 cache: 2 loads 4.17 ms a call, 8 loads 1.94 ms, 16
 * loads 1.68 ms). bench/attention-decode.ts sets both to compare. step: one new token per sequence
 * goes to the step kernel (attention-step.ts) where it serves the query group; false: the per-row
 * kernel (bench/decode-gpu.ts --attention-step off).
 */
export const attentionShape = { pvLoads: 16, groupPvLoads: 16, step: true };

/**
 * The per-row kernel for head size hs, known when the WGSL is generated: the dot products and the
 * P·V sums run fixed trip counts the shader compiler unrolls, so each invocation issues its loads
 * back to back instead of one per loop turn (decoding is bound by that latency, not by bandwidth).
 * With hs % 4 == 0, keys and values are read as vec4.
 *
 * G query heads of one KV head share a workgroup (G divides the GQA group): each key and value is
 * read once for all G and each head keeps its own online softmax, summed in the same order as with
 * G = 1. Long caches are bound by reading keys and values, which G > 1 divides by G.
 */
function attentionKernel(hs: number, kvF16: boolean, fused = false, G = 1): Kernel {
  // the unrolled P·V body has PV_LOADS · G sums, which lavapipe takes seconds to compile
  const PV_LOADS = G > 1 ? attentionShape.groupPvLoads : attentionShape.pvLoads;
  const D = Math.ceil(hs / WG), v4 = hs % 4 === 0, L = v4 ? 4 : 1, HL = hs / L;
  const vt = v4 ? 'vec4<f32>' : 'f32';
  // fused (one new token per sequence, hs % 8 == 0): q and k arrive un-rotated and are turned by
  // RoPE as they are read, with the rope kernel's arithmetic; one workgroup per KV head then stores
  // the turned key and the value in the cache slot of this position, with write_kv's arithmetic.
  // No query of the call reads that slot: with one new token, the cached keys in its window are
  // the W-1 positions before it, and the ring holds at least W.
  if (fused && (!v4 || hs % 8 !== 0)) throw new Error('attentionKernel: the fused kernel needs hs % 8 == 0');
  const H2 = HL / 2; // vec4s per half head
  const each = (f: (g: number) => string, sep = '\n    ') => lines(G, f).split('\n').join(sep);
  return {
    key: `attention_hs${hs}${kvF16 ? '_kvf16' : ''}${fused ? '_rope_store' : ''}_pv${PV_LOADS}${G > 1 ? `_g${G}` : ''}`,
    bindings: fused ? ['ints', 'read', 'read', 'read', 'write', 'write', 'write', 'read', 'read'] : ['ints', 'read', 'read', 'read', 'read', 'read', 'write'],
    code: () => /* wgsl */ `${attentionInputs(vt, kvF16, v4, fused ? 'read_write' : 'read')}
// the output [B, T, H, hs], or with splits > 1 the partials [B·T·H, splits, hs + 2]
@group(0) @binding(7) var<storage, read_write> Y: array<f32>;
${fused ? ropeTables(hs) : ''}
const HS = ${hs}u;
/** slot slot0 + jj of the ring, for slot0 < C and jj < ${WG}: one subtraction unless the ring is that small */
fn ring(s: u32) -> u32 {
  if (s < p.C) { return s; }
  if (p.C >= ${WG}u) { return s - p.C; }
  return s % p.C;
}
// head g's query (pre-scaled), probabilities and reductions at offsets g · ${HL} and g · ${WG}
var<workgroup> qs: array<${vt}, ${G * HL}>;
var<workgroup> probs: array<f32, ${G * WG}>;
var<workgroup> redMax: array<f32, ${G * WG}>;
var<workgroup> redSum: array<f32, ${G * WG}>;

@compute @workgroup_size(${WG})
fn main(${BUILTINS}) {
  ${WG_INDEX}
  if (wg >= p.total) { return; }
  let unit = wg / p.splits;       // (b · T + t) · H/G + h0/G
  let split = wg % p.splits;
  let h0 = (unit % (p.H / ${G}u)) * ${G}u; // this workgroup's first query head
  let bt = unit / (p.H / ${G}u);
  let b = bt / p.T;
  let t = bt % p.T;
  let kvOff = (h0 / p.group) * HS;
  let p0 = POS0[b];
  let i = p0 + i32(t);            // this query's position
  let jLo = max(max(0, i - p.window + 1), p0 - i32(p.C));
  // this workgroup's share of keys jLo … i (all of them without splits; possibly none)
  let per = (i - jLo + i32(p.splits)) / i32(p.splits);
  let lo = jLo + i32(split) * per;
  let hi = min(i, lo + per - 1);
  let qo = (bt * p.H + h0) * HS;  // q and y share the [B, T, H, hs] layout; head h0 + g at qo + g · HS

  ${fused ? turnQueries(hs, G, HL, WG) : `for (var e = li; e < ${G * HL}u; e += ${WG}u) {
    ${v4 ? 'qs[e] = vec4<f32>(Q[qo + 4u * e], Q[qo + 4u * e + 1u], Q[qo + 4u * e + 2u], Q[qo + 4u * e + 3u]) * p.scale;' : 'qs[e] = Q[qo + e] * p.scale;'}
  }`}
  workgroupBarrier();

  ${each((g) => `var mRun${g} = ${NEG_BIG}; var lRun${g} = 0.0; var acc${g}: array<f32, ${D}>;`, '\n  ')}
  for (var c0 = lo; c0 <= hi; c0 += ${WG}) {
    let j = c0 + i32(li);
    ${each((g) => `var s${g} = ${NEG_BIG};`)}
    if (j <= hi) {
      ${each((g) => `var dot${g} = ${vt}(0.0);`, '\n      ')}
      if (j < p0) {
        let o = ((b * p.C + u32(j) % p.C) * p.F + kvOff) / ${L}u;
        for (var e = 0u; e < ${HL}u; e++) {
          let k = kc(o + e);
          ${each((g) => `dot${g} = fma(qs[${g * HL}u + e], k, dot${g});`, '\n          ')}
        }
      } else {
        let o = ((b * p.T + u32(j - p0)) * p.F + kvOff) / ${L}u;
        ${fused ? `let kro = (b * p.T + u32(j - p0)) * ${H2}u;
        // the turned key, summed in the same order as the plain kernel sums a turned one
        for (var e = 0u; e < ${H2}u; e++) {
          let k = K[o + e] * COS[kro + e] - K[o + e + ${H2}u] * SIN[kro + e];
          ${each((g) => `dot${g} = fma(qs[${g * HL}u + e], k, dot${g});`, '\n          ')}
        }
        for (var e = 0u; e < ${H2}u; e++) {
          let k = K[o + e + ${H2}u] * COS[kro + e] + K[o + e] * SIN[kro + e];
          ${each((g) => `dot${g} = fma(qs[${g * HL + H2}u + e], k, dot${g});`, '\n          ')}
        }`
      : `for (var e = 0u; e < ${HL}u; e++) {
          let k = K[o + e];
          ${each((g) => `dot${g} = fma(qs[${g * HL}u + e], k, dot${g});`, '\n          ')}
        }`}
      }
      ${each((g) => `s${g} = ${v4 ? `dot${g}.x + dot${g}.y + dot${g}.z + dot${g}.w` : `dot${g}`};`, '\n      ')}
    }
    // the G heads' maxima, then their sums, reduced side by side
    ${each((g) => `redMax[${g * WG}u + li] = s${g};`)}
    ${workgroupReduceRows('redMax', WG, G, 'max')}
    ${each((g) => `let mNew${g} = max(mRun${g}, redMax[${g * WG}u]);
    var pj${g} = 0.0;
    if (j <= hi) { pj${g} = exp(s${g} - mNew${g}); }
    probs[${g * WG}u + li] = pj${g};
    redSum[${g * WG}u + li] = pj${g};`)}
    ${workgroupReduceRows('redSum', WG, G, '+')}
    // rescale what was summed under the old max (exp underflows to 0 on the first chunk)
    ${each((g) => `let corr${g} = exp(mRun${g} - mNew${g});
    lRun${g} = lRun${g} * corr${g} + redSum[${g * WG}u];
    mRun${g} = mNew${g};`)}
    // P·V over the chunk's keys c0 … c0 + nAll - 1: the first nCached from the ring (slots from
    // slot0 on, wrapping at C), ${PV_LOADS} loads in flight at a time; then the new ones
    let nAll = min(hi - c0 + 1, ${WG});
    let nCached = clamp(p0 - c0, 0, nAll);
    let slot0 = u32(max(c0, 0)) % p.C;
    let ringRow = b * p.C;
    let newRow = i32(b * p.T) - p0;
    for (var d = 0u; d < ${D}u; d++) {
      let e = li + d * ${WG}u;
      if (e < HS) {
        ${each((g) => `var a${g} = acc${g}[d] * corr${g};`, '\n        ')}
        let col = kvOff + e;
        var jj = 0;
        for (; jj + ${PV_LOADS} <= nCached; jj += ${PV_LOADS}) {
          ${Array.from({ length: PV_LOADS }, (_, u) => `let s${u}_ = slot0 + u32(jj + ${u}); let v${u} = vc((ringRow + ring(s${u}_)) * p.F + col);`).join('\n          ')}
          ${Array.from({ length: PV_LOADS }, (_, u) => lines(G, (g) => `a${g} = fma(probs[${g * WG} + jj + ${u}], v${u}, a${g});`).split('\n').join(' ')).join('\n          ')}
        }
        for (; jj < nCached; jj++) {
          let s = slot0 + u32(jj);
          let v = vc((ringRow + ring(s)) * p.F + col);
          ${each((g) => `a${g} = fma(probs[${g * WG} + jj], v, a${g});`, ' ')}
        }
        for (; jj < nAll; jj++) {
          let v = V[u32(newRow + c0 + jj) * p.F + col];
          ${each((g) => `a${g} = fma(probs[${g * WG} + jj], v, a${g});`, ' ')}
        }
        ${each((g) => `acc${g}[d] = a${g};`, ' ')}
      }
    }
    workgroupBarrier();
  }
  ${fused ? `// one workgroup per (sequence, KV head) stores the new key and value (p.T == 1)
  if (split == 0u && h0 % p.group == 0u) ${storeNewKv(hs, kvF16, WG)}` : ''}
  for (var d = 0u; d < ${D}u; d++) {
    let e = li + d * ${WG}u;
    if (e < HS) {
      if (p.splits == 1u) {
        ${each((g) => `Y[qo + ${g}u * HS + e] = acc${g}[d] / lRun${g};`, '\n        ')}
      } else { // head h0 + g's partial: row (bt · H + h0 + g), this split
        ${each((g) => `Y[((bt * p.H + h0 + ${g}u) * p.splits + split) * (HS + 2u) + e] = acc${g}[d];`, '\n        ')}
      }
    }
  }
  if (p.splits > 1u && li == 0u) {
    ${each((g) => `Y[((bt * p.H + h0 + ${g}u) * p.splits + split) * (HS + 2u) + HS] = mRun${g};
    Y[((bt * p.H + h0 + ${g}u) * p.splits + split) * (HS + 2u) + HS + 1u] = lRun${g};`)}
  }
}`,
  };
}

// One workgroup per query row: rescale each split's partial sums to the common max and add. The
// splits' maxima and denominators are reduced in parallel (one split per invocation, at most 64),
// so each output value is one pass over the splits with the weights in workgroup memory, all of
// the splits' values loaded at once.
const COMBINE: Kernel = {
  key: 'attention_combine',
  bindings: ['read', 'write'],
  code: () => /* wgsl */ `
struct P { rows: u32, hs: u32, splits: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> PART: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
var<workgroup> red: array<f32, ${WG}>;
var<workgroup> weight: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(${BUILTINS}) {
  ${WG_INDEX}
  if (wg >= p.rows) { return; }
  let stride = p.hs + 2u;
  let base = wg * p.splits * stride;
  var ms = ${NEG_BIG};
  if (li < p.splits) { ms = PART[base + li * stride + p.hs]; }
  ${workgroupReduce('red', WG, 'ms', 'max')}
  let m = red[0];
  workgroupBarrier();
  var ws = 0.0;
  if (li < p.splits) { ws = exp(ms - m); }
  weight[li] = ws;
  var ls = 0.0;
  if (li < p.splits) { ls = PART[base + li * stride + p.hs + 1u] * ws; }
  ${workgroupReduce('red', WG, 'ls', '+')}
  let l = red[0];
  for (var e = li; e < p.hs; e += ${WG}u) {
    var v = 0.0;
    // every split's value in flight at once, summed in order (past p.splits: 0 · weight 0)
    ${lines(WG, (u) => `var a${u} = 0.0; if (${u}u < p.splits) { a${u} = PART[base + ${u}u * stride + e]; }`, ' ')}
    ${lines(WG, (u) => `v += a${u} * weight[${u}u];`, ' ')}
    Y[wg * p.hs + e] = v / l;
  }
}`,
};

const kernels = kernelCache();

export interface AttentionDims {
  B: number; T: number; H: number; Hkv: number; hs: number; C: number; window: number;
}

export interface SplitPolicy {
  /** Fewest keys a split should get; below that, splitting costs more than it saves. */
  minKeys: number;
  /** Workgroups worth filling a GPU with. */
  targetWorkgroups: number;
  /**
   * Query rows per (sequence, KV head), T·H/Hkv, from which a call with T > 1 takes the tiled
   * kernel; fewer rows leave most of a tile idle and the per-row kernel (with splits) fills the GPU
   * better. Tests lower it to 1 to run the tiled kernel on small shapes.
   */
  flashMinRows: number;
  /** The tiled kernel's tile; default: the largest the device's workgroup memory holds. */
  flashTile?: FlashTile;
  /**
   * Keys per split, were each query head its own row, from which the query heads of a KV head
   * share workgroups (GQA): each key is then read once per group, and a workgroup walks 1/G as many
   * keys in turn. Below it (short windows at batch 1) one head per workgroup spreads the keys over
   * more workgroups.
   */
  groupMinKeys: number;
  /**
   * Most sequences of a call that the step kernel (attention-step.ts) takes; the per-row kernel
   * takes larger batches.
   */
  stepMaxBatch: number;
}

// 64 keys per split at least: one chunk of the per-row kernel, so decoding a few heads still fills
// the GPU (H100: 256 keys per split left most of it idle at 1.25 ms per layer for 16 heads; 128
// measured no better than 64 with the P·V loads in flight: bench/attention-decode.ts)
// the step kernel up to batch 2: it gained there for samba-1.7b's and samba-1.3b's heads (batch 2,
// H100, µs a call: 19.7 against 29.8, and 58.1–58.5 against 60.4–64.6), and lost at batches 4, 8
// and 16 to the grouped per-row kernel (bench/attention-decode.ts --step on,off)
export const DEFAULT_SPLIT: SplitPolicy = { minKeys: 64, targetWorkgroups: 1024, flashMinRows: 64, groupMinKeys: 256, stepMaxBatch: 2 };

/** Query heads per workgroup: the largest divisor of the group, at most 8, whose arrays fit workgroup memory. */
function headsPerWorkgroup(ctx: GpuContext, group: number, hs: number): number {
  const room = ctx.device.limits.maxComputeWorkgroupStorageSize;
  for (let G = Math.min(group, 8); G > 1; G--) {
    if (group % G === 0 && 4 * G * (hs + 3 * WG) <= room) return G;
  }
  return 1;
}

/** Splits of each query row's keys: one chunk each at least (minKeys), enough to fill the GPU, at most 64 = WG (the merge reduces them one per invocation). */
function splitsFor(units: number, maxKeys: number, policy: SplitPolicy): number {
  return Math.max(1, Math.min(WG, Math.floor(maxKeys / policy.minKeys), Math.ceil(policy.targetWorkgroups / units)));
}

/** Whether attention() can turn q and k by RoPE and store the new keys itself (the fused kernel). */
export function attentionFuses(ctx: GpuContext, d: AttentionDims): boolean {
  // nine storage buffers: the ints, q, k, v, the cache's two, the output, the two tables
  return d.T === 1 && d.C > 0 && d.hs % 8 === 0 && ctx.device.limits.maxStorageBuffersPerShaderStage >= 9;
}

/** Whether attention runs the flash kernel for these dims (else the per-row kernel). */
export const usesFlash = (d: AttentionDims, policy: SplitPolicy): boolean => d.T > 1 && d.T * (d.H / d.Hkv) >= policy.flashMinRows;

/**
 * kc/vc: the cache's k and v, or any buffer when C = 0 (never read then). `rope`: q and k are
 * un-rotated, and the kernel turns them and stores the new keys and values in the cache (only
 * where attentionFuses). `keep` [B·T·H, 2]: each row's log-sum-exp is written to its first column
 * (usesFlash, no cache: the training forward, for flash-backward.ts).
 */
export function attention(
  ctx: GpuContext, out: GpuTensor, q: GpuTensor, k: GpuTensor, v: GpuTensor,
  kc: GpuTensor, vc: GpuTensor, pos0: Int32Array, d: AttentionDims, policy: SplitPolicy = DEFAULT_SPLIT,
  rope?: { cos: GpuTensor; sin: GpuTensor },
  keep?: GpuTensor, tensorCores: TensorCores = null,
): void {
  const rows = d.B * d.T * d.H;
  if (rope && !attentionFuses(ctx, d)) throw new Error('attention: this call cannot fuse RoPE and the cache store (see attentionFuses)');
  if (keep && !(d.C === 0 && usesFlash(d, policy))) throw new Error('attention: row statistics are kept on the flash path without a cache only');
  if (rows === 0 || d.hs === 0) return;
  if (usesFlash(d, policy)) {
    flashAttention(ctx, out, q, k, v, kc, vc, pos0, d, policy.flashTile ?? pickTile(ctx.device), keep && { ld: keep }, tensorCores);
    return;
  }
  const kvF16 = kc.dtype === 'f16', fused = !!rope;
  // positions stay far below 2^30, so a clamped window behaves as an infinite one
  const window = Math.min(d.window, 2 ** 30);
  const maxKeys = Math.min(window, d.C + d.T);
  let G = d.H / d.Hkv, splits = 0, kernel: Kernel;
  if (fused && attentionShape.step && d.B <= policy.stepMaxBatch && stepFits(ctx, G, d.hs)) splits = stepSplits(G, d.hs, maxKeys);
  if (splits) {
    kernel = kernels(`step|${d.hs}${kvF16 ? 'h' : ''}|${G}`, () => attentionStepKernel(d.hs, kvF16, G));
  } else {
    G = 1;
    splits = splitsFor(rows, maxKeys, policy);
    if (d.H > d.Hkv && maxKeys / splits >= policy.groupMinKeys) {
      G = headsPerWorkgroup(ctx, d.H / d.Hkv, d.hs);
      splits = splitsFor(rows / G, maxKeys, policy);
    }
    kernel = kernels(`${d.hs}${kvF16 ? 'h' : ''}${fused ? 'r' : ''}|${G > 1 ? attentionShape.groupPvLoads : attentionShape.pvLoads}|${G}`, () => attentionKernel(d.hs, kvF16, fused, G));
  }
  const units = (rows / G) * splits; // workgroups
  const params = new Params()
    .u32(d.T, d.H, d.hs, d.C, d.Hkv * d.hs, d.H / d.Hkv).i32(window).u32(units).f32(1 / Math.sqrt(d.hs)).u32(splits);
  const inputs = [pos0, bind(q), bind(k), bind(v), bind(kc), bind(vc)];
  const tables = rope ? [bind(rope.cos), bind(rope.sin)] : [];
  if (splits === 1) {
    ctx.dispatch(kernel, params, [...inputs, bind(out), ...tables], units);
    return;
  }
  const n = rows * splits * (d.hs + 2);
  const part = new GpuTensor([n], 'f32', new Storage(ctx.alloc(n * 4, () => `attention partials of ${rows} rows × ${splits} splits`)));
  ctx.dispatch(kernel, params, [...inputs, bind(part), ...tables], units);
  ctx.dispatch(COMBINE, new Params().u32(rows, d.hs, splits), [bind(part), bind(out)], rows);
  ctx.release(part.buf!); // later commands may reuse it; they run after these
}
