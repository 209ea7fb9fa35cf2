// The attention backward of flash-backward.ts on tensor cores (mixed precision): the same two
// kernels, their four products as subgroup-matrix multiply-adds on f16 copies of q, k, v and dO,
// accumulated in f32; L and δ as before (kept by the forward, or recomputed).
//
// A workgroup is SGS subgroups; subgroup sg owns s.M "rows" (queries of one head for dq, keys of
// one KV head for dk/dv) and walks the tiles of BC "columns" (keys; or queries of one head of the
// group, head by head) that its workgroup's rows see. Per tile, for its [s.M, BC] slice:
//   S = rows·colsᵀ (q·kᵀ, or k·qᵀ) into workgroup memory → p = exp(S/√hs − L), masked, kept per lane;
//   dP = (dO or v rows)·(v or dO cols)ᵀ into the same memory → dS = p (dP − δ)/√hs, as f16;
//   dq += dS·K (rows: queries), or dv += P·dO and dk += dS·Q (rows: keys), in result matrices
//   that live across the tiles (no online rescaling: L is final).
// Matrices load straight from the packed f16 copies in global memory (each 16-row block at one
// row stride: a head's consecutive positions), where rows past T read finite values that masked
// zeros multiply; only the elementwise step and the final stores go through workgroup memory.
import { type GpuContext, type Kernel, Params, kernelCache } from './context.js';
import type { AttentionGradDims } from './grad-attention.js';
import { type SubgroupMatrixShape, SGM_PREAMBLE, bindF16, matrixTypes, packF16 } from './matmul-f16.js';
import { type GpuTensor, bind } from './tensor.js';
import { BUILTINS, WG_INDEX, lines } from './wgsl.js';

type Shape = SubgroupMatrixShape & { subgroupSize: number };

/** Subgroups per workgroup, and columns per tile. */
const SGS = 4;
const BC = 64;

/** Workgroup memory of the dk/dv kernel (the larger): S or dP (f32), P and dS (f16), L and δ. */
function tcBytes(s: Shape): number {
  return SGS * s.M * BC * (4 + 2 + 2) + 2 * 4 * Math.max(BC, SGS * s.M);
}

/** Whether the tensor-core backward takes head size hs on this shape and device. */
export function tcBackwardFits(s: Shape, hs: number, maxWorkgroupBytes: number): boolean {
  return hs > 0 && hs <= 256 && hs % s.K === 0 && hs % s.N === 0 && BC % s.N === 0 && BC % s.K === 0
    && (s.M * BC) % s.subgroupSize === 0 && tcBytes(s) <= maxWorkgroupBytes;
}

