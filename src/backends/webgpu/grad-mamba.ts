// Backward of Mamba's two sequential pieces: conv1d+SiLU (from zeros) and the selective scan (from
// zeros or from a carried state h0, which takes no gradient: truncated BPTT).
//
// conv1dSiluBackward: ds = dy·silu'(pre-activation) per (b, t, c) into scratch; dx gathers the K
// taps that read each input; dw and db are sums over all (b, t), done as per-row-range partials
// and an ordered reduction.
//
// selectiveScanBackward: the reverse recurrence over recomputed states, in chunks walked in
// parallel where the channels alone underfill the GPU (the section below).
import { type GpuContext, type Kernel, Params, kernelCache } from './context.js';
import { rowChunks } from './grad-misc.js';
import { scratch, sumRows } from './grad-reduce.js';
import { type GpuTensor, bind } from './tensor.js';
import { BUILTINS, MATH, WG_INDEX } from './wgsl.js';
import { CHANNEL_INDEX, CHUNK_INDEX, SCAN_WG, chunkA, packScanParams } from './mamba.js';

const WG = 256;

// ---- conv1dSiluBackward ----

const CONV_HEAD = /* wgsl */ `
struct P { n: u32, T: u32, C: u32, K: u32, H: u32 }
@group(0) @binding(0) var<uniform> p: P;`;

// ds[b, t, c] = dy · silu'(s),  s = bias[c] + Σ_k w[c, k] · x[b, t − H + k, c]  (zeros before t = 0)
const CONV_DS: Kernel = {
  key: 'grad_conv_ds',
  bindings: ['read', 'read', 'read', 'read', 'write'],
  code: () => /* wgsl */ `
${MATH}
${CONV_HEAD}
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> W: array<f32>;
@group(0) @binding(3) var<storage, read> BIAS: array<f32>;
@group(0) @binding(4) var<storage, read> DY: array<f32>;
@group(0) @binding(5) var<storage, read_write> DS: array<f32>;
@compute @workgroup_size(${WG})
fn main(${BUILTINS}) {
  ${WG_INDEX}
  let i = wg * ${WG}u + li;
  if (i >= p.n) { return; }
  let c = i % p.C;
  let t = i32((i / p.C) % p.T);
  var s = BIAS[c];
  for (var k = 0u; k < p.K; k++) {
    let tau = t - i32(p.H) + i32(k);
    if (tau >= 0) { s = fma(W[c * p.K + k], X[i - u32(t - tau) * p.C], s); }
  }
  let sg = sigmoid(s);
  DS[i] = DY[i] * sg * (1.0 + s * (1.0 - sg));
}`,
};

// dx[b, τ, c] = Σ_k ds[b, τ + H − k, c] · w[c, k] over the taps inside the sequence
const CONV_DX: Kernel = {
  key: 'grad_conv_dx',
  bindings: ['read', 'read', 'write'],
  code: () => /* wgsl */ `
${CONV_HEAD}
@group(0) @binding(1) var<storage, read> DS: array<f32>;
@group(0) @binding(2) var<storage, read> W: array<f32>;
@group(0) @binding(3) var<storage, read_write> DX: array<f32>;
@compute @workgroup_size(${WG})
fn main(${BUILTINS}) {
  ${WG_INDEX}
  let i = wg * ${WG}u + li;
  if (i >= p.n) { return; }
  let c = i % p.C;
  let tau = (i / p.C) % p.T;
  var acc = 0.0;
  for (var k = 0u; k < p.K; k++) {
    let t = tau + p.H - k;
    if (t < p.T) { acc = fma(DS[i + (p.H - k) * p.C], W[c * p.K + k], acc); }
  }
  DX[i] = acc;
}`,
};

