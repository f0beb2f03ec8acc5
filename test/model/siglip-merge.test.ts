// The SigLIP merge (docs §3.5 steps 7-8) on the addon: the resize_bilinear op against the
// float64 interpolate of test/model/siglip_reference.ts, then mergeSiglipFeatures (unpad,
// anyres_max downsample, image_newline, square mode, several images in one call) on random
// projected features against refMergeAnyres / refMergeSquare.
//
// Tolerances: without a downsample the merge is a pure row gather, so it must be bit-exact.
// resize_bilinear computes, like PyTorch's CPU kernel for f32, the source position
// scale·(d + 0.5) − 0.5 in f32: at indices up to ~140 one f32 ulp is ~1.5e-5, so a weight can
// differ from the float64 one by ~1e-5, moving an output by ~1e-5·|x1 − x0| (≈ 3e-5 for N(0,1)
// features); the 4-tap sum itself adds a few ulps. abs 1e-4 + rel 1e-5 covers that with margin
// while a wrong tap (neighbour, half-pixel offset, align_corners = true) errs by ~1e-1 or more.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { selectBestResolution, SIGLIP_PINPOINTS } from '../../lib/image/siglip.js';
import { Queue, tensorFromArray } from '../../lib/native/index.js';
import { anyresLayout, mergeSiglipFeatures, type MergePlan } from '../../lib/model/siglip.js';
import { expectClose } from '../helpers/compare.js';
import { normal, rng } from '../helpers/random.js';
import { refBilinear, refMergeAnyres, refMergeSquare } from './siglip_reference.js';

const TOL_BILINEAR = { abs: 1e-4, rel: 1e-5 };
const EXACT = { abs: 0 };

let q: Queue;
beforeAll(() => { q = new Queue({ threads: 2, precision: 'exact' }); });
afterAll(() => q.dispose());

describe('resize_bilinear (align_corners = false, no antialias)', () => {
  const cases: [number, number, number, number, number][] = [
    // h, w, C → oh, ow
    [1, 1, 3, 1, 1], [1, 1, 3, 3, 5], [2, 2, 1, 1, 1], [7, 13, 5, 3, 4], [5, 3, 33, 11, 7],
    [75, 135, 3, 40, 72], [54, 73, 7, 46, 62], [3, 1, 2, 7, 1], [1, 127, 4, 1, 33],
  ];
  it.each(cases)('[%i, %i, %i] → %i×%i', async (h, w, C, oh, ow) => {
    const x = normal(rng(h * 1000 + w * 10 + C), h * w * C, 1);
    const t = tensorFromArray('f32', [h, w, C], x);
    const y = q.resizeBilinear(t, oh, ow);
    expect(y.shape).toEqual([oh, ow, C]);
    const got = await q.readF32(y);
    const map = Array.from({ length: C }, (_, c) => Array.from({ length: h }, (_, r) => Float64Array.from({ length: w }, (_, col) => x[(r * w + col) * C + c])));
    const ref = refBilinear(map, oh, ow);
    const flat = new Float64Array(oh * ow * C);
    for (let c = 0; c < C; c++) for (let r = 0; r < oh; r++) for (let col = 0; col < ow; col++) flat[(r * ow + col) * C + c] = ref[c][r][col];
    expectClose(got, flat, TOL_BILINEAR, `[${h}, ${w}, ${C}] → ${oh}×${ow}`);
    if (oh === h && ow === w) expectClose(got, x, EXACT, 'same size is the identity');
    t.dispose(); y.dispose();
  });

  it('NaN in the input reaches the outputs that read it, and only those', async () => {
    const x = new Float32Array(4 * 4).fill(1);
    x[0] = NaN;  // row 0, col 0, C = 1
    const t = tensorFromArray('f32', [4, 4, 1], x);
    const got = await q.readF32(q.resizeBilinear(t, 2, 2));
    // Downscale by 2: output (0, 0) samples source 0.5 → taps rows/cols 0 and 1.
    expect(Number.isNaN(got[0])).toBe(true);
    expect(Array.from(got.subarray(1))).toEqual([1, 1, 1]);
    t.dispose();
  });

  it('bad input is a typed error naming the op', () => {
    const t2 = tensorFromArray('f32', [4, 4], new Float32Array(16));
    expect(() => q.resizeBilinear(t2, 2, 2)).toThrow(/resize_bilinear: input 0 must have rank 3/);
    const t3 = tensorFromArray('f32', [4, 4, 1], new Float32Array(16));
    expect(() => q.resizeBilinear(t3, 0, 2)).toThrow(/resize_bilinear: height and width must be >= 1/);
    const ti = tensorFromArray('i32', [2, 2, 1], new Int32Array(4));
    expect(() => q.resizeBilinear(ti, 2, 2)).toThrow(/resize_bilinear: input 0 must be f32/);
    t2.dispose(); t3.dispose(); ti.dispose();
  });
});

