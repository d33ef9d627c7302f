#!/usr/bin/env tsx
/**
 * Runbook: look into the cache, and invalidate part of it — the guide's redis-cli commands
 * (info memory, hit rate, keys by pattern, ttl), without KEYS.
 *   stats               memory, hit rate, evictions, keys per database and per domain (admin user);
 *   keys PATTERN        keys matching a pattern with their TTLs (SCAN; the application's user);
 *   ttl KEY             a key's TTL and type;
 *   invalidate PATTERN  delete the matching keys (SCAN + UNLINK in batches); more than 1000 need --yes.
 */
import { runCommand } from "../lib/cli.js";
import { CliError, EXIT } from "../lib/errors.js";
import { withRedis } from "../lib/db/clients.js";
import { CacheKeyError, checkInvalidationPattern } from "../lib/cache/keys.js";
import { cacheStats, countMatching, formatCacheStats, invalidatePattern, INVALIDATE_CONFIRM_THRESHOLD, keyTtl, listKeys } from "../lib/cache/ops.js";
import { ENVIRONMENT_FLAGS, environmentFromFlags } from "../lib/env/resolve.js";
import { redisOptions } from "../lib/verify/redis.js";

const { "database-url": _unused, ...flags } = ENVIRONMENT_FLAGS;

await runCommand({
  name: "cache",
  summary: "Cache stats, keys by pattern, a key's TTL, and pattern invalidation — all without KEYS.",
  usage: "stats | keys PATTERN | ttl KEY | invalidate PATTERN [--yes] [--dry-run]  [--env NAME] [--redis-url URL] [--limit N] [--json]",
  positional: { min: 1, max: 2 },
  flags: {
    ...flags,
    limit: { type: "string", help: "keys: at most this many keys listed (1-100000)", default: "100" },
    yes: { type: "boolean", help: `invalidate: confirm deleting more than ${INVALIDATE_CONFIRM_THRESHOLD} keys` },
    "dry-run": { type: "boolean", help: "invalidate: count the matching keys, delete nothing" },
  },
  details: [
    "Examples:",
    "  npm run cache -- stats",
    "  npm run cache -- keys 'crypto:*' --limit 20",
    "  npm run cache -- ttl crypto:BTC:price",
    "  npm run cache -- invalidate 'crypto:BTC:*'",
    "  npm run cache -- invalidate 'market:*' --dry-run",
    "",
    "Patterns must start with a literal domain ('crypto:…'); emptying the whole cache is an admin's FLUSHDB,",
    "not a cache command.",
  ].join("\n"),
  exitCodes: { 2: "Redis unreachable (nothing changed)", 64: "bad usage, or an unconfirmed large invalidation (nothing deleted)" },
  async run(ctx) {
    const [action, argument] = ctx.args as [string, string | undefined];
    const needs = (what: string) => {
      if (!argument) throw new CliError(`${action} needs a ${what}`, EXIT.USAGE, `usage: npm run cache -- ${action} ${what.toUpperCase()}`);
      return argument;
    };
    if (!["stats", "keys", "ttl", "invalidate"].includes(action)) throw new CliError(`unknown action ${JSON.stringify(action)}: expected stats, keys, ttl or invalidate`, EXIT.USAGE);
    if (action === "stats" && argument !== undefined) throw new CliError(`stats takes no argument (got ${JSON.stringify(argument)})`, EXIT.USAGE);
    const limit = ctx.intFlag("limit", 100, 1, 100_000);
    const target = environmentFromFlags(ctx.flags, ctx.log);
    if (!target.redis) throw new CliError("no Redis to look at", EXIT.USAGE);
    // INFO is an admin command; everything else runs as the application's user, as the app would.
    const role = action === "stats" ? "admin" : "app";
    return withRedis(redisOptions(target.redis, role), async (redis) => {
      switch (action) {
        case "stats": {
          const stats = await cacheStats(redis);
          return { data: stats, human: formatCacheStats(stats) };
        }
        case "keys": {
          const listing = await listKeys(redis, needs("pattern"), limit);
          const human = [
            ...listing.keys.map((k) => `${k.key}  ${k.ttlSeconds === -1 ? "no TTL" : `ttl ${k.ttlSeconds}s`}`),
            `${listing.keys.length} key${listing.keys.length === 1 ? "" : "s"}${listing.truncated ? ` shown; more match (raise --limit)` : ""}`,
          ].join("\n");
          return { data: listing, human };
        }
        case "ttl": {
          const ttl = await keyTtl(redis, needs("key"));
          const human = !ttl.exists ? `${ttl.key}: no such key (-2)` : ttl.ttlSeconds === -1 ? `${ttl.key}: ${ttl.type}, no TTL (-1): cache keys should always expire` : `${ttl.key}: ${ttl.type}, expires in ${ttl.ttlSeconds} s`;
          return { data: ttl, human };
        }
        default: {
          let pattern: string;
          try {
            pattern = checkInvalidationPattern(needs("pattern"));
          } catch (error) {
            if (error instanceof CacheKeyError) throw new CliError(error.message, EXIT.USAGE);
            throw error;
          }
          const matching = await countMatching(redis, pattern);
          if (ctx.flags["dry-run"]) return { data: { pattern, matching, deleted: 0, dryRun: true }, human: `${pattern}: ${matching} keys match; nothing deleted (--dry-run)` };
          if (matching > INVALIDATE_CONFIRM_THRESHOLD && !ctx.flags.yes) {
            throw new CliError(`${pattern} matches ${matching} keys (more than ${INVALIDATE_CONFIRM_THRESHOLD}); nothing was deleted`, EXIT.USAGE, `confirm with: ${ctx.rerun(["--yes"])}`);
          }
          ctx.progress(`deleting ${matching} keys matching ${pattern}`);
          const result = await invalidatePattern(redis, pattern);
          return { data: { ...result, matching }, human: `${pattern}: ${result.deleted} keys deleted (${result.scans} SCAN calls, ${result.batches} UNLINK batches)` };
        }
      }
    });
  },
});
