// The CPU backend: every op as a plain loop. It is the reference the WGSL kernels are tested
// against, and the fallback where no WebGPU adapter exists. Sums are accumulated in float64
// (JavaScript numbers) and stored as float32.
import {
  type AdamWStep, type AttentionArgs, type AttentionFusion, type Backend, type ConvResult, type GradOps, type KvCache, type MatmulOptions,
  type MambaInputResult, type NormArg, type ScanGrads, type SampleRowsOptions, type ScanResult, type Tensor, ScopedBackend, attentionComposed, expectShape,
  mambaInputComposed, matmulComposed, selectiveScanProjectedComposed, swigluComposed, numel, shapeStr,
} from '../../core/backend.js';
import { checkAttention, checkConv, checkMambaInput, checkMatmulOptions, checkProjectedScan, checkSampleRows, checkScan, checkWriteKv } from '../../core/checks.js';
import { F16_MAX, f16BitsToF32, f32ToF16Bits } from '../../io/half.js';

export class CpuTensor implements Tensor {
  readonly size: number;
  constructor(
    readonly shape: readonly number[],
    readonly data: Float32Array | Int32Array,
    /** 'f16': a decoding cache; its values are f32 numbers that are exact halves (writeKv rounds). */
    readonly dtype: 'f32' | 'i32' | 'f16' = data instanceof Int32Array ? 'i32' : 'f32',
  ) {
    this.size = numel(shape);
    if (data.length !== this.size) throw new Error(`tensor data has ${data.length} values, shape ${shapeStr(shape)} needs ${this.size}`);
  }
}

function f32(t: Tensor): Float32Array {
  if (!(t instanceof CpuTensor)) throw new Error('cpu backend: tensor belongs to another backend');
  if (!(t.data instanceof Float32Array)) throw new Error('cpu backend: expected a float32 tensor');
  return t.data;
}

function i32(t: Tensor): Int32Array {
  if (!(t instanceof CpuTensor) || !(t.data instanceof Int32Array)) throw new Error('cpu backend: expected an int32 tensor');
  return t.data;
}

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));
const silu = (x: number) => x / (1 + Math.exp(-x));
/** The references' softplus: the identity above 20. */
export const softplus = (x: number) => (x > 20 ? x : Math.log1p(Math.exp(x)));
export { sigmoid, silu };

export class CpuBackend extends ScopedBackend implements Backend, GradOps {
  readonly name = 'cpu' as const;

  private make(shape: readonly number[], data?: Float32Array, dtype: 'f32' | 'f16' = 'f32'): CpuTensor {
    return this.track(new CpuTensor(shape, data ?? new Float32Array(numel(shape)), dtype));
  }

  tensor(data: Float32Array, shape: readonly number[]): Tensor {
    return this.make(shape, data);
  }
  ids(data: Int32Array, shape: readonly number[]): Tensor {
    return this.track(new CpuTensor(shape, data));
  }
  zeros(shape: readonly number[], dtype: 'f32' | 'f16' = 'f32'): Tensor {
    return this.make(shape, undefined, dtype);
  }
  async read(t: Tensor): Promise<Float32Array> {
    return Float32Array.from(f32(t));
  }
  dispose(_t: Tensor): void { /* garbage collected */ }
  reshape(t: Tensor, shape: readonly number[]): Tensor {
    if (numel(shape) !== t.size) throw new Error(`reshape: ${shapeStr(t.shape)} has ${t.size} values, ${shapeStr(shape)} needs ${numel(shape)}`);
    return this.track(new CpuTensor(shape, (t as CpuTensor).data, (t as CpuTensor).dtype));
  }
  async flush(): Promise<void> {}
  readonly queued = false;
  submit(): void {}

  inOneSubmit<T>(fn: () => T): T {
    return fn();
  }

  embedding(table: Tensor, ids: Tensor): Tensor {
    const [V, D] = table.shape;
    const id = ids.dtype === 'f32' ? Int32Array.from(f32(ids), (v) => {
      if (!Number.isInteger(v)) throw new Error(`embedding: id ${v} is not an integer`);
      return v;
    }) : i32(ids), w = f32(table);
    const out = new Float32Array(id.length * D);
    for (let n = 0; n < id.length; n++) {
      const v = id[n];
      if (v < 0 || v >= V) throw new Error(`embedding: token id ${v} is outside the vocabulary [0, ${V})`);
      out.set(w.subarray(v * D, v * D + D), n * D);
    }
    return this.make([id.length, D], out);
  }

