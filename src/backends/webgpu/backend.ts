// The WebGPU backend: the Backend interface over WGSL kernels (f32 compute). This class checks
// shapes (with the CPU backend's messages), allocates outputs from the pool, and hands the
// recording to the kernel modules; GpuContext batches the commands.
import type { PooledBuffer } from './pool.js';
import {
  type AdamWStep, type AttentionArgs, type AttentionFusion, type Backend, type ConvResult, type DType, type GradOps, type KvCache, type MatmulOptions,
  type MambaInputResult, type NormArg, type SampleRowsOptions, type ScanGrads, type ScanResult, type Tensor, ScopedBackend, attentionComposed, expectShape,
  mambaInputComposed, matmulComposed, selectiveScanProjectedComposed, swigluComposed, numel, shapeStr, tensorBytes,
} from '../../core/backend.js';
import { checkAttention, checkConv, checkMambaInput, checkMatmulOptions, checkProjectedScan, checkSampleRows, checkScan, checkWriteKv } from '../../core/checks.js';
import * as att from './attention.js';
import { type ContextOptions, GpuContext } from './context.js';
import * as cp from './copy.js';
import * as ew from './elementwise.js';
import * as ga from './grad-attention.js';
import * as gmb from './grad-mamba.js';
import * as gmm from './grad-matmul.js';
import * as gm from './grad-misc.js';
import * as gr from './grad-reduce.js';
import * as mb from './mamba.js';
import * as sm from './sample.js';
import { f16ArrayToF32 } from '../../io/half.js';
import { matmul, matmulPackedF16, productFusesEnds } from './matmul.js';
import { F16_GEMV_MAX_ROWS, type F16Caps, type GemvEnds, type TensorCores, checkSubgroupMatrix, detectF16, mambaInputF16Gemv, packF16, swigluF16Gemv, uniformSubgroupSize } from './matmul-f16.js';
import { F16WeightTensor, GpuTensor, Storage, gpu, gpuFloats } from './tensor.js';

export { GpuTensor } from './tensor.js';

export interface WebGpuBackendOptions extends ContextOptions {
  /** Destroy the device in destroy() (true when this backend created it). */
  ownsDevice?: boolean;
  /** When attention splits each query's keys over several workgroups (decoding); tests lower it. */
  attentionSplit?: Partial<att.SplitPolicy>;
  /**
   * 'f32' (default): every kernel computes in f32. 'f16-matmul': matmul rounds its operands to f16
   * and accumulates in f32 (tensors stay f32 in memory), on tensor cores where the device has
   * `chromium-experimental-subgroup-matrix`; needs `shader-f16`.
   */
  precision?: Precision;
  /**
   * Subgroup matrices (tensor cores) for f16 products and the tiled attention. Default: used in
   * 'f16-matmul' precision where the device has them. false: never (the f16 tiled kernel, f32
   * attention). true: also in 'f32' precision, for the products of f16 weights (packed at load)
   * with more rows than decoding has, and for the tiled attention.
   */
  subgroupMatrix?: boolean;
  /** The adapter's info, where device.adapterInfo lacks the subgroup-matrix shapes (Dawn for Node). */
  adapterInfo?: GPUAdapterInfo;
}

export type Precision = 'f32' | 'f16-matmul';

/** Whether these options ask for subgroup matrices (see WebGpuBackendOptions.subgroupMatrix). */
export function wantsSubgroupMatrix(opts: Pick<WebGpuBackendOptions, 'precision' | 'subgroupMatrix'>): boolean {
  return (opts.precision === 'f16-matmul' && opts.subgroupMatrix !== false) || opts.subgroupMatrix === true;
}

/** The size of the buffers gatherWeights fills (at most the device's largest buffer). */
const GATHER_BYTES = 512 << 20;

export class WebGpuBackend extends ScopedBackend implements Backend, GradOps {
  readonly name = 'webgpu' as const;
  readonly ctx: GpuContext;
  /** Optional device features that later fast paths can select on. */
  readonly features: { readonly f16: boolean; readonly subgroups: boolean; readonly subgroupMatrix: boolean };
  readonly precision: Precision;
  /** The f16 paths matmul takes, or null in f32 precision. */
  private readonly f16: F16Caps | null;
  /**
   * The f16 paths the products of packed f16 weights take, whatever the precision: subgroup
   * matrices only where they were asked for (see WebGpuBackendOptions.subgroupMatrix) and, through
   * create(), passed the start-up check.
   */
  readonly f16Caps: F16Caps;
  /** What the device offers, before options and checks (features reports the same). */
  readonly f16Detected: F16Caps;
  private readonly ownsDevice: boolean;
  private readonly split: att.SplitPolicy;
  private destroyed = false;

