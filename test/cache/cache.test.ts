/**
 * The cache strategy module against a live Redis, as the application's ACL user (which may not
 * run KEYS, CONFIG or FLUSH*): key naming, TTL tiers from the spec, cache-aside, write-through,
 * pipelined batch set, and invalidating 10k keys by pattern with SCAN + UNLINK while other keys
 * survive. Plus `npm run cache` (stats, keys, ttl, invalidate with its --yes threshold).
 */
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Cache, CacheKeyError, cacheKey, cachePattern, checkInvalidationPattern, ttlTiers } from "../../lib/cache/index.js";
import { withRedis } from "../../lib/db/clients.js";
import { loadSpec } from "../../lib/spec/load.js";
import { runCli, useEphemeralEnvironment } from "../support/embedded.js";

const env = useEphemeralEnvironment();

describe("cache keys", () => {
  it("builds the guide's {domain}:{entity}:{id}:{attribute} keys", () => {
    expect(cacheKey("crypto", "BTC", "price")).toBe("crypto:BTC:price");
    expect(cacheKey("market", "BTC", "ohlcv", "latest")).toBe("market:BTC:ohlcv:latest");
    expect(cacheKey("prediction", "BTC", "1h", "latest")).toBe("prediction:BTC:1h:latest");
    expect(cacheKey("stats", "daily", "2024-01-01")).toBe("stats:daily:2024-01-01");
    expect(cacheKey("crypto", 42, "metadata")).toBe("crypto:42:metadata");
    expect(cachePattern("crypto", "BTC")).toBe("crypto:BTC:*");
    expect(cachePattern("prediction", "*", "1h")).toBe("prediction:*:1h:*");
  });

  it("refuses parts that would break the convention, saying which part and why", () => {
    expect(() => cacheKey("crypto", "BTC:USD", "price")).toThrow(/part 2 "BTC:USD" contains ':' \(the separator\)/);
    expect(() => cacheKey("crypto", "BTC USD", "price")).toThrow(/part 2 "BTC USD" contains whitespace/);
    expect(() => cacheKey("crypto", "BTC*", "price")).toThrow(/glob character "\*"/);
    expect(() => cacheKey("crypto", "", "price")).toThrow(/part 2 is empty/);
    expect(() => cacheKey("Crypto", "BTC")).toThrow(/domain "Crypto": use lowercase/);
    expect(() => cacheKey("a", "b", "c", "d", "e" as never)).toThrow(/2 to 4 parts.*got 5/);
    expect(() => cachePattern("*" as string)).toThrow(CacheKeyError);
    expect(() => checkInvalidationPattern("*")).toThrow(/must start with a literal domain/);
    expect(checkInvalidationPattern("crypto:BTC:*")).toBe("crypto:BTC:*");
  });

  it("takes the TTL tiers from the spec (guide: 5 min, 30 min, 1 h)", () => {
    expect(ttlTiers(loadSpec("dev"))).toEqual({ short: 300, medium: 1800, long: 3600 });
  });
});

