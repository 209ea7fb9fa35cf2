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

test('webgpu matmul with a norm and a residual: fused into the gemv (one dispatch) for M ≤ 4, composed above, equal to the CPU', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  const rng = new Rng(21);
  for (const K of [7, 64, 257]) {
    for (const N of [1, 9, 130]) {
      const w = randomArray(rng, N * K), g = randomArray(rng, K);
      for (const M of [1, 2, 4, 5, 70]) {
        // a residual stream far from unit scale: the norm must bring it back
        const x = randomArray(rng, M * K, 300), r = randomArray(rng, M * N);
        for (const ends of ['norm', 'residual', 'both'] as const) {
          await be.tidy(async () => {
            const norm = ends !== 'residual' ? { eps: 1e-5 } : null, res = ends !== 'norm';
            const before = be.ctx.counts.dispatches;
            const y = be.matmul(be.tensor(x, [M, K]), be.tensor(w, [N, K]), {
              norm: norm ? { g: be.tensor(g, [K]), eps: norm.eps } : undefined, residual: res ? be.tensor(r, [M, N]) : undefined,
            });
            if (M <= 4) assert.equal(be.ctx.counts.dispatches - before, 1, `M=${M}: norm and residual fused into one dispatch`);
            const ref = cpu.matmul(cpu.tensor(x, [M, K]), cpu.tensor(w, [N, K]), {
              norm: norm ? { g: cpu.tensor(g, [K]), eps: norm.eps } : undefined, residual: res ? cpu.tensor(r, [M, N]) : undefined,
            });
            await assertParity(`${ends} M=${M} N=${N} K=${K}`, be, y, cpu, ref);
          });
        }
      }
    }
  }
  assert.throws(() => be.matmul(be.zeros([2, 3]), be.zeros([4, 3]), { residual: be.zeros([2, 5]) }), /matmul: residual has shape \[2, 5\], expected \[2, 4\]/);
  assert.throws(() => be.matmul(be.zeros([2, 3]), be.zeros([4, 3]), { norm: { g: be.zeros([4]), eps: 1e-5 } }), /matmul: norm weight has shape \[4\], expected \[3\]/);
  assert.throws(() => cpu.matmul(cpu.zeros([2, 3]), cpu.zeros([4, 3]), { residual: cpu.zeros([2, 5]) }), /matmul: residual has shape \[2, 5\], expected \[2, 4\]/);
});
