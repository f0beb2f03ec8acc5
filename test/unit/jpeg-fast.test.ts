// The addon's baseline JPEG decoder (csrc/napi/jpeg_wrap.cpp, lib/image/jpeg.ts): byte for byte
// what sharp gives — on pictures sharp itself encodes (sizes from 1×1, odd sizes, qualities
// 10-100, 4:2:0 and 4:4:4 chroma, greyscale), on cjpeg's 4:2:2, restart-interval and 16-bit-table
// files (test/fixtures/jpeg) and on the bundled held-out set's JPEGs — and null for everything it
// leaves to sharp, so decodeImage stays exactly what it was.
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { decodeImage } from '../../lib/image/decode.js';
import { decodeJpegFast, FAST_JPEG_MAX_PIXELS } from '../../lib/image/jpeg.js';
import { bundledHeldoutDir } from '../../lib/models.js';

const fixture = (name: string) => readFileSync(fileURLToPath(new URL(`../fixtures/jpeg/${name}`, import.meta.url)));
const sharpRgb = async (b: Uint8Array) => {
  const { data, info } = await sharp(b, { failOn: 'error', autoOrient: true, ignoreIcc: true, pages: 1 })
    .removeAlpha().toColourspace('srgb').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height };
};
/** Gradient plus noise, deterministic. */
function picture(w: number, h: number, channels: 1 | 3): Buffer {
  const px = Buffer.alloc(w * h * channels);
  let r = w * 131 + h;
  for (let i = 0; i < px.length; i++) {
    r = (r * 1103515245 + 12345) & 0x7fffffff;
    const x = (i / channels | 0) % w, y = (i / channels / w) | 0;
    px[i] = (x * 7 + y * 3 + (i % channels) * 60 + ((r >> 8) & 31)) & 255;
  }
  return px;
}
async function expectSharpBytes(b: Uint8Array, label: string) {
  const fast = decodeJpegFast(b, 1e9);
  expect(fast, `${label}: taken by the fast path`).not.toBeNull();
  const ref = await sharpRgb(b);
  expect([fast!.width, fast!.height], label).toEqual([ref.width, ref.height]);
  expect(Buffer.compare(Buffer.from(fast!.data), Buffer.from(ref.data)), `${label}: same bytes as sharp`).toBe(0);
}

