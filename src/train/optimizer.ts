// AdamW as the reference trains with it (torch.optim.AdamW, β 0.9/0.95, ε 1e-8, weight decay 0.1 on
// every parameter), global-norm gradient clipping, and the schedule: linear warm-up from 0, then a
// cosine decay to lr/10.
import type { Backend, GradOps, Tensor } from '../core/backend.js';

export interface AdamWConfig {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** Clip the global gradient norm to this (0 = no clipping). */
  clip: number;
}

export const REFERENCE_ADAMW: AdamWConfig = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, clip: 1.0 };

export interface Schedule {
  lr: number;
  minLr: number;
  warmup: number; // steps
  total: number; // steps
}

/** Learning rate for optimizer step `step` (0-based). */
export function learningRate(step: number, s: Schedule): number {
  if (step < s.warmup) return (s.lr * (step + 1)) / s.warmup;
  if (step >= s.total) return s.minLr;
  const progress = (step - s.warmup) / Math.max(1, s.total - s.warmup);
  return s.minLr + 0.5 * (s.lr - s.minLr) * (1 + Math.cos(Math.PI * progress));
}

export class AdamW {
  readonly m = new Map<string, Tensor>();
  readonly v = new Map<string, Tensor>();
  /** Optimizer steps taken. */
  step = 0;

  constructor(
    private be: Backend & GradOps,
    private params: Map<string, Tensor>,
    readonly cfg: AdamWConfig = REFERENCE_ADAMW,
  ) {
    for (const [n, p] of params) {
      this.m.set(n, be.keep(be.zeros(p.shape)));
      this.v.set(n, be.keep(be.zeros(p.shape)));
    }
  }

  /**
   * Applies summed gradients: g ← g·gradScale (e.g. 1/accumulation), clipped to the global norm,
   * then the AdamW update. Returns the global norm before clipping; when it is not finite (an
   * overflow under mixed precision) nothing is applied and the step does not count.
   */
  async update(grads: Map<string, Tensor>, lr: number, gradScale = 1): Promise<number> {
    const be = this.be;
    const sq = be.tidy(() => {
      let total: Tensor | null = null;
      for (const g of grads.values()) total = total ? be.add(total, be.sumSquares(g)) : be.sumSquares(g);
      return total!;
    });
    const norm = Math.sqrt((await be.read(sq))[0]) * gradScale;
    be.dispose(sq);
    if (!Number.isFinite(norm)) return norm;
    const clipScale = this.cfg.clip > 0 && norm > this.cfg.clip ? this.cfg.clip / (norm + 1e-6) : 1;
    this.step++;
    for (const [name, p] of this.params) {
      const g = grads.get(name);
      if (!g) throw new Error(`no gradient for parameter ${name}`);
      be.adamw(p, g, this.m.get(name)!, this.v.get(name)!, {
        lr, beta1: this.cfg.beta1, beta2: this.cfg.beta2, eps: this.cfg.eps, weightDecay: this.cfg.weightDecay,
        step: this.step, gradScale: gradScale * clipScale,
      });
    }
    return norm;
  }

  dispose(): void {
    for (const t of [...this.m.values(), ...this.v.values()]) this.be.dispose(t);
  }
}
