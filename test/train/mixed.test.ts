// Mixed precision on WebGPU: matmuls (forward and backward) with f16 operands and f32 sums, f32
// master weights, a loss scale. Training follows the f32 run closely and its loss falls.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../../src/core/random.js';
import { createNodeWebGpuBackend } from '../../src/node/webgpu.js';
import { TokenArray, WindowSampler } from '../../src/train/data.js';
import { Trainer, defaultTrainOptions } from '../../src/train/trainer.js';
import { gpuBackendOrSkip } from '../helpers/gpu.js';
import { randomModel, tinyConfig } from '../helpers/models.js';

const mixed = await createNodeWebGpuBackend({ precision: 'f16-matmul' }).catch(() => null);
after(() => mixed?.destroy());

function tokens(seed: number): TokenArray {
  const rng = new Rng(seed), pattern = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7];
  return new TokenArray(Int32Array.from({ length: 3000 }, (_, i) => (rng.next() < 0.1 ? rng.int(16) : pattern[i % pattern.length])));
}

test('mixed-precision training tracks f32 training and its loss falls', async (t) => {
  const f32 = await gpuBackendOrSkip(t);
  if (!f32) return;
  if (!mixed) {
    if (process.env.SAMBA_REQUIRE_WEBGPU === '1') assert.fail('no WebGPU adapter with shader-f16 for mixed precision');
    t.skip('no adapter with shader-f16');
    return;
  }
  const run = async (be: typeof f32, lossScale: number) => {
    const model = randomModel(be, tinyConfig('samba', { vocabSize: 16 }), 3);
    const trainer = new Trainer(model, new WindowSampler(tokens(1), 24, 4, 7), defaultTrainOptions(25, 3e-3, { lossScale }));
    const losses: number[] = [];
    for (let s = 0; s < 25; s++) losses.push((await trainer.trainStep()).loss);
    trainer.optimizer.dispose();
    model.dispose();
    return losses;
  };
  const a = await run(f32, 1), b = await run(mixed, 1024);
  assert.ok(b[24] < 0.7 * b[0], `mixed: ${b[0]} → ${b[24]}`);
  for (let s = 0; s < 25; s++) assert.ok(Math.abs(a[s] - b[s]) <= 0.02 * a[s], `step ${s}: f32 ${a[s]}, mixed ${b[s]}`);
  assert.notDeepEqual(a, b, 'the f16 operands make a difference');
});

test('a loss scale multiplies the gradients and nothing else', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  const model = randomModel(be, tinyConfig('mamba-swa-mlp', { vocabSize: 16 }), 5);
  const ids = Int32Array.from({ length: 2 * 12 }, (_, i) => (i * 5) % 16), targets = Int32Array.from(ids, (_, i) => (i % 12 === 11 ? -1 : ids[i + 1]));
  const g1 = await model.lossAndGrads(ids, targets, 2, 12), g2 = await model.lossAndGrads(ids, targets, 2, 12, { lossScale: 256 });
  assert.ok(Math.abs(g1.loss - g2.loss) < 1e-6);
  for (const [n, g] of g1.grads) {
    const x = await be.read(g), y = await be.read(g2.grads.get(n)!);
    let err = 0, mx = 0;
    for (let i = 0; i < x.length; i++) { err = Math.max(err, Math.abs(y[i] / 256 - x[i])); mx = Math.max(mx, Math.abs(x[i])); }
    assert.ok(err <= 1e-5 * mx + 1e-12, `${n}: ${err} vs ${mx}`);
  }
});
