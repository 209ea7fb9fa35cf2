// The training ops (GradOps) on WebGPU equal the CPU reference on fresh random inputs, at sizes on
// both sides of every tile, workgroup and chunk edge of the kernels: matmul tiles (64) and split
// reductions, attention's 64-key chunks, windows shorter and longer than T, GQA and MQA, the
// scan's checkpoint chunks and channel groups, partial-sum row ranges (64 rows), ignored targets.
// Then the whole model's gradients and a few training steps agree between the backends.
//
// Tolerance: max |Δ| ≤ tol · max |ref|, 1e-4 everywhere (1e-5 for pointwise ops and single sums,
// 0 for pure data movement). The CPU sums in float64 and the GPU in float32, in another order; on
// lavapipe the largest deviation measured is ~1e-6 for attention and the scan (their exps and the
// scan's T-step reverse recurrence included, also at T = 512) and ~3e-6 for a whole model's
// gradients, so 1e-4 leaves room for a GPU's less exact exp/log (WGSL allows a few ulp) without
// hiding a wrong index, which shows up as an O(1) relative error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CpuBackend } from '../../../src/backends/cpu/cpu.js';
import { GpuTensor, type WebGpuBackend } from '../../../src/backends/webgpu/backend.js';
import { scanChunk, scanGradChunk, scanGradShape } from '../../../src/backends/webgpu/grad-mamba.js';
import { onTensorCores } from '../../../src/backends/webgpu/grad-matmul.js';
import { type AttentionArgs, type Backend, type GradOps, type Tensor } from '../../../src/core/backend.js';
import { Rng } from '../../../src/core/random.js';
import { Trainer, defaultTrainOptions } from '../../../src/train/trainer.js';
import { TokenArray, WindowSampler } from '../../../src/train/data.js';
import { assertParity, gpuBackendOrSkip, relErr } from '../../helpers/gpu.js';
import { rand, scanInputs, twin } from '../../helpers/scan.js';
import { ALL_ARCHITECTURES, randomIds, randomModel, tinyConfig } from '../../helpers/models.js';

const cpu = new CpuBackend();

async function same(what: string, be: Backend, g: Tensor, c: Tensor, tol = 1e-4): Promise<void> {
  await assertParity(what, be, g, cpu, c, tol);
}

test('webgpu matmulNN and matmulTN: every M, N, K in {1, 63, 64, 65, 130}', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  const rng = new Rng(1);
  const SIZES = [1, 63, 64, 65, 130];
  for (const M of SIZES) {
    for (const N of SIZES) {
      const x = rand(rng, [M, N]);
      const [gx, cx] = twin(be, [M, N], x);
      for (const K of SIZES) {
        const [gw, cw] = twin(be, [N, K], rand(rng, [N, K]));
        const [gb, cb] = twin(be, [M, K], rand(rng, [M, K]));
        const nn = be.matmulNN(gx, gw), tn = be.matmulTN(gx, gb);
        await same(`matmulNN M=${M} N=${N} K=${K}`, be, nn, cpu.matmulNN(cx, cw));
        await same(`matmulTN M=${M} N=${N} K=${K}`, be, tn, cpu.matmulTN(cx, cb));
        for (const x of [gw, gb, nn, tn]) be.dispose(x);
      }
      be.dispose(gx);
    }
  }
});

test('webgpu matmulTN: long reductions split over workgroups; matmulNN with thousands of rows; empty reductions', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  const rng = new Rng(2);
  // [M, N, K]: few output tiles and a long M split the reduction into ranges
  for (const [M, N, K] of [[3000, 20, 7], [5000, 65, 1], [1000, 130, 70], [2000, 1, 1]]) {
    const [ga, ca] = twin(be, [M, N], rand(rng, [M, N]));
    const [gb, cb] = twin(be, [M, K], rand(rng, [M, K]));
    await same(`matmulTN M=${M} N=${N} K=${K}`, be, be.matmulTN(ga, gb), cpu.matmulTN(ca, cb));
  }
  const [gx, cx] = twin(be, [2000, 33], rand(rng, [2000, 33]));
  const [gw, cw] = twin(be, [33, 70], rand(rng, [33, 70]));
  await same('matmulNN M=2000 N=33 K=70', be, be.matmulNN(gx, gw), cpu.matmulNN(cx, cw));
  await same('matmulNN N=0', be, be.matmulNN(be.zeros([3, 0]), be.zeros([0, 4])), cpu.matmulNN(cpu.zeros([3, 0]), cpu.zeros([0, 4])), 0);
  await same('matmulTN M=0', be, be.matmulTN(be.zeros([0, 3]), be.zeros([0, 4])), cpu.matmulTN(cpu.zeros([0, 3]), cpu.zeros([0, 4])), 0);
  assert.throws(() => be.matmulNN(be.zeros([2, 3]), be.zeros([4, 5])), /matmulNN: x \[2, 3\] and w \[4, 5\] do not fit/);
  assert.throws(() => be.matmulTN(be.zeros([2, 3]), be.zeros([4, 5])), /matmulTN: a \[2, 3\] and b \[4, 5\] do not fit/);
});

