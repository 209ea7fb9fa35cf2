// The browser page (web/) in a real browser: headless Chromium through playwright-core loads a model
// from `samba-lm web`'s server into the page's own backend (the CPU, and WebGPU through
// navigator.gpu with no Dawn toggles: Chromium's own adapter, SwiftShader on a machine without a
// GPU), reproduces the reference code's golden logits, and generates, through the page's controls,
// the greedy tokens Node generates. Without Chromium the tests skip, except in CI
// (SAMBA_REQUIRE_BROWSER=1, set by .ci/run, which installs it).
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { access, mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Browser } from 'playwright-core';
import { CpuBackend } from '../../src/backends/cpu/cpu.js';
import { generateIds } from '../../src/generate/generate.js';
import { openModelFolder, saveModelFolder } from '../../src/node/checkpoint.js';
import { readSafetensorsFile } from '../../src/node/files.js';
import { loadModel } from '../../src/node/load.js';
import { createWebServer } from '../../src/node/web.js';
import { GOLDEN } from '../helpers/cli.js';
import { relErr } from '../helpers/gpu.js';

const CHROMIUM = process.env.SAMBA_CHROMIUM ?? '/usr/bin/chromium';
const hasChromium = await access(CHROMIUM).then(() => true, () => false);
if (!hasChromium && process.env.SAMBA_REQUIRE_BROWSER === '1') {
  throw new Error(`no Chromium at ${CHROMIUM}, and SAMBA_REQUIRE_BROWSER=1 makes that a failure (apt-get install chromium, or set SAMBA_CHROMIUM)`);
}
const skip = hasChromium ? false : `no Chromium at ${CHROMIUM} (apt-get install chromium, or set SAMBA_CHROMIUM)`;

const CASE = 'samba-tiny';
let dir = '', url = '', browser: Browser | null = null;
let modelServer: ReturnType<typeof createWebServer> | null = null;

