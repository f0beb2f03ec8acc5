# preprocess.py — Qwen2.5-VL image preprocessing (docs §3.1) and the pixel_values row layout (§3.2),
# the same steps as transformers' slow Qwen2VLImageProcessor, with this model's small pixel bounds.
#
# Shapes: image H×W uint8 RGB → resized h×w (multiples of factor = patch·merge = 28) →
# pixel_values [gh·gw, 3·tps·ps·ps] float32 (gh = h/14, gw = w/14, tps = 2 identical frames),
# grid_thw = (1, gh, gw); the tower then yields (gh/2)·(gw/2) merged tokens.
import json
import math
import os

import numpy as np
from PIL import Image

PATCH = 14
TEMPORAL_PATCH = 2
MERGE = 2
FACTOR = PATCH * MERGE
IMAGE_MEAN = (0.48145466, 0.4578275, 0.40821073)
IMAGE_STD = (0.26862954, 0.26130258, 0.27577711)
# This model's bounds (the released DiffusionVL uses 384² .. 512²). The defaults, 150² .. 180²
# pixels, send every square picture data.py draws to 168² = 6×6 merged tokens: stage 1's
# resolution. run_all.sh sets TRAIN_MIN_PIXELS / TRAIN_MAX_PIXELS to 210² .. 238² (224², 8×8)
# for stage 1b and everything after it, so the shipped models carry those bounds (other aspect
# ratios work too, with other grids).
MIN_PIXELS = int(os.environ.get('TRAIN_MIN_PIXELS', 150 * 150))
MAX_PIXELS = int(os.environ.get('TRAIN_MAX_PIXELS', 180 * 180))


def smart_resize(h, w, factor=FACTOR, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS):
    """§3.1 step 1 (float64, Python round = half to even)."""
    if max(h, w) / min(h, w) > 200:
        raise ValueError(f'preprocess: aspect ratio of {w}x{h} exceeds 200')
    hb = round(h / factor) * factor
    wb = round(w / factor) * factor
    if hb * wb > max_pixels:
        beta = math.sqrt(h * w / max_pixels)
        hb = max(factor, math.floor(h / beta / factor) * factor)
        wb = max(factor, math.floor(w / beta / factor) * factor)
    elif hb * wb < min_pixels:
        beta = math.sqrt(min_pixels / (h * w))
        hb = math.ceil(h * beta / factor) * factor
        wb = math.ceil(w * beta / factor) * factor
    return hb, wb


def preprocess(img, min_pixels=MIN_PIXELS, max_pixels=MAX_PIXELS):
    """PIL image → (pixel_values float32 [gh·gw, 1176], (1, gh, gw))."""
    img = img.convert('RGB')
    w0, h0 = img.size
    h, w = smart_resize(h0, w0, min_pixels=min_pixels, max_pixels=max_pixels)
    if (w, h) != (w0, h0):
        img = img.resize((w, h), Image.BICUBIC)  # §3.1 step 2: Pillow's bicubic, uint8 out
    x = np.asarray(img, dtype=np.uint8)
    x = (x.astype(np.float64) * (1 / 255)).astype(np.float32)                    # step 3
    x = (x - np.array(IMAGE_MEAN, np.float32)) / np.array(IMAGE_STD, np.float32)   # step 4, f32
    x = x.transpose(2, 0, 1)                                                       # CHW
    frames = np.stack([x] * TEMPORAL_PATCH)                                        # [tps, 3, h, w]
    gh, gw = h // PATCH, w // PATCH
    # §3.2: [gt, tps, 3, gh/2, 2, 14, gw/2, 2, 14] → axes (0,3,6,4,7,2,1,5,8)
    p = frames.reshape(1, TEMPORAL_PATCH, 3, gh // MERGE, MERGE, PATCH, gw // MERGE, MERGE, PATCH)
    p = p.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
    rows = np.ascontiguousarray(p.reshape(gh * gw, 3 * TEMPORAL_PATCH * PATCH * PATCH), dtype=np.float32)
    return rows, (1, gh, gw)


def num_tokens(grid):
    return grid[0] * (grid[1] // MERGE) * (grid[2] // MERGE)


def preprocessor_config():
    return {
        'do_convert_rgb': True,
        'do_normalize': True,
        'do_rescale': True,
        'do_resize': True,
        'image_mean': list(IMAGE_MEAN),
        'image_std': list(IMAGE_STD),
        'image_processor_type': 'Qwen2VLImageProcessor',
        'max_pixels': MAX_PIXELS,
        'merge_size': MERGE,
        'min_pixels': MIN_PIXELS,
        'patch_size': PATCH,
        'processor_class': 'Qwen2_5_VLProcessor',
        'resample': 3,
        'rescale_factor': 1 / 255,
        'size': {'longest_edge': MAX_PIXELS, 'shortest_edge': MIN_PIXELS},
        'temporal_patch_size': TEMPORAL_PATCH,
    }


def write_preprocessor_config(path):
    with open(path, 'w') as f:
        json.dump(preprocessor_config(), f, indent=2)
        f.write('\n')
