// Attention and the KV-cache ops on WebGPU equal the CPU reference: windows of 1, below T, at T
// and past it, full attention, MHA/GQA/MQA, chunk edges of the online softmax (64 keys), head
// sizes past one value per invocation, and a ring-buffer cache that has wrapped, with pos0
// differing per sequence.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CpuBackend } from '../../../src/backends/cpu/cpu.js';
import { type AttentionArgs, type Backend, type KvCache, type Tensor, numel } from '../../../src/core/backend.js';
import { Rng, randomArray } from '../../../src/core/random.js';
import { WebGpuBackend } from '../../../src/backends/webgpu/backend.js';
import { DEFAULT_SPLIT, attentionShape } from '../../../src/backends/webgpu/attention.js';
import { stepFits } from '../../../src/backends/webgpu/attention-step.js';
import { assertParity, gpuBackendOrSkip } from '../../helpers/gpu.js';

const cpu = new CpuBackend();

function twin(be: Backend, rng: Rng, shape: number[], scale = 1): [Tensor, Tensor] {
  const data = randomArray(rng, numel(shape), scale);
  return [be.tensor(data, shape), cpu.tensor(data.slice(), shape)];
}

interface Case {
  B: number; T: number; H: number; Hkv: number; hs: number; window: number;
  pos0: number[]; capacity?: number;
}

async function check(be: Backend, rng: Rng, c: Case): Promise<void> {
  const { B, T, H, Hkv, hs, window, capacity } = c;
  // scores spread enough that the softmax is far from uniform
  const [gq, cq] = twin(be, rng, [B, T, H * hs], 2);
  const [gk, ck] = twin(be, rng, [B, T, Hkv * hs], 2);
  const [gv, cv] = twin(be, rng, [B, T, Hkv * hs]);
  let gc: KvCache | null = null, cc: KvCache | null = null;
  if (capacity !== undefined) {
    const [gkc, ckc] = twin(be, rng, [B, capacity, Hkv * hs], 2), [gvc, cvc] = twin(be, rng, [B, capacity, Hkv * hs]);
    gc = { k: gkc, v: gvc, capacity };
    cc = { k: ckc, v: cvc, capacity };
  }
  const args: AttentionArgs = { nHeads: H, nKvHeads: Hkv, headDim: hs, window, pos0: Int32Array.from(c.pos0) };
  await assertParity(`attention ${JSON.stringify(c)}`, be, be.attention(gq, gk, gv, gc, args), cpu, cpu.attention(cq, ck, cv, cc, args));
}

test('webgpu attention without a cache: windows, head groupings, head sizes', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  const rng = new Rng(7);
  for (const window of [1, 4, 13, 20, Infinity]) {
    for (const [H, Hkv] of [[4, 4], [4, 2], [4, 1]]) {
      await be.tidy(() => check(be, rng, { B: 2, T: 13, H, Hkv, hs: 8, window, pos0: [0, 5] }));
    }
  }
  for (const hs of [1, 63, 64, 65, 130]) {
    await be.tidy(() => check(be, rng, { B: 1, T: 9, H: 2, Hkv: 1, hs, window: 5, pos0: [3] }));
  }
});

test('webgpu attention: key counts across online-softmax chunks (T = 150)', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  const rng = new Rng(8);
  for (const window of [63, 64, 65, 100, Infinity]) {
    await be.tidy(() => check(be, rng, { B: 1, T: 150, H: 2, Hkv: 1, hs: 16, window, pos0: [0] }));
  }
});