test('webgpu concatCols and embeddingBackward (repeated, unused and out-of-range ids)', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  const rng = new Rng(3);
  const M = 65, widths = [3, 64, 1, 70];
  const parts = widths.map((w) => twin(be, [M, w], rand(rng, [M, w])));
  await same('concatCols', be, be.concatCols(parts.map((p) => p[0])), cpu.concatCols(parts.map((p) => p[1])), 0);
  assert.throws(() => be.concatCols([be.zeros([2, 3]), be.zeros([3, 3])]), /concatCols: 3 rows, expected 2/);

  for (const [N, V, D] of [[300, 50, 33], [5, 1000, 257], [1, 3, 1], [2000, 7, 5]]) {
    // ids from the lower half of the vocabulary: the upper half stays zero
    const ids = Int32Array.from({ length: N }, () => rng.int(Math.ceil(V / 2)));
    const [gd, cd] = twin(be, [N, D], rand(rng, [N, D]));
    await same(`embeddingBackward N=${N} V=${V} D=${D}`, be,
      be.embeddingBackward(gd, be.ids(ids, [N]), V), cpu.embeddingBackward(cd, cpu.ids(ids, [N]), V), 1e-5);
  }
  // a pooled buffer comes back dirty: rows no id names must still be zero
  const dirty = be.tensor(new Float32Array(40 * 8).fill(7), [40, 8]);
  await be.read(dirty);
  be.dispose(dirty);
  const g = await be.read(be.embeddingBackward(be.tensor(new Float32Array(8).fill(1), [1, 8]), be.ids(Int32Array.of(2), [1]), 40));
  assert.deepEqual([...g].map((v, i) => (Math.floor(i / 8) === 2 ? v - 1 : v)), new Array(320).fill(0));
  assert.throws(() => be.embeddingBackward(be.zeros([1, 4]), be.ids(Int32Array.of(9), [1]), 9), /embeddingBackward: token id 9 is outside the vocabulary \[0, 9\)/);
  // ids the host does not know (no host copy): the scanning kernel
  const ids = Int32Array.from({ length: 70 }, () => rng.int(20));
  const known = be.ids(ids, [70]) as GpuTensor, bare = new GpuTensor([70], 'i32', known.storage);
  const [gd, cd] = twin(be, [70, 9], rand(rng, [70, 9]));
  await same('embeddingBackward without host ids', be, be.embeddingBackward(gd, bare, 23), cpu.embeddingBackward(cd, cpu.ids(ids, [70]), 23), 1e-5);
});

test('webgpu rmsNormBackward and siluMulBackward', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  const rng = new Rng(4);
  // rows 64/65/300 cross the partial-sum row ranges of dg; D crosses the workgroup (256)
  for (const [M, D] of [[1, 7], [5, 256], [64, 1], [65, 300], [300, 33]]) {
    const [gx, cx] = twin(be, [M, D], rand(rng, [M, D], -2, 2));
    const [gg, cg] = twin(be, [D], rand(rng, [D], 0.5, 1.5));
    const [gy, cy] = twin(be, [M, D], rand(rng, [M, D]));
    const g = be.rmsNormBackward(gx, gg, gy, 1e-5), c = cpu.rmsNormBackward(cx, cg, cy, 1e-5);
    await same(`rmsNormBackward M=${M} D=${D}: dx`, be, g.dx, c.dx);
    await same(`rmsNormBackward M=${M} D=${D}: dg`, be, g.dg, c.dg);
  }
  for (const shape of [[1], [257], [3, 1000]]) {
    const a = rand(rng, shape, -30, 30);
    a[0] = 90; // far past where exp(-a) underflows
    const [ga, ca] = twin(be, shape, a);
    const [gb, cb] = twin(be, shape, rand(rng, shape));
    const [gy, cy] = twin(be, shape, rand(rng, shape));
    const g = be.siluMulBackward(ga, gb, gy), c = cpu.siluMulBackward(ca, cb, cy);
    await same(`siluMulBackward [${shape}]: da`, be, g.da, c.da, 1e-5);
    await same(`siluMulBackward [${shape}]: db`, be, g.db, c.db, 1e-5);
  }
});

