// Hugging Face tokenizer.json (+ optional tokenizer_config.json) through @huggingface/tokenizers
// (pure JS, browser-safe): Llama-2 SentencePiece-BPE with byte fallback, GPT-NeoX byte-level BPE,
// and the other tokenizer.json models that library supports.

import { Tokenizer } from '@huggingface/tokenizers';
import type { TextTokenizer } from './types.js';

export interface HfTokenizerOptions {
  /** Add the tokenizer's special tokens (e.g. Llama's BOS) when encoding. Default true. */
  addSpecialTokens?: boolean;
  /**
   * Apply the BERT-era "clean up tokenization spaces" rule when decoding (" ." -> "." etc.). Default:
   * tokenizer_config.json's clean_up_tokenization_spaces when it is given, else false (lossless).
   */
  cleanUpSpaces?: boolean;
}

type Json = Record<string, unknown>;

function tokenContent(t: unknown): string | undefined {
  if (typeof t === 'string') return t;
  if (t && typeof t === 'object' && typeof (t as Json).content === 'string') return (t as Json).content as string;
  return undefined;
}

export class HfTokenizer implements TextTokenizer {
  readonly vocabSize: number;
  readonly eosId?: number;
  readonly bosId?: number;
  readonly padId?: number;
  private readonly tok: Tokenizer;
  private readonly addSpecial: boolean;
  private readonly cleanUp: boolean;

  /**
   * @param tokenizerJson the parsed (or raw text of) tokenizer.json
   * @param tokenizerConfig the parsed (or raw text of) tokenizer_config.json, if any
   */
  constructor(tokenizerJson: Json | string, tokenizerConfig?: Json | string, opts: HfTokenizerOptions = {}) {
    const json = typeof tokenizerJson === 'string' ? parse(tokenizerJson, 'tokenizer.json') : tokenizerJson;
    const config = tokenizerConfig === undefined ? {} : typeof tokenizerConfig === 'string' ? parse(tokenizerConfig, 'tokenizer_config.json') : tokenizerConfig;
    if (!json || typeof json !== 'object' || !json.model) throw new Error('tokenizer.json: no "model" section (is this a Hugging Face tokenizer.json?)');
    try {
      this.tok = new Tokenizer(json, config);
    } catch (e) {
      throw new Error(`tokenizer.json: cannot build the tokenizer: ${(e as Error).message}`);
    }
    this.addSpecial = opts.addSpecialTokens ?? true;
    this.cleanUp = opts.cleanUpSpaces ?? (typeof config.clean_up_tokenization_spaces === 'boolean' ? config.clean_up_tokenization_spaces : false);
    let max = -1;
    for (const id of this.tok.get_vocab(true).values()) if (id > max) max = id;
    this.vocabSize = max + 1;
    const id = (content: string | undefined) => (content === undefined ? undefined : this.tok.token_to_id(content));
    const special = (key: string, guesses: string[]): number | undefined => {
      const fromConfig = id(tokenContent(config[key]));
      if (fromConfig !== undefined) return fromConfig;
      if (key in config) return undefined; // explicitly null
      for (const g of guesses) {
        const i = id(g);
        if (i !== undefined && this.tok.get_added_tokens_decoder().get(i)?.special) return i;
      }
      return undefined;
    };
    this.eosId = special('eos_token', ['</s>', '<|endoftext|>', '<eos>', '<|end_of_text|>', '<|im_end|>']);
    this.bosId = special('bos_token', ['<s>', '<|begin_of_text|>', '<bos>']);
    this.padId = special('pad_token', ['<pad>', '<|padding|>']);
  }

  encode(text: string, opts: { addSpecialTokens?: boolean } = {}): number[] {
    return this.tok.encode(text, { add_special_tokens: opts.addSpecialTokens ?? this.addSpecial }).ids;
  }

  decode(ids: readonly number[], opts: { skipSpecialTokens?: boolean } = {}): string {
    if (ids.length === 0) return '';
    return this.tok.decode([...ids], { skip_special_tokens: opts.skipSpecialTokens ?? true, clean_up_tokenization_spaces: this.cleanUp });
  }

  /** The token strings of `text` (no special tokens). */
  tokenize(text: string): string[] {
    return this.tok.tokenize(text);
  }

  tokenToId(token: string): number | undefined {
    return this.tok.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return this.tok.id_to_token(id);
  }

  /** The underlying @huggingface/tokenizers object. */
  get inner(): Tokenizer {
    return this.tok;
  }
}

function parse(text: string, what: string): Json {
  try {
    return JSON.parse(text) as Json;
  } catch (e) {
    throw new Error(`${what}: not valid JSON (${(e as Error).message})`);
  }
}