// Partials of dw [C, K] and db [C]: invocation (s, c) sums over rows s·per … of all (b, t) rows;
// the partial rows are [C·K (dw) | C (db)] long.
function convDwKernel(K: number): Kernel {
  return {
    key: `grad_conv_dw_${K}`,
    bindings: ['read', 'read', 'write'],
    code: () => /* wgsl */ `
struct P { n: u32, T: u32, C: u32, H: u32, per: u32, rows: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> DS: array<f32>;
@group(0) @binding(2) var<storage, read> X: array<f32>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;
@compute @workgroup_size(${WG})
fn main(${BUILTINS}) {
  ${WG_INDEX}
  let i = wg * ${WG}u + li;
  if (i >= p.n) { return; }
  let c = i % p.C;
  let s = i / p.C;
  var dw: array<f32, ${K}>;
  var db = 0.0;
  let hi = min(p.rows, (s + 1u) * p.per);
  for (var r = s * p.per; r < hi; r++) {
    let t = r % p.T;
    let ds = DS[r * p.C + c];
    db += ds;
    for (var k = 0u; k < ${K}u; k++) {
      if (t + k >= p.H) { dw[k] = fma(ds, X[(r + k - p.H) * p.C + c], dw[k]); }
    }
  }
  let o = s * (p.C * ${K + 1}u);
  for (var k = 0u; k < ${K}u; k++) { Y[o + c * ${K}u + k] = dw[k]; }
  Y[o + p.C * ${K}u + c] = db;
}`,
  };
}

const convDw = kernelCache();

export function conv1dSiluBackward(
  ctx: GpuContext, dx: GpuTensor, dw: GpuTensor, db: GpuTensor,
  x: GpuTensor, w: GpuTensor, bias: GpuTensor, dy: GpuTensor, B: number, T: number, C: number, K: number,
): void {
  const H = K - 1, n = B * T * C;
  if (C === 0) return;
  if (n === 0 || K === 0) {
    ctx.clear(dw.buf!, 0, dw.bytes);
    ctx.clear(db.buf!, 0, db.bytes);
    return;
  }
  const ds = scratch(ctx, n, () => `conv1dSiluBackward pre-activation gradients [${B}, ${T}, ${C}]`);
  const base = () => new Params().u32(n, T, C, K, H);
  ctx.dispatch(CONV_DS, base(), [bind(x), bind(w), bind(bias), bind(dy), bind(ds)], Math.ceil(n / WG));
  ctx.dispatch(CONV_DX, base(), [bind(ds), bind(w), bind(dx)], Math.ceil(n / WG));
  const rows = B * T, { parts, per } = rowChunks(rows), width = C * (K + 1);
  const kernel = convDw(K, () => convDwKernel(K));
  const part = scratch(ctx, parts * width, () => `conv1dSiluBackward partials (${parts} × ${width})`);
  ctx.dispatch(kernel, new Params().u32(parts * C, T, C, H, per, rows), [bind(ds), bind(x), bind(part)], Math.ceil((parts * C) / WG));
  if (parts === 1) {
    ctx.copy(part.buf!, 0, dw.buf!, 0, dw.bytes);
    ctx.copy(part.buf!, dw.bytes, db.buf!, 0, db.bytes);
  } else {
    const sum = scratch(ctx, width, () => `conv1dSiluBackward sums (${width})`);
    sumRows(ctx, sum, part, parts, width);
    ctx.copy(sum.buf!, 0, dw.buf!, 0, dw.bytes);
    ctx.copy(sum.buf!, dw.bytes, db.buf!, 0, db.bytes);
    ctx.release(sum.buf!);
  }
  ctx.release(part.buf!);
  ctx.release(ds.buf!);
}

// ---- selectiveScanBackward ----

/** Steps per sub-chunk (between checkpoints): a sub-chunk's states (KC·N floats) live in a private array. */
export function scanChunk(N: number): number {
  return Math.min(64, Math.max(1, 2 ** Math.floor(Math.log2(256 / Math.max(N, 1)))));
}

/** Channels per workgroup of the reverse kernel: its per-step reduction holds 2N floats per channel. */
function scanGroup(N: number): number {
  return Math.min(64, Math.max(1, 2 ** Math.floor(Math.log2(4096 / (2 * Math.max(N, 1))))));
}

/**
 * The chunked backward's shape: where B·C channels are fewer than `invocations`, the sequence is
 * cut into chunks (whole sub-chunks each) walked in parallel, enough for that many invocations,
 * their carried states and adjoints within maxScratchBytes and one binding. Tests shrink it.
 */
export const scanGradShape = { invocations: 1 << 17, maxScratchBytes: 1 << 27 };

