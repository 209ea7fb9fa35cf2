// The tiled (flash) prefill attention on WebGPU equals the CPU reference, for every tile shape the
// device can hold: T on both sides of the query tile (64 rows) and of the key tiles (32/64 keys),
// windows below, at and past a key tile and Infinity, MHA/GQA/MQA (rows of a tile then span several
// heads), B > 1 with pos0 differing per sequence, head sizes of the presets (64, 128) and odd ones,
// and chunked continuation over a KV cache (ring buffer for SWA, grown buffer for full attention)
// split at odd points, which must also equal one forward over the whole sequence.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CpuBackend } from '../../../src/backends/cpu/cpu.js';
import { WebGpuBackend } from '../../../src/backends/webgpu/backend.js';
import { type FlashTile, TILE_16K, TILE_32K, TILE_48K, tileBytes } from '../../../src/backends/webgpu/flash-attention.js';
import { type AttentionArgs, type Backend, type KvCache, type Tensor, numel } from '../../../src/core/backend.js';
import { Rng, randomArray } from '../../../src/core/random.js';
import { gpuBackendOrSkip, relErr } from '../../helpers/gpu.js';
import { createNodeWebGpuBackend } from '../../../src/node/webgpu.js';

const cpu = new CpuBackend();
const TOL = 1e-4;

/** Backends on the shared device that take the tiled kernel for any T > 1, one per tile that fits. */
function flashBackends(shared: WebGpuBackend): { name: string; be: WebGpuBackend }[] {
  const room = shared.device.limits.maxComputeWorkgroupStorageSize;
  const tiles: [string, FlashTile][] = [['16K', TILE_16K], ['32K', TILE_32K], ['48K', TILE_48K]];
  return tiles.filter(([, t]) => tileBytes(t) <= room)
    .map(([name, flashTile]) => ({ name, be: new WebGpuBackend(shared.device, { attentionSplit: { flashMinRows: 1, flashTile } }) }));
}

function twin(be: Backend, data: Float32Array, shape: number[]): [Tensor, Tensor] {
  return [be.tensor(data, shape), cpu.tensor(data.slice(), shape)];
}

interface Case {
  B: number; T: number; H: number; Hkv: number; hs: number; window: number; pos0: number[]; capacity?: number;
  /** f16 caches (every slot written through writeKv from random rows) */
  f16?: boolean;
}

async function check(be: Backend, rng: Rng, c: Case, label: string, tol = TOL): Promise<void> {
  const { B, T, H, Hkv, hs, window, capacity } = c;
  // scores spread enough that the softmax is far from uniform
  const [gq, cq] = twin(be, randomArray(rng, B * T * H * hs, 2), [B, T, H * hs]);
  const [gk, ck] = twin(be, randomArray(rng, B * T * Hkv * hs, 2), [B, T, Hkv * hs]);
  const [gv, cv] = twin(be, randomArray(rng, B * T * Hkv * hs), [B, T, Hkv * hs]);
  let gc: KvCache | null = null, cc: KvCache | null = null;
  if (capacity !== undefined) {
    const shape = [B, capacity, Hkv * hs];
    const [gkc, ckc] = twin(be, randomArray(rng, numel(shape), 2), shape), [gvc, cvc] = twin(be, randomArray(rng, numel(shape)), shape);
    if (c.f16) {
      gc = { k: be.zeros(shape, 'f16'), v: be.zeros(shape, 'f16'), capacity };
      cc = { k: cpu.zeros(shape, 'f16'), v: cpu.zeros(shape, 'f16'), capacity };
      be.writeKv(gc, gkc, gvc, new Int32Array(B));
      cpu.writeKv(cc, ckc, cvc, new Int32Array(B));
    } else {
      gc = { k: gkc, v: gvc, capacity };
      cc = { k: ckc, v: cvc, capacity };
    }
  }
  const args: AttentionArgs = { nHeads: H, nKvHeads: Hkv, headDim: hs, window, pos0: Int32Array.from(c.pos0) };
  const [a, ref] = await Promise.all([be.read(be.attention(gq, gk, gv, gc, args)), cpu.read(cpu.attention(cq, ck, cv, cc, args))]);
  const err = relErr(a, ref);
  assert.ok(err <= tol, `${label} ${JSON.stringify(c)}: max |Δ| / max |ref| = ${err}`);
}

