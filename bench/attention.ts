// Times prefill attention on WebGPU (the tiled flash kernel for T > 1; its backward with --backward)
// for one sequence of the samba-421m shape by default (12 heads × 128, MHA) at a sliding window and
// full causal attention, and prints a table: T, window, kernel, ms, TFLOP/s, max error on sampled rows
// against a float64 host reference.
//   node dist/bench/attention.js                     # T = 4K, 16K, 64K (a discrete GPU)
//   node dist/bench/attention.js --quick             # T = 256, 512, window 128, 4 heads × 64 (lavapipe)
//   node dist/bench/attention.js --T 4096,16384 --windows 2048,inf --heads 18 --kv-heads 18 --hs 128
//       [--tile 16k|32k|48k] [--backward] [--tensor-cores] [--reps 5] [--log out.txt]
// --tensor-cores: mixed precision, where attention runs on tensor cores (flash-tc.ts) if the adapter
// has subgroup matrices (q, k and v as halves; the error column shows it).
// The backward is timed as training runs it: from the statistics a forward kept (flash_delta, then
// the dq and dk/dv kernels).
// FLOPs counted: 4·hs·H per (query, key) pair the causal window lets a query see (QKᵀ and PV, 2 each),
// i.e. 4·hs·H·Σ_i min(i+1, W), about 4·T·W·hs·H for T ≫ W and 2·T²·hs·H for full attention (masked
// pairs inside visited tiles are not counted). The backward is counted as 2.5× that (5 products
// against 2, as FlashAttention-2 reports it), though its two kernels each recompute S and dP.
// Each time is the median of --reps timed batches, each batch back-to-back calls in one command
// buffer between onSubmittedWorkDone waits, after a warm-up call (pipeline creation).
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { WebGpuBackend } from '../src/backends/webgpu/backend.js';
import { WebGpuBackend as Backend } from '../src/backends/webgpu/backend.js';
import { type FlashTile, TILE_16K, TILE_32K, TILE_48K, pickTile, tileBytes } from '../src/backends/webgpu/flash-attention.js';
import type { AttentionArgs, Tensor } from '../src/core/backend.js';
import { Rng, randomArray } from '../src/core/random.js';
import { createNodeWebGpuBackend } from '../src/node/webgpu.js';
import { tableLines } from './table.js';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    T: { type: 'string' },
    windows: { type: 'string' },
    heads: { type: 'string' },
    'kv-heads': { type: 'string' },
    hs: { type: 'string' },
    tile: { type: 'string' },
    backward: { type: 'boolean', default: false },
    'tensor-cores': { type: 'boolean', default: false },
    reps: { type: 'string', default: '5' },
    seconds: { type: 'string', default: '0.5' },
    log: { type: 'string' },
  },
});
const quick = values.quick;
const Ts = (values.T ?? (quick ? '256,512' : '4096,16384,65536')).split(',').map(Number);
const windows = (values.windows ?? (quick ? '128,inf' : '2048,inf')).split(',').map((w) => (w === 'inf' ? Infinity : Number(w)));
const H = Number(values.heads ?? (quick ? 4 : 12)), Hkv = Number(values['kv-heads'] ?? H), hs = Number(values.hs ?? (quick ? 64 : 128));
const reps = Number(values.reps), budget = Number(values.seconds);
const log: string[] = [];
const say = (s: string) => { console.log(s); log.push(s); };

const shared = (await createNodeWebGpuBackend({ requireAdapter: true }))!;
const tiles: Record<string, FlashTile> = { '16k': TILE_16K, '32k': TILE_32K, '48k': TILE_48K };
const tile = values.tile ? tiles[values.tile.toLowerCase()] : pickTile(shared.device);
if (!tile) throw new Error(`--tile: one of ${Object.keys(tiles).join(', ')}`);
if (tileBytes(tile) > shared.device.limits.maxComputeWorkgroupStorageSize) throw new Error('--tile: more workgroup memory than this device has');
// every T > 1 on the tiled kernel, whatever the default policy's threshold (with tensor cores: a
// device of its own, made with the adapter's info, which names the subgroup-matrix shapes)
const attentionSplit = { flashMinRows: 1, flashTile: tile };
const be: WebGpuBackend = values['tensor-cores']
  ? (await createNodeWebGpuBackend({ requireAdapter: true, precision: 'f16-matmul', attentionSplit }))!
  : new Backend(shared.device, { attentionSplit });
const info = (shared.device as { adapterInfo?: GPUAdapterInfo }).adapterInfo;
say(`adapter: ${info?.vendor ?? '?'} ${info?.architecture ?? ''} ${info?.description ?? ''}`.trim());
say(`shape: B 1, ${H} heads (${Hkv} KV) × ${hs}; tile ${JSON.stringify(tile)} (${tileBytes(tile)} B of workgroup memory); matmul path ${be.matmulPath}`);

