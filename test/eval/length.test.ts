import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CpuBackend } from '../../src/backends/cpu/cpu.js';
import { Rng } from '../../src/core/random.js';
import { perplexity, logProb } from '../../src/eval/perplexity.js';
import { prefixPerplexity, slidingPerplexity, tokenLosses } from '../../src/eval/length.js';
import { passkeyPrompt, PASSKEY_TEMPLATE } from '../../src/eval/passkey.js';
import { ByteTokenizer } from '../../src/tokenizer/bytes.js';
import { randomIds, randomModel, tinyConfig } from '../helpers/models.js';

const be = new CpuBackend();
const model = randomModel(be, tinyConfig('samba'), 21);
const ids = [...randomIds(new Rng(4), 90, model.config.vocabSize)];

test('token losses equal the full forward\'s log-probabilities', async () => {
  const losses = await tokenLosses(model, ids, 16);
  const V = model.config.vocabSize, logits = await be.read(model.forward(Int32Array.from(ids), 1, ids.length));
  for (let t = 0; t < ids.length - 1; t++) assert.ok(Math.abs(losses[t] + logProb(logits.subarray(t * V, (t + 1) * V), ids[t + 1])) < 1e-9);
});

test('prefix perplexity over one whole block = perplexity of the block; shorter prefixes average fewer positions', async () => {
  const [p44, p89] = await prefixPerplexity(model, ids, [44, 89]);
  const whole = await perplexity(model, [ids.slice(0, 90)]);
  assert.ok(Math.abs(p89.nll - whole.nll) < 1e-9);
  const losses = await tokenLosses(model, ids);
  assert.ok(Math.abs(p44.nll - losses.slice(0, 44).reduce((a, b) => a + b) / 44) < 1e-9);
});

test('sliding window: L ≥ N is the plain perplexity; L = 2 scores each token with one token of context', async () => {
  const whole = await perplexity(model, [ids]);
  assert.ok(Math.abs((await slidingPerplexity(model, ids, 1000)).nll - whole.nll) < 1e-9);
  const s2 = await slidingPerplexity(model, ids, 2, 1);
  let total = 0;
  for (let t = 0; t < ids.length - 1; t++) total += (await tokenLosses(model, [ids[t], ids[t + 1]]))[0];
  assert.equal(s2.tokens, ids.length - 1);
  assert.ok(Math.abs(s2.nll - total / (ids.length - 1)) < 1e-9);
  const s = await slidingPerplexity(model, ids, 20, 7);
  assert.equal(s.tokens, ids.length - 1, 'every token scored exactly once');
});

test('passkey prompts: the asked length, the needle at the asked depth, the same words before the question', () => {
  const tok = new ByteTokenizer();
  for (const depth of [0, 0.5, 1]) for (const L of [2000, 2001, 2037]) {
    const p = tok.decode(passkeyPrompt(tok, L, depth, '31415'));
    assert.equal(p.length, L);
    assert.ok(p.startsWith(PASSKEY_TEMPLATE.intro) && p.endsWith(PASSKEY_TEMPLATE.question));
    const before = depth === 1 ? PASSKEY_TEMPLATE.needle('31415') : PASSKEY_TEMPLATE.filler;
    assert.ok(p.endsWith(before + PASSKEY_TEMPLATE.question), p.slice(-150));
    const at = p.indexOf('The pass key is 31415') / p.length;
    assert.ok(Math.abs(at - depth) < 0.12, `depth ${depth}: needle at ${at.toFixed(2)}`);
  }
});
