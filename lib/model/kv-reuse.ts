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
// The model's cache has one slot per request decoded at once (continuous batching,
// scheduler.ts). Who owns a slot between runs is that slot's tenant: the session or prefix cache
// whose committed prefix is resident there. Before anyone else's run overwrites it, the tenant's
// evict(slot) copies out what it keeps (saveCache, queued ahead of the newcomer's ops); a later
// claim copies it back (restoreCache) into whatever slot that run holds. A reuser asks for the
// slot it last used, so one conversation driven in a loop copies nothing.
import { tensorFromArray, type Queue, type Tensor } from '../native/index.js';
import type { DecodeOptions } from '../decode/options.js';
import type { DecodeModel } from '../decode/reference.js';
import { IMAGE_TOKEN_INDEX } from '../text/prompt.js';
import type { RunnerFlags } from '../decode/runner.js';
import type { EncodedPrompt, GenerationMode, StreamEvent } from './model.js';
import type { ModelStream } from './model-stream.js';
import type { ReadRequest } from './request.js';

/** K/V of positions [0, n) copied out of the cache: per layer k, v f32 [n, nkv, hd]. */
export type SavedKv = { k: Tensor; v: Tensor }[];

/** Whoever's committed prefix is resident in the model cache. */
export interface KvTenant {
  /** Another run is about to overwrite `slot`: copy out what must survive (queued). */
  evict(slot: number): void;
}

/** One image's encoded feature rows f32 [tokens, H]. */
export interface ImageRecord { features: Tensor; tokens: number }

/** A request read, rendered, tokenized and checked, before the model lock (Model.prepare). */
export interface Prepared {
  r: Record<string, unknown>;
  decodeOptions: DecodeOptions;
  mode: GenerationMode;
  dm: DecodeModel | undefined;
  /** Prompt ids with one −200 per image, the images in that order, and their positions each (from the headers). */
  ids: number[];
  images: unknown[];
  imageTokens: number[];
  promptMs: number;
  probeMs: number;
  signal: AbortSignal | undefined;
  /** The resolved block size (1 for AR) and maxTokens. */
  blockSize: number;
  maxTokens: number;
}

