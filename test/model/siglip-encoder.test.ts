// The SigLIP encoder + projector (lib/model/siglip.ts encodeSiglipCrops, docs §3.5 steps 5-6)
// and the whole route encodeSiglipImages (steps 1-8) on small random towers written in the
// released layout (model.vision_tower.vision_tower.*, model.mm_projector.{0,2}.*,
// model.image_newline), against the float64 reference of test/model/siglip_reference.ts.
//
// Tolerance: the engine works in f32 (matmul accumulators, attention's online softmax; layer
// norm statistics in double) on the same stored weights the reference reads in f64. With the
// helper's random weights (std 0.08) the projected features are small, |y| ≤ ~0.35, and the f32
// error measured here is 5e-9 … 9e-8 (widest sum: the 588-term patch conv), so TOL = abs 1e-6
// (over 10× margin) — tight enough that even swapping gelu_tanh for exact GELU in the tower
// (a 7e-6 change here) fails. The downsampled merge adds resize_bilinear's f32 source-index
// maths (PyTorch's): a tap weight off by up to ~1.5e-5 times |x1 − x0| ≤ ~0.7 → TOL_DOWN abs
// 1e-5 (measured 1.8e-6).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, OptionError } from '../../lib/errors.js';
import type { RgbImage } from '../../lib/image/decode.js';
import { preprocessSiglipAnyres, preprocessSiglipSingle } from '../../lib/image/siglip.js';
import { Queue } from '../../lib/native/index.js';
import { encodeSiglipCrops, encodeSiglipImages, siglipTokenCount } from '../../lib/model/siglip.js';
import type { SiglipVisionConfig } from '../../lib/weights/config.js';
import { loadWeights, type LoadedWeights } from '../../lib/weights/load.js';
import { writeQwen2Checkpoint, type SiglipDims, type WrittenCheckpoint } from '../helpers/checkpoint.js';
import { expectClose } from '../helpers/compare.js';
import { rng, uniform } from '../helpers/random.js';
import { refMergeAnyres, refMergeSquare, refProject, refSiglipEncodeCrop, type RefSiglipDims } from './siglip_reference.js';

const TOL = { abs: 1e-6 };
const TOL_DOWN = { abs: 1e-5 };

interface Fixture { ck: WrittenCheckpoint; q: Queue; w: LoadedWeights; cfg: SiglipVisionConfig; dims: RefSiglipDims; Ht: number }

