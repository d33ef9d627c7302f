/**
 * Helpers of the backup/restore tests: sample data in both servers, and fingerprints that say
 * whether two states are the same (every table's row count and a checksum of its rows; every
 * Redis key's type, serialized value (DUMP) and absolute expiry (PEXPIRETIME), in every database).
 */
import type pg from "pg";
import { Redis } from "ioredis";
import { withPg, withRedis } from "../../lib/db/clients.js";
import { seedMarketData } from "../../lib/db/seed/index.js";
import type { EnvironmentConnections } from "../../lib/state/record.js";

export interface Fingerprint {
  postgres: Record<string, { rows: number; md5: string }>;
  redis: Record<string, { type: string; value: string; expiresAt: number }>;
}

/** The guide's tables with rows (the seed's deterministic series), and Redis keys of every type, some with TTLs, in db 0 and 1. */
export async function seedSample(connections: EnvironmentConnections, rows = 3000): Promise<void> {
  await withPg(connections.postgresConfig("owner"), (client) => seedMarketData(client, { symbols: 3, rows }));
  await withRedis(connections.redisOptions("admin"), async (redis) => {
    const far = 3600;
    await redis
      .multi()
      .set("crypto:BTC:price", "45200.5", "EX", far)
      .set("crypto:ETH:metadata", JSON.stringify({ name: "Ethereum", decimals: 18 }))
      .hset("market:BTC:ohlcv:latest", { open: "45000", high: "45500", low: "44800", close: "45200" })
      .expire("market:BTC:ohlcv:latest", 1800)
      .rpush("prediction:BTC:1h:history", "46000", "46100", "45900")
      .sadd("stats:daily:symbols", "BTC", "ETH", "SOL")
      .zadd("stats:daily:volume", 25e9, "BTC", 12e9, "ETH", 2.5e9, "SOL")
      .xadd("events:prices", "*", "symbol", "BTC", "price", "45200.5")
      .set("binary:key", Buffer.from([0, 1, 2, 250, 251, 252]))
      .exec();
    await redis.select(1);
    await redis.set("db1:only", "kept in database 1", "EX", far);
    await redis.select(0);
  });
}

export async function fingerprint(connections: EnvironmentConnections): Promise<Fingerprint> {
  const postgres = await withPg(connections.postgresConfig("admin"), (client) => tableChecksums(client));
  const redis: Fingerprint["redis"] = {};
  for (const db of [0, 1]) {
    await withRedis({ ...connections.redisOptions("admin"), db }, async (client: Redis) => {
      let cursor = "0";
      do {
        const [next, keys] = await client.scanBuffer(cursor, "COUNT", 1000);
        cursor = String(next);
        for (const key of keys) {
          const type = await client.type(key);
          const value = await canonicalValue(client, key, type);
          const expiresAt = Number(await client.call("PEXPIRETIME", key));
          redis[`${db}/${key.toString("base64")}`] = { type, value, expiresAt };
        }
      } while (cursor !== "0");
    });
  }
  return { postgres, redis };
}

/** A key's value in a form that does not depend on its encoding (a small set's order changes across a reload). */
async function canonicalValue(client: Redis, key: Buffer, type: string): Promise<string> {
  const b64 = (items: Buffer[]) => items.map((i) => i.toString("base64"));
  switch (type) {
    case "string":
      return (await client.getBuffer(key))!.toString("base64");
    case "list":
      return JSON.stringify(b64(await client.lrangeBuffer(key, 0, -1)));
    case "set":
      return JSON.stringify(b64(await client.smembersBuffer(key)).sort());
    case "zset":
      return JSON.stringify(await client.call("ZRANGE", key, "0", "-1", "WITHSCORES"));
    case "hash":
      return JSON.stringify(Object.entries(await client.hgetall(key)).sort());
    case "stream":
      return JSON.stringify(await client.xrange(key, "-", "+"));
    default:
      return (await client.dumpBuffer(key))?.toString("base64") ?? "";
  }
}

export async function tableChecksums(client: pg.ClientBase): Promise<Record<string, { rows: number; md5: string }>> {
  const { rows: tables } = await client.query(
    `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname <> 'pgmigrations' ORDER BY 1`,
  );
  const out: Record<string, { rows: number; md5: string }> = {};
  for (const { relname } of tables as { relname: string }[]) {
    const { rows } = await client.query(`SELECT count(*)::int AS rows, md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) AS md5 FROM public."${relname}" t`);
    out[relname] = rows[0];
  }
  return out;
}

/** Changes every kind of data: rows deleted and edited, keys flushed and new ones written. */
export async function damage(connections: EnvironmentConnections): Promise<void> {
  await withPg(connections.postgresConfig("owner"), async (client) => {
    await client.query("DELETE FROM predictions WHERE id % 2 = 0");
    await client.query("DELETE FROM market_data WHERE id % 3 = 0 AND id NOT IN (SELECT market_data_id FROM predictions WHERE market_data_id IS NOT NULL)");
    await client.query("UPDATE market_data SET volume = volume + 1 WHERE id % 5 = 1");
  });
  await withRedis(connections.redisOptions("admin"), async (redis) => {
    await redis.flushall();
    await redis.set("crypto:DOGE:price", "0.09");
  });
}
