// Mamba's two sequential pieces: the causal depthwise conv1d (+SiLU) and the selective scan.
import type { PooledBuffer } from './pool.js';
import { type GpuContext, type Kernel, Params, kernelCache } from './context.js';
import { type GpuTensor, bind } from './tensor.js';
import { BUILTINS, MATH, WG_INDEX } from './wgsl.js';
import { ROUND_F16 } from './matmul-f16.js';

const WG = 256;

// Input τ ≥ -H of sequence b, channel c: x when τ ≥ 0, else the carried state (zeros without one).
const CONV_INPUT = /* wgsl */ `
fn input(b: u32, tau: i32, c: u32) -> f32 {
  if (tau >= 0) { return X[(b * p.T + u32(tau)) * p.C + c]; }
  if (p.hasState == 0u) { return 0.0; }
  return S[(b * p.C + c) * p.H + u32(i32(p.H) + tau)];
}`;

const CONV_HEAD = /* wgsl */ `
struct P { n: u32, T: u32, C: u32, K: u32, H: u32, hasState: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> S: array<f32>;`;

// The weights, bias and output after CONV_HEAD, and output (b, t, c): silu(bias + Σ_k w · input).
const CONV_OUT = /* wgsl */ `
@group(0) @binding(3) var<storage, read> W: array<f32>;
@group(0) @binding(4) var<storage, read> BIAS: array<f32>;
@group(0) @binding(5) var<storage, read_write> Y: array<f32>;
fn convOut(b: u32, t: i32, c: u32) -> f32 {
  var s = BIAS[c];
  for (var k = 0u; k < p.K; k++) {
    s = fma(W[c * p.K + k], input(b, t - i32(p.H) + i32(k), c), s);
  }
  return silu(s);
}`;

// One invocation per output (b, t, c).
const CONV: Kernel = {
  key: 'conv1d_silu',
  bindings: ['read', 'read', 'read', 'read', 'write'],
  code: () => /* wgsl */ `
${MATH}
${CONV_HEAD}
${CONV_INPUT}
${CONV_OUT}
@compute @workgroup_size(${WG})
fn main(${BUILTINS}) {
  ${WG_INDEX}
  let i = wg * ${WG}u + li;
  if (i >= p.n) { return; }
  let c = i % p.C;
  let bt = i / p.C;
  Y[i] = convOut(bt / p.T, i32(bt % p.T), c);
}`,
};

// One invocation per carried value (b, c, k < H): the inputs at τ = T-H+k.
const CONV_STATE: Kernel = {
  key: 'conv1d_state',
  bindings: ['read', 'read', 'write'],
  code: () => /* wgsl */ `
${CONV_HEAD}
@group(0) @binding(3) var<storage, read_write> NEXT: array<f32>;
${CONV_INPUT}
@compute @workgroup_size(${WG})
fn main(${BUILTINS}) {
  ${WG_INDEX}
  let i = wg * ${WG}u + li;
  if (i >= p.n) { return; }
  let k = i % p.H;
  let bc = i / p.H;
  NEXT[i] = input(bc / p.C, i32(p.T) - i32(p.H) + i32(k), bc % p.C);
}`,
};

// Decoding (a few new tokens): one invocation per channel (b, c) computes its T outputs and its
// next state together, one dispatch instead of two. Longer inputs keep the two kernels above,
// which spread the work over every (b, t, c).
const CONV_STEP_MAX_T = 8;
const CONV_STEP: Kernel = {
  key: 'conv1d_silu_step',
  bindings: ['read', 'read', 'read', 'read', 'write', 'write'],
  code: () => /* wgsl */ `
${MATH}
${CONV_HEAD}
${CONV_INPUT}
${CONV_OUT}
@group(0) @binding(6) var<storage, read_write> NEXT: array<f32>;
@compute @workgroup_size(${WG})
fn main(${BUILTINS}) {
  ${WG_INDEX}
  let i = wg * ${WG}u + li;
  if (i >= p.n) { return; }
  let c = i % p.C;
  let b = i / p.C;
  for (var t = 0u; t < p.T; t++) { Y[(b * p.T + t) * p.C + c] = convOut(b, i32(t), c); }
  for (var k = 0u; k < p.H; k++) { NEXT[i * p.H + k] = input(b, i32(p.T) - i32(p.H) + i32(k), c); }
}`,
};

