// Where the GPU time of a decode step, a prefill or a training step goes: every dispatch timed with
// timestamp queries (ContextOptions.profile) and summed per kernel. Profiling puts each dispatch in
// its own compute pass, so the wall time printed is inflated; the GPU times are not. The gap between
// the unprofiled wall time and the GPU total is host work (recording, submits, read-backs).
//   node dist/bench/profile.js [--sections decode,prefill,train] [--model samba-1.7b] [--weights f32|f16]
//     [--position 4096[,65536…]] [--batch 1] [--prefill 16384] [--train-model samba-421m | --train-config FILE.json]
//     [--train-seq 4096] [--train-batch 1] [--precision f32|mixed] [--reps 4] [--top 14]
//     [--by-grid]   (one row per kernel and workgroup count, e.g. to tell the matmul shapes apart)
//     [--warmup N]  (untimed steps before each timed set: default 64 for decode, 1 otherwise)
//     [--gemv-subgroups on|off] (the one-row gemv's groups summed by subgroupAdd where subgroups are 32 wide; off: one tree per workgroup)
//     [--scan-grad-invocations N] (the chunked scan backward's target invocations, grad-mamba.ts scanGradShape; 0: walked in order)
//     [--passes]    (time whole compute passes instead: the GPU's busy time per step without the
//                    per-dispatch passes' overhead, to set against the host's time to record a step)
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { KernelTime } from '../src/backends/webgpu/context.js';
import { scanGradShape } from '../src/backends/webgpu/grad-mamba.js';
import { gemvShape } from '../src/backends/webgpu/matmul-f16.js';
import { Rng } from '../src/core/random.js';
import { makeConfig, type ModelConfig } from '../src/model/config.js';
import { SambaModel } from '../src/model/model.js';
import { getPreset } from '../src/model/presets.js';
import { createNodeWebGpuBackend } from '../src/node/webgpu.js';
import { onOff } from './args.js';
import { tableLines } from './table.js';

const { values } = parseArgs({
  options: {
    sections: { type: 'string', default: 'decode,prefill,train' },
    model: { type: 'string', default: 'samba-1.7b' },
    weights: { type: 'string', default: 'f32' },
    position: { type: 'string', default: '4096' },
    batch: { type: 'string', default: '1' },
    prefill: { type: 'string', default: '16384' },
    'train-model': { type: 'string', default: 'samba-421m' },
    'train-config': { type: 'string' },
    'train-seq': { type: 'string', default: '4096' },
    'train-batch': { type: 'string', default: '1' },
    precision: { type: 'string', default: 'f32' },
    reps: { type: 'string', default: '4' },
    top: { type: 'string', default: '14' },
    'by-grid': { type: 'boolean', default: false },
    passes: { type: 'boolean', default: false },
    warmup: { type: 'string' },
    'scan-grad-invocations': { type: 'string' },
    'gemv-subgroups': { type: 'string', default: 'on' },
  },
});
if (values['scan-grad-invocations'] !== undefined) scanGradShape.invocations = Number(values['scan-grad-invocations']);
gemvShape.subgroupReduce = onOff('gemv-subgroups', values['gemv-subgroups']);
const precision = values.precision === 'mixed' ? 'f16-matmul' as const : 'f32' as const;
const open = (profile: boolean) => createNodeWebGpuBackend({ requireAdapter: true, profile: profile && values.passes ? 'passes' : profile, precision });
const reps = Number(values.reps), top = Number(values.top);
const sections = new Set(values.sections!.split(','));

/**
 * Runs `setup` on an unprofiled and a profiled backend (with --passes, the profiled one only: timing
 * whole passes leaves a step's host and GPU work as they are) and times each variant of its step
 * (one title each) on both. A step returns the host's milliseconds to record it, where it measures
 * them. Each variant first runs `warmup` untimed steps: pipelines, pools, and the JIT's hot paths.
 */
async function measure(titles: string[], warmup: number, setup: (be: NonNullable<Awaited<ReturnType<typeof open>>>) => Promise<(variant: number) => Promise<number | void>>): Promise<void> {
  const runs = titles.map(() => ({ wall: [] as number[], record: [] as number[], times: [] as KernelTime[] }));
  for (const profile of values.passes ? [true] : [false, true]) {
    const be = (await open(profile))!;
    const step = await setup(be);
    for (const [v, run] of runs.entries()) {
      for (let i = 0; i < warmup; i++) await step(v);
      await be.flush();
      if (profile) await be.ctx.profile(true);
      const t0 = performance.now();
      for (let i = 0; i < reps; i++) {
        const ms = await step(v);
        if (typeof ms === 'number' && (!profile || values.passes)) run.record.push(ms);
      }
      await be.flush();
      run.wall.push((performance.now() - t0) / reps);
      if (profile) run.times = await be.ctx.profile(true, values['by-grid']);
    }
    be.destroy();
  }
  for (const [v, { wall, record, times }] of runs.entries()) report(titles[v], wall, record, times);
}

