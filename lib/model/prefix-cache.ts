// prefix-cache.ts — PrefixCache: K/V prefixes kept across requests, for callers that resend the
// whole conversation every time (an OpenAI-style server): an LRU over token prefixes with a
// memory cap in bytes.
//
//   const cache = model.createPrefixCache({ maxBytes: 256 << 20 });
//   await model.generate({ messages, prefixCache: cache });   // reuses the longest kept prefix
//   cache.stats   // { hits, misses, hitTokens, entries, bytes, … }
//
// Entries are committed prefixes (keys as in kv-reuse.ts: token ids, image positions named by
// a hash of the picture's bytes). A request reuses the entry with the longest usable common
// prefix (a hit when that is > 0 positions). The newest entry usually stays resident in the
// model cache at no cost; it is copied out (and counted against maxBytes) only when another
// prefix or user takes the cache. An entry that is a prefix of a newer one is dropped: the newer
// one serves every lookup it would. Image feature rows are kept too (by picture hash), so an
// image of a resent conversation is not encoded again while its entry lives.
import { ProbedImage } from '../image/decode.js';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { DisposedError, OptionError } from '../errors.js';
import { commonPrefix, type ImageRecord, type KvReuser, type ReuseHost, type SavedKv } from './kv-reuse.js';

export interface PrefixCacheOptions {
  /** Memory for copied-out K/V and image features, in bytes (default 256 MiB). */
  maxBytes?: number;
}

export interface PrefixCacheStats {
  /** Lookups that reused at least one position, and those that reused none. */
  hits: number;
  misses: number;
  /** Prompt positions reused over all hits. */
  hitTokens: number;
  /** Prefixes kept (resident or copied out) and images kept. */
  entries: number;
  images: number;
  /** Bytes held (copies and image features) against maxBytes. */
  bytes: number;
  maxBytes: number;
  /** Entries and images dropped to stay under maxBytes. */
  evictions: number;
}

interface Entry {
  keys: number[];
  sig: string;
  /** The copy, or null while resident (the model cache holds it). */
  saved: SavedKv | null;
  bytes: number;
  used: number;
}

interface ImageEntry { rec: ImageRecord; bytes: number; used: number }

export const PREFIX_CACHE_DEFAULT_BYTES = 256 * 1024 * 1024;

export class PrefixCache implements KvReuser {
  readonly maxBytes: number;
  /** The model this cache belongs to (requests on another model reject it). */
  readonly owner: object;
  private readonly host: ReuseHost;
  private readonly onDispose: (c: PrefixCache) => void;
  private entries: Entry[] = [];
  /** Per cache slot this cache is the tenant of: the entry resident there (not copied out). */
  private residents = new Map<number, Entry>();
  private images = new Map<string, ImageEntry>();
  /** Picture hash → the number its prompt keys carry; a dropped picture gets a new one later. */
  private imageIds = new Map<string, number>();
  private nextImageId = 0;
  private clock = 0;
  private bytes = 0;
  /** Requests between claim and commit (several at once with continuous batching): their
   *  images and prefixes must stay. */
  private inFlight = 0;
  private _disposed = false;
  private counters = { hits: 0, misses: 0, hitTokens: 0, evictions: 0 };

