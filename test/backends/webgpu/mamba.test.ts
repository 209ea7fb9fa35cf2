// conv1dSilu and selectiveScan on WebGPU equal the CPU reference, with and without carried state,
// including sequences shorter than the conv's history and Δ on both sides of softplus's cut at 20.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CpuBackend } from '../../../src/backends/cpu/cpu.js';
import type { Tensor } from '../../../src/core/backend.js';
import { Rng } from '../../../src/core/random.js';
import { assertParity, gpuBackendOrSkip } from '../../helpers/gpu.js';
import { rand, scanInputs, twin } from '../../helpers/scan.js';
import { scanChunks, scanShape } from '../../../src/backends/webgpu/mamba.js';

const cpu = new CpuBackend();

test('webgpu conv1dSilu: with and without state, T below and above K-1, the decoding kernel (T ≤ 8) and the general pair', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  const rng = new Rng(11);
  for (const [B, T, C, K] of [[2, 1, 3, 4], [2, 2, 70, 4], [1, 37, 300, 4], [3, 5, 9, 2], [2, 6, 5, 1], [2, 1, 300, 4], [1, 8, 300, 4], [2, 9, 33, 4]]) {
    const [gx, cx] = twin(be, [B, T, C], rand(rng, [B, T, C], -3, 3));
    const [gw, cw] = twin(be, [C, K], rand(rng, [C, K]));
    const [gb, cb] = twin(be, [C], rand(rng, [C]));
    const [gs, cs] = twin(be, [B, C, K - 1], rand(rng, [B, C, K - 1], -3, 3));
    for (const withState of [false, true]) {
      const what = `conv B=${B} T=${T} C=${C} K=${K} state=${withState}`;
      const g = be.conv1dSilu(gx, gw, gb, withState ? gs : null), c = cpu.conv1dSilu(cx, cw, cb, withState ? cs : null);
      await assertParity(`${what}: y`, be, g.y, cpu, c.y);
      await assertParity(`${what}: state`, be, g.state, cpu, c.state);
    }
  }
});

test('webgpu selectiveScan: with and without h0, several N, chained calls', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  const rng = new Rng(12);
  for (const [B, T, C, N] of [[2, 1, 5, 16], [2, 9, 67, 16], [1, 40, 70, 4], [3, 7, 3, 1]]) {
    // dt + bias spans roughly -6 … 24: softplus's log1p region, its middle and its identity past 20
    const { g: [gu, gdt, gbias, ga, gbm, gcm, gd, gz], c: [cu, cdt, cbias, ca, cbm, ccm, cd, cz], gh, ch } =
      scanInputs(be, rng, B, T, C, N, { dt: [-5, 5], dtSpikes: true, a: [0.5, 16] });
    for (const withH0 of [false, true]) {
      const what = `scan B=${B} T=${T} C=${C} N=${N} h0=${withH0}`;
      const g = be.selectiveScan(gu, gdt, gbias, ga, gbm, gcm, gd, gz, withH0 ? gh : null);
      const c = cpu.selectiveScan(cu, cdt, cbias, ca, cbm, ccm, cd, cz, withH0 ? ch : null);
      await assertParity(`${what}: y`, be, g.y, cpu, c.y);
      await assertParity(`${what}: h`, be, g.h, cpu, c.h);
      // the returned state continues the scan exactly like the reference's
      const g2 = be.selectiveScan(gu, gdt, gbias, ga, gbm, gcm, gd, gz, g.h);
      const c2 = cpu.selectiveScan(cu, cdt, cbias, ca, cbm, ccm, cd, cz, c.h);
      await assertParity(`${what}: chained y`, be, g2.y, cpu, c2.y);
      if (!withH0) continue;
      // a donated h0 becomes the new state's buffer: no copy, the same results; a kept h0 is untouched
      const before = await be.read(gh);
      const h0 = be.tensor(before, [B, C, N]), copies: number = be.ctx.counts.copies;
      const d = be.selectiveScan(gu, gdt, gbias, ga, gbm, gcm, gd, gz, h0, { donateH0: true });
      assert.equal(be.ctx.counts.copies, copies, `${what}: a donated h0 is not copied`);
      await assertParity(`${what}: donated h0, y`, be, d.y, cpu, c.y);
      await assertParity(`${what}: donated h0, h`, be, d.h, cpu, c.h);
      be.dispose(h0);
      assert.deepEqual(await be.read(d.h), await be.read(g.h), 'the state outlives the donated tensor');
      assert.deepEqual(await be.read(gh), before, 'an h0 not donated keeps its values');
    }
  }
});

