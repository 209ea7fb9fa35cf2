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
//     [--gemv-shapes 'NxK=WGxU[xGROUPxCOLS],…;…'] [--rounds 1]
//     --gemv-shapes: the one-row gemv's shape for these products (matmul-f16.ts gemvShape.byProduct;
//       every gemv of that N × K, whatever it fuses: samba-1.7b's SwiGLU and Mamba input are both
//       8192x2048), to tune shapes inside a whole token; variants separated by ';' (an empty one: the defaults)
//       are measured in turn, --rounds times, in one process, and summed up in a last table
// It also prints the roofline (the token's bytes over the copy kernel's bandwidth, both timed here
// on the GPU), the least time a token can take with its dependent dispatches at the floor's cost,
// and the token's time with one command buffer and submit each, as generate() submits them.
import { parseArgs } from 'node:util';
import { makeConfig } from '../src/model/config.js';
import { SambaModel } from '../src/model/model.js';
import { getPreset } from '../src/model/presets.js';
import { createNodeWebGpuBackend } from '../src/node/webgpu.js';
import { gemvShape } from '../src/backends/webgpu/matmul-f16.js';
import { attentionShape } from '../src/backends/webgpu/attention.js';
import { gemvShapeArg, onOff } from './args.js';
import { decodeWeightBytes } from './roofline.js';
import { smallWidth } from './recorded.js';
import { type Dispatch, Replay } from './replay.js';
import { tableLines } from './table.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'samba-1.7b' },
    position: { type: 'string', default: '1024' },
    reps: { type: 'string', default: '20' },
    small: { type: 'boolean', default: false },
    'gemv-wide-groups': { type: 'string', default: 'on' },
    'attention-step': { type: 'string', default: 'on' },
    'gemv-shapes': { type: 'string', default: '' },
    rounds: { type: 'string', default: '1' },
  },
});
gemvShape.wideGroupSubgroups = onOff('gemv-wide-groups', values['gemv-wide-groups']);
attentionShape.step = onOff('attention-step', values['attention-step']);
const be = await createNodeWebGpuBackend({ requireAdapter: true });
if (!be) throw new Error('no WebGPU adapter');
const dev = be.device, R = Number(values.reps), rounds = Number(values.rounds);
const p = getPreset(values.model!);
const cfg = values.small ? smallWidth(p) : makeConfig(p);
const model = SambaModel.random(cfg, be, 1);
const weightBytes = decodeWeightBytes(cfg, model.compactWeights(), true);

/** Variants of the gemv shapes (--gemv-shapes): each sets gemvShape.byProduct; '' is the default. */
const variants = values['gemv-shapes']!.split(';').map((v) => v.trim());
function setShapes(variant: string): void {
  gemvShape.byProduct.clear();
  for (const v of variant.split(',').filter(Boolean)) {
    const [product, shape] = v.split('=');
    if (!/^\d+x\d+$/.test(product ?? '') || !shape) throw new Error(`--gemv-shapes takes NxK=WGxU[xGROUPxCOLS],…[;…], got ${v}`);
    const { shape: layout, tree } = gemvShapeArg(shape);
    if (tree) throw new Error(`--gemv-shapes: trees (t) are set for every product by the matmul bench, not per product (${v})`);
    gemvShape.byProduct.set(product, layout);
  }
}
for (const v of variants) setShapes(v); // refuse a bad variant before any timing

const replay = new Replay(be, R), best = replay.best.bind(replay);

/** One decoded token's dispatches as the backend records them (the token is decoded, too). */
function captureToken(state: ReturnType<SambaModel['newState']>): { dispatches: Dispatch[]; logits: ReturnType<SambaModel['forward']> } {
  let logits: ReturnType<SambaModel['forward']> | undefined;
  const dispatches = replay.capture(() => { logits = be!.inOneSubmit(() => model.forward(Int32Array.of(5), 1, 1, state, { lastOnly: true })); });
  return { dispatches, logits: logits! };
}

const bandwidth = await replay.copyBandwidth(); // the roofline's, bytes a second

// the floor: a kernel that does almost nothing, each dispatch reading what the last one wrote
const scratch = dev.createBuffer({ size: 1024, usage: GPUBufferUsage.STORAGE });
const emptyPipeline = dev.createComputePipeline({
  layout: 'auto',
  compute: { module: dev.createShaderModule({ code: '@group(0) @binding(0) var<storage, read_write> b: array<f32>;\n@compute @workgroup_size(256) fn main(@builtin(global_invocation_id) g: vec3<u32>) { if (g.x < 4u) { b[g.x] += 1.0; } }' }), entryPoint: 'main' },
});
const emptyGroup = dev.createBindGroup({ layout: emptyPipeline.getBindGroupLayout(0), entries: [{ binding: 0, resource: { buffer: scratch } }] });

