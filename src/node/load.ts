// Loading a model folder (samba-lm, Hugging Face Mamba or microsoft/Samba layout) onto a backend:
// tensors are read, converted and uploaded one at a time, so the host never holds the whole model.
import { stat } from 'node:fs/promises';
import type { Backend } from '../core/backend.js';
import type { SambaModel } from '../model/model.js';
import { modelFromCheckpoint, type ModelLoadOptions } from '../model/load.js';
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

export type LoadOptions = Pick<ModelLoadOptions, 'weights'>;

export async function loadModel(dir: string, backend: Backend, opts: LoadOptions = {}): Promise<LoadedModel> {
  await checkDir(dir);
  const folder = await openModelFolder(dir);
  let model: SambaModel;
  try {
    model = await modelFromCheckpoint(folder, backend, opts);
  } finally {
    await folder.close();
  }
  const tokenizer = (await loadFolderTokenizer(folder.tokenizerRef)) ?? null;
  if (tokenizer && tokenizer.vocabSize > folder.config.vocabSize) {
    throw new Error(`${dir}: the tokenizer has ${tokenizer.vocabSize} ids but the model only ${folder.config.vocabSize} embedding rows`);
  }
  const fileTensorNames = [...new Set([...folder.tensors.map((m) => m.source), ...folder.ignored])];
  return { model, tokenizer, format: folder.format, fileTensorNames };
}
