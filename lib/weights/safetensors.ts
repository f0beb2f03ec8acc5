// safetensors.ts — reads and checks the header of a .safetensors file; tensor bytes stay on disk.
//
// File layout (the safetensors format): u64 little-endian N, then N bytes of UTF-8 JSON (may be
// padded with spaces so the data starts 8-byte aligned), then the data section. The JSON maps
// each tensor name to { dtype, shape, data_offsets: [begin, end] } with offsets relative to the
// start of the data section, plus an optional "__metadata__" map of strings.
//
// Everything a later pread depends on is checked here, so the native `load` op (csrc/cpu/ops/
// io.cpp) only has to guard memory: spans lie inside the data section, do not overlap, and hold
// exactly numel × dtype-size bytes. Only the 8 + N header bytes are read (fs handle reads).
// Errors are WeightsError naming the file and, where one is at fault, the tensor.
import { open } from 'node:fs/promises';
import { WeightsError } from '../errors.js';

/** Storage dtypes of the safetensors format with their element size in bytes. */
export const SAFETENSORS_DTYPE_SIZE = {
  F64: 8, F32: 4, F16: 2, BF16: 2,
  I64: 8, I32: 4, I16: 2, I8: 1,
  U64: 8, U32: 4, U16: 2, U8: 1,
  BOOL: 1, F8_E4M3: 1, F8_E5M2: 1,
} as const;
export type SafetensorsDType = keyof typeof SAFETENSORS_DTYPE_SIZE;

/** The header claim above which a file is treated as corrupt (real headers are < 10 MB). */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;

export interface SafetensorsEntry {
  /** Tensor name as stored. */
  name: string;
  dtype: SafetensorsDType;
  shape: number[];
  /** Absolute byte offset of the first element in the file. */
  offset: number;
  /** Byte length (numel × dtype size). */
  bytes: number;
}

export interface SafetensorsHeader {
  file: string;
  fileSize: number;
  /** N, the JSON header length. The data section starts at 8 + N. */
  headerBytes: number;
  dataOffset: number;
  metadata: Record<string, string> | null;
  /** Entries in file order (by offset). */
  tensors: Map<string, SafetensorsEntry>;
}

function fail(file: string, message: string, tensor?: string): never {
  throw new WeightsError(`${file}: ${message}`, { file, tensor });
}

/** Reads and validates the header of `file`. */
export async function readSafetensorsHeader(file: string): Promise<SafetensorsHeader> {
  let fh;
  try {
    fh = await open(file, 'r');
  } catch (e) {
    throw new WeightsError(`${file}: cannot open: ${(e as Error).message}`, { file, cause: e });
  }
  try {
    const { size } = await fh.stat();
    if (size < 8) fail(file, `truncated: ${size} bytes, shorter than the 8-byte header length`);
    const lenBuf = Buffer.alloc(8);
    await readExact(fh, lenBuf, 0, file);
    const n = lenBuf.readBigUInt64LE(0);
    if (n > BigInt(MAX_HEADER_BYTES)) fail(file, `header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit (corrupt or not a safetensors file)`);
    const headerBytes = Number(n);
    if (8 + headerBytes > size) fail(file, `header length ${headerBytes} runs past the end of the file (${size} bytes; truncated?)`);
    const json = Buffer.alloc(headerBytes);
    await readExact(fh, json, 8, file);
    return parseSafetensorsHeader(json, file, size);
  } finally {
    await fh.close();
  }
}

async function readExact(fh: import('node:fs/promises').FileHandle, buf: Buffer, position: number, file: string): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const { bytesRead } = await fh.read(buf, done, buf.length - done, position + done);
    if (bytesRead === 0) fail(file, `ended early at byte ${position + done} (truncated file?)`);
    done += bytesRead;
  }
}