test('webgpu attentionBackward: windows below and above T, window 1, full, GQA and MQA, head sizes past 64', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  const rng = new Rng(5);
  // [label, B, T, H, Hkv, hs, window]; T = 70 crosses the kernels' 64-key chunks
  const cases: [string, number, number, number, number, number, number][] = [
    ['MHA window 5', 2, 70, 2, 2, 8, 5],
    ['MHA window 1', 1, 9, 2, 2, 4, 1],
    ['GQA full', 2, 70, 4, 2, 8, Infinity],
    ['MQA window 17', 1, 70, 3, 1, 16, 17],
    ['GQA window 80 > T, hs 70', 1, 66, 2, 1, 70, 80],
    ['T = 1', 3, 1, 2, 1, 8, 4],
  ];
  for (const [label, B, T, H, Hkv, hs, window] of cases) {
    const [gq, cq] = twin(be, [B, T, H * hs], rand(rng, [B, T, H * hs], -2, 2));
    const [gk, ck] = twin(be, [B, T, Hkv * hs], rand(rng, [B, T, Hkv * hs], -2, 2));
    const [gv, cv] = twin(be, [B, T, Hkv * hs], rand(rng, [B, T, Hkv * hs]));
    const [gd, cd] = twin(be, [B, T, H * hs], rand(rng, [B, T, H * hs]));
    const args: AttentionArgs = { nHeads: H, nKvHeads: Hkv, headDim: hs, window, pos0: new Int32Array(B) };
    const g = be.attentionBackward(gq, gk, gv, gd, args), c = cpu.attentionBackward(cq, ck, cv, cd, args);
    for (const n of ['dq', 'dk', 'dv'] as const) await same(`attentionBackward ${label}: ${n}`, be, g[n], c[n]);
  }
});

test('webgpu conv1dSiluBackward: kernel sizes 1 … 4, T below and above K−1, many rows', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  const rng = new Rng(6);
  for (const [B, T, C, K] of [[2, 1, 3, 4], [2, 2, 70, 4], [1, 37, 300, 4], [3, 5, 9, 2], [2, 6, 5, 1], [2, 100, 65, 4]]) {
    const [gx, cx] = twin(be, [B, T, C], rand(rng, [B, T, C], -3, 3));
    const [gw, cw] = twin(be, [C, K], rand(rng, [C, K]));
    const [gb, cb] = twin(be, [C], rand(rng, [C]));
    const [gy, cy] = twin(be, [B, T, C], rand(rng, [B, T, C]));
    const g = be.conv1dSiluBackward(gx, gw, gb, gy), c = cpu.conv1dSiluBackward(cx, cw, cb, cy);
    for (const n of ['dx', 'dw', 'db'] as const) await same(`conv B=${B} T=${T} C=${C} K=${K}: ${n}`, be, g[n], c[n]);
  }
});

// The scan backward's inputs (scanInputs and dy): Δ past softplus' threshold at every 7th step, decays exp(Δ·A) with A in [-16, -0.5]
function scanGradInputs(be: WebGpuBackend, rng: Rng, B: number, T: number, C: number, N: number, withH0: boolean) {
  const s = scanInputs(be, rng, B, T, C, N, { dt: [-5, 3], dtSpikes: true, a: [0.5, 16] });
  const [gy, cy] = twin(be, [B, T, C], rand(rng, [B, T, C]));
  type Args = Parameters<typeof be.selectiveScanBackward>;
  return { g: [...s.g, gy, withH0 ? s.gh : null] as Args, c: [...s.c, cy, withH0 ? s.ch : null] as Args };
}

const SCAN_GRADS = ['du', 'ddt', 'dz', 'dbm', 'dcm', 'ddtBias', 'daLog', 'dd'] as const;

