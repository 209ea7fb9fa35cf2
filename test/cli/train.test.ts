// `samba-lm train` end to end: a run killed with SIGKILL and resumed reproduces the uninterrupted
// run's loss curve exactly (CPU), losing at most one save interval; the checkpoint loads for
// generation; `tokenize` shards train the same as the text.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { GOLDEN, errorLines, runCli, runCliKilledAt } from '../helpers/cli.js';

const tmp = await mkdtemp(path.join(tmpdir(), 'samba-train-'));
const data = path.join(tmp, 'data');
await mkdir(data);
const words = 'the state space model keeps a fixed size summary of everything it has read while the window recalls recent tokens exactly'.split(' ');
for (let f = 0; f < 3; f++) {
  let text = '';
  for (let i = 0; i < 1500; i++) text += words[(i * 7 + f * 3 + (i % 5)) % words.length] + (i % 11 === 10 ? '.\n' : ' ');
  await writeFile(path.join(data, `doc${f}.txt`), text);
}
const common = ['--arch', 'samba', '--d-model', '32', '--blocks', '2', '--heads', '2', '--window', '8', '--seq-len', '24', '--batch', '2',
  '--steps', '24', '--lr', '3e-3', '--save-every', '4', '--eval-every', '8', '--eval-batches', '2', '--log-every', '4', '--backend', 'cpu', '--seed', '5'];

const losses = async (out: string) => (await readFile(path.join(out, 'train.jsonl'), 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l)).map((l) => [l.step, l.loss, l.valLoss]);

test('SIGKILL then --resume reproduces the uninterrupted loss curve exactly', async () => {
  const straight = path.join(tmp, 'straight'), killed = path.join(tmp, 'killed');
  const r = await runCli(['train', ...common, '--data', data, '--out', straight]);
  assert.equal(r.code, 0, errorLines(r.stderr).join('\n'));

  // start the same run and kill it hard once it is past step 10
  await runCliKilledAt(['train', ...common, '--data', data, '--out', killed], 10);
  const before = await losses(killed);
  assert.ok(before.length >= 10 && before.length < 24, `killed after ${before.length} steps`);
  const resumed = await runCli(['train', '--resume', killed, '--backend', 'cpu']);
  assert.equal(resumed.code, 0, errorLines(resumed.stderr).join('\n'));
  assert.match(resumed.stderr, /resuming at step (8|12)/); // at most one save interval (4 steps) lost
  assert.deepEqual(await losses(killed), await losses(straight));
  // resuming a finished run trains nothing and says so
  const again = await runCli(['train', '--resume', killed, '--backend', 'cpu']);
  assert.equal(again.code, 0, errorLines(again.stderr).join('\n'));
  assert.match(again.stderr, /was already trained to step 24/);
  assert.deepEqual(await losses(killed), await losses(straight));

  // the checkpoint is a model folder
  const g = await runCli(['generate', '--model', path.join(killed, 'checkpoint'), '--prompt', 'the state', '--max-tokens', '8', '--seed', '1', '--backend', 'cpu']);
  assert.equal(g.code, 0, errorLines(g.stderr).join('\n'));
  const svg = await readFile(path.join(killed, 'loss.svg'), 'utf8');
  assert.match(svg, /^<svg/);
});

test('tokenize + train on the shard = train on the text; finetune from a checkpoint', async () => {
  const shard = path.join(tmp, 'all.bin');
  const t = await runCli(['tokenize', '--input', data, '--out', shard]);
  assert.equal(t.code, 0, errorLines(t.stderr).join('\n'));
  const meta = JSON.parse(t.stdout);
  assert.equal(meta.dtype, 'uint16');
  const a = path.join(tmp, 'from-text'), b = path.join(tmp, 'from-shard');
  const short = common.map((x) => (x === '24' ? '8' : x));
  assert.equal((await runCli(['train', ...short, '--data', data, '--out', a])).code, 0);
  const rb = await runCli(['train', ...short, '--data', shard, '--out', b]);
  assert.equal(rb.code, 0, errorLines(rb.stderr).join('\n'));
  assert.deepEqual(await losses(a), await losses(b));
  const f = await runCli(['finetune', '--init', path.join(a, 'checkpoint'), '--data', data, '--out', path.join(tmp, 'ft'), '--steps', '4', '--seq-len', '16', '--batch', '2', '--backend', 'cpu']);
  assert.equal(f.code, 0, errorLines(f.stderr).join('\n'));
});

test('fine-tuning a Hugging Face Mamba and a reference Samba checkpoint lowers their loss', async () => {
  for (const name of ['hf-mamba-tiny', 'samba-gqa-tiny']) {
    const out = path.join(tmp, `ft-${name}`);
    const r = await runCli(['finetune', '--init', path.join(GOLDEN, name), '--tokenizer', 'bytes', '--data', data, '--out', out,
      '--steps', '12', '--seq-len', '32', '--batch', '2', '--lr', '3e-3', '--eval-every', '12', '--backend', 'cpu']);
    assert.equal(r.code, 0, errorLines(r.stderr).join('\n'));
    const l = await losses(out);
    assert.ok(l[l.length - 1][1] < l[0][1] - 0.5, `${name}: ${l[0][1]} → ${l[l.length - 1][1]}`);
  }
});

test('--weight-decay sets AdamW decay; a negative one is refused', async () => {
  const short = common.map((x) => (x === '24' ? '8' : x));
  const a = path.join(tmp, 'wd-default'), b = path.join(tmp, 'wd-0'), c = path.join(tmp, 'wd-0-again');
  assert.equal((await runCli(['train', ...short, '--data', data, '--out', a])).code, 0);
  assert.equal((await runCli(['train', ...short, '--weight-decay', '0', '--data', data, '--out', b])).code, 0);
  assert.equal((await runCli(['train', ...short, '--weight-decay', '0', '--data', data, '--out', c])).code, 0);
  const [la, lb, lc] = [await losses(a), await losses(b), await losses(c)];
  assert.deepEqual(lb, lc);
  assert.deepEqual(la[0], lb[0], 'the same first loss: decay acts from the first update on');
  assert.notDeepEqual(la, lb);
  const bad = await runCli(['train', ...short, '--weight-decay', '-1', '--data', data, '--out', path.join(tmp, 'wd-bad')]);
  assert.notEqual(bad.code, 0);
  assert.match(errorLines(bad.stderr).join('\n'), /--weight-decay/);
});
