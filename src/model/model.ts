// A Samba-family language model: embedding, a stack of pre-norm residual sub-layers
// (x ← x + Sublayer(RMSNorm(x)), the kinds given by the config's layout), a final RMSNorm and the
// LM head (tied to the embedding unless the config says otherwise).
//
// One forward() serves every use: the full pass over a batch (no state), prefill (a fresh state),
// streaming decode (T = 1 with a state) and continuing a prompt in chunks. With a state the cost
// per token does not depend on how many tokens came before, except for full-attention layers.
import type { Backend, Tensor } from '../core/backend.js';
import { dInner, layout, paramSpecs, type ModelConfig, type SublayerKind } from './config.js';
import { attention, attentionBackward, type AttentionCall, type AttentionSaved } from './attention.js';
import { mamba, mambaBackward, type MambaSaved, type MambaState } from './mamba.js';
import { mlp, mlpBackward, mlpInference, type Grads, type MlpSaved, type Params, type SublayerEnds, type TrainBackend } from './mlp.js';
import { ropeTables } from './rope.js';
import { initParams } from './init.js';
import { DecodeState, type SublayerState } from './state.js';

export interface ForwardOptions {
  /** Only the logits of each sequence's last position: [B, V] instead of [B·T, V]. */
  lastOnly?: boolean;
}

export interface LossAndGrads {
  /** Mean cross-entropy over the predictions with a target ≥ 0. */
  loss: number;
  /** Number of predictions it averages over. */
  count: number;
  /** ∂loss/∂parameter (times the loss scale, if one was given), by samba-lm parameter name. */
  grads: Map<string, Tensor>;
  /**
   * With `ssmStates` given: each Mamba layer's SSM state after the window, [B, d_inner, N] (kept;
   * the caller disposes them), indexed by layer like `ssmStates`; null for other layers.
   */
  ssmStates?: (Tensor | null)[];
}

export interface LossOptions {
  /** Multiplies the loss (and so the gradients): mixed precision. Default 1. */
  lossScale?: number;
  /**
   * Carried state (truncated backpropagation through time): per layer index, the SSM state each
   * Mamba layer starts this window from (null or missing: zeros). No gradient flows into it; the
   * conv and attention start fresh, so a window should begin at a document boundary.
   */
  ssmStates?: readonly (Tensor | null)[];
}

type Saved =
  | { kind: 'mamba'; s: MambaSaved }
  | { kind: 'attn'; s: AttentionSaved }
  | { kind: 'mlp'; s: MlpSaved };

/** Logit rows per cross-entropy chunk: bounds the [rows, V] logits alive at once. */
const LOSS_CHUNK_ELEMENTS = 1 << 24;

const FULL_ATTENTION_START = 256; // initial slots of a growing full-attention cache

/**
 * Parameters that serve only as matmul weights (x·wᵀ), the ones a compact f16 copy can stand in for
 * at inference: the projections of every sub-layer and an untied LM head (a tied head is also the
 * embedding table, which a lookup reads).
 */
export function isMatmulWeight(name: string): boolean {
  return /^layers\.\d+\.(mamba\.(in_proj|x_proj|dt_proj|out_proj)|attn\.(qkv|out)|mlp\.w[123])\.weight$/.test(name) || name === 'head.weight';
}

/** A Mamba mixer's parameters that the selective scan reads through a buffer derived from them. */
const SCAN_CONSTANTS = ['A_log', 'D', 'dt_proj.bias'];

export class SambaModel {
  readonly kinds: SublayerKind[];
  /** 'f16': the matmul weights are compact f16 copies (compactWeights): inference only. */
  weights: 'f32' | 'f16' = 'f32';
  /**
   * How new decoding states store attention keys and values: 'f16' halves the cache (a full-
   * attention model's memory at long context) and the bytes each decoded token reads from it, at
   * the cost of rounding them to halves. Mamba states stay f32.
   */
  kvCache: 'f32' | 'f16' = 'f32';

  constructor(
    readonly config: ModelConfig,
    readonly backend: Backend,
    /** Every parameter by name; the optimizer updates them in place (replacing one needs a new model: see layerLookups). */
    readonly params: Map<string, Tensor>,
  ) {
    this.kinds = layout(config);
    for (const spec of paramSpecs(config)) {
      const t = params.get(spec.name);
      if (!t) throw new Error(`model is missing parameter ${spec.name} ${JSON.stringify(spec.shape)}`);
      if (t.shape.join() !== spec.shape.join()) {
        throw new Error(`parameter ${spec.name} has shape [${t.shape.join(', ')}], the config needs [${spec.shape.join(', ')}]`);
      }
    }
  }

