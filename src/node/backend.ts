// Picking a backend in Node: 'webgpu' insists on an adapter, 'auto' falls back to the CPU.
import type { Backend } from '../core/backend.js';
import { CpuBackend } from '../backends/cpu/cpu.js';
import { createNodeWebGpuBackend } from './webgpu.js';

export type BackendChoice = 'cpu' | 'webgpu' | 'auto';

export async function openBackend(choice: BackendChoice = 'auto'): Promise<Backend> {
  if (choice === 'cpu') return new CpuBackend();
  if (choice !== 'webgpu' && choice !== 'auto') throw new Error(`unknown backend "${choice}" (cpu, webgpu or auto)`);
  let gpu = null;
  try {
    gpu = await createNodeWebGpuBackend({ requireAdapter: choice === 'webgpu' });
  } catch (e) {
    if (choice === 'webgpu') throw new Error(`--backend webgpu: ${(e as Error).message.split('\n')[0]}`);
  }
  return gpu ?? new CpuBackend();
}