async function timeIt(run: () => void): Promise<number> {
  be.tidy(run); await be.flush(); // compile + first dispatch
  let t0 = performance.now();
  be.tidy(run); await be.flush();
  const once = (performance.now() - t0) / 1000;
  const iters = Math.max(1, Math.min(100, Math.ceil(budget / Math.max(once, 1e-6))));
  const means: number[] = [];
  for (let rep = 0; rep < reps; rep++) {
    t0 = performance.now();
    for (let i = 0; i < iters; i++) be.tidy(run);
    await be.flush();
    means.push((performance.now() - t0) / iters);
  }
  return means.sort((a, b) => a - b)[Math.floor(reps / 2)];
}

/** float64 attention output of query row t, head h (the CPU reference's formula). */
function refRow(q: Float32Array, k: Float32Array, v: Float32Array, T: number, W: number, t: number, h: number): Float64Array {
  const F = Hkv * hs, kvh = Math.floor(h / (H / Hkv)), lo = Math.max(0, t - W + 1), scale = 1 / Math.sqrt(hs);
  const s = new Float64Array(t - lo + 1);
  let m = -Infinity;
  for (let j = lo; j <= t; j++) {
    let d = 0;
    for (let e = 0; e < hs; e++) d += q[(t * H + h) * hs + e] * k[j * F + kvh * hs + e];
    s[j - lo] = d * scale;
    m = Math.max(m, s[j - lo]);
  }
  const out = new Float64Array(hs);
  let den = 0;
  for (let j = lo; j <= t; j++) {
    const p = Math.exp(s[j - lo] - m);
    den += p;
    for (let e = 0; e < hs; e++) out[e] += p * v[j * F + kvh * hs + e];
  }
  return out.map((x) => x / den);
}

const rows: string[][] = [];
const head = ['T', 'window', 'kernel', 'ms', 'TFLOP/s', 'max rel err'];
const rng = new Rng(1);
for (const T of Ts) {
  const q = randomArray(rng, T * H * hs, 2), k = randomArray(rng, T * Hkv * hs, 2), v = randomArray(rng, T * Hkv * hs);
  const gq = be.keep(be.tensor(q, [1, T, H * hs])), gk = be.keep(be.tensor(k, [1, T, Hkv * hs])), gv = be.keep(be.tensor(v, [1, T, Hkv * hs]));
  const gd = values.backward ? be.keep(be.tensor(randomArray(rng, T * H * hs), [1, T, H * hs])) : null;
  for (const window of windows) {
    const W = Math.min(window, T);
    const pairs = W * (W + 1) / 2 + (T - W) * W; // Σ_i min(i+1, W)
    const flops = 4 * hs * H * pairs;
    const args: AttentionArgs = { nHeads: H, nKvHeads: Hkv, headDim: hs, window, pos0: new Int32Array(1) };
    const wName = Number.isFinite(window) ? String(window) : 'full';
    try {
      const ms = await timeIt(() => { be.attention(gq, gk, gv, null, args); });
      // error on 6 sampled rows (first, around the window edge, last), every head
      const y = await be.tidy(() => be.read(be.attention(gq, gk, gv, null, args)));
      const sample = [...new Set([0, 1, Math.min(W, T - 1), Math.floor(T / 2), T - 2, T - 1].filter((t) => t >= 0))];
      let d = 0, m = 0;
      for (const t of sample) {
        for (let h = 0; h < H; h++) {
          const ref = refRow(q, k, v, T, window, t, h);
          for (let e = 0; e < hs; e++) {
            const err = Math.abs(y[(t * H + h) * hs + e] - ref[e]);
            d = err > d || Number.isNaN(err) ? err : d;
            m = Math.max(m, Math.abs(ref[e]));
          }
        }
      }
      const row = [String(T), wName, 'forward', ms.toPrecision(3), (flops / (ms * 1e9)).toPrecision(3), (d / m).toExponential(1)];
      rows.push(row);
      say(row.join('  '));
      if (gd) {
        const o = be.keep(be.attention(gq, gk, gv, null, args, { forBackward: true }));
        const msB = await timeIt(() => { be.attentionBackward(gq, gk, gv, gd, args, o); });
        be.dispose(o);
        const rowB = [String(T), wName, 'backward', msB.toPrecision(3), ((2.5 * flops) / (msB * 1e9)).toPrecision(3), '-'];
        rows.push(rowB);
        say(rowB.join('  '));
      }
    } catch (e) {
      say(`T ${T} window ${wName}: ${(e as Error).message}`);
    }
  }
  for (const t of [gq, gk, gv, gd]) if (t) be.dispose(t as Tensor);
}

say('');
for (const l of tableLines(head, rows, (i) => i === 2)) say(l);
if (values.log) writeFileSync(values.log, log.join('\n') + '\n');
be.destroy();
if (be !== shared) shared.destroy();
process.exit(0);
