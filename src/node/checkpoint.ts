// Model folders on disk (Node): open / load / save in the three checkpoint formats of
// src/io/checkpoint.ts, reading and writing tensors one at a time.
//
// A folder holds config.json, model.safetensors (or model.safetensors.index.json with shards), and
// optionally tokenizer.json (+ tokenizer_config.json).

import { access, copyFile, mkdir, readFile } from 'node:fs/promises';
import * as nodePath from 'node:path';
import type { ModelConfig } from '../model/config.js';
import {
  CheckpointError, applyTransform, checkpointMetadata, openCheckpoint, planExport,
} from '../io/checkpoint.js';
import type { CheckpointFormat, ExportOptions, ImportOptions, OpenedCheckpoint, SaveDtype, TensorSource, TokenizerSpec } from '../io/checkpoint.js';
import { SafetensorsFile, readJsonFile, writeJsonAtomic, writeSafetensorsFile } from './files.js';
import type { WriteDtype } from '../io/safetensors.js';
import { ByteTokenizer } from '../tokenizer/bytes.js';
import { HfTokenizer, type HfTokenizerOptions } from '../tokenizer/hf.js';
import type { TextTokenizer } from '../tokenizer/types.js';

export type FolderTokenizer =
  | { type: 'bytes'; eos: boolean }
  | { type: 'tokenizer.json'; path: string; configPath?: string };

export interface ModelFolder extends OpenedCheckpoint {
  dir: string;
  /** The tokenizer the folder carries or names, if any. */
  tokenizerRef?: FolderTokenizer;
  /** The safetensors files the weights come from. */
  files: string[];
  close(): Promise<void>;
}

async function exists(p: string): Promise<boolean> {
  try {
    await access(p);
    return true;
  } catch {
    return false;
  }
}

/** Opens the weight files of a folder: model.safetensors, or the shards named by model.safetensors.index.json. */
async function openWeights(dir: string): Promise<{ files: SafetensorsFile[]; owner: Map<string, SafetensorsFile> }> {
  const single = nodePath.join(dir, 'model.safetensors');
  const index = nodePath.join(dir, 'model.safetensors.index.json');
  let paths: string[];
  if (await exists(single)) paths = [single];
  else if (await exists(index)) {
    const j = await readJsonFile(index) as { weight_map?: Record<string, string> };
    if (!j || typeof j.weight_map !== 'object') throw new CheckpointError(`${index}: no "weight_map"`);
    paths = [...new Set(Object.values(j.weight_map))].map((f) => nodePath.join(dir, f));
  } else {
    const others = ['pytorch_model.bin', 'model.pth', 'lit_model.pth', 'model.bin'];
    for (const o of others) {
      if (await exists(nodePath.join(dir, o))) throw new CheckpointError(`${dir}: weights are in ${o} (PyTorch pickle); samba-lm reads safetensors: convert with safetensors.torch.save_file(state_dict, "model.safetensors")`);
    }
    throw new CheckpointError(`${dir}: no model.safetensors (or model.safetensors.index.json)`);
  }
  const files: SafetensorsFile[] = [];
  const owner = new Map<string, SafetensorsFile>();
  try {
    for (const p of paths) {
      const f = await SafetensorsFile.open(p);
      files.push(f);
      for (const n of f.names) {
        const prev = owner.get(n);
        if (prev) throw new CheckpointError(`tensor ${n} appears in both ${prev.path} and ${f.path}`);
        owner.set(n, f);
      }
    }
  } catch (e) {
    await Promise.all(files.map((f) => f.close()));
    throw e;
  }
  return { files, owner };
}

async function findTokenizer(dir: string, spec: TokenizerSpec | undefined): Promise<FolderTokenizer | undefined> {
  if (spec?.type === 'bytes') return spec;
  const json = nodePath.join(dir, 'tokenizer.json');
  if (await exists(json)) {
    const cfg = nodePath.join(dir, 'tokenizer_config.json');
    return { type: 'tokenizer.json', path: json, ...((await exists(cfg)) ? { configPath: cfg } : {}) };
  }
  if (spec?.type === 'tokenizer.json') throw new CheckpointError(`${dir}: config.json names tokenizer.json, but the folder has none`);
  return undefined;
}

