// lib/image/decode.ts, the hostile-input side: only regular files are read (a FIFO or a device
// is refused before a byte is read), files and buffers have a size cap, SVG and other
// non-raster formats are refused, and probeImage reads the size from the header alone.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ImageError } from '../../lib/errors.js';
import { SYNC_READ_MAX_BYTES, decodeImage, jpegHeader, probeImage, readImageFile } from '../../lib/image/decode.js';

const input = (f: string) => fileURLToPath(new URL(`../fixtures/images/inputs/${f}`, import.meta.url));
let tmp: string;
beforeAll(() => { tmp = mkdtempSync(join(tmpdir(), 'dvl-probe-')); });
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('probeImage', () => {
  it('gives the size decodeImage returns, EXIF orientation included, without decoding', async () => {
    for (const [f, autoOrient] of [['photo-256x193.png', true], ['lossless-30x20.webp', true], ['exif6-64x40.jpg', true], ['exif6-64x40.jpg', false]] as const) {
      const p = await probeImage(input(f), { autoOrient });
      const d = await decodeImage(input(f), { autoOrient });
      expect([p.width, p.height], f).toEqual([d.width, d.height]);
    }
    expect((await probeImage(input('exif6-64x40.jpg'))).format).toBe('jpeg');
    expect(await probeImage({ data: new Uint8Array(12), width: 2, height: 2 })).toMatchObject({ width: 2, height: 2, format: 'raw' });
  });

  it('PNG headers read in JS give what sharp\'s metadata gives; an eXIf orientation, a truncated file and other formats go to sharp', async () => {
    const sharp = (await import('sharp')).default;
    for (const f of ['grey-50x33.png', 'noise-100x61.png', 'palette-20x15.png', 'photo-256x193.png', 'rgb-37x23.png', 'rgba-41x29.png', 'tall-9x301.png', 'wide-700x500.png']) {
      const bytes = readFileSync(input(f));
      const m = await sharp(bytes).metadata();
      expect(await probeImage(bytes), f).toMatchObject({ width: m.width, height: m.height, format: 'png' });
    }
    // Orientation 6 in an eXIf chunk: the probe must report the rotated size decodeImage returns.
    const rotated = await sharp({ create: { width: 40, height: 20, channels: 3, background: { r: 10, g: 200, b: 30 } } })
      .png().withMetadata({ orientation: 6 }).toBuffer();
    const d = await decodeImage(rotated);
    expect([d.width, d.height]).toEqual([20, 40]);
    expect(await probeImage(rotated)).toMatchObject({ width: 20, height: 40 });
    expect(await probeImage(rotated, { autoOrient: false })).toMatchObject({ width: 40, height: 20 });
    // A PNG cut short: its chunk list never reaches IEND, so sharp judges it (and the decode fails).
    const photo = readFileSync(input('photo-256x193.png'));
    const cut = photo.subarray(0, photo.length >> 1);
    const probed = await probeImage(cut).then((p) => p, (e: unknown) => e);
    if (!(probed instanceof ImageError)) expect(probed).toMatchObject({ width: 256, height: 193 });
    await expect(decodeImage(cut)).rejects.toBeInstanceOf(ImageError);
  });

  it('JPEG frame headers read in JS give what sharp\'s metadata gives; Exif, no frame header or a cut segment list go to sharp', async () => {
    const sharp = (await import('sharp')).default;
    const plain = async (w: number, h: number, opts: object) => sharp({ create: { width: w, height: h, channels: 3, background: { r: 200, g: 40, b: 90 } } }).jpeg(opts).toBuffer();
    const files: [string, Buffer][] = [
      ['baseline 33x17', await plain(33, 17, {})],
      ['progressive 300x7', await plain(300, 7, { progressive: true })],
      ['4:4:4 1x1', await plain(1, 1, { chromaSubsampling: '4:4:4' })],
      ['optimised 640x480', await plain(640, 480, { optimiseCoding: true, quality: 40 })],
    ];
    const heldout = fileURLToPath(new URL('../../models/shapes-heldout/images/', import.meta.url));
    const jpgs = readdirSync(heldout).filter((f) => f.endsWith('.jpg')).slice(0, 4);
    expect(jpgs.length).toBeGreaterThan(0);
    for (const f of jpgs) files.push([f, readFileSync(join(heldout, f))]);
    for (const [name, bytes] of files) {
      const m = await sharp(bytes).metadata();
      expect(jpegHeader(bytes), name).toEqual({ width: m.width, height: m.height, format: 'jpeg' });
      const d = await decodeImage(bytes);
      expect(await probeImage(bytes), name).toMatchObject({ width: d.width, height: d.height, format: 'jpeg' });
    }
    // Exif (orientation 6): sharp decides, and the probe reports the rotated size decodeImage returns.
    const exif = readFileSync(input('exif6-64x40.jpg'));
    expect(jpegHeader(exif)).toBeNull();
    expect(await probeImage(exif)).toMatchObject({ width: 40, height: 64 });
    // Cut inside the segment list, or no SOI: not read here.
    const base = files[0]![1];
    const sos = base.indexOf(Buffer.from([0xff, 0xda]));
    expect(jpegHeader(base.subarray(0, sos - 3))).toBeNull();
    expect(jpegHeader(base.subarray(0, 30))).toBeNull();
    expect(jpegHeader(Buffer.concat([Buffer.from([0, 0]), base]))).toBeNull();
    // A frame header with height 0 (a DNL marker would give it later): sharp decides.
    const sof = base.indexOf(Buffer.from([0xff, 0xc0]));
    const zero = Buffer.from(base);
    zero[sof + 5] = 0; zero[sof + 6] = 0;
    expect(jpegHeader(zero)).toBeNull();
  });

  it('the pixel limit applies to the header size', async () => {
    await expect(probeImage(input('photo-256x193.png'), { maxPixels: 1000 })).rejects.toThrow(/256×193 exceeds the pixel limit of 1000/);
  });
});