  /** The fusions are compositions here: rmsNorm, the product, add. */
  matmul(x: Tensor, w: Tensor, opts: MatmulOptions = {}): Tensor {
    if (opts.norm || opts.residual) {
      checkMatmulOptions('matmul', x, w.shape[0], opts);
      return matmulComposed(this, x, w, opts);
    }
    const [M, K] = x.shape, [N, K2] = w.shape;
    if (x.shape.length !== 2 || w.shape.length !== 2 || K !== K2) {
      throw new Error(`matmul: x ${shapeStr(x.shape)} and w ${shapeStr(w.shape)} do not fit (x·wᵀ needs equal last dims)`);
    }
    const a = f32(x), b = f32(w), out = new Float32Array(M * N);
    // Four weight rows per pass over a row of x: each x value loaded once serves four outputs.
    const N4 = N - (N % 4);
    for (let m = 0; m < M; m++) {
      const ao = m * K, oo = m * N;
      for (let n = 0; n < N4; n += 4) {
        const b0 = n * K, b1 = b0 + K, b2 = b1 + K, b3 = b2 + K;
        let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
        for (let k = 0; k < K; k++) {
          const av = a[ao + k];
          s0 += av * b[b0 + k]; s1 += av * b[b1 + k]; s2 += av * b[b2 + k]; s3 += av * b[b3 + k];
        }
        out[oo + n] = s0; out[oo + n + 1] = s1; out[oo + n + 2] = s2; out[oo + n + 3] = s3;
      }
      for (let n = N4; n < N; n++) {
        const bo = n * K;
        let s = 0;
        for (let k = 0; k < K; k++) s += a[ao + k] * b[bo + k];
        out[oo + n] = s;
      }
    }
    return this.make([M, N], out);
  }

  add(a: Tensor, b: Tensor): Tensor {
    expectShape('add', 'b', b, a.shape);
    const x = f32(a), y = f32(b), out = new Float32Array(x.length);
    for (let i = 0; i < x.length; i++) out[i] = x[i] + y[i];
    return this.make(a.shape, out);
  }

  rmsNorm(x: Tensor, g: Tensor, eps: number): Tensor {
    const D = x.shape[x.shape.length - 1], M = x.size / D;
    expectShape('rmsNorm', 'g', g, [D]);
    const a = f32(x), w = f32(g), out = new Float32Array(a.length);
    for (let m = 0; m < M; m++) {
      let ss = 0;
      for (let j = 0; j < D; j++) ss += a[m * D + j] ** 2;
      const r = 1 / Math.sqrt(ss / D + eps);
      for (let j = 0; j < D; j++) out[m * D + j] = a[m * D + j] * r * w[j];
    }
    return this.make(x.shape, out);
  }

  swiglu(x: Tensor, w1: Tensor, w2: Tensor, opts: { norm?: NormArg } = {}): Tensor {
    return swigluComposed(this, x, w1, w2, opts);
  }

  siluMul(a: Tensor, b: Tensor): Tensor {
    expectShape('siluMul', 'b', b, a.shape);
    const x = f32(a), y = f32(b), out = new Float32Array(x.length);
    for (let i = 0; i < x.length; i++) out[i] = silu(x[i]) * y[i];
    return this.make(a.shape, out);
  }

  sliceCols(x: Tensor, start: number, width: number): Tensor {
    const [M, N] = x.shape;
    if (start < 0 || width < 0 || start + width > N) throw new Error(`sliceCols: columns ${start}..${start + width} outside ${N}`);
    const a = f32(x), out = new Float32Array(M * width);
    for (let m = 0; m < M; m++) out.set(a.subarray(m * N + start, m * N + start + width), m * width);
    return this.make([M, width], out);
  }

  gatherRows(x: Tensor, rows: Int32Array): Tensor {
    const [M, N] = x.shape;
    const a = f32(x), out = new Float32Array(rows.length * N);
    rows.forEach((r, i) => {
      if (r < 0 || r >= M) throw new Error(`gatherRows: row ${r} outside ${M}`);
      out.set(a.subarray(r * N, r * N + N), i * N);
    });
    return this.make([rows.length, N], out);
  }