describe("cache helpers, as the application's user", () => {
  let app: Redis;
  let cache: Cache;
  beforeAll(async () => {
    app = new Redis({ ...env().connections.redisOptions("app"), enableReadyCheck: false, maxRetriesPerRequest: 1 });
    cache = new Cache(app, { ttl: ttlTiers(env().spec) });
  });
  afterAll(() => app?.disconnect());

  it("the app user really cannot run KEYS, CONFIG or FLUSHDB (so the helpers do without)", async () => {
    await expect(app.keys("*")).rejects.toThrow(/NOPERM/);
    await expect(app.config("GET", "maxmemory")).rejects.toThrow(/NOPERM/);
    await expect(app.flushdb()).rejects.toThrow(/NOPERM/);
  });

  it("cache-aside loads once, stores with the tier's TTL, and does not cache a missing value", async () => {
    const key = cacheKey("crypto", "BTC", "price");
    let loads = 0;
    const load = async () => {
      loads++;
      await new Promise((r) => setTimeout(r, 50));
      return { price: "45200.00000000" };
    };
    const [a, b] = await Promise.all([cache.getOrLoad(key, "short", load), cache.getOrLoad(key, "short", load)]);
    expect(a).toEqual({ price: "45200.00000000" });
    expect(b).toEqual(a);
    expect(await cache.getOrLoad(key, "short", load)).toEqual(a);
    expect(loads).toBe(1);
    const ttl = await app.ttl(key);
    expect(ttl).toBeGreaterThan(290);
    expect(ttl).toBeLessThanOrEqual(300);
    const missing = cacheKey("crypto", "NOPE", "price");
    expect(await cache.getOrLoad(missing, "short", async () => null)).toBeNull();
    expect(await app.exists(missing)).toBe(0);
  });

  it("write-through writes the source first, then the cache with the medium/long TTL", async () => {
    const key = cacheKey("prediction", "ETH", "1h", "latest");
    const order: string[] = [];
    const saved = await cache.writeThrough(key, "medium", async () => {
      order.push("db");
      expect(await app.exists(key)).toBe(0);
      return { predicted: "3100.5", model: "LSTM-v1" };
    });
    expect(saved.model).toBe("LSTM-v1");
    expect(await cache.get(key)).toEqual(saved);
    expect(await app.ttl(key)).toBeGreaterThan(1790);
    expect(order).toEqual(["db"]);
    // A failed write leaves the cache alone.
    await expect(cache.writeThrough(key, "medium", async () => Promise.reject(new Error("db down")))).rejects.toThrow("db down");
    expect(await cache.get(key)).toEqual(saved);
  });

  it("invalidates 10k keys by pattern with SCAN + UNLINK in batches; other keys survive", async () => {
    const doomed = Array.from({ length: 10_000 }, (_, i) => [cacheKey("market", "BTC", "ohlcv", `m${i}`), { close: i }] as const);
    const kept: [string, Record<string, unknown>][] = [
      [cacheKey("market", "ETH", "ohlcv", "latest"), { close: 1 }],
      [cacheKey("market", "BTCX", "ohlcv", "latest"), { close: 2 }], // a prefix of the pattern's literal, not a match
      [cacheKey("crypto", "BTC", "metadata"), { name: "Bitcoin" }],
    ];
    expect(await cache.setMany(doomed, "long")).toBe(10_000);
    expect(await cache.setMany(kept, "long")).toBe(3);
    const ttl = await app.ttl(doomed[9_999]![0]);
    expect(ttl).toBeGreaterThan(3590);

    const started = performance.now();
    const result = await cache.invalidate(cachePattern("market", "BTC"));
    const ms = performance.now() - started;
    expect(result.deleted).toBe(10_000);
    expect(result.batches).toBeGreaterThanOrEqual(10);
    expect(ms).toBeLessThan(10_000);
    let left = 0;
    for await (const keys of cache.scan("market:BTC:*")) left += keys.length;
    expect(left).toBe(0);
    for (const [key, value] of kept) expect(await cache.get(key)).toEqual(value);
  });
});

describe("npm run cache", () => {
  it("stats, keys, ttl; invalidate needs --yes above 1000 keys and deletes nothing without it", async () => {
    await withRedis(env().connections.redisOptions("app"), async (redis) => {
      const cache = new Cache(redis, { ttl: ttlTiers(env().spec) });
      await cache.setMany(Array.from({ length: 1500 }, (_, i) => [cacheKey("stats", "daily", `d${i}`), i] as const), "long");
      await cache.set(cacheKey("crypto", "SOL", "price"), "101.5", "short");
    });
    const e = ["--env", env().env];

    const stats = await runCli("cache", ["stats", ...e, "--json"]);
    expect(stats.code, stats.stderr).toBe(0);
    expect(stats.json.domains).toMatchObject({ stats: 1500, crypto: expect.any(Number) });

    const keys = await runCli("cache", ["keys", "crypto:*", ...e]);
    expect(keys.code).toBe(0);
    expect(keys.stdout).toMatch(/crypto:SOL:price {2}ttl \d+s/);

    const ttl = await runCli("cache", ["ttl", "crypto:SOL:price", ...e, "--json"]);
    expect(ttl.json).toMatchObject({ exists: true, type: "string" });
    expect(ttl.json.ttlSeconds).toBeGreaterThan(0);

    const refused = await runCli("cache", ["invalidate", "stats:*", ...e]);
    expect(refused.code).toBe(64);
    expect(refused.stderr).toContain("stats:* matches 1500 keys (more than 1000); nothing was deleted");
    const dry = await runCli("cache", ["invalidate", "stats:*", "--dry-run", ...e, "--json"]);
    expect(dry.json).toMatchObject({ matching: 1500, deleted: 0 });

    const done = await runCli("cache", ["invalidate", "stats:*", "--yes", ...e, "--json"]);
    expect(done.code, done.stderr).toBe(0);
    expect(done.json.deleted).toBe(1500);
    const small = await runCli("cache", ["invalidate", "crypto:SOL:*", ...e, "--json"]);
    expect(small.json.deleted).toBe(1);

    const everything = await runCli("cache", ["invalidate", "*", ...e]);
    expect(everything.code).toBe(64);
    expect(everything.stderr).toContain("must start with a literal domain");
  });
});
