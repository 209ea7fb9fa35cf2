// The sample_rows kernel against the CPU's sampleRows on fresh random logits: vocabularies that do
// not divide into the 256 chunks of a workgroup, ties, the repetition penalty, and uniforms placed
// inside each chosen id's CDF interval (f32 sums on the GPU, f64 on the CPU: only a uniform within
// rounding of a boundary could pick a neighbour).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CpuBackend } from '../../../src/backends/cpu/cpu.js';
import { Rng, randomArray } from '../../../src/core/random.js';
import { gpuBackendOrSkip } from '../../helpers/gpu.js';

const cpu = new CpuBackend();

/** A uniform in the middle of id k's interval of the row's CDF at temperature T. */
function uniformFor(row: Float32Array, k: number, T: number): number {
  const m = Math.max(...row), w = Array.from(row, (v) => Math.exp((v - m) / T)), total = w.reduce((a, b) => a + b);
  return (w.slice(0, k).reduce((a, b) => a + b, 0) + w[k] / 2) / total;
}

test('webgpu sampleRows: greedy and tempered draws equal the CPU at vocabularies of 1 … 50,257', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  const rng = new Rng(41);
  for (const [B, V] of [[3, 1], [2, 255], [4, 257], [3, 1000], [2, 50257]]) {
    const x = randomArray(rng, B * V, 4);
    // a few ids per row with real mass (random logits over 50K ids leave each a tiny share), and a
    // tie in row 1 that the first id must win
    if (V > 10) for (let b = 0; b < B; b++) for (let i = 0; i < 3; i++) x[b * V + rng.int(V)] = 6 + rng.next();
    if (V > 10) { x[V + 7] = 9; x[V + V - 3] = 9; }
    const run = async (o: Parameters<CpuBackend["sampleRows"]>[1]): Promise<number[]> => {
      const want = Array.from(await cpu.read(cpu.sampleRows(cpu.tensor(x, [B, V]), o)));
      const got: number[] = Array.from(await be.read(be.sampleRows(be.tensor(x, [B, V]), o)));
      assert.deepEqual(got, want, `B ${B} V ${V} ${JSON.stringify({ ...o, uniforms: o.uniforms && Array.from(o.uniforms) })}`);
      return want;
    };
    const greedy = await run({ temperature: 0 });
    if (V > 10) assert.equal(greedy[1], 7);
    for (const T of [0.5, 1, 3]) {
      // ids drawn at random among those holding ≥ 1e-4 of the mass (an interval far wider than f32
      // rounding of the sums), then a uniform in the middle of each one's interval
      const uniforms = new Float32Array(B), want: number[] = [];
      for (let b = 0; b < B; b++) {
        const row = x.subarray(b * V, (b + 1) * V), m = Math.max(...row);
        const total = row.reduce((s, v) => s + Math.exp((v - m) / T), 0);
        const candidates = [...row.keys()].filter((i) => Math.exp((row[i] - m) / T) / total >= 1e-4);
        const k = candidates[rng.int(candidates.length)];
        uniforms[b] = uniformFor(row, k, T);
        want.push(k);
      }
      assert.deepEqual(await run({ temperature: T, uniforms }), want);
    }
    // the penalty on a few ids per row, greedy and tempered
    const ids = Array.from({ length: B }, () => Int32Array.from(new Set(Array.from({ length: Math.min(V, 5) }, () => rng.int(V)))));
    ids[0] = Int32Array.of(...new Set([...ids[0], ...Array.from({ length: Math.min(V, 3) }, (_, i) => i)]));
    await run({ temperature: 0, penalty: { factor: 1.7, ids } });
    await run({ temperature: 1, penalty: { factor: 1.7, ids }, uniforms: Float32Array.from({ length: B }, () => 0.5) });
  }
});

test('webgpu sampleRows: a row of -inf or of one value picks id 0 like the CPU, also with fewer ids than invocations', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  for (const V of [3, 255, 300]) {
    const x = new Float32Array(2 * V).fill(-Infinity);
    x.fill(-2.5, V); // row 1: all equal
    const o = { temperature: 0 };
    assert.deepEqual(Array.from(await be.read(be.sampleRows(be.tensor(x, [2, V]), o))), Array.from(await cpu.read(cpu.sampleRows(cpu.tensor(x, [2, V]), o))), `V ${V}`);
    assert.deepEqual(Array.from(await cpu.read(cpu.sampleRows(cpu.tensor(x, [2, V]), o))), [0, 0]);
  }
});

test('webgpu sampleRows leaves the logits as they were', async (t) => {
  const be = await gpuBackendOrSkip(t);
  if (!be) return;
  const x = randomArray(new Rng(3), 2 * 300), lg = be.tensor(x, [2, 300]);
  const id = be.sampleRows(lg, { temperature: 0, penalty: { factor: 4, ids: [Int32Array.of(1, 2, 3), Int32Array.of(299)] } });
  await be.read(id);
  assert.deepEqual(await be.read(lg), x);
});
