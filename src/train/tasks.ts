// Synthetic tasks that test what a model can carry across a long context: passkey retrieval (the
// Samba paper's §3.4, after the Landmark-attention template), selective copying and induction heads
// (the Mamba paper's §4.1). Browser-safe: no node imports.
//
// Every task produces *documents*: a prompt followed by an answer. A document of a task "at length
// L" has L + 1 tokens, so that a training sample is ids = doc[0, L), targets = doc[1, L + 1), and
// only the predictions of answer tokens are scored (every other target is −1). The same document,
// evaluated, is the prompt prefilled through the model's streaming state followed by greedy decoding
// of the answer, each decoded token fed back: the model sees exactly L positions, as in training.
// With Mamba and sliding-window attention the decoding state is fixed in size, so lengths far
// beyond the training length cost time but no extra memory.
import type { Backend, Tensor } from '../core/backend.js';
import { Rng } from '../core/random.js';
import type { Batch } from './data.js';
import type { BatchSource } from './trainer.js';

/** A prompt and the answer a model should continue it with. */
export interface TaskSample {
  prompt: number[];
  answer: number[];
}

export interface SampleOptions {
  /** Passkey only: where the needle sits in the filler, 0 (start) … 1 (just before the query). */
  depth?: number;
}

/** A synthetic task: a generator of (prompt, answer) documents. */
export interface SyntheticTask {
  readonly name: string;
  /** Token ids are in [0, vocabSize). */
  readonly vocabSize: number;
  /** Tokens in every answer (the most, for a task whose answers vary in length: text passkey with a subword tokenizer). */
  readonly answerLength: number;
  /** The shortest length L the task can be generated at. */
  readonly minLength: number;
  /** One document of L + 1 tokens: prompt.length + answer.length = L + 1. */
  sample(rng: Rng, length: number, opts?: SampleOptions): TaskSample;
  /** Human-readable rendering of token ids (for printing examples). */
  describe(ids: readonly number[]): string;
}

function checkLength(task: SyntheticTask, length: number): void {
  if (!Number.isInteger(length) || length < task.minLength) throw new Error(`${task.name}: length must be an integer ≥ ${task.minLength}, got ${length}`);
}

// ---------------------------------------------------------------------------------------------
// Passkey retrieval

/** Token ids of the passkey task. Digits are their own ids. */
export const PASSKEY = {
  // 0–9: the digits
  THE: 10, GRASS: 11, SKY: 12, SUN: 13, IS: 14, GREEN: 15, BLUE: 16, YELLOW: 17, DOT: 18,
  /** "The pass key is" */
  KEY: 19,
  /** "What is the pass key? The pass key is" */
  QUERY: 20,
  vocabSize: 21,
} as const;

/** The filler, repeated: "the grass is green. the sky is blue. the sun is yellow." */
export const PASSKEY_FILLER: readonly number[] = Object.freeze([
  PASSKEY.THE, PASSKEY.GRASS, PASSKEY.IS, PASSKEY.GREEN, PASSKEY.DOT,
  PASSKEY.THE, PASSKEY.SKY, PASSKEY.IS, PASSKEY.BLUE, PASSKEY.DOT,
  PASSKEY.THE, PASSKEY.SUN, PASSKEY.IS, PASSKEY.YELLOW, PASSKEY.DOT,
]);
const SENTENCE = 5; // tokens per filler sentence: needles go between sentences

/**
 * Passkey retrieval. A document of length L (L + 1 tokens):
 *
 *   filler[0, k)  KEY d1 d2 d3 d4 d5  filler[k, F)  QUERY | d1 d2 d3 d4 d5
 *   └──────────────────────── prompt (L − 4 tokens) ─────────┘ └ answer ┘
 *
 * where the filler is PASSKEY_FILLER repeated (the suffix continues the same stream), F = L − 11
 * filler tokens in all, d1…d5 a uniformly random 5-digit key (d1 ≠ 0), and k = the depth · F,
 * rounded down to a sentence boundary (a multiple of 5; depth 1 puts the needle after the last
 * whole sentence). Without a depth, k is uniform over the sentence boundaries in [0, F].
 * Trained, only the five answer digits are scored: the targets at positions L − 5 … L − 1.
 *
 * With `filler: 'shuffled'` every filler token is instead drawn uniformly from the nine filler
 * words (a training augmentation: a fixed periodic filler lets a small model cancel its sum in
 * its state at the training length instead of learning to ignore it; evaluation uses the template).
 * With `distractors: p` each filler token is replaced, with probability p, by a random digit: digits
 * then occur outside the key too, so only digits that follow the key marker may be remembered — a
 * training augmentation that makes the model select what it writes into its state.
 */