/** Steps per chunk of the backward: a multiple of scanChunk(N), or T (one chunk, walked in order). */
export function scanGradChunk(B: number, T: number, C: number, N: number, maxBytes: number): number {
  const KC = scanChunk(N), QK = Math.ceil(T / KC);
  if (B * C >= scanGradShape.invocations || QK < 2) return T;
  const fixed = parLayout(B, T, C, N, 1).floats * 4; // without chunk states
  const room = Math.floor(Math.min(maxBytes - fixed, scanGradShape.maxScratchBytes) / (B * C * (2 * N + 1) * 4));
  const Q = Math.min(Math.ceil(scanGradShape.invocations / (B * C)), QK, room);
  if (Q < 2) return T;
  return KC * Math.ceil(QK / Q);
}

/** Offsets (floats) of PAR's regions for Q chunks (see PAR below), and its length. */
function parLayout(B: number, T: number, C: number, N: number, Q: number) {
  const QK = Math.ceil(T / scanChunk(N)), lanes = Math.ceil(C / scanGroup(N)) * scanGroup(N);
  const h00 = 2 * C + C * N, st0 = h00 + B * C * N;
  const ad0 = st0 + (Q > 1 ? B * Q * C * (N + 1) : 0), ck0 = ad0 + (Q > 1 ? B * Q * C * N : 0);
  return { h00, st0, ad0, ck0, QK, floats: ck0 + B * QK * lanes * N };
}

// The reverse recurrence, per step t (G_t: the gradient reaching h_t, a_t = exp(Δ_t A)):
//   y_t = (h_t·C_t + D u_t) silu(z_t):  dz, gy = dy·silu(z) (the gradient of the ungated y)
//   G_t = gy C_t + a_{t+1} G_{t+1}
//   du_t = gy D + Σ_n G_t Δ_t B_t ;  dΔ_t = Σ_n G_t (B_t u_t + A a_t h_{t−1}) ;  dA += G_t Δ_t a_t h_{t−1}
//   dB_t = Σ_c G_t Δ_t u_t ;  dC_t = Σ_c gy h_t ;  dD = Σ gy u_t ;  ddt = dΔ·softplus'
// It needs every state h_t, which are recomputed rather than kept: a walk over the steps stores the
// state at the start of every sub-chunk of KC steps (a checkpoint), then the sub-chunks are taken
// last to first, each one's KC states recomputed from its checkpoint into a private array.
//
// One invocation per (sequence b, channel c) walks all T steps that way, and B·C invocations leave
// most of a large GPU idle. Chunked: both recurrences are linear, in h forwards and in G backwards,
// so each chunk's start state and incoming adjoint a_{t1} G_{t1} follow from chunk-local scans:
//   (1) per (b, chunk, c): the chunk's scan from zeros (end state, ΣΔ) and its reverse recurrence
//       from zeros (the adjoint it passes back, a_{t0} G⁰_{t0});
//   (2) per (b, c): start states carried forwards from h0, h_{q+1} = end_q + exp(A ΣΔ_q) ⊙ h_q, and
//       incoming adjoints backwards from zero, g_{q−1} = back_q + exp(A ΣΔ_q) ⊙ g_q;
//   (3) per (b, chunk, c): the walk above over the chunk alone, from its start state and adjoint.
// dB and dC [B, T, N] are sums over channels: the invocations of a workgroup (channels of one
// sequence) add theirs in workgroup memory, in channel order, each step, and write one partial per
// workgroup; a second kernel adds the workgroups' partials in order. dA_log, D and the dt bias are
// sums over sequences and chunks: per-(b, chunk, c) partials, added in order.
//
// Packed inputs (kept within 8 storage bindings), PAR = [dtBias (C) | D (C) | aLog (C·N) | h0 (B·C·N)
// | from st0: chunk states [B, Q, C, N + 1] | from ad0: chunk adjoints [B, Q, C, N] | from ck0:
// checkpoints [B, T/KC, G·SW, N]], checkpoints kept per lane (idle lanes too); BC = [B | C] (B·T·N each).

