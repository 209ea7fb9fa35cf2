// A model from an opened checkpoint (openCheckpoint over fetched bytes in a browser, a folder in
// Node): parameters read, converted and uploaded one at a time, so the host never holds them all.
import type { Backend, Tensor } from '../core/backend.js';
import type { OpenedCheckpoint } from '../io/checkpoint.js';
import { SambaModel, isMatmulWeight } from './model.js';

export interface ModelLoadOptions {
  /**
   * 'f16': matmul weights are kept as f16 on the device (WebGPU), converted one tensor at a time as
   * they load: half the memory and the bytes per decoded token; inference only. Default 'f32'.
   */
  weights?: 'f32' | 'f16';
  /** Called after each parameter is on the device (progress bars); a promise it returns is awaited (a page can paint). */
  onTensor?: (name: string, done: number, total: number) => void | Promise<void>;
}

export async function modelFromCheckpoint(ck: OpenedCheckpoint, backend: Backend, opts: ModelLoadOptions = {}): Promise<SambaModel> {
  const weights = opts.weights ?? 'f32';
  if (weights !== 'f32' && weights !== 'f16') throw new Error(`weights must be f32 or f16, got ${String(weights)}`);
  if (weights === 'f16' && !backend.compactWeight) throw new Error(`f16 weights need the webgpu backend (the ${backend.name} backend computes in f32)`);
  const params = new Map<string, Tensor>();
  try {
    await ck.forEachTensor(async (name, shape, data) => {
      const t = backend.tensor(data, shape);
      if (weights === 'f16' && isMatmulWeight(name)) {
        params.set(name, backend.keep(backend.compactWeight!(t)));
        backend.dispose(t);
      } else params.set(name, backend.keep(t));
      await opts.onTensor?.(name, params.size, ck.tensors.length);
    });
  } catch (e) {
    for (const t of params.values()) backend.dispose(t);
    throw e;
  }
  const model = new SambaModel(ck.config, backend, params);
  if (weights === 'f16') model.compactWeights(); // the rest of it: the tied head's copy, the gathering
  return model;
}
