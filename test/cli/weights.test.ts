// `--weights f16` and `--kv-cache f16` through the CLI: logits on WebGPU close to the f32 ones (f16 operands, f32 sums),
// and one clear line for a backend or value that cannot do it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { readSafetensorsFile } from '../../src/node/files.js';
import { GOLDEN, cliWebGpuOrSkip, errorLines, runCli } from '../helpers/cli.js';

const tmp = await mkdtemp(path.join(tmpdir(), 'samba-weights-'));
const model = path.join(GOLDEN, 'samba-tiny');
const ids = path.join(tmp, 'ids.json');
await writeFile(ids, JSON.stringify([Array.from({ length: 40 }, (_, t) => (t * 7) % 50), Array.from({ length: 40 }, (_, t) => (t * 11 + 3) % 50)]));

test('logits --weights f16 (WebGPU): within f16 rounding of the f32 logits', async (t) => {
  if (!(await cliWebGpuOrSkip(t))) return;
  const read = async (w: string) => {
    const out = path.join(tmp, `logits-${w}.safetensors`);
    const r = await runCli(['logits', '--model', model, '--ids', ids, '--out', out, '--backend', 'webgpu', '--weights', w]);
    assert.equal(r.code, 0, errorLines(r.stderr).join('\n'));
    return (await readSafetensorsFile(out)).tensors.get('logits')!.data as Float32Array;
  };
  const a = await read('f32'), b = await read('f16');
  let max = 0, diff = 0;
  for (let i = 0; i < a.length; i++) { max = Math.max(max, Math.abs(a[i])); diff = Math.max(diff, Math.abs(a[i] - b[i])); }
  assert.ok(diff / max < 1e-2, `max |Δ| / max |logit| = ${diff / max}`);
  assert.ok(diff > 0, 'f16 weights change the logits a little');
});

test('--weights errors are one line', async () => {
  const cpu = await runCli(['logits', '--model', model, '--ids', ids, '--out', path.join(tmp, 'x.safetensors'), '--backend', 'cpu', '--weights', 'f16']);
  assert.notEqual(cpu.code, 0);
  assert.deepEqual(errorLines(cpu.stderr), ['samba-lm: f16 weights need the webgpu backend (the cpu backend computes in f32)']);
  const bad = await runCli(['logits', '--model', model, '--ids', ids, '--out', path.join(tmp, 'x.safetensors'), '--weights', 'f8']);
  assert.notEqual(bad.code, 0);
  assert.match(errorLines(bad.stderr).join('\n'), /--weights must be f32 or f16, got "f8"/);
});

test('generate --kv-cache f16 decodes a golden model like the f32 cache; a bad value is one line', async () => {
  const prompt = path.join(tmp, 'prompt.json');
  await writeFile(prompt, JSON.stringify(Array.from({ length: 30 }, (_, t) => (t * 5 + 1) % 50)));
  const run = async (kv: string) => {
    const r = await runCli(['generate', '--model', path.join(GOLDEN, 'llama-tiny'), '--ids', prompt, '--max-tokens', '16', '--temperature', '0', '--output-ids', '--backend', 'cpu', '--kv-cache', kv]);
    assert.equal(r.code, 0, errorLines(r.stderr).join('\n'));
    return JSON.parse(r.stdout) as number[];
  };
  const f32 = await run('f32'), f16 = await run('f16');
  assert.equal(f16.length, 16);
  assert.deepEqual(f16, f32, 'greedy tokens survive rounding the cache to halves');
  const bad = await runCli(['generate', '--model', model, '--ids', prompt, '--kv-cache', 'f8']);
  assert.notEqual(bad.code, 0);
  assert.deepEqual(errorLines(bad.stderr), ['samba-lm: --kv-cache must be f32 or f16, got "f8"']);
});

test('--tensor-cores: needs f16 weights and WebGPU; where the adapter has no subgroup matrices it says so and computes the same logits', async (t) => {
  const noF16 = await runCli(['logits', '--model', model, '--ids', ids, '--out', path.join(tmp, 'x.safetensors'), '--tensor-cores']);
  assert.notEqual(noF16.code, 0);
  assert.deepEqual(errorLines(noF16.stderr), ['samba-lm: --tensor-cores runs the products of f16 weights: add --weights f16']);
  const cpu = await runCli(['logits', '--model', model, '--ids', ids, '--out', path.join(tmp, 'x.safetensors'), '--backend', 'cpu', '--weights', 'f16', '--tensor-cores']);
  assert.notEqual(cpu.code, 0);
  assert.deepEqual(errorLines(cpu.stderr), ['samba-lm: --tensor-cores needs the webgpu backend']);
  if (!(await cliWebGpuOrSkip(t))) return;
  const read = async (extra: string[]) => {
    const out = path.join(tmp, `logits-tc-${extra.length}.safetensors`);
    const r = await runCli(['logits', '--model', model, '--ids', ids, '--out', out, '--backend', 'webgpu', '--weights', 'f16', ...extra]);
    assert.equal(r.code, 0, errorLines(r.stderr).join('\n'));
    return { logits: (await readSafetensorsFile(out)).tensors.get('logits')!.data as Float32Array, stderr: r.stderr };
  };
  const plain = await read([]), tc = await read(['--tensor-cores']);
  // every f16 path rounds the operands alike and sums in f32: only the order of the sums differs
  let max = 0, diff = 0;
  for (let i = 0; i < plain.logits.length; i++) { max = Math.max(max, Math.abs(plain.logits[i])); diff = Math.max(diff, Math.abs(plain.logits[i] - tc.logits[i])); }
  assert.ok(diff / max < 1e-4, `max |Δ| / max |logit| = ${diff / max}`);
  if (!/no tensor cores here/.test(tc.stderr)) t.diagnostic('this adapter has subgroup matrices: the tensor-core path ran');
  else assert.match(tc.stderr, /samba-lm: note: no tensor cores here \(.+\); the f16 tiled kernel runs instead/);
});
