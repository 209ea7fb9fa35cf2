// Checkpoint formats, browser-safe (no file access here: see src/node/checkpoint.ts for folders).
//
//   'samba-lm'         config.json { "format": "samba-lm", "model": ModelConfig, "tokenizer"?: ... };
//                      weights under the names of paramSpecs().
//   'hf-mamba'         Hugging Face MambaForCausalLM (config.json model_type "mamba"), or a mamba_ssm
//                      folder (config.json with d_model / n_layer); backbone.* names.
//   'samba-reference'  microsoft/Samba (lit_gpt) checkpoints: config.json holds the reference Config
//                      fields; transformer.h.{i}.* names, fused qkv rows grouped per KV group.
//
// planImport() turns a config.json and the tensor shapes of a checkpoint into a ModelConfig and one
// mapping per samba-lm parameter (source tensor, expected shapes, transform). planExport() does the
// reverse for writing. Both raise errors that name the tensor, field or shape at fault.

import { ARCHITECTURES, dInner, layout, makeConfig, paramSpecs, validateConfig } from '../model/config.js';
import type { Architecture, ConfigInput, ModelConfig, ParamSpec, SublayerKind } from '../model/config.js';
import { SafetensorsBuffer, SafetensorsError, serializeSafetensors } from './safetensors.js';
import type { WriteDtype } from './safetensors.js';

export const CHECKPOINT_FORMATS = ['samba-lm', 'hf-mamba', 'samba-reference'] as const;
export type CheckpointFormat = (typeof CHECKPOINT_FORMATS)[number];

export class CheckpointError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CheckpointError';
  }
}

export type Shapes = ReadonlyMap<string, readonly number[]>;

export type Transform =
  | { kind: 'copy' } // same data; the shapes may differ only by size-1 axes (conv1d [d_inner,1,K] <-> [d_inner,K])
  | { kind: 'qkv-grouped-to-split' | 'qkv-split-to-grouped'; nHeads: number; nKvHeads: number; headDim: number }
  | { kind: 'zeros' }; // absent from the source (e.g. use_conv_bias false): all zeros

/** One tensor to produce: `name` with `shape`, from `source` (shape `sourceShape`) through `transform`. */
export interface TensorMapping {
  name: string;
  shape: number[];
  source: string;
  sourceShape: number[];
  transform: Transform;
}

/** How a tokenizer is given for a model (samba-lm config.json "tokenizer" field). */
export type TokenizerSpec = { type: 'bytes'; eos: boolean } | { type: 'tokenizer.json' };

export interface ImportPlan {
  format: CheckpointFormat;
  config: ModelConfig;
  /** One entry per samba-lm parameter, in paramSpecs() order; `name` is the samba-lm name. */
  tensors: TensorMapping[];
  /** Source tensors deliberately not used (e.g. lm_head.weight of a tied model). */
  ignored: string[];
  /** From a samba-lm config.json's "tokenizer" field. */
  tokenizer?: TokenizerSpec;
}

export interface ImportOptions {
  /** Accept reference config.json fields that samba-lm does not know (default: error). */
  allowUnknownFields?: boolean;
}

type Json = Record<string, unknown>;

function isObject(x: unknown): x is Json {
  return x !== null && typeof x === 'object' && !Array.isArray(x);
}

const fmtShape = (s: readonly number[] | undefined) => (s ? `[${s.join(', ')}]` : 'absent');
const sameShape = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((x, i) => x === b[i]);

// ---------------------------------------------------------------------------------------------------
// Format detection

/** Tells the checkpoint format from a parsed config.json. */
export function detectFormat(cfg: unknown): CheckpointFormat {
  if (!isObject(cfg)) throw new CheckpointError('config.json does not hold a JSON object');
  if ('format' in cfg) {
    if (cfg.format === 'samba-lm') return 'samba-lm';
    throw new CheckpointError(`config.json: unknown "format": ${JSON.stringify(cfg.format)} (samba-lm writes "samba-lm")`);
  }
  const archs = Array.isArray(cfg.architectures) ? (cfg.architectures as unknown[]) : [];
  if (cfg.model_type === 'mamba' || archs.includes('MambaForCausalLM') || archs.includes('MambaModel')) return 'hf-mamba';
  if (typeof cfg.model_type === 'string') {
    throw new CheckpointError(`config.json: model_type "${cfg.model_type}" is not supported (supported: Hugging Face "mamba", microsoft/Samba reference configs, samba-lm's own format)`);
  }
  if ('d_model' in cfg && 'n_layer' in cfg) return 'hf-mamba'; // mamba_ssm's MambaConfig
  if ('n_layer' in cfg && 'n_embd' in cfg) return 'samba-reference';
  throw new CheckpointError('config.json: cannot tell the checkpoint format (expected "format": "samba-lm", a Hugging Face Mamba config with model_type "mamba", or a microsoft/Samba Config with n_layer and n_embd)');
}

// ---------------------------------------------------------------------------------------------------
// Sub-layer naming shared by import and export

/** Where one sub-layer of the stack lives in a foreign checkpoint. */
interface SublayerRef {
  kind: SublayerKind;
  norm: string; // full key of its RMSNorm gain
  prefix: string; // mixer / MLP module prefix, without trailing dot
  mlpStyle?: 'swiglu'; // reference: w1/w2/w3 under prefix
}

interface TopNames {
  embed: string;
  normF: string;
  head: string;
}

const MAMBA_PARAMS = ['in_proj.weight', 'conv1d.weight', 'conv1d.bias', 'x_proj.weight', 'dt_proj.weight', 'dt_proj.bias', 'A_log', 'D', 'out_proj.weight'] as const;

