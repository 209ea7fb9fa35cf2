// `samba-lm demo`: streams tokens through a small random Samba and a same-size full-attention
// Transformer, one token at a time, and prints how each one's decoding state and speed evolve.
// Samba's state is fixed at creation (Mamba states + a W-slot ring buffer per SWA layer); the
// Transformer's KV cache grows with every token. (Training the demo's passkey models comes with
// the training issue.)
import type { Backend } from '../core/backend.js';
import { countParams, type ModelConfig } from '../model/config.js';
import { initParams } from '../model/init.js';
import { SambaModel } from '../model/model.js';
import { paramSpecs } from '../model/config.js';
import { getPreset } from '../model/presets.js';
import { Sampler } from '../generate/sampling.js';

function build(be: Backend, cfg: ModelConfig, seed: number): SambaModel {
  const host = initParams(cfg, seed), params = new Map();
  for (const s of paramSpecs(cfg)) params.set(s.name, be.keep(be.tensor(host.get(s.name)!, s.shape)));
  return new SambaModel(cfg, be, params);
}

const fmtBytes = (n: number) => (n >= 2 ** 20 ? `${(n / 2 ** 20).toFixed(2)} MiB` : `${(n / 1024).toFixed(1)} KiB`);

export async function runDemo(be: Backend, tokens: number): Promise<void> {
  const samba = getPreset('samba-tiny'), llama = { ...getPreset('llama-tiny'), nBlocks: getPreset('samba-tiny').nBlocks };
  const models = [['samba-tiny', build(be, samba, 1)], ['llama (full attention)', build(be, llama, 2)]] as const;
  console.log(`Streaming ${tokens} tokens one at a time on the ${be.name} backend (random weights; this shows memory and speed, not quality).`);
  console.log(`samba-tiny: ${countParams(samba).toLocaleString('en-US')} parameters, window ${samba.window}; llama: ${countParams(llama).toLocaleString('en-US')} parameters.\n`);
  const checkpoints = new Set<number>();
  for (let n = 1000; n < tokens; n *= 4) checkpoints.add(n);
  checkpoints.add(tokens);
  const rows: string[][] = [];
  for (const [name, model] of models) {
    const state = model.newState(1), sampler = new Sampler({ temperature: 1, seed: 3 });
    let id = 1, t0 = performance.now(), last = 0;
    for (let t = 1; t <= tokens; t++) {
      const out = model.forward(Int32Array.of(id), 1, 1, state, { lastOnly: true });
      id = sampler.sample(await be.read(out));
      be.dispose(out);
      if (checkpoints.has(t)) {
        const dt = (performance.now() - t0) / 1000;
        rows.push([name, String(t), fmtBytes(state.bytes()), ((t - last) / dt).toFixed(0)]);
        t0 = performance.now(); last = t;
      }
    }
    state.dispose();
    model.dispose();
  }
  const head = ['model', 'tokens seen', 'decoding state', 'tokens/s (since previous row)'];
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(w[i])).join('  ');
  console.log(line(head));
  console.log(w.map((n) => '-'.repeat(n)).join('  '));
  for (const r of rows) console.log(line(r));
}