test('webgpu attention with a KV cache: wrapped ring buffer, partly filled cache, decode, full attention', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  const rng = new Rng(9);
  // sliding window, cache = window: sequence 0 has wrapped (positions 4..9 in slots 4,5,0,1,2,3),
  // sequence 1 has seen only 3 tokens
  await be.tidy(() => check(be, rng, { B: 2, T: 4, H: 4, Hkv: 2, hs: 8, window: 6, capacity: 6, pos0: [10, 3] }));
  // decode: one new token, window past one chunk
  await be.tidy(() => check(be, rng, { B: 2, T: 1, H: 3, Hkv: 1, hs: 16, window: 70, capacity: 70, pos0: [100, 69] }));
  await be.tidy(() => check(be, rng, { B: 3, T: 1, H: 2, Hkv: 2, hs: 8, window: 1, capacity: 1, pos0: [5, 0, 1] }));
  // full attention over a grown cache (capacity > positions so far)
  await be.tidy(() => check(be, rng, { B: 2, T: 5, H: 4, Hkv: 1, hs: 8, window: Infinity, capacity: 32, pos0: [20, 7] }));
  // more new tokens than the window: most keys come from the new rows
  await be.tidy(() => check(be, rng, { B: 2, T: 11, H: 2, Hkv: 2, hs: 8, window: 4, capacity: 4, pos0: [9, 2] }));
});

test('webgpu attention with keys split over workgroups (flash-decoding) equals the CPU', async (t) => {
  const full = await gpuBackendOrSkip(t);
  if (!full) return;
  const rng = new Rng(13);
  // splits of 3+ keys and up to 64 splits: ragged last splits, and empty ones for early queries
  for (const minKeys of [3, 40]) {
    const be = new WebGpuBackend(full.device, { attentionSplit: { minKeys, targetWorkgroups: 4096 } });
    await check(be, rng, { B: 2, T: 1, H: 3, Hkv: 1, hs: 16, window: 70, capacity: 70, pos0: [100, 69] });
    await check(be, rng, { B: 2, T: 1, H: 2, Hkv: 2, hs: 130, window: 200, capacity: 200, pos0: [450, 13] });
    await check(be, rng, { B: 1, T: 1, H: 4, Hkv: 2, hs: 128, window: 300, capacity: 300, pos0: [777] });
    await check(be, rng, { B: 2, T: 4, H: 4, Hkv: 2, hs: 8, window: 6, capacity: 6, pos0: [10, 3] });
    await check(be, rng, { B: 1, T: 150, H: 2, Hkv: 1, hs: 16, window: Infinity, pos0: [0] });
    await check(be, rng, { B: 2, T: 5, H: 4, Hkv: 1, hs: 8, window: Infinity, capacity: 32, pos0: [20, 7] });
    be.destroy();
  }
});

test('webgpu writeKv (keys and values in place, in one op) and resizeRows of a cache', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  const rng = new Rng(10);
  for (const [C, T, pos0] of [[6, 4, [10, 3]], [6, 1, [5, 0]], [4, 11, [9, 2]], [8, 8, [0, 3]]] as [number, number, number[]][]) {
    const B = 2, F = 12;
    const [gk, ck] = twin(be, rng, [B, C, F]), [gv, cv] = twin(be, rng, [B, C, F]);
    const [gnk, cnk] = twin(be, rng, [B, T, F]), [gnv, cnv] = twin(be, rng, [B, T, F]);
    be.writeKv({ k: gk, v: gv, capacity: C }, gnk, gnv, Int32Array.from(pos0));
    cpu.writeKv({ k: ck, v: cv, capacity: C }, cnk, cnv, Int32Array.from(pos0));
    await assertParity(`writeKv keys C=${C} T=${T} pos0=${pos0}`, be, gk, cpu, ck);
    await assertParity(`writeKv values C=${C} T=${T} pos0=${pos0}`, be, gv, cpu, cv);
    await assertParity('resizeRows grow', be, be.resizeRows(gk, C + 5), cpu, cpu.resizeRows(ck, C + 5));
  }
  const cache = { k: be.zeros([1, 4, 2]), v: be.zeros([1, 4, 2]), capacity: 4 };
  assert.throws(() => be.writeKv(cache, be.zeros([1, 2, 2]), be.zeros([1, 2, 2]), Int32Array.of(-1)), /negative position/);
  assert.throws(() => be.writeKv(cache, be.zeros([1, 2, 2]), be.zeros([1, 3, 2]), Int32Array.of(0)), /writeKv: new values/);
});

