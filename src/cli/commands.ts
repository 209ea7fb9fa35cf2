// The CLI's commands. Each parses its options, loads what it needs through src/node, and prints.
import { readFile } from 'node:fs/promises';
import type { Backend } from '../core/backend.js';
import { countParams, layout, type ModelConfig } from '../model/config.js';
import { PRESETS, getPreset } from '../model/presets.js';
import { generateIds } from '../generate/generate.js';
import { createStreamDecoder } from '../tokenizer/index.js';
import { describeModelFolder, loadModel, openBackend, type BackendChoice } from '../node/load.js';
import { writeSafetensorsFile } from '../node/files.js';
import { perplexity } from '../eval/perplexity.js';
import { applyTransform, planExport, CHECKPOINT_FORMATS, type CheckpointFormat } from '../io/checkpoint.js';
import { openModelFolder, saveModelFolder } from '../node/checkpoint.js';
import { runDemo } from './demo.js';
import { createSambaServer } from '../node/server.js';
import { createWebServer } from '../node/web.js';
import type { Server } from 'node:http';
import nodePath from 'node:path';
import { WebGpuBackend } from '../backends/webgpu/backend.js';
import { prefixPerplexity, slidingPerplexity, type LengthPoint } from '../eval/length.js';
import { passkeyEval, type PasskeyCell } from '../eval/passkey.js';
import { heatmap, lineChart } from '../eval/plot.js';
import { writeFileAtomic } from '../node/files.js';
import { makeConfig, ARCHITECTURES, type Architecture } from '../model/config.js';
import { defaultTrainOptions } from '../train/trainer.js';
import { openTokenizer, resolveModelDir, runTraining, savedTrainOptions, tokenizeToShard, trainedTask } from '../node/train.js';
import { TASK_NAMES, createTask, isTaskName, type TaskSpec } from '../train/task-spec.js';
import { evaluateTask, type EvalResult } from '../train/tasks.js';
import { Rng } from '../core/random.js';
import { UsageError } from './errors.js';
import type { CliValues, } from './main.js';

export interface Command {
  help: string;
  run(v: CliValues): Promise<void>;
}

function need(v: CliValues, key: keyof CliValues, cmd: string): string {
  const x = v[key];
  if (typeof x !== 'string' || x === '') throw new UsageError(`${cmd} needs --${key}`);
  return x;
}

function num(v: CliValues, key: keyof CliValues, opts: { int?: boolean; min?: number } = {}): number | undefined {
  const x = v[key];
  if (x === undefined) return undefined;
  const n = Number(x);
  if (typeof x !== 'string' || x.trim() === '' || !Number.isFinite(n) || (opts.int && !Number.isInteger(n)) || (opts.min !== undefined && n < opts.min)) {
    throw new UsageError(`--${key} must be ${opts.int ? 'an integer' : 'a number'}${opts.min !== undefined ? ` ≥ ${opts.min}` : ''}, got "${x}"`);
  }
  return n;
}

function backendChoice(v: CliValues): BackendChoice {
  const b = v.backend ?? 'auto';
  if (b !== 'cpu' && b !== 'webgpu' && b !== 'auto') throw new UsageError(`--backend must be cpu, webgpu or auto, got "${b}"`);
  return b;
}

/** --host and --port of the servers. */
function listenOptions(v: CliValues): { host: string; port: number } {
  const port = num(v, 'port', { int: true, min: 0 }) ?? 8080;
  if (port > 65535) throw new UsageError(`--port must be at most 65535, got ${port}`);
  return { host: v.host ?? '127.0.0.1', port };
}

/** Listens, and says where: http://address:port. */
async function listen(server: Server, host: string, port: number): Promise<string> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => reject(new Error(e.code === 'EADDRINUSE' ? `port ${port} on ${host} is already in use (--port)` : e.message)));
    server.listen(port, host, () => resolve());
  });
  server.on('error', (e) => process.stderr.write(`samba-lm: server error: ${e.message}\n`));
  const a = server.address();
  return typeof a === 'object' && a ? `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}` : String(a);
}