function tcKernel(s: Shape, hs: number, dq: boolean): Kernel {
  const SG = s.subgroupSize, RW = SGS * s.M, NT = BC / s.N, ET = hs / s.N, PER = (s.M * BC) / SG;
  const { L, R, C } = matrixTypes(s);
  // rows' operands (A1 with the columns' B1 for S, A2 with B2 for dP) and their row strides
  const [A1, A2, B1, B2] = dq ? ['QH', 'DOH', 'KH', 'VH'] : ['KH', 'VH', 'QH', 'DOH'];
  const [RS, CS] = dq ? ['p.QS', 'p.KS'] : ['p.KS', 'p.QS'];
  const accs = dq ? ['dq'] : ['dv', 'dk'];
  /** rows·colsᵀ over hs into this subgroup's slice of SF: [s.M, BC] */
  const product = (A: string, B: string) => /* wgsl */ `{
      ${lines(NT, (n) => `var s${n} = ${C}();`, '\n      ')}
      for (var kk = 0u; kk < ${hs}u; kk += ${s.K}u) {
        let a = subgroupMatrixLoad<${L}, row_major>(&${A}, aOff + kk, ${RS});
        ${lines(NT, (n) => `s${n} = subgroupMatrixMultiplyAccumulate(a, subgroupMatrixLoad<${R}, col_major>(&${B}, bOff + ${n * s.N}u * ${CS} + kk, ${CS}), s${n});`, '\n        ')}
      }
      ${lines(NT, (n) => `subgroupMatrixStore<row_major>(&SF, slice + ${n * s.N}u, s${n}, ${BC}u);`, '\n      ')}
    }`;
  /** acc += (this slice of P, an f16 [s.M, BC] array) · cols [BC, hs] of B */
  const accumulate = (acc: string, P: string, B: string) => /* wgsl */ `
    for (var kc = 0u; kc < ${BC}u; kc += ${s.K}u) {
      let a = subgroupMatrixLoad<${L}, row_major>(&${P}, slice + kc, ${BC}u);
      ${lines(ET, (e) => `${acc}${e} = subgroupMatrixMultiplyAccumulate(a, subgroupMatrixLoad<${R}, row_major>(&${B}, bOff + kc * ${CS} + ${e * s.N}u, ${CS}), ${acc}${e});`, '\n      ')}
    }`;
  // the lane's elements of the slice: e = lane + SG·x, at row e / BC and column e % BC
  const elementwise = (body: string) => /* wgsl */ `
    for (var x = 0u; x < ${PER}u; x++) {
      let e = lane + x * ${SG}u;
      let r = sg * ${s.M}u + e / ${BC}u;
      let c = e % ${BC}u;
      ${body}
    }`;
  // row r's (dq: query) or column c's (dk/dv: query) position t, key position j; visible: j ≤ t < j + window
  const visible = dq ? 'let t = i32(t0 + r); let j = kt0 + i32(c);' : 'let t = i32(tq0 + c); let j = i32(j0 + r);';
  const stats = dq ? 'r' : 'c';
  /** Writes accumulator acc·e to OUT [B·T, heads·hs] at the rows' positions, through SF */
  const store = (acc: string, OUT: string, stride: string, pos0: string, head: string) => lines(ET, (e) => /* wgsl */ `
  subgroupMatrixStore<row_major>(&SF, slice, ${acc}${e}, ${s.N}u);
  workgroupBarrier();
  for (var x = lane; x < ${s.M * s.N}u; x += ${SG}u) {
    let t = ${pos0} + sg * ${s.M}u + x / ${s.N}u;
    if (t < p.T) { ${OUT}[(b * p.T + t) * ${stride} + ${head} * ${hs}u + ${e * s.N}u + x % ${s.N}u] = SF[slice + x]; }
  }
  workgroupBarrier();`);
  return {
    key: `flash_bwd_tc_${dq ? 'dq' : 'dkv'}_${s.M}x${s.N}x${s.K}_${SG}_${hs}`,
    bindings: ['read', 'read', 'read', 'read', 'read', 'write', ...(dq ? [] : ['write' as const])],
    code: () => /* wgsl */ `${SGM_PREAMBLE}
struct P { T: u32, H: u32, Hkv: u32, group: u32, window: i32, nTiles: u32, total: u32, QS: u32, KS: u32, scale: f32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> QH: array<f16>;
@group(0) @binding(2) var<storage, read> KH: array<f16>;
@group(0) @binding(3) var<storage, read> VH: array<f16>;
@group(0) @binding(4) var<storage, read> DOH: array<f16>;
@group(0) @binding(5) var<storage, read> LD: array<f32>;
${dq ? '@group(0) @binding(6) var<storage, read_write> DQ: array<f32>;' : '@group(0) @binding(6) var<storage, read_write> DK: array<f32>;\n@group(0) @binding(7) var<storage, read_write> DV: array<f32>;'}
var<workgroup> SF: array<f32, ${SGS * s.M * BC}>;
var<workgroup> SDS: array<f16, ${SGS * s.M * BC}>;
${dq ? '' : `var<workgroup> SP: array<f16, ${SGS * s.M * BC}>;`}
// L and δ of the ${dq ? 'rows' : "current tile's columns"} (0 past T)
var<workgroup> RL: array<f32, ${dq ? RW : BC}>;
var<workgroup> RD: array<f32, ${dq ? RW : BC}>;

@compute @workgroup_size(${SGS * SG})
fn main(${BUILTINS}) {
  ${WG_INDEX}
  if (wg >= p.total) { return; }
  // subgroups are consecutive runs of local_invocation_index (checked by checkSubgroupMatrix)
  let sg = li / ${SG}u;
  let lane = li % ${SG}u;
  let slice = sg * ${s.M * BC}u;
  ${accs.map((a) => lines(ET, (e) => `var ${a}${e} = ${C}();`, ' ')).join('\n  ')}
  var pv: array<f32, ${PER}>;
${dq ? /* wgsl */ `  let tile = p.nTiles - 1u - wg % p.nTiles; // the longest rows first
  let bh = wg / p.nTiles;
  let h = bh % p.H;
  let b = bh / p.H;
  let kvh = h / p.group;
  let t0 = tile * ${RW}u;
  let tLast = min(t0 + ${RW}u, p.T) - 1u;
  if (li < ${RW}u) {
    var l = 0.0;
    var d = 0.0;
    if (t0 + li < p.T) { let row = (b * p.T + t0 + li) * p.H + h; l = LD[2u * row]; d = LD[2u * row + 1u]; }
    RL[li] = l;
    RD[li] = d;
  }
  let aOff = (b * p.T + t0 + sg * ${s.M}u) * p.QS + h * ${hs}u;
  // key tiles from the first key the first row sees, rounded down to a whole block
  let jStart = max(0, i32(t0) - p.window + 1) & ~${s.N - 1};
  for (var kt0 = jStart; kt0 <= i32(tLast); kt0 += ${BC}) {
    let bOff = (b * p.T + u32(kt0)) * p.KS + kvh * ${hs}u;` : /* wgsl */ `  let tile = wg % p.nTiles; // the earliest keys are seen by the most queries under full attention
  let bh = wg / p.nTiles;
  let kvh = bh % p.Hkv;
  let b = bh / p.Hkv;
  let j0 = tile * ${RW}u;
  let jLast = min(j0 + ${RW}u, p.T) - 1u;
  let tEnd = u32(min(i32(p.T) - 1, i32(jLast) + p.window - 1));
  let aOff = (b * p.T + j0 + sg * ${s.M}u) * p.KS + kvh * ${hs}u;
  for (var g = 0u; g < p.group; g++) {
    let h = kvh * p.group + g;
    for (var tq0 = j0; tq0 <= tEnd; tq0 += ${BC}u) {
    workgroupBarrier(); // RL and RD's last readers are done
    if (li < ${BC}u) {
      var l = 0.0;
      var d = 0.0;
      if (tq0 + li < p.T) { let row = (b * p.T + tq0 + li) * p.H + h; l = LD[2u * row]; d = LD[2u * row + 1u]; }
      RL[li] = l;
      RD[li] = d;
    }
    let bOff = (b * p.T + tq0) * p.QS + h * ${hs}u;`}
    ${product(A1, B1)}
    workgroupBarrier();
    ${elementwise(/* wgsl */ `${visible}
      var pr = 0.0;
      if (t < i32(p.T) && j <= t && t - j < p.window) { pr = exp(SF[slice + e] * p.scale - RL[${stats}]); }
      pv[x] = pr;${dq ? '' : '\n      SP[slice + e] = f16(pr);'}`)}
    workgroupBarrier();
    ${product(A2, B2)}
    workgroupBarrier();
    ${elementwise(`SDS[slice + e] = f16(pv[x] * (SF[slice + e] - RD[${stats}]) * p.scale);`)}
    workgroupBarrier();
    ${dq ? accumulate('dq', 'SDS', 'KH') : `${accumulate('dv', 'SP', 'DOH')}
    ${accumulate('dk', 'SDS', 'QH')}`}
  }${dq ? '' : '\n  }'}
  workgroupBarrier();
  ${dq ? store('dq', 'DQ', 'p.QS', 't0', 'h') : `${store('dk', 'DK', 'p.KS', 'j0', 'kvh')}\n${store('dv', 'DV', 'p.KS', 'j0', 'kvh')}`}
}`,
  };
}

const cached = kernelCache();

/**
 * dq, dk, dv of windowed attention on tensor cores, from L and δ per query row in ld [B·T·H, 2]
 * (tcBackwardFits must hold). q, k, v and dO are packed to f16 here and released after.
 */
export function flashBackwardTensorCores(
  ctx: GpuContext, dq: GpuTensor, dk: GpuTensor, dv: GpuTensor,
  q: GpuTensor, k: GpuTensor, v: GpuTensor, dO: GpuTensor, ld: GpuTensor, d: AttentionGradDims, s: Shape,
): void {
  const rows = d.B * d.T, QS = d.H * d.hs, KS = d.Hkv * d.hs;
  const [qh, kh, vh, doh] = [[q, QS], [k, KS], [v, KS], [dO, QS]].map(([x, w]) => packF16(ctx, x as GpuTensor, rows, w as number));
  if (qh.colsP !== QS || kh.colsP !== KS) throw new Error('flashBackwardTensorCores: head size must be a multiple of 16');
  const window = Math.min(d.window, 2 ** 30), tiles = Math.ceil(d.T / (SGS * s.M));
  const params = (heads: number) => new Params().u32(d.T, d.H, d.Hkv, d.H / d.Hkv).i32(window)
    .u32(tiles, d.B * heads * tiles, QS, KS).f32(1 / Math.sqrt(d.hs));
  const ins = [bindF16(qh), bindF16(kh), bindF16(vh), bindF16(doh), bind(ld)];
  const key = `${s.M}x${s.N}x${s.K}_${s.subgroupSize}_${d.hs}`;
  ctx.dispatch(cached(`dq${key}`, () => tcKernel(s, d.hs, true)), params(d.H), [...ins, bind(dq)], d.B * d.H * tiles);
  ctx.dispatch(cached(`dkv${key}`, () => tcKernel(s, d.hs, false)), params(d.Hkv), [...ins, bind(dk), bind(dv)], d.B * d.Hkv * tiles);
  for (const m of [qh, kh, vh, doh]) ctx.release(m.buf);
}
