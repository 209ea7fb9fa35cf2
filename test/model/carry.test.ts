// Training windows that start from a carried SSM state (truncated backpropagation through time):
// the loss equals streaming inference where the two coincide, the gradients match across
// backends, and a Trainer that carries state resumes exactly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CpuBackend } from '../../src/backends/cpu/cpu.js';
import type { Backend, Tensor } from '../../src/core/backend.js';
import { Rng } from '../../src/core/random.js';
import { dInner } from '../../src/model/config.js';
import { TokenArray, WindowSampler } from '../../src/train/data.js';
import { Trainer, defaultTrainOptions } from '../../src/train/trainer.js';
import { gpuBackendOrSkip, relErr } from '../helpers/gpu.js';
import { randomIds, randomModel, tinyConfig } from '../helpers/models.js';

const cpu = new CpuBackend();

/** Mean next-token NLL of logits [B·T, V] against targets (−1 = unscored), in float64. */
function meanNll(logits: Float32Array, targets: Int32Array, V: number): number {
  let sum = 0, n = 0;
  targets.forEach((y, r) => {
    if (y < 0) return;
    let max = -Infinity;
    for (let j = 0; j < V; j++) max = Math.max(max, logits[r * V + j]);
    let z = 0;
    for (let j = 0; j < V; j++) z += Math.exp(logits[r * V + j] - max);
    sum += max + Math.log(z) - logits[r * V + y];
    n++;
  });
  return sum / n;
}

const nextTargets = (ids: Int32Array, B: number, T: number) => Int32Array.from({ length: B * T }, (_, i) => (i % T === T - 1 ? -1 : ids[i + 1]));

test('carried state: a second window from the first one\'s SSM states scores like streaming inference (pure Mamba, conv width 1)', async () => {
  // With conv width 1 the conv has no state and there is no attention, so carrying the SSM state is
  // all the model's memory: window 2 from window 1's states must equal streaming through both.
  const cfg = tinyConfig('mamba', { mamba: { dConv: 1 } } as never);
  assert.equal(cfg.mamba.dConv, 1);
  const model = randomModel(cpu, cfg, 8), rng = new Rng(3), B = 2, T = 9;
  const ids1 = randomIds(rng, B * T, cfg.vocabSize), ids2 = randomIds(rng, B * T, cfg.vocabSize), t2 = nextTargets(ids2, B, T);
  const first = await model.lossAndGrads(ids1, nextTargets(ids1, B, T), B, T, { ssmStates: [] });
  assert.equal(first.ssmStates!.length, cfg.nBlocks);
  const second = await model.lossAndGrads(ids2, t2, B, T, { ssmStates: first.ssmStates! });

  const state = model.newState(B);
  cpu.dispose(model.forward(ids1, B, T, state));
  // the carried states are the streaming state's SSM part
  first.ssmStates!.forEach((h, j) => {
    const s = state.layers[j];
    assert.ok(s?.kind === 'mamba');
    assert.ok(relErr((h as unknown as { data: Float32Array }).data, (s.ssm as unknown as { data: Float32Array }).data) < 1e-6, `layer ${j} state`);
  });
  const streamed = meanNll(await cpu.read(model.forward(ids2, B, T, state)), t2, cfg.vocabSize);
  assert.ok(Math.abs(second.loss - streamed) <= 1e-5 * streamed, `carried ${second.loss} vs streamed ${streamed}`);
  const fresh = await model.lossAndGrads(ids2, t2, B, T);
  assert.ok(Math.abs(fresh.loss - second.loss) > 1e-4, 'the carried state changes the loss');
});

test('carried state: bad ssmStates are refused with the layer named', async () => {
  const cfg = tinyConfig('samba'), model = randomModel(cpu, cfg, 1), B = 1, T = 4;
  const ids = Int32Array.of(1, 2, 3, 4), tg = nextTargets(ids, B, T);
  const attnLayer = 2; // samba: [mamba, mlp, swa, mlp]
  await assert.rejects(model.lossAndGrads(ids, tg, B, T, { ssmStates: [null, null, cpu.tensor(new Float32Array(4), [1, 2, 2])] }), new RegExp(`ssmStates\\[${attnLayer}\\].*swa`));
  await assert.rejects(model.lossAndGrads(ids, tg, B, T, { ssmStates: [cpu.tensor(new Float32Array(4), [1, 2, 2])] }), /ssmStates\[0\] is \[1,2,2\], expected/);
});