/** Pairs every samba-lm parameter with its foreign name and shape (foreign -> ours direction for qkv). */
function pairNames(config: ModelConfig, subs: SublayerRef[], top: TopNames): Array<{ ours: ParamSpec; theirs: string; theirShape: number[]; transform: Transform }> {
  const kinds = layout(config);
  if (kinds.length !== subs.length || kinds.some((k, j) => k !== subs[j].kind)) {
    throw new CheckpointError(`internal: layout [${kinds.join(', ')}] does not match the checkpoint's sub-layers [${subs.map((s) => s.kind).join(', ')}]`);
  }
  const qkv: Transform = { kind: 'qkv-grouped-to-split', nHeads: config.nHeads, nKvHeads: config.nKvHeads, headDim: config.headDim };
  const out: Array<{ ours: ParamSpec; theirs: string; theirShape: number[]; transform: Transform }> = [];
  for (const spec of paramSpecs(config)) {
    const n = spec.name;
    const copy = (theirs: string, theirShape = spec.shape): void => { out.push({ ours: spec, theirs, theirShape, transform: { kind: 'copy' } }); };
    if (n === 'embed.weight') { copy(top.embed); continue; }
    if (n === 'norm_f.weight') { copy(top.normF); continue; }
    if (n === 'head.weight') { copy(top.head); continue; }
    const m = /^layers\.(\d+)\.(.+)$/.exec(n);
    if (!m) throw new CheckpointError(`internal: unexpected parameter name ${n}`);
    const r = subs[Number(m[1])], rest = m[2];
    if (rest === 'norm.weight') copy(r.norm);
    else if (rest.startsWith('mamba.')) {
      const p = rest.slice('mamba.'.length);
      if (p === 'conv1d.weight') copy(`${r.prefix}.${p}`, [spec.shape[0], 1, spec.shape[1]]);
      else copy(`${r.prefix}.${p}`);
    } else if (rest === 'attn.qkv.weight') out.push({ ours: spec, theirs: `${r.prefix}.attn.weight`, theirShape: spec.shape, transform: qkv });
    else if (rest === 'attn.out.weight') copy(`${r.prefix}.proj.weight`);
    else if (rest.startsWith('mlp.')) copy(`${r.prefix}.${rest.slice('mlp.'.length)}`);
    else throw new CheckpointError(`internal: unexpected parameter name ${n}`);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Choosing an architecture name for a layout

/** The named architecture whose pattern is `kinds`, else the closest one with an explicit layout. */
export function architectureFor(kinds: readonly SublayerKind[], nBlocks: number): { architecture: Architecture; layout?: SublayerKind[] } {
  for (const architecture of ARCHITECTURES) {
    const l = layout({ architecture, nBlocks } as ModelConfig);
    if (l.length === kinds.length && l.every((k, i) => k === kinds[i])) return { architecture };
  }
  const has = (k: SublayerKind) => kinds.includes(k);
  const attn = has('swa') || has('attn');
  let architecture: Architecture;
  if (has('mamba') && attn) architecture = 'samba';
  else if (has('mamba')) architecture = has('mlp') ? 'mamba-mlp' : 'mamba';
  else architecture = has('swa') ? 'swa' : 'llama';
  return { architecture, layout: [...kinds] };
}

/** makeConfig, with attention sizes that validate even when the model has no attention layer. */
function buildConfig(c: ConfigInput, hasAttention: boolean): ModelConfig {
  if (!hasAttention) {
    const nHeads = c.nHeads ?? Math.max(1, Math.round(c.dModel / 128));
    const headDim = c.headDim ?? c.dModel / nHeads;
    if (!Number.isInteger(headDim) || headDim % 2 !== 0 || (c.nKvHeads !== undefined && nHeads % c.nKvHeads !== 0)) {
      // unused sizes: pick any valid ones
      return makeConfig({ ...c, nHeads: 1, nKvHeads: 1, headDim: 2 * Math.ceil(c.dModel / 2) });
    }
  }
  try {
    return makeConfig(c);
  } catch (e) {
    throw new CheckpointError((e as Error).message);
  }
}

/** The Mamba sizes, read from one Mamba layer's tensor shapes. */
function mambaFromShapes(shapes: Shapes, prefix: string, dModel: number): { dState: number; dConv: number; expand: number; dtRank: number } {
  const get = (p: string, rank: number) => {
    const s = shapes.get(`${prefix}.${p}`);
    if (!s) throw new CheckpointError(`missing tensor ${prefix}.${p} (needed to read the Mamba sizes)`);
    if (s.length !== rank) throw new CheckpointError(`tensor ${prefix}.${p} has shape ${fmtShape(s)}, expected ${rank} dimensions`);
    return s;
  };
  const inProj = get('in_proj.weight', 2), conv = get('conv1d.weight', 3), xProj = get('x_proj.weight', 2), aLog = get('A_log', 2);
  const di = inProj[0] / 2;
  if (!Number.isInteger(di) || inProj[1] !== dModel) {
    throw new CheckpointError(`tensor ${prefix}.in_proj.weight has shape ${fmtShape(inProj)}, expected [2·d_inner, ${dModel}]`);
  }
  const expand = di / dModel;
  if (!Number.isInteger(expand)) throw new CheckpointError(`tensor ${prefix}.in_proj.weight: d_inner ${di} is not a whole multiple of d_model ${dModel} (samba-lm needs d_inner = expand·d_model)`);
  if (conv[0] !== di || conv[1] !== 1) throw new CheckpointError(`tensor ${prefix}.conv1d.weight has shape ${fmtShape(conv)}, expected [${di}, 1, d_conv]`);
  if (aLog[0] !== di) throw new CheckpointError(`tensor ${prefix}.A_log has shape ${fmtShape(aLog)}, expected [${di}, d_state]`);
  const dState = aLog[1], dtRank = xProj[0] - 2 * dState;
  if (xProj[1] !== di || dtRank <= 0) throw new CheckpointError(`tensor ${prefix}.x_proj.weight has shape ${fmtShape(xProj)}, expected [dt_rank + 2·${dState}, ${di}]`);
  return { dState, dConv: conv[2], expand, dtRank };
}

/** Checks every mapping against the source shapes, finds unused tensors, builds the plan. */
function finishImport(
  format: CheckpointFormat, config: ModelConfig, pairs: ReturnType<typeof pairNames>, shapes: Shapes,
  opts: { ignore?: string[]; zerosIfMissing?: (name: string) => boolean } = {},
): ImportPlan {
  const tensors: TensorMapping[] = [];
  const used = new Set<string>();
  const missing: string[] = [];
  for (const p of pairs) {
    const s = shapes.get(p.theirs);
    if (!s) {
      if (opts.zerosIfMissing?.(p.theirs)) {
        tensors.push({ name: p.ours.name, shape: p.ours.shape, source: p.theirs, sourceShape: p.theirShape, transform: { kind: 'zeros' } });
        continue;
      }
      missing.push(`${p.theirs} (${fmtShape(p.theirShape)}, for ${p.ours.name})`);
      continue;
    }
    if (!sameShape(s, p.theirShape)) {
      throw new CheckpointError(`tensor ${p.theirs} has shape ${fmtShape(s)}, expected ${fmtShape(p.theirShape)} (for ${p.ours.name} of a ${describe(config)})`);
    }
    used.add(p.theirs);
    tensors.push({ name: p.ours.name, shape: p.ours.shape, source: p.theirs, sourceShape: [...s], transform: p.transform });
  }
  if (missing.length) {
    throw new CheckpointError(`missing tensor${missing.length > 1 ? 's' : ''} ${missing.slice(0, 8).join(', ')}${missing.length > 8 ? `, … (${missing.length} in all)` : ''} for a ${describe(config)}`);
  }
  const ignored = (opts.ignore ?? []).filter((n) => shapes.has(n) && !used.has(n));
  const unexpected = [...shapes.keys()].filter((n) => !used.has(n) && !ignored.includes(n));
  if (unexpected.length) {
    throw new CheckpointError(`unexpected tensor${unexpected.length > 1 ? 's' : ''} ${unexpected.slice(0, 8).map((n) => `${n} ${fmtShape(shapes.get(n))}`).join(', ')}${unexpected.length > 8 ? `, … (${unexpected.length} in all)` : ''}: the checkpoint holds parameters a ${describe(config)} does not have`);
  }
  return { format, config, tensors, ignored };
}

function describe(c: ModelConfig): string {
  const kinds = layout(c);
  const count = (k: SublayerKind) => kinds.filter((x) => x === k).length;
  const parts = (['mamba', 'swa', 'attn', 'mlp'] as const).filter((k) => count(k) > 0).map((k) => `${count(k)} ${k}`);
  return `${c.architecture} model (${parts.join(', ')}; d_model ${c.dModel})`;
}

// ---------------------------------------------------------------------------------------------------
// samba-lm's own format

export const SAMBA_LM_FORMAT_VERSION = 1;

function importSambaLm(cfg: Json, shapes: Shapes): ImportPlan {
  if (typeof cfg.version === 'number' && cfg.version > SAMBA_LM_FORMAT_VERSION) {
    throw new CheckpointError(`samba-lm config.json: format version ${cfg.version} is newer than this samba-lm reads (${SAMBA_LM_FORMAT_VERSION})`);
  }
  if (!isObject(cfg.model)) throw new CheckpointError('samba-lm config.json: missing "model" object (a ModelConfig)');
  let config: ModelConfig;
  try {
    config = makeConfig(cfg.model as unknown as ConfigInput);
    validateConfig(config);
  } catch (e) {
    throw new CheckpointError(`samba-lm config.json "model": ${(e as Error).message}`);
  }
  const pairs = paramSpecs(config).map((s) => ({ ours: s, theirs: s.name, theirShape: s.shape, transform: { kind: 'copy' } as Transform }));
  const plan = finishImport('samba-lm', config, pairs, shapes);
  const tok = parseTokenizerField(cfg.tokenizer);
  return tok ? { ...plan, tokenizer: tok } : plan;
}

function parseTokenizerField(t: unknown): TokenizerSpec | undefined {
  if (t === undefined || t === null) return undefined;
  if (t === 'bytes') return { type: 'bytes', eos: false };
  if (t === 'bytes+eos') return { type: 'bytes', eos: true };
  if (t === 'tokenizer.json') return { type: 'tokenizer.json' };
  if (isObject(t) && t.type === 'bytes') return { type: 'bytes', eos: t.eos === true };
  if (isObject(t) && t.type === 'tokenizer.json') return { type: 'tokenizer.json' };
  throw new CheckpointError(`samba-lm config.json: unknown "tokenizer" ${JSON.stringify(t)} (use "bytes", {"type": "bytes", "eos": true} or "tokenizer.json")`);
}

function tokenizerField(t: TokenizerSpec | undefined): unknown {
  if (!t) return undefined;
  if (t.type === 'bytes') return t.eos ? { type: 'bytes', eos: true } : 'bytes';
  return 'tokenizer.json';
}

// ---------------------------------------------------------------------------------------------------
// Hugging Face MambaForCausalLM (and mamba_ssm folders)

function importHfMamba(cfg: Json, shapes: Shapes): ImportPlan {
  const num = (...keys: string[]): number | undefined => {
    for (const k of keys) if (typeof cfg[k] === 'number') return cfg[k] as number;
    return undefined;
  };
  const bad = (msg: string): never => { throw new CheckpointError(`Hugging Face Mamba config.json: ${msg}`); };
  if (cfg.use_bias === true) bad('use_bias: true (biases on in_proj/out_proj) is not supported by samba-lm');
  if (cfg.hidden_act !== undefined && cfg.hidden_act !== 'silu') bad(`hidden_act "${String(cfg.hidden_act)}" is not supported (only "silu")`);
  if (cfg.rms_norm === false) bad('rms_norm: false (LayerNorm) is not supported (samba-lm uses RMSNorm)');
  if (isObject(cfg.ssm_cfg) && cfg.ssm_cfg.layer !== undefined && cfg.ssm_cfg.layer !== 'Mamba1') bad(`ssm_cfg.layer "${String(cfg.ssm_cfg.layer)}" is not supported (only Mamba1)`);
  if (typeof cfg.d_intermediate === 'number' && cfg.d_intermediate > 0) bad('d_intermediate > 0 (MLP layers in a mamba_ssm model) is not supported');
  if (isObject(cfg.ssm_cfg) && cfg.ssm_cfg.bias === true) bad('ssm_cfg.bias: true (biases on in_proj/out_proj) is not supported by samba-lm');
  const d = num('hidden_size', 'd_model') ?? bad('missing hidden_size');
  const nLayer = num('num_hidden_layers', 'n_layer') ?? bad('missing num_hidden_layers');
  const embedKey = shapes.has('backbone.embeddings.weight') ? 'backbone.embeddings.weight' : shapes.has('backbone.embedding.weight') ? 'backbone.embedding.weight' : undefined;
  if (!embedKey) throw new CheckpointError('missing tensor backbone.embeddings.weight (or mamba_ssm\'s backbone.embedding.weight)');
  const emb = shapes.get(embedKey)!;
  if (emb.length !== 2 || emb[1] !== d) throw new CheckpointError(`tensor ${embedKey} has shape ${fmtShape(emb)}, expected [vocab, ${d}]`);
  const vocabRows = emb[0];
  const declaredVocab = num('vocab_size');
  if (declaredVocab !== undefined && declaredVocab > vocabRows) {
    throw new CheckpointError(`tensor ${embedKey} has ${vocabRows} rows but config.json vocab_size is ${declaredVocab}`);
  }
  const mamba = nLayer > 0 ? mambaFromShapes(shapes, 'backbone.layers.0.mixer', d) : undefined;
  if (mamba) {
    const check = (field: string, declared: number | undefined, actual: number) => {
      if (declared !== undefined && declared !== actual) bad(`${field} is ${declared} but the tensors say ${actual}`);
    };
    check('state_size', num('state_size'), mamba.dState);
    check('conv_kernel', num('conv_kernel'), mamba.dConv);
    check('expand', num('expand'), mamba.expand);
    check('intermediate_size', num('intermediate_size'), mamba.expand * d);
    check('time_step_rank', num('time_step_rank'), mamba.dtRank);
  }
  const tieFlag = (cfg.tie_word_embeddings ?? cfg.tie_embeddings ?? true) !== false;
  const hasHead = shapes.has('lm_head.weight');
  if (!tieFlag && !hasHead) throw new CheckpointError('missing tensor lm_head.weight (config.json says tie_word_embeddings: false)');
  const tied = tieFlag || !hasHead;
  const kinds: SublayerKind[] = Array(nLayer).fill('mamba');
  const config = buildConfig({
    architecture: 'mamba', vocabSize: vocabRows, dModel: d, nBlocks: nLayer,
    normEps: num('layer_norm_epsilon', 'norm_epsilon') ?? 1e-5, tieEmbeddings: tied, mamba,
  }, false);
  const subs: SublayerRef[] = kinds.map((kind, i) => ({ kind, norm: `backbone.layers.${i}.norm.weight`, prefix: `backbone.layers.${i}.mixer` }));
  const pairs = pairNames(config, subs, { embed: embedKey, normF: 'backbone.norm_f.weight', head: 'lm_head.weight' });
  const noConvBias = cfg.use_conv_bias === false || (isObject(cfg.ssm_cfg) && cfg.ssm_cfg.conv_bias === false);
  return finishImport('hf-mamba', config, pairs, shapes, {
    ignore: tied ? ['lm_head.weight'] : [],
    zerosIfMissing: (n) => noConvBias && n.endsWith('.conv1d.bias'),
  });
}

function exportHfMamba(config: ModelConfig, dtype: string): { configJson: Json; tensors: TensorMapping[] } {
  const kinds = layout(config);
  if (kinds.some((k) => k !== 'mamba')) {
    throw new CheckpointError(`the Hugging Face Mamba format holds only pure Mamba models; this ${describe(config)} has other sub-layers`);
  }
  const d = config.dModel, m = config.mamba;
  const subs: SublayerRef[] = kinds.map((kind, i) => ({ kind, norm: `backbone.layers.${i}.norm.weight`, prefix: `backbone.layers.${i}.mixer` }));
  const pairs = pairNames(config, subs, { embed: 'backbone.embeddings.weight', normF: 'backbone.norm_f.weight', head: 'lm_head.weight' });
  const configJson: Json = {
    architectures: ['MambaForCausalLM'],
    model_type: 'mamba',
    vocab_size: config.vocabSize,
    hidden_size: d,
    state_size: m.dState,
    num_hidden_layers: kinds.length,
    conv_kernel: m.dConv,
    expand: m.expand,
    intermediate_size: dInner(config),
    time_step_rank: m.dtRank,
    use_bias: false,
    use_conv_bias: true,
    hidden_act: 'silu',
    layer_norm_epsilon: config.normEps,
    residual_in_fp32: true,
    tie_word_embeddings: config.tieEmbeddings,
    bos_token_id: 0,
    eos_token_id: 0,
    pad_token_id: 0,
    torch_dtype: dtype,
  };
  return { configJson, tensors: pairs.map((p) => exportMapping(p)) };
}

function exportMapping(p: ReturnType<typeof pairNames>[number]): TensorMapping {
  const transform: Transform = p.transform.kind === 'qkv-grouped-to-split' ? { ...p.transform, kind: 'qkv-split-to-grouped' } : p.transform;
  return { name: p.theirs, shape: p.theirShape, source: p.ours.name, sourceShape: p.ours.shape, transform };
}

// ---------------------------------------------------------------------------------------------------
// microsoft/Samba reference (lit_gpt Config)

/** The reference Config dataclass defaults (lit_gpt/config.py), in field order. */
export const REFERENCE_CONFIG_DEFAULTS: Readonly<Json> = {
  org: 'Lightning-AI', name: 'lit-GPT', block_size: 4096, vocab_size: 50254, padding_multiple: 512, padded_vocab_size: null,
  n_layer: 16, n_head: 32, n_embd: 4096, rotary_percentage: 0.25, parallel_residual: true, bias: true, local_window: -1,
  mlp: true, full_per_layer: 1000000, mb_per_layer: -1, ret_per_layer: -1, gla_per_layer: -1, nope: false, mamba: false,
  sc_attn: false, rms_norm: true, residual_in_fp32: true, fused_add_norm: true, mamba_init: false, attn_layer_pos: null,
  use_mega: false, abl_mamba: false, mamba_swa_mlp: false, n_query_groups: null, shared_attention_norm: false,
  _norm_class: 'LayerNorm', norm_eps: 1e-5, _mlp_class: 'GptNeoxMLP', intermediate_size: null, condense_ratio: 1,
};

/** Fields that do not change the maths (naming, numerics switches, derived values). */
const REFERENCE_HARMLESS = new Set(['org', 'name', 'block_size', 'vocab_size', 'padding_multiple', 'residual_in_fp32', 'fused_add_norm', 'head_size', 'torch_dtype', 'dtype', 'samba_lm']);

/** Parses attn_layer_pos: a Python list/tuple literal string such as "[0,]" or "(1, 5)", or a JSON array. */
export function parseAttnLayerPos(v: unknown): number[] | null {
  if (v === null || v === undefined || v === 'None') return null;
  if (Array.isArray(v)) {
    if (!v.every((x) => Number.isInteger(x))) throw new CheckpointError(`reference config.json: attn_layer_pos ${JSON.stringify(v)} is not a list of block indices`);
    return v as number[];
  }
  if (typeof v !== 'string') throw new CheckpointError(`reference config.json: attn_layer_pos ${JSON.stringify(v)} is not a list literal string`);
  const m = /^\s*[[(]\s*((?:-?\d+\s*,\s*)*(?:-?\d+)?)\s*,?\s*[\])]\s*$/.exec(v);
  if (!m) throw new CheckpointError(`reference config.json: attn_layer_pos "${v}" is not a Python list of integers`);
  return m[1].split(',').map((s) => s.trim()).filter((s) => s !== '').map(Number);
}

interface ReferenceLayout {
  subs: SublayerRef[];
  kinds: SublayerKind[];
}

/** The reference's sub-layer structure for a (defaults-filled) Config. */
function referenceLayout(R: Json): ReferenceLayout {
  const bad = (msg: string): never => { throw new CheckpointError(`reference config.json: ${msg}`); };
  const nLayer = R.n_layer as number;
  const mlp = R.mlp !== false;
  const h = (b: number) => `transformer.h.${b}`;
  const lw = R.local_window as number, fpl = R.full_per_layer as number;
  const attnKind = (b: number): SublayerKind => (lw > 0 && b % fpl < fpl - 1 ? 'swa' : 'attn');
  const subs: SublayerRef[] = [];
  if (R.mamba === true) {
    if (R.rms_norm === false) bad('mamba: true with rms_norm: false (LayerNorm) is not supported');
    for (let b = 0; b < nLayer; b++) subs.push({ kind: 'mamba', norm: `${h(b)}.norm.weight`, prefix: `${h(b)}.mixer` });
    return { subs, kinds: subs.map((s) => s.kind) };
  }
  const attnPos = parseAttnLayerPos(R.attn_layer_pos);
  const mb = R.mb_per_layer as number, ret = R.ret_per_layer as number, gla = R.gla_per_layer as number;
  for (let b = 0; b < nLayer; b++) {
    if (R.mamba_swa_mlp === true) {
      subs.push({ kind: 'mamba', norm: `${h(b)}.norm_m.weight`, prefix: `${h(b)}.mb` });
      subs.push({ kind: attnKind(b), norm: `${h(b)}.norm_attn.weight`, prefix: `${h(b)}.attn` });
    } else {
      const useMamba = attnPos ? !attnPos.includes(b) : mb > 0 && b % mb === 0;
      if (!useMamba && ret > 0 && b % ret === 0) bad(`block ${b} is a RetNet layer (ret_per_layer ${ret}); samba-lm does not support RetNet`);
      if (!useMamba && gla > 0 && b % gla === 0) bad(`block ${b} is a GLA layer (gla_per_layer ${gla}); samba-lm does not support GLA`);
      subs.push(useMamba ? { kind: 'mamba', norm: `${h(b)}.norm_1.weight`, prefix: `${h(b)}.attn` } : { kind: attnKind(b), norm: `${h(b)}.norm_1.weight`, prefix: `${h(b)}.attn` });
    }
    if (mlp) subs.push({ kind: 'mlp', norm: `${h(b)}.norm_2.weight`, prefix: `${h(b)}.mlp.swiglu`, mlpStyle: 'swiglu' });
  }
  return { subs, kinds: subs.map((s) => s.kind) };
}

function importReference(cfg: Json, shapes: Shapes, opts: ImportOptions): ImportPlan {
  const bad = (msg: string): never => { throw new CheckpointError(`reference config.json: ${msg}`); };
  if (!opts.allowUnknownFields) {
    const unknown = Object.keys(cfg).filter((k) => !(k in REFERENCE_CONFIG_DEFAULTS) && !REFERENCE_HARMLESS.has(k));
    if (unknown.length) bad(`unknown field${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `"${k}"`).join(', ')}: samba-lm cannot tell whether they change the architecture (pass allowUnknownFields to load anyway)`);
  }
  const R: Json = { ...REFERENCE_CONFIG_DEFAULTS };
  for (const [k, v] of Object.entries(cfg)) if (v !== undefined) R[k] = v;
  const int = (k: string): number => {
    const v = R[k];
    if (!Number.isInteger(v)) bad(`${k} must be an integer, got ${JSON.stringify(v)}`);
    return v as number;
  };
  const nLayer = int('n_layer'), d = int('n_embd'), nHead = int('n_head');
  const nKv = R.n_query_groups === null ? nHead : int('n_query_groups');
  if (d % nHead !== 0) bad(`n_embd ${d} is not a multiple of n_head ${nHead}`);
  const hs = d / nHead;
  if (R.head_size !== undefined && R.head_size !== null && R.head_size !== hs) bad(`head_size ${String(R.head_size)} disagrees with n_embd / n_head = ${hs}`);
  if (nHead % nKv !== 0) bad(`n_head ${nHead} is not a multiple of n_query_groups ${nKv}`);
  const vocab = R.padded_vocab_size !== null ? int('padded_vocab_size') : Math.ceil(int('vocab_size') / int('padding_multiple')) * int('padding_multiple');
  for (const k of ['parallel_residual', 'bias', 'sc_attn', 'use_mega', 'abl_mamba', 'shared_attention_norm'] as const) {
    if (R[k] === true) bad(`${k}: true is not supported by samba-lm`);
  }
  if (R.mamba !== true) {
    if (!['FusedRMSNorm', 'RMSNorm'].includes(R._norm_class as string)) bad(`_norm_class "${String(R._norm_class)}" is not supported (FusedRMSNorm or RMSNorm)`);
    if (R.mlp !== false && R._mlp_class !== 'LLaMAMLP') bad(`_mlp_class "${String(R._mlp_class)}" is not supported (LLaMAMLP, the SwiGLU MLP)`);
  }
  const { subs, kinds } = referenceLayout(R);
  const hasAttn = kinds.some((k) => k === 'swa' || k === 'attn');
  if (hasAttn && R.nope !== true) {
    if (R.rotary_percentage !== 1 && R.rotary_percentage !== 1.0) bad(`rotary_percentage ${String(R.rotary_percentage)} is not supported (RoPE on the whole head, 1.0)`);
    if (R.condense_ratio !== 1) bad(`condense_ratio ${String(R.condense_ratio)} is not supported (1)`);
  }
  const firstMamba = subs.find((s) => s.kind === 'mamba');
  const mamba = firstMamba ? mambaFromShapes(shapes, firstMamba.prefix, d) : undefined;
  const tied = R.mamba === true || R.mamba_init === true;
  const lw = R.local_window as number;
  const kindsHaveMlp = kinds.includes('mlp');
  const { architecture, layout: explicit } = architectureFor(kinds, nLayer);
  const config = buildConfig({
    architecture, vocabSize: vocab, dModel: d, nBlocks: nLayer, nHeads: nHead, nKvHeads: nKv, headDim: hs,
    mlpHidden: kindsHaveMlp ? int('intermediate_size') : (Number.isInteger(R.intermediate_size) ? (R.intermediate_size as number) : undefined),
    window: lw > 0 ? lw : undefined, rope: R.nope !== true, ropeBase: 10000, normEps: R.norm_eps as number, tieEmbeddings: tied,
    mamba, ...(explicit ? { layout: explicit } : {}),
  }, hasAttn);
  let embed = 'transformer.wte.weight', head = 'lm_head.weight';
  const ignore: string[] = [];
  if (tied) {
    if (!shapes.has(embed) && shapes.has(head)) [embed, head] = [head, embed];
    ignore.push(head);
    const a = shapes.get(embed), b = shapes.get(head);
    if (a && b && !sameShape(a, b)) throw new CheckpointError(`tied tensors ${embed} ${fmtShape(a)} and ${head} ${fmtShape(b)} differ in shape`);
  }
  const pairs = pairNames(config, subs, { embed, normF: 'transformer.ln_f.weight', head: 'lm_head.weight' });
  return finishImport('samba-reference', config, pairs, shapes, { ignore });
}

export interface ReferenceExportOptions {
  /** Written as the Config's org / name / block_size / vocab_size (the unpadded vocabulary). */
  org?: string;
  name?: string;
  blockSize?: number;
  vocabSize?: number;
}

/** The reference Config fields (and sub-layer names) that reproduce `config`, or an error saying why none do. */
function referenceConfigFor(config: ModelConfig, opts: ReferenceExportOptions): { fields: Json; subs: SublayerRef[] } {
  const bad = (msg: string): never => { throw new CheckpointError(`cannot write this ${describe(config)} in the microsoft/Samba reference format: ${msg}`); };
  const kinds = layout(config);
  const d = config.dModel;
  const isAttn = (k: SublayerKind) => k === 'swa' || k === 'attn';
  const hasAttn = kinds.some(isAttn), hasMamba = kinds.includes('mamba');
  if (hasAttn && config.headDim * config.nHeads !== d) bad(`the reference's head size is n_embd / n_head, but headDim ${config.headDim} × nHeads ${config.nHeads} ≠ dModel ${d}`);
  if (hasAttn && config.rope && config.ropeBase !== 10000) bad(`the reference's RoPE base is fixed at 10000, this model uses ${config.ropeBase}`);
  if (hasMamba) {
    const m = config.mamba, want = { dState: 16, dConv: 4, expand: 2, dtRank: Math.ceil(d / 16) };
    for (const k of ['dState', 'dConv', 'expand', 'dtRank'] as const) {
      if (m[k] !== want[k]) bad(`the reference's Mamba layers use the mamba_simple defaults (d_state 16, d_conv 4, expand 2, dt_rank ceil(d/16) = ${want.dtRank}); this model has mamba.${k} = ${m[k]}`);
    }
  }
  const R: Json = { ...REFERENCE_CONFIG_DEFAULTS };
  Object.assign(R, {
    org: opts.org ?? 'samba-lm', name: opts.name ?? 'samba-lm-export', block_size: opts.blockSize ?? 4096,
    vocab_size: opts.vocabSize ?? config.vocabSize, padding_multiple: 64, padded_vocab_size: config.vocabSize,
    n_head: config.nHeads, n_embd: d, rotary_percentage: 1.0, parallel_residual: false, bias: false,
    nope: !config.rope, mamba_init: config.tieEmbeddings, n_query_groups: config.nKvHeads,
    _norm_class: 'FusedRMSNorm', norm_eps: config.normEps, _mlp_class: 'LLaMAMLP', intermediate_size: config.mlpHidden,
  });
  if (config.vocabSize % 64 !== 0) R.padding_multiple = 1;
  if ((R.vocab_size as number) > config.vocabSize) bad(`vocabSize ${R.vocab_size} exceeds the embedding rows ${config.vocabSize}`);
  // attention kinds -> local_window / full_per_layer, given the block index of each attention layer
  const setAttention = (attnBlocks: Array<[number, SublayerKind]>) => {
    const swa = attnBlocks.filter(([, k]) => k === 'swa').length;
    if (swa === 0) { R.local_window = -1; R.full_per_layer = 1000000; return; }
    R.local_window = config.window;
    if (swa === attnBlocks.length) { R.full_per_layer = 1000000; return; }
    const n = R.n_layer as number;
    for (let f = 2; f <= n + 1; f++) {
      if (attnBlocks.every(([b, k]) => (b % f < f - 1) === (k === 'swa'))) { R.full_per_layer = f; return; }
    }
    bad('its mix of sliding-window and full attention layers is not periodic (full_per_layer)');
  };
  if (kinds.every((k) => k === 'mamba')) {
    if (!config.tieEmbeddings) bad('pure Mamba reference models (mamba: true) always tie the embedding and the head');
    Object.assign(R, { n_layer: kinds.length, mamba: true, rms_norm: true, mb_per_layer: -1, mlp: true });
    const subs = kinds.map((kind, b) => ({ kind, norm: `transformer.h.${b}.norm.weight`, prefix: `transformer.h.${b}.mixer` }));
    return { fields: R, subs };
  }
  // Mamba-SWA-MLP: [mamba, attention, mlp] per block
  if (kinds.length % 3 === 0 && kinds.every((k, i) => (i % 3 === 0 ? k === 'mamba' : i % 3 === 1 ? isAttn(k) : k === 'mlp'))) {
    const n = kinds.length / 3;
    Object.assign(R, { n_layer: n, mamba_swa_mlp: true, mb_per_layer: -1, mlp: true });
    setAttention(Array.from({ length: n }, (_, b) => [b, kinds[3 * b + 1]] as [number, SublayerKind]));
  } else {
    // [mixer, mlp] per block (mlp: true), or [mixer] per block (mlp: false)
    let mixers: SublayerKind[];
    if (kinds.length % 2 === 0 && kinds.every((k, i) => (i % 2 === 0 ? k !== 'mlp' : k === 'mlp'))) {
      mixers = kinds.filter((_, i) => i % 2 === 0);
      R.mlp = true;
    } else if (!kinds.includes('mlp')) {
      mixers = kinds;
      R.mlp = false;
    } else {
      return bad(`its layout [${kinds.join(', ')}] is neither [mixer, mlp] per block, [mixer] per block, nor [mamba, attention, mlp] per block`);
    }
    const n = mixers.length;
    R.n_layer = n;
    const mambaAt = mixers.map((k) => k === 'mamba');
    let mb = -1;
    if (mambaAt.some(Boolean)) {
      for (let p = 1; p <= n; p++) if (mambaAt.every((m, b) => m === (b % p === 0))) { mb = p; break; }
    }
    if (mambaAt.some(Boolean) && mb < 0) {
      R.attn_layer_pos = `[${mixers.map((k, b) => (k === 'mamba' ? -1 : b)).filter((b) => b >= 0).join(', ')}]`;
    }
    R.mb_per_layer = mb;
    setAttention(mixers.map((k, b) => [b, k] as [number, SublayerKind]).filter(([, k]) => isAttn(k)));
  }
  R.head_size = d / config.nHeads;
  const { subs, kinds: check } = referenceLayout(R);
  if (check.length !== kinds.length || check.some((k, i) => k !== kinds[i])) {
    bad(`internal: the chosen reference fields give layout [${check.join(', ')}], not [${kinds.join(', ')}]`);
  }
  return { fields: R, subs };
}

function exportReference(config: ModelConfig, opts: ReferenceExportOptions): { configJson: Json; tensors: TensorMapping[] } {
  const { fields, subs } = referenceConfigFor(config, opts);
  const pairs = pairNames(config, subs, { embed: 'transformer.wte.weight', normF: 'transformer.ln_f.weight', head: 'lm_head.weight' });
  const tensors = pairs.map(exportMapping);
  if (config.tieEmbeddings) {
    const spec = { name: 'embed.weight', shape: [config.vocabSize, config.dModel] };
    tensors.unshift({ name: 'lm_head.weight', shape: spec.shape, source: spec.name, sourceShape: spec.shape, transform: { kind: 'copy' } });
  }
  return { configJson: fields, tensors };
}

// ---------------------------------------------------------------------------------------------------
// Public entry points

/** Reads a checkpoint's config.json (parsed) and tensor shapes into a ModelConfig and a tensor mapping. */
export function planImport(cfg: unknown, shapes: Shapes, opts: ImportOptions = {}): ImportPlan {
  const format = detectFormat(cfg);
  const c = cfg as Json;
  switch (format) {
    case 'samba-lm': return importSambaLm(c, shapes);
    case 'hf-mamba': return importHfMamba(c, shapes);
    case 'samba-reference': return importReference(c, shapes, opts);
  }
}

/** Just the ModelConfig of a checkpoint (needs the tensor shapes: the Mamba sizes come from them). */
export function configFromCheckpoint(cfg: unknown, shapes: Shapes, opts: ImportOptions = {}): ModelConfig {
  return planImport(cfg, shapes, opts).config;
}

export type SaveDtype = 'f32' | 'f16' | 'bf16';

export interface ExportOptions extends ReferenceExportOptions {
  format: CheckpointFormat;
  /** Recorded in config.json (the caller writes the tensors in this dtype). Default 'f32'. */
  dtype?: SaveDtype;
  /** samba-lm format: the tokenizer to record in config.json. */
  tokenizer?: TokenizerSpec;
}

export interface ExportPlan {
  format: CheckpointFormat;
  configJson: Json;
  /** One entry per tensor to write, in order; `name` is the file's name, `source` the samba-lm name. */
  tensors: TensorMapping[];
}

const TORCH_DTYPE: Record<SaveDtype, string> = { f32: 'float32', f16: 'float16', bf16: 'bfloat16' };

/** The config.json and the list of tensors to write a model in `opts.format`. */
export function planExport(config: ModelConfig, opts: ExportOptions): ExportPlan {
  validateConfig(config);
  const dtype = opts.dtype ?? 'f32';
  if (!(dtype in TORCH_DTYPE)) throw new CheckpointError(`unknown dtype "${dtype}" (f32, f16 or bf16)`);
  switch (opts.format) {
    case 'samba-lm': {
      const tok = tokenizerField(opts.tokenizer);
      const configJson: Json = { format: 'samba-lm', version: SAMBA_LM_FORMAT_VERSION, model: config, dtype, ...(tok !== undefined ? { tokenizer: tok } : {}) };
      const tensors = paramSpecs(config).map((s) => ({ name: s.name, shape: s.shape, source: s.name, sourceShape: s.shape, transform: { kind: 'copy' } as Transform }));
      return { format: 'samba-lm', configJson, tensors };
    }
    case 'hf-mamba': return { format: 'hf-mamba', ...exportHfMamba(config, TORCH_DTYPE[dtype]) };
    case 'samba-reference': return { format: 'samba-reference', ...exportReference(config, opts) };
    default: throw new CheckpointError(`unknown checkpoint format "${String(opts.format)}" (${CHECKPOINT_FORMATS.join(', ')})`);
  }
}

/** Reorders fused qkv rows between the reference's per-group layout and samba-lm's [q; k; v]. */
export function permuteQkv(src: Float32Array, nHeads: number, nKvHeads: number, headDim: number, direction: 'grouped-to-split' | 'split-to-grouped'): Float32Array {
  const rows = (nHeads + 2 * nKvHeads) * headDim;
  if (src.length % rows !== 0) throw new CheckpointError(`qkv weight of ${src.length} values is not ${rows} rows`);
  const rowLen = (src.length / rows) * headDim; // one head's rows
  const qpk = nHeads / nKvHeads;
  const out = new Float32Array(src.length);
  for (let g = 0; g < nKvHeads; g++) {
    for (let s = 0; s < qpk + 2; s++) {
      const grouped = (g * (qpk + 2) + s) * rowLen;
      const split = (s < qpk ? g * qpk + s : s === qpk ? nHeads + g : nHeads + nKvHeads + g) * rowLen;
      if (direction === 'grouped-to-split') out.set(src.subarray(grouped, grouped + rowLen), split);
      else out.set(src.subarray(split, split + rowLen), grouped);
    }
  }
  return out;
}

/** Applies a mapping's transform to the source data (the result may be `data` itself for copies). */
export function applyTransform(m: TensorMapping, data: Float32Array | undefined): Float32Array {
  const n = m.shape.reduce((a, b) => a * b, 1);
  if (m.transform.kind === 'zeros') return new Float32Array(n);
  if (!data) throw new CheckpointError(`no data for tensor ${m.source}`);
  if (data.length !== n) throw new CheckpointError(`tensor ${m.source} has ${data.length} values, expected ${n} (shape ${fmtShape(m.sourceShape)} -> ${m.name} ${fmtShape(m.shape)})`);
  switch (m.transform.kind) {
    case 'copy': return data;
    case 'qkv-grouped-to-split': return permuteQkv(data, m.transform.nHeads, m.transform.nKvHeads, m.transform.headDim, 'grouped-to-split');
    case 'qkv-split-to-grouped': return permuteQkv(data, m.transform.nHeads, m.transform.nKvHeads, m.transform.headDim, 'split-to-grouped');
  }
}

/** Where a checkpoint's tensors come from: their shapes, and a reader giving float32 data. */
export interface TensorSource {
  shapes: Shapes;
  read(name: string): Promise<Float32Array> | Float32Array;
}

export interface OpenedCheckpoint extends ImportPlan {
  rawConfig: Json;
  /** samba-lm parameters in paramSpecs() order. */
  specs: ParamSpec[];
  /** One samba-lm parameter, read and converted. */
  read(name: string): Promise<Float32Array>;
  /** Every parameter, one at a time (upload each and drop it: only one is live at a time). */
  forEachTensor(cb: (name: string, shape: number[], data: Float32Array) => void | Promise<void>): Promise<void>;
}

/** Opens a checkpoint from its config.json and a tensor source (browser or Node). */
export function openCheckpoint(cfg: unknown, source: TensorSource, opts: ImportOptions = {}): OpenedCheckpoint {
  const plan = planImport(cfg, source.shapes, opts);
  const byName = new Map(plan.tensors.map((t) => [t.name, t]));
  const read = async (name: string): Promise<Float32Array> => {
    const m = byName.get(name);
    if (!m) throw new CheckpointError(`no parameter named ${name} in this ${describe(plan.config)}`);
    return applyTransform(m, m.transform.kind === 'zeros' ? undefined : await source.read(m.source));
  };
  return {
    ...plan,
    rawConfig: cfg as Json,
    specs: paramSpecs(plan.config),
    read,
    async forEachTensor(cb) {
      for (const m of plan.tensors) await cb(m.name, m.shape, await read(m.name));
    },
  };
}

/** A TensorSource over in-memory safetensors files (e.g. fetched in a browser; shards allowed). */
export function bufferSource(...files: Uint8Array[]): TensorSource {
  const owner = new Map<string, SafetensorsBuffer>();
  const shapes = new Map<string, number[]>();
  for (const bytes of files) {
    const b = new SafetensorsBuffer(bytes);
    for (const t of b.header.tensors) {
      if (owner.has(t.name)) throw new SafetensorsError(`tensor "${t.name}" appears in two files`);
      owner.set(t.name, b);
      shapes.set(t.name, t.shape);
    }
  }
  return {
    shapes,
    read: (name) => {
      const b = owner.get(name);
      if (!b) throw new CheckpointError(`no tensor ${name} in the checkpoint`);
      return b.float32(name);
    },
  };
}

const SAVE_DTYPE: Record<SaveDtype, WriteDtype> = { f32: 'F32', f16: 'F16', bf16: 'BF16' };

/** Writes a model in memory (browser downloads): config.json's object and model.safetensors' bytes. */
export function serializeCheckpoint(
  config: ModelConfig, getTensor: (name: string) => Float32Array, opts: ExportOptions,
): { configJson: Json; safetensors: Uint8Array } {
  const plan = planExport(config, opts);
  const dtype = SAVE_DTYPE[opts.dtype ?? 'f32'];
  const safetensors = serializeSafetensors(plan.tensors.map((m) => ({
    name: m.name, shape: m.shape, dtype, data: applyTransform(m, getTensor(m.source)),
  })), checkpointMetadata(plan.format));
  return { configJson: plan.configJson, safetensors };
}

/** The safetensors __metadata__ samba-lm writes ("format": "pt" keeps transformers' loader happy). */
export function checkpointMetadata(format: CheckpointFormat): Record<string, string> {
  return { format: 'pt', producer: 'samba-lm', checkpoint_format: format };
}
