// GpuContext's read-backs: small reads reuse a few mappable buffers (creating one per read cost
// more than a decoded token's read on an H100), and reads in flight at once, large reads and odd
// sizes still return exactly what was written.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Tensor } from '../../../src/core/backend.js';
import type { GpuTensor } from '../../../src/backends/webgpu/tensor.js';
import { gpuBackendOrSkip } from '../../helpers/gpu.js';

/** Counts the mappable buffers the context creates from now on. */
function countMappable(device: GPUDevice): { count: () => number; restore: () => void } {
  const create = device.createBuffer.bind(device);
  let n = 0;
  device.createBuffer = (d: GPUBufferDescriptor) => {
    if (d.usage & GPUBufferUsage.MAP_READ) n++;
    return create(d);
  };
  return { count: () => n, restore: () => { device.createBuffer = create; } };
}

test('webgpu small reads reuse their mappable buffers and return what was written', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  const counter = countMappable(be.device);
  try {
    for (let i = 0; i < 20; i++) {
      const x = be.tensor(Float32Array.from({ length: 3 }, (_, j) => i * 10 + j), [3]);
      assert.deepEqual([...await be.read(x)], [i * 10, i * 10 + 1, i * 10 + 2]);
      be.dispose(x);
    }
    assert.ok(counter.count() <= 1, `20 reads one after another created ${counter.count()} mappable buffers`);
  } finally {
    counter.restore();
  }
});

test('webgpu reads in flight together, large reads and odd byte counts', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  // more reads at once than buffers kept for reuse: each still gets its own data
  const xs = Array.from({ length: 9 }, (_, i) => be.tensor(Float32Array.from({ length: 5 }, (_, j) => i - j), [5]));
  const got = await Promise.all(xs.map((x) => be.read(x)));
  got.forEach((y, i) => assert.deepEqual([...y], [0, 1, 2, 3, 4].map((j) => i - j)));
  // a read larger than the reused buffers goes through a buffer of its own
  const n = 40_000, big = Float32Array.from({ length: n }, (_, i) => Math.sin(i));
  const y = await be.read(be.tensor(big, [n]));
  assert.deepEqual(y, big);
  // 6 bytes: rounded up for the copy, cut back for the caller
  const src = be.tensor(Float32Array.of(1.5, -2.25, 3), [3]) as GpuTensor;
  const bytes = new Uint8Array(await be.ctx.readBytes(src.buf!, 6));
  assert.equal(bytes.length, 6);
  assert.deepEqual(bytes, new Uint8Array(Float32Array.of(1.5, -2.25).buffer).subarray(0, 6));
  // and the reused buffers still read correctly afterwards
  assert.deepEqual([...await be.read(xs[3])], [3, 2, 1, 0, -1]);
});

test('webgpu inOneSubmit: a step of many dispatches goes to the device in one submit, nested too, with the same results', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  const x = be.tensor(Float32Array.from({ length: 300 }, (_, i) => i / 7), [300]);
  const chain = () => { let y = x; for (let i = 0; i < 100; i++) y = be.add(y, x); return y; }; // 100 dispatches
  await be.flush();
  let s0 = be.ctx.counts.submits;
  const apart = await be.read(be.tidy(chain));
  const submitsApart = be.ctx.counts.submits - s0;
  assert.ok(submitsApart >= 3, `every 32 dispatches by default: ${submitsApart} submits (and the read)`);
  s0 = be.ctx.counts.submits;
  const held = be.tidy(() => be.inOneSubmit(() => be.inOneSubmit(chain)));
  assert.equal(be.ctx.counts.submits - s0, 1, 'one submit, at the end of the outer call');
  assert.deepEqual(await be.read(held), apart);
  // an error inside still ends the hold
  assert.throws(() => be.inOneSubmit(() => { be.add(x, x); throw new Error('boom'); }), /boom/);
  s0 = be.ctx.counts.submits;
  be.tidy(chain);
  assert.ok(be.ctx.counts.submits - s0 >= 3, 'submits every 32 dispatches again');
});

test('webgpu bind groups: equal bindings reuse one; other buffers, offsets or sizes get their own, with right results', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  const create = be.device.createBindGroup.bind(be.device);
  let made = 0;
  be.device.createBindGroup = (d: GPUBindGroupDescriptor) => { made++; return create(d); };
  try {
    const N = 1024, row = Float32Array.from({ length: N }, (_, i) => i);
    const x = be.tensor(row, [1, N]), other = be.tensor(row.map((v) => -v), [1, N]);
    // views of one buffer at offsets 0 and 256 floats (one-row column slices), of two widths, and
    // another buffer; each sum is read and freed before the next, so the pool hands every one of
    // them the same output buffer and only the inputs tell their bind groups apart
    const cases: [() => Tensor, number[]][] = [
      [() => be.add(be.sliceCols(x, 0, 256), be.sliceCols(x, 256, 256)), Array.from({ length: 256 }, (_, i) => 2 * i + 256)],
      [() => be.add(be.sliceCols(x, 256, 256), be.sliceCols(x, 512, 256)), Array.from({ length: 256 }, (_, i) => 2 * i + 768)],
      [() => be.add(be.sliceCols(x, 0, 512), be.sliceCols(x, 512, 512)), Array.from({ length: 512 }, (_, i) => 2 * i + 512)],
      [() => be.add(be.sliceCols(other, 0, 256), be.sliceCols(x, 256, 256)), Array.from({ length: 256 }, () => 256)],
    ];
    const round = async (what: string) => {
      for (const [i, [sum, expect]] of cases.entries()) {
        const s: Tensor = be.tidy(sum);
        assert.deepEqual(Array.from(await be.read(s)), expect, `sum ${i}${what}`);
        be.dispose(s);
      }
    };
    await round('');
    const before = made;
    await round(' again');
    assert.equal(made - before, 0, 'the second round made no bind group');
    assert.ok(before >= cases.length, `each distinct binding set has its own bind group (${before} made)`);
  } finally {
    be.device.createBindGroup = create;
  }
});
