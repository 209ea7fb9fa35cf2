// `samba-lm convert`: a golden model through samba-lm's layout and back to the reference's gives
// the same tensors under the same names.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { readSafetensorsFile } from '../../src/node/files.js';
import { GOLDEN, errorLines, runCli } from '../helpers/cli.js';

const tmp = await mkdtemp(path.join(tmpdir(), 'samba-convert-'));

for (const [name, back] of [['samba-gqa-tiny', 'samba-reference'], ['mamba-swa-mlp-tiny', 'samba-reference'], ['hf-mamba-tiny', 'hf-mamba']] as const) {
  test(`${name}: → samba-lm → ${back} keeps every tensor exactly`, async () => {
    const a = path.join(tmp, `${name}-lm`), b = path.join(tmp, `${name}-back`);
    for (const args of [['--model', path.join(GOLDEN, name), '--out', a], ['--model', a, '--out', b, '--format', back]]) {
      const r = await runCli(['convert', ...args]);
      assert.equal(r.code, 0, errorLines(r.stderr).join('\n'));
    }
    const orig = (await readSafetensorsFile(path.join(GOLDEN, name, 'model.safetensors'))).tensors;
    const again = (await readSafetensorsFile(path.join(b, 'model.safetensors'))).tensors;
    assert.deepEqual([...again.keys()].sort(), [...orig.keys()].sort());
    for (const [k, t] of orig) assert.deepEqual(again.get(k)!.data, t.data, k);
  });
}

test('bad convert arguments', async () => {
  const r = await runCli(['convert', '--model', path.join(GOLDEN, 'samba-tiny'), '--out', path.join(tmp, 'x'), '--format', 'gguf']);
  assert.equal(r.code, 2);
  assert.match(errorLines(r.stderr).pop()!, /--format must be one of/);
});
