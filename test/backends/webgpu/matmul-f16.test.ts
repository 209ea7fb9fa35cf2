// The f16 matmul paths ('f16-matmul' precision, and f16-stored weights) against host references.
//
// What the kernels promise: both operands rounded to f16 (nearest, saturating at ±65504), products
// exact (11-bit × 11-bit significands fit f32's 24), sums in f32. So two checks per product:
//
// 1. Against the exact (float64) product of the f16-rounded operands, the only error is f32
//    summation: |y − ŷ| ≤ γ_K · Σ_k |x̃_k w̃_k| with γ_K = K·2⁻²⁴ / (1 − K·2⁻²⁴) (Higham's bound for
//    recursive summation; blocked/tensor-core orders are no worse). We allow 4γ_K, since tensor
//    cores need not round their f32 additions to nearest. This check fails for a kernel that skips
//    the rounding: at K = 1 that kernel is off by up to 2⁻¹¹ relative, 4γ_1 is 2.4e-7.
// 2. Against the plain f32 reference (the CPU backend): rounding moves an operand v by at most
//    δ(v) = max(u|v|, 2⁻²⁵) (u = 2⁻¹¹; the second term for f16 subnormals, below 2⁻¹⁴), so a
//    product moves by at most δ(x)(|w| + δ(w)) + |x|δ(w) ≈ 2u|x w|, and |y − y_ref| ≤
//    Σ_k [δ(x_k)(|w_k| + δ(w_k)) + |x_k|δ(w_k)] + 2·4γ_K Σ_k |x_k w_k| elementwise. This worst
//    case grows like K (all rounding errors of one sign); real errors are random and grow like √K:
//    a rounded operand's relative error is at most u and about uniform, so variance ≤ u²/3, a
//    product's (ε_x + ε_w) ≤ 2u²/3, and the error of a sum has σ ≤ u·√(2/3)·‖p‖ with
//    ‖p‖ = √(Σ_k (x_k w_k)²), the sum's own natural scale. Over the ~10⁶ outputs checked here none
//    should pass 5σ: max |y − y_ref| ≤ 5·u·√(2/3)·‖p‖ ≈ 2e-3·‖p‖. We assert max |y − y_ref| ≤
//    2e-3 · max(max |y_ref|, max ‖p‖): relative to max |y_ref| (the brief's measure) wherever
//    there are enough outputs for max |y_ref| to reach a few ‖p‖ (for uniform x, w in [−1, 1) at
//    K = 257: ‖p‖ ≈ √(K/9) ≈ 5.3, max |y_ref| ≈ 20, observed ≈ 5e-4), and relative to ‖p‖ where a
//    single output may cancel to near zero.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import { CpuBackend } from '../../../src/backends/cpu/cpu.js';
import { WebGpuBackend } from '../../../src/backends/webgpu/backend.js';
import { matmulPackedF16 } from '../../../src/backends/webgpu/matmul.js';
import { TC_ROWS_MAX, TC_ROWS_MIN, TILE_LARGE, TILE_SMALL, gemvShape, matmulF16Tiled, packF16 } from '../../../src/backends/webgpu/matmul-f16.js';
import { GpuTensor } from '../../../src/backends/webgpu/tensor.js';
import { Rng, randomArray } from '../../../src/core/random.js';
import { f32ToF16Bits } from '../../../src/io/half.js';
import type { Backend } from '../../../src/core/backend.js';
import { createNodeWebGpuBackend } from '../../../src/node/webgpu.js';
import { gpuBackendOrSkip, relErr } from '../../helpers/gpu.js';
import { ALL_ARCHITECTURES, randomIds, randomModel, tinyConfig } from '../../helpers/models.js';

const cpu = new CpuBackend();
const SIZES = [1, 7, 63, 64, 65, 130, 257];
const U16 = 2 ** -11;
const F16_MAX = 65504;

