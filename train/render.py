# render.py — the pictures: a renderer-independent scene spec (what is drawn where, on what
# background, with which effects), and the PIL renderer the models are trained on. The second,
# independent renderer (SVG text rasterised by librsvg through sharp) is render_svg.mjs; it reads
# the same specs and draws only the unseen-renderer held-out set, which training never sees.
#
# What varies (all of it irrelevant to the answers):
#   canvas   area log-uniform in [64², 240²] px (below, inside and above the pixel bounds),
#            aspect W:H log-uniform in [1:2, 2:1]
#   background  solid (light, white, dark, tinted), linear or radial gradient, or a light texture
#            (smooth blobs, stripes, grain); never within reach of a shape colour
#   shapes   1–3 distinct (colour, shape) pairs in distinct quadrants; size 10–45 % of the short
#            side, centre jittered anywhere in its quadrant that keeps the whole shape inside with
#            a margin (4 % of the short side) from the midlines and edges; triangle height 85–100 %
#            of its width
#   colour   each named colour jittered in HSV (hue ±7°, saturation ×0.8–1.15, value ×0.85–1.08)
#   outline  on a third of the pictures: black, dark grey or a darker shade, 2–8 % of the size
#   edges    anti-aliased (4× supersampled masks) or aliased, half each
#   effects  mild JPEG (quality 55–92) on a quarter, Gaussian noise (σ 2–7) on a quarter
#
# Spec (a JSON-able dict, coordinates in pixels of the W×H canvas):
#   {'width', 'height', 'background': {...}, 'shapes': [{'quad', 'color', 'shape', 'rgb',
#    'box': [x0, y0, x1, y1], 'outline': None | {'rgb', 'width'}}], 'antialias', 'jpeg', 'noise',
#    'noise_seed'}
# A triangle points up: apex at the top centre of its box, base along the bottom edge.
import colorsys
import io
import math

import numpy as np
from PIL import Image, ImageDraw

COLORS = {  # name → RGB at the centre of its jitter
    'red': (215, 40, 40),
    'green': (40, 165, 60),
    'blue': (40, 80, 215),
    'yellow': (235, 200, 30),
    'purple': (140, 60, 175),
}
SHAPES = ['circle', 'square', 'triangle']

AREA_RANGE = (64 * 64, 240 * 240)
ASPECT_RANGE = (0.5, 2.0)          # W / H
SIZE_RANGE = (0.10, 0.45)          # shape width / short side
SUPERSAMPLE = 4


def jitter_color(rng, name):
    r, g, b = (c / 255 for c in COLORS[name])
    h, s, v = colorsys.rgb_to_hsv(r, g, b)
    h = (h + rng.uniform(-0.02, 0.02)) % 1.0
    s = min(1.0, s * rng.uniform(0.8, 1.15))
    v = min(1.0, v * rng.uniform(0.85, 1.08))
    return [int(round(255 * c)) for c in colorsys.hsv_to_rgb(h, s, v)]


def _dist(a, b):
    return math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)))


def _bg_color(rng):
    u = rng.random()
    if u < 0.15:
        return [255, 255, 255]
    if u < 0.80:   # light, lightly tinted
        h, s, v = rng.random(), rng.uniform(0.0, 0.3), rng.uniform(0.8, 1.0)
    else:          # dark
        h, s, v = rng.random(), rng.uniform(0.0, 0.3), rng.uniform(0.06, 0.32)
    return [int(round(255 * c)) for c in colorsys.hsv_to_rgb(h, s, v)]


def _background(rng, avoid):
    """Background spec whose colours all stay ≥ 90 RGB units from every shape colour."""
    for _ in range(100):
        kind = rng.choices(['solid', 'linear', 'radial', 'texture'], [0.45, 0.2, 0.1, 0.25])[0]
        c0 = _bg_color(rng)
        if kind == 'solid':
            bg = {'kind': 'solid', 'rgb': c0}
            cols = [c0]
        elif kind in ('linear', 'radial'):
            # the second colour near the first in lightness, so gradients stay backgrounds
            c1 = [max(0, min(255, c + rng.randint(-60, 60))) for c in c0]
            bg = {'kind': kind, 'rgb': c0, 'rgb2': c1}
            if kind == 'linear':
                bg['angle'] = rng.uniform(0, 360)
            else:
                bg['center'] = [rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8)]
            cols = [c0, c1]
        else:
            bg = {'kind': 'texture', 'rgb': c0, 'pattern': rng.choice(['blobs', 'stripes', 'grain']),
                  'amplitude': rng.uniform(6, 16), 'scale': rng.uniform(0.05, 0.2), 'angle': rng.uniform(0, 180),
                  'seed': rng.randrange(2 ** 31)}
            a = bg['amplitude']
            cols = [[max(0, min(255, c + d)) for c in c0] for d in (-a, a)]
        if all(_dist(c, s) >= 90 for c in cols for s in avoid):
            return bg
    return {'kind': 'solid', 'rgb': [255, 255, 255]}


