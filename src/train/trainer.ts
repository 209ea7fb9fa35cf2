// The training loop, independent of files and backends: batches in, AdamW steps out. Gradients
// of `accum` micro-batches are summed and averaged; the schedule advances once per optimizer step.
// Everything that decides the next step (weights, moments, step count, the batch RNG) can be
// exported and restored, so a resumed run continues exactly where it stopped.
import type { Backend, GradOps, Tensor } from '../core/backend.js';
import { Rng } from '../core/random.js';
import { dInner } from '../model/config.js';
import type { SambaModel } from '../model/model.js';
import type { Batch } from './data.js';
import { AdamW, REFERENCE_ADAMW, learningRate, type AdamWConfig, type Schedule } from './optimizer.js';

/** Where batches come from: text windows or a synthetic task. */
export interface BatchSource {
  readonly rng: Rng;
  readonly seqLen: number;
  readonly batch: number;
  next(): Batch;
}

export interface TrainOptions {
  steps: number;
  accum: number;
  /**
   * Multiplies the loss before the backward pass and divides the gradients after, so small
   * gradients survive f16 operands (mixed precision). Halved whenever a gradient overflows. Default 1.
   */
  lossScale?: number;
  schedule: Schedule;
  adamw: AdamWConfig;
  /**
   * Truncated backpropagation through time for the Mamba layers: each batch row's SSM states are
   * carried (without gradient) into the row's next window, so the model learns to start from the
   * state a long history leaves behind, not only from zeros. Every window should be a whole
   * document. Before each window a row starts afresh with probability `resetProbability`.
   */
  carryState?: { resetProbability: number; seed: number };
}

export function defaultTrainOptions(steps: number, lr = 4e-4, over: Partial<TrainOptions> = {}): TrainOptions {
  return {
    steps,
    accum: 1,
    schedule: { lr, minLr: lr / 10, warmup: Math.max(1, Math.ceil(steps / 100)), total: steps },
    adamw: REFERENCE_ADAMW,
    ...over,
  };
}

export interface StepResult {
  step: number; // optimizer steps done after this one
  loss: number; // mean over the micro-batches
  /** The update was skipped: the scaled gradient overflowed (the loss scale was halved). */
  skipped?: boolean;
  lr: number;
  gradNorm: number;
  tokens: number; // scored predictions in this step
}

export interface TrainerState {
  step: number;
  lossScale?: number;
  rng: number[];
  /** carryState: the reset RNG and each layer's carried SSM state (null: none yet / not Mamba). */
  carry?: { rng: number[]; states: (Float32Array | null)[] };
  m: Map<string, Float32Array>;
  v: Map<string, Float32Array>;
}

export class Trainer {
  readonly optimizer: AdamW;
  private be: Backend & GradOps;
  lossScale: number;
  /** carryState: the SSM states carried into the next window, per layer, and the reset RNG. */
  private carried: (Tensor | null)[] | null = null;
  private carryRng: Rng | null = null;

  constructor(readonly model: SambaModel, readonly data: BatchSource, readonly opts: TrainOptions) {
    this.be = model.backend as Backend & GradOps;
    if (typeof this.be.adamw !== 'function') throw new Error(`the ${this.be.name} backend has no training ops`);
    this.optimizer = new AdamW(this.be, model.params, opts.adamw);
    this.lossScale = opts.lossScale ?? 1;
    if (opts.carryState) {
      const p = opts.carryState.resetProbability;
      if (!(p >= 0 && p <= 1)) throw new Error(`carryState.resetProbability must be in [0, 1], got ${p}`);
      if (opts.accum !== 1) throw new Error('carryState needs accum 1 (each window continues the previous one)');
      this.carryRng = new Rng(opts.carryState.seed);
    }
  }

  /** The carried states for the next window, with the rows drawn for a reset zeroed. */
  private carryIn(): (Tensor | null)[] | undefined {
    if (!this.carryRng) return undefined;
    const B = this.data.batch, p = this.opts.carryState!.resetProbability;
    const reset = Array.from({ length: B }, () => this.carryRng!.uniform(0, 1) < p);
    if (!this.carried || !reset.some((r) => r)) return this.carried ?? [];
    // on the device: each row gathered from itself, or from a zero row appended after the last
    const be = this.be, out: (Tensor | null)[] = [], pick = Int32Array.from(reset, (r, b) => (r ? B : b));
    for (const h of this.carried) {
      if (!h) { out.push(null); continue; }
      const row = h.size / B;
      out.push(be.keep(be.tidy(() => be.reshape(be.gatherRows(be.concat([be.reshape(h, [B, row]), be.zeros([1, row])]), pick), h.shape))));
      be.dispose(h);
    }
    return (this.carried = out);
  }