/** x rounded to the nearest f16 (ties to even), saturating at ±65504 as the kernels do. */
export function roundF16(x: number): number {
  if (x === 0 || !Number.isFinite(x)) return x;
  const a = Math.abs(x);
  if (a >= F16_MAX) return Math.sign(x) * F16_MAX;
  let e = Math.max(Math.floor(Math.log2(a)), -14); // below 2⁻¹⁴ the spacing stays 2⁻²⁴ (subnormals)
  if (e > -14 && 2 ** e > a) e--;
  if (2 ** (e + 1) <= a) e++;
  const ulp = 2 ** (e - 10), q = a / ulp; // exact: ulp is a power of two
  let r = Math.floor(q);
  const f = q - r;
  if (f > 0.5 || (f === 0.5 && r % 2 === 1)) r++;
  return Math.sign(x) * Math.min(r * ulp, F16_MAX);
}

/** The most f16 rounding moves v: half an ulp, at most u|v| (normal) or 2⁻²⁵ (subnormal). */
const delta = (v: number) => Math.max(U16 * Math.abs(v), 2 ** -25);

/**
 * float64 x·wᵀ of [M, K] and [N, K]; per output also Σ_k |x w| and the bound on how far rounding
 * the operands to f16 moves the sum (header, check 2).
 */
function reference(x: Float32Array, w: Float32Array, M: number, N: number, K: number) {
  const y = new Float64Array(M * N), abs = new Float64Array(M * N), rounding = new Float64Array(M * N);
  let norm = 0; // max over outputs of ‖p‖
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = 0, a = 0, r = 0, q = 0;
      for (let k = 0; k < K; k++) {
        const xv = x[m * K + k], wv = w[n * K + k], p = xv * wv;
        s += p; a += Math.abs(p); q += p * p;
        r += delta(xv) * (Math.abs(wv) + delta(wv)) + Math.abs(xv) * delta(wv);
      }
      y[m * N + n] = s; abs[m * N + n] = a; rounding[m * N + n] = r;
      norm = Math.max(norm, Math.sqrt(q));
    }
  }
  return { y, abs, rounding, norm };
}

const gamma = (K: number) => (K * 2 ** -24) / (1 - K * 2 ** -24);

/** Checks 1 and 2 of the header for one product; returns the relative error vs the f32 reference. */
/**
 * `slack`: an error allowed on top, for a y that went through more f32 arithmetic than the product
 * (a residual added and taken off again), or whose x the kernel computed itself (a fused norm: one
 * f32 ulp of x may round it to the neighbouring f16, so check 1 gets the rounding bound too).
 */
function checkF16Product(what: string, y: Float32Array, x: Float32Array, w: Float32Array, M: number, N: number, K: number, yRef32: Float32Array, slack?: number): number {
  const x16 = x.map(roundF16), w16 = w.map(roundF16);
  const exact16 = reference(x16, w16, M, N, K), exact = reference(x, w, M, N, K);
  const g = 4 * gamma(K);
  for (let i = 0; i < M * N; i++) {
    const d16 = Math.abs(y[i] - exact16.y[i]);
    assert.ok(d16 <= g * exact16.abs[i] + 1e-30 + (slack === undefined ? 0 : slack + exact.rounding[i]),
      `${what}: y[${i}] = ${y[i]} is ${d16} from the f16-operand product ${exact16.y[i]} (bound ${g * exact16.abs[i]})`);
    const d = Math.abs(y[i] - yRef32[i]), bound = exact.rounding[i] + 2 * g * exact.abs[i] + (slack ?? 0);
    assert.ok(d <= bound, `${what}: y[${i}] = ${y[i]} is ${d} from the f32 reference ${yRef32[i]} (bound ${bound})`);
  }
  let d = 0, ref = exact.norm;
  for (let i = 0; i < M * N; i++) { d = Math.max(d, Math.abs(y[i] - yRef32[i])); ref = Math.max(ref, Math.abs(yRef32[i])); }
  const err = d / ref;
  assert.ok(err <= 2e-3, `${what}: max |Δ| / max(max |ref|, max ‖p‖) = ${err} vs the f32 reference exceeds 2e-3`);
  return err;
}

// ---- backends ----

let f16Cached: Promise<WebGpuBackend> | null = null;
let tiledOnly: WebGpuBackend | null = null;