export class PasskeyTask implements SyntheticTask {
  readonly name = 'passkey';
  readonly vocabSize = PASSKEY.vocabSize;
  readonly answerLength = 5;
  readonly minLength = 11;
  readonly filler: 'template' | 'shuffled';
  readonly distractors: number;

  constructor(opts: { filler?: 'template' | 'shuffled'; distractors?: number } = {}) {
    this.filler = opts.filler ?? 'template';
    if (this.filler !== 'template' && this.filler !== 'shuffled') throw new Error(`passkey: filler must be "template" or "shuffled", got "${this.filler}"`);
    this.distractors = opts.distractors ?? 0;
    if (!(this.distractors >= 0 && this.distractors <= 1)) throw new Error(`passkey: distractors must be a probability in [0, 1], got ${opts.distractors}`);
  }

  sample(rng: Rng, length: number, opts: SampleOptions = {}): TaskSample {
    checkLength(this, length);
    const F = length - 11, slots = Math.floor(F / SENTENCE);
    let k: number;
    if (opts.depth === undefined) k = SENTENCE * rng.int(slots + 1);
    else {
      if (!(opts.depth >= 0 && opts.depth <= 1)) throw new Error(`passkey: depth must be in [0, 1], got ${opts.depth}`);
      k = SENTENCE * Math.floor(opts.depth * slots + 1e-9);
    }
    const key = [1 + rng.int(9), rng.int(10), rng.int(10), rng.int(10), rng.int(10)];
    const word = this.filler === 'template' ? (i: number) => PASSKEY_FILLER[i % PASSKEY_FILLER.length] : () => PASSKEY.THE + rng.int(9);
    const filler = this.distractors > 0 ? (i: number) => { const w = word(i); return rng.uniform(0, 1) < this.distractors ? rng.int(10) : w; } : word;
    const prompt: number[] = [];
    for (let i = 0; i < k; i++) prompt.push(filler(i));
    prompt.push(PASSKEY.KEY, ...key);
    for (let i = k; i < F; i++) prompt.push(filler(i));
    prompt.push(PASSKEY.QUERY);
    return { prompt, answer: key };
  }

  describe(ids: readonly number[]): string {
    const name = (id: number): string => {
      if (id >= 0 && id <= 9) return String(id);
      switch (id) {
        case PASSKEY.THE: return 'the'; case PASSKEY.GRASS: return 'grass'; case PASSKEY.SKY: return 'sky';
        case PASSKEY.SUN: return 'sun'; case PASSKEY.IS: return 'is'; case PASSKEY.GREEN: return 'green';
        case PASSKEY.BLUE: return 'blue'; case PASSKEY.YELLOW: return 'yellow'; case PASSKEY.DOT: return '.';
        case PASSKEY.KEY: return 'The pass key is'; case PASSKEY.QUERY: return 'What is the pass key? The pass key is';
        default: return `<${id}>`;
      }
    };
    let s = '';
    for (const id of ids) {
      const w = name(id);
      const prevDigit = s.length > 0 && /\d$/.test(s) && id >= 0 && id <= 9;
      s += prevDigit ? w : w === '.' ? w : (s ? ' ' : '') + w;
    }
    return s;
  }
}

// ---------------------------------------------------------------------------------------------
// Selective copying

/**
 * Selective copying (Mamba §4.1.1): data tokens scattered among noise tokens must be repeated, in
 * order, after a COPY marker. Ids: 0 = noise, 1 = COPY, 2 … vocabSize − 1 the data tokens
 * ("colours"). A document of length L (L + 1 tokens):
 *
 *   region of R = L − n tokens: noise, with n data tokens at random distinct positions   COPY | c1 … cn
 *   └──────────────────────────── prompt (L + 1 − n tokens) ───────────────────────────────────┘ └answer┘
 *
 * The Mamba paper uses vocabulary 16 and n = 16; smaller n keeps a CPU run short.
 */
export class SelectiveCopyTask implements SyntheticTask {
  static readonly NOISE = 0;
  static readonly COPY = 1;
  readonly name = 'selective-copy';
  readonly vocabSize: number;
  readonly answerLength: number;
  readonly minLength: number;

  constructor(opts: { dataTokens?: number; vocabSize?: number } = {}) {
    this.answerLength = opts.dataTokens ?? 16;
    this.vocabSize = opts.vocabSize ?? 16;
    if (!(Number.isInteger(this.answerLength) && this.answerLength >= 1)) throw new Error('selective-copy: dataTokens must be a positive integer');
    if (!(Number.isInteger(this.vocabSize) && this.vocabSize >= 3)) throw new Error('selective-copy: vocabSize must be an integer ≥ 3');
    this.minLength = 2 * this.answerLength;
  }