def _outline(rng, rgb, size):
    k = rng.random()
    if k < 0.4:
        col = [0, 0, 0]
    elif k < 0.6:
        g = rng.randint(40, 90)
        col = [g, g, g]
    else:
        f = rng.uniform(0.35, 0.6)
        col = [int(c * f) for c in rgb]
    return {'rgb': col, 'width': max(1, int(round(size * rng.uniform(0.02, 0.08))))}


def make_easy_spec(rng, scene):
    """The plain drawing of the curriculum's start: a square canvas (so every picture becomes the
    same square token grid), a light solid background, large shapes near their quadrant's centre, no
    outline, JPEG or noise. The model learns *what* a shape is here, where a token's place in the
    grid says where it is, before the full variety makes it learn where from the picture itself."""
    W = H = rng.randint(120, 232)
    shapes = []
    for s in scene:
        qx, qy = s['quad'] % 2, s['quad'] // 2
        half = W / 2
        size = half * rng.uniform(0.55, 0.85)
        hgt = size * (rng.uniform(0.85, 1.0) if s['shape'] == 'triangle' else 1.0)
        cx = half * qx + half / 2 + rng.uniform(-0.08, 0.08) * half
        cy = half * qy + half / 2 + rng.uniform(-0.08, 0.08) * half
        shapes.append({'quad': s['quad'], 'color': s['color'], 'shape': s['shape'], 'rgb': jitter_color(rng, s['color']),
                       'box': [cx - size / 2, cy - hgt / 2, cx + size / 2, cy + hgt / 2], 'outline': None})
    return {'width': W, 'height': H, 'background': {'kind': 'solid', 'rgb': [rng.randint(215, 255) for _ in range(3)]},
            'shapes': shapes, 'antialias': rng.random() < 0.5, 'jpeg': None, 'noise': None, 'noise_seed': 0}


def make_spec(rng, scene):
    """Scene ([{quad, color, shape}]) → full drawing spec, every free choice drawn from rng."""
    area = math.exp(rng.uniform(*map(math.log, AREA_RANGE)))
    aspect = math.exp(rng.uniform(*map(math.log, ASPECT_RANGE)))
    W = max(40, int(round(math.sqrt(area * aspect))))
    H = max(40, int(round(math.sqrt(area / aspect))))
    S = min(W, H)
    margin = max(2.0, 0.04 * S)
    outlined = rng.random() < 1 / 3
    shapes = []
    for s in scene:
        qx, qy = s['quad'] % 2, s['quad'] // 2
        qx0, qy0, qw, qh = qx * W / 2, qy * H / 2, W / 2, H / 2
        size = min(rng.uniform(*SIZE_RANGE) * S, min(qw, qh) - 2 * margin)
        hgt = size * (rng.uniform(0.85, 1.0) if s['shape'] == 'triangle' else 1.0)
        cx = rng.uniform(qx0 + margin + size / 2, qx0 + qw - margin - size / 2)
        cy = rng.uniform(qy0 + margin + hgt / 2, qy0 + qh - margin - hgt / 2)
        rgb = jitter_color(rng, s['color'])
        shapes.append({'quad': s['quad'], 'color': s['color'], 'shape': s['shape'], 'rgb': rgb,
                       'box': [cx - size / 2, cy - hgt / 2, cx + size / 2, cy + hgt / 2],
                       'outline': _outline(rng, rgb, size) if outlined else None})
    bg = _background(rng, [sh['rgb'] for sh in shapes])
    return {
        'width': W, 'height': H, 'background': bg, 'shapes': shapes,
        'antialias': rng.random() < 0.5,
        'jpeg': rng.randint(55, 92) if rng.random() < 0.25 else None,
        'noise': round(rng.uniform(2, 7), 2) if rng.random() < 0.25 else None,
        'noise_seed': rng.randrange(2 ** 31),
    }


# ----------------------------------------------------------------------------- the PIL renderer