/** The 'f16-matmul' backends to test: each matmul path this device has (tiled; subgroup matrix). */
async function f16BackendsOrSkip(t: TestContext): Promise<{ name: string; be: WebGpuBackend }[] | null> {
  const base = await gpuBackendOrSkip(t);
  if (!base) return null;
  if (!base.features.f16) {
    if (process.env.SAMBA_REQUIRE_WEBGPU === '1') throw new Error('the WebGPU adapter lacks shader-f16, and SAMBA_REQUIRE_WEBGPU=1 makes that a failure');
    t.skip('the WebGPU adapter lacks shader-f16');
    return null;
  }
  // a device of its own, which asks for subgroup matrices where the adapter has them
  f16Cached ??= createNodeWebGpuBackend({ precision: 'f16-matmul', requireAdapter: true }) as Promise<WebGpuBackend>;
  const be = await f16Cached;
  const out = [{ name: be.matmulPath, be }];
  if (be.matmulPath === 'f16-subgroup-matrix') {
    tiledOnly ??= new WebGpuBackend(be.device, { precision: 'f16-matmul', subgroupMatrix: false, adapterInfo: be.device.adapterInfo });
    out.push({ name: 'f16-tiled', be: tiledOnly });
  } else if (be.subgroupMatrixProblem) {
    t.diagnostic(`subgroup matrices turned off: ${be.subgroupMatrixProblem}`);
  }
  return out;
}

test('webgpu f16 matmul: every M, N, K in {1, 7, 63, 64, 65, 130, 257} (and M = 2 … 5) within f16 rounding of the f32 reference', async (t) => {
  const paths = await f16BackendsOrSkip(t);
  if (!paths) return;
  for (const { name, be } of paths) {
    const rng = new Rng(3);
    let worst = 0;
    for (const K of SIZES) {
      for (const N of SIZES) {
        const w = randomArray(rng, N * K);
        const gw = be.tensor(w, [N, K]), cw = cpu.tensor(w, [N, K]);
        for (const M of [...SIZES, 2, 3, 4, 5]) {
          const x = randomArray(rng, M * K);
          const [y, ref] = await be.tidy(() => Promise.all([
            be.read(be.matmul(be.tensor(x, [M, K]), gw)), cpu.read(cpu.matmul(cpu.tensor(x, [M, K]), cw))]));
          worst = Math.max(worst, checkF16Product(`${name} M=${M} N=${N} K=${K}`, y, x, w, M, N, K, ref));
        }
        be.dispose(gw);
      }
    }
    t.diagnostic(`${name}: worst relative error vs f32 ${worst.toExponential(2)}`);
  }
});

test('webgpu f16 matmul: long K, many rows, K = 0, values past the f16 range saturate', async (t) => {
  const paths = await f16BackendsOrSkip(t);
  if (!paths) return;
  for (const { name, be } of paths) {
    const rng = new Rng(4);
    for (const [M, N, K] of [[300, 70, 33], [3, 5, 1500], [70, 3, 1500], [5, 9, 0], [2, 3, 0]]) {
      const x = randomArray(rng, M * K), w = randomArray(rng, N * K);
      const [y, ref] = await be.tidy(() => Promise.all([
        be.read(be.matmul(be.tensor(x, [M, K]), be.tensor(w, [N, K]))),
        cpu.read(cpu.matmul(cpu.tensor(x, [M, K]), cpu.tensor(w, [N, K])))]));
      if (K === 0) assert.deepEqual([...y], new Array(M * N).fill(0), `${name} K=0`);
      else checkF16Product(`${name} M=${M} N=${N} K=${K}`, y, x, w, M, N, K, ref);
    }
    // 1e5 is past f16's largest finite value: it must saturate to 65504, not become inf or garbage
    for (const M of [1, 9]) {
      const K = 6, N = 5;
      const x = Float32Array.from({ length: M * K }, (_, i) => (i % 3 === 0 ? 1e5 : -0.5 + i / 50));
      const w = Float32Array.from({ length: N * K }, (_, i) => (i % 4 === 1 ? -7e4 : 0.25 - i / 40));
      const y = await be.tidy(() => be.read(be.matmul(be.tensor(x, [M, K]), be.tensor(w, [N, K]))));
      const ref = reference(x.map(roundF16), w.map(roundF16), M, N, K).y;
      assert.ok(relErr(y, ref) <= 1e-6, `${name} saturation M=${M}: ${relErr(y, ref)}`);
    }
  }
});

