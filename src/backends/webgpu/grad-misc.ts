// Training kernels of the small ops: concatCols, the backward of embedding, rmsNorm and siluMul,
// softmax cross-entropy, and the AdamW update. Every sum over rows is deterministic: per-row or
// per-range partials, then a fixed-order reduction (grad-reduce.ts).
import { type GpuContext, type Kernel, Params } from './context.js';
import { scratch, sum, sumRows } from './grad-reduce.js';
import { type GpuTensor, bind } from './tensor.js';
import { BUILTINS, MATH, WG_INDEX } from './wgsl.js';

const WG = 256;

// ---- concatCols: one dispatch per part, each writing its own columns of the output ----

const PLACE_COLS: Kernel = {
  key: 'grad_place_cols',
  bindings: ['read', 'write'],
  code: () => /* wgsl */ `
struct P { n: u32, width: u32, W: u32, start: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read_write> Y: array<f32>;
@compute @workgroup_size(${WG})
fn main(${BUILTINS}) {
  ${WG_INDEX}
  let i = wg * ${WG}u + li;
  if (i >= p.n) { return; }
  Y[(i / p.width) * p.W + p.start + i % p.width] = X[i];
}`,
};

/** out [M, W] ← the parts side by side (their widths sum to W). */
export function concatCols(ctx: GpuContext, out: GpuTensor, parts: GpuTensor[], M: number, W: number): void {
  let c0 = 0;
  for (const part of parts) {
    const width = part.shape[1], n = M * width;
    if (n) ctx.dispatch(PLACE_COLS, new Params().u32(n, width, W, c0), [bind(part), bind(out)], Math.ceil(n / WG));
    c0 += width;
  }
}

// ---- embeddingBackward ----

// With the ids known on the host (always, for tensors made by ids()), the host groups the
// positions of each distinct id: INTS = [rows U | offsets U+1 | positions N], the positions of
// rows[u] being positions[offsets[u] … offsets[u+1]) in ascending order. One invocation per
// (distinct row, column) sums its positions in that order: no two invocations write one value.
const EMBED_BWD_SORTED: Kernel = {
  key: 'grad_embedding_sorted',
  bindings: ['ints', 'read', 'write'],
  code: () => /* wgsl */ `
struct P { n: u32, D: u32, U: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> INTS: array<i32>;
@group(0) @binding(2) var<storage, read> G: array<f32>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;
@compute @workgroup_size(${WG})
fn main(${BUILTINS}) {
  ${WG_INDEX}
  let i = wg * ${WG}u + li;
  if (i >= p.n) { return; }
  let u = i / p.D;
  let j = i % p.D;
  let lo = u32(INTS[p.U + u]);
  let hi = u32(INTS[p.U + u + 1u]);
  let at = 2u * p.U + 1u;
  var acc = 0.0;
  for (var s = lo; s < hi; s++) { acc += G[u32(INTS[at + s]) * p.D + j]; }
  Y[u32(INTS[u]) * p.D + j] = acc;
}`,
};

// Without host ids: one invocation per output value scans all ids (slow, but exact and ordered).
const EMBED_BWD_SCAN: Kernel = {
  key: 'grad_embedding_scan',
  bindings: ['read', 'read', 'write'],
  code: () => /* wgsl */ `
struct P { n: u32, D: u32, N: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> IDS: array<i32>;
@group(0) @binding(2) var<storage, read> G: array<f32>;
@group(0) @binding(3) var<storage, read_write> Y: array<f32>;
@compute @workgroup_size(${WG})
fn main(${BUILTINS}) {
  ${WG_INDEX}
  let i = wg * ${WG}u + li;
  if (i >= p.n) { return; }
  let v = i32(i / p.D);
  let j = i % p.D;
  var acc = 0.0;
  for (var s = 0u; s < p.N; s++) {
    if (IDS[s] == v) { acc += G[s * p.D + j]; }
  }
  Y[i] = acc;
}`,
};

