/**
 * What `npm run cache` does: the guide's redis-cli monitoring commands (info memory, the hit rate
 * from info stats, keys by pattern, TTL of a key) and pattern invalidation — without KEYS, which
 * blocks Redis while it walks the whole keyspace and which the application user may not run.
 */
import type { Redis } from "ioredis";
import { humanBytes } from "../spec/units.js";
import { parseInfo, parseKeyspace } from "../db/redis-info.js";
import { Cache, type InvalidateResult } from "./cache.js";

/** Invalidations that would delete more keys than this need --yes (a symbol's keys are a handful; thousands mean a whole domain). */
export const INVALIDATE_CONFIRM_THRESHOLD = 1000;

export interface CacheStats {
  usedMemoryBytes: number;
  maxmemoryBytes: number;
  /** used / maxmemory, percent (0 when unbounded). */
  memoryPercent: number;
  policy: string;
  hits: number;
  misses: number;
  /** Percent; undefined when there was no lookup yet. */
  hitRatePercent?: number;
  evictedKeys: number;
  expiredKeys: number;
  connectedClients: number;
  opsPerSecond: number;
  /** INFO keyspace per database: keys, keys with a TTL. */
  keyspace: Record<string, { keys: number; expires: number }>;
  /** Keys per domain (first part), from a SCAN of at most `sampled` keys of the selected db. */
  domains: Record<string, number>;
  sampled: number;
  sampleComplete: boolean;
}

/** INFO memory/stats/clients/keyspace (admin user: INFO is denied to the app) and a domain breakdown by SCAN. */
export async function cacheStats(redis: Redis, options: { sampleLimit?: number } = {}): Promise<CacheStats> {
  const info = parseInfo(await redis.info("all"));
  const n = (k: string) => Number(info.get(k) ?? 0);
  const keyspace: CacheStats["keyspace"] = parseKeyspace(info);
  const limit = options.sampleLimit ?? 10_000;
  const domains: Record<string, number> = {};
  let sampled = 0;
  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, "COUNT", 1000);
    cursor = next;
    for (const key of keys) {
      const domain = key.includes(":") ? key.slice(0, key.indexOf(":")) : "(no domain)";
      domains[domain] = (domains[domain] ?? 0) + 1;
    }
    sampled += keys.length;
  } while (cursor !== "0" && sampled < limit);
  const hits = n("keyspace_hits");
  const misses = n("keyspace_misses");
  const max = n("maxmemory");
  return {
    usedMemoryBytes: n("used_memory"),
    maxmemoryBytes: max,
    memoryPercent: max ? Math.round((1000 * n("used_memory")) / max) / 10 : 0,
    policy: info.get("maxmemory_policy") ?? "?",
    hits,
    misses,
    hitRatePercent: hits + misses ? Math.round((1000 * hits) / (hits + misses)) / 10 : undefined,
    evictedKeys: n("evicted_keys"),
    expiredKeys: n("expired_keys"),
    connectedClients: n("connected_clients"),
    opsPerSecond: n("instantaneous_ops_per_sec"),
    keyspace,
    domains,
    sampled,
    sampleComplete: cursor === "0",
  };
}

export function formatCacheStats(s: CacheStats): string {
  return [
    `memory      ${humanBytes(s.usedMemoryBytes)}${s.maxmemoryBytes ? ` / ${humanBytes(s.maxmemoryBytes)} (${s.memoryPercent}%)` : " (no maxmemory)"}, policy ${s.policy}`,
    `hit rate    ${s.hitRatePercent === undefined ? "no lookups yet" : `${s.hitRatePercent}%`} (${s.hits} hits, ${s.misses} misses since start)`,
    `evicted     ${s.evictedKeys} keys; expired ${s.expiredKeys} keys`,
    `clients     ${s.connectedClients} connected; ${s.opsPerSecond} ops/s`,
    `keyspace    ${Object.entries(s.keyspace).map(([db, k]) => `${db}: ${k.keys} keys, ${k.expires} with a TTL`).join("; ") || "empty"}`,
    `domains     ${Object.entries(s.domains).sort((a, b) => b[1] - a[1]).map(([d, c]) => `${d} ${c}`).join(", ") || "none"}${s.sampleComplete ? "" : ` (first ${s.sampled} keys scanned)`}`,
  ].join("\n");
}

export interface KeyListing {
  pattern: string;
  keys: { key: string; ttlSeconds: number }[];
  /** The limit was reached before SCAN finished: more keys may match. */
  truncated: boolean;
}

/** Keys matching a pattern (SCAN, up to `limit`), each with its TTL (-1: none). */
export async function listKeys(redis: Redis, pattern: string, limit: number): Promise<KeyListing> {
  const found = new Set<string>();
  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", pattern, "COUNT", 1000);
    cursor = next;
    for (const k of keys) if (found.size < limit) found.add(k);
  } while (cursor !== "0" && found.size < limit);
  const keys = [...found].sort();
  const pipeline = redis.pipeline();
  for (const k of keys) pipeline.ttl(k);
  const ttls = (await pipeline.exec()) ?? [];
  return { pattern, keys: keys.map((key, i) => ({ key, ttlSeconds: Number(ttls[i]?.[1] ?? -2) })), truncated: cursor !== "0" };
}

export interface KeyTtl {
  key: string;
  exists: boolean;
  type: string;
  /** -1: no expiry; -2: no such key (as TTL says). */
  ttlSeconds: number;
}

export async function keyTtl(redis: Redis, key: string): Promise<KeyTtl> {
  const results = (await redis.pipeline().ttl(key).type(key).exec()) ?? [];
  const ttl = Number(results[0]?.[1] ?? -2);
  return { key, exists: ttl !== -2, type: String(results[1]?.[1] ?? "none"), ttlSeconds: ttl };
}

/** Counts the keys a pattern matches (SCAN only; nothing deleted). */
export async function countMatching(redis: Redis, pattern: string): Promise<number> {
  const seen = new Set<string>();
  const cache = new Cache(redis, { ttl: { short: 1, medium: 1, long: 1 } });
  for await (const keys of cache.scan(pattern)) for (const k of keys) seen.add(k);
  return seen.size;
}

/** Deletes the keys of a pattern with SCAN + UNLINK. */
export async function invalidatePattern(redis: Redis, pattern: string): Promise<InvalidateResult> {
  return new Cache(redis, { ttl: { short: 1, medium: 1, long: 1 } }).invalidate(pattern);
}
