// Picking a backend in Node: 'webgpu' insists on an adapter, 'auto' falls back to the CPU.
import type { Backend } from '../core/backend.js';
import { CpuBackend } from '../backends/cpu/cpu.js';
import { createNodeWebGpuBackend } from './webgpu.js';

export type BackendChoice = 'cpu' | 'webgpu' | 'auto';

export interface OpenBackendOptions {
  /** 'mixed': matmuls (forward and backward) round their operands to f16, sums stay f32 (WebGPU with shader-f16). */
  precision?: 'f32' | 'mixed';
  /**
   * WebGPU: dispatches per command buffer before it is submitted (default 32). Fewer let the GPU
   * start on a decode step's first layers while the host still records the rest.
   */
  submitEvery?: number;
}

export async function openBackend(choice: BackendChoice = 'auto', opts: OpenBackendOptions = {}): Promise<Backend> {
  const mixed = opts.precision === 'mixed';
  if (choice === 'cpu') {
    if (mixed) throw new Error('mixed precision needs the webgpu backend (the CPU backend computes in f32)');
    return new CpuBackend();
  }
  if (choice !== 'webgpu' && choice !== 'auto') throw new Error(`unknown backend "${choice}" (cpu, webgpu or auto)`);
  let gpu = null;
  try {
    gpu = await createNodeWebGpuBackend({
      requireAdapter: choice === 'webgpu' || mixed,
      ...(mixed ? { precision: 'f16-matmul' as const } : {}),
      ...(opts.submitEvery !== undefined ? { maxDispatchesPerSubmit: opts.submitEvery } : {}),
    });
  } catch (e) {
    if (choice === 'webgpu' || mixed) throw new Error(`${mixed ? 'mixed precision' : '--backend webgpu'}: ${(e as Error).message.split('\n')[0]}`);
  }
  return gpu ?? new CpuBackend();
}
