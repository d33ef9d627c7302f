/**
 * Crashes: SIGKILL the servers in the middle of a stream of acknowledged writes, run `npm run up`,
 * and count what survived. PostgreSQL must keep every acknowledged commit (and nothing of an
 * uncommitted transaction); Redis (appendonly yes, appendfsync everysec) may lose at most the
 * writes of about the last second before the kill (we allow the last 2 s).
 *
 * Measured figures are printed as `[figures] …` lines for README.md.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import pg from "pg";
import { Redis } from "ioredis";
import { describe, expect, it } from "vitest";
import { processAlive } from "../../lib/state/processes.js";
import { redisPid } from "../../lib/engines/embedded/redis-server.js";
import { runCli, useEphemeralEnvironment } from "../support/embedded.js";
import { sleep, waitFor } from "../support/commands.js";

const environment = useEphemeralEnvironment();

/** How long each write stream runs before the kill. */
const STREAM_MS = 2_000;
/** Redis streams run longer than the loss window, so that "older writes all survived" means something. */
const REDIS_STREAM_MS = 4_000;
/** Redis's documented loss bound is ~1 s of writes (everysec); the test allows 2 s. */
const REDIS_LOSS_WINDOW_MS = 2_000;

function postmasterPidFromFile(): number {
  const { paths } = environment();
  return Number(readFileSync(path.join(paths.pgData, "postmaster.pid"), "utf8").split("\n")[0]);
}

/** A stream of committed inserts over several connections, counting acknowledgements client-side. */
class PostgresWriteStream {
  readonly acked = new Set<string>();
  inFlight = 0;
  /** In-flight inserts when the server was killed: each may or may not be present. */
  inFlightAtKill = 0;
  private stopped = false;
  private loops: Promise<void>[] = [];

  constructor(
    private readonly tag: string,
    private readonly writers = 4,
  ) {}

  async start(): Promise<void> {
    const clients = await Promise.all(
      Array.from({ length: this.writers }, async () => {
        const client = new pg.Client(environment().connections.postgresConfig("app"));
        client.on("error", () => undefined);
        await client.connect();
        return client;
      }),
    );
    this.loops = clients.map((client, w) => this.loop(client, w));
  }

  private async loop(client: pg.Client, writer: number): Promise<void> {
    for (let i = 0; !this.stopped && i < 1_000_000; i++) {
      const symbol = `${this.tag}${writer}-${i}`; // varchar(20)
      this.inFlight++;
      try {
        await client.query("INSERT INTO cryptocurrencies (symbol, name) VALUES ($1, $2)", [symbol, "crash test"]);
        this.acked.add(symbol);
      } catch {
        this.stopped = true; // the server is gone: this insert was not acknowledged
      } finally {
        this.inFlight--;
      }
    }
    await client.end().catch(() => undefined);
  }

  markKill(): void {
    this.inFlightAtKill = this.inFlight;
  }

  async finished(): Promise<void> {
    await Promise.all(this.loops);
  }
}

/** Sequential SETs as the application user, each acknowledged write with its time. */
class RedisWriteStream {
  readonly ackedAt = new Map<string, number>();
  inFlightAtKill = 0;
  private inFlight = 0;
  private loop?: Promise<void>;

  constructor(private readonly tag: string) {}

  async start(): Promise<void> {
    const redis = new Redis({ ...environment().connections.redisOptions("app"), lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => null });
    redis.on("error", () => undefined);
    await redis.connect();
    this.loop = (async () => {
      for (let i = 0; i < 10_000_000; i++) {
        const key = `crash:${this.tag}:${i}:value`;
        this.inFlight++;
        try {
          await redis.set(key, String(i));
          this.ackedAt.set(key, Date.now());
        } catch {
          break;
        } finally {
          this.inFlight--;
        }
      }
      redis.disconnect();
    })();
  }

  markKill(): void {
    this.inFlightAtKill = this.inFlight;
  }

  async finished(): Promise<void> {
    await this.loop;
  }
}

async function presentSymbols(tag: string): Promise<Set<string>> {
  const client = new pg.Client(environment().connections.postgresConfig("readonly"));
  await client.connect();
  try {
    const { rows } = await client.query("SELECT symbol FROM cryptocurrencies WHERE symbol LIKE $1", [`${tag}%`]);
    return new Set(rows.map((r: { symbol: string }) => r.symbol));
  } finally {
    await client.end();
  }
}

/** Which of the keys exist now (admin connection, pipelined in batches). */
async function missingKeys(keys: string[]): Promise<string[]> {
  const redis = new Redis({ ...environment().connections.redisOptions("admin"), maxRetriesPerRequest: 1 });
  try {
    const missing: string[] = [];
    for (let i = 0; i < keys.length; i += 5_000) {
      const batch = keys.slice(i, i + 5_000);
      const results = await redis.pipeline(batch.map((k) => ["exists", k])).exec();
      batch.forEach((k, j) => {
        if (results?.[j]?.[1] !== 1) missing.push(k);
      });
    }
    return missing;
  } finally {
    redis.disconnect();
  }
}

async function upAgain(): Promise<{ seconds: number; json: any }> {
  const started = Date.now();
  const result = await runCli("up", ["--env", environment().env, "--json"]);
  expect(result.code, result.stderr).toBe(0);
  return { seconds: (Date.now() - started) / 1000, json: result.json };
}

