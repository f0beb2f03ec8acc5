// Hostile inputs: model folders and checkpoints, images, chat templates. Typed errors naming the
// culprit, before any expensive work; never a crash, a hang or a runaway allocation.
import { spawnSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { bundledModelDir } from '../../lib/models.js';
import { writeRawSafetensors } from '../helpers/checkpoint.js';
import { writeTinyModel } from '../helpers/tinyModel.js';
import { hostileSuite, ROOT, type HostileCase } from './harness.js';

const F: Record<string, string> = {};
let tmp: string;

// ---- fixtures --------------------------------------------------------------------------------

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(b: Buffer): number {
  let c = 0xffffffff;
  for (const x of b) c = CRC_TABLE[(c ^ x) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
function chunk(type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4); len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4); crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}
/** A PNG whose header claims w×h RGB; its pixel data is a few bytes (decoding it would fail). */
function pngHeaderOnly(w: number, h: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0); ihdr.writeUInt32BE(h, 4); ihdr[8] = 8; ihdr[9] = 2;
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr),
    chunk('IDAT', Buffer.from([0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01])), chunk('IEND', Buffer.alloc(0))]);
}

/** The bundled model's folder copied, with its config edited. */
function modelWith(name: string, edit: (cfg: Record<string, unknown>) => void): string {
  const dir = join(tmp, name);
  cpSync(bundledModelDir(), dir, { recursive: true });
  const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  edit(cfg);
  writeFileSync(join(dir, 'config.json'), JSON.stringify(cfg));
  return dir;
}

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'dvl-hostile-'));
  F.photo = join(ROOT, 'test', 'fixtures', 'images', 'inputs', 'photo-256x193.png');
  F.fifo = join(tmp, 'image.fifo');
  const mk = spawnSync('mkfifo', [F.fifo]);
  if (mk.status !== 0) throw new Error(`mkfifo failed: ${mk.stderr}`);
  F.dir = tmp;
  F.file = join(tmp, 'plain.txt'); writeFileSync(F.file, 'not a model');
  F.empty = join(tmp, 'empty.png'); writeFileSync(F.empty, '');
  F.random = join(tmp, 'random.png'); writeFileSync(F.random, Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 2654435761) >>> 24)));
  const png = readFileSync(F.photo);
  F.truncated = join(tmp, 'truncated.png'); writeFileSync(F.truncated, png.subarray(0, png.length >> 1));
  F.svg = join(tmp, 'image.svg'); writeFileSync(F.svg, '<svg xmlns="http://www.w3.org/2000/svg" width="100000" height="100000"><rect width="100%" height="100%"/></svg>');
  F.huge = join(tmp, 'huge-header.png'); writeFileSync(F.huge, pngHeaderOnly(100_000, 100_000));
  F.big8000 = join(tmp, 'big-8000.png'); writeFileSync(F.big8000, pngHeaderOnly(8000, 8000));
  F.noConfig = join(tmp, 'no-config'); mkdirSync(F.noConfig);
  F.badJson = modelWith('bad-json', () => undefined); writeFileSync(join(F.badJson, 'config.json'), '{ "model_type": ');
  F.layers1e9 = modelWith('layers-1e9', (c) => { (c.text_config as Record<string, unknown>).num_hidden_layers = 1e9; });
  F.kvOverflow = modelWith('kv-overflow', (c) => {
    Object.assign(c.text_config as Record<string, unknown>, { num_attention_heads: 2 ** 20, num_key_value_heads: 2 ** 20, head_dim: 2 ** 20, max_position_embeddings: 2 ** 24 });
  });
  F.hidden0 = modelWith('hidden-0', (c) => { (c.text_config as Record<string, unknown>).hidden_size = 0; });
  F.noTokenizer = modelWith('no-tokenizer', () => undefined); rmSync(join(F.noTokenizer, 'tokenizer.json'));
  F.badTokenizer = modelWith('bad-tokenizer', () => undefined); writeFileSync(join(F.badTokenizer, 'tokenizer.json'), '{"model": 5}');
  // A checkpoint whose header names one tensor twice (JSON.parse would keep the last silently).
  F.dupTensor = modelWith('dup-tensor', () => undefined);
  {
    const file = join(F.dupTensor, 'model.safetensors');
    const buf = readFileSync(file);
    const n = Number(buf.readBigUInt64LE(0));
    const header = buf.subarray(8, 8 + n).toString('utf8').trimEnd();
    const entry = /"model\.norm\.weight":\{[^}]*\}/.exec(header)![0];
    let json = Buffer.from(header.slice(0, -1) + ',' + entry + '}', 'utf8');
    // Keep the data section where it was: pad the longer header up to a multiple of 8 and shift.
    const pad = (8 - ((8 + json.length) % 8)) % 8;
    json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
    // data_offsets are relative to the data section, so moving it keeps them valid.
    const len = Buffer.alloc(8); len.writeBigUInt64LE(BigInt(json.length));
    writeFileSync(file, Buffer.concat([len, json, buf.subarray(8 + n)]));
  }
  F.truncCkpt = modelWith('trunc-ckpt', () => undefined);
  { const f = join(F.truncCkpt, 'model.safetensors'); const b = readFileSync(f); writeFileSync(f, b.subarray(0, b.length - 1000)); }
  F.headerHuge = modelWith('header-huge', () => undefined);
  await writeRawSafetensors(join(F.headerHuge, 'model.safetensors'), 2n ** 63n, '{}');
  // A stock (autoregressive, template-format) model, and copies with hostile chat templates.
  const stock = await writeTinyModel({ diffusion: false, seed: 3, dir: join(tmp, 'stock') });
  F.stock = stock.dir;
  const templates: Record<string, string> = {
    range1e9: '{% for i in range(1000000000) %}x{% endfor %}',
    loop1e10: '{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}',
    out20mb: '{% for i in range(1000000) %}xxxxxxxxxxxxxxxxxxxx{% endfor %}',
    parse: '{% for m in messages %}{{ m.content ',
    raise: "{{ raise_exception('Conversation roles must alternate user/assistant') }}",
    recurse: '{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}',
    doubling: '{% set ns = namespace(l=[1]) %}{% for i in range(64) %}{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l | length }}',
    undefinedFn: '{{ no_such_function(messages) }}',
  };
  for (const [k, t] of Object.entries(templates)) {
    const d = join(tmp, `tpl-${k}`);
    cpSync(stock.dir, d, { recursive: true });
    writeFileSync(join(d, 'chat_template.jinja'), t);
    F[`tpl_${k}`] = d;
  }
});

