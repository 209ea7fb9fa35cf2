// Running a training job from files: data loading and tokenising, checkpoints written atomically
// every N steps (weights + config + tokenizer, optimizer moments, step, batch RNG), resume, a
// progress line, JSONL logs and a loss-curve SVG next to the checkpoint.
//
// The batches come from text (`data`: random windows of a token stream) or from a synthetic task
// (`task`: generated documents scored only on their answers, e.g. text passkey retrieval with the
// model's tokenizer, or selective copying); for a task the checkpoint's batch RNG is the generator's
// state, and validation adds the held-out answer accuracy of greedy streaming decoding.
//
// Layout of an output folder:
//   OUT/checkpoint/      a loadable model folder (config.json, model.safetensors, tokenizer) plus
//                        train-state.safetensors (optimizer moments; metadata: step, RNG, options)
//   OUT/train.jsonl      one JSON line per logged step and evaluation
//   OUT/loss.svg         training and validation loss against step
//   OUT/accuracy.svg     tasks only: held-out answer accuracy against step
import { mkdir, readFile, readdir, rename, rm, stat, appendFile } from 'node:fs/promises';
import path from 'node:path';
import type { Backend, Tensor } from '../core/backend.js';
import { countParams, paramSpecs, type ModelConfig } from '../model/config.js';
import { SambaModel } from '../model/model.js';
import { TokenArray, WindowSampler, packDocuments, splitValidation, type TokenSource } from '../train/data.js';
import { Trainer, type BatchSource, type TrainOptions, type TrainerState } from '../train/trainer.js';
import { TaskBatches, evaluateTask } from '../train/tasks.js';
import { createTask, type TaskSpec } from '../train/task-spec.js';
import { Rng } from '../core/random.js';
import type { TextTokenizer } from '../tokenizer/types.js';
import { ByteTokenizer } from '../tokenizer/bytes.js';
import { loadTokenizerJson, saveModelFolder, loadFolderTokenizer } from './checkpoint.js';
import { readSafetensorsFile, writeFileAtomic, writeSafetensorsFile } from './files.js';
import { loadModel } from './load.js';
import { lineChart } from '../eval/plot.js';

export interface TrainJob {
  out: string;
  backend: Backend;
  /** A fresh model from this config, or the weights of `init` (fine-tuning), or `resume`. */
  config?: ModelConfig;
  init?: string;
  resume?: boolean;
  /** Text to train on (a file, a folder, or .bin shards); or else `task`. */
  data?: string;
  /** A synthetic task to generate the training documents (instead of `data`). */
  task?: TaskSpec;
  tokenizer?: string; // tokenizer.json path or 'bytes'
  seqLen: number;
  batch: number;
  valFraction: number;
  evalEvery: number;
  evalBatches: number;
  saveEvery: number;
  logEvery: number;
  seed: number;
  train: TrainOptions;
  /** Recorded so that --resume reopens the backend the same way. */
  precision?: 'f32' | 'mixed';
  quiet?: boolean;
}

// ---------------------------------------------------------------------------------------------
// Data

interface ShardMeta { format: 'samba-lm-tokens'; dtype: 'uint16' | 'uint32'; tokens: number; vocabSize: number; eos?: number }