test('webgpu f16 KV caches: writeKv rounds to halves, resize and concat keep them, attention reads them like the CPU', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  const rng = new Rng(12);
  // hs 16: vec4 key reads; hs 6: scalar reads of an even row; decode (splits) and a prefill chunk
  // long enough for the tiled kernel (T·H/Hkv ≥ 64 rows)
  for (const c of [
    { B: 2, T: 1, H: 4, Hkv: 2, hs: 16, window: 70, capacity: 70, pos0: [100, 69] },
    { B: 1, T: 1, H: 2, Hkv: 1, hs: 6, window: 9, capacity: 9, pos0: [30] },
    { B: 2, T: 40, H: 4, Hkv: 1, hs: 16, window: 50, capacity: 50, pos0: [75, 12] },
  ]) {
    {
      const { B, T, H, Hkv, hs, window, capacity } = c, F = Hkv * hs;
      const caches = ([be, cpu] as Backend[]).map((b) => ({ k: b.zeros([B, capacity, F], 'f16'), v: b.zeros([B, capacity, F], 'f16'), capacity }));
      // fill every slot: capacity rows written from position 0
      const [gk0, ck0] = twin(be, rng, [B, capacity, F], 2), [gv0, cv0] = twin(be, rng, [B, capacity, F], 2);
      be.writeKv(caches[0], gk0, gv0, new Int32Array(B));
      cpu.writeKv(caches[1], ck0, cv0, new Int32Array(B));
      for (const [which, h] of [['k', ck0], ['v', cv0]] as const) {
        const got = await be.read(caches[0][which]), want = await cpu.read(caches[1][which]), raw = await cpu.read(h);
        for (let i = 0; i < want.length; i++) {
          assert.ok(Math.abs(want[i] - raw[i]) <= Math.abs(raw[i]) * 2 ** -11 + 2 ** -25, `CPU rounding at ${i}: ${raw[i]} → ${want[i]}`);
          assert.ok(Math.abs(got[i] - want[i]) <= Math.abs(want[i]) * 2 ** -10, `webgpu half at ${i}: ${got[i]} vs ${want[i]}`);
        }
      }
      const [gq, cq] = twin(be, rng, [B, T, H * hs], 2), [gk, ck] = twin(be, rng, [B, T, F], 2), [gv, cv] = twin(be, rng, [B, T, F]);
      const args: AttentionArgs = { nHeads: H, nKvHeads: Hkv, headDim: hs, window, pos0: Int32Array.from(c.pos0) };
      await assertParity(`f16-cache attention ${JSON.stringify(c)}`, be, be.attention(gq, gk, gv, caches[0], args), cpu, cpu.attention(cq, ck, cv, caches[1], args), 2e-3);
      // growing (and shrinking) and stacking keep the halves as they are
      const halves = await be.read(caches[0].k);
      for (const newC of [capacity + 3, capacity - 1]) {
        const grown = be.resizeRows(caches[0].k, newC), want = new Float32Array(B * newC * F);
        for (let b = 0; b < B; b++) for (let r = 0; r < Math.min(capacity, newC); r++) for (let f = 0; f < F; f++) want[(b * newC + r) * F + f] = halves[(b * capacity + r) * F + f];
        assert.equal(grown.dtype, 'f16');
        assert.deepEqual(await be.read(grown), want, `resizeRows to ${newC}`);
      }
      const both = be.concat([caches[0].k, caches[0].v]);
      assert.equal(both.dtype, 'f16');
      const rk = await be.read(caches[0].k), rv = await be.read(caches[0].v), rb = await be.read(both);
      assert.deepEqual(rb, Float32Array.from([...rk, ...rv]));
    }
  }
  // values past the f16 range clamp to ±65504 on both backends
  const big = Float32Array.of(1e6, -1e6, 65519, 3), caches = ([be, cpu] as Backend[]).map((b) => ({ k: b.zeros([1, 1, 4], 'f16'), v: b.zeros([1, 1, 4], 'f16'), capacity: 1 }));
  be.writeKv(caches[0], be.tensor(big, [1, 1, 4]), be.tensor(big, [1, 1, 4]), Int32Array.of(0));
  cpu.writeKv(caches[1], cpu.tensor(big, [1, 1, 4]), cpu.tensor(big, [1, 1, 4]), Int32Array.of(0));
  for (const c of caches) assert.deepEqual(Array.from(await (c === caches[0] ? be : cpu).read(c.v)), [65504, -65504, 65504, 3]);
  const odd = { k: be.zeros([1, 4, 3], 'f16'), v: be.zeros([1, 4, 3], 'f16'), capacity: 4 };
  assert.throws(() => be.writeKv(odd, be.zeros([1, 1, 3]), be.zeros([1, 1, 3]), Int32Array.of(0)), /an f16 cache needs an even row width, got 3/);
});