test('webgpu selectiveScanBackward walked in order: T across checkpoint intervals, channels across workgroups, softplus past 20, with and without h0', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  const rng = new Rng(7);
  const saved = { ...scanGradShape };
  scanGradShape.invocations = 0; // no chunks
  t.after(() => Object.assign(scanGradShape, saved));
  // chunk sizes: N=16 → 16 steps, N=4 and N=1 → 64 steps
  assert.equal(scanChunk(16), 16);
  assert.equal(scanChunk(4), 64);
  for (const [i, [B, T, C, N]] of ([[2, 40, 67, 16], [2, 16, 5, 16], [1, 70, 5, 4], [3, 7, 3, 1], [1, 130, 130, 1], [2, 33, 130, 16]] as const).entries()) {
    assert.equal(scanGradChunk(B, T, C, N, be.ctx.maxBinding), T);
    // every other case starts from a carried state (truncated BPTT), the rest from zeros
    const ins = scanGradInputs(be, rng, B, T, C, N, i % 2 === 1);
    const g = be.selectiveScanBackward(...ins.g), c = cpu.selectiveScanBackward(...ins.c);
    for (const n of SCAN_GRADS) await same(`scan B=${B} T=${T} C=${C} N=${N}${ins.g[9] ? ' h0' : ''}: ${n}`, be, g[n], c[n]);
  }
});

test('webgpu selectiveScanBackward chunked (chunks walked in parallel from carried states and adjoints): equals the CPU across chunk, checkpoint and workgroup edges, with and without h0', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  const saved = { ...scanGradShape };
  const rng = new Rng(19);
  try {
    // chunks of one checkpoint interval (many invocations wanted), and of several (three chunks wanted)
    for (const chunksWanted of [Infinity, 3]) {
      for (const [i, [B, T, C, N]] of ([[1, 100, 67, 16], [2, 40, 5, 16], [1, 200, 3, 4], [3, 150, 2, 1], [2, 33, 70, 16]] as const).entries()) {
        scanGradShape.invocations = Math.min(1 << 20, chunksWanted * B * C);
        const L = scanGradChunk(B, T, C, N, be.ctx.maxBinding), KC = scanChunk(N);
        assert.ok(L < T && L % KC === 0, `B=${B} T=${T} C=${C} N=${N}: chunks of whole checkpoint intervals (${L} steps)`);
        if (chunksWanted === 3) assert.ok(L > KC || Math.ceil(T / KC) <= 3, `${L} steps: several intervals per chunk`);
        const ins = scanGradInputs(be, rng, B, T, C, N, i % 2 === 0);
        const g = be.selectiveScanBackward(...ins.g), c = cpu.selectiveScanBackward(...ins.c);
        for (const n of SCAN_GRADS) {
          await same(`chunked scan B=${B} T=${T} C=${C} N=${N} (chunks of ${L})${ins.g[9] ? ' h0' : ''}: ${n}`, be, g[n], c[n]);
        }
      }
    }
  } finally {
    Object.assign(scanGradShape, saved);
  }
});

test('scanGradChunk: chunks where the channels underfill the GPU, whole checkpoint intervals each, within the scratch limit', () => {
  assert.equal(scanGradChunk(1, 4096, 3072, 16, 2 ** 31), 96, "samba-421m's training scan: 43 chunks of 96 steps");
  assert.equal(scanGradChunk(1, 8, 3072, 16, 2 ** 31), 8, 'one checkpoint interval: nothing to chunk');
  assert.equal(scanGradChunk(64, 4096, 4096, 16, 2 ** 31), 4096, 'enough channels already');
  assert.equal(scanGradChunk(1, 4096, 3072, 16, 48 << 20), 4096, 'the checkpoints alone nearly fill one binding: walked in order');
  assert.equal(scanGradChunk(1, 4096, 3072, 16, 52 << 20), 464, 'fewer, longer chunks where one binding is small (9 of 464)');
  const saved = { ...scanGradShape };
  try {
    scanGradShape.maxScratchBytes = 8 << 20;
    assert.equal(scanGradChunk(1, 4096, 3072, 16, 2 ** 31), 16 * 13, "the chunks' states within maxScratchBytes (20 chunks)");
  } finally {
    Object.assign(scanGradShape, saved);
  }
});

