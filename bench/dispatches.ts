// The host-side work of a token: kernel dispatches, compute passes, copies/clears and submits that
// the WebGPU backend records for one decoded token (batch 1) and per token of a prefill chunk, for a
// preset's layer stack. On a large GPU, batch-1 decode is bound by this count (a dispatch costs
// ~4 µs inside a pass, a new pass ~12 µs: ../shared/gpu/README.md), not by memory bandwidth, so it
// is the number fused kernels must bring down. The counts do not depend on the model's width, so
// the preset's depth and layout are kept and its width shrunk: this runs anywhere, lavapipe included.
//   node dist/bench/dispatches.js [--presets samba-1.3b,llama-1.3b,mamba-1.4b] [--chunk 64] [--weights f32|f16]
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
const head = ['preset', 'sub-layers', 'decode: dispatches', 'passes', 'copies', 'submits', `prefill ${chunk}: dispatches/token`];
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
  await be.read(model.forward(Int32Array.of(3), 1, 1, state, { lastOnly: true }));
  a = snap();
  await be.read(model.forward(Int32Array.of(5), 1, 1, state, { lastOnly: true }));
  rows.push([name, String(model.kinds.length), String(c.dispatches - a.dispatches), String(c.passes - a.passes), String(c.copies - a.copies), String(c.submits - a.submits), prefill.toFixed(1)]);
  state.dispose();
  model.dispose();
}
console.log(`\nhost work per token (${values.weights} weights), ${new Date().toISOString()}`);
for (const l of tableLines(head, rows, (i) => i === 0)) console.log(l);
be.destroy();
