// The host-side work of a token: kernel dispatches, compute passes, copies/clears and submits that
// the WebGPU backend records for one decoded token (batch 1) and per token of a prefill chunk, for a
// preset's layer stack. On a large GPU, batch-1 decode is bound by this count (a dispatch costs
// ~4 µs inside a pass, a new pass ~12 µs: ../shared/gpu/README.md), not by memory bandwidth, so it
// is the number fused kernels must bring down. The counts do not depend on the model's width, so
// the preset's depth and layout are kept and its width shrunk: this runs anywhere, lavapipe included.
// It also times the host's recording of a decode token (this machine's CPU, not the adapter's), each in one
// submit as generate() records it.
//   node dist/bench/dispatches.js [--presets samba-1.3b,llama-1.3b,mamba-1.3b] [--chunk 64] [--weights f32|f16]
import { parseArgs } from 'node:util';
import { makeConfig } from '../src/model/config.js';
import { SambaModel } from '../src/model/model.js';
import { PRESETS, getPreset } from '../src/model/presets.js';
import { createNodeWebGpuBackend } from '../src/node/webgpu.js';
import { tableLines } from './table.js';

const { values } = parseArgs({
  options: {
    presets: { type: 'string', default: 'samba-1.3b,samba-421m,llama-438m,mamba-430m' },
    chunk: { type: 'string', default: '64' },
    weights: { type: 'string', default: 'f32' },
  },
});
const be = await createNodeWebGpuBackend({ requireAdapter: true });
if (!be) throw new Error('no WebGPU adapter');
const chunk = Number(values.chunk);
const head = ['preset', 'sub-layers', 'decode: dispatches', 'passes', 'copies', 'submits', `prefill ${chunk}: dispatches/token`, 'record ms/token', 'µs/dispatch'];
const rows: string[][] = [];
for (const name of values.presets!.split(',')) {
  if (!PRESETS[name]) throw new Error(`unknown preset ${name} (${Object.keys(PRESETS).join(', ')})`);
  const p = getPreset(name);
  // same depth, layout and window; small width
  const cfg = makeConfig({ ...p, dModel: 64, nHeads: 4, nKvHeads: Math.min(p.nKvHeads, 4), headDim: 16, mlpHidden: 128, vocabSize: 256, mamba: { ...p.mamba, dtRank: 4 } });
  const model = SambaModel.random(cfg, be, 1);
  if (values.weights === 'f16') model.compactWeights();
  const state = model.newState(1), c = be.ctx.counts;
  const ids = Int32Array.from({ length: chunk }, (_, i) => (i * 7) % 256);
  await be.read(model.forward(ids, 1, chunk, state, { lastOnly: true })); // warm: pipelines and pools
  const snap = () => ({ ...c });
  let a = snap();
  await be.read(model.forward(ids, 1, chunk, state, { lastOnly: true }));
  const prefill = (c.dispatches - a.dispatches) / chunk;
  await be.read(be.inOneSubmit(() => model.forward(Int32Array.of(3), 1, 1, state, { lastOnly: true })));
  a = snap();
  await be.read(be.inOneSubmit(() => model.forward(Int32Array.of(5), 1, 1, state, { lastOnly: true })));
  const counted = { ...c };
  // host time to record a token in one submit, as generate() records it (forward returns once its
  // commands are recorded and submitted), after tokens that warm the JIT; median of 64
  const recordMs: number[] = [];
  for (let i = 0; i < 128; i++) {
    const t0 = performance.now();
    const l = be.inOneSubmit(() => model.forward(Int32Array.of(5), 1, 1, state, { lastOnly: true }));
    if (i >= 64) recordMs.push(performance.now() - t0);
    await be.read(l); be.dispose(l);
  }
  const ms = recordMs.sort((x, y) => x - y)[recordMs.length >> 1], n = counted.dispatches - a.dispatches;
  rows.push([name, String(model.kinds.length), String(n), String(counted.passes - a.passes), String(counted.copies - a.copies), String(counted.submits - a.submits), prefill.toFixed(1), ms.toFixed(2), ((1000 * ms) / n).toFixed(1)]);
  state.dispose();
  model.dispose();
}
console.log(`\nhost work per token (${values.weights} weights), ${new Date().toISOString()}`);
for (const l of tableLines(head, rows, (i) => i === 0)) console.log(l);
be.destroy();
