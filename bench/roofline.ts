// What the decode benchmarks' rooflines share: the bytes a decoded token reads, and the copy kernel
// whose bandwidth they divide by.
import { countParams, type ModelConfig } from '../src/model/config.js';
import type { Kernel } from '../src/backends/webgpu/context.js';
import { BUILTINS, WG_INDEX } from '../src/backends/webgpu/wgsl.js';

/**
 * Weight bytes a decoded token reads: f32 parameters less what compactWeights saved (its return
 * value, 0 for f32 weights). With f16 weights and a tied embedding the head reads the f16 copy
 * (counted in saved) and the f32 table gives one row to the lookup, so the table drops out.
 */
export function decodeWeightBytes(cfg: ModelConfig, saved: number, f16: boolean): number {
  const table = f16 && cfg.tieEmbeddings ? cfg.vocabSize * cfg.dModel * 4 : 0;
  return countParams(cfg) * 4 - saved - table;
}

/** Y = X in 16-byte loads and stores, as the f16 gemv reads weights: the rooflines' bandwidth. */
export const COPY_VEC4: Kernel = {
  key: 'bench_copy_vec4',
  bindings: ['read', 'write'],
  code: () => /* wgsl */ `
struct P { n: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> X: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> Y: array<vec4<f32>>;
@compute @workgroup_size(256)
fn main(${BUILTINS}) {
  ${WG_INDEX}
  let i = wg * 256u + li;
  if (i < p.n) { Y[i] = X[i]; }
}`,
};