  concat(ts: Tensor[]): Tensor {
    const rest = ts[0].shape.slice(1);
    for (const t of ts) expectShape('concat', 'part', t, [t.shape[0], ...rest]);
    const dtype = ts[0].dtype === 'f16' ? 'f16' : 'f32';
    if (ts.some((t) => (t.dtype === 'f16') !== (dtype === 'f16'))) throw new Error('concat: f16 and float32 parts do not mix');
    const out = new Float32Array(ts.reduce((s, t) => s + t.size, 0));
    let o = 0;
    for (const t of ts) { out.set(f32(t), o); o += t.size; }
    return this.make([ts.reduce((s, t) => s + t.shape[0], 0), ...rest], out, dtype);
  }

  rope(x: Tensor, cos: Tensor, sin: Tensor, nHeads: number): Tensor {
    const [M, F] = x.shape, hs = F / nHeads, half = hs / 2;
    expectShape('rope', 'cos', cos, [M, half]);
    expectShape('rope', 'sin', sin, [M, half]);
    const a = f32(x), c = f32(cos), s = f32(sin), out = new Float32Array(a.length);
    for (let m = 0; m < M; m++) {
      for (let h = 0; h < nHeads; h++) {
        const o = m * F + h * hs;
        for (let i = 0; i < half; i++) {
          const x1 = a[o + i], x2 = a[o + i + half], cc = c[m * half + i], ss = s[m * half + i];
          out[o + i] = x1 * cc - x2 * ss;
          out[o + i + half] = x2 * cc + x1 * ss;
        }
      }
    }
    return this.make(x.shape, out);
  }

  attention(q: Tensor, k: Tensor, v: Tensor, cache: KvCache | null, args: AttentionArgs, fuse?: AttentionFusion): Tensor {
    if (fuse?.rope || fuse?.store) return attentionComposed(this, q, k, v, cache, args, fuse);
    const { nHeads: H, nKvHeads: Hkv, headDim: hs, window, pos0 } = args;
    const { B, T } = checkAttention('attention', q, k, v, args, { cache });
    const F = Hkv * hs, group = H / Hkv, scale = 1 / Math.sqrt(hs);
    const Q = f32(q), Kn = f32(k), Vn = f32(v);
    const C = cache?.capacity ?? 0;
    const Kc = cache ? f32(cache.k) : null, Vc = cache ? f32(cache.v) : null;
    const out = new Float32Array(q.size);
    const scores = new Float64Array(Math.min(isFinite(window) ? window : Infinity, C + T));
    for (let b = 0; b < B; b++) {
      const p0 = pos0[b];
      for (let t = 0; t < T; t++) {
        const i = p0 + t, jLo = Math.max(0, i - window + 1, p0 - C);
        for (let h = 0; h < H; h++) {
          const qo = ((b * T + t) * H + h) * hs, kvh = Math.floor(h / group);
          // key j lives in the cache (slot j mod C) if it precedes this call, else in the new keys
          const keyAt = (j: number): [Float32Array, number] =>
            j < p0 ? [Kc!, (b * C + (j % C)) * F + kvh * hs] : [Kn, (b * T + (j - p0)) * F + kvh * hs];
          const valAt = (j: number): [Float32Array, number] =>
            j < p0 ? [Vc!, (b * C + (j % C)) * F + kvh * hs] : [Vn, (b * T + (j - p0)) * F + kvh * hs];
          let max = -Infinity;
          for (let j = jLo; j <= i; j++) {
            const [K, ko] = keyAt(j);
            let s = 0;
            for (let e = 0; e < hs; e++) s += Q[qo + e] * K[ko + e];
            s *= scale;
            scores[j - jLo] = s;
            if (s > max) max = s;
          }
          let den = 0;
          for (let j = jLo; j <= i; j++) den += (scores[j - jLo] = Math.exp(scores[j - jLo] - max));
          for (let e = 0; e < hs; e++) {
            let acc = 0;
            for (let j = jLo; j <= i; j++) {
              const [V, vo] = valAt(j);
              acc += scores[j - jLo] * V[vo + e];
            }
            out[qo + e] = acc / den;
          }
        }
      }
    }
    return this.make(q.shape, out);
  }

