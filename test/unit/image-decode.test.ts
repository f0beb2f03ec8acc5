// decodeImage (lib/image/decode.ts): every accepted input form gives Pillow's
// `Image.open(p).convert('RGB')` bytes (fixtures from scripts/fixtures/pillow.py), EXIF
// orientation is applied only when asked, and every bad input is an ImageError naming it.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ImageError } from '../../lib/errors.js';
import { decodeImage, describeImageInput, type ImageInput } from '../../lib/image/decode.js';
import { FIXTURE_DIR, diffU8, readManifest } from '../fixtures/images/fixtures.js';

const m = readManifest();
const fixture = (name: string) => m.inputs.find((i) => i.name === name)!;

describe('decodeImage matches PIL convert("RGB")', () => {
  for (const e of m.inputs) {
    it(`${e.file} (PIL mode ${e.mode})`, async () => {
      const img = await decodeImage(join(FIXTURE_DIR, e.file), { autoOrient: false });
      expect([img.width, img.height]).toEqual([e.width, e.height]);
      expect(diffU8(img.data, e.rgb, `decodeImage ${e.file}`)).toBeNull();
    });
  }

  it('applies EXIF orientation by default, like ImageOps.exif_transpose', async () => {
    const e = fixture('exif6-64x40');
    const img = await decodeImage(join(FIXTURE_DIR, e.file));
    expect([img.width, img.height]).toEqual([40, 64]);
    expect(diffU8(img.data, e.rgbOriented!, 'decodeImage autoOrient')).toBeNull();
  });

  it('accepts a Buffer, an ArrayBuffer, a Uint8Array view, data: URLs and raw RGB', async () => {
    const e = fixture('rgba-41x29');
    const bytes = readFileSync(join(FIXTURE_DIR, e.file));
    const forms: ImageInput[] = [
      bytes,
      bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length),
      new Uint8Array(bytes),
      `data:image/png;base64,${bytes.toString('base64')}`,
      `data:;base64,${bytes.toString('base64').replace(/(.{76})/g, '$1\n')}`, // wrapped lines
      `data:image/png,${Array.from(bytes, (b) => '%' + b.toString(16).padStart(2, '0')).join('')}`,
    ];
    for (const f of forms) {
      const img = await decodeImage(f);
      expect(diffU8(img.data, e.rgb, describeImageInput(f))).toBeNull();
    }
    const raw = await decodeImage({ data: new Uint8Array(2 * 3 * 3).fill(7), width: 2, height: 3 });
    expect([raw.width, raw.height, raw.data.length, raw.data[17]]).toEqual([2, 3, 18, 7]);
  });
});

describe('decodeImage errors', () => {
  const png = readFileSync(join(FIXTURE_DIR, fixture('rgb-37x23').file));
  const cases: [string, ImageInput | unknown, RegExp, string][] = [
    ['a missing file', '/nonexistent/cat.png', /cannot read image file \(no such file\)/, '/nonexistent/cat.png'],
    ['a directory', FIXTURE_DIR, /is a directory/, FIXTURE_DIR],
    ['an empty Buffer', Buffer.alloc(0), /empty \(0 bytes\)/, 'Buffer of 0 bytes'],
    ['garbage bytes', Buffer.from('definitely not an image'), /cannot decode image/, 'Buffer of 23 bytes'],
    ['a truncated PNG', png.subarray(0, 60), /cannot decode image/, 'Buffer of 60 bytes'],
    ['a data: URL without a comma', 'data:image/png;base64', /malformed data: URL/, 'data: URL'],
    ['a data: URL with bad base64', 'data:image/png;base64,@@@@', /not valid base64/, 'data: URL'],
    ['a data: URL with bad percent-encoding', 'data:image/png,%zz', /not valid percent-encoding/, 'data: URL'],
    ['an empty data: URL', 'data:image/png;base64,', /empty/, 'data: URL'],
    ['raw with zero width', { data: new Uint8Array(0), width: 0, height: 4 }, /integers ≥ 1/, 'raw RGB 0×4'],
    ['raw with the wrong length', { data: new Uint8Array(5), width: 2, height: 1 }, /expected 6 bytes/, 'raw RGB 2×1'],
    ['raw with non-byte data', { data: [1, 2, 3], width: 1, height: 1 }, /Uint8Array/, 'raw RGB 1×1'],
    ['a number', 42, /Expected a path, data: URL/, 'number image input'],
    ['null', null, /Expected a path/, 'null image input'],
  ];
  it.each(cases)('%s', async (_what, input, msg, label) => {
    const err = await decodeImage(input as ImageInput).then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(ImageError);
    expect((err as ImageError).message).toMatch(msg);
    expect((err as ImageError).input).toContain(label);
    expect((err as ImageError).message).toContain(label);
    expect((err as ImageError).code).toBe('DVL_IMAGE');
  });

  it('refuses images over the pixel cap before decoding them', async () => {
    const e = fixture('photo-256x193');
    const path = join(FIXTURE_DIR, e.file);
    await expect(decodeImage(path, { maxPixels: 256 * 193 - 1 })).rejects.toThrow(/exceeds the pixel limit of 49407 \(option maxPixels\)/);
    await expect(decodeImage(path, { maxPixels: 256 * 193 })).resolves.toBeTruthy();
    await expect(decodeImage({ data: new Uint8Array(12), width: 2, height: 2 }, { maxPixels: 3 })).rejects.toThrow(ImageError);
    await expect(decodeImage(path, { maxPixels: 0 })).rejects.toThrow(/Expected integer ≥ 1 for maxPixels/);
  });
});
