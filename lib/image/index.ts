// index.ts — the image layer: decode any input to RGB u8, then preprocess for one of the two
// vision routes (Qwen2.5-VL patches, docs §3.1-3.4; SigLIP anyres crops, §3.5 steps 1-4).
export { DECODE_DEFAULTS, decodeImage, describeImageInput } from './decode.js';
export type { DecodeOptions, ImageInput, RawRgbImage, RgbImage } from './decode.js';
export { CLIP_MEAN, CLIP_STD, PAD_COLOR, QWEN_IMAGE_DEFAULTS, padToSquare, patchRows, preprocessQwen2vl, resizeRgb, roundHalfEven, smartResize } from './qwen2vl.js';
export type { QwenPixelValues, QwenPreprocessOptions, SmartResizeOptions } from './qwen2vl.js';
export { SIGLIP_CROP, SIGLIP_PINPOINTS, anyresCrops, preprocessSiglipAnyres, preprocessSiglipSingle, selectBestResolution, siglipNormalise, siglipSquareCrop } from './siglip.js';
export type { AnyresCrops, SiglipOptions, SiglipPixelValues } from './siglip.js';
export { resizeBicubicRef } from './resample.js';
