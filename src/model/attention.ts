// Causal self-attention with RoPE, sliding window (Samba §2.1.2) or full, MHA/GQA/MQA. When
// streaming, keys and values live in a ring buffer of `capacity` slots (slot = position mod
// capacity): W slots for a sliding window, a growing buffer for full attention.
import type { Backend, KvCache, Tensor } from '../core/backend.js';
import type { ModelConfig } from './config.js';
import type { Params } from './mlp.js';

export interface AttentionCall {
  B: number;
  T: number;
  pos0: Int32Array; // absolute position of each sequence's first new token
  rope: { cos: Tensor; sin: Tensor } | null; // [B·T, hs/2]
  window: number; // keys per query incl. itself; Infinity for full attention
}

/** x [B·T, d] (normalised) → [B·T, d]; reads the cache, then writes the new keys into it. */
export function attention(be: Backend, p: Params, cfg: ModelConfig, x: Tensor, call: AttentionCall, cache: KvCache | null): Tensor {
  const { nHeads: H, nKvHeads: Hkv, headDim: hs } = cfg, { B, T } = call;
  const qkv = be.matmul(x, p('qkv.weight')); // [B·T, (H + 2·Hkv)·hs]
  let q = be.sliceCols(qkv, 0, H * hs);
  let k = be.sliceCols(qkv, H * hs, Hkv * hs);
  const v = be.sliceCols(qkv, (H + Hkv) * hs, Hkv * hs);
  if (call.rope) {
    q = be.rope(q, call.rope.cos, call.rope.sin, H);
    k = be.rope(k, call.rope.cos, call.rope.sin, Hkv);
  }
  const k3 = be.reshape(k, [B, T, Hkv * hs]), v3 = be.reshape(v, [B, T, Hkv * hs]);
  const o = be.attention(be.reshape(q, [B, T, H * hs]), k3, v3, cache, {
    nHeads: H, nKvHeads: Hkv, headDim: hs, window: call.window, pos0: call.pos0,
  }); // [B, T, H·hs]
  if (cache) {
    be.writeKv(cache.k, k3, call.pos0);
    be.writeKv(cache.v, v3, call.pos0);
  }
  return be.matmul(be.reshape(o, [B * T, H * hs]), p('out.weight')); // [B·T, d]
}
