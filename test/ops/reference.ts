// reference.ts — plain float64 TypeScript references of the K2 op set (norms, RoPE,
// activations, softmax, attention, KV append, shape ops). The native ops are checked against
// these on random inputs; nothing here is fast, everything is obvious.
//
// Legend: rows R (leading dims flattened), H / C the last dim, T tokens, nh query heads, nkv kv
// heads, hd head dim, cap cache capacity. Arrays are row-major like the tensors.
// The confidence_remask reference is lib/decode/{sample,remask,rng}.ts itself (helper T1's).

// ---- norms (norm.cpp) -------------------------------------------------------------------------

export function rmsNormRef(x: ArrayLike<number>, w: ArrayLike<number>, eps: number): Float64Array {
  const H = w.length, R = x.length / H, y = new Float64Array(x.length);
  for (let r = 0; r < R; r++) {
    let ss = 0;
    for (let i = 0; i < H; i++) ss += x[r * H + i] ** 2;
    const d = Math.sqrt(ss / H + eps);
    for (let i = 0; i < H; i++) y[r * H + i] = w[i] * (x[r * H + i] / d);
  }
  return y;
}

export function layerNormRef(x: ArrayLike<number>, w: ArrayLike<number>, b: ArrayLike<number>, eps: number): Float64Array {
  const H = w.length, R = x.length / H, y = new Float64Array(x.length);
  for (let r = 0; r < R; r++) {
    let s = 0;
    for (let i = 0; i < H; i++) s += x[r * H + i];
    const mu = s / H;
    let v = 0;
    for (let i = 0; i < H; i++) v += (x[r * H + i] - mu) ** 2;
    const d = Math.sqrt(v / H + eps);
    for (let i = 0; i < H; i++) y[r * H + i] = ((x[r * H + i] - mu) / d) * w[i] + b[i];
  }
  return y;
}

// ---- RoPE (rope.cpp, docs §2.4) ----------------------------------------------------------------

/** cos/sin tables [T, dim] with the f32 roundings torch applies (inv_freq, the angle). */
export function ropeCosSinRef(pos: ArrayLike<number>, theta: number, dim: number): { cos: Float64Array; sin: Float64Array } {
  const half = dim / 2, T = pos.length;
  const inv = new Float64Array(half);
  for (let j = 0; j < half; j++) inv[j] = Math.fround(1 / Math.fround(theta ** Math.fround((2 * j) / dim)));
  const cos = new Float64Array(T * dim), sin = new Float64Array(T * dim);
  for (let t = 0; t < T; t++)
    for (let j = 0; j < half; j++) {
      const ang = Math.fround(pos[t] * inv[j]);
      cos[t * dim + j] = cos[t * dim + j + half] = Math.cos(ang);
      sin[t * dim + j] = sin[t * dim + j + half] = Math.sin(ang);
    }
  return { cos, sin };
}

/** x [T, nh, hd], cos/sin [T, hd] → x·cos + rotate_half(x)·sin. */
export function ropeRef(x: ArrayLike<number>, cos: ArrayLike<number>, sin: ArrayLike<number>, T: number, nh: number, hd: number): Float64Array {
  const half = hd / 2, y = new Float64Array(T * nh * hd);
  for (let t = 0; t < T; t++)
    for (let h = 0; h < nh; h++) {
      const o = (t * nh + h) * hd;
      for (let d = 0; d < hd; d++) {
        const rot = d < half ? -x[o + d + half] : x[o + d - half];
        y[o + d] = x[o + d] * cos[t * hd + d] + rot * sin[t * hd + d];
      }
    }
  return y;
}

// ---- activations (act.cpp) -------------------------------------------------------------------

/** erf to ~1e-16 relative: Taylor series near 0, continued fraction for erfc further out. */
export function erf(x: number): number {
  if (Number.isNaN(x)) return NaN;
  const a = Math.abs(x);
  if (a < 2.5) {
    // erf(x) = 2/√π Σ (−1)^n x^(2n+1) / (n! (2n+1)); terms fall fast enough for |x| < 2.5.
    let term = a, sum = a;
    for (let n = 1; n < 200; n++) {
      term *= (-a * a) / n;
      const t = term / (2 * n + 1);
      sum += t;
      if (Math.abs(t) < 1e-17 * Math.abs(sum)) break;
    }
    return Math.sign(x) * sum * 2 / Math.sqrt(Math.PI);
  }
  return Math.sign(x) * (1 - erfcLarge(a));
}