/** state: the incoming state, or any buffer (unread) when there is none. */
export function conv1dSilu(
  ctx: GpuContext, y: GpuTensor, next: GpuTensor, x: GpuTensor, w: GpuTensor, bias: GpuTensor,
  state: GpuTensor, hasState: boolean, B: number, T: number, C: number, K: number,
): void {
  const H = K - 1, flag = hasState ? 1 : 0;
  if (T <= CONV_STEP_MAX_T && y.size && next.size) {
    const n = B * C;
    ctx.dispatch(CONV_STEP, new Params().u32(n, T, C, K, H, flag), [bind(x), bind(state), bind(w), bind(bias), bind(y), bind(next)], Math.ceil(n / WG));
    return;
  }
  if (y.size) {
    ctx.dispatch(CONV, new Params().u32(y.size, T, C, K, H, flag), [bind(x), bind(state), bind(w), bind(bias), bind(y)], Math.ceil(y.size / WG));
  }
  if (next.size) {
    ctx.dispatch(CONV_STATE, new Params().u32(next.size, T, C, K, H, flag), [bind(x), bind(state), bind(next)], Math.ceil(next.size / WG));
  }
}

export const SCAN_WG = 64;

/** How the projected scan reads Δ's weight: f32, f32 rounded to f16 (the f16-matmul precision), or packed f16. */
export type DtWeightKind = 'f32' | 'f32r16' | 'f16';
/** New tokens per sequence up to which the projected scan sums Δ's projection itself. */
export const SCAN_PROJECTED_MAX_T = 8;

// One invocation per (sequence b, channel c) holds h[N] in registers and walks t sequentially.
// The per-channel parameters arrive packed in one buffer, [dtBias C | D C | aLog C·N], and h runs
// from H (holding h0, or zeros) back into H, which keeps the kernel within 8 storage bindings.
// the invocation's (sequence b, channel c), channel fastest
export const CHANNEL_INDEX = /* wgsl */ `
  let i = wg * ${SCAN_WG}u + li;
  if (i >= p.B * p.C) { return; }
  let c = i % p.C;
  let b = i / p.C;`;

function scanKernel(N: number): Kernel {
  return {
    key: `selective_scan_${N}`,
    bindings: ['read', 'read', 'read', 'read', 'read', 'read', 'write', 'write'],
    code: () => /* wgsl */ `
${MATH}
struct P { B: u32, T: u32, C: u32 }
@group(0) @binding(0) var<uniform> p: P;
${['U', 'DT', 'Z', 'BM', 'CM', 'PAR'].map((v, i) => `@group(0) @binding(${i + 1}) var<storage, read> ${v}: array<f32>;`).join('\n')}
@group(0) @binding(7) var<storage, read_write> Y: array<f32>;
@group(0) @binding(8) var<storage, read_write> H: array<f32>;
@compute @workgroup_size(${SCAN_WG})
fn main(${BUILTINS}) {
  ${WG_INDEX}${CHANNEL_INDEX}
  let dtBias = PAR[c];
  let dSkip = PAR[p.C + c];
  var a: array<f32, ${Math.max(N, 1)}>;
  var h: array<f32, ${Math.max(N, 1)}>;
  for (var n = 0u; n < ${N}u; n++) {
    a[n] = -exp(PAR[2u * p.C + c * ${N}u + n]);
    h[n] = H[i * ${N}u + n];
  }
  for (var t = 0u; t < p.T; t++) {
    let r = b * p.T + t;
    let ut = U[r * p.C + c];
    let delta = softplus(DT[r * p.C + c] + dtBias);
    let du = delta * ut;
    var yt = 0.0;
    for (var n = 0u; n < ${N}u; n++) {
      h[n] = fma(exp(delta * a[n]), h[n], du * BM[r * ${N}u + n]);
      yt = fma(h[n], CM[r * ${N}u + n], yt);
    }
    Y[r * p.C + c] = fma(dSkip, ut, yt) * silu(Z[r * p.C + c]);
  }
  for (var n = 0u; n < ${N}u; n++) { H[i * ${N}u + n] = h[n]; }
}`,
  };
}

/** Invocations of the projected scan's workgroup, and the most lanes it gives one channel. */
const STEP_WG = 256, STEP_MAX_LANES = 64;
/** Lanes per channel in the projected scan: one per state, up to STEP_MAX_LANES (a power of two). */
export const stepLanes = (N: number): number => Math.min(STEP_MAX_LANES, 1 << Math.ceil(Math.log2(Math.max(N, 1))));

