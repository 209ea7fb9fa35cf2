// `samba-lm grad` against the gradients the reference implementations computed (float64 autograd),
// under the checkpoint's own tensor names, on every backend with training ops (WebGPU: skipped
// without an adapter, failed instead where SAMBA_REQUIRE_WEBGPU=1).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { readSafetensorsFile } from '../../src/node/files.js';
import { GOLDEN, cliWebGpuOrSkip, errorLines, runCli } from '../helpers/cli.js';

const cases = (await readdir(GOLDEN, { withFileTypes: true })).filter((d) => d.isDirectory()).map((d) => d.name).sort();
const tmp = await mkdtemp(path.join(tmpdir(), 'samba-grad-'));

for (const backend of ['cpu', 'webgpu'] as const) {
  for (const name of cases) {
    test(`${backend}: golden ${name}: samba-lm grad matches the reference gradients`, async (t) => {
      if (backend === 'webgpu' && !(await cliWebGpuOrSkip(t))) return;
      const dir = path.join(GOLDEN, name);
      const exp = await readSafetensorsFile(path.join(dir, 'expected.safetensors'));
      const ids = exp.tensors.get('input_ids')!, [B, T] = ids.shape;
      const idsFile = path.join(tmp, `${name}-${backend}.json`), out = path.join(tmp, `${name}-${backend}.safetensors`);
      await writeFile(idsFile, JSON.stringify(Array.from({ length: B }, (_, b) => Array.from(ids.data.subarray(b * T, (b + 1) * T)))));
      const r = await runCli(['grad', '--model', dir, '--ids', idsFile, '--out', out, '--backend', backend]);
      assert.equal(r.code, 0, errorLines(r.stderr).join('\n'));
      const mine = (await readSafetensorsFile(out)).tensors, ref = (await readSafetensorsFile(path.join(dir, 'grads.safetensors'))).tensors;
      assert.deepEqual([...mine.keys()].sort(), [...ref.keys()].sort());
      for (const [n, g] of ref) {
        const m = mine.get(n)!;
        assert.deepEqual(m.shape, g.shape, n);
        if (n === 'loss') { assert.ok(Math.abs(m.data[0] - g.data[0]) <= 1e-5 * g.data[0], `loss ${m.data[0]} vs ${g.data[0]}`); continue; }
        let d = 0, mx = 0;
        for (let i = 0; i < g.data.length; i++) { d = Math.max(d, Math.abs(m.data[i] - g.data[i])); mx = Math.max(mx, Math.abs(g.data[i])); }
        assert.ok(d <= 1e-4 * mx, `${n}: max |Δ| ${d} > 1e-4 · ${mx}`);
      }
    });
  }
}