async function listTextFiles(p: string): Promise<string[]> {
  const s = await stat(p).catch(() => null);
  if (!s) throw new Error(`data path ${p} does not exist`);
  if (s.isFile()) return [p];
  const out: string[] = [];
  for (const e of (await readdir(p, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
    const f = path.join(p, e.name);
    if (e.isDirectory()) out.push(...(await listTextFiles(f)));
    else if (/\.(txt|md|text)$/i.test(e.name) || e.name.endsWith('.bin')) out.push(f);
  }
  return out;
}

export async function readShard(file: string): Promise<{ tokens: TokenArray; meta: ShardMeta }> {
  let meta: ShardMeta;
  try {
    meta = JSON.parse(await readFile(`${file}.json`, 'utf8'));
  } catch (e) {
    throw new Error(`token shard ${file} needs its description ${file}.json (written by samba-lm tokenize): ${(e as Error).message}`);
  }
  if (meta.format !== 'samba-lm-tokens' || (meta.dtype !== 'uint16' && meta.dtype !== 'uint32')) throw new Error(`${file}.json is not a samba-lm token shard description`);
  const buf = await readFile(file), width = meta.dtype === 'uint16' ? 2 : 4;
  if (buf.length !== meta.tokens * width) throw new Error(`token shard ${file} has ${buf.length} bytes, its description says ${meta.tokens} ${meta.dtype} tokens`);
  const ab = buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length);
  return { tokens: new TokenArray(width === 2 ? new Uint16Array(ab) : new Uint32Array(ab)), meta };
}

/** Tokenises text files (each one document, EOS after each) or reads .bin shards. */
export async function loadTokens(dataPath: string, tokenizer: TextTokenizer): Promise<TokenSource> {
  const files = await listTextFiles(dataPath);
  if (files.length === 0) throw new Error(`no .txt/.md files or .bin shards under ${dataPath}`);
  const shards = files.filter((f) => f.endsWith('.bin'));
  if (shards.length) {
    const parts = await Promise.all(shards.map(readShard));
    for (const p of parts) if (p.meta.vocabSize > tokenizer.vocabSize) throw new Error(`a shard's vocabulary (${p.meta.vocabSize}) is larger than the tokenizer's (${tokenizer.vocabSize})`);
    if (parts.length === 1) return parts[0].tokens;
    const all = new Int32Array(parts.reduce((s, p) => s + p.tokens.length, 0));
    let o = 0;
    for (const p of parts) { all.set(p.tokens.tokens, o); o += p.tokens.length; }
    return new TokenArray(all);
  }
  const docs: number[][] = [];
  for (const f of files) docs.push(tokenizer.encode(await readFile(f, 'utf8')));
  return new TokenArray(packDocuments(docs, tokenizer.eosId));
}

export async function tokenizeToShard(input: string, tokenizer: TextTokenizer, out: string): Promise<ShardMeta> {
  const files = (await listTextFiles(input)).filter((f) => !f.endsWith('.bin'));
  if (files.length === 0) throw new Error(`no .txt/.md files under ${input}`);
  const docs: number[][] = [];
  for (const f of files) docs.push(tokenizer.encode(await readFile(f, 'utf8')));
  const packed = packDocuments(docs, tokenizer.eosId);
  const dtype = tokenizer.vocabSize <= 65536 ? 'uint16' : 'uint32';
  const arr = dtype === 'uint16' ? Uint16Array.from(packed) : Uint32Array.from(packed);
  const meta: ShardMeta = { format: 'samba-lm-tokens', dtype, tokens: arr.length, vocabSize: tokenizer.vocabSize, ...(tokenizer.eosId !== undefined ? { eos: tokenizer.eosId } : {}) };
  await writeFileAtomic(out, new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength));
  await writeFileAtomic(`${out}.json`, JSON.stringify(meta, null, 1) + '\n');
  return meta;
}

/** 'bytes' (with an EOS id 256 when the vocabulary has room for it) or a tokenizer.json path. */
export async function openTokenizer(spec: string | undefined, vocabSize = Infinity): Promise<TextTokenizer & { spec: string }> {
  if (!spec || spec === 'bytes') return Object.assign(new ByteTokenizer({ eos: vocabSize > 256 }), { spec: 'bytes' });
  const cfg = path.join(path.dirname(spec), 'tokenizer_config.json');
  const hasCfg = await stat(cfg).then(() => true, () => false);
  return Object.assign(await loadTokenizerJson(spec, hasCfg ? cfg : undefined), { spec });
}

// ---------------------------------------------------------------------------------------------
// Checkpoints

const CKPT = 'checkpoint';