before(async () => {
  if (skip) return;
  // the golden case as a samba-lm folder with a byte tokenizer, so the page can take text prompts
  dir = await mkdtemp(path.join(tmpdir(), 'samba-web-'));
  const golden = await openModelFolder(path.join(GOLDEN, CASE));
  await saveModelFolder(dir, golden.config, (n) => golden.read(n), { tokenizer: { type: 'bytes', eos: false } });
  await golden.close();
  modelServer = createWebServer({ modelDir: dir });
  await new Promise<void>((r) => modelServer!.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(modelServer.address() as AddressInfo).port}/`;
  const { chromium } = await import('playwright-core');
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--enable-unsafe-webgpu'] });
});

after(async () => {
  await browser?.close();
  await new Promise((r) => (modelServer ? modelServer.close(r) : r(undefined)));
  if (dir) await rm(dir, { recursive: true, force: true });
});

/**
 * Chromium's WebGPU adapter: whether it has shader-f16, or null without one (a failure where
 * SAMBA_REQUIRE_WEBGPU=1, as in CI).
 */
async function browserAdapter(): Promise<{ f16: boolean } | null> {
  const page = await browser!.newPage();
  await page.goto(url);
  const f16 = await page.evaluate(async () => {
    const a = await (navigator as Navigator & { gpu?: GPU }).gpu?.requestAdapter();
    return a ? a.features.has('shader-f16') : null;
  });
  await page.close();
  if (f16 === null) assert.notEqual(process.env.SAMBA_REQUIRE_WEBGPU, '1', 'Chromium has no WebGPU adapter, and SAMBA_REQUIRE_WEBGPU=1 makes that a failure');
  return f16 === null ? null : { f16 };
}

/** A fresh page that loaded the server's model on `backend`: its status then ('ready' or 'error'). */
async function loadServerModel(backend: 'cpu' | 'webgpu', f16 = false) {
  const page = await browser!.newPage();
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(url);
  await page.selectOption('#backend', backend);
  if (f16) await page.check('#f16');
  await page.waitForSelector('#load-server:not([hidden])');
  await page.click('#load-server');
  await page.waitForFunction(() => ['ready', 'error'].includes(document.querySelector<HTMLElement>('#status')!.dataset.state!), null, { timeout: 120_000 });
  return { page, errors, state: await page.getAttribute('#status', 'data-state'), status: (await page.textContent('#status'))! };
}

/** A fresh page with the server's model loaded on `backend`; page errors fail the test. */
async function pageWithModel(backend: 'cpu' | 'webgpu') {
  const { page, errors, state, status } = await loadServerModel(backend);
  assert.equal(state, 'ready', `loading on ${backend}: ${status}`);
  assert.deepEqual(errors, []);
  return page;
}

for (const backend of ['cpu', 'webgpu'] as const) {
  test(`browser page on ${backend}: the golden ${CASE} logits, and greedy tokens as Node generates them`, { skip, timeout: 300_000 }, async () => {
    if (backend === 'webgpu' && !(await browserAdapter())) return;
    const page = await pageWithModel(backend);
    assert.match((await page.textContent('#model-info'))!, new RegExp(`on ${backend}`));

    // the page's model, on the page's backend, against the reference code's logits
    const expected = await readSafetensorsFile(path.join(GOLDEN, CASE, 'expected.safetensors'));
    const ids = expected.tensors.get('input_ids')!, ref = expected.tensors.get('logits')!;
    const [B, T] = ids.shape;
    const logits = await page.evaluate(async ({ ids, B, T }) => {
      const { model, backend } = (globalThis as unknown as { sambaPage: { loaded: { model: import('../../src/model/model.js').SambaModel; backend: import('../../src/core/backend.js').Backend } } }).sambaPage.loaded;
      const l = model.forward(Int32Array.from(ids), B, T);
      const out = await backend.read(l);
      backend.dispose(l);
      return Array.from(out);
    }, { ids: Array.from(ids.data), B, T });
    const err = relErr(logits, ref.data);
    assert.ok(err <= 1e-4, `max |Δlogit| / max |logit| = ${err}`);

    // greedy generation through the page's controls, against Node's on the CPU
    await page.fill('#prompt', 'The state space');
    await page.fill('#temperature', '0');
    await page.fill('#max-tokens', '16');
    await page.click('#generate');
    await page.waitForFunction(() => ['done', 'error'].includes(document.querySelector<HTMLElement>('#status')!.dataset.state!), null, { timeout: 120_000 });
    assert.equal(await page.getAttribute('#status', 'data-state'), 'done', (await page.textContent('#status'))!);
    const pageIds = (await page.getAttribute('#output', 'data-ids'))!.split(',').map(Number);
    const cpu = new CpuBackend(), { model, tokenizer } = await loadModel(dir, cpu);
    const nodeIds: number[] = [];
    for await (const id of generateIds(model, tokenizer!.encode('The state space'), { maxTokens: 16, temperature: 0 })) nodeIds.push(id);
    assert.deepEqual(pageIds, nodeIds);
    await page.close();
  });
}

test('browser page: a bad model file is reported on the page, not thrown away', { skip, timeout: 120_000 }, async () => {
  const page = await browser!.newPage();
  await page.goto(url);
  await page.selectOption('#backend', 'cpu');
  await page.setInputFiles('#files', [
    { name: 'config.json', mimeType: 'application/json', buffer: Buffer.from('{"format": "samba-lm", "model": {"architecture": "samba"}}') },
    { name: 'model.safetensors', mimeType: 'application/octet-stream', buffer: Buffer.from('not safetensors') },
  ]);
  await page.waitForFunction(() => document.querySelector<HTMLElement>('#status')!.dataset.state === 'error', null, { timeout: 60_000 });
  assert.match((await page.textContent('#status'))!, /safetensors/i);
  assert.equal(await page.isDisabled('#generate'), true);
  await page.close();
});

test('browser page: f16 weights load where the adapter has shader-f16, and are refused with the reason where it has not', { skip, timeout: 300_000 }, async () => {
  const adapter = await browserAdapter();
  if (!adapter) return;
  const { page, state, status } = await loadServerModel('webgpu', true);
  if (adapter.f16) {
    assert.equal(state, 'ready', status);
    assert.match((await page.textContent('#model-info'))!, /f16 weights/);
  } else {
    assert.equal(state, 'error');
    assert.match(status, /shader-f16/);
    assert.equal(await page.isDisabled('#generate'), true);
  }
  await page.close();
});