test('webgpu f16 tiled kernel: both tile sizes, f32 and packed f16 weights, K % 4 = 0 and not', async (t) => {
  const paths = await f16BackendsOrSkip(t);
  if (!paths) return;
  const be = paths[0].be, rng = new Rng(6);
  for (const [M, N, K] of [[130, 257, 65], [257, 130, 64], [7, 129, 33], [129, 5, 128]]) {
    const x = randomArray(rng, M * K), w = randomArray(rng, N * K);
    const ref = await cpu.read(cpu.matmul(cpu.tensor(x, [M, K]), cpu.tensor(w, [N, K])));
    const gx = be.tensor(x, [M, K]) as GpuTensor, gw = be.tensor(w, [N, K]) as GpuTensor;
    const packed = packF16(be.ctx, gw, N, K);
    for (const cfg of [TILE_LARGE, TILE_SMALL]) {
      for (const weight of [{ f32: gw }, { f16: packed }]) {
        const out = be.zeros([M, N]) as GpuTensor;
        matmulF16Tiled(be.ctx, out, gx, weight, M, N, K, cfg);
        checkF16Product(`${cfg.BM}×${cfg.BN} ${'f16' in weight ? 'packed' : 'f32'} M=${M} N=${N} K=${K}`, await be.read(out), x, w, M, N, K, ref);
        be.dispose(out);
      }
    }
    be.ctx.release(packed.buf);
    be.dispose(gx); be.dispose(gw);
  }
});

test('webgpu f16 weights (packed once, as for inference): decode gemv and larger M', async (t) => {
  const paths = await f16BackendsOrSkip(t);
  if (!paths) return;
  for (const { name, be } of paths) {
    const rng = new Rng(5), detected = be.f16Caps;
    const caps = name === 'f16-tiled' ? { ...detected, subgroupMatrix: null } : detected;
    for (const [N, K] of [[1, 1], [7, 7], [65, 63], [130, 257], [257, 130], [9, 1000]]) {
      const w = randomArray(rng, N * K);
      const gw = be.tensor(w, [N, K]) as GpuTensor;
      const packed = packF16(be.ctx, gw, N, K);
      // the one-row gemv, blocks of up to 16 rows up to 32 rows (F16_GEMV_MAX_ROWS), then the tiled kernels
      for (const M of [1, 2, 3, 4, 5, 8, 9, 16, 17, 32, 33, 65]) {
        const x = randomArray(rng, M * K);
        const gx = be.tensor(x, [M, K]) as GpuTensor, out = be.zeros([M, N]) as GpuTensor;
        matmulPackedF16(be.ctx, out, gx, packed, M, N, K, caps);
        const [y, ref] = await Promise.all([be.read(out), cpu.read(cpu.matmul(cpu.tensor(x, [M, K]), cpu.tensor(w, [N, K])))]);
        checkF16Product(`${name} packed M=${M} N=${N} K=${K}`, y, x, w, M, N, K, ref);
        be.dispose(gx); be.dispose(out);
      }
      be.ctx.release(packed.buf);
      be.dispose(gw);
    }
  }
});

