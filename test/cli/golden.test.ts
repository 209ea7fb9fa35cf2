// The golden cases (weights, ids and logits from transformers' Mamba and the microsoft/Samba code)
// reproduced through `samba-lm logits` on every backend, and greedy `generate --output-ids`
// choosing at every step the argmax of `logits` over everything before it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { readSafetensorsFile } from '../../src/node/files.js';
import { GOLDEN, cliWebGpuOrSkip, errorLines, runCli } from '../helpers/cli.js';
import { argmax } from '../../src/generate/sampling.js';

const BACKENDS = ['cpu', 'webgpu'] as const;
const cases = (await readdir(GOLDEN, { withFileTypes: true })).filter((d) => d.isDirectory()).map((d) => d.name).sort();
const tmp = await mkdtemp(path.join(tmpdir(), 'samba-golden-'));

test('the golden folder holds the five reference cases', () => {
  assert.ok(cases.length >= 5, `found ${cases.join(', ')}`);
});

for (const backend of BACKENDS) {
  for (const name of cases) {
    test(`${backend}: golden ${name} matches through samba-lm logits`, async (t) => {
      if (backend === 'webgpu' && !(await cliWebGpuOrSkip(t))) return;
      const dir = path.join(GOLDEN, name);
      const expected = await readSafetensorsFile(path.join(dir, 'expected.safetensors'));
      const ids = expected.tensors.get('input_ids')!, ref = expected.tensors.get('logits')!;
      const [B, T] = ids.shape;
      const rows = Array.from({ length: B }, (_, b) => Array.from(ids.data.subarray(b * T, (b + 1) * T)));
      const idsFile = path.join(tmp, `${name}.json`), out = path.join(tmp, `${name}-${backend}.safetensors`);
      await writeFile(idsFile, JSON.stringify(rows));
      const r = await runCli(['logits', '--model', dir, '--ids', idsFile, '--out', out, '--backend', backend]);
      assert.equal(r.code, 0, errorLines(r.stderr).join('\n'));
      const mine = (await readSafetensorsFile(out)).tensors.get('logits')!;
      assert.deepEqual(mine.shape, ref.shape);
      let maxDiff = 0, maxRef = 0;
      for (let i = 0; i < ref.data.length; i++) {
        maxDiff = Math.max(maxDiff, Math.abs(mine.data[i] - ref.data[i]));
        maxRef = Math.max(maxRef, Math.abs(ref.data[i]));
      }
      assert.ok(maxDiff <= 1e-4 * maxRef, `max |Δlogit| ${maxDiff} > 1e-4 · ${maxRef}`);
    });
  }

  test(`${backend}: greedy generate picks the argmax of logits at every step`, async (t) => {
    if (backend === 'webgpu' && !(await cliWebGpuOrSkip(t))) return;
    for (const name of ['samba-tiny', 'hf-mamba-tiny', 'llama-tiny']) {
      const dir = path.join(GOLDEN, name);
      const prompt = [5, 17, 200, 3, 99, 42, 7, 128, 64, 1, 250, 33];
      const promptFile = path.join(tmp, `prompt-${name}-${backend}.json`);
      await writeFile(promptFile, JSON.stringify(prompt));
      const n = 24;
      const g = await runCli(['generate', '--model', dir, '--ids', promptFile, '--max-tokens', String(n), '--temperature', '0', '--output-ids', '--backend', backend]);
      assert.equal(g.code, 0, errorLines(g.stderr).join('\n'));
      const gen = JSON.parse(g.stdout) as number[];
      assert.equal(gen.length, n);
      const all = [...prompt, ...gen];
      const idsFile = path.join(tmp, `all-${name}-${backend}.json`), out = path.join(tmp, `all-${name}-${backend}.safetensors`);
      await writeFile(idsFile, JSON.stringify([all.slice(0, -1)]));
      const l = await runCli(['logits', '--model', dir, '--ids', idsFile, '--out', out, '--backend', backend]);
      assert.equal(l.code, 0, errorLines(l.stderr).join('\n'));
      const logits = (await readSafetensorsFile(out)).tensors.get('logits')!;
      const V = logits.shape[2];
      for (let s = 0; s < n; s++) {
        const pos = prompt.length - 1 + s;
        const row = logits.data.subarray(pos * V, (pos + 1) * V) as Float32Array;
        const best = argmax(row);
        // a near-tie may break either way between the streaming and full passes
        assert.ok(gen[s] === best || Math.abs(row[gen[s]] - row[best]) <= 1e-5 * Math.abs(row[best]), `${name} step ${s}: generated ${gen[s]}, argmax ${best}`);
      }
    }
  });
}