/** out [V, D] = Σ of the rows of g [N, D] by id; ids must lie in [0, V) (checked by the caller when known). */
export function embeddingBackward(ctx: GpuContext, out: GpuTensor, g: GpuTensor, ids: GpuTensor, hostIds: Int32Array | undefined, V: number, D: number): void {
  if (out.size === 0) return;
  const N = ids.size;
  if (!hostIds) {
    ctx.dispatch(EMBED_BWD_SCAN, new Params().u32(V * D, D, N), [bind(ids), bind(g), bind(out)], Math.ceil((V * D) / WG));
    return;
  }
  ctx.clear(out.buf!, 0, out.bytes); // rows no id names stay zero
  if (N === 0 || D === 0) return;
  // counting sort of the positions by id (stable: positions ascend within an id)
  const count = new Int32Array(V + 1);
  for (const v of hostIds) count[v + 1]++;
  for (let v = 0; v < V; v++) count[v + 1] += count[v];
  const U = new Set(hostIds).size;
  const ints = new Int32Array(2 * U + 1 + N);
  const fill = count.slice(0, V);
  let u = 0;
  for (let v = 0; v < V; v++) {
    if (count[v + 1] === count[v]) continue;
    ints[u] = v;
    ints[U + u] = count[v];
    u++;
  }
  ints[2 * U] = N;
  for (let n = 0; n < N; n++) ints[2 * U + 1 + fill[hostIds[n]]++] = n;
  ctx.dispatch(EMBED_BWD_SORTED, new Params().u32(U * D, D, U), [ints, bind(g), bind(out)], Math.ceil((U * D) / WG));
}

// ---- rmsNormBackward ----

// One workgroup per row: Σ x² and Σ dy·g·x by tree reductions, then
//   dx = r·g·dy − x·r³·(Σ dy·g·x)/D,  r = (mean x² + eps)^(-1/2),
// and r itself, for the gain's gradient.
const RMS_BWD: Kernel = {
  key: 'grad_rms_norm',
  bindings: ['read', 'read', 'read', 'write', 'write'],
  code: () => /* wgsl */ `
struct P { rows: u32, D: u32, eps: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> G: array<f32>;
@group(0) @binding(3) var<storage, read> DY: array<f32>;
@group(0) @binding(4) var<storage, read_write> DX: array<f32>;
@group(0) @binding(5) var<storage, read_write> RR: array<f32>;
var<workgroup> pss: array<f32, ${WG}>;
var<workgroup> pdot: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(${BUILTINS}) {
  ${WG_INDEX}
  if (wg >= p.rows) { return; }
  let o = wg * p.D;
  var ss = 0.0;
  var dot = 0.0;
  for (var j = li; j < p.D; j += ${WG}u) {
    let x = X[o + j];
    ss = fma(x, x, ss);
    dot = fma(DY[o + j] * G[j], x, dot);
  }
  pss[li] = ss;
  pdot[li] = dot;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s >>= 1u) {
    if (li < s) {
      pss[li] += pss[li + s];
      pdot[li] += pdot[li + s];
    }
    workgroupBarrier();
  }
  let r = 1.0 / sqrt(pss[0] / f32(p.D) + p.eps);
  let c = r * r * r * pdot[0] / f32(p.D);
  for (var j = li; j < p.D; j += ${WG}u) {
    DX[o + j] = r * G[j] * DY[o + j] - X[o + j] * c;
  }
  if (li == 0u) { RR[wg] = r; }
}`,
};

// dg partials: invocation (s, j) sums dy·x·r over rows s·per … (s+1)·per − 1 of column j.
const RMS_DG: Kernel = {
  key: 'grad_rms_norm_dg',
  bindings: ['read', 'read', 'read', 'write'],
  code: () => /* wgsl */ `
struct P { n: u32, M: u32, D: u32, per: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> X: array<f32>;
@group(0) @binding(2) var<storage, read> DY: array<f32>;
@group(0) @binding(3) var<storage, read> RR: array<f32>;
@group(0) @binding(4) var<storage, read_write> Y: array<f32>;
@compute @workgroup_size(${WG})
fn main(${BUILTINS}) {
  ${WG_INDEX}
  let i = wg * ${WG}u + li;
  if (i >= p.n) { return; }
  let s = i / p.D;
  let j = i % p.D;
  let hi = min(p.M, (s + 1u) * p.per);
  var acc = 0.0;
  for (var m = s * p.per; m < hi; m++) { acc = fma(DY[m * p.D + j] * X[m * p.D + j], RR[m], acc); }
  Y[i] = acc;
}`,
};