  /** A model from host arrays (one per parameter of paramSpecs), uploaded to the backend. */
  static fromHost(config: ModelConfig, backend: Backend, host: Map<string, Float32Array>): SambaModel {
    const params = new Map<string, Tensor>();
    for (const s of paramSpecs(config)) {
      const data = host.get(s.name);
      if (!data) throw new Error(`no values for parameter ${s.name}`);
      params.set(s.name, backend.keep(backend.tensor(data, s.shape)));
    }
    return new SambaModel(config, backend, params);
  }

  /**
   * Replaces every matmul weight by the backend's compact f16 form (halves weight memory and the
   * bytes each decoded token reads); the model can then run but not train. Weights already compact
   * (compacted one at a time as they loaded: modelFromCheckpoint) stay as they are. Returns the
   * bytes saved.
   */
  compactWeights(): number {
    const be = this.backend;
    if (!be.compactWeight) throw new Error(`the ${be.name} backend has no f16 weight storage (use --backend webgpu, or f32 weights)`);
    if (this.weights === 'f16') return 0;
    let saved = 0;
    for (const [name, t] of this.params) {
      if (!isMatmulWeight(name) || t.dtype === 'f16w') continue;
      const c = be.keep(be.compactWeight(t));
      be.dispose(t);
      this.params.set(name, c);
      saved += t.size * 2;
    }
    this.layerLookups.length = 0;
    this.weights = 'f16';
    const added = this.compactTiedHead();
    this.gatherWeights();
    return saved - added;
  }

  /**
   * Moves the parameters of an f16 (inference-only) model into a few large buffers where the
   * backend can (Backend.gatherWeights): fewer distinct buffers make each decoded token's commands
   * cheaper to record. The scan's constants stay apart: the backend caches a buffer derived from
   * each one's own storage.
   */
  gatherWeights(): void {
    const be = this.backend;
    if (!be.gatherWeights || this.weights !== 'f16') return;
    const names = [...this.params.keys()].filter((n) => !SCAN_CONSTANTS.some((c) => n.endsWith(`.${c}`)));
    const all = [...names.map((n) => this.param(n)), ...(this.headF16 ? [this.headF16] : [])];
    const gathered = be.gatherWeights(all).map((t) => be.keep(t));
    names.forEach((n, i) => this.params.set(n, gathered[i]));
    if (this.headF16) this.headF16 = gathered[names.length];
    this.layerLookups.length = 0;
  }

  /**
   * With tied embeddings, the output head reads the embedding table, which stays f32 for the
   * lookup: an f16 copy for the head matmul halves the largest single read of a decoded token.
   * Returns the bytes the copy adds. (loadModel calls it for models it loads with f16 weights.)
   */
  compactTiedHead(): number {
    const be = this.backend;
    if (!this.config.tieEmbeddings || this.headF16 || !be.compactWeight) return 0;
    const e = this.param('embed.weight');
    this.headF16 = be.keep(be.compactWeight(e));
    return e.size * 2;
  }

  private headF16: Tensor | null = null;

  /** A freshly initialised model, as the reference initialises one (see init.ts). */
  static random(config: ModelConfig, backend: Backend, seed: number): SambaModel {
    return SambaModel.fromHost(config, backend, initParams(config, seed));
  }

  private param(name: string): Tensor {
    const t = this.params.get(name);
    if (!t) throw new Error(`model is missing parameter ${name}`);
    return t;
  }

  /**
   * Each sub-layer's parameters by short name, looked up once: building the full names on every
   * call showed in the host's time to record a decoded token. Cleared when parameters are replaced.
   */
  private readonly layerLookups: Map<string, Tensor>[] = [];

  /** Sub-layer j's parameter under `key` in layerLookups, found by its full name on the first call. */
  private layerParam(j: number, key: string, fullName: () => string): Tensor {
    const m = (this.layerLookups[j] ??= new Map());
    let t = m.get(key);
    if (!t) m.set(key, (t = this.param(fullName())));
    return t;
  }

  private sublayerParams(j: number, kind: SublayerKind): Params {
    return (name) => this.layerParam(j, name, () => `layers.${j}.${kind === 'swa' || kind === 'attn' ? 'attn' : kind}.${name}`);
  }

  /** Sub-layer j's RMSNorm weight; j = the layer count: the final norm. */
  private normWeight(j: number): Tensor {
    return j < this.kinds.length ? this.layerParam(j, '#norm', () => `layers.${j}.norm.weight`) : this.param('norm_f.weight');
  }

