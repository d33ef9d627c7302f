/**
 * The embedded engine against real servers: one ephemeral environment for the file (free ports,
 * temp state), driven in-process and through `npm run up/down` as separate processes.
 *
 * Order matters inside the file (the guide's rows first, then stop/start/crash on the same
 * environment); a second and a third environment cover a fresh concurrent `up` and a data dir
 * of another major version.
 */
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { randomBytes } from "node:crypto";
import pg from "pg";
import { Redis } from "ioredis";
import { describe, expect, it } from "vitest";
import { EXIT } from "../../lib/errors.js";
import { withPg, withRedis } from "../../lib/db/clients.js";
import { readRecord, writeRecord, type EnvironmentRecord } from "../../lib/state/record.js";
import { envPaths } from "../../lib/state/paths.js";
import { freePort, isPortFree } from "../../lib/state/ports.js";
import { processAlive } from "../../lib/state/processes.js";
import { postgresSettings, redisConfigGetValue, redisSettings } from "../../lib/spec/render.js";
import { parsePgSize } from "../../lib/spec/units.js";
import { runCli, useEphemeralEnvironment } from "../support/embedded.js";
import { listeningAddressesOf } from "../support/listening.js";

const environment = useEphemeralEnvironment();

// ---- helpers ---------------------------------------------------------------------------------

function pidsOf(env: string): { postgres?: number; redis?: number } {
  const paths = envPaths(env);
  const read = (file: string) => (existsSync(file) ? Number(readFileSync(file, "utf8").split("\n")[0]!.trim()) : undefined);
  return { postgres: read(path.join(paths.pgData, "postmaster.pid")), redis: read(paths.redisPid) };
}