  writeKv(cache: KvCache, k: Tensor, v: Tensor, pos0: Int32Array): void {
    const { B, T, C, F } = checkWriteKv(cache, k, v, pos0), half = cache.k.dtype === 'f16';
    for (const [dst, src] of [[f32(cache.k), f32(k)], [f32(cache.v), f32(v)]]) {
      for (let b = 0; b < B; b++) {
        for (let t = Math.max(0, T - C); t < T; t++) {
          const slot = (pos0[b] + t) % C, row = src.subarray((b * T + t) * F, (b * T + t + 1) * F);
          // halves clamp to ±F16_MAX, as the kernel does (WGSL leaves packing a larger value undefined)
          dst.set(half ? row.map((x) => f16BitsToF32(f32ToF16Bits(Math.min(F16_MAX, Math.max(-F16_MAX, x))))) : row, (b * C + slot) * F);
        }
      }
    }
  }

  resizeRows(t: Tensor, newC: number): Tensor {
    const [B, C, F] = t.shape, a = f32(t), out = new Float32Array(B * newC * F);
    const keep = Math.min(C, newC);
    for (let b = 0; b < B; b++) out.set(a.subarray(b * C * F, (b * C + keep) * F), b * newC * F);
    return this.make([B, newC, F], out, t.dtype === 'f16' ? 'f16' : 'f32');
  }

  conv1dSilu(x: Tensor, w: Tensor, bias: Tensor, state: Tensor | null): ConvResult {
    const { B, T, C, K } = checkConv('conv1dSilu', x, w, bias, { state }), H = K - 1;
    const X = f32(x), W = f32(w), bb = f32(bias), S = state ? f32(state) : null;
    const y = new Float32Array(x.size), next = new Float32Array(B * C * H);
    for (let b = 0; b < B; b++) {
      // input τ (τ ≥ -H): from x when τ ≥ 0, else from the carried state
      const input = (tau: number, c: number) =>
        tau >= 0 ? X[(b * T + tau) * C + c] : S ? S[(b * C + c) * H + (H + tau)] : 0;
      for (let t = 0; t < T; t++) {
        for (let c = 0; c < C; c++) {
          let s = bb[c];
          for (let k = 0; k < K; k++) s += W[c * K + k] * input(t - H + k, c);
          y[(b * T + t) * C + c] = silu(s);
        }
      }
      for (let c = 0; c < C; c++) for (let k = 0; k < H; k++) next[(b * C + c) * H + k] = input(T - H + k, c);
    }
    return { y: this.make(x.shape, y), state: this.make([B, C, H], next) };
  }

  selectiveScanProjected(
    u: Tensor, dbc: Tensor, dtWeight: Tensor, dtBias: Tensor, aLog: Tensor, d: Tensor, z: Tensor, h0: Tensor | null, opts: { donateH0?: boolean } = {},
  ): ScanResult {
    checkProjectedScan('selectiveScanProjected', u, dbc, dtWeight, dtBias, aLog, d, z, h0);
    return selectiveScanProjectedComposed(this, u, dbc, dtWeight, dtBias, aLog, d, z, h0, opts);
  }

  mambaInput(
    u: Tensor, wIn: Tensor, convW: Tensor, convB: Tensor, convState: Tensor | null, B: number, T: number, opts: { norm?: NormArg } = {},
  ): MambaInputResult {
    checkMambaInput('mambaInput', u, wIn, convW, convB, convState, B, T);
    return mambaInputComposed(this, u, wIn, convW, convB, convState, B, T, opts);
  }

