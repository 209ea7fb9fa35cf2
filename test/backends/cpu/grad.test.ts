// Finite-difference checks of every backward op of the CPU reference: for L = Σ out ⊙ R with a
// random R, each analytic gradient is compared with central differences at random entries.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CpuBackend, CpuTensor } from '../../../src/backends/cpu/cpu.js';
import type { Tensor } from '../../../src/core/backend.js';
import { Rng } from '../../../src/core/random.js';

const be = new CpuBackend();
const rng = new Rng(42);
const rand = (shape: number[], scale = 1) => be.tensor(Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => rng.uniform(-scale, scale)), shape);

/** Σ out ⊙ R in float64 */
function dot(out: Tensor, r: Tensor): number {
  const a = (out as CpuTensor).data, b = (r as CpuTensor).data;
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

/**
 * Checks analytic gradients of f's inputs against central differences of L(inputs) = Σ f(inputs) ⊙ R.
 * grads: name → [input index, analytic gradient tensor].
 */
function check(name: string, inputs: Tensor[], f: (xs: Tensor[]) => Tensor, r: Tensor, grads: Record<string, [number, Tensor]>, opts: { eps?: number; tol?: number; samples?: number } = {}): void {
  const { eps = 1e-2, tol = 2e-3, samples = 24 } = opts;
  for (const [gname, [idx, g]] of Object.entries(grads)) {
    const x = (inputs[idx] as CpuTensor).data as Float32Array, gd = (g as CpuTensor).data;
    assert.equal(gd.length, x.length, `${name} d${gname}: size`);
    let maxG = 0;
    for (const v of gd) maxG = Math.max(maxG, Math.abs(v));
    for (let s = 0; s < samples; s++) {
      const i = rng.int(x.length), keep = x[i];
      x[i] = keep + eps; const lp = dot(f(inputs), r);
      x[i] = keep - eps; const lm = dot(f(inputs), r);
      x[i] = keep;
      const fd = (lp - lm) / (2 * eps);
      assert.ok(Math.abs(fd - gd[i]) <= tol * Math.max(1, maxG) + 1e-3 * Math.abs(fd), `${name} d${gname}[${i}]: analytic ${gd[i]}, finite difference ${fd}`);
    }
  }
}

test('matmul: dx = dy·W, dW = dyᵀ·x', () => {
  const x = rand([5, 7]), w = rand([3, 7]), r = rand([5, 3]);
  check('matmul', [x, w], ([a, b]) => be.matmul(a, b), r, { x: [0, be.matmulNN(r, w)], w: [1, be.matmulTN(r, x)] });
});

test('embedding', () => {
  const table = rand([6, 4]), ids = be.ids(Int32Array.of(1, 3, 1, 5, 0), [5]), r = rand([5, 4]);
  check('embedding', [table], ([t]) => be.embedding(t, ids), r, { table: [0, be.embeddingBackward(r, ids, 6)] });
});

test('rmsNorm', () => {
  const x = rand([4, 9]), g = rand([9]), r = rand([4, 9]);
  const { dx, dg } = be.rmsNormBackward(x, g, r, 1e-5);
  check('rmsNorm', [x, g], ([a, b]) => be.rmsNorm(a, b, 1e-5), r, { x: [0, dx], g: [1, dg] });
});

test('siluMul', () => {
  const a = rand([3, 8], 3), b = rand([3, 8]), r = rand([3, 8]);
  const { da, db } = be.siluMulBackward(a, b, r);
  check('siluMul', [a, b], ([x, y]) => be.siluMul(x, y), r, { a: [0, da], b: [1, db] });
});

test('rope: the backward is the inverse rotation', () => {
  const x = rand([6, 16]), r = rand([6, 16]);
  const ang = Float32Array.from({ length: 6 * 4 }, () => rng.uniform(-3, 3));
  const cos = be.tensor(ang.map(Math.cos), [6, 4]), sin = be.tensor(ang.map(Math.sin), [6, 4]), nsin = be.tensor(ang.map((a) => -Math.sin(a)), [6, 4]);
  check('rope', [x], ([a]) => be.rope(a, cos, sin, 2), r, { x: [0, be.rope(r, cos, nsin, 2)] });
});

for (const [label, H, Hkv, window] of [['MHA window 3', 4, 4, 3], ['GQA full', 4, 2, Infinity], ['MQA window 1', 2, 1, 1], ['GQA window 5', 6, 2, 5]] as const) {
  test(`attention (${label})`, () => {
    const B = 2, T = 9, hs = 4;
    const q = rand([B, T, H * hs]), k = rand([B, T, Hkv * hs]), v = rand([B, T, Hkv * hs]), r = rand([B, T, H * hs]);
    const args = { nHeads: H, nKvHeads: Hkv, headDim: hs, window, pos0: new Int32Array(B) };
    const { dq, dk, dv } = be.attentionBackward(q, k, v, r, args);
    check('attention', [q, k, v], ([a, b, c]) => be.attention(a, b, c, null, args), r, { q: [0, dq], k: [1, dk], v: [2, dv] });
  });
}

test('conv1d + SiLU', () => {
  const x = rand([2, 7, 5]), w = rand([5, 4]), b = rand([5]), r = rand([2, 7, 5]);
  const g = be.conv1dSiluBackward(x, w, b, r);
  check('conv1dSilu', [x, w, b], ([a, c, d]) => be.conv1dSilu(a, c, d, null).y, r, { x: [0, g.dx], w: [1, g.dw], b: [2, g.db] });
});

test('selective scan: every input', () => {
  const B = 2, T = 11, C = 3, N = 4;
  const u = rand([B, T, C]), dt = rand([B, T, C], 2), dtBias = rand([C]), aLog = rand([C, N], 1);
  const bm = rand([B, T, N]), cm = rand([B, T, N]), d = rand([C]), z = rand([B, T, C], 2), r = rand([B, T, C]);
  // one dt entry beyond the softplus threshold, to cover that branch
  ((dt as CpuTensor).data as Float32Array)[5] = 25;
  const g = be.selectiveScanBackward(u, dt, dtBias, aLog, bm, cm, d, z, r);
  check('scan', [u, dt, dtBias, aLog, bm, cm, d, z], (x) => be.selectiveScan(x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7], null).y, r, {
    u: [0, g.du], dt: [1, g.ddt], dtBias: [2, g.ddtBias], aLog: [3, g.daLog], B: [4, g.dbm], C: [5, g.dcm], D: [6, g.dd], z: [7, g.dz],
  }, { samples: 30 });
});

