// safetensors header parsing: a valid file round-trips; every malformed file is refused with a
// WeightsError naming the file (and the tensor when one is at fault). Each bad case is its own
// small file written by the test.
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WeightsError } from '../../lib/errors.js';
import { MAX_HEADER_BYTES, readSafetensorsHeader, topLevelKeys } from '../../lib/weights/safetensors.js';
import { writeRawSafetensors, writeSafetensors } from '../helpers/checkpoint.js';

let dir: string;
beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'dvl-st-')); });
afterAll(async () => { await rm(dir, { recursive: true, force: true }); });

let n = 0;
/** A file with header JSON `h` followed by `dataBytes` zero bytes. */
async function raw(h: unknown, dataBytes: number): Promise<string> {
  const f = join(dir, `case-${n++}.safetensors`);
  const body = Buffer.concat([Buffer.from(typeof h === 'string' ? h : JSON.stringify(h), 'utf8'), Buffer.alloc(dataBytes)]);
  await writeRawSafetensors(f, body.length - dataBytes, body);
  return f;
}

/** Expects a WeightsError whose message matches `re`, naming `file` and optionally `tensor`. */
async function refused(file: string, re: RegExp, tensor?: string): Promise<WeightsError> {
  const e = await readSafetensorsHeader(file).then(() => null, (x: unknown) => x);
  expect(e).toBeInstanceOf(WeightsError);
  const w = e as WeightsError;
  expect(w.message).toMatch(re);
  expect(w.file).toBe(file);
  expect(w.message).toContain(file);
  if (tensor !== undefined) {
    expect(w.tensor).toBe(tensor);
    expect(w.message).toContain(tensor);
  }
  return w;
}

