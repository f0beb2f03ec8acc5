// q8.ts — a TypeScript model of the q8 format and the fast matmuls' activation rounding
// (csrc/core/dtype.h "q8 layout", csrc/cpu/kernels.h ActQ8), written from their stated rules
// so tests can check the native bytes and values exactly and compute float64 references.
const f32 = Math.fround;
const TINY = 2 ** -96;
const buf = new Float32Array(1);
const bits = new Uint32Array(buf.buffer);

export function f32Bits(v: number): number { buf[0] = v; return bits[0]; }
export function fromBits(u: number): number { bits[0] = u >>> 0; return buf[0]; }

/** Round half to even of an f32 value (what vcvtps2dq does in the default mode). */
export function rne(v: number): number {
  const r = Math.round(v);
  return Math.abs(v - Math.trunc(v)) === 0.5 ? 2 * Math.round(v / 2) : r;
}

/** dtype.h f32_to_bf16_daz, as the value it means: NaN stays NaN, subnormals → ±0, else RNE. */
export function bf16Daz(v: number): number {
  const u = f32Bits(v);
  if ((u & 0x7f800000) === 0) return (u & 0x80000000) ? -0 : 0;
  if ((u & 0x7fffffff) > 0x7f800000) return NaN;
  const r = ((u + 0x7fff + ((u >>> 16) & 1)) >>> 16) & 0xffff;
  return fromBits((r << 16) >>> 0);
}

/** A bf16 bit pattern's value as vdpbf16ps sees it (subnormal inputs count as zero). */
export function bf16DazValue(h: number): number {
  if ((h & 0x7f80) === 0) return 0;
  return fromBits((h << 16) >>> 0);
}

export const q8Blocks = (K: number) => Math.ceil(K / 32);
export const q8RowBytes = (K: number) => Math.ceil((q8Blocks(K) * 34) / 64) * 64;
/** Byte offset of value k inside a row's quants. */
export function q8Offset(K: number, k: number): number {
  const nb = q8Blocks(K), b = Math.floor(k / 32), t = k % 32;
  const g0 = Math.floor(b / 16) * 16, g = Math.min(16, nb - g0);
  return g0 * 32 + Math.floor(t / 4) * 4 * g + 4 * (b - g0) + (t % 4);
}

export interface Q8Rows {
  K: number;
  rows: number;
  /** Per row, per block: scale (NaN for a non-finite block) and 32 quants (−127..127). */
  scale: Float64Array;
  quant: Int8Array;
}

/**
 * The shared block rule of both quantisers: per block of 32 (the last zero-padded), amax over the
 * values; a non-finite value → scale NaN and quants 0; amax < 2^-96 → scale 0 and quants 0; else
 * scaleOf(amax) gives the stored scale and the multiplier, and q = rne(v · multiplier) clamped.
 */
function quantize(v: Float32Array, rows: number, K: number, scaleOf: (amax: number) => { d: number; id: number }): Q8Rows {
  const nb = q8Blocks(K);
  const scale = new Float64Array(rows * nb), quant = new Int8Array(rows * nb * 32);
  for (let r = 0; r < rows; r++)
    for (let b = 0; b < nb; b++) {
      const k0 = b * 32, n = Math.min(32, K - k0);
      let amax = 0, ok = true;
      for (let t = 0; t < n; t++) { const x = v[r * K + k0 + t]; if (!Number.isFinite(x)) ok = false; amax = Math.max(amax, Math.abs(x)); }
      const { d, id } = !ok ? { d: NaN, id: 0 } : amax >= TINY ? scaleOf(amax) : { d: 0, id: 0 };
      scale[r * nb + b] = d;
      for (let t = 0; t < 32; t++) {
        const q = t < n && ok ? rne(f32(v[r * K + k0 + t] * id)) : 0;
        quant[(r * nb + b) * 32 + t] = Math.max(-127, Math.min(127, q));
      }
    }
  return { K, rows, scale, quant };
}

/** Weight quantisation (dtype.h): bf16 scale rounded up from amax/127, q = rne(w · (1/d)). */
export function quantizeWeights(w: Float32Array, rows: number, K: number): Q8Rows {
  return quantize(w, rows, K, (amax) => {
    let u = f32Bits(f32(amax / 127));
    if (u & 0xffff) u = ((u + 0x10000) & 0xffff0000) >>> 0;
    const d = fromBits(u);
    return { d, id: f32(1 / d) };
  });
}

/** Activation quantisation (kernels.h ActQ8): f32 scale amax/127, q = rne(x · (127/amax)). */
export function quantizeActivations(x: Float32Array, rows: number, K: number): Q8Rows {
  return quantize(x, rows, K, (amax) => ({ d: f32(amax / 127), id: f32(127 / amax) }));
}

/** The bytes of a q8 tensor holding these rows (dtype.h layout). */
export function q8Bytes(q: Q8Rows): Uint8Array {
  const { K, rows } = q, nb = q8Blocks(K), rb = q8RowBytes(K);
  const out = new Uint8Array(rows * rb);
  const dv = new DataView(out.buffer);
  for (let r = 0; r < rows; r++) {
    for (let k = 0; k < nb * 32; k++) out[r * rb + q8Offset(K, k)] = q.quant[(r * nb) * 32 + k] + 128;
    for (let b = 0; b < nb; b++) {
      const s = q.scale[r * nb + b];
      dv.setUint16(r * rb + nb * 32 + 2 * b, Number.isNaN(s) ? 0x7fc0 : f32Bits(s) >>> 16, true);
    }
  }
  return out;
}
/** Dequantised values (quant · scale), exact as f32 products. */
export function dequantize(q: Q8Rows): Float32Array {
  const { K, rows } = q, nb = q8Blocks(K);
  const out = new Float32Array(rows * K);
  for (let r = 0; r < rows; r++)
    for (let k = 0; k < K; k++) out[r * K + k] = q.quant[(r * nb) * 32 + k] * q.scale[r * nb + Math.floor(k / 32)];
  return out;
}

/**
 * float64 reference of the q8 'fast' matmul over the quantised values, y[m, n] = Σ_b d_w·d_x·I_b
 * (exact in float64 but for the final sum), and the kernel's accumulation bound
 * (nb + 6)·2⁻²⁴·Σ_b |d_w·d_x·I_b| + 2⁻²⁴·|bias|.
 */
export function q8FastReference(xq: Q8Rows, wq: Q8Rows, bias: Float32Array | null, M: number, N: number) {
  const K = xq.K, nb = q8Blocks(K);
  const ref = new Float64Array(M * N), tol = new Float64Array(M * N);
  for (let m = 0; m < M; m++)
    for (let n = 0; n < N; n++) {
      let s = 0, a = 0;
      for (let b = 0; b < nb; b++) {
        let I = 0;
        const xo = (m * nb + b) * 32, wo = (n * nb + b) * 32;
        for (let t = 0; t < 32; t++) I += xq.quant[xo + t] * wq.quant[wo + t];
        const term = xq.scale[m * nb + b] * wq.scale[n * nb + b] * I;
        s += term;
        a += Math.abs(term);
      }
      const bv = bias ? bias[n] : 0;
      ref[m * N + n] = s + bv;
      tol[m * N + n] = (nb + 6) * 2 ** -24 * a + 2 ** -24 * Math.abs(bv) + 2 ** -149;
    }
  return { ref, tol };
}
