// The GPU's own time for a decoded token, with the host out of the way: one token's recorded
// commands (setPipeline / setBindGroup / dispatchWorkgroups) are replayed R times into one compute
// pass, timed by the pass's timestamps, so the GPU never waits for the host to record. Also by
// kernel kind (each kind's dispatches alone, R times in one pass), and the floor that any dependent
// dispatch costs (an empty kernel dispatched as often, each reading what the last wrote).
// profile.ts times each dispatch in its own pass, which adds a pass's overhead to every kernel;
// throughput.ts's decode rate is the slower of this and the host's recording (dispatches.ts).
//   node dist/bench/decode-gpu.js [--model samba-1.7b] [--position 1024[,65536]] [--reps 20] [--small]
//     [--gemv-wide-groups on|off] [--attention-step on|off]
//     --small: the preset's depth and layout at a tiny width (runs anywhere, lavapipe included)
//     --gemv-wide-groups off: the one-row gemv's groups of several subgroups summed by trees
//       (matmul-f16.ts gemvShape.wideGroupSubgroups), for an A/B
//     --attention-step off: decoding attention by the per-row kernel instead of the step kernel
//       (attention.ts attentionShape.step)
import { parseArgs } from 'node:util';
import { makeConfig } from '../src/model/config.js';
import { SambaModel } from '../src/model/model.js';
import { getPreset } from '../src/model/presets.js';
import { createNodeWebGpuBackend } from '../src/node/webgpu.js';
import { gemvShape } from '../src/backends/webgpu/matmul-f16.js';
import { attentionShape } from '../src/backends/webgpu/attention.js';
import { onOff } from './args.js';
import { capturePassCalls, smallWidth } from './recorded.js';
import { tableLines } from './table.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'samba-1.7b' },
    position: { type: 'string', default: '1024' },
    reps: { type: 'string', default: '20' },
    small: { type: 'boolean', default: false },
    'gemv-wide-groups': { type: 'string', default: 'on' },
    'attention-step': { type: 'string', default: 'on' },
  },
});
gemvShape.wideGroupSubgroups = onOff('gemv-wide-groups', values['gemv-wide-groups']);
attentionShape.step = onOff('attention-step', values['attention-step']);
const be = await createNodeWebGpuBackend({ requireAdapter: true });
if (!be) throw new Error('no WebGPU adapter');
if (!be.device.features.has('timestamp-query')) throw new Error('this adapter has no timestamp queries, which this benchmark times the GPU with');
const dev = be.device, R = Number(values.reps);
const p = getPreset(values.model!);
const cfg = values.small ? smallWidth(p) : makeConfig(p);
const model = SambaModel.random(cfg, be, 1);
model.compactWeights();

interface Dispatch { pipeline: GPUComputePipeline; group: GPUBindGroup; offsets: number[]; gx: number; gy: number; kind: string }

/** One decoded token's dispatches as the backend records them (the token is decoded, too). */
function captureToken(state: ReturnType<SambaModel['newState']>): { dispatches: Dispatch[]; logits: ReturnType<SambaModel['forward']> } {
  let logits: ReturnType<SambaModel['forward']> | undefined;
  const calls = capturePassCalls(dev, () => { logits = be!.inOneSubmit(() => model.forward(Int32Array.of(5), 1, 1, state, { lastOnly: true })); });
  if (!calls) throw new Error('a decoded token copied or cleared buffers: its pass calls alone would not replay it');
  const label = new Map<GPUComputePipeline, string>();
  for (const [key, v] of (be!.ctx as unknown as { pipelines: Map<string, { pipeline: GPUComputePipeline }> }).pipelines) label.set(v.pipeline, key);
  const dispatches: Dispatch[] = [];
  let pipeline: GPUComputePipeline | null = null, bind: unknown[] = [];
  for (const [n, a] of calls) {
    if (n === 'setPipeline') pipeline = a[0] as GPUComputePipeline;
    else if (n === 'setBindGroup') bind = a;
    else {
      const gx = a[0] as number, gy = (a[1] as number | undefined) ?? 1;
      // the kernel's name without its shape suffixes, and its workgroups: one row per kind
      const kind = `${label.get(pipeline!)!.replace(/_\d+x\d+.*$/, '')} ×${gx * gy}`;
      dispatches.push({ pipeline: pipeline!, group: bind[1] as GPUBindGroup, offsets: bind[2] as number[], gx, gy, kind });
    }
  }
  return { dispatches, logits: logits! };
}

