// lib/image/decode.ts, the hostile-input side: only regular files are read (a FIFO or a device
// is refused before a byte is read), files and buffers have a size cap, SVG and other
// non-raster formats are refused, and probeImage reads the size from the header alone.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ImageError } from '../../lib/errors.js';
import { decodeImage, probeImage, readImageFile } from '../../lib/image/decode.js';

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

  it('SVG is not an accepted format', async () => {
    const svg = join(tmp, 'x.svg');
    writeFileSync(svg, '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>');
    await expect(decodeImage(svg)).rejects.toThrow(/svg images are not accepted \(formats: png, jpeg, webp, gif, tiff\)/);
    await expect(probeImage(svg)).rejects.toThrow(/svg images are not accepted/);
  });
});
