// siglip_reference.ts — a float64 SigLIP route (docs §3.5 steps 5-8): the yardstick for
// lib/model/siglip.ts. Plain loops straight from docs §3.5 and the LLaVA-OneVision code paths it
// describes: the conv as a sliding 14×14 window (no patch matrix), one crop at a time, full
// attention per crop, the tile map built as the reference's [Ht, nH·g, nW·g] tensor, unpadded by
// slicing, interpolated, then flattened with the newline column. Nothing is shared with the
// engine's layout code, so the token counts are checked independently too.
//
// Legend: S crop side, p patch side, g = floor(S/p), P = g², C tower hidden, nh/hd heads,
// I intermediate, Ht text hidden; (W, H) original size; (nW, nH) tiles.
import { geluRef, geluTanhRef } from '../ops/reference.js';

type Wm = Map<string, Float32Array>;

export interface RefSiglipDims {
  hiddenSize: number; numLayers: number; numHeads: number; intermediateSize: number;
  patchSize: number; imageSize: number; layerNormEps: number;
}

function layerNorm(x: Float64Array, w: Float32Array, b: Float32Array, eps: number): Float64Array {
  let mu = 0;
  for (const v of x) mu += v;
  mu /= x.length;
  let s2 = 0;
  for (const v of x) s2 += (v - mu) * (v - mu);
  const r = 1 / Math.sqrt(s2 / x.length + eps);
  return x.map((v, i) => (v - mu) * r * w[i] + b[i]);
}

/** y[N] = W[N, K] · x[K] + b. */
function linear(x: Float64Array, w: Float32Array, N: number, b: Float32Array): Float64Array {
  const K = x.length, y = new Float64Array(N);
  for (let n = 0; n < N; n++) {
    let acc = b[n];
    for (let k = 0; k < K; k++) acc += w[n * K + k] * x[k];
    y[n] = acc;
  }
  return y;
}

/** One crop f32 [3, S, S] → last encoder layer's hidden states, P rows of [C] (no post_layernorm). */
export function refSiglipEncodeCrop(w: Wm, d: RefSiglipDims, crop: Float32Array): Float64Array[] {
  const { hiddenSize: C, numHeads: nh, patchSize: p, imageSize: S } = d;
  const hd = C / nh, g = Math.floor(S / p), P = g * g, I = d.intermediateSize;
  const get = (n: string) => { const t = w.get(n); if (!t) throw new Error(`reference: no ${n}`); return t; };
  const e = 'siglip.vision_model.embeddings.';
  const cw = get(`${e}patch_embedding.weight`), cb = get(`${e}patch_embedding.bias`), pe = get(`${e}position_embedding.weight`);
  // Conv2d(3 → C, kernel p, stride p, no padding): output (py, px) reads pixels [py·p, py·p + p).
  let h: Float64Array[] = [];
  for (let py = 0; py < g; py++) {
    for (let px = 0; px < g; px++) {
      const row = new Float64Array(C);
      for (let o = 0; o < C; o++) {
        let acc = cb[o];
        for (let ch = 0; ch < 3; ch++)
          for (let ky = 0; ky < p; ky++)
            for (let kx = 0; kx < p; kx++)
              acc += cw[((o * 3 + ch) * p + ky) * p + kx] * crop[(ch * S + py * p + ky) * S + px * p + kx];
        row[o] = acc + pe[(py * g + px) * C + o];
      }
      h.push(row);
    }
  }
  for (let l = 0; l < d.numLayers; l++) {
    const L = `siglip.vision_model.encoder.layers.${l}.`;
    const a = h.map((x) => layerNorm(x, get(`${L}layer_norm1.weight`), get(`${L}layer_norm1.bias`), d.layerNormEps));
    const lin = (n: string) => a.map((x) => linear(x, get(`${L}self_attn.${n}.weight`), C, get(`${L}self_attn.${n}.bias`)));
    const q = lin('q_proj'), k = lin('k_proj'), v = lin('v_proj');
    const att = Array.from({ length: P }, () => new Float64Array(C));
    const scale = 1 / Math.sqrt(hd);
    for (let head = 0; head < nh; head++) {
      const o = head * hd;
      for (let i = 0; i < P; i++) {
        const s = new Float64Array(P);
        let mx = -Infinity;
        for (let j = 0; j < P; j++) {
          let dot = 0;
          for (let t = 0; t < hd; t++) dot += q[i][o + t] * k[j][o + t];
          s[j] = dot * scale;
          if (s[j] > mx) mx = s[j];
        }
        let z = 0;
        for (let j = 0; j < P; j++) { s[j] = Math.exp(s[j] - mx); z += s[j]; }
        for (let j = 0; j < P; j++) {
          const pj = s[j] / z;
          for (let t = 0; t < hd; t++) att[i][o + t] += pj * v[j][o + t];
        }
      }
    }
    h = h.map((x, i) => {
      const y = linear(att[i], get(`${L}self_attn.out_proj.weight`), C, get(`${L}self_attn.out_proj.bias`));
      return x.map((xv, c) => xv + y[c]);
    });
    h = h.map((x) => {
      const m = layerNorm(x, get(`${L}layer_norm2.weight`), get(`${L}layer_norm2.bias`), d.layerNormEps);
      const f1 = linear(m, get(`${L}mlp.fc1.weight`), I, get(`${L}mlp.fc1.bias`)).map(geluTanhRef);
      const f2 = linear(f1, get(`${L}mlp.fc2.weight`), C, get(`${L}mlp.fc2.bias`));
      return x.map((xv, c) => xv + f2[c]);
    });
  }
  return h;
}