/** Rows per partial of a column sum: at least this many, and at most MAX_PARTS partials. */
const MIN_ROWS_PER_PART = 64, MAX_PARTS = 64;

export function rowChunks(M: number): { parts: number; per: number } {
  const per = Math.max(MIN_ROWS_PER_PART, Math.ceil(M / MAX_PARTS));
  return { parts: Math.max(1, Math.ceil(M / per)), per };
}

export function rmsNormBackward(ctx: GpuContext, dx: GpuTensor, dg: GpuTensor, x: GpuTensor, g: GpuTensor, dy: GpuTensor, M: number, D: number, eps: number): void {
  if (D === 0) return;
  if (M === 0) { ctx.clear(dg.buf!, 0, dg.bytes); return; }
  const rr = scratch(ctx, M, () => `rmsNormBackward scales of ${M} rows`);
  ctx.dispatch(RMS_BWD, new Params().u32(M, D).f32(eps), [bind(x), bind(g), bind(dy), bind(dx), bind(rr)], M);
  const { parts, per } = rowChunks(M);
  if (parts === 1) {
    ctx.dispatch(RMS_DG, new Params().u32(D, M, D, per), [bind(x), bind(dy), bind(rr), bind(dg)], Math.ceil(D / WG));
  } else {
    const part = scratch(ctx, parts * D, () => `rmsNormBackward partials (${parts} × ${D})`);
    ctx.dispatch(RMS_DG, new Params().u32(parts * D, M, D, per), [bind(x), bind(dy), bind(rr), bind(part)], Math.ceil((parts * D) / WG));
    sumRows(ctx, dg, part, parts, D);
    ctx.release(part.buf!);
  }
  ctx.release(rr.buf!);
}

// ---- siluMulBackward: da = dy·b·silu'(a), db = dy·silu(a) ----

const SILU_MUL_BWD: Kernel = {
  key: 'grad_silu_mul',
  bindings: ['read', 'read', 'read', 'write', 'write'],
  code: () => /* wgsl */ `
${MATH}
struct P { n: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(2) var<storage, read> B: array<f32>;
@group(0) @binding(3) var<storage, read> DY: array<f32>;
@group(0) @binding(4) var<storage, read_write> DA: array<f32>;
@group(0) @binding(5) var<storage, read_write> DB: array<f32>;
@compute @workgroup_size(${WG})
fn main(${BUILTINS}) {
  ${WG_INDEX}
  let i = wg * ${WG}u + li;
  if (i >= p.n) { return; }
  let a = A[i];
  let d = DY[i];
  let s = sigmoid(a);
  DB[i] = d * a * s;
  DA[i] = d * B[i] * s * (1.0 + a * (1.0 - s));
}`,
};

export function siluMulBackward(ctx: GpuContext, da: GpuTensor, db: GpuTensor, a: GpuTensor, b: GpuTensor, dy: GpuTensor): void {
  const n = a.size;
  if (n) ctx.dispatch(SILU_MUL_BWD, new Params().u32(n), [bind(a), bind(b), bind(dy), bind(da), bind(db)], Math.ceil(n / WG));
}

// ---- crossEntropy ----

