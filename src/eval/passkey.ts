// Passkey retrieval with a text prompt (Samba §3.4, after Mohtashami & Jaggi 2023), for any model
// with a tokenizer. The template (the paper does not publish one; this is the Landmark-attention
// one it cites):
//   There is an important info hidden inside a lot of irrelevant text. Find it and memorize it.
//   I will quiz you about the important information there.
//   <filler> … The pass key is 12345. Remember it. 12345 is the pass key. <filler> …
//   What is the pass key? The pass key is
// The filler unit repeats to make the prompt L tokens long, ending whole before the question (the
// first one is cut to fit); the needle sits between units, after a fraction `depth` of the filler.
// The answer is right when the first five digits generated (greedy) are the key.
//
// The same template makes the training documents of `samba-lm train --task passkey` (the paper
// fine-tunes on such documents, §3.4): TextPasskeyTask below, a SyntheticTask whose documents are
// exactly L + 1 tokens of the model's own tokenizer, the answer being the key's tokens.
import { Rng } from '../core/random.js';
import type { SambaModel } from '../model/model.js';
import type { TextTokenizer } from '../tokenizer/types.js';
import { generateIds } from '../generate/generate.js';
import type { SampleOptions, SyntheticTask, TaskSample } from '../train/tasks.js';

export const PASSKEY_TEMPLATE = {
  intro: 'There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. I will quiz you about the important information there.',
  filler: ' The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.',
  needle: (key: string) => ` The pass key is ${key}. Remember it. ${key} is the pass key.`,
  question: ' What is the pass key? The pass key is',
  /** What follows the question: the key, as the model should continue. */
  answer: (key: string) => ` ${key}`,
};

/** A random 5-digit key (no leading zero). */
export const randomPasskey = (rng: Rng): string => String(10000 + rng.int(90000));

/** The template's pieces as token ids of one tokenizer (special tokens only at the very start). */
export class PasskeyTemplateTokens {
  readonly intro: number[];
  readonly filler: number[];
  readonly question: number[];
  constructor(readonly tok: TextTokenizer) {
    this.intro = tok.encode(PASSKEY_TEMPLATE.intro);
    this.filler = this.piece(PASSKEY_TEMPLATE.filler);
    this.question = this.piece(PASSKEY_TEMPLATE.question);
    if (this.filler.length === 0) throw new Error('the passkey filler encodes to no tokens');
  }

  /** Tokens of a piece that does not start the prompt: without a leading BOS. */
  piece(text: string): number[] {
    const ids = this.tok.encode(text);
    return this.tok.bosId !== undefined && ids[0] === this.tok.bosId ? ids.slice(1) : ids;
  }

  needle(key: string): number[] { return this.piece(PASSKEY_TEMPLATE.needle(key)); }

  /** The key's tokens as they continue the question (the question and answer encoded together, where that splits cleanly). */
  answer(key: string): number[] {
    const both = this.piece(PASSKEY_TEMPLATE.question + PASSKEY_TEMPLATE.answer(key)), q = this.question;
    if (both.length > q.length && q.every((t, i) => both[i] === t)) return both.slice(q.length);
    return this.piece(PASSKEY_TEMPLATE.answer(key));
  }

  /** Whole filler units in `fillerTokens` tokens of filler: the places a needle can go, less one. */
  units(fillerTokens: number): number { return Math.floor(fillerTokens / this.filler.length); }

  /**
   * intro, `fillerTokens` tokens of the repeated filler with the needle after `before` whole filler
   * units, question. The filler is aligned to its end: the last unit before the question is whole,
   * the first after the intro is cut to fit. So every prompt, whatever its length, reads the same
   * before the question; a model fine-tuned at one length cannot learn one length's cut as part of
   * the question. (With the cut at the end, a Samba fine-tuned on 512-token documents found 97% of
   * the keys of its own kind of document and none of the eval's, which ended differently.)
   */
  prompt(key: string, fillerTokens: number, before: number): number[] {
    const f = this.filler, head = fillerTokens % f.length, ids = [...this.intro];
    const filler = (i: number) => f[(i + f.length - head) % f.length]; // unit boundaries at head + k·|f|
    const at = Math.min(head + before * f.length, fillerTokens);
    for (let i = 0; i < at; i++) ids.push(filler(i));
    ids.push(...this.needle(key));
    for (let i = at; i < fillerTokens; i++) ids.push(filler(i));
    ids.push(...this.question);
    return ids;
  }
}