  constructor(readonly device: GPUDevice, opts: WebGpuBackendOptions = {}) {
    super();
    this.ctx = new GpuContext(device, { ...opts, subgroupSize: uniformSubgroupSize(device, opts.adapterInfo) });
    this.ownsDevice = opts.ownsDevice ?? false;
    this.split = { ...att.DEFAULT_SPLIT, ...opts.attentionSplit };
    const caps = (this.f16Detected = detectF16(device, opts.adapterInfo));
    this.f16Caps = wantsSubgroupMatrix(opts) ? caps : { ...caps, subgroupMatrix: null };
    this.features = { f16: caps.shaderF16, subgroups: device.features.has('subgroups'), subgroupMatrix: caps.subgroupMatrix !== null };
    this.precision = opts.precision ?? 'f32';
    if (this.precision !== 'f32' && this.precision !== 'f16-matmul') throw new Error(`webgpu: unknown precision '${this.precision}'`);
    if (this.precision === 'f16-matmul' && !caps.shaderF16) {
      // fail loudly rather than quietly computing in another precision than asked for
      throw new Error("webgpu: precision 'f16-matmul' needs the shader-f16 feature, which this device lacks (check device.features first)");
    }
    this.f16 = this.precision === 'f16-matmul'
      ? { ...caps, subgroupMatrix: opts.subgroupMatrix === false ? null : caps.subgroupMatrix }
      : null;
  }

  /**
   * The backend, after checking in f16-matmul precision that the experimental subgroup-matrix
   * kernel compiles and computes exactly on this device (else the f16 tiled kernel is used, and
   * `subgroupMatrixProblem` says why). The plain constructor trusts the feature instead.
   */
  static async create(device: GPUDevice, opts: WebGpuBackendOptions = {}): Promise<WebGpuBackend> {
    let problem: string | null = null;
    if (wantsSubgroupMatrix(opts) && detectF16(device, opts.adapterInfo).subgroupMatrix) {
      problem = await checkSubgroupMatrix(device, opts.adapterInfo);
    }
    const be = new WebGpuBackend(device, problem ? { ...opts, subgroupMatrix: false } : opts);
    be.subgroupMatrixProblem = problem;
    return be;
  }

  /** Why the subgroup-matrix path was turned off by create()'s check, if it was. */
  subgroupMatrixProblem: string | null = null;

  /** Which kernel family matmul uses for more than a few rows: 'f32', 'f16-tiled' or 'f16-subgroup-matrix'. */
  get matmulPath(): 'f32' | 'f16-tiled' | 'f16-subgroup-matrix' {
    return !this.f16 ? 'f32' : this.f16.subgroupMatrix ? 'f16-subgroup-matrix' : 'f16-tiled';
  }

  /**
   * The subgroup-matrix shape for the tiled attention (forwards, with a cache or without, and the
   * backward: q, k and v as halves) where tensor cores were asked for (subgroupMatrix), as the
   * products' f16 paths use it; null: the f32 units.
   */
  private get attentionTensorCores(): TensorCores {
    return this.f16Caps.subgroupMatrix;
  }

  /** Frees every pooled buffer (and the device, if this backend owns it). Tensors become invalid. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.ctx.destroy();
    if (this.ownsDevice) this.device.destroy();
  }

  private alive(): void {
    if (this.destroyed) throw new Error('webgpu: the backend was destroyed');
  }

  // ---- data ----

  private make(shape: readonly number[], dtype: DType = 'f32', hostInts?: Int32Array): GpuTensor {
    this.alive();
    const buf = this.ctx.alloc(tensorBytes(numel(shape), dtype), () => `tensor ${shapeStr(shape)}`);
    return this.track(new GpuTensor(shape, dtype, new Storage(buf), hostInts));
  }

  tensor(data: Float32Array, shape: readonly number[]): Tensor {
    checkLength(data, shape);
    const t = this.make(shape);
    this.ctx.upload(t.buf!, data);
    return t;
  }

  ids(data: Int32Array, shape: readonly number[]): Tensor {
    checkLength(data, shape);
    const t = this.make(shape, 'i32', Int32Array.from(data));
    this.ctx.upload(t.buf!, data);
    return t;
  }

  zeros(shape: readonly number[], dtype: 'f32' | 'f16' = 'f32'): Tensor {
    const t = this.make(shape, dtype);
    this.ctx.clear(t.buf!, 0, t.bytes);
    return t;
  }

  /** The tensor's values; an int32 tensor reads as the same integers in a Float32Array. */
  async read(t: Tensor): Promise<Float32Array> {
    this.alive();
    const g = gpu(t, 'read', t.dtype === 'f16w' ? 'f32' : t.dtype); // an f16 weight cannot be read back: gpu() says so
    const bytes = await this.ctx.readBytes(g.buf!, g.bytes, g.offset);
    if (g.dtype === 'f16') return f16ArrayToF32(new Uint16Array(bytes, 0, g.size));
    return g.dtype === 'f32' ? new Float32Array(bytes) : Float32Array.from(new Int32Array(bytes));
  }

  dispose(t: Tensor): void {
    if (!(t instanceof GpuTensor) || !t.storage) return;
    if (--t.storage.refs === 0) {
      this.ctx.release(t.storage.buf);
      if (t.storage.derived) this.ctx.release(t.storage.derived.buf);
      if (t.storage.rowStats) this.ctx.release(t.storage.rowStats.buf);
    }
    t.storage = null;
  }

  reshape(t: Tensor, shape: readonly number[]): Tensor {
    const g = gpu(t, 'reshape', t.dtype === 'f16w' ? 'f32' : t.dtype);
    if (numel(shape) !== g.size) throw new Error(`reshape: ${shapeStr(g.shape)} has ${g.size} values, ${shapeStr(shape)} needs ${numel(shape)}`);
    g.storage!.refs++;
    return this.track(new GpuTensor(shape, g.dtype, g.storage, g.hostInts, g.offset));
  }

