// Text passkey training documents (train --task passkey): the eval's template in the model's own
// tokenizer, exactly L + 1 tokens (L positions of training), only the key's tokens scored; the
// eval prompt is built from the same template; evaluation groups answers of different lengths.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../../src/core/random.js';
import { ByteTokenizer } from '../../src/tokenizer/bytes.js';
import { HfTokenizer } from '../../src/tokenizer/hf.js';
import { CpuBackend } from '../../src/backends/cpu/cpu.js';
import { PASSKEY_TEMPLATE, TextPasskeyTask, passkeyPrompt } from '../../src/eval/passkey.js';
import { TaskBatches, evaluateTask, trainingPair } from '../../src/train/tasks.js';
import { createTask } from '../../src/train/task-spec.js';
import { llama2Tokenizer, neoxTokenizer } from '../tokenizer/fixtures.js';
import { randomModel, tinyConfig } from '../helpers/models.js';

const { intro, filler, question } = PASSKEY_TEMPLATE;

test('byte-level passkey documents: the template, exactly L + 1 tokens, the key as the answer', () => {
  const tok = new ByteTokenizer({ eos: true }), task = new TextPasskeyTask(tok), rng = new Rng(1);
  assert.equal(task.answerLength, 6); // " 12345"
  assert.equal(task.vocabSize, 257);
  const depths = new Set<number>();
  for (const L of [task.minLength, task.minLength + 1, 300, 512, 1000]) {
    for (let i = 0; i < 10; i++) {
      const s = task.sample(rng, L);
      assert.equal(s.prompt.length + s.answer.length, L + 1);
      const text = tok.decode(s.prompt), key = tok.decode(s.answer);
      assert.match(key, /^ [1-9]\d{4}$/);
      assert.ok(text.startsWith(intro), text.slice(0, 40));
      assert.ok(text.endsWith(question));
      assert.ok(text.includes(PASSKEY_TEMPLATE.needle(key.trim())), 'the needle holds the answer key');
      // the rest is the filler stream, in order, ending on a whole unit before the question (the
      // first unit cut to fit), so that documents of every length end alike
      const rest = text.slice(intro.length, -question.length).replace(PASSKEY_TEMPLATE.needle(key.trim()), '');
      assert.equal(rest, filler.repeat(Math.ceil(rest.length / filler.length) + 1).slice(-rest.length || Infinity));
      if (L === 1000) depths.add(text.indexOf(' The pass key is'));
    }
  }
  assert.ok(depths.size >= 5, `random depths: ${[...depths]}`);
  // depth 0: after the intro and the cut unit; depth 1: right before the question
  const L = 700, p0 = task.sample(rng, L, { depth: 0 }), p1 = task.sample(rng, L, { depth: 1 });
  const s0 = tok.decode(p0.prompt), s1 = tok.decode(p1.prompt);
  const head = s0.slice(intro.length, s0.indexOf(' The pass key is'));
  assert.ok(head.length < filler.length && filler.endsWith(head), JSON.stringify(head));
  assert.ok(s1.endsWith(PASSKEY_TEMPLATE.needle(tok.decode(p1.answer).trim()) + question), s1.slice(-200));
  assert.throws(() => task.sample(rng, task.minLength - 1), /passkey: length must be an integer ≥ 248/);
});

test('training batches of passkey documents score only the key', () => {
  const tok = new ByteTokenizer({ eos: true }), task = new TextPasskeyTask(tok), L = 300;
  const b = new TaskBatches(task, L, 3, 7).next();
  assert.equal(b.ids.length, 3 * L);
  for (let r = 0; r < 3; r++) {
    const t = [...b.targets.subarray(r * L, (r + 1) * L)], ids = [...b.ids.subarray(r * L, (r + 1) * L)];
    assert.ok(t.slice(0, L - 6).every((y) => y === -1));
    const key = tok.decode(t.slice(L - 6));
    assert.match(key, /^ \d{5}$/);
    assert.ok(tok.decode(ids).endsWith(question + key.slice(0, 5)), 'teacher forcing: the inputs end with the question and the key but its last digit');
  }
  const p = trainingPair(task.sample(new Rng(2), L));
  assert.equal(p.ids.length, L);
  assert.equal(p.targets.filter((y) => y >= 0).length, 6);
});

test('subword tokenizers: no BOS inside the document, keys split however the tokenizer splits them', async () => {
  for (const { json, config } of [llama2Tokenizer(), neoxTokenizer()]) {
    const tok = new HfTokenizer(json, config), task = new TextPasskeyTask(tok), rng = new Rng(3);
    const lens = new Set<number>();
    for (let i = 0; i < 30; i++) {
      const L = task.minLength + 40 + i, s = task.sample(rng, L);
      assert.equal(s.prompt.length + s.answer.length, L + 1);
      if (tok.bosId !== undefined) assert.equal(s.prompt.filter((t) => t === tok.bosId).length, s.prompt[0] === tok.bosId ? 1 : 0);
      assert.match(tok.decode(s.answer).trim(), /^\d{5}$/);
      assert.ok(s.answer.length <= task.answerLength);
      lens.add(s.answer.length);
    }
    // the eval prompt comes from the same template
    const p = tok.decode(passkeyPrompt(tok, 400, 0.5, '31415'));
    assert.ok(p.includes('The pass key is 31415. Remember it.') && p.trim().endsWith(question.trim()), p);
  }
  // evaluation copes with prompts of different lengths (grouped by length): a random model, batched or not
  const { json, config } = llama2Tokenizer();
  const task = createTask({ name: 'passkey' }, new HfTokenizer(json, config));
  const be = new CpuBackend(), model = randomModel(be, tinyConfig('samba', { vocabSize: task.vocabSize }), 1);
  const a = await evaluateTask(model, task, task.minLength + 8, 6, new Rng(4), { batch: 4 });
  const b = await evaluateTask(model, task, task.minLength + 8, 6, new Rng(4), { batch: 1 });
  assert.deepEqual(a, b);
  assert.equal(a.accuracy, 0);
  model.dispose();
});
