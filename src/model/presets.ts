// Named model configurations: the Samba paper's models and baselines at full size, plus tiny ones
// (d 64) for tests. Every preset is built with makeConfig; the metadata says where its shapes come
// from: a config of the reference code (microsoft/Samba lit_gpt/config.py, by name), a table of the
// paper (arXiv 2406.07522, ICLR-2025 numbering), or derived here where neither defines one.
//
// Shared facts (reference code): vocabulary 32000 (already a multiple of the padding 64), RMSNorm eps
// 1e-5, no biases, RoPE base 10000 over the whole head, SWA window 2048 keys, head size 128.
// Tied embeddings exactly where the code sets `mamba_init` (or is pure Mamba): all Samba, Mamba,
// Mamba-SWA-MLP and Mamba-MLP configs and the 1.3B Llama baselines. The 438M Llama baselines and
// their GQA/MQA ablations have no `mamba_init` and are untied.
//
// The paper's 1.6–3.8B models exist only as table rows (Tables 11, 12). Their tying is not stated;
// it is chosen here as the option whose parameter total matches the paper's size label (see notes).

import { countParams, makeConfig, type ConfigInput, type ModelConfig, type SublayerKind } from './config.js';

export type PresetSource =
  | { kind: 'code'; config: string } // microsoft/Samba lit_gpt/config.py entry
  | { kind: 'paper'; table: string } // shapes from the paper only
  | { kind: 'derived'; from: string } // not defined by either; built here from the named source
  | { kind: 'test' }; // tiny preset for unit tests

export interface PresetInfo {
  name: string;
  /** How the paper names the model, e.g. "Samba 421M"; absent for tiny and derived presets it never mentions. */
  paperName?: string;
  source: PresetSource;
  /** The size the paper (or the reference config's name) states, rounded as there, e.g. 421e6. */
  statedParams?: number;
  /** Exact total parameters of the config (tied embedding counted once). */
  params: number;
  notes?: string;
}

interface Entry {
  input: ConfigInput;
  paperName?: string;
  source: PresetSource;
  statedParams?: number;
  notes?: string;
}

// ---------------------------------------------------------------------------------------------
// Building blocks

const SP = { vocabSize: 32000, window: 2048 } as const; // SlimPajama-era (Llama-2 tokenizer)
const D421 = { dModel: 1536, nHeads: 12, headDim: 128, mlpHidden: 4096 } as const;
const D13 = { dModel: 2304, nHeads: 18, headDim: 128, mlpHidden: 6144 } as const;
// Phi-2-data models (P Table 11/12): d 2048, vocab 50304, 32 q / 4 kv heads of 64, MLP "8196" read as 8192.
const PHI2 = { vocabSize: 50304, window: 2048, dModel: 2048, nHeads: 32, nKvHeads: 4, headDim: 64, mlpHidden: 8192 } as const;

/** [mixer, mlp] per block, with full attention at the given blocks and Mamba elsewhere (`attn_layer_pos`). */
function mambaMlpWithAttention(nBlocks: number, attnAt: number[]): SublayerKind[] {
  const out: SublayerKind[] = [];
  for (let b = 0; b < nBlocks; b++) out.push(attnAt.includes(b) ? 'attn' : 'mamba', 'mlp');
  return out;
}

/** [mixer, mlp] per block: SWA at even blocks, full attention at odd ones (`full_per_layer=2`). */
function swaFullAlternating(nBlocks: number): SublayerKind[] {
  const out: SublayerKind[] = [];
  for (let b = 0; b < nBlocks; b++) out.push(b % 2 === 0 ? 'swa' : 'attn', 'mlp');
  return out;
}

const code = (config: string): PresetSource => ({ kind: 'code', config });
const paper = (table: string): PresetSource => ({ kind: 'paper', table });

// ---------------------------------------------------------------------------------------------
// The table

