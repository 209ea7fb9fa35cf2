// Decoding attention for one new token per sequence, with RoPE and the cache store fused: one
// workgroup per (sequence, KV head, split of the keys) serves the KV head's whole query group.
//
// The per-row kernel (attention.ts) gives each query head its own workgroups, so at batch 1 each
// key and value is read once per head of its group (8 times for samba-1.7b), and its P·V sums wait
// on one load round after another. Here a workgroup reads a block of keys and values once: the
// block's values go out with the keys' loads and wait in workgroup memory, invocation (key, head)
// takes one score, and (head, columns) sums P·V out of workgroup memory. Each block costs about one
// round trip to memory instead of one per few keys. Small groups (MHA) split each score's dot
// product over several invocations and their P·V over key subsets, so the workgroup stays full.
// The splits' partials are merged as the per-row kernel's are (its combine kernel). It serves
// batches 1 and 2 (SplitPolicy.stepMaxBatch): larger ones fill the GPU with the per-row kernel.
import type { GpuContext, Kernel } from './context.js';
import { BUILTINS, NEG_BIG, WG_INDEX, cacheReaders, lines } from './wgsl.js';
import { F16_MAX } from '../../io/half.js';

const WG = 256;

/**
 * The decoding attention kernels' parameters and bindings 0 to 6: the new tokens' first positions,
 * q, k (as `kType`), v, and the cache's keys and values (cacheReaders).
 */
export const attentionInputs = (kType: string, kvF16: boolean, v4: boolean, cache: 'read' | 'read_write'): string => /* wgsl */ `
struct P {
  T: u32, H: u32, hs: u32, C: u32, F: u32, group: u32, window: i32, total: u32, scale: f32,
  splits: u32,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> POS0: array<i32>;
@group(0) @binding(2) var<storage, read> Q: array<f32>;
@group(0) @binding(3) var<storage, read> K: array<${kType}>;
@group(0) @binding(4) var<storage, read> V: array<f32>;
${cacheReaders(kvF16, v4, cache)}`;

/** A value pair clamped to f16's range and packed, as write_kv stores an f16 cache. */
const packHalves = (a: string) => `pack2x16float(clamp(${a}, vec2<f32>(-${F16_MAX}.0), vec2<f32>(${F16_MAX}.0)))`;

/**
 * The fused kernels' RoPE tables (bindings 8 and 9, [B·T, hs/2] as vec4s) and turnedKey(src, ro,
 * e): element e of the new key whose row starts at value src of K, turned by table row ro (in
 * values), with the rope kernel's arithmetic; turnedKey4(o, ro, e): its vec4 e, o and ro in vec4s.
 */
export const ropeTables = (hs: number): string => /* wgsl */ `
@group(0) @binding(8) var<storage, read> COS: array<vec4<f32>>;
@group(0) @binding(9) var<storage, read> SIN: array<vec4<f32>>;
fn k1(i: u32) -> f32 { return K[i / 4u][i % 4u]; }
fn cos1(i: u32) -> f32 { return COS[i / 4u][i % 4u]; }
fn sin1(i: u32) -> f32 { return SIN[i / 4u][i % 4u]; }
fn turnedKey(src: u32, ro: u32, e: u32) -> f32 {
  if (e < ${hs / 2}u) { return k1(src + e) * cos1(ro + e) - k1(src + e + ${hs / 2}u) * sin1(ro + e); }
  let i = e - ${hs / 2}u;
  return k1(src + e) * cos1(ro + i) + k1(src + i) * sin1(ro + i);
}
fn turnedKey4(o: u32, ro: u32, e: u32) -> vec4<f32> {
  if (e < ${hs / 8}u) { return K[o + e] * COS[ro + e] - K[o + e + ${hs / 8}u] * SIN[ro + e]; }
  let i = e - ${hs / 8}u;
  return K[o + e] * COS[ro + i] + K[o + i] * SIN[ro + i];
}`;

/**
 * WGSL that turns the G query heads from q's value qo on by table row bt, scales them, and stores
 * head g's vec4 e at qs[g · stride + e] (workgroup of `wg`).
 */