  async flush(): Promise<void> {
    await this.ctx.flush();
  }

  readonly queued = true;

  submit(): void {
    this.ctx.submit();
  }

  inOneSubmit<T>(fn: () => T): T {
    return this.ctx.inOneSubmit(fn);
  }

  /** A buffer for one op's intermediate values, returned to the pool by the caller. */
  private scratch(n: number, what: string): GpuTensor {
    return new GpuTensor([n], 'f32', new Storage(this.ctx.alloc(n * 4, () => what)));
  }

  // ---- ops ----

  embedding(table: Tensor, ids: Tensor): Tensor {
    const w = gpu(table, 'embedding'), id = gpu(ids, 'embedding', ids.dtype === 'f32' ? 'f32' : 'i32');
    if (w.shape.length !== 2) throw new Error(`embedding: table has shape ${shapeStr(w.shape)}, expected [V, D]`);
    const [V, D] = w.shape;
    if (id.hostInts) {
      for (const v of id.hostInts) {
        if (v < 0 || v >= V) throw new Error(`embedding: token id ${v} is outside the vocabulary [0, ${V})`);
      }
    }
    const out = this.make([id.size, D]);
    cp.embedding(this.ctx, out, w, id, V, D);
    return out;
  }

  /** The norm and residual go into the decoding gemv; around other products they are their own ops. */
  matmul(x: Tensor, w: Tensor, opts: MatmulOptions = {}): Tensor {
    const a = gpu(x, 'matmul'), b = gpu(w, 'matmul', w.dtype === 'f16w' ? 'f16w' : 'f32');
    const [M, K] = a.shape, [N, K2] = b.shape;
    if (a.shape.length !== 2 || b.shape.length !== 2 || K !== K2) {
      throw new Error(`matmul: x ${shapeStr(a.shape)} and w ${shapeStr(b.shape)} do not fit (x·wᵀ needs equal last dims)`);
    }
    checkMatmulOptions('matmul', a, N, opts);
    const packed = b instanceof F16WeightTensor ? b : null;
    if ((opts.norm || opts.residual) && !productFusesEnds(M, N, K, packed ? this.f16Caps : null)) return matmulComposed(this, x, w, opts);
    const ends: GemvEnds = {
      norm: opts.norm && { g: gpu(opts.norm.g, 'matmul'), eps: opts.norm.eps },
      residual: opts.residual && gpu(opts.residual, 'matmul'),
    };
    const out = this.make([M, N]);
    if (packed) matmulPackedF16(this.ctx, out, a, packed.packed, M, N, K, this.f16Caps, ends);
    else matmul(this.ctx, out, a, b, M, N, K, this.f16, ends);
    return out;
  }

  /** w [N, K] as zero-padded f16 for matmul: half the bytes every decoded token reads. */
  compactWeight(w: Tensor): Tensor {
    const g = gpu(w, 'compactWeight');
    if (g.shape.length !== 2) throw new Error(`compactWeight: expected a matrix, got ${shapeStr(g.shape)}`);
    if (!this.f16Caps.shaderF16) throw new Error('f16 weights need the shader-f16 feature, which this WebGPU device lacks (use f32 weights)');
    const [N, K] = g.shape;
    const packed = packF16(this.ctx, g, N, K);
    return this.track(new F16WeightTensor(g.shape, new Storage(packed.buf), packed));
  }

  gatherWeights(ws: Tensor[]): Tensor[] {
    const packed = ws.map((w) => {
      if (!(w instanceof GpuTensor) || !w.storage || (w.dtype !== 'f16w' && w.dtype !== 'f32')) throw new Error('gatherWeights: expects live f16 weights (compactWeight\'s) or float32 tensors');
      return w;
    });
    if (new Set(packed).size !== packed.length) throw new Error('gatherWeights: a tensor is given twice (each is moved, then disposed)');
    const out: Tensor[] = [], align = this.ctx.storageAlign;
    const target = Math.max(Math.min(this.ctx.maxBuffer, GATHER_BYTES), ...packed.map((w) => w.bytes));
    for (let i = 0; i < packed.length;) {
      // the next run of weights that fits one buffer, each at an aligned offset
      const offsets: number[] = [];
      let end = 0, j = i;
      for (; j < packed.length; j++) {
        const at = Math.ceil(end / align) * align;
        if (j > i && at + packed[j].bytes > target) break;
        offsets.push(at);
        end = at + packed[j].bytes;
      }
      const storage = new Storage(this.ctx.pool.acquire(end, true));
      storage.refs = j - i;
      for (let k = i; k < j; k++) {
        const w = packed[k], at = offsets[k - i];
        this.ctx.copy(w.buf!, w.offset, storage.buf, at, w.bytes);
        out.push(this.track(w instanceof F16WeightTensor
          ? new F16WeightTensor(w.shape, storage, { ...w.packed, buf: storage.buf, offset: at })
          : new GpuTensor(w.shape, 'f32', storage, undefined, at)));
        this.dispose(w);
      }
      this.ctx.submit(); // the copied weights' own buffers can go before the next run is made
      i = j;
    }
    return out;
  }

  add(a: Tensor, b: Tensor): Tensor {
    expectShape('add', 'b', b, a.shape);
    const x = gpu(a, 'add'), y = gpu(b, 'add');
    const out = this.make(a.shape);
    ew.add(this.ctx, out, x, y);
    return out;
  }

