// Training works end to end on the CPU: the loss falls on every architecture of the golden set,
// and a run stopped and resumed from its exported state continues exactly like an uninterrupted one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CpuBackend } from '../../src/backends/cpu/cpu.js';
import { Rng } from '../../src/core/random.js';
import { TokenArray, WindowSampler } from '../../src/train/data.js';
import { Trainer, defaultTrainOptions } from '../../src/train/trainer.js';
import { randomModel, tinyConfig } from '../helpers/models.js';
import type { Architecture } from '../../src/model/config.js';

const be = new CpuBackend();

/** A learnable stream: a noisy repeating pattern over 16 symbols. */
function patternTokens(n: number, seed: number): TokenArray {
  const rng = new Rng(seed), pattern = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7];
  return new TokenArray(Int32Array.from({ length: n }, (_, i) => (rng.next() < 0.1 ? rng.int(16) : pattern[i % pattern.length])));
}

for (const arch of ['samba', 'mamba', 'llama', 'mamba-swa-mlp', 'swa', 'mamba-mlp'] as Architecture[]) {
  test(`${arch}: the training loss falls`, async () => {
    const model = randomModel(be, tinyConfig(arch, { vocabSize: 16 }), 3);
    const data = new WindowSampler(patternTokens(4000, 1), 24, 4, 7);
    const trainer = new Trainer(model, data, defaultTrainOptions(40, 3e-3));
    const losses: number[] = [];
    for (let s = 0; s < 40; s++) losses.push((await trainer.trainStep()).loss);
    const first = losses.slice(0, 5).reduce((a, b) => a + b) / 5, last = losses.slice(-5).reduce((a, b) => a + b) / 5;
    assert.ok(last < 0.6 * first, `${arch}: loss ${first.toFixed(3)} → ${last.toFixed(3)}`);
  });
}

test('resume equals an uninterrupted run, exactly (CPU), with gradient accumulation', async () => {
  const opts = defaultTrainOptions(10, 2e-3, { accum: 2 });
  const tokens = patternTokens(3000, 2);
  const run = async (stopAt: number | null) => {
    const model = randomModel(be, tinyConfig('samba', { vocabSize: 16 }), 5);
    let trainer = new Trainer(model, new WindowSampler(tokens, 16, 2, 11), opts);
    const losses: number[] = [];
    for (let s = 0; s < 10; s++) {
      if (s === stopAt) {
        // stop: keep only what a checkpoint keeps (weights, optimizer state, RNG), start afresh
        const state = await trainer.exportState();
        const weights = new Map(await Promise.all([...model.params].map(async ([n, t]) => [n, await be.read(t)] as const)));
        const fresh = randomModel(be, tinyConfig('samba', { vocabSize: 16 }), 99);
        for (const [n, t] of fresh.params) fresh.params.set(n, be.tensor(weights.get(n)!, t.shape));
        trainer = new Trainer(fresh, new WindowSampler(tokens, 16, 2, 12345), opts);
        trainer.restoreState(state);
      }
      losses.push((await trainer.trainStep()).loss);
    }
    return losses;
  };
  const straight = await run(null), resumed = await run(4);
  assert.deepEqual(resumed, straight);
});
