// What the benchmarks of a decoded token's recording share: a preset at a small width (the
// dispatches a token records do not depend on the width), and the token's pass calls as recorded.
import { makeConfig, type ModelConfig } from '../src/model/config.js';

/** The preset's depth, layout and window at a small width: runs anywhere, lavapipe included. */
export const smallWidth = (p: ModelConfig): ModelConfig =>
  makeConfig({ ...p, dModel: 64, nHeads: 4, nKvHeads: Math.min(p.nKvHeads, 4), headDim: 16, mlpHidden: 128, vocabSize: 256, mamba: { ...p.mamba, dtRank: 4 } });

export const PASS_CALLS = ['setPipeline', 'setBindGroup', 'dispatchWorkgroups'] as const;
export type PassCall = [name: (typeof PASS_CALLS)[number], args: unknown[]];

/**
 * Runs record() with the compute-pass calls it makes logged (their array arguments copied); null if
 * it also copied or cleared a buffer (then the calls alone do not replay the work).
 */
export function capturePassCalls(device: GPUDevice, record: () => void): PassCall[] | null {
  const probe = device.createCommandEncoder(), probePass = probe.beginComputePass();
  const PASS = Object.getPrototypeOf(probePass) as Record<string, (...a: unknown[]) => unknown>;
  const ENC = Object.getPrototypeOf(probe) as Record<string, (...a: unknown[]) => unknown>;
  probePass.end(); probe.finish();
  const calls: PassCall[] = [], saved = PASS_CALLS.map((n) => PASS[n]), encSaved = ['copyBufferToBuffer', 'clearBuffer'].map((n) => ENC[n]);
  let other = false;
  PASS_CALLS.forEach((n, i) => { PASS[n] = function (this: unknown, ...a: unknown[]) { calls.push([n, a.map((x) => (Array.isArray(x) ? [...x] : x))]); return saved[i].apply(this, a); }; });
  ['copyBufferToBuffer', 'clearBuffer'].forEach((n, i) => { ENC[n] = function (this: unknown, ...a: unknown[]) { other = true; return encSaved[i].apply(this, a); }; });
  try {
    record();
  } finally {
    PASS_CALLS.forEach((n, i) => { PASS[n] = saved[i]; });
    ['copyBufferToBuffer', 'clearBuffer'].forEach((n, i) => { ENC[n] = encSaved[i]; });
  }
  return other ? null : calls;
}
