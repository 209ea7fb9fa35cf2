// Times every matmul kernel of the WebGPU backend on one device and prints a table: shape, kernel,
// ms per call, TFLOP/s (and GB/s of the bytes a call must move), and the max error on sampled rows
// against a float64 host reference (max |y − ref| / max |ref|, ref from the f32 inputs).
//   node dist/bench/matmul.js                 # large shapes (a discrete GPU)
//   node dist/bench/matmul.js --quick         # small shapes (lavapipe, integrated GPUs)
//   node dist/bench/matmul.js --shapes 1x4096x4096,2048x4096x4096 [--seconds 0.3] [--log out.txt]
//   node dist/bench/matmul.js --shapes 1x2048x8192 --gemv-sweep 64x1,256x2,256x2x32x2,256x2x32x2t   # packed gemv shapes:
//     workgroup × unroll [× invocations per column group × columns per group] [t: sum groups by trees where subgroupAdd could]
//   node dist/bench/matmul.js --shapes 16x8192x2048 --rows-cols 16,32:8:8      # the rows gemv: columns per workgroup[:rows per dispatch[:k per step]]
//   node dist/bench/matmul.js --shapes 16x8192x2048 --tc-rows 8:1,8:2,4:1:1024   # the tensor-core rows gemv: subgroups:column tiles[:x tile k]
//   node dist/bench/matmul.js --shapes 4096x4096x4096 --ablate   # the staged tensor-core kernel with parts of its loop dropped
// Kernels: f32 tiled / f32 gemv (the default precision); f16 tiled over f32 weights (the
// 'f16-matmul' precision without tensor cores; 64×64 and 128×128 tiles), f32 gemv with f16-rounded
// operands (that precision's decode path); packed-f16 weights (inference: f16 gemv, f16 tiled); and
// subgroup-matrix (tensor cores) over f32 weights (packing x and w included) and packed weights,
// where the device has it. Rows of x ≤ 4 take the f32 gemv kernels, others the tiled ones; packed
// f16 weights take the f16 gemv up to 32 rows (8 where there are tensor cores).
// Times are the mean over a batch of back-to-back calls in one command buffer, between
// onSubmittedWorkDone waits (median of 3 batches), so a few µs of dispatch cost stay in. The wall
// clock is bounded by the host's recording (≈ 10 µs a dispatch) for small products; --gpu-time
// times the batch's compute pass on the GPU instead (timestamp queries).
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { WebGpuBackend } from '../src/backends/webgpu/backend.js';
import { matmul, matmulPackedF16 } from '../src/backends/webgpu/matmul.js';
import {
  type F16Caps, type F16Matrix, type StagedConfig, F16_GEMV_MAX_ROWS, STAGED_DEFAULT, stagedTile, tcRowsShape, TILE_LARGE, gemvLayout, gemvShape, TILE_SMALL, matmulF16Tiled, matmulSubgroupMatrix, packF16,
} from '../src/backends/webgpu/matmul-f16.js';
import type { GpuTensor } from '../src/backends/webgpu/tensor.js';
import { Rng, randomArray } from '../src/core/random.js';
import { createNodeWebGpuBackend } from '../src/node/webgpu.js';
import { gemvShapeArg } from './args.js';
import { tableLines } from './table.js';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    shapes: { type: 'string' },
    seconds: { type: 'string', default: '0.3' },
    log: { type: 'string' },
    // every staged tensor-core tiling in SWEEP (and the direct kernel), f16 weights
    sweep: { type: 'boolean', default: false },
    // the default staged tiling with parts of its loop dropped (wrong results: timing only)
    ablate: { type: 'boolean', default: false },
    // one-row packed gemv under each workgroup size × unroll (gemvShape)
    'gemv-sweep': { type: 'string' },
    // the rows gemv (2 … 32 rows) under each number of columns per workgroup (gemvShape.rowsCols)
    'rows-cols': { type: 'string' },
    // the tensor-core rows gemv (9 … 32 rows) under each subgroups:column tiles[:x tile k][:w] (tcRowsShape; 0: the default; w: weights only; s: streaming x)
    'tc-rows': { type: 'string' },
    'gpu-time': { type: 'boolean', default: false },
    // the gemv sweep reads copies of the weight that together exceed the last-level cache (192 MiB),
    // one per run in turn, so each run reads device memory as a decoded token does
    cold: { type: 'boolean', default: false },
  },
});
const LARGE = '1x4096x4096,4x4096x4096,16x4096x4096,1x14336x4096,512x4096x4096,2048x4096x4096,4096x4096x4096';
const QUICK = '1x1024x1024,4x1024x1024,256x256x256,512x512x512';
const shapes = (values.shapes ?? (values.quick ? QUICK : LARGE)).split(',').map((s) => s.split('x').map(Number) as [number, number, number]);
const budget = Number(values.seconds);
/** Staged tensor-core tilings compared by --sweep: subgroups SGM×SGN, matrices per subgroup TI×TJ, slab BK. */
const SWEEP: StagedConfig[] = [
  [2, 2, 4, 4, 32], [2, 2, 4, 4, 16], [2, 2, 4, 4, 64], [2, 4, 4, 4, 32], [4, 2, 4, 4, 32],
  [4, 2, 2, 4, 64], [2, 2, 2, 4, 32], [2, 2, 2, 4, 16],
].map(([SGM, SGN, TI, TJ, BK]) => ({ SGM, SGN, TI, TJ, BK }));
/** --ablate: the default large tiling with parts of its loop dropped (StagedConfig.ablate), to see what bounds it. */
const ABLATE: StagedConfig[] = (['mma', 'smem', 'no-global', 'stores', 'barriers', 'memory'] as const).map((ablate) => ({ ...STAGED_DEFAULT, ablate }));
const log: string[] = [];
const say = (s: string) => { console.log(s); log.push(s); };

