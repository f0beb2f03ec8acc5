// render_svg.mjs — the second, independent renderer: each scene spec of render.py becomes SVG
// text, rasterised by librsvg (through sharp), then noise is added here and the file is encoded
// by sharp (libpng / mozjpeg). No pixel of it comes from PIL, and training never sees its
// pictures: it draws only the unseen-renderer held-out set (export.py unseen).
//
// Where it differs from render.py's PIL renderer (on purpose, or because the tools differ):
// anti-aliasing is librsvg's coverage (crispEdges when the spec says aliased); outlines are SVG
// strokes centred on a path inset by half the stroke width; gradients are SVG gradients; the
// textures are feTurbulence noise (blobs, grain) and a repeating gradient (stripes, a triangle
// wave instead of a sine); noise comes from its own generator (mulberry32 + Box–Muller).
//
//   node train/render_svg.mjs <jobs.json>     jobs: [{"out": "<path>.png|.jpg", "spec": {…}}, …]
import { readFileSync } from 'node:fs';
import sharp from 'sharp';

const hex = (rgb) => '#' + rgb.map((c) => Math.max(0, Math.min(255, Math.round(c))).toString(16).padStart(2, '0')).join('');
const num = (x) => Number(x.toFixed(3));

function background(bg, W, H) {
  const defs = [];
  const body = [];
  if (bg.kind === 'solid') {
    body.push(`<rect width="${W}" height="${H}" fill="${hex(bg.rgb)}"/>`);
  } else if (bg.kind === 'linear') {
    // The gradient line through the centre at the spec's angle, spanning the canvas.
    const a = (bg.angle * Math.PI) / 180, c = Math.cos(a), s = Math.sin(a);
    const half = (Math.abs(c) * W + Math.abs(s) * H) / 2;
    defs.push(`<linearGradient id="bg" gradientUnits="userSpaceOnUse" x1="${num(W / 2 - c * half)}" y1="${num(H / 2 - s * half)}" ` +
      `x2="${num(W / 2 + c * half)}" y2="${num(H / 2 + s * half)}"><stop offset="0" stop-color="${hex(bg.rgb)}"/>` +
      `<stop offset="1" stop-color="${hex(bg.rgb2)}"/></linearGradient>`);
    body.push(`<rect width="${W}" height="${H}" fill="url(#bg)"/>`);
  } else if (bg.kind === 'radial') {
    const cx = bg.center[0] * W, cy = bg.center[1] * H;
    const r = Math.max(...[[0, 0], [W, 0], [0, H], [W, H]].map(([x, y]) => Math.hypot(x - cx, y - cy)));
    defs.push(`<radialGradient id="bg" gradientUnits="userSpaceOnUse" cx="${num(cx)}" cy="${num(cy)}" r="${num(r)}">` +
      `<stop offset="0" stop-color="${hex(bg.rgb)}"/><stop offset="1" stop-color="${hex(bg.rgb2)}"/></radialGradient>`);
    body.push(`<rect width="${W}" height="${H}" fill="url(#bg)"/>`);
  } else {
    body.push(`<rect width="${W}" height="${H}" fill="${hex(bg.rgb)}"/>`);
    const alpha = Math.min(1, (2 * bg.amplitude) / 255);
    if (bg.pattern === 'stripes') {
      const period = Math.max(4, bg.scale * 60);
      defs.push(`<linearGradient id="tx" gradientUnits="userSpaceOnUse" x1="0" y1="0" x2="${num(period)}" y2="0" ` +
        `spreadMethod="repeat" gradientTransform="rotate(${num(bg.angle)})"><stop offset="0" stop-color="#000"/>` +
        `<stop offset="0.5" stop-color="#fff"/><stop offset="1" stop-color="#000"/></linearGradient>`);
      body.push(`<rect width="${W}" height="${H}" fill="url(#tx)" opacity="${num(alpha)}"/>`);
    } else {
      // fractal noise as grey, laid over the base colour at low opacity
      const freq = bg.pattern === 'grain' ? 0.9 : num(1 / Math.max(4, (1 / bg.scale) * 6) * 2);
      defs.push(`<filter id="tx" x="0" y="0" width="100%" height="100%"><feTurbulence type="fractalNoise" ` +
        `baseFrequency="${freq}" numOctaves="${bg.pattern === 'grain' ? 1 : 2}" seed="${bg.seed % 10000}"/>` +
        `<feColorMatrix type="matrix" values="1 0 0 0 0  1 0 0 0 0  1 0 0 0 0  0 0 0 0 1"/></filter>`);
      body.push(`<rect width="${W}" height="${H}" filter="url(#tx)" opacity="${num(alpha)}"/>`);
    }
  }
  return { defs, body };
}