/** mlp2x_gelu: Linear(C → Ht), exact GELU, Linear(Ht → Ht), per row. */
export function refProject(w: Wm, rows: Float64Array[]): Float64Array[] {
  const b0 = w.get('mm_projector.0.bias')!, b2 = w.get('mm_projector.2.bias')!;
  return rows.map((x) => linear(linear(x, w.get('mm_projector.0.weight')!, b0.length, b0).map(geluRef), w.get('mm_projector.2.weight')!, b2.length, b2));
}

/** torch interpolate(mode='bilinear', align_corners=False) on map[c][y][x], size (oh, ow), in float64. */
export function refBilinear(map: Float64Array[][], oh: number, ow: number): Float64Array[][] {
  const h = map[0].length, w = map[0][0].length;
  const axis = (n: number, o: number, d: number) => {
    const src = Math.max((n / o) * (d + 0.5) - 0.5, 0);
    const i0 = Math.min(Math.floor(src), n - 1), i1 = Math.min(i0 + 1, n - 1), l1 = src - i0;
    return { i0, i1, l0: 1 - l1, l1 };
  };
  return map.map((plane) => Array.from({ length: oh }, (_, y) => {
    const a = axis(h, oh, y);
    return Float64Array.from({ length: ow }, (_, x) => {
      const b = axis(w, ow, x);
      return a.l0 * (b.l0 * plane[a.i0][b.i0] + b.l1 * plane[a.i0][b.i1]) + a.l1 * (b.l0 * plane[a.i1][b.i0] + b.l1 * plane[a.i1][b.i1]);
    });
  }));
}

/** Python `a // b` for positive floats: (a − fmod(a, b)) / b is within rounding of an integer. */
function floorDiv(a: number, b: number): number {
  return Math.round((a - (a % b)) / b);
}

/**
 * §3.5 step 7 on projected crops (crop 0 the global view, then nH·nW tiles row-major), each P
 * rows of [Ht] → the image's token rows. maxPatches null = plain anyres (no downsample).
 */
export function refMergeAnyres(crops: Float64Array[][], newline: ArrayLike<number>, imageSize: [number, number], tiles: [number, number], g: number, maxPatches: number | null): Float64Array[] {
  const [W, H] = imageSize, [nW, nH] = tiles, Ht = newline.length;
  if (crops.length !== 1 + nW * nH) throw new Error(`reference: ${crops.length} crops for ${nW}×${nH} tiles`);
  // image_feature.view(nH, nW, g, g, Ht).permute(4, 0, 2, 1, 3).flatten → [Ht, nH·g, nW·g].
  let map: Float64Array[][] = Array.from({ length: Ht }, (_, c) => Array.from({ length: nH * g }, (_, r) =>
    Float64Array.from({ length: nW * g }, (_, col) => crops[1 + Math.floor(r / g) * nW + Math.floor(col / g)][(r % g) * g + (col % g)][c])));
  // unpad_image(tensor, (W, H)).
  const curH = nH * g, curW = nW * g;
  if (W / H > curW / curH) {
    const newH = Math.trunc(H * (curW / W)), pad = Math.floor((curH - newH) / 2);
    map = map.map((pl) => pl.slice(pad, curH - pad));
  } else {
    const newW = Math.trunc(W * (curH / H)), pad = Math.floor((curW - newW) / 2);
    map = map.map((pl) => pl.map((row) => row.slice(pad, curW - pad)));
  }
  const h = map[0].length, w = map[0][0].length;
  if (maxPatches !== null) {
    const times = Math.sqrt((h * w) / (maxPatches * g * g));
    if (times > 1.1) map = refBilinear(map, Math.trunc(floorDiv(h, times)), Math.trunc(floorDiv(w, times)));
  }
  const out: Float64Array[] = crops[0].map((r) => Float64Array.from(r));
  const oh = map[0].length, ow = map[0][0].length;
  for (let y = 0; y < oh; y++) {
    for (let x = 0; x < ow; x++) out.push(Float64Array.from({ length: Ht }, (_, c) => map[c][y][x]));
    out.push(Float64Array.from(newline));
  }
  return out;
}

/** §3.5 step 8: one square crop → its P rows then the newline. */
export function refMergeSquare(crop: Float64Array[], newline: ArrayLike<number>): Float64Array[] {
  return [...crop.map((r) => Float64Array.from(r)), Float64Array.from(newline)];
}