const scanGradHead = (reads: string[], writes: string[]): string => /* wgsl */ `
struct P { B: u32, T: u32, C: u32, Q: u32, L: u32, G: u32, QK: u32, pc0: u32, st0: u32, ad0: u32, ck0: u32 }
@group(0) @binding(0) var<uniform> p: P;
${[...reads.map((v) => `read> ${v}`), ...writes.map((v) => `read_write> ${v}`)].map((v, i) => `@group(0) @binding(${i + 1}) var<storage, ${v}: array<f32>;`).join('\n')}`;

// gy_t, the gradient of the ungated output, at element o
const GY = /* wgsl */ `fn gyAt(o: u32) -> f32 { return DY[o] * silu(Z[o]); }`;

/** (1) Each chunk from zeros: [end state | ΣΔ] and the adjoint it passes back, into PAR's chunk regions. */
function chunkLocalKernel(N: number): Kernel {
  return {
    key: `grad_scan_chunk_local_${N}`,
    bindings: ['read', 'read', 'read', 'read', 'read', 'write'],
    code: () => /* wgsl */ `${MATH}${scanGradHead(['U', 'DT', 'Z', 'DY', 'BC'], ['PAR'])}
${GY}
@compute @workgroup_size(${SCAN_WG})
fn main(${BUILTINS}) {
  ${WG_INDEX}${CHUNK_INDEX}
  let dtBias = PAR[c];
  let cm0 = p.B * p.T * ${N}u;
  ${chunkA(N, 'h', '0.0')}
  var g: array<f32, ${Math.max(N, 1)}>;
  var sum = 0.0;
  for (var t = t0; t < t1; t++) {
    let r = b * p.T + t;
    let delta = softplus(DT[r * p.C + c] + dtBias);
    sum += delta;
    let du = delta * U[r * p.C + c];
    for (var n = 0u; n < ${N}u; n++) { h[n] = fma(exp(delta * a[n]), h[n], du * BC[r * ${N}u + n]); }
  }
  for (var tt = t1; tt > t0; tt--) {
    let r = b * p.T + tt - 1u;
    let delta = softplus(DT[r * p.C + c] + dtBias);
    let gy = gyAt(r * p.C + c);
    for (var n = 0u; n < ${N}u; n++) { g[n] = exp(delta * a[n]) * fma(gy, BC[cm0 + r * ${N}u + n], g[n]); }
  }
  for (var n = 0u; n < ${N}u; n++) {
    PAR[p.st0 + i * ${N + 1}u + n] = h[n];
    PAR[p.ad0 + i * ${N}u + n] = g[n];
  }
  PAR[p.st0 + i * ${N + 1}u + ${N}u] = sum;
}`,
  };
}

/** (2) Per (b, c), in place: the chunks' end states become start states (from h0), their passed-back adjoints incoming ones. */
function chunkCarryKernel(N: number): Kernel {
  return {
    key: `grad_scan_chunk_carry_${N}`,
    bindings: ['write'],
    code: () => /* wgsl */ `${scanGradHead([], ['PAR'])}
@compute @workgroup_size(${SCAN_WG})
fn main(${BUILTINS}) {
  ${WG_INDEX}${CHANNEL_INDEX}
  ${chunkA(N, 'h', `PAR[2u * p.C + p.C * ${N}u + i * ${N}u + n]`)}
  var g: array<f32, ${Math.max(N, 1)}>;
  for (var q = 0u; q < p.Q; q++) {
    let s = p.st0 + ((b * p.Q + q) * p.C + c) * ${N + 1}u;
    let sum = PAR[s + ${N}u];
    for (var n = 0u; n < ${N}u; n++) {
      let end = PAR[s + n];
      PAR[s + n] = h[n];
      h[n] = fma(exp(a[n] * sum), h[n], end);
    }
  }
  for (var qq = p.Q; qq > 0u; qq--) {
    let j = (b * p.Q + qq - 1u) * p.C + c;
    let sum = PAR[p.st0 + j * ${N + 1}u + ${N}u];
    for (var n = 0u; n < ${N}u; n++) {
      let back = PAR[p.ad0 + j * ${N}u + n];
      PAR[p.ad0 + j * ${N}u + n] = g[n];
      g[n] = fma(exp(a[n] * sum), g[n], back);
    }
  }
}`,
  };
}