test('webgpu f16 weights with a norm and a residual (fused into the decoding gemv and the SwiGLU gemv) stay within f16 rounding of the CPU', async (t) => {
  const paths = await f16BackendsOrSkip(t);
  if (!paths) return;
  { // the first path: the gemv the fused ends go into is the same on every path
    const { name, be } = paths[0];
    const rng = new Rng(15);
    for (const [N, K] of [[9, 8], [130, 256], [65, 1000], [7, 63]]) {
      const w = randomArray(rng, N * K), w2 = randomArray(rng, N * K), g = randomArray(rng, K);
      const gw = be.keep(be.compactWeight(be.tensor(w, [N, K]))), gw2 = be.keep(be.compactWeight(be.tensor(w2, [N, K])));
      for (const M of K === 8 ? [1, 3, 8, 9, 17, 40] : [1, 9]) { // 17: two gemv blocks; 40: composed around the tiled kernel
        // a residual stream of large values: normalised before the rounding to f16, it stays in range
        const x = randomArray(rng, M * K, 3000), r = randomArray(rng, M * N);
        const xn = await cpu.read(cpu.rmsNorm(cpu.tensor(x, [M, K]), cpu.tensor(g, [K]), 1e-5));
        const before = be.ctx.counts.dispatches;
        const out = await be.read(be.tidy(() => be.matmul(be.tensor(x, [M, K]), gw, { norm: { g: be.tensor(g, [K]), eps: 1e-5 }, residual: be.tensor(r, [M, N]) })));
        // rows per dispatch: the tensor-core rows gemv takes 32 (in two dispatches where it streams x:
        // its rows packed, with the norm, then the product), the f32-unit one gemvShape.rowsBlock
        const tc = M > 1 && be.f16Caps.subgroupMatrix && M >= TC_ROWS_MIN;
        const block = M === 1 ? 1 : tc ? TC_ROWS_MAX : gemvShape.rowsBlock, perBlock = tc ? 2 : 1;
        const fused = be.ctx.counts.dispatches - before <= Math.ceil(M / block) * perBlock;
        if (K % 4 === 0 && M <= 16) assert.ok(fused, `${name} M=${M} K=${K}: norm and residual fused into the gemv`);
        const prod = await cpu.read(cpu.matmul(cpu.tensor(xn, [M, K]), cpu.tensor(w, [N, K])));
        const res = new Float32Array(M * N);
        for (let i = 0; i < M * N; i++) res[i] = out[i] - r[i]; // exact up to one rounding of the sum
        checkF16Product(`${name} norm+residual M=${M} N=${N} K=${K}`, res, xn, w, M, N, K, prod, 2 ** -23 * Math.max(...r.map(Math.abs)));
        if (M > 16) continue;
        const d0 = be.ctx.counts.dispatches;
        const sv = await be.read(be.tidy(() => be.swiglu(be.tensor(x, [M, K]), gw, gw2, { norm: { g: be.tensor(g, [K]), eps: 1e-5 } })));
        if (K % 4 === 0) assert.ok(be.ctx.counts.dispatches - d0 <= Math.ceil(M / block) * perBlock, `${name} swiglu with norm M=${M} K=${K}: one dispatch per block of rows (two where x streams)`);
        const cv = await cpu.read(cpu.swiglu(cpu.tensor(x, [M, K]), cpu.tensor(w, [N, K]), cpu.tensor(w2, [N, K]), { norm: { g: cpu.tensor(g, [K]), eps: 1e-5 } }));
        const e = relErr(sv, cv);
        assert.ok(e < 4e-3, `${name} swiglu with norm M=${M} K=${K}: relative error ${e}`);
      }
      be.dispose(gw); be.dispose(gw2);
    }
  }
});

test('webgpu packF16 transposed: xᵀ rounded to f16, zero-padded, across 32 × 32 tiles', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  const rng = new Rng(21);
  for (const [rows, cols] of [[1, 1], [33, 70], [65, 17], [130, 257]]) {
    const x = randomArray(rng, rows * cols, 70000); // past the f16 range: saturates
    const gx = be.tensor(x, [rows, cols]) as GpuTensor;
    const m = packF16((be as WebGpuBackend).ctx, gx, rows, cols, 64, true);
    assert.deepEqual([m.rows, m.cols, m.rowsP % 64, m.colsP % 16], [cols, rows, 0, 0]);
    const got: Uint16Array = new Uint16Array(await (be as WebGpuBackend).ctx.readBytes(m.buf, m.rowsP * m.colsP * 2));
    for (let r = 0; r < m.rowsP; r++) {
      for (let c = 0; c < m.colsP; c++) {
        const want = r < cols && c < rows ? f32ToF16Bits(roundF16(x[c * cols + r])) : 0;
        if (got[r * m.colsP + c] !== want) assert.fail(`[${rows}, ${cols}]ᵀ at (${r}, ${c}): ${got[r * m.colsP + c]}, expected ${want}`);
      }
    }
    (be as WebGpuBackend).ctx.release(m.buf);
    be.dispose(gx);
  }
});