const dirs: string[] = [];
afterAll(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

async function fixture(vision: SiglipDims, Ht: number, dtype: 'f32' | 'bf16' | 'f16', seed: number): Promise<Fixture> {
  const dir = mkdtempSync(join(tmpdir(), 'dvl-siglip-'));
  dirs.push(dir);
  const ck = await writeQwen2Checkpoint(dir, { hiddenSize: Ht, numLayers: 1, numHeads: 1, numKvHeads: 1, intermediateSize: 24, vocabSize: 50, vision },
    { dtype, tied: true, shards: 1, layout: 'siglip', seed, diffusion: { blockSize: 4, maskTokenId: 49 } });
  const q = new Queue({ threads: 2, precision: 'exact' });  // float64 references: the exact kernels
  const w = await loadWeights(dir, q);
  const cfg = w.config.vision;
  if (cfg?.kind !== 'siglip') throw new Error('fixture: not a SigLIP config');
  return { ck, q, w, cfg, dims: { ...cfg }, Ht };
}

function close(f: Fixture) { f.w.dispose(); f.q.dispose(); }

/** Float64 reference for crops f32 [n, 3, S, S]: per crop, encoder then projector. */
function refCrops(f: Fixture, pixels: Float32Array, n: number): Float64Array[][] {
  const S = f.cfg.imageSize, sz = 3 * S * S;
  return Array.from({ length: n }, (_, k) => refProject(f.ck.weights, refSiglipEncodeCrop(f.ck.weights, f.dims, pixels.subarray(k * sz, (k + 1) * sz))));
}

function flatten(rows: Float64Array[]): Float64Array {
  const Ht = rows[0].length, out = new Float64Array(rows.length * Ht);
  rows.forEach((r, i) => out.set(r, i * Ht));
  return out;
}

function noiseImage(W: number, H: number, seed: number): RgbImage {
  const r = rng(seed);
  return { width: W, height: H, data: Uint8Array.from({ length: W * H * 3 }, () => Math.floor(r() * 256)) };
}

describe.each([
  ['f32, 4 heads × 6, patch 3 on 13 px (one pixel row/col dropped)', { kind: 'siglip', hiddenSize: 24, numLayers: 2, numHeads: 4, intermediateSize: 33, patchSize: 3, imageSize: 13 }, 20, 'f32'],
  ['bf16, 3 heads × 10, patch 5 on 17 px, 3 layers', { kind: 'siglip', hiddenSize: 30, numLayers: 3, numHeads: 3, intermediateSize: 37, patchSize: 5, imageSize: 17 }, 13, 'bf16'],
  ['f16, 1 head × 7, patch 2 on 7 px', { kind: 'siglip', hiddenSize: 7, numLayers: 1, numHeads: 1, intermediateSize: 5, patchSize: 2, imageSize: 7 }, 9, 'f16'],
] as [string, SiglipDims, number, 'f32' | 'bf16' | 'f16'][])('encodeSiglipCrops (%s)', (_name, vision, Ht, dtype) => {
  it('every crop matches the float64 encoder + projector, for any crops per pass', async () => {
    const f = await fixture(vision, Ht, dtype, vision.hiddenSize + Ht);
    try {
      const S = f.cfg.imageSize, g = Math.floor(S / f.cfg.patchSize), n = 5;
      const pixels = uniform(rng(3), n * 3 * S * S, -1, 1);
      const ref = flatten(refCrops(f, pixels, n).flat());
      for (const per of [1, 2, 5, 8]) {
        const t = encodeSiglipCrops(f.q, f.w, f.cfg, pixels, n, { cropsPerPass: per });
        expect(t.shape).toEqual([n * g * g, Ht]);
        expectClose(await f.q.readF32(t), ref, TOL, `cropsPerPass ${per}`);
        t.dispose();
      }
      expect(() => encodeSiglipCrops(f.q, f.w, f.cfg, pixels, n, { cropsPerPass: 0 })).toThrow(OptionError);
      expect(() => encodeSiglipCrops(f.q, f.w, f.cfg, pixels.subarray(1), n)).toThrow(/encodeSiglipCrops: .* pixel values for 5 crops/);
      expect(() => encodeSiglipCrops(f.q, f.w, { ...f.cfg, projectorType: 'linear' }, pixels, n)).toThrow(ConfigError);
    } finally {
      close(f);
    }
  });
});

describe('encodeSiglipImages (real 384/14 geometry, tiny widths)', () => {
  // 729 patches per crop as in SigLIP2-so400m-patch14-384; hidden 24, 2 heads × 12, 2 layers.
  const vision: SiglipDims = { kind: 'siglip', hiddenSize: 24, numLayers: 2, numHeads: 2, intermediateSize: 19, patchSize: 14, imageSize: 384 };
  let f: Fixture;
  const getF = async () => (f ??= await fixture(vision, 16, 'f32', 77));
  afterAll(() => { if (f) close(f); });

  const anyres: [string, number, number, number, { abs: number }, number][] = [
    ['300×200: 1×1 tile + global view, rows unpadded', 300, 200, 1261, TOL, 1],
    ['1152×768: 3×2 tiles, τ = 1.22 downsample to 44×66, passes of 3 + 3 + 1 crops', 1152, 768, 729 + 44 * 67, TOL_DOWN, 3],
  ];
  it.each(anyres)('single image %s', async (_n, W, H, tokens, tol, cropsPerPass) => {
    const f = await getF();
    const img = noiseImage(W, H, W + H);
    const { features, tokensPerImage } = await encodeSiglipImages(f.q, f.w, f.cfg, [img], { multiImage: false, cropsPerPass });
    expect(tokensPerImage).toEqual([tokens]);
    expect(siglipTokenCount(f.cfg, [W, H], { multiImage: false })).toBe(tokens);
    expect(features.shape).toEqual([tokens, 16]);
    const pv = await preprocessSiglipAnyres(img, { queue: f.q, pinpoints: f.cfg.gridPinpoints });
    const crops = refCrops(f, pv.pixelValues, pv.numCrops);
    const ref = refMergeAnyres(crops, f.ck.weights.get('image_newline')!, [W, H], pv.tiles, 27, 4);
    expectClose(await f.q.readF32(features), flatten(ref), tol, `${W}×${H}`);
    features.dispose();
  });

  it('multi-image: each image square-padded to one crop, 730 rows each, in order', async () => {
    const f = await getF();
    const imgs = [noiseImage(300, 200, 1), noiseImage(57, 190, 2)];
    const { features, tokensPerImage } = await encodeSiglipImages(f.q, f.w, f.cfg, imgs, { multiImage: true, cropsPerPass: 1 });
    expect(tokensPerImage).toEqual([730, 730]);
    const ref: Float64Array[] = [];
    for (const img of imgs) {
      const pv = await preprocessSiglipSingle(img, { queue: f.q });
      ref.push(...refMergeSquare(refCrops(f, pv.pixelValues, 1)[0], f.ck.weights.get('image_newline')!));
    }
    expectClose(await f.q.readF32(features), flatten(ref), TOL, 'two square images');
    features.dispose();
  });

  it('bad calls are typed errors', async () => {
    const f = await getF();
    await expect(encodeSiglipImages(f.q, f.w, f.cfg, [], { multiImage: false })).rejects.toThrow(OptionError);
    await expect(encodeSiglipImages(f.q, f.w, { ...f.cfg, imageSize: 224 }, [noiseImage(4, 4, 1)], { multiImage: false })).rejects.toThrow(/image_size 224/);
    await expect(encodeSiglipImages(f.q, f.w, { ...f.cfg, patchMergeType: 'flat' }, [noiseImage(4, 4, 1)], { multiImage: false })).rejects.toThrow(ConfigError);
  });
});
