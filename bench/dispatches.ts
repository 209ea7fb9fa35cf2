// The host-side work of a token: kernel dispatches, compute passes, copies/clears and submits that
// the WebGPU backend records for one decoded token (batch 1) and per token of a prefill chunk, for a
// preset's layer stack. On a large GPU, batch-1 decode is bound by this count (a dispatch costs
// ~4 µs inside a pass, a new pass ~12 µs: ../shared/gpu/README.md), not by memory bandwidth, so it
// is the number fused kernels must bring down. The counts do not depend on the model's width, so
// the preset's depth and layout are kept and its width shrunk: this runs anywhere, lavapipe included.
// It also times the host's recording of a decode token (this machine's CPU, not the adapter's), each in one
// submit as generate() records it, and splits that time in two: the token's native WebGPU calls alone
// (the captured setPipeline / setBindGroup / dispatchWorkgroups calls replayed into a fresh encoder,
// then submitted: what Dawn costs whatever records them), and our JavaScript alone (the same
// recording with those calls and the submit stubbed out; on lavapipe, whose "GPU" shares the CPU,
// only this split is meaningful, not the sum).
//   node dist/bench/dispatches.js [--presets samba-1.3b,llama-1.3b,mamba-1.3b] [--chunk 64] [--weights f32|f16]
import { parseArgs } from 'node:util';
import { SambaModel } from '../src/model/model.js';
import { PRESETS, getPreset } from '../src/model/presets.js';
import { createNodeWebGpuBackend } from '../src/node/webgpu.js';
import { PASS_CALLS, type PassCall, capturePassCalls, smallWidth } from './recorded.js';
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
const head = ['preset', 'sub-layers', 'decode: dispatches', 'passes', 'copies', 'submits', `prefill ${chunk}: dispatches/token`, 'record ms/token', 'µs/dispatch', 'native calls alone, ms', 'JS alone, ms'];
const median = (xs: number[]) => xs.sort((x, y) => x - y)[xs.length >> 1];

// the prototypes whose methods the split patches (and then restores)
const probe = be.device.createCommandEncoder(), probePass = probe.beginComputePass();
const PASS = Object.getPrototypeOf(probePass), ENC = Object.getPrototypeOf(probe), QUEUE = Object.getPrototypeOf(be.device.queue);
probePass.end(); probe.finish();
/** Host ms to encode and submit the captured calls in one pass, median of 40 after 20. */
async function replay(calls: PassCall[]): Promise<number> {
  const dev = be!.device, ms: number[] = [];
  for (let i = 0; i < 60; i++) {
    const t0 = performance.now();
    const enc = dev.createCommandEncoder(), pass = enc.beginComputePass() as unknown as Record<string, (...a: unknown[]) => void>;
    for (const [n, a] of calls) pass[n](...a);
    (pass as unknown as GPUComputePassEncoder).end();
    dev.queue.submit([enc.finish()]);
    if (i >= 20) ms.push(performance.now() - t0);
    await dev.queue.onSubmittedWorkDone();
  }
  return median(ms);
}

/** Host ms of record() with the pass calls, the pass itself and the submit stubbed: our JavaScript alone. */
function jsAlone(record: () => void, n = 400): number {
  const names = [...PASS_CALLS, 'end'], saved = names.map((k) => PASS[k]);
  const savedBegin = ENC.beginComputePass, savedFinish = ENC.finish, savedSubmit = QUEUE.submit, savedWrite = QUEUE.writeBuffer;
  for (const k of names) PASS[k] = () => undefined;
  ENC.beginComputePass = () => probePass; ENC.finish = () => null; QUEUE.submit = () => undefined; QUEUE.writeBuffer = () => undefined;
  const ms: number[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const t0 = performance.now();
      record();
      if (i >= n / 2) ms.push(performance.now() - t0);
    }
  } finally {
    names.forEach((k, i) => { PASS[k] = saved[i]; });
    Object.assign(ENC, { beginComputePass: savedBegin, finish: savedFinish });
    Object.assign(QUEUE, { submit: savedSubmit, writeBuffer: savedWrite });
  }
  return median(ms);
}
const rows: string[][] = [];
for (const name of values.presets!.split(',')) {
  if (!PRESETS[name]) throw new Error(`unknown preset ${name} (${Object.keys(PRESETS).join(', ')})`);
  const p = getPreset(name);
  // same depth, layout and window; small width
  const cfg = smallWidth(p);
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
  const ms = median(recordMs), n = counted.dispatches - a.dispatches;
  // the split: the token's native calls replayed, and the JavaScript alone (its state then moves
  // on by tokens whose commands never ran, which only speed matters for here)
  let calls: PassCall[] | null = null;
  const l = be.inOneSubmit(() => { let out: ReturnType<typeof model.forward> | undefined; calls = capturePassCalls(be.device, () => { out = model.forward(Int32Array.of(5), 1, 1, state, { lastOnly: true }); }); return out!; });
  await be.read(l); be.dispose(l);
  const native = calls ? (await replay(calls)).toFixed(2) : 'n/a (copies)';
  const js = jsAlone(() => be.dispose(be.inOneSubmit(() => model.forward(Int32Array.of(5), 1, 1, state, { lastOnly: true }))));
  rows.push([name, String(model.kinds.length), String(n), String(counted.passes - a.passes), String(counted.copies - a.copies), String(counted.submits - a.submits), prefill.toFixed(1), ms.toFixed(2), ((1000 * ms) / n).toFixed(1), native, js.toFixed(2)]);
  state.dispose();
  model.dispose();
}
console.log(`\nhost work per token (${values.weights} weights), ${new Date().toISOString()}`);
for (const l of tableLines(head, rows, (i) => i === 0)) console.log(l);
be.destroy();