afterAll(() => { if (tmp) rmSync(tmp, { recursive: true, force: true }); });

// ---- cases -----------------------------------------------------------------------------------

const weights = (message?: RegExp, code?: string) => ({ name: 'WeightsError', code, message });
const load = (dir: string) => `await dvl.loadModel(F.${dir}, { threads: 1 });`;
const M = 'const m = S.m ??= await dvl.loadModel(undefined, { threads: 1 });';
const img = (image: string, extra = '') => `${M} await m.generate({ messages: [{ role: 'user', content: [{ type: 'image', image: ${image} }, { type: 'text', text: 'Describe the image.' }] }], maxTokens: 8${extra} });`;
const imageError = (message?: RegExp) => ({ name: 'ImageError', code: 'DVL_IMAGE', message });
const fast = (ms: number) => (r: { cpuMs: number; wallMs: number }) => {
  // CPU time, not wall time: another process on the cores must not fail the case.
  if (r.cpuMs > ms) throw new Error(`took ${r.cpuMs.toFixed(0)} ms of CPU, more than ${ms}`);
};

const folderCases: HostileCase[] = [
  { name: 'folder: mistyped bundled name', body: "await dvl.loadModel('shapes-diffusion');", throws: weights(/Did you mean the bundled model 'shapes-diffusionvl'\?/, 'DVL_MODEL_NOT_FOUND') },
  { name: 'folder: missing path', body: "await dvl.loadModel('/nonexistent/model');", throws: weights(/no model folder at \/nonexistent\/model/, 'DVL_MODEL_NOT_FOUND') },
  { name: 'folder: a file, not a folder', body: load('file'), throws: weights(/is not a folder/, 'DVL_MODEL_NOT_FOUND') },
  { name: 'folder: no config.json', body: load('noConfig'), throws: weights(/has no config\.json/, 'DVL_MODEL_NOT_FOUND') },
  { name: 'config: not JSON', body: load('badJson'), throws: { name: 'ConfigError', message: /not valid JSON/ } },
  { name: 'config: 10^9 layers fails fast, before any allocation', body: load('layers1e9'), throws: { name: 'MemoryError', code: 'DVL_MEMORY', message: /weights/ }, check: fast(2000) },
  { name: 'config: KV cache past int64 (2^20 KV heads × head_dim 2^20)', body: load('kvOverflow'), throws: { name: 'MemoryError', code: 'DVL_MEMORY' }, check: fast(2000) },
  { name: 'config: hidden_size 0', body: load('hidden0'), throws: { name: 'ConfigError', message: /hidden_size/ } },
  { name: 'tokenizer: missing', body: load('noTokenizer'), throws: { name: 'OptionError', message: /no tokenizer\.json/ } },
  { name: 'tokenizer: corrupt', body: load('badTokenizer'), throws: { name: 'ConfigError', message: /tokenizer\.json/ } },
  { name: 'checkpoint: a tensor named twice', body: load('dupTensor'), throws: weights(/tensor model\.norm\.weight appears more than once in the header/) },
  { name: 'checkpoint: truncated', body: load('truncCkpt'), throws: weights(/truncated|runs past the end/) },
  { name: 'checkpoint: header length 2^63', body: load('headerHuge'), throws: weights(/header length/) },
];