  sample(rng: Rng, length: number): TaskSample {
    checkLength(this, length);
    const n = this.answerLength, R = length - n, colours = this.vocabSize - 2;
    const region = new Array<number>(R).fill(SelectiveCopyTask.NOISE);
    // n distinct positions: a partial Fisher–Yates shuffle of 0 … R−1, then sorted
    const idx = Array.from({ length: R }, (_, i) => i);
    for (let i = 0; i < n; i++) { const j = i + rng.int(R - i); [idx[i], idx[j]] = [idx[j], idx[i]]; }
    const pos = idx.slice(0, n).sort((a, b) => a - b);
    const answer = pos.map(() => 2 + rng.int(colours));
    pos.forEach((p, i) => { region[p] = answer[i]; });
    return { prompt: [...region, SelectiveCopyTask.COPY], answer };
  }

  describe(ids: readonly number[]): string {
    return ids.map((id) => (id === SelectiveCopyTask.NOISE ? '.' : id === SelectiveCopyTask.COPY ? ' COPY ' : String.fromCharCode(65 + id - 2))).join('');
  }
}

// ---------------------------------------------------------------------------------------------
// Induction heads

/**
 * Induction heads (Mamba §4.1.2): after a random stream, a special token is followed by a token X;
 * when the special token comes again at the end, the model must answer X. Ids: 0 = the special
 * token, 1 … vocabSize − 1 ordinary tokens. A document of length L (L + 1 tokens):
 *
 *   r … r  SPECIAL X  r … r  SPECIAL | X
 *   └────────── prompt (L tokens) ──┘ └answer┘
 *
 * with r uniform ordinary tokens, the first SPECIAL at a uniform position p ∈ [0, L − 3] and no
 * other SPECIAL in the prompt. The paper trains at L = 256 and tests up to 2^20.
 */
export class InductionHeadsTask implements SyntheticTask {
  static readonly SPECIAL = 0;
  readonly name = 'induction-heads';
  readonly vocabSize: number;
  readonly answerLength = 1;
  readonly minLength = 3;

  constructor(opts: { vocabSize?: number } = {}) {
    this.vocabSize = opts.vocabSize ?? 16;
    if (!(Number.isInteger(this.vocabSize) && this.vocabSize >= 2)) throw new Error('induction-heads: vocabSize must be an integer ≥ 2');
  }

  sample(rng: Rng, length: number): TaskSample {
    checkLength(this, length);
    const ord = () => 1 + rng.int(this.vocabSize - 1);
    const prompt = Array.from({ length: length - 1 }, ord);
    const p = rng.int(length - 2), x = ord();
    prompt[p] = InductionHeadsTask.SPECIAL;
    prompt[p + 1] = x;
    prompt.push(InductionHeadsTask.SPECIAL);
    return { prompt, answer: [x] };
  }

  describe(ids: readonly number[]): string {
    return ids.map((id) => (id === InductionHeadsTask.SPECIAL ? '*' : id.toString(16))).join('');
  }
}

// ---------------------------------------------------------------------------------------------
// Training batches

/** ids and targets of one document at length L: targets are −1 except on the answer. */
export function trainingPair(s: TaskSample): { ids: number[]; targets: number[] } {
  const doc = [...s.prompt, ...s.answer], L = doc.length - 1, firstScored = s.prompt.length - 1;
  const ids = doc.slice(0, L), targets = doc.slice(1).map((y, t) => (t >= firstScored ? y : -1));
  return { ids, targets };
}

/** Endless batches of a task at one length, for the Trainer. Its RNG state is the data position. */
export class TaskBatches implements BatchSource {
  readonly rng: Rng;
  constructor(readonly task: SyntheticTask, readonly seqLen: number, readonly batch: number, seed: number, private opts: SampleOptions = {}) {
    checkLength(task, seqLen);
    this.rng = new Rng(seed);
  }

  next(): Batch {
    const T = this.seqLen, ids = new Int32Array(this.batch * T), targets = new Int32Array(this.batch * T);
    for (let b = 0; b < this.batch; b++) {
      const p = trainingPair(this.task.sample(this.rng, T, this.opts));
      ids.set(p.ids, b * T);
      targets.set(p.targets, b * T);
    }
    return { ids, targets };
  }
}

// ---------------------------------------------------------------------------------------------
// Evaluation through the streaming state

/** What evaluation needs of a model: a SambaModel fits, and so can a hand-written stand-in. */
export interface StreamingModel<S extends { dispose(): void; bytes?(): number }> {
  readonly backend: Backend;
  readonly config: { readonly vocabSize: number };
  newState(B: number): S;
  forward(ids: Int32Array, B: number, T: number, state: NoInfer<S>, opts: { lastOnly: boolean }): Tensor;
}

