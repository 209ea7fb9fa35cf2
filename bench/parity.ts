// Decoding parity on this adapter, at a real model's size: a random model's logits through every
// WebGPU inference path (one full forward; prefill in chunks then one token at a time, at batch 1
// and at batch B) against the CPU reference's full forward. The test suite checks the same at
// small sizes on lavapipe; this runs the shapes a GPU's own kernels (split attention, one-row views,
// f16 gemv) see only at scale. Prints the largest relative error per path; no timing.
//   node dist/bench/parity.js [--config FILE | --preset NAME] [--prompt 600] [--decode 8] [--batch 16]
//                             [--chunk 256] [--weights f32|f16] [--seed 1]
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { CpuBackend } from '../src/backends/cpu/cpu.js';
import type { Backend, Tensor } from '../src/core/backend.js';
import { makeConfig } from '../src/model/config.js';
import { SambaModel } from '../src/model/model.js';
import { getPreset } from '../src/model/presets.js';
import { createNodeWebGpuBackend } from '../src/node/webgpu.js';
import { tableLines } from './table.js';

const { values } = parseArgs({
  options: {
    config: { type: 'string' }, preset: { type: 'string' },
    prompt: { type: 'string', default: '600' }, decode: { type: 'string', default: '8' },
    batch: { type: 'string', default: '16' }, chunk: { type: 'string', default: '256' },
    weights: { type: 'string', default: 'f32' }, seed: { type: 'string', default: '1' },
  },
});
const cfg = values.config ? makeConfig(JSON.parse(readFileSync(values.config, 'utf8')))
  : getPreset(values.preset ?? 'samba-421m');
const P = Number(values.prompt), K = Number(values.decode), B = Number(values.batch), chunk = Number(values.chunk);
const T = P + K, V = cfg.vocabSize, seed = Number(values.seed);
let s = seed >>> 0;
const ids = Int32Array.from({ length: T }, () => ((s = (s * 1664525 + 1013904223) >>> 0) >>> 8) % V);

const gpu = await createNodeWebGpuBackend({ requireAdapter: true });
if (!gpu) throw new Error('no WebGPU adapter');
const cpu = new CpuBackend();

/** Logits [T, V] of the full sequence. */
async function full(be: Backend, model: SambaModel): Promise<Float32Array> {
  const st = model.newState(1), logits = model.forward(ids, 1, T, st);
  try { return await be.read(logits); } finally { be.dispose(logits); st.dispose(); }
}

/** Logits of positions P-1 … T-1 ([K+1, V] per sequence, batch copies of the same ids): prefill P in chunks, then one token at a time. */
async function streamed(be: Backend, model: SambaModel, batch: number): Promise<Float32Array[]> {
  const st = model.newState(batch), out = Array.from({ length: batch }, () => new Float32Array((K + 1) * V));
  const take = async (t: Tensor, k: number) => {
    const l = await be.read(t);
    be.dispose(t);
    for (let b = 0; b < batch; b++) out[b].set(l.subarray(b * V, (b + 1) * V), k * V);
  };
  try {
    for (let t0 = 0; t0 < P; t0 += chunk) {
      const t1 = Math.min(P, t0 + chunk), n = t1 - t0, x = new Int32Array(batch * n);
      for (let b = 0; b < batch; b++) x.set(ids.subarray(t0, t1), b * n);
      const y = model.forward(x, batch, n, st, { lastOnly: true });
      if (t1 === P) await take(y, 0); else { be.dispose(y); await be.flush(); }
    }
    for (let k = 0; k < K; k++) await take(model.forward(new Int32Array(batch).fill(ids[P + k]), batch, 1, st, { lastOnly: true }), k + 1);
  } finally { st.dispose(); }
  return out;
}

const relErr = (a: Float32Array, b: Float32Array) => {
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) { num = Math.max(num, Math.abs(a[i] - b[i])); den = Math.max(den, Math.abs(b[i])); }
  return num / den;
};
const argmaxAgree = (a: Float32Array, b: Float32Array) => {
  let same = 0;
  for (let r = 0; r < a.length / V; r++) {
    let ia = 0, ib = 0;
    for (let i = 1; i < V; i++) { if (a[r * V + i] > a[r * V + ia]) ia = i; if (b[r * V + i] > b[r * V + ib]) ib = i; }
    if (ia === ib) same++;
  }
  return `${same}/${a.length / V}`;
};

const cpuModel = SambaModel.random(cfg, cpu, seed);
const reference = await full(cpu, cpuModel);
const tail = reference.subarray((P - 1) * V, T * V); // positions P-1 … T-1
const gpuModel = SambaModel.random(cfg, gpu, seed);
if (values.weights === 'f16') gpuModel.compactWeights();
const rows: string[][] = [];
const gFull = await full(gpu, gpuModel);
rows.push(['full forward', String(T), relErr(gFull, reference).toExponential(2), argmaxAgree(gFull, reference)]);
for (const batch of [1, B]) {
  const per = await streamed(gpu, gpuModel, batch);
  const worst = per.reduce((w, l) => Math.max(w, relErr(l, tail)), 0);
  rows.push([`prefill ${chunk}-chunks + decode, batch ${batch}`, String(K + 1), worst.toExponential(2), argmaxAgree(per[batch - 1], tail)]);
}
console.log(`${cfg.architecture} d ${cfg.dModel} × ${cfg.nBlocks} blocks, window ${cfg.window}, prompt ${P} + ${K} decoded, ${values.weights} weights: max |Δlogit| / max |logit| against the CPU's full forward`);
for (const l of tableLines(["path", "positions", "rel. error", "argmax agrees"], rows, (c) => c === 0)) console.log(l);
