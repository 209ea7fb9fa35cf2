// Streams many tokens one at a time through a small random model and prints the process memory
// as it goes: with constant-size decoding state, resident memory stays flat.
//   node dist/bench/stream-memory.js [--tokens 100000] [--preset samba-tiny] [--backend cpu|webgpu|auto]
import { parseArgs } from 'node:util';
import { SambaModel } from '../src/model/model.js';
import { getPreset } from '../src/model/presets.js';
import { Sampler } from '../src/generate/sampling.js';
import { openBackend, type BackendChoice } from '../src/node/load.js';

const { values } = parseArgs({ options: { tokens: { type: 'string', default: '100000' }, preset: { type: 'string', default: 'samba-tiny' }, backend: { type: 'string', default: 'cpu' } } });
const tokens = Number(values.tokens), cfg = getPreset(values.preset!);
const be = await openBackend(values.backend as BackendChoice);
const model = SambaModel.random(cfg, be, 1);
const state = model.newState(1), sampler = new Sampler({ temperature: 1, seed: 1 });
const mib = (n: number) => (n / 2 ** 20).toFixed(1);
const rows: string[] = [];
let id = 0, t0 = performance.now(), last = 0;
const every = Math.max(1, Math.floor(tokens / 10));
console.log(`streaming ${tokens} tokens through ${values.preset} on ${be.name}; state ${state.bytes()} bytes`);
for (let t = 1; t <= tokens; t++) {
  const out = model.forward(Int32Array.of(id), 1, 1, state, { lastOnly: true });
  id = sampler.sample(await be.read(out));
  be.dispose(out);
  if (t % every === 0 || t === tokens) {
    (globalThis as { gc?: () => void }).gc?.();
    const m = process.memoryUsage(), dt = (performance.now() - t0) / 1000;
    rows.push(`${String(t).padStart(8)}  ${mib(m.rss).padStart(8)}  ${mib(m.heapUsed).padStart(9)}  ${String(state.bytes()).padStart(11)}  ${((t - last) / dt).toFixed(0).padStart(8)}`);
    console.log(rows[rows.length - 1]);
    t0 = performance.now(); last = t;
  }
}
console.log('\n  tokens  rss(MiB)  heap(MiB)  state(bytes)  tokens/s');
for (const r of rows) console.log(r);
state.dispose();
process.exit(0);
