// The small-PNG fast path (lib/image/png.ts) against sharp, the decoder it stands in for:
// PNGs written here filter by filter (None, Sub, Up, Average, Paeth, and all five in turn) and
// colour type by colour type at odd sizes, split IDATs and harmless extra chunks must decode to
// sharp's bytes exactly; PNGs from sharp's and Pillow's encoders too; and every input outside
// the fast path's scope (16-bit, interlaced, gamma/ICC/EXIF chunks, bad CRCs, truncation, bad
// filter bytes, palette overruns, too many pixels) must be refused (null), leaving decodeImage's
// answer — bytes or error — what sharp alone gives.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32, deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { decodeImage } from '../../lib/image/decode.js';
import { decodePngFast, FAST_PNG_MAX_PIXELS } from '../../lib/image/png.js';
import { FIXTURE_DIR } from '../fixtures/images/fixtures.js';
import { rng } from '../helpers/random.js';

/** sharp's decode with decodeImage's options: the reference for the fast path. */
async function viaSharp(bytes: Uint8Array): Promise<{ data: Uint8Array; width: number; height: number } | Error> {
  try {
    const { data, info } = await sharp(bytes, { failOn: 'error', ignoreIcc: true, pages: 1, autoOrient: true })
      .removeAlpha().toColourspace('srgb').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
    return { data: new Uint8Array(data), width: info.width, height: info.height };
  } catch (e) {
    return e as Error;
  }
}

function chunk(type: string, data: Uint8Array): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}

const CHANNELS: Record<number, number> = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };

/** Applies PNG filter `f` to one row (bytes per pixel `bpp`, the unfiltered row above `prev`). */
function filterRow(f: number, row: Uint8Array, prev: Uint8Array | null, bpp: number): Uint8Array {
  const out = new Uint8Array(row.length);
  for (let x = 0; x < row.length; x++) {
    const a = x >= bpp ? row[x - bpp] : 0, b = prev ? prev[x] : 0, c = prev && x >= bpp ? prev[x - bpp] : 0;
    let pred = 0;
    if (f === 1) pred = a;
    else if (f === 2) pred = b;
    else if (f === 3) pred = (a + b) >> 1;
    else if (f === 4) {
      const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
      pred = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
    }
    out[x] = (row[x] - pred) & 255;
  }
  return out;
}

interface PngSpec {
  width: number;
  height: number;
  colour: number;
  /** A filter for every row, or -1: rows cycle through 0-4. */
  filter: number;
  seed: number;
  idatPieces?: number;
  extra?: [string, Uint8Array][];
}

/** Writes a PNG by hand: smooth-plus-noise pixels (so every filter's arithmetic wraps somewhere). */
function writePng(s: PngSpec): Buffer {
  const bpp = CHANNELS[s.colour], stride = s.width * bpp, rnd = rng(s.seed);
  const rows: Uint8Array[] = [];
  const paletteSize = 37;
  for (let y = 0; y < s.height; y++) {
    const row = new Uint8Array(stride);
    for (let x = 0; x < stride; x++) {
      const smooth = (x * 7 + y * 13) & 255;
      row[x] = s.colour === 3 ? Math.floor(rnd() * paletteSize) : (smooth + Math.floor(rnd() * 64)) & 255;
    }
    rows.push(row);
  }
  const raw = Buffer.concat(rows.map((r, y) => {
    const f = s.filter >= 0 ? s.filter : y % 5;
    return Buffer.concat([Buffer.from([f]), filterRow(f, r, y > 0 ? rows[y - 1] : null, bpp)]);
  }));
  const z = deflateSync(raw);
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(s.width, 0);
  ihdr.writeUInt32BE(s.height, 4);
  ihdr.set([8, s.colour, 0, 0, 0], 8);
  const parts = [Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), chunk('IHDR', ihdr)];
  if (s.colour === 3) parts.push(chunk('PLTE', Uint8Array.from({ length: paletteSize * 3 }, () => Math.floor(rnd() * 256))));
  for (const [t, d] of s.extra ?? []) parts.push(chunk(t, d));
  const pieces = s.idatPieces ?? 1, step = Math.ceil(z.length / pieces);
  for (let i = 0; i < z.length; i += step) parts.push(chunk('IDAT', z.subarray(i, i + step)));
  parts.push(chunk('IEND', new Uint8Array(0)));
  return Buffer.concat(parts);
}

