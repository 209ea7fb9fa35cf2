// samba-lm: the browser-safe core. Node-only helpers (files, the Dawn adapter) live in 'samba-lm/node'.
export type { Backend, Tensor, KvCache, AttentionArgs } from './core/backend.js';
export { Rng } from './core/random.js';
export { CpuBackend } from './backends/cpu/cpu.js';
export { WebGpuBackend, webGpuBackendOn } from './backends/webgpu/index.js';
export {
  ARCHITECTURES, makeConfig, validateConfig, layout, paramSpecs, countParams, dInner,
  type Architecture, type ModelConfig, type SublayerKind, type ParamSpec,
} from './model/config.js';
export { PRESETS, PRESET_NAMES, getPreset, describePreset } from './model/presets.js';
export { initParams } from './model/init.js';
export { SambaModel, type ForwardOptions } from './model/model.js';
export { DecodeState } from './model/state.js';
export { modelFromCheckpoint, type ModelLoadOptions } from './model/load.js';
export { Sampler, argmax, type SamplingOptions } from './generate/sampling.js';
export {
  generateIds, generateText, generateBatch, generateBatchStream, prefill,
  type GenerateOptions, type GeneratedToken,
} from './generate/generate.js';
export { perplexity, logProb, type PerplexityResult } from './eval/perplexity.js';
export { ByteTokenizer, HfTokenizer, createStreamDecoder, type TextTokenizer, type StreamDecoder } from './tokenizer/index.js';
export {
  openCheckpoint, planImport, planExport, detectFormat, bufferSource, serializeCheckpoint, CHECKPOINT_FORMATS,
  type CheckpointFormat, type OpenedCheckpoint,
} from './io/checkpoint.js';
export { parseSafetensorsHeader, readSafetensors, serializeSafetensors, SafetensorsBuffer } from './io/safetensors.js';