  /** A fresh (empty) decoding state for B sequences. */
  newState(B: number): DecodeState {
    const be = this.backend, c = this.config, di = dInner(c);
    const layers = this.kinds.map((kind): SublayerState => {
      if (kind === 'mamba') {
        return { kind: 'mamba', conv: be.keep(be.zeros([B, di, c.mamba.dConv - 1])), ssm: be.keep(be.zeros([B, di, c.mamba.dState])) };
      }
      if (kind === 'mlp') return null;
      const capacity = kind === 'swa' ? c.window : FULL_ATTENTION_START;
      const F = c.nKvHeads * c.headDim;
      const zeros = () => be.keep(be.zeros([B, capacity, F], this.kvCache));
      return { kind: 'attn', growable: kind === 'attn', cache: { k: zeros(), v: zeros(), capacity } };
    });
    return new DecodeState(be, new Int32Array(B), layers);
  }

  /**
   * ids [B·T] (row-major [B, T]) → logits [B·T, V] (or [B, V] with lastOnly). With a state, the
   * tokens continue each sequence from state.pos and the state advances by T. The state is updated
   * in place (KV caches; SSM states the scan takes over), so if forward throws, discard the state.
   * The ids may also be a tensor on the backend (i32, or sampleRows's f32 ids), so that a sampled
   * token is fed back without a round trip to the host.
   */
  forward(ids: Int32Array | Tensor, B: number, T: number, state?: DecodeState, opts: ForwardOptions = {}): Tensor {
    const be = this.backend, c = this.config;
    const n = ids instanceof Int32Array ? ids.length : ids.size;
    if (n !== B * T || T < 1) throw new Error(`forward: ${n} ids do not form a batch of ${B} × ${T}`);
    if (ids instanceof Int32Array) {
      for (const id of ids) {
        if (!Number.isInteger(id) || id < 0 || id >= c.vocabSize) throw new Error(`token id ${id} is outside the vocabulary [0, ${c.vocabSize})`);
      }
    } else if (ids.dtype !== 'i32' && ids.dtype !== 'f32') throw new Error(`forward: ids on the backend must be i32 or f32, got ${ids.dtype}`);
    if (state && state.batch !== B) throw new Error(`forward: state holds ${state.batch} sequences, the batch has ${B}`);
    const pos0 = state ? Int32Array.from(state.pos) : new Int32Array(B);
    if (state) this.growCaches(state, Math.max(...pos0) + T);

    const { logits, mambaStates } = be.tidy(() => {
      const run = this.trunk(ids, B, T, pos0, state, false);
      let x = run.xLast; // the residual stream [B·T, d]
      if (opts.lastOnly && T > 1) x = be.gatherRows(x, Int32Array.from({ length: B }, (_, b) => b * T + T - 1)); // T = 1: every row is last
      const norm = { g: this.param('norm_f.weight'), eps: c.normEps }; // the final norm, inside the head's product
      return { logits: be.matmul(x, this.head(), { norm }), mambaStates: state ? run.mambaStates : [] }; // [rows, V]
    });

    if (state) {
      mambaStates.forEach((ms, j) => {
        const old = state.layers[j];
        if (!ms || old?.kind !== 'mamba') return;
        be.dispose(old.conv); be.dispose(old.ssm);
        state.layers[j] = { kind: 'mamba', conv: be.keep(ms.conv), ssm: be.keep(ms.ssm) };
      });
      for (let b = 0; b < B; b++) state.pos[b] += T;
    }
    return be.keep(logits);
  }

  private head(): Tensor {
    return this.config.tieEmbeddings ? (this.headF16 ?? this.param('embed.weight')) : this.param('head.weight');
  }