/**
 * Opens a model folder: detects its format from config.json, maps its tensors to samba-lm's names and
 * reads them on demand (forEachTensor / read). Close it when done.
 */
export async function openModelFolder(dir: string, opts: ImportOptions = {}): Promise<ModelFolder> {
  const cfgPath = nodePath.join(dir, 'config.json');
  if (!(await exists(cfgPath))) throw new CheckpointError(`${dir}: no config.json (is this a model folder?)`);
  const cfg = await readJsonFile(cfgPath);
  const { files, owner } = await openWeights(dir);
  try {
    const shapes = new Map<string, number[]>();
    for (const [n, f] of owner) shapes.set(n, f.info(n).shape);
    const source: TensorSource = {
      shapes,
      read: (name) => {
        const f = owner.get(name);
        if (!f) throw new CheckpointError(`no tensor ${name} in ${dir}`);
        return f.readFloat32(name);
      },
    };
    let ck: OpenedCheckpoint;
    try {
      ck = openCheckpoint(cfg, source, opts);
    } catch (e) {
      if (e instanceof CheckpointError) throw new CheckpointError(`${dir}: ${e.message}`);
      throw e;
    }
    const tokenizerRef = await findTokenizer(dir, ck.tokenizer);
    return {
      ...ck,
      dir,
      files: files.map((f) => f.path),
      ...(tokenizerRef ? { tokenizerRef } : {}),
      close: async () => { await Promise.all(files.map((f) => f.close())); },
    };
  } catch (e) {
    await Promise.all(files.map((f) => f.close()));
    throw e;
  }
}

/** Reads just the format and ModelConfig of a folder (headers only, no tensor data). */
export async function describeFolder(dir: string, opts: ImportOptions = {}): Promise<{ format: CheckpointFormat; config: ModelConfig; tokenizerRef?: FolderTokenizer }> {
  const f = await openModelFolder(dir, opts);
  await f.close();
  return { format: f.format, config: f.config, ...(f.tokenizerRef ? { tokenizerRef: f.tokenizerRef } : {}) };
}

export interface LoadedModelFolder {
  format: CheckpointFormat;
  config: ModelConfig;
  /** Every parameter under samba-lm's names. */
  tensors: Map<string, { shape: number[]; data: Float32Array }>;
  tokenizerRef?: FolderTokenizer;
  /** Path of tokenizer.json when the folder has one. */
  tokenizerPath?: string;
}

/** Loads a whole model folder into memory (for small models and tests; prefer openModelFolder + forEachTensor). */
export async function loadModelFolder(dir: string, opts: ImportOptions = {}): Promise<LoadedModelFolder> {
  const f = await openModelFolder(dir, opts);
  try {
    const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
    await f.forEachTensor((name, shape, data) => { tensors.set(name, { shape, data }); });
    const out: LoadedModelFolder = { format: f.format, config: f.config, tensors };
    if (f.tokenizerRef) {
      out.tokenizerRef = f.tokenizerRef;
      if (f.tokenizerRef.type === 'tokenizer.json') out.tokenizerPath = f.tokenizerRef.path;
    }
    return out;
  } finally {
    await f.close();
  }
}

export interface SaveOptions extends Partial<ExportOptions> {
  /** Default 'samba-lm'. */
  format?: CheckpointFormat;
  /** Default 'f32'. */
  dtype?: SaveDtype;
  /** Copy tokenizer.json (and tokenizer_config.json next to it, if present) into the folder. */
  tokenizerJsonPath?: string;
  /** Extra safetensors __metadata__ entries. */
  metadata?: Record<string, string>;
}

