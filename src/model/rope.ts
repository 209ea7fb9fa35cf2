// RoPE tables, computed on the host in float64: angle = p·θ_m with θ_m = base^(−2m/hs). A float32
// product p·θ loses the angle past p ≈ 2^24; in float64 positions stay exact far beyond any stream.

/** cos and sin [rows, hs/2] for the positions pos0[b] + t of B sequences of T new tokens. */
export function ropeTables(pos0: Int32Array, T: number, headDim: number, base: number): { cos: Float32Array; sin: Float32Array } {
  const half = headDim / 2, B = pos0.length;
  const cos = new Float32Array(B * T * half), sin = new Float32Array(B * T * half);
  const theta = Array.from({ length: half }, (_, m) => base ** ((-2 * m) / headDim));
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const p = pos0[b] + t, o = (b * T + t) * half;
      for (let m = 0; m < half; m++) {
        const a = p * theta[m];
        cos[o + m] = Math.cos(a);
        sin[o + m] = Math.sin(a);
      }
    }
  }
  return { cos, sin };
}
