// Inputs twinned on a GPU backend and the CPU reference, for the scan and gradient parity tests.
import { CpuBackend } from '../../src/backends/cpu/cpu.js';
import { type Backend, type Tensor, numel } from '../../src/core/backend.js';
import type { Rng } from '../../src/core/random.js';

const cpu = new CpuBackend();

/** The same data on `be` and on the CPU. */
export function twin(be: Backend, shape: number[], data: Float32Array): [Tensor, Tensor] {
  return [be.tensor(data, shape), cpu.tensor(data.slice(), shape)];
}

export const rand = (rng: Rng, shape: number[], lo = -1, hi = 1) =>
  Float32Array.from({ length: numel(shape) }, () => rng.uniform(lo, hi));

export type ScanTensors = [u: Tensor, dt: Tensor, dtBias: Tensor, aLog: Tensor, bm: Tensor, cm: Tensor, d: Tensor, z: Tensor];

/** A selective scan's inputs on the GPU (g) and the CPU (c), and an h0 on each: dt in a range (with spikes past 20: softplus's identity), A = -exp(aLog) in -a. */
export function scanInputs(
  be: Backend, rng: Rng, B: number, T: number, C: number, N: number, o: { dt: [number, number]; dtSpikes: boolean; a: [number, number] },
): { g: ScanTensors; c: ScanTensors; gh: Tensor; ch: Tensor } {
  const three = [B, T, C];
  const dt = rand(rng, three, ...o.dt);
  if (o.dtSpikes) for (let i = 0; i < dt.length; i += 7) dt[i] = rng.uniform(18, 23);
  const pairs = [
    twin(be, three, rand(rng, three, -2, 2)), twin(be, three, dt), twin(be, [C], rand(rng, [C], -1, 1)),
    twin(be, [C, N], Float32Array.from({ length: C * N }, () => Math.log(rng.uniform(...o.a)))),
    twin(be, [B, T, N], rand(rng, [B, T, N])), twin(be, [B, T, N], rand(rng, [B, T, N])),
    twin(be, [C], rand(rng, [C])), twin(be, three, rand(rng, three, -4, 4)),
  ];
  const [gh, ch] = twin(be, [B, C, N], rand(rng, [B, C, N], -2, 2));
  return { g: pairs.map((p) => p[0]) as ScanTensors, c: pairs.map((p) => p[1]) as ScanTensors, gh, ch };
}