const WRITE_DTYPE: Record<SaveDtype, WriteDtype> = { f32: 'F32', f16: 'F16', bf16: 'BF16' };

/**
 * Saves a model folder: model.safetensors written tensor by tensor (each asked of `getTensor` by its
 * samba-lm name when its turn comes), then config.json; both atomically.
 */
export async function saveModelFolder(
  dir: string, config: ModelConfig, getTensor: (name: string) => Float32Array | Promise<Float32Array>, opts: SaveOptions = {},
): Promise<void> {
  const format = opts.format ?? 'samba-lm', dtype = opts.dtype ?? 'f32';
  let tokenizer = opts.tokenizer;
  if (format === 'samba-lm' && !tokenizer && opts.tokenizerJsonPath) tokenizer = { type: 'tokenizer.json' };
  const plan = planExport(config, { ...opts, format, dtype, ...(tokenizer ? { tokenizer } : {}) });
  await mkdir(dir, { recursive: true });
  const wd = WRITE_DTYPE[dtype];
  await writeSafetensorsFile(nodePath.join(dir, 'model.safetensors'), plan.tensors.map((m) => ({
    name: m.name,
    shape: m.shape,
    dtype: wd,
    data: async () => {
      const src = await getTensor(m.source);
      if (!(src instanceof Float32Array)) throw new CheckpointError(`getTensor("${m.source}") did not return a Float32Array`);
      return applyTransform(m, src);
    },
  })), { metadata: { ...checkpointMetadata(format), ...(opts.metadata ?? {}) } });
  if (opts.tokenizerJsonPath) {
    const src = opts.tokenizerJsonPath;
    const dst = nodePath.join(dir, 'tokenizer.json');
    if (nodePath.resolve(src) !== nodePath.resolve(dst)) await copyFile(src, dst);
    const cfg = nodePath.join(nodePath.dirname(src), 'tokenizer_config.json');
    const cfgDst = nodePath.join(dir, 'tokenizer_config.json');
    if ((await exists(cfg)) && nodePath.resolve(cfg) !== nodePath.resolve(cfgDst)) await copyFile(cfg, cfgDst);
  }
  await writeJsonAtomic(nodePath.join(dir, 'config.json'), plan.configJson);
}

/** Builds the tokenizer a folder carries or names (undefined when it has none). */
export async function loadFolderTokenizer(dirOrRef: string | FolderTokenizer | undefined, opts: HfTokenizerOptions = {}): Promise<TextTokenizer | undefined> {
  let ref: FolderTokenizer | undefined;
  if (typeof dirOrRef === 'string') {
    let spec: TokenizerSpec | undefined;
    const cfgPath = nodePath.join(dirOrRef, 'config.json');
    if (await exists(cfgPath)) {
      const cfg = await readJsonFile(cfgPath) as Record<string, unknown>;
      if (cfg && cfg.format === 'samba-lm') {
        const t = cfg.tokenizer;
        if (t === 'bytes') spec = { type: 'bytes', eos: false };
        else if (t && typeof t === 'object' && (t as Record<string, unknown>).type === 'bytes') spec = { type: 'bytes', eos: (t as Record<string, unknown>).eos === true };
      }
    }
    ref = await findTokenizer(dirOrRef, spec);
  } else ref = dirOrRef;
  if (!ref) return undefined;
  if (ref.type === 'bytes') return new ByteTokenizer({ eos: ref.eos });
  return loadTokenizerJson(ref.path, ref.configPath, opts);
}

/** Reads tokenizer.json (and optionally tokenizer_config.json) from disk. */
export async function loadTokenizerJson(path: string, configPath?: string, opts: HfTokenizerOptions = {}): Promise<HfTokenizer> {
  const json = await readFile(path, 'utf8');
  const cfg = configPath ? await readFile(configPath, 'utf8') : undefined;
  try {
    return new HfTokenizer(json, cfg, opts);
  } catch (e) {
    throw new Error(`${path}: ${(e as Error).message}`);
  }
}
