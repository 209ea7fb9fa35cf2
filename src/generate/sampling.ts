// Picking the next token from logits: repetition penalty, then temperature, then top-k and top-p
// (nucleus) filtering, then a draw from the seeded generator. Temperature 0 is greedy (argmax).
// Without top-k and top-p, generation samples on the backend instead (Backend.sampleRows, the
// inverse CDF in id order) and reads back only the ids; rowOptions() gives it this sampler's
// settings and draws.
import type { SampleRowsOptions } from '../core/backend.js';
import { Rng } from '../core/random.js';

export interface SamplingOptions {
  temperature?: number; // 0 = greedy; default 1
  topK?: number; // 0 = off
  topP?: number; // 1 = off
  /** > 1 discourages tokens already in the context (CTRL / Hugging Face convention). */
  repetitionPenalty?: number;
  seed?: number;
}

export function validateSampling(o: SamplingOptions): void {
  const bad = (m: string) => { throw new Error(`invalid sampling option: ${m}`); };
  if (o.temperature !== undefined && !(o.temperature >= 0 && Number.isFinite(o.temperature))) bad(`temperature must be ≥ 0, got ${o.temperature}`);
  if (o.topK !== undefined && !(Number.isInteger(o.topK) && o.topK >= 0)) bad(`top-k must be a non-negative integer, got ${o.topK}`);
  if (o.topP !== undefined && !(o.topP > 0 && o.topP <= 1)) bad(`top-p must be in (0, 1], got ${o.topP}`);
  if (o.repetitionPenalty !== undefined && !(o.repetitionPenalty > 0 && Number.isFinite(o.repetitionPenalty))) bad(`repetition penalty must be > 0, got ${o.repetitionPenalty}`);
}

export function argmax(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

export class Sampler {
  private rng: Rng;
  constructor(private opts: SamplingOptions = {}) {
    validateSampling(opts);
    this.rng = new Rng(opts.seed ?? Math.floor(Math.random() * 2 ** 32));
  }

  /** Whether Backend.sampleRows can draw for these settings (it neither sorts nor truncates). */
  get onDevice(): boolean {
    const { topK = 0, topP = 1 } = this.opts;
    return topK === 0 && topP === 1;
  }

  get penalizes(): boolean { return (this.opts.repetitionPenalty ?? 1) !== 1; }

  /** Backend.sampleRows options for B rows: one fresh uniform per row, the penalty on `seen[b]`. */
  rowOptions(B: number, seen: readonly ReadonlySet<number>[] = []): SampleRowsOptions {
    const { temperature = 1, repetitionPenalty = 1 } = this.opts;
    const o: SampleRowsOptions = { temperature };
    // f32 uniforms below 1 (the largest f32 under 1 is 1 − 2⁻²⁴)
    if (temperature > 0) o.uniforms = Float32Array.from({ length: B }, () => Math.min(Math.fround(this.rng.next()), 1 - 2 ** -24));
    if (repetitionPenalty !== 1) o.penalty = { factor: repetitionPenalty, ids: Array.from({ length: B }, (_, b) => Int32Array.from(seen[b] ?? [])) };
    return o;
  }

  /** logits [V] of one sequence; context = the ids seen so far (for the repetition penalty). */
  sample(logits: Float32Array, context: Iterable<number> = []): number {
    const { temperature = 1, topK = 0, topP = 1, repetitionPenalty = 1 } = this.opts;
    const x = Float64Array.from(logits);
    if (repetitionPenalty !== 1) {
      for (const id of new Set(context)) if (id >= 0 && id < x.length) x[id] = x[id] > 0 ? x[id] / repetitionPenalty : x[id] * repetitionPenalty;
    }
    if (temperature === 0) return argmax(x);
    // candidates sorted by logit, cut to top-k
    let idx = Array.from(x.keys()).sort((a, b) => x[b] - x[a]);
    if (topK > 0) idx = idx.slice(0, topK);
    const max = x[idx[0]];
    let probs = idx.map((i) => Math.exp((x[i] - max) / temperature));
    let total = probs.reduce((a, b) => a + b, 0);
    if (topP < 1) {
      // smallest prefix whose mass reaches topP
      let acc = 0, keep = 0;
      while (keep < probs.length) { acc += probs[keep++] / total; if (acc >= topP) break; }
      idx = idx.slice(0, keep); probs = probs.slice(0, keep);
      total = probs.reduce((a, b) => a + b, 0);
    }
    let r = this.rng.next() * total;
    for (let i = 0; i < idx.length; i++) { r -= probs[i]; if (r < 0) return idx[i]; }
    return idx[idx.length - 1];
  }
}
