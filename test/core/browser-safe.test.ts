// The core library must run in a browser: nothing outside src/node and src/cli may import Node's
// built-ins or the Dawn package, directly or through another module.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const SRC = fileURLToPath(new URL('../../src/', import.meta.url)); // dist/src
const NODE_ONLY = new Set(['node', 'cli']);

async function jsFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...(await jsFiles(p)));
    else if (e.name.endsWith('.js')) out.push(p);
  }
  return out;
}

test('core modules import no node: built-ins and no Dawn', async () => {
  const files = (await jsFiles(SRC)).filter((f) => !NODE_ONLY.has(path.relative(SRC, f).split(path.sep)[0]));
  assert.ok(files.length > 20, `found ${files.length} core modules`);
  const bad: string[] = [];
  const builtins = /from\s+['"](node:[^'"]+|fs|path|os|url|util|child_process|crypto|stream|webgpu)['"]|import\(\s*['"](node:|webgpu)/;
  for (const f of files) {
    const src = await readFile(f, 'utf8');
    if (builtins.test(src)) bad.push(path.relative(SRC, f));
    // a relative import into the Node-only folders would pull them in too
    for (const m of src.matchAll(/from\s+['"](\.[^'"]+)['"]/g)) {
      const target = path.relative(SRC, path.resolve(path.dirname(f), m[1]));
      if (NODE_ONLY.has(target.split(path.sep)[0])) bad.push(`${path.relative(SRC, f)} → ${target}`);
    }
  }
  assert.deepEqual(bad, []);
});
