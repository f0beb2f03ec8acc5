// image-tokens.ts — how many prompt positions one image takes, from its size alone (no tower):
// Qwen2.5-VL route, smart_resize to multiples of patch·merge then one position per merged
// patch (spec §3.1, §3.4); SigLIP route, the anyres layout or, with several images in the
// prompt, one square crop (§3.5 steps 7-8). Model.countTokens uses it.
import { smartResize } from '../image/qwen2vl.js';
import type { QwenVisionConfig, SiglipVisionConfig } from '../weights/config.js';
import { siglipTokenCount } from './siglip.js';

export function imageTokenCount(v: QwenVisionConfig | SiglipVisionConfig, width: number, height: number, multiImage: boolean): number {
  if (v.kind === 'qwen2_5_vl') {
    const f = v.patchSize * v.spatialMergeSize;
    const r = smartResize(height, width, { factor: f, minPixels: v.minPixels, maxPixels: v.maxPixels });
    return (r.height / f) * (r.width / f);
  }
  return siglipTokenCount(v, [width, height], { multiImage });
}