// (3) The walk over one chunk (all of T when Q = 1, from h0 and a zero adjoint). OUT = [du | ddt |
// dz] (each B·T·C); PART = [dB/dC partials (B·T·G·2N) | from pc0 on, per (b, chunk): dt bias (C) |
// D (C) | dA·A (C·N)].
function reverseKernel(N: number): Kernel {
  const KC = scanChunk(N), SW = scanGroup(N), NA = Math.max(N, 1), N2 = 2 * N;
  return {
    key: `grad_scan_reverse_${N}`,
    bindings: ['read', 'read', 'read', 'read', 'read', 'write', 'write', 'write'],
    code: () => /* wgsl */ `${MATH}${scanGradHead(['U', 'DT', 'Z', 'DY', 'BC'], ['PAR', 'OUT', 'PART'])}
var<workgroup> red: array<f32, ${SW * Math.max(N2, 1)}>;
@compute @workgroup_size(${SW})
fn main(${BUILTINS}) {
  ${WG_INDEX}
  if (wg >= p.B * p.Q * p.G) { return; }
  let cg = wg % p.G;
  let q = (wg / p.G) % p.Q;
  let b = wg / (p.G * p.Q);
  let c = cg * ${SW}u + li;
  let valid = c < p.C;
  let cc = min(c, p.C - 1u);        // idle lanes compute on a real channel and write nothing shared
  let t0 = q * p.L;
  let t1 = min(p.T, t0 + p.L);
  let BTC = p.B * p.T * p.C;
  let cm0 = p.B * p.T * ${N}u;
  let j = (b * p.Q + q) * p.C + cc;
  let dtBias = PAR[cc];
  let dSkip = PAR[p.C + cc];
  var a: array<f32, ${NA}>;
  var h: array<f32, ${NA}>;
  var gNext: array<f32, ${NA}>;
  for (var n = 0u; n < ${N}u; n++) {
    a[n] = -exp(PAR[2u * p.C + cc * ${N}u + n]);
    if (p.Q == 1u) {
      h[n] = PAR[2u * p.C + p.C * ${N}u + (b * p.C + cc) * ${N}u + n];
    } else {
      h[n] = PAR[p.st0 + j * ${N + 1}u + n];
      gNext[n] = PAR[p.ad0 + j * ${N}u + n];
    }
  }
  // checkpoint of sub-chunk k, this lane's slot
  let lane = cg * ${SW}u + li;
  let laneStride = p.G * ${SW}u * ${N}u;
  for (var t = t0; t < t1; t++) {
    if (t % ${KC}u == 0u) {
      let ck = p.ck0 + (b * p.QK + t / ${KC}u) * laneStride + lane * ${N}u;
      for (var n = 0u; n < ${N}u; n++) { PAR[ck + n] = h[n]; }
    }
    let r = b * p.T + t;
    let delta = softplus(DT[r * p.C + cc] + dtBias);
    let du = delta * U[r * p.C + cc];
    for (var n = 0u; n < ${N}u; n++) { h[n] = fma(exp(delta * a[n]), h[n], du * BC[r * ${N}u + n]); }
  }
  var dA: array<f32, ${NA}>;
  var h0: array<f32, ${NA}>;
  var hs: array<f32, ${KC * NA}>;
  var dBias = 0.0;
  var dD = 0.0;
  for (var kk = (t1 - t0 + ${KC - 1}u) / ${KC}u; kk > 0u; kk--) {
    let s0 = t0 + (kk - 1u) * ${KC}u;
    let s1 = min(t1, s0 + ${KC}u);
    let ck = p.ck0 + (b * p.QK + s0 / ${KC}u) * laneStride + lane * ${N}u;
    for (var n = 0u; n < ${N}u; n++) { h0[n] = PAR[ck + n]; }
    h = h0;
    for (var t = s0; t < s1; t++) {
      let r = b * p.T + t;
      let delta = softplus(DT[r * p.C + cc] + dtBias);
      let du = delta * U[r * p.C + cc];
      for (var n = 0u; n < ${N}u; n++) {
        h[n] = fma(exp(delta * a[n]), h[n], du * BC[r * ${N}u + n]);
        hs[(t - s0) * ${N}u + n] = h[n];
      }
    }
    for (var tt = s1; tt > s0; tt--) {
      let t = tt - 1u;
      let k = t - s0;
      let r = b * p.T + t;
      let o = r * p.C + cc;
      let ut = U[o];
      let v = DT[o] + dtBias;
      let delta = softplus(v);
      let zt = Z[o];
      let g = DY[o];
      var yssm = dSkip * ut;
      for (var n = 0u; n < ${N}u; n++) { yssm = fma(hs[k * ${N}u + n], BC[cm0 + r * ${N}u + n], yssm); }
      let sz = sigmoid(zt);
      let dz = g * yssm * sz * (1.0 + zt * (1.0 - sz));
      let gy = g * zt * sz;
      dD = fma(gy, ut, dD);
      var dut = gy * dSkip;
      var ddl = 0.0;
      for (var n = 0u; n < ${N}u; n++) {
        let Bn = BC[r * ${N}u + n];
        let Cn = BC[cm0 + r * ${N}u + n];
        let Gt = fma(gy, Cn, gNext[n]);
        let ea = exp(delta * a[n]);
        var hPrev = h0[n];
        if (k > 0u) { hPrev = hs[(k - 1u) * ${N}u + n]; }
        var db = 0.0;
        var dc = 0.0;
        if (valid) {
          db = Gt * delta * ut;
          dc = gy * hs[k * ${N}u + n];
        }
        red[li * ${N2}u + n] = db;
        red[li * ${N2}u + ${N}u + n] = dc;
        dut = fma(Gt * delta, Bn, dut);
        ddl = fma(Gt, fma(Bn, ut, a[n] * ea * hPrev), ddl);
        dA[n] = fma(Gt * delta * ea, hPrev, dA[n]);
        gNext[n] = ea * Gt;
      }
      var dv = ddl;
      if (v <= 20.0) { dv = ddl * sigmoid(v); } // softplus' = σ, and 1 where softplus is the identity
      dBias += dv;
      if (valid) {
        OUT[o] = dut;
        OUT[BTC + o] = dv;
        OUT[2u * BTC + o] = dz;
      }
      workgroupBarrier();
      for (var x = li; x < ${N2}u; x += ${SW}u) {
        var acc = 0.0;
        for (var l = 0u; l < ${SW}u; l++) { acc += red[l * ${N2}u + x]; }
        PART[(r * p.G + cg) * ${N2}u + x] = acc;
      }
      workgroupBarrier();
    }
  }
  if (valid) {
    let pc = p.pc0 + (b * p.Q + q) * p.C * ${N + 2}u;
    PART[pc + c] = dBias;
    PART[pc + p.C + c] = dD;
    for (var n = 0u; n < ${N}u; n++) { PART[pc + 2u * p.C + c * ${N}u + n] = dA[n] * a[n]; }
  }
}`,
  };
}

