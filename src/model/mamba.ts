// The Mamba mixer (Gu & Dao 2023; Samba §2.1.1), for B sequences of T tokens, continuing from a
// carried state when streaming:
//   [x; z] = W_in u
//   x̃ = silu(conv1d(x))                          causal depthwise, kernel K
//   [δ; B; C] = W_x x̃ ;  Δ = softplus(W_dt δ + b_dt)
//   h_t = exp(Δ_t A) h_{t-1} + Δ_t B_t x̃_t ;  y_t = C_t h_t + D x̃_t
//   out = W_out (y ⊙ silu(z))
// The backward walks the same equations in reverse; the scan recomputes its states.
import type { Backend, Tensor } from '../core/backend.js';
import { dInner, type ModelConfig } from './config.js';
import type { Grads, Params, SublayerEnds, TrainBackend } from './mlp.js';

export interface MambaState {
  conv: Tensor; // [B, d_inner, K-1]
  ssm: Tensor; // [B, d_inner, N]
}

export interface MambaSaved {
  u: Tensor; x: Tensor; z: Tensor; xc: Tensor; delta: Tensor; dt: Tensor; bm: Tensor; cm: Tensor; y: Tensor;
  /** The SSM state the window started from (null: zeros); the backward treats it as a constant. */
  h0: Tensor | null;
  B: number; T: number;
}

export interface MambaCall {
  /** Streaming inference: the caller drops the old state after this step, so its SSM state may be overwritten. */
  replacesState?: boolean;
  /** The residual step's norm and add, fused into the first and last products (inference). */
  ends?: SublayerEnds;
  /** Nothing is kept for a backward pass, so Δ's projection may run inside the scan. */
  inference?: boolean;
}

/**
 * u [B·T, d] (normalised, or normalised by ends.norm) → { out [B·T, d] (plus ends.residual), state
 * after the last token, what the backward needs (null for inference) }. Either part of the state
 * may be missing (zeros); training windows that carry state carry only the SSM part.
 */
export function mamba(
  be: Backend, p: Params, cfg: ModelConfig, u: Tensor, B: number, T: number, state: Partial<MambaState> | null, call: MambaCall = {},
): { out: Tensor; state: MambaState; saved: MambaSaved | null } {
  const di = dInner(cfg), { dState: N, dtRank: R } = cfg.mamba, { ends = {} } = call;
  if (call.inference) {
    // [x; z] = W_in u and x̃ = silu(conv1d(x)) in one op (one kernel when decoding); δ, B and C
    // read out of dbc and W_dt δ summed by the scan itself (one kernel when decoding)
    const input = be.mambaInput(u, p('in_proj.weight'), p('conv1d.weight'), p('conv1d.bias'), state?.conv ?? null, B, T, { norm: ends.norm });
    const dbc = be.matmul(be.reshape(input.xc, [B * T, di]), p('x_proj.weight')); // [B·T, R + 2N]
    const scan = be.selectiveScanProjected(input.xc, dbc, p('dt_proj.weight'), p('dt_proj.bias'), p('A_log'), p('D'), input.z, state?.ssm ?? null, { donateH0: call.replacesState });
    const out = be.matmul(be.reshape(scan.y, [B * T, di]), p('out_proj.weight'), { residual: ends.residual }); // [B·T, d]
    return { out, state: { conv: input.state, ssm: scan.h }, saved: null };
  }
  const xz = be.matmul(u, p('in_proj.weight'), { norm: ends.norm }); // [B·T, 2·d_inner]
  const x = be.reshape(be.sliceCols(xz, 0, di), [B, T, di]);
  const z = be.reshape(be.sliceCols(xz, di, di), [B, T, di]);
  const conv = be.conv1dSilu(x, p('conv1d.weight'), p('conv1d.bias'), state?.conv ?? null); // x̃ [B, T, d_inner]
  const dbc = be.matmul(be.reshape(conv.y, [B * T, di]), p('x_proj.weight')); // [B·T, R + 2N]
  const delta = be.sliceCols(dbc, 0, R); // δ [B·T, R]
  const dt = be.reshape(be.matmul(delta, p('dt_proj.weight')), [B, T, di]); // W_dt δ; bias + softplus in the scan
  const bm = be.reshape(be.sliceCols(dbc, R, N), [B, T, N]);
  const cm = be.reshape(be.sliceCols(dbc, R + N, N), [B, T, N]);
  const scan = be.selectiveScan(conv.y, dt, p('dt_proj.bias'), p('A_log'), bm, cm, p('D'), z, state?.ssm ?? null, { donateH0: call.replacesState });
  const y = be.reshape(scan.y, [B * T, di]);
  const out = be.matmul(y, p('out_proj.weight'), { residual: ends.residual }); // [B·T, d]
  return { out, state: { conv: conv.state, ssm: scan.h }, saved: { u, x, z, xc: conv.y, delta, dt, bm, cm, y, h0: state?.ssm ?? null, B, T } };
}

/** Backward from a fresh conv state and the saved SSM state h0 (no gradient flows into h0). */
export function mambaBackward(be: TrainBackend, p: Params, cfg: ModelConfig, s: MambaSaved, dOut: Tensor): { dx: Tensor; grads: Grads } {
  const di = dInner(cfg), { dState: N } = cfg.mamba, { B, T } = s;
  const dy = be.reshape(be.matmulNN(dOut, p('out_proj.weight')), [B, T, di]);
  const g = be.selectiveScanBackward(s.xc, s.dt, p('dt_proj.bias'), p('A_log'), s.bm, s.cm, p('D'), s.z, dy, s.h0);
  const ddt = be.reshape(g.ddt, [B * T, di]);
  const dDelta = be.matmulNN(ddt, p('dt_proj.weight')); // [B·T, R]
  const ddbc = be.concatCols([dDelta, be.reshape(g.dbm, [B * T, N]), be.reshape(g.dcm, [B * T, N])]);
  const xc2 = be.reshape(s.xc, [B * T, di]);
  const dxc = be.add(g.du, be.reshape(be.matmulNN(ddbc, p('x_proj.weight')), [B, T, di]));
  const conv = be.conv1dSiluBackward(s.x, p('conv1d.weight'), p('conv1d.bias'), dxc);
  const dxz = be.concatCols([be.reshape(conv.dx, [B * T, di]), be.reshape(g.dz, [B * T, di])]);
  return {
    dx: be.matmulNN(dxz, p('in_proj.weight')),
    grads: new Map([
      ['in_proj.weight', be.matmulTN(dxz, s.u)],
      ['conv1d.weight', conv.dw],
      ['conv1d.bias', conv.db],
      ['x_proj.weight', be.matmulTN(ddbc, xc2)],
      ['dt_proj.weight', be.matmulTN(ddt, s.delta)],
      ['dt_proj.bias', g.ddtBias],
      ['A_log', g.daLog],
      ['D', g.dd],
      ['out_proj.weight', be.matmulTN(dOut, s.y)],
    ]),
  };
}