const ENTRIES: Record<string, Entry> = {
  // --- Samba, SlimPajama scale (P Table 3; S Samba_421M / Samba_1.3B) ---
  'samba-421m': {
    input: { architecture: 'samba', nBlocks: 12, ...D421, ...SP },
    paperName: 'Samba 421M', source: code('Samba_421M'), statedParams: 421e6,
  },
  'samba-421m-nope': {
    input: { architecture: 'samba', nBlocks: 12, ...D421, ...SP, rope: false },
    paperName: 'Samba-NoPE 421M', source: code('Samba_421M_nope'), statedParams: 421e6,
  },
  'samba-1.3b': {
    input: { architecture: 'samba', nBlocks: 18, ...D13, ...SP },
    paperName: 'Samba 1.3B', source: code('Samba_1.3B'), statedParams: 1.3e9,
  },
  'samba-1.3b-nope': {
    input: { architecture: 'samba', nBlocks: 18, ...D13, ...SP, rope: false },
    paperName: 'Samba-NoPE 1.3B', source: code('Samba_1.3B_nope'), statedParams: 1.3e9,
  },
  // Head ablations (P Table 6): MLP widened to 4608 to keep the size.
  'samba-421m-gqa2': {
    input: { architecture: 'samba', nBlocks: 12, ...D421, ...SP, nKvHeads: 2, mlpHidden: 4608 },
    paperName: 'Samba 12Q/2KV', source: code('Samba_421M_gqa2'),
  },
  'samba-421m-gqa4': {
    input: { architecture: 'samba', nBlocks: 12, ...D421, ...SP, nKvHeads: 4, mlpHidden: 4608 },
    paperName: 'Samba 12Q/4KV', source: code('Samba_421M_gqa4'),
  },
  'samba-421m-mqa': {
    input: { architecture: 'samba', nBlocks: 12, ...D421, ...SP, nKvHeads: 1, mlpHidden: 4608 },
    paperName: 'Samba 12Q/1KV', source: code('Samba_421M_mqa'),
  },
  'samba-421m-mqa6': {
    input: { architecture: 'samba', nBlocks: 12, ...D421, ...SP, nHeads: 6, nKvHeads: 1, headDim: 256, mlpHidden: 4608 },
    paperName: 'Samba 6Q/1KV (head 256)', source: code('Samba_421M_mqa6'),
  },
  'samba-421m-w1024': {
    input: { architecture: 'samba', nBlocks: 12, ...D421, ...SP, window: 1024 },
    source: code('Samba_421M_1k_window'), notes: 'window 1024; no results in the paper',
  },
  'samba-421m-w512': {
    input: { architecture: 'samba', nBlocks: 12, ...D421, ...SP, window: 512 },
    source: code('Samba_421M_512_window'), notes: 'window 512; no results in the paper',
  },

  // --- Samba, Phi data (P Table 12; not in the public code) ---
  'samba-1.7b': {
    input: { architecture: 'samba', nBlocks: 24, ...PHI2 },
    paperName: 'Samba 1.7B', source: paper('Table 12'), statedParams: 1.7e9,
    notes: 'tying not stated; tied assumed (1.74B; untied would be 1.85B). MLP "8196" in the paper read as 8192',
  },
  'samba-3.8b': {
    input: {
      architecture: 'samba', nBlocks: 32, dModel: 2816, nHeads: 11, nKvHeads: 1, headDim: 256, mlpHidden: 9984,
      vocabSize: 32064, window: 2048,
    },
    paperName: 'Samba 3.8B', source: paper('Table 12'), statedParams: 3.8e9,
    notes: 'tying not stated; tied assumed (3.86B; untied would be 3.95B). Phi-3 vocabulary 32064',
  },

  // --- Llama-2 baselines (P Table 3) ---
  'llama-438m': {
    input: { architecture: 'llama', nBlocks: 12, ...D421, ...SP, tieEmbeddings: false },
    paperName: 'Llama-2 438M', source: code('LLaMA_438M'), statedParams: 438e6,
  },
  'llama-438m-swa': {
    input: { architecture: 'swa', nBlocks: 12, ...D421, ...SP, tieEmbeddings: false },
    paperName: 'Llama-2-SWA 438M', source: code('LLaMA_438M_SWA'), statedParams: 438e6,
  },
  'llama-438m-swa-full': {
    input: { architecture: 'swa', nBlocks: 12, ...D421, ...SP, tieEmbeddings: false, layout: swaFullAlternating(12) },
    source: code('LLaMA_438M_SWA_full'), notes: 'SWA at even blocks, full attention at odd ones; no results in the paper',
  },
  'llama-438m-swa-gqa2': {
    input: { architecture: 'swa', nBlocks: 12, ...D421, ...SP, tieEmbeddings: false, nKvHeads: 2, mlpHidden: 4608 },
    paperName: 'Llama-2-SWA 12Q/2KV', source: code('LLaMA_438M_SWA_gqa2'),
  },
  'llama-438m-swa-gqa4': {
    input: { architecture: 'swa', nBlocks: 12, ...D421, ...SP, tieEmbeddings: false, nKvHeads: 4, mlpHidden: 4608 },
    paperName: 'Llama-2-SWA 12Q/4KV', source: code('LLaMA_438M_SWA_gqa4'),
  },
  'llama-438m-swa-mqa': {
    input: { architecture: 'swa', nBlocks: 12, ...D421, ...SP, tieEmbeddings: false, nKvHeads: 1, mlpHidden: 4608 },
    paperName: 'Llama-2-SWA 12Q/1KV', source: code('LLaMA_438M_SWA_mqa'),
  },
  'llama-438m-swa-mqa6': {
    input: {
      architecture: 'swa', nBlocks: 12, ...D421, ...SP, tieEmbeddings: false, nHeads: 6, nKvHeads: 1, headDim: 256, mlpHidden: 4608,
    },
    paperName: 'Llama-2-SWA 6Q/1KV (head 256)', source: code('LLaMA_438M_SWA_mqa6'),
  },
  'llama-1.3b': {
    input: { architecture: 'llama', nBlocks: 20, ...D13, ...SP },
    paperName: 'Llama-2 1.3B', source: code('LLaMA_1.3B'), statedParams: 1.3e9,
  },
  'llama-1.3b-swa': {
    input: { architecture: 'swa', nBlocks: 20, ...D13, ...SP },
    paperName: 'Llama-2-SWA 1.3B', source: code('LLaMA_1.3B_SWA'), statedParams: 1.3e9,
  },

  // --- Pure Mamba (mamba_ssm-style blocks, no MLP) ---
  'mamba-370m': {
    input: { architecture: 'mamba', nBlocks: 48, dModel: 1024, ...SP },
    source: code('Mamba_370M'),
    notes: '352.8M with the 32000 vocabulary (the name follows mamba_ssm\'s 370M, which has a 50280 vocabulary); not in the paper',
  },
  'mamba-430m': {
    input: { architecture: 'mamba', nBlocks: 60, dModel: 1024, ...SP },
    paperName: 'Mamba 432M', source: code('Mamba_430M'), statedParams: 432e6,
  },
  'mamba-1.3b': {
    input: { architecture: 'mamba', nBlocks: 48, dModel: 2048, ...SP },
    paperName: 'Mamba 1.3B', source: code('Mamba_1.3B'), statedParams: 1.3e9,
  },

  // --- Mamba-SWA-MLP (one block = Mamba, SWA, MLP) ---
  'mamba-swa-mlp-400m': {
    input: { architecture: 'mamba-swa-mlp', nBlocks: 8, ...D421, ...SP },
    paperName: 'Mamba-SWA-MLP 400M', source: code('Mamba_SWA_MLP_400M'), statedParams: 400e6,
  },
  'mamba-swa-mlp-1.3b': {
    input: { architecture: 'mamba-swa-mlp', nBlocks: 12, ...D13, ...SP },
    paperName: 'Mamba-SWA-MLP 1.3B', source: code('Mamba_SWA_MLP_1.3B'), statedParams: 1.3e9,
  },

  // --- Mamba-MLP (every block Mamba + MLP; no named config in the code: `mb_per_layer=1`) ---
  'mamba-mlp-421m': {
    input: { architecture: 'mamba-mlp', nBlocks: 11, ...D421, ...SP },
    source: { kind: 'derived', from: 'Samba_421M widths with mb_per_layer=1' },
    notes: '11 blocks so that the size matches Samba 421M (420.9M); 12 blocks would be 454.7M',
  },
  'mamba-mlp-1.3b': {
    input: { architecture: 'mamba-mlp', nBlocks: 16, ...D13, ...SP },
    source: { kind: 'derived', from: 'Samba_1.3B widths with mb_per_layer=1' },
    notes: '16 blocks (1.29B) to match the 1.3B scale; not in the paper',
  },
  // Mamba-MLP with full attention at chosen blocks (P Table 5; `attn_layer_pos`, no window, tied).
  'mamba-mlp-449m-full0': {
    input: { architecture: 'mamba-mlp', nBlocks: 12, ...D421, ...SP, layout: mambaMlpWithAttention(12, [0]) },
    paperName: 'Mamba-MLP + full attention at block 0 (449M)', source: code('LLaMA_449M_full_mamba_0'), statedParams: 449e6,
  },
  'mamba-mlp-449m-full5': {
    input: { architecture: 'mamba-mlp', nBlocks: 12, ...D421, ...SP, layout: mambaMlpWithAttention(12, [5]) },
    paperName: 'Mamba-MLP + full attention at block 5 (449M)', source: code('LLaMA_449M_full_mamba_5'), statedParams: 449e6,
  },
  'mamba-mlp-449m-full11': {
    input: { architecture: 'mamba-mlp', nBlocks: 12, ...D421, ...SP, layout: mambaMlpWithAttention(12, [11]) },
    paperName: 'Mamba-MLP + full attention at block 11 (449M)', source: code('LLaMA_449M_full_mamba_11'), statedParams: 449e6,
  },
  'mamba-mlp-443m-full1-5': {
    input: { architecture: 'mamba-mlp', nBlocks: 12, ...D421, ...SP, layout: mambaMlpWithAttention(12, [1, 5]) },
    paperName: 'Mamba-MLP + full attention at blocks 1, 5 (443M)', source: code('LLaMA_443M_full_mamba_1,5'), statedParams: 443e6,
  },

  // --- Phi-2-data baselines (P Tables 2 and 11; not in the public code) ---
  'llama3-1.6b': {
    input: { architecture: 'llama', nBlocks: 24, ...PHI2, tieEmbeddings: false },
    paperName: 'Llama-3 1.6B', source: paper('Table 11'), statedParams: 1.6e9,
    notes: 'untied assumed: 1.64B untied vs 1.54B tied',
  },
  'mistral-1.6b': {
    input: { architecture: 'swa', nBlocks: 24, ...PHI2, tieEmbeddings: false },
    paperName: 'Mistral 1.6B', source: paper('Table 11'), statedParams: 1.6e9,
    notes: 'untied assumed: 1.64B untied vs 1.54B tied',
  },
  'mamba-1.8b': {
    input: { architecture: 'mamba', nBlocks: 64, dModel: 2048, vocabSize: 50304, window: 2048 },
    paperName: 'Mamba 1.8B', source: paper('Table 11'), statedParams: 1.8e9,
    notes: 'tied assumed: 1.80B tied vs 1.90B untied',
  },
  'mamba-swa-mlp-1.6b': {
    input: { architecture: 'mamba-swa-mlp', nBlocks: 18, ...PHI2 },
    paperName: 'Mamba-SWA-MLP 1.6B', source: paper('Table 11'), statedParams: 1.6e9,
    notes: 'tied assumed: 1.65B tied vs 1.76B untied; the paper\'s "1.6B" is 1.65B rounded down',
  },
  'mamba-mlp-1.9b': {
    input: { architecture: 'mamba-mlp', nBlocks: 24, ...PHI2 },
    paperName: 'Mamba-MLP 1.9B', source: paper('Table 11'), statedParams: 1.9e9,
    notes: 'tied assumed: 1.95B tied vs 2.05B untied',
  },

  // --- Tiny presets for tests: d 64, heads of 16, vocabulary 256 ---
  'samba-tiny': {
    input: { architecture: 'samba', vocabSize: 256, dModel: 64, nBlocks: 4, nHeads: 4, nKvHeads: 2, headDim: 16, mlpHidden: 176, window: 16 },
    source: { kind: 'test' }, notes: 'GQA 4/2',
  },
  'samba-nope-tiny': {
    input: {
      architecture: 'samba', vocabSize: 256, dModel: 64, nBlocks: 4, nHeads: 4, nKvHeads: 4, headDim: 16, mlpHidden: 176, window: 16, rope: false,
    },
    source: { kind: 'test' }, notes: 'MHA, no RoPE',
  },
  'mamba-swa-mlp-tiny': {
    input: { architecture: 'mamba-swa-mlp', vocabSize: 256, dModel: 64, nBlocks: 2, nHeads: 4, nKvHeads: 1, headDim: 16, mlpHidden: 128, window: 8 },
    source: { kind: 'test' }, notes: 'MQA',
  },
  'mamba-mlp-tiny': {
    input: { architecture: 'mamba-mlp', vocabSize: 256, dModel: 64, nBlocks: 3, nHeads: 4, headDim: 16, mlpHidden: 128, window: 16 },
    source: { kind: 'test' },
  },
  'mamba-tiny': {
    input: { architecture: 'mamba', vocabSize: 256, dModel: 64, nBlocks: 4, nHeads: 4, headDim: 16, mlpHidden: 128, window: 16 },
    source: { kind: 'test' },
  },
  'llama-tiny': {
    input: { architecture: 'llama', vocabSize: 256, dModel: 64, nBlocks: 2, nHeads: 4, nKvHeads: 4, headDim: 16, mlpHidden: 176, window: 16 },
    source: { kind: 'test' }, notes: 'full attention, MHA',
  },
  'swa-tiny': {
    input: { architecture: 'swa', vocabSize: 256, dModel: 64, nBlocks: 2, nHeads: 4, nKvHeads: 2, headDim: 16, mlpHidden: 128, window: 8 },
    source: { kind: 'test' }, notes: 'GQA 4/2',
  },
};

