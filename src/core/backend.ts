// The op seam: every layer of every model is written against this interface, and each backend
// (plain TypeScript on the CPU, WGSL on WebGPU) implements it once. The CPU version of each op is
// the specification of its WGSL twin; tests hold them equal on random inputs.
//
// Conventions
// - Tensors are dense, row-major float32 (ids are int32). "Rows" are the leading dims flattened.
// - Weights keep PyTorch's [out, in] layout, so a linear layer is matmul(x, W) = x · Wᵀ.
// - Ops never mutate their inputs, except writeKv, which updates a decoding cache in place.
// - Ops return at once; on WebGPU they are queued and run when read() (or flush()) needs them.
//
// Forward ops only for now; each gets a backward twin when training lands, which is why every op is
// a pure function of its inputs (a tape can record them without knowing what they do).

/**
 * 'f16w': a weight matrix stored as f16 for `matmul(x, w)` only (Backend.compactWeight): no other
 * op takes it and it cannot be read back.
 * 'f16': values stored as halves (half the bytes), for decoding caches: made by zeros(shape, 'f16'),
 * taken by writeKv (which rounds), attention (as a cache), concat, resizeRows and read.
 */
export type DType = 'f32' | 'i32' | 'f16w' | 'f16';

/** Bytes a tensor of `size` values of `dtype` holds: halves pack two to a 32-bit word. */
export const tensorBytes = (size: number, dtype: DType): number => (dtype === 'f16' ? 4 * Math.ceil(size / 2) : 4 * size);

export interface Tensor {
  readonly shape: readonly number[];
  readonly dtype: DType;
  readonly size: number;
}

/** The per-sequence cache of one attention layer: ring buffers of post-RoPE keys and values. */
export interface KvCache {
  k: Tensor; // [B, capacity, nKv·hs]
  v: Tensor; // [B, capacity, nKv·hs]
  capacity: number; // W for a sliding window (slot = position mod W); grows for full attention
}

/** An RMSNorm's weight g [K] and epsilon, applied to a product's input inside the product. */
export interface NormArg { g: Tensor; eps: number }

export interface MatmulOptions {
  /** The product reads rmsNorm(x, norm.g, norm.eps) instead of x. */
  norm?: NormArg;
  /** Added to the product: a residual connection, [M, N]. */
  residual?: Tensor;
}

/** What attention may do around its core when streaming: see Backend.attention. */
export interface AttentionFusion {
  /** q and k arrive un-rotated; these are the tables of `rope`, [B·T, hs/2]. */
  rope?: { cos: Tensor; sin: Tensor };
  /** Write the (rotated) new keys and the values into the cache afterwards, as writeKv does. */
  store?: boolean;
  /**
   * A training forward (no cache): the backend may keep what attentionBackward would otherwise
   * recompute (each row's softmax log-sum-exp) with the output, for attentionBackward's `o`.
   */
  forBackward?: boolean;
}

export interface AttentionArgs {
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  /** Keys each query sees, itself included; Infinity = full causal attention. */
  window: number;
  /** Absolute position of the first new token, per sequence. */
  pos0: Int32Array;
}

export interface ScanResult {
  y: Tensor; // [B, T, C]
  h: Tensor; // [B, C, N] state after the last token
}

export interface ConvResult {
  y: Tensor; // [B, T, C]
  state: Tensor; // [B, C, K-1] the last K-1 inputs, oldest first
}

/** Sampling of Backend.sampleRows: see there. */
export interface SampleRowsOptions {
  /** 0: argmax. */
  temperature: number;
  /** One uniform in [0, 1) per row; needed when temperature > 0. */
  uniforms?: Float32Array;
  /** Repetition penalty (CTRL): per row, the ids whose logit x becomes x / factor where x > 0, else x · factor. */
  penalty?: { factor: number; ids: readonly Int32Array[] };
}

export interface Backend {
  readonly name: 'cpu' | 'webgpu';

