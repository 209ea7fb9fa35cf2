// The tiled (flash) attention backward on WebGPU equals the CPU reference for every tile shape the
// device can hold: T on both sides of the 64-row query/key tiles and the 32/64-wide column tiles,
// windows below, at and past a tile and Infinity, MHA/GQA/MQA (a dk/dv tile then sums over the
// heads of its group), B > 1, head sizes 1 … 130 with the presets' 64 and 128; and it is bitwise
// reproducible. Tolerance as in grad.test.ts: max |Δ| ≤ 1e-4 · max |ref|.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CpuBackend } from '../../../src/backends/cpu/cpu.js';
import { WebGpuBackend } from '../../../src/backends/webgpu/backend.js';
import { type FlashTile, TILE_16K, TILE_32K, TILE_48K } from '../../../src/backends/webgpu/flash-attention.js';
import { backwardTileBytes } from '../../../src/backends/webgpu/flash-backward.js';
import { tcFits } from '../../../src/backends/webgpu/flash-tc.js';
import type { AttentionArgs, Backend, GradOps, Tensor } from '../../../src/core/backend.js';
import { Rng, randomArray } from '../../../src/core/random.js';
import { GpuTensor } from '../../../src/backends/webgpu/tensor.js';
import { gpuBackendOrSkip, relErr } from '../../helpers/gpu.js';
import { createNodeWebGpuBackend } from '../../../src/node/webgpu.js';

const cpu = new CpuBackend();
const TOL = 1e-4;
/** The tensor-core backward: q, k, v, dO, p and dS rounded to f16. */
const TC_TOL = 1e-2;

function flashBackends(shared: WebGpuBackend): { name: string; be: WebGpuBackend }[] {
  const room = shared.device.limits.maxComputeWorkgroupStorageSize;
  const tiles: [string, FlashTile][] = [['16K', TILE_16K], ['32K', TILE_32K], ['48K', TILE_48K]];
  return tiles.filter(([, t]) => backwardTileBytes(t) <= room)
    .map(([name, flashTile]) => ({ name, be: new WebGpuBackend(shared.device, { attentionSplit: { flashMinRows: 1, flashTile } }) }));
}

interface Case { B: number; T: number; H: number; Hkv: number; hs: number; window: number }

async function check(be: Backend & GradOps, rng: Rng, c: Case, label: string, tol = TOL): Promise<number> {
  const { B, T, H, Hkv, hs, window } = c;
  const q = randomArray(rng, B * T * H * hs, 2), k = randomArray(rng, B * T * Hkv * hs, 2);
  const v = randomArray(rng, B * T * Hkv * hs), dO = randomArray(rng, B * T * H * hs);
  const args: AttentionArgs = { nHeads: H, nKvHeads: Hkv, headDim: hs, window, pos0: new Int32Array(B) };
  const ts = (b: Backend) => [
    b.tensor(q.slice(), [B, T, H * hs]), b.tensor(k.slice(), [B, T, Hkv * hs]),
    b.tensor(v.slice(), [B, T, Hkv * hs]), b.tensor(dO.slice(), [B, T, H * hs]),
  ] as const;
  const g = be.attentionBackward(...ts(be), args), r = cpu.attentionBackward(...ts(cpu), args);
  // read at once: the caller's tidy() disposes the tensors when check first awaits
  const names = ['dq', 'dk', 'dv'] as const;
  let worst = 0;
  const got = await Promise.all(names.map((n) => Promise.all([be.read(g[n]), cpu.read(r[n])])));
  for (const [x, n] of names.entries()) {
    const [a, ref] = got[x];
    const err = relErr(a, ref);
    assert.ok(err <= tol, `${label} ${JSON.stringify(c)} ${n}: max |Δ| / max |ref| = ${err}`);
    worst = Math.max(worst, err);
  }
  return worst;
}