const querySet = dev.createQuerySet({ type: 'timestamp', count: 2 });
const resolved = dev.createBuffer({ size: 16, usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC });
const readable = dev.createBuffer({ size: 16, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST });

/** GPU ms per repetition of `list`, replayed R times back to back in one pass. */
async function passTime(list: Dispatch[]): Promise<number> {
  const enc = dev.createCommandEncoder();
  const pass = enc.beginComputePass({ timestampWrites: { querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 } });
  for (let r = 0; r < R; r++) {
    for (const d of list) { pass.setPipeline(d.pipeline); pass.setBindGroup(0, d.group, d.offsets); pass.dispatchWorkgroups(d.gx, d.gy); }
  }
  pass.end();
  enc.resolveQuerySet(querySet, 0, 2, resolved, 0);
  enc.copyBufferToBuffer(resolved, 0, readable, 0, 16);
  dev.queue.submit([enc.finish()]);
  await readable.mapAsync(GPUMapMode.READ);
  const t = new BigUint64Array(readable.getMappedRange().slice(0));
  readable.unmap();
  return Number(t[1] - t[0]) / 1e6 / R;
}
/** The best of five: the GPU's clocks and neighbours only ever slow a run down. */
async function best(list: Dispatch[]): Promise<number> {
  let m = Infinity;
  for (let i = 0; i < 5; i++) m = Math.min(m, await passTime(list));
  return m;
}

// the floor: a kernel that does almost nothing, each dispatch reading what the last one wrote
const scratch = dev.createBuffer({ size: 1024, usage: GPUBufferUsage.STORAGE });
const emptyPipeline = dev.createComputePipeline({
  layout: 'auto',
  compute: { module: dev.createShaderModule({ code: '@group(0) @binding(0) var<storage, read_write> b: array<f32>;\n@compute @workgroup_size(256) fn main(@builtin(global_invocation_id) g: vec3<u32>) { if (g.x < 4u) { b[g.x] += 1.0; } }' }), entryPoint: 'main' },
});
const emptyGroup = dev.createBindGroup({ layout: emptyPipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: scratch } }] });

for (const pos of values.position!.split(',').map(Number)) {
  const state = model.newState(1);
  const step = async () => { state.pos.fill(pos); const l = be.inOneSubmit(() => model.forward(Int32Array.of(5), 1, 1, state, { lastOnly: true })); await be.read(l); be.dispose(l); };
  for (let i = 0; i < 8; i++) await step(); // pipelines, pools, bind groups
  state.pos.fill(pos);
  const { dispatches, logits } = captureToken(state);
  await be.read(logits); be.dispose(logits);
  const all = await best(dispatches);
  const kinds = new Map<string, Dispatch[]>();
  for (const d of dispatches) kinds.set(d.kind, [...(kinds.get(d.kind) ?? []), d]);
  const rows: [string, number, number][] = [];
  for (const [kind, list] of kinds) rows.push([kind, list.length, await best(list)]);
  rows.sort((a, b) => b[2] - a[2]);
  const empty = await best(dispatches.map(() => ({ pipeline: emptyPipeline, group: emptyGroup, offsets: [], gx: 1, gy: 1, kind: 'empty' })));
  console.log(`\n${values.model}${values.small ? ' (small width)' : ''} at position ${pos}, ${new Date().toISOString()}: ${dispatches.length} dispatches, `
    + `GPU ${all.toFixed(3)} ms a token (${(1 / all * 1000).toFixed(0)} tok/s if the host kept up), ${R} tokens back to back in one pass, best of 5`);
  const sum = rows.reduce((s, r) => s + r[2], 0);
  const table = [
    ...rows.map(([k, n, t]) => [k, String(n), (t * 1000).toFixed(1), (t * 1000 / n).toFixed(2)]),
    ['all kinds, each alone', String(dispatches.length), (sum * 1000).toFixed(1), ''],
    ['empty kernel, as many dependent dispatches', String(dispatches.length), (empty * 1000).toFixed(1), (empty * 1000 / dispatches.length).toFixed(2)],
  ];
  for (const l of tableLines(['kernel ×workgroups', 'dispatches', 'µs a token', 'µs each'], table, (i) => i === 0)) console.log(l);
  state.dispose();
}
be.destroy();