async function waitUntil(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** SHOW's value in a comparable form: sizes in bytes, times in ms, lists sorted. */
function comparableShow(kind: string, value: string): string {
  if (kind === "size") return String(parsePgSize(value));
  if (kind === "list") return value.split(",").map((v) => v.trim()).filter(Boolean).sort().join(",");
  const time = /^(-?\d+)(ms|s|min|h)$/.exec(value);
  if (time) return String(Number(time[1]) * { ms: 1, s: 1000, min: 60_000, h: 3_600_000 }[time[2] as "ms"]);
  return value;
}


/** A record for a new ephemeral id with free ports: `up --env ID` then makes it from nothing. */
async function newEnvironmentRecord(): Promise<EnvironmentRecord> {
  const env = `eph-${randomBytes(5).toString("hex")}`;
  const record: EnvironmentRecord = {
    env,
    engine: "embedded",
    ephemeral: true,
    baseEnv: "dev",
    specOverrides: { namePrefix: `cpi-${env}`, postgres: { port: await freePort() }, redis: { port: await freePort() } },
    createdAt: new Date().toISOString(),
  };
  writeRecord(envPaths(env), record);
  return record;
}

const GUIDE_INSERTS = {
  cryptocurrency: `INSERT INTO cryptocurrencies (symbol, name, coin_gecko_id, is_active)
VALUES ('BTC', 'Bitcoin', 'bitcoin', true);`,
  marketData: `INSERT INTO market_data (
    cryptocurrency_id, timestamp,
    open_price, high_price, low_price, close_price,
    volume, market_cap, data_source
)
VALUES (
    1, '2024-01-01 00:00:00',
    45000, 45500, 44800, 45200,
    1000000000, 900000000000, 'coingecko'
);`,
  prediction: `INSERT INTO predictions (
    cryptocurrency_id,
    prediction_timestamp, target_timestamp,
    predicted_price, confidence_score,
    model_name, model_version
)
VALUES (
    1,
    '2024-01-01 00:00:00', '2024-01-02 00:00:00',
    46000, 0.85,
    'LSTM-v1', '1.0.0'
);`,
};

/** The error a statement raises as the app role (fails the test when it succeeds). */
async function rejected(sql: string, params: unknown[] = []): Promise<{ code?: string; constraint?: string; message: string }> {
  return withPg(environment().connections.postgresConfig("app"), async (client) => {
    try {
      await client.query(sql, params);
    } catch (error) {
      return error as { code?: string; constraint?: string; message: string };
    }
    throw new Error(`expected the server to refuse: ${sql} ${JSON.stringify(params)}`);
  });
}

const INSERT_CANDLE = `INSERT INTO market_data (cryptocurrency_id, timestamp, open_price, high_price, low_price, close_price, volume)
VALUES ($1, $2, $3, $4, $5, $6, 1000)`;

async function markerRow(): Promise<{ close: string | undefined; cached: string | null }> {
  const env = environment();
  const close = await withPg(env.connections.postgresConfig("readonly"), async (c) => (await c.query("SELECT close_price FROM market_data WHERE cryptocurrency_id = 1 AND timestamp = '2024-01-01 00:00:00+00'")).rows[0]?.close_price);
  const cached = await withRedis(env.connections.redisOptions("app"), (r) => r.get("crypto:BTC:price"));
  return { close, cached };
}

// ---- the tests -------------------------------------------------------------------------------

describe("a running environment", () => {
  it("runs every PostgreSQL setting of the spec (SHOW)", async () => {
    const env = environment();
    const declared = postgresSettings(env.spec);
    expect(declared.map((s) => s.name)).toEqual(expect.arrayContaining(["shared_buffers", "effective_cache_size", "work_mem", "maintenance_work_mem"]));
    await withPg(env.connections.postgresConfig("admin"), async (client) => {
      for (const setting of declared) {
        const shown = (await client.query(`SHOW ${setting.name}`)).rows[0][setting.name] as string;
        expect(comparableShow(setting.kind, shown), `${setting.name}: SHOW says ${shown}`).toBe(comparableShow(setting.kind, setting.value));
      }
      // The guide's literal values, as SHOW prints them.
      for (const [name, value] of Object.entries({ shared_buffers: "256MB", effective_cache_size: "1GB", work_mem: "16MB", maintenance_work_mem: "128MB" })) {
        expect((await client.query(`SHOW ${name}`)).rows[0][name]).toBe(value);
      }
    });
    expect(env.report.settings.every((s) => s.ok)).toBe(true);
  });

  it("runs every Redis setting of the spec (CONFIG GET)", async () => {
    const env = environment();
    await withRedis(env.connections.redisOptions("admin"), async (redis) => {
      for (const setting of redisSettings(env.spec)) {
        const [, live] = (await redis.config("GET", setting.name)) as string[];
        expect(live, setting.name).toBe(redisConfigGetValue(setting));
      }
      const get = async (name: string) => ((await redis.config("GET", name)) as string[])[1];
      expect(await get("maxmemory")).toBe(String(256 * 1024 * 1024));
      expect(await get("maxmemory-policy")).toBe("allkeys-lru");
      expect(await get("save")).toBe("60 1000");
      expect(await get("appendonly")).toBe("yes");
    });
  });

  it("accepts the guide's three example INSERTs, verbatim, as the guide's user", async () => {
    await withPg(environment().connections.postgresConfig("owner"), async (client) => {
      expect((await client.query(GUIDE_INSERTS.cryptocurrency)).rowCount).toBe(1);
      expect((await client.query(GUIDE_INSERTS.marketData)).rowCount).toBe(1);
      expect((await client.query(GUIDE_INSERTS.prediction)).rowCount).toBe(1);
      const { rows } = await client.query("SELECT c.id, c.symbol, m.close_price, p.confidence_score FROM cryptocurrencies c JOIN market_data m ON m.cryptocurrency_id = c.id JOIN predictions p ON p.cryptocurrency_id = c.id");
      expect(rows).toEqual([{ id: 1, symbol: "BTC", close_price: "45200.00000000", confidence_score: "0.8500" }]);
    });
  });

  it("refuses a negative price", async () => {
    const error = await rejected(INSERT_CANDLE, [1, "2024-01-01 00:01:00+00", -5, -1, -10, -2]);
    expect(error).toMatchObject({ code: "23514", constraint: "ck_market_data_prices_nonnegative" });
  });

  it("refuses a candle whose high is below its low", async () => {
    const error = await rejected(INSERT_CANDLE, [1, "2024-01-01 00:01:00+00", 45000, 44000, 45500, 45000]);
    expect(error.code).toBe("23514");
    expect(error.constraint).toMatch(/^ck_market_data_(high_low|high_brackets|low_brackets)$/);
  });

  it("refuses a second candle for the same (cryptocurrency_id, timestamp)", async () => {
    const error = await rejected(INSERT_CANDLE, [1, "2024-01-01 00:00:00+00", 45000, 45500, 44800, 45200]);
    expect(error).toMatchObject({ code: "23505", constraint: "uq_market_data_crypto_timestamp" });
  });

  it("refuses market data of an unknown cryptocurrency", async () => {
    const error = await rejected(INSERT_CANDLE, [999_999, "2024-01-01 00:00:00+00", 1, 1, 1, 1]);
    expect(error).toMatchObject({ code: "23503", constraint: "fk_market_data_cryptocurrency" });
  });

  it("refuses a confidence score of 1.5", async () => {
    const error = await rejected(
      "INSERT INTO predictions (cryptocurrency_id, prediction_timestamp, target_timestamp, predicted_price, confidence_score, model_name, model_version) VALUES (1, '2024-01-01', '2024-01-02', 46000, 1.5, 'LSTM-v1', '1.0.0')",
    );
    expect(error).toMatchObject({ code: "23514", constraint: "ck_predictions_confidence_range" });
  });

  it("Redis refuses commands without the password, and with a wrong one", async () => {
    const { port } = environment().spec.redis;
    // RESP2: no HELLO handshake (which Redis refuses before AUTH), so that each command is asked.
    const anonymous = new Redis({ host: "127.0.0.1", port, protocol: 2, lazyConnect: true, enableReadyCheck: false, maxRetriesPerRequest: 0, retryStrategy: () => null });
    anonymous.on("error", () => undefined);
    try {
      await anonymous.connect();
      await expect(anonymous.get("crypto:BTC:price")).rejects.toThrow(/NOAUTH/);
      await expect(anonymous.set("crypto:BTC:price", "1")).rejects.toThrow(/NOAUTH/);
    } finally {
      anonymous.disconnect();
    }
    const wrongPassword = { ...environment().connections.redisOptions("admin"), password: "not-the-password" };
    await expect(withRedis(wrongPassword, (redis) => redis.get("crypto:BTC:price"))).rejects.toThrow(/WRONGPASS/);
    // With the application's password: data commands yes, administration no.
    await withRedis(environment().connections.redisOptions("app"), async (redis) => {
      expect(await redis.set("crypto:BTC:price", "45200", "EX", 3600)).toBe("OK");
      await expect(redis.config("GET", "maxmemory")).rejects.toThrow(/NOPERM/);
      await expect(redis.flushall()).rejects.toThrow(/NOPERM/);
    });
  });

  it("listens on 127.0.0.1 only (both servers, every listening socket)", () => {
    const env = environment();
    const { postgres, redis } = pidsOf(env.env);
    expect(listeningAddressesOf(postgres!)).toEqual([`127.0.0.1:${env.spec.postgres.port}`]);
    expect(listeningAddressesOf(redis!)).toEqual([`127.0.0.1:${env.spec.redis.port}`]);
  });
});

describe("up, down and crashes (separate processes, as an operator runs them)", () => {
  it("up a second time says it is already up and changes nothing", async () => {
    const env = environment();
    const before = pidsOf(env.env);
    // The toolkit's own files: rewritten only when their content would change.
    const files = [env.paths.credentials, env.paths.record, env.paths.pgSpecConf, env.paths.redisConf];
    const stamps = () => files.map((f) => `${f} ${statSync(f).mtimeMs} ${(statSync(f).mode & 0o777).toString(8)}`);
    const stampsBefore = stamps();
    const human = await runCli("up", ["--env", env.env]);
    expect(human.code, human.stderr).toBe(EXIT.OK);
    expect(human.stdout).toContain(`${env.env}: already up; re-verified`);
    const json = await runCli("up", ["--env", env.env, "--json"]);
    expect(json.code, json.stderr).toBe(EXIT.OK);
    expect(json.json).toMatchObject({ env: env.env, alreadyUp: true, initialised: false, migrationsApplied: [] });
    expect(json.json.settings.every((s: { ok: boolean }) => s.ok)).toBe(true);
    expect(pidsOf(env.env)).toEqual(before);
    expect(stamps()).toEqual(stampsBefore);
  });

  it("down then up keeps the data", async () => {
    const env = environment();
    const before = await markerRow();
    expect(before).toEqual({ close: "45200.00000000", cached: "45200" });
    const pids = pidsOf(env.env);
    const down = await runCli("down", ["--env", env.env, "--json"]);
    expect(down.code, down.stderr).toBe(EXIT.OK);
    expect(down.json).toMatchObject({ stopped: { postgres: true, redis: true }, destroyed: false });
    await waitUntil("the servers to exit", () => !processAlive(pids.postgres!) && !processAlive(pids.redis!), 5_000);
    expect(await isPortFree(env.spec.postgres.port)).toBe(true);
    expect(await isPortFree(env.spec.redis.port)).toBe(true);

    const up = await runCli("up", ["--env", env.env, "--json"]);
    expect(up.code, up.stderr).toBe(EXIT.OK);
    expect(up.json).toMatchObject({ alreadyUp: false, initialised: false, migrationsApplied: [] });
    expect(await markerRow()).toEqual(before);
  });

  it("refuses to start on a port that is taken: names it, exits 2, starts nothing", async () => {
    const env = environment();
    expect((await runCli("down", ["--env", env.env])).code).toBe(EXIT.OK);
    const squatter = net.createServer();
    await new Promise<void>((resolve) => squatter.listen(env.spec.postgres.port, "127.0.0.1", resolve));
    try {
      const up = await runCli("up", ["--env", env.env]);
      expect(up.code, up.stderr).toBe(EXIT.ERROR);
      expect(up.stderr).toContain(`port ${env.spec.postgres.port} on 127.0.0.1 (postgres.port) is already in use`);
      expect(up.stderr).toContain(`(pid ${process.pid})`); // who holds it: this test process
      // Nothing started: Redis, whose port was free, did not start either.
      expect(pidsOf(env.env).redis).toBeUndefined();
      expect(await isPortFree(env.spec.redis.port)).toBe(true);
    } finally {
      await new Promise((resolve) => squatter.close(resolve));
    }
    const up = await runCli("up", ["--env", env.env, "--json"]);
    expect(up.code, up.stderr).toBe(EXIT.OK);
  });

  it("after a crash (SIGKILL of the postmaster and Redis), up detects the stale pids and restarts with the data", async () => {
    const env = environment();
    const before = await markerRow();
    const pids = pidsOf(env.env);
    process.kill(pids.postgres!, "SIGKILL");
    process.kill(pids.redis!, "SIGKILL");
    await waitUntil("the servers to die", () => !processAlive(pids.postgres!) && !processAlive(pids.redis!));
    expect(existsSync(path.join(env.paths.pgData, "postmaster.pid"))).toBe(true); // what a crash leaves

    const up = await runCli("up", ["--env", env.env, "--json"]);
    expect(up.code, up.stderr).toBe(EXIT.OK);
    expect(up.json).toMatchObject({ alreadyUp: false, initialised: false, recoveredStalePid: true });
    const after = pidsOf(env.env);
    expect(after.postgres).not.toBe(pids.postgres);
    expect(processAlive(after.postgres!) && processAlive(after.redis!)).toBe(true);
    expect(await markerRow()).toEqual(before);
  });
});

describe("environments made for one test", () => {
  it("refuses a data dir from another PostgreSQL major version, starting nothing", async () => {
    const source = environment();
    const copy = await newEnvironmentRecord();
    const paths = envPaths(copy.env);
    try {
      cpSync(source.paths.credentials, paths.credentials);
      mkdirSync(paths.pgDir, { recursive: true, mode: 0o700 });
      cpSync(source.paths.pgData, paths.pgData, { recursive: true });
      rmSync(path.join(paths.pgData, "postmaster.pid"), { force: true }); // the source's server is not this copy's
      writeFileSync(path.join(paths.pgData, "PG_VERSION"), "15\n");

      const up = await runCli("up", ["--env", copy.env]);
      expect(up.code, up.stderr).toBe(EXIT.ERROR);
      expect(up.stderr).toContain(`the data dir ${paths.pgData} is from PostgreSQL 15; this toolkit runs PostgreSQL 16`);
      expect(readFileSync(path.join(paths.pgData, "PG_VERSION"), "utf8")).toBe("15\n");
      const ports = copy.specOverrides as { postgres: { port: number }; redis: { port: number } };
      expect(await isPortFree(ports.postgres.port)).toBe(true);
      expect(await isPortFree(ports.redis.port)).toBe(true);
      expect(pidsOf(copy.env).redis).toBeUndefined();
    } finally {
      const down = await runCli("down", ["--env", copy.env, "--destroy", "--yes"]);
      expect(down.code, down.stderr).toBe(EXIT.OK);
    }
    expect(existsSync(paths.dir)).toBe(false);
  });

  it(
    "two concurrent ups of one new environment: initdb runs once, the other waits (or fails fast with 3); then down --destroy removes everything",
    async () => {
      const record = await newEnvironmentRecord();
      const paths = envPaths(record.env);
      const ports = record.specOverrides as { postgres: { port: number }; redis: { port: number } };
      try {
        const runs = await Promise.all([runCli("up", ["--env", record.env, "--json"]), runCli("up", ["--env", record.env, "--json"])]);
        for (const run of runs) expect([EXIT.OK, EXIT.BUSY], run.stderr).toContain(run.code);
        const ok = runs.filter((r) => r.code === EXIT.OK);
        expect(ok.length).toBeGreaterThanOrEqual(1);
        // initdb ran exactly once: one run initialised, and its log line appears once in all.
        expect(ok.filter((r) => r.json.initialised === true)).toHaveLength(1);
        expect(runs.map((r) => r.stderr.match(/initialising PostgreSQL/g)?.length ?? 0).reduce((a, b) => a + b)).toBe(1);
        if (ok.length === 2) {
          const waited = ok.find((r) => r.json.initialised === false)!;
          expect(waited.stderr).toContain(`environment '${record.env}' is locked by another run; waiting`);
          expect(waited.json.alreadyUp).toBe(true);
        } else {
          expect(runs.find((r) => r.code === EXIT.BUSY)!.stderr).toContain("is busy");
        }
        expect(readRecord(record.env)?.env).toBe(record.env);

        // down --destroy: the state dir, the processes and the ports are all gone.
        const pids = pidsOf(record.env);
        expect(processAlive(pids.postgres!) && processAlive(pids.redis!)).toBe(true);
        const refused = await runCli("down", ["--env", record.env, "--destroy"]);
        expect(refused.code).toBe(EXIT.USAGE);
        expect(existsSync(paths.pgData)).toBe(true);

        const down = await runCli("down", ["--env", record.env, "--destroy", "--yes", "--json"]);
        expect(down.code, down.stderr).toBe(EXIT.OK);
        expect(down.json).toMatchObject({ stopped: { postgres: true, redis: true }, destroyed: true });
        expect(existsSync(paths.dir)).toBe(false);
        // pg_ctl returns when the pid file is gone; the process itself exits a moment later.
        await waitUntil("the servers to exit", () => !processAlive(pids.postgres!) && !processAlive(pids.redis!), 5_000);
        expect(await isPortFree(ports.postgres.port)).toBe(true);
        expect(await isPortFree(ports.redis.port)).toBe(true);
      } finally {
        if (existsSync(paths.dir)) await runCli("down", ["--env", record.env, "--destroy", "--yes"]);
      }
    },
    180_000,
  );
});
