// The backends every backend-independent test runs on: the CPU reference always, WebGPU where an
// adapter exists (and, in CI, where SAMBA_REQUIRE_WEBGPU=1 makes its absence a failure).
import type { TestContext } from 'node:test';
import type { Backend } from '../../src/core/backend.js';
import { CpuBackend } from '../../src/backends/cpu/cpu.js';
import { gpuBackendOrSkip } from './gpu.js';

export interface TestBackend {
  name: string;
  get(t: TestContext): Promise<Backend | null>;
}

export function testBackends(): TestBackend[] {
  const cpu = new CpuBackend();
  return [
    { name: 'cpu', get: async () => cpu },
    { name: 'webgpu', get: (t) => gpuBackendOrSkip(t) },
  ];
}