  /** Embedding, every sub-layer, final norm: h [B·T, d], with what the backward needs. */
  /**
   * Embedding, every sub-layer, final norm: h [B·T, d]. With `training`, also what the backward
   * needs (every sub-layer's activations); without, each sub-layer's intermediates are freed as
   * soon as it is done, so inference holds one sub-layer's activations at a time.
   */
  private trunk(ids: Int32Array | Tensor, B: number, T: number, pos0: Int32Array, state: DecodeState | undefined, training: boolean, ssmInit?: readonly (Tensor | null)[]) {
    const be = this.backend, c = this.config;
    const hasAttention = this.kinds.some((k) => k === 'swa' || k === 'attn');
    let rope: AttentionCall['rope'] = null;
    if (c.rope && hasAttention) {
      const r = ropeTables(pos0, T, c.headDim, c.ropeBase), half = c.headDim / 2;
      // -sin turns the backward's rotation back; inference needs none (one upload less per token)
      rope = { cos: be.tensor(r.cos, [B * T, half]), sin: be.tensor(r.sin, [B * T, half]), negSin: training ? be.tensor(r.sin.map((v) => -v), [B * T, half]) : null };
    }
    const idsT = ids instanceof Int32Array ? be.ids(ids, [B * T]) : ids;
    let x = be.embedding(this.param('embed.weight'), idsT); // [B·T, d]
    const mambaStates: (MambaState | null)[] = [], saved: Saved[] = [], inputs: Tensor[] = [];
    /**
     * f(xn), the sub-layer's output before the residual add, for xn [B·T, d]; or, with `ends`,
     * f(norm(x)) + x for the raw x (inference: the norm and add fused into f's products)
     */
    const body = (j: number, kind: SublayerKind, xn: Tensor, ends: SublayerEnds = {}) => {
      const p = this.sublayerParams(j, kind);
      const st = state?.layers[j] ?? null;
      if (kind === 'mamba') {
        // a decoding state's SSM state is replaced after the step (forward()), so the scan may reuse it
        const r = mamba(be, p, c, xn, B, T, st?.kind === 'mamba' ? st : ssmInit?.[j] ? { ssm: ssmInit[j]! } : null,
          { replacesState: !training && st?.kind === 'mamba', ends, inference: !training });
        return { y: r.out, ms: r.state as MambaState | null, sv: r.saved && ({ kind: 'mamba', s: r.saved } as Saved) };
      }
      if (kind === 'mlp') {
        if (!training) return { y: mlpInference(be, p, xn, ends), ms: null, sv: null }; // nothing to save: the fused path
        const r = mlp(be, p, xn);
        return { y: r.out, ms: null, sv: { kind: 'mlp', s: r.saved } as Saved };
      }
      const window = kind === 'swa' ? c.window : Infinity;
      const r = attention(be, p, c, xn, { B, T, pos0, rope, window, training }, st?.kind === 'attn' ? st.cache : null, ends);
      return { y: r.out, ms: null, sv: { kind: 'attn', s: r.saved } as Saved };
    };
    let h: Tensor | null = null;
    if (training) {
      // x_{j+1} = x_j + f_j(norm(x_j)), keeping what the backward pass needs
      this.kinds.forEach((kind, j) => {
        inputs.push(x);
        const r = body(j, kind, be.rmsNorm(x, this.normWeight(j), c.normEps));
        saved.push(r.sv!);
        mambaStates[j] = r.ms;
        x = be.add(x, r.y);
      });
      h = be.rmsNorm(x, this.normWeight(this.kinds.length), c.normEps); // [B·T, d]
    } else {
      // the same sums, each sub-layer handed its norm and residual add (fused into its first and
      // last products where the backend can), its temporaries freed as soon as it is done; the
      // final norm is left to the head's product (forward)
      this.kinds.forEach((kind, j) => {
        const prev = x;
        const r = be.tidy(() => body(j, kind, x, { norm: { g: this.normWeight(j), eps: c.normEps }, residual: x }));
        be.dispose(prev);
        x = r.y; // x_{j+1} = x_j + f_j(norm(x_j))
        mambaStates[j] = r.ms;
      });
    }
    return { h, xLast: x, idsT, mambaStates, saved, inputs };
  }

