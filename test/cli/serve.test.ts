// `samba-lm serve` as a user starts it: a model folder with a byte tokenizer, a free port, one
// completion over HTTP, then Ctrl-C (SIGINT) ends it cleanly; and one clear line without a tokenizer.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { initParams } from '../../src/model/init.js';
import { saveModelFolder } from '../../src/node/checkpoint.js';
import { tinyConfig } from '../helpers/models.js';
import { GOLDEN, errorLines, runCli, startCliServer } from '../helpers/cli.js';

const tmp = await mkdtemp(path.join(tmpdir(), 'samba-serve-'));

test('serve: answers /v1/completions on the port it prints, and stops on SIGINT', async () => {
  const dir = path.join(tmp, 'bytes-model');
  const cfg = tinyConfig('samba', { vocabSize: 257 }), params = initParams(cfg, 4);
  await saveModelFolder(dir, cfg, (name) => params.get(name)!, { tokenizer: { type: 'bytes', eos: true } });
  const { url, stop, stderr } = await startCliServer(['serve', '--model', dir, '--port', '0', '--backend', 'cpu', '--model-id', 'mine'], /serving "mine" at (http:\/\/\S+)\/v1/);
  const r = await fetch(`${url}/v1/completions`, { method: 'POST', body: JSON.stringify({ prompt: 'hi', max_tokens: 4, temperature: 0 }) });
  assert.equal(r.status, 200);
  const j = await r.json() as { model: string; usage: { prompt_tokens: number; completion_tokens: number } };
  assert.equal(j.model, 'mine');
  assert.equal(j.usage.prompt_tokens, 2);
  assert.ok(j.usage.completion_tokens >= 1 && j.usage.completion_tokens <= 4);
  assert.equal(await stop(), 0, stderr());
});

test('serve without a tokenizer, or on a bad port, says so in one line', async () => {
  const r = await runCli(['serve', '--model', path.join(GOLDEN, 'samba-tiny'), '--backend', 'cpu', '--port', '0']);
  assert.notEqual(r.code, 0);
  assert.match(errorLines(r.stderr).join('\n'), /^samba-lm: model .* has no tokenizer .* the server needs one$/);
  const bad = await runCli(['serve', '--model', path.join(GOLDEN, 'samba-tiny'), '--port', '70000']);
  assert.notEqual(bad.code, 0);
  assert.deepEqual(errorLines(bad.stderr), ['samba-lm: --port must be at most 65535, got 70000']);
});