/** The training forward (statistics kept) and the backward from them, against the CPU's attention and backward. */
async function checkTraining(be: WebGpuBackend, rng: Rng, c: Case, tol: number): Promise<number> {
  const { B, T, H, Hkv, hs, window } = c;
  const q = randomArray(rng, B * T * H * hs, 2), k = randomArray(rng, B * T * Hkv * hs, 2);
  const v = randomArray(rng, B * T * Hkv * hs), dO = randomArray(rng, B * T * H * hs);
  const args: AttentionArgs = { nHeads: H, nKvHeads: Hkv, headDim: hs, window, pos0: new Int32Array(B) };
  const ts = (b: Backend) => [
    b.tensor(q.slice(), [B, T, H * hs]), b.tensor(k.slice(), [B, T, Hkv * hs]), b.tensor(v.slice(), [B, T, Hkv * hs]), b.tensor(dO.slice(), [B, T, H * hs]),
  ] as const;
  const [gq, gk, gv, gdo] = ts(be), [cq, ck, cv, cdo] = ts(cpu);
  const y = be.attention(gq, gk, gv, null, args, { forBackward: true }), yRef = cpu.attention(cq, ck, cv, null, args);
  const g = be.attentionBackward(gq, gk, gv, gdo, args, y), r = cpu.attentionBackward(cq, ck, cv, cdo, args);
  const pairs: [string, Tensor, Tensor][] = [['y', y, yRef], ...(['dq', 'dk', 'dv'] as const).map((n): [string, Tensor, Tensor] => [n, g[n], r[n]])];
  let worst = 0;
  const got = await Promise.all(pairs.map(([, a, ref]) => Promise.all([be.read(a), cpu.read(ref)])));
  for (const [x, [n]] of pairs.entries()) {
    const err = relErr(got[x][0], got[x][1]);
    assert.ok(err <= tol, `training ${JSON.stringify(c)} ${n}: max |Δ| / max |ref| = ${err}`);
    worst = Math.max(worst, err);
  }
  return worst;
}

test('webgpu flash attentionBackward: T and windows across tile edges, GQA/MQA, B > 1', async (t) => {
  const shared = await gpuBackendOrSkip(t);
  if (!shared) return;
  const rng = new Rng(31);
  for (const { name, be } of flashBackends(shared)) {
    for (const window of [1, 5, 32, 33, 64, 65, Infinity]) {
      await be.tidy(() => check(be, rng, { B: 2, T: 70, H: 2, Hkv: 2, hs: 16, window }, name));
    }
    for (const [H, Hkv, T] of [[4, 1, 37], [4, 2, 45], [6, 2, 23], [3, 3, 129]]) {
      for (const window of [7, 48, Infinity]) {
        await be.tidy(() => check(be, rng, { B: 2, T, H, Hkv, hs: 8, window }, name));
      }
    }
    be.destroy();
  }
});

test('webgpu flash attentionBackward: head sizes 1 … 130, the presets\' 64 and 128', async (t) => {
  const shared = await gpuBackendOrSkip(t);
  if (!shared) return;
  const rng = new Rng(32);
  for (const { name, be } of flashBackends(shared)) {
    for (const hs of [1, 17, 63, 64, 65, 128, 130]) {
      await be.tidy(() => check(be, rng, { B: 1, T: 67, H: 2, Hkv: 1, hs, window: 40 }, name));
    }
    await be.tidy(() => check(be, rng, { B: 1, T: 80, H: 2, Hkv: 2, hs: 128, window: Infinity }, name));
    be.destroy();
  }
  // the default policy at a size that takes the tiled kernels
  await shared.tidy(() => check(shared, rng, { B: 2, T: 90, H: 4, Hkv: 2, hs: 32, window: 30 }, 'default'));
});