/** Serves until Ctrl-C or SIGTERM, then closes the server and its connections. */
function untilInterrupted(server: Server): Promise<void> {
  return new Promise<void>((resolve) => {
    const stop = () => { server.close(() => resolve()); server.closeAllConnections(); };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}

/** The error of a server command given a model folder without a tokenizer. */
const noTokenizer = (dir: string, who: string) => new Error(`model ${dir} has no tokenizer (tokenizer.json, or a byte tokenizer in config.json): ${who} needs one`);

/** Reads token ids from JSON: a flat array (one sequence) or an array of equal-length arrays. */
async function readIds(path: string): Promise<number[][]> {
  let raw: string;
  try {
    raw = await readFile(path, 'utf8');
  } catch (e) {
    throw new Error(`cannot read ids file ${path}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
  let j: unknown;
  try {
    j = JSON.parse(raw);
  } catch (e) {
    throw new Error(`ids file ${path} is not valid JSON: ${(e as Error).message}`);
  }
  const rows = Array.isArray(j) && j.length > 0 && j.every(Array.isArray) ? (j as unknown[][]) : [j as unknown[]];
  if (!Array.isArray(rows[0])) throw new Error(`ids file ${path} must hold a JSON array of token ids or an array of such arrays`);
  rows.forEach((r, i) => r.forEach((x, t) => {
    if (!Number.isInteger(x) || (x as number) < 0) throw new Error(`ids file ${path}: entry [${i}][${t}] is ${JSON.stringify(x)}, not a non-negative integer token id`);
  }));
  if (rows.some((r) => r.length === 0)) throw new Error(`ids file ${path} holds an empty sequence`);
  return rows as number[][];
}

function checkIdsRange(rows: number[][], cfg: ModelConfig): void {
  for (const r of rows) for (const id of r) if (id >= cfg.vocabSize) throw new Error(`token id ${id} is outside the model's vocabulary [0, ${cfg.vocabSize})`);
}

function printConfig(cfg: ModelConfig, title: string): void {
  const kinds = layout(cfg);
  const counts = kinds.reduce<Record<string, number>>((m, k) => ({ ...m, [k]: (m[k] ?? 0) + 1 }), {});
  const attn = kinds.some((k) => k === 'swa' || k === 'attn');
  console.log(`${title}`);
  console.log(`  architecture   ${cfg.architecture}${cfg.layout ? ' (custom layout)' : ''}`);
  console.log(`  parameters     ${countParams(cfg).toLocaleString('en-US')}`);
  console.log(`  d_model        ${cfg.dModel}   blocks ${cfg.nBlocks}   vocabulary ${cfg.vocabSize}   ${cfg.tieEmbeddings ? 'tied' : 'untied'} embeddings`);
  if (kinds.includes('mamba')) console.log(`  mamba          d_inner ${cfg.mamba.expand * cfg.dModel}   d_state ${cfg.mamba.dState}   d_conv ${cfg.mamba.dConv}   dt_rank ${cfg.mamba.dtRank}`);
  if (attn) console.log(`  attention      ${cfg.nHeads} query / ${cfg.nKvHeads} kv heads of ${cfg.headDim}   ${kinds.includes('swa') ? `window ${cfg.window}   ` : ''}${cfg.rope ? `RoPE base ${cfg.ropeBase}` : 'no positional encoding'}`);
  if (kinds.includes('mlp')) console.log(`  mlp            SwiGLU ${cfg.mlpHidden}`);
  console.log(`  sub-layers     ${kinds.length} (${Object.entries(counts).map(([k, n]) => `${n} ${k}`).join(', ')})`);
  console.log(`  layout         ${compactLayout(kinds)}`);
}

/** [mamba, mlp, swa, mlp, mamba, mlp, swa, mlp] → "[mamba, mlp, swa, mlp] × 2" */
function compactLayout(kinds: string[]): string {
  for (let p = 1; p <= kinds.length; p++) {
    if (kinds.length % p) continue;
    const unit = kinds.slice(0, p);
    if (kinds.every((k, i) => k === unit[i % p])) return `[${unit.join(', ')}] × ${kinds.length / p}`;
  }
  return `[${kinds.join(', ')}]`;
}

async function withModel<T>(v: CliValues, cmd: string, fn: (m: Awaited<ReturnType<typeof loadModel>>, be: Backend) => Promise<T>): Promise<T> {
  const dir = await resolveModelDir(need(v, 'model', cmd)); // a training run's folder stands for its checkpoint
  const weights = v.weights ?? 'f32';
  if (weights !== 'f32' && weights !== 'f16') throw new UsageError(`--weights must be f32 or f16, got "${weights}"`);
  const kvCache = v['kv-cache'] ?? 'f32';
  if (kvCache !== 'f32' && kvCache !== 'f16') throw new UsageError(`--kv-cache must be f32 or f16, got "${kvCache}"`);
  const tensorCores = v['tensor-cores'] === true;
  if (tensorCores && weights !== 'f16') throw new UsageError('--tensor-cores runs the products of f16 weights: add --weights f16');
  if (tensorCores && v.backend === 'cpu') throw new UsageError('--tensor-cores needs the webgpu backend');
  const be = await openBackend(backendChoice(v), { tensorCores });
  if (tensorCores && be instanceof WebGpuBackend && !be.f16Caps.subgroupMatrix) {
    process.stderr.write(`samba-lm: note: no tensor cores here (${be.subgroupMatrixProblem ?? "the adapter offers no f16 subgroup matrices"}); the f16 tiled kernel runs instead\n`);
  }
  const loaded = await loadModel(dir, be, { weights });
  loaded.model.kvCache = kvCache;
  try {
    return await fn(loaded, be);
  } finally {
    loaded.model.dispose();
  }
}


const TRAIN_HELP = `samba-lm train — train from scratch (or fine-tune with --init DIR)

model (one of):
  --preset NAME                     a preset (samba-lm presets)
  --arch A --d-model D --blocks N   a custom model; also --heads --kv-heads --window --mlp --vocab-size --no-rope
  --config FILE                     a JSON ModelConfig
  --init DIR                        fine-tune any loadable checkpoint (samba-lm, HF Mamba, microsoft/Samba; a run folder: its checkpoint/)
  --resume DIR                      continue a run from DIR/checkpoint (same options)
data (one of):
  --data PATH                       a text file, a folder of .txt/.md files, or .bin shards (samba-lm tokenize)
  --task NAME                       generated documents, a fresh one per sample, scored on their answers only:
                                      passkey            the text passkey prompt of eval passkey, in the model's
                                                         tokenizer, exactly --seq-len tokens (the paper's passkey fine-tuning)
                                      passkey-synthetic  token-level passkey (vocabulary 21)
                                      selective-copy     Mamba §4.1.1 (vocabulary --task-vocab, default 16;
                                                         --task-tokens data tokens to copy, default 16)
                                      induction-heads    Mamba §4.1.2 (vocabulary --task-vocab, default 16)
                                    validation: held-out answer accuracy (greedy, streaming) and loss at each --eval-every;
                                    with --arch, --vocab-size defaults to the task's
  --tokenizer tokenizer.json|bytes  default: the checkpoint's, else bytes
  --val-fraction F                  held-out tail for validation (default 0.01)
schedule (defaults: the reference recipe, AdamW 0.9/0.95, wd 0.1, clip 1.0):
  --seq-len T (default 512)  --batch B (8)  --accum K (1)  --steps N (1000)
  --lr LR (4e-4)  --min-lr (lr/10; = --lr for a constant rate)  --warmup STEPS (1% of steps)  --weight-decay WD (0.1)
  --carry-state P                   truncated BPTT: each batch row's Mamba SSM states carry (without gradient)
                                    into its next window, reset to zeros with probability P per window
                                    (with --task: a row's documents form one endless stream)
output:
  --out DIR                         checkpoint/, train.jsonl, loss.svg
  --eval-every N (100)  --eval-batches N (8; tasks: × --batch held-out documents)  --save-every N (100)  --log-every N (10)
  --seed S (3407)  --backend cpu|webgpu|auto
  --precision f32|mixed             mixed: WebGPU matmuls with f16 operands, f32 sums and master weights
  --loss-scale S                    multiplies the loss for the backward (default 1024 when mixed; halved on overflow)`;

async function trainCommand(v: CliValues, mode: 'train' | 'finetune'): Promise<void> {
  if (v['tensor-cores']) throw new UsageError(`--tensor-cores is for the commands that run a model; ${mode} puts its products on tensor cores with --precision mixed`);
  const resume = v.resume;
  if (resume) { // a resumed run continues with the options it was started with
    const saved = await savedTrainOptions(resume);
    await runTraining({ ...saved, out: resume, resume: true, backend: await openBackend(backendChoice(v), { precision: saved.precision ?? 'f32' }) });
    return;
  }
  const out = v.out ?? resume;
  if (!out) throw new UsageError(`${mode} needs --out DIR`);
  if ((v.data === undefined) === (v.task === undefined)) throw new UsageError(`${mode} needs exactly one of --data PATH or --task NAME`);
  const data = v.data !== undefined ? need(v, 'data', mode) : undefined;
  const task = v.task !== undefined ? taskSpec(v) : undefined;
  if (!task && (v['task-vocab'] !== undefined || v['task-tokens'] !== undefined)) throw new UsageError('--task-vocab and --task-tokens go with --task');
  if (mode === 'finetune' && !v.init && !resume) throw new UsageError('finetune needs --init DIR');
  const sources = [v.preset, v.arch, v.config, v.init].filter((x) => x !== undefined).length;
  if (!resume && sources !== 1) throw new UsageError(`${mode} needs exactly one of --preset, --arch, --config or --init`);
  let config: ModelConfig | undefined;
  if (v.preset) config = getPreset(v.preset);
  else if (v.config) {
    let raw: unknown;
    try { raw = JSON.parse(await readFile(v.config, 'utf8')); } catch (e) { throw new Error(`cannot read model config ${v.config}: ${(e as Error).message}`); }
    config = makeConfig(raw as Parameters<typeof makeConfig>[0]);
  } else if (v.arch) {
    if (!ARCHITECTURES.includes(v.arch as Architecture)) throw new UsageError(`unknown architecture "${v.arch}" (${ARCHITECTURES.join(', ')})`);
    const dModel = num(v, 'd-model', { int: true, min: 1 }), nBlocks = num(v, 'blocks', { int: true, min: 1 });
    if (!dModel || !nBlocks) throw new UsageError('--arch needs --d-model and --blocks');
    const heads = num(v, 'heads', { int: true, min: 1 }), kv = num(v, 'kv-heads', { int: true, min: 1 });
    config = makeConfig({
      architecture: v.arch as Architecture, dModel, nBlocks, vocabSize: num(v, 'vocab-size', { int: true, min: 1 }) ?? (task && task.name !== 'passkey' ? createTask(task).vocabSize : 320),
      ...(heads ? { nHeads: heads, headDim: dModel / heads } : {}), ...(kv ? { nKvHeads: kv } : {}),
      ...(v.window ? { window: num(v, 'window', { int: true, min: 1 })! } : {}), ...(v.mlp ? { mlpHidden: num(v, 'mlp', { int: true, min: 1 })! } : {}),
      ...(v['no-rope'] ? { rope: false } : {}),
    });
  }
  const steps = num(v, 'steps', { int: true, min: 1 }) ?? 1000, lr = num(v, 'lr', { min: 0 }) ?? 4e-4;
  const train = defaultTrainOptions(steps, lr, { accum: num(v, 'accum', { int: true, min: 1 }) ?? 1 });
  train.schedule.minLr = num(v, 'min-lr', { min: 0 }) ?? lr / 10;
  train.schedule.warmup = num(v, 'warmup', { int: true, min: 0 }) ?? train.schedule.warmup;
  const weightDecay = num(v, 'weight-decay', { min: 0 });
  if (weightDecay !== undefined) train.adamw = { ...train.adamw, weightDecay };
  const carry = num(v, 'carry-state', { min: 0 });
  if (carry !== undefined) {
    if (carry > 1) throw new UsageError(`--carry-state is a reset probability in [0, 1], got ${carry}`);
    if (train.accum !== 1) throw new UsageError('--carry-state needs --accum 1 (each window continues the previous one)');
    train.carryState = { resetProbability: carry, seed: (num(v, 'seed', { int: true, min: 0 }) ?? 3407) + 1 };
  }
  const precision = v.precision ?? 'f32';
  if (precision !== 'f32' && precision !== 'mixed') throw new UsageError('--precision must be f32 or mixed');
  const lossScale = num(v, 'loss-scale', { min: 1 }) ?? (precision === 'mixed' ? 1024 : 1);
  train.lossScale = lossScale;
  const backend = await openBackend(backendChoice(v), { precision });
  await runTraining({
    precision,
    out, backend, ...(data !== undefined ? { data } : {}), ...(task ? { task } : {}), resume: resume !== undefined,
    ...(config ? { config } : {}), ...(v.init ? { init: v.init } : {}), ...(v.tokenizer ? { tokenizer: v.tokenizer } : {}),
    seqLen: num(v, 'seq-len', { int: true, min: 1 }) ?? 512,
    batch: num(v, 'batch', { int: true, min: 1 }) ?? 8,
    valFraction: num(v, 'val-fraction', { min: 0 }) ?? 0.01,
    evalEvery: num(v, 'eval-every', { int: true, min: 0 }) ?? 100,
    evalBatches: num(v, 'eval-batches', { int: true, min: 1 }) ?? 8,
    saveEvery: num(v, 'save-every', { int: true, min: 0 }) ?? 100,
    logEvery: num(v, 'log-every', { int: true, min: 1 }) ?? 10,
    seed: num(v, 'seed', { int: true }) ?? 3407,
    train,
  });
}


/** --task NAME [--task-vocab V --task-tokens N] → a task spec (checked by building the task). */
function taskSpec(v: CliValues): TaskSpec {
  const name = v.task ?? '';
  if (!isTaskName(name)) throw new UsageError(`unknown task "${name}" (tasks: ${TASK_NAMES.join(', ')})`);
  const vocab = num(v, 'task-vocab', { int: true, min: 1 }), tokens = num(v, 'task-tokens', { int: true, min: 1 });
  if (vocab !== undefined && name !== 'selective-copy' && name !== 'induction-heads') throw new UsageError(`--task-vocab applies to selective-copy and induction-heads, not ${name}`);
  if (tokens !== undefined && name !== 'selective-copy') throw new UsageError(`--task-tokens applies to selective-copy, not ${name}`);
  const spec: TaskSpec = { name, ...(vocab !== undefined ? { vocabSize: vocab } : {}), ...(tokens !== undefined ? { dataTokens: tokens } : {}) };
  if (name !== 'passkey') {
    try { createTask(spec); } catch (e) { throw new UsageError(`--task ${name}: ${(e as Error).message.replace(/^[\w-]+: /, '')}`); }
  }
  return spec;
}

/** "4k,8k,1m,512" → [4096, 8192, 1048576, 512] */
function parseLengths(s: string | undefined, what: string): number[] {
  if (!s) throw new UsageError(`${what} needs --lengths, e.g. 4k,8k,16k`);
  return s.split(',').map((x) => {
    const m = /^(\d+(?:\.\d+)?)([kKmM]?)$/.exec(x.trim());
    if (!m) throw new UsageError(`--lengths: cannot read "${x}" (use numbers with an optional k or m suffix)`);
    const n = Math.round(Number(m[1]) * (m[2].toLowerCase() === 'k' ? 1024 : m[2].toLowerCase() === 'm' ? 1024 * 1024 : 1));
    if (n < 1) throw new UsageError(`--lengths: ${x} is not a positive length`);
    return n;
  });
}

const lenLabel = (n: number) => (n % (1024 * 1024) === 0 ? `${n / 1024 / 1024}M` : n % 1024 === 0 ? `${n / 1024}K` : String(n));

function printTable(head: string[], rows: string[][]): void {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  console.log(head.map((h, i) => h.padEnd(w[i])).join('  '));
  console.log(w.map((n) => '-'.repeat(n)).join('  '));
  for (const r of rows) console.log(r.map((c, i) => c.padEnd(w[i])).join('  '));
}

const evalPpl: Command = {
  help: `samba-lm eval ppl --model DIR --text FILE --lengths 4k,8k,16k [options]
  Perplexity against evaluation length:
    prefix   for blocks of max(L)+1 tokens, the loss over the first L predictions (the reference's val_ppl@Nx)
    sliding  a window of L tokens moved by --stride (default L/2), every token scored once (Press et al.)
  --mode prefix|sliding|both (default both)  --blocks N (prefix blocks, default all)  --max-tokens N (sliding)
  --json FILE  --plot FILE.svg  --backend cpu|webgpu|auto`,
  async run(v) {
    const lengths = parseLengths(v.lengths, 'eval ppl'), mode = v.mode ?? 'both';
    if (!['prefix', 'sliding', 'both'].includes(mode)) throw new UsageError('--mode must be prefix, sliding or both');
    const textPath = need(v, 'text', 'eval ppl');
    let text: string;
    try { text = await readFile(textPath, 'utf8'); } catch (e) { throw new Error(`cannot read text file ${textPath}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`); }
    await withModel(v, 'eval ppl', async ({ model, tokenizer }) => {
      if (!tokenizer) throw new Error(`model ${v.model} has no tokenizer`);
      const ids = tokenizer.encode(text);
      checkIdsRange([ids], model.config);
      const result: { prefix?: LengthPoint[]; sliding?: LengthPoint[] } = {};
      if (mode !== 'sliding') result.prefix = await prefixPerplexity(model, ids, lengths, num(v, 'blocks', { int: true, min: 1 }) ?? Infinity);
      if (mode !== 'prefix') {
        result.sliding = [];
        for (const L of lengths) result.sliding.push(await slidingPerplexity(model, ids, L, num(v, 'stride', { int: true, min: 1 }), num(v, 'max-tokens', { int: true, min: 1 }) ?? Infinity));
      }
      printTable(['length', ...(result.prefix ? ['prefix ppl'] : []), ...(result.sliding ? ['sliding ppl'] : [])],
        lengths.map((L, i) => [lenLabel(L), ...(result.prefix ? [result.prefix[i].ppl.toFixed(3)] : []), ...(result.sliding ? [result.sliding[i].ppl.toFixed(3)] : [])]));
      const json = { model: v.model, text: textPath, tokens: ids.length, ...result };
      if (v.json) await writeFileAtomic(v.json, JSON.stringify(json, null, 1) + '\n');
      if (v.plot) {
        const series = [...(result.prefix ? [{ name: 'prefix', points: result.prefix.map((p) => [p.length, p.ppl] as [number, number]), dots: true }] : []),
          ...(result.sliding ? [{ name: 'sliding window', points: result.sliding.map((p) => [p.length, p.ppl] as [number, number]), dots: true }] : [])];
        await writeFileAtomic(v.plot, lineChart(series, { xLabel: 'evaluation length (tokens)', yLabel: 'perplexity', title: String(v.model), logX: true }));
      }
    });
  },
};

const evalPasskey: Command = {
  help: `samba-lm eval passkey --model DIR --lengths 4k,8k,…,256k [--depths 11 --trials 5 --seed S]
  Passkey retrieval (the Samba paper's protocol; the prompt template is in src/eval/passkey.ts): a
  5-digit key hidden at each depth of a filler text of each length; greedy answer; exact match.
  --depths N (N evenly spaced depths from 0 to 1) or a list 0,0.5,1   --json FILE  --plot FILE.svg (heatmap)`,
  async run(v) {
    const lengths = parseLengths(v.lengths, 'eval passkey');
    let depths: number[];
    const d = v.depths ?? '11';
    if (/^\d+$/.test(d)) { const n = Number(d); depths = Array.from({ length: n }, (_, i) => (n === 1 ? 0.5 : i / (n - 1))); }
    else depths = d.split(',').map(Number);
    if (depths.some((x) => !(x >= 0 && x <= 1))) throw new UsageError('--depths must be a count or a list of numbers in [0, 1]');
    const trials = num(v, 'trials', { int: true, min: 1 }) ?? 5;
    await withModel(v, 'eval passkey', async ({ model, tokenizer }) => {
      if (!tokenizer) throw new Error(`model ${v.model} has no tokenizer for the passkey prompt`);
      const cells: PasskeyCell[] = await passkeyEval(model, tokenizer, lengths, depths, trials, num(v, 'seed', { int: true }) ?? 1,
        (c) => process.stderr.write(`length ${lenLabel(c.length)} depth ${c.depth.toFixed(2)}: ${c.correct}/${c.trials}\n`));
      const acc = (L: number, dp: number) => { const c = cells.find((x) => x.length === L && x.depth === dp)!; return c.correct / c.trials; };
      printTable(['depth \\ length', ...lengths.map(lenLabel)], [
        ...depths.map((dp) => [dp.toFixed(2), ...lengths.map((L) => `${Math.round(100 * acc(L, dp))}%`)]),
        ['overall', ...lengths.map((L) => `${Math.round((100 * depths.reduce((s, dp) => s + acc(L, dp), 0)) / depths.length)}%`)],
      ]);
      if (v.json) await writeFileAtomic(v.json, JSON.stringify({ model: v.model, lengths, depths, trials, cells }, null, 1) + '\n');
      if (v.plot) await writeFileAtomic(v.plot, heatmap(depths.map((dp) => lengths.map((L) => acc(L, dp))), depths.map((x) => x.toFixed(1)), lengths.map(lenLabel),
        { title: `passkey retrieval: ${v.model}`, rowTitle: 'depth', colTitle: 'prompt length (tokens)' }));
    });
  },
};

const evalTask: Command = {
  help: `samba-lm eval task --model DIR --task NAME --lengths 256,1k,…,16k [--trials N --seed S --batch B --json FILE]
  Answer accuracy of greedy decoding on fresh documents of a synthetic task at each length: each
  prompt is prefilled through the model's streaming state, then the answer decoded token by token.
  --task selective-copy|induction-heads|passkey-synthetic|passkey (passkey: the text template in the
         model's tokenizer); default: the task a checkpoint written by train --task was trained on,
         with its --task-vocab and --task-tokens
  --trials N (100)  --seed S (1)  --batch B (sequences decoded together, 16)  --json FILE  --backend …`,
  async run(v) {
    const lengths = parseLengths(v.lengths, 'eval task');
    const dir = await resolveModelDir(need(v, 'model', 'eval task'));
    const trained = await trainedTask(dir);
    let spec: TaskSpec;
    if (v.task !== undefined) {
      spec = taskSpec(v);
      // a checkpoint's own task settings apply unless given
      if (trained && trained.task.name === spec.name) spec = { ...trained.task, ...spec };
    } else if (trained) {
      if (v['task-vocab'] !== undefined || v['task-tokens'] !== undefined) throw new UsageError('--task-vocab and --task-tokens go with --task');
      spec = trained.task;
    } else throw new UsageError(`eval task needs --task NAME (${TASK_NAMES.join(', ')}): ${dir} records no training task`);
    const trials = num(v, 'trials', { int: true, min: 1 }) ?? 100, seed = num(v, 'seed', { int: true }) ?? 1;
    const batch = num(v, 'batch', { int: true, min: 1 }) ?? 16;
    await withModel({ ...v, model: dir }, 'eval task', async ({ model, tokenizer }) => {
      const task = createTask(spec, tokenizer);
      if (task.vocabSize > model.config.vocabSize) throw new Error(`the ${task.name} task needs a vocabulary of ${task.vocabSize}, the model has only ${model.config.vocabSize}`);
      for (const L of lengths) if (L < task.minLength) throw new UsageError(`--lengths: ${task.name} needs lengths ≥ ${task.minLength}, got ${L}`);
      const results: EvalResult[] = [];
      for (const L of lengths) {
        // each length its own documents, the same for a given seed whatever the other lengths
        const r = await evaluateTask(model, task, L, trials, new Rng(seed * 1_000_003 + L), {
          batch, onProgress: (done, total) => { if (process.stderr.isTTY) process.stderr.write(`\rlength ${lenLabel(L)}: ${done}/${total}`); },
        });
        const line = `length ${lenLabel(L)}: ${(100 * r.accuracy).toFixed(1)}% of ${trials}`;
        process.stderr.write(process.stderr.isTTY ? `\r${line}\x1b[K\n` : `${line}\n`);
        results.push(r);
      }
      const kib = (b: number) => (b >= 1024 * 1024 ? `${(b / 1024 / 1024).toFixed(1)} MiB` : `${(b / 1024).toFixed(1)} KiB`);
      printTable(['length', 'accuracy', 'answer tokens', 'state/sequence'],
        results.map((r) => [lenLabel(r.length), `${(100 * r.accuracy).toFixed(1)}%`, `${(100 * r.tokenAccuracy).toFixed(1)}%`, kib(r.stateBytesPerSequence)]));
      if (v.json) {
        await writeFileAtomic(v.json, JSON.stringify({ model: dir, task: spec, ...(trained ? { trainedLength: trained.seqLen } : {}), trials, seed, results }, null, 1) + '\n');
      }
    });
  },
};

export const commands: Record<string, Command> = {
  'eval ppl': evalPpl,
  'eval passkey': evalPasskey,
  'eval task': evalTask,
  train: { help: TRAIN_HELP, run: (v) => trainCommand(v, 'train') },
  finetune: { help: TRAIN_HELP.replace('samba-lm train — train from scratch (or fine-tune with --init DIR)', 'samba-lm finetune --init DIR — continue training any loadable checkpoint'), run: (v) => trainCommand(v, 'finetune') },
  tokenize: {
    help: 'samba-lm tokenize --input PATH --out FILE.bin [--tokenizer tokenizer.json|bytes]\n  Tokenises text files (each a document, EOS after each, no BOS) into a uint16/uint32 shard + FILE.bin.json.',
    async run(v) {
      const tok = await openTokenizer(v.tokenizer);
      const meta = await tokenizeToShard(need(v, 'input', 'tokenize'), tok, need(v, 'out', 'tokenize'));
      console.log(JSON.stringify(meta));
    },
  },
  info: {
    help: 'samba-lm info --preset NAME | --model DIR [--format text|json]\n  Prints the architecture, the sub-layer list and the parameter count, without loading weights.',
    async run(v) {
      let cfg: ModelConfig, title: string;
      if (v.preset) { cfg = getPreset(v.preset); title = `preset ${v.preset}`; }
      else if (v.model) { const d = await describeModelFolder(v.model); cfg = d.config; title = `${v.model} (${d.format})`; }
      else throw new UsageError('info needs --preset NAME or --model DIR');
      if (v.format !== undefined && v.format !== 'json' && v.format !== 'text') throw new UsageError('info --format must be text or json');
      if (v.format === 'json') console.log(JSON.stringify({ config: cfg, parameters: countParams(cfg), layout: layout(cfg) }, null, 2));
      else printConfig(cfg, title);
    },
  },

  presets: {
    help: 'samba-lm presets\n  Lists the model presets with their parameter counts.',
    async run() {
      for (const [name, cfg] of Object.entries(PRESETS)) {
        console.log(`${name.padEnd(24)} ${cfg.architecture.padEnd(14)} ${countParams(cfg).toLocaleString('en-US').padStart(15)}`);
      }
    },
  },

  generate: {
    help: `samba-lm generate --model DIR (--prompt TEXT | --ids FILE.json) [options]
  --max-tokens N          tokens to generate (default 128)
  --temperature T         0 = greedy (default 1)
  --top-k K  --top-p P    sampling filters (off by default)
  --repetition-penalty R  > 1 discourages repeats (default 1)
  --seed S                makes sampling repeatable
  --stop ID,ID            stop after any of these token ids (default: the tokenizer's EOS)
  --output-ids            print the generated ids as a JSON array instead of text
  --backend cpu|webgpu|auto`,
    async run(v) {
      if ((v.prompt === undefined) === (v.ids === undefined)) throw new UsageError('generate needs exactly one of --prompt TEXT or --ids FILE.json');
      const idsRows = v.ids ? await readIds(v.ids) : null;
      if (idsRows && idsRows.length !== 1) throw new UsageError('generate takes one sequence of ids');
      const opts = {
        maxTokens: num(v, 'max-tokens', { int: true, min: 0 }) ?? 128,
        temperature: num(v, 'temperature', { min: 0 }),
        topK: num(v, 'top-k', { int: true, min: 0 }),
        topP: num(v, 'top-p'),
        repetitionPenalty: num(v, 'repetition-penalty'),
        seed: num(v, 'seed', { int: true }),
      };
      const stop = v.stop?.split(',').map((s) => {
        const n = Number(s);
        if (!Number.isInteger(n) || n < 0) throw new UsageError(`--stop takes comma-separated token ids, got "${s}"`);
        return n;
      });
      await withModel(v, 'generate', async ({ model, tokenizer }) => {
        let prompt: number[];
        if (idsRows) prompt = idsRows[0];
        else {
          if (!tokenizer) throw new Error(`model ${v.model} has no tokenizer (tokenizer.json); pass --ids instead of --prompt`);
          prompt = tokenizer.encode(v.prompt!);
          if (prompt.length === 0) throw new Error('the prompt encodes to no tokens');
        }
        checkIdsRange([prompt], model.config);
        const stopTokens = stop ?? (tokenizer?.eosId !== undefined ? [tokenizer.eosId] : []);
        const abort = new AbortController();
        process.once('SIGINT', () => abort.abort(new Error('interrupted')));
        const out: number[] = [];
        const text = tokenizer && !v['output-ids'] ? createStreamDecoder(tokenizer) : null;
        if (!v['output-ids'] && !tokenizer) throw new Error(`model ${v.model} has no tokenizer to print text with; add --output-ids`);
        for await (const id of generateIds(model, prompt, { ...opts, stopTokens, signal: abort.signal })) {
          out.push(id);
          if (text) process.stdout.write(text.push(id));
        }
        if (text) process.stdout.write(text.flush() + '\n');
        else console.log(JSON.stringify(out));
      });
    },
  },

  perplexity: {
    help: 'samba-lm perplexity --model DIR (--text FILE | --ids FILE.json) [--backend …]\n  Prints {"tokens","nll","ppl"}: the mean next-token negative log-likelihood over the tokens-1 predictions.',
    async run(v) {
      if ((v.text === undefined) === (v.ids === undefined)) throw new UsageError('perplexity needs exactly one of --text FILE or --ids FILE.json');
      const rows = v.ids ? await readIds(v.ids) : null;
      let text: string | null = null;
      if (v.text) {
        try { text = await readFile(v.text, 'utf8'); } catch (e) { throw new Error(`cannot read text file ${v.text}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`); }
      }
      await withModel(v, 'perplexity', async ({ model, tokenizer }) => {
        let seqs: number[][];
        if (rows) seqs = rows;
        else {
          if (!tokenizer) throw new Error(`model ${v.model} has no tokenizer (tokenizer.json); pass --ids instead of --text`);
          seqs = [tokenizer.encode(text!)];
        }
        checkIdsRange(seqs, model.config);
        const r = await perplexity(model, seqs);
        console.log(JSON.stringify(r));
      });
    },
  },

  logits: {
    help: 'samba-lm logits --model DIR --ids FILE.json --out FILE.safetensors [--backend …]\n  Writes float32 logits [B,T,V] (tensor "logits") for B id sequences of equal length T.',
    async run(v) {
      const rows = await readIds(need(v, 'ids', 'logits'));
      const out = need(v, 'out', 'logits');
      const T = rows[0].length;
      if (rows.some((r) => r.length !== T)) throw new Error(`logits needs sequences of equal length; got lengths ${[...new Set(rows.map((r) => r.length))].join(', ')}`);
      await withModel(v, 'logits', async ({ model }) => {
        checkIdsRange(rows, model.config);
        const B = rows.length, V = model.config.vocabSize;
        const t = model.forward(Int32Array.from(rows.flat()), B, T);
        const data = await model.backend.read(t);
        model.backend.dispose(t);
        await writeSafetensorsFile(out, [{ name: 'logits', shape: [B, T, V], dtype: 'F32', data }]);
      });
    },
  },

  convert: {
    help: `samba-lm convert --model DIR --out DIR [--format samba-lm|samba-reference|hf-mamba] [--dtype f32|f16|bf16]
  Rewrites a model folder in another layout: samba-lm's own, the microsoft/Samba reference's (its
  Config fields and exact state-dict keys, to continue in its PyTorch training), or Hugging Face Mamba.`,
    async run(v) {
      const dir = need(v, 'model', 'convert'), out = need(v, 'out', 'convert');
      const format = (v.format ?? 'samba-lm') as CheckpointFormat;
      if (!CHECKPOINT_FORMATS.includes(format)) throw new UsageError(`--format must be one of ${CHECKPOINT_FORMATS.join(', ')}`);
      const dtype = v.dtype ?? 'f32';
      if (dtype !== 'f32' && dtype !== 'f16' && dtype !== 'bf16') throw new UsageError('--dtype must be f32, f16 or bf16');
      const folder = await openModelFolder(dir);
      try {
        const tok = folder.tokenizerRef;
        await saveModelFolder(out, folder.config, (n) => folder.read(n), {
          format, dtype,
          ...(tok?.type === 'tokenizer.json' ? { tokenizerJsonPath: tok.path } : tok?.type === 'bytes' && format === 'samba-lm' ? { tokenizer: tok } : {}),
        });
      } finally {
        await folder.close();
      }
      console.log(`wrote ${out} (${format}, ${dtype})`);
    },
  },

  grad: {
    help: `samba-lm grad --model DIR --ids FILE.json --out FILE.safetensors [--backend …]
  Writes the gradient of the mean next-token cross-entropy over the B×(T−1) predictions of the ids
  with respect to every parameter, under the checkpoint's own tensor names (tied weights: the same
  gradient under each stored name), plus the loss as a 1-element tensor "loss".`,
    async run(v) {
      const rows = await readIds(need(v, 'ids', 'grad'));
      const out = need(v, 'out', 'grad');
      const T = rows[0].length;
      if (rows.some((r) => r.length !== T)) throw new Error(`grad needs sequences of equal length; got lengths ${[...new Set(rows.map((r) => r.length))].join(', ')}`);
      if (T < 2) throw new Error('grad needs sequences of at least two tokens (one prediction)');
      await withModel(v, 'grad', async ({ model, format, fileTensorNames }) => {
        checkIdsRange(rows, model.config);
        const B = rows.length, ids = Int32Array.from(rows.flat());
        const targets = Int32Array.from({ length: B * T }, (_, i) => (i % T === T - 1 ? -1 : ids[i + 1]));
        const { loss, grads } = await model.lossAndGrads(ids, targets, B, T);
        const be = model.backend;
        const plan = planExport(model.config, { format });
        const inFile = new Set(fileTensorNames);
        const missing = fileTensorNames.filter((n) => !plan.tensors.some((m) => m.name === n));
        if (missing.length) throw new Error(`cannot name the gradient of checkpoint tensor ${missing[0]} in the ${format} layout`);
        const tensors = [];
        for (const m of plan.tensors.filter((t) => inFile.has(t.name))) {
          const g = grads.get(m.source);
          if (!g) throw new Error(`no gradient for ${m.source}`);
          tensors.push({ name: m.name, shape: m.shape, dtype: 'F32' as const, data: applyTransform(m, await be.read(g)) });
        }
        for (const g of grads.values()) be.dispose(g);
        tensors.push({ name: 'loss', shape: [1], dtype: 'F32' as const, data: Float32Array.of(loss) });
        await writeSafetensorsFile(out, tensors);
      });
    },
  },

  serve: {
    help: `samba-lm serve --model DIR [options]
  An OpenAI-compatible HTTP server for one model (needs its tokenizer):
    GET /v1/models, POST /v1/completions, POST /v1/chat/completions (JSON, or server-sent events
    with "stream": true), GET /health. Sampling: temperature, top_p, top_k, seed, stop,
    repetition_penalty, max_tokens. Chat messages become "Role: content" lines, then "Assistant:".
    Requests are decoded one at a time.
  --host H         address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)
  --port P         (default 8080; 0 picks a free port)
  --model-id NAME  the name clients use and responses carry (default: the folder's name)
  --max-tokens N   the most tokens one request may generate (default 4096)
  --weights f16  --kv-cache f16  --tensor-cores  --backend cpu|webgpu|auto`,
    async run(v) {
      const { port, host } = listenOptions(v);
      const limit = num(v, 'max-tokens', { int: true, min: 1 }) ?? 4096;
      await withModel(v, 'serve', async ({ model, tokenizer }) => {
        if (!tokenizer) throw noTokenizer(v.model!, 'the server');
        const modelId = v['model-id'] ?? nodePath.basename(nodePath.resolve(v.model!));
        const server = createSambaServer({ model, tokenizer, modelId, maxTokensLimit: limit });
        const where = await listen(server, host, port);
        console.log(`samba-lm: serving "${modelId}" at ${where}/v1 (Ctrl-C stops)`);
        await untilInterrupted(server);
      });
    },
  },

  web: {
    help: `samba-lm web [--model DIR] [options]
  Serves the browser page: it loads a model into the browser's own backend (WebGPU, or the CPU)
  and streams generated text. With --model, the page offers that folder's model; it can also load
  a model folder's files picked on the visitor's machine. Nothing runs on the server but files.
  --host H  address to listen on (default 127.0.0.1)
  --port P  (default 8080; 0 picks a free port)`,
    async run(v) {
      const { port, host } = listenOptions(v);
      if (v.model) { // a clear error now rather than in the page
        const folder = await describeModelFolder(v.model);
        if (!folder.tokenizerRef) throw noTokenizer(v.model, 'the page');
      }
      const server = createWebServer({ modelDir: v.model });
      const where = await listen(server, host, port);
      console.log(`samba-lm: the page is at ${where}/${v.model ? ` with the model ${v.model}` : ''} (Ctrl-C stops)`);
      await untilInterrupted(server);
    },
  },

  demo: {
    help: `samba-lm demo [--backend cpu|webgpu|auto] [--quick]
  Trains a tiny Samba and a same-size full-attention Transformer on synthetic passkey retrieval at a
  short length (a few minutes on two CPU cores, nothing downloaded), then prints each one's retrieval
  accuracy at 1x, 4x, 16x and 64x the training length and its decoding-state size.
  --quick  a fast smoke run (a few steps; the accuracies mean nothing)`,
    async run(v) {
      if (v['tensor-cores']) throw new UsageError('--tensor-cores is for the commands that run a model; demo takes --backend and --quick');
      const choice = backendChoice(v);
      await runDemo(await openBackend(choice), { quick: v.quick === true, auto: choice === 'auto' });
    },
  },
};