/** What the model lends the pipeline (Model[REUSE_HOST]); not public API. */
export interface ReuseHost {
  readonly queue: Queue;
  readonly text: {
    saveCache(length: number, slot: number): SavedKv;
    restoreCache(saved: SavedKv, slot: number): void;
    kvBytesPerPosition(): number;
  };
  readonly hiddenSize: number;
  /** The tenant of a cache slot, and its setter; the slot a tenant holds (−1: none). */
  tenantOf(slot: number): KvTenant | null;
  setTenant(slot: number, t: KvTenant | null): void;
  slotOf(t: KvTenant): number;
  /** The slot's tenant (if any) copies out what it keeps; the slot is nobody's afterwards. */
  evictTenant(slot: number): void;
  ensureAlive(): void;
  prepare(read: ReadRequest): Promise<Prepared>;
  /** A cache slot for one run (waits while all are taken), `prefer`red when free; release gives it back. */
  acquire(signal: AbortSignal | undefined, prefer?: number): Promise<{ slot: number; seq: unknown; release: () => void }>;
  /** Encodes images in one tower call: features [Σ tokens, H] in image order. */
  encodeImages(images: readonly unknown[], signal: AbortSignal | undefined, multiImage: boolean): Promise<{ features: Tensor; imageTokens: number[]; visionMs: number; imageMs: number; towerMs: number }>;
  /** How an image is encoded when the prompt holds `total` images ('' when it does not matter). */
  imageVariant(total: number): string;
  run(p: EncodedPrompt, seq: unknown, prep: Prepared, flags: Pick<RunnerFlags, 'cachedLength'>): AsyncGenerator<StreamEvent, void>;
  /** Wraps events as Model.stream does (released when dropped or idle; the request's signal). */
  stream(gen: AsyncGenerator<StreamEvent, void, undefined>, signal: AbortSignal | undefined): ModelStream<StreamEvent>;
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
   * Picks what to reuse for `keys` and makes it resident in `slot` (restoring a copy, evicting
   * the slot's tenant); returns L0 = limit(common prefix). The slot is nobody's until commit().
   */
  claim(host: ReuseHost, slot: number, keys: readonly number[], signature: string, limit: (common: number) => number): number;
  /** After a run (or a failed one): `slot` holds the K/V of `keys` at [0, keys.length). */
  commit(host: ReuseHost, slot: number, keys: number[], signature: string): void;
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
 * Model.stream() starting from reusable K/V: the prompt of the whole conversation is built and
 * checked as usual, only positions from L0 on are computed, images are encoded only when a
 * forward will read them and none was kept, and the committed prefix is handed back to
 * `reuser` when the run ends. At temperature 0 the events equal those of a cold stream().
 */
export async function* streamReusing(host: ReuseHost, read: ReadRequest, reuser: KvReuser, onImages?: (encoded: number, reused: number) => void): AsyncGenerator<StreamEvent, void, undefined> {
  const prep = await host.prepare(read);
  const { mode, ids, images, signal } = prep;
  const variant = host.imageVariant(images.length);
  const imageKeys: string[] = [];
  for (let k = 0; k < images.length; k++) imageKeys.push(`${await reuser.imageKey(k, images[k])}${variant ? `|${variant}` : ''}`);

  // Expand each −200 into its image's positions (counts from the headers); keys name the picture.
  const keys: number[] = [];
  const spans: { start: number; tokens: number; k: number }[] = [];
  let k = 0, P = 0;
  for (const t of ids) {
    if (t !== IMAGE_TOKEN_INDEX) { keys.push(t); P++; continue; }
    const n = prep.imageTokens[k];
    const key = -1000 - reuser.imageId(imageKeys[k]);
    spans.push({ start: P, tokens: n, k: k++ });
    for (let i = 0; i < n; i++) keys.push(key);
    P += n;
  }
  const sig = kvSignature(mode, prep.blockSize);

  // The slot this reuser's prefix is resident in, if any: taking it again copies nothing.
  const lease = await host.acquire(signal, host.slotOf(reuser));
  const slot = lease.slot;
  let active: EncodedPrompt | null = null;
  let L0 = -1;   // ≥ 0 once claimed
  let committed = false;
  try {
    host.ensureAlive();
    L0 = reuser.claim(host, slot, keys, sig, (common) => reusableLength(mode, common, P, prep.blockSize, prep.maxTokens));

    // Feature rows only for the images a forward will read (those reaching past L0): kept ones,
    // else encoded now, the missing ones in one tower call.
    const needed = spans.filter((s) => s.start + s.tokens > L0);
    const missing = needed.filter((s, i) => !reuser.image(imageKeys[s.k]) && needed.findIndex((x) => imageKeys[x.k] === imageKeys[s.k]) === i);
    let visionMs = 0, imageMs = 0, towerMs = 0;
    if (missing.length > 0) {
      const enc = await host.encodeImages(missing.map((s) => images[s.k]), signal, variant === 'multi');
      ({ visionMs, imageMs, towerMs } = enc);
      try {
        let off = 0;
        missing.forEach((s, i) => {
          const n = enc.imageTokens[i];
          if (n !== s.tokens) throw new Error(`image ${s.k}: the encoder gave ${n} rows where its header promised ${s.tokens}`);
          reuser.addImage(imageKeys[s.k], { features: rowsOf(host.queue, enc.features, off, n), tokens: n });
          off += n;
        });
      } finally {
        enc.features.dispose();
      }
    }
    onImages?.(missing.length, images.length - missing.length);
    visionMs += prep.probeMs;
    imageMs += prep.probeMs;

    const featureRow = new Int32Array(P).fill(-1);
    let features: Tensor | null = null, off = 0;
    for (const s of needed) {
      const rec = reuser.image(imageKeys[s.k])!;
      for (let i = 0; i < s.tokens; i++) featureRow[s.start + i] = off + i;
      off += s.tokens;
      // The run owns its own handle (a view or a concatenation): the store may drop its own.
      const next: Tensor = features ? host.queue.concatRows(features, rec.features) : host.queue.reshape(rec.features, [rec.tokens, host.hiddenSize]);
      features?.dispose();
      features = next;
    }
    const expanded = keys.map((t) => (t < 0 ? 0 : t));   // image positions hold 0 (overridden by the features)
    const p: EncodedPrompt = { ids: expanded, featureRow, features, imageTokens: prep.imageTokens, visionMs, imageMs, towerMs };
    active = p;
    for await (const ev of host.run(p, lease.seq, prep, { cachedLength: L0 })) {
      if (ev.type === 'done') {
        const r = ev.result;
        reuser.commit(host, slot, keys.concat(r.raw).slice(0, r.committedLength), sig);
        committed = true;
      }
      yield ev;
    }
  } finally {
    // A failed or abandoned run wrote only at positions ≥ L0: [0, L0) is still good.
    if (L0 >= 0 && !committed) reuser.commit(host, slot, keys.slice(0, L0), sig);
    (active as EncodedPrompt | null)?.features?.dispose();
    lease.release();
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
