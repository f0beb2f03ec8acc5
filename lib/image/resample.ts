// resample.ts — plain TypeScript twin of the native image_resize op: Pillow's BICUBIC resize
// on interleaved u8 pixels, bit for bit (docs §3.1 step 2).
//
// Shapes: src u8 [H, W, C] → u8 [h, w, C], C = 1..4.
//
// This is the readable reference the native kernel (csrc/cpu/ops/image.cpp, whose header lists
// the exactness rules) is tested against on random odd sizes; both are tested against Pillow's
// own bytes (test/fixtures/images). It is also usable without the addon, only slower.

/** Fractional bits of Pillow's fixed-point weights: 32 − 8 (pixel) − 2 (headroom). */
const PRECISION_BITS = 22;

/** Keys cubic kernel, a = −0.5, in the Horner form Pillow's float64 weights come from. */
export function bicubicKernel(x: number): number {
  const a = -0.5;
  if (x < 0) x = -x;
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

/** One axis: output i reads inputs lo[i] .. lo[i]+n[i]-1 with int weights k[i·ksize + j]. */
export interface ResampleAxis {
  ksize: number;
  lo: Int32Array;
  n: Int32Array;
  k: Int32Array;
}

export function resampleAxis(inSize: number, outSize: number): ResampleAxis {
  const scale = inSize / outSize;
  const filterscale = Math.max(scale, 1); // widen the kernel when shrinking (antialias)
  const support = 2 * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const lo = new Int32Array(outSize);
  const n = new Int32Array(outSize);
  const k = new Int32Array(outSize * ksize);
  const w = new Float64Array(ksize);
  for (let i = 0; i < outSize; i++) {
    const center = (i + 0.5) * scale;
    const inv = 1 / filterscale;
    const first = Math.max(0, Math.trunc(center - support + 0.5));
    const last = Math.min(inSize, Math.trunc(center + support + 0.5));
    let sum = 0;
    for (let j = 0; j < last - first; j++) {
      w[j] = bicubicKernel((j + first - center + 0.5) * inv);
      sum += w[j];
    }
    for (let j = 0; j < last - first; j++) {
      const v = sum !== 0 ? w[j] / sum : w[j];
      // Round half away from zero, then truncate toward zero, as C's (int) cast does.
      k[i * ksize + j] = Math.trunc(v < 0 ? -0.5 + v * (1 << PRECISION_BITS) : 0.5 + v * (1 << PRECISION_BITS));
    }
    lo[i] = first;
    n[i] = last - first;
  }
  return { ksize, lo, n, k };
}

function clip8(acc: number): number {
  const v = acc >> PRECISION_BITS;
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/** Pillow `Image.resize((w, h), BICUBIC)` of an interleaved u8 image [H, W, C]. */
export function resizeBicubicRef(src: Uint8Array, W: number, H: number, C: number, w: number, h: number): Uint8Array {
  if (src.length !== W * H * C) throw new RangeError(`resizeBicubicRef: expected ${W * H * C} bytes, got ${src.length}`);
  if (w === W && h === H) return src.slice();
  const horizontal = (img: Uint8Array, row0: number, rows: number): Uint8Array => {
    const ax = resampleAxis(W, w);
    const out = new Uint8Array(rows * w * C);
    for (let r = 0; r < rows; r++)
      for (let x = 0; x < w; x++)
        for (let c = 0; c < C; c++) {
          let acc = 1 << (PRECISION_BITS - 1);
          for (let j = 0; j < ax.n[x]; j++) acc += img[((row0 + r) * W + ax.lo[x] + j) * C + c] * ax.k[x * ax.ksize + j];
          out[(r * w + x) * C + c] = clip8(acc);
        }
    return out;
  };
  if (h === H) return horizontal(src, 0, H);
  const vert = resampleAxis(H, h);
  // Only the rows the vertical pass reads go through the horizontal one.
  const row0 = vert.lo[0];
  const row1 = vert.lo[h - 1] + vert.n[h - 1];
  const mid = w === W ? src.subarray(row0 * W * C, row1 * W * C) : horizontal(src, row0, row1 - row0);
  const out = new Uint8Array(h * w * C);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++)
      for (let c = 0; c < C; c++) {
        let acc = 1 << (PRECISION_BITS - 1);
        for (let j = 0; j < vert.n[y]; j++) acc += mid[((vert.lo[y] - row0 + j) * w + x) * C + c] * vert.k[y * vert.ksize + j];
        out[(y * w + x) * C + c] = clip8(acc);
      }
  return out;
}
