// Causal self-attention with RoPE, sliding window (Samba §2.1.2) or full, MHA/GQA/MQA. When
// streaming, keys and values live in a ring buffer of `capacity` slots (slot = position mod
// capacity): W slots for a sliding window, a growing buffer for full attention.
import type { AttentionArgs, Backend, KvCache, Tensor } from '../core/backend.js';
import type { ModelConfig } from './config.js';
import type { Grads, Params, SublayerEnds, TrainBackend } from './mlp.js';

export interface AttentionCall {
  B: number;
  T: number;
  pos0: Int32Array; // absolute position of each sequence's first new token
  rope: { cos: Tensor; sin: Tensor; negSin: Tensor | null } | null; // [B·T, hs/2]; negSin for the backward only
  window: number; // keys per query incl. itself; Infinity for full attention
  training?: boolean; // a backward follows: the backend may keep what it needs from the forward
}

export interface AttentionSaved { x: Tensor; q: Tensor; k: Tensor; v: Tensor; o: Tensor; args: AttentionArgs; call: AttentionCall }

/**
 * x [B·T, d] (normalised, or normalised by ends.norm) → [B·T, d] (plus ends.residual); reads the
 * cache, then writes the new keys into it.
 */
export function attention(
  be: Backend, p: Params, cfg: ModelConfig, x: Tensor, call: AttentionCall, cache: KvCache | null, ends: SublayerEnds = {},
): { out: Tensor; saved: AttentionSaved } {
  const { nHeads: H, nKvHeads: Hkv, headDim: hs } = cfg, { B, T } = call;
  const qkv = be.matmul(x, p('qkv.weight'), { norm: ends.norm }); // [B·T, (H + 2·Hkv)·hs]
  const v = be.reshape(be.sliceCols(qkv, (H + Hkv) * hs, Hkv * hs), [B, T, Hkv * hs]);
  const args = { nHeads: H, nKvHeads: Hkv, headDim: hs, window: call.window, pos0: call.pos0 };
  const heads = (t: Tensor, start: number, n: number) => be.reshape(be.sliceCols(t, start, n * hs), [B, T, n * hs]);
  let q3: Tensor, k3: Tensor, o: Tensor;
  if (cache) {
    // streaming: RoPE on q and k, attention over the cache and the new keys, then the new keys
    // stored in the cache, in one op (one kernel when decoding a token)
    q3 = heads(qkv, 0, H); k3 = heads(qkv, H * hs, Hkv); // un-rotated: nothing trains through a cache
    o = be.attention(q3, k3, v, cache, args, { rope: call.rope ?? undefined, store: true });
  } else {
    // RoPE turns every head of a position by the same angles, q's and k's alike: one call rotates both
    const qk = call.rope ? be.rope(be.sliceCols(qkv, 0, (H + Hkv) * hs), call.rope.cos, call.rope.sin, H + Hkv) : qkv;
    q3 = heads(qk, 0, H); k3 = heads(qk, H * hs, Hkv);
    o = be.attention(q3, k3, v, null, args, { forBackward: !!call.training });
  }
  o = be.reshape(o, [B * T, H * hs]);
  return { out: be.matmul(o, p('out.weight'), { residual: ends.residual }), saved: { x, q: q3, k: k3, v, o, args, call } }; // [B·T, d]
}

/** Backward without a cache (training on whole sequences). */
export function attentionBackward(be: TrainBackend, p: Params, cfg: ModelConfig, s: AttentionSaved, dOut: Tensor): { dx: Tensor; grads: Grads } {
  const { nHeads: H, nKvHeads: Hkv, headDim: hs } = cfg, { B, T, rope } = s.call;
  const dO = be.reshape(be.matmulNN(dOut, p('out.weight')), [B, T, H * hs]);
  const g = be.attentionBackward(s.q, s.k, s.v, dO, s.args, s.o);
  let dq = be.reshape(g.dq, [B * T, H * hs]), dk = be.reshape(g.dk, [B * T, Hkv * hs]);
  if (rope) { // a rotation's transpose is the rotation by the opposite angle
    if (!rope.negSin) throw new Error('attentionBackward: the forward ran without the backward\'s rope table');
    dq = be.rope(dq, rope.cos, rope.negSin, H);
    dk = be.rope(dk, rope.cos, rope.negSin, Hkv);
  }
  const dqkv = be.concatCols([dq, dk, be.reshape(g.dv, [B * T, Hkv * hs])]);
  return {
    dx: be.matmulNN(dqkv, p('qkv.weight')),
    grads: new Map([
      ['qkv.weight', be.matmulTN(dqkv, s.x)],
      ['out.weight', be.matmulTN(dOut, s.o)],
    ]),
  };
}
