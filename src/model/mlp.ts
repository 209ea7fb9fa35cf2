// SwiGLU MLP (Shazeer 2020), as Samba uses it: MLP(x) = W3 (silu(W1 x) ⊙ W2 x), no biases.
import type { Backend, Tensor } from '../core/backend.js';

export type Params = (name: string) => Tensor;

/** x [B·T, d] → [B·T, d] */
export function mlp(be: Backend, p: Params, x: Tensor): Tensor {
  const gate = be.matmul(x, p('w1.weight')); // [B·T, d_p]
  const up = be.matmul(x, p('w2.weight')); // [B·T, d_p]
  return be.matmul(be.siluMul(gate, up), p('w3.weight')); // [B·T, d]
}
