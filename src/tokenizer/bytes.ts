// A byte-level tokenizer for models trained without one: ids 0..255 are the UTF-8 bytes of the text,
// and optionally id 256 is an end-of-sequence token.

import type { StreamDecoder, TextTokenizer } from './types.js';

export interface ByteTokenizerOptions {
  /** Add an EOS token with id 256 (vocabSize 257). Default false. */
  eos?: boolean;
}

export class ByteTokenizer implements TextTokenizer {
  readonly vocabSize: number;
  readonly eosId?: number;
  readonly bosId = undefined;
  private readonly encoder = new TextEncoder();

  constructor(opts: ByteTokenizerOptions = {}) {
    this.vocabSize = opts.eos ? 257 : 256;
    if (opts.eos) this.eosId = 256;
  }

  encode(text: string): number[] {
    return Array.from(this.encoder.encode(text));
  }

  /** Bytes 0..255 are decoded as UTF-8 (invalid sequences give U+FFFD); EOS is skipped; other ids give U+FFFD. */
  decode(ids: readonly number[]): string {
    return new TextDecoder().decode(this.bytes(ids));
  }

  private bytes(ids: readonly number[]): Uint8Array {
    const out = new Uint8Array(ids.length);
    let n = 0;
    for (const id of ids) {
      if (Number.isInteger(id) && id >= 0 && id < 256) out[n++] = id;
      else if (id !== this.eosId) out[n++] = 0xff; // not a byte (e.g. a padded vocabulary row): never valid UTF-8, decodes to U+FFFD
    }
    return out.subarray(0, n);
  }

  streamDecoder(): StreamDecoder {
    let dec = new TextDecoder();
    return {
      push: (...ids: number[]) => dec.decode(this.bytes(ids), { stream: true }),
      flush: () => {
        const rest = dec.decode();
        dec = new TextDecoder();
        return rest;
      },
    };
  }
}