const imageCases: HostileCase[] = [
  { name: 'image: a FIFO is refused at once, not read forever', body: img('F.fifo'), throws: imageError(/is a FIFO; only regular files are read/), alone: true, timeoutMs: 20_000 },
  { name: 'image: /dev/zero is refused at once', body: img("'/dev/zero'"), throws: imageError(/is a character device/), alone: true, timeoutMs: 20_000 },
  { name: 'image: a directory', body: img('F.dir'), throws: imageError(/is a directory/) },
  { name: 'image: missing file', body: img("F.dir + '/nope.png'"), throws: imageError(/no such file/) },
  { name: 'image: empty file', body: img('F.empty'), throws: imageError(/empty/) },
  { name: 'image: random bytes', body: img('F.random'), throws: imageError(/cannot decode/) },
  { name: 'image: truncated PNG', body: img('F.truncated'), throws: imageError() },
  { name: 'image: SVG is not accepted', body: img('F.svg'), throws: imageError(/svg images are not accepted/) },
  { name: 'image: a 100000² header fails from the header alone', body: img('F.huge'), throws: imageError(/100000×100000 exceeds the pixel limit/), check: fast(2000) },
  {
    name: 'image: 16 × 8000² in one request hits the pixel budget before any decode',
    body: img('F.big8000').replace("[{ type: 'image', image: F.big8000 }, ", "[...Array.from({ length: 16 }, () => ({ type: 'image', image: F.big8000 })), "),
    throws: imageError(/more than \d+ pixels in all \(limits\.requestPixels/), check: fast(3000),
  },
  {
    name: 'image: more image tokens than the context is refused before decoding',
    body: img('F.photo').replace("[{ type: 'image', image: F.photo }, ", "[...Array.from({ length: 40 }, () => ({ type: 'image', image: F.photo })), "),
    throws: { name: 'OptionError', message: /prompt shorter than the context length 1024/ },
  },
  { name: 'image: file over limits.imageBytes', body: `const m = await dvl.loadModel(undefined, { threads: 1, limits: { imageBytes: 1000 } }); try { ${img('F.photo').replace(M, '')} } finally { m.dispose(); }`, throws: imageError(/more than the limit of 1000/) },
  { name: 'image: garbage data: URL', body: img("'data:image/png;base64,@@@@'"), throws: imageError(/not valid base64/) },
  { name: 'image: data: URL longer than any allowed image', body: img("'data:image/png;base64,' + 'A'.repeat(100 * 2 ** 20)"), throws: imageError(/longer than an image of/) },
  { name: 'image: raw RGB with the wrong length', body: img('{ data: new Uint8Array(10), width: 4, height: 4 }'), throws: imageError(/expected 48 bytes/) },
  { name: 'image: raw RGB 10^9 wide', body: img('{ data: new Uint8Array(3), width: 1e9, height: 1 }'), throws: imageError(/exceeds the pixel limit/) },
  { name: 'image: a Buffer of zeros', body: img('Buffer.alloc(1000)'), throws: imageError() },
  { name: 'image: a number', body: img('42'), throws: imageError(/Expected a path/) },
  { name: 'image: with a text-only load', body: `const m = await dvl.loadModel(undefined, { threads: 1, vision: false }); try { ${img('F.photo').replace(M, '')} } finally { m.dispose(); }`, throws: { name: 'OptionError', message: /vision: false/ } },
  { name: 'image: a real picture still works', body: `${img('F.photo').replace('await m.generate', 'const r = await m.generate')} return r.stats.imageTokens;` },
];

const tplReq = "({ prompt: 'Hi', maxTokens: 4, mode: 'ar' })";
const tpl = (k: string, sync = false) => `const m = await dvl.loadModel(F.tpl_${k}, { threads: 1, limits: { templateMs: 1500 } }); try { ${sync ? `m.promptIds(${tplReq})` : `await m.generate(${tplReq})`}; } finally { m.dispose(); }`;
const config = (message?: RegExp) => ({ name: 'ConfigError', code: 'DVL_CONFIG', message });

const templateCases: HostileCase[] = [
  { name: 'template: range(10^9)', body: tpl('range1e9'), throws: config(/range\(\) of 1000000000 elements exceeds the limit/) },
  { name: 'template: a 10^10-iteration loop stops at the time limit', body: tpl('loop1e10'), throws: config(/took longer than 1500 ms/) },
  { name: 'template: 20 MB of output', body: tpl('out20mb'), throws: config(/renders too much text|took longer/) },
  { name: 'template: does not parse', body: tpl('parse'), throws: config(/does not parse/) },
  { name: 'template: raise_exception refuses the messages', body: tpl('raise'), throws: { name: 'OptionError', message: /refused the messages: Conversation roles must alternate/ } },
  { name: 'template: unbounded recursion', body: tpl('recurse'), throws: config() },
  { name: 'template: a list doubled 64 times exhausts only the renderer', body: tpl('doubling'), throws: config(/used more than|took longer|failed/) },
  { name: 'template: an undefined function', body: tpl('undefinedFn'), throws: config() },
  { name: 'template: the synchronous promptIds path has the same limits', body: tpl('loop1e10', true), throws: config(/took longer than 1500 ms/) },
  { name: 'template: the stock model still renders its own template afterwards', body: `const m = await dvl.loadModel(F.stock, { threads: 1 }); try { const r = await m.generate(${tplReq}); return r.stats.promptTokens; } finally { m.dispose(); }` },
];

describe('hostile inputs', () => {
  hostileSuite(it, [...folderCases, ...imageCases, ...templateCases], { fixtures: () => F });
});
