// Token counting of the SigLIP route (lib/model/siglip.ts anyresLayout / siglipTokenCount,
// docs §3.5 steps 7-8) as pure functions: the worked examples of docs §3.5, the CPython floor
// division behind the τ downsample, and agreement with the independent float64 merge of
// test/model/siglip_reference.ts on many image sizes. No addon, no encoder.
import { describe, expect, it } from 'vitest';
import { SIGLIP_PINPOINTS, selectBestResolution } from '../../lib/image/siglip.js';
import { anyresLayout, anyresMaxPatches, pyFloorDiv, siglipGridSide, siglipTokenCount } from '../../lib/model/siglip.js';
import type { SiglipVisionConfig } from '../../lib/weights/config.js';
import { refMergeAnyres } from './siglip_reference.js';

/** The released model's vision config (docs §1.7), as lib/weights/config.ts fills it by default. */
const CFG: SiglipVisionConfig = {
  kind: 'siglip', hiddenSize: 1152, numLayers: 26, numHeads: 16, headDim: 72, intermediateSize: 4304,
  patchSize: 14, imageSize: 384, layerNormEps: 1e-6, mmHiddenSize: 1152, projectorType: 'mlp2x_gelu',
  selectLayer: -2, selectFeature: 'patch', patchMergeType: 'spatial_unpad', imageAspectRatio: 'anyres_max_4',
  gridPinpoints: SIGLIP_PINPOINTS.map(([w, h]) => [w, h] as [number, number]), newlinePosition: 'grid',
};

describe('SigLIP token counts (§3.5)', () => {
  it('grid side: 384/14 → 27 (the last 6 pixels dropped)', () => {
    expect(siglipGridSide(CFG)).toBe(27);
    expect(siglipGridSide({ imageSize: 13, patchSize: 3 })).toBe(4);
  });

  // [W, H, tiles, kept (h, w), after downsample (h, w), tokens] from docs §3.5 step 7.
  const examples: [number, number, [number, number], [number, number], [number, number], number][] = [
    [640, 480, [2, 2], [40, 54], [40, 54], 2929],
    [1024, 768, [3, 2], [54, 73], [46, 62], 3627],  // the upstream worked example gives only the downsampled size
    [1920, 1080, [5, 3], [75, 135], [40, 72], 3649],
    [300, 200, [1, 1], [19, 27], [19, 27], 1261],
  ];
  it.each(examples)('%i×%i: tiles, unpadded and downsampled sizes, tokens', (W, H, tiles, kept, out, tokens) => {
    const [tw, th] = selectBestResolution(W, H, CFG.gridPinpoints);
    expect([tw / 384, th / 384]).toEqual(tiles);
    const L = anyresLayout([W, H], tiles, 27, 4);
    expect([L.h, L.w]).toEqual(kept);
    expect([L.outH, L.outW]).toEqual(out);
    expect(L.downsampled).toBe(kept[0] !== out[0]);
    expect(L.tokens).toBe(tokens);
    expect(siglipTokenCount(CFG, [W, H], { multiImage: false })).toBe(tokens);
  });

  it('multi-image mode: 729 + 1 newline = 730 per image, whatever the size', () => {
    for (const s of [[640, 480], [1, 1], [1920, 1080], [333, 4000]] as [number, number][]) expect(siglipTokenCount(CFG, s, { multiImage: true })).toBe(730);
  });

  it('plain "anyres" never downsamples; other aspect modes are refused with the field named', () => {
    expect(anyresMaxPatches('anyres_max_4')).toBe(4);
    expect(anyresMaxPatches('anyres_max_9')).toBe(9);
    expect(anyresMaxPatches('anyres')).toBeNull();
    expect(() => anyresMaxPatches('pad')).toThrow(/image_aspect_ratio 'pad'/);
    expect(siglipTokenCount({ ...CFG, imageAspectRatio: 'anyres' }, [1920, 1080], { multiImage: false })).toBe(729 + 75 * 136);
  });

  it('pyFloorDiv is CPython float //', () => {
    // Values worked out with CPython: 75 // 1.8633899812498247 = 40.0, 135 // … = 72.0, 1 // 0.1 = 9.0
    // (0.1 is slightly above 1/10, so the exact quotient is just below 10), -7 // 2 = -4.0.
    expect(pyFloorDiv(75, 1.8633899812498247)).toBe(40);
    expect(pyFloorDiv(135, 1.8633899812498247)).toBe(72);
    expect(pyFloorDiv(1, 0.1)).toBe(9);
    expect(Math.floor(1 / 0.1)).toBe(10);  // why a plain floor(a / b) is not enough
    expect(pyFloorDiv(-7, 2)).toBe(-4);
    expect(pyFloorDiv(7, 2)).toBe(3);
    expect(pyFloorDiv(6, 3)).toBe(2);
  });

  it('agrees with the float64 reference merge on 400 image sizes (token count and shape)', () => {
    // The reference builds the whole [Ht, rows, cols] map and slices it; with Ht = 1 and
    // features = their own row index it is cheap, and the count of rows is what we compare.
    let s = 12345;
    const rnd = (n: number) => { s = (s * 1103515245 + 12345) % 2147483648; return 1 + (s % n); };
    const g = 27, P = g * g;
    for (let i = 0; i < 400; i++) {
      const W = i < 200 ? rnd(3000) : rnd(120), H = i < 200 ? rnd(3000) : rnd(120);
      const [tw, th] = selectBestResolution(W, H, CFG.gridPinpoints);
      const tiles: [number, number] = [tw / 384, th / 384];
      const crops = Array.from({ length: 1 + tiles[0] * tiles[1] }, () => Array.from({ length: P }, () => new Float64Array(1)));
      const ref = refMergeAnyres(crops, [0], [W, H], tiles, g, 4);
      expect(siglipTokenCount(CFG, [W, H], { multiImage: false }), `${W}×${H}`).toBe(ref.length);
    }
  });
});