const summary: string[][] = [];
for (const pos of values.position!.split(',').map(Number)) {
  for (let round = 1; round <= rounds; round++) {
    for (const variant of variants) {
      setShapes(variant);
      await measure(pos, variant, round);
    }
  }
}
if (summary.length > 1) {
  console.log('');
  for (const l of tableLines(['position', 'gemv shapes', 'round', 'GPU ms a token', 'one submit each', '% of the roofline'], summary, (i) => i === 0)) console.log(l);
}
be.destroy();

async function measure(pos: number, variant: string, round: number): Promise<void> {
  const state = model.newState(1);
  const step = async () => { state.pos.fill(pos); const l = be!.inOneSubmit(() => model.forward(Int32Array.of(5), 1, 1, state, { lastOnly: true })); await be!.read(l); be!.dispose(l); };
  for (let i = 0; i < 8; i++) await step(); // pipelines, pools, bind groups
  state.pos.fill(pos);
  const { dispatches, logits } = captureToken(state);
  await be!.read(logits); be!.dispose(logits);
  if (summary.length === 0) await replay.warm(dispatches); // the copy's warm-up is a few tokens' recording back
  const all = await best(dispatches);
  const kinds = new Map<string, Dispatch[]>();
  for (const d of dispatches) kinds.set(d.kind, [...(kinds.get(d.kind) ?? []), d]);
  const rows: [string, number, number][] = [];
  for (const [kind, list] of kinds) rows.push([kind, list.length, await best(list)]);
  rows.sort((a, b) => b[2] - a[2]);
  const empty = await best(dispatches.map(() => ({ pipeline: emptyPipeline, group: emptyGroup, offsets: [], gx: 1, gy: 1, kind: 'empty' })));
  const submitted = await best(dispatches, replay.submitsTime);
  console.log(`\n${values.model}${values.small ? ' (small width)' : ''} at position ${pos}${variant ? `, gemv shapes ${variant}` : ''}${rounds > 1 ? `, round ${round}` : ''}, `
    + `${new Date().toISOString()}: ${dispatches.length} dispatches, GPU ${all.toFixed(3)} ms a token (${(1 / all * 1000).toFixed(0)} tok/s if the host kept up), `
    + `${R} tokens back to back in one pass, best of 5`);
  // the roofline as throughput.ts defines it: the weights and the whole decoding state over the copy bandwidth
  const bytes = weightBytes + state.bytes(), roofMs = (bytes / bandwidth) * 1e3, least = roofMs + empty;
  console.log(`roofline: ${(bytes / 2 ** 20).toFixed(1)} MiB a token at ${(bandwidth / 1e9).toFixed(0)} GB/s (the copy kernel) = ${roofMs.toFixed(3)} ms, `
    + `${(1e3 / roofMs).toFixed(1)} tok/s; the GPU alone reaches ${((100 * roofMs) / all).toFixed(1)}%`);
  console.log(`with ${dispatches.length} dependent dispatches at the floor's ${((empty * 1e3) / dispatches.length).toFixed(2)} µs, a token takes at least `
    + `${least.toFixed(3)} ms = ${((100 * roofMs) / least).toFixed(1)}% of the roofline`);
  console.log(`one command buffer and submit per token, as generate() records them: ${submitted.toFixed(3)} ms a token (${((submitted - all) * 1e3).toFixed(1)} µs more)`);
  const sum = rows.reduce((s, r) => s + r[2], 0);
  const table = [
    ...rows.map(([k, n, t]) => [k, String(n), (t * 1000).toFixed(1), (t * 1000 / n).toFixed(2)]),
    ['all kinds, each alone', String(dispatches.length), (sum * 1000).toFixed(1), ''],
    ['empty kernel, as many dependent dispatches', String(dispatches.length), (empty * 1000).toFixed(1), (empty * 1000 / dispatches.length).toFixed(2)],
  ];
  for (const l of tableLines(['kernel ×workgroups', 'dispatches', 'µs a token', 'µs each'], table, (i) => i === 0)) console.log(l);
  summary.push([String(pos), variant || 'default', String(round), all.toFixed(3), submitted.toFixed(3), ((100 * roofMs) / all).toFixed(1)]);
  state.dispose();
}
