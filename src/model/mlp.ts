// SwiGLU MLP (Shazeer 2020), as Samba uses it: MLP(x) = W3 (silu(W1 x) ⊙ W2 x), no biases.
import type { Backend, GradOps, Tensor } from '../core/backend.js';

export type Params = (name: string) => Tensor;
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

/** The same function when nothing is kept for a backward pass, so the backend may fuse W1, W2 and the gate (Backend.swiglu). */
export function mlpInference(be: Backend, p: Params, x: Tensor): Tensor {
  return be.matmul(be.swiglu(x, p('w1.weight'), p('w2.weight')), p('w3.weight')); // [B·T, d]
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
