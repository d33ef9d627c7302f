/**
 * The guide's cache patterns for the application, over one ioredis client. It needs only what
 * the application's ACL user may run (GET, SET, UNLINK, SCAN, pipelines): no KEYS, CONFIG or
 * FLUSH*.
 *
 *   const cache = new Cache(redis, { ttl: ttlTiers(spec) });
 *   const price = await cache.getOrLoad(cacheKey("crypto", symbol, "price"), "short", () => db.latestPrice(symbol));
 *   await cache.writeThrough(cacheKey("crypto", symbol, "price"), "short", () => db.updatePrice(symbol, p));
 *   await cache.invalidate(cachePattern("crypto", symbol));   // SCAN + UNLINK, batched
 *
 * Values are JSON. `null`/`undefined` from a loader are not cached (the next read tries again).
 */
import type { Redis } from "ioredis";
import type { TtlTier } from "./keys.js";

export interface CacheOptions {
  /** Seconds per tier: `ttlTiers(spec)`. */
  ttl: Record<TtlTier, number>;
  /** Keys per SCAN step and per UNLINK/pipeline batch (default 1000). */
  batchSize?: number;
}

export interface InvalidateResult {
  pattern: string;
  /** Keys UNLINK removed. */
  deleted: number;
  /** SCAN calls made. */
  scans: number;
  /** UNLINK calls made. */
  batches: number;
}

/** The database was written but the cache could not be updated nor cleared: it may serve the old value until its TTL. */
export class CacheWriteError extends Error {
  constructor(
    readonly key: string,
    cause: unknown,
  ) {
    super(`the cache key ${key} could not be updated or removed after the write (${(cause as Error)?.message ?? cause}); it may serve the old value until its TTL ends`);
    this.name = "CacheWriteError";
  }
}

export class Cache {
  private readonly batchSize: number;
  /** Loads in flight per key: concurrent misses of one key load once (no stampede within a process). */
  private readonly loading = new Map<string, Promise<unknown>>();

  constructor(
    readonly redis: Redis,
    private readonly options: CacheOptions,
  ) {
    this.batchSize = options.batchSize ?? 1000;
    for (const [tier, seconds] of Object.entries(options.ttl)) {
      if (!Number.isInteger(seconds) || seconds < 1) throw new RangeError(`TTL tier ${tier}: ${seconds} is not a whole number of seconds ≥ 1`);
    }
  }

  /** Seconds of a tier. */
  ttlSeconds(tier: TtlTier): number {
    return this.options.ttl[tier];
  }

  /** The cached value, or undefined on a miss. */
  async get<T>(key: string): Promise<T | undefined> {
    const raw = await this.redis.get(key);
    return raw === null ? undefined : (JSON.parse(raw) as T);
  }

  /** Stores a value with its tier's TTL. */
  async set<T>(key: string, value: T, tier: TtlTier): Promise<void> {
    if (value === undefined) throw new TypeError(`cannot cache undefined under ${key}`);
    await this.redis.set(key, JSON.stringify(value), "EX", this.ttlSeconds(tier));
  }

  /** Removes keys (UNLINK: the memory is freed in the background). */
  async delete(...keys: string[]): Promise<number> {
    return keys.length ? this.redis.unlink(...keys) : 0;
  }

  /**
   * Cache-aside (lazy loading): the cached value, else the loader's, stored with the tier's TTL.
   * A null or undefined result is returned but not cached.
   */
  async getOrLoad<T>(key: string, tier: TtlTier, load: () => Promise<T | null | undefined>): Promise<T | null | undefined> {
    const cached = await this.get<T>(key);
    if (cached !== undefined) return cached;
    const inFlight = this.loading.get(key) as Promise<T | null | undefined> | undefined;
    if (inFlight) return inFlight;
    const loading = (async () => {
      const value = await load();
      if (value !== null && value !== undefined) await this.set(key, value, tier);
      return value;
    })().finally(() => this.loading.delete(key));
    this.loading.set(key, loading);
    return loading;
  }

  /**
   * Write-through: writes the source of truth first, then the cache with the value the write
   * returns. When the cache cannot be updated the key is removed instead, so that it is not
   * served stale; when that fails too, CacheWriteError says so.
   */
  async writeThrough<T>(key: string, tier: TtlTier, write: () => Promise<T>): Promise<T> {
    const value = await write();
    try {
      await this.set(key, value, tier);
    } catch (error) {
      try {
        await this.redis.unlink(key);
      } catch {
        throw new CacheWriteError(key, error);
      }
    }
    return value;
  }

  /** Pipelined SET … EX of many entries, in batches; returns how many were stored. */
  async setMany<T>(entries: Iterable<readonly [string, T]>, tier: TtlTier): Promise<number> {
    const ttl = this.ttlSeconds(tier);
    let stored = 0;
    let batch = this.redis.pipeline();
    let size = 0;
    const flush = async () => {
      if (!size) return;
      const results = (await batch.exec()) ?? [];
      const failed = results.find(([error]) => error);
      if (failed) throw failed[0];
      stored += size;
      batch = this.redis.pipeline();
      size = 0;
    };
    for (const [key, value] of entries) {
      if (value === undefined) throw new TypeError(`cannot cache undefined under ${key}`);
      batch.set(key, JSON.stringify(value), "EX", ttl);
      if (++size >= this.batchSize) await flush();
    }
    await flush();
    return stored;
  }

  /**
   * Deletes every key matching a pattern with SCAN (never KEYS, which blocks the server) and
   * UNLINK in batches. Keys written while it runs may survive; keys present throughout are
   * all removed (SCAN's guarantee).
   */
  async invalidate(pattern: string): Promise<InvalidateResult> {
    const result: InvalidateResult = { pattern, deleted: 0, scans: 0, batches: 0 };
    for await (const keys of this.scan(pattern)) {
      result.scans++;
      if (!keys.length) continue;
      result.deleted += await this.redis.unlink(...keys);
      result.batches++;
    }
    return result;
  }

  /** The keys matching a pattern, one SCAN step at a time (duplicates possible, as SCAN allows). */
  async *scan(pattern: string): AsyncGenerator<string[]> {
    let cursor = "0";
    do {
      const [next, keys] = await this.redis.scan(cursor, "MATCH", pattern, "COUNT", this.batchSize);
      cursor = next;
      yield keys;
    } while (cursor !== "0");
  }
}