  rmsNorm(x: Tensor, g: Tensor, eps: number): Tensor {
    const D = x.shape[x.shape.length - 1];
    expectShape('rmsNorm', 'g', g, [D]);
    const a = gpu(x, 'rmsNorm'), w = gpu(g, 'rmsNorm');
    const out = this.make(x.shape);
    ew.rmsNorm(this.ctx, out, a, w, D, eps);
    return out;
  }

  swiglu(x: Tensor, w1: Tensor, w2: Tensor, opts: { norm?: NormArg } = {}): Tensor {
    const a = gpu(x, 'swiglu'), { norm } = opts;
    if (a.shape.length === 2 && w1 instanceof F16WeightTensor && w2 instanceof F16WeightTensor && w1.storage && w2.storage &&
        w1.shape[0] === w2.shape[0] && w1.shape[1] === a.shape[1] && w2.shape[1] === a.shape[1] &&
        a.shape[0] >= 1 && a.shape[0] <= F16_GEMV_MAX_ROWS && (!norm || a.shape[1] % 4 === 0)) {
      // decoding with f16 weights: norm, gate, up and product in one dispatch per block of rows
      const M = a.shape[0], [N, K] = w1.shape, out = this.make([M, N]);
      if (norm) checkMatmulOptions('swiglu', a, N, { norm });
      swigluF16Gemv(this.ctx, out, a, w1.packed, w2.packed, M, N, K, norm && { g: gpu(norm.g, 'swiglu'), eps: norm.eps }, this.f16Caps.subgroupMatrix);
      return out;
    }
    return swigluComposed(this, x, w1, w2, opts);
  }

  siluMul(a: Tensor, b: Tensor): Tensor {
    expectShape('siluMul', 'b', b, a.shape);
    const x = gpu(a, 'siluMul'), y = gpu(b, 'siluMul');
    const out = this.make(a.shape);
    ew.siluMul(this.ctx, out, x, y);
    return out;
  }

  sliceCols(x: Tensor, start: number, width: number): Tensor {
    const a = gpu(x, 'sliceCols');
    if (a.shape.length !== 2) throw new Error(`sliceCols: x has shape ${shapeStr(a.shape)}, expected [M, N]`);
    const [M, N] = a.shape;
    if (start < 0 || width < 0 || start + width > N) throw new Error(`sliceCols: columns ${start}..${start + width} outside ${N}`);
    const offset = a.offset + start * 4;
    if (M === 1 && width > 0 && offset % this.ctx.storageAlign === 0) {
      // one row: the columns are contiguous, so a view of them costs no dispatch (decoding slices
      // every Mamba and attention projection this way)
      a.storage!.refs++;
      return this.track(new GpuTensor([1, width], 'f32', a.storage, undefined, offset));
    }
    const out = this.make([M, width]);
    cp.sliceCols(this.ctx, out, a, N, start, width);
    return out;
  }

  gatherRows(x: Tensor, rows: Int32Array): Tensor {
    const a = gpu(x, 'gatherRows');
    if (a.shape.length !== 2) throw new Error(`gatherRows: x has shape ${shapeStr(a.shape)}, expected [M, N]`);
    const [M, N] = a.shape;
    for (const r of rows) if (r < 0 || r >= M) throw new Error(`gatherRows: row ${r} outside ${M}`);
    const out = this.make([rows.length, N]);
    cp.gatherRows(this.ctx, out, a, rows, N);
    return out;
  }

  concat(ts: Tensor[]): Tensor {
    if (ts.length === 0) throw new Error('concat: no tensors');
    const rest = ts[0].shape.slice(1);
    for (const t of ts) expectShape('concat', 'part', t, [t.shape[0], ...rest]);
    const dtype = gpuFloats(ts[0], 'concat').dtype, parts = ts.map((t) => gpu(t, 'concat', dtype));
    // parts of halves are copied as bytes: each must fill whole words
    if (dtype === 'f16' && parts.some((p) => p.size % 2)) throw new Error('concat: f16 parts must hold an even number of values');
    const out = this.make([ts.reduce((s, t) => s + t.shape[0], 0), ...rest], dtype);
    let o = 0;
    for (const p of parts) {
      this.ctx.copy(p.buf!, p.offset, out.buf!, o, p.bytes);
      o += p.bytes;
    }
    return out;
  }

  rope(x: Tensor, cos: Tensor, sin: Tensor, nHeads: number): Tensor {
    const a = gpu(x, 'rope'), c = gpu(cos, 'rope'), s = gpu(sin, 'rope');
    const [M, F] = a.shape, hs = F / nHeads, half = hs / 2;
    if (a.shape.length !== 2 || !Number.isInteger(half)) {
      throw new Error(`rope: x ${shapeStr(a.shape)} does not split into ${nHeads} heads of even size`);
    }
    expectShape('rope', 'cos', c, [M, half]);
    expectShape('rope', 'sin', s, [M, half]);
    const out = this.make(a.shape);
    ew.rope(this.ctx, out, a, c, s, M, nHeads, half);
    return out;
  }

