// One config describes every architecture of the Samba paper. A model is a stack of pre-norm
// residual sub-layers, x ← x + Sublayer(RMSNorm(x)), which is how the paper counts "layers":
//   samba          [mamba, mlp, swa, mlp] × n/2      (Mamba first, SWA last)
//   mamba-swa-mlp  [mamba, swa, mlp] × n
//   mamba-mlp      [mamba, mlp] × n
//   mamba          [mamba] × n                        (mamba_ssm style, no MLP)
//   llama          [attn, mlp] × n                    (full causal attention)
//   swa            [swa, mlp] × n                     (Llama-2-SWA / Mistral style)
// where n = nBlocks, the reference code's n_layer.

export const ARCHITECTURES = ['samba', 'mamba-swa-mlp', 'mamba-mlp', 'mamba', 'llama', 'swa'] as const;
export type Architecture = (typeof ARCHITECTURES)[number];
export type SublayerKind = 'mamba' | 'swa' | 'attn' | 'mlp';

export interface MambaConfig {
  dState: number; // N = 16
  dConv: number; // K = 4
  expand: number; // d_inner = expand · dModel
  dtRank: number; // R = ceil(dModel / 16)
}

export interface ModelConfig {
  architecture: Architecture;
  vocabSize: number; // rows of the embedding (padded vocabulary)
  dModel: number;
  nBlocks: number;
  nHeads: number;
  nKvHeads: number; // = nHeads: MHA, 1: MQA, between: GQA
  headDim: number;
  mlpHidden: number; // SwiGLU intermediate size
  window: number; // SWA keys per query, itself included
  rope: boolean; // false: Samba-NoPE
  ropeBase: number;
  normEps: number;
  tieEmbeddings: boolean;
  mamba: MambaConfig;
  /** Explicit sub-layer list; overrides the architecture's pattern (e.g. Mamba-MLP with full attention at chosen blocks). */
  layout?: SublayerKind[];
}

export type ConfigInput = Partial<Omit<ModelConfig, 'mamba'>> & { architecture: Architecture; mamba?: Partial<MambaConfig> } & Pick<ModelConfig, 'dModel' | 'nBlocks' | 'vocabSize'>;

/** Fills defaults (the reference's: head 128, MLP 8/3·d rounded, window 2048, RoPE base 10000, eps 1e-5, tied). */
export function makeConfig(c: ConfigInput): ModelConfig {
  const nHeads = c.nHeads ?? Math.max(1, Math.round(c.dModel / 128));
  const cfg: ModelConfig = {
    architecture: c.architecture,
    vocabSize: c.vocabSize,
    dModel: c.dModel,
    nBlocks: c.nBlocks,
    nHeads,
    nKvHeads: c.nKvHeads ?? nHeads,
    headDim: c.headDim ?? c.dModel / nHeads,
    mlpHidden: c.mlpHidden ?? Math.ceil((8 * c.dModel) / 3 / 256) * 256,
    window: c.window ?? 2048,
    rope: c.rope ?? true,
    ropeBase: c.ropeBase ?? 10000,
    normEps: c.normEps ?? 1e-5,
    tieEmbeddings: c.tieEmbeddings ?? true,
    mamba: {
      dState: c.mamba?.dState ?? 16,
      dConv: c.mamba?.dConv ?? 4,
      expand: c.mamba?.expand ?? 2,
      dtRank: c.mamba?.dtRank ?? Math.ceil(c.dModel / 16),
    },
    ...(c.layout ? { layout: c.layout } : {}),
  };
  validateConfig(cfg);
  return cfg;
}

export function validateConfig(c: ModelConfig): void {
  const bad = (msg: string) => { throw new Error(`invalid model config: ${msg}`); };
  if (!ARCHITECTURES.includes(c.architecture)) bad(`unknown architecture "${c.architecture}" (known: ${ARCHITECTURES.join(', ')})`);
  for (const k of ['vocabSize', 'dModel', 'nBlocks', 'nHeads', 'nKvHeads', 'headDim', 'mlpHidden', 'window'] as const) {
    if (!Number.isInteger(c[k]) || c[k] <= 0) bad(`${k} must be a positive integer, got ${c[k]}`);
  }
  if (c.nHeads % c.nKvHeads !== 0) bad(`nHeads (${c.nHeads}) must be a multiple of nKvHeads (${c.nKvHeads})`);
  if (c.headDim % 2 !== 0) bad(`headDim must be even for RoPE, got ${c.headDim}`);
  const m = c.mamba;
  for (const k of ['dState', 'dConv', 'expand', 'dtRank'] as const) {
    if (!Number.isInteger(m[k]) || m[k] <= 0) bad(`mamba.${k} must be a positive integer, got ${m[k]}`);
  }
  if (c.layout) {
    for (const k of c.layout) if (!['mamba', 'swa', 'attn', 'mlp'].includes(k)) bad(`unknown sub-layer kind "${k}"`);
  }
}