export const turnQueries = (hs: number, G: number, stride: number, wg: number): string => {
  const H2 = hs / 8; // vec4s per half head
  return `for (var e = li; e < ${G * H2}u; e += ${wg}u) {
    let g = e / ${H2}u;
    let x = e % ${H2}u;
    let c = COS[bt * ${H2}u + x];
    let s = SIN[bt * ${H2}u + x];
    let qg = qo + g * ${hs}u;
    let lo = vec4<f32>(Q[qg + 4u * x], Q[qg + 4u * x + 1u], Q[qg + 4u * x + 2u], Q[qg + 4u * x + 3u]);
    let hi = vec4<f32>(Q[qg + ${hs / 2}u + 4u * x], Q[qg + ${hs / 2}u + 4u * x + 1u], Q[qg + ${hs / 2}u + 4u * x + 2u], Q[qg + ${hs / 2}u + 4u * x + 3u]);
    qs[g * ${stride}u + x] = (lo * c - hi * s) * p.scale;
    qs[g * ${stride}u + x + ${H2}u] = (hi * c + lo * s) * p.scale;
  }`;
};

/**
 * WGSL that stores the new key (turned) and value of sequence b's KV head at kvOff in the cache
 * slot of position i, with write_kv's arithmetic (workgroup of `wg`).
 */
export const storeNewKv = (hs: number, kvF16: boolean, wg: number): string => `{
    let src = b * p.F + kvOff;
    let dst = (b * p.C + u32(i) % p.C) * p.F + kvOff;
    let ro = b * ${hs / 2}u;
    ${kvF16 ? `for (var w = li; w < ${hs / 2}u; w += ${wg}u) {
      let kw = ${packHalves('vec2<f32>(turnedKey(src, ro, 2u * w), turnedKey(src, ro, 2u * w + 1u))')};
      let word = (dst + 2u * w) / 2u;
      KC[word / 2u][word % 2u] = kw;
      VC[word] = ${packHalves('vec2<f32>(V[src + 2u * w], V[src + 2u * w + 1u])')};
    }` : `for (var e = li; e < ${hs}u; e += ${wg}u) {
      KC[(dst + e) / 4u][(dst + e) % 4u] = turnedKey(src, ro, e);
      VC[dst + e] = V[src + e];
    }`}
  }`;

/**
 * The step kernel's shape for G query heads per KV head of size hs: SP invocations share a score
 * (small groups: blocks of 32 keys at most), KB keys a block; in P·V each invocation owns OUT
 * columns of a head, or (G · hs under the workgroup) every KS-th four keys of one column; workgroup bytes.
 */
function stepShape(G: number, hs: number) {
  const SP = Math.max(1, WG / (G * 32)), KB = WG / (G * SP), HL = hs / 4;
  const OUT = Math.max(1, (G * hs) / WG), KS = Math.max(1, WG / (G * hs));
  return { SP, KB, OUT, KS, HL, bytes: 4 * (G * (HL + 1) * 4 + KB * hs + 3 * WG + (SP > 1 ? WG : 0) + (KS > 1 ? WG : 0)) };
}

/**
 * Whether the step kernel serves a KV head's group of G query heads of size hs: G a power of two
 * up to 64 (blocks of 4 keys at least), G · hs a multiple or a divisor of the workgroup (whole P·V
 * columns, or whole key subsets), a score's parts of whole vec4s, and its arrays within the
 * device's workgroup memory. Other shapes (odd groups, heads of odd sizes) keep the per-row kernel.
 */
export function stepFits(ctx: GpuContext, G: number, hs: number): boolean {
  if ((G & (G - 1)) !== 0 || G > WG / 4 || hs % 8 !== 0 || ((G * hs) % WG !== 0 && WG % (G * hs) !== 0)) return false;
  const { HL, SP, bytes } = stepShape(G, hs);
  return HL % SP === 0 && bytes <= ctx.device.limits.maxComputeWorkgroupStorageSize;
}

/**
 * Splits of up to maxKeys keys where the step kernel takes them (stepFits; SplitPolicy.stepMaxBatch):
 * one block of keys each, at most 64 (the merge's limit). A block's walk is latency, so splits of
 * several blocks walked in turn lose (H100, over 2048 keys at batch 1: samba-1.7b's heads 14.1
 * against 21.1 µs a call, samba-1.3b's 34.1 against 42.8; bench/attention-decode.ts --step on,off).
 */
export const stepSplits = (G: number, hs: number, maxKeys: number): number => Math.min(64, Math.ceil(maxKeys / stepShape(G, hs).KB));

/**
 * The kernel: bindings and parameters as the per-row fused kernel's, workgroup wg = (b · Hkv + KV
 * head) · splits + split. Invocation li is (key jj, head g, part) of the block for the scores, and
 * (key subset ks, head gp, columns e0 …) for P·V (stepShape).
 */
