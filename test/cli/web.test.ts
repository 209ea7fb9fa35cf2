// `samba-lm web` as a user starts it: a model folder with a byte tokenizer, a free port; the page,
// its script and the model's files come back from the address it prints, and Ctrl-C (SIGINT) ends
// it cleanly. Without a tokenizer, or with no folder, one clear line.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { initParams } from '../../src/model/init.js';
import { saveModelFolder } from '../../src/node/checkpoint.js';
import { tinyConfig } from '../helpers/models.js';
import { GOLDEN, errorLines, runCli, startCliServer } from '../helpers/cli.js';

test('web: serves the page and the model folder at the address it prints, and stops on SIGINT', async () => {
  const dir = path.join(await mkdtemp(path.join(tmpdir(), 'samba-web-cli-')), 'bytes-model');
  const cfg = tinyConfig('samba', { vocabSize: 257 }), params = initParams(cfg, 4);
  await saveModelFolder(dir, cfg, (name) => params.get(name)!, { tokenizer: { type: 'bytes', eos: true } });
  const { url, stop, stderr } = await startCliServer(['web', '--model', dir, '--port', '0'], /the page is at (http:\/\/\S+)\/ with the model/);
  assert.match(await (await fetch(`${url}/`)).text(), /<script type="module" src="\/dist\/web\/app\.js">/);
  assert.equal((await fetch(`${url}/dist/web/app.js`)).status, 200);
  const list = await (await fetch(`${url}/model/`)).json() as { name: string; files: string[] };
  assert.deepEqual(list, { name: 'bytes-model', files: ['config.json', 'model.safetensors'] });
  const config = await (await fetch(`${url}/model/config.json`)).json() as { tokenizer: unknown };
  assert.deepEqual(config.tokenizer, { type: 'bytes', eos: true });
  assert.equal(await stop(), 0, stderr());
});

test('web with a model folder without a tokenizer, or none, says so in one line', async () => {
  const r = await runCli(['web', '--model', path.join(GOLDEN, 'samba-tiny'), '--port', '0']);
  assert.notEqual(r.code, 0);
  assert.match(errorLines(r.stderr).join('\n'), /^samba-lm: model .* has no tokenizer .* the page needs one$/);
  const none = await runCli(['web', '--model', path.join(GOLDEN, 'no-such-model'), '--port', '0']);
  assert.notEqual(none.code, 0);
  assert.match(errorLines(none.stderr).join('\n'), /^samba-lm: model folder .* does not exist$/);
});
