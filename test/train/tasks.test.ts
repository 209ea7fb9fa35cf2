// Synthetic tasks: the generators produce their documented layouts, training targets score only
// the answer, and streaming evaluation gives an oracle 100% and a random model a low score.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CpuBackend } from '../../src/backends/cpu/cpu.js';
import type { Tensor } from '../../src/core/backend.js';
import { Rng } from '../../src/core/random.js';
import {
  InductionHeadsTask, PASSKEY, PASSKEY_FILLER, PasskeyTask, SelectiveCopyTask, TaskBatches, evaluateTask, trainingPair,
  type StreamingModel, type SyntheticTask,
} from '../../src/train/tasks.js';
import { randomModel, tinyConfig } from '../helpers/models.js';

const be = new CpuBackend();

test('passkey: layout, key, filler and depth', () => {
  const task = new PasskeyTask(), rng = new Rng(1);
  for (const L of [11, 12, 32, 64, 257]) {
    for (let i = 0; i < 20; i++) {
      const s = task.sample(rng, L);
      assert.equal(s.prompt.length + s.answer.length, L + 1);
      assert.equal(s.answer.length, 5);
      assert.ok(s.answer.every((d) => Number.isInteger(d) && d >= 0 && d <= 9));
      assert.notEqual(s.answer[0], 0, 'a 5-digit key has no leading zero');
      assert.equal(s.prompt[s.prompt.length - 1], PASSKEY.QUERY);
      assert.equal(s.prompt.filter((t) => t === PASSKEY.KEY).length, 1);
      assert.equal(s.prompt.filter((t) => t === PASSKEY.QUERY).length, 1);
      const k = s.prompt.indexOf(PASSKEY.KEY);
      assert.equal(k % 5, 0, 'the needle sits between filler sentences');
      assert.deepEqual(s.prompt.slice(k + 1, k + 6), s.answer);
      // everything else is the filler stream, continued across the needle
      const filler = [...s.prompt.slice(0, k), ...s.prompt.slice(k + 6, -1)];
      assert.equal(filler.length, L - 11);
      filler.forEach((t, j) => assert.equal(t, PASSKEY_FILLER[j % PASSKEY_FILLER.length]));
      assert.ok(s.prompt.every((t) => t >= 0 && t < task.vocabSize));
    }
  }
  // depth: 0 = at the start, 1 = after the last whole sentence, 0.5 halfway (rounded to a sentence)
  const L = 111, F = L - 11;
  assert.equal(task.sample(rng, L, { depth: 0 }).prompt.indexOf(PASSKEY.KEY), 0);
  assert.equal(task.sample(rng, L, { depth: 1 }).prompt.indexOf(PASSKEY.KEY), F);
  assert.equal(task.sample(rng, L, { depth: 0.5 }).prompt.indexOf(PASSKEY.KEY), 50);
  assert.equal(task.sample(rng, 32, { depth: 1 }).prompt.indexOf(PASSKEY.KEY), 20);
  assert.throws(() => task.sample(rng, L, { depth: 1.5 }), /depth must be in \[0, 1\]/);
  assert.throws(() => task.sample(rng, 10), /length must be an integer ≥ 11/);
  // random depths cover every sentence boundary
  const seen = new Set<number>();
  for (let i = 0; i < 200; i++) seen.add(task.sample(rng, 32).prompt.indexOf(PASSKEY.KEY));
  assert.deepEqual([...seen].sort((a, b) => a - b), [0, 5, 10, 15, 20]);
  assert.match(task.describe(task.sample(new Rng(3), 24, { depth: 0 }).prompt), /^The pass key is \d{5} the grass is green\. the sky is blue\. the sun is What is the pass key\? The pass key is$/);
});

test('passkey with shuffled filler: same layout, filler words drawn at random', () => {
  const task = new PasskeyTask({ filler: 'shuffled' }), rng = new Rng(11);
  const counts = new Map<number, number>();
  for (let i = 0; i < 50; i++) {
    const s = task.sample(rng, 64);
    assert.equal(s.prompt.length, 60);
    const k = s.prompt.indexOf(PASSKEY.KEY);
    assert.equal(k % 5, 0);
    assert.deepEqual(s.prompt.slice(k + 1, k + 6), s.answer);
    assert.equal(s.prompt[59], PASSKEY.QUERY);
    for (const t of [...s.prompt.slice(0, k), ...s.prompt.slice(k + 6, -1)]) {
      assert.ok(t >= PASSKEY.THE && t <= PASSKEY.DOT, `filler token ${t}`);
      counts.set(t, (counts.get(t) ?? 0) + 1);
    }
  }
  assert.equal(counts.size, 9, 'all nine filler words occur');
  assert.throws(() => new PasskeyTask({ filler: 'noise' as 'template' }), /filler must be/);
});