export function dInner(c: ModelConfig): number {
  return c.mamba.expand * c.dModel;
}

/** The sub-layers in order. */
export function layout(c: ModelConfig): SublayerKind[] {
  if (c.layout) return c.layout;
  const n = c.nBlocks, out: SublayerKind[] = [];
  for (let b = 0; b < n; b++) {
    switch (c.architecture) {
      case 'samba': out.push(b % 2 === 0 ? 'mamba' : 'swa', 'mlp'); break;
      case 'mamba-swa-mlp': out.push('mamba', 'swa', 'mlp'); break;
      case 'mamba-mlp': out.push('mamba', 'mlp'); break;
      case 'mamba': out.push('mamba'); break;
      case 'llama': out.push('attn', 'mlp'); break;
      case 'swa': out.push('swa', 'mlp'); break;
    }
  }
  return out;
}

export interface ParamSpec {
  name: string;
  shape: number[];
}

/**
 * Every parameter, under samba-lm's own names:
 *   embed.weight, head.weight (untied only), norm_f.weight,
 *   layers.{j}.norm.weight and, by kind,
 *   mamba: layers.{j}.mamba.{in_proj,conv1d,x_proj,dt_proj,out_proj}.weight, conv1d.bias, dt_proj.bias, A_log, D
 *          (conv1d.weight is stored [d_inner, d_conv])
 *   swa/attn: layers.{j}.attn.qkv.weight [(H + 2·Hkv)·hs, d] rows = all q heads, then all k heads, then all v heads;
 *             layers.{j}.attn.out.weight [d, H·hs]
 *   mlp: layers.{j}.mlp.{w1,w2,w3}.weight   (SwiGLU: w3(silu(w1 x) ⊙ w2 x))
 */
export function paramSpecs(c: ModelConfig): ParamSpec[] {
  const d = c.dModel, di = dInner(c), { dState: N, dConv: K, dtRank: R } = c.mamba;
  const specs: ParamSpec[] = [{ name: 'embed.weight', shape: [c.vocabSize, d] }];
  layout(c).forEach((kind, j) => {
    const p = `layers.${j}`;
    specs.push({ name: `${p}.norm.weight`, shape: [d] });
    if (kind === 'mamba') {
      specs.push(
        { name: `${p}.mamba.in_proj.weight`, shape: [2 * di, d] },
        { name: `${p}.mamba.conv1d.weight`, shape: [di, K] },
        { name: `${p}.mamba.conv1d.bias`, shape: [di] },
        { name: `${p}.mamba.x_proj.weight`, shape: [R + 2 * N, di] },
        { name: `${p}.mamba.dt_proj.weight`, shape: [di, R] },
        { name: `${p}.mamba.dt_proj.bias`, shape: [di] },
        { name: `${p}.mamba.A_log`, shape: [di, N] },
        { name: `${p}.mamba.D`, shape: [di] },
        { name: `${p}.mamba.out_proj.weight`, shape: [d, di] },
      );
    } else if (kind === 'mlp') {
      specs.push(
        { name: `${p}.mlp.w1.weight`, shape: [c.mlpHidden, d] },
        { name: `${p}.mlp.w2.weight`, shape: [c.mlpHidden, d] },
        { name: `${p}.mlp.w3.weight`, shape: [d, c.mlpHidden] },
      );
    } else {
      specs.push(
        { name: `${p}.attn.qkv.weight`, shape: [(c.nHeads + 2 * c.nKvHeads) * c.headDim, d] },
        { name: `${p}.attn.out.weight`, shape: [d, c.nHeads * c.headDim] },
      );
    }
  });
  specs.push({ name: 'norm_f.weight', shape: [d] });
  if (!c.tieEmbeddings) specs.push({ name: 'head.weight', shape: [c.vocabSize, d] });
  return specs;
}

export function countParams(c: ModelConfig): number {
  return paramSpecs(c).reduce((s, p) => s + p.shape.reduce((a, b) => a * b, 1), 0);
}