  /** Decoding one token with a cache, RoPE and the cache store run inside the attention kernel. */
  attention(q: Tensor, k: Tensor, v: Tensor, cache: KvCache | null, args: AttentionArgs, fuse: AttentionFusion = {}): Tensor {
    const { nHeads: H, nKvHeads: Hkv, headDim: hs, window, pos0 } = args;
    const { B, T } = checkAttention('attention', q, k, v, args, { cache });
    const p0 = checkPos0('attention', pos0, B);
    const C = cache?.capacity ?? 0, d = { B, T, H, Hkv, hs, C, window };
    const fused = !!(fuse.rope && fuse.store && cache && att.attentionFuses(this.ctx, d));
    if (!fused && (fuse.rope || fuse.store)) return attentionComposed(this, q, k, v, cache, args, fuse);
    const Q = gpu(q, 'attention'), Kn = gpu(k, 'attention'), Vn = gpu(v, 'attention');
    let Kc = Kn, Vc = Vn; // unread stand-ins when there is no cache
    if (cache && C > 0) {
      Kc = gpuFloats(cache.k, 'attention');
      Vc = gpu(cache.v, 'attention', Kc.dtype);
    }
    let tables: { cos: GpuTensor; sin: GpuTensor } | undefined;
    if (fused) {
      const half = hs / 2, r = fuse.rope!;
      expectShape('attention', 'rope cos', r.cos, [B * T, half]);
      expectShape('attention', 'rope sin', r.sin, [B * T, half]);
      checkWriteKv(cache!, k, v, pos0);
      tables = { cos: gpu(r.cos, 'attention'), sin: gpu(r.sin, 'attention') };
    }
    const out = this.make(q.shape);
    // a training forward on the flash path keeps each row's log-sum-exp for attentionBackward, as the
    // backward would compute it (whole sequences from position 0, the same tile)
    // (owned by out's storage, released with it)
    const keep = fuse.forBackward && !cache && p0.every((p) => p === 0) && att.usesFlash(d, this.split)
      ? this.ctx.alloc(B * T * H * 2 * 4, () => `attention row statistics of ${B * T * H} rows`) : null;
    const stats = keep ? new GpuTensor([B * T * H, 2], 'f32', new Storage(keep)) : undefined;
    att.attention(this.ctx, out, Q, Kn, Vn, Kc, Vc, p0, d, this.split, tables, stats, this.attentionTensorCores);
    if (keep) out.storage!.rowStats = { buf: keep, inputs: [Q.storage!, Kn.storage!, Vn.storage!] };
    return out;
  }

  writeKv(cache: KvCache, k: Tensor, v: Tensor, pos0: Int32Array): void {
    this.alive();
    const { B, T, C, F } = checkWriteKv(cache, k, v, pos0); // also pos0: one non-negative start per sequence
    const kc = gpuFloats(cache.k, 'writeKv'), vc = gpu(cache.v, 'writeKv', kc.dtype);
    cp.writeKv(this.ctx, kc, vc, gpu(k, 'writeKv'), gpu(v, 'writeKv'), pos0, B, C, T, F);
  }

  resizeRows(t: Tensor, newC: number): Tensor {
    const a = gpuFloats(t, 'resizeRows');
    if (a.shape.length !== 3) throw new Error(`resizeRows: tensor has shape ${shapeStr(a.shape)}, expected [B, C, F]`);
    const [B, C, F] = a.shape;
    if (a.dtype === 'f16' && F % 2) throw new Error(`resizeRows: an f16 tensor needs an even row width, got ${F}`);
    const out = this.make([B, newC, F], a.dtype);
    cp.resizeRows(this.ctx, out, a, C, newC, F);
    return out;
  }

  sampleRows(logits: Tensor, o: SampleRowsOptions): Tensor {
    const { B, V } = checkSampleRows(logits, o);
    let x = gpu(logits, 'sampleRows'), penalized: GpuTensor | null = null;
    if (o.penalty && o.penalty.factor !== 1 && o.penalty.ids.some((row) => row.length > 0)) {
      penalized = this.make([B, V]); // the logits stay as they are: ops do not mutate their inputs
      this.ctx.copy(x.buf!, x.offset, penalized.buf!, 0, x.bytes);
      const at = new Int32Array(o.penalty.ids.reduce((n, row) => n + row.length, 0));
      let k = 0;
      o.penalty.ids.forEach((row, b) => { for (const id of row) at[k++] = b * V + id; });
      sm.repetitionPenalty(this.ctx, penalized, at, o.penalty.factor);
      x = penalized;
    }
    const out = this.make([B]);
    sm.sampleRows(this.ctx, out, x, B, V, o.temperature, new Int32Array(Float32Array.from(o.uniforms ?? new Float32Array(B)).buffer));
    if (penalized) this.dispose(penalized); // its buffer returns to the pool; later work runs after this
    return out;
  }

  conv1dSilu(x: Tensor, w: Tensor, bias: Tensor, state: Tensor | null): ConvResult {
    const { B, T, C, K } = checkConv('conv1dSilu', x, w, bias, { state }), H = K - 1;
    const X = gpu(x, 'conv1dSilu'), W = gpu(w, 'conv1dSilu'), bb = gpu(bias, 'conv1dSilu');
    const S = state ? gpu(state, 'conv1dSilu') : X;
    const y = this.make(x.shape), next = this.make([B, C, H]);
    mb.conv1dSilu(this.ctx, y, next, X, W, bb, S, !!state, B, T, C, K);
    return { y, state: next };
  }

