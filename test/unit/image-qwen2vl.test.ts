// Qwen2.5-VL preprocessing (lib/image/qwen2vl.ts) without the addon: smart_resize against the
// docs §3.4 table and Python's own results (fixture manifest), the patch-row layout against
// numpy (scripts/fixtures/pillow.py), pad mode, and errors.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ImageError, OptionError } from '../../lib/errors.js';
import { decodeImage } from '../../lib/image/decode.js';
import { padToSquare, patchRows, preprocessQwen2vl, qwenResizeTarget, roundHalfEven, smartResize } from '../../lib/image/qwen2vl.js';
import { FIXTURE_DIR, REGENERATE, readBin, readManifest } from '../fixtures/images/fixtures.js';

describe('smartResize', () => {
  // §3.4: W×H → resized w×h → tokens (h/28)·(w/28), DiffusionVL limits.
  const table: [number, number, number, number, number][] = [
    [448, 448, 448, 448, 256],
    [640, 480, 588, 420, 315],
    [800, 600, 588, 420, 315],
    [1024, 768, 588, 420, 315],
    [1920, 1080, 672, 364, 312],
    [224, 224, 392, 392, 196],
    [512, 512, 504, 504, 324],
    [100, 1000, 140, 1232, 220],
  ];
  it.each(table)('%i×%i → %i×%i, %i tokens', (W, H, w, h, tokens) => {
    expect(smartResize(H, W)).toEqual({ height: h, width: w });
    expect((h / 28) * (w / 28)).toBe(tokens);
  });

  it('matches Python smart_resize on every size in the fixture manifest', () => {
    const m = readManifest();
    expect(m.smartResize.length).toBeGreaterThan(100);
    for (const c of m.smartResize) {
      const label = `${c.width}×${c.height} min ${c.minPixels} max ${c.maxPixels} (regenerate: ${REGENERATE})`;
      if (c.error) expect(() => smartResize(c.height, c.width, c), label).toThrow(ImageError);
      else expect(smartResize(c.height, c.width, c), label).toEqual({ height: c.h, width: c.w });
    }
  });

  it('rounds half to even like Python', () => {
    expect([0.5, 1.5, 2.5, -0.5, 3.4999, 3.5000001].map(roundHalfEven)).toEqual([0, 2, 2, 0, 3, 4]);
    // 42/28 = 1.5 → 2 (even), 70/28 = 2.5 → 2 (even): a plain Math.round would give 3.
    expect(smartResize(70, 42, { minPixels: 1, maxPixels: 1e9 })).toEqual({ height: 56, width: 56 });
  });

  it('rejects aspect ratios over 200 and bad sizes or limits', () => {
    expect(() => smartResize(10, 2001)).toThrow(ImageError);
    expect(() => smartResize(10, 2001)).toThrow(/2001×10 image: aspect ratio 200\.1 exceeds 200/);
    expect(smartResize(10, 2000)).toBeTruthy(); // exactly 200 is allowed
    expect(() => smartResize(0, 10)).toThrow(ImageError);
    expect(() => smartResize(10, 10, { minPixels: 10, maxPixels: 5 })).toThrow(OptionError);
    expect(() => smartResize(10, 10, { factor: 0 })).toThrow(/Expected integer ≥ 1 for factor but received 0/);
  });
});

describe('patch rows vs numpy', () => {
  const m = readManifest();
  for (const p of m.patches) {
    it(`${p.input} at min ${p.minPixels} / max ${p.maxPixels}`, async () => {
      const e = m.inputs.find((i) => i.name === p.input)!;
      const img = await decodeImage(join(FIXTURE_DIR, e.file));
      const pv = await preprocessQwen2vl(img, { minPixels: p.minPixels, maxPixels: p.maxPixels });
      expect([pv.width, pv.height]).toEqual([p.width, p.height]);
      expect(pv.grid).toEqual(p.grid);
      expect(pv.tokens).toBe((p.grid[1] * p.grid[2]) / 4);
      expect(pv.rowLength).toBe(1176);
      expect(pv.pixelValues.length).toBe(p.grid[0] * p.grid[1] * p.grid[2] * 1176);
      // Exact float32 equality: the same f32 operations in the same order as numpy.
      const rows = readBin(p.rows);
      const n = rows.data.length;
      const bad = pv.pixelValues.subarray(0, n).findIndex((v, i) => v !== rows.data[i]);
      expect(bad, `first mismatch at row ${Math.floor(bad / 1176)}, col ${bad % 1176}: ${pv.pixelValues[bad]} vs numpy ${rows.data[bad]}; regenerate: ${REGENERATE}`).toBe(-1);
      // Every row's float64 sum: catches a wrong row order or a wrong pixel anywhere. The sum is
      // over float32 values in float64; numpy's pairwise order differs from ours, so allow a
      // rounding-level slack of 1e-9 relative to the sum of |values| (≤ 1176 · 2.7).
      const sums = readBin(p.rowSums).data;
      expect(sums.length).toBe(p.grid[1] * p.grid[2]);
      for (let r = 0; r < sums.length; r++) {
        let s = 0;
        for (let j = 0; j < 1176; j++) s += pv.pixelValues[r * 1176 + j];
        expect(Math.abs(s - sums[r]), `row ${r} sum ${s} vs numpy ${sums[r]}`).toBeLessThan(1e-9 * 1176 * 3);
      }
    });
  }
});

