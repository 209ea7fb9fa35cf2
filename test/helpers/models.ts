// Small random models of every architecture, for tests. Norm gains are randomised too so that no
// parameter sits at a value that could hide a bug (e.g. all-ones gains).
import type { Backend } from '../../src/core/backend.js';
import { Rng } from '../../src/core/random.js';
import { ARCHITECTURES, makeConfig, type Architecture, type ModelConfig } from '../../src/model/config.js';
import { initParams } from '../../src/model/init.js';
import { SambaModel } from '../../src/model/model.js';

export function tinyConfig(architecture: Architecture, over: Partial<ModelConfig> = {}): ModelConfig {
  return makeConfig({
    architecture, vocabSize: 61, dModel: 32, nBlocks: architecture === 'mamba' ? 3 : 2,
    nHeads: 4, nKvHeads: 2, headDim: 8, mlpHidden: 48, window: 6, ...over,
  });
}

export const ALL_ARCHITECTURES: Architecture[] = [...ARCHITECTURES];

export function randomModel(be: Backend, cfg: ModelConfig, seed = 1): SambaModel {
  const host = initParams(cfg, seed);
  const rng = new Rng(seed + 1000);
  for (const [name, data] of host) {
    if (name.endsWith('norm.weight') || name === 'norm_f.weight') for (let i = 0; i < data.length; i++) data[i] = rng.uniform(0.5, 1.5);
    // a larger embedding spreads the logits so comparisons are meaningful
    if (name === 'embed.weight') for (let i = 0; i < data.length; i++) data[i] *= 25;
  }
  return SambaModel.fromHost(cfg, be, host);
}

export function randomIds(rng: Rng, n: number, vocab: number): Int32Array {
  return Int32Array.from({ length: n }, () => rng.int(vocab));
}

export { relErr as maxRelErr } from './gpu.js';
