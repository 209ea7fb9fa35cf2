// Throughput against the hardware's ceilings and against a Transformer, measured in one run and
// printed as one table (docs/PERFORMANCE.md records results). Random weights: speed only.
//   node dist/bench/throughput.js [--backend webgpu] [--sections ceilings,decode,prefill,batch]
//     [--model samba-1.7b] [--baseline llama3-1.6b] [--positions 1024,65536,1048576]
//     [--prefill 4096,16384,65536,131072] [--prefill-tokens 131072] [--prefill-chunk 16384 (tokens per pass, all sequences)]
//     [--batch-positions 1024,16384,65536] [--tokens 32]
//     [--weights f32|f16]   (f16: matmul weights stored as f16 in the decode, prefill and batch sections)
//     [--kv-cache f32|f16]  (f16: attention keys and values stored as halves in those sections)
//     [--sync-decode]       (each decode step reads its token back before the next is recorded, as
//                            generate() did before it fed sampled ids back on the device)
//     [--pipeline-depth N]  (decode steps recorded before the oldest one's token is awaited, default 1
//                            as generate() does it; 2 hides the read's round trip behind one more step)
//     [--submit-every N]    (WebGPU dispatches per command buffer, default 32; a pipelined decode
//                            step goes in one submit whatever N, as generate() sends it)
//     [--tensor-cores]      (WebGPU: f16 matmuls through subgroup matrices where the adapter has them;
//                            with --weights f16 this moves prefill's products onto the tensor cores)
//     [--scan-invocations N] (the chunked selective scan's target invocations, mamba.ts scanShape; 0: the sequential scan)
//     [--scan-grad-invocations N] (the same for its backward, grad-mamba.ts scanGradShape; 0: walked in order)
//     [--tc-attention on|off] (attention on tensor cores where tensor cores are used, flash-tc.ts; off: f32 kernels)
//     [--gemv-subgroups on|off] (the one-row gemv's groups summed by subgroupAdd where subgroups are 32 wide, matmul-f16.ts gemvLayout; off: one tree per workgroup)
//     [--json out.json] [--svg out.svg]   (the measured points, and tokens/s against length for the
//     prefill and batch sections; both rewritten after every row, so a run cut short keeps its rows)
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { PerformanceObserver } from 'node:perf_hooks';
import type { Backend, Tensor } from '../src/core/backend.js';
import { scanShape } from '../src/backends/webgpu/mamba.js';
import { gemvShape } from '../src/backends/webgpu/matmul-f16.js';
import { scanGradShape } from '../src/backends/webgpu/grad-mamba.js';
import { tcAttention } from '../src/backends/webgpu/flash-tc.js';
import { Rng } from '../src/core/random.js';
import { countParams, makeConfig, paramSpecs, type ModelConfig } from '../src/model/config.js';
import { prefill } from '../src/generate/generate.js';
import { SambaModel } from '../src/model/model.js';
import { getPreset } from '../src/model/presets.js';
import { openBackend, type BackendChoice } from '../src/node/load.js';
import { lineChart } from '../src/eval/plot.js';
import { WebGpuBackend } from '../src/backends/webgpu/backend.js';
import { Params } from '../src/backends/webgpu/context.js';
import { type GpuTensor, bind } from '../src/backends/webgpu/tensor.js';
import { onOff } from './args.js';
import { COPY_VEC4, decodeWeightBytes } from './roofline.js';
import { Replay } from './replay.js';

