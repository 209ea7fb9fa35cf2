import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CpuBackend } from '../../src/backends/cpu/cpu.js';
import { Rng } from '../../src/core/random.js';
import { argmax } from '../../src/generate/sampling.js';
import { generateBatch, generateIds, generateText } from '../../src/generate/generate.js';
import { ByteTokenizer } from '../../src/tokenizer/bytes.js';
import { randomIds, randomModel, tinyConfig } from '../helpers/models.js';
import { testBackends } from '../helpers/backends.js';

const be = new CpuBackend();

test('greedy generation = argmax of the full forward at every step', async () => {
  const model = randomModel(be, tinyConfig('samba'), 4);
  const prompt = [...randomIds(new Rng(1), 9, model.config.vocabSize)];
  const out: number[] = [];
  for await (const id of generateIds(model, prompt, { maxTokens: 20, temperature: 0, prefillChunk: 4 })) out.push(id);
  assert.equal(out.length, 20);
  const all = [...prompt, ...out], V = model.config.vocabSize;
  const logits = await be.read(model.forward(Int32Array.from(all), 1, all.length));
  for (let s = 0; s < out.length; s++) {
    const pos = prompt.length - 1 + s;
    assert.equal(out[s], argmax(logits.subarray(pos * V, (pos + 1) * V)), `step ${s}`);
  }
});

test('batched generation of prompts of different lengths = one at a time (seeded sampling too)', async () => {
  const model = randomModel(be, tinyConfig('samba'), 5), rng = new Rng(9);
  const prompts = [3, 11, 7].map((n) => [...randomIds(rng, n, model.config.vocabSize)]);
  const greedy = await generateBatch(model, prompts, { maxTokens: 12, temperature: 0 });
  for (let b = 0; b < prompts.length; b++) assert.deepEqual(greedy[b], (await generateBatch(model, [prompts[b]], { maxTokens: 12, temperature: 0 }))[0]);
  const a = await generateBatch(model, prompts, { maxTokens: 12, seed: 4, topK: 10 });
  const b2 = await generateBatch(model, prompts, { maxTokens: 12, seed: 4, topK: 10 });
  assert.deepEqual(a, b2);
});

test('stop tokens end a sequence (the stop token is included); others continue', async () => {
  const model = randomModel(be, tinyConfig('mamba'), 6);
  const prompt = [1, 2, 3];
  const free = await generateBatch(model, [prompt], { maxTokens: 15, temperature: 0 });
  const stopAt = free[0][4];
  const firstIndex = free[0].indexOf(stopAt);
  const stopped = await generateBatch(model, [prompt, [4, 5]], { maxTokens: 15, temperature: 0, stopTokens: [stopAt] });
  assert.deepEqual(stopped[0], free[0].slice(0, firstIndex + 1));
});

test('an AbortSignal stops generation', async () => {
  const model = randomModel(be, tinyConfig('samba'), 7), ac = new AbortController();
  const got: number[] = [];
  await assert.rejects(async () => {
    for await (const id of generateIds(model, [1, 2], { maxTokens: 1000, signal: ac.signal, seed: 1 })) {
      got.push(id);
      if (got.length === 5) ac.abort(new Error('stop now'));
    }
  }, /stop now/);
  assert.equal(got.length, 5);
});

test('an AbortSignal fired by a timer stops CPU generation (the loop lets timers run)', { timeout: 60_000 }, async () => {
  const model = randomModel(be, tinyConfig('samba'), 7), ac = new AbortController();
  setTimeout(() => ac.abort(new Error('timer fired')), 50);
  let n = 0;
  await assert.rejects(async () => {
    for await (const _ of generateIds(model, [1, 2], { maxTokens: 1_000_000, signal: ac.signal, seed: 1 })) n++;
  }, /timer fired/);
  assert.ok(n > 0 && n < 1_000_000, `${n} tokens before the abort`);
});

test('text streaming through a byte tokenizer reassembles multi-byte characters', async () => {
  const model = randomModel(be, tinyConfig('samba', { vocabSize: 257 }), 8);
  const tok = new ByteTokenizer({ eos: true });
  let text = '';
  const ids: number[] = [];
  for await (const t of generateText(model, tok, tok.encode('héllo'), { maxTokens: 30, seed: 2 })) {
    text += t.text ?? '';
    if (t.id >= 0) ids.push(t.id);
  }
  assert.equal(text, tok.decode(ids));
});

