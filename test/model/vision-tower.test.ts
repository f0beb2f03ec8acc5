// The Qwen2.5-VL vision tower (lib/model/qwen25vl_vision.ts) against the float64 reference
// (test/model/vision_reference.ts) on small random towers with the real patch 14, temporal
// patch 2, merge 2 and window 112 px (M = 4 merge units), so the window logic is the real one:
// odd unit grids, 1×N and N×1, exact multiples of the window (the reference's extra empty
// window), two frames, several images per call; full-attention blocks at some indexes.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Queue, tensorFromArray } from '../../lib/native/index.js';
import { loadWeights, type LoadedWeights } from '../../lib/weights/load.js';
import type { QwenVisionConfig } from '../../lib/weights/config.js';
import { Qwen25VisionTower, windowLayout } from '../../lib/model/qwen25vl_vision.js';
import { ShapeError } from '../../lib/errors.js';
import { preprocessQwen2vl } from '../../lib/image/qwen2vl.js';
import { writeQwen2Checkpoint, type CheckpointLayout, type QwenVisionDims, type WrittenCheckpoint } from '../helpers/checkpoint.js';
import { fromBf16, fromF16, normal, rng, toBf16, toF16 } from '../helpers/random.js';
import { expectClose } from '../helpers/compare.js';
import { referenceVision, type RefImage } from './vision_reference.js';

