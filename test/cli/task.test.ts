// `samba-lm train|finetune --task` and `samba-lm eval task`, end to end on the CPU: a task run killed
// and resumed reproduces the uninterrupted run exactly (the generator's RNG is the data position);
// a tiny Samba learns induction heads well above chance; a text model fine-tunes on text passkey
// documents in its byte-level tokenizer; eval task prints its table; bad input is one line.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, writeFile, mkdir, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { errorLines, runCli, runCliKilledAt } from '../helpers/cli.js';

const tmp = await mkdtemp(path.join(tmpdir(), 'samba-task-'));
const tiny = ['--arch', 'samba', '--d-model', '32', '--blocks', '2', '--heads', '2', '--window', '16', '--backend', 'cpu'];
const lines = async (out: string) => (await readFile(path.join(out, 'train.jsonl'), 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l));
const ok = (r: { code: number; stderr: string }) => assert.equal(r.code, 0, errorLines(r.stderr).join('\n'));

async function killAndResume(name: string, extra: string[]): Promise<void> {
  const args = ['train', ...tiny, '--task', 'selective-copy', '--task-vocab', '6', '--task-tokens', '3', '--seq-len', '12', '--batch', '4',
    '--steps', '24', '--lr', '3e-3', '--save-every', '4', '--eval-every', '8', '--eval-batches', '1', '--log-every', '1', '--seed', '5', ...extra];
  const straight = path.join(tmp, `${name}-straight`), killed = path.join(tmp, `${name}-killed`);
  ok(await runCli([...args, '--out', straight]));
  await runCliKilledAt([...args, '--out', killed], 10);
  const before = await lines(killed);
  assert.ok(before.length >= 8 && before.length < 24, `killed after ${before.length} steps`);
  const resumed = await runCli(['train', '--resume', killed, '--backend', 'cpu']);
  ok(resumed);
  assert.match(resumed.stderr, /resuming at step (8|12)/);
  assert.match(resumed.stderr, /the selective-copy task \(vocabulary 6, 3 answer tokens/);
  const pick = (l: Record<string, number>) => [l.step, l.loss, l.valLoss, l.valAccuracy, l.valTokenAccuracy];
  const a = (await lines(killed)).map(pick), b = (await lines(straight)).map(pick);
  assert.deepEqual(a, b);
  assert.equal(b.length, 24);
  assert.equal(b.filter((l) => l[3] !== undefined).length, 3, 'held-out accuracy at steps 8, 16, 24');
  assert.deepEqual((await readdir(killed)).sort(), ['accuracy.svg', 'checkpoint', 'loss.svg', 'train.jsonl']);
  // no tokenizer for a task with its own vocabulary
  const cfg = JSON.parse(await readFile(path.join(killed, 'checkpoint', 'config.json'), 'utf8'));
  assert.equal(cfg.model.vocabSize, 6, '--vocab-size defaults to the task\'s');
}

test('train --task: SIGKILL then --resume reproduces the uninterrupted run exactly', () => killAndResume('sc', []));

test('train --task --carry-state: SIGKILL then --resume reproduces the run exactly (carried states are checkpointed)', async () => {
  await killAndResume('sc-carry', ['--carry-state', '0.25']);
  const plain = (await lines(path.join(tmp, 'sc-straight'))).map((l) => l.loss), carried = (await lines(path.join(tmp, 'sc-carry-straight'))).map((l) => l.loss);
  assert.equal(carried[0], plain[0], 'the first windows start from zeros');
  assert.notDeepEqual(carried, plain, 'carrying the state changes the run');
});

test('induction heads at length 12: a tiny Samba goes from chance to well above it; eval task prints the table', async () => {
  // vocabulary 4: 3 ordinary tokens, chance 1/3; 64 held-out documents per evaluation
  const out = path.join(tmp, 'ih');
  const r = await runCli(['train', ...tiny, '--task', 'induction-heads', '--task-vocab', '4', '--seq-len', '12', '--batch', '16',
    '--steps', '50', '--lr', '1e-2', '--eval-every', '25', '--eval-batches', '4', '--log-every', '50', '--seed', '2', '--out', out]);
  ok(r);
  const evals = (await lines(out)).filter((l) => l.valAccuracy !== undefined);
  assert.equal(evals.length, 2);
  const last = evals[evals.length - 1].valAccuracy;
  assert.ok(last >= 0.6, `held-out accuracy ${last} (chance 0.33)`);
  assert.match(r.stderr, /held-out accuracy \d+\.\d%/);

  const json = path.join(tmp, 'ih.json');
  const e = await runCli(['eval', 'task', '--model', path.join(out, 'checkpoint'), '--lengths', '12,24', '--trials', '32', '--json', json, '--backend', 'cpu']);
  ok(e);
  const rows = e.stdout.trim().split('\n');
  assert.match(rows[0], /^length\s+accuracy\s+answer tokens\s+state\/sequence/);
  assert.match(rows[2], /^12\s+\d+\.\d%\s+\d+\.\d%\s+\d+\.\d KiB/);
  assert.match(rows[3], /^24\s/);
  const j = JSON.parse(await readFile(json, 'utf8'));
  assert.deepEqual(j.task, { name: 'induction-heads', vocabSize: 4 }, 'the task the checkpoint was trained on');
  assert.equal(j.trainedLength, 12);
  assert.deepEqual(j.results.map((x: { length: number; trials: number }) => [x.length, x.trials]), [[12, 32], [24, 32]]);
  assert.ok(j.results[0].accuracy >= 0.5, `accuracy at the training length ${j.results[0].accuracy}`);
});

test('finetune --init (a byte-level text model) --task passkey: documents in its tokenizer; eval task passkey', async () => {
  const data = path.join(tmp, 'text');
  await mkdir(data);
  await writeFile(path.join(data, 'a.txt'), 'The grass is green and the sky is blue. '.repeat(40));
  const base = path.join(tmp, 'text-model'), ft = path.join(tmp, 'passkey-ft');
  ok(await runCli(['train', ...tiny, '--data', data, '--out', base, '--seq-len', '32', '--batch', '2', '--steps', '2']));
  const r = await runCli(['finetune', '--init', base, '--task', 'passkey', '--seq-len', '260', '--batch', '2', '--steps', '2',
    '--eval-every', '2', '--eval-batches', '1', '--out', ft, '--backend', 'cpu']);
  ok(r);
  assert.match(r.stderr, /the passkey task \(vocabulary 257, 6 answer tokens scored per document\); 2 steps of 2×260×1/);
  const l = await lines(ft);
  assert.equal(l.length, 2);
  assert.ok(Number.isFinite(l[1].valAccuracy) && Number.isFinite(l[1].valLoss));
  const cfg = JSON.parse(await readFile(path.join(ft, 'checkpoint', 'config.json'), 'utf8'));
  assert.deepEqual(cfg.tokenizer, { type: 'bytes', eos: true });
  const e = await runCli(['eval', 'task', '--model', ft, '--lengths', '260', '--trials', '2', '--backend', 'cpu']);
  ok(e);
  assert.match(e.stdout, /^260\s+\d/m);
  // eval passkey records, per trial, the key and what the model generated instead
  const pj = path.join(tmp, 'passkey.json');
  ok(await runCli(['eval', 'passkey', '--model', ft, '--lengths', '260,300', '--depths', '0,1', '--trials', '2', '--json', pj, '--backend', 'cpu']));
  const cells = JSON.parse(await readFile(pj, 'utf8')).cells as { length: number; correct: number; trials: number; answers: { key: string; generated: string }[] }[];
  assert.deepEqual(cells.map((c) => c.length), [260, 260, 300, 300]);
  for (const c of cells) {
    assert.equal(c.answers.length, c.trials);
    for (const a of c.answers) { assert.match(a.key, /^[1-9]\d{4}$/); assert.equal(typeof a.generated, 'string'); }
    assert.equal(c.correct, c.answers.filter((a) => a.generated.replace(/\D/g, '').slice(0, 5) === a.key).length);
  }
  // too short for the template: one line
  const short = await runCli(['finetune', '--init', path.join(base, 'checkpoint'), '--task', 'passkey', '--seq-len', '100', '--steps', '1', '--out', path.join(tmp, 'x'), '--backend', 'cpu']);
  assert.equal(short.code, 1);
  assert.deepEqual(errorLines(short.stderr), ['samba-lm: passkey: length must be an integer ≥ 248, got 100']);
});

test('task errors are one line', async () => {
  const out = path.join(tmp, 'err');
  const cases: [string[], number, RegExp][] = [
    [['train', ...tiny, '--task', 'nope', '--out', out], 2, /^samba-lm: unknown task "nope" \(tasks: passkey, passkey-synthetic, selective-copy, induction-heads\)$/],
    [['train', ...tiny, '--task', 'induction-heads', '--data', out, '--out', out], 2, /^samba-lm: train needs exactly one of --data PATH or --task NAME$/],
    [['train', ...tiny, '--out', out], 2, /^samba-lm: train needs exactly one of --data PATH or --task NAME$/],
    [['train', ...tiny, '--task', 'selective-copy', '--vocab-size', '8', '--seq-len', '40', '--steps', '1', '--out', out], 1,
      /^samba-lm: the selective-copy task needs a vocabulary of 16, the model has only 8$/],
    [['train', ...tiny, '--task', 'induction-heads', '--seq-len', '2', '--steps', '1', '--out', out], 1, /^samba-lm: induction-heads: length must be an integer ≥ 3, got 2$/],
    [['train', ...tiny, '--task', 'passkey', '--task-vocab', '8', '--out', out], 2, /^samba-lm: --task-vocab applies to selective-copy and induction-heads, not passkey$/],
    [['train', ...tiny, '--task', 'selective-copy', '--task-vocab', '2', '--out', out], 2, /^samba-lm: --task selective-copy: vocabSize must be an integer ≥ 3$/],
    [['eval', 'task', '--model', path.join(tmp, 'ih', 'checkpoint'), '--task', 'passkey-synthetic', '--lengths', '32', '--backend', 'cpu'], 1,
      /^samba-lm: the passkey task needs a vocabulary of 21, the model has only 4$/],
    [['eval', 'task', '--model', path.join(tmp, 'text-model', 'checkpoint'), '--lengths', '32', '--backend', 'cpu'], 2, /^samba-lm: eval task needs --task NAME .*records no training task$/],
    [['eval', 'task', '--model', path.join(tmp, 'ih', 'checkpoint'), '--lengths', '2', '--backend', 'cpu'], 2, /^samba-lm: --lengths: induction-heads needs lengths ≥ 3, got 2$/],
  ];
  for (const [args, code, re] of cases) {
    const r = await runCli(args);
    const errs = errorLines(r.stderr);
    assert.equal(r.code, code, `${args.join(' ')}: ${r.stderr}`);
    assert.equal(errs.length, 1, errs.join('\n'));
    assert.match(errs[0], re);
  }
});
