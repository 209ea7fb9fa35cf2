// f16 weight storage for inference (WebGpuBackend.compactWeight, SambaModel.compactWeights): the
// products equal the CPU's with both operands rounded to f16 (f16 operands, f32 sums), across the
// gemv / tiled boundaries and the packing pads; a whole model follows a CPU model that rounds the
// same way; misuse is refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CpuBackend } from '../../../src/backends/cpu/cpu.js';
import type { MatmulOptions, Tensor } from '../../../src/core/backend.js';
import { Rng } from '../../../src/core/random.js';
import { f16BitsToF32, f32ToF16Bits } from '../../../src/io/half.js';
import { SambaModel, isMatmulWeight } from '../../../src/model/model.js';
import { initParams } from '../../../src/model/init.js';
import { gemvLayout, gemvShape } from '../../../src/backends/webgpu/matmul-f16.js';
import type { GpuTensor } from '../../../src/backends/webgpu/tensor.js';
import { gpuBackendOrSkip, relErr } from '../../helpers/gpu.js';
import { randomIds, randomModel, tinyConfig } from '../../helpers/models.js';

const cpu = new CpuBackend();
const roundF16 = (a: Float32Array) => a.map((x) => f16BitsToF32(f32ToF16Bits(x)));

/** The CPU backend with matmul operands rounded to f16, as the f16 kernels take them. */
class F16OperandCpu extends CpuBackend {
  override matmul(x: Tensor, w: Tensor, opts?: MatmulOptions): Tensor {
    if (opts?.norm || opts?.residual) return super.matmul(x, w, opts); // which calls back here for the product
    const xs = (x as unknown as { data: Float32Array }).data;
    return super.matmul(this.tensor(roundF16(xs), x.shape), w);
  }
}
const rand = (rng: Rng, n: number) => Float32Array.from({ length: n }, () => rng.uniform(-1, 1));

test('webgpu swiglu with f16 weights: one dispatch per block of rows, bit-identical to matmul, matmul, siluMul, and near the CPU', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  if (!be.f16Caps.shaderF16) { t.skip('no shader-f16 on this adapter'); return; }
  const rng = new Rng(22);
  for (const [M, N, K] of [[1, 70, 17], [1, 130, 64], [1, 9, 260], [3, 40, 33], [16, 300, 72], [20, 33, 40]]) {
    const x = rand(rng, M * K), w1 = rand(rng, N * K), w2 = rand(rng, N * K);
    const gx = be.tensor(x, [M, K]), g1 = be.compactWeight(be.tensor(w1, [N, K])), g2 = be.compactWeight(be.tensor(w2, [N, K]));
    const d0: number = be.ctx.counts.dispatches;
    const fused = await be.read(be.swiglu(gx, g1, g2));
    assert.equal(be.ctx.counts.dispatches - d0, M === 1 ? 1 : Math.ceil(M / gemvShape.rowsBlock), 'one dispatch per block of rows');
    const composed = await be.read(be.siluMul(be.matmul(gx, g1), be.matmul(gx, g2)));
    assert.deepEqual(fused, composed, `M=${M} N=${N} K=${K}: the fused kernel sums exactly as the gemv does`);
    const want = await cpu.read(cpu.swiglu(cpu.tensor(roundF16(x), [M, K]), cpu.tensor(roundF16(w1), [N, K]), cpu.tensor(roundF16(w2), [N, K])));
    const err = relErr(fused, want);
    assert.ok(err <= 1e-5, `M=${M} N=${N} K=${K}: max |Δ| / max |ref| = ${err}`);
  }
  // f32 weights: the composition, equal to the CPU
  const x = rand(rng, 2 * 12), w1 = rand(rng, 5 * 12), w2 = rand(rng, 5 * 12);
  const got = await be.read(be.swiglu(be.tensor(x, [2, 12]), be.tensor(w1, [5, 12]), be.tensor(w2, [5, 12])));
  const want = await cpu.read(cpu.swiglu(cpu.tensor(x, [2, 12]), cpu.tensor(w1, [5, 12]), cpu.tensor(w2, [5, 12])));
  assert.ok(relErr(got, want) <= 1e-6);
});

