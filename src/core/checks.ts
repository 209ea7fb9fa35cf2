// Argument checks shared by every backend: an op called with shapes that do not fit fails with
// the same readable message on the CPU and on WebGPU, and each backend states its checks once.
import { type AttentionArgs, type KvCache, type MatmulOptions, type SampleRowsOptions, type Tensor, expectShape, shapeStr } from './backend.js';

/** matmul's options against x [M, K] and an output of N columns. */
export function checkMatmulOptions(op: string, x: Tensor, N: number, opts: MatmulOptions): void {
  const [M, K] = x.shape;
  if (opts.norm && (opts.norm.g.shape.length !== 1 || opts.norm.g.shape[0] !== K)) {
    throw new Error(`${op}: norm weight has shape ${shapeStr(opts.norm.g.shape)}, expected [${K}]`);
  }
  const r = opts.residual;
  if (r && (r.shape.length !== 2 || r.shape[0] !== M || r.shape[1] !== N)) {
    throw new Error(`${op}: residual has shape ${shapeStr(r.shape)}, expected [${M}, ${N}]`);
  }
}

/** q [B, T, H·hs], k/v [B, T, Hkv·hs], optional dOut like q and a cache [B, C, Hkv·hs]. */
export function checkAttention(op: string, q: Tensor, k: Tensor, v: Tensor, args: AttentionArgs, extra: { dOut?: Tensor; cache?: KvCache | null } = {}): { B: number; T: number } {
  const { nHeads: H, nKvHeads: Hkv, headDim: hs, window } = args;
  const [B, T] = q.shape;
  expectShape(op, 'q', q, [B, T, H * hs]);
  expectShape(op, 'k', k, [B, T, Hkv * hs]);
  expectShape(op, 'v', v, [B, T, Hkv * hs]);
  if (extra.dOut) expectShape(op, 'dOut', extra.dOut, [B, T, H * hs]);
  if (!(Hkv >= 1 && H % Hkv === 0)) throw new Error(`${op}: ${H} query heads do not split into ${Hkv} KV-head groups`);
  if (!(window >= 1)) throw new Error(`${op}: window ${window} must be at least 1`);
  if (args.pos0.length !== B) throw new Error(`${op}: ${args.pos0.length} start positions for a batch of ${B}`);
  const c = extra.cache;
  if (c && c.capacity > 0) {
    expectShape(op, 'cache.k', c.k, [B, c.capacity, Hkv * hs]);
    expectShape(op, 'cache.v', c.v, [B, c.capacity, Hkv * hs]);
  }
  return { B, T };
}

/** x [B, T, C], w [C, K], b [C], optional state [B, C, K-1] and dy like x. */
export function checkConv(op: string, x: Tensor, w: Tensor, b: Tensor, extra: { state?: Tensor | null; dy?: Tensor } = {}): { B: number; T: number; C: number; K: number } {
  const [B, T, C] = x.shape, K = w.shape[1];
  expectShape(op, 'w', w, [C, K]);
  expectShape(op, 'b', b, [C]);
  if (extra.state) expectShape(op, 'state', extra.state, [B, C, K - 1]);
  if (extra.dy) expectShape(op, 'dy', extra.dy, x.shape);
  return { B, T, C, K };
}

/** mambaInput's inputs: u [B·T, d], wIn [2C, d], the conv's weight [C, K], bias [C] and state [B, C, K-1]. */
export function checkMambaInput(
  op: string, u: Tensor, wIn: Tensor, convW: Tensor, convB: Tensor, convState: Tensor | null, B: number, T: number,
): { C: number; K: number; d: number } {
  if (!Number.isInteger(B) || !Number.isInteger(T) || B < 1 || T < 1) throw new Error(`${op}: batch ${B} × ${T} is not positive integers`);
  if (convW.shape.length !== 2) throw new Error(`${op}: convW has shape [${convW.shape.join(', ')}], expected [C, K]`);
  const [C, K] = convW.shape, d = u.shape[1];
  expectShape(op, 'u', u, [B * T, d]);
  expectShape(op, 'wIn', wIn, [2 * C, d]);
  expectShape(op, 'convB', convB, [C]);
  if (convState) expectShape(op, 'convState', convState, [B, C, K - 1]);
  return { C, K, d };
}

/** selectiveScanProjected's inputs: the scan's, with dbc [B·T, R + 2N] and dtWeight [C, R] for dt, B and C. */
export function checkProjectedScan(
  op: string, u: Tensor, dbc: Tensor, dtWeight: Tensor, dtBias: Tensor, aLog: Tensor, d: Tensor, z: Tensor, h0: Tensor | null,
): { B: number; T: number; C: number; N: number; R: number } {
  const [B, T, C] = u.shape, N = aLog.shape[1], R = dtWeight.shape[1];
  expectShape(op, 'z', z, [B, T, C]);
  expectShape(op, 'dtWeight', dtWeight, [C, R]);
  expectShape(op, 'dbc', dbc, [B * T, R + 2 * N]);
  checkScanParams(op, C, N, aLog, dtBias, d, h0 && { h0, B });
  return { B, T, C, N, R };
}

