// Text generation: prefill the prompt (in chunks, through the same streaming state), then decode
// one token at a time in constant memory. Async iterators stream tokens (and text) as they come.
import type { Tensor } from '../core/backend.js';
import type { SambaModel } from '../model/model.js';
import { DecodeState } from '../model/state.js';
import { Sampler, type SamplingOptions } from './sampling.js';
import { createStreamDecoder, type TextTokenizer } from '../tokenizer/index.js';

export interface GenerateOptions extends SamplingOptions {
  maxTokens?: number; // default 128
  /** Generation ends after any of these ids (which is yielded). */
  stopTokens?: number[];
  signal?: AbortSignal;
  /** Prompt tokens per forward pass while prefilling (bounds activation memory). Default 512. */
  prefillChunk?: number;
}


export interface GeneratedToken {
  id: number;
  /** Text that became complete with this token (may be empty mid-character). */
  text?: string;
}

/**
 * Lets timers and I/O run. Where ops compute when called (CPU), every read resolves at once, so a
 * decoding loop would hold the event loop: an AbortSignal fired by a timer, a signal handler or a
 * closed connection would never be seen.
 */
function yieldToEventLoop(): Promise<void> {
  const immediate = (globalThis as { setImmediate?: (cb: () => void) => unknown }).setImmediate;
  return new Promise((resolve) => (immediate ? immediate(resolve) : setTimeout(resolve, 0)));
}

function checkAbort(signal?: AbortSignal): void {
  if (signal?.aborted) throw signal.reason instanceof Error ? signal.reason : new Error('generation aborted');
}

/** Feeds ids [B, T] into the state in chunks and returns the last position's logits [B, V]. */
export async function prefill(model: SambaModel, state: DecodeState, ids: number[][], chunk = 512, signal?: AbortSignal): Promise<Float32Array> {
  const out = await prefillToLogits(model, state, ids, chunk, signal);
  try { return await model.backend.read(out); } finally { model.backend.dispose(out); }
}

/** prefill, leaving the logits [B, V] on the backend (for sampling there). */
export async function prefillToLogits(model: SambaModel, state: DecodeState, ids: number[][], chunk = 512, signal?: AbortSignal): Promise<Tensor> {
  const B = ids.length, T = ids[0].length;
  if (T === 0) throw new Error('the prompt is empty: at least one token is needed');
  if (ids.some((r) => r.length !== T)) throw new Error('prefill: prompts of one batch must have equal length');
  for (let t0 = 0; ; t0 += chunk) {
    if (!model.backend.queued) await yieldToEventLoop();
    checkAbort(signal);
    const t1 = Math.min(T, t0 + chunk);
    const flat = Int32Array.from(ids.flatMap((r) => r.slice(t0, t1)));
    const out = model.forward(flat, B, t1 - t0, state, { lastOnly: true });
    if (t1 === T) return out;
    model.backend.dispose(out);
    await model.backend.flush();
  }
}

/** Streams generated token ids for one prompt. */
export async function* generateIds(model: SambaModel, prompt: number[], opts: GenerateOptions = {}): AsyncGenerator<number> {
  for await (const { id } of generateBatchStream(model, [prompt], opts)) yield id;
}

/** Streams tokens with their text for one prompt. */
export async function* generateText(model: SambaModel, tokenizer: TextTokenizer, prompt: number[], opts: GenerateOptions = {}): AsyncGenerator<GeneratedToken> {
  const text = createStreamDecoder(tokenizer);
  for await (const id of generateIds(model, prompt, opts)) yield { id, text: text.push(id) };
  const rest = text.flush();
  if (rest) yield { id: -1, text: rest };
}

/**
 * Several prompts at once: each is prefilled on its own (they may differ in length), then all are
 * decoded together as one batch. Yields { index, id } as tokens are sampled; a sequence stops at
 * its stop token or maxTokens.
 */