test('webgpu flash attention without a cache: T and windows across tile edges, GQA/MQA, B > 1', async (t) => {
  const shared = await gpuBackendOrSkip(t);
  if (!shared) return;
  const rng = new Rng(21);
  for (const { name, be } of flashBackends(shared)) {
    // T = 70: one full query tile and a ragged one; windows around the 32- and 64-key tiles
    for (const window of [1, 5, 31, 32, 33, 64, 65, 100, Infinity]) {
      await be.tidy(() => check(be, rng, { B: 2, T: 70, H: 4, Hkv: 2, hs: 16, window, pos0: [0, 0] }, name));
    }
    // GQA and MQA: a tile's rows span heads; T·group not a multiple of the tile
    for (const [H, Hkv, T] of [[4, 1, 37], [4, 2, 45], [3, 3, 129], [6, 2, 23]]) {
      for (const window of [7, 48, Infinity]) {
        await be.tidy(() => check(be, rng, { B: 2, T, H, Hkv, hs: 8, window, pos0: [0, 0] }, name));
      }
    }
    be.destroy();
  }
});

test('webgpu flash attention: head sizes 1 … 130, the presets\' 64 and 128', async (t) => {
  const shared = await gpuBackendOrSkip(t);
  if (!shared) return;
  const rng = new Rng(22);
  for (const { name, be } of flashBackends(shared)) {
    for (const hs of [1, 15, 17, 33, 63, 64, 65, 128, 130]) {
      await be.tidy(() => check(be, rng, { B: 1, T: 67, H: 2, Hkv: 1, hs, window: 40, pos0: [0] }, name));
    }
    await be.tidy(() => check(be, rng, { B: 1, T: 90, H: 2, Hkv: 2, hs: 128, window: Infinity, pos0: [0] }, name));
    await be.tidy(() => check(be, rng, { B: 2, T: 80, H: 4, Hkv: 1, hs: 64, window: 50, pos0: [0, 0] }, name));
    be.destroy();
  }
});

test('webgpu flash attention with a KV cache: wrapped ring buffer, partly filled, grown full-attention cache', async (t) => {
  const shared = await gpuBackendOrSkip(t);
  if (!shared) return;
  const rng = new Rng(23);
  for (const { name, be } of flashBackends(shared)) {
    // SWA, cache = window: sequence 0 has wrapped, sequence 1 has seen 3 tokens
    await be.tidy(() => check(be, rng, { B: 2, T: 40, H: 4, Hkv: 2, hs: 16, window: 37, capacity: 37, pos0: [100, 3] }, name));
    // window larger than a key tile and than T
    await be.tidy(() => check(be, rng, { B: 2, T: 21, H: 2, Hkv: 1, hs: 8, window: 90, capacity: 90, pos0: [200, 45] }, name));
    // more new tokens than the window: most keys come from the new rows
    await be.tidy(() => check(be, rng, { B: 2, T: 75, H: 2, Hkv: 2, hs: 8, window: 9, capacity: 9, pos0: [30, 2] }, name));
    // full attention over a grown cache (capacity past the positions so far)
    await be.tidy(() => check(be, rng, { B: 2, T: 70, H: 4, Hkv: 1, hs: 16, window: Infinity, capacity: 160, pos0: [90, 7] }, name));
    be.destroy();
  }
});

/**
 * A sequence fed in chunks through a cache (attention, then writeKv, as the model does) gives the
 * rows of one forward over the whole sequence.
 */
async function chunked(be: Backend, rng: Rng, label: string, c: { B: number; H: number; Hkv: number; hs: number; window: number; cuts: number[] }, tol = TOL): Promise<void> {
  const { B, H, Hkv, hs, window, cuts } = c;
  const total = cuts.reduce((a, b) => a + b, 0), F = Hkv * hs;
  const q = randomArray(rng, B * total * H * hs, 2), k = randomArray(rng, B * total * F, 2), v = randomArray(rng, B * total * F);
  const whole = (x: Float32Array, w: number) => cpu.tensor(x, [B, total, w]);
  const noCache = { nHeads: H, nKvHeads: Hkv, headDim: hs, window, pos0: new Int32Array(B) };
  const ref = await cpu.read(cpu.attention(whole(q, H * hs), whole(k, F), whole(v, F), null, noCache));
  const capacity = Number.isFinite(window) ? window : total;
  const cache: KvCache = { k: be.zeros([B, capacity, F]), v: be.zeros([B, capacity, F]), capacity };
  let pos = 0;
  for (const T of cuts) {
    // rows pos … pos+T-1 of every sequence
    const slice = (x: Float32Array, w: number) => {
      const out = new Float32Array(B * T * w);
      for (let b = 0; b < B; b++) out.set(x.subarray((b * total + pos) * w, (b * total + pos + T) * w), b * T * w);
      return be.tensor(out, [B, T, w]);
    };
    const pos0 = new Int32Array(B).fill(pos);
    const gk = slice(k, F), gv = slice(v, F);
    const y = await be.read(be.attention(slice(q, H * hs), gk, gv, cache, { ...noCache, pos0 }));
    be.writeKv(cache, gk, gv, pos0);
    const want = new Float32Array(B * T * H * hs);
    for (let b = 0; b < B; b++) want.set(ref.subarray((b * total + pos) * H * hs, (b * total + pos + T) * H * hs), b * T * H * hs);
    const err = relErr(y, want);
    assert.ok(err <= tol, `${label} chunked ${JSON.stringify(c)} at ${pos}+${T}: max |Δ| / max |ref| = ${err}`);
    pos += T;
  }
}

