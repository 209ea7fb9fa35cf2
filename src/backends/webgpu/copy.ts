// Data movement: embedding lookup, column slices, row gathers, cache resizes and the in-place
// KV-cache write. One invocation per output value; the source index is computed, never searched.
import { type GpuContext, type Kernel, Params } from './context.js';
import { type GpuTensor, bind } from './tensor.js';
import { BUILTINS, WG_INDEX } from './wgsl.js';
import { F16_MAX } from '../../io/half.js';

const WG = 256;

/**
 * A one-value-per-invocation kernel: `body` maps output index i (< p.n) to its value. Sources named
 * IDS are int tensors, ROWS host ints; the rest float tensors.
 */
function gatherKernel(key: string, fields: string, srcs: string[], body: string, word = 'f32'): Kernel {
  const decl = srcs.map((s, i) => `@group(0) @binding(${i + 1}) var<storage, read> ${s}: array<${s === 'IDS' || s === 'ROWS' ? 'i32' : word}>;`).join('\n');
  return {
    key,
    bindings: [...srcs.map((s) => (s === 'ROWS' ? 'ints' as const : 'read' as const)), 'write'],
    code: () => /* wgsl */ `
struct P { n: u32, ${fields} }
@group(0) @binding(0) var<uniform> p: P;
${decl}
@group(0) @binding(${srcs.length + 1}) var<storage, read_write> Y: array<${word}>;
@compute @workgroup_size(${WG})
fn main(${BUILTINS}) {
  ${WG_INDEX}
  let i = wg * ${WG}u + li;
  if (i >= p.n) { return; }
  ${body}
}`,
  };
}

function run(ctx: GpuContext, k: Kernel, n: number, params: Params, srcs: (GpuTensor | Int32Array)[], out: GpuTensor): void {
  if (n === 0) return;
  ctx.dispatch(k, params, [...srcs.map((s) => (s instanceof Int32Array ? s : bind(s))), bind(out)], Math.ceil(n / WG));
}

// Ids outside [0, V) read as zeros rather than out of bounds (the backend rejects them before,
// when it knows the ids on the host).
// With f32 ids, the ids are exact integers held as floats (sampleRows's output, still on the device).
const embeddingKernel = (f32Ids: boolean) => gatherKernel(f32Ids ? 'embedding_f32_ids' : 'embedding', 'D: u32, V: u32', ['TABLE', f32Ids ? 'FIDS' : 'IDS'], `
  let row = i / p.D;
  let id = ${f32Ids ? 'i32(FIDS[row])' : 'IDS[row]'};
  var v = 0.0;
  if (id >= 0 && u32(id) < p.V) { v = TABLE[u32(id) * p.D + i % p.D]; }
  Y[i] = v;`);
const EMBEDDING = embeddingKernel(false), EMBEDDING_F32_IDS = embeddingKernel(true);

export function embedding(ctx: GpuContext, out: GpuTensor, table: GpuTensor, ids: GpuTensor, V: number, D: number): void {
  run(ctx, ids.dtype === 'f32' ? EMBEDDING_F32_IDS : EMBEDDING, out.size, new Params().u32(out.size, D, V), [table, ids], out);
}

const SLICE_COLS = gatherKernel('slice_cols', 'N: u32, start: u32, width: u32', ['X'], `
  Y[i] = X[(i / p.width) * p.N + p.start + i % p.width];`);

export function sliceCols(ctx: GpuContext, out: GpuTensor, x: GpuTensor, N: number, start: number, width: number): void {
  run(ctx, SLICE_COLS, out.size, new Params().u32(out.size, N, start, width), [x], out);
}

const GATHER_ROWS = gatherKernel('gather_rows', 'N: u32', ['X', 'ROWS'], `
  Y[i] = X[u32(ROWS[i / p.N]) * p.N + i % p.N];`);

/** rows must already be checked to lie in [0, M). */
export function gatherRows(ctx: GpuContext, out: GpuTensor, x: GpuTensor, rows: Int32Array, N: number): void {
  run(ctx, GATHER_ROWS, out.size, new Params().u32(out.size, N), [x, rows], out);
}

