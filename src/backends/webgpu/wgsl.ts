// WGSL snippets shared by the kernels.

/** Entry-point builtins every kernel takes; `lin` (below) folds a 2D grid back into one index. */
export const BUILTINS = /* wgsl */ `
  @builtin(workgroup_id) wid: vec3<u32>,
  @builtin(num_workgroups) nwg: vec3<u32>,
  @builtin(local_invocation_index) li: u32`;

/** Index of this workgroup in the linear numbering of GpuContext.dispatch. */
export const WG_INDEX = /* wgsl */ `let wg = wid.x + wid.y * nwg.x;`;

/**
 * Math that must agree with the CPU reference without relying on IEEE infinities (WGSL lets
 * implementations assume there are none), so each function stays in range by construction.
 */
export const MATH = /* wgsl */ `
fn sigmoid(x: f32) -> f32 {
  // exp of a non-positive number only: no overflow for large |x|
  let e = exp(-abs(x));
  return select(e / (1.0 + e), 1.0 / (1.0 + e), x >= 0.0);
}
fn silu(x: f32) -> f32 { return x * sigmoid(x); }
fn log1p_(x: f32) -> f32 {
  // log(1 + x) loses every digit of a tiny x; the series keeps them
  if (x < 1e-3) { return x * (1.0 - x * (0.5 - x / 3.0)); }
  return log(1.0 + x);
}
/** The references' softplus: the identity above 20. */
fn softplus(x: f32) -> f32 {
  if (x > 20.0) { return x; }
  return log1p_(exp(x));
}
`;

/** n generated lines f(0) … f(n − 1), joined by sep (a newline; or e.g. a newline and an indent, a space): unrolled WGSL. */
export const lines = (n: number, f: (i: number) => string, sep = '\n'): string => Array.from({ length: n }, (_, i) => f(i)).join(sep);

/**
 * WGSL that stores `value` at arr[li] and reduces arr over a workgroup of `size` invocations (a
 * power of two) with max or +, leaving the result in arr[0]; it ends after a barrier.
 */
export const workgroupReduce = (arr: string, size: number, value: string, op: 'max' | '+'): string => `${arr}[li] = ${value};
  ${workgroupReduceRows(arr, size, 1, op)}`;

/**
 * WGSL that reduces `rows` runs of `size` values side by side (run m at arr[m · size …], already
 * stored by the invocations) with max or +, leaving run m's result in arr[m · size]; it starts and
 * ends with a barrier. One tree for all runs: log2(size) barriers, however many rows.
 */
export function workgroupReduceRows(arr: string, size: number, rows: number, op: 'max' | '+'): string {
  const at = (o: string) => (rows === 1 ? `${arr}[li${o}]` : `${arr}[m * ${size}u + li${o}]`);
  const step = op === 'max' ? `${at('')} = max(${at('')}, ${at(' + w')});` : `${at('')} += ${at(' + w')};`;
  return `workgroupBarrier();
  for (var w = ${size / 2}u; w > 0u; w >>= 1u) {
    if (li < w) { ${rows === 1 ? step : `for (var m = 0u; m < ${rows}u; m++) { ${step} }`} }
    workgroupBarrier();
  }`;
}

/** A large negative stand-in for -inf (a running max that no real score is below). */
export const NEG_BIG = '-3.0e38';

/**
 * Bindings 5 and 6, the cache's keys and values, and their readers kc(i) and vc(i) (i counts
 * values, or with vec4 keys groups of four), and with vec4 keys vc4(i), values by groups of four.
 * An f16 cache holds two halves per 32-bit word.
 * `access` read_write: the kernel also writes the cache (attention storing the new keys).
 */