// ---- backend: f16-matmul where the adapter has shader-f16 (asks for subgroup matrices too) ----
let be: WebGpuBackend;
const profile = values['gpu-time'] ? 'passes' as const : false;
try {
  be = (await createNodeWebGpuBackend({ precision: 'f16-matmul', requireAdapter: true, profile }))!;
} catch (e) {
  say(`no f16 precision (${(e as Error).message}); f32 kernels only`);
  be = (await createNodeWebGpuBackend({ requireAdapter: true, profile }))!;
}
const info = (be.device as { adapterInfo?: GPUAdapterInfo }).adapterInfo;
const caps: F16Caps = be.f16Caps;
say(`adapter: ${info?.vendor ?? '?'} ${info?.architecture ?? ''} ${info?.description ?? ''}`.trim());
say(`features: shader-f16 ${caps.shaderF16}, subgroup matrix ${caps.subgroupMatrix ? JSON.stringify(caps.subgroupMatrix) : 'no'}; matmul path ${be.matmulPath}`);
const sgm = caps.subgroupMatrix;
const sweepShape = be.f16Detected.subgroupMatrix; // --sweep runs even where the default tilings fail their check
if (be.subgroupMatrixProblem) say(`subgroup-matrix check failed: ${be.subgroupMatrixProblem}`);
else if (sgm) say('subgroup-matrix check: exact on a 150×140×72 product');

interface Kernel { name: string; run: () => void; bytes: number }

async function timeIt(run: () => void): Promise<number> {
  run(); await be.flush(); // compile + first dispatch
  let t0 = performance.now();
  run(); await be.flush();
  const once = (performance.now() - t0) / 1000;
  const iters = Math.max(3, Math.min(200, Math.ceil(budget / Math.max(once, 1e-6))));
  const means: number[] = [];
  for (let rep = 0; rep < 3; rep++) {
    if (values['gpu-time']) {
      await be.ctx.profile(true);
      be.inOneSubmit(() => { for (let i = 0; i < iters; i++) run(); }); // one pass
      means.push((await be.ctx.profile(true)).reduce((s, k) => s + k.ms, 0) / iters);
      continue;
    }
    t0 = performance.now();
    for (let i = 0; i < iters; i++) run();
    await be.flush();
    means.push((performance.now() - t0) / iters);
  }
  return means.sort((a, b) => a - b)[1];
}

