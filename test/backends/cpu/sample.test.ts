// Backend.sampleRows on the CPU, the specification of the WGSL kernel: argmax with the first of
// equal maxima, the inverse CDF in id order (its draws follow softmax(x / T)), the repetition
// penalty, and the argument checks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CpuBackend } from '../../../src/backends/cpu/cpu.js';
import { Rng, randomArray } from '../../../src/core/random.js';

const be = new CpuBackend();
const sample = async (x: Float32Array, V: number, o: Parameters<CpuBackend['sampleRows']>[1]) =>
  Array.from(await be.read(be.sampleRows(be.tensor(x, [x.length / V, V]), o)));

test('sampleRows greedy: the argmax per row, the first of equal maxima', async () => {
  const x = Float32Array.of(0, 3, 1, 3, /**/ -5, -6, -7, -8, /**/ 2, 2, 2, 2);
  assert.deepEqual(await sample(x, 4, { temperature: 0 }), [1, 0, 0]);
});

test('sampleRows at temperature T: the inverse CDF in id order, whose draws follow softmax(x / T)', async () => {
  const x = Float32Array.of(1, 0, 2, -1), T = 0.7;
  const w = Array.from(x, (v) => Math.exp((v - 2) / T)), total = w.reduce((a, b) => a + b);
  // u just below and just above each boundary of the cumulative weights
  let c = 0;
  for (let i = 0; i < 4; i++) {
    const lo = c / total, hi = (c + w[i]) / total;
    assert.deepEqual(await sample(x, 4, { temperature: T, uniforms: Float32Array.of(lo + 1e-6) }), [i]);
    if (i < 3) assert.deepEqual(await sample(x, 4, { temperature: T, uniforms: Float32Array.of(hi - 1e-6) }), [i]);
    c += w[i];
  }
  // frequencies over many uniforms match the probabilities
  const rng = new Rng(5), n = 20000, counts = [0, 0, 0, 0];
  const us = Float32Array.from({ length: n }, () => Math.fround(rng.next()) % 1);
  for (const id of await sample(new Float32Array(n * 4).map((_, k) => x[k % 4]), 4, { temperature: T, uniforms: us })) counts[id]++;
  for (let i = 0; i < 4; i++) assert.ok(Math.abs(counts[i] / n - w[i] / total) < 0.01, `id ${i}: ${counts[i] / n} vs ${w[i] / total}`);
});

test('sampleRows repetition penalty: x / p above zero, x · p below, on the listed ids of each row only', async () => {
  const x = Float32Array.of(2, 1.5, 0, -1, /**/ 2, 1.5, 0, -1);
  // row 0: 2 / 2 = 1 < 1.5; row 1: untouched
  assert.deepEqual(await sample(x, 4, { temperature: 0, penalty: { factor: 2, ids: [Int32Array.of(0), Int32Array.of()] } }), [1, 0]);
  // a negative logit moves further down: -1 · 2 = -2 < 0 · 2
  const y = Float32Array.of(-1, -0.6);
  assert.deepEqual(await sample(y, 2, { temperature: 0, penalty: { factor: 2, ids: [Int32Array.of(1)] } }), [0]);
  // the logits are not changed
  const t = be.tensor(x, [2, 4]);
  be.sampleRows(t, { temperature: 0, penalty: { factor: 3, ids: [Int32Array.of(0, 1), Int32Array.of(2)] } });
  assert.deepEqual(await be.read(t), x);
});

test('sampleRows checks its arguments', () => {
  const t = be.tensor(randomArray(new Rng(1), 8), [2, 4]);
  assert.throws(() => be.sampleRows(be.tensor(new Float32Array(4), [4]), { temperature: 0 }), /sampleRows: logits have shape \[4\], expected \[B, V\]/);
  assert.throws(() => be.sampleRows(t, { temperature: -1 }), /temperature must be ≥ 0/);
  assert.throws(() => be.sampleRows(t, { temperature: 1 }), /needs one uniform per row \(2\), got none/);
  assert.throws(() => be.sampleRows(t, { temperature: 1, uniforms: Float32Array.of(0.5, 1) }), /uniforms must lie in \[0, 1\), got 1/);
  assert.throws(() => be.sampleRows(t, { temperature: 0, penalty: { factor: 2, ids: [Int32Array.of(4), Int32Array.of()] } }), /penalised id 4 outside the vocabulary \[0, 4\)/);
  assert.throws(() => be.sampleRows(t, { temperature: 0, penalty: { factor: 2, ids: [Int32Array.of(1, 1), Int32Array.of()] } }), /penalised id 1 listed twice/);
  assert.throws(() => be.sampleRows(t, { temperature: 0, penalty: { factor: 0, ids: [Int32Array.of(), Int32Array.of()] } }), /repetition penalty must be > 0/);
});