describe('mergeSiglipFeatures', () => {
  /** Random projected crops, each P rows of [Ht], as float64 rows and one f32 tensor. */
  function randomCrops(n: number, P: number, Ht: number, seed: number) {
    const flat = normal(rng(seed), n * P * Ht, 1);
    const crops = Array.from({ length: n }, (_, k) => Array.from({ length: P }, (_, i) => Float64Array.from(flat.subarray((k * P + i) * Ht, (k * P + i + 1) * Ht))));
    return { flat, crops };
  }

  async function check(images: { size: [number, number]; square?: boolean }[], g: number, maxPatches: number | null, Ht: number, seed: number, pinpoints: readonly (readonly [number, number])[], crop: number) {
    const P = g * g;
    const plans: MergePlan[] = [];
    const counts: number[] = [];
    let crop0 = 0;
    for (const im of images) {
      if (im.square) { plans.push({ kind: 'square', crop0 }); counts.push(1); crop0 += 1; continue; }
      const [tw, th] = selectBestResolution(im.size[0], im.size[1], pinpoints);
      const layout = anyresLayout(im.size, [tw / crop, th / crop], g, maxPatches);
      plans.push({ kind: 'anyres', crop0, layout });
      const n = 1 + layout.tiles[0] * layout.tiles[1];
      counts.push(n);
      crop0 += n;
    }
    const { flat, crops } = randomCrops(crop0, P, Ht, seed);
    const newline = normal(rng(seed + 1), Ht, 1);
    const projT = tensorFromArray('f32', [crop0 * P, Ht], flat);
    const nlT = tensorFromArray('f32', [Ht], newline);
    const out = mergeSiglipFeatures(q, projT, nlT, plans, g);
    const got = await q.readF32(out);
    const ref: Float64Array[] = [];
    let k = 0;
    images.forEach((im, i) => {
      const mine = crops.slice(k, k + counts[i]);
      k += counts[i];
      const p = plans[i];
      ref.push(...(p.kind === 'square' ? refMergeSquare(mine[0], newline) : refMergeAnyres(mine, newline, im.size, p.layout.tiles, g, maxPatches)));
    });
    expect(out.shape).toEqual([ref.length, Ht]);
    const anyDown = plans.some((p) => p.kind === 'anyres' && p.layout.downsampled);
    const flatRef = new Float64Array(ref.length * Ht);
    ref.forEach((r, i) => flatRef.set(r, i * Ht));
    expectClose(got, flatRef, anyDown ? TOL_BILINEAR : EXACT, images.map((im) => `${im.square ? 'square ' : ''}${im.size.join('×')}`).join(' + '));
    projT.dispose(); nlT.dispose(); out.dispose();
    return { tokens: ref.length, plans };
  }

  // Real geometry: g = 27, 384 crops, the 36 pinpoints; a narrow Ht keeps the reference quick.
  const real: [string, [number, number], number][] = [
    ['300×200 (1×1 tiles, rows unpadded)', [300, 200], 1261],
    ['640×480 (2×2)', [640, 480], 2929],
    ['1024×768 (3×2, downsampled)', [1024, 768], 3627],
    ['1920×1080 (5×3, downsampled)', [1920, 1080], 3649],
    ['200×900 (tall: cols unpadded)', [200, 900], 0],
    ['1152×768 (exact 3:2, nothing unpadded, downsampled)', [1152, 768], 729 + 44 * 67],
  ];
  it.each(real)('%s', async (_name, size, tokens) => {
    const r = await check([{ size }], 27, 4, 5, size[0] + size[1], SIGLIP_PINPOINTS, 384);
    if (tokens) expect(r.tokens).toBe(tokens);
  });

  it('several images in one call: anyres then square crops, offsets kept', async () => {
    await check([{ size: [640, 480] }, { size: [300, 200], square: true }, { size: [1920, 1080] }], 27, 4, 3, 99, SIGLIP_PINPOINTS, 384);
    await check([{ size: [10, 10], square: true }, { size: [20, 5], square: true }], 27, 4, 7, 98, SIGLIP_PINPOINTS, 384);
  });

  it('small grids (g = 4, pinpoints of 12-pixel crops): odd aspect ratios, forced downsample, plain anyres', async () => {
    const pins: [number, number][] = [];
    for (let i = 1; i <= 3; i++) for (let j = 1; j <= 3; j++) pins.push([12 * i, 12 * j]);
    for (const [W, H] of [[13, 7], [7, 13], [36, 36], [50, 17], [5, 41], [24, 12]] as [number, number][]) {
      await check([{ size: [W, H] }], 4, 1, 6, W * 7 + H, pins, 12);   // max 1 patch: downsamples big maps
      await check([{ size: [W, H] }], 4, null, 6, W * 7 + H, pins, 12);  // 'anyres': never
    }
  });

  it('a plan that needs more crops than given is a ShapeError', () => {
    const projT = tensorFromArray('f32', [16, 2], new Float32Array(32));
    const nlT = tensorFromArray('f32', [2], new Float32Array(2));
    const layout = anyresLayout([30, 20], [2, 1], 4, null);
    expect(() => mergeSiglipFeatures(q, projT, nlT, [{ kind: 'anyres', crop0: 0, layout }], 4)).toThrow(/needs 3 crops/);
    const bad = tensorFromArray('f32', [3], new Float32Array(3));
    expect(() => mergeSiglipFeatures(q, projT, bad, [{ kind: 'square', crop0: 0 }], 4)).toThrow(/image_newline is \[3\]/);
    projT.dispose(); nlT.dispose(); bad.dispose();
  });
});