const dirs: string[] = [];
afterAll(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

interface Tower { ck: WrittenCheckpoint; q: Queue; weights: LoadedWeights; cfg: QwenVisionConfig; tower: Qwen25VisionTower }

async function makeTower(vision: Omit<QwenVisionDims, 'kind' | 'patchSize' | 'temporalPatchSize' | 'spatialMergeSize'>, layout: CheckpointLayout, dtype: 'f32' | 'bf16' | 'f16', seed: number): Promise<Tower> {
  const dir = mkdtempSync(join(tmpdir(), 'dvl-vis-'));
  dirs.push(dir);
  const ck = await writeQwen2Checkpoint(dir, {
    hiddenSize: 24, numLayers: 1, numHeads: 2, numKvHeads: 1, intermediateSize: 32, vocabSize: 40,
    vision: { kind: 'qwen2_5_vl', patchSize: 14, temporalPatchSize: 2, spatialMergeSize: 2, ...vision },
  }, { dtype, tied: true, shards: 1, layout, seed, diffusion: layout === 'stock' ? undefined : { blockSize: 8, maskTokenId: 39 } });
  const q = new Queue({ threads: 2, precision: 'exact' });  // float64 references: the exact kernels
  const weights = await loadWeights(dir, q, { vision: true });
  const cfg = weights.config.vision;
  if (cfg?.kind !== 'qwen2_5_vl') throw new Error('expected a Qwen2.5-VL vision config');
  return { ck, q, weights, cfg, tower: new Qwen25VisionTower(q, weights, cfg) };
}

function randomImage(r: () => number, grid: [number, number, number]): RefImage {
  // Normalised CLIP pixels are roughly N(0, 1).
  return { pixelValues: normal(r, grid[0] * grid[1] * grid[2] * 1176, 1), grid };
}

const roundFor = (dtype: 'f32' | 'bf16' | 'f16') => (x: number) =>
  dtype === 'bf16' ? fromBf16(toBf16(Float32Array.of(x)))[0] : dtype === 'f16' ? fromF16(toF16(Float32Array.of(x)))[0] : x;

async function check(t: Tower, images: RefImage[], dtype: 'f32' | 'bf16' | 'f16', label: string): Promise<void> {
  const out = t.tower.encode(images);
  const got = await t.q.readF32(out);
  out.dispose();
  const U = images.reduce((a, im) => a + (im.grid[0] * im.grid[1] * im.grid[2]) / 4, 0);
  expect(out.shape ?? [U, t.cfg.outHiddenSize]).toEqual([U, t.cfg.outHiddenSize]);
  const ref = referenceVision(t.cfg, t.ck.weights, images, roundFor(dtype));
  const flat = new Float64Array(U * t.cfg.outHiddenSize);
  ref.forEach((row, i) => flat.set(row, i * t.cfg.outHiddenSize));
  // Tolerance: the tower computes in f32 with the same (stored, rounded) weights and input as
  // the float64 reference, so only f32 accumulation differs: matmuls with K up to 1176 (patch
  // embed), softmax and RMSNorm, over ≤ 4 residual blocks and the merger (K = 4C). Measured
  // max error is ≤ 1.2e-6 on outputs of magnitude ~1; 2e-5 abs + 2e-5 rel leaves >15× margin,
  // while a logic error (tried: window blocks attending over the whole image) moves outputs by
  // ≥ 3e-3.
  expectClose(got, flat, { abs: 2e-5, rel: 2e-5 }, label);
}

describe('windowLayout (docs §3.3 step 3)', () => {
  const cfg = { windowSize: 112, spatialMergeSize: 2, patchSize: 14 };
  it('cuts the unit grid into 4×4 windows, row-major, padding skipped', () => {
    // 5×6 units: windows (rows 0-3 | 4) × (cols 0-3 | 4-5).
    const l = windowLayout([[1, 10, 12]], cfg);
    expect(l.rows).toBe(120);
    const w0 = [0, 1, 2, 3, 6, 7, 8, 9, 12, 13, 14, 15, 18, 19, 20, 21];
    const w1 = [4, 5, 10, 11, 16, 17, 22, 23];
    expect(Array.from(l.windowIndex)).toEqual([...w0, ...w1, 24, 25, 26, 27, 28, 29]);
    expect(l.cuWindowSeqlens).toEqual([0, 64, 96, 112, 120]);
    expect(l.cuSeqlens).toEqual([0, 120]);
  });
  it('an exact multiple of the window adds only an empty window (which vanishes); images and frames offset', () => {
    const l = windowLayout([[1, 8, 8], [2, 2, 4]], cfg);
    // Image 0: 4×4 units = one window. Image 1: 1×2 units per frame, two frames.
    expect(Array.from(l.windowIndex)).toEqual([...Array.from({ length: 16 }, (_, i) => i), 16, 17, 18, 19]);
    expect(l.cuWindowSeqlens).toEqual([0, 64, 72, 80]);
    expect(l.cuSeqlens).toEqual([0, 64, 72, 80]);
  });
});

describe('Qwen25VisionTower vs float64 reference', () => {
  it('released bf16, depth 4, full attention at 1 and 3: odd, 1×N, N×1, exact-multiple grids', async () => {
    const t = await makeTower({ depth: 4, hiddenSize: 32, numHeads: 2, intermediateSize: 48, fullAttBlockIndexes: [1, 3] }, 'released', 'bf16', 11);
    try {
      const r = rng(5);
      // Grids in patches [t, gh, gw]; units are gh/2 × gw/2.
      for (const g of [[1, 6, 10], [1, 2, 14], [1, 12, 2], [1, 8, 8], [1, 10, 18], [1, 2, 2]] as [number, number, number][]) {
        await check(t, [randomImage(r, g)], 'bf16', `grid ${g.join('×')}`);
      }
    } finally { t.weights.dispose(); t.q.dispose(); }
  }, 120_000);

  it('converted f32, 4 heads, full attention at 0 and 2: two images in one call, and a two-frame grid', async () => {
    const t = await makeTower({ depth: 4, hiddenSize: 64, numHeads: 4, intermediateSize: 80, fullAttBlockIndexes: [0, 2] }, 'converted', 'f32', 12);
    try {
      const r = rng(6);
      await check(t, [randomImage(r, [1, 6, 18]), randomImage(r, [1, 10, 4])], 'f32', 'two images');
      await check(t, [randomImage(r, [2, 4, 10])], 'f32', 'two frames');
      await check(t, [randomImage(r, [1, 2, 2]), randomImage(r, [2, 4, 2]), randomImage(r, [1, 8, 12])], 'f32', 'three images');
    } finally { t.weights.dispose(); t.q.dispose(); }
  }, 120_000);

  it('stock f16 (Qwen2.5-VL naming), no full-attention blocks', async () => {
    const t = await makeTower({ depth: 2, hiddenSize: 48, numHeads: 3, intermediateSize: 40, fullAttBlockIndexes: [] }, 'stock', 'f16', 13);
    try {
      await check(t, [randomImage(rng(7), [1, 14, 6])], 'f16', 'stock f16');
    } finally { t.weights.dispose(); t.q.dispose(); }
  }, 120_000);

  it('encodeImages (resized u8 tensors cut into rows by patch_rows in the plan) = encode(preprocessQwen2vl) bit for bit', async () => {
    for (const dtype of ['bf16', 'f16', 'f32'] as const) {
      const t = await makeTower({ depth: 2, hiddenSize: 32, numHeads: 2, intermediateSize: 48, fullAttBlockIndexes: [1] }, 'released', dtype, 21);
      try {
        const r = rng(9);
        const image = (w: number, h: number) => ({ data: Uint8Array.from({ length: w * h * 3 }, () => Math.floor(r() * 256)), width: w, height: h });
        // A small picture, a larger one, the small one again, and two in one call — through both
        // paths: the patch rows in JS (encode) and the u8 images (encodeImages). Every call is
        // queued before any is read, so each must have taken its own copy of its input.
        const pics = [image(56, 28), image(84, 112), image(56, 28), image(28, 28)];
        const bits = (a: Float32Array) => new Uint32Array(a.buffer, a.byteOffset, a.length);
        const lists = [[pics[0]], [pics[1]], [pics[2]], [pics[3], pics[1]]];
        const fromImages = lists.map((list) => t.tower.encodeImages(list.map((im) => ({ image: tensorFromArray('u8', [im.height, im.width, 3], im.data), grid: [1, im.height / 14, im.width / 14] }))));
        const fromRows = await Promise.all(lists.map(async (list) => t.tower.encode(await Promise.all(list.map((im) => preprocessQwen2vl(im, { minPixels: 1, maxPixels: 1 << 20 }))))));
        for (const [i] of lists.entries()) {
          const [a, b] = [await t.q.readF32(fromImages[i]), await t.q.readF32(fromRows[i])];
          expect(a.length).toBe(b.length);
          expect(a.some(Number.isNaN)).toBe(false);
          expect(bits(a), `${dtype}, call ${i}`).toEqual(bits(b));
          fromImages[i].dispose();
          fromRows[i].dispose();
        }
        const u8 = tensorFromArray('u8', [28, 56, 3], pics[0].data);
        expect(() => t.tower.encodeImages([{ image: u8, grid: [1, 4, 2] }])).toThrow(/does not match grid/);
        expect(() => t.tower.encodeImages([])).toThrow(ShapeError);
      } finally { t.weights.dispose(); t.q.dispose(); }
    }
  }, 120_000);

  it('rejects bad grids and pixel counts with ShapeErrors naming the image', async () => {
    const t = await makeTower({ depth: 1, hiddenSize: 32, numHeads: 2, intermediateSize: 32, fullAttBlockIndexes: [] }, 'released', 'f32', 14);
    try {
      const r = rng(8);
      expect(() => t.tower.encode([])).toThrow(ShapeError);
      expect(() => t.tower.encode([{ pixelValues: new Float32Array(3 * 4 * 1176), grid: [1, 3, 4] }])).toThrow(/image 0.*merge size/);
      expect(() => t.tower.encode([randomImage(r, [1, 2, 2]), { pixelValues: new Float32Array(10), grid: [1, 2, 2] }])).toThrow(/image 1.*pixelValues/);
      expect(() => t.tower.encode([{ pixelValues: new Float32Array(0), grid: [1, 0, 2] }])).toThrow(/grid/);
    } finally { t.weights.dispose(); t.q.dispose(); }
  });
});