  /** Decoding one token with f16 weights, the conv runs inside the product (one dispatch). */
  mambaInput(
    u: Tensor, wIn: Tensor, convW: Tensor, convB: Tensor, convState: Tensor | null, B: number, T: number, opts: { norm?: NormArg } = {},
  ): MambaInputResult {
    const op = 'mambaInput', { C, K, d } = checkMambaInput(op, u, wIn, convW, convB, convState, B, T);
    if (B * T !== 1 || !(wIn instanceof F16WeightTensor) || d % 4 !== 0) return mambaInputComposed(this, u, wIn, convW, convB, convState, B, T, opts);
    return this.tidy(() => {
      const out = this.make([1, 2 * C]), next = this.make([1, C, K - 1]);
      const conv = { w: gpu(convW, op), b: gpu(convB, op), state: convState && gpu(convState, op), width: K };
      const norm = opts.norm && { g: gpu(opts.norm.g, op), eps: opts.norm.eps };
      mambaInputF16Gemv(this.ctx, out, next, gpu(u, op), wIn.packed, 2 * C, d, conv, norm);
      // x̃ and z are views of the product's row where its halves are aligned, else copies
      const half = (start: number) => this.reshape(this.sliceCols(out, start, C), [1, 1, C]);
      return { xc: half(0), z: half(C), state: next };
    });
  }

  selectiveScan(
    u: Tensor, dt: Tensor, dtBias: Tensor, aLog: Tensor,
    bm: Tensor, cm: Tensor, d: Tensor, z: Tensor, h0: Tensor | null, opts: { donateH0?: boolean } = {},
  ): ScanResult {
    const { B, T, C, N } = checkScan('selectiveScan', u, dt, dtBias, aLog, bm, cm, d, z, { h0 });
    const op = 'selectiveScan';
    const U = gpu(u, op), DT = gpu(dt, op), bias = gpu(dtBias, op), AL = gpu(aLog, op), Bm = gpu(bm, op);
    const Cm = gpu(cm, op), Dv = gpu(d, op), Z = gpu(z, op), H0 = h0 ? gpu(h0, op) : null;
    const y = this.make(u.shape), h = this.scanState(H0, !!opts.donateH0, B, C, N);
    mb.selectiveScan(this.ctx, y, h, this.scanParams(bias, Dv, AL, C, N), U, DT, Bm, Cm, Z, B, T, C, N);
    return { y, h };
  }

  /** Decoding a few tokens, Δ's projection runs inside the scan (no product, no column slices). */
  selectiveScanProjected(
    u: Tensor, dbc: Tensor, dtWeight: Tensor, dtBias: Tensor, aLog: Tensor, d: Tensor, z: Tensor, h0: Tensor | null, opts: { donateH0?: boolean } = {},
  ): ScanResult {
    const op = 'selectiveScanProjected';
    const { B, T, C, N, R } = checkProjectedScan(op, u, dbc, dtWeight, dtBias, aLog, d, z, h0);
    if (T > mb.SCAN_PROJECTED_MAX_T) return selectiveScanProjectedComposed(this, u, dbc, dtWeight, dtBias, aLog, d, z, h0, opts);
    const W = dtWeight instanceof F16WeightTensor ? dtWeight : gpu(dtWeight, op);
    const weight = W instanceof F16WeightTensor
      ? { buf: W.packed.buf, offset: W.packed.offset ?? 0, size: W.bytes, kind: 'f16' as const, kp: W.packed.colsP }
      : { buf: W.buf!, offset: 0, size: W.bytes, kind: this.f16 ? 'f32r16' as const : 'f32' as const, kp: 0 };
    if (!(W instanceof F16WeightTensor) && W.offset) throw new Error(`${op}: dtWeight must be a whole tensor`);
    const bias = gpu(dtBias, op), AL = gpu(aLog, op), Dv = gpu(d, op), H0 = h0 ? gpu(h0, op) : null;
    const y = this.make(u.shape), h = this.scanState(H0, !!opts.donateH0, B, C, N);
    mb.selectiveScanProjected(this.ctx, y, h, this.scanParams(bias, Dv, AL, C, N), gpu(u, op), gpu(dbc, op), weight, gpu(z, op), B, T, C, N, R);
    return { y, h };
  }

  /**
   * The buffer the scan updates in place, starting from h0: a donated h0 (whole storage, no other
   * tensor on it) is that buffer already; otherwise h0 is copied into a fresh one (zeros without).
   */
  private scanState(H0: GpuTensor | null, donate: boolean, B: number, C: number, N: number): GpuTensor {
    if (H0 && donate && H0.offset === 0 && H0.storage!.refs === 1) {
      H0.storage!.refs++;
      return this.track(new GpuTensor([B, C, N], 'f32', H0.storage));
    }
    const h = this.make([B, C, N]);
    if (H0) this.ctx.copy(H0.buf!, H0.offset, h.buf!, 0, h.bytes);
    else this.ctx.clear(h.buf!, 0, h.bytes);
    return h;
  }

  /** Bumped by every in-place parameter update (adamw), so derived buffers know they are stale. */
  private weightsEpoch = 0;