export async function* generateBatchStream(model: SambaModel, prompts: number[][], opts: GenerateOptions = {}): AsyncGenerator<{ index: number; id: number }> {
  const { maxTokens = 128, stopTokens = [], signal, prefillChunk = 512 } = opts;
  if (prompts.length === 0) return;
  if (!(Number.isInteger(maxTokens) && maxTokens >= 0)) throw new Error(`maxTokens must be a non-negative integer, got ${maxTokens}`);
  const be = model.backend, sampler = new Sampler(opts), V = model.config.vocabSize, B = prompts.length;
  const states: DecodeState[] = [], firstLogits: Tensor[] = [];
  let state: DecodeState, logits: Tensor | null;
  try {
    for (const p of prompts) {
      const st = model.newState(1);
      states.push(st);
      firstLogits.push(await prefillToLogits(model, st, [p], prefillChunk, signal));
    }
    state = B === 1 ? states[0] : DecodeState.stack(states); // stack disposes the parts
    logits = B === 1 ? firstLogits[0] : be.concat(firstLogits);
  } catch (e) {
    for (const s of states) s.dispose(); // disposing twice is harmless
    for (const l of firstLogits) be.dispose(l);
    throw e;
  }
  if (B > 1) for (const l of firstLogits) be.dispose(l);
  const context = prompts.map((p) => [...p]);
  const seen = sampler.penalizes ? context.map((c) => new Set(c)) : [];
  const done = new Array<boolean>(B).fill(maxTokens === 0);
  // Where ops are queued (WebGPU) and sampling runs there, the next step is recorded before the
  // sampled ids come back: its embedding reads them on the device, so the GPU goes on with it
  // while the host waits for this token, and the host's recording overlaps the GPU's work. Rows
  // that this token ends decode one token more, whose logits nobody reads; if it ends every row,
  // that step was spent on a state about to go. Where ops compute when called (CPU) this would
  // only delay the token, so there the next step waits for it. Without a repetition penalty (whose
  // ids must include the token being read) a step's sampling and the read's copy go into its
  // forward's command buffer too: one submit per token.
  const pipelined = sampler.onDevice && be.queued, oneBuffer = pipelined && !sampler.penalizes;
  /** Samples ids [B] from logits on the backend and starts reading them (recorded and submitted now). */
  const sampleOnDevice = (l: Tensor) => {
    const ids = be.sampleRows(l, sampler.rowOptions(B, seen));
    const reading = be.read(ids);
    reading.catch(() => undefined); // awaited below, unless the forward throws first
    return { ids, reading };
  };
  // oneBuffer: the ids sampled with the last step's forward, and their reading
  let pending: ReturnType<typeof sampleOnDevice> | null = null;
  try {
    for (let step = 0; step < maxTokens && done.some((d) => !d); step++) {
      if (!be.queued) await yieldToEventLoop();
      checkAbort(signal);
      // Sampling runs where the logits are, so that only B ids come back; top-k and top-p sort
      // the row, which only the host does.
      let sampled: ArrayLike<number>;
      if (sampler.onDevice) {
        const { ids, reading } = pending ?? sampleOnDevice(logits!);
        pending = null;
        if (logits) { be.dispose(logits); logits = null; }
        try {
          if (pipelined && step + 1 < maxTokens) {
            // one submit for the whole step: the device is busy with this token meanwhile
            const forward = (): Tensor => model.forward(ids, B, 1, state, { lastOnly: true });
            if (!oneBuffer) logits = be.inOneSubmit(forward);
            else pending = be.inOneSubmit(() => { const next = forward(), sample = sampleOnDevice(next); be.dispose(next); return sample; });
          }
          sampled = await reading;
        } finally { be.dispose(ids); }
      } else {
        const host = await be.read(logits!);
        sampled = Array.from({ length: B }, (_, b) => (done[b] ? -1 : sampler.sample(host.subarray(b * V, (b + 1) * V), context[b])));
        be.dispose(logits!);
        logits = null;
      }
      const next = new Int32Array(B);
      for (let b = 0; b < B; b++) {
        if (done[b]) { next[b] = context[b][context[b].length - 1]; continue; } // keeps the batch shape
        const id = sampled[b];
        next[b] = id;
        context[b].push(id);
        seen[b]?.add(id);
        yield { index: b, id };
        if (stopTokens.includes(id) || context[b].length - prompts[b].length >= maxTokens) done[b] = true;
      }
      if (done.every((d) => d)) break;
      if (!pipelined) logits = model.forward(next, B, 1, state, { lastOnly: true });
    }
  } finally {
    if (logits) be.dispose(logits);
    if (pending) be.dispose(pending.ids);
    state.dispose();
  }
}

/** Collects generateBatchStream into one id array per prompt. */
export async function generateBatch(model: SambaModel, prompts: number[][], opts: GenerateOptions = {}): Promise<number[][]> {
  const out = prompts.map(() => [] as number[]);
  for await (const { index, id } of generateBatchStream(model, prompts, opts)) out[index].push(id);
  return out;
}