test('webgpu crossEntropy (ignored targets), sumSquares and adamw', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  const rng = new Rng(8);
  for (const [R, V] of [[1, 5], [70, 300], [9, 1000], [3, 2]]) {
    const [gl, cl] = twin(be, [R, V], rand(rng, [R, V], -8, 8));
    const tg = Int32Array.from({ length: R }, (_, i) => (i % 4 === 1 ? -1 : rng.int(V)));
    const g = be.crossEntropy(gl, be.ids(tg, [R]), 0.37), c = cpu.crossEntropy(cl, cpu.ids(tg, [R]), 0.37);
    await same(`crossEntropy R=${R} V=${V}: loss`, be, g.loss, c.loss, 1e-5);
    await same(`crossEntropy R=${R} V=${V}: dlogits`, be, g.dlogits, c.dlogits, 1e-5);
  }
  const allIgnored = be.crossEntropy(be.zeros([2, 3]), be.ids(Int32Array.of(-1, -1), [2]), 1);
  assert.deepEqual(await be.read(allIgnored.loss), Float32Array.of(0));
  assert.deepEqual(await be.read(allIgnored.dlogits), new Float32Array(6));
  assert.throws(() => be.crossEntropy(be.zeros([1, 3]), be.ids(Int32Array.of(3), [1]), 1), /crossEntropy: target 3 outside the vocabulary \[0, 3\)/);

  for (const n of [0, 1, 255, 4097, 300_000]) {
    const [gx, cx] = twin(be, [n], rand(rng, [n], -3, 3));
    await same(`sumSquares n=${n}`, be, be.sumSquares(gx), cpu.sumSquares(cx), 1e-5);
  }

  for (const n of [1, 1000]) {
    const [gp, cp] = twin(be, [n], rand(rng, [n]));
    const [gm, cm] = twin(be, [n], rand(rng, [n], -0.1, 0.1));
    const [gv, cv] = twin(be, [n], rand(rng, [n], 0, 0.01));
    for (let step = 1; step <= 3; step++) {
      const [gg, cg] = twin(be, [n], rand(rng, [n]));
      const hp = { lr: 0.01, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step, gradScale: 0.7 };
      be.adamw(gp, gg, gm, gv, hp);
      cpu.adamw(cp, cg, cm, cv, hp);
    }
    await same(`adamw n=${n}: p`, be, gp, cp, 1e-5);
    await same(`adamw n=${n}: m`, be, gm, cm, 1e-5);
    await same(`adamw n=${n}: v`, be, gv, cv, 1e-5);
  }
});