// The projected scan (decoding: Δ's projection inside). δ, B and C are read out of x_proj's output
// [δ | B | C] (row width R + 2N) by column. A channel is a team of G lanes, lane l holding states
// n = l, l + G, …: one exp and one update each per token, where a lone invocation walked all N in
// turn, and the team's loads (its states, its row of W_dt) go out together, each lane's share of
// Δ's R products among them. Each token the team sums its lanes' products for Δ's pre-activation,
// then their C·h for y, in lane order through workgroup memory. δ and W_dt are rounded as the
// product kernels round them: δ to f16 for f16 weights (as the gemv takes x), both for f32 weights
// in the f16-matmul precision.
function scanStepKernel(N: number, w: DtWeightKind): Kernel {
  const G = stepLanes(N), CPW = STEP_WG / G, S = Math.ceil(N / G);
  const dtSum = w === 'f16'
    ? `for (var k8 = lane; k8 * 8u < p.R; k8 += ${G}u) {
        let wq = WDT[c * (p.KP / 8u) + k8];
        ${[0, 1, 2, 3].map((q) => `let w${q} = unpack2x16float(wq[${q}]);`).join(' ')}
        ${Array.from({ length: 8 }, (_, q) => `if (8u * k8 + ${q}u < p.R) { dtp = fma(round_f16(DBC[row + 8u * k8 + ${q}u]), w${q >> 1}.${q & 1 ? 'y' : 'x'}, dtp); }`).join('\n        ')}
      }`
    : `for (var k = lane; k < p.R; k += ${G}u) { dtp = fma(${w === 'f32r16' ? 'round_f16(DBC[row + k]), round_f16(WDT[c * p.R + k])' : 'DBC[row + k], WDT[c * p.R + k]'}, dtp); }`;
  const states = (f: string) => `for (var j = 0u; j < ${S}u; j++) { let n = lane + j * ${G}u; if (n < ${N}u) { ${f} } }`;
  return {
    key: `selective_scan_step_${N}_${w}`,
    bindings: ['read', 'read', 'read', 'read', 'read', 'write', 'write'],
    code: () => /* wgsl */ `
${MATH}${w !== 'f32' ? ROUND_F16 : ''}
struct P { B: u32, T: u32, C: u32, R: u32, W: u32, KP: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> U: array<f32>;
@group(0) @binding(2) var<storage, read> DBC: array<f32>;
@group(0) @binding(3) var<storage, read> WDT: array<${w === 'f16' ? 'vec4<u32>' : 'f32'}>;
@group(0) @binding(4) var<storage, read> Z: array<f32>;
@group(0) @binding(5) var<storage, read> PAR: array<f32>;
@group(0) @binding(6) var<storage, read_write> Y: array<f32>;
@group(0) @binding(7) var<storage, read_write> H: array<f32>;
// the lanes' parts of Δ's pre-activation, and of y (two arrays: one barrier each per token)
var<workgroup> dtPart: array<f32, ${STEP_WG}>;
var<workgroup> yPart: array<f32, ${STEP_WG}>;
@compute @workgroup_size(${STEP_WG})
fn main(${BUILTINS}) {
  ${WG_INDEX}
  let team = li / ${G}u;
  let lane = li % ${G}u;
  let live = wg * ${CPW}u + team < p.B * p.C;
  // a team past the last channel repeats it (the barriers need every invocation) and writes nothing
  let i = min(wg * ${CPW}u + team, p.B * p.C - 1u);
  let c = i % p.C;
  let b = i / p.C;
  let dtBias = PAR[c];
  let dSkip = PAR[p.C + c];
  var a: array<f32, ${S}>;
  var h: array<f32, ${S}>;
  ${states(`a[j] = -exp(PAR[2u * p.C + c * ${N}u + n]); h[j] = H[i * ${N}u + n];`)}
  for (var t = 0u; t < p.T; t++) {
    let r = b * p.T + t;
    let row = r * p.W; // [δ | B | C] of this token
    var dtp = 0.0;
    ${dtSum}
    dtPart[li] = dtp;
    workgroupBarrier();
    var dtv = 0.0;
    for (var l = 0u; l < ${G}u; l++) { dtv += dtPart[team * ${G}u + l]; }
    let ut = U[r * p.C + c];
    let delta = softplus(dtv + dtBias);
    let du = delta * ut;
    var yp = 0.0;
    ${states(`h[j] = fma(exp(delta * a[j]), h[j], du * DBC[row + p.R + n]); yp = fma(h[j], DBC[row + p.R + ${N}u + n], yp);`)}
    yPart[li] = yp;
    workgroupBarrier();
    if (lane == 0u && live) {
      var yt = 0.0;
      for (var l = 0u; l < ${G}u; l++) { yt += yPart[team * ${G}u + l]; }
      Y[r * p.C + c] = fma(dSkip, ut, yt) * silu(Z[r * p.C + c]);
    }
  }
  if (live) { ${states(`H[i * ${N}u + n] = h[j];`)} }
}`,
  };
}