def _background_array(bg, W, H):
    c0 = np.array(bg['rgb'], np.float32)
    if bg['kind'] == 'solid':
        return np.broadcast_to(c0, (H, W, 3)).copy()
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    if bg['kind'] in ('linear', 'radial'):
        c1 = np.array(bg['rgb2'], np.float32)
        if bg['kind'] == 'linear':
            a = math.radians(bg['angle'])
            t = (x - W / 2) * math.cos(a) + (y - H / 2) * math.sin(a)
            t = (t - t.min()) / max(1e-6, float(t.max() - t.min()))
        else:
            cx, cy = bg['center'][0] * W, bg['center'][1] * H
            t = np.sqrt((x - cx) ** 2 + (y - cy) ** 2)
            t = t / max(1e-6, float(t.max()))
        return c0 * (1 - t[..., None]) + c1 * t[..., None]
    g = np.random.default_rng(bg['seed'])
    a = bg['amplitude']
    if bg['pattern'] == 'blobs':        # smooth noise: a coarse random grid upsampled bicubically
        n = max(2, int(round(1 / bg['scale'])))
        coarse = g.uniform(-1, 1, (n, n)).astype(np.float32)
        f = np.asarray(Image.fromarray(coarse, 'F').resize((W, H), Image.BICUBIC))
        f = f / max(1e-6, float(np.abs(f).max()))
    elif bg['pattern'] == 'stripes':
        ang = math.radians(bg['angle'])
        period = max(4.0, bg['scale'] * 60)
        f = np.sin(2 * math.pi * (x * math.cos(ang) + y * math.sin(ang)) / period)
    else:                               # fine grain
        f = g.uniform(-1, 1, (H, W)).astype(np.float32)
    return c0 + a * f[..., None]


def _shape_mask(shape, box, W, H, ss, outline_width):
    """(fill alpha, outline alpha) as float32 [H, W] arrays (None for no outline), drawn at ss×
    resolution and box-averaged down (ss = 1: aliased, hard edges)."""
    x0, y0, x1, y1 = box
    pad = (outline_width or 0) + 2
    # the local window in canvas pixels that holds the shape
    lx0, ly0 = max(0, int(math.floor(x0 - pad))), max(0, int(math.floor(y0 - pad)))
    lx1, ly1 = min(W, int(math.ceil(x1 + pad))), min(H, int(math.ceil(y1 + pad)))
    w, h = lx1 - lx0, ly1 - ly0
    # PIL's pixel (i, j) covers [i, i+1): shift by −0.5 so the box edges are in continuous coords
    bx = [(x0 - lx0) * ss - 0.5, (y0 - ly0) * ss - 0.5, (x1 - lx0) * ss - 0.5, (y1 - ly0) * ss - 0.5]
    out = []
    for which in ('fill', 'outline'):
        if which == 'outline' and not outline_width:
            out.append(None)
            continue
        m = Image.new('L', (w * ss, h * ss), 0)
        d = ImageDraw.Draw(m)
        kw = {'fill': 255} if which == 'fill' else {'outline': 255, 'width': max(1, int(round(outline_width * ss)))}
        if shape == 'circle':
            d.ellipse(bx, **kw)
        elif shape == 'square':
            d.rectangle(bx, **kw)
        else:
            pts = [((bx[0] + bx[2]) / 2, bx[1]), (bx[0], bx[3]), (bx[2], bx[3])]
            d.polygon(pts, **kw)
        if ss > 1:
            m = m.reduce(ss)
        a = np.zeros((H, W), np.float32)
        a[ly0:ly1, lx0:lx1] = np.asarray(m, np.float32) / 255
        out.append(a)
    return out


def _draw(spec):
    """Spec → RGB PIL image before any JPEG: background, shapes (masks, alpha compositing), noise."""
    W, H = spec['width'], spec['height']
    img = _background_array(spec['background'], W, H)
    ss = SUPERSAMPLE if spec['antialias'] else 1
    for s in spec['shapes']:
        ow = s['outline']['width'] if s['outline'] else 0
        fill, line = _shape_mask(s['shape'], s['box'], W, H, ss, ow)
        img = img * (1 - fill[..., None]) + np.array(s['rgb'], np.float32) * fill[..., None]
        if line is not None:
            img = img * (1 - line[..., None]) + np.array(s['outline']['rgb'], np.float32) * line[..., None]
    if spec['noise']:
        g = np.random.default_rng(spec['noise_seed'])
        img = img + g.normal(0, spec['noise'], img.shape).astype(np.float32)
    return Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8), 'RGB')


def encode_file(spec):
    """The picture as a file: (bytes, 'jpg' | 'png'). JPEG-effect pictures are that JPEG file
    itself (so a held-out set stores exactly what training-time decoding sees), the rest PNG."""
    buf = io.BytesIO()
    if spec['jpeg']:
        _draw(spec).save(buf, format='JPEG', quality=spec['jpeg'])
        return buf.getvalue(), 'jpg'
    _draw(spec).save(buf, format='PNG', optimize=True)
    return buf.getvalue(), 'png'


def render_pil(spec):
    """Spec → the RGB PIL image a model sees (JPEG-effect pictures decoded from their JPEG)."""
    if not spec['jpeg']:
        return _draw(spec)
    data, _ = encode_file(spec)
    return Image.open(io.BytesIO(data)).convert('RGB')