test('webgpu: every training op is unchanged when its grid is folded (at most 8 workgroups per dimension)', async (t) => {
  const full = await gpuBackendOrSkip(t);
  if (!full) return;
  const { WebGpuBackend } = await import('../../../src/backends/webgpu/backend.js');
  const be = new WebGpuBackend(full.device, { maxWorkgroupsPerDim: 8 });
  const rng = new Rng(9);
  const tw = (shape: number[], lo = -1, hi = 1) => twin(be, shape, rand(rng, shape, lo, hi));
  const fold = (what: string, g: Tensor, c: Tensor, tol = 1e-4) => same(`folded ${what}`, be, g, c, tol);
  try {
    // sizes keep every kernel between 9 and 64 workgroups
    const [ga, ca] = tw([3000, 20]), [gb, cb] = tw([3000, 7]); // one tile, 11 reduction ranges
    await fold('matmulTN', be.matmulTN(ga, gb), cpu.matmulTN(ca, cb));
    const [gx, cx] = tw([300, 70]), [gw, cw] = tw([70, 200]); // 20 tiles
    await fold('matmulNN', be.matmulNN(gx, gw), cpu.matmulNN(cx, cw));
    const [gp1, cp1] = tw([300, 20]), [gp2, cp2] = tw([300, 7]);
    await fold('concatCols', be.concatCols([gp1, gp2]), cpu.concatCols([cp1, cp2]), 0);
    const ids = Int32Array.from({ length: 40 }, (_, i) => (i * 3) % 50);
    const [gd, cd] = tw([40, 300]);
    await fold('embeddingBackward', be.embeddingBackward(gd, be.ids(ids, [40]), 50), cpu.embeddingBackward(cd, cpu.ids(ids, [40]), 50), 0);
    const [gr, cr] = tw([40, 300]), [gg, cg] = tw([300], 0.5, 1.5);
    const r = be.rmsNormBackward(gr, gg, gd, 1e-5), rc = cpu.rmsNormBackward(cr, cg, cd, 1e-5);
    await fold('rmsNormBackward dx', r.dx, rc.dx);
    await fold('rmsNormBackward dg', r.dg, rc.dg);
    const sm = be.siluMulBackward(gr, gr, gd), smc = cpu.siluMulBackward(cr, cr, cd);
    await fold('siluMulBackward', sm.da, smc.da, 1e-5);
    const tg = Int32Array.from({ length: 40 }, (_, i) => (i % 5 === 2 ? -1 : (i * 7) % 300));
    const ce = be.crossEntropy(gr, be.ids(tg, [40]), 0.5), cec = cpu.crossEntropy(cr, cpu.ids(tg, [40]), 0.5);
    await fold('crossEntropy loss', ce.loss, cec.loss, 1e-5);
    await fold('crossEntropy dlogits', ce.dlogits, cec.dlogits, 1e-5);
    const [gs, cs] = tw([50_000]);
    await fold('sumSquares', be.sumSquares(gs), cpu.sumSquares(cs), 1e-5);
    const [gpw, cpw] = tw([40, 300]), [gm, cm] = tw([40, 300], -0.1, 0.1), [gv, cv] = tw([40, 300], 0, 0.01);
    const hp = { lr: 0.01, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step: 2, gradScale: 1 };
    assert.throws(() => be.adamw(gpw, gpw, gm, gv, hp), /adamw: the parameter, gradient and moments must not share storage/);
    be.adamw(gpw, gd, gm, gv, hp);
    cpu.adamw(cpw, cd, cm, cv, hp);
    await fold('adamw', gpw, cpw, 1e-5);

    const B = 2, T = 20, C = 300, N = 16, three = [B, T, C];
    const [gcw, ccw] = tw([C, 4]), [gcb, ccb] = tw([C]), [gu, cu] = tw(three), [gy, cy] = tw(three);
    const conv = be.conv1dSiluBackward(gu, gcw, gcb, gy), convc = cpu.conv1dSiluBackward(cu, ccw, ccb, cy);
    for (const n of ['dx', 'dw', 'db'] as const) await fold(`conv ${n}`, conv[n], convc[n]);
    const ins = [three, three, [C], [C, N], [B, T, N], [B, T, N], [C], three, three].map((s) => tw(s));
    const g = be.selectiveScanBackward(...(ins.map((p) => p[0]) as Parameters<typeof be.selectiveScanBackward>));
    const c = cpu.selectiveScanBackward(...(ins.map((p) => p[1]) as Parameters<typeof cpu.selectiveScanBackward>));
    for (const n of ['du', 'ddt', 'dz', 'dbm', 'dcm', 'ddtBias', 'daLog', 'dd'] as const) await fold(`scan ${n}`, g[n], c[n]);
    const args: AttentionArgs = { nHeads: 4, nKvHeads: 2, headDim: 8, window: 3, pos0: new Int32Array(B) };
    const [gq, cq] = tw([B, 5, 32]), [gk, ck] = tw([B, 5, 16]), [gvv, cvv] = tw([B, 5, 16]);
    const ag = be.attentionBackward(gq, gk, gvv, gq, args), ac = cpu.attentionBackward(cq, ck, cvv, cq, args);
    for (const n of ['dq', 'dk', 'dv'] as const) await fold(`attention ${n}`, ag[n], ac[n]);
  } finally {
    be.destroy(); // frees its pool; the device belongs to the shared backend
  }
});

test('webgpu training ops are bitwise reproducible (no atomics, fixed summation orders)', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  const rng = new Rng(11);
  const [ga] = twin(be, [3000, 20], rand(rng, [3000, 20])), [gb] = twin(be, [3000, 7], rand(rng, [3000, 7]));
  const B = 2, T = 40, C = 130, N = 16, three = [B, T, C];
  const ins = [three, three, [C], [C, N], [B, T, N], [B, T, N], [C], three, three].map((s) => be.tensor(rand(rng, s), s));
  const args: AttentionArgs = { nHeads: 4, nKvHeads: 1, headDim: 8, window: 9, pos0: new Int32Array(B) };
  const q = be.tensor(rand(rng, [B, T, 32]), [B, T, 32]), k = be.tensor(rand(rng, [B, T, 8]), [B, T, 8]);
  const runOnce = async () => {
    const scan = be.selectiveScanBackward(...(ins as Parameters<typeof be.selectiveScanBackward>));
    const att = be.attentionBackward(q, k, k, q, args);
    const outs = [be.matmulTN(ga, gb), scan.dbm, scan.daLog, scan.dd, att.dk, att.dq, be.sumSquares(ga)];
    return Promise.all(outs.map((o) => be.read(o)));
  };
  const first = await runOnce(), second = await runOnce();
  for (let i = 0; i < first.length; i++) assert.deepEqual(second[i], first[i], `output ${i}`);
});

