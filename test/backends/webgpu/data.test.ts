// Tensor lifetime, batching and dispatch plumbing of the WebGPU backend: uploads, reads, the buffer
// pool, tidy/keep, refcounted views, the upload-after-reuse hazard, submission limits, 2D grids and
// the binding-size error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CpuBackend } from '../../../src/backends/cpu/cpu.js';
import { GpuTensor, WebGpuBackend } from '../../../src/backends/webgpu/backend.js';
import type { KvCache, Tensor } from '../../../src/core/backend.js';
import { Rng, randomArray } from '../../../src/core/random.js';
import { Params } from '../../../src/backends/webgpu/context.js';
import { assertParity, gpuBackendOrSkip } from '../../helpers/gpu.js';

const cpu = new CpuBackend();

test('webgpu tensor, ids and zeros read back exactly', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  const data = randomArray(new Rng(20), 1000, 1e6);
  assert.deepEqual(await be.read(be.tensor(data, [10, 100])), data);
  assert.deepEqual(await be.read(be.ids(Int32Array.of(-3, 0, 7, 1 << 20), [2, 2])), Float32Array.of(-3, 0, 7, 1 << 20));
  assert.deepEqual(await be.read(be.tensor(new Float32Array(0), [0, 4])), new Float32Array(0));
  // a pooled buffer comes back dirty; zeros must still be zeros
  const dirty = be.tensor(new Float32Array(777).fill(5), [777]);
  await be.read(dirty);
  be.dispose(dirty);
  assert.deepEqual(await be.read(be.zeros([777])), new Float32Array(777));
  assert.throws(() => be.tensor(new Float32Array(5), [2, 3]), /tensor data has 5 values, shape \[2, 3\] needs 6/);
});

test('webgpu tidy frees everything but results and kept tensors; views are refcounted', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  await be.flush();
  const base = be.ctx.pool.liveBytes;
  let kept: Tensor | null = null;
  const out = be.tidy(() => {
    const a = be.tensor(Float32Array.of(1, 2, 3, 4), [2, 2]);
    const b = be.add(a, a);
    kept = be.keep(be.add(b, a));
    be.add(b, b); // garbage
    return { nested: [be.reshape(be.siluMul(a, b), [4])] };
  });
  assert.equal(be.ctx.pool.liveBytes - base, 2 * 256, 'only the result and the kept tensor stay live');
  assert.deepEqual(await be.read(kept!), Float32Array.of(3, 6, 9, 12));
  assert.ok((await be.read(out.nested[0])).every((v, i) => Math.abs(v - [1, 2, 3, 4][i] * 2 * [1, 2, 3, 4][i] / (1 + Math.exp(-[1, 2, 3, 4][i]))) < 1e-5));
  be.dispose(kept!);
  be.dispose(out.nested[0]);
  be.dispose(out.nested[0]); // twice is harmless
  assert.equal(be.ctx.pool.liveBytes, base);

  // a view keeps the storage alive after its base goes, and frees it with the last view
  const x = be.tensor(Float32Array.of(1, 2, 3, 4, 5, 6), [2, 3]);
  const v = be.reshape(x, [3, 2]);
  be.dispose(x);
  assert.equal(be.ctx.pool.liveBytes - base, 256);
  assert.deepEqual(await be.read(v), Float32Array.of(1, 2, 3, 4, 5, 6));
  assert.throws(() => be.add(x, x), /add: tensor \[2, 3\] was disposed/);
  be.dispose(v);
  assert.equal(be.ctx.pool.liveBytes, base);
});

test('webgpu: an upload into a reused buffer does not overtake queued commands that read it', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  const a = be.tensor(Float32Array.of(1, 2, 3), [3]);
  await be.flush();
  const sum = be.add(a, a); // queued, not submitted: reads a's buffer later
  be.dispose(a);
  const b = be.tensor(Float32Array.of(100, 200, 300), [3]); // gets a's buffer back from the pool
  assert.deepEqual(await be.read(sum), Float32Array.of(2, 4, 6));
  assert.deepEqual(await be.read(b), Float32Array.of(100, 200, 300));
});

test('webgpu: long op chains submit in several batches and stay exact', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  const rng = new Rng(21);
  const data = randomArray(rng, 100), one = randomArray(rng, 100);
  const { g, c } = be.tidy(() => {
    let g = be.tensor(data, [100]), c: Tensor = cpu.tensor(data, [100]);
    const go = be.tensor(one, [100]), co = cpu.tensor(one, [100]);
    for (let i = 0; i < 700; i++) { g = be.add(g, go); c = cpu.add(c, co); } // > 2 × 256 dispatches
    return { g, c };
  });
  await assertParity('700 chained adds', be, g, cpu, c, 1e-6);
  await be.flush();
});