function assertPostgresKeptEveryCommit(stream: PostgresWriteStream, present: Set<string>, tag: string): void {
  const lostCommits = [...stream.acked].filter((s) => !present.has(s));
  expect(lostCommits, "acknowledged commits missing after the crash").toEqual([]);
  expect(present.size).toBeGreaterThanOrEqual(stream.acked.size);
  expect(present.size).toBeLessThanOrEqual(stream.acked.size + stream.inFlightAtKill);
  console.log(`[figures] ${tag}: ${stream.acked.size} commits acknowledged, ${present.size} present, ${stream.inFlightAtKill} in flight at the kill, 0 lost`);
}

function assertRedisLossWithinBound(stream: RedisWriteStream, missing: string[], killedAt: number, tag: string): void {
  const lateAcks = [...stream.ackedAt.values()].filter((t) => t >= killedAt - REDIS_LOSS_WINDOW_MS).length;
  const lostTooOld = missing.filter((k) => stream.ackedAt.get(k)! < killedAt - REDIS_LOSS_WINDOW_MS);
  expect(lostTooOld, "writes acknowledged more than 2 s before the kill were lost").toEqual([]);
  expect(missing.length).toBeLessThanOrEqual(lateAcks);
  console.log(`[figures] ${tag}: ${stream.ackedAt.size} writes acknowledged, ${missing.length} lost (bound: the ${lateAcks} acknowledged in the last ${REDIS_LOSS_WINDOW_MS / 1000} s)`);
}

describe("crash: SIGKILL during writes, then npm run up", () => {
  it("PostgreSQL: every acknowledged commit survives a SIGKILLed postmaster; an open transaction leaves nothing", async () => {
    const env = environment();
    const stream = new PostgresWriteStream("K");
    await stream.start();
    // An uncommitted transaction at the moment of the crash: atomicity says none of it survives.
    const open = new pg.Client(env.connections.postgresConfig("app"));
    open.on("error", () => undefined);
    await open.connect();
    await open.query("BEGIN");
    await open.query("INSERT INTO cryptocurrencies (symbol, name) SELECT 'T' || g, 'uncommitted' FROM generate_series(1, 100) g");

    await sleep(STREAM_MS);
    const pid = postmasterPidFromFile();
    stream.markKill();
    process.kill(pid, "SIGKILL");
    await stream.finished();
    await open.end().catch(() => undefined);
    expect(stream.acked.size).toBeGreaterThan(50);
    await waitFor("the postmaster to die", () => !processAlive(pid), 10_000);

    const up = await upAgain();
    expect(up.json.recoveredStalePid).toBe(true);
    console.log(`[figures] postgres-sigkill: up recovered in ${up.seconds.toFixed(1)} s`);

    assertPostgresKeptEveryCommit(stream, await presentSymbols("K"), "postgres-sigkill");
    expect((await presentSymbols("T")).size, "rows of the uncommitted transaction").toBe(0);
  }, 120_000);

  it("Redis (appendonly yes, appendfsync everysec): a SIGKILL loses at most the last ~1 s of acknowledged writes", async () => {
    const env = environment();
    expect(env.spec.redis.appendonly).toBe(true);
    expect(env.spec.redis.appendfsync).toBe("everysec");
    const stream = new RedisWriteStream("r1");
    await stream.start();
    await sleep(REDIS_STREAM_MS);
    const pid = redisPid(env.paths)!;
    expect(pid).toBeGreaterThan(0);
    stream.markKill();
    const killedAt = Date.now();
    process.kill(pid, "SIGKILL");
    await stream.finished();
    expect(stream.ackedAt.size).toBeGreaterThan(100);
    expect([...stream.ackedAt.values()].some((t) => t < killedAt - REDIS_LOSS_WINDOW_MS), "writes older than the loss window").toBe(true);
    await waitFor("redis-server to die", () => !processAlive(pid), 10_000);

    await upAgain();
    const missing = await missingKeys([...stream.ackedAt.keys()]);
    assertRedisLossWithinBound(stream, missing, killedAt, "redis-sigkill");
  }, 120_000);

  it("both servers SIGKILLed at once under load: one `up` brings both back with the same guarantees", async () => {
    const env = environment();
    const pgStream = new PostgresWriteStream("B");
    const redisStream = new RedisWriteStream("b1");
    await Promise.all([pgStream.start(), redisStream.start()]);
    await sleep(REDIS_STREAM_MS);
    const pgPid = postmasterPidFromFile();
    const rPid = redisPid(env.paths)!;
    pgStream.markKill();
    redisStream.markKill();
    const killedAt = Date.now();
    process.kill(pgPid, "SIGKILL");
    process.kill(rPid, "SIGKILL");
    await Promise.all([pgStream.finished(), redisStream.finished()]);
    await waitFor("both servers to die", () => !processAlive(pgPid) && !processAlive(rPid), 10_000);

    await upAgain();
    assertPostgresKeptEveryCommit(pgStream, await presentSymbols("B"), "both-sigkill (postgres)");
    assertRedisLossWithinBound(redisStream, await missingKeys([...redisStream.ackedAt.keys()]), killedAt, "both-sigkill (redis)");
  }, 120_000);
});