describe('baseline JPEGs decoded by the addon', () => {
  it('equal sharp on pictures sharp encodes: sizes, qualities, 4:2:0 and 4:4:4, greyscale', async () => {
    for (const [w, h] of [[1, 1], [2, 2], [3, 5], [7, 5], [8, 8], [9, 9], [16, 16], [17, 33], [64, 3], [3, 64], [150, 200], [201, 149]]) {
      for (const quality of [10, 50, 90, 100]) {
        for (const chromaSubsampling of ['4:2:0', '4:4:4']) {
          const jpg = await sharp(picture(w, h, 3), { raw: { width: w, height: h, channels: 3 } }).jpeg({ quality, chromaSubsampling }).toBuffer();
          await expectSharpBytes(jpg, `${w}×${h} q${quality} ${chromaSubsampling}`);
        }
      }
      const grey = await sharp(picture(w, h, 1), { raw: { width: w, height: h, channels: 1 } }).jpeg({ quality: 80 }).toBuffer();
      await expectSharpBytes(grey, `${w}×${h} greyscale`);
    }
  }, 60_000);

  it("equal sharp on cjpeg's 2×1 sampling, restart intervals, 16-bit tables, greyscale with restarts, and a block driven past white", async () => {
    for (const f of ['37x23-422.jpg', '9x301-422.jpg', '37x23-rst3.jpg', '9x301-rst1r-422.jpg', '37x23-q5.jpg', '37x23-grey-rst.jpg', 'corrupt-bright-block.jpg']) {
      await expectSharpBytes(fixture(f), f);
    }
  });

  it("equal sharp on the bundled held-out set's JPEGs, and decodeImage returns those bytes", async () => {
    const dir = `${bundledHeldoutDir()}/images`;
    const files = readdirSync(dir).filter((f) => f.endsWith('.jpg')).slice(0, 12);
    expect(files.length).toBeGreaterThan(5);
    for (const f of files) {
      const b = readFileSync(`${dir}/${f}`);
      await expectSharpBytes(b, f);
      const img = await decodeImage(b);
      expect(Buffer.compare(Buffer.from(img.data), Buffer.from(decodeJpegFast(b, 1e9)!.data))).toBe(0);
    }
  });

  it('corrupted copies (bytes changed anywhere, cut anywhere): whatever the fast path decodes equals sharp', async () => {
    // Corrupt data decodes in libjpeg-turbo either with warnings (sharp returns the picture) or
    // not at all; where its SIMD IDCT leaves the C algorithm's results (16-bit overflow, the range
    // table's wrap-around) the fast path must refuse. Found by this loop at 60 000 copies: a wrong
    // range-table segment (values 384-511 above the centre) and the SIMD's 16-bit limits.
    const dir = `${bundledHeldoutDir()}/images`;
    const files = readdirSync(dir).filter((f) => f.endsWith('.jpg')).slice(0, 20).map((f) => readFileSync(`${dir}/${f}`));
    let seed = 1, decoded = 0;
    const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff);
    for (let it = 0; it < 4000; it++) {
      const b = Buffer.from(files[it % files.length]);
      for (let j = 1 + (rnd() % 8); j > 0; j--) b[rnd() % b.length] = rnd() & 255;
      const cut = rnd() % 4 === 0 ? rnd() % b.length : b.length;
      const u = b.subarray(0, cut);
      const fast = decodeJpegFast(u, 1e9);
      if (!fast) continue;
      decoded++;
      const ref = await sharpRgb(u);
      expect(Buffer.compare(Buffer.from(fast.data), Buffer.from(ref.data)), `copy ${it}`).toBe(0);
    }
    expect(decoded).toBeGreaterThan(0);   // some corruptions leave a decodable picture
  }, 60_000);

  it('leaves to sharp: progressive, arithmetic, 1×2 sampling, Exif, an ICC profile, corrupt or cut data, too many pixels', async () => {
    for (const f of ['37x23-prog.jpg', '37x23-arith.jpg', '37x23-440.jpg']) expect(decodeJpegFast(fixture(f), 1e9), f).toBeNull();
    // Corrupt but warning-free data whose blocks overflow the SIMD IDCT's 16-bit lanes: sharp
    // decodes them its own way, which this C-exact decoder does not reproduce.
    for (const f of ['corrupt-simd-overflow-1.jpg', 'corrupt-simd-overflow-2.jpg']) {
      expect(decodeJpegFast(fixture(f), 1e9), f).toBeNull();
      expect((await decodeImage(fixture(f))).width).toBeGreaterThan(0);
    }
    const exif = readFileSync(fileURLToPath(new URL('../fixtures/images/inputs/exif6-64x40.jpg', import.meta.url)));
    expect(decodeJpegFast(exif, 1e9)).toBeNull();
    const base = await sharp(picture(40, 30, 3), { raw: { width: 40, height: 30, channels: 3 } }).jpeg({ quality: 90 }).toBuffer();
    expect(decodeJpegFast(base, 1e9)).not.toBeNull();
    const icc = await sharp(picture(40, 30, 3), { raw: { width: 40, height: 30, channels: 3 } }).withIccProfile('srgb').jpeg({ quality: 90 }).toBuffer();
    expect(decodeJpegFast(icc, 1e9)).toBeNull();
    // Cut anywhere inside the data, or a byte of the entropy-coded data turned into a marker.
    for (const cut of [10, 100, base.length / 2, base.length - 3]) expect(decodeJpegFast(base.subarray(0, cut | 0), 1e9), `cut at ${cut}`).toBeNull();
    const marked = Buffer.from(base);
    const sos = marked.indexOf(Buffer.from([0xff, 0xda]));
    marked[sos + 40] = 0xff;
    marked[sos + 41] = 0xd3;
    expect(decodeJpegFast(marked, 1e9)).toBeNull();
    // Pixel limits: the caller's and the fast path's own.
    expect(decodeJpegFast(base, 40 * 30 - 1)).toBeNull();
    const big = await sharp(picture(400, 400, 3), { raw: { width: 400, height: 400, channels: 3 } }).jpeg().toBuffer();
    expect(400 * 400).toBeGreaterThan(FAST_JPEG_MAX_PIXELS);
    expect(decodeJpegFast(big, 1e9)).toBeNull();
    // Not a JPEG at all.
    expect(decodeJpegFast(Buffer.from('not a jpeg'), 1e9)).toBeNull();
    // Every one of these still decodes (or fails) through sharp exactly as before.
    for (const f of ['37x23-prog.jpg', '37x23-arith.jpg', '37x23-440.jpg']) {
      const img = await decodeImage(fixture(f));
      expect(Buffer.compare(Buffer.from(img.data), Buffer.from((await sharpRgb(fixture(f))).data)), f).toBe(0);
    }
  });
});