/** Writes OUT/checkpoint atomically: into a temporary folder, then swapped in by renames. */
async function saveCheckpoint(job: TrainJob, model: SambaModel, trainer: Trainer, tokenizerSpec: string | null): Promise<void> {
  const be = job.backend, final = path.join(job.out, CKPT), tmp = `${final}.tmp`, old = `${final}.old`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  await saveModelFolder(tmp, model.config, (n) => be.read(model.params.get(n)!), {
    format: 'samba-lm',
    ...(tokenizerSpec === null ? {} : tokenizerSpec === 'bytes' ? { tokenizer: { type: 'bytes' as const, eos: model.config.vocabSize > 256 } } : { tokenizerJsonPath: tokenizerSpec }),
  });
  const st = await trainer.exportState();
  const tensors = [...st.m].flatMap(([n, m]) => [
    { name: `m.${n}`, shape: [m.length], dtype: 'F32' as const, data: m },
    { name: `v.${n}`, shape: [m.length], dtype: 'F32' as const, data: st.v.get(n)! },
  ]);
  // --carry-state: each layer's carried SSM states and the reset RNG
  st.carry?.states.forEach((h, j) => { if (h) tensors.push({ name: `carry.${j}`, shape: [h.length], dtype: 'F32' as const, data: h }); });
  await writeSafetensorsFile(path.join(tmp, 'train-state.safetensors'), tensors, {
    metadata: {
      step: String(st.step), rng: JSON.stringify(st.rng), lossScale: String(st.lossScale ?? 1), options: JSON.stringify(savedOptions(job)),
      ...(st.carry ? { carry: JSON.stringify({ rng: st.carry.rng, layers: st.carry.states.length }) } : {}),
    },
  });
  await rm(old, { recursive: true, force: true });
  if (await stat(final).then(() => true, () => false)) await rename(final, old);
  await rename(tmp, final);
  await rm(old, { recursive: true, force: true });
}

/** The latest complete checkpoint folder of OUT (a swap interrupted between renames leaves .old). */
async function findCheckpoint(out: string): Promise<string | null> {
  for (const d of [CKPT, `${CKPT}.old`]) {
    const p = path.join(out, d);
    if (await stat(path.join(p, 'train-state.safetensors')).then(() => true, () => false)) return p;
  }
  return null;
}

async function readTrainState(dir: string): Promise<TrainerState> {
  const f = await readSafetensorsFile(path.join(dir, 'train-state.safetensors'));
  const m = new Map<string, Float32Array>(), v = new Map<string, Float32Array>();
  for (const [n, t] of f.tensors) if (!n.startsWith('carry.')) (n.startsWith('m.') ? m : v).set(n.slice(2), t.data as Float32Array);
  const st: TrainerState = { step: Number(f.metadata.step), rng: JSON.parse(f.metadata.rng), ...(f.metadata.lossScale ? { lossScale: Number(f.metadata.lossScale) } : {}), m, v };
  if (f.metadata.carry) {
    const c = JSON.parse(f.metadata.carry) as { rng: number[]; layers: number };
    st.carry = { rng: c.rng, states: Array.from({ length: c.layers }, (_, j) => (f.tensors.get(`carry.${j}`)?.data as Float32Array | undefined) ?? null) };
  }
  return st;
}

/** What a resumed run must reuse to continue identically. */
type SavedOptions = Pick<TrainJob, 'data' | 'task' | 'tokenizer' | 'seqLen' | 'batch' | 'valFraction' | 'evalEvery' | 'evalBatches' | 'saveEvery' | 'logEvery' | 'seed' | 'train' | 'precision'>;

function savedOptions(job: TrainJob): SavedOptions {
  const { data, task, tokenizer, seqLen, batch, valFraction, evalEvery, evalBatches, saveEvery, logEvery, seed, train, precision } = job;
  return { ...(data !== undefined ? { data: path.resolve(data) } : {}), ...(task ? { task } : {}), ...(tokenizer ? { tokenizer: tokenizer === 'bytes' ? 'bytes' : path.resolve(tokenizer) } : {}), seqLen, batch, valFraction, evalEvery, evalBatches, saveEvery, logEvery, seed, train, ...(precision ? { precision } : {}) };
}