/** Loss and every parameter's gradient of one tiny random model on both backends. */
async function compareModelGrads(be: WebGpuBackend, arch: (typeof ALL_ARCHITECTURES)[number], tol: number): Promise<void> {
  const cfg = tinyConfig(arch);
  const rng = new Rng(10);
  const B = 2, T = 11; // T > window (6)
  const ids = randomIds(rng, B * T, cfg.vocabSize);
  const targets = Int32Array.from({ length: B * T }, (_, i) => (i % T === T - 1 ? -1 : ids[i + 1]));
  const gModel = randomModel(be, cfg, 4), cModel = randomModel(cpu, cfg, 4);
  try {
    const g = await gModel.lossAndGrads(ids, targets, B, T), c = await cModel.lossAndGrads(ids, targets, B, T);
    assert.ok(Math.abs(g.loss - c.loss) <= 1e-5 * c.loss, `${arch}: loss ${g.loss} vs ${c.loss}`);
    assert.deepEqual([...g.grads.keys()].sort(), [...c.grads.keys()].sort());
    for (const [name, cg] of c.grads) {
      const err = relErr(await be.read(g.grads.get(name)!), await cpu.read(cg));
      assert.ok(err <= tol, `${arch} ${name}: max |Δ| / max |ref| = ${err} > ${tol}`);
      be.dispose(g.grads.get(name)!);
    }
  } finally {
    gModel.dispose();
  }
}

for (const arch of ALL_ARCHITECTURES) {
  test(`webgpu ${arch}: the model's loss and gradients equal the CPU's`, async (t) => {
    const be = await gpuBackendOrSkip(t);
    if (!be) return;
    await compareModelGrads(be, arch, 1e-4);
  });
}

test('webgpu samba: a few training steps follow the CPU run', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  const pattern = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7];
  const tokens = new TokenArray(Int32Array.from({ length: 2000 }, (_, i) => pattern[i % pattern.length]));
  const run = async (b: Backend & GradOps) => {
    const model = randomModel(b, tinyConfig('samba', { vocabSize: 16 }), 3);
    const trainer = new Trainer(model, new WindowSampler(tokens, 16, 2, 7), defaultTrainOptions(6, 3e-3));
    const losses: number[] = [];
    for (let s = 0; s < 6; s++) losses.push((await trainer.trainStep()).loss);
    const weights = await b.read(model.params.get('layers.0.mamba.in_proj.weight')!);
    trainer.optimizer.dispose();
    model.dispose();
    return { losses, weights };
  };
  const g = await run(be), c = await run(cpu);
  for (let s = 0; s < 6; s++) assert.ok(Math.abs(g.losses[s] - c.losses[s]) <= 1e-4 * c.losses[s], `step ${s}: loss ${g.losses[s]} vs ${c.losses[s]}`);
  assert.ok(relErr(g.weights, c.weights) <= 1e-4, 'the weights after 6 steps');
  assert.ok(g.losses[5] < g.losses[0], 'the loss falls');
});

test("webgpu backward products go to tensor cores only where the kernel's output and both f16 copies fit", () => {
  const tc = { M: 16, N: 16, K: 16, subgroupSize: 32 }, big = { maxBinding: 2 ** 31 }, small = { maxBinding: 2 ** 20 };
  assert.equal(onTensorCores(big, tc, 4096, 4096, 4096), true);
  assert.equal(onTensorCores(small, tc, 4096, 4096, 4096), false, 'a 32 MiB copy does not fit a 1 MiB binding');
  assert.equal(onTensorCores(small, tc, 64, 64, 4096), true, '64 × 4096 halves: 512 KiB');
  assert.equal(onTensorCores(big, tc, 4, 32, 100), false, 'fewer outputs than one result matrix');
  assert.equal(onTensorCores(big, tc, 64, 64, 0), false, 'an empty reduction');
  assert.equal(onTensorCores(big, null, 4096, 4096, 4096), false, 'no tensor cores');
});
