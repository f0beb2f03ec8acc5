// vision_reference.ts — a float64 Qwen2.5-VL vision tower + merger straight from docs §3.3, the
// yardstick for lib/model/qwen25vl_vision.ts. Plain loops, no op set, and on purpose **no
// window permutation**: attention is bidirectional inside a segment, so the reference keeps the
// §3.2 row order and decides visibility per pair of rows (same image frame, and for window
// blocks the same M×M window of merge units); the merger then runs per unit in natural order,
// which is what the tower's final unpermute must give back. That checks the window index,
// cu_seqlens and both permutations independently of how the tower builds them.
//
// Legend: R patch rows, C hidden, nh heads, hd head dim, Iv MLP intermediate, D row length,
// m merge size, u = m² rows per unit, O out hidden.

import { geluRef as geluExact } from '../ops/reference.js';

type W = Map<string, Float32Array>;

export interface RefVisionConfig {
  depth: number; hiddenSize: number; numHeads: number; intermediateSize: number;
  patchSize: number; temporalPatchSize: number; spatialMergeSize: number; windowSize: number;
  fullAttBlockIndexes: number[]; outHiddenSize: number;
}

export interface RefImage { pixelValues: Float32Array; grid: readonly number[] }

const EPS = 1e-6;

function rmsNorm(x: Float64Array, w: Float32Array): Float64Array {
  let ss = 0;
  for (const v of x) ss += v * v;
  const r = 1 / Math.sqrt(ss / x.length + EPS);
  return x.map((v, i) => v * r * w[i]);
}

/** y[N] = W[N, K] · x[K] + b. */
function linear(x: ArrayLike<number>, w: Float32Array, N: number, b?: Float32Array): Float64Array {
  const K = x.length;
  const y = new Float64Array(N);
  for (let n = 0; n < N; n++) {
    let acc = b ? b[n] : 0;
    const o = n * K;
    for (let k = 0; k < K; k++) acc += w[o + k] * x[k];
    y[n] = acc;
  }
  return y;
}

/** Per row of §3.2 order: image, frame, patch row r, patch col c. */
function rowCoords(images: readonly RefImage[], m: number): { img: number; f: number; r: number; c: number }[] {
  const out: { img: number; f: number; r: number; c: number }[] = [];
  images.forEach((im, img) => {
    const [t, gh, gw] = im.grid;
    for (let f = 0; f < t; f++)
      for (let bh = 0; bh < gh / m; bh++)
        for (let bw = 0; bw < gw / m; bw++)
          for (let ih = 0; ih < m; ih++)
            for (let iw = 0; iw < m; iw++) out.push({ img, f, r: bh * m + ih, c: bw * m + iw });
  });
  return out;
}

/**
 * Image tokens f64 [Σ U][O] (rows), image after image, row-major over each (gh/m)×(gw/m) unit
 * grid. `roundInput` rounds the pixel values first (the tower casts them to the weight dtype).
 */