const { values } = parseArgs({
  options: {
    backend: { type: 'string', default: 'auto' },
    sections: { type: 'string', default: 'ceilings,decode,prefill,batch,train' },
    'train-model': { type: 'string', default: 'samba-421m' },
    'train-seq': { type: 'string', default: '4096' },
    'train-batch': { type: 'string', default: '1' },
    model: { type: 'string', default: 'samba-1.7b' },
    baseline: { type: 'string', default: 'llama3-1.6b' },
    positions: { type: 'string', default: '1024,65536,1048576' },
    prefill: { type: 'string', default: '4096,16384,65536,131072' },
    'prefill-tokens': { type: 'string', default: '131072' },
    'prefill-chunk': { type: 'string', default: '16384' },
    'batch-positions': { type: 'string', default: '1024,16384,65536' },
    batch: { type: 'string', default: '16' },
    tokens: { type: 'string', default: '32' },
    weights: { type: 'string', default: 'f32' },
    'kv-cache': { type: 'string', default: 'f32' },
    'submit-every': { type: 'string' },
    'sync-decode': { type: 'boolean', default: false },
    'pipeline-depth': { type: 'string', default: '1' },
    // the prefill section's models (default: --model, then --baseline), e.g. to time one long prompt alone
    'prefill-models': { type: 'string' },
    'tensor-cores': { type: 'boolean', default: false },
    // invocations the chunked selective scan aims for (mamba.ts scanShape; 0: the sequential scan)
    'scan-invocations': { type: 'string' },
    'scan-grad-invocations': { type: 'string' },
    // on: attention on tensor cores where tensor cores are used (flash-tc.ts); off: the f32 kernels, to compare
    'tc-attention': { type: 'string', default: 'on' },
    'gemv-subgroups': { type: 'string', default: 'on' },
    json: { type: 'string' },
    svg: { type: 'string' },
  },
});
const submitEvery = values['submit-every'] === undefined ? undefined : Number(values['submit-every']);
if (submitEvery !== undefined && !(Number.isInteger(submitEvery) && submitEvery >= 1)) throw new Error(`--submit-every must be a positive integer, got ${values['submit-every']}`);
const be = await openBackend(values.backend as BackendChoice, {
  ...(submitEvery === undefined ? {} : { submitEvery }),
  ...(values['tensor-cores'] ? { precision: 'mixed' as const } : {}),
});
if ('matmulPath' in be) console.log(`matmul path: ${String(be.matmulPath)}`);
const sections = new Set(values.sections!.split(','));
if (values['scan-invocations'] !== undefined) scanShape.invocations = Number(values['scan-invocations']);
if (values['scan-grad-invocations'] !== undefined) scanGradShape.invocations = Number(values['scan-grad-invocations']);
tcAttention.enabled = onOff('tc-attention', values['tc-attention']);
gemvShape.subgroupReduce = onOff('gemv-subgroups', values['gemv-subgroups']);
for (const o of ['weights', 'kv-cache'] as const) if (values[o] !== 'f32' && values[o] !== 'f16') throw new Error(`--${o} must be f32 or f16, got ${values[o]}`);
/** A preset's name, or a ModelConfig JSON file (e.g. experiments/replicate/configs/samba.json). */
const modelConfig = (name: string): ModelConfig => (name.endsWith('.json') ? makeConfig(JSON.parse(readFileSync(name, 'utf8'))) : getPreset(name));
const ints = (s: string) => s.split(',').filter(Boolean).map(Number);
const rows: string[][] = [];
const row = (...r: (string | number)[]) => { rows.push(r.map(String)); console.log(r.join('  |  ')); };

/** One measured rate, for --json and --svg. */
interface Point { section: string; model: string; batch: number; length: number; tokensPerSecond: number; stateBytes?: number; hostRecordMs?: number; gcMsPerToken?: number }
const points: Point[] = [];
const started = new Date().toISOString();
function writeAtomic(file: string, text: string): void {
  writeFileSync(`${file}.tmp`, text);
  renameSync(`${file}.tmp`, file);
}
function record(p: Point): void {
  points.push(p);
  if (values.json) writeAtomic(values.json, JSON.stringify({ adapter: be.name, started, argv: process.argv.slice(2), points }, null, 1) + '\n');
  if (values.svg) {
    const series = new Map<string, [number, number][]>();
    for (const q of points) {
      if (q.section !== 'prefill' && q.section !== 'batch') continue;
      const name = `${q.section === 'prefill' ? 'prefill' : `decode b=${q.batch}`}: ${q.model}`;
      series.set(name, [...(series.get(name) ?? []), [q.length, q.tokensPerSecond]]);
    }
    writeAtomic(values.svg, lineChart([...series].map(([name, pts]) => ({ name, points: pts, dots: true })),
      { xLabel: 'prompt length / position (tokens)', yLabel: 'tokens/s', title: `throughput against length (${be.name}, ${values.weights} weights)`, logX: true, logY: true }));
  }
}

/** Random weights of a plausible scale, uploaded one tensor at a time. */
function randomModel(cfg: ModelConfig, seed: number): SambaModel {
  const rng = new Rng(seed), params = new Map<string, Tensor>();
  for (const s of paramSpecs(cfg)) {
    const n = s.shape.reduce((a, b) => a * b, 1), a = new Float32Array(n), scale = 1 / Math.sqrt(s.shape[s.shape.length - 1]);
    for (let i = 0; i < n; i++) a[i] = (rng.next() * 2 - 1) * scale;
    if (s.name.endsWith('A_log')) for (let i = 0; i < n; i++) a[i] = Math.log(1 + (i % cfg.mamba.dState));
    params.set(s.name, be.keep(be.tensor(a, s.shape)));
  }
  return new SambaModel(cfg, be, params);
}

