// Loading a model folder (samba-lm, Hugging Face Mamba or microsoft/Samba layout) onto a backend:
// tensors are read, converted and uploaded one at a time, so the host never holds the whole model.
import { stat } from 'node:fs/promises';
import type { Backend, Tensor } from '../core/backend.js';
import { SambaModel, isMatmulWeight } from '../model/model.js';
import type { TextTokenizer } from '../tokenizer/types.js';
import type { CheckpointFormat } from '../io/checkpoint.js';
import { describeFolder, loadFolderTokenizer, openModelFolder } from './checkpoint.js';

export { openBackend, type BackendChoice, type OpenBackendOptions } from './backend.js';

export interface LoadedModel {
  model: SambaModel;
  tokenizer: TextTokenizer | null;
  format: CheckpointFormat;
  /** The tensor names of the checkpoint's own files. */
  fileTensorNames: string[];
}

async function checkDir(dir: string): Promise<void> {
  let s;
  try {
    s = await stat(dir);
  } catch {
    throw new Error(`model folder ${dir} does not exist`);
  }
  if (!s.isDirectory()) throw new Error(`${dir} is not a folder (a model is a folder with config.json and model.safetensors)`);
}

export async function describeModelFolder(dir: string) {
  await checkDir(dir);
  return describeFolder(dir);
}

export interface LoadOptions {
  /**
   * 'f16': matmul weights are kept as f16 on the device (WebGPU), converted one tensor at a time as
   * they load: half the memory and the bytes per decoded token; inference only. Default 'f32'.
   */
  weights?: 'f32' | 'f16';
}

export async function loadModel(dir: string, backend: Backend, opts: LoadOptions = {}): Promise<LoadedModel> {
  await checkDir(dir);
  const weights = opts.weights ?? 'f32';
  if (weights !== 'f32' && weights !== 'f16') throw new Error(`weights must be f32 or f16, got ${String(weights)}`);
  if (weights === 'f16' && !backend.compactWeight) throw new Error(`f16 weights need the webgpu backend (the ${backend.name} backend computes in f32)`);
  const folder = await openModelFolder(dir);
  const params = new Map<string, Tensor>();
  try {
    await folder.forEachTensor((name, shape, data) => {
      const t = backend.tensor(data, shape);
      if (weights === 'f16' && isMatmulWeight(name)) {
        params.set(name, backend.keep(backend.compactWeight!(t)));
        backend.dispose(t);
      } else params.set(name, backend.keep(t));
    });
  } catch (e) {
    for (const t of params.values()) backend.dispose(t);
    throw e;
  } finally {
    await folder.close();
  }
  const tokenizer = (await loadFolderTokenizer(folder.tokenizerRef)) ?? null;
  if (tokenizer && tokenizer.vocabSize > folder.config.vocabSize) {
    throw new Error(`${dir}: the tokenizer has ${tokenizer.vocabSize} ids but the model only ${folder.config.vocabSize} embedding rows`);
  }
  const fileTensorNames = [...new Set([...folder.tensors.map((m) => m.source), ...folder.ignored])];
  const model = new SambaModel(folder.config, backend, params);
  model.weights = weights;
  if (weights === 'f16') model.compactTiedHead();
  return { model, tokenizer, format: folder.format, fileTensorNames };
}
