// SwiGLU MLP (Shazeer 2020), as Samba uses it: MLP(x) = W3 (silu(W1 x) ⊙ W2 x), no biases.
import type { Backend, GradOps, NormArg, Tensor } from '../core/backend.js';

export type Params = (name: string) => Tensor;
/**
 * The residual step x_{j+1} = x_j + f_j(norm(x_j)) handed into a sub-layer, so that the backend
 * can fuse the norm into f_j's first products and the add into its last (inference). Empty when
 * the caller passes norm(x_j) in and adds x_j itself (training, whose backward needs norm(x_j)).
 */
export interface SublayerEnds { norm?: NormArg; residual?: Tensor }
export type Grads = Map<string, Tensor>; // keyed by the parameter's leaf name, e.g. "w1.weight"
export type TrainBackend = Backend & GradOps;

export interface MlpSaved { x: Tensor; gate: Tensor; up: Tensor; act: Tensor }

/** x [B·T, d] → [B·T, d] */
export function mlp(be: Backend, p: Params, x: Tensor): { out: Tensor; saved: MlpSaved } {
  const gate = be.matmul(x, p('w1.weight')); // [B·T, d_p]
  const up = be.matmul(x, p('w2.weight')); // [B·T, d_p]
  const act = be.siluMul(gate, up); // [B·T, d_p]
  return { out: be.matmul(act, p('w3.weight')), saved: { x, gate, up, act } }; // [B·T, d]
}

/**
 * The same function when nothing is kept for a backward pass, so the backend may fuse W1, W2 and
 * the gate (Backend.swiglu), and the residual step's ends.
 */
export function mlpInference(be: Backend, p: Params, x: Tensor, ends: SublayerEnds = {}): Tensor {
  const act = be.swiglu(x, p('w1.weight'), p('w2.weight'), { norm: ends.norm }); // [B·T, d_p]
  return be.matmul(act, p('w3.weight'), { residual: ends.residual }); // [B·T, d]
}

export function mlpBackward(be: TrainBackend, p: Params, s: MlpSaved, dOut: Tensor): { dx: Tensor; grads: Grads } {
  const dAct = be.matmulNN(dOut, p('w3.weight')); // [B·T, d_p]
  const { da: dGate, db: dUp } = be.siluMulBackward(s.gate, s.up, dAct);
  const dx = be.add(be.matmulNN(dGate, p('w1.weight')), be.matmulNN(dUp, p('w2.weight')));
  return {
    dx,
    grads: new Map([
      ['w1.weight', be.matmulTN(dGate, s.x)],
      ['w2.weight', be.matmulTN(dUp, s.x)],
      ['w3.weight', be.matmulTN(dOut, s.act)],
    ]),
  };
}