/** randomModel for the inference sections, with --weights f16 applied; also its weight bytes. */
function inferenceModel(cfg: ModelConfig, seed: number): { model: SambaModel; weightBytes: number } {
  const model = randomModel(cfg, seed);
  const saved = values.weights === 'f16' ? model.compactWeights() : 0;
  model.kvCache = values['kv-cache'] === 'f16' ? 'f16' : 'f32';
  return { model, weightBytes: decodeWeightBytes(cfg, saved, values.weights === 'f16') };
}

async function time(fn: () => Promise<void>, reps: number, warm = true): Promise<number> {
  if (warm) await fn(); // warm-up: pipelines, pools
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) await fn();
  return (performance.now() - t0) / reps / 1000;
}

const fmt = (x: number, d = 1) => x.toFixed(d);
let bandwidth = NaN, peak = NaN;

if (sections.has('ceilings')) {
  // 256 MiB per operand, or what the device can bind (lavapipe: 128 MiB)
  const bind1 = be instanceof WebGpuBackend ? be.device.limits.maxStorageBufferBindingSize : Infinity;
  const n = Math.min(64 * 2 ** 20, Math.floor(bind1 / 4 / 2 ** 20) * 2 ** 20), mib = (n * 4) / 2 ** 20;
  const a = be.keep(be.tensor(new Float32Array(n).fill(1), [n])), b = be.keep(be.tensor(new Float32Array(n).fill(2), [n]));
  // seconds per operation, from timed calls that each record 10 and wait once: one wait's round
  // trip (~0.2 ms) is not small against one operation (~0.3 ms here), and was seen to move these
  // ceilings by 2× and more
  const batch = 10;
  const perOp = async (op: () => void) => (await time(async () => { for (let i = 0; i < batch; i++) op(); await be.flush(); }, 5)) / batch;
  const s = await perOp(() => be.dispose(be.add(a, b)));
  const addBandwidth = (3 * n * 4) / s;
  row('ceiling', `elementwise bandwidth (a+b, ${mib} MiB operands)`, `${fmt(addBandwidth / 1e9, 0)} GB/s`);
  bandwidth = addBandwidth;
  if (be instanceof WebGpuBackend) {
    // the copy ceiling the rooflines use: 16-byte loads and stores, as the f16 gemv reads weights
    // (the scalar a+b kernel reaches about half of it on an H100)
    const y = be.zeros([n]) as GpuTensor, groups = Math.ceil(n / 4 / 256);
    const sc = await perOp(() => be.ctx.dispatch(COPY_VEC4, new Params().u32(n / 4), [bind(a as GpuTensor), bind(y)], groups));
    be.dispose(y);
    bandwidth = Math.max(addBandwidth, (2 * n * 4) / sc);
    const timed = be.device.features.has('timestamp-query');
    row('ceiling', `copy bandwidth (vec4 kernel, ${mib} MiB), wall clock${timed ? '' : ', used by the rooflines'}`, `${fmt((2 * n * 4) / sc / 1e9, 0)} GB/s`);
    if (timed) {
      // timed on the GPU: the wall clock counts each batch's submit and wait too, and read 2.35 to
      // 2.72 TB/s on H100s where the GPU's own timing read 2.99 on every one
      bandwidth = Math.max(bandwidth, await new Replay(be, 20).copyBandwidth());
      row('ceiling', `copy bandwidth (vec4 kernel, ${mib} MiB), timed on the GPU, used by the rooflines`, `${fmt(bandwidth / 1e9, 0)} GB/s`);
    }
  }
  const M = 4096, x = be.keep(be.tensor(new Float32Array(M * M).fill(0.5), [M, M]));
  const sm = await perOp(() => be.dispose(be.matmul(x, x)));
  peak = (2 * M ** 3) / sm;
  row('ceiling', `matmul ${(be as { matmulPath?: string }).matmulPath ?? 'f32'} ${M}³`, `${fmt(peak / 1e12, 1)} TFLOP/s`);
  be.dispose(a); be.dispose(b); be.dispose(x);
  // what every decoded token pays once on top of its work: submit, wait, map a few bytes back
  const one = be.keep(be.tensor(Float32Array.of(1), [1]));
  const rt = await time(async () => { const u = be.add(one, one); await be.read(u); be.dispose(u); }, 50);
  row('ceiling', 'round trip: one tiny dispatch, then a 4-byte read', `${fmt(rt * 1e6, 0)} µs`);
  be.dispose(one);
}