test('webgpu samba: loss, gradients and carried states from a carried state equal the CPU\'s', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  const cfg = tinyConfig('samba'), rng = new Rng(12), B = 2, T = 11;
  const ids = randomIds(rng, B * T, cfg.vocabSize), tg = nextTargets(ids, B, T);
  const shape = [B, dInner(cfg), cfg.mamba.dState];
  const h0 = Float32Array.from({ length: shape[0] * shape[1] * shape[2] }, () => rng.uniform(-2, 2));
  const gModel = randomModel(be, cfg, 4), cModel = randomModel(cpu, cfg, 4);
  try {
    const g = await gModel.lossAndGrads(ids, tg, B, T, { ssmStates: [be.tensor(h0, shape)] });
    const c = await cModel.lossAndGrads(ids, tg, B, T, { ssmStates: [cpu.tensor(h0, shape)] });
    assert.ok(Math.abs(g.loss - c.loss) <= 1e-5 * c.loss, `loss ${g.loss} vs ${c.loss}`);
    for (const [name, cg] of c.grads) {
      const err = relErr(await be.read(g.grads.get(name)!), await cpu.read(cg));
      assert.ok(err <= 1e-4, `${name}: ${err}`);
    }
    const err = relErr(await be.read(g.ssmStates![0] as Tensor), await cpu.read(c.ssmStates![0] as Tensor));
    assert.ok(err <= 1e-5, `carried state out: ${err}`);
  } finally {
    gModel.dispose();
  }
});

test('Trainer with carryState: the loss falls, and a resumed run equals an uninterrupted one exactly (CPU)', async () => {
  const pattern = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7];
  const r = new Rng(2);
  const tokens = new TokenArray(Int32Array.from({ length: 3000 }, (_, i) => (r.next() < 0.1 ? r.int(16) : pattern[i % pattern.length])));
  const opts = { ...defaultTrainOptions(12, 3e-3), carryState: { resetProbability: 0.25, seed: 9 } };
  const cfg = tinyConfig('samba', { vocabSize: 16 });
  const run = async (stopAt: number | null) => {
    const model = randomModel(cpu, cfg, 5);
    let trainer = new Trainer(model, new WindowSampler(tokens, 16, 3, 11), opts);
    const losses: number[] = [];
    for (let s = 0; s < 12; s++) {
      if (s === stopAt) {
        const state = await trainer.exportState();
        assert.ok(state.carry && state.carry.states.some((h) => h !== null), 'the carried states are part of the state');
        const weights = new Map(await Promise.all([...model.params].map(async ([n, t]) => [n, await cpu.read(t)] as const)));
        const fresh = randomModel(cpu, cfg, 99);
        for (const [n, t] of fresh.params) fresh.params.set(n, cpu.tensor(weights.get(n)!, t.shape));
        trainer.dispose();
        trainer = new Trainer(fresh, new WindowSampler(tokens, 16, 3, 12345), opts);
        trainer.restoreState(state);
      }
      losses.push((await trainer.trainStep()).loss);
    }
    trainer.dispose();
    return losses;
  };
  const straight = await run(null), resumed = await run(5);
  assert.deepEqual(resumed, straight);
  assert.ok(straight[11] < 0.8 * straight[0], `loss ${straight[0]} → ${straight[11]}`);
  // and carrying differs from not carrying
  const model = randomModel(cpu, cfg, 5), plain = new Trainer(model, new WindowSampler(tokens, 16, 3, 11), defaultTrainOptions(12, 3e-3));
  const p: number[] = [];
  for (let s = 0; s < 3; s++) p.push((await plain.trainStep()).loss);
  assert.equal(p[0], straight[0], 'the first window starts from zeros either way');
  assert.notEqual(p[2], straight[2]);
});

test('webgpu Trainer with carryState: rows reset on the device, the losses follow the CPU\'s', async (t) => {
  const gpu = await gpuBackendOrSkip(t);
  if (!gpu) return;
  const r = new Rng(4);
  const tokens = new TokenArray(Int32Array.from({ length: 2000 }, () => r.int(16)));
  // resets drawn often, so that several steps zero some rows and keep others
  const opts = { ...defaultTrainOptions(6, 3e-3), carryState: { resetProbability: 0.5, seed: 3 } };
  const cfg = tinyConfig('samba', { vocabSize: 16 });
  const losses = async (be: Backend) => {
    const trainer = new Trainer(randomModel(be, cfg, 5), new WindowSampler(tokens, 16, 4, 11), opts), out: number[] = [];
    for (let s = 0; s < 6; s++) out.push((await trainer.trainStep()).loss);
    trainer.dispose();
    return out;
  };
  const want = await losses(cpu), got = await losses(gpu);
  for (let s = 0; s < 6; s++) assert.ok(Math.abs(got[s] - want[s]) <= 1e-4 * Math.abs(want[s]), `step ${s}: ${got[s]} vs ${want[s]}`);
});
