// kv-reuse.ts — starting a generation from K/V computed earlier: the pipeline shared by
// ChatSession (session.ts) and PrefixCache (prefix-cache.ts).
//
// Legend: P prompt length (expanded: one position per image feature row), L0 reused positions,
// bs block size, G maxTokens.
//
// The model has one KV cache. After a run, positions [0, committedLength) hold the clean K/V of
// the canvas (the prompt and every committed block): exactly what a cold prefill of those ids
// computes, since K/V at a position depend only on the positions before it (AR) or on the
// blocks up to its own (block diffusion, blocks aligned at position 0 as in training). A later
// prompt that starts with the same ids skips them:
//   diffusion  L0 = the common prefix rounded down to a whole block — the block straddling the
//              divergence is re-run, never the whole prompt — and at most floor(P/bs)·bs
//   AR         L0 = the common prefix, below P (the last prompt token runs for its logits)
// "Same ids" is decided on keys: token ids, and for an image position a negative number naming
// the picture (and, on the SigLIP route, how it was encoded: one image or several), so two
// pictures of the same token count never match. K/V are reused only under the same signature
// (mode and block size: a causal prefix is not a block-causal one).
//
// Who owns the cache between runs is the model's `tenant`: the session or prefix cache whose
// committed prefix is resident. Before anyone else's run overwrites it, the tenant's evict()
// copies out what it keeps (saveCache, queued ahead of the newcomer's ops); a later claim
// copies it back (restoreCache). One conversation driven in a loop copies nothing.
import { tensorFromArray, type Queue, type Tensor } from '../native/index.js';
import { DEFAULTS } from '../decode/options.js';
import type { DecodeOptions } from '../decode/options.js';
import { IMAGE_TOKEN_INDEX } from '../text/prompt.js';
import type { RunnerFlags } from '../decode/runner.js';
import type { EncodedPrompt, GenerateRequest, GenerationMode, StreamEvent } from './model.js';

/** K/V of positions [0, n) copied out of the cache: per layer k, v f32 [n, nkv, hd]. */
export type SavedKv = { k: Tensor; v: Tensor }[];

/** Whoever's committed prefix is resident in the model cache. */
export interface KvTenant {
  /** Another run is about to overwrite the cache: copy out what must survive (queued). */
  evict(): void;
}

/** One image's encoded feature rows f32 [tokens, H]. */
export interface ImageRecord { features: Tensor; tokens: number }

/** What the model lends the pipeline (Model[REUSE_HOST]); not public API. */
export interface ReuseHost {
  readonly queue: Queue;
  readonly text: {
    saveCache(length: number): SavedKv;
    restoreCache(saved: SavedKv): void;
    kvBytesPerPosition(): number;
  };
  readonly hiddenSize: number;
  /** Block size a diffusion run uses when the request gives none. */
  readonly defaultBlockSize: number;
  tenant: KvTenant | null;
  /** The tenant (if any) copies out what it keeps; the cache is nobody's afterwards. */
  evictTenant(): void;
  ensureAlive(): void;
  splitRequest(req: GenerateRequest): { decodeOptions: DecodeOptions; mode: GenerationMode };
  prompt(req: GenerateRequest): { ids: number[]; images: unknown[] };
  /** The model lock (one user of the KV cache at a time). */
  acquire(): Promise<() => void>;
  /** Encodes images in one tower call: features [Σ tokens, H] in image order. */
  encodeImages(images: readonly unknown[], signal: AbortSignal | undefined, multiImage: boolean): Promise<{ features: Tensor; imageTokens: number[]; visionMs: number; imageMs: number; towerMs: number }>;
  /** How an image is encoded when the prompt holds `total` images ('' when it does not matter). */
  imageVariant(total: number): string;
  setActive(p: EncodedPrompt | null): void;
  run(p: EncodedPrompt, opts: DecodeOptions, mode: GenerationMode, req: GenerateRequest, promptMs: number, flags: Pick<RunnerFlags, 'cachedLength'>): AsyncGenerator<StreamEvent, void>;
}

/** A source of reusable K/V and image features: a chat session or a prefix cache. */
export interface KvReuser extends KvTenant {
  /** A stable name for image k of the request (same picture, same name). */
  imageKey(k: number, image: unknown): Promise<string>;
  /** Features kept for an image name, if any. */
  image(key: string): ImageRecord | undefined;
  /** Keeps features for an image name (takes ownership of the tensor). */
  addImage(key: string, rec: ImageRecord): void;
  /** A small integer for an image name (its prompt keys are −1000 − id). */
  imageId(key: string): number;
  /**
   * Picks what to reuse for `keys` and makes it resident (restoring a copy, evicting the
   * tenant); returns L0 = limit(common prefix). The cache is nobody's until commit().
   */
  claim(host: ReuseHost, keys: readonly number[], signature: string, limit: (common: number) => number): number;
  /** After a run (or a failed one): the cache holds the K/V of `keys` at [0, keys.length). */
  commit(host: ReuseHost, keys: number[], signature: string): void;
}

/** Length of the common prefix of two key sequences. */
export function commonPrefix(a: readonly number[], b: readonly number[]): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}

/** Reusable positions for a common prefix of `common` (see the header). */
export function reusableLength(mode: GenerationMode, common: number, P: number, blockSize: number, maxTokens: number): number {
  if (mode === 'ar') return Math.max(0, Math.min(common, P - 1));
  if (!(Number.isInteger(blockSize) && blockSize >= 1) || blockSize >= P + maxTokens) return 0;   // bad bs: the runner says so; full diffusion: no prefill
  const prefill = Math.floor(P / blockSize) * blockSize;
  return Math.min(Math.floor(common / blockSize) * blockSize, prefill);
}