const nTok = Number(values.tokens);

/**
 * Decoding tokens/s at a position, and the host's milliseconds to record a step (forward and
 * sampling): when they approach the step's whole time, the host, not the GPU, sets the rate.
 */
async function decodeRate(model: SambaModel, B: number, pos: number): Promise<{ tps: number; stateBytes: number; recordMs: number; gcMs: number }> {
  const st = model.newState(B);
  st.pos.fill(pos); // the cost of a step depends on the position, not on what the cache holds
  const hostIds = Int32Array.from({ length: B }, (_, i) => (i + 1) % model.config.vocabSize);
  // As generation decodes: the next ids are picked on the device and only they come back. By
  // default also as generate() pipelines it: each step's sampled ids feed the next step on the
  // device, and the host reads them while it records that step (--sync-decode: read, then record).
  let ids: Tensor = be.ids(hostIds, [B]), recordMs = 0;
  const reading: Promise<unknown>[] = [], depth = Number(values['pipeline-depth']);
  const step = values['sync-decode']
    ? async () => {
      const t0 = performance.now();
      const l = model.forward(hostIds, B, 1, st, { lastOnly: true }), next = be.sampleRows(l, { temperature: 0 });
      recordMs += performance.now() - t0;
      await be.read(next);
      be.dispose(l); be.dispose(next); st.pos.fill(pos);
    }
    : async () => {
      const t0 = performance.now();
      // one command buffer per step, as generate() records it: the forward, the sampling and the ids' copy
      const { next, r } = be.inOneSubmit(() => {
        const l = model.forward(ids, B, 1, st, { lastOnly: true }), sampled = be.sampleRows(l, { temperature: 0 });
        be.dispose(l);
        return { next: sampled, r: be.read(sampled) };
      });
      recordMs += performance.now() - t0;
      be.dispose(ids);
      ids = next;
      r.catch(() => undefined); // awaited by a later step, or at the end
      reading.push(r);
      if (reading.length > depth) await reading.shift(); // the token `depth` steps back, read while this step was recorded
      st.pos.fill(pos);
    };
  try {
    // untimed tokens first: pipelines, pools and the bind-group cache (complete from the second
    // token since the pool hands out buffers in a fixed order; it took ~20 tokens before)
    for (let i = 0; i < 64; i++) await step();
    recordMs = 0;
    // the garbage collector's pauses while the timed steps run: Dawn's polling of pending promises
    // makes garbage even while the host only waits (measured on lavapipe), and a pause that lands
    // in a step's recording delays the GPU's next work
    let gcMs = 0;
    const gc = new PerformanceObserver((list) => { for (const e of list.getEntries()) gcMs += e.duration; });
    gc.observe({ entryTypes: ['gc'] });
    const s = await time(step, nTok, false);
    await Promise.all(reading);
    await new Promise((r) => setImmediate(r)); // the observer's last entries
    gc.disconnect();
    return { tps: B / s, stateBytes: st.bytes(), recordMs: recordMs / nTok, gcMs: gcMs / nTok };
  } finally {
    be.dispose(ids);
    st.dispose();
  }
}

if (sections.has('decode')) {
  const cfg = modelConfig(values.model!), { model, weightBytes } = inferenceModel(cfg, 1);
  for (const pos of ints(values.positions!)) {
    const { tps, stateBytes, recordMs, gcMs } = await decodeRate(model, 1, pos);
    const roofline = Number.isFinite(bandwidth) ? bandwidth / (weightBytes + stateBytes) : NaN;
    record({ section: 'decode', model: values.model!, batch: 1, length: pos, tokensPerSecond: tps, stateBytes, hostRecordMs: recordMs, gcMsPerToken: gcMs });
    row('decode b=1', `${values.model} (${values.weights} weights) at position ${pos}`, `${fmt(tps)} tok/s`, `state ${fmt(stateBytes / 2 ** 20)} MiB`,
      Number.isFinite(roofline) ? `roofline ${fmt(roofline)} tok/s (${fmt((100 * tps) / roofline)}%)` : 'roofline: run with --sections ceilings',
      `host records ${fmt(recordMs, 2)} of ${fmt(1000 / tps, 2)} ms/token`, `GC ${fmt(gcMs, 3)} ms/token`);
  }
  model.dispose();
}