/** Token ids of a passkey prompt of `length` tokens (at least the template's) with the needle at `depth` ∈ [0, 1]. */
export function passkeyPrompt(tok: TextTokenizer, length: number, depth: number, key: string): number[] {
  const t = new PasskeyTemplateTokens(tok);
  const fillerTokens = Math.max(0, length - t.intro.length - t.needle(key).length - t.question.length);
  return t.prompt(key, fillerTokens, Math.round(depth * t.units(fillerTokens)));
}

/**
 * Text passkey documents for training (and streaming evaluation) at an exact length: prompt + answer
 * = L + 1 tokens, so that a training sample of L positions ends with the key's tokens as the only
 * scored targets: the eval's prompt of L + 1 − |answer| tokens. The needle goes between whole filler
 * units at a uniformly random depth (or `depth`); each document gets a fresh random key.
 */
export class TextPasskeyTask implements SyntheticTask {
  readonly name = 'passkey';
  readonly vocabSize: number;
  /** The most tokens a key's answer takes (subword tokenizers may split keys differently). */
  readonly answerLength: number;
  readonly minLength: number;
  private readonly t: PasskeyTemplateTokens;

  constructor(readonly tokenizer: TextTokenizer) {
    this.t = new PasskeyTemplateTokens(tokenizer);
    this.vocabSize = tokenizer.vocabSize;
    // the longest needle and answer over a few keys bound the fixed part (exact for byte-level tokenizers)
    let needle = 0, answer = 0;
    for (const key of ['10000', '99999', '12345', '88888', '70707']) {
      needle = Math.max(needle, this.t.needle(key).length);
      answer = Math.max(answer, this.t.answer(key).length);
    }
    this.answerLength = answer;
    this.minLength = this.t.intro.length + needle + this.t.question.length + answer - 1;
  }

  sample(rng: Rng, length: number, opts: SampleOptions = {}): TaskSample {
    if (!Number.isInteger(length) || length < this.minLength) throw new Error(`passkey: length must be an integer ≥ ${this.minLength} tokens (the template alone takes that many), got ${length}`);
    const key = randomPasskey(rng);
    const answer = this.t.answer(key), needle = this.t.needle(key);
    const fillerTokens = length + 1 - answer.length - this.t.intro.length - needle.length - this.t.question.length;
    if (fillerTokens < 0) throw new Error(`passkey: length ${length} is too short for the template with key ${key}`);
    const sentences = this.t.units(fillerTokens);
    let before: number;
    if (opts.depth === undefined) before = rng.int(sentences + 1);
    else {
      if (!(opts.depth >= 0 && opts.depth <= 1)) throw new Error(`passkey: depth must be in [0, 1], got ${opts.depth}`);
      before = Math.round(opts.depth * sentences);
    }
    return { prompt: this.t.prompt(key, fillerTokens, before), answer };
  }

  describe(ids: readonly number[]): string {
    return this.tokenizer.decode(ids);
  }
}

export interface PasskeyCell {
  length: number; depth: number; correct: number; trials: number;
  /** Per trial, the key and the text the model generated (so a failure shows what came instead). */
  answers: { key: string; generated: string }[];
}

export async function passkeyEval(
  model: SambaModel, tok: TextTokenizer, lengths: number[], depths: number[], trials: number, seed = 1,
  onCell?: (c: PasskeyCell) => void,
): Promise<PasskeyCell[]> {
  const rng = new Rng(seed), cells: PasskeyCell[] = [];
  for (const length of lengths) {
    for (const depth of depths) {
      let correct = 0;
      const answers: PasskeyCell['answers'] = [];
      for (let i = 0; i < trials; i++) {
        const key = randomPasskey(rng);
        const out: number[] = [];
        for await (const id of generateIds(model, passkeyPrompt(tok, length, depth, key), { maxTokens: 8, temperature: 0, prefillChunk: 2048 })) out.push(id);
        const generated = tok.decode(out);
        if (generated.replace(/\D/g, '').slice(0, 5) === key) correct++;
        answers.push({ key, generated });
      }
      const cell = { length, depth, correct, trials, answers };
      cells.push(cell);
      onCell?.(cell);
    }
  }
  return cells;
}
