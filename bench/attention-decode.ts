// Times the decoding attention (one new token per sequence, RoPE and the cache store fused, as the
// model calls it) on WebGPU over a full sliding window of cached keys, and prints a table: shape,
// cache dtype, µs per call and the GB/s of the cached keys and values a call reads. Each time is the
// median of 3 batches of back-to-back calls in one compute pass, timed on the GPU by timestamps
// around the pass (where the adapter has timestamp queries; else by the wall clock, which then
// includes the host's recording), so a dispatch's GPU overhead (launch, the barrier after it) stays
// in, as it does inside a decoding step, and the host's does not.
//   node dist/bench/attention-decode.js [--shapes 32x4x64,18x18x128] [--window 2048] [--batch 1] [--reps 200]
//     [--splits 64:1024,256:1024] [--pv-loads 8,16] [--group-pv-loads 4,8,16] [--step on,off]
//   shapes: query heads × KV heads × head size (defaults: samba-1.7b, samba-1.3b); splits: split
//   policies to compare, fewest keys per split : workgroups to aim for [: groupMinKeys, e.g. 0 to
//   group the heads of a KV head always, Infinity never] (default: the backend's);
//   pv-loads, group-pv-loads: values of attentionShape.pvLoads and .groupPvLoads to compare; step:
//   on: the step kernel wherever it serves the shape, at any batch (SplitPolicy.stepMaxBatch), off:
//   the per-row kernel. The GPU is kept busy for a second first,
//   so that the first row does not pay for its clocks rising.
import { parseArgs } from 'node:util';
import { attentionShape } from '../src/backends/webgpu/attention.js';
import { stepFits } from '../src/backends/webgpu/attention-step.js';
import type { KvCache, Tensor } from '../src/core/backend.js';
import { Rng, randomArray } from '../src/core/random.js';
import { ropeTables } from '../src/model/rope.js';
import { createNodeWebGpuBackend } from '../src/node/webgpu.js';
import { onOff } from './args.js';
import { tableLines } from './table.js';

const { values } = parseArgs({
  options: {
    shapes: { type: 'string', default: '32x4x64,18x18x128' },
    window: { type: 'string', default: '2048' },
    batch: { type: 'string', default: '1' },
    reps: { type: 'string', default: '200' },
    splits: { type: 'string' },
    'pv-loads': { type: 'string' },
    'group-pv-loads': { type: 'string' },
    step: { type: 'string', default: 'on' },
  },
});
const pvLoads = values['pv-loads'] ? values['pv-loads'].split(',').map(Number) : [attentionShape.pvLoads];
const groupPvLoads = values['group-pv-loads'] ? values['group-pv-loads'].split(',').map(Number) : [attentionShape.groupPvLoads];
const steps = values.step!.split(',').map((v) => onOff('step', v));
const policies = values.splits ? values.splits.split(',').map((s) => s.split(':').map(Number)) : [null];
const W = Number(values.window), B = Number(values.batch), reps = Number(values.reps);
const rng = new Rng(3);
const rows: string[][] = [];
let warm = false;
for (const step of steps) for (const pv of pvLoads) for (const gpv of groupPvLoads) for (const policy of policies) {
  attentionShape.pvLoads = pv;
  attentionShape.groupPvLoads = gpv;
  // --step on: the step kernel at every batch size where it fits, for the comparison
  const attentionSplit = { ...(policy ? { minKeys: policy[0], targetWorkgroups: policy[1], ...(policy.length > 2 ? { groupMinKeys: policy[2] } : {}) } : {}), stepMaxBatch: step ? Infinity : 0 };
  const be = (await createNodeWebGpuBackend({ requireAdapter: true, attentionSplit, profile: 'passes' }).catch(() => null))
    ?? (await createNodeWebGpuBackend({ requireAdapter: true, attentionSplit }))!;
  const timed = be.ctx.profiling;
  const split = policy ? policy.join(':') : 'default';
  for (const shape of values.shapes!.split(',')) {
    const [H, Hkv, hs] = shape.split('x').map(Number);
    for (const dtype of ['f32', 'f16'] as const) {
      const F = Hkv * hs, pos = 2 * W; // a full window of cached keys
      const q = be.tensor(randomArray(rng, B * H * hs), [B, 1, H * hs]);
      const k = be.tensor(randomArray(rng, B * F), [B, 1, F]);
      const v = be.tensor(randomArray(rng, B * F), [B, 1, F]);
      const cache: KvCache = { k: be.zeros([B, W, F], dtype), v: be.zeros([B, W, F], dtype), capacity: W };
      const r = ropeTables(new Int32Array(B).fill(pos), 1, hs, 10000);
      const rope = { cos: be.tensor(r.cos, [B, hs / 2]), sin: be.tensor(r.sin, [B, hs / 2]) };
      const args = { nHeads: H, nKvHeads: Hkv, headDim: hs, window: W, pos0: new Int32Array(B).fill(pos) };
      const call = () => be.dispose(be.attention(q, k, v, cache, args, { rope, store: true }));
      call(); await be.flush();
      for (const t0 = performance.now(); !warm && performance.now() - t0 < 1000;) { be.inOneSubmit(() => { for (let i = 0; i < 50; i++) call(); }); await be.flush(); }
      warm = true;
      const times: number[] = [];
      for (let round = 0; round < 3; round++) {
        if (timed) await be.ctx.profile(true);
        const t0 = performance.now();
        be.inOneSubmit(() => { for (let i = 0; i < reps; i++) call(); });
        await be.flush();
        const wall = performance.now() - t0;
        times.push((timed ? (await be.ctx.profile(true)).reduce((s, k) => s + k.ms, 0) : wall) / reps);
      }
      const ms = times.sort((a, b) => a - b)[1];
      const bytes = 2 * B * (W - 1) * F * (dtype === 'f16' ? 2 : 4);
      const ranStep = step && stepFits(be.ctx, H / Hkv, hs);
      const kernel = ranStep ? 'step' : `per row (loads ${pv}, ${gpv})`;
      rows.push([`${H}×${Hkv}×${hs}`, String(B), split, kernel, dtype, (ms * 1000).toFixed(1), (bytes / (ms * 1e6)).toFixed(0)]);
      for (const t of [q, k, v, cache.k, cache.v, rope.cos, rope.sin] as Tensor[]) be.dispose(t);
    }
  }
  be.destroy();
}
console.log(`\ndecoding attention over ${W} cached keys, ${new Date().toISOString()}`);
for (const l of tableLines(['heads q×kv×size', 'batch', 'split', 'kernel', 'cache', 'µs per call', 'GB/s of cache read'], rows, (i) => i < 5)) console.log(l);
process.exit(0);