if (sections.has('prefill')) {
  const total = Number(values['prefill-tokens']);
  for (const name of values['prefill-models']?.split(',') ?? [values.model!, values.baseline!]) {
    const { model } = inferenceModel(modelConfig(name), 2);
    // one warm-up at 1K builds every pipeline; a long prompt is then timed once (128K full
    // attention takes minutes, and a second run would only repeat it)
    const prompt = (B: number, T: number) => Int32Array.from({ length: B * T }, (_, i) => (i * 7) % model.config.vocabSize);
    const warm = model.forward(prompt(1, 1024), 1, 1024, undefined, { lastOnly: true });
    await be.read(warm); be.dispose(warm);
    for (const T of ints(values.prefill!)) {
      const B = Math.max(1, Math.floor(total / T)), ids = prompt(B, T);
      const rows = Array.from({ length: B }, (_, b) => Array.from(ids.subarray(b * T, (b + 1) * T)));
      try {
        // in chunks through the decoding state, as generate() prefills: one pass over 128K tokens
        // would need activations larger than a binding ([131072, 8192] f32 is 4 GiB)
        const chunk = Math.max(1, Math.floor(Number(values['prefill-chunk']) / B));
        const s = await time(async () => { const st = model.newState(B); await prefill(model, st, rows, chunk); st.dispose(); }, 1, false);
        row('prefill', `${name} ${B}×${T}`, `${fmt((B * T) / s, 0)} tok/s`);
        record({ section: 'prefill', model: name, batch: B, length: T, tokensPerSecond: (B * T) / s });
      } catch (e) {
        row('prefill', `${name} ${B}×${T}`, `failed: ${(e as Error).message.split('\n')[0]}`);
      }
    }
    model.dispose();
  }
}

if (sections.has('batch')) {
  const B = Number(values.batch);
  for (const name of [values.model!, values.baseline!]) {
    const { model } = inferenceModel(modelConfig(name), 3);
    for (const pos of ints(values['batch-positions']!)) {
      try {
        const { tps, stateBytes } = await decodeRate(model, B, pos);
        row(`decode b=${B}`, `${name} at position ${pos}`, `${fmt(tps)} tok/s`, `state ${fmt(stateBytes / 2 ** 20)} MiB`);
        record({ section: 'batch', model: name, batch: B, length: pos, tokensPerSecond: tps, stateBytes });
      } catch (e) {
        row(`decode b=${B}`, `${name} at position ${pos}`, `failed: ${(e as Error).message.split('\n')[0]}`);
      }
    }
    model.dispose();
  }
}

if (sections.has('train')) {
  const { Trainer, defaultTrainOptions } = await import('../src/train/trainer.js');
  const cfg = modelConfig(values['train-model']!), model = randomModel(cfg, 4);
  const T = Number(values['train-seq']), B = Number(values['train-batch']), rng = new Rng(5);
  const source = { rng, seqLen: T, batch: B, next: () => {
    const ids = Int32Array.from({ length: B * T }, () => rng.int(cfg.vocabSize));
    return { ids, targets: Int32Array.from(ids, (_, i) => ids[(i + 1) % ids.length]) };
  } };
  try {
    const trainer = new Trainer(model, source, defaultTrainOptions(1000, 1e-4));
    const s = await time(async () => { await trainer.trainStep(); }, 3);
    const tokens = B * T, flops = 6 * countParams(cfg) * tokens; // matmul FLOPs, forward + backward
    record({ section: 'train', model: values['train-model']!, batch: B, length: T, tokensPerSecond: tokens / s });
    row('train', `${values['train-model']} ${B}×${T}`, `${fmt(tokens / s, 0)} tok/s`, `${fmt(flops / s / 1e12, 2)} TFLOP/s (6·N·tokens)`,
      Number.isFinite(peak) ? `${fmt((100 * flops) / s / peak)}% of the measured matmul peak` : '');
    trainer.optimizer.dispose();
  } catch (e) {
    row('train', `${values['train-model']} ${B}×${T}`, `failed: ${(e as Error).message.split('\n')[0]}`);
  }
  model.dispose();
}

console.log(`\n${be.name} — ${new Date().toISOString()}`);
const w = rows.reduce((m, r) => r.map((c, i) => Math.max(m[i] ?? 0, c.length)), [] as number[]);
for (const r of rows) console.log(r.map((c, i) => c.padEnd(w[i])).join('  '));
process.exit(0);