const scanKernels = kernelCache();

/** Records the packing of the scan's constant parameters: par = [dtBias (C) | D (C) | aLog (C·N)]. */
export function packScanParams(ctx: GpuContext, par: PooledBuffer, dtBias: GpuTensor, d: GpuTensor, aLog: GpuTensor, C: number, N: number): void {
  ctx.copy(dtBias.buf!, dtBias.offset, par, 0, C * 4);
  ctx.copy(d.buf!, d.offset, par, C * 4, C * 4);
  ctx.copy(aLog.buf!, aLog.offset, par, 2 * C * 4, C * N * 4);
}

// ---- the chunked scan: the sequence cut into Q chunks of L steps that are scanned in parallel ----
//
// One invocation per (b, c) walks all T steps: B·C invocations, a few thousand for one sequence,
// leave most of a large GPU idle. Since h_t = exp(Δ_t A) h_{t-1} + Δ_t B_t x_t is linear in h, a
// chunk's scan from the true start state h_s equals its scan from zeros plus h_s decayed:
//   h_t = h_t⁰ + exp(A · Σ_{chunk start ≤ s ≤ t} Δ_s) ⊙ h_s.
// So (1) every (b, chunk, c) scans its chunk from zeros: y from those states, the chunk's end state
// and ΣΔ; (2) one invocation per (b, c) carries the start states across the chunks, from h0, and
// leaves the final state; (3) every (b, chunk, c) after the first (or every one, with an h0) walks
// its chunk again and adds C_t · exp(A · ΣΔ) ⊙ h_s (times silu(z_t)) to y.

/**
 * The chunked scan's shape: it runs where B·C channels are fewer than `invocations`, with enough
 * chunks for that many invocations and at most maxChunk steps each, and at least minChunk (tests
 * shrink them). H100: samba-421m training (T 4096, 3072 channels: 43 chunks of 96) 9344 → 10521
 * tok/s; samba-1.7b prefill in 16K chunks (4096 channels) 10057–11580 tok/s sequential, 8546
 * with 32 chunks of 512, 10593 with 128 of 128 (bench/throughput.ts --scan-invocations).
 */
export const scanShape = { invocations: 1 << 17, minChunk: 32, maxChunk: 128, maxScratchBytes: 1 << 27 };

/**
 * Chunks for a scan of T steps over B·C channels of N states (1: the sequential kernel), as many
 * as the chunks' end states ([B, Q, C, N + 1] floats) fit `maxBytes` (one binding) and
 * scanShape.maxScratchBytes; none where that would leave chunks longer than maxChunk.
 */
export function scanChunks(B: number, T: number, C: number, N: number, maxBytes: number): number {
  if (B * C >= scanShape.invocations) return 1;
  const want = Math.max(Math.ceil(scanShape.invocations / Math.max(1, B * C)), Math.ceil(T / scanShape.maxChunk));
  const room = Math.floor(Math.min(maxBytes, scanShape.maxScratchBytes) / (B * C * (N + 1) * 4));
  const Q = Math.min(want, Math.floor(T / scanShape.minChunk), room);
  if (Q < 2 || Q < Math.ceil(T / scanShape.maxChunk)) return 1; // longer chunks were slower than none (the prefill row in scanShape)
  return Math.ceil(T / Math.ceil(T / Q)); // no empty chunk
}

/** The chunk kernels' parameters and storage bindings: `reads`, then `writes` (name: element type, f32 arrays). */
const chunkHead = (reads: string[], writes: string[]): string => /* wgsl */ `
struct P { B: u32, T: u32, C: u32, Q: u32, L: u32 }
@group(0) @binding(0) var<uniform> p: P;
${[...reads.map((v) => `read> ${v}`), ...writes.map((v) => `read_write> ${v}`)].map((v, i) => `@group(0) @binding(${i + 1}) var<storage, ${v}: array<f32>;`).join('\n')}`;

