// The CPU backend: every op as a plain loop. It is the reference the WGSL kernels are tested
// against, and the fallback where no WebGPU adapter exists. Sums are accumulated in float64
// (JavaScript numbers) and stored as float32.
import {
  type AttentionArgs, type Backend, type ConvResult, type KvCache, type ScanResult, type Tensor,
  ScopedBackend, expectShape, numel, shapeStr,
} from '../../core/backend.js';

export class CpuTensor implements Tensor {
  readonly size: number;
  constructor(
    readonly shape: readonly number[],
    readonly data: Float32Array | Int32Array,
    readonly dtype: 'f32' | 'i32' = data instanceof Int32Array ? 'i32' : 'f32',
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

export class CpuBackend extends ScopedBackend implements Backend {
  readonly name = 'cpu' as const;

  private make(shape: readonly number[], data?: Float32Array): CpuTensor {
    return this.track(new CpuTensor(shape, data ?? new Float32Array(numel(shape))));
  }

  tensor(data: Float32Array, shape: readonly number[]): Tensor {
    return this.make(shape, data);
  }
  ids(data: Int32Array, shape: readonly number[]): Tensor {
    return this.track(new CpuTensor(shape, data));
  }
  zeros(shape: readonly number[]): Tensor {
    return this.make(shape);
  }
  async read(t: Tensor): Promise<Float32Array> {
    return Float32Array.from(f32(t));
  }
  dispose(_t: Tensor): void { /* garbage collected */ }
  reshape(t: Tensor, shape: readonly number[]): Tensor {
    if (numel(shape) !== t.size) throw new Error(`reshape: ${shapeStr(t.shape)} has ${t.size} values, ${shapeStr(shape)} needs ${numel(shape)}`);
    return this.track(new CpuTensor(shape, (t as CpuTensor).data));
  }
  async flush(): Promise<void> {}

  embedding(table: Tensor, ids: Tensor): Tensor {
    const [V, D] = table.shape;
    const id = i32(ids), w = f32(table);
    const out = new Float32Array(id.length * D);
    for (let n = 0; n < id.length; n++) {
      const v = id[n];
      if (v < 0 || v >= V) throw new Error(`embedding: token id ${v} is outside the vocabulary [0, ${V})`);
      out.set(w.subarray(v * D, v * D + D), n * D);
    }
    return this.make([id.length, D], out);
  }

  matmul(x: Tensor, w: Tensor): Tensor {
    const [M, K] = x.shape, [N, K2] = w.shape;
    if (x.shape.length !== 2 || w.shape.length !== 2 || K !== K2) {
      throw new Error(`matmul: x ${shapeStr(x.shape)} and w ${shapeStr(w.shape)} do not fit (x·wᵀ needs equal last dims)`);
    }
    const a = f32(x), b = f32(w), out = new Float32Array(M * N);
    for (let m = 0; m < M; m++) {
      const ao = m * K;
      for (let n = 0; n < N; n++) {
        const bo = n * K;
        let s = 0;
        for (let k = 0; k < K; k++) s += a[ao + k] * b[bo + k];
        out[m * N + n] = s;
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
    const out = new Float32Array(ts.reduce((s, t) => s + t.size, 0));
    let o = 0;
    for (const t of ts) { out.set(f32(t), o); o += t.size; }
    return this.make([ts.reduce((s, t) => s + t.shape[0], 0), ...rest], out);
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

  attention(q: Tensor, k: Tensor, v: Tensor, cache: KvCache | null, args: AttentionArgs): Tensor {
    const { nHeads: H, nKvHeads: Hkv, headDim: hs, window, pos0 } = args;
    const [B, T] = q.shape;
    expectShape('attention', 'q', q, [B, T, H * hs]);
    expectShape('attention', 'k', k, [B, T, Hkv * hs]);
    expectShape('attention', 'v', v, [B, T, Hkv * hs]);
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

  writeKv(cache: Tensor, kNew: Tensor, pos0: Int32Array): void {
    const [B, C, F] = cache.shape, T = kNew.shape[1];
    expectShape('writeKv', 'new rows', kNew, [B, T, F]);
    const c = f32(cache), n = f32(kNew);
    for (let b = 0; b < B; b++) {
      for (let t = Math.max(0, T - C); t < T; t++) {
        const slot = (pos0[b] + t) % C;
        c.set(n.subarray((b * T + t) * F, (b * T + t + 1) * F), (b * C + slot) * F);
      }
    }
  }

  resizeRows(t: Tensor, newC: number): Tensor {
    const [B, C, F] = t.shape, a = f32(t), out = new Float32Array(B * newC * F);
    const keep = Math.min(C, newC);
    for (let b = 0; b < B; b++) out.set(a.subarray(b * C * F, (b * C + keep) * F), b * newC * F);
    return this.make([B, newC, F], out);
  }

  conv1dSilu(x: Tensor, w: Tensor, bias: Tensor, state: Tensor | null): ConvResult {
    const [B, T, C] = x.shape, K = w.shape[1], H = K - 1;
    expectShape('conv1dSilu', 'w', w, [C, K]);
    expectShape('conv1dSilu', 'b', bias, [C]);
    if (state) expectShape('conv1dSilu', 'state', state, [B, C, H]);
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

  selectiveScan(
    u: Tensor, dt: Tensor, dtBias: Tensor, aLog: Tensor,
    bm: Tensor, cm: Tensor, d: Tensor, z: Tensor, h0: Tensor | null,
  ): ScanResult {
    const [B, T, C] = u.shape, N = aLog.shape[1];
    for (const [name, t] of [['dt', dt], ['z', z]] as const) expectShape('selectiveScan', name, t, [B, T, C]);
    for (const [name, t] of [['B', bm], ['C', cm]] as const) expectShape('selectiveScan', name, t, [B, T, N]);
    expectShape('selectiveScan', 'aLog', aLog, [C, N]);
    if (h0) expectShape('selectiveScan', 'h0', h0, [B, C, N]);
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
}
