// Pointwise, per-row and data-movement ops on WebGPU equal the CPU reference.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CpuBackend } from '../../../src/backends/cpu/cpu.js';
import { type Backend, type Tensor, numel } from '../../../src/core/backend.js';
import { Rng, randomArray } from '../../../src/core/random.js';
import { assertParity, gpuBackendOrSkip } from '../../helpers/gpu.js';

const cpu = new CpuBackend();

/** The same random values on both backends. */
function twin(be: Backend, rng: Rng, shape: number[], scale = 1): [Tensor, Tensor] {
  const data = randomArray(rng, numel(shape), scale);
  return [be.tensor(data, shape), cpu.tensor(data.slice(), shape)];
}

test('webgpu add and siluMul, across workgroup edges and at large |x|', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  const rng = new Rng(3);
  for (const shape of [[1], [255], [256], [257], [3, 1000], [2, 3, 70]]) {
    // ±40 reaches where a naive silu overflows exp
    const [ga, ca] = twin(be, rng, shape, 40), [gb, cb] = twin(be, rng, shape);
    await assertParity(`add ${shape}`, be, be.add(ga, gb), cpu, cpu.add(ca, cb));
    await assertParity(`siluMul ${shape}`, be, be.siluMul(ga, gb), cpu, cpu.siluMul(ca, cb));
  }
  assert.throws(() => be.add(be.zeros([2, 3]), be.zeros([3, 2])), /add: b has shape \[3, 2\], expected \[2, 3\]/);
});

test('webgpu rmsNorm: row lengths around the workgroup size, 2D and 3D', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  const rng = new Rng(4);
  for (const shape of [[1, 1], [5, 7], [3, 256], [4, 257], [2, 1000], [2, 3, 33]]) {
    const D = shape[shape.length - 1];
    const [gx, cx] = twin(be, rng, shape, 3), [gg, cg] = twin(be, rng, [D]);
    await assertParity(`rmsNorm ${shape}`, be, be.rmsNorm(gx, gg, 1e-5), cpu, cpu.rmsNorm(cx, cg, 1e-5));
  }
  // eps matters when the row is small
  const [gx, cx] = twin(be, rng, [2, 8], 1e-3), [gg, cg] = twin(be, rng, [8]);
  await assertParity('rmsNorm eps', be, be.rmsNorm(gx, gg, 1e-5), cpu, cpu.rmsNorm(cx, cg, 1e-5));
});

test('webgpu rope: several heads and head sizes', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  const rng = new Rng(5);
  for (const [M, H, hs] of [[1, 1, 2], [7, 3, 8], [33, 4, 64], [5, 2, 130]]) {
    const [gx, cx] = twin(be, rng, [M, H * hs]);
    const [gc, cc] = twin(be, rng, [M, hs / 2]), [gs, cs] = twin(be, rng, [M, hs / 2]);
    await assertParity(`rope M=${M} H=${H} hs=${hs}`, be, be.rope(gx, gc, gs, H), cpu, cpu.rope(cx, cc, cs, H));
  }
});

test('webgpu embedding, sliceCols, gatherRows, concat, resizeRows, reshape', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  const rng = new Rng(6);

  const [gt, ct] = twin(be, rng, [300, 37]);
  const ids = Int32Array.from({ length: 50 }, () => rng.int(300));
  ids[0] = 0; ids[1] = 299; ids[2] = ids[3];
  await assertParity('embedding', be, be.embedding(gt, be.ids(ids, [50])), cpu, cpu.embedding(ct, cpu.ids(ids, [50])));
  assert.throws(() => be.embedding(gt, be.ids(Int32Array.of(3, 300), [2])), /token id 300 is outside the vocabulary \[0, 300\)/);
  // ids as exact f32 values, as sampleRows leaves them on the device: the same rows
  const fids = Float32Array.from(ids);
  await assertParity('embedding (f32 ids)', be, be.embedding(gt, be.tensor(fids, [50])), cpu, cpu.embedding(ct, cpu.ids(ids, [50])));
  await assertParity('embedding (f32 ids, cpu)', be, be.embedding(gt, be.ids(ids, [50])), cpu, cpu.embedding(ct, cpu.tensor(fids, [50])));
  assert.throws(() => cpu.embedding(ct, cpu.tensor(Float32Array.of(2.5), [1])), /id 2.5 is not an integer/);

  const [gx, cx] = twin(be, rng, [13, 70]);
  for (const [start, width] of [[0, 70], [0, 1], [69, 1], [5, 33], [10, 0]]) {
    await assertParity(`sliceCols ${start}+${width}`, be, be.sliceCols(gx, start, width), cpu, cpu.sliceCols(cx, start, width));
  }
  assert.throws(() => be.sliceCols(gx, 60, 11), /sliceCols: columns 60..71 outside 70/);

  const rows = Int32Array.of(12, 0, 0, 5, 12, 7);
  await assertParity('gatherRows', be, be.gatherRows(gx, rows), cpu, cpu.gatherRows(cx, rows));
  await assertParity('gatherRows none', be, be.gatherRows(gx, new Int32Array(0)), cpu, cpu.gatherRows(cx, new Int32Array(0)));
  assert.throws(() => be.gatherRows(gx, Int32Array.of(13)), /gatherRows: row 13 outside 13/);

  const parts = [[1, 3, 5], [4, 3, 5], [0, 3, 5], [2, 3, 5]].map((s) => twin(be, rng, s));
  await assertParity('concat', be, be.concat(parts.map((p) => p[0])), cpu, cpu.concat(parts.map((p) => p[1])));

  const [gc, cc] = twin(be, rng, [3, 6, 10]);
  for (const newC of [6, 2, 9, 0]) {
    await assertParity(`resizeRows 6→${newC}`, be, be.resizeRows(gc, newC), cpu, cpu.resizeRows(cc, newC));
  }

  // a view feeds ops like its base and survives the base's disposal
  const view = be.reshape(gx, [13 * 70]);
  await assertParity('reshape', be, view, cpu, cpu.reshape(cx, [13 * 70]));
  be.dispose(gx);
  await assertParity('reshape after base disposed', be, be.add(view, view), cpu, cpu.add(cpu.reshape(cx, [910]), cpu.reshape(cx, [910])));
  assert.throws(() => be.reshape(view, [7]), /reshape: \[910\] has 910 values, \[7\] needs 7/);
});