export interface EvalOptions extends SampleOptions {
  /** Passkey: depths used in turn by successive trials (overrides depth). */
  depths?: readonly number[];
  /** Sequences decoded together (default 16). */
  batch?: number;
  /** Prompt tokens per forward call while prefilling (default 512): bounds activation memory. */
  prefillChunk?: number;
  /** Called after each batch with the trials done so far. */
  onProgress?: (done: number, total: number) => void;
}

export interface EvalResult {
  length: number;
  trials: number;
  /** Fraction of trials whose whole answer was decoded exactly. */
  accuracy: number;
  /** Fraction of answer tokens decoded correctly (position by position). */
  tokenAccuracy: number;
  /** Decoding-state bytes per sequence after the last token (0 if the model cannot tell). */
  stateBytesPerSequence: number;
}

/**
 * Accuracy of greedy decoding on `trials` fresh documents of `task` at `length`: each prompt is
 * prefilled through a new streaming state (in chunks), then the answer is decoded one token at a
 * time, every decoded token fed back. The documents depend only on `rng` (and the options).
 */
export async function evaluateTask<S extends { dispose(): void; bytes?(): number }>(
  model: StreamingModel<S>, task: SyntheticTask, length: number, trials: number, rng: Rng, opts: EvalOptions = {},
): Promise<EvalResult> {
  checkLength(task, length);
  if (model.config.vocabSize < task.vocabSize) throw new Error(`${task.name} needs a vocabulary of ${task.vocabSize}, the model has ${model.config.vocabSize}`);
  if (!(Number.isInteger(trials) && trials >= 1)) throw new Error(`trials must be a positive integer, got ${trials}`);
  const be = model.backend;
  const chunk = opts.prefillChunk ?? 512, maxB = opts.batch ?? 16;
  const samples: TaskSample[] = [];
  for (let i = 0; i < trials; i++) {
    const depth = opts.depths?.length ? opts.depths[i % opts.depths.length] : opts.depth;
    samples.push(task.sample(rng, length, depth === undefined ? {} : { depth }));
  }
  // Sequences decoded together share a prompt length: where answers vary in length (so prompts do),
  // samples are grouped by it, in order of first appearance.
  const groups: TaskSample[][] = [];
  const byLength = new Map<number, TaskSample[]>();
  for (const s of samples) {
    let g = byLength.get(s.prompt.length);
    if (!g) byLength.set(s.prompt.length, (g = []));
    g.push(s);
  }
  for (const g of byLength.values()) for (let i = 0; i < g.length; i += maxB) groups.push(g.slice(i, i + maxB));
  let exact = 0, tokens = 0, answerTokens = 0, stateBytes = 0, done = 0;
  for (const group of groups) {
    const B = group.length, P = group[0].prompt.length, A = group[0].answer.length;
    const state = model.newState(B);
    try {
      // greedy ids are picked on the backend (sampleRows), so only B numbers come back per step
      const greedy = async (logits: Tensor) => {
        const ids = be.sampleRows(logits, { temperature: 0 });
        be.dispose(logits);
        try { return Int32Array.from(await be.read(ids)); } finally { be.dispose(ids); }
      };
      let next: Int32Array | null = null;
      for (let t0 = 0; t0 < P; t0 += chunk) {
        const t1 = Math.min(P, t0 + chunk), ids = new Int32Array(B * (t1 - t0));
        group.forEach((s, b) => { for (let t = t0; t < t1; t++) ids[b * (t1 - t0) + t - t0] = s.prompt[t]; });
        const out = model.forward(ids, B, t1 - t0, state, { lastOnly: true });
        if (t1 === P) next = await greedy(out);
        else { be.dispose(out); await be.flush(); }
      }
      const decoded = group.map(() => [] as number[]);
      for (let k = 0; k < A; k++) {
        for (let b = 0; b < B; b++) decoded[b].push(next![b]);
        if (k === A - 1) break;
        next = await greedy(model.forward(next!, B, 1, state, { lastOnly: true }));
      }
      group.forEach((s, b) => {
        let ok = 0;
        for (let k = 0; k < A; k++) if (decoded[b][k] === s.answer[k]) ok++;
        tokens += ok;
        answerTokens += A;
        if (ok === A) exact++;
      });
      if (state.bytes) stateBytes = state.bytes() / B;
    } finally {
      state.dispose();
    }
    done += B;
    opts.onProgress?.(done, trials);
  }
  return { length, trials, accuracy: exact / trials, tokenAccuracy: tokens / answerTokens, stateBytesPerSequence: stateBytes };
}