/** The options a run in OUT was started with (for --resume). */
export async function savedTrainOptions(out: string): Promise<SavedOptions> {
  const dir = await findCheckpoint(out);
  if (!dir) throw new Error(`nothing to resume in ${out} (no ${CKPT}/train-state.safetensors)`);
  const f = await readSafetensorsFile(path.join(dir, 'train-state.safetensors'));
  return JSON.parse(f.metadata.options) as SavedOptions;
}

/** A training run's output folder stands for its checkpoint: OUT → OUT/checkpoint when OUT holds no model itself. */
export async function resolveModelDir(dir: string): Promise<string> {
  const has = (p: string) => stat(p).then((s) => s.isFile(), () => false);
  if (!(await has(path.join(dir, 'config.json'))) && (await has(path.join(dir, CKPT, 'config.json')))) return path.join(dir, CKPT);
  return dir;
}

/** The task a model folder written by training on a task was trained on (from its train state), if any. */
export async function trainedTask(modelDir: string): Promise<{ task: TaskSpec; seqLen: number } | null> {
  const file = path.join(modelDir, 'train-state.safetensors');
  if (!(await stat(file).then((s) => s.isFile(), () => false))) return null;
  try {
    const f = await readSafetensorsFile(file);
    const o = JSON.parse(f.metadata.options ?? '{}') as Partial<SavedOptions>;
    return o.task ? { task: o.task, seqLen: o.seqLen ?? 0 } : null;
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------------------
// Logs

function lossSvg(train: [number, number][], val: [number, number][]): string {
  return lineChart([{ name: 'train', points: train }, { name: 'validation', points: val, dots: true }], { xLabel: 'step', yLabel: 'loss' });
}

function accuracySvg(acc: [number, number][], tokenAcc: [number, number][], title: string): string {
  return lineChart([{ name: 'answers exact', points: acc, dots: true }, { name: 'answer tokens', points: tokenAcc, dots: true }], { xLabel: 'step', yLabel: 'held-out accuracy', title });
}

/** Seed of a task run's held-out documents: fixed, and apart from the training stream's. */
const taskValSeed = (seed: number) => (seed ^ 0x5a3c96e1) >>> 0;

const fmtTime = (s: number) => (s >= 3600 ? `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m` : s >= 60 ? `${Math.floor(s / 60)}m${String(Math.floor(s % 60)).padStart(2, '0')}s` : `${s.toFixed(0)}s`);

// ---------------------------------------------------------------------------------------------

export async function runTraining(job: TrainJob): Promise<{ model: SambaModel; lastLoss: number; valLoss: number | null; valAccuracy: number | null }> {
  const be = job.backend;
  await mkdir(job.out, { recursive: true });
  if ((job.data === undefined) === (job.task === undefined)) throw new Error('training needs either data (--data PATH) or a task (--task NAME)');
  // Synthetic tasks with their own vocabularies need no tokenizer (a model that has one keeps it).
  const needsTokenizer = !job.task || job.task.name === 'passkey';
  let model: SambaModel, tokenizerSpec: string | null = null, tokenizer: TextTokenizer | null = null, resumeState: TrainerState | null = null;
  const resumeDir = job.resume ? await findCheckpoint(job.out) : null;
  if (job.resume && !resumeDir) throw new Error(`nothing to resume in ${job.out} (no ${CKPT}/train-state.safetensors)`);
  if (resumeDir || job.init) {
    const dir = resumeDir ?? (await resolveModelDir(job.init!));
    const loaded = await loadModel(dir, be);
    model = loaded.model;
    const tok = job.tokenizer ? await openTokenizer(job.tokenizer, model.config.vocabSize) : loaded.tokenizer ?? (await loadFolderTokenizer(dir)) ?? null;
    if (!tok && needsTokenizer) throw new Error(`${dir} has no tokenizer; pass --tokenizer tokenizer.json or bytes`);
    if (tok) {
      tokenizer = tok;
      tokenizerSpec = 'spec' in tok ? (tok as { spec: string }).spec : tok instanceof ByteTokenizer ? 'bytes' : path.join(dir, 'tokenizer.json');
    }
    if (resumeDir) resumeState = await readTrainState(resumeDir);
  } else {
    if (!job.config) throw new Error('train needs a model: --preset, --arch or --config, or --init DIR to fine-tune');
    const cfg = job.config;
    if (needsTokenizer || job.tokenizer) {
      const tok = await openTokenizer(job.tokenizer, cfg.vocabSize);
      tokenizer = tok; tokenizerSpec = tok.spec;
      if (tok.vocabSize > cfg.vocabSize) throw new Error(`the tokenizer has ${tok.vocabSize} ids but the model only ${cfg.vocabSize} embedding rows`);
    }
    model = SambaModel.random(cfg, be, job.seed);
  }
  if (tokenizer && tokenizer.vocabSize > model.config.vocabSize) throw new Error(`the tokenizer has ${tokenizer.vocabSize} ids but the model only ${model.config.vocabSize}`);

  let source: BatchSource, what: string;
  let evaluate: () => Promise<{ loss: number; accuracy?: number; tokenAccuracy?: number } | null>;
  let trainer: Trainer;
  if (job.task) {
    const task = createTask(job.task, tokenizer);
    if (task.vocabSize > model.config.vocabSize) {
      throw new Error(`the ${task.name} task needs a vocabulary of ${task.vocabSize}${job.task.name === 'passkey' ? ' (its tokenizer\'s)' : ''}, the model has only ${model.config.vocabSize}`);
    }
    source = new TaskBatches(task, job.seqLen, job.batch, job.seed);
    what = `the ${task.name} task (vocabulary ${task.vocabSize}, ${task.answerLength} answer token${task.answerLength > 1 ? 's' : ''} scored per document)`;
    evaluate = async () => { // the same held-out documents every time
      const vs = new TaskBatches(task, job.seqLen, job.batch, taskValSeed(job.seed));
      const loss = await trainer.evaluate(vs, job.evalBatches);
      const r = await evaluateTask(model, task, job.seqLen, job.evalBatches * job.batch, new Rng(taskValSeed(job.seed) + 1), { batch: job.batch });
      return { loss, accuracy: r.accuracy, tokenAccuracy: r.tokenAccuracy };
    };
  } else {
    const tokens = await loadTokens(job.data!, tokenizer!);
    const { train, val } = splitValidation(tokens, job.valFraction, job.seqLen + 1);
    source = new WindowSampler(train, job.seqLen, job.batch, job.seed);
    what = `${train.length.toLocaleString('en-US')} training tokens${val ? `, ${val.length.toLocaleString('en-US')} validation` : ''}`;
    evaluate = async () => {
      if (!val) return null;
      const vs = new WindowSampler(val, job.seqLen, job.batch, 1); // the same batches every time
      return { loss: await trainer.evaluate(vs, job.evalBatches) };
    };
  }
  trainer = new Trainer(model, source, job.train);
  if (resumeState) trainer.restoreState(resumeState);

  const logFile = path.join(job.out, 'train.jsonl'), svgFile = path.join(job.out, 'loss.svg'), accFile = path.join(job.out, 'accuracy.svg');
  const curve: [number, number][] = [], valCurve: [number, number][] = [], accCurve: [number, number][] = [], tokAccCurve: [number, number][] = [];
  if (resumeState) { // keep the log of the steps the checkpoint holds; drop those it lost
    const lines = (await readFile(logFile, 'utf8').catch(() => '')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, number>);
    const kept = lines.filter((l) => l.step <= resumeState!.step);
    for (const l of kept) {
      if (l.loss !== undefined) curve.push([l.step, l.loss]);
      if (l.valLoss !== undefined) valCurve.push([l.step, l.valLoss]);
      if (l.valAccuracy !== undefined) accCurve.push([l.step, l.valAccuracy]);
      if (l.valTokenAccuracy !== undefined) tokAccCurve.push([l.step, l.valTokenAccuracy]);
    }
    await writeFileAtomic(logFile, kept.map((l) => JSON.stringify(l) + '\n').join(''));
  }
  const log = (o: Record<string, unknown>) => appendFile(logFile, JSON.stringify(o) + '\n');
  const say = (s: string) => { if (!job.quiet) process.stderr.write(s); };
  say(`training ${model.config.architecture} (${countParams(model.config).toLocaleString('en-US')} parameters) on ${be.name}: ${what}; ${job.train.steps} steps of ${job.batch}×${job.seqLen}×${job.train.accum}${resumeState ? `; resuming at step ${resumeState.step}` : ''}\n`);

  const tty = process.stderr.isTTY && !job.quiet;
  let lastLoss = NaN, valLoss: number | null = null, valAccuracy: number | null = null, t0 = performance.now(), tokensSeen = 0;
  const startStep = trainer.step;
  while (trainer.step < job.train.steps) {
    const r = await trainer.trainStep();
    lastLoss = r.loss;
    tokensSeen += job.batch * job.seqLen * job.train.accum; // positions processed (a task scores only its answers)
    curve.push([r.step, r.loss]);
    const elapsed = (performance.now() - t0) / 1000, rate = tokensSeen / elapsed;
    const eta = ((job.train.steps - r.step) * elapsed) / (r.step - startStep);
    const line = `step ${r.step}/${job.train.steps}  loss ${r.loss.toFixed(4)}  lr ${r.lr.toExponential(2)}  |g| ${r.gradNorm.toFixed(2)}  ${rate.toFixed(0)} tok/s  ETA ${fmtTime(eta)}`;
    if (tty) say(`\r${line}\x1b[K`);
    else if (r.step % job.logEvery === 0 || r.step === job.train.steps) say(line + '\n');
    if (r.skipped) { say(`\nstep ${r.step + 1}: the gradient overflowed; loss scale halved to ${trainer.lossScale}, step repeated\n`); continue; }
    const entry: Record<string, unknown> = { step: r.step, loss: r.loss, lr: r.lr, gradNorm: r.gradNorm, tokensPerSecond: rate, time: new Date().toISOString() };
    if (job.evalEvery > 0 && (r.step % job.evalEvery === 0 || r.step === job.train.steps)) {
      const ev = await evaluate();
      if (ev !== null) {
        valLoss = ev.loss;
        entry.valLoss = valLoss; valCurve.push([r.step, valLoss]);
        if (ev.accuracy !== undefined) {
          valAccuracy = ev.accuracy;
          entry.valAccuracy = ev.accuracy; entry.valTokenAccuracy = ev.tokenAccuracy;
          accCurve.push([r.step, ev.accuracy]); tokAccCurve.push([r.step, ev.tokenAccuracy!]);
        }
        const acc = ev.accuracy !== undefined ? `, held-out accuracy ${(100 * ev.accuracy).toFixed(1)}% (answer tokens ${(100 * ev.tokenAccuracy!).toFixed(1)}%)` : '';
        say(`${tty ? '\n' : ''}  validation loss ${valLoss.toFixed(4)}${acc}\n`);
      }
    }
    await log(entry);
    if ((job.saveEvery > 0 && r.step % job.saveEvery === 0) || r.step === job.train.steps) {
      await saveCheckpoint(job, model, trainer, tokenizerSpec);
      await writeFileAtomic(svgFile, lossSvg(curve, valCurve));
      if (job.task) await writeFileAtomic(accFile, accuracySvg(accCurve, tokAccCurve, `${job.task.name} at length ${job.seqLen}`));
    }
  }
  if (tty) say('\n');
  if (trainer.step === startStep) { // resumed at its last step: nothing to train
    say(`done: ${path.join(job.out, CKPT)} was already trained to step ${trainer.step}\n`);
    trainer.optimizer.dispose();
    return { model, lastLoss, valLoss, valAccuracy };
  }
  say(`done: ${path.join(job.out, CKPT)} (loss ${lastLoss.toFixed(4)}${valLoss !== null ? `, validation ${valLoss.toFixed(4)}` : ''}${valAccuracy !== null ? `, held-out accuracy ${(100 * valAccuracy).toFixed(1)}%` : ''}); curve in ${svgFile}\n`);
  trainer.optimizer.dispose();
  return { model, lastLoss, valLoss, valAccuracy };
}

