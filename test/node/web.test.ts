// `samba-lm web`'s file server: the page, the compiled library and the tokenizer library it imports,
// and a model folder's own files; nothing else (no path out of dist, no other file of the folder).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createWebServer } from '../../src/node/web.js';

async function serving(modelDir: string | undefined, fn: (get: (p: string) => Promise<Response>) => Promise<void>): Promise<void> {
  const server = createWebServer({ modelDir });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    await fn((p) => fetch(base + p));
  } finally {
    await new Promise((r) => server.close(r));
  }
}

test('web server: the page, its modules and the tokenizer library; 404 elsewhere', async () => {
  await serving(undefined, async (get) => {
    const page = await get('/');
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type')!, /text\/html/);
    const html = await page.text();
    assert.match(html, /\/dist\/web\/app\.js/);
    for (const p of ['/dist/web/app.js', '/dist/src/index.js', '/vendor/tokenizers.mjs']) {
      const r = await get(p);
      assert.equal(r.status, 200, p);
      assert.match(r.headers.get('content-type')!, /javascript/, p);
    }
    for (const p of ['/package.json', '/dist/src/../../package.json', '/dist/src/%2e%2e/%2e%2e/package.json', '/dist/src/index.d.ts', '/web/app.ts', '/model/config.json']) {
      assert.equal((await get(p)).status, 404, p);
    }
    const none = await get('/model/');
    assert.equal(none.status, 404);
    assert.match(((await none.json()) as { error: string }).error, /--model/);
  });
});

test('web server: a model folder\'s config, weights, shards and tokenizer files, nothing else of it', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'samba-web-server-'));
  try {
    await writeFile(path.join(dir, 'config.json'), '{}');
    await writeFile(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ weight_map: { a: 'part-1.safetensors', b: 'part-2.safetensors', c: '../secret.safetensors' } }));
    await writeFile(path.join(dir, 'part-1.safetensors'), 'x');
    await writeFile(path.join(dir, 'part-2.safetensors'), 'yy');
    await writeFile(path.join(dir, 'tokenizer.json'), '{}');
    await writeFile(path.join(dir, 'notes.txt'), 'private');
    await serving(dir, async (get) => {
      const list = await (await get('/model/')).json() as { name: string; files: string[] };
      assert.equal(list.name, path.basename(dir));
      assert.deepEqual(list.files, ['config.json', 'model.safetensors.index.json', 'tokenizer.json', 'part-1.safetensors', 'part-2.safetensors']);
      assert.equal(await (await get('/model/part-2.safetensors')).text(), 'yy');
      for (const p of ['/model/notes.txt', '/model/..%2Fsecret.safetensors', '/model/../notes.txt']) assert.equal((await get(p)).status, 404, p);
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
