// Backward of Mamba's two sequential pieces, conv1d+SiLU and the selective scan, both from a zero
// initial state (training on whole sequences).
//
// conv1dSiluBackward: ds = dy·silu'(pre-activation) per (b, t, c) into scratch; dx gathers the K
// taps that read each input; dw and db are sums over all (b, t), done as per-row-range partials
// and an ordered reduction.
//
// selectiveScanBackward: one invocation per (sequence b, channel c), the state in registers, as in
// the forward. The reverse recurrence needs every state h_t, which are recomputed rather than kept:
//   1. a forward pass stores the state at the start of every chunk of KC steps (checkpoints,
//      (T/KC)·C·N floats per sequence);
//   2. the backward walks the chunks last to first: it recomputes the chunk's KC states from its
//      checkpoint into a private array, then runs the reverse recurrence over them.
// dB and dC [B, T, N] are sums over channels: the invocations of a workgroup (channels of one
// sequence) add theirs in workgroup memory, in channel order, each step, and write one partial per
// workgroup; a second kernel adds the workgroups' partials in order. dA_log, D and the dt bias are
// sums over sequences: per-(b, c) partials, added over b in order.
import { type GpuContext, type Kernel, Params, kernelCache } from './context.js';
import { rowChunks } from './grad-misc.js';
import { scratch, sumRows } from './grad-reduce.js';
import { type GpuTensor, bind } from './tensor.js';
import { BUILTINS, MATH, WG_INDEX } from './wgsl.js';

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

/** Scan steps per checkpoint chunk: the chunk's states (KC·N floats) live in a private array. */
export function scanChunk(N: number): number {
  return Math.min(64, Math.max(1, 2 ** Math.floor(Math.log2(256 / Math.max(N, 1)))));
}

/** Channels per workgroup of the backward: its per-step reduction holds 2N floats per channel. */
function scanGroup(N: number): number {
  return Math.min(64, Math.max(1, 2 ** Math.floor(Math.log2(4096 / (2 * Math.max(N, 1))))));
}

// Packed inputs (kept within 8 storage bindings):
//   BC    = [B (B·T·N) | C (B·T·N)]
//   PARCK = [dtBias (C) | D (C) | aLog (C·N) | checkpoints (B·Q·C·N)], checkpoint (b, q, c) holding
//           the state before step q·KC; checkpoint (b, 0, c) is filled with h0 (or zeros) first.

// 1. The forward recurrence (the same arithmetic as the forward kernel), storing checkpoints.
function checkpointKernel(N: number): Kernel {
  const KC = scanChunk(N), NA = Math.max(N, 1);
  return {
    key: `grad_scan_ckpt_${N}`,
    bindings: ['read', 'read', 'read', 'write'],
    code: () => /* wgsl */ `
${MATH}
struct P { B: u32, T: u32, C: u32, Q: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> U: array<f32>;
@group(0) @binding(2) var<storage, read> DT: array<f32>;
@group(0) @binding(3) var<storage, read> BC: array<f32>;
@group(0) @binding(4) var<storage, read_write> PARCK: array<f32>;
@compute @workgroup_size(64)
fn main(${BUILTINS}) {
  ${WG_INDEX}
  let i = wg * 64u + li;
  if (i >= p.B * p.C) { return; }
  let c = i % p.C;
  let b = i / p.C;
  let dtBias = PARCK[c];
  let ck0 = 2u * p.C + p.C * ${N}u;
  var a: array<f32, ${NA}>;
  var h: array<f32, ${NA}>;
  for (var n = 0u; n < ${N}u; n++) { a[n] = -exp(PARCK[2u * p.C + c * ${N}u + n]); }
  let first = ck0 + (b * p.Q * p.C + c) * ${N}u;
  for (var n = 0u; n < ${N}u; n++) { h[n] = PARCK[first + n]; }
  for (var t = 0u; t < p.T; t++) {
    if (t % ${KC}u == 0u) {
      let base = ck0 + ((b * p.Q + t / ${KC}u) * p.C + c) * ${N}u;
      for (var n = 0u; n < ${N}u; n++) { PARCK[base + n] = h[n]; }
    }
    let r = b * p.T + t;
    let delta = softplus(DT[r * p.C + c] + dtBias);
    let du = delta * U[r * p.C + c];
    for (var n = 0u; n < ${N}u; n++) { h[n] = fma(exp(delta * a[n]), h[n], du * BC[r * ${N}u + n]); }
  }
}`,
  };
}

