// Streaming equals the full pass: for every architecture, prefill + token-by-token decoding (and a
// prompt split at any point) reproduce the full forward's logits over sequences longer than three
// windows; batched decoding equals decoding each sequence alone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Backend } from '../../src/core/backend.js';
import { Rng } from '../../src/core/random.js';
import { testBackends } from '../helpers/backends.js';
import { ALL_ARCHITECTURES, maxRelErr, randomIds, randomModel, tinyConfig } from '../helpers/models.js';
import { DecodeState } from '../../src/model/state.js';

const TOL = 1e-4;

for (const { name: beName, get } of testBackends()) {
  for (const arch of ALL_ARCHITECTURES) {
    test(`${beName}: ${arch}: prefill + decode equals the full forward, at any split`, async (t) => {
      const be = await get(t);
      if (!be) return;
      const cfg = tinyConfig(arch), model = randomModel(be, cfg, 7);
      const rng = new Rng(11), B = 2, T = 3 * cfg.window + 5, V = cfg.vocabSize;
      const ids = randomIds(rng, B * T, V);
      const full = await be.read(model.forward(ids, B, T));

      // token by token
      const state = model.newState(B);
      const steps = new Float32Array(B * T * V);
      for (let t0 = 0; t0 < T; t0++) {
        const step = await be.read(model.forward(Int32Array.from({ length: B }, (_, b) => ids[b * T + t0]), B, 1, state));
        for (let b = 0; b < B; b++) steps.set(step.subarray(b * V, (b + 1) * V), (b * T + t0) * V);
      }
      assert.ok(maxRelErr(steps, full) <= TOL, `decode vs full: ${maxRelErr(steps, full)}`);
      assert.deepEqual([...state.pos], [T, T]);
      state.dispose();

      // prompt split at several points (inside a window, at a window edge, past it)
      for (const split of [1, cfg.window - 1, cfg.window, 2 * cfg.window + 1]) {
        const st = model.newState(B);
        const part = (a: number, b: number) => Int32Array.from({ length: B * (b - a) }, (_, i) => ids[Math.floor(i / (b - a)) * T + a + (i % (b - a))]);
        const l1 = await be.read(model.forward(part(0, split), B, split, st));
        const l2 = await be.read(model.forward(part(split, T), B, T - split, st));
        const joined = new Float32Array(B * T * V);
        for (let b = 0; b < B; b++) {
          joined.set(l1.subarray(b * split * V, (b + 1) * split * V), b * T * V);
          joined.set(l2.subarray(b * (T - split) * V, (b + 1) * (T - split) * V), (b * T + split) * V);
        }
        assert.ok(maxRelErr(joined, full) <= TOL, `split at ${split}: ${maxRelErr(joined, full)}`);
        st.dispose();
      }
      model.dispose();
    });
  }

  test(`${beName}: the decoding state does not grow with tokens seen (Mamba and SWA)`, async (t) => {
    const be = await get(t);
    if (!be) return;
    for (const arch of ['samba', 'mamba', 'swa', 'mamba-swa-mlp'] as const) {
      const model = randomModel(be, tinyConfig(arch), 3);
      const st = model.newState(1), rng = new Rng(5);
      const before = st.bytes();
      for (let i = 0; i < 4 * model.config.window; i++) model.backend.dispose(model.forward(randomIds(rng, 1, model.config.vocabSize), 1, 1, st));
      assert.equal(st.bytes(), before, arch);
      st.dispose();
    }
    const llama = randomModel(be, tinyConfig('llama'), 3), st = llama.newState(1), rng = new Rng(5);
    const before = st.bytes();
    llama.backend.dispose(llama.forward(randomIds(rng, 300, 61), 1, 300, st));
    assert.ok(st.bytes() > before, 'a full-attention cache grows');
    st.dispose();
  });

  test(`${beName}: stacked states decode like separate ones`, async (t) => {
    const be: Backend | null = await get(t);
    if (!be) return;
    for (const arch of ['samba', 'llama'] as const) {
      const cfg = tinyConfig(arch), model = randomModel(be, cfg, 9), rng = new Rng(2), V = cfg.vocabSize;
      const lens = [5, 13, 9];
      const prompts = lens.map((n) => randomIds(rng, n, V));
      const alone: Float32Array[] = [];
      const states = prompts.map((p) => { const s = model.newState(1); model.backend.dispose(model.forward(p, 1, p.length, s)); return s; });
      const next = randomIds(rng, lens.length, V);
      for (let b = 0; b < lens.length; b++) {
        const s = model.newState(1);
        model.backend.dispose(model.forward(prompts[b], 1, prompts[b].length, s));
        alone.push(await be.read(model.forward(next.subarray(b, b + 1), 1, 1, s)));
        s.dispose();
      }
      const stacked = DecodeState.stack(states);
      assert.deepEqual([...stacked.pos], lens);
      const together = await be.read(model.forward(next, lens.length, 1, stacked));
      for (let b = 0; b < lens.length; b++) assert.ok(maxRelErr(together.subarray(b * V, (b + 1) * V), alone[b]) <= TOL, `${arch} sequence ${b}`);
      stacked.dispose();
    }
  });

  test(`${beName}: an f16 KV cache decodes like the full forward up to half rounding, in half the bytes`, async (t) => {
    const be = await get(t);
    if (!be) return;
    for (const arch of ['samba', 'llama', 'swa'] as const) {
      const cfg = tinyConfig(arch), model = randomModel(be, cfg, 13), rng = new Rng(3), V = cfg.vocabSize;
      const B = 2, T = 3 * cfg.window + 5, ids = randomIds(rng, B * T, V);
      const full = await be.read(model.forward(ids, B, T));
      model.kvCache = 'f16';
      // a prompt chunk (the llama's cache grows through it), then token by token
      const st = model.newState(B), P = cfg.window + 3;
      const prompt = Int32Array.from({ length: B * P }, (_, i) => ids[Math.floor(i / P) * T + (i % P)]);
      const first = await be.read(model.forward(prompt, B, P, st));
      const steps = new Float32Array(B * T * V);
      for (let b = 0; b < B; b++) steps.set(first.subarray(b * P * V, (b + 1) * P * V), b * T * V);
      for (let t0 = P; t0 < T; t0++) {
        const step = await be.read(model.forward(Int32Array.from({ length: B }, (_, b) => ids[b * T + t0]), B, 1, st));
        for (let b = 0; b < B; b++) steps.set(step.subarray(b * V, (b + 1) * V), (b * T + t0) * V);
      }
      const err = maxRelErr(steps, full);
      assert.ok(err <= 1e-3, `${arch}: f16-cache decode vs full: ${err}`);
      assert.ok(err > 3e-6, `${arch}: the cache rounds to halves, so decoding cannot match the f32 pass exactly (${err})`);
      t.diagnostic(`${arch}: f16-cache decode vs full forward ${err.toExponential(2)}`);
      // stacking f16 states (the llama's of different capacities) decodes like each alone
      const prompts = [randomIds(rng, 5, V), randomIds(rng, 40, V)], next = randomIds(rng, 2, V), alone: Float32Array[] = [];
      const states = prompts.map((p) => { const s0 = model.newState(1); model.backend.dispose(model.forward(p, 1, p.length, s0)); return s0; });
      for (let b = 0; b < 2; b++) {
        const s0 = model.newState(1);
        model.backend.dispose(model.forward(prompts[b], 1, prompts[b].length, s0));
        alone.push(await be.read(model.forward(next.subarray(b, b + 1), 1, 1, s0)));
        s0.dispose();
      }
      const stacked = DecodeState.stack(states), together = await be.read(model.forward(next, 2, 1, stacked));
      for (let b = 0; b < 2; b++) assert.ok(maxRelErr(together.subarray(b * V, (b + 1) * V), alone[b]) <= TOL, `${arch}: stacked f16 state ${b}`);
      stacked.dispose();
      if (arch === 'swa') {
        // only attention holds state here: exactly half the bytes
        const f16 = model.newState(1).bytes();
        model.kvCache = 'f32';
        assert.equal(2 * f16, model.newState(1).bytes());
      }
      st.dispose();
      model.dispose();
    }
  });

  test(`${beName}: out-of-range ids are refused with a clear message`, async (t) => {
    const be = await get(t);
    if (!be) return;
    const model = randomModel(be, tinyConfig('samba'));
    assert.throws(() => model.forward(Int32Array.of(3, 61), 1, 2), /token id 61 is outside the vocabulary \[0, 61\)/);
  });
}
