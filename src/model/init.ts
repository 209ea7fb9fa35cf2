// Random initialisation as the reference does it (samba.md §1.7, mamba.md §1.3): linears at
// PyTorch's default U(±1/√fan_in), residual-branch outputs divided by √(sub-layers per block ·
// blocks), a N(0, 0.02) tied embedding, and Mamba's own Δ, A and D initialisation.
import { Rng } from '../core/random.js';
import { layout, paramSpecs, type ModelConfig } from './config.js';

export function initParams(cfg: ModelConfig, seed: number): Map<string, Float32Array> {
  const rng = new Rng(seed);
  const perBlock = layout(cfg).length / cfg.nBlocks;
  const residualScale = 1 / Math.sqrt(perBlock * cfg.nBlocks);
  const { dState: N, dtRank: R } = cfg.mamba;
  const out = new Map<string, Float32Array>();
  for (const spec of paramSpecs(cfg)) {
    const n = spec.shape.reduce((a, b) => a * b, 1), a = new Float32Array(n), leaf = spec.name.split('.').slice(-2).join('.');
    const fanIn = spec.shape[spec.shape.length - 1];
    const uniform = (bound: number) => { for (let i = 0; i < n; i++) a[i] = rng.uniform(-bound, bound); };
    if (spec.name === 'embed.weight' || spec.name === 'head.weight') {
      const std = cfg.tieEmbeddings ? 0.02 : Math.sqrt(2 / (5 * cfg.dModel));
      for (let i = 0; i < n; i++) a[i] = std * rng.normal();
    } else if (leaf.endsWith('norm.weight') || spec.name === 'norm_f.weight') {
      a.fill(1);
    } else if (leaf === 'mamba.A_log') {
      for (let i = 0; i < n; i++) a[i] = Math.log((i % N) + 1); // S4D-real: A = −(1..N)
    } else if (leaf === 'mamba.D') {
      a.fill(1);
    } else if (leaf === 'dt_proj.bias') {
      for (let i = 0; i < n; i++) {
        const dt = Math.max(1e-4, Math.exp(rng.uniform(Math.log(1e-3), Math.log(0.1))));
        a[i] = dt + Math.log(-Math.expm1(-dt)); // softplus⁻¹(dt)
      }
    } else if (leaf === 'dt_proj.weight') {
      uniform(R ** -0.5);
    } else if (leaf === 'conv1d.weight' || leaf === 'conv1d.bias') {
      uniform(1 / Math.sqrt(cfg.mamba.dConv));
    } else {
      uniform(1 / Math.sqrt(fanIn));
      if (leaf === 'out_proj.weight' || leaf === 'out.weight' || leaf === 'w3.weight') for (let i = 0; i < n; i++) a[i] *= residualScale;
    }
    out.set(spec.name, a);
  }
  return out;
}