// dB, dC [B, T, N]: the workgroups' partials added in order.
const SCAN_BC: Kernel = {
  key: 'grad_scan_bc',
  bindings: ['read', 'write', 'write'],
  code: () => /* wgsl */ `
struct P { n: u32, N: u32, G: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> PART: array<f32>;
@group(0) @binding(2) var<storage, read_write> DB: array<f32>;
@group(0) @binding(3) var<storage, read_write> DC: array<f32>;
@compute @workgroup_size(${WG})
fn main(${BUILTINS}) {
  ${WG_INDEX}
  let i = wg * ${WG}u + li;
  if (i >= p.n) { return; }
  let bt = i / p.N;
  let n = i % p.N;
  var sb = 0.0;
  var sc = 0.0;
  for (var g = 0u; g < p.G; g++) {
    let o = (bt * p.G + g) * 2u * p.N;
    sb += PART[o + n];
    sc += PART[o + p.N + n];
  }
  DB[i] = sb;
  DC[i] = sc;
}`,
};

const scanKernel = kernelCache();

export interface ScanGradTensors {
  du: GpuTensor; ddt: GpuTensor; dz: GpuTensor; dbm: GpuTensor; dcm: GpuTensor; ddtBias: GpuTensor; daLog: GpuTensor; dd: GpuTensor;
}