test('webgpu flash attentionBackward is bitwise reproducible', async (t) => {
  const shared = await gpuBackendOrSkip(t);
  if (!shared) return;
  const be = new WebGpuBackend(shared.device, { attentionSplit: { flashMinRows: 1 } });
  const rng = new Rng(33), B = 2, T = 75, H = 4, Hkv = 2, hs = 24;
  const q = be.tensor(randomArray(rng, B * T * H * hs), [B, T, H * hs]), k = be.tensor(randomArray(rng, B * T * Hkv * hs), [B, T, Hkv * hs]);
  const args: AttentionArgs = { nHeads: H, nKvHeads: Hkv, headDim: hs, window: 20, pos0: new Int32Array(B) };
  const once = async () => { const g = be.attentionBackward(q, k, k, q, args); return Promise.all([be.read(g.dq), be.read(g.dk), be.read(g.dv)]); };
  const first = await once(), second = await once();
  for (let i = 0; i < 3; i++) assert.deepEqual(second[i], first[i], `output ${i}`);
  be.destroy();
});

/** What `run` returns, and the keys of the kernels it dispatched. */
function kernelsOf<R>(be: WebGpuBackend, run: () => R): { out: R; keys: string[] } {
  const keys: string[] = [], dispatch = be.ctx.dispatch;
  be.ctx.dispatch = function (this: typeof be.ctx, kernel, ...rest) { keys.push(kernel.key); return dispatch.call(this, kernel, ...rest); };
  try { return { out: run(), keys }; } finally { be.ctx.dispatch = dispatch; }
}

test('webgpu attention: a training forward keeps its rows\' log-sum-exps, and the backward with them equals the backward that recomputes them, bit for bit', async (t) => {
  const shared = await gpuBackendOrSkip(t);
  if (!shared) return;
  const rng = new Rng(31);
  for (const { name, be } of flashBackends(shared)) {
    for (const c of [
      { B: 2, T: 80, H: 4, Hkv: 2, hs: 32, window: 48 },
      { B: 1, T: 70, H: 2, Hkv: 2, hs: 20, window: Infinity },
    ]) {
      const { B, T, H, Hkv, hs, window } = c;
      const args: AttentionArgs = { nHeads: H, nKvHeads: Hkv, headDim: hs, window, pos0: new Int32Array(B) };
      const q = be.tensor(randomArray(rng, B * T * H * hs, 2), [B, T, H * hs]), k = be.tensor(randomArray(rng, B * T * Hkv * hs, 2), [B, T, Hkv * hs]);
      const v = be.tensor(randomArray(rng, B * T * Hkv * hs), [B, T, Hkv * hs]), dO = be.tensor(randomArray(rng, B * T * H * hs), [B, T, H * hs]);
      const plain = be.attention(q, k, v, null, args), kept = be.attention(q, k, v, null, args, { forBackward: true });
      const label = `${name} ${JSON.stringify(c)}`;
      assert.deepEqual(await be.read(kept), await be.read(plain), `${label}: the same output`);
      assert.ok((kept as GpuTensor).storage!.rowStats && !(plain as GpuTensor).storage!.rowStats, `${label}: statistics kept only for a backward`);
      const withKept = kernelsOf(be, () => be.attentionBackward(q, k, v, dO, args, be.reshape(kept, [B * T, H * hs])));
      const recomputed = kernelsOf(be, () => be.attentionBackward(q, k, v, dO, args, plain));
      assert.ok(withKept.keys.includes('flash_delta') && !withKept.keys.some((key) => key.startsWith('flash_attention')), `${label}: δ from the kept statistics, no forward (${withKept.keys})`);
      assert.ok(!recomputed.keys.includes('flash_delta'), `${label}: without kept statistics the forward is recomputed (${recomputed.keys})`);
      for (const n of ['dq', 'dk', 'dv'] as const) assert.deepEqual(await be.read(withKept.out[n]), await be.read(recomputed.out[n]), `${label}: ${n}`);
      // another q (equal values, its own storage) with the same o: the statistics are not its own, so the forward is recomputed
      const q2 = be.tensor(await be.read(q), [B, T, H * hs]);
      const other = kernelsOf(be, () => be.attentionBackward(q2, k, v, dO, args, kept));
      assert.ok(!other.keys.includes('flash_delta'), `${label}: statistics kept for other inputs are not used (${other.keys})`);
      assert.deepEqual(await be.read(other.out.dq), await be.read(recomputed.out.dq), `${label}: dq with the forward recomputed`);
      for (const x of [q, q2, k, v, dO, plain, kept, ...[withKept, recomputed, other].flatMap((r) => Object.values(r.out))]) be.dispose(x);
    }
  }
});