/** Validates the JSON header bytes of a file of `fileSize` bytes (exported for tests). */
export function parseSafetensorsHeader(json: Uint8Array, file: string, fileSize: number): SafetensorsHeader {
  const headerBytes = json.length;
  const dataOffset = 8 + headerBytes;
  const dataBytes = fileSize - dataOffset;
  let parsed: unknown;
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(json);
    parsed = JSON.parse(text);
  } catch (e) {
    fail(file, `header is not valid UTF-8 JSON: ${(e as Error).message}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) fail(file, 'header is not a JSON object');
  // JSON.parse keeps the last of two equal keys: a tensor stored twice would silently lose one.
  const keys = topLevelKeys(text);
  if (keys.length !== Object.keys(parsed).length) {
    const seen = new Set<string>();
    const dup = keys.find((k) => (seen.has(k) ? true : (seen.add(k), false)));
    fail(file, `tensor ${dup} appears more than once in the header (corrupt or hand-edited file)`, dup);
  }

  let metadata: Record<string, string> | null = null;
  const entries: SafetensorsEntry[] = [];
  const spans: { begin: number; end: number; name: string }[] = [];
  for (const [name, v] of Object.entries(parsed as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (v === null || typeof v !== 'object' || Array.isArray(v)) fail(file, '__metadata__ is not an object of strings');
      for (const [k, s] of Object.entries(v as Record<string, unknown>)) {
        if (typeof s !== 'string') fail(file, `__metadata__.${k} is not a string`);
      }
      metadata = v as Record<string, string>;
      continue;
    }
    if (v === null || typeof v !== 'object' || Array.isArray(v)) fail(file, `tensor ${name}: entry is not an object`, name);
    const { dtype, shape, data_offsets: offs } = v as Record<string, unknown>;
    if (typeof dtype !== 'string' || !Object.hasOwn(SAFETENSORS_DTYPE_SIZE, dtype)) {
      fail(file, `tensor ${name}: unknown dtype ${JSON.stringify(dtype)} (known: ${Object.keys(SAFETENSORS_DTYPE_SIZE).join(', ')})`, name);
    }
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      fail(file, `tensor ${name}: shape ${JSON.stringify(shape)} is not a list of non-negative integers`, name);
    }
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((d) => Number.isSafeInteger(d) && d >= 0) || offs[0] > offs[1]) {
      fail(file, `tensor ${name}: data_offsets ${JSON.stringify(offs)} is not [begin, end] with 0 ≤ begin ≤ end`, name);
    }
    const [begin, end] = offs as [number, number];
    const size = SAFETENSORS_DTYPE_SIZE[dtype as SafetensorsDType];
    const numel = (shape as number[]).reduce((a, b) => a * b, 1);
    if (!Number.isSafeInteger(numel * size)) fail(file, `tensor ${name}: shape ${JSON.stringify(shape)} is too large`, name);
    if (end - begin !== numel * size) {
      fail(file, `tensor ${name}: span [${begin}, ${end}) holds ${end - begin} bytes but shape ${JSON.stringify(shape)} × ${dtype} (${size} B) needs ${numel * size}`, name);
    }
    if (end > dataBytes) {
      fail(file, `tensor ${name}: span [${begin}, ${end}) runs past the end of the data section (${Math.max(dataBytes, 0)} bytes; truncated file?)`, name);
    }
    entries.push({ name, dtype: dtype as SafetensorsDType, shape: (shape as number[]).slice(), offset: dataOffset + begin, bytes: end - begin });
    spans.push({ begin, end, name });
  }

  // Overlap check on the non-empty spans sorted by start: each must begin at or after the
  // previous one's end. (Empty tensors occupy no bytes and cannot overlap.)
  spans.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let prev: { begin: number; end: number; name: string } | null = null;
  for (const s of spans) {
    if (s.end === s.begin) continue;
    if (prev && s.begin < prev.end) {
      fail(file, `tensor ${s.name}: span [${s.begin}, ${s.end}) overlaps tensor ${prev.name} [${prev.begin}, ${prev.end})`, s.name);
    }
    prev = s;
  }
  entries.sort((a, b) => a.offset - b.offset);
  return { file, fileSize, headerBytes, dataOffset, metadata, tensors: new Map(entries.map((e) => [e.name, e])) };
}

/**
 * The keys of the top-level object of valid JSON `text`, in order, repeats included (a scan
 * that tracks nesting and skips strings; keys are decoded with JSON.parse).
 */
export function topLevelKeys(text: string): string[] {
  const keys: string[] = [];
  let depth = 0, expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {                       // "
      let j = i + 1;
      while (j < text.length) {
        const d = text.charCodeAt(j);
        if (d === 0x5c) j += 2;             // backslash escape
        else if (d === 0x22) break;
        else j++;
      }
      if (depth === 1 && expectKey) { keys.push(JSON.parse(text.slice(i, j + 1)) as string); expectKey = false; }
      i = j;
    } else if (c === 0x7b || c === 0x5b) {  // { [
      depth++;
      if (depth === 1) expectKey = true;
    } else if (c === 0x7d || c === 0x5d) {  // } ]
      depth--;
    } else if (c === 0x2c && depth === 1) { // ,
      expectKey = true;
    }
  }
  return keys;
}