test('passkey with distractors: filler tokens become digits at the given rate, the key and its marker stay', () => {
  const task = new PasskeyTask({ filler: 'shuffled', distractors: 0.3 }), rng = new Rng(5);
  let digits = 0, filler = 0;
  for (let i = 0; i < 100; i++) {
    const s = task.sample(rng, 64);
    const k = s.prompt.indexOf(PASSKEY.KEY);
    assert.equal(s.prompt.filter((t) => t === PASSKEY.KEY).length, 1);
    assert.deepEqual(s.prompt.slice(k + 1, k + 6), s.answer);
    assert.equal(s.prompt[59], PASSKEY.QUERY);
    for (const t of [...s.prompt.slice(0, k), ...s.prompt.slice(k + 6, -1)]) {
      filler++;
      if (t <= 9) digits++;
      else assert.ok(t >= PASSKEY.THE && t <= PASSKEY.DOT);
    }
  }
  assert.ok(Math.abs(digits / filler - 0.3) < 0.03, `distractor rate ${digits / filler}`);
  assert.throws(() => new PasskeyTask({ distractors: 2 }), /distractors must be a probability/);
});

test('selective copying: data tokens among noise, copied in order after COPY', () => {
  const task = new SelectiveCopyTask({ dataTokens: 6, vocabSize: 10 }), rng = new Rng(2);
  for (const L of [12, 40, 100]) {
    for (let i = 0; i < 20; i++) {
      const s = task.sample(rng, L);
      assert.equal(s.prompt.length + s.answer.length, L + 1);
      assert.equal(s.answer.length, 6);
      assert.equal(s.prompt[s.prompt.length - 1], SelectiveCopyTask.COPY);
      const region = s.prompt.slice(0, -1);
      assert.equal(region.length, L - 6);
      assert.ok(!region.includes(SelectiveCopyTask.COPY));
      assert.deepEqual(region.filter((t) => t !== SelectiveCopyTask.NOISE), s.answer);
      assert.ok(s.answer.every((t) => t >= 2 && t < 10));
    }
  }
  assert.throws(() => task.sample(rng, 11), /length must be an integer ≥ 12/);
});

test('induction heads: SPECIAL X … SPECIAL → X', () => {
  const task = new InductionHeadsTask(), rng = new Rng(3);
  const positions = new Set<number>();
  for (const L of [3, 8, 64]) {
    for (let i = 0; i < 50; i++) {
      const s = task.sample(rng, L);
      assert.equal(s.prompt.length, L);
      assert.equal(s.answer.length, 1);
      assert.equal(s.prompt[L - 1], InductionHeadsTask.SPECIAL);
      const specials = s.prompt.flatMap((t, j) => (t === InductionHeadsTask.SPECIAL ? [j] : []));
      assert.equal(specials.length, 2);
      assert.equal(s.prompt[specials[0] + 1], s.answer[0]);
      assert.ok(s.answer[0] >= 1 && s.answer[0] < 16);
      if (L === 8) positions.add(specials[0]);
    }
  }
  assert.deepEqual([...positions].sort(), [0, 1, 2, 3, 4, 5]);
});

test('training batches: ids are the document, targets score only the answer', () => {
  for (const task of [new PasskeyTask(), new SelectiveCopyTask({ dataTokens: 4 }), new InductionHeadsTask()] as SyntheticTask[]) {
    const s = task.sample(new Rng(4), 24), p = trainingPair(s), doc = [...s.prompt, ...s.answer];
    assert.deepEqual(p.ids, doc.slice(0, 24));
    const A = task.answerLength;
    p.targets.forEach((y, t) => assert.equal(y, t >= 24 - A ? doc[t + 1] : -1, `${task.name} target ${t}`));
    assert.deepEqual(p.targets.slice(-A), s.answer);

    const src = new TaskBatches(task, 24, 3, 9), again = new TaskBatches(task, 24, 3, 9);
    const b = src.next();
    assert.equal(b.ids.length, 72);
    assert.equal(b.targets.length, 72);
    assert.deepEqual(again.next(), b, 'the same seed gives the same batches');
    for (let r = 0; r < 3; r++) {
      const row = [...b.targets.subarray(r * 24, r * 24 + 24)];
      assert.equal(row.filter((y) => y >= 0).length, A);
      assert.ok(row.slice(0, 24 - A).every((y) => y === -1));
      assert.deepEqual([...b.ids.subarray(r * 24 + 1, r * 24 + 24)], row.slice(0, 23).map((y, t) => (y >= 0 ? y : b.ids[r * 24 + t + 1])));
    }
  }
});