/** A = -exp(A_log) of channel c, as the sequential kernel computes it, and a second per-state array `other`. */
export const chunkA = (N: number, other: string, init: string): string => /* wgsl */ `var a: array<f32, ${Math.max(N, 1)}>;
  var ${other}: array<f32, ${Math.max(N, 1)}>;
  for (var n = 0u; n < ${N}u; n++) { a[n] = -exp(PAR[2u * p.C + c * ${N}u + n]); ${other}[n] = ${init}; }`;

// the index of the invocation's (b, q, c), channel fastest; its chunk's steps t0 … t1 − 1
export const CHUNK_INDEX = /* wgsl */ `
  let i = wg * ${SCAN_WG}u + li;
  if (i >= p.B * p.Q * p.C) { return; }
  let c = i % p.C;
  let q = (i / p.C) % p.Q;
  let b = i / (p.C * p.Q);
  let t0 = q * p.L;
  let t1 = min(t0 + p.L, p.T);`;

/** (1) Each chunk from zeros: y (without the start state's part), then [its end state (N) | ΣΔ] into HL [B, Q, C, N + 1]. */
function chunkLocalKernel(N: number): Kernel {
  return {
    key: `selective_scan_chunk_local_${N}`,
    bindings: ['read', 'read', 'read', 'read', 'read', 'read', 'write', 'write'],
    code: () => /* wgsl */ `${MATH}${chunkHead(['U', 'DT', 'Z', 'BM', 'CM', 'PAR'], ['Y', 'HL'])}
@compute @workgroup_size(${SCAN_WG})
fn main(${BUILTINS}) {
  ${WG_INDEX}${CHUNK_INDEX}
  let dtBias = PAR[c];
  let dSkip = PAR[p.C + c];
  ${chunkA(N, 'h', '0.0')}
  var sum = 0.0;
  for (var t = t0; t < t1; t++) {
    let r = b * p.T + t;
    let ut = U[r * p.C + c];
    let delta = softplus(DT[r * p.C + c] + dtBias);
    sum += delta;
    let du = delta * ut;
    var yt = 0.0;
    for (var n = 0u; n < ${N}u; n++) {
      h[n] = fma(exp(delta * a[n]), h[n], du * BM[r * ${N}u + n]);
      yt = fma(h[n], CM[r * ${N}u + n], yt);
    }
    Y[r * p.C + c] = fma(dSkip, ut, yt) * silu(Z[r * p.C + c]);
  }
  for (var n = 0u; n < ${N}u; n++) { HL[i * ${N + 1}u + n] = h[n]; }
  HL[i * ${N + 1}u + ${N}u] = sum;
}`,
  };
}

/** (2) Per (b, c): the chunks' start states into HS [B, Q, C, N], from h0 in H, which ends holding the final state. */
function chunkCarryKernel(N: number): Kernel {
  return {
    key: `selective_scan_chunk_carry_${N}`,
    bindings: ['read', 'read', 'write', 'write'],
    code: () => /* wgsl */ `${chunkHead(['HL', 'PAR'], ['H', 'HS'])}
@compute @workgroup_size(${SCAN_WG})
fn main(${BUILTINS}) {
  ${WG_INDEX}${CHANNEL_INDEX}
  ${chunkA(N, 'h', `H[i * ${N}u + n]`)}
  for (var q = 0u; q < p.Q; q++) {
    let j = (b * p.Q + q) * p.C + c;
    let sum = HL[j * ${N + 1}u + ${N}u];
    for (var n = 0u; n < ${N}u; n++) {
      HS[j * ${N}u + n] = h[n];
      h[n] = fma(exp(a[n] * sum), h[n], HL[j * ${N + 1}u + n]);
    }
  }
  for (var n = 0u; n < ${N}u; n++) { H[i * ${N}u + n] = h[n]; }
}`,
  };
}

/** (3) Each chunk's start state, decayed step by step, added to its y: C_t · exp(A · ΣΔ) ⊙ h_s · silu(z_t). */
function chunkFixKernel(N: number): Kernel {
  return {
    key: `selective_scan_chunk_fix_${N}`,
    bindings: ['read', 'read', 'read', 'read', 'read', 'write'],
    code: () => /* wgsl */ `${MATH}${chunkHead(['DT', 'Z', 'CM', 'PAR', 'HS'], ['Y'])}
@compute @workgroup_size(${SCAN_WG})
fn main(${BUILTINS}) {
  ${WG_INDEX}${CHUNK_INDEX}
  let dtBias = PAR[c];
  ${chunkA(N, 'hs', `HS[i * ${N}u + n]`)}
  var nonzero = false;
  for (var n = 0u; n < ${N}u; n++) { nonzero = nonzero || hs[n] != 0.0; }
  if (!nonzero) { return; } // the first chunk without an h0: nothing to add
  var sum = 0.0;
  for (var t = t0; t < t1; t++) {
    let r = b * p.T + t;
    sum += softplus(DT[r * p.C + c] + dtBias);
    var yt = 0.0;
    for (var n = 0u; n < ${N}u; n++) { yt = fma(exp(a[n] * sum) * hs[n], CM[r * ${N}u + n], yt); }
    Y[r * p.C + c] += yt * silu(Z[r * p.C + c]);
  }
}`,
  };
}