describe('safetensors header', () => {
  it('reads a valid file: offsets, shapes, metadata, 8-byte aligned data', async () => {
    const f = join(dir, 'ok.safetensors');
    const a = new Float32Array([1, 2, 3, 4, 5, 6]);
    const b = new Uint16Array([7, 8, 9]);
    const c = new Int32Array([-1]);
    const spans = await writeSafetensors(f, [
      { name: 'a', dtype: 'F32', shape: [2, 3], data: a },
      { name: 'b.bias', dtype: 'BF16', shape: [3], data: b },
      { name: 'empty', dtype: 'F16', shape: [0, 4], data: new Uint16Array(0) },
      { name: 'c', dtype: 'I32', shape: [1], data: c },
    ], { format: 'pt' });
    const h = await readSafetensorsHeader(f);
    expect(h.dataOffset % 8).toBe(0);
    expect(h.metadata).toEqual({ format: 'pt' });
    expect([...h.tensors.keys()].sort()).toEqual(['a', 'b.bias', 'c', 'empty']);
    const ea = h.tensors.get('a')!;
    expect(ea).toMatchObject({ dtype: 'F32', shape: [2, 3], offset: h.dataOffset, bytes: 24 });
    expect([ea.offset, ea.offset + ea.bytes]).toEqual(spans.get('a'));
    expect(h.tensors.get('b.bias')).toMatchObject({ dtype: 'BF16', shape: [3], offset: h.dataOffset + 24, bytes: 6 });
    expect(h.tensors.get('empty')).toMatchObject({ shape: [0, 4], bytes: 0 });
    expect(h.tensors.get('c')).toMatchObject({ dtype: 'I32', offset: h.dataOffset + 30, bytes: 4 });
  });

  it('accepts a header with no __metadata__ and no tensors', async () => {
    const h = await readSafetensorsHeader(await raw({}, 0));
    expect(h.metadata).toBeNull();
    expect(h.tensors.size).toBe(0);
  });

  it('refuses a file shorter than the 8-byte length', async () => {
    const f = join(dir, 'short.safetensors');
    await writeFile(f, Buffer.from([1, 2, 3]));
    await refused(f, /truncated: 3 bytes/);
  });

  it('refuses a header length past the end of the file', async () => {
    const f = join(dir, 'pastend.safetensors');
    await writeRawSafetensors(f, 500, '{"a":');
    await refused(f, /header length 500 runs past the end of the file/);
  });

  it('refuses a header length claim over 100 MB', async () => {
    const f = join(dir, 'huge.safetensors');
    await writeRawSafetensors(f, BigInt(MAX_HEADER_BYTES) + 1n, '{}');
    await refused(f, /exceeds the 104857600-byte limit/);
    const g = join(dir, 'huge2.safetensors');
    await writeRawSafetensors(g, 0xffffffffffffffffn, '{}');
    await refused(g, /exceeds/);
  });

  it('refuses bad JSON, non-object JSON and invalid UTF-8', async () => {
    await refused(await raw('{"a": {"dtype": "F32",', 0), /not valid UTF-8 JSON/);
    await refused(await raw('[1, 2]', 0), /not a JSON object/);
    const f = join(dir, 'utf8.safetensors');
    await writeRawSafetensors(f, 4, new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]));
    await refused(f, /not valid UTF-8 JSON/);
  });

  it('refuses a malformed __metadata__', async () => {
    await refused(await raw({ __metadata__: { format: 3 } }, 0), /__metadata__\.format is not a string/);
    await refused(await raw({ __metadata__: ['x'] }, 0), /__metadata__ is not an object/);
  });

  it('refuses an unknown dtype, naming the dtype, file and tensor', async () => {
    const f = await raw({ 'model.norm.weight': { dtype: 'Q4_K', shape: [4], data_offsets: [0, 4] } }, 4);
    const e = await refused(f, /unknown dtype "Q4_K"/, 'model.norm.weight');
    expect(e.message).toContain('Q4_K');
  });

  it('refuses shapes and offsets that are not integers', async () => {
    await refused(await raw({ t: { dtype: 'F32', shape: [2, -1], data_offsets: [0, 8] } }, 8), /shape \[2,-1\]/, 't');
    await refused(await raw({ t: { dtype: 'F32', shape: [1.5], data_offsets: [0, 4] } }, 8), /shape/, 't');
    await refused(await raw({ t: { dtype: 'F32', shape: '4', data_offsets: [0, 16] } }, 16), /shape/, 't');
    await refused(await raw({ t: { dtype: 'F32', shape: [1], data_offsets: [4, 0] } }, 8), /data_offsets \[4,0\]/, 't');
    await refused(await raw({ t: { dtype: 'F32', shape: [1] } }, 8), /data_offsets undefined/, 't');
    await refused(await raw({ t: 7 }, 0), /entry is not an object/, 't');
  });

  it('refuses a span whose size is not shape × dtype size', async () => {
    const f = await raw({ w: { dtype: 'BF16', shape: [3, 4], data_offsets: [0, 48] } }, 48);
    await refused(f, /holds 48 bytes but shape \[3,4\] × BF16 \(2 B\) needs 24/, 'w');
  });

  it('refuses overlapping spans, naming both tensors', async () => {
    const f = await raw({
      a: { dtype: 'F32', shape: [4], data_offsets: [0, 16] },
      b: { dtype: 'F32', shape: [4], data_offsets: [12, 28] },
    }, 28);
    const e = await refused(f, /overlaps tensor a/, 'b');
    expect(e.message).toContain('[12, 28)');
  });

  it('refuses a span past the end of the data section', async () => {
    const f = await raw({ w: { dtype: 'F32', shape: [8], data_offsets: [0, 32] } }, 31);
    await refused(f, /runs past the end of the data section \(31 bytes/, 'w');
  });

  it('refuses a valid file truncated in its data section', async () => {
    const f = join(dir, 'cut.safetensors');
    await writeSafetensors(f, [
      { name: 'x', dtype: 'F32', shape: [16], data: new Float32Array(16) },
      { name: 'y', dtype: 'F32', shape: [16], data: new Float32Array(16) },
    ]);
    const h = await readSafetensorsHeader(f);
    await truncate(f, h.dataOffset + 64 + 10);
    await refused(f, /runs past the end/, 'y');
  });

  it('refuses a missing file with a WeightsError', async () => {
    await refused(join(dir, 'nope.safetensors'), /cannot open/);
  });

  it('refuses a header that names a tensor twice (JSON.parse would keep the last silently)', async () => {
    const f = join(dir, 'dup.safetensors');
    const entry = '{"dtype":"F32","shape":[1],"data_offsets":[0,4]}';
    const json = `{"a":${entry},"a":${entry}}`;
    await writeRawSafetensors(f, json.length, json + '\0\0\0\0');
    await refused(f, /tensor a appears more than once in the header/);
  });
});

describe('topLevelKeys', () => {
  it('lists the top-level keys of valid JSON in order, repeats included, skipping nested ones and strings', () => {
    expect(topLevelKeys('{"a":1,"b":{"a":2,"c":[{"d":3},"x,\\"y"]},"a\\u0041":"}{","b":null}')).toEqual(['a', 'b', 'a\\u0041'.replace('\\u0041', 'A'), 'b']);
    expect(topLevelKeys(' { } ')).toEqual([]);
    expect(topLevelKeys('{"\\"k\\"": [1, {"z": {}}], "k2": "v,\\"w"}')).toEqual(['"k"', 'k2']);
  });
});