async function expectSameAsSharp(bytes: Uint8Array, what: string): Promise<void> {
  const fast = decodePngFast(bytes, FAST_PNG_MAX_PIXELS);
  const ref = await viaSharp(bytes);
  if (ref instanceof Error) throw new Error(`${what}: sharp refused it (${ref.message})`);
  expect(fast, `${what}: the fast path refused it`).not.toBeNull();
  expect([fast!.width, fast!.height], what).toEqual([ref.width, ref.height]);
  expect(Buffer.compare(Buffer.from(fast!.data), Buffer.from(ref.data)), `${what}: bytes differ from sharp's`).toBe(0);
}

describe('decodePngFast = sharp, byte for byte', () => {
  const sizes: [number, number][] = [[1, 1], [1, 7], [7, 1], [13, 9], [64, 33]];
  for (const colour of [0, 2, 3, 4, 6]) {
    it(`colour type ${colour}: filters 0-4 and mixed, sizes ${sizes.map((s) => s.join('×')).join(' ')}`, async () => {
      let seed = 1;
      for (const [width, height] of sizes)
        for (const filter of [0, 1, 2, 3, 4, -1])
          await expectSameAsSharp(writePng({ width, height, colour, filter, seed: seed++ }), `${width}×${height} colour ${colour} filter ${filter}`);
    });
  }

  it('split IDATs, tRNS, text and pHYs chunks', async () => {
    const text = new Uint8Array(Buffer.from('Comment\0made by the test', 'latin1'));
    const phys = Uint8Array.from([0, 0, 11, 19, 0, 0, 11, 19, 1]);
    await expectSameAsSharp(writePng({ width: 31, height: 17, colour: 2, filter: -1, seed: 5, idatPieces: 4, extra: [['tEXt', text], ['pHYs', phys]] }), 'RGB, 4 IDATs');
    await expectSameAsSharp(writePng({ width: 31, height: 17, colour: 2, filter: 4, seed: 6, extra: [['tRNS', Uint8Array.from([0, 1, 0, 2, 0, 3])]] }), 'RGB + tRNS');
    await expectSameAsSharp(writePng({ width: 31, height: 17, colour: 3, filter: 1, seed: 7, extra: [['tRNS', Uint8Array.from([0, 128, 255])]] }), 'palette + tRNS');
  });

  it("sharp's and Pillow's encoders (adaptive filters, palettes, greys, alpha)", async () => {
    const base = sharp({ create: { width: 45, height: 29, channels: 4, background: { r: 10, g: 200, b: 90, alpha: 0.5 } } })
      .composite([{ input: Buffer.from('<svg width="45" height="29"><circle cx="20" cy="14" r="11" fill="#c33"/></svg>'), blend: 'over' }]);
    const rgba = await base.png().toBuffer();
    const encoded: [string, Buffer][] = [
      ['RGBA', rgba],
      ['RGB adaptive', await sharp(rgba).removeAlpha().png({ adaptiveFiltering: true, compressionLevel: 9 }).toBuffer()],
      ['palette', await sharp(rgba).png({ palette: true, colours: 13 }).toBuffer()],
      ['grey', await sharp(rgba).removeAlpha().greyscale().png().toBuffer()],
      ['grey + alpha', await sharp(rgba).greyscale().png().toBuffer()],
    ];
    for (const [what, bytes] of encoded) {
      // Only the fast path's own cases count; sharp may add chunks (e.g. a palette's bit depth < 8).
      if (decodePngFast(bytes, FAST_PNG_MAX_PIXELS) !== null || what === 'RGBA' || what === 'RGB adaptive') await expectSameAsSharp(bytes, `sharp ${what}`);
    }
    const dir = join(FIXTURE_DIR, 'inputs');
    const pillow = readdirSync(dir).filter((f) => f.endsWith('.png'));
    let accepted = 0;
    for (const f of pillow) {
      const bytes = readFileSync(join(dir, f));
      if (decodePngFast(bytes, FAST_PNG_MAX_PIXELS) === null) continue;
      accepted++;
      await expectSameAsSharp(bytes, f);
    }
    expect(accepted, 'Pillow fixtures the fast path decoded').toBeGreaterThanOrEqual(3);
  });
});

