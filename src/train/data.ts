// Training data as the reference prepares it: documents tokenised without BOS, each followed by EOS,
// concatenated into one stream; samples are random windows of seqLen + 1 tokens (input = the first
// seqLen, target = the same shifted by one). A tail of the stream is held out for validation.
import { Rng } from '../core/random.js';

/** Random access to a token stream. */
export interface TokenSource {
  readonly length: number;
  slice(start: number, end: number): ArrayLike<number>;
}

export class TokenArray implements TokenSource {
  constructor(readonly tokens: Uint16Array | Uint32Array | Int32Array) {}
  get length(): number { return this.tokens.length; }
  slice(start: number, end: number): ArrayLike<number> { return this.tokens.subarray(start, end); }
}

/** A view of [start, end) of another source. */
export class TokenRange implements TokenSource {
  constructor(private src: TokenSource, private start: number, private end: number) {}
  get length(): number { return this.end - this.start; }
  slice(a: number, b: number): ArrayLike<number> { return this.src.slice(this.start + a, this.start + b); }
}

/** Packs documents the reference's way: no BOS, EOS after each. */
export function packDocuments(docs: Iterable<ArrayLike<number>>, eos: number | undefined): Int32Array {
  const parts: number[] = [];
  for (const d of docs) {
    for (let i = 0; i < d.length; i++) parts.push(d[i]);
    if (eos !== undefined) parts.push(eos);
  }
  return Int32Array.from(parts);
}

/** Splits off the last `fraction` of the tokens (at least one window) for validation. */
export function splitValidation(src: TokenSource, fraction: number, window: number): { train: TokenSource; val: TokenSource | null } {
  if (fraction <= 0) return { train: src, val: null };
  const nVal = Math.max(window, Math.floor(src.length * fraction));
  if (src.length - nVal < window) return { train: src, val: null };
  return { train: new TokenRange(src, 0, src.length - nVal), val: new TokenRange(src, src.length - nVal, src.length) };
}

export interface Batch {
  ids: Int32Array; // [B, T]
  targets: Int32Array; // [B, T]
}

/** Random windows of seqLen + 1 tokens; its RNG state is the data position a checkpoint records. */
export class WindowSampler {
  readonly rng: Rng;
  constructor(private src: TokenSource, readonly seqLen: number, readonly batch: number, seed: number) {
    if (src.length < seqLen + 1) throw new Error(`the data has ${src.length} tokens, fewer than one window of ${seqLen + 1}`);
    this.rng = new Rng(seed);
  }

  next(): Batch {
    const T = this.seqLen, B = this.batch, ids = new Int32Array(B * T), targets = new Int32Array(B * T);
    for (let b = 0; b < B; b++) {
      const start = this.rng.int(this.src.length - T);
      const w = this.src.slice(start, start + T + 1);
      for (let t = 0; t < T; t++) { ids[b * T + t] = w[t]; targets[b * T + t] = w[t + 1]; }
    }
    return { ids, targets };
  }
}