/**
 * A hand-made model that knows each task's rule: it remembers every token it was fed (its "state")
 * and puts all its logit mass on the right next answer token. Evaluation through it must be 100%.
 */
class Oracle implements StreamingModel<{ seqs: number[][]; dispose(): void }> {
  readonly backend = be;
  readonly config: { vocabSize: number };
  calls: number[] = [];
  constructor(private task: SyntheticTask, vocabSize = task.vocabSize) { this.config = { vocabSize }; }
  newState(B: number) { return { seqs: Array.from({ length: B }, () => [] as number[]), dispose() {} }; }
  forward(ids: Int32Array, B: number, T: number, state: { seqs: number[][] }, opts: { lastOnly: boolean }): Tensor {
    assert.ok(opts.lastOnly);
    this.calls.push(T);
    const V = this.config.vocabSize, out = new Float32Array(B * V);
    for (let b = 0; b < B; b++) {
      const seq = state.seqs[b];
      seq.push(...ids.subarray(b * T, b * T + T));
      out[b * V + this.next(seq)] = 1;
    }
    return be.tensor(out, [B, V]);
  }
  private next(seq: number[]): number {
    if (this.task instanceof PasskeyTask) {
      const q = seq.indexOf(PASSKEY.QUERY), k = seq.indexOf(PASSKEY.KEY);
      return q < 0 ? PASSKEY.THE : seq[k + 1 + (seq.length - 1 - q)];
    }
    if (this.task instanceof SelectiveCopyTask) {
      const c = seq.indexOf(SelectiveCopyTask.COPY);
      const data = seq.slice(0, c).filter((t) => t !== SelectiveCopyTask.NOISE);
      return c < 0 ? 0 : data[seq.length - 1 - c];
    }
    return seq[seq.indexOf(InductionHeadsTask.SPECIAL) + 1];
  }
}

test('evaluation: an oracle scores 100% at every length, through chunked prefill and batched decoding', async () => {
  const cases: [SyntheticTask, number][] = [[new PasskeyTask(), 64], [new SelectiveCopyTask({ dataTokens: 5 }), 40], [new InductionHeadsTask(), 50]];
  for (const [task, L] of cases) {
    for (const mult of [1, 4, 16]) {
      const oracle = new Oracle(task);
      const r = await evaluateTask(oracle, task, L * mult, 7, new Rng(5), { batch: 3, prefillChunk: 100 });
      assert.equal(r.accuracy, 1, `${task.name} at ${L * mult}`);
      assert.equal(r.tokenAccuracy, 1);
      assert.equal(r.trials, 7);
      assert.equal(r.length, L * mult);
      // the model sees exactly L·mult positions: the prompt in chunks of ≤ 100, then one token per decoded answer token but the last
      const perBatch = Math.ceil((L * mult + 1 - task.answerLength) / 100) + task.answerLength - 1;
      assert.equal(oracle.calls.length, 3 * perBatch);
      assert.equal(oracle.calls.reduce((a, b) => a + b, 0), 3 * L * mult);
    }
  }
  // depths: each trial at its own depth
  const oracle = new Oracle(new PasskeyTask());
  const r = await evaluateTask(oracle, new PasskeyTask(), 200, 11, new Rng(6), { depths: Array.from({ length: 11 }, (_, i) => i / 10) });
  assert.equal(r.accuracy, 1);
});

test('evaluation: a random model scores low; chunking and batching do not change its answers', async () => {
  const task = new PasskeyTask();
  const model = randomModel(be, tinyConfig('samba', { vocabSize: task.vocabSize }), 7);
  const a = await evaluateTask(model, task, 48, 12, new Rng(8));
  const b = await evaluateTask(model, task, 48, 12, new Rng(8), { batch: 5, prefillChunk: 9 });
  assert.deepEqual(b, a);
  assert.equal(a.accuracy, 0);
  assert.ok(a.tokenAccuracy < 0.35, `token accuracy ${a.tokenAccuracy}`);
  assert.ok(a.stateBytesPerSequence > 0);
  await assert.rejects(evaluateTask(randomModel(be, tinyConfig('samba', { vocabSize: 16 }), 1), task, 48, 2, new Rng(1)), /needs a vocabulary of 21/);
  model.dispose();
});