test('webgpu mambaInput with f16 weights: the conv inside the product for one token (one dispatch), equal to matmul, sliceCols, conv1dSilu, and near the CPU', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  if (!be.f16Caps.shaderF16) { t.skip('no shader-f16 on this adapter'); return; }
  const rng = new Rng(23), f16cpu = new F16OperandCpu();
  // C = 64: x̃ and z are views of the product's row (256-byte halves); C = 40: copies. d = 18: no fused norm (composed)
  for (const [C, d, K, withState, withNorm] of [[64, 36, 4, true, true], [40, 16, 4, false, true], [40, 20, 3, true, false], [8, 18, 4, true, true]] as const) {
    const u = rand(rng, d), wIn = rand(rng, 2 * C * d), cw = rand(rng, C * K), cb = rand(rng, C), st = rand(rng, C * (K - 1)), g = rand(rng, d);
    const args = (b: typeof be | CpuBackend, w: Tensor) => [
      b.tensor(u, [1, d]), w, b.tensor(cw, [C, K]), b.tensor(cb, [C]), withState ? b.tensor(st, [1, C, K - 1]) : null, 1, 1,
      withNorm ? { norm: { g: b.tensor(g, [d]), eps: 1e-5 } } : {},
    ] as const;
    const gw = be.compactWeight(be.tensor(wIn, [2 * C, d]));
    const d0: number = be.ctx.counts.dispatches;
    const fused = be.mambaInput(...args(be, gw));
    // one dispatch; where z's half of the row is not aligned for a view, one copy of it too
    if (d % 4 === 0) assert.ok(be.ctx.counts.dispatches - d0 <= (C === 64 ? 1 : 2), `C=${C} d=${d}: ${be.ctx.counts.dispatches - d0} dispatches`);
    const [u1, w1, cw1, cb1, st1, , , o1] = args(be, gw);
    const xz = be.matmul(u1, w1, o1);
    const conv = be.conv1dSilu(be.reshape(be.sliceCols(xz, 0, C), [1, 1, C]), cw1, cb1, st1);
    const what = `C=${C} d=${d} K=${K} state=${withState} norm=${withNorm}`;
    assert.deepEqual(await be.read(fused.xc), await be.read(conv.y), `${what}: x̃ as the conv kernel computes it`);
    assert.deepEqual(await be.read(fused.z), await be.read(be.sliceCols(xz, C, C)), `${what}: z`);
    assert.deepEqual(await be.read(fused.state), await be.read(conv.state), `${what}: next conv state`);
    assert.deepEqual(fused.xc.shape, [1, 1, C]);
    const want = f16cpu.mambaInput(...args(f16cpu, f16cpu.tensor(roundF16(wIn), [2 * C, d])));
    for (const k of ['xc', 'z', 'state'] as const) {
      const err = relErr(await be.read(fused[k]), await f16cpu.read(want[k]));
      assert.ok(err <= 1e-5, `${what}: ${k} max |Δ| / max |ref| = ${err}`);
    }
  }
  // shapes are checked
  assert.throws(() => be.mambaInput(be.tensor(rand(rng, 8), [1, 8]), be.tensor(rand(rng, 8 * 6), [6, 8]), be.tensor(rand(rng, 16), [4, 4]), be.tensor(rand(rng, 4), [4]), null, 1, 1), /wIn/);
});