test('selective scan from a carried state h0: every input (h0 held constant)', () => {
  const B = 2, T = 9, C = 3, N = 4;
  const u = rand([B, T, C]), dt = rand([B, T, C], 2), dtBias = rand([C]), aLog = rand([C, N], 1);
  const bm = rand([B, T, N]), cm = rand([B, T, N]), d = rand([C]), z = rand([B, T, C], 2), r = rand([B, T, C]), h0 = rand([B, C, N], 2);
  const g = be.selectiveScanBackward(u, dt, dtBias, aLog, bm, cm, d, z, r, h0);
  check('scan h0', [u, dt, dtBias, aLog, bm, cm, d, z], (x) => be.selectiveScan(x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7], h0).y, r, {
    u: [0, g.du], dt: [1, g.ddt], dtBias: [2, g.ddtBias], aLog: [3, g.daLog], B: [4, g.dbm], C: [5, g.dcm], D: [6, g.dd], z: [7, g.dz],
  }, { samples: 30 });
  // and the state matters: the same inputs from zeros give other gradients
  const g0 = be.selectiveScanBackward(u, dt, dtBias, aLog, bm, cm, d, z, r, null);
  assert.notDeepEqual((g0.dcm as CpuTensor).data, (g.dcm as CpuTensor).data);
});

test('cross-entropy: loss and dlogits, ignored targets', () => {
  const logits = rand([5, 7], 3), targets = be.ids(Int32Array.of(2, -1, 6, 0, 3), [5]);
  const { loss, dlogits } = be.crossEntropy(logits, targets, 0.5);
  const ones = be.tensor(Float32Array.of(0.5), [1]);
  check('crossEntropy', [logits], ([l]) => be.crossEntropy(l, targets, 1).loss, ones, { logits: [0, dlogits] });
  const d = (dlogits as CpuTensor).data;
  for (let j = 0; j < 7; j++) assert.equal(d[7 + j], 0, 'ignored row has no gradient');
  assert.ok((loss as CpuTensor).data[0] > 0);
});

test('adamw matches the torch.optim.AdamW update', () => {
  const p = be.tensor(Float32Array.of(1, -2), [2]), g = be.tensor(Float32Array.of(0.5, 0.25), [2]);
  const m = be.zeros([2]), v = be.zeros([2]);
  const hp = { lr: 0.1, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step: 1, gradScale: 2 };
  be.adamw(p, g, m, v, hp);
  // step 1: m̂ = g', v̂ = g'², update = lr·sign(g'); decay first: p·(1 − lr·wd)
  const pd = (p as CpuTensor).data;
  assert.ok(Math.abs(pd[0] - (1 * 0.99 - 0.1)) < 1e-6);
  assert.ok(Math.abs(pd[1] - (-2 * 0.99 - 0.1)) < 1e-6);
  assert.ok(Math.abs((m as CpuTensor).data[0] - 0.1) < 1e-7); // (1 − 0.9)·1.0
});