  // ---- data ----
  tensor(data: Float32Array, shape: readonly number[]): Tensor;
  ids(data: Int32Array, shape: readonly number[]): Tensor;
  /** dtype 'f16': a decoding cache stored as halves (see DType). */
  zeros(shape: readonly number[], dtype?: 'f32' | 'f16'): Tensor;
  /**
   * Optional: the weight matrix w [N, K] in a compact form that `matmul(x, w)` still takes (WebGPU:
   * f16, half the memory and bandwidth; the product then takes x as f16 too and sums in f32) — for
   * inference. The original stays valid; dispose it if
   * it is no longer needed. Throws if the device has no compact form.
   */
  compactWeight?(w: Tensor): Tensor;
  /**
   * compactWeight's weights (and float32 tensors) moved into a few large buffers, each a range of
   * one (the given tensors are disposed): on WebGPU, Dawn's work to record a dispatch grows with the
   * distinct buffers its pass touches. For parameters that no longer change (inference).
   */
  gatherWeights?(ws: Tensor[]): Tensor[];
  read(t: Tensor): Promise<Float32Array>;
  dispose(t: Tensor): void;
  /** Releases every tensor created inside fn except those it returns (nested arrays/objects too) or keep()s. */
  tidy<T>(fn: () => T): T;
  keep<T extends Tensor>(t: T): T;
  /** Waits until all queued work has finished. */
  flush(): Promise<void>;
  /**
   * True where ops are queued and run later on a device (WebGPU), so that the host may record the
   * next step while the device works; false where ops compute when called (CPU).
   */
  readonly queued: boolean;
  /** Starts the queued work without waiting for it (nothing to do where ops compute when called). */
  submit(): void;
  /**
   * Runs fn, and where ops are queued sends its work to the device together at its end rather
   * than in pieces as it is recorded: for a decoding step recorded while the device runs the
   * previous one.
   */
  inOneSubmit<T>(fn: () => T): T;
  /**
   * The same values under another shape of equal size: a view sharing storage (no copy). The
   * storage is released when the base tensor and all its views have been disposed (refcounted).
   */
  reshape(t: Tensor, shape: readonly number[]): Tensor;