interface FusedCase { B: number; H: number; Hkv: number; hs: number; window: number; capacity: number; pos0: number[] }

/**
 * One new token with RoPE and the cache store fused, against rope, attention and writeKv on the
 * CPU; with the step kernel where it serves the shape (attentionShape.step) and/or without.
 */
async function checkFused(be: WebGpuBackend, rng: Rng, cases: FusedCase[], steps = [true, false]): Promise<void> {
  const saved = attentionShape.step;
  try {
    for (const step of steps) {
      attentionShape.step = step;
      await checkFusedCases(be, rng, cases);
    }
  } finally {
    attentionShape.step = saved;
  }
}

async function checkFusedCases(be: WebGpuBackend, rng: Rng, cases: FusedCase[]): Promise<void> {
  for (const dtype of ['f32', 'f16'] as const) {
    for (const c of cases) {
      const { B, H, Hkv, hs, window, capacity } = c, F = Hkv * hs, half = hs / 2;
      const fill = randomArray(rng, B * capacity * F, 2), fillV = randomArray(rng, B * capacity * F);
      const caches = ([be, cpu] as Backend[]).map((b) => {
        const cache = { k: b.zeros([B, capacity, F], dtype), v: b.zeros([B, capacity, F], dtype), capacity };
        b.writeKv(cache, b.tensor(fill, [B, capacity, F]), b.tensor(fillV, [B, capacity, F]), new Int32Array(B));
        return cache;
      });
      const [gq, cq] = twin(be, rng, [B, 1, H * hs], 2), [gk, ck] = twin(be, rng, [B, 1, F], 2), [gv, cv] = twin(be, rng, [B, 1, F]);
      const angles = randomArray(rng, B * half, 3);
      const cosA = angles.map(Math.cos), sinA = angles.map(Math.sin);
      const args: AttentionArgs = { nHeads: H, nKvHeads: Hkv, headDim: hs, window, pos0: Int32Array.from(c.pos0) };
      const before = be.ctx.counts.dispatches;
      const got = be.attention(gq, gk, gv, caches[0], args, { rope: { cos: be.tensor(cosA, [B, half]), sin: be.tensor(sinA, [B, half]) }, store: true });
      const dispatches = be.ctx.counts.dispatches - before;
      if (hs % 8 === 0) assert.ok(dispatches <= 2, `${dtype} ${JSON.stringify(c)}: ${dispatches} dispatches, expected the fused kernel (and its merge)`);
      const want = cpu.attention(cq, ck, cv, caches[1], args, { rope: { cos: cpu.tensor(cosA, [B, half]), sin: cpu.tensor(sinA, [B, half]) }, store: true });
      const what = `${dtype} cache ${JSON.stringify(c)}`;
      await assertParity(`fused attention ${what}`, be, got, cpu, want, dtype === 'f16' ? 2e-3 : undefined);
      for (const which of ['k', 'v'] as const) {
        const g = await be.read(caches[0][which]), w = await cpu.read(caches[1][which]);
        let bad = -1;
        for (let i = 0; i < w.length && bad < 0; i++) {
          const tol = dtype === 'f16' ? Math.abs(w[i]) * 2 ** -10 + 2 ** -24 : Math.abs(w[i]) * 1e-6 + 1e-7;
          if (!(Math.abs(g[i] - w[i]) <= tol)) bad = i;
        }
        assert.equal(bad, -1, `${what}: cache ${which}[${bad}] = ${g[bad]}, expected ${w[bad]}`);
      }
    }
  }
}

