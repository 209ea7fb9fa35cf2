// matmul on WebGPU equals the CPU reference at sizes on both sides of every tile edge (64) and of
// the gemv/tiled switch (M = 4 / 5), including decode-sized M = 1 and thousands of rows.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CpuBackend } from '../../../src/backends/cpu/cpu.js';
import { Rng, randomArray } from '../../../src/core/random.js';
import { assertParity, gpuBackendOrSkip } from '../../helpers/gpu.js';

const cpu = new CpuBackend();
const SIZES = [1, 7, 63, 64, 65, 130, 257];

test('webgpu matmul: every M, N, K in {1, 7, 63, 64, 65, 130, 257} (and M = 2 … 5) equals the CPU', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  const rng = new Rng(1);
  for (const K of SIZES) {
    for (const N of SIZES) {
      const w = randomArray(rng, N * K);
      const gw = be.tensor(w, [N, K]), cw = cpu.tensor(w, [N, K]);
      for (const M of [...SIZES, 2, 3, 4, 5]) {
        const x = randomArray(rng, M * K);
        await be.tidy(() => assertParity(`M=${M} N=${N} K=${K}`,
          be, be.matmul(be.tensor(x, [M, K]), gw), cpu, cpu.matmul(cpu.tensor(x, [M, K]), cw)));
      }
      be.dispose(gw);
    }
  }
});

test('webgpu matmul: thousands of rows, a long K, and K = 0', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  const rng = new Rng(2);
  for (const [M, N, K] of [[2000, 70, 33], [3, 5, 3000], [70, 3, 3000], [3, 5, 0]]) {
    const x = randomArray(rng, M * K), w = randomArray(rng, N * K);
    await assertParity(`M=${M} N=${N} K=${K}`,
      be, be.matmul(be.tensor(x, [M, K]), be.tensor(w, [N, K])), cpu, cpu.matmul(cpu.tensor(x, [M, K]), cpu.tensor(w, [N, K])));
  }
});

test('webgpu matmul: mismatched shapes throw the CPU message', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  assert.throws(() => be.matmul(be.zeros([2, 3]), be.zeros([4, 5])), /matmul: x \[2, 3\] and w \[4, 5\] do not fit/);
});