test('webgpu selectiveScan chunked (chunks scanned in parallel, their start states carried and added after): equals the CPU across chunk edges, with and without h0', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  const saved = { ...scanShape };
  Object.assign(scanShape, { invocations: 1 << 20, minChunk: 4 }); // chunk these small scans
  try {
    const rng = new Rng(14);
    for (const [B, T, C, N] of [[1, 9, 5, 16], [2, 40, 7, 4], [1, 131, 3, 16], [3, 23, 2, 1]]) {
      assert.ok(scanChunks(B, T, C, N, be.ctx.maxBinding) > 1, `B=${B} T=${T} C=${C} is chunked`);
      // slower decays than above (A down to -0.05), so that start states reach far into their chunks
      const { g: ins, c: cins, gh, ch } = scanInputs(be, rng, B, T, C, N, { dt: [-5, 3], dtSpikes: false, a: [0.05, 4] });
      for (const withH0 of [false, true]) {
        const what = `chunked scan B=${B} T=${T} C=${C} N=${N} (${scanChunks(B, T, C, N, be.ctx.maxBinding)} chunks) h0=${withH0}`;
        const g = be.selectiveScan(...ins, withH0 ? gh : null);
        const c = cpu.selectiveScan(...cins, withH0 ? ch : null);
        await assertParity(`${what}: y`, be, g.y, cpu, c.y);
        await assertParity(`${what}: h`, be, g.h, cpu, c.h);
      }
    }
  } finally {
    Object.assign(scanShape, saved);
  }
});

test('webgpu selectiveScanProjected: Δ projected inside the scan (one dispatch, T ≤ 8) with f32 and packed f16 weights, composed past 8 tokens, equals the CPU', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  const rng = new Rng(17);
  for (const [B, T, C, N, R] of [[1, 1, 70, 16, 128], [3, 2, 9, 5, 4], [2, 1, 33, 16, 12], [1, 9, 20, 4, 8], [1, 1, 20, 16, 44], [1, 3, 40, 16, 128], [2, 2, 7, 80, 20]]) {
    // 40 channels: teams of 16 lanes, 16 a workgroup, the last workgroup part empty; N = 80: lanes of 64 holding two states or one
    const [gu, cu] = twin(be, [B, T, C], rand(rng, [B, T, C], -2, 2));
    const [gz, cz] = twin(be, [B, T, C], rand(rng, [B, T, C], -2, 2));
    const [gdbc, cdbc] = twin(be, [B * T, R + 2 * N], rand(rng, [B * T, R + 2 * N], -1, 1));
    const wdt = rand(rng, [C, R], -0.5, 0.5);
    const [gw, cw] = twin(be, [C, R], wdt);
    const [gbias, cbias] = twin(be, [C], rand(rng, [C], -1, 1));
    const [ga, ca] = twin(be, [C, N], rand(rng, [C, N], -1, 1.5));
    const [gd, cd] = twin(be, [C], rand(rng, [C]));
    const [gh, ch] = twin(be, [B, C, N], rand(rng, [B, C, N]));
    const want = cpu.selectiveScanProjected(cu, cdbc, cw, cbias, ca, cd, cz, ch);
    const weights: [string, Tensor][] = [['f32', gw]];
    if (be.f16Caps.shaderF16) weights.push(['packed f16', be.compactWeight(gw)]);
    for (const [kind, w] of weights) {
      const what = `${kind} B=${B} T=${T} C=${C} N=${N} R=${R}`;
      const before: number = be.ctx.counts.dispatches;
      const got = be.selectiveScanProjected(gu, gdbc, w, gbias, ga, gd, gz, gh);
      if (T <= 8) assert.equal(be.ctx.counts.dispatches - before, 1, `${what}: one dispatch`);
      // f16 weights take δ and W_dt as halves, as the gemv does
      const tol = kind === 'f32' ? undefined : 3e-3;
      await assertParity(`${what}: y`, be, got.y, cpu, want.y, tol);
      await assertParity(`${what}: h`, be, got.h, cpu, want.h, tol);
    }
  }
  assert.throws(() => be.selectiveScanProjected(be.zeros([1, 1, 4]), be.zeros([1, 9]), be.zeros([4, 2]), be.zeros([4]), be.zeros([4, 3]), be.zeros([4]), be.zeros([1, 1, 4]), null),
    /selectiveScanProjected: dbc has shape \[1, 9\], expected \[1, 8\]/);
});

test('scanChunks: chunks where the channels underfill the GPU, at most maxChunk steps each, within the scratch limit', () => {
  assert.equal(scanChunks(1, 4096, 3072, 16, 2 ** 31), 43, "samba-421m's training scan: 43 chunks of 96");
  assert.equal(scanChunks(1, 16384, 4096, 16, 2 ** 31), 128, 'a 16K prefill pass: 128 chunks of 128');
  assert.equal(scanChunks(1, 8, 4096, 16, 2 ** 31), 1, 'decoding: too short to chunk');
  assert.equal(scanChunks(64, 4096, 4096, 16, 2 ** 31), 1, 'enough channels already');
  assert.equal(scanChunks(16, 16384, 4096, 16, 2 ** 31), 1, 'the scratch limit would force chunks over maxChunk');
  assert.equal(scanChunks(1, 16384, 4096, 16, 1 << 20), 1, 'nor may one binding');
});