// 2. The reverse recurrence, chunk by chunk. Per step t (G_t: the gradient reaching h_t):
//   y_t = (h_t·C_t + D u_t) silu(z_t):  dz, gy = dy·silu(z) (the gradient of the ungated y)
//   G_t = gy C_t + a_{t+1} G_{t+1},  a_t = exp(Δ_t A)
//   du_t = gy D + Σ_n G_t Δ_t B_t ;  dΔ_t = Σ_n G_t (B_t u_t + A a_t h_{t−1}) ;  dA += G_t Δ_t a_t h_{t−1}
//   dB_t = Σ_c G_t Δ_t u_t ;  dC_t = Σ_c gy h_t ;  dD = Σ gy u_t ;  ddt = dΔ·softplus'
// OUT = [du | ddt | dz] (each B·T·C); PART = [dB/dC partials (B·T·G·2N) | from pc0 on, per
// sequence: dt bias (C) | D (C) | dA·A (C·N)].
function reverseKernel(N: number): Kernel {
  const KC = scanChunk(N), SW = scanGroup(N), NA = Math.max(N, 1), N2 = 2 * N;
  return {
    key: `grad_scan_reverse_${N}`,
    bindings: ['read', 'read', 'read', 'read', 'read', 'read', 'write', 'write'],
    code: () => /* wgsl */ `
${MATH}
struct P { B: u32, T: u32, C: u32, G: u32, Q: u32, pc0: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> U: array<f32>;
@group(0) @binding(2) var<storage, read> DT: array<f32>;
@group(0) @binding(3) var<storage, read> Z: array<f32>;
@group(0) @binding(4) var<storage, read> DY: array<f32>;
@group(0) @binding(5) var<storage, read> BC: array<f32>;
@group(0) @binding(6) var<storage, read> PARCK: array<f32>;
@group(0) @binding(7) var<storage, read_write> OUT: array<f32>;
@group(0) @binding(8) var<storage, read_write> PART: array<f32>;
var<workgroup> red: array<f32, ${SW * Math.max(N2, 1)}>;
@compute @workgroup_size(${SW})
fn main(${BUILTINS}) {
  ${WG_INDEX}
  if (wg >= p.B * p.G) { return; }
  let b = wg / p.G;
  let cg = wg % p.G;
  let c = cg * ${SW}u + li;
  let valid = c < p.C;
  let cc = min(c, p.C - 1u);        // idle lanes compute on a real channel and write nothing
  let BTC = p.B * p.T * p.C;
  let cm0 = p.B * p.T * ${N}u;
  let ck0 = 2u * p.C + p.C * ${N}u;
  let dtBias = PARCK[cc];
  let dSkip = PARCK[p.C + cc];
  var a: array<f32, ${NA}>;
  for (var n = 0u; n < ${N}u; n++) { a[n] = -exp(PARCK[2u * p.C + cc * ${N}u + n]); }
  var gNext: array<f32, ${NA}>;
  var dA: array<f32, ${NA}>;
  var h0: array<f32, ${NA}>;
  var hs: array<f32, ${KC * NA}>;
  var dBias = 0.0;
  var dD = 0.0;
  for (var qq = 0u; qq < p.Q; qq++) {
    let q = p.Q - 1u - qq;
    let t0 = q * ${KC}u;
    let t1 = min(p.T, t0 + ${KC}u);
    let base = ck0 + ((b * p.Q + q) * p.C + cc) * ${N}u;
    for (var n = 0u; n < ${N}u; n++) { h0[n] = PARCK[base + n]; }
    var h = h0;
    for (var t = t0; t < t1; t++) {
      let r = b * p.T + t;
      let delta = softplus(DT[r * p.C + cc] + dtBias);
      let du = delta * U[r * p.C + cc];
      for (var n = 0u; n < ${N}u; n++) {
        h[n] = fma(exp(delta * a[n]), h[n], du * BC[r * ${N}u + n]);
        hs[(t - t0) * ${N}u + n] = h[n];
      }
    }
    for (var tt = t1; tt > t0; tt--) {
      let t = tt - 1u;
      let k = t - t0;
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
    let pc = p.pc0 + b * p.C * ${N + 2}u;
    PART[pc + c] = dBias;
    PART[pc + p.C + c] = dD;
    for (var n = 0u; n < ${N}u; n++) { PART[pc + 2u * p.C + c * ${N}u + n] = dA[n] * a[n]; }
  }
}`,
  };
}

