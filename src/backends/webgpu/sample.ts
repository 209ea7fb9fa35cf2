// Token sampling on the device (Backend.sampleRows; the CPU backend's loop is the specification):
// one workgroup per row of logits finds the max (and its first id), and for temperature > 0 draws
// by the inverse CDF in id order. Decoding then reads back one number per sequence, not a row of
// the vocabulary.
//
// The CDF walk: each invocation sums the weights exp((x − max)/T) of one contiguous chunk of ids;
// one invocation then walks the chunk sums to the chunk that holds u · Σ, and that chunk's ids to
// the id. Sums are f32 here and f64 on the CPU, so the two can differ only for a u within rounding
// of a boundary between ids.
import { type GpuContext, type Kernel, Params } from './context.js';
import { type GpuTensor, bind } from './tensor.js';
import { BUILTINS, NEG_BIG, WG_INDEX } from './wgsl.js';

const WG = 256;

const SAMPLE: Kernel = {
  key: 'sample_rows',
  bindings: ['ints', 'read', 'write'],
  code: () => /* wgsl */ `
struct P { B: u32, V: u32, greedy: u32, invT: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> U: array<i32>;   // the rows' uniforms, f32 bits
@group(0) @binding(2) var<storage, read> X: array<f32>;   // logits [B, V]
@group(0) @binding(3) var<storage, read_write> Y: array<f32>; // ids [B]
var<workgroup> bestV: array<f32, ${WG}>;
var<workgroup> bestI: array<u32, ${WG}>;
var<workgroup> chunkSum: array<f32, ${WG}>;
var<workgroup> chunkLast: array<u32, ${WG}>; // each chunk's last id of nonzero weight

/** Id i's weight exp((x − max) / T) in the row starting at base. */
fn weight(base: u32, i: u32, mx: f32) -> f32 { return exp((X[base + i] - mx) * p.invT); }

@compute @workgroup_size(${WG})
fn main(${BUILTINS}) {
  ${WG_INDEX}
  if (wg >= p.B) { return; } // surplus workgroups of a folded grid
  let base = wg * p.V;
  // the max and its first id: each invocation's ids rise, so a strict > keeps the first
  var m = ${NEG_BIG};
  var mi = 0xffffffffu;
  for (var i = li; i < p.V; i += ${WG}u) {
    let x = X[base + i];
    if (x > m || mi == 0xffffffffu) { m = x; mi = i; }
  }
  bestV[li] = m;
  bestI[li] = mi;
  workgroupBarrier();
  for (var w = ${WG / 2}u; w > 0u; w >>= 1u) {
    if (li < w) {
      let v = bestV[li + w];
      let j = bestI[li + w];
      // 0xffffffff: an invocation that had no ids (V < ${WG}); it never wins
      if (j != 0xffffffffu && (bestI[li] == 0xffffffffu || v > bestV[li] || (v == bestV[li] && j < bestI[li]))) { bestV[li] = v; bestI[li] = j; }
    }
    workgroupBarrier();
  }
  if (p.greedy == 1u) {
    if (li == 0u) { Y[wg] = f32(bestI[0]); }
    return;
  }
  let mx = bestV[0];
  let chunk = (p.V + ${WG - 1}u) / ${WG}u;
  let lo = min(p.V, li * chunk);
  let hi = min(p.V, lo + chunk);
  var s = 0.0;
  var nz = 0u;
  for (var i = lo; i < hi; i++) {
    let wi = weight(base, i, mx);
    s += wi;
    if (wi > 0.0) { nz = i; }
  }
  chunkSum[li] = s;
  chunkLast[li] = nz;
  workgroupBarrier();
  if (li != 0u) { return; }
  var total = 0.0;
  for (var c = 0u; c < ${WG}u; c++) { total += chunkSum[c]; }
  var r = bitcast<f32>(U[wg]) * total;
  var last = bestI[0]; // the last id of nonzero weight seen, should rounding leave r ≥ 0 at the end
  for (var c = 0u; c < ${WG}u; c++) {
    let cs = chunkSum[c];
    if (cs <= 0.0) { continue; }
    let clo = min(p.V, c * chunk);
    let chi = min(p.V, clo + chunk);
    if (r >= cs) {
      r -= cs;
      last = chunkLast[c];
      continue;
    }
    for (var i = clo; i < chi; i++) {
      let wi = weight(base, i, mx);
      if (wi > 0.0) { last = i; }
      r -= wi;
      if (r < 0.0) { Y[wg] = f32(i); return; }
    }
  }
  Y[wg] = f32(last);
}`,
};

// x ← x / factor where x > 0, else x · factor, at flat indices row · V + id (distinct, so no races)
const PENALIZE: Kernel = {
  key: 'repetition_penalty',
  bindings: ['ints', 'write'],
  code: () => /* wgsl */ `
struct P { n: u32, factor: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> AT: array<i32>;
@group(0) @binding(2) var<storage, read_write> X: array<f32>;
@compute @workgroup_size(${WG})
fn main(${BUILTINS}) {
  ${WG_INDEX}
  let i = wg * ${WG}u + li;
  if (i >= p.n) { return; }
  let at = u32(AT[i]);
  let x = X[at];
  X[at] = select(x * p.factor, x / p.factor, x > 0.0);
}`,
};

/** Penalises `at` (flat indices into x, distinct) in place. */
export function repetitionPenalty(ctx: GpuContext, x: GpuTensor, at: Int32Array, factor: number): void {
  if (at.length === 0) return;
  ctx.dispatch(PENALIZE, new Params().u32(at.length).f32(factor), [at, bind(x)], Math.ceil(at.length / WG));
}

/** out [B] ← one id per row of x [B, V]; uniforms as f32 bits (ignored when greedy). */
export function sampleRows(ctx: GpuContext, out: GpuTensor, x: GpuTensor, B: number, V: number, temperature: number, uniforms: Int32Array): void {
  const greedy = temperature === 0;
  ctx.dispatch(SAMPLE, new Params().u32(B, V, greedy ? 1 : 0).f32(greedy ? 1 : 1 / temperature), [uniforms, bind(x), bind(out)], B);
}
