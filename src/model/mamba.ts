// The Mamba mixer (Gu & Dao 2023; Samba §2.1.1), for B sequences of T tokens, continuing from a
// carried state when streaming:
//   [x; z] = W_in u
//   x̃ = silu(conv1d(x))                          causal depthwise, kernel K
//   [δ; B; C] = W_x x̃ ;  Δ = softplus(W_dt δ + b_dt)
//   h_t = exp(Δ_t A) h_{t-1} + Δ_t B_t x̃_t ;  y_t = C_t h_t + D x̃_t
//   out = W_out (y ⊙ silu(z))
import type { Backend, Tensor } from '../core/backend.js';
import { dInner, type ModelConfig } from './config.js';
import type { Params } from './mlp.js';

export interface MambaState {
  conv: Tensor; // [B, d_inner, K-1]
  ssm: Tensor; // [B, d_inner, N]
}

/** u [B·T, d] (normalised) → { out [B·T, d], state after the last token } */
export function mamba(be: Backend, p: Params, cfg: ModelConfig, u: Tensor, B: number, T: number, state: MambaState | null): { out: Tensor; state: MambaState } {
  const di = dInner(cfg), { dState: N, dtRank: R } = cfg.mamba;
  const xz = be.matmul(u, p('in_proj.weight')); // [B·T, 2·d_inner]
  const x = be.reshape(be.sliceCols(xz, 0, di), [B, T, di]);
  const z = be.reshape(be.sliceCols(xz, di, di), [B, T, di]);
  const conv = be.conv1dSilu(x, p('conv1d.weight'), p('conv1d.bias'), state?.conv ?? null); // x̃ [B, T, d_inner]
  const dbc = be.matmul(be.reshape(conv.y, [B * T, di]), p('x_proj.weight')); // [B·T, R + 2N]
  const dt = be.matmul(be.sliceCols(dbc, 0, R), p('dt_proj.weight')); // W_dt δ [B·T, d_inner]; bias + softplus in the scan
  const bm = be.reshape(be.sliceCols(dbc, R, N), [B, T, N]);
  const cm = be.reshape(be.sliceCols(dbc, R + N, N), [B, T, N]);
  const scan = be.selectiveScan(conv.y, be.reshape(dt, [B, T, di]), p('dt_proj.bias'), p('A_log'), bm, cm, p('D'), z, state?.ssm ?? null);
  const out = be.matmul(be.reshape(scan.y, [B * T, di]), p('out_proj.weight')); // [B·T, d]
  return { out, state: { conv: conv.state, ssm: scan.h } };
}