// One workgroup per row: the max and Σ exp by tree reductions, then dlogits and the row's loss
// (zero, with a zero gradient row, for an ignored target). The control flow stays uniform: an
// ignored row does the same work and only its writes differ.
const CROSS_ENTROPY: Kernel = {
  key: 'grad_cross_entropy',
  bindings: ['read', 'read', 'write', 'write'],
  code: () => /* wgsl */ `
struct P { rows: u32, V: u32, scale: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> L: array<f32>;
@group(0) @binding(2) var<storage, read> TG: array<i32>;
@group(0) @binding(3) var<storage, read_write> DL: array<f32>;
@group(0) @binding(4) var<storage, read_write> LOSS: array<f32>;
var<workgroup> red: array<f32, ${WG}>;
@compute @workgroup_size(${WG})
fn main(${BUILTINS}) {
  ${WG_INDEX}
  if (wg >= p.rows) { return; }
  let o = wg * p.V;
  let y = TG[wg];
  let scored = y >= 0 && u32(y) < p.V;
  var m = -3.0e38;
  for (var j = li; j < p.V; j += ${WG}u) { m = max(m, L[o + j]); }
  red[li] = m;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s >>= 1u) {
    if (li < s) { red[li] = max(red[li], red[li + s]); }
    workgroupBarrier();
  }
  let mx = red[0];
  workgroupBarrier();
  var sum = 0.0;
  for (var j = li; j < p.V; j += ${WG}u) { sum += exp(L[o + j] - mx); }
  red[li] = sum;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s >>= 1u) {
    if (li < s) { red[li] += red[li + s]; }
    workgroupBarrier();
  }
  let total = red[0];
  for (var j = li; j < p.V; j += ${WG}u) {
    var d = 0.0;
    if (scored) {
      d = exp(L[o + j] - mx) / total * p.scale;
      if (i32(j) == y) { d -= p.scale; }
    }
    DL[o + j] = d;
  }
  if (li == 0u) {
    var loss = 0.0;
    if (scored) { loss = mx + log(total) - L[o + u32(y)]; }
    LOSS[wg] = loss;
  }
}`,
};

/** loss [1] = Σ of the rows' losses (in row order, two passes); dlogits [R, V]. */
export function crossEntropy(ctx: GpuContext, loss: GpuTensor, dlogits: GpuTensor, logits: GpuTensor, targets: GpuTensor, R: number, V: number, scale: number): void {
  if (R === 0) { ctx.clear(loss.buf!, 0, 4); return; }
  const rowLoss = scratch(ctx, R, () => `crossEntropy losses of ${R} rows`);
  ctx.dispatch(CROSS_ENTROPY, new Params().u32(R, V).f32(scale), [bind(logits), bind(targets), bind(dlogits), bind(rowLoss)], R);
  sum(ctx, loss, rowLoss, R, false);
  ctx.release(rowLoss.buf!);
}

// ---- AdamW, in place ----

const ADAMW: Kernel = {
  key: 'grad_adamw',
  bindings: ['write', 'read', 'write', 'write'],
  code: () => /* wgsl */ `
struct P { n: u32, lr: f32, b1: f32, c1: f32, b2: f32, c2: f32, eps: f32, decay: f32, bc1: f32, bc2: f32, gradScale: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> PW: array<f32>;
@group(0) @binding(2) var<storage, read> GR: array<f32>;
@group(0) @binding(3) var<storage, read_write> MO: array<f32>;
@group(0) @binding(4) var<storage, read_write> VE: array<f32>;
@compute @workgroup_size(${WG})
fn main(${BUILTINS}) {
  ${WG_INDEX}
  let i = wg * ${WG}u + li;
  if (i >= p.n) { return; }
  let g = GR[i] * p.gradScale;
  let m = p.b1 * MO[i] + p.c1 * g;
  let v = p.b2 * VE[i] + p.c2 * g * g;
  MO[i] = m;
  VE[i] = v;
  PW[i] = PW[i] * p.decay - p.lr * (m / p.bc1) / (sqrt(v / p.bc2) + p.eps);
}`,
};

export interface AdamWParams {
  lr: number; beta1: number; beta2: number; eps: number; weightDecay: number; step: number; gradScale: number;
}

export function adamw(ctx: GpuContext, pw: GpuTensor, g: GpuTensor, m: GpuTensor, v: GpuTensor, hp: AdamWParams): void {
  const n = pw.size;
  if (!n) return;
  // the step's constants in float64, as the reference computes them
  const bc1 = 1 - hp.beta1 ** hp.step, bc2 = 1 - hp.beta2 ** hp.step, decay = 1 - hp.lr * hp.weightDecay;
  const params = new Params().u32(n).f32(hp.lr, hp.beta1, 1 - hp.beta1, hp.beta2, 1 - hp.beta2, hp.eps, decay, bc1, bc2, hp.gradScale);
  ctx.dispatch(ADAMW, params, [bind(pw), bind(g), bind(m), bind(v)], Math.ceil(n / WG));
}
