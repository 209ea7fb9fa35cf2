// The WebGPU backend for tests: one per test process, created on first use. Without an adapter a
// test is skipped, except in CI (SAMBA_REQUIRE_WEBGPU=1), where a skipped WebGPU test would hide
// exactly the failures CI is there to catch.
import assert from 'node:assert/strict';
import type { TestContext } from 'node:test';
import type { Backend, Tensor } from '../../src/core/backend.js';
import type { WebGpuBackend } from '../../src/backends/webgpu/backend.js';
import { createNodeWebGpuBackend } from '../../src/node/webgpu.js';

let cached: Promise<WebGpuBackend | null> | null = null;

export async function gpuBackendOrSkip(t: TestContext): Promise<WebGpuBackend | null> {
  cached ??= createNodeWebGpuBackend();
  const be = await cached;
  if (be) return be;
  if (process.env.SAMBA_REQUIRE_WEBGPU === '1') {
    throw new Error('no WebGPU adapter found, and SAMBA_REQUIRE_WEBGPU=1 makes that a failure');
  }
  t.skip('no WebGPU adapter');
  return null;
}

/** max |a - ref| / max |ref|; NaN anywhere makes it NaN, which fails every ≤ check. */
export function relErr(a: ArrayLike<number>, ref: ArrayLike<number>): number {
  assert.equal(a.length, ref.length, 'lengths differ');
  let d = 0, m = 0;
  for (let i = 0; i < a.length; i++) {
    const e = Math.abs(a[i] - ref[i]);
    d = e > d || Number.isNaN(e) ? e : d;
    m = Math.max(m, Math.abs(ref[i]));
  }
  return m === 0 ? d : d / m;
}

/** Reads both tensors and asserts equal shapes and values within `tol` (relative to max |ref|). */
export async function assertParity(
  what: string, gpu: Backend, g: Tensor, cpu: Backend, c: Tensor, tol = 1e-4,
): Promise<void> {
  assert.deepEqual([...g.shape], [...c.shape], `${what}: shape`);
  const [a, ref] = await Promise.all([gpu.read(g), cpu.read(c)]);
  const err = relErr(a, ref);
  assert.ok(err <= tol, `${what}: max |Δ| / max |ref| = ${err} > ${tol}`);
}
