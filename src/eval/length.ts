// Perplexity against evaluation length, the two ways the Samba paper measures it:
//  - prefix (the reference's val_ppl@Nx): for blocks of maxL + 1 tokens, the mean loss over the
//    first L predictions of each block, for every L at once (one streaming pass per block);
//  - sliding window (Press et al.; the paper's Proof-Pile protocol): a window of L tokens moved by
//    a stride S, each token scored once with up to L tokens of context.
import type { SambaModel } from '../model/model.js';
import { logProb } from './perplexity.js';

/** Per-position losses of one sequence (position t scores token t+1), streamed in chunks. */
export async function tokenLosses(model: SambaModel, ids: ArrayLike<number>, chunk = 1024): Promise<Float64Array> {
  const V = model.config.vocabSize, be = model.backend, out = new Float64Array(ids.length - 1);
  const state = model.newState(1);
  try {
    for (let t0 = 0; t0 < ids.length - 1; t0 += chunk) {
      const t1 = Math.min(ids.length - 1, t0 + chunk);
      const l = model.forward(Int32Array.from({ length: t1 - t0 }, (_, i) => ids[t0 + i]), 1, t1 - t0, state);
      const logits = await be.read(l);
      be.dispose(l);
      for (let t = t0; t < t1; t++) out[t] = -logProb(logits.subarray((t - t0) * V, (t - t0 + 1) * V), ids[t + 1]);
    }
  } finally {
    state.dispose();
  }
  return out;
}

const slice = (ids: ArrayLike<number>, a: number, b: number): number[] => Array.from({ length: b - a }, (_, i) => ids[a + i]);

export interface LengthPoint {
  length: number;
  nll: number;
  ppl: number;
  blocks?: number;
  tokens?: number;
}

/** ppl(L) for each L over up to `maxBlocks` non-overlapping blocks of max(L) + 1 tokens. */
export async function prefixPerplexity(model: SambaModel, ids: ArrayLike<number>, lengths: number[], maxBlocks = Infinity): Promise<LengthPoint[]> {
  const maxL = Math.max(...lengths), nBlocks = Math.min(maxBlocks, Math.floor(ids.length / (maxL + 1)));
  if (nBlocks < 1) throw new Error(`the text has ${ids.length} tokens; evaluating at ${maxL} needs at least ${maxL + 1}`);
  const sums = lengths.map(() => 0);
  for (let b = 0; b < nBlocks; b++) {
    const start = b * (maxL + 1);
    const losses = await tokenLosses(model, slice(ids, start, start + maxL + 1));
    lengths.forEach((L, i) => {
      let s = 0;
      for (let t = 0; t < L; t++) s += losses[t];
      sums[i] += s / L;
    });
  }
  return lengths.map((L, i) => ({ length: L, nll: sums[i] / nBlocks, ppl: Math.exp(sums[i] / nBlocks), blocks: nBlocks }));
}

/** Sliding-window perplexity over the whole text with window L and stride S (default L/2). */
export async function slidingPerplexity(model: SambaModel, ids: ArrayLike<number>, L: number, stride = Math.max(1, Math.floor(L / 2)), maxTokens = Infinity): Promise<LengthPoint> {
  const N = Math.min(ids.length, maxTokens + 1);
  if (N < 2) throw new Error('sliding-window perplexity needs at least two tokens');
  let total = 0, count = 0, scoredUpTo = 0; // predictions of tokens 1..scoredUpTo are done
  for (let begin = 0; scoredUpTo < N - 1; begin += stride) {
    const end = Math.min(begin + L, N); // window ids[begin, end)
    const fresh = end - 1 - scoredUpTo; // new targets: tokens scoredUpTo+1 .. end-1
    if (fresh <= 0) continue;
    const losses = await tokenLosses(model, slice(ids, begin, end));
    for (let t = losses.length - fresh; t < losses.length; t++) total += losses[t];
    count += fresh;
    scoredUpTo = end - 1;
  }
  return { length: L, nll: total / count, ppl: Math.exp(total / count), tokens: count };
}