test('webgpu flash attention: chunked continuation over the cache equals one forward', async (t) => {
  const shared = await gpuBackendOrSkip(t);
  if (!shared) return;
  const rng = new Rng(24);
  for (const { name, be } of flashBackends(shared)) {
    for (const window of [13, 48, 70, Infinity]) {
      await be.tidy(() => chunked(be, rng, name, { B: 2, H: 4, Hkv: 2, hs: 16, window, cuts: [37, 1, 66, 5, 29] }));
    }
    await be.tidy(() => chunked(be, rng, name, { B: 1, H: 2, Hkv: 1, hs: 64, window: 33, cuts: [70, 3, 41] }));
    be.destroy();
  }
  // the default policy: decode and short chunks on the per-row kernel, long ones on the tiled one
  await shared.tidy(() => chunked(shared, rng, 'default', { B: 2, H: 4, Hkv: 1, hs: 32, window: 50, cuts: [81, 1, 1, 7, 70] }));
  await shared.tidy(() => chunked(shared, rng, 'default', { B: 1, H: 2, Hkv: 2, hs: 128, window: Infinity, cuts: [100, 1, 65] }));
});

test('webgpu flash attention in mixed precision: on tensor cores where the device has subgroup matrices (f16 q, k, v: within f16 rounding) over f32 and f16 caches, wrapped, partly filled, grown or none, and in chunks; else the f32 kernels', async (t) => {
  const shared = await gpuBackendOrSkip(t);
  if (!shared) return;
  const mixed = await createNodeWebGpuBackend({ precision: 'f16-matmul', requireAdapter: true }) as WebGpuBackend;
  const tc = mixed.matmulPath === 'f16-subgroup-matrix', tol = tc ? 1e-2 : TOL;
  t.diagnostic(tc ? 'tensor cores' : `no subgroup matrices (${mixed.matmulPath}): the f32 kernels`);
  // mixed precision, and f32 precision with tensor cores asked for (the model commands' --tensor-cores)
  const asked = await createNodeWebGpuBackend({ subgroupMatrix: tc, requireAdapter: true }) as WebGpuBackend;
  for (const [name, be] of [['mixed', mixed], ['f32 with tensor cores', asked]] as const) {
    const rng = new Rng(25);
    // every case has at least 64 query rows (T · H / Hkv), so the default policy takes the tiled kernels
    const cases: Case[] = [
      { B: 2, T: 40, H: 4, Hkv: 2, hs: 16, window: 37, capacity: 37, pos0: [100, 3] },
      { B: 2, T: 75, H: 2, Hkv: 2, hs: 16, window: 9, capacity: 9, pos0: [30, 2] },
      { B: 2, T: 70, H: 4, Hkv: 1, hs: 32, window: Infinity, capacity: 160, pos0: [90, 7] },
      { B: 2, T: 40, H: 4, Hkv: 1, hs: 64, window: 50, capacity: 50, pos0: [75, 12], f16: true },
      { B: 2, T: 70, H: 2, Hkv: 1, hs: 128, window: 40, pos0: [0, 5] },
    ];
    for (const c of cases) {
      const keys: string[] = [], dispatch = be.ctx.dispatch;
      be.ctx.dispatch = function (this: typeof be.ctx, kernel, ...rest) { keys.push(kernel.key); return dispatch.call(this, kernel, ...rest); };
      try {
        await be.tidy(() => check(be, rng, c, name, tol));
      } finally {
        be.ctx.dispatch = dispatch;
      }
      assert.equal(keys.some((k) => k.startsWith('flash_attention_tc_')), tc, `${name} ${JSON.stringify(c)}: tensor cores used: ${tc} (${keys})`);
    }
    for (const window of [13, 70, Infinity]) {
      await be.tidy(() => chunked(be, rng, name, { B: 2, H: 4, Hkv: 2, hs: 16, window, cuts: [37, 1, 66, 5, 40] }, tol));
    }
  }
  asked.destroy();
  mixed.destroy();
});