// ---------------------------------------------------------------------------------------------

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o as object)) deepFreeze(v);
  }
  return o;
}

/** Every preset, frozen. Use getPreset for a mutable copy. */
export const PRESETS: Record<string, ModelConfig> = Object.freeze(
  Object.fromEntries(Object.entries(ENTRIES).map(([name, e]) => [name, deepFreeze(makeConfig(e.input))])),
);

export const PRESET_NAMES: readonly string[] = Object.freeze(Object.keys(ENTRIES));

function resolve(name: string): string {
  if (Object.hasOwn(ENTRIES, name)) return name;
  const lower = name.trim().toLowerCase();
  if (Object.hasOwn(ENTRIES, lower)) return lower;
  throw new Error(`unknown model preset "${name}" (known: ${PRESET_NAMES.join(', ')})`);
}

export function hasPreset(name: string): boolean {
  return Object.hasOwn(ENTRIES, name) || Object.hasOwn(ENTRIES, name.trim().toLowerCase());
}

/** A fresh, mutable copy of the named preset; throws, listing the known names, for an unknown one. */
export function getPreset(name: string): ModelConfig {
  return structuredClone(PRESETS[resolve(name)]) as ModelConfig;
}

/** Where a preset comes from and how large it is. */
export function describePreset(name: string): PresetInfo {
  const key = resolve(name), e = ENTRIES[key];
  return {
    name: key,
    ...(e.paperName !== undefined ? { paperName: e.paperName } : {}),
    source: { ...e.source },
    ...(e.statedParams !== undefined ? { statedParams: e.statedParams } : {}),
    params: countParams(PRESETS[key]),
    ...(e.notes !== undefined ? { notes: e.notes } : {}),
  };
}