describe('reading files', () => {
  it('a FIFO is refused without blocking (no writer is ever attached)', async () => {
    const fifo = join(tmp, 'pipe');
    if (spawnSync('mkfifo', [fifo]).status !== 0) return;   // no mkfifo: nothing to test
    await expect(decodeImage(fifo)).rejects.toThrow(/is a FIFO; only regular files are read/);
    await expect(probeImage(fifo)).rejects.toBeInstanceOf(ImageError);
  });

  it('devices and directories are refused', async () => {
    await expect(readImageFile('/dev/zero', 1000)).rejects.toThrow(/is a character device/);
    await expect(readImageFile(tmp, 1000)).rejects.toThrow(/is a directory/);
    await expect(readImageFile(join(tmp, 'missing.png'), 1000)).rejects.toThrow(/no such file/);
  });

  it('size caps for files, buffers and data: URLs', async () => {
    const png = readFileSync(input('photo-256x193.png'));
    await expect(decodeImage(input('photo-256x193.png'), { maxBytes: 100 })).rejects.toThrow(/is \d+ bytes, more than the limit of 100/);
    await expect(decodeImage(png, { maxBytes: 100 })).rejects.toThrow(/bytes of encoded image, more than the limit of 100/);
    await expect(decodeImage(`data:image/png;base64,${png.toString('base64')}`, { maxBytes: 100 })).rejects.toThrow(/longer than an image of 100 bytes/);
    expect((await readImageFile(input('photo-256x193.png'), png.length)).length).toBe(png.length);
  });

  it('small files are read synchronously, larger ones asynchronously: the same bytes either side of the switch', async () => {
    for (const size of [1, SYNC_READ_MAX_BYTES, SYNC_READ_MAX_BYTES + 1, 3 * SYNC_READ_MAX_BYTES + 17]) {
      const f = join(tmp, `bytes-${size}`);
      const data = Buffer.alloc(size);
      for (let i = 0; i < size; i += 4096) data[i] = (i / 4096) & 255;
      data[size - 1] = 0xab;
      writeFileSync(f, data);
      const got = await readImageFile(f, 4 * SYNC_READ_MAX_BYTES);
      expect(got.length, `${size} bytes`).toBe(size);
      expect(Buffer.compare(Buffer.from(got), data), `${size} bytes`).toBe(0);
      await expect(readImageFile(f, size - 1)).rejects.toThrow(/more than the limit/);
    }
  });

  it('SVG is not an accepted format', async () => {
    const svg = join(tmp, 'x.svg');
    writeFileSync(svg, '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>');
    await expect(decodeImage(svg)).rejects.toThrow(/svg images are not accepted \(formats: png, jpeg, webp, gif, tiff\)/);
    await expect(probeImage(svg)).rejects.toThrow(/svg images are not accepted/);
  });
});