export interface ScanInputs {
  u: GpuTensor; dt: GpuTensor; dtBias: GpuTensor; aLog: GpuTensor; bm: GpuTensor; cm: GpuTensor; d: GpuTensor; z: GpuTensor; dy: GpuTensor;
  /** The initial state [B, C, N], or null for zeros. */
  h0: GpuTensor | null;
}

export function selectiveScanBackward(ctx: GpuContext, g: ScanGradTensors, x: ScanInputs, B: number, T: number, C: number, N: number): void {
  if (B * T * C === 0) {
    for (const t of Object.values(g)) if (t.size) ctx.clear(t.buf!, 0, t.bytes);
    return;
  }
  const G = Math.ceil(C / scanGroup(N));
  const L = scanGradChunk(B, T, C, N, ctx.maxBinding), Q = Math.ceil(T / L);
  const { h00, st0, ad0, ck0, QK, floats } = parLayout(B, T, C, N, Q);
  const BTN = B * T * N, BTC = B * T * C, f = 4;
  const what = (s: string) => () => `selectiveScanBackward ${s}`;
  const bc = scratch(ctx, 2 * BTN, what(`B and C [2, ${B}, ${T}, ${N}]`));
  ctx.copy(x.bm.buf!, x.bm.offset, bc.buf!, 0, BTN * f);
  ctx.copy(x.cm.buf!, x.cm.offset, bc.buf!, BTN * f, BTN * f);
  const par = scratch(ctx, floats, what(`parameters, ${Q} chunks' states and ${B} × ${QK} checkpoints of ${C} × ${N}`));
  packScanParams(ctx, par.buf!, x.dtBias, x.d, x.aLog, C, N);
  if (x.h0) ctx.copy(x.h0.buf!, x.h0.offset, par.buf!, h00 * f, B * C * N * f);
  else if (N) ctx.clear(par.buf!, h00 * f, B * C * N * f);
  const pc0 = B * T * G * 2 * N, W = C * (N + 2);
  const params = new Params().u32(B, T, C, Q, L, G, QK, pc0, st0, ad0, ck0);
  const inputs = [bind(x.u), bind(x.dt), bind(x.z), bind(x.dy), bind(bc)];
  if (Q > 1) {
    ctx.dispatch(scanKernel(`cl${N}`, () => chunkLocalKernel(N)), params, [...inputs, bind(par)], Math.ceil((B * Q * C) / SCAN_WG));
    ctx.dispatch(scanKernel(`cc${N}`, () => chunkCarryKernel(N)), params, [bind(par)], Math.ceil((B * C) / SCAN_WG));
  }
  const out = scratch(ctx, 3 * BTC, what(`du, ddt, dz [3, ${B}, ${T}, ${C}]`));
  const part = scratch(ctx, pc0 + B * Q * W, what(`partial sums (${B}·${T}·${G}·${2 * N} + ${B}·${Q}·${W})`));
  ctx.dispatch(scanKernel(`rev${N}`, () => reverseKernel(N)), params, [...inputs, bind(par), bind(out), bind(part)], B * Q * G);
  ctx.copy(out.buf!, 0, g.du.buf!, 0, BTC * f);
  ctx.copy(out.buf!, BTC * f, g.ddt.buf!, 0, BTC * f);
  ctx.copy(out.buf!, 2 * BTC * f, g.dz.buf!, 0, BTC * f);
  if (BTN) ctx.dispatch(SCAN_BC, new Params().u32(BTN, N, G), [bind(part), bind(g.dbm), bind(g.dcm)], Math.ceil(BTN / WG));
  const sums = scratch(ctx, W, what(`parameter sums (${W})`));
  sumRows(ctx, sums, part, B * Q, W, pc0);
  ctx.copy(sums.buf!, 0, g.ddtBias.buf!, 0, C * f);
  ctx.copy(sums.buf!, C * f, g.dd.buf!, 0, C * f);
  ctx.copy(sums.buf!, 2 * C * f, g.daLog.buf!, 0, C * N * f);
  for (const s of [bc, par, out, part, sums]) ctx.release(s.buf!);
}