  // ---- ops ----
  /**
   * table [V, D], ids [N] → [N, D]. ids are i32, or f32 holding exact integers (sampleRows's
   * output), so that a sampled token can be looked up without coming back to the host.
   */
  embedding(table: Tensor, ids: Tensor): Tensor;
  /**
   * x [M, K], w [N, K] → x·wᵀ [M, N]; with `opts.norm`, rmsNorm(x, g, eps)·wᵀ; with `opts.residual`
   * [M, N], that plus the residual. Equal to rmsNorm, matmul, add; a backend fuses them where it
   * can (WebGPU: into the decoding gemv, so a sub-layer's norm and residual add cost no dispatch).
   */
  matmul(x: Tensor, w: Tensor, opts?: MatmulOptions): Tensor;
  /** a + b, same shape */
  add(a: Tensor, b: Tensor): Tensor;
  /** x [M, D], g [D] → x / sqrt(mean(x²) + eps) ⊙ g */
  rmsNorm(x: Tensor, g: Tensor, eps: number): Tensor;
  /** silu(a) ⊙ b, same shape */
  siluMul(a: Tensor, b: Tensor): Tensor;
  /**
   * x [M, K], w1 and w2 [N, K] → silu(x·w1ᵀ) ⊙ (x·w2ᵀ) [M, N]: a SwiGLU MLP's hidden layer; equal
   * to matmul, matmul, siluMul. `opts.norm` as in matmul.
   */
  swiglu(x: Tensor, w1: Tensor, w2: Tensor, opts?: { norm?: NormArg }): Tensor;
  /** x [M, N] → x[:, start : start+width] */
  sliceCols(x: Tensor, start: number, width: number): Tensor;
  /** x [M, N] → x[rows] [R, N] */
  gatherRows(x: Tensor, rows: Int32Array): Tensor;
  /** Flat concatenation along the first dim: [B1, …] ++ [B2, …] → [B1+B2, …]. */
  concat(ts: Tensor[]): Tensor;
  /**
   * Rotate-half RoPE on every head of every row: x [M, H·hs]; cos, sin [M, hs/2] hold cos(p·θ_m)
   * and sin(p·θ_m) for that row's position p (computed by the caller in float64).
   */
  rope(x: Tensor, cos: Tensor, sin: Tensor, nHeads: number): Tensor;
  /**
   * Causal windowed attention of T new queries per sequence over the cached keys (positions
   * pos0-capacity … pos0-1, slot = position mod capacity) and the T new keys.
   * q [B, T, H·hs], k/v [B, T, Hkv·hs] (post-RoPE) → [B, T, H·hs]. Query head h uses KV head
   * h / (H/Hkv). Query at position i sees keys j with max(0, i-window+1) ≤ j ≤ i.
   * `fuse` (streaming): RoPE on q and k first, and the new keys and values written into the cache
   * after; equal to rope, attention, writeKv (attentionComposed). WebGPU fuses them into one
   * kernel when decoding one token.
   */
  attention(q: Tensor, k: Tensor, v: Tensor, cache: KvCache | null, args: AttentionArgs, fuse?: AttentionFusion): Tensor;
  /**
   * Writes the new keys k and values v [B, T, F] into the cache's ring buffers [B, capacity, F] at
   * slots (pos0+t) mod capacity, both in one op; an f16 cache (F even) stores them rounded to the
   * nearest half, clamped to ±65504.
   */
  writeKv(cache: KvCache, k: Tensor, v: Tensor, pos0: Int32Array): void;
  /** [B, C, F] → [B, newC, F], rows 0..min(C,newC)-1 copied, the rest zero. */
  resizeRows(t: Tensor, newC: number): Tensor;
  /**
   * One token id per row of logits [B, V], as exact f32 values [B] (vocabularies below 2^24), so
   * that decoding reads back B numbers instead of B·V. Per row: the repetition penalty on its ids;
   * then with temperature 0 the argmax (the first of equal maxima), else the draw from
   * softmax(x / temperature) by the inverse CDF in id order at the row's uniform u: the first id
   * whose running sum of weights exceeds u · Σ weights (the last id of nonzero weight if rounding
   * leaves none).
   */
  sampleRows(logits: Tensor, opts: SampleRowsOptions): Tensor;
  /**
   * Causal depthwise conv1d then SiLU: y[t,c] = silu(b[c] + Σ_k w[c,k]·x[t-(K-1)+k, c]), where
   * inputs before t=0 come from state [B, C, K-1] (zeros when null).
   * x [B, T, C], w [C, K], b [C].
   */
  conv1dSilu(x: Tensor, w: Tensor, b: Tensor, state: Tensor | null): ConvResult;
  /**
   * Mamba's selective scan, discretised as the reference does (ZOH for A, Euler for B), gated:
   *   Δ = softplus(dt + dtBias);  h_t = exp(Δ_t A) ⊙ h_{t-1} + (Δ_t u_t) ⊗ B_t;  A = -exp(aLog)
   *   y_t = (h_t · C_t + D ⊙ u_t) ⊙ silu(z_t)
   * u, dt, z [B, T, C]; bm, cm [B, T, N]; dtBias, d [C]; aLog [C, N]; h0 [B, C, N] or null.
   * donateH0: the caller never reads h0 again, so the new state may be written over it (the one
   * exception to "ops never mutate their inputs"; WebGPU saves a copy, which would also end the
   * compute pass, per Mamba layer of a decoded token).
   */
  selectiveScan(
    u: Tensor, dt: Tensor, dtBias: Tensor, aLog: Tensor,
    bm: Tensor, cm: Tensor, d: Tensor, z: Tensor, h0: Tensor | null, opts?: { donateH0?: boolean },
  ): ScanResult;
  /**
   * selectiveScan with Δ's projection inside, for inference: dbc [B·T, R + 2N] is x_proj's output
   * [δ | B | C], and dt = δ · dtWeightᵀ with dtWeight [C, R]. Equal to sliceCols, matmul,
   * selectiveScan (selectiveScanProjectedComposed); WebGPU fuses them into the scan when decoding.
   */
  selectiveScanProjected(
    u: Tensor, dbc: Tensor, dtWeight: Tensor, dtBias: Tensor, aLog: Tensor,
    d: Tensor, z: Tensor, h0: Tensor | null, opts?: { donateH0?: boolean },
  ): ScanResult;
  /**
   * A Mamba mixer's input side, for inference: [x; z] = u · wInᵀ (u normalised first with
   * `opts.norm`), then x̃ = conv1dSilu(x) continuing from convState ([B, C, K-1], null: zeros).
   * u [B·T, d], wIn [2C, d], convW [C, K], convB [C] → x̃ and z [B, T, C] and the next conv
   * state. Equal to matmul, sliceCols and conv1dSilu (mambaInputComposed); WebGPU runs the conv
   * inside the product when decoding one token with f16 weights.
   */
  mambaInput(
    u: Tensor, wIn: Tensor, convW: Tensor, convB: Tensor, convState: Tensor | null, B: number, T: number, opts?: { norm?: NormArg },
  ): MambaInputResult;
}

export interface MambaInputResult {
  xc: Tensor; // x̃ [B, T, C]
  z: Tensor; // [B, T, C]
  state: Tensor; // the next conv state [B, C, K-1]
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const s of shape) {
    if (!Number.isInteger(s) || s < 0) throw new Error(`invalid shape [${shape.join(', ')}]`);
    n *= s;
  }
  return n;
}