test('sampling runs on the backend without top-k/top-p: only the ids are read back', async () => {
  const reads: number[] = [];
  const spy = Object.create(be) as CpuBackend; // the CPU backend, its reads recorded
  spy.read = (t) => { reads.push(t.size); return be.read(t); };
  const model = randomModel(spy, tinyConfig('samba'), 7), V = model.config.vocabSize;
  await generateBatch(model, [[1, 2, 3], [4, 5]], { maxTokens: 6, temperature: 0.8, repetitionPenalty: 1.3, seed: 2 });
  assert.deepEqual(reads, new Array(6).fill(2), 'one read of B = 2 ids per step');
  reads.length = 0;
  await generateBatch(model, [[1, 2, 3]], { maxTokens: 3, seed: 2, topK: 5 });
  assert.deepEqual(reads, [V, V, V], 'top-k sorts on the host: the logits come back');
});

test('decoding that feeds sampled ids back on the device = feeding them from the host, rows ending apart', async (t) => {
  // temperature 0 samples on the device, and the next step is recorded before the ids are read;
  // top-k = V keeps greedy but samples on the host, which feeds the next step host ids
  for (const tb of [{ name: 'cpu', get: async () => be }, ...testBackends()]) {
    const b = await tb.get(t);
    if (!b) continue;
    const model = randomModel(b, tinyConfig('samba'), 12), V = model.config.vocabSize;
    const prompts = [[1, 2, 3], [4, 5, 6, 7, 8], [9]];
    const free = await generateBatch(model, prompts, { maxTokens: 14, temperature: 0, topK: V });
    const stopTokens = [free[0][3], free[2][8]]; // ends rows at different steps
    const host = await generateBatch(model, prompts, { maxTokens: 14, temperature: 0, topK: V, stopTokens });
    const device = await generateBatch(model, prompts, { maxTokens: 14, temperature: 0, stopTokens });
    assert.deepEqual(device, host, tb.name);
    assert.ok(host.some((r) => r.length < 14) && host.some((r, i) => r.length !== host[(i + 1) % 3].length), `${tb.name}: rows should end apart`);
    model.dispose();
  }
});

test('decoding on the device: one command buffer per token (forward, sampling and the ids\' copy), two with a repetition penalty; seeded draws as on the CPU', async (t) => {
  for (const tb of testBackends()) {
    const b = await tb.get(t);
    if (!b) continue;
    const ctx = (b as unknown as { ctx?: { counts: { submits: number } } }).ctx;
    if (!ctx) continue; // submits are counted by the WebGPU backend
    const model = randomModel(b, tinyConfig('samba'), 13), prompt = [[3, 1, 4, 1, 5]];
    /** submits of a generation of n tokens */
    const submits = async (n: number, opts: Parameters<typeof generateBatch>[2]) => {
      const s0 = ctx.counts.submits;
      await generateBatch(model, prompt, { maxTokens: n, ...opts });
      return ctx.counts.submits - s0;
    };
    for (const [opts, perToken] of [[{ temperature: 0 }, 1], [{ temperature: 0.7, seed: 3 }, 1], [{ temperature: 0, repetitionPenalty: 1.3 }, 2]] as const) {
      const a = await submits(4, opts), c = await submits(12, opts);
      assert.equal(c - a, 8 * perToken, `${tb.name} ${JSON.stringify(opts)}: ${perToken} submit(s) per token (${a} for 4 tokens, ${c} for 12)`);
    }
    const cpuModel = randomModel(be, tinyConfig('samba'), 13);
    for (const seed of [3, 4]) {
      const opts = { maxTokens: 10, temperature: 0.9, seed };
      assert.deepEqual(await generateBatch(model, [[5, 6, 7], [8, 9]], opts), await generateBatch(cpuModel, [[5, 6, 7], [8, 9]], opts), `${tb.name}: seeded draws, seed ${seed}`);
    }
    model.dispose();
  }
});

test('seeded sampling with a repetition penalty gives the same tokens on every backend', async (t) => {
  for (const tb of testBackends()) {
    const other = await tb.get(t);
    if (!other) continue;
    const prompts = [[5, 6, 7, 8], [9, 10]];
    const ref = await generateBatch(randomModel(be, tinyConfig('samba'), 8), prompts, { maxTokens: 10, temperature: 0.9, repetitionPenalty: 1.2, seed: 11 });
    const got = await generateBatch(randomModel(other, tinyConfig('samba'), 8), prompts, { maxTokens: 10, temperature: 0.9, repetitionPenalty: 1.2, seed: 11 });
    assert.deepEqual(got, ref, tb.name);
    // and the draws depend on the seed
    const reseeded = await generateBatch(randomModel(other, tinyConfig('samba'), 8), prompts, { maxTokens: 10, temperature: 0.9, repetitionPenalty: 1.2, seed: 12 });
    assert.notDeepEqual(reseeded, ref, tb.name);
  }
});