  /**
   * The mean next-token cross-entropy of ids [B, T] against targets [B, T] (a negative target is
   * not scored) and its gradient with respect to every parameter. Whole sequences, from a zero
   * state unless `opts.ssmStates` carries the Mamba layers' states in.
   */
  async lossAndGrads(ids: Int32Array, targets: Int32Array, B: number, T: number, opts: LossOptions = {}): Promise<LossAndGrads> {
    const lossScale = opts.lossScale ?? 1; // gradients come back multiplied by it (mixed precision)
    const be = this.backend as TrainBackend, c = this.config;
    if (typeof be.matmulTN !== 'function') throw new Error(`the ${be.name} backend has no training ops`);
    if (this.weights !== 'f32') throw new Error('this model holds f16 inference weights and cannot be trained: load it with f32 weights');
    if (targets.length !== B * T) throw new Error(`lossAndGrads: ${targets.length} targets for a batch of ${B} × ${T}`);
    for (const y of targets) if (y >= c.vocabSize) throw new Error(`target id ${y} is outside the vocabulary [0, ${c.vocabSize})`);
    const count = targets.reduce((n, y) => n + (y >= 0 ? 1 : 0), 0);
    if (count === 0) throw new Error('lossAndGrads: no targets to score');
    const carry = opts.ssmStates;
    if (carry) {
      carry.forEach((h, j) => {
        if (!h) return;
        if (this.kinds[j] !== 'mamba') throw new Error(`lossAndGrads: ssmStates[${j}] is given but layer ${j} is ${this.kinds[j] ?? 'missing'}, not mamba`);
        const want = [B, dInner(c), c.mamba.dState];
        if (h.shape.join() !== want.join()) throw new Error(`lossAndGrads: ssmStates[${j}] is [${h.shape}], expected [${want}]`);
      });
    }
    const { lossT, grads, ssmStates } = be.tidy(() => {
      const run = this.trunk(ids, B, T, new Int32Array(B), undefined, true, carry);
      const grads = new Map<string, Tensor>();
      const acc = (name: string, g: Tensor) => { const old = grads.get(name); grads.set(name, old ? be.add(old, g) : g); };
      // LM head + cross-entropy, in row chunks so [rows, V] logits stay bounded
      const M = B * T, V = c.vocabSize, rows = Math.max(1, Math.min(M, Math.floor(LOSS_CHUNK_ELEMENTS / V)));
      const headW = this.head(), dhParts: Tensor[] = [], lossParts: Tensor[] = [];
      for (let r0 = 0; r0 < M; r0 += rows) {
        const idx = Int32Array.from({ length: Math.min(rows, M - r0) }, (_, i) => r0 + i);
        const hc = be.gatherRows(run.h!, idx);
        const ce = be.crossEntropy(be.matmul(hc, headW), be.ids(targets.subarray(r0, r0 + idx.length), [idx.length]), lossScale / count);
        lossParts.push(ce.loss);
        dhParts.push(be.matmulNN(ce.dlogits, headW));
        acc(c.tieEmbeddings ? 'embed.weight' : 'head.weight', be.matmulTN(ce.dlogits, hc));
      }
      const lossT = lossParts.length === 1 ? lossParts[0] : lossParts.reduce((a, b) => be.add(a, b));
      const dh = dhParts.length === 1 ? dhParts[0] : be.concat(dhParts);
      const fin = be.rmsNormBackward(run.xLast, this.param('norm_f.weight'), dh, c.normEps);
      acc('norm_f.weight', fin.dg);
      let dx = fin.dx;
      for (let j = this.kinds.length - 1; j >= 0; j--) {
        const kind = this.kinds[j], sv = run.saved[j], p = this.sublayerParams(j, kind);
        const prefix = `layers.${j}.${kind === 'swa' || kind === 'attn' ? 'attn' : kind}.`;
        let r: { dx: Tensor; grads: Grads };
        if (sv.kind === 'mamba') r = mambaBackward(be, p, c, sv.s, dx);
        else if (sv.kind === 'mlp') r = mlpBackward(be, p, sv.s, dx);
        else r = attentionBackward(be, p, c, sv.s, dx);
        for (const [leaf, g] of r.grads) acc(prefix + leaf, g);
        const nb = be.rmsNormBackward(run.inputs[j], this.param(`layers.${j}.norm.weight`), r.dx, c.normEps);
        acc(`layers.${j}.norm.weight`, nb.dg);
        dx = be.add(dx, nb.dx); // residual: x_{j+1} = x_j + f(norm(x_j))
      }
      acc('embed.weight', be.embeddingBackward(dx, run.idsT, c.vocabSize));
      for (const [n, g] of grads) grads.set(n, be.keep(g));
      const ssmStates = carry ? this.kinds.map((_, j) => { const ms = run.mambaStates[j]; return ms ? be.keep(ms.ssm) : null; }) : undefined;
      return { lossT: be.keep(lossT), grads, ssmStates };
    });
    const loss = (await be.read(lossT))[0] / count;
    be.dispose(lossT);
    return ssmStates ? { loss, count, grads, ssmStates } : { loss, count, grads };
  }

  /** Full-attention caches double until they hold `needed` positions. */
  private growCaches(state: DecodeState, needed: number): void {
    const be = this.backend;
    for (const l of state.layers) {
      if (l?.kind !== 'attn' || !l.growable || l.cache.capacity >= needed) continue;
      let cap = l.cache.capacity;
      while (cap < needed) cap *= 2;
      const k = be.keep(be.resizeRows(l.cache.k, cap)), v = be.keep(be.resizeRows(l.cache.v, cap));
      be.dispose(l.cache.k); be.dispose(l.cache.v);
      l.cache = { k, v, capacity: cap };
    }
  }

  dispose(): void {
    for (const t of this.params.values()) this.backend.dispose(t);
    if (this.headF16) this.backend.dispose(this.headF16);
  }
}