export function shapeStr(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/** Throws a readable error when a tensor's shape differs from what an op expects. */
export function expectShape(op: string, name: string, t: Tensor, shape: readonly number[]): void {
  if (t.shape.length !== shape.length || t.shape.some((s, i) => s !== shape[i])) {
    throw new Error(`${op}: ${name} has shape ${shapeStr(t.shape)}, expected ${shapeStr(shape)}`);
  }
}

/**
 * Bookkeeping shared by backends: a stack of tidy() scopes. Each created tensor is recorded in the
 * innermost scope; when the scope ends, every tensor not returned or kept is disposed.
 */
export abstract class ScopedBackend {
  private scopes: Set<Tensor>[] = [];

  protected track<T extends Tensor>(t: T): T {
    const top = this.scopes[this.scopes.length - 1];
    if (top) top.add(t);
    return t;
  }

  abstract dispose(t: Tensor): void;

  keep<T extends Tensor>(t: T): T {
    for (const s of this.scopes) s.delete(t);
    return t;
  }

  tidy<T>(fn: () => T): T {
    const scope = new Set<Tensor>();
    this.scopes.push(scope);
    let result: T;
    try {
      result = fn();
    } finally {
      this.scopes.pop();
    }
    const survivors = new Set<Tensor>();
    collectTensors(result, survivors);
    const parent = this.scopes[this.scopes.length - 1];
    for (const t of scope) {
      if (survivors.has(t)) parent?.add(t);
      else this.dispose(t);
    }
    return result;
  }
}

function collectTensors(v: unknown, out: Set<Tensor>, depth = 0): void {
  if (v == null || typeof v !== 'object' || depth > 6) return;
  if (isTensor(v)) { out.add(v); return; }
  if (ArrayBuffer.isView(v)) return;
  if (Array.isArray(v)) { for (const x of v) collectTensors(x, out, depth + 1); return; }
  for (const x of Object.values(v as Record<string, unknown>)) collectTensors(x, out, depth + 1);
}

/** Backend.matmul's options as separate ops: rmsNorm, the product, add. */
export function matmulComposed(be: Backend, x: Tensor, w: Tensor, opts: MatmulOptions): Tensor {
  return be.tidy(() => {
    const y = be.matmul(opts.norm ? be.rmsNorm(x, opts.norm.g, opts.norm.eps) : x, w);
    return opts.residual ? be.add(y, opts.residual) : y;
  });
}

/** Backend.mambaInput as separate ops: the product (its norm fused where the backend can), two column slices, the conv. */
export function mambaInputComposed(
  be: Backend, u: Tensor, wIn: Tensor, convW: Tensor, convB: Tensor, convState: Tensor | null, B: number, T: number, opts: { norm?: NormArg } = {},
): MambaInputResult {
  const C = convW.shape[0];
  return be.tidy(() => {
    const xz = be.matmul(u, wIn, { norm: opts.norm }); // [B·T, 2C]
    const conv = be.conv1dSilu(be.reshape(be.sliceCols(xz, 0, C), [B, T, C]), convW, convB, convState);
    return { xc: conv.y, z: be.reshape(be.sliceCols(xz, C, C), [B, T, C]), state: conv.state };
  });
}

/** Backend.swiglu as separate ops: rmsNorm (with opts.norm), both products, siluMul. */
export function swigluComposed(be: Backend, x: Tensor, w1: Tensor, w2: Tensor, opts: { norm?: NormArg }): Tensor {
  return be.tidy(() => {
    const xn = opts.norm ? be.rmsNorm(x, opts.norm.g, opts.norm.eps) : x;
    return be.siluMul(be.matmul(xn, w1), be.matmul(xn, w2));
  });
}

/** Backend.selectiveScanProjected as separate ops: δ, B and C sliced out of dbc, Δ's projection, the scan. */
export function selectiveScanProjectedComposed(
  be: Backend, u: Tensor, dbc: Tensor, dtWeight: Tensor, dtBias: Tensor, aLog: Tensor,
  d: Tensor, z: Tensor, h0: Tensor | null, opts: { donateH0?: boolean } = {},
): ScanResult {
  const [B, T, C] = u.shape, R = dtWeight.shape[1], N = aLog.shape[1];
  return be.tidy(() => {
    const dt = be.reshape(be.matmul(be.sliceCols(dbc, 0, R), dtWeight), [B, T, C]); // W_dt δ
    const bm = be.reshape(be.sliceCols(dbc, R, N), [B, T, N]);
    const cm = be.reshape(be.sliceCols(dbc, R + N, N), [B, T, N]);
    return be.selectiveScan(u, dt, dtBias, aLog, bm, cm, d, z, h0, opts);
  });
}

/** Backend.attention's fusions as separate ops: rope on q and k, attention, writeKv. */
export function attentionComposed(
  be: Backend, q: Tensor, k: Tensor, v: Tensor, cache: KvCache | null, args: AttentionArgs, fuse: AttentionFusion,
): Tensor {
  if (fuse.store && !cache) throw new Error('attention: store needs a cache');
  return be.tidy(() => {
    let qr = q, kr = k;
    if (fuse.rope) {
      const turn = (x: Tensor, heads: number) => be.reshape(be.rope(be.reshape(x, [x.size / (heads * args.headDim), heads * args.headDim]), fuse.rope!.cos, fuse.rope!.sin, heads), x.shape);
      qr = turn(q, args.nHeads); kr = turn(k, args.nKvHeads);
    }
    const out = be.attention(qr, kr, v, cache, args);
    if (fuse.store) be.writeKv(cache!, kr, v, args.pos0);
    return out;
  });
}

export function isTensor(v: unknown): v is Tensor {
  return typeof v === 'object' && v !== null && 'shape' in v && 'dtype' in v && 'size' in v;
}

/** Gradients of the selective scan with respect to each of its inputs (names as in selectiveScan). */
export interface ScanGrads {
  du: Tensor; ddt: Tensor; ddtBias: Tensor; daLog: Tensor; dbm: Tensor; dcm: Tensor; dd: Tensor; dz: Tensor;
}

export interface AdamWStep {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** 1-based step count, for the bias corrections. */
  step: number;
  /** Multiplies the gradient first (clipping and accumulation averaging). */
  gradScale: number;
}

/**
 * The ops training adds: the backward of each forward op (its CPU version spells out the chain
 * rule), the loss, and the optimizer. Backward ops take the forward's inputs and the gradient of
 * its output, recomputing what they need (the scan recomputes its states rather than storing them).
 */
export interface GradOps {
  /** x [M, N], w [N, K] → x·w [M, K] (the input gradient of matmul) */
  matmulNN(x: Tensor, w: Tensor): Tensor;
  /** a [M, N], b [M, K] → aᵀ·b [N, K] (the weight gradient of matmul) */
  matmulTN(a: Tensor, b: Tensor): Tensor;
  /** [M, N1] ++ [M, N2] ++ … → [M, ΣN] (the backward of sliceCols over a full partition) */
  concatCols(ts: Tensor[]): Tensor;
  /** dOut [N, D], ids [N] → dTable [V, D], rows summed over repeated ids */
  embeddingBackward(dOut: Tensor, ids: Tensor, vocab: number): Tensor;
  rmsNormBackward(x: Tensor, g: Tensor, dy: Tensor, eps: number): { dx: Tensor; dg: Tensor };
  siluMulBackward(a: Tensor, b: Tensor, dy: Tensor): { da: Tensor; db: Tensor };
  /**
   * Backward of attention without a cache (training: whole sequences from pos0). `o`: the
   * forward's output, where it ran with forBackward (optional: only a speed-up).
   */
  attentionBackward(q: Tensor, k: Tensor, v: Tensor, dOut: Tensor, args: AttentionArgs, o?: Tensor): { dq: Tensor; dk: Tensor; dv: Tensor };
  /** Backward of conv1dSilu with a zero initial state. */
  conv1dSiluBackward(x: Tensor, w: Tensor, b: Tensor, dy: Tensor): { dx: Tensor; dw: Tensor; db: Tensor };
  /**
   * Backward of selectiveScan from the initial state h0 [B, C, N] (null: zeros); dy is the gradient
   * of its gated output y. h0 is a constant here (state carried between training windows gets no
   * gradient).
   */
  selectiveScanBackward(
    u: Tensor, dt: Tensor, dtBias: Tensor, aLog: Tensor,
    bm: Tensor, cm: Tensor, d: Tensor, z: Tensor, dy: Tensor, h0?: Tensor | null,
  ): ScanGrads;
  /**
   * Softmax cross-entropy per row of logits [R, V] against targets [R] (a negative target is
   * ignored): returns the summed loss [1] and dlogits = scale · (softmax − onehot).
   */
  crossEntropy(logits: Tensor, targets: Tensor, scale: number): { loss: Tensor; dlogits: Tensor };
  /** Σ x² as a [1] tensor (for the global gradient norm). */
  sumSquares(x: Tensor): Tensor;
  /** In place, as torch.optim.AdamW: p ← p·(1 − lr·wd) − lr·m̂/(√v̂ + ε), with g ← g·gradScale. */
  adamw(p: Tensor, g: Tensor, m: Tensor, v: Tensor, hp: AdamWStep): void;
}