export function cacheReaders(kvF16: boolean, v4: boolean, access: 'read' | 'read_write' = 'read'): string {
  if (!kvF16) {
    const kt = v4 ? 'vec4<f32>' : 'f32';
    return `@group(0) @binding(5) var<storage, ${access}> KC: array<${kt}>;
@group(0) @binding(6) var<storage, ${access}> VC: array<f32>;
fn kc(i: u32) -> ${kt} { return KC[i]; }
fn vc(i: u32) -> f32 { return VC[i]; }${v4 ? `
fn vc4(i: u32) -> vec4<f32> { return vec4<f32>(VC[4u * i], VC[4u * i + 1u], VC[4u * i + 2u], VC[4u * i + 3u]); }` : ''}`;
  }
  // half(w, i): half i % 2 of word w, shifted down and unpacked (indexing the unpacked pair by a
  // runtime i instead can send it through memory)
  return `@group(0) @binding(5) var<storage, ${access}> KC: array<${v4 ? 'vec2<u32>' : 'u32'}>;
fn half(w: u32, i: u32) -> f32 { return unpack2x16float(w >> ((i & 1u) << 4u)).x; }
@group(0) @binding(6) var<storage, ${access}> VC: array<u32>;
${v4 ? `fn kc(i: u32) -> vec4<f32> { let w = KC[i]; return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y)); }`
    : 'fn kc(i: u32) -> f32 { return half(KC[i >> 1u], i); }'}
fn vc(i: u32) -> f32 { return half(VC[i >> 1u], i); }${v4 ? `
fn vc4(i: u32) -> vec4<f32> { return vec4<f32>(unpack2x16float(VC[2u * i]), unpack2x16float(VC[2u * i + 1u])); }` : ''}`;
}

/**
 * The fused ends of a gemv (Backend.matmul's options): rmsNorm's scale of each of `rows` rows of X
 * into the workgroup array rowScale, from a first pass over x (which then stays in cache for the
 * products). Sums of squares are split over the `wg` invocations and tree-reduced in `part` (at
 * least rows · wg floats); the scale is the rmsNorm kernel's 1 / sqrt(mean(x²) + eps). `row(m)` is
 * the index of row m of x; `vec`: X holds vec4s (K % 4 == 0). Needs p.K and p.eps, and this
 * module-scope array:
 */
export const rowScaleVar = (rows: number): string => `var<workgroup> rowScale: array<f32, ${Math.max(rows, 1)}>;`;

/** The pass itself (see rowScaleVar for the array it fills). */
export function rowScalePass(rows: number, wg: number, vec: boolean, row: (m: number) => string, subgroup = 0): string {
  const n = vec ? 'p.K / 4u' : 'p.K';
  const squares = `${lines(rows, (m) => `var ss${m} = 0.0;`)}
    for (var i = li; i < ${n}; i += ${wg}u) {
      ${lines(rows, (m) => `{ let v = X[(${row(m)}) * ${n} + i]; ss${m} += ${vec ? 'dot(v, v)' : 'v * v'}; }`)}
    }`;
  if (subgroup > 0 && wg % subgroup === 0) {
    // each subgroup's sums by subgroupAdd, then the wg / subgroup of them in order: one barrier
    const ns = wg / subgroup;
    return `{
    ${squares}
    ${lines(rows, (m) => `let t${m} = subgroupAdd(ss${m});`)}
    if (li % ${subgroup}u == 0u) { ${lines(rows, (m) => `part[${m * ns}u + li / ${subgroup}u] = t${m};`, ' ')} }
    workgroupBarrier();
    if (li < ${rows}u) {
      var s = 0.0;
      for (var j = 0u; j < ${ns}u; j++) { s += part[li * ${ns}u + j]; }
      rowScale[li] = 1.0 / sqrt(s / f32(p.K) + p.eps);
    }
    workgroupBarrier();
  }`;
  }
  return `{
    ${squares}
    ${lines(rows, (m) => `part[${m * wg}u + li] = ss${m};`)}
    ${workgroupReduceRows('part', wg, rows, '+')}
    if (li < ${rows}u) { rowScale[li] = 1.0 / sqrt(part[li * ${wg}u] / f32(p.K) + p.eps); }
    workgroupBarrier();
  }`;
}