test('webgpu one-row gemv under each shape of column groups (subgroup sums where the subgroups are that wide, trees otherwise): products, fused ends, SwiGLU and the Mamba input near the CPU', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  if (!be.f16Caps.shaderF16) { t.skip('no shader-f16 on this adapter'); return; }
  const rng = new Rng(31), f16cpu = new F16OperandCpu(), saved = { ...gemvShape }, sgw = be.ctx.subgroupSize;
  // workgroup × unroll, invocations per group × columns per group; the last, groups one subgroup wide
  const shapes = [[256, 2, 256, 8], [256, 2, 256, 1], [256, 2, 256, 2], [256, 2, 256, 4], [256, 2, 64, 2], [64, 4, 32, 2], [256, 2, 32, 4], [64, 1, 16, 4], [256, 1, 4, 4], [128, 2, 2, 1], ...(sgw ? [[256, 2, sgw, 2], [128, 1, sgw, 1]] : [])];
  t.diagnostic(`subgroups ${sgw || 'none, or of varying width'}`);
  try {
    for (const [wgOneRow, unroll, groupOneRow, colsOneRow] of shapes) {
      gemvShape.oneRow = { wg: wgOneRow, unroll, group: groupOneRow, cols: colsOneRow };
      for (const [N, K] of [[1, 8], [7, 36], [70, 260], [130, 1000], [33, 2056], [9, 63]]) {
        const what = `shape ${wgOneRow}×${unroll}, groups ${groupOneRow}×${colsOneRow}, N=${N} K=${K}`;
        const x = rand(rng, K), w = rand(rng, N * K), w2 = rand(rng, N * K), g = rand(rng, K), r = rand(rng, N);
        const gw = be.compactWeight(be.tensor(w, [N, K])), gw2 = be.compactWeight(be.tensor(w2, [N, K]));
        const cw = f16cpu.tensor(roundF16(w), [N, K]), cw2 = f16cpu.tensor(roundF16(w2), [N, K]);
        // with a norm, its sum of squares is summed in another order than the CPU's, which can
        // move an x across an f16 rounding boundary: a looser bound, still far below a wrong sum's
        const near = async (got: Tensor, want: Tensor, part: string) => {
          const err = relErr(await be.read(got), await f16cpu.read(want)), tol = part.includes('norm') || part.startsWith('mamba') ? 1e-4 : 1e-5;
          assert.ok(err <= tol, `${what}, ${part}: max |Δ| / max |ref| = ${err}`);
        };
        await near(be.matmul(be.tensor(x, [1, K]), gw), f16cpu.matmul(f16cpu.tensor(x, [1, K]), cw), 'product');
        if (K % 4 === 0) {
          const ends = (b: typeof be | CpuBackend) => ({ norm: { g: b.tensor(g, [K]), eps: 1e-5 }, residual: b.tensor(r, [1, N]) });
          await near(be.matmul(be.tensor(x, [1, K]), gw, ends(be)), f16cpu.matmul(f16cpu.tensor(x, [1, K]), cw, ends(f16cpu)), 'norm and residual');
          const norm = (b: typeof be | CpuBackend) => ({ norm: { g: b.tensor(g, [K]), eps: 1e-5 } });
          await near(be.swiglu(be.tensor(x, [1, K]), gw, gw2, norm(be)), f16cpu.swiglu(f16cpu.tensor(x, [1, K]), cw, cw2, norm(f16cpu)), 'swiglu with norm');
          if (N % 2 === 0) {
            const C = N / 2, CK = 4, convW = rand(rng, C * CK), convB = rand(rng, C), st = rand(rng, C * (CK - 1));
            const args = (b: typeof be | CpuBackend, wt: Tensor) => [b.tensor(x, [1, K]), wt, b.tensor(convW, [C, CK]), b.tensor(convB, [C]), b.tensor(st, [1, C, CK - 1]), 1, 1, norm(b)] as const;
            const got = be.mambaInput(...args(be, gw)), want = f16cpu.mambaInput(...args(f16cpu, cw));
            for (const k of ['xc', 'z', 'state'] as const) await near(got[k], want[k], `mamba input ${k}`);
          }
        }
        be.dispose(gw); be.dispose(gw2);
      }
    }
  } finally { Object.assign(gemvShape, saved); }
  if (sgw) {
    const keys = [...(be.ctx as unknown as { pipelines: Map<string, unknown> }).pipelines.keys()];
    assert.ok(keys.some((k) => k.startsWith('matmul_f16_gemv_1_') && k.endsWith('_sg')), 'the groups one subgroup wide were summed with subgroupAdd');
    assert.ok(keys.some((k) => k.startsWith('matmul_f16_gemv_1_') && k.endsWith(`_sg${sgw}x${256 / sgw}`)), 'the groups of 256 were summed by subgroups, then across them');
  }
});