test('webgpu attention with RoPE and the cache store fused (one new token) equals rope, attention, writeKv on the CPU, f32 and f16 caches', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  // a wrapped ring with GQA and splits; MHA with many splits; full attention in a growable cache;
  // hs 12 (not a multiple of 8): composed from the separate ops
  await checkFused(be, new Rng(31), [
    { B: 2, H: 4, Hkv: 2, hs: 16, window: 70, capacity: 70, pos0: [100, 69] },
    { B: 1, H: 8, Hkv: 8, hs: 64, window: 300, capacity: 300, pos0: [450] },
    { B: 3, H: 4, Hkv: 1, hs: 128, window: Infinity, capacity: 200, pos0: [5, 120, 199] },
    { B: 1, H: 2, Hkv: 1, hs: 12, window: 9, capacity: 9, pos0: [30] },
  ]);
  const cache = { k: be.zeros([1, 4, 8]), v: be.zeros([1, 4, 8]), capacity: 4 };
  const q = be.zeros([1, 1, 8]), kv = be.zeros([1, 1, 8]), args = { nHeads: 1, nKvHeads: 1, headDim: 8, window: 4, pos0: Int32Array.of(2) };
  assert.throws(() => be.attention(q, kv, kv, cache, args, { rope: { cos: be.zeros([1, 3]), sin: be.zeros([1, 4]) }, store: true }), /attention: rope cos has shape \[1, 3\], expected \[1, 4\]/);
  assert.throws(() => be.attention(q, kv, kv, null, args, { store: true }), /store needs a cache/);
});

test('webgpu attention step kernel (one new token; a KV head\'s query group per workgroup, values staged by block) equals the CPU', async (t) => {
  const full = await gpuBackendOrSkip(t);
  if (!full) return;
  const rng = new Rng(43);
  // the default policy (batches 1 and 2), and one that sends every batch to the per-row
  // kernel (its heads kept apart, since lavapipe takes long to compile the grouped kernels)
  for (const stepMaxBatch of [2, 0]) {
    const be = new WebGpuBackend(full.device, { attentionSplit: { stepMaxBatch, groupMinKeys: Infinity } });
    const ran: string[] = [];
    const dispatch = be.ctx.dispatch.bind(be.ctx);
    be.ctx.dispatch = (kernel, ...rest) => { ran.push(kernel.key); return dispatch(kernel, ...rest); };
    // groups of 8 (32 keys a block, 2 columns an invocation; a wrapped ring and a partly filled
    // one; 2601 keys: 64 splits of two blocks, the second part empty; 20 keys: one split, the
    // output written whole), 16 (16 keys, 4 columns), 4 (scores in 2 parts, 1 column) over heads
    // of 64 and of 128; no groups (scores in 8 parts, P·V in 4 key subsets of one column; 2601 keys
    // again), groups of 2 (4 parts, 2 subsets), and no groups over heads of 128 (2 subsets)
    const cases = [
      { B: 1, H: 4, Hkv: 4, hs: 64, window: 300, capacity: 300, pos0: [450] },
      { B: 1, H: 2, Hkv: 2, hs: 64, window: Infinity, capacity: 3000, pos0: [2600] },
      { B: 1, H: 4, Hkv: 2, hs: 64, window: 70, capacity: 70, pos0: [100] },
      { B: 2, H: 3, Hkv: 3, hs: 128, window: 200, capacity: 200, pos0: [199, 77] },
      { B: 2, H: 16, Hkv: 2, hs: 64, window: 300, capacity: 300, pos0: [450, 37] },
      { B: 1, H: 8, Hkv: 1, hs: 64, window: Infinity, capacity: 3000, pos0: [2600] },
      { B: 1, H: 8, Hkv: 1, hs: 64, window: 20, capacity: 20, pos0: [57] },
      { B: 1, H: 8, Hkv: 1, hs: 64, window: 1, capacity: 1, pos0: [5] }, // the new key alone
      { B: 1, H: 16, Hkv: 1, hs: 64, window: 100, capacity: 100, pos0: [250] },
      { B: 2, H: 8, Hkv: 2, hs: 64, window: Infinity, capacity: 160, pos0: [150, 3] },
      { B: 1, H: 4, Hkv: 1, hs: 128, window: 200, capacity: 200, pos0: [199] },
    ];
    // without room, one case shows the fallback (the per-row kernel walks 2601 keys slowly on lavapipe)
    for (const c of stepMaxBatch > 0 ? cases : cases.slice(0, 1)) {
      ran.length = 0;
      await checkFused(be, rng, [c], [true]);
      const fits = stepFits(be.ctx, c.H / c.Hkv, c.hs);
      // every group over heads of 64 fits 16 KiB of workgroup memory, WebGPU's least; heads of
      // 128 run where the device has more
      if (c.hs === 64) assert.ok(fits, `${JSON.stringify(c)}: the step kernel should serve it`);
      assert.equal(ran.some((k) => k.startsWith('attention_step_')), fits && c.B <= stepMaxBatch, `${JSON.stringify(c)}: ran ${ran.join(', ')}`);
    }
    be.destroy();
  }
});