describe('layout and pad mode', () => {
  it('puts merge units in row-major order, 2×2 patches inside, frames duplicated', () => {
    // A 56×28 image whose pixel (x, y) has red = patch index in the 2×4 patch grid.
    const w = 56, h = 28;
    const data = new Uint8Array(w * h * 3);
    for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) data[(y * w + x) * 3] = Math.floor(y / 14) * 4 + Math.floor(x / 14);
    const pv = patchRows({ data, width: w, height: h });
    expect(pv.grid).toEqual([1, 2, 4]);
    const red = (r: number) => pv.pixelValues[r * 1176];
    const expectPatch = [0, 1, 4, 5, 2, 3, 6, 7]; // unit (0,0): (0,0),(0,1),(1,0),(1,1); then unit (0,1)
    const f32 = (v: number) => Math.fround(Math.fround(Math.fround(v / 255) - Math.fround(0.48145466)) / Math.fround(0.26862954));
    expect(Array.from({ length: 8 }, (_, r) => red(r))).toEqual(expectPatch.map(f32));
    for (let r = 0; r < 8; r++) expect(pv.pixelValues[r * 1176 + 196]).toBe(red(r)); // frame 1 = frame 0
  });

  it('qwenResizeTarget (what the encoder resizes to) agrees with preprocessQwen2vl', async () => {
    const img = { data: Uint8Array.from({ length: 61 * 47 * 3 }, (_, i) => (i * 37) & 255), width: 61, height: 47 };
    const t = qwenResizeTarget(img, { minPixels: 56 * 56, maxPixels: 28 * 28 * 16 });
    const pv = await preprocessQwen2vl(img, { minPixels: 56 * 56, maxPixels: 28 * 28 * 16 });
    expect(t.grid).toEqual(pv.grid);
    expect(t.tokens).toBe(pv.tokens);
    expect([t.width, t.height]).toEqual([pv.width, pv.height]);
  });

  it('pads to a centred square with (122, 116, 104)', () => {
    const img = { data: new Uint8Array(5 * 2 * 3).fill(9), width: 5, height: 2 };
    const sq = padToSquare(img);
    expect([sq.width, sq.height]).toEqual([5, 5]);
    const px = (x: number, y: number) => Array.from(sq.data.subarray((y * 5 + x) * 3, (y * 5 + x) * 3 + 3));
    expect(px(0, 0)).toEqual([122, 116, 104]);
    expect(px(0, 1)).toEqual([9, 9, 9]); // offset (5 − 2) // 2 = 1
    expect(px(4, 2)).toEqual([9, 9, 9]);
    expect(px(4, 3)).toEqual([122, 116, 104]);
    const tall = padToSquare({ data: new Uint8Array(2 * 5 * 3).fill(9), width: 2, height: 5 });
    expect(Array.from(tall.data.subarray(3, 6))).toEqual([9, 9, 9]); // x offset 1
    expect(Array.from(tall.data.subarray(0, 3))).toEqual([122, 116, 104]);
  });

  it('pad mode changes the size the way the training pipeline did', async () => {
    const img = { data: new Uint8Array(640 * 480 * 3).fill(50), width: 640, height: 480 };
    const pv = await preprocessQwen2vl(img, { pad: true });
    expect([pv.width, pv.height]).toEqual([504, 504]); // 640×640 → smart_resize → 504×504
    await expect(preprocessQwen2vl(img, { pad: 1 as unknown as boolean })).rejects.toThrow(OptionError);
  });
});