test('webgpu: host int arrays past the arena (own buffers) and past its space (mid-batch submits)', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  const rng = new Rng(24);
  const data = randomArray(rng, 50 * 3);
  const gx = be.tensor(data, [50, 3]), cx = cpu.tensor(data, [50, 3]);
  const pairs: [Tensor, Tensor][] = [];
  // 30 × 64 KB of row lists overflow the 1 MiB arena; 20000 rows (80 KB) get a buffer of their own
  for (const n of [...Array(30).fill(16000), 20000]) {
    const rows = Int32Array.from({ length: n }, () => rng.int(50));
    pairs.push([be.gatherRows(gx, rows), cpu.gatherRows(cx, rows)]);
  }
  for (const [i, [g, c]] of pairs.entries()) await assertParity(`gatherRows #${i}`, be, g, cpu, c, 0);
});

/**
 * Waits until the queue has drained and the device has reported at least one error and then no
 * more for a few rounds (bounded: the caller asserts what arrived).
 */
async function reportsSettled(device: GPUDevice, reports: string[], rounds = 3): Promise<void> {
  const deadline = Date.now() + 10_000;
  let seen = 0, quiet = 0;
  while (quiet < rounds && Date.now() < deadline) {
    await device.queue.onSubmittedWorkDone();
    await new Promise((r) => setTimeout(r, 10));
    if (reports.length > 0 && reports.length === seen) quiet++;
    else { quiet = 0; seen = reports.length; }
  }
}

test('webgpu: an asynchronous device error is thrown by the next flush, and work goes on after it', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  await assert.doesNotReject(be.flush(), 'no device error is left over from earlier tests');
  // The device's own reports, to hold what the backend throws against. When and how they come is
  // the implementation's affair: Dawn on lavapipe calls back inside the failing call, but WebGPU
  // lets a report arrive later (on a fast GPU the queue can drain, and onSubmittedWorkDone resolve,
  // before it is delivered), and one failure brings several reports (the shader, then the
  // pipeline, the encoder and the submit that used it) in Dawn's wording, whose first line need
  // not name WGSL. So the test waits for the reports and compares with the first one.
  const reports: string[] = [];
  const onReport = (e: Event) => { reports.push((e as GPUUncapturedErrorEvent).error.message); };
  be.device.addEventListener('uncapturederror', onReport);
  try {
    const out = be.zeros([4]) as GpuTensor;
    // Dawn also logs the WGSL error to stderr; the point here is that the backend reports it
    const broken = { key: 'test_broken_wgsl', bindings: ['write'] as const, code: () => 'not wgsl' };
    be.ctx.dispatch(broken, new Params().u32(1), [{ buf: out.buf!, size: 16 }], 1);
    be.ctx.submit();
    await reportsSettled(be.device, reports);
    assert.ok(reports.length > 0, 'the device reported the broken shader');
    assert.match(reports[0], /WGSL|test_broken_wgsl/, 'the first report is the broken shader\'s');
    // the next flush throws the first report, as it was; the same batch's follow-on reports are not
    // thrown again later
    await assert.rejects(be.flush(), (e: Error) => e.message === `webgpu: ${reports[0]}`);
    // the failed batch is lost as a whole (zeros' clear included); later batches run
    const a = be.tensor(Float32Array.of(1, 2, 3, 4), [4]);
    assert.deepEqual(await be.read(be.add(a, a)), Float32Array.of(2, 4, 6, 8));
    await be.flush();
  } finally {
    be.device.removeEventListener('uncapturederror', onReport);
  }
});

test('webgpu: a tensor beyond the device binding limit fails with a clear message', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  const n = be.device.limits.maxStorageBufferBindingSize / 4 + 1;
  if (n * 4 > 2 ** 33) return t.skip('binding limit too large to exceed cheaply');
  assert.throws(() => be.zeros([n]), /tensor \[\d+\] needs .* MiB, more than this device can bind at once \(maxStorageBufferBindingSize = /);
});

test('webgpu: more than 65535 workgroups fold into a 2D grid', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  const n = 65536 * 256 + 300; // add runs 256 per workgroup
  const rng = new Rng(22);
  const a = randomArray(rng, n), b = randomArray(rng, n);
  const got = await be.read(be.add(be.tensor(a, [n]), be.tensor(b, [n])));
  for (let i = 0; i < n; i += 997) assert.equal(got[i], Math.fround(a[i] + b[i]), `element ${i}`);
  assert.equal(got[n - 1], Math.fround(a[n - 1] + b[n - 1]));
});

