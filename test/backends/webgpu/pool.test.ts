// The buffer pool's bookkeeping, on a stand-in device that only counts buffers: buckets, reuse, and
// which free buffers a trim keeps (the peak working set) and destroys.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BufferPool, bucketSize } from '../../../src/backends/webgpu/pool.js';
import { gpuBackendOrSkip } from '../../helpers/gpu.js';

function fakeDevice() {
  const live = new Set<{ size: number }>();
  const device = {
    createBuffer: ({ size }: { size: number }) => {
      const b = { size, destroy: () => { live.delete(b); } };
      live.add(b);
      return b;
    },
  } as unknown as GPUDevice;
  return { device, live };
}

test('bucket sizes waste at most a quarter and reused buffers come from the same bucket', () => {
  for (const n of [1, 256, 257, 1000, 4097, 3 << 20, 123456789]) {
    const b = bucketSize(n);
    assert.ok(b >= n && (b <= 256 || b < n * 1.25 + 4), `${n} → ${b}`);
  }
  const { device, live } = fakeDevice();
  const pool = new BufferPool(device, 0, 1 << 30, 0);
  const a = pool.acquire(1000);
  pool.release(a);
  assert.equal(pool.acquire(1010), a, 'same bucket: the freed buffer is handed out again');
  assert.notEqual(pool.acquire(1000), a);
  assert.equal(live.size, 2);
});

test('free buffers are handed out lowest id first, so a repeated sequence of ops gets the same buffers', () => {
  const { device } = fakeDevice();
  const pool = new BufferPool(device, 0, 1 << 30, 0);
  const bufs = Array.from({ length: 4 }, () => pool.acquire(4096));
  // released in a scrambled order, they come back in id order
  for (const i of [2, 0, 3, 1]) pool.release(bufs[i]);
  assert.deepEqual(Array.from({ length: 4 }, () => pool.acquire(4096).id), bufs.map((b) => b.id));
  // a "decoding step" that holds one buffer across steps and swaps another: the same ids every step
  for (const b of bufs) pool.release(b);
  let carried = pool.acquire(4096);
  const ids: number[][] = [];
  for (let s = 0; s < 5; s++) {
    const t1 = pool.acquire(4096), next = pool.acquire(4096);
    pool.release(t1); pool.release(carried);
    carried = next;
    ids.push([t1.id, next.id]);
  }
  assert.deepEqual(ids[3], ids[1], `steps take the same buffers in a steady cycle: ${JSON.stringify(ids)}`);
  assert.deepEqual(ids[4], ids[2]);
});

test('a trim keeps free buffers up to the peak working set, destroys the rest and names them', () => {
  const { device, live } = fakeDevice();
  let gone: number[] = [];
  const pool = new BufferPool(device, 0, 1 << 30, 1024, (ids) => { gone = [...ids]; });
  // a "step": 8 buffers of 64 KiB live at once, then all freed
  const step = () => Array.from({ length: 8 }, () => pool.acquire(65536));
  const first = step();
  assert.equal(pool.peakLiveBytes, 8 * 65536);
  for (const b of first) pool.release(b);
  pool.trim();
  assert.equal(live.size, 8, 'within the peak working set: nothing destroyed');
  assert.deepEqual(gone, []);
  const second = step();
  assert.equal(live.size, 8, 'the next step allocates nothing');
  assert.deepEqual(new Set(second), new Set(first));
  // a smaller working set: the surplus of a new bucket size is destroyed beyond the peak
  for (const b of second) pool.release(b);
  const other = Array.from({ length: 4 }, () => pool.acquire(3000));
  for (const b of other) pool.release(b);
  pool.trim();
  assert.ok(pool.pooledBytes <= Math.max(1024, pool.peakLiveBytes - pool.liveBytes));
  assert.ok(gone.length > 0 && gone.every((id) => first.some((b) => b.id === id)), 'largest first, and their ids reported');
  pool.releaseCached();
  assert.equal(live.size, 0, 'releaseCached destroys every free buffer');
  assert.equal(pool.pooledBytes, 0);
  assert.equal(pool.peakLiveBytes, 0);
});

test('webgpu keeps computing right after the pool gave its free buffers back', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  const a = be.tensor(Float32Array.from({ length: 4096 }, (_, i) => i), [4096]);
  const one = be.tensor(new Float32Array(4096).fill(1), [4096]);
  assert.equal((await be.read(be.add(a, one)))[4095], 4096);
  be.ctx.releaseCached(); // destroys the freed output buffer and forgets the bind groups naming it
  const b = be.tensor(new Float32Array(4096).fill(2), [4096]);
  const c = be.add(a, b), d = be.add(c, one);
  assert.equal((await be.read(d))[10], 13);
});