/** erfc(a) for a ≥ 2.5 via the Lentz continued fraction (no cancellation). */
function erfcLarge(a: number): number {
  if (a > 27) return 0;
  // erfc(a) = exp(−a²)/√π · 1/(a + (1/2)/(a + 1/(a + (3/2)/(a + 2/(a + ...)))))
  let f = a, C = a, D = 0;
  for (let n = 1; n < 500; n++) {
    const an = n / 2;
    D = a + an * D;
    D = D === 0 ? 1e-300 : 1 / D;
    C = a + an / C;
    if (C === 0) C = 1e-300;
    const delta = C * D;
    f *= delta;
    if (Math.abs(delta - 1) < 1e-16) break;
  }
  return Math.exp(-a * a) / Math.sqrt(Math.PI) / f;
}

/** erfc(−x/√2)·x/2 without cancellation on either side. */
export function geluRef(x: number): number {
  const u = x / Math.SQRT2;
  if (u < -2.5) return 0.5 * x * erfcLarge(-u);  // negative tail: erfc(−u) small, keep it relative
  return 0.5 * x * (1 + erf(u));
}

export function siluRef(x: number): number { return x / (1 + Math.exp(-x)); }

export function geluTanhRef(x: number): number {
  const u = Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x);
  return x / (1 + Math.exp(-2 * u));  // = x/2 · (1 + tanh u)
}

export function softmaxRef(x: ArrayLike<number>, C: number): Float64Array {
  const R = x.length / C, y = new Float64Array(x.length);
  for (let r = 0; r < R; r++) {
    let m = -Infinity;
    for (let i = 0; i < C; i++) m = Math.max(m, x[r * C + i]);  // Math.max propagates NaN
    let s = 0;
    for (let i = 0; i < C; i++) s += Math.exp(x[r * C + i] - m);
    for (let i = 0; i < C; i++) y[r * C + i] = Math.exp(x[r * C + i] - m) / s;
  }
  return y;
}

// ---- attention (attention.cpp): the shared float64 reference, test/helpers/attention-ref.ts ----

export { attentionRef, visible, type AttentionRefOptions, type MaskKind } from '../helpers/attention-ref.js';

// ---- KV cache and shape ops (kv_cache.cpp, shape.cpp) -----------------------------------------

/** cache [nkv, cap, hd] with x [T, nkv, hd] written at positions pos0.. (returns a new array). */
export function kvAppendRef(cache: ArrayLike<number>, x: ArrayLike<number>, nkv: number, cap: number, hd: number, pos0: number): Float64Array {
  const y = Float64Array.from(cache);
  const T = x.length / (nkv * hd);
  for (let t = 0; t < T; t++)
    for (let g = 0; g < nkv; g++)
      for (let d = 0; d < hd; d++) y[(g * cap + pos0 + t) * hd + d] = x[(t * nkv + g) * hd + d];
  return y;
}

export function gatherRowsRef(x: ArrayLike<number>, C: number, idx: ArrayLike<number>): number[] {
  const y: number[] = [];
  for (let i = 0; i < idx.length; i++) for (let c = 0; c < C; c++) y.push(x[idx[i] * C + c]);
  return y;
}

export function scatterRowsRef(dst: ArrayLike<number>, src: ArrayLike<number>, C: number, idx: ArrayLike<number>): number[] {
  const y = Array.from(dst);
  for (let i = 0; i < idx.length; i++) for (let c = 0; c < C; c++) y[idx[i] * C + c] = src[i * C + c];
  return y;
}

export function sliceColsRef(x: ArrayLike<number>, C: number, start: number, len: number): number[] {
  const y: number[] = [];
  for (let r = 0; r < x.length / C; r++) for (let c = start; c < start + len; c++) y.push(x[r * C + c]);
  return y;
}