test('webgpu: every op is unchanged when its grid is folded (at most 8 workgroups per dimension)', async (t) => {
  const full = await gpuBackendOrSkip(t);
  if (!full) return;
  const be = new WebGpuBackend(full.device, { maxWorkgroupsPerDim: 8 });
  const rng = new Rng(23);
  const twin = (shape: number[], scale = 1): [Tensor, Tensor] => {
    const d = randomArray(rng, shape.reduce((a, b) => a * b, 1), scale);
    return [be.tensor(d, shape), cpu.tensor(d.slice(), shape)];
  };
  const same = (what: string, g: Tensor, c: Tensor) => assertParity(`folded ${what}`, be, g, cpu, c);

  // sizes keep every op between 9 and 64 workgroups
  const [gx, cx] = twin([60, 70]), [gw, cw] = twin([100, 70]), [gy, cy] = twin([300, 70]), [gw2, cw2] = twin([200, 70]);
  await same('matmul tiled', be.matmul(gy, gw2), cpu.matmul(cy, cw2));
  await same('matmul gemv', be.matmul(be.gatherRows(gx, Int32Array.of(3, 8)), gw), cpu.matmul(cpu.gatherRows(cx, Int32Array.of(3, 8)), cw));
  await same('add', be.add(gx, gx), cpu.add(cx, cx));
  await same('siluMul', be.siluMul(gx, gx), cpu.siluMul(cx, cx));
  const [gg, cg] = twin([70]);
  await same('rmsNorm', be.rmsNorm(gx, gg, 1e-5), cpu.rmsNorm(cx, cg, 1e-5));
  const [gc, cc] = twin([60, 5]), [gs, cs] = twin([60, 5]);
  await same('rope', be.rope(gx, gc, gs, 7), cpu.rope(cx, cc, cs, 7));
  const ids = Int32Array.from({ length: 40 }, () => rng.int(60));
  await same('embedding', be.embedding(gx, be.ids(ids, [40])), cpu.embedding(cx, cpu.ids(ids, [40])));
  await same('sliceCols', be.sliceCols(gx, 3, 40), cpu.sliceCols(cx, 3, 40));
  await same('gatherRows', be.gatherRows(gx, ids), cpu.gatherRows(cx, ids));
  // 60 rows: 64 workgroups on an 8 × 8 grid, 4 of them surplus, which must write nothing
  await same('sampleRows', be.sampleRows(gx, { temperature: 0 }), cpu.sampleRows(cx, { temperature: 0 }));

  const B = 2, T = 7, H = 4, Hkv = 2, hs = 8, C = 5;
  const [gq, cq] = twin([B, T, H * hs]), [gk, ck] = twin([B, T, Hkv * hs]), [gv, cv] = twin([B, T, Hkv * hs]);
  const [gkc, ckc] = twin([B, C, Hkv * hs]), [gvc, cvc] = twin([B, C, Hkv * hs]);
  const gCache: KvCache = { k: gkc, v: gvc, capacity: C }, cCache: KvCache = { k: ckc, v: cvc, capacity: C };
  const args = { nHeads: H, nKvHeads: Hkv, headDim: hs, window: C, pos0: Int32Array.of(7, 2) };
  await same('attention', be.attention(gq, gk, gv, gCache, args), cpu.attention(cq, ck, cv, cCache, args));
  be.writeKv(gCache, gk, gv, args.pos0);
  cpu.writeKv(cCache, ck, cv, args.pos0);
  await same('writeKv keys', gkc, ckc);
  await same('writeKv values', gvc, cvc);
  await same('resizeRows', be.resizeRows(gkc, 8), cpu.resizeRows(ckc, 8));

  const Cm = 300, N = 16;
  const [gu, cu] = twin([B, T, Cm]), [gcw, ccw] = twin([Cm, 4]), [gcb, ccb] = twin([Cm]), [gst, cst] = twin([B, Cm, 3]);
  const gconv = be.conv1dSilu(gu, gcw, gcb, gst), cconv = cpu.conv1dSilu(cu, ccw, ccb, cst);
  await same('conv1dSilu y', gconv.y, cconv.y);
  await same('conv1dSilu state', gconv.state, cconv.state);
  const [gbm, cbm] = twin([B, T, N]), [gcm, ccm] = twin([B, T, N]), [ga, ca] = twin([Cm, N]), [gh, ch] = twin([B, Cm, N]);
  const [gd, cd] = twin([Cm]), [gdb, cdb] = twin([Cm]);
  const gscan = be.selectiveScan(gu, gu, gdb, ga, gbm, gcm, gd, gconv.y, gh), cscan = cpu.selectiveScan(cu, cu, cdb, ca, cbm, ccm, cd, cconv.y, ch);
  await same('selectiveScan y', gscan.y, cscan.y);
  await same('selectiveScan h', gscan.h, cscan.h);
  be.destroy(); // frees its pool; the device belongs to the shared backend
});

