// SigLIP anyres preprocessing (lib/image/siglip.ts, docs §3.5 steps 1-4 and 8) without the
// addon: pinpoint choice against the examples of docs §3.5, u8 crops against Pillow (fixtures from
// scripts/fixtures/pillow.py), normalised values against numpy.
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodeImage } from '../../lib/image/decode.js';
import { SIGLIP_PINPOINTS, anyresCrops, preprocessSiglipAnyres, preprocessSiglipSingle, selectBestResolution, siglipNormalise, siglipSquareCrop } from '../../lib/image/siglip.js';
import { FIXTURE_DIR, REGENERATE, diffU8, readBin, readManifest } from '../fixtures/images/fixtures.js';

describe('selectBestResolution', () => {
  it('lists the 36 pinpoints in stored order', () => {
    expect(SIGLIP_PINPOINTS.length).toBe(36);
    expect(SIGLIP_PINPOINTS.slice(0, 2)).toEqual([[384, 384], [384, 768]]);
    expect(SIGLIP_PINPOINTS[6]).toEqual([768, 384]);
  });
  // §3.5 step 7 examples: W×H → tiles nW×nH.
  it.each([
    [640, 480, 2, 2],
    [1024, 768, 3, 2],
    [1920, 1080, 5, 3],
    [300, 200, 1, 1],
  ])('%i×%i → %i×%i tiles', (W, H, nW, nH) => {
    expect(selectBestResolution(W, H)).toEqual([nW * 384, nH * 384]);
  });
});

describe('anyres crops vs Pillow', () => {
  const m = readManifest();
  for (const c of m.siglip) {
    it(`${c.input} (${c.mode})`, async () => {
      const e = m.inputs.find((i) => i.name === c.input)!;
      const img = await decodeImage(join(FIXTURE_DIR, e.file));
      let crops;
      if (c.mode === 'anyres') {
        const a = await anyresCrops(img);
        expect(a.best).toEqual(c.best);
        expect(a.resized).toEqual(c.resized);
        expect(a.tiles).toEqual([c.best![0] / 384, c.best![1] / 384]);
        crops = a.crops;
      } else {
        crops = [await siglipSquareCrop(img)];
      }
      expect(crops.length).toBe(c.crops.length);
      crops.forEach((cr, i) => expect(diffU8(cr.data, c.crops[i], `${c.input} ${c.mode} crop ${i}`)).toBeNull());
      const pv = c.mode === 'anyres' ? (await preprocessSiglipAnyres(img)).pixelValues : (await preprocessSiglipSingle(img)).pixelValues;
      const direct = siglipNormalise(crops);
      expect(pv.length).toBe(direct.length);
      expect(pv.findIndex((v, i) => v !== direct[i])).toBe(-1); // (toEqual on 2M floats is slow)
      if (c.firstRow) {
        const row = readBin(c.firstRow).data; // crop 0, channel 0, pixel row 0: exact float32
        const bad = pv.subarray(0, 384).findIndex((v, i) => v !== row[i]);
        expect(bad, `col ${bad}: ${pv[bad]} vs numpy ${row[bad]}; regenerate: ${REGENERATE}`).toBe(-1);
      }
      // Per-crop float64 sums of float32 values; numpy's pairwise order differs from ours, so
      // allow 1e-9 relative to the largest possible |sum| (3·384² values of |x| ≤ 1).
      const sums = readBin(c.cropSums).data;
      const n = 3 * 384 * 384;
      for (let k = 0; k < sums.length; k++) {
        let s = 0;
        for (let i = 0; i < n; i++) s += pv[k * n + i];
        expect(Math.abs(s - sums[k]), `crop ${k} sum ${s} vs numpy ${sums[k]}`).toBeLessThan(1e-9 * n);
      }
    });
  }
});