test("webgpu 'f16-matmul' backward products (matmulNN, matmulTN) within f16 rounding of the f32 reference, on every f16 path", async (t) => {
  const paths = await f16BackendsOrSkip(t);
  if (!paths) return;
  const T = (a: Float32Array, rows: number, cols: number) => Float32Array.from({ length: rows * cols }, (_, i) => a[(i % rows) * cols + Math.floor(i / rows)]);
  for (const { name, be } of paths) {
    const rng = new Rng(23);
    for (const [M, N, K] of [[1, 1, 1], [7, 63, 65], [130, 64, 257], [257, 130, 17], [300, 40, 96]]) {
      const x = randomArray(rng, M * N), w = randomArray(rng, N * K), b = randomArray(rng, M * K);
      const [nn, tn] = await be.tidy(() => Promise.all([
        be.read(be.matmulNN(be.tensor(x, [M, N]), be.tensor(w, [N, K]))), be.read(be.matmulTN(be.tensor(x, [M, N]), be.tensor(b, [M, K])))]));
      const [nnRef, tnRef] = await Promise.all([
        cpu.read(cpu.matmulNN(cpu.tensor(x, [M, N]), cpu.tensor(w, [N, K]))), cpu.read(cpu.matmulTN(cpu.tensor(x, [M, N]), cpu.tensor(b, [M, K])))]);
      // as products x · vᵀ with the reduction along both operands' rows: NN is x · (wᵀ)ᵀ, TN is xᵀ · (bᵀ)ᵀ
      checkF16Product(`${name} matmulNN M=${M} N=${N} K=${K}`, nn, x, T(w, N, K), M, K, N, nnRef);
      checkF16Product(`${name} matmulTN M=${M} N=${N} K=${K}`, tn, T(x, M, N), T(b, M, K), N, K, M, tnRef);
    }
  }
});

test("webgpu 'f16-matmul' precision: a tiny model's logits (prefill and decode) stay within a few 1e-3 of f32", async (t) => {
  const paths = await f16BackendsOrSkip(t);
  if (!paths) return;
  const f32 = (await gpuBackendOrSkip(t))!;
  for (const { name, be } of paths) {
    for (const arch of ALL_ARCHITECTURES) {
      const cfg = tinyConfig(arch), rng = new Rng(8), B = 2, T = 2 * cfg.window + 3, V = cfg.vocabSize;
      const ids = randomIds(rng, B * T, V);
      const logits = async (b: Backend) => {
        const model = randomModel(b, cfg, 7);
        const full = await b.read(model.forward(ids, B, T));
        // token by token: the decode path (gemv) in f16 must agree with the prefill path (tiled)
        const state = model.newState(B), steps = new Float32Array(B * T * V);
        for (let t0 = 0; t0 < T; t0++) {
          const step = await b.read(model.forward(Int32Array.from({ length: B }, (_, s) => ids[s * T + t0]), B, 1, state));
          for (let s = 0; s < B; s++) steps.set(step.subarray(s * V, (s + 1) * V), (s * T + t0) * V);
        }
        state.dispose(); model.dispose();
        return { full, steps };
      };
      const ref = await logits(f32), got = await logits(be);
      const eFull = relErr(got.full, ref.full), eSteps = relErr(got.steps, got.full);
      // each matmul adds ≈ 5e-4 (see the header) and a model chains about ten: a few 1e-3 at most
      assert.ok(eFull <= 5e-3, `${name} ${arch}: f16 logits differ from f32 by ${eFull}`);
      assert.ok(eFull > 0, `${name} ${arch}: f16 logits equal f32 exactly (was f16 used at all?)`);
      assert.ok(eSteps <= 5e-3, `${name} ${arch}: f16 decode differs from f16 prefill by ${eSteps}`);
      t.diagnostic(`${name} ${arch}: logits vs f32 ${eFull.toExponential(2)}, decode vs prefill ${eSteps.toExponential(2)}`);
    }
  }
});

test('webgpu precision option: reported, validated', async (t) => {
  const base = await gpuBackendOrSkip(t);
  if (!base) return;
  assert.equal(base.precision, 'f32');
  assert.equal(base.matmulPath, 'f32');
  assert.throws(() => new WebGpuBackend(base.device, { precision: 'bf16' as 'f32' }), /unknown precision 'bf16'/);
  if (base.features.f16) {
    const be = new WebGpuBackend(base.device, { precision: 'f16-matmul', subgroupMatrix: false });
    assert.equal(be.precision, 'f16-matmul');
    assert.equal(be.matmulPath, 'f16-tiled');
    be.destroy();
  }
});