// 3. dB, dC [B, T, N]: the workgroups' partials added in order.
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
  const KC = scanChunk(N), SW = scanGroup(N), Q = Math.ceil(T / KC), G = Math.ceil(C / SW);
  const BTN = B * T * N, BTC = B * T * C, f = 4;
  const what = (s: string) => () => `selectiveScanBackward ${s}`;
  const bc = scratch(ctx, 2 * BTN, what(`B and C [2, ${B}, ${T}, ${N}]`));
  ctx.copy(x.bm.buf!, x.bm.offset, bc.buf!, 0, BTN * f);
  ctx.copy(x.cm.buf!, x.cm.offset, bc.buf!, BTN * f, BTN * f);
  const ck0 = 2 * C + C * N;
  const parck = scratch(ctx, ck0 + B * Q * C * N, what(`checkpoints (${B} × ${Q} chunks × ${C} × ${N})`));
  ctx.copy(x.dtBias.buf!, x.dtBias.offset, parck.buf!, 0, C * f);
  ctx.copy(x.d.buf!, x.d.offset, parck.buf!, C * f, C * f);
  ctx.copy(x.aLog.buf!, x.aLog.offset, parck.buf!, 2 * C * f, C * N * f);
  for (let b = 0; b < B; b++) { // checkpoint (b, 0) = h0[b]: the recurrence starts from it
    const at = (ck0 + b * Q * C * N) * f;
    if (x.h0) ctx.copy(x.h0.buf!, x.h0.offset + b * C * N * f, parck.buf!, at, C * N * f);
    else if (N) ctx.clear(parck.buf!, at, C * N * f);
  }
  ctx.dispatch(
    scanKernel(`ck${N}`, () => checkpointKernel(N)), new Params().u32(B, T, C, Q),
    [bind(x.u), bind(x.dt), bind(bc), bind(parck)], Math.ceil((B * C) / 64),
  );
  const out = scratch(ctx, 3 * BTC, what(`du, ddt, dz [3, ${B}, ${T}, ${C}]`));
  const pc0 = B * T * G * 2 * N, W = C * (N + 2);
  const part = scratch(ctx, pc0 + B * W, what(`partial sums (${B}·${T}·${G}·${2 * N} + ${B}·${W})`));
  ctx.dispatch(
    scanKernel(`rev${N}`, () => reverseKernel(N)), new Params().u32(B, T, C, G, Q, pc0),
    [bind(x.u), bind(x.dt), bind(x.z), bind(x.dy), bind(bc), bind(parck), bind(out), bind(part)], B * G,
  );
  ctx.copy(out.buf!, 0, g.du.buf!, 0, BTC * f);
  ctx.copy(out.buf!, BTC * f, g.ddt.buf!, 0, BTC * f);
  ctx.copy(out.buf!, 2 * BTC * f, g.dz.buf!, 0, BTC * f);
  if (BTN) ctx.dispatch(SCAN_BC, new Params().u32(BTN, N, G), [bind(part), bind(g.dbm), bind(g.dcm)], Math.ceil(BTN / WG));
  const sums = scratch(ctx, W, what(`parameter sums (${W})`));
  sumRows(ctx, sums, part, B, W, pc0);
  ctx.copy(sums.buf!, 0, g.ddtBias.buf!, 0, C * f);
  ctx.copy(sums.buf!, C * f, g.dd.buf!, 0, C * f);
  ctx.copy(sums.buf!, 2 * C * f, g.daLog.buf!, 0, C * N * f);
  for (const s of [bc, parck, out, part, sums]) ctx.release(s.buf!);
}