function shape(s) {
  const [x0, y0, x1, y1] = s.box;
  const w = s.outline ? s.outline.width : 0;
  const fill = hex(s.rgb);
  const stroke = s.outline ? ` stroke="${hex(s.outline.rgb)}" stroke-width="${w}" stroke-linejoin="miter"` : '';
  const i = w / 2; // the stroke lies inside the spec's box, as in the PIL renderer
  if (s.shape === 'circle') {
    const r = (x1 - x0) / 2;
    return `<circle cx="${num((x0 + x1) / 2)}" cy="${num((y0 + y1) / 2)}" r="${num(r - i)}" fill="${fill}"${stroke}/>`;
  }
  if (s.shape === 'square') {
    return `<rect x="${num(x0 + i)}" y="${num(y0 + i)}" width="${num(x1 - x0 - 2 * i)}" height="${num(y1 - y0 - 2 * i)}" fill="${fill}"${stroke}/>`;
  }
  // Triangle: apex at the top centre, base along the bottom; inset by w/2 along each edge normal.
  const pts = [[(x0 + x1) / 2, y0], [x0, y1], [x1, y1]];
  const inset = w ? insetTriangle(pts, i) : pts;
  return `<polygon points="${inset.map(([x, y]) => `${num(x)},${num(y)}`).join(' ')}" fill="${fill}"${stroke}/>`;
}

/** Moves each edge of a counter-clockwise-or-not triangle inward by d; returns the new corners. */
function insetTriangle(p, d) {
  const cx = (p[0][0] + p[1][0] + p[2][0]) / 3, cy = (p[0][1] + p[1][1] + p[2][1]) / 3;
  const lines = [0, 1, 2].map((k) => {
    const [ax, ay] = p[k], [bx, by] = p[(k + 1) % 3];
    let nx = -(by - ay), ny = bx - ax;
    const len = Math.hypot(nx, ny);
    nx /= len; ny /= len;
    if ((cx - ax) * nx + (cy - ay) * ny < 0) { nx = -nx; ny = -ny; } // inward normal
    return { nx, ny, c: nx * ax + ny * ay + d };                      // n·x = c
  });
  return [0, 1, 2].map((k) => {
    const a = lines[(k + 2) % 3], b = lines[k];                        // the two edges at corner k
    const det = a.nx * b.ny - a.ny * b.nx;
    return [(a.c * b.ny - a.ny * b.c) / det, (a.nx * b.c - a.c * b.nx) / det];
  });
}

export function svgOf(spec) {
  const W = spec.width, H = spec.height;
  const bg = background(spec.background, W, H);
  const rendering = spec.antialias ? 'geometricPrecision' : 'crispEdges';
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}">` +
    `<defs>${bg.defs.join('')}</defs>${bg.body.join('')}` +
    `<g shape-rendering="${rendering}">${spec.shapes.map(shape).join('')}</g></svg>`;
}

function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export async function renderFile(spec, out) {
  const W = spec.width, H = spec.height;
  const { data, info } = await sharp(Buffer.from(svgOf(spec))).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  if (info.width !== W || info.height !== H || info.channels !== 3) {
    throw new Error(`render_svg: librsvg gave ${info.width}×${info.height}×${info.channels}, expected ${W}×${H}×3`);
  }
  if (spec.noise) {
    const rnd = mulberry32(spec.noise_seed);
    for (let i = 0; i < data.length; i += 2) {
      const u = Math.max(rnd(), 1e-12), v = rnd();
      const r = Math.sqrt(-2 * Math.log(u)) * spec.noise;
      data[i] = Math.max(0, Math.min(255, Math.round(data[i] + r * Math.cos(2 * Math.PI * v))));
      if (i + 1 < data.length) data[i + 1] = Math.max(0, Math.min(255, Math.round(data[i + 1] + r * Math.sin(2 * Math.PI * v))));
    }
  }
  const img = sharp(data, { raw: { width: W, height: H, channels: 3 } });
  await (spec.jpeg ? img.jpeg({ quality: spec.jpeg }) : img.png({ compressionLevel: 9 })).toFile(out);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const jobs = JSON.parse(readFileSync(process.argv[2], 'utf8'));
  for (const j of jobs) await renderFile(j.spec, j.out);
  console.log(`render_svg: ${jobs.length} pictures`);
}