  /**
   * The scan's constant parameters packed into one binding, cached on A_log's storage: a decoded
   * token then spends no copies on them (3 per Mamba layer otherwise), until adamw changes weights.
   */
  private scanParams(bias: GpuTensor, d: GpuTensor, aLog: GpuTensor, C: number, N: number): PooledBuffer {
    const st = aLog.storage!, sources = [bias.storage!, d.storage!], c = st.derived;
    if (c && c.epoch === this.weightsEpoch && c.sources.every((s, i) => s === sources[i])) return c.buf;
    if (c) this.ctx.release(c.buf);
    const buf = this.ctx.alloc((2 * C + C * N) * 4, () => `selectiveScan parameters of ${C} channels`);
    mb.packScanParams(this.ctx, buf, bias, d, aLog, C, N);
    st.derived = { epoch: this.weightsEpoch, sources, buf };
    return buf;
  }
  // ---- training ops (GradOps): the kernels live in grad-*.ts ----

  matmulNN(x: Tensor, w: Tensor): Tensor {
    const a = gpu(x, 'matmulNN'), b = gpu(w, 'matmulNN');
    const [M, N] = a.shape, [N2, K] = b.shape;
    if (a.shape.length !== 2 || b.shape.length !== 2 || N !== N2) {
      throw new Error(`matmulNN: x ${shapeStr(a.shape)} and w ${shapeStr(b.shape)} do not fit`);
    }
    const out = this.make([M, K]);
    gmm.matmulNN(this.ctx, out, a, b, M, N, K, this.precision === 'f16-matmul', this.f16?.subgroupMatrix ?? null);
    return out;
  }

  matmulTN(a: Tensor, b: Tensor): Tensor {
    const x = gpu(a, 'matmulTN'), y = gpu(b, 'matmulTN');
    const [M, N] = x.shape, [M2, K] = y.shape;
    if (x.shape.length !== 2 || y.shape.length !== 2 || M !== M2) {
      throw new Error(`matmulTN: a ${shapeStr(x.shape)} and b ${shapeStr(y.shape)} do not fit`);
    }
    const out = this.make([N, K]);
    gmm.matmulTN(this.ctx, out, x, y, M, N, K, this.precision === 'f16-matmul', this.f16?.subgroupMatrix ?? null);
    return out;
  }

  concatCols(ts: Tensor[]): Tensor {
    if (ts.length === 0) throw new Error('concatCols: no tensors');
    const parts = ts.map((t) => gpu(t, 'concatCols'));
    const M = parts[0].shape[0];
    for (const p of parts) {
      if (p.shape.length !== 2) throw new Error(`concatCols: part has shape ${shapeStr(p.shape)}, expected [M, N]`);
      if (p.shape[0] !== M) throw new Error(`concatCols: ${p.shape[0]} rows, expected ${M}`);
    }
    const W = parts.reduce((s, p) => s + p.shape[1], 0);
    const out = this.make([M, W]);
    gm.concatCols(this.ctx, out, parts, M, W);
    return out;
  }

  embeddingBackward(dOut: Tensor, ids: Tensor, vocab: number): Tensor {
    const g = gpu(dOut, 'embeddingBackward'), id = gpu(ids, 'embeddingBackward', 'i32');
    if (g.shape.length !== 2 || g.shape[0] !== id.size) {
      throw new Error(`embeddingBackward: dOut has shape ${shapeStr(g.shape)}, expected [${id.size}, D]`);
    }
    if (id.hostInts) {
      for (const v of id.hostInts) {
        if (v < 0 || v >= vocab) throw new Error(`embeddingBackward: token id ${v} is outside the vocabulary [0, ${vocab})`);
      }
    }
    const D = g.shape[1];
    const out = this.make([vocab, D]);
    gm.embeddingBackward(this.ctx, out, g, id, id.hostInts, vocab, D);
    return out;
  }

  rmsNormBackward(x: Tensor, g: Tensor, dy: Tensor, eps: number): { dx: Tensor; dg: Tensor } {
    const D = x.shape[x.shape.length - 1], M = D ? x.size / D : 0;
    expectShape('rmsNormBackward', 'g', g, [D]);
    expectShape('rmsNormBackward', 'dy', dy, x.shape);
    const op = 'rmsNormBackward', a = gpu(x, op), w = gpu(g, op), d = gpu(dy, op);
    const dx = this.make(x.shape), dg = this.make([D]);
    gm.rmsNormBackward(this.ctx, dx, dg, a, w, d, M, D, eps);
    return { dx, dg };
  }

  siluMulBackward(a: Tensor, b: Tensor, dy: Tensor): { da: Tensor; db: Tensor } {
    expectShape('siluMulBackward', 'b', b, a.shape);
    expectShape('siluMulBackward', 'dy', dy, a.shape);
    const op = 'siluMulBackward', x = gpu(a, op), y = gpu(b, op), d = gpu(dy, op);
    const da = this.make(a.shape), db = this.make(b.shape);
    gm.siluMulBackward(this.ctx, da, db, x, y, d);
    return { da, db };
  }