function report(title: string, wall: number[], record: number[], times: KernelTime[]): void {
  const gpu = times.reduce((s, k) => s + k.ms, 0) / reps;
  console.log(`\n${title}: wall ${wall[0].toFixed(2)} ms per step${wall.length > 1 ? ` (${wall[1].toFixed(2)} profiled)` : ''}, GPU busy ${gpu.toFixed(2)} ms ` +
    `(${((100 * gpu) / wall[0]).toFixed(0)}% of the ${wall.length > 1 ? 'unprofiled ' : ''}wall time)` +
    (record.length ? `; the host records a step in ${median(record).toFixed(2)} ms (median)` : ''));
  const rows = times.slice(0, top).map((k) => [k.kernel, (k.dispatches / reps).toFixed(0), (k.ms / reps).toFixed(3), `${((100 * k.ms) / reps / gpu).toFixed(1)}%`]);
  const rest = times.slice(top), restMs = rest.reduce((s, k) => s + k.ms, 0) / reps;
  if (rest.length) rows.push([`(${rest.length} others)`, (rest.reduce((s, k) => s + k.dispatches, 0) / reps).toFixed(0), restMs.toFixed(3), `${((100 * restMs) / gpu).toFixed(1)}%`]);
  for (const l of tableLines(['kernel', 'dispatches', 'ms per step', 'share'], rows, (i) => i === 0)) console.log(l);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

function modelOn(be: Parameters<Parameters<typeof measure>[2]>[0], cfg: ModelConfig, compact: boolean): SambaModel {
  const model = SambaModel.random(cfg, be, 1);
  if (compact) model.compactWeights();
  return model;
}

if (sections.has('decode')) {
  const cfg = getPreset(values.model!), positions = values.position!.split(',').map(Number), B = Number(values.batch);
  const ids = Int32Array.from({ length: B }, (_, i) => 7 + i);
  const titles = positions.map((pos) => `decode b=${B}, ${values.model} (${values.weights} weights) at position ${pos}`);
  await measure(titles, Number(values.warmup ?? 64), async (be) => {
    const model = modelOn(be, cfg, values.weights === 'f16'), st = model.newState(B);
    // one submit per step, as generate() records a decoding step
    return async (v) => {
      st.pos.fill(positions[v]);
      const t0 = performance.now();
      const l = be.inOneSubmit(() => model.forward(ids, B, 1, st, { lastOnly: true }));
      const ms = performance.now() - t0;
      await be.read(l); be.dispose(l);
      return ms;
    };
  });
}

if (sections.has('prefill')) {
  const cfg = getPreset(values.model!), T = Number(values.prefill);
  const ids = Int32Array.from({ length: T }, (_, i) => (i * 7) % cfg.vocabSize);
  await measure([`prefill 1×${T}, ${values.model} (${values.weights} weights)`], Number(values.warmup ?? 1), async (be) => {
    const model = modelOn(be, cfg, values.weights === 'f16');
    return async () => { const l = model.forward(ids, 1, T, undefined, { lastOnly: true }); await be.read(l); be.dispose(l); };
  });
}

if (sections.has('train')) {
  const { Trainer, defaultTrainOptions } = await import('../src/train/trainer.js');
  const cfg = values['train-config'] ? makeConfig(JSON.parse(readFileSync(values['train-config'], 'utf8'))) : getPreset(values['train-model']!);
  const T = Number(values['train-seq']), B = Number(values['train-batch']);
  await measure([`train ${values['train-config'] ?? values['train-model']} ${B}×${T} (${values.precision})`], Number(values.warmup ?? 1), async (be) => {
    const model = modelOn(be, cfg, false), rng = new Rng(5);
    const source = { rng, seqLen: T, batch: B, next: () => {
      const ids = Int32Array.from({ length: B * T }, () => rng.int(cfg.vocabSize));
      return { ids, targets: Int32Array.from(ids, (_, i) => ids[(i + 1) % ids.length]) };
    } };
    const trainer = new Trainer(model, source, defaultTrainOptions(1000, 1e-4));
    return async () => { await trainer.trainStep(); };
  });
}
process.exit(0);