test('webgpu flash attention for training in mixed precision (the forward keeping L, the backward): on tensor cores where the device has subgroup matrices (within f16 rounding), else the f32 kernels; T, windows and heads across tile edges', async (t) => {
  const shared = await gpuBackendOrSkip(t);
  if (!shared) return;
  const be = await createNodeWebGpuBackend({ precision: 'f16-matmul', requireAdapter: true }) as WebGpuBackend;
  const tc = be.matmulPath === 'f16-subgroup-matrix';
  t.diagnostic(tc ? 'tensor-core backward' : `no subgroup matrices (${be.matmulPath}): the f32 kernels`);
  const rng = new Rng(34);
  let worst = 0;
  const cases: Case[] = [
    ...[1, 5, 33, 64, 65, Infinity].map((window) => ({ B: 2, T: 70, H: 2, Hkv: 2, hs: 16, window })),
    ...[[4, 1, 37], [4, 2, 45], [6, 2, 130]].flatMap(([H, Hkv, T]) => [7, 48, Infinity].map((window) => ({ B: 2, T, H, Hkv, hs: 32, window }))),
    { B: 1, T: 67, H: 2, Hkv: 1, hs: 64, window: 40 }, { B: 1, T: 80, H: 2, Hkv: 2, hs: 128, window: Infinity },
    { B: 1, T: 200, H: 4, Hkv: 2, hs: 128, window: 100 },
  ];
  for (const c of cases) {
    const { keys } = await be.tidy(async () => {
      const run = kernelsOf(be, () => check(be, rng, c, 'mixed', tc ? TC_TOL : TOL));
      worst = Math.max(worst, await run.out);
      return run;
    });
    assert.equal(keys.some((k) => k.startsWith('flash_bwd_tc_')), tc, `${JSON.stringify(c)}: tensor cores ${tc ? '' : 'not '}used (${keys})`);
  }
  // the training forward (keeping L) and the backward from its statistics, as a training step runs them
  for (const c of cases) {
    const { keys } = await be.tidy(async () => {
      const run = kernelsOf(be, () => checkTraining(be, rng, c, tc ? TC_TOL : TOL));
      worst = Math.max(worst, await run.out);
      return run;
    });
    assert.equal(keys.some((k) => k.startsWith('flash_attention_tc_')), tc, `${JSON.stringify(c)}: forward on tensor cores: ${tc} (${keys})`);
    assert.ok(keys.includes('flash_delta'), `${JSON.stringify(c)}: the backward used the kept statistics (${keys})`);
  }
  t.diagnostic(`largest relative error: ${worst.toExponential(2)}`);
  // head sizes the tensor cores do not take: 20 (the matrices do not tile it), and 256 where its staged tiles overflow the workgroup memory
  assert.ok(!tcFits({ M: 16, N: 16, K: 16, subgroupSize: 32 }, 20, 1 << 16) && !tcFits({ M: 16, N: 16, K: 16, subgroupSize: 32 }, 256, 48 << 10));
  assert.ok(tcFits({ M: 16, N: 16, K: 16, subgroupSize: 32 }, 224, 48 << 10) && tcFits({ M: 16, N: 16, K: 16, subgroupSize: 32 }, 128, 48 << 10));
  // a head size the matrices do not tile: the f32 kernels
  const odd = kernelsOf(be, () => check(be, rng, { B: 1, T: 70, H: 2, Hkv: 1, hs: 20, window: 30 }, 'mixed hs 20'));
  await odd.out;
  assert.ok(!odd.keys.some((k) => k.startsWith('flash_bwd_tc_')), `hs 20: the f32 kernels (${odd.keys})`);
  be.destroy();
});