export function referenceVision(cfg: RefVisionConfig, w: W, images: readonly RefImage[], roundInput: (x: number) => number = (x) => x): Float64Array[] {
  const C = cfg.hiddenSize, nh = cfg.numHeads, hd = C / nh, Iv = cfg.intermediateSize, m = cfg.spatialMergeSize, u = m * m;
  const D = 3 * cfg.temporalPatchSize * cfg.patchSize * cfg.patchSize;
  const M = Math.floor(cfg.windowSize / m / cfg.patchSize);   // window side in merge units
  const get = (n: string) => {
    const t = w.get(n);
    if (!t) throw new Error(`vision reference: missing ${n}`);
    return t;
  };
  const coords = rowCoords(images, m);
  const R = coords.length;

  // 1. Patch embed.
  const patchW = get('visual.patch_embed.proj.weight');
  let h: Float64Array[] = [];
  for (const im of images) {
    const n = im.pixelValues.length / D;
    for (let i = 0; i < n; i++) h.push(linear(Array.from(im.pixelValues.subarray(i * D, (i + 1) * D), roundInput), patchW, C));
  }

  // 2. Rotary angles per row (f32 rounding as torch), applied in double.
  const dim = hd / 2, q4 = dim / 2;
  const inv = Array.from({ length: q4 }, (_, j) => Math.fround(1 / Math.fround(10000 ** Math.fround((2 * j) / dim))));
  const angles = coords.map(({ r, c }) => {
    const a = new Float64Array(hd);
    for (let j = 0; j < q4; j++) {
      const ar = Math.fround(r * inv[j]), ac = Math.fround(c * inv[j]);
      a[j] = a[dim + j] = ar;
      a[q4 + j] = a[dim + q4 + j] = ac;
    }
    return a;
  });
  const rope = (x: Float64Array, row: number) => {
    const a = angles[row];
    for (let head = 0; head < nh; head++) {
      const o = head * hd;
      const y = new Float64Array(hd);
      for (let i = 0; i < hd; i++) {
        const rot = i < dim ? -x[o + i + dim] : x[o + i - dim];
        // cos/sin rounded to f32 as the tower's table is (torch computes them in f32).
        y[i] = x[o + i] * Math.fround(Math.cos(a[i])) + rot * Math.fround(Math.sin(a[i]));
      }
      x.set(y, o);
    }
  };

  // 3. Visibility: same image frame; for window blocks also the same M×M window of units.
  const win = coords.map(({ r, c }) => `${Math.floor(r / m / M)},${Math.floor(c / m / M)}`);
  const sameFrame = (a: number, b: number) => coords[a].img === coords[b].img && coords[a].f === coords[b].f;
  const visibleWindow = (a: number, b: number) => sameFrame(a, b) && win[a] === win[b];

  // 4. Blocks.
  const full = new Set(cfg.fullAttBlockIndexes);
  const scale = 1 / Math.sqrt(hd);
  for (let j = 0; j < cfg.depth; j++) {
    const p = `visual.blocks.${j}.`;
    const vis = full.has(j) ? sameFrame : visibleWindow;
    const Q: Float64Array[] = [], K: Float64Array[] = [], V: Float64Array[] = [];
    for (let i = 0; i < R; i++) {
      const qkv = linear(rmsNorm(h[i], get(p + 'norm1.weight')), get(p + 'attn.qkv.weight'), 3 * C, get(p + 'attn.qkv.bias'));
      const qi = qkv.slice(0, C), ki = qkv.slice(C, 2 * C);
      rope(qi, i); rope(ki, i);
      Q.push(qi); K.push(ki); V.push(qkv.slice(2 * C));
    }
    const next: Float64Array[] = [];
    for (let i = 0; i < R; i++) {
      const o = new Float64Array(C);
      const keys: number[] = [];
      for (let s = 0; s < R; s++) if (vis(i, s)) keys.push(s);
      for (let head = 0; head < nh; head++) {
        const sc = keys.map((s) => {
          let d = 0;
          for (let e = 0; e < hd; e++) d += Q[i][head * hd + e] * K[s][head * hd + e];
          return d * scale;
        });
        const mx = Math.max(...sc);
        const ex = sc.map((v) => Math.exp(v - mx));
        const z = ex.reduce((a, b) => a + b, 0);
        keys.forEach((s, k) => { for (let e = 0; e < hd; e++) o[head * hd + e] += (ex[k] / z) * V[s][head * hd + e]; });
      }
      const y = linear(o, get(p + 'attn.proj.weight'), C, get(p + 'attn.proj.bias'));
      const h1 = h[i].map((v, e) => v + y[e]);
      const z = rmsNorm(h1, get(p + 'norm2.weight'));
      const g = linear(z, get(p + 'mlp.gate_proj.weight'), Iv, get(p + 'mlp.gate_proj.bias'));
      const up = linear(z, get(p + 'mlp.up_proj.weight'), Iv, get(p + 'mlp.up_proj.bias'));
      const a = g.map((gv, e) => (gv / (1 + Math.exp(-gv))) * up[e]);
      const d = linear(a, get(p + 'mlp.down_proj.weight'), C, get(p + 'mlp.down_proj.bias'));
      next.push(h1.map((v, e) => v + d[e]));
    }
    h = next;
  }

  // 5. Merger per unit in natural order (= the order after the tower's unpermute).
  const lnq = get('visual.merger.ln_q.weight');
  const out: Float64Array[] = [];
  for (let un = 0; un < R / u; un++) {
    const cat = new Float64Array(u * C);
    for (let k = 0; k < u; k++) cat.set(rmsNorm(h[un * u + k], lnq), k * C);
    const y = linear(cat, get('visual.merger.mlp.0.weight'), u * C, get('visual.merger.mlp.0.bias')).map(geluExact);
    out.push(linear(y, get('visual.merger.mlp.2.weight'), cfg.outHiddenSize, get('visual.merger.mlp.2.bias')));
  }
  return out;
}