/**
 * par: the packed parameters (packScanParams) of 2C + C·N floats; hOut: already holds h0 (or
 * zeros). Long scans over few channels run chunked (scanChunks), others one invocation per (b, c).
 */
export function selectiveScan(
  ctx: GpuContext, y: GpuTensor, hOut: GpuTensor, par: PooledBuffer,
  u: GpuTensor, dt: GpuTensor, bm: GpuTensor, cm: GpuTensor, z: GpuTensor,
  B: number, T: number, C: number, N: number,
): void {
  if (B * C === 0) return;
  const parB = { buf: par, size: (2 * C + C * N) * 4 };
  const Q = scanChunks(B, T, C, N, ctx.maxBinding);
  if (Q > 1) {
    const L = Math.ceil(T / Q), params = new Params().u32(B, T, C, Q, L), groups = Math.ceil((B * Q * C) / SCAN_WG);
    const hlBytes = B * Q * C * (N + 1) * 4, hsBytes = B * Q * C * N * 4;
    const hl = ctx.alloc(hlBytes, () => `chunked scan: local end states of ${B} × ${Q} chunks × ${C} channels`);
    const hs = ctx.alloc(hsBytes, () => `chunked scan: start states of ${B} × ${Q} chunks × ${C} channels`);
    const hlB = { buf: hl, size: hlBytes }, hsB = { buf: hs, size: hsBytes };
    ctx.dispatch(scanKernels(`cl${N}`, () => chunkLocalKernel(N)), params, [bind(u), bind(dt), bind(z), bind(bm), bind(cm), parB, bind(y), hlB], groups);
    ctx.dispatch(scanKernels(`cc${N}`, () => chunkCarryKernel(N)), params, [hlB, parB, bind(hOut), hsB], Math.ceil((B * C) / SCAN_WG));
    ctx.dispatch(scanKernels(`cf${N}`, () => chunkFixKernel(N)), params, [bind(dt), bind(z), bind(cm), parB, hsB, bind(y)], groups);
    ctx.release(hl);
    ctx.release(hs);
    return;
  }
  const kernel = scanKernels(N, () => scanKernel(N));
  ctx.dispatch(kernel, new Params().u32(B, T, C), [bind(u), bind(dt), bind(z), bind(bm), bind(cm), parB, bind(y), bind(hOut)], Math.ceil((B * C) / SCAN_WG));
}

/**
 * selectiveScan with Δ's projection inside (T ≤ SCAN_PROJECTED_MAX_T): dbc [B·T, R + 2N], the
 * weight [C, R] as f32 or packed f16 (`kp`: its padded row length in halves).
 */
export function selectiveScanProjected(
  ctx: GpuContext, y: GpuTensor, hOut: GpuTensor, par: PooledBuffer,
  u: GpuTensor, dbc: GpuTensor, dtWeight: { buf: PooledBuffer; offset: number; size: number; kind: DtWeightKind; kp: number }, z: GpuTensor,
  B: number, T: number, C: number, N: number, R: number,
): void {
  if (T > SCAN_PROJECTED_MAX_T) throw new Error(`selectiveScanProjected: ${T} tokens per sequence, at most ${SCAN_PROJECTED_MAX_T}`);
  if (B * C === 0) return;
  const kernel = scanKernels(`p${N}${dtWeight.kind}`, () => scanStepKernel(N, dtWeight.kind));
  ctx.dispatch(kernel, new Params().u32(B, T, C, R, R + 2 * N, dtWeight.kp), [
    bind(u), bind(dbc), { buf: dtWeight.buf, offset: dtWeight.offset, size: dtWeight.size }, bind(z), { buf: par, size: (2 * C + C * N) * 4 }, bind(y), bind(hOut),
  ], Math.ceil((B * C) / (STEP_WG / stepLanes(N))));
}