/** The per-channel parameters both scans take: aLog [C, N], dtBias and D [C], optional h0 [B, C, N]. */
function checkScanParams(op: string, C: number, N: number, aLog: Tensor, dtBias: Tensor, d: Tensor, state: { h0: Tensor; B: number } | null): void {
  expectShape(op, 'aLog', aLog, [C, N]);
  expectShape(op, 'dtBias', dtBias, [C]);
  expectShape(op, 'D', d, [C]);
  if (state) expectShape(op, 'h0', state.h0, [state.B, C, N]);
}

/** The selective scan's inputs (see Backend.selectiveScan), optional h0 [B, C, N] and dy like u. */
export function checkScan(
  op: string, u: Tensor, dt: Tensor, dtBias: Tensor, aLog: Tensor, bm: Tensor, cm: Tensor, d: Tensor, z: Tensor,
  extra: { h0?: Tensor | null; dy?: Tensor } = {},
): { B: number; T: number; C: number; N: number } {
  const [B, T, C] = u.shape, N = aLog.shape[1];
  const perChannel: [string, Tensor][] = [['dt', dt], ['z', z]];
  if (extra.dy) perChannel.push(['dy', extra.dy]);
  for (const [name, t] of perChannel) expectShape(op, name, t, [B, T, C]);
  for (const [name, t] of [['B', bm], ['C', cm]] as const) expectShape(op, name, t, [B, T, N]);
  checkScanParams(op, C, N, aLog, dtBias, d, extra.h0 ? { h0: extra.h0, B } : null);
  return { B, T, C, N };
}

/** logits [B, V] with V < 2^24 (ids come back as exact floats); uniforms and penalty lists per row. */
export function checkSampleRows(logits: Tensor, o: SampleRowsOptions): { B: number; V: number } {
  if (logits.shape.length !== 2) throw new Error(`sampleRows: logits have shape [${logits.shape.join(', ')}], expected [B, V]`);
  const [B, V] = logits.shape;
  if (V >= 2 ** 24) throw new Error(`sampleRows: a vocabulary of ${V} ids does not fit exact f32 ids (< 2^24)`);
  if (!(o.temperature >= 0 && Number.isFinite(o.temperature))) throw new Error(`sampleRows: temperature must be ≥ 0, got ${o.temperature}`);
  if (o.temperature > 0) {
    if (!o.uniforms || o.uniforms.length !== B) throw new Error(`sampleRows: temperature ${o.temperature} needs one uniform per row (${B}), got ${o.uniforms?.length ?? 'none'}`);
    for (const u of o.uniforms) if (!(u >= 0 && u < 1)) throw new Error(`sampleRows: uniforms must lie in [0, 1), got ${u}`);
  }
  if (o.penalty) {
    const { factor, ids } = o.penalty;
    if (!(factor > 0 && Number.isFinite(factor))) throw new Error(`sampleRows: the repetition penalty must be > 0, got ${factor}`);
    if (ids.length !== B) throw new Error(`sampleRows: penalty ids for ${ids.length} rows, the logits have ${B}`);
    for (const row of ids) {
      const seen = new Set<number>();
      for (const id of row) {
        if (!(id >= 0 && id < V)) throw new Error(`sampleRows: penalised id ${id} outside the vocabulary [0, ${V})`);
        if (seen.has(id)) throw new Error(`sampleRows: penalised id ${id} listed twice in one row`);
        seen.add(id);
      }
    }
  }
  return { B, V };
}

/** cache k/v [B, C, F] of one dtype, new k/v [B, T, F], pos0 [B] of non-negative positions. */
export function checkWriteKv(cache: KvCache, k: Tensor, v: Tensor, pos0: Int32Array): { B: number; T: number; C: number; F: number } {
  const [B, C, F] = cache.k.shape, T = k.shape[1];
  expectShape('writeKv', 'cache.v', cache.v, [B, C, F]);
  if (cache.k.dtype !== cache.v.dtype) throw new Error(`writeKv: the cache's keys are ${cache.k.dtype} and its values ${cache.v.dtype}`);
  expectShape('writeKv', 'new keys', k, [B, T, F]);
  expectShape('writeKv', 'new values', v, [B, T, F]);
  if (pos0.length !== B) throw new Error(`writeKv: ${pos0.length} start positions for a batch of ${B}`);
  for (const p of pos0) if (!(Number.isInteger(p) && p >= 0)) throw new Error(`writeKv: negative position ${p}`);
  if (cache.k.dtype === 'f16' && F % 2) throw new Error(`writeKv: an f16 cache needs an even row width, got ${F}`);
  return { B, T, C, F };
}