test('gemvLayout: the one-row gemv\'s shape follows the product, and the bench\'s settings override it', () => {
  const saved = { ...gemvShape, byProduct: new Map(gemvShape.byProduct) };
  try {
    gemvShape.oneRow = null;
    gemvShape.byProduct.clear();
    // residual products: as few columns a workgroup as keep the workgroups within a wave (1024)
    for (const [N, K, cols] of [[2048, 8192, 2], [2048, 2048, 2], [2304, 6144, 4], [2560, 2048, 4], [1536, 1536, 2], [1024, 4096, 1], [3072, 4096, 4]]) {
      const s = gemvLayout(N, K, 32);
      assert.deepEqual([s.group, s.cols], [s.wg, cols], `${N} × ${K}`);
      assert.ok(Math.ceil(N / cols) <= 1024 && (cols === 1 || Math.ceil(N / (cols / 2)) > 1024), `${N} × ${K}: ${Math.ceil(N / cols)} workgroups`);
    }
    assert.equal(gemvLayout(2048, 512, 32).cols, 8, 'a short reduction keeps 8 columns a workgroup');
    assert.equal(gemvLayout(160, 4096, 32).cols, 1, 'narrow, long reduction: one column a workgroup');
    assert.deepEqual([gemvLayout(8192, 2048, 32).group, gemvLayout(8192, 2048, 32).cols], [64, 2], 'wide, short reduction: groups of two subgroups, 2 columns each');
    assert.equal(gemvLayout(8192, 2048, 0).group, 256, 'without subgroups 32 wide: trees');
    const chosen = { wg: 128, unroll: 4, group: 128, cols: 2 };
    gemvShape.byProduct.set('2048x8192', chosen);
    assert.equal(gemvLayout(2048, 8192, 32), chosen, 'a shape set for the product');
    assert.equal(gemvLayout(2048, 4096, 32).cols, 2, 'only for that product');
    const one = { wg: 64, unroll: 1, group: 64, cols: 8 };
    gemvShape.oneRow = one;
    assert.equal(gemvLayout(2048, 8192, 32), one, 'the one shape for every product wins');
  } finally { Object.assign(gemvShape, saved); }
});
test('webgpu compactWeight: x·wᵀ with f16 weights equals the CPU product with f16-rounded weights', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  if (!be.f16Caps.shaderF16) { t.skip('no shader-f16 on this adapter'); return; }
  const rng = new Rng(21);
  // M ≤ 4: the f16 gemv; larger: the tiled (or tensor-core) kernel. N and K cross the 64-row and 16-column pads.
  for (const [M, N, K] of [[1, 70, 17], [3, 130, 64], [4, 1, 100], [5, 65, 16], [64, 64, 33], [130, 129, 80]]) {
    const x = rand(rng, M * K), w = rand(rng, N * K);
    const gw = be.compactWeight(be.tensor(w, [N, K]));
    const got = await be.read(be.matmul(be.tensor(x, [M, K]), gw));
    const want = await cpu.read(cpu.matmul(cpu.tensor(roundF16(x), [M, K]), cpu.tensor(roundF16(w), [N, K])));
    const err = relErr(got, want);
    assert.ok(err <= 1e-5, `M=${M} N=${N} K=${K}: max |Δ| / max |ref| = ${err}`);
  }
});

test('webgpu f16 weights: a samba model follows the CPU model with rounded weights; streaming = full forward', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  if (!be.f16Caps.shaderF16) { t.skip('no shader-f16 on this adapter'); return; }
  const cfg = tinyConfig('samba', { tieEmbeddings: false }), rng = new Rng(5), B = 2, T = 13;
  const ref16 = new F16OperandCpu(), gModel = randomModel(be, cfg, 6), cModel = randomModel(ref16, cfg, 6);
  try {
    for (const [name, p] of cModel.params) if (isMatmulWeight(name)) cModel.params.set(name, ref16.tensor(roundF16(await ref16.read(p)), p.shape));
    const saved = gModel.compactWeights();
    assert.equal(gModel.weights, 'f16');
    assert.ok(gModel.params.get('head.weight')!.dtype === 'f16w' && gModel.params.get('embed.weight')!.dtype === 'f32', 'untied head compact, embedding not');
    assert.ok(saved > 0);
    const ids = randomIds(rng, B * T, cfg.vocabSize);
    const full = await be.read(gModel.forward(ids, B, T));
    const ref = await ref16.read(cModel.forward(ids, B, T));
    assert.ok(relErr(full, ref) <= 1e-4, `logits: ${relErr(full, ref)}`);
    // the same through the decoding state, 5 + 1 + 7 tokens
    const state = gModel.newState(B), parts: Float32Array[] = [];
    for (const [t0, t1] of [[0, 5], [5, 6], [6, T]]) {
      const chunk = new Int32Array(B * (t1 - t0));
      for (let b = 0; b < B; b++) chunk.set(ids.subarray(b * T + t0, b * T + t1), b * (t1 - t0));
      parts.push(await be.read(gModel.forward(chunk, B, t1 - t0, state)));
    }
    state.dispose();
    const V = cfg.vocabSize, streamed = new Float32Array(B * T * V);
    let t0 = 0;
    for (const [i, len] of [5, 1, 7].entries()) {
      for (let b = 0; b < B; b++) streamed.set(parts[i].subarray(b * len * V, (b + 1) * len * V), (b * T + t0) * V);
      t0 += len;
    }
    assert.ok(relErr(streamed, full) <= 1e-5, `streamed vs full: ${relErr(streamed, full)}`);
    // inference only, and the f16 tensors go nowhere but matmul
    await assert.rejects(gModel.lossAndGrads(ids, ids, B, T), /f16 inference weights and cannot be trained/);
    await assert.rejects(be.read(gModel.params.get('layers.0.mamba.in_proj.weight')!), /stored as f16 for matmul only/);
    const w = gModel.params.get('layers.1.mlp.w1.weight')!;
    assert.throws(() => be.add(w, w), /add: .* stored as f16 for matmul only/);
  } finally {
    gModel.dispose();
  }
});

