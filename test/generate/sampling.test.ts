import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Sampler, argmax } from '../../src/generate/sampling.js';

const logits = Float32Array.from([1, 3, 2, 0.5, 2.9]);

test('temperature 0 is argmax', () => {
  assert.equal(new Sampler({ temperature: 0 }).sample(logits), 1);
  assert.equal(argmax(logits), 1);
});

test('top-k 1 and tiny top-p are greedy whatever the temperature', () => {
  for (let s = 0; s < 20; s++) {
    assert.equal(new Sampler({ topK: 1, seed: s, temperature: 5 }).sample(logits), 1);
    assert.equal(new Sampler({ topP: 1e-6, seed: s, temperature: 5 }).sample(logits), 1);
  }
});

test('top-k restricts the support; frequencies follow the softmax', () => {
  const s = new Sampler({ topK: 2, seed: 1 }), counts = [0, 0, 0, 0, 0];
  for (let i = 0; i < 4000; i++) counts[s.sample(logits)]++;
  assert.equal(counts[0] + counts[2] + counts[3], 0);
  const p1 = Math.exp(3) / (Math.exp(3) + Math.exp(2.9));
  assert.ok(Math.abs(counts[1] / 4000 - p1) < 0.03, `${counts[1] / 4000} vs ${p1}`);
});

test('top-p keeps the smallest set reaching the mass', () => {
  // probabilities ∝ exp(logits): ids 1 and 4 together hold ~0.63 of the mass
  const s = new Sampler({ topP: 0.6, seed: 3 }), seen = new Set<number>();
  for (let i = 0; i < 500; i++) seen.add(s.sample(logits));
  assert.deepEqual([...seen].sort(), [1, 4]);
});

test('the same seed gives the same draws; another seed other draws', () => {
  const draw = (seed: number) => { const s = new Sampler({ seed }); return Array.from({ length: 50 }, () => s.sample(logits)); };
  assert.deepEqual(draw(7), draw(7));
  assert.notDeepEqual(draw(7), draw(8));
});

test('repetition penalty pushes seen tokens down', () => {
  const s = new Sampler({ temperature: 0, repetitionPenalty: 2 });
  assert.equal(s.sample(logits, [1]), 4); // 3/2 = 1.5 < 2.9
  assert.equal(s.sample(Float32Array.from([-1, -3]), [0]), 0); // -1·2 = -2 > -3
});

test('bad options are refused', () => {
  assert.throws(() => new Sampler({ temperature: -1 }), /temperature/);
  assert.throws(() => new Sampler({ topP: 0 }), /top-p/);
  assert.throws(() => new Sampler({ topK: 1.5 }), /top-k/);
});
