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
  /**
   * WebGPU with f16 weights: products of more rows than decoding has (prefill, scoring) on tensor
   * cores (Dawn's subgroup matrices), where the adapter has them and they pass a start-up check.
   */
  tensorCores?: boolean;
}

export async function openBackend(choice: BackendChoice = 'auto', opts: OpenBackendOptions = {}): Promise<Backend> {
  const mixed = opts.precision === 'mixed';
  if (choice === 'cpu') {
    if (mixed) throw new Error('mixed precision needs the webgpu backend (the CPU backend computes in f32)');
    if (opts.tensorCores) throw new Error('--tensor-cores needs the webgpu backend');
    return new CpuBackend();
  }
  if (choice !== 'webgpu' && choice !== 'auto') throw new Error(`unknown backend "${choice}" (cpu, webgpu or auto)`);
  let gpu = null;
  try {
    gpu = await createNodeWebGpuBackend({
      requireAdapter: choice === 'webgpu' || mixed || !!opts.tensorCores,
      ...(mixed ? { precision: 'f16-matmul' as const } : {}),
      ...(opts.tensorCores ? { subgroupMatrix: true } : {}),
      ...(opts.submitEvery !== undefined ? { maxDispatchesPerSubmit: opts.submitEvery } : {}),
    });
  } catch (e) {
    if (choice === 'webgpu' || mixed || opts.tensorCores) {
      throw new Error(`${mixed ? 'mixed precision' : opts.tensorCores ? '--tensor-cores' : '--backend webgpu'}: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  return gpu ?? new CpuBackend();
}
