// Command-line values the benchmarks share.
import type { GemvLayout } from '../src/backends/webgpu/matmul-f16.js';

/** An `on|off` option's value as a boolean; anything else is refused, naming the option. */
export function onOff(name: string, value: string | undefined): boolean {
  if (value !== 'on' && value !== 'off') throw new Error(`--${name} must be on or off, got ${value}`);
  return value === 'on';
}

/**
 * A one-row gemv shape written WG×U[×GROUP×COLS][t] (matmul-f16.ts GemvLayout: workgroup,
 * unroll, invocations per column group, columns per group; t: summed by trees, not subgroupAdd).
 */
export function gemvShapeArg(v: string): { shape: GemvLayout; tree: boolean } {
  const tree = v.endsWith('t'), n = v.replace(/t$/, '').split('x').map(Number);
  if (n.length < 2 || n.length > 4 || n.some((x) => !Number.isInteger(x) || x < 1)) throw new Error(`a gemv shape is WGxU[xGROUPxCOLS][t], got ${v}`);
  const [wg, unroll, group = wg, cols = 8] = n;
  return { shape: { wg, unroll, group, cols }, tree };
}
