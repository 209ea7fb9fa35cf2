// Streaming detokenisation for any TextTokenizer. A token may end in the middle of a UTF-8 character
// (byte-fallback and byte-level BPE both do this), so decoding token by token would print U+FFFD
// halves. As in text-generation-inference, we keep two offsets into the ids: `prefix` (where the
// text decoded so far starts) and `read` (how far it has been emitted), and emit the difference
// between decode(ids[prefix..]) and decode(ids[prefix..read]) once it does not end in U+FFFD.
// Decoding from a `prefix` one token back keeps the tokenizer's word-boundary rules (SentencePiece's
// leading-space stripping) the same on both sides.

import type { StreamDecoder, TextTokenizer } from './types.js';

/** After this many pending tokens whose text still ends in U+FFFD, the bytes are taken as invalid and emitted. */
const MAX_PENDING = 6;

export class GenericStreamDecoder implements StreamDecoder {
  private ids: number[] = [];
  private prefix = 0;
  private read = 0;

  constructor(private readonly tokenizer: Pick<TextTokenizer, 'decode'>) {}

  push(...ids: number[]): string {
    let out = '';
    for (const id of ids) out += this.pushOne(id);
    return out;
  }

  private pushOne(id: number): string {
    this.ids.push(id);
    const before = this.prefix < this.read ? this.tokenizer.decode(this.ids.slice(this.prefix, this.read)) : '';
    const now = this.tokenizer.decode(this.ids.slice(this.prefix));
    const pending = this.ids.length - this.read;
    if (now.length <= before.length || (now.endsWith('\uFFFD') && pending <= MAX_PENDING)) return '';
    const fresh = now.slice(before.length);
    this.prefix = this.read;
    this.read = this.ids.length;
    this.compact();
    return fresh;
  }

  /** Drops ids before `prefix` so the work per token stays constant. */
  private compact(): void {
    if (this.prefix > 0) {
      this.ids = this.ids.slice(this.prefix);
      this.read -= this.prefix;
      this.prefix = 0;
    }
  }

  flush(): string {
    const before = this.prefix < this.read ? this.tokenizer.decode(this.ids.slice(this.prefix, this.read)) : '';
    const now = this.ids.length > this.prefix ? this.tokenizer.decode(this.ids.slice(this.prefix)) : '';
    this.ids = [];
    this.prefix = this.read = 0;
    return now.slice(before.length);
  }
}

/** The tokenizer's own stream decoder if it has one, else the generic one. */
export function createStreamDecoder(tokenizer: TextTokenizer): StreamDecoder {
  return tokenizer.streamDecoder ? tokenizer.streamDecoder() : new GenericStreamDecoder(tokenizer);
}
