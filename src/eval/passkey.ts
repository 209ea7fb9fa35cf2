// Passkey retrieval with a text prompt (Samba §3.4, after Mohtashami & Jaggi 2023), for any model
// with a tokenizer. The template (the paper does not publish one; this is the Landmark-attention
// one it cites):
//   There is an important info hidden inside a lot of irrelevant text. Find it and memorize it.
//   I will quiz you about the important information there.
//   <filler> … The pass key is 12345. Remember it. 12345 is the pass key. <filler> …
//   What is the pass key? The pass key is
// The filler sentence repeats to make the prompt L tokens long; the needle sits after a fraction
// `depth` of the filler. The answer is right when the first five digits generated (greedy) are the key.
import { Rng } from '../core/random.js';
import type { SambaModel } from '../model/model.js';
import type { TextTokenizer } from '../tokenizer/types.js';
import { generateIds } from '../generate/generate.js';

export const PASSKEY_TEMPLATE = {
  intro: 'There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. I will quiz you about the important information there.',
  filler: ' The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.',
  needle: (key: string) => ` The pass key is ${key}. Remember it. ${key} is the pass key.`,
  question: ' What is the pass key? The pass key is',
};

/** Token ids of a passkey prompt of about `length` tokens with the needle at `depth` ∈ [0, 1]. */
export function passkeyPrompt(tok: TextTokenizer, length: number, depth: number, key: string): number[] {
  const intro = tok.encode(PASSKEY_TEMPLATE.intro), filler = tok.encode(PASSKEY_TEMPLATE.filler);
  const needle = tok.encode(PASSKEY_TEMPLATE.needle(key)), question = tok.encode(PASSKEY_TEMPLATE.question);
  const fixed = intro.length + needle.length + question.length;
  const reps = Math.max(0, Math.round((length - fixed) / filler.length));
  const before = Math.round(depth * reps);
  const ids = [...intro];
  for (let i = 0; i < before; i++) ids.push(...filler);
  ids.push(...needle);
  for (let i = before; i < reps; i++) ids.push(...filler);
  ids.push(...question);
  return ids;
}

export interface PasskeyCell { length: number; depth: number; correct: number; trials: number }

export async function passkeyEval(
  model: SambaModel, tok: TextTokenizer, lengths: number[], depths: number[], trials: number, seed = 1,
  onCell?: (c: PasskeyCell) => void,
): Promise<PasskeyCell[]> {
  const rng = new Rng(seed), cells: PasskeyCell[] = [];
  for (const length of lengths) {
    for (const depth of depths) {
      let correct = 0;
      for (let i = 0; i < trials; i++) {
        const key = String(10000 + rng.int(90000));
        const out: number[] = [];
        for await (const id of generateIds(model, passkeyPrompt(tok, length, depth, key), { maxTokens: 8, temperature: 0, prefillChunk: 2048 })) out.push(id);
        const digits = tok.decode(out).replace(/\D/g, '').slice(0, 5);
        if (digits === key) correct++;
      }
      const cell = { length, depth, correct, trials };
      cells.push(cell);
      onCell?.(cell);
    }
  }
  return cells;
}