  selectiveScan(
    u: Tensor, dt: Tensor, dtBias: Tensor, aLog: Tensor,
    bm: Tensor, cm: Tensor, d: Tensor, z: Tensor, h0: Tensor | null,
  ): ScanResult {
    const { B, T, C, N } = checkScan('selectiveScan', u, dt, dtBias, aLog, bm, cm, d, z, { h0 });
    const U = f32(u), DT = f32(dt), bias = f32(dtBias), AL = f32(aLog), Bm = f32(bm), Cm = f32(cm);
    const Dv = f32(d), Z = f32(z), H0 = h0 ? f32(h0) : null;
    const y = new Float32Array(u.size), hOut = new Float32Array(B * C * N);
    const h = new Float64Array(N), A = new Float64Array(N);
    for (let b = 0; b < B; b++) {
      for (let c = 0; c < C; c++) {
        for (let n = 0; n < N; n++) {
          A[n] = -Math.exp(AL[c * N + n]);
          h[n] = H0 ? H0[(b * C + c) * N + n] : 0;
        }
        for (let t = 0; t < T; t++) {
          const r = (b * T + t), ut = U[r * C + c];
          const delta = softplus(DT[r * C + c] + bias[c]);
          let yt = 0;
          for (let n = 0; n < N; n++) {
            h[n] = Math.exp(delta * A[n]) * h[n] + delta * ut * Bm[r * N + n];
            yt += h[n] * Cm[r * N + n];
          }
          y[r * C + c] = (yt + Dv[c] * ut) * silu(Z[r * C + c]);
        }
        for (let n = 0; n < N; n++) hOut[(b * C + c) * N + n] = h[n];
      }
    }
    return { y: this.make(u.shape, y), h: this.make([B, C, N], hOut) };
  }

  // ---------------------------------------------------------------------------------------------
  // Backward ops and training