  get step(): number { return this.optimizer.step; }

  async trainStep(): Promise<StepResult> {
    const be = this.be, { accum } = this.opts;
    let sum: Map<string, Tensor> | null = null, lossSum = 0, tokens = 0;
    for (let a = 0; a < accum; a++) {
      const batch = this.data.next();
      const ssmStates = this.carryIn();
      const r = await this.model.lossAndGrads(batch.ids, batch.targets, this.data.batch, this.data.seqLen, { lossScale: this.lossScale, ssmStates });
      if (ssmStates) {
        for (const h of this.carried ?? []) if (h) be.dispose(h);
        this.carried = r.ssmStates!;
      }
      lossSum += r.loss;
      tokens += r.count;
      if (!sum) sum = r.grads;
      else {
        for (const [n, g] of r.grads) {
          const old = sum.get(n)!;
          sum.set(n, be.keep(be.add(old, g)));
          be.dispose(old); be.dispose(g);
        }
      }
    }
    const lr = learningRate(this.optimizer.step, this.opts.schedule);
    const gradNorm = await this.optimizer.update(sum!, lr, 1 / (accum * this.lossScale));
    for (const g of sum!.values()) be.dispose(g);
    if (!Number.isFinite(gradNorm)) {
      if (this.lossScale <= 1) throw new Error(`the gradient is not finite at step ${this.optimizer.step + 1} (loss ${lossSum / accum})`);
      this.lossScale /= 2;
      return { step: this.optimizer.step, loss: lossSum / accum, lr, gradNorm, tokens, skipped: true };
    }
    return { step: this.optimizer.step, loss: lossSum / accum, lr, gradNorm, tokens };
  }

  /** Mean loss over `batches` batches of a source (typically a validation sampler re-seeded each time). */
  async evaluate(source: BatchSource, batches: number): Promise<number> {
    let total = 0, count = 0;
    for (let i = 0; i < batches; i++) {
      const b = source.next();
      const r = await this.model.lossAndGrads(b.ids, b.targets, source.batch, source.seqLen);
      for (const g of r.grads.values()) this.be.dispose(g);
      total += r.loss * r.count;
      count += r.count;
    }
    return total / count;
  }

  async exportState(): Promise<TrainerState> {
    const read = async (m: Map<string, Tensor>) => new Map(await Promise.all([...m].map(async ([n, t]) => [n, await this.be.read(t)] as const)));
    const s: TrainerState = { step: this.optimizer.step, lossScale: this.lossScale, rng: this.data.rng.getState(), m: await read(this.optimizer.m), v: await read(this.optimizer.v) };
    if (this.carryRng) s.carry = { rng: this.carryRng.getState(), states: await Promise.all((this.carried ?? []).map((h) => (h ? this.be.read(h) : null))) };
    return s;
  }

  restoreState(s: TrainerState): void {
    const be = this.be;
    const load = (dst: Map<string, Tensor>, src: Map<string, Float32Array>, what: string) => {
      for (const [n, t] of dst) {
        const data = src.get(n);
        if (!data || data.length !== t.size) throw new Error(`checkpoint's optimizer ${what} has no matching entry for ${n}`);
        be.dispose(t);
        dst.set(n, be.keep(be.tensor(data, t.shape)));
      }
    };
    load(this.optimizer.m, s.m, 'first moment');
    load(this.optimizer.v, s.v, 'second moment');
    this.optimizer.step = s.step;
    if (s.lossScale !== undefined) this.lossScale = s.lossScale;
    this.data.rng.setState(s.rng);
    if (this.carryRng) {
      if (!s.carry) throw new Error('the saved trainer state has no carried states, but this run carries state');
      this.carryRng.setState(s.carry.rng);
      for (const h of this.carried ?? []) if (h) be.dispose(h);
      const cfg = this.model.config, shape = [this.data.batch, dInner(cfg), cfg.mamba.dState]; // every Mamba layer's
      this.carried = s.carry.states.length ? s.carry.states.map((d) => (d ? be.keep(be.tensor(d, shape)) : null)) : null;
    }
  }

  /** Frees the optimizer's moments and any carried state. */
  dispose(): void {
    this.optimizer.dispose();
    for (const h of this.carried ?? []) if (h) this.be.dispose(h);
    this.carried = null;
  }
}