const RESIZE_ROWS = gatherKernel('resize_rows', 'C: u32, newC: u32, F: u32', ['X'], `
  let f = i % p.F;
  let c = (i / p.F) % p.newC;
  let b = i / (p.F * p.newC);
  var v = 0.0;
  if (c < p.C) { v = X[(b * p.C + c) * p.F + f]; }
  Y[i] = v;`);

// f16 caches move as 32-bit words of two halves, copied as bits (a float copy could flush the
// subnormal pattern a pair of small halves makes)
const RESIZE_ROWS_WORDS = gatherKernel('resize_rows_u32', 'C: u32, newC: u32, F: u32', ['X'], `
  let f = i % p.F;
  let c = (i / p.F) % p.newC;
  let b = i / (p.F * p.newC);
  var v = 0u;
  if (c < p.C) { v = X[(b * p.C + c) * p.F + f]; }
  Y[i] = v;`, 'u32');

/** F counts values; an f16 tensor (F even) moves F / 2 words per row. */
export function resizeRows(ctx: GpuContext, out: GpuTensor, x: GpuTensor, C: number, newC: number, F: number): void {
  if (x.dtype === 'f16') {
    const n = out.size / 2;
    run(ctx, RESIZE_ROWS_WORDS, n, new Params().u32(n, C, newC, F / 2), [x], out);
    return;
  }
  run(ctx, RESIZE_ROWS, out.size, new Params().u32(out.size, C, newC, F), [x], out);
}

// Scatters the last min(T, C) new rows of each sequence, keys and values together, into their
// ring slots; the slots are distinct, so the writes never race. An f16 cache takes one pair of
// values per invocation, rounded to halves and packed into one word (F is even, so a pair never
// straddles two rows).
function writeKvKernel(f16: boolean): Kernel {
  // halves clamp to ±F16_MAX, the largest finite f16 (packing a larger value is undefined in WGSL)
  const src = f16 ? 'vec2<f32>' : 'f32', dst = f16 ? 'u32' : 'f32';
  const put = (a: string) => (f16 ? `pack2x16float(clamp(${a}, vec2<f32>(-${F16_MAX}.0), vec2<f32>(${F16_MAX}.0)))` : a);
  return {
    key: f16 ? 'write_kv_f16' : 'write_kv',
    bindings: ['ints', 'read', 'read', 'write', 'write'],
    code: () => /* wgsl */ `
struct P { n: u32, T: u32, C: u32, F: u32, t0: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> POS0: array<i32>;
@group(0) @binding(2) var<storage, read> NK: array<${src}>;
@group(0) @binding(3) var<storage, read> NV: array<${src}>;
@group(0) @binding(4) var<storage, read_write> KC: array<${dst}>;
@group(0) @binding(5) var<storage, read_write> VC: array<${dst}>;
@compute @workgroup_size(${WG})
fn main(${BUILTINS}) {
  ${WG_INDEX}
  let i = wg * ${WG}u + li;
  if (i >= p.n) { return; }
  let rows = p.T - p.t0;
  let f = i % p.F;
  let t = p.t0 + (i / p.F) % rows;
  let b = i / (p.F * rows);
  let slot = (u32(POS0[b]) + t) % p.C;
  let src = (b * p.T + t) * p.F + f;
  let dst = (b * p.C + slot) * p.F + f;
  KC[dst] = ${put("NK[src]")};
  VC[dst] = ${put("NV[src]")};
}`,
  };
}
const WRITE_KV = writeKvKernel(false), WRITE_KV_F16 = writeKvKernel(true);

/** F counts values; an f16 cache moves F / 2 words per row. */
export function writeKv(
  ctx: GpuContext, kc: GpuTensor, vc: GpuTensor, k: GpuTensor, v: GpuTensor, pos0: Int32Array, B: number, C: number, T: number, F: number,
): void {
  const f16 = kc.dtype === 'f16', Fw = f16 ? F / 2 : F, t0 = Math.max(0, T - C), n = B * (T - t0) * Fw;
  if (n === 0) return;
  ctx.dispatch(f16 ? WRITE_KV_F16 : WRITE_KV, new Params().u32(n, T, C, Fw, t0), [pos0, bind(k), bind(v), bind(kc), bind(vc)], Math.ceil(n / WG));
}