  /** Made by Model.createPrefixCache. */
  constructor(owner: object, host: ReuseHost, opts: PrefixCacheOptions, onDispose: (c: PrefixCache) => void) {
    if (opts === null || typeof opts !== 'object') throw new OptionError('createPrefixCache: expected an options object', 'options');
    const maxBytes = opts.maxBytes ?? PREFIX_CACHE_DEFAULT_BYTES;
    if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) {
      throw new OptionError(`Expected integer ≥ 0 for maxBytes but received ${String(maxBytes)} (${typeof maxBytes})`, 'maxBytes');
    }
    this.maxBytes = maxBytes;
    this.owner = owner;
    this.host = host;
    this.onDispose = onDispose;
  }

  get disposed(): boolean { return this._disposed; }

  get stats(): PrefixCacheStats {
    return { ...this.counters, entries: this.entries.length, images: this.images.size, bytes: this.bytes, maxBytes: this.maxBytes };
  }

  /** Drops every entry (the counters stay). */
  clear(): void {
    for (const slot of this.residents.keys()) if (this.host.tenantOf(slot) === this) this.host.setTenant(slot, null);
    this.residents.clear();
    for (const e of this.entries) this.freeEntry(e);
    this.entries = [];
    for (const im of this.images.values()) im.rec.features.dispose();
    this.images.clear();
    this.imageIds.clear();
    this.bytes = 0;
  }

  /** Frees everything; the model stays usable. Idempotent. */
  dispose(): void {
    if (this._disposed) return;
    this._disposed = true;
    this.clear();
    this.onDispose(this);
  }

  async [Symbol.asyncDispose](): Promise<void> { this.dispose(); }

  ensureAlive(): void {
    if (this._disposed) throw new DisposedError('the prefix cache was disposed');
  }

  // ---- KvReuser (called by kv-reuse.ts under the model lock) ----------------------------------

  /** A hash of the picture's bytes (a path is read; what cannot be read is named by its value). */
  async imageKey(_k: number, image: unknown): Promise<string> {
    const h = createHash('sha256');
    if (image instanceof ProbedImage) {
      h.update(image.bytes);   // the request's probe read it: the encoded bytes, whatever the source
    } else if (typeof image === 'string') {
      if (image.startsWith('data:')) h.update(image);
      else {
        try { h.update(await readFile(image)); } catch { h.update(`path:${image}`); }   // decoding names the error later
      }
    } else if (image instanceof Uint8Array) {
      h.update(image);
    } else if (image instanceof ArrayBuffer) {
      h.update(new Uint8Array(image));
    } else if (typeof image === 'object' && image !== null && (image as { data?: unknown }).data instanceof Uint8Array) {
      const r = image as { data: Uint8Array; width: unknown; height: unknown };
      h.update(`raw:${String(r.width)}x${String(r.height)}:`);
      h.update(r.data);
    } else {
      h.update(`unhashable:${++this.clock}`);   // never matches; decoding rejects it anyway
    }
    return h.digest('base64url');
  }

  image(key: string): ImageRecord | undefined {
    const im = this.images.get(key);
    if (!im) return undefined;
    im.used = ++this.clock;
    return im.rec;
  }

  addImage(key: string, rec: ImageRecord): void {
    const old = this.images.get(key);
    if (old) { old.rec.features.dispose(); this.bytes -= old.bytes; }
    const bytes = rec.tokens * this.host.hiddenSize * 4;
    this.images.set(key, { rec, bytes, used: ++this.clock });
    this.bytes += bytes;
  }

  imageId(key: string): number {
    let id = this.imageIds.get(key);
    if (id === undefined) { id = this.nextImageId++; this.imageIds.set(key, id); }
    return id;
  }

  claim(host: ReuseHost, slot: number, keys: readonly number[], sig: string, limit: (common: number) => number): number {
    this.ensureAlive();
    this.inFlight++;
    const mine = host.tenantOf(slot) === this ? this.residents.get(slot) ?? null : null;
    let best: Entry | null = null, L0 = 0;
    for (const e of this.entries) {
      if (e.sig !== sig || (e !== mine && !e.saved)) continue;   // resident in another slot: not reachable from this one
      const l = limit(commonPrefix(e.keys, keys));
      if (l > L0 || (l === L0 && l > 0 && e === mine)) { best = e; L0 = l; }
    }
    if (best && L0 > 0) {
      this.counters.hits++;
      this.counters.hitTokens += L0;
      best.used = ++this.clock;
    } else {
      this.counters.misses++;
    }
    if (host.tenantOf(slot) !== this) host.evictTenant(slot);
    else if (mine && (mine !== best || mine.keys.length > L0)) this.saveResident(slot);   // the run rewrites it from L0 on
    if (best && L0 > 0 && best !== mine) host.text.restoreCache(best.saved!, slot);
    host.setTenant(slot, null);
    this.residents.delete(slot);
    return L0;
  }

  commit(host: ReuseHost, slot: number, keys: number[], sig: string): void {
    this.inFlight = Math.max(0, this.inFlight - 1);
    if (this._disposed) return;
    if (keys.length > 0) {
      // Entries the new prefix extends serve no lookup it would not serve better (those
      // resident in another slot stay: their slot's bookkeeping points at them).
      const residentElsewhere = new Set(this.residents.values());
      this.entries = this.entries.filter((e) => {
        const dominated = e.sig === sig && e.keys.length <= keys.length && commonPrefix(e.keys, keys) === e.keys.length && !residentElsewhere.has(e);
        if (dominated) this.freeEntry(e);
        return !dominated;
      });
      const e: Entry = { keys, sig, saved: null, bytes: 0, used: ++this.clock };
      this.entries.push(e);
      this.residents.set(slot, e);
      host.setTenant(slot, this);
    }
    this.trim();
  }

  evict(slot: number): void {
    if (this.residents.has(slot)) this.saveResident(slot);
    this.trim();
  }

  /** Copies the entry resident in `slot` out, or drops it when the copy alone would exceed maxBytes. */
  private saveResident(slot: number): void {
    const e = this.residents.get(slot)!;
    this.residents.delete(slot);
    const bytes = e.keys.length * this.host.text.kvBytesPerPosition();
    if (bytes > this.maxBytes) {
      this.entries = this.entries.filter((x) => x !== e);
      this.counters.evictions++;
      return;
    }
    e.saved = this.host.text.saveCache(e.keys.length, slot);
    e.bytes = bytes;
    this.bytes += bytes;
  }

  private freeEntry(e: Entry): void {
    if (e.saved) for (const t of e.saved) { t.k.dispose(); t.v.dispose(); }
    e.saved = null;
    this.bytes -= e.bytes;
    e.bytes = 0;
    for (const [slot, r] of this.residents) {
      if (r !== e) continue;
      this.residents.delete(slot);
      if (this.host.tenantOf(slot) === this) this.host.setTenant(slot, null);
    }
  }

  /** Drops least recently used copies and images until the bytes fit (never during a request). */
  private trim(): void {
    if (this.inFlight > 0) return;
    while (this.bytes > this.maxBytes) {
      let victim: { used: number; drop: () => void } | null = null;
      for (const e of this.entries) {
        if (e.saved && (!victim || e.used < victim.used)) {
          victim = { used: e.used, drop: () => { this.freeEntry(e); this.entries = this.entries.filter((x) => x !== e); } };
        }
      }
      for (const [key, im] of this.images) {
        if (!victim || im.used < victim.used) {
          victim = { used: im.used, drop: () => { im.rec.features.dispose(); this.bytes -= im.bytes; this.images.delete(key); this.imageIds.delete(key); } };
        }
      }
      if (!victim) break;
      victim.drop();
      this.counters.evictions++;
    }
  }
}
