// Bad input ends in one line naming the problem and a non-zero exit code, never a stack trace.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cp, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { GOLDEN, errorLines, runCli } from '../helpers/cli.js';

const tmp = await mkdtemp(path.join(tmpdir(), 'samba-cli-errors-'));
const ids = path.join(tmp, 'ids.json');
await writeFile(ids, JSON.stringify([[1, 2, 3, 4]]));

async function copyGolden(name: string): Promise<string> {
  const dir = path.join(tmp, `${name}-${Math.random().toString(36).slice(2)}`);
  await cp(path.join(GOLDEN, name), dir, { recursive: true });
  return dir;
}

async function expectError(args: string[], pattern: RegExp, env?: NodeJS.ProcessEnv): Promise<void> {
  const r = await runCli(args, env ? { env } : {});
  assert.notEqual(r.code, 0, `exit code 0 for ${args.join(' ')}`);
  // the message is the last line (the native Vulkan loader may have logged before it)
  const lines = errorLines(r.stderr), last = lines[lines.length - 1] ?? '';
  assert.match(last, /^samba-lm: /, r.stderr);
  assert.match(last, pattern);
  assert.equal(lines.filter((l) => l.startsWith('samba-lm: ')).length, 1);
  assert.doesNotMatch(r.stderr, /\bat .*\.(js|ts|mjs):\d+/, 'no JavaScript stack trace');
}

test('missing model folder and files', async () => {
  await expectError(['logits', '--model', path.join(tmp, 'nope'), '--ids', ids, '--out', path.join(tmp, 'o.st'), '--backend', 'cpu'], /does not exist/);
  const dir = await copyGolden('samba-tiny');
  await expectError(['logits', '--model', dir, '--ids', path.join(tmp, 'missing.json'), '--out', path.join(tmp, 'o.st'), '--backend', 'cpu'], /cannot read ids file .*no such file/);
  await expectError(['perplexity', '--model', dir, '--text', path.join(tmp, 'missing.txt'), '--backend', 'cpu'], /cannot read text file/);
  await expectError(['info', '--model', tmp], /no config\.json/);
});

test('usage mistakes', async () => {
  await expectError(['frobnicate'], /unknown command "frobnicate"/);
  await expectError(['info', '--preset', 'samba-9000'], /unknown model preset "samba-9000"/);
  await expectError(['logits', '--model', GOLDEN, '--ids', ids], /needs --out/);
  await expectError(['generate', '--model', path.join(GOLDEN, 'samba-tiny'), '--ids', ids, '--top-p', 'x'], /--top-p must be a number/);
  await expectError(['generate', '--model', path.join(GOLDEN, 'samba-tiny'), '--ids', ids, '--backend', 'tpu'], /--backend must be cpu, webgpu or auto/);
  await expectError(['info', '--bogus'], /Unknown option '--bogus'/);
});

test('malformed JSON and ids out of range', async () => {
  const dir = path.join(GOLDEN, 'samba-tiny');
  const bad = path.join(tmp, 'bad.json');
  await writeFile(bad, '[[1, 2,');
  await expectError(['logits', '--model', dir, '--ids', bad, '--out', path.join(tmp, 'o.st'), '--backend', 'cpu'], /not valid JSON/);
  await writeFile(bad, JSON.stringify([[1, 2], [3]]));
  await expectError(['logits', '--model', dir, '--ids', bad, '--out', path.join(tmp, 'o.st'), '--backend', 'cpu'], /equal length/);
  await writeFile(bad, JSON.stringify([[1, 'a']]));
  await expectError(['logits', '--model', dir, '--ids', bad, '--out', path.join(tmp, 'o.st'), '--backend', 'cpu'], /not a non-negative integer token id/);
  await writeFile(bad, JSON.stringify([[1, 256]]));
  await expectError(['logits', '--model', dir, '--ids', bad, '--out', path.join(tmp, 'o.st'), '--backend', 'cpu'], /token id 256 is outside the model's vocabulary \[0, 256\)/);
  const cfgBroken = await copyGolden('samba-tiny');
  await writeFile(path.join(cfgBroken, 'config.json'), '{"n_layer": ');
  await expectError(['info', '--model', cfgBroken], /config\.json/);
});

test('unknown architecture and shape mismatch', async () => {
  const dir = await copyGolden('hf-mamba-tiny');
  const cfg = JSON.parse(await readFile(path.join(dir, 'config.json'), 'utf8'));
  await writeFile(path.join(dir, 'config.json'), JSON.stringify({ ...cfg, model_type: 'rwkv', architectures: ['RwkvForCausalLM'] }));
  await expectError(['logits', '--model', dir, '--ids', ids, '--out', path.join(tmp, 'o.st'), '--backend', 'cpu'], /rwkv|architecture|format/i);

  const dir2 = await copyGolden('samba-tiny');
  const cfg2 = JSON.parse(await readFile(path.join(dir2, 'config.json'), 'utf8'));
  await writeFile(path.join(dir2, 'config.json'), JSON.stringify({ ...cfg2, intermediate_size: 200 }));
  await expectError(['logits', '--model', dir2, '--ids', ids, '--out', path.join(tmp, 'o.st'), '--backend', 'cpu'], /shape/);
});

test('malformed safetensors', async () => {
  const dir = await copyGolden('samba-tiny');
  const f = path.join(dir, 'model.safetensors');
  const bytes = await readFile(f);
  await writeFile(f, bytes.subarray(0, 100));
  await expectError(['logits', '--model', dir, '--ids', ids, '--out', path.join(tmp, 'o.st'), '--backend', 'cpu'], /model\.safetensors/);
  const huge = Buffer.from(bytes); huge.writeBigUInt64LE(10n ** 12n, 0);
  await writeFile(f, huge);
  await expectError(['info', '--model', dir], /header/);
});

test('--backend webgpu without an adapter', async () => {
  // no Vulkan driver to be found: Dawn has no adapter to offer
  await expectError(['logits', '--model', path.join(GOLDEN, 'samba-tiny'), '--ids', ids, '--out', path.join(tmp, 'o.st'), '--backend', 'webgpu'],
    /no WebGPU adapter/, { ...process.env, VK_ICD_FILENAMES: '/nonexistent.json', VK_DRIVER_FILES: '/nonexistent.json' });
});
