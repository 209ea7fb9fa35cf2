// What a model remembers between calls when it streams: per Mamba sub-layer its conv window and
// SSM state, per attention sub-layer a ring buffer of post-RoPE keys and values. For Mamba and SWA
// its size is fixed at creation; only full-attention caches grow, as they must.
import { type Backend, type KvCache, type Tensor, tensorBytes } from '../core/backend.js';

export type SublayerState =
  | { kind: 'mamba'; conv: Tensor; ssm: Tensor } // conv [B, d_inner, K-1], ssm [B, d_inner, N]
  | { kind: 'attn'; cache: KvCache; growable: boolean }
  | null; // MLP: stateless

export class DecodeState {
  constructor(
    readonly backend: Backend,
    /** Tokens seen so far, per sequence: the absolute position of the next token. */
    readonly pos: Int32Array,
    readonly layers: SublayerState[],
  ) {}

  get batch(): number {
    return this.pos.length;
  }

  /** Bytes held on the backend. */
  bytes(): number {
    let n = 0;
    for (const l of this.layers) {
      if (l?.kind === 'mamba') n += tensorBytes(l.conv.size, l.conv.dtype) + tensorBytes(l.ssm.size, l.ssm.dtype);
      else if (l?.kind === 'attn') n += tensorBytes(l.cache.k.size, l.cache.k.dtype) + tensorBytes(l.cache.v.size, l.cache.v.dtype);
    }
    return n;
  }

  dispose(): void {
    for (const l of this.layers) {
      if (l?.kind === 'mamba') { this.backend.dispose(l.conv); this.backend.dispose(l.ssm); }
      else if (l?.kind === 'attn') { this.backend.dispose(l.cache.k); this.backend.dispose(l.cache.v); }
    }
  }

  /** Stacks states of several batches into one (sequence order kept); the inputs are disposed. */
  static stack(states: DecodeState[]): DecodeState {
    const be = states[0].backend;
    const pos = Int32Array.from(states.flatMap((s) => [...s.pos]));
    const layers = states[0].layers.map((l0, j): SublayerState => {
      if (l0 === null) return null;
      if (l0.kind === 'mamba') {
        const parts = states.map((s) => s.layers[j] as Extract<SublayerState, { kind: 'mamba' }>);
        return { kind: 'mamba', conv: be.keep(be.concat(parts.map((p) => p.conv))), ssm: be.keep(be.concat(parts.map((p) => p.ssm))) };
      }
      const parts = states.map((s) => s.layers[j] as Extract<SublayerState, { kind: 'attn' }>);
      const capacity = Math.max(...parts.map((p) => p.cache.capacity));
      const fit = (t: Tensor) => (t.shape[1] === capacity ? t : be.resizeRows(t, capacity));
      const k = be.keep(be.tidy(() => be.concat(parts.map((p) => fit(p.cache.k)))));
      const v = be.keep(be.tidy(() => be.concat(parts.map((p) => fit(p.cache.v)))));
      return { kind: 'attn', cache: { k, v, capacity }, growable: l0.growable };
    });
    for (const s of states) s.dispose();
    return new DecodeState(be, pos, layers);
  }
}
