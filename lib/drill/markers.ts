/**
 * The drill's markers: timestamped writes, made as the application makes them (its PostgreSQL
 * role and its Redis ACL user), whose survival measures the recovery point.
 *
 *   PostgreSQL: market_data rows of an inactive coin `DRILL` (never one of the sample coins),
 *               `data_source` = the run's tag, `volume` = the write's sequence number,
 *               `timestamp` = when it was sent (client clock, ms).
 *   Redis:      `drill:<run>:<seq>:written_at` (the guide's {domain}:{entity}:{id}:{attribute})
 *               holding the same time in ms.
 *
 * Write 0 is the marker of the prepare phase; the writer adds 1, 2, … until it is stopped. A write
 * counts as acknowledged when the server answered it (COMMIT returned; SET returned OK).
 */
import type pg from "pg";
import type { Redis, RedisOptions } from "ioredis";
import { withPg, withRedis } from "../db/clients.js";
import { cacheKey, cachePattern } from "../cache/keys.js";

/** Symbol of the coin that carries the marker rows (inactive, so listings of active coins skip it). */
export const DRILL_SYMBOL = "DRILL";
/** Redis domain of the marker keys. */
export const DRILL_KEY_DOMAIN = "drill";

/** One write, as sent. */
export interface MarkerWrite {
  seq: number;
  /** Client time when sent, ms since the epoch. */
  at: number;
}

/** A write the server acknowledged, and when (client clock, ms). */
export interface AcknowledgedWrite extends MarkerWrite {
  ackedAt: number;
}

/** What one store (PostgreSQL or Redis) acknowledged. */
export interface AcknowledgedWrites {
  /** Acknowledged writes, in order. */
  acknowledged: AcknowledgedWrite[];
  /** Writes that failed (message of each, at most 5 kept). */
  failed: number;
  errors: string[];
}

/** The run's tag in `data_source` (varchar(50)). */
export function markerSource(runId: string): string {
  return `dr-drill:${runId}`.slice(0, 50);
}

export function markerKey(runId: string, seq: number): string {
  return cacheKey(DRILL_KEY_DOMAIN, runId, seq, "written_at");
}

/** Creates the inactive DRILL coin when missing; returns its id. */
export async function ensureDrillCoin(client: pg.ClientBase): Promise<number> {
  await client.query(
    `INSERT INTO cryptocurrencies (symbol, name, is_active) VALUES ($1, 'DR drill markers (not a real coin)', false)
     ON CONFLICT (symbol) DO NOTHING`,
    [DRILL_SYMBOL],
  );
  const { rows } = await client.query<{ id: number }>("SELECT id FROM cryptocurrencies WHERE symbol = $1", [DRILL_SYMBOL]);
  return rows[0]!.id;
}

/** One marker row (autocommit: acknowledged when the INSERT returns). */
export async function insertMarkerRow(client: pg.ClientBase, coinId: number, runId: string, write: MarkerWrite): Promise<void> {
  await client.query(
    `INSERT INTO market_data (cryptocurrency_id, timestamp, open_price, high_price, low_price, close_price, volume, data_source)
     VALUES ($1, to_timestamp($2::double precision / 1000), 0, 0, 0, 0, $3, $4)`,
    [coinId, write.at, write.seq, markerSource(runId)],
  );
}

export async function setMarkerKey(redis: Redis, runId: string, write: MarkerWrite): Promise<void> {
  const reply = await redis.set(markerKey(runId, write.seq), String(write.at));
  if (reply !== "OK") throw new Error(`SET answered ${String(reply)}`);
}

/** The markers of a run found in a store after the restore. */
export interface PresentMarkers {
  count: number;
  /** Sequence numbers present, ascending. */
  seqs: number[];
  /** Newest write present (by sequence number), or none. */
  newest?: MarkerWrite;
  /** Every write from 0 to the newest is there: the store came back as one consistent moment. */
  contiguous: boolean;
}

export async function postgresMarkers(client: pg.ClientBase, runId: string): Promise<PresentMarkers> {
  const { rows } = await client.query<{ seq: string; ms: string }>(
    `SELECT volume::bigint AS seq, round(extract(epoch FROM timestamp) * 1000)::bigint AS ms FROM market_data WHERE data_source = $1 ORDER BY volume`,
    [markerSource(runId)],
  );
  return summarise(rows.map((r) => ({ seq: Number(r.seq), at: Number(r.ms) })));
}

export async function redisMarkers(redis: Redis, runId: string): Promise<PresentMarkers> {
  const keys: string[] = [];
  let cursor = "0";
  // Bounded: the writer makes at most a few thousand keys.
  for (let i = 0; i < 10_000; i++) {
    const [next, batch] = await redis.scan(cursor, "MATCH", cachePattern(DRILL_KEY_DOMAIN, runId), "COUNT", 1000);
    keys.push(...batch);
    cursor = next;
    if (cursor === "0") break;
  }
  const values = keys.length ? await redis.mget(...keys) : [];
  const writes = keys.map((key, i) => ({ seq: Number(key.split(":")[2]), at: Number(values[i]) })).filter((w) => Number.isFinite(w.seq) && Number.isFinite(w.at));
  return summarise(writes.sort((a, b) => a.seq - b.seq));
}

