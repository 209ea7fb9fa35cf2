// The tokenizer seam: text <-> token ids. Implementations: ByteTokenizer (bytes.ts) and HfTokenizer
// (hf.ts, any Hugging Face tokenizer.json). Both are browser-safe.

export interface TextTokenizer {
  /** Token ids of `text` (special tokens such as BOS added as the tokenizer is configured to). */
  encode(text: string): number[];
  /** Text of `ids`; special tokens (BOS/EOS/padding) are left out; invalid UTF-8 becomes U+FFFD. */
  decode(ids: readonly number[]): string;
  /** Number of ids the tokenizer can emit (highest id + 1). */
  readonly vocabSize: number;
  readonly eosId?: number;
  readonly bosId?: number;
  /** A decoder for ids arriving one at a time (defaults to a generic one: see stream.ts). */
  streamDecoder?(): StreamDecoder;
}

/** Incremental detokenisation: text is emitted only once its characters are complete. */
export interface StreamDecoder {
  /** Adds ids; returns the text that became complete (possibly ''). */
  push(...ids: number[]): string;
  /** Ends the stream: returns whatever is left (incomplete bytes as U+FFFD) and resets. */
  flush(): string;
}