test('webgpu f16 weights with tied embeddings: the head reads an f16 copy, the lookup the f32 table', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  if (!be.f16Caps.shaderF16) { t.skip('no shader-f16 on this adapter'); return; }
  const cfg = tinyConfig('samba', { tieEmbeddings: true }), host = initParams(cfg, 6), ref16 = new F16OperandCpu();
  const gModel = SambaModel.fromHost(cfg, be, host);
  // the reference: untied, its head the rounded table, its lookup the table itself
  const refHost = new Map([...host].map(([n, a]) => [n, isMatmulWeight(n) ? roundF16(a) : a] as const));
  refHost.set('head.weight', roundF16(host.get('embed.weight')!));
  const cModel = SambaModel.fromHost(tinyConfig('samba', { tieEmbeddings: false }), ref16, refHost);
  try {
    const matmulBytes = [...host].filter(([n]) => isMatmulWeight(n)).reduce((s, [, a]) => s + 2 * a.length, 0);
    assert.equal(gModel.compactWeights(), matmulBytes - 2 * host.get('embed.weight')!.length, 'bytes saved, less the f16 head copy');
    const ids = randomIds(new Rng(8), 2 * 9, cfg.vocabSize);
    const got = await be.read(gModel.forward(ids, 2, 9)), want = await ref16.read(cModel.forward(ids, 2, 9));
    assert.ok(relErr(got, want) <= 1e-4, `logits: ${relErr(got, want)}`);
  } finally {
    gModel.dispose();
  }
});

test('f16 weights on the CPU backend are refused with a clear error', () => {
  const model = SambaModel.random(tinyConfig('mamba'), cpu, 1);
  assert.throws(() => model.compactWeights(), /cpu backend has no f16 weight storage/);
});

test('webgpu gatherWeights: an f16 model\'s parameters as ranges of shared buffers give the same logits, bit for bit, and go with their last tensor', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  if (!be.f16Caps.shaderF16) { t.skip('no shader-f16 on this adapter'); return; }
  const cfg = tinyConfig('samba', { tieEmbeddings: true, nBlocks: 4 }), rng = new Rng(9), B = 2, T = 7; // two Mamba layers
  const gathered = randomModel(be, cfg, 3), apart = randomModel(be, cfg, 3);
  // the same weights compacted one buffer each, without gathering
  for (const [name, p] of apart.params) {
    if (!isMatmulWeight(name)) continue;
    apart.params.set(name, be.keep(be.compactWeight(p)));
    be.dispose(p);
  }
  apart.weights = 'f16';
  apart.compactTiedHead();
  gathered.compactWeights();
  const scanConstant = (n: string) => /\.(A_log|D|dt_proj\.bias)$/.test(n);
  const weights = [...gathered.params].filter(([n]) => !scanConstant(n)).map(([, w]) => w as GpuTensor);
  const buffers = new Set(weights.map((w) => w.buf!.id));
  assert.ok(buffers.size < weights.length / 4, `${weights.length} parameters (f16 products, f32 norms, convs, embedding) in ${buffers.size} buffers`);
  const constants = [...gathered.params].filter(([n]) => scanConstant(n)).map(([, w]) => (w as GpuTensor).buf!.id);
  assert.ok(constants.length > 0 && constants.every((id) => !buffers.has(id)), 'the scan\'s constants keep buffers of their own (the scan caches a buffer derived from each)');
  assert.ok(weights.every((w) => w.offset % be.ctx.storageAlign === 0), 'aligned ranges');
  try {
    const ids = randomIds(rng, B * T, cfg.vocabSize);
    assert.deepEqual(await be.read(gathered.forward(ids, B, T)), await be.read(apart.forward(ids, B, T)), 'whole sequences');
    // one token at a time: the one-row gemvs, the Mamba input with its conv, the scan's Δ projection
    const sg = gathered.newState(B), sa = apart.newState(B);
    for (let i = 0; i < T; i++) {
      const step = Int32Array.from({ length: B }, (_, b) => ids[b * T + i]);
      assert.deepEqual(await be.read(gathered.forward(step, B, 1, sg)), await be.read(apart.forward(step, B, 1, sa)), `token ${i}`);
    }
    sg.dispose(); sa.dispose();
  } finally {
    apart.dispose();
  }
  // the shared buffers go back to the pool with the last tensor that names them
  const live = be.ctx.pool.liveBytes;
  gathered.dispose();
  assert.ok(be.ctx.pool.liveBytes < live, 'the gathered buffers were released');
  assert.ok(weights.every((w) => w.storage === null));
  await be.flush();
});