/** The reuse signature of a run: K/V of different masks or block sizes never mix. */
export function kvSignature(mode: GenerationMode, blockSize: number): string {
  return mode === 'ar' ? 'ar' : `diffusion/${blockSize}`;
}

/**
 * Model.stream() starting from reusable K/V: the prompt of the whole conversation is built as
 * usual, images already known are not encoded again, only positions from L0 on are computed,
 * and the committed prefix is handed back to `reuser` when the run ends. At temperature 0 the
 * events equal those of a cold stream() of the same request.
 */
export async function* streamReusing(host: ReuseHost, req: GenerateRequest, reuser: KvReuser, onImages?: (encoded: number, reused: number) => void): AsyncGenerator<StreamEvent, void> {
  host.ensureAlive();
  const { decodeOptions, mode } = host.splitRequest(req);
  const tPrompt = performance.now();
  const { ids, images } = host.prompt(req);
  const promptMs = performance.now() - tPrompt;
  const variant = host.imageVariant(images.length);
  const imageKeys: string[] = [];
  for (let k = 0; k < images.length; k++) imageKeys.push(`${await reuser.imageKey(k, images[k])}${variant ? `|${variant}` : ''}`);
  const release = await host.acquire();
  let active: EncodedPrompt | null = null;
  let keys: number[] = [];
  let sig = '';
  let L0 = -1;   // ≥ 0 once claimed
  let committed = false;
  try {
    host.ensureAlive();
    // Every image's feature rows: kept from an earlier call, or encoded now (the new ones in one
    // tower call, so several images see each other exactly as in a cold prompt).
    const missing: number[] = [];
    imageKeys.forEach((key, k) => { if (!reuser.image(key) && !missing.some((m) => imageKeys[m] === key)) missing.push(k); });
    let visionMs = 0, imageMs = 0, towerMs = 0;
    if (missing.length > 0) {
      const enc = await host.encodeImages(missing.map((k) => images[k]), req.signal, variant === 'multi');
      ({ visionMs, imageMs, towerMs } = enc);
      try {
        let off = 0;
        missing.forEach((k, i) => {
          const n = enc.imageTokens[i];
          reuser.addImage(imageKeys[k], { features: rowsOf(host.queue, enc.features, off, n), tokens: n });
          off += n;
        });
      } finally {
        enc.features.dispose();
      }
    }
    onImages?.(missing.length, images.length - missing.length);
    const recs = imageKeys.map((key) => reuser.image(key)!);

    // Expand each −200 into its image's positions; keys name the picture there.
    const expanded: number[] = [];
    const spans: { start: number; rec: ImageRecord }[] = [];
    let k = 0;
    for (const t of ids) {
      if (t !== IMAGE_TOKEN_INDEX) { expanded.push(t); keys.push(t); continue; }
      const rec = recs[k];
      const key = -1000 - reuser.imageId(imageKeys[k++]);
      spans.push({ start: expanded.length, rec });
      for (let i = 0; i < rec.tokens; i++) { expanded.push(0); keys.push(key); }
    }
    const P = expanded.length;
    const bs = decodeOptions.blockSize ?? host.defaultBlockSize;
    const G = decodeOptions.maxTokens ?? DEFAULTS.maxTokens;
    sig = kvSignature(mode, bs);
    L0 = reuser.claim(host, keys, sig, (common) => reusableLength(mode, common, P, bs, G));

    // Features only for the images a forward will read: those reaching past L0.
    const needed = spans.filter((s) => s.start + s.rec.tokens > L0);
    const featureRow = new Int32Array(P).fill(-1);
    let off = 0;
    for (const s of needed) {
      for (let i = 0; i < s.rec.tokens; i++) featureRow[s.start + i] = off + i;
      off += s.rec.tokens;
    }
    let features: Tensor | null = null;
    for (const s of needed) {
      // The run owns its own handle (a view or a concatenation): the store may drop its own.
      const next: Tensor = features ? host.queue.concatRows(features, s.rec.features) : host.queue.reshape(s.rec.features, [s.rec.tokens, host.hiddenSize]);
      features?.dispose();
      features = next;
    }
    const p: EncodedPrompt = { ids: expanded, featureRow, features, imageTokens: recs.map((r) => r.tokens), visionMs, imageMs, towerMs };
    active = p;
    host.setActive(p);
    for await (const ev of host.run(p, decodeOptions, mode, req, promptMs, { cachedLength: L0 })) {
      if (ev.type === 'done') {
        const r = ev.result;
        const all = keys.concat(r.raw);
        reuser.commit(host, all.slice(0, r.committedLength), sig);
        committed = true;
      }
      yield ev;
    }
  } finally {
    // A failed or abandoned run wrote only at positions ≥ L0: [0, L0) is still good.
    if (L0 >= 0 && !committed) reuser.commit(host, keys.slice(0, L0), sig);
    host.setActive(null);
    active?.features?.dispose();
    release();
  }
}

/** Rows [start, start + n) of x [R, C] as a new tensor (queued). */
function rowsOf(q: Queue, x: Tensor, start: number, n: number): Tensor {
  const idx = tensorFromArray('i32', [n], Int32Array.from({ length: n }, (_, i) => start + i));
  try {
    return q.gatherRows(x, idx);
  } finally {
    idx.dispose();
  }
}