export function attentionStepKernel(hs: number, kvF16: boolean, G: number): Kernel {
  const { SP, KB, OUT, KS, HL } = stepShape(G, hs), H2 = HL / 2, QS = HL + 1; // QS: a head's stride in qs, off the banks of the next
  const VB = Math.ceil((KB * HL) / WG); // vec4s of the value block each invocation loads
  const HLP = HL / SP; // vec4s of a score's part
  const CPH = hs / OUT, TPS = G * CPH; // P·V: invocations per head, per key subset
  const lead = SP > 1 ? 'part == 0u && ' : ''; // one invocation of a score's parts keeps its sums
  const tree = (arr: string, op: string) => `for (var w = ${KB / 2}u; w > 0u; w >>= 1u) {
      if (${lead}jj < w) { ${arr}[g * ${KB}u + jj] = ${op}; }
      workgroupBarrier();
    }`;
  return {
    key: `attention_step_hs${hs}${kvF16 ? '_kvf16' : ''}_g${G}`,
    bindings: ['ints', 'read', 'read', 'read', 'write', 'write', 'write', 'read', 'read'],
    code: () => /* wgsl */ `${attentionInputs('vec4<f32>', kvF16, true, 'read_write')}
// the output [B, 1, H, hs], or with splits > 1 the partials [B·H, splits, hs + 2]
@group(0) @binding(7) var<storage, read_write> Y: array<f32>;
${ropeTables(hs)}
var<workgroup> qs: array<vec4<f32>, ${G * QS}>;   // the G queries, turned and scaled
var<workgroup> vs: array<f32, ${KB * hs}>;        // the block's values [key, hs]
var<workgroup> probs: array<vec4<f32>, ${WG / 4}>; // [head, key] probabilities, four keys a vec4
var<workgroup> redMax: array<f32, ${WG}>;
var<workgroup> redSum: array<f32, ${WG}>;
${SP > 1 ? `var<workgroup> dotPart: array<f32, ${WG}>; // a score's parts` : ''}
${KS > 1 ? `var<workgroup> pvPart: array<f32, ${WG}>;  // the key subsets' P·V sums` : ''}

@compute @workgroup_size(${WG})
fn main(${BUILTINS}) {
  ${WG_INDEX}
  if (wg >= p.total) { return; }
  let unit = wg / p.splits;           // b · Hkv + KV head
  let split = wg % p.splits;
  let hkv = p.H / p.group;
  let b = unit / hkv;
  let h0 = (unit % hkv) * ${G}u;      // the group's first query head
  let bt = b;                         // one token per sequence
  let kvOff = (unit % hkv) * ${hs}u;
  let p0 = POS0[b];
  let i = p0;                         // the new token's position
  let jLo = max(max(0, i - p.window + 1), p0 - i32(p.C));
  let per = (i - jLo + i32(p.splits)) / i32(p.splits);
  let lo = jLo + i32(split) * per;
  let hi = min(i, lo + per - 1);
  let qo = (bt * p.H + h0) * ${hs}u;
  // the new key and value into the cache first, their loads out with the queries' (no workgroup
  // reads the new slot from the cache: the one new key comes from K)
  if (split == 0u) ${storeNewKv(hs, kvF16, WG)}
  ${turnQueries(hs, G, QS, WG)}
  // roles: part \`part\` of the score of key jj of the block for head g; P·V columns e0 … e0 + ${OUT - 1}
  // of head gp over the block's key subset ks (every ${KS}th four keys)
  let part = li % ${SP}u;
  let g = (li / ${SP}u) % ${G}u;
  let jj = li / ${SP * G}u;
  let ks = li / ${TPS}u;
  let gp = (li % ${TPS}u) / ${CPH}u;
  let e0 = (li % ${CPH}u) * ${OUT}u;
  var mScore = ${NEG_BIG};            // head g's running max (for its probabilities)
  var mRun = ${NEG_BIG};              // head gp's running max, denominator and sums
  var lRun = 0.0;
  var acc: array<f32, ${OUT}>;
  workgroupBarrier();
  for (var c0 = lo; c0 <= hi; c0 += ${KB}) {
    let n = u32(min(hi - c0 + 1, ${KB}));
    // the block's values, vec4 vi = (key vi / ${HL}, vec4 vi % ${HL}), issued with the keys' loads
    ${lines(VB, (u) => `var v${u} = vec4<f32>(0.0);
    let vi${u} = li + ${u * WG}u;
    if (vi${u} < n * ${HL}u) {
      let j = c0 + i32(vi${u} / ${HL}u);
      if (j < p0) { v${u} = vc4(((b * p.C + u32(j) % p.C) * p.F + kvOff) / 4u + vi${u} % ${HL}u); }
      else { let at = b * p.F + kvOff + 4u * (vi${u} % ${HL}u); v${u} = vec4<f32>(V[at], V[at + 1u], V[at + 2u], V[at + 3u]); }
    }`, '\n    ')}
    var s = ${NEG_BIG};
    if (jj < n) {
      let j = c0 + i32(jj);
      let e1 = part * ${HLP}u; // this part's vec4s e1 … e1 + ${HLP - 1}
      let q = g * ${QS}u + e1;
      var dot = vec4<f32>(0.0);
      if (j < p0) {
        let o = ((b * p.C + u32(j) % p.C) * p.F + kvOff) / 4u + e1;
        ${lines(HLP, (e) => `let k${e} = kc(o + ${e}u);`, ' ')}
        ${lines(HLP, (e) => `dot = fma(qs[q + ${e}u], k${e}, dot);`, ' ')}
      } else { // the new key, turned as it is read
        let o = (b * p.F + kvOff) / 4u;
        let ro = bt * ${H2}u;
        for (var e = e1; e < e1 + ${HLP}u; e++) { dot = fma(qs[g * ${QS}u + e], turnedKey4(o, ro, e), dot); }
      }
      s = dot.x + dot.y + dot.z + dot.w;
    }${SP > 1 ? `
    dotPart[li] = s;
    workgroupBarrier();
    if (jj < n) { s = ${lines(SP, (q) => `dotPart[li - part + ${q}u]`, ' + ')}; }` : ''}
    ${lines(VB, (u) => `if (vi${u} < ${KB * HL}u) { let at = 4u * vi${u}; vs[at] = v${u}.x; vs[at + 1u] = v${u}.y; vs[at + 2u] = v${u}.z; vs[at + 3u] = v${u}.w; }`, '\n    ')}
    if (${lead}true) { redMax[g * ${KB}u + jj] = s; }
    workgroupBarrier();
    ${tree('redMax', `max(redMax[g * ${KB}u + jj], redMax[g * ${KB}u + jj + w])`)}
    mScore = max(mScore, redMax[g * ${KB}u]);
    var pr = 0.0;
    if (jj < n) { pr = exp(s - mScore); }
    if (${lead}true) {
      probs[(g * ${KB}u + jj) / 4u][jj % 4u] = pr;
      redSum[g * ${KB}u + jj] = pr;
    }
    workgroupBarrier();
    ${tree('redSum', `redSum[g * ${KB}u + jj] + redSum[g * ${KB}u + jj + w]`)}
    // head gp: rescale what was summed under the old max (exp underflows to 0 on the first block)
    let mNew = max(mRun, redMax[gp * ${KB}u]);
    let corr = exp(mRun - mNew);
    lRun = lRun * corr + redSum[gp * ${KB}u];
    mRun = mNew;
    ${lines(OUT, (d) => `var a${d} = acc[${d}] * corr;`, ' ')}
    // four keys a turn (probabilities past n are 0, and the block's values there zeros), their
    // probabilities one read
    for (var k4 = ks; k4 * 4u < n; k4 += ${KS}u) {
      let pk = probs[gp * ${KB / 4}u + k4];
      ${lines(4, (q) => lines(OUT, (d) => `a${d} = fma(pk.${'xyzw'[q]}, vs[(4u * k4 + ${q}u) * ${hs}u + e0 + ${d}u], a${d});`, ' '), '\n      ')}
    }
    ${lines(OUT, (d) => `acc[${d}] = a${d};`, ' ')}
    workgroupBarrier();
  }
  ${KS > 1 ? `// the key subsets' sums, added in order
  pvPart[li] = acc[0];
  workgroupBarrier();
  if (ks != 0u) { return; }
  acc[0] = ${lines(KS, (q) => `pvPart[li + ${q * TPS}u]`, ' + ')};` : ''}
  let row = bt * p.H + h0 + gp;
  if (p.splits == 1u) {
    ${lines(OUT, (d) => `Y[row * ${hs}u + e0 + ${d}u] = acc[${d}] / lRun;`, ' ')}
  } else {
    let at = (row * p.splits + split) * ${hs + 2}u;
    ${lines(OUT, (d) => `Y[at + e0 + ${d}u] = acc[${d}];`, ' ')}
    if (e0 == 0u) { Y[at + ${hs}u] = mRun; Y[at + ${hs + 1}u] = lRun; }
  }
}`,
  };
}