  attentionBackward(q: Tensor, k: Tensor, v: Tensor, dOut: Tensor, args: AttentionArgs, o?: Tensor): { dq: Tensor; dk: Tensor; dv: Tensor } {
    const { nHeads: H, nKvHeads: Hkv, headDim: hs, window } = args;
    const op = 'attentionBackward', { B, T } = checkAttention(op, q, k, v, args, { dOut });
    const Q = gpu(q, op), K = gpu(k, op), V = gpu(v, op), dO = gpu(dOut, op);
    const dq = this.make(q.shape), dk = this.make(k.shape), dv = this.make(v.shape);
    // the forward's kept row statistics, where it ran with forBackward and `o` is its output
    let kept: { o: GpuTensor; ld: GpuTensor } | undefined;
    if (o) {
      const O = gpu(o, op);
      if (O.size !== dO.size) throw new Error(`attentionBackward: o ${shapeStr(O.shape)} is not the forward's output for dOut ${shapeStr(dO.shape)}`);
      // kept for these q, k and v (anything else: recomputed)
      const stats = O.storage!.rowStats, same = stats && [Q, K, V].every((t, i) => t.storage === stats.inputs[i]);
      if (stats && same) kept = { o: O, ld: new GpuTensor([B * T * H, 2], 'f32', new Storage(stats.buf)) };
    }
    ga.attentionBackward(this.ctx, dq, dk, dv, Q, K, V, dO, { B, T, H, Hkv, hs, window }, this.split, kept, this.attentionTensorCores);
    return { dq, dk, dv };
  }

  conv1dSiluBackward(x: Tensor, w: Tensor, bias: Tensor, dy: Tensor): { dx: Tensor; dw: Tensor; db: Tensor } {
    const op = 'conv1dSiluBackward', { B, T, C, K } = checkConv(op, x, w, bias, { dy });
    const X = gpu(x, op), W = gpu(w, op), bb = gpu(bias, op), D = gpu(dy, op);
    const dx = this.make(x.shape), dw = this.make([C, K]), db = this.make([C]);
    gmb.conv1dSiluBackward(this.ctx, dx, dw, db, X, W, bb, D, B, T, C, K);
    return { dx, dw, db };
  }

  selectiveScanBackward(
    u: Tensor, dt: Tensor, dtBias: Tensor, aLog: Tensor,
    bm: Tensor, cm: Tensor, d: Tensor, z: Tensor, dy: Tensor, h0: Tensor | null = null,
  ): ScanGrads {
    const op = 'selectiveScanBackward', { B, T, C, N } = checkScan(op, u, dt, dtBias, aLog, bm, cm, d, z, { dy, h0 });
    const x = {
      u: gpu(u, op), dt: gpu(dt, op), dtBias: gpu(dtBias, op), aLog: gpu(aLog, op), bm: gpu(bm, op),
      cm: gpu(cm, op), d: gpu(d, op), z: gpu(z, op), dy: gpu(dy, op), h0: h0 ? gpu(h0, op) : null,
    };
    const g = {
      du: this.make(u.shape), ddt: this.make(u.shape), dz: this.make(u.shape), dbm: this.make(bm.shape), dcm: this.make(cm.shape),
      ddtBias: this.make([C]), daLog: this.make([C, N]), dd: this.make([C]),
    };
    gmb.selectiveScanBackward(this.ctx, g, x, B, T, C, N);
    return g;
  }

  crossEntropy(logits: Tensor, targets: Tensor, scale: number): { loss: Tensor; dlogits: Tensor } {
    const L = gpu(logits, 'crossEntropy'), tg = gpu(targets, 'crossEntropy', 'i32');
    if (L.shape.length !== 2) throw new Error(`crossEntropy: logits have shape ${shapeStr(L.shape)}, expected [R, V]`);
    const [R, V] = L.shape;
    if (tg.size !== R) throw new Error(`crossEntropy: ${tg.size} targets for ${R} rows`);
    if (tg.hostInts) {
      for (const y of tg.hostInts) if (y >= V) throw new Error(`crossEntropy: target ${y} outside the vocabulary [0, ${V})`);
    }
    const loss = this.make([1]), dlogits = this.make(L.shape);
    gm.crossEntropy(this.ctx, loss, dlogits, L, tg, R, V, scale);
    return { loss, dlogits };
  }

  sumSquares(x: Tensor): Tensor {
    const a = gpu(x, 'sumSquares');
    const out = this.make([1]);
    gr.sum(this.ctx, out, a, a.size, true);
    return out;
  }

  adamw(p: Tensor, g: Tensor, m: Tensor, v: Tensor, hp: AdamWStep): void {
    this.alive();
    expectShape('adamw', 'grad', g, p.shape);
    expectShape('adamw', 'm', m, p.shape);
    expectShape('adamw', 'v', v, p.shape);
    const ts = [gpu(p, 'adamw'), gpu(g, 'adamw'), gpu(m, 'adamw'), gpu(v, 'adamw')] as const;
    // one dispatch cannot write a buffer that another of its bindings also uses
    if (new Set(ts.map((t) => t.buf)).size < ts.length) throw new Error('adamw: the parameter, gradient and moments must not share storage');
    gm.adamw(this.ctx, ...ts, hp);
    this.weightsEpoch++;
  }
}

function checkLength(data: ArrayLike<number>, shape: readonly number[]): void {
  const n = numel(shape);
  if (data.length !== n) throw new Error(`tensor data has ${data.length} values, shape ${shapeStr(shape)} needs ${n}`);
}

/** pos0 for B sequences, checked: the ring-buffer slots need non-negative positions. */
function checkPos0(op: string, pos0: Int32Array, B: number): Int32Array {
  if (pos0.length < B) throw new Error(`${op}: pos0 has ${pos0.length} entries for ${B} sequences`);
  const p = pos0.subarray(0, B);
  for (const v of p) if (v < 0) throw new Error(`${op}: negative position ${v} in pos0`);
  return p;
}