/** A copy of `b` with byte `at` xor-ed by `x`. */
function flipped(b: Buffer, at: number, x = 1): Buffer {
  const c = Buffer.from(b);
  c[at] ^= x;
  return c;
}

/** Re-chunks a PNG: the chunk list (type, data) with `edit` applied, CRCs recomputed. */
function rechunk(b: Buffer, edit: (chunks: [string, Buffer][]) => [string, Buffer][]): Buffer {
  const chunks: [string, Buffer][] = [];
  for (let p = 8; p < b.length; ) {
    const len = b.readUInt32BE(p);
    chunks.push([b.toString('latin1', p + 4, p + 8), b.subarray(p + 8, p + 8 + len)]);
    p += 12 + len;
  }
  return Buffer.concat([b.subarray(0, 8), ...edit(chunks).map(([t, d]) => chunk(t, d))]);
}

describe('decodePngFast refuses what it does not decode exactly; decodeImage then answers as sharp does', () => {
  const good = writePng({ width: 23, height: 11, colour: 2, filter: -1, seed: 9, idatPieces: 2 });
  const ihdrAt = 8 + 8; // the IHDR's data
  const firstIdatData = good.indexOf('IDAT', 0, 'latin1') + 4;
  const withFilterByte = (f: number) => {
    const raw = Buffer.alloc(11 * (23 * 3 + 1), 0);
    raw[(23 * 3 + 1) * 5] = f;
    return rechunk(good, (cs) => [...cs.filter(([t]) => t !== 'IDAT' && t !== 'IEND'), ['IDAT', deflateSync(raw)], ['IEND', Buffer.alloc(0)]]);
  };
  const cases: [string, Buffer, number?][] = [
    ['16-bit samples', rechunk(good, (cs) => cs.map(([t, d]) => [t, t === 'IHDR' ? Buffer.from([...d.subarray(0, 8), 16, ...d.subarray(9)]) : d]))],
    ['interlaced', rechunk(good, (cs) => cs.map(([t, d]) => [t, t === 'IHDR' ? Buffer.from([...d.subarray(0, 12), 1]) : d]))],
    ['a gAMA chunk', rechunk(good, (cs) => [cs[0], ['gAMA', Buffer.from([0, 0, 0xb1, 0x8f])], ...cs.slice(1)])],
    ['an iCCP chunk', rechunk(good, (cs) => [cs[0], ['iCCP', Buffer.concat([Buffer.from('p\0\0'), deflateSync(Buffer.alloc(8))])], ...cs.slice(1)])],
    ['an eXIf chunk', rechunk(good, (cs) => [cs[0], ['eXIf', Buffer.from('MM\0*\0\0\0\x08\0\0', 'latin1')], ...cs.slice(1)])],
    ['a bad IHDR CRC', flipped(good, ihdrAt + 13)],
    ['a bad IDAT CRC (a data byte changed)', flipped(good, firstIdatData + 3)],
    ['truncated inside IDAT', good.subarray(0, firstIdatData + 10)],
    ['no IEND', good.subarray(0, good.length - 12)],
    ['IDATs not consecutive', rechunk(good, (cs) => { const i = cs.findIndex(([t]) => t === 'IDAT'); return [...cs.slice(0, i + 1), ['tEXt', Buffer.from('a\0b')], ...cs.slice(i + 1)]; })],
    ['too little image data', rechunk(good, (cs) => [...cs.filter(([t]) => t !== 'IDAT' && t !== 'IEND'), ['IDAT', deflateSync(Buffer.alloc(100))], ['IEND', Buffer.alloc(0)]])],
    ['too much image data', rechunk(good, (cs) => [...cs.filter(([t]) => t !== 'IDAT' && t !== 'IEND'), ['IDAT', deflateSync(Buffer.alloc(11 * 70 + 1))], ['IEND', Buffer.alloc(0)]])],
    ['an IDAT that inflates to 64 MB (a deflate bomb: the inflate stops past the picture size)', rechunk(good, (cs) => [...cs.filter(([t]) => t !== 'IDAT' && t !== 'IEND'), ['IDAT', deflateSync(Buffer.alloc(64 << 20))], ['IEND', Buffer.alloc(0)]])],
    ['filter byte 5', withFilterByte(5)],
    ['a palette index past the PLTE', rechunk(writePng({ width: 9, height: 4, colour: 3, filter: 0, seed: 3 }), (cs) => cs.map(([t, d]) => [t, t === 'PLTE' ? d.subarray(0, 9) : d]))],
    ['more pixels than maxPixels', good, 23 * 11 - 1],
    ['more pixels than the fast path takes', writePng({ width: 1, height: FAST_PNG_MAX_PIXELS + 1, colour: 0, filter: 0, seed: 1 })],
    ['a second IHDR', rechunk(good, (cs) => [cs[0], cs[0], ...cs.slice(1)])],
    ['an IEND with data', rechunk(good, (cs) => cs.map(([t, d]) => [t, t === 'IEND' ? Buffer.from([1]) : d]))],
    ['not a PNG', Buffer.from('GIF89a\x01\0\x01\0\0\0\0;', 'latin1')],
  ];
  for (const [what, bytes, maxPixels] of cases) {
    it(what, async () => {
      expect(decodePngFast(bytes, maxPixels ?? FAST_PNG_MAX_PIXELS)).toBeNull();
      let got: Uint8Array | Error;
      try {
        got = (await decodeImage(bytes, maxPixels ? { maxPixels } : {})).data;
      } catch (e) {
        got = e as Error;
      }
      const ref = maxPixels ? new Error('pixel limit') : await viaSharp(bytes);
      if (ref instanceof Error) {
        expect(got, `${what}: sharp refuses it, so must decodeImage`).toBeInstanceOf(Error);
      } else {
        expect(got).toBeInstanceOf(Uint8Array);
        expect(Buffer.compare(Buffer.from(got as Uint8Array), Buffer.from(ref.data))).toBe(0);
      }
    });
  }

  it('the good PNG of those cases is accepted (so each refusal is the edit, not the base)', async () => {
    await expectSameAsSharp(good, 'base');
  });

  it('harmless oddities sharp reads too are decoded alike: bytes after IEND or after the zlib stream, a suggested palette', async () => {
    await expectSameAsSharp(Buffer.concat([good, Buffer.from('trailing bytes')]), 'bytes after IEND');
    await expectSameAsSharp(rechunk(good, (cs) => { const i = cs.findIndex(([t]) => t === 'IDAT'); return [...cs.slice(0, i), ['IDAT', Buffer.concat([...cs.filter(([t]) => t === 'IDAT').map(([, d]) => d), Buffer.from([1, 2, 3])])], ['IEND', Buffer.alloc(0)]]; }), 'bytes after the zlib stream');
    const grey = writePng({ width: 9, height: 5, colour: 0, filter: -1, seed: 4 });
    await expectSameAsSharp(rechunk(grey, (cs) => [cs[0], ['PLTE', Buffer.from([1, 2, 3])], ...cs.slice(1)]), 'a PLTE in a grey PNG');
  });
});