function summarise(writes: MarkerWrite[]): PresentMarkers {
  const newest = writes.at(-1);
  return { count: writes.length, seqs: writes.map((w) => w.seq), newest, contiguous: writes.every((w, i) => w.seq === i) };
}

/** Removes a run's markers (in-place drills leave the environment as they found it, plus its seed). */
export async function removeMarkers(pgConfig: pg.ClientConfig, redisOptions: RedisOptions, runId: string): Promise<{ rows: number; keys: number }> {
  const rows = await withPg(pgConfig, async (client) => {
    const deleted = await client.query("DELETE FROM market_data WHERE data_source = $1", [markerSource(runId)]);
    // The coin goes too once no drill's rows use it (another run's rows keep it).
    await client.query("DELETE FROM cryptocurrencies c WHERE symbol = $1 AND NOT EXISTS (SELECT 1 FROM market_data m WHERE m.cryptocurrency_id = c.id) AND NOT EXISTS (SELECT 1 FROM predictions p WHERE p.cryptocurrency_id = c.id)", [DRILL_SYMBOL]);
    return deleted.rowCount ?? 0;
  });
  const keys = await withRedis(redisOptions, async (redis) => {
    let removed = 0;
    let cursor = "0";
    for (let i = 0; i < 10_000; i++) {
      const [next, batch] = await redis.scan(cursor, "MATCH", cachePattern(DRILL_KEY_DOMAIN, runId), "COUNT", 1000);
      if (batch.length) removed += await redis.unlink(...batch);
      cursor = next;
      if (cursor === "0") break;
    }
    return removed;
  });
  return { rows, keys };
}

export interface MarkerWriterOptions {
  pg: pg.ClientConfig;
  redis: RedisOptions;
  runId: string;
  coinId: number;
  /** Pause between two writes of one store, ms (default 20: 50 writes a second each). */
  intervalMs?: number;
  /** First sequence number (the prepare marker is 0). */
  firstSeq?: number;
}

/** A running writer; `stop()` waits for the write in flight and returns what each store acknowledged. */
export interface MarkerWriter {
  stop(): Promise<{ postgres: AcknowledgedWrites; redis: AcknowledgedWrites }>;
}

/**
 * Starts writing markers to both stores, one write at a time each, until stopped. Connections are
 * opened first, so a store that cannot be reached fails here rather than silently writing nothing.
 */
export async function startMarkerWriter(options: MarkerWriterOptions): Promise<MarkerWriter> {
  const interval = options.intervalMs ?? 20;
  let stopping = false;
  const sleepers = new Set<() => void>();
  const pause = () =>
    new Promise<void>((resolve) => {
      const wake = () => (clearTimeout(timer), sleepers.delete(wake), resolve());
      const timer = setTimeout(wake, interval);
      sleepers.add(wake);
    });
  const wakeAll = () => [...sleepers].forEach((wake) => wake());

  const loop = async (write: (w: MarkerWrite) => Promise<void>): Promise<AcknowledgedWrites> => {
    const result: AcknowledgedWrites = { acknowledged: [], failed: 0, errors: [] };
    let seq = options.firstSeq ?? 1;
    let last = 0;
    // Bounded by stop(): the drill stops the writer a fixed time after the backup.
    while (!stopping) {
      const at = Math.max(Date.now(), last + 1); // strictly increasing, so (coin, timestamp) stays unique
      last = at;
      const w = { seq: seq++, at };
      try {
        await write(w);
        result.acknowledged.push({ ...w, ackedAt: Date.now() });
      } catch (error) {
        result.failed++;
        if (result.errors.length < 5) result.errors.push((error as Error).message);
      }
      if (!stopping) await pause();
    }
    return result;
  };

  const ready: { pg?: () => void; redis?: () => void } = {};
  const connected = {
    pg: new Promise<void>((resolve) => (ready.pg = resolve)),
    redis: new Promise<void>((resolve) => (ready.redis = resolve)),
  };
  // Each store gets its own sequence (the same numbers), so each store's loss is measured alone.
  const pgTask = withPg(options.pg, async (client) => {
    ready.pg!();
    return loop((w) => insertMarkerRow(client, options.coinId, options.runId, w));
  });
  const redisTask = withRedis({ ...options.redis, maxRetriesPerRequest: 0 }, async (redis) => {
    ready.redis!();
    return loop((w) => setMarkerKey(redis, options.runId, w));
  });
  // A connection failure rejects the task before `ready`: surface it now.
  await Promise.race([Promise.all([connected.pg, connected.redis]), Promise.all([pgTask, redisTask])]).catch(async (error) => {
    stopping = true;
    wakeAll();
    await Promise.allSettled([pgTask, redisTask]);
    throw error;
  });
  return {
    async stop() {
      stopping = true;
      wakeAll();
      const [postgres, redis] = await Promise.all([pgTask, redisTask]);
      return { postgres, redis };
    },
  };
}