  matmulNN(x: Tensor, w: Tensor): Tensor {
    const [M, N] = x.shape, [N2, K] = w.shape;
    if (N !== N2) throw new Error(`matmulNN: x ${shapeStr(x.shape)} and w ${shapeStr(w.shape)} do not fit`);
    const a = f32(x), b = f32(w), out = new Float32Array(M * K);
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        const av = a[m * N + n];
        if (av === 0) continue;
        for (let k = 0; k < K; k++) out[m * K + k] += av * b[n * K + k];
      }
    }
    return this.make([M, K], out);
  }

  matmulTN(a: Tensor, b: Tensor): Tensor {
    const [M, N] = a.shape, [M2, K] = b.shape;
    if (M !== M2) throw new Error(`matmulTN: a ${shapeStr(a.shape)} and b ${shapeStr(b.shape)} do not fit`);
    const x = f32(a), y = f32(b), acc = new Float64Array(N * K);
    for (let m = 0; m < M; m++) {
      for (let n = 0; n < N; n++) {
        const xv = x[m * N + n];
        if (xv === 0) continue;
        for (let k = 0; k < K; k++) acc[n * K + k] += xv * y[m * K + k];
      }
    }
    return this.make([N, K], Float32Array.from(acc));
  }

  concatCols(ts: Tensor[]): Tensor {
    const M = ts[0].shape[0], W = ts.reduce((s, t) => s + t.shape[1], 0), out = new Float32Array(M * W);
    let c0 = 0;
    for (const t of ts) {
      const [M2, N] = t.shape, a = f32(t);
      if (M2 !== M) throw new Error(`concatCols: ${M2} rows, expected ${M}`);
      for (let m = 0; m < M; m++) out.set(a.subarray(m * N, (m + 1) * N), m * W + c0);
      c0 += N;
    }
    return this.make([M, W], out);
  }

  embeddingBackward(dOut: Tensor, ids: Tensor, vocab: number): Tensor {
    const [N, D] = dOut.shape, id = i32(ids), g = f32(dOut), acc = new Float64Array(vocab * D);
    for (let n = 0; n < N; n++) for (let j = 0; j < D; j++) acc[id[n] * D + j] += g[n * D + j];
    return this.make([vocab, D], Float32Array.from(acc));
  }

  rmsNormBackward(x: Tensor, g: Tensor, dy: Tensor, eps: number): { dx: Tensor; dg: Tensor } {
    const D = x.shape[x.shape.length - 1], M = x.size / D;
    const a = f32(x), w = f32(g), d = f32(dy), dx = new Float32Array(a.length), dg = new Float64Array(D);
    for (let m = 0; m < M; m++) {
      const o = m * D;
      let ss = 0, dot = 0;
      for (let j = 0; j < D; j++) { ss += a[o + j] ** 2; dot += d[o + j] * w[j] * a[o + j]; }
      const r = 1 / Math.sqrt(ss / D + eps);
      // y = x·r·g, r = (mean x² + eps)^(-1/2):  dx = r·g·dy − x·r³·(Σ dy·g·x)/D
      for (let j = 0; j < D; j++) {
        dx[o + j] = r * w[j] * d[o + j] - (a[o + j] * r ** 3 * dot) / D;
        dg[j] += d[o + j] * a[o + j] * r;
      }
    }
    return { dx: this.make(x.shape, dx), dg: this.make([D], Float32Array.from(dg)) };
  }

  siluMulBackward(a: Tensor, b: Tensor, dy: Tensor): { da: Tensor; db: Tensor } {
    const x = f32(a), y = f32(b), d = f32(dy), da = new Float32Array(x.length), db = new Float32Array(x.length);
    for (let i = 0; i < x.length; i++) {
      const s = sigmoid(x[i]);
      db[i] = d[i] * x[i] * s;
      da[i] = d[i] * y[i] * s * (1 + x[i] * (1 - s)); // silu'(a) = σ(a)(1 + a(1 − σ(a)))
    }
    return { da: this.make(a.shape, da), db: this.make(b.shape, db) };
  }

  attentionBackward(q: Tensor, k: Tensor, v: Tensor, dOut: Tensor, args: AttentionArgs): { dq: Tensor; dk: Tensor; dv: Tensor } {
    const { nHeads: H, nKvHeads: Hkv, headDim: hs, window } = args;
    const { B, T } = checkAttention('attentionBackward', q, k, v, args, { dOut }), F = Hkv * hs, group = H / Hkv, scale = 1 / Math.sqrt(hs);
    const Q = f32(q), K = f32(k), V = f32(v), dO = f32(dOut);
    const dq = new Float32Array(q.size), dk = new Float64Array(k.size), dv = new Float64Array(v.size);
    const p = new Float64Array(T), dp = new Float64Array(T);
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        const jLo = Math.max(0, t - window + 1);
        for (let h = 0; h < H; h++) {
          const qo = ((b * T + t) * H + h) * hs, kvh = Math.floor(h / group);
          const kOff = (j: number) => (b * T + j) * F + kvh * hs;
          // recompute the softmax row
          let max = -Infinity;
          for (let j = jLo; j <= t; j++) {
            let s = 0;
            for (let e = 0; e < hs; e++) s += Q[qo + e] * K[kOff(j) + e];
            p[j] = s * scale;
            if (p[j] > max) max = p[j];
          }
          let den = 0;
          for (let j = jLo; j <= t; j++) den += (p[j] = Math.exp(p[j] - max));
          // dp_j = dO·v_j ; ds_j = p_j (dp_j − Σ_k p_k dp_k)
          let pdp = 0;
          for (let j = jLo; j <= t; j++) {
            p[j] /= den;
            let s = 0;
            for (let e = 0; e < hs; e++) s += dO[qo + e] * V[kOff(j) + e];
            dp[j] = s;
            pdp += p[j] * s;
          }
          for (let j = jLo; j <= t; j++) {
            const ds = p[j] * (dp[j] - pdp) * scale, ko = kOff(j);
            for (let e = 0; e < hs; e++) {
              dq[qo + e] += ds * K[ko + e];
              dk[ko + e] += ds * Q[qo + e];
              dv[ko + e] += p[j] * dO[qo + e];
            }
          }
        }
      }
    }
    return { dq: this.make(q.shape, dq), dk: this.make(k.shape, Float32Array.from(dk)), dv: this.make(v.shape, Float32Array.from(dv)) };
  }

  conv1dSiluBackward(x: Tensor, w: Tensor, bias: Tensor, dy: Tensor): { dx: Tensor; dw: Tensor; db: Tensor } {
    const { B, T, C, K } = checkConv('conv1dSiluBackward', x, w, bias, { dy }), H = K - 1;
    const X = f32(x), W = f32(w), bb = f32(bias), D = f32(dy);
    const dx = new Float32Array(x.size), dw = new Float64Array(C * K), db = new Float64Array(C);
    const inp = (b: number, tau: number, c: number) => (tau >= 0 ? X[(b * T + tau) * C + c] : 0);
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        for (let c = 0; c < C; c++) {
          let s = bb[c];
          for (let k = 0; k < K; k++) s += W[c * K + k] * inp(b, t - H + k, c);
          const sg = sigmoid(s), ds = D[(b * T + t) * C + c] * sg * (1 + s * (1 - sg));
          db[c] += ds;
          for (let k = 0; k < K; k++) {
            const tau = t - H + k;
            if (tau < 0) continue;
            dw[c * K + k] += ds * X[(b * T + tau) * C + c];
            dx[(b * T + tau) * C + c] += ds * W[c * K + k];
          }
        }
      }
    }
    return { dx: this.make(x.shape, dx), dw: this.make([C, K], Float32Array.from(dw)), db: this.make([C], Float32Array.from(db)) };
  }

  selectiveScanBackward(
    u: Tensor, dt: Tensor, dtBias: Tensor, aLog: Tensor,
    bm: Tensor, cm: Tensor, d: Tensor, z: Tensor, dy: Tensor, h0: Tensor | null = null,
  ): ScanGrads {
    const { B, T, C, N } = checkScan('selectiveScanBackward', u, dt, dtBias, aLog, bm, cm, d, z, { dy, h0 });
    const H0 = h0 ? f32(h0) : null;
    const U = f32(u), DT = f32(dt), bias = f32(dtBias), AL = f32(aLog), Bm = f32(bm), Cm = f32(cm), Dv = f32(d), Z = f32(z), G = f32(dy);
    const du = new Float32Array(u.size), ddt = new Float32Array(u.size), dz = new Float32Array(u.size);
    const dbm = new Float64Array(bm.size), dcm = new Float64Array(cm.size);
    const ddtBias = new Float64Array(C), daLog = new Float64Array(C * N), dd = new Float64Array(C);
    // States of one channel over the whole sequence, recomputed here (never stored by the forward).
    const hs = new Float64Array((T + 1) * N), A = new Float64Array(N), delta = new Float64Array(T), gNext = new Float64Array(N);
    const decay = new Float64Array(T * N); // exp(Δ_t A) of the recomputation, reused going back
    for (let b = 0; b < B; b++) {
      for (let c = 0; c < C; c++) {
        for (let n = 0; n < N; n++) A[n] = -Math.exp(AL[c * N + n]);
        for (let n = 0; n < N; n++) hs[n] = H0 ? H0[(b * C + c) * N + n] : 0; // h_{-1} lives in slot 0; h_t in slot t+1
        for (let t = 0; t < T; t++) {
          const r = b * T + t, ut = U[r * C + c];
          const dl = (delta[t] = softplus(DT[r * C + c] + bias[c]));
          for (let n = 0; n < N; n++) {
            const a = (decay[t * N + n] = Math.exp(dl * A[n]));
            hs[(t + 1) * N + n] = a * hs[t * N + n] + dl * ut * Bm[r * N + n];
          }
        }
        gNext.fill(0);
        const dA = new Float64Array(N);
        for (let t = T - 1; t >= 0; t--) {
          const r = b * T + t, ut = U[r * C + c], zt = Z[r * C + c], dl = delta[t];
          let yssm = Dv[c] * ut;
          for (let n = 0; n < N; n++) yssm += hs[(t + 1) * N + n] * Cm[r * N + n];
          const sz = sigmoid(zt), g = G[r * C + c];
          dz[r * C + c] = g * yssm * sz * (1 + zt * (1 - sz)); // out = y·silu(z)
          const gy = g * zt * sz; // ∂L/∂y
          dd[c] += gy * ut;
          let dut = gy * Dv[c], ddl = 0;
          for (let n = 0; n < N; n++) {
            // G_t = gy·C_t + a_{t+1} G_{t+1}: gNext holds a_{t+1}·G_{t+1}
            const Gt = gy * Cm[r * N + n] + gNext[n];
            const a = decay[t * N + n], hPrev = hs[t * N + n];
            dcm[r * N + n] += gy * hs[(t + 1) * N + n];
            dbm[r * N + n] += Gt * dl * ut;
            dut += Gt * dl * Bm[r * N + n];
            ddl += Gt * (Bm[r * N + n] * ut + A[n] * a * hPrev);
            dA[n] += Gt * dl * a * hPrev;
            gNext[n] = a * Gt;
          }
          du[r * C + c] = dut;
          const v = DT[r * C + c] + bias[c];
          const dv = v > 20 ? ddl : ddl * sigmoid(v); // softplus' = σ
          ddt[r * C + c] = dv;
          ddtBias[c] += dv;
        }
        for (let n = 0; n < N; n++) daLog[c * N + n] += dA[n] * A[n]; // A = −exp(aLog) ⇒ dA/daLog = A
      }
    }
    return {
      du: this.make(u.shape, du), ddt: this.make(u.shape, ddt), dz: this.make(u.shape, dz),
      ddtBias: this.make([C], Float32Array.from(ddtBias)), daLog: this.make([C, N], Float32Array.from(daLog)),
      dbm: this.make(bm.shape, Float32Array.from(dbm)), dcm: this.make(cm.shape, Float32Array.from(dcm)), dd: this.make([C], Float32Array.from(dd)),
    };
  }

  sampleRows(logits: Tensor, o: SampleRowsOptions): Tensor {
    const { B, V } = checkSampleRows(logits, o), L = f32(logits), out = new Float32Array(B);
    for (let b = 0; b < B; b++) {
      const x = Float64Array.from(L.subarray(b * V, (b + 1) * V));
      // penalised logits rounded to f32 as the kernel holds them, so that ties break alike
      if (o.penalty) for (const id of o.penalty.ids[b]) x[id] = Math.fround(x[id] > 0 ? x[id] / o.penalty.factor : x[id] * o.penalty.factor);
      let best = 0;
      for (let i = 1; i < V; i++) if (x[i] > x[best]) best = i;
      if (o.temperature > 0) {
        const w = x.map((v) => Math.exp((v - x[best]) / o.temperature));
        let r = o.uniforms![b] * w.reduce((s, v) => s + v, 0), last = best;
        best = -1;
        for (let i = 0; i < V && best < 0; i++) {
          if (w[i] > 0) last = i;
          if ((r -= w[i]) < 0) best = i;
        }
        if (best < 0) best = last;
      }
      out[b] = best;
    }
    return this.make([B], out);
  }

  crossEntropy(logits: Tensor, targets: Tensor, scale: number): { loss: Tensor; dlogits: Tensor } {
    const [R, V] = logits.shape, L = f32(logits), tg = i32(targets), dl = new Float32Array(L.length);
    let loss = 0;
    for (let r = 0; r < R; r++) {
      const y = tg[r];
      if (y < 0) continue;
      if (y >= V) throw new Error(`crossEntropy: target ${y} outside the vocabulary [0, ${V})`);
      const o = r * V;
      let max = -Infinity;
      for (let j = 0; j < V; j++) if (L[o + j] > max) max = L[o + j];
      let sum = 0;
      for (let j = 0; j < V; j++) sum += Math.exp(L[o + j] - max);
      loss += max + Math.log(sum) - L[o + y];
      for (let j = 0; j < V; j++) dl[o + j] = (Math.exp(L[o + j] - max) / sum) * scale;
      dl[o + y] -= scale;
    }
    return { loss: this.make([1], Float32Array.of(loss)), dlogits: this.make(logits.shape, dl) };
  }

  sumSquares(x: Tensor): Tensor {
    let s = 0;
    for (const v of f32(x)) s += v * v;
    return this.make([1], Float32Array.of(s));
  }

  adamw(p: Tensor, g: Tensor, m: Tensor, v: Tensor, hp: AdamWStep): void {
    expectShape('adamw', 'grad', g, p.shape);
    const P = f32(p), Gr = f32(g), Mo = f32(m), Ve = f32(v);
    const bc1 = 1 - hp.beta1 ** hp.step, bc2 = 1 - hp.beta2 ** hp.step, decay = 1 - hp.lr * hp.weightDecay;
    for (let i = 0; i < P.length; i++) {
      const gi = Gr[i] * hp.gradScale;
      Mo[i] = hp.beta1 * Mo[i] + (1 - hp.beta1) * gi;
      Ve[i] = hp.beta2 * Ve[i] + (1 - hp.beta2) * gi * gi;
      P[i] = P[i] * decay - (hp.lr * (Mo[i] / bc1)) / (Math.sqrt(Ve[i] / bc2) + hp.eps);
    }
  }
}