test('webgpu sliceCols of one row is a view: no dispatch, right values, and it outlives its parent', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  const align = be.ctx.storageAlign / 4; // columns per alignment step
  const N = 3 * align + 5, row = Float32Array.from({ length: N }, (_, i) => i * 0.5 - 7);
  const x = be.tensor(row, [1, N]);
  const before = be.ctx.counts.dispatches;
  const v = be.sliceCols(x, align, align + 3);         // aligned start: a view
  const vv = be.sliceCols(v, align, 3);                // a view of a view: offset 2·align
  assert.equal(be.ctx.counts.dispatches, before, 'aligned one-row slices record no dispatch');
  const odd = be.sliceCols(x, 1, 4);                   // unaligned start: the kernel
  assert.equal(be.ctx.counts.dispatches, before + 1);
  be.dispose(x); // the views keep the storage alive
  assert.deepEqual(await be.read(v), row.slice(align, 2 * align + 3));
  assert.deepEqual(await be.read(vv), row.slice(2 * align, 2 * align + 3));
  assert.deepEqual(await be.read(odd), row.slice(1, 5));
  // views feed kernels (bound at their offset), copies (concat) and reshapes
  const sum = await be.read(be.add(vv, be.tensor(Float32Array.of(1, 2, 3), [1, 3])));
  assert.deepEqual(sum, Float32Array.from(row.slice(2 * align, 2 * align + 3), (a, i) => a + i + 1));
  assert.deepEqual(await be.read(be.concat([be.reshape(vv, [3, 1]), be.reshape(odd, [4, 1])])), Float32Array.from([...row.slice(2 * align, 2 * align + 3), ...row.slice(1, 5)]));
  // several rows are not contiguous: the kernel, whatever the alignment
  const m = be.tensor(Float32Array.from({ length: 2 * N }, (_, i) => i), [2, N]);
  const d0 = be.ctx.counts.dispatches;
  const s = be.sliceCols(m, align, 2);
  assert.equal(be.ctx.counts.dispatches, d0 + 1);
  assert.deepEqual(await be.read(s), Float32Array.of(align, align + 1, N + align, N + align + 1));
});

test('webgpu profile: every dispatch is timed and summed per kernel, and per grid on request', async (t) => {
  const shared = await gpuBackendOrSkip(t);
  if (!shared) return;
  await assert.rejects(shared.ctx.profile(), /does not profile/);
  const be = new WebGpuBackend(shared.ctx.device, { profile: true });
  const a = be.tensor(new Float32Array(1000).fill(1), [1000]), b = be.tensor(new Float32Array(1000).fill(2), [1000]);
  await be.flush();
  await be.ctx.profile(true); // start from here
  for (let i = 0; i < 3; i++) be.add(a, b);
  be.siluMul(be.tensor(new Float32Array(300).fill(1), [300]), be.tensor(new Float32Array(300).fill(1), [300]));
  const times = await be.ctx.profile();
  const add = times.find((k) => k.kernel === 'binary_add'), sm = times.find((k) => k.kernel === 'binary_silu_mul');
  assert.equal(add?.dispatches, 3);
  assert.equal(sm?.dispatches, 1);
  assert.ok(times.every((k) => Number.isFinite(k.ms) && k.ms >= 0));
  const byGrid = await be.ctx.profile(false, true);
  assert.deepEqual(byGrid.map((k) => k.kernel).sort(), ['binary_add ×4', 'binary_silu_mul ×2']);
  be.destroy();
});

test('webgpu profile by passes: a held submit of many dispatches is one timed pass, and the results are unchanged', async (t) => {
  const shared = await gpuBackendOrSkip(t);
  if (!shared) return;
  const be = new WebGpuBackend(shared.ctx.device, { profile: 'passes' });
  assert.equal(be.ctx.profiling, true);
  assert.equal(shared.ctx.profiling, false);
  const a = be.tensor(new Float32Array(1000).fill(1), [1000]);
  await be.flush();
  await be.ctx.profile(true);
  const s0 = be.ctx.counts.submits, p0 = be.ctx.counts.passes;
  // more dispatches than a submit holds by default: inOneSubmit keeps them in one pass
  let x = a;
  be.inOneSubmit(() => { for (let i = 0; i < 40; i++) x = be.add(x, a); });
  assert.equal(be.ctx.counts.submits - s0, 1);
  assert.equal(be.ctx.counts.passes - p0, 1);
  const times = await be.ctx.profile();
  assert.equal(times.length, 1);
  assert.equal(times[0].kernel, 'pass');
  assert.equal(times[0].dispatches, 1);
  assert.ok(Number.isFinite(times[0].ms) && times[0].ms >= 0);
  assert.deepEqual(await be.read(x), new Float32Array(1000).fill(41));
  be.destroy();
});
