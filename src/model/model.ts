// A Samba-family language model: embedding, a stack of pre-norm residual sub-layers
// (x ← x + Sublayer(RMSNorm(x)), the kinds given by the config's layout), a final RMSNorm and the
// LM head (tied to the embedding unless the config says otherwise).
//
// One forward() serves every use: the full pass over a batch (no state), prefill (a fresh state),
// streaming decode (T = 1 with a state) and continuing a prompt in chunks. With a state the cost
// per token does not depend on how many tokens came before, except for full-attention layers.
import type { Backend, Tensor } from '../core/backend.js';
import { dInner, layout, paramSpecs, type ModelConfig, type SublayerKind } from './config.js';
import { attention } from './attention.js';
import { mamba, type MambaState } from './mamba.js';
import { mlp, type Params } from './mlp.js';
import { ropeTables } from './rope.js';
import { DecodeState, type SublayerState } from './state.js';

export interface ForwardOptions {
  /** Only the logits of each sequence's last position: [B, V] instead of [B·T, V]. */
  lastOnly?: boolean;
}

const FULL_ATTENTION_START = 256; // initial slots of a growing full-attention cache

export class SambaModel {
  readonly kinds: SublayerKind[];

  constructor(
    readonly config: ModelConfig,
    readonly backend: Backend,
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

  private param(name: string): Tensor {
    const t = this.params.get(name);
    if (!t) throw new Error(`model is missing parameter ${name}`);
    return t;
  }

  private sublayerParams(j: number, kind: SublayerKind): Params {
    const prefix = `layers.${j}.${kind === 'swa' || kind === 'attn' ? 'attn' : kind}.`;
    return (name) => this.param(prefix + name);
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
      return { kind: 'attn', growable: kind === 'attn', cache: { k: be.keep(be.zeros([B, capacity, F])), v: be.keep(be.zeros([B, capacity, F])), capacity } };
    });
    return new DecodeState(be, new Int32Array(B), layers);
  }

  /**
   * ids [B·T] (row-major [B, T]) → logits [B·T, V] (or [B, V] with lastOnly). With a state, the
   * tokens continue each sequence from state.pos and the state advances by T.
   */
  forward(ids: Int32Array, B: number, T: number, state?: DecodeState, opts: ForwardOptions = {}): Tensor {
    const be = this.backend, c = this.config;
    if (ids.length !== B * T || T < 1) throw new Error(`forward: ${ids.length} ids do not form a batch of ${B} × ${T}`);
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= c.vocabSize) throw new Error(`token id ${id} is outside the vocabulary [0, ${c.vocabSize})`);
    }
    if (state && state.batch !== B) throw new Error(`forward: state holds ${state.batch} sequences, the batch has ${B}`);
    const pos0 = state ? Int32Array.from(state.pos) : new Int32Array(B);
    if (state) this.growCaches(state, Math.max(...pos0) + T);

    const { logits, mambaStates } = be.tidy(() => {
      const rope = c.rope && this.kinds.some((k) => k !== 'mamba' && k !== 'mlp')
        ? (() => { const r = ropeTables(pos0, T, c.headDim, c.ropeBase); const half = c.headDim / 2; return { cos: be.tensor(r.cos, [B * T, half]), sin: be.tensor(r.sin, [B * T, half]) }; })()
        : null;
      let x = be.embedding(this.param('embed.weight'), be.ids(ids, [B * T])); // [B·T, d]
      const mambaStates: (MambaState | null)[] = [];
      this.kinds.forEach((kind, j) => {
        const xn = be.rmsNorm(x, this.param(`layers.${j}.norm.weight`), c.normEps);
        const p = this.sublayerParams(j, kind);
        const st = state?.layers[j] ?? null;
        let y: Tensor;
        if (kind === 'mamba') {
          const r = mamba(be, p, c, xn, B, T, st?.kind === 'mamba' ? st : null);
          mambaStates[j] = r.state;
          y = r.out;
        } else if (kind === 'mlp') {
          y = mlp(be, p, xn);
        } else {
          const window = kind === 'swa' ? c.window : Infinity;
          y = attention(be, p, c, xn, { B, T, pos0, rope, window }, st?.kind === 'attn' ? st.cache : null);
        }
        x = be.add(x, y);
      });
      let h = be.rmsNorm(x, this.param('norm_f.weight'), c.normEps); // [B·T, d]
      if (opts.lastOnly) h = be.gatherRows(h, Int32Array.from({ length: B }, (_, b) => b * T + T - 1));
      const head = c.tieEmbeddings ? this.param('embed.weight') : this.param('head.weight');
      return { logits: be.matmul(h, head), mambaStates: state ? mambaStates : [] }; // [rows, V]
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
  }
}