const rows: string[][] = [];
const head = ['shape M×N×K', 'kernel', 'ms', 'TFLOP/s', 'GB/s', 'max rel err'];
const rng = new Rng(1);
for (const [M, N, K] of shapes) {
  const x = randomArray(rng, M * K), w = randomArray(rng, N * K);
  // float64 reference on up to 8 sampled rows
  const sample = M <= 8 ? Array.from({ length: M }, (_, i) => i) : Array.from({ length: 8 }, (_, i) => Math.floor((i * (M - 1)) / 7));
  const ref = new Float64Array(sample.length * N);
  sample.forEach((m, r) => {
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += x[m * K + k] * w[n * K + k];
      ref[r * N + n] = s;
    }
  });
  const gx = be.tensor(x, [M, K]) as GpuTensor, gw = be.tensor(w, [N, K]) as GpuTensor, out = be.zeros([M, N]) as GpuTensor;
  let packed: F16Matrix | null = null, coldCopies: F16Matrix[] = [];
  // x as f16, packed once for the rows that time a kernel on f16 x (outside their timing)
  let xPacked: F16Matrix | null = null;
  const xF16 = () => (xPacked ??= packF16(be.ctx, gx, M, K));
  if (caps.shaderF16 || M <= 4) packed = packF16(be.ctx, gw, N, K);
  const f32Bytes = 4 * (M * K + N * K + M * N), f16wBytes = 4 * (M * K + M * N) + 2 * N * K;
  const gemv = M <= 4;
  const kernels: Kernel[] = [{ name: gemv ? 'f32 gemv' : 'f32 tiled 64×64', run: () => matmul(be.ctx, out, gx, gw, M, N, K), bytes: f32Bytes }];
  if (caps.shaderF16) {
    const f16: F16Caps = { shaderF16: true, subgroupMatrix: null };
    if (gemv) {
      kernels.push({ name: 'f32 gemv, f16-rounded operands', run: () => matmul(be.ctx, out, gx, gw, M, N, K, f16), bytes: f32Bytes });
    } else {
      kernels.push({ name: 'f16 tiled 64×64', run: () => matmulF16Tiled(be.ctx, out, gx, { f32: gw }, M, N, K, TILE_SMALL), bytes: f32Bytes });
      kernels.push({ name: 'f16 tiled 128×128', run: () => matmulF16Tiled(be.ctx, out, gx, { f32: gw }, M, N, K, TILE_LARGE), bytes: f32Bytes });
    }
  }
  if (packed && (gemv || caps.shaderF16)) {
    const p = packed;
    const f16: F16Caps = { shaderF16: caps.shaderF16, subgroupMatrix: null };
    kernels.push({ name: M <= F16_GEMV_MAX_ROWS ? `f16 gemv (f16 weights${M > gemvShape.rowsBlock ? `, ${Math.ceil(M / gemvShape.rowsBlock)} passes` : ''})` : 'f16 tiled (f16 weights)', run: () => matmulPackedF16(be.ctx, out, gx, p, M, N, K, f16), bytes: f16wBytes });
  }
  if (packed && M === 1 && values['gemv-sweep']) {
    const f16: F16Caps = { shaderF16: caps.shaderF16, subgroupMatrix: null }, dflt = { ...gemvShape };
    const copies = values.cold ? [packed, ...(coldCopies = Array.from({ length: Math.ceil((192 << 20) / (2 * N * K)) }, () => packF16(be.ctx, gw, N, K)))] : [packed];
    let turn = 0;
    const next = () => copies[turn++ % copies.length];
    if (copies.length > 1) say(`${M}×${N}×${K}: the gemv sweep cycles through ${copies.length} copies of the weight`);
    for (const v of values['gemv-sweep'].split(',')) {
      // workgroup × unroll [× invocations per column group × columns per group][t: trees, not subgroupAdd]
      if (v === 'auto') { // the default, gemvLayout's choice
        kernels.push({ name: `f16 gemv, gemvLayout: ${Object.values(gemvLayout(N, K, be.ctx.subgroupSize)).join(' × ')}`, bytes: f16wBytes, run: () => matmulPackedF16(be.ctx, out, gx, next(), M, N, K, f16) });
        continue;
      }
      const { shape: { wg, unroll, group, cols }, tree } = gemvShapeArg(v);
      const sg = !tree && be.ctx.subgroupSize === group;
      kernels.push({
        name: `f16 gemv, ${wg} × ${unroll}, groups ${group} × ${cols}${sg ? ', subgroupAdd' : ''}`, bytes: f16wBytes,
        run: () => {
          Object.assign(gemvShape, { oneRow: { wg, unroll, group, cols }, subgroupReduce: !tree });
          matmulPackedF16(be.ctx, out, gx, next(), M, N, K, f16);
          Object.assign(gemvShape, dflt);
        },
      });
    }
  }
  if (packed && sgm && M > 1 && M <= F16_GEMV_MAX_ROWS) {
    const p = packed, f16: F16Caps = { shaderF16: caps.shaderF16, subgroupMatrix: sgm }, dflt = { ...tcRowsShape };
    kernels.push({ name: 'f16 gemv on tensor cores (f16 weights)', run: () => matmulPackedF16(be.ctx, out, gx, p, M, N, K, f16), bytes: f16wBytes });
    for (const v of values['tc-rows']?.split(',') ?? []) {
      const [subgroups, colTiles, kTile = 0] = v.split(':').map(Number), weightsOnly = v.endsWith(':w'), stream = v.endsWith(':s');
      kernels.push({
        name: `f16 gemv on tensor cores, ${subgroups || 'auto'} subgroups, ${colTiles || 'auto'} column tiles, x tile ${kTile || 'auto'}${weightsOnly ? ', weights only' : ''}${stream ? ', streaming x' : ''}`, bytes: f16wBytes,
        run: () => { Object.assign(tcRowsShape, { subgroups, colTiles, kTile: kTile || 0, weightsOnly, stream }); matmulPackedF16(be.ctx, out, gx, p, M, N, K, f16); Object.assign(tcRowsShape, dflt); },
      });
    }
  }
  if (packed && M > 1 && M <= F16_GEMV_MAX_ROWS && values['rows-cols']) {
    const p = packed, f16: F16Caps = { shaderF16: caps.shaderF16, subgroupMatrix: null };
    const dflt = { ...gemvShape };
    for (const v of values['rows-cols'].split(',')) {
      const [cols, block = dflt.rowsBlock, step = dflt.rowsStep] = v.split(':').map(Number);
      kernels.push({
        name: `f16 rows gemv, ${cols} columns, ${block} rows, ${step} k`, bytes: f16wBytes,
        run: () => {
          Object.assign(gemvShape, { rowsCols: cols, rowsBlock: block, rowsStep: step });
          matmulPackedF16(be.ctx, out, gx, p, M, N, K, f16);
          Object.assign(gemvShape, dflt);
        },
      });
    }
  }
  if (sweepShape && values.sweep && !gemv) {
    const s = sweepShape, p = packed!;
    for (const c of ['direct' as const, ...SWEEP]) {
      const name = c === 'direct' ? 'sgm direct 64×64/subgroup' : `sgm staged ${c.SGM}×${c.SGN} sg, ${c.TI}×${c.TJ} mats, BK ${c.BK}`;
      kernels.push({ name: `${name} (f16 w)`, run: () => matmulSubgroupMatrix(be.ctx, out, gx, { f16: p }, M, N, K, s, c), bytes: f16wBytes });
    }
  }
  if (sweepShape && values.ablate && !gemv) {
    const s = sweepShape, p = packed!, xp = xF16();
    for (const c of [STAGED_DEFAULT, ...ABLATE]) {
      const { BM, BN } = stagedTile(c, s);
      kernels.push({ name: `sgm staged ${BM}×${BN} ${c.SGM}×${c.SGN} sg BK ${c.BK}, f16 x and w, ${c.ablate ? `${c.ablate} only` : 'whole'}`, run: () => matmulSubgroupMatrix(be.ctx, out, { f16: xp }, { f16: p }, M, N, K, s, c), bytes: 2 * (M * K + N * K) + 4 * M * N });
    }
  }
  if (sgm && !gemv) {
    const s = sgm, p = packed!;
    kernels.push({ name: 'subgroup matrix (f32 weights, packing incl.)', run: () => matmulSubgroupMatrix(be.ctx, out, gx, { f32: gw }, M, N, K, s), bytes: f32Bytes });
    kernels.push({ name: 'subgroup matrix (f16 weights)', run: () => matmulSubgroupMatrix(be.ctx, out, gx, { f16: p }, M, N, K, s), bytes: f16wBytes });
    // f16 in, f32 out: the kernel alone, x packed once outside the timing
    const xp = xF16();
    kernels.push({ name: 'subgroup matrix (f16 x and weights)', run: () => matmulSubgroupMatrix(be.ctx, out, { f16: xp }, { f16: p }, M, N, K, s), bytes: 2 * (M * K + N * K) + 4 * M * N });
  }
  for (const k of kernels) {
    let ms: number, err: number;
    try {
      ms = await timeIt(k.run);
      be.ctx.clear(out.buf!, 0, out.bytes);
      k.run();
      const y = await be.read(out);
      let d = 0, m = 0;
      sample.forEach((row, r) => {
        for (let n = 0; n < N; n++) {
          const e = Math.abs(y[row * N + n] - ref[r * N + n]);
          d = e > d || Number.isNaN(e) ? e : d;
          m = Math.max(m, Math.abs(ref[r * N + n]));
        }
      });
      err = d / m;
    } catch (e) {
      say(`${M}×${N}×${K} ${k.name}: ${(e as Error).message}`);
      continue;
    }
    const row = [`${M}×${N}×${K}`, k.name, ms.toPrecision(3), ((2 * M * N * K) / (ms * 1e9)).toPrecision(3), (k.bytes / (ms * 1e6)).toPrecision(3), err.toExponential(1)];
    rows.push(row);
    say(row.join('  '));
  }
  if (packed) be.ctx.release(packed.buf);
  for (const c of coldCopies) be.ctx.release(c.buf);
  const xDone = xPacked as F16Matrix | null; // (assigned inside xF16, which the narrowing cannot see)
  if (xDone) be.ctx.release(xDone.buf);
  be.dispose(gx); be.dispose(gw); be.dispose(out);
}

say('');
for (const l of tableLines(head, rows, (i) => i < 2)) say(l);
if (values.log) writeFileSync(values.log, log.join('\n') + '\n');
be.destroy();
process.exit(0);
