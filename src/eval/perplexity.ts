// Perplexity: the mean next-token negative log-likelihood over every prediction (position t's
// logits scoring token t+1), streamed through the decoding state in chunks, so memory stays flat
// however long the text is.
import type { SambaModel } from '../model/model.js';

export interface PerplexityResult {
  tokens: number; // ids read
  predictions: number; // tokens scored: Σ (T - 1)
  nll: number; // mean negative log-likelihood, nats
  ppl: number; // exp(nll)
}

/** log p(target) from one row of logits, in float64. */
export function logProb(logits: Float32Array, target: number): number {
  let max = -Infinity;
  for (const x of logits) if (x > max) max = x;
  let sum = 0;
  for (const x of logits) sum += Math.exp(x - max);
  return logits[target] - max - Math.log(sum);
}

export async function perplexity(model: SambaModel, seqs: number[][], chunk = 512): Promise<PerplexityResult> {
  const V = model.config.vocabSize, be = model.backend;
  let total = 0, predictions = 0, tokens = 0;
  for (const ids of seqs) {
    tokens += ids.length;
    const state = model.newState(1);
    try {
      for (let t0 = 0; t0 < ids.length - 1; t0 += chunk) {
        const t1 = Math.min(ids.length - 1, t0 + chunk); // positions t0..t1-1 predict t0+1..t1
        const out = model.forward(Int32Array.from(ids.slice(t0, t1)), 1, t1 - t0, state);
        const logits = await be.read(out);
        be.dispose(out);
        for (let t = t0; t < t1; t++) total -= logProb(logits.subarray((t - t0) * V, (t - t0 + 1) * V), ids[t + 1]);
        predictions += t1 - t0;
      }
    } finally {
      state.dispose();
    }
  }
  if (predictions === 0) throw new Error('perplexity needs at least two tokens');
  const nll = total / predictions;
  return { tokens, predictions, nll, ppl: Math.exp(nll) };
}