test('webgpu attention with the query heads of a KV head sharing workgroups (GQA grouping) equals the CPU', async (t) => {
  const full = await gpuBackendOrSkip(t);
  if (!full) return;
  const rng = new Rng(41);
  // groupMinKeys 0: every GQA call groups, with splits (minKeys 3) and without (minKeys 1000)
  for (const minKeys of [3, 1000]) {
    const be = new WebGpuBackend(full.device, { attentionSplit: { minKeys, targetWorkgroups: 4096, groupMinKeys: 0 } });
    // groups of 2, 3 and 4 heads (the generated code is the same for up to 8, but lavapipe compiles
    // a kernel for seconds, longer the more heads it serves: 26 s for 8); head sizes 8, 16 and 130
    // (no vec4s, three values per invocation); a wrapped ring, a partly filled cache, decode past
    // one chunk, several new tokens, full attention
    for (const c of [
      { B: 2, T: 4, H: 4, Hkv: 2, hs: 8, window: 6, capacity: 6, pos0: [10, 3] },
      { B: 2, T: 1, H: 3, Hkv: 1, hs: 16, window: 70, capacity: 70, pos0: [100, 69] },
      { B: 1, T: 1, H: 4, Hkv: 1, hs: 8, window: Infinity, capacity: 160, pos0: [150] },
      { B: 2, T: 1, H: 4, Hkv: 2, hs: 130, window: 200, capacity: 200, pos0: [450, 13] },
      { B: 2, T: 5, H: 4, Hkv: 2, hs: 8, window: Infinity, capacity: 32, pos0: [20, 7] },
      { B: 1, T: 150, H: 4, Hkv: 2, hs: 8, window: 65, pos0: [0] },
    ]) await check(be, rng, c);
    await checkFused(be, rng, [
      { B: 2, H: 4, Hkv: 2, hs: 16, window: 70, capacity: 70, pos0: [100, 69] },
      { B: 3, H: 4, Hkv: 2, hs: 16, window: Infinity, capacity: 200, pos0: [5, 120, 199] },
    ], [false]); // the grouped per-row kernel (the step kernel serves these shapes otherwise)
    be.destroy();
  }
});
