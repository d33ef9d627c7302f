/**
 * `npm run monitor` on real servers: a quiet environment is within every threshold (exit 0), and
 * each alert of the guide fires on a condition induced for real: evictions (a small maxmemory,
 * filled while sampling), dead tuples (a mass update with autovacuum off for the table), a low
 * hit rate (misses). A WARN line makes the command exit 1.
 */
import { describe, expect, it } from "vitest";
import { withPg, withRedis } from "../../lib/db/clients.js";
import { resolveEnvironment } from "../../lib/env/resolve.js";
import { monitorEnvironment, type MetricLine } from "../../lib/monitor/monitor.js";
import { runCli, useEphemeralEnvironment } from "../support/embedded.js";

const env = useEphemeralEnvironment();

const line = (lines: MetricLine[], id: string) => {
  const found = lines.find((l) => l.id === id);
  if (!found) throw new Error(`no line ${id} in ${lines.map((l) => l.id).join(", ")}`);
  return found;
};

describe("monitor", () => {
  it("a quiet environment is within every threshold (exit 0), every metric of the guide listed", async () => {
    await withRedis(env().connections.redisOptions("admin"), (r) => r.config("RESETSTAT"));
    const result = await runCli("monitor", ["--env", env().env, "--interval", "0.3", "--json"]);
    expect(result.code, JSON.stringify(result.json?.lines, null, 2)).toBe(0);
    const ids = result.json.lines.map((l: MetricLine) => l.id);
    expect(ids).toEqual(expect.arrayContaining(["postgres.connections", "postgres.queries.slow", "postgres.cache_hit_ratio", "postgres.index_hit_ratio", "postgres.dead_tuples", "postgres.table_sizes", "postgres.unused_indexes", "redis.memory", "redis.hit_rate", "redis.evictions", "redis.clients", "redis.ops"]));
    // pg_stat_statements is preloaded by the embedded server and created by the roles bootstrap.
    expect(line(result.json.lines, "postgres.queries.slow").status).toBe("ok");
    expect(line(result.json.lines, "postgres.connections").threshold).toBe("> 80% of max_connections");
    const human = await runCli("monitor", ["--env", env().env, "--interval", "0"]);
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/ok {3}connections +\d+ \/ 100/);
  });

  it("evictions above 100/s fire while a small maxmemory is being filled", async () => {
    const c = env().connections;
    await withRedis(c.redisOptions("admin"), (r) => r.config("SET", "maxmemory", "4mb"));
    let filling = true;
    const value = "x".repeat(2048);
    const filler = withRedis(c.redisOptions("app"), async (redis) => {
      let i = 0;
      const deadline = Date.now() + 20_000; // bounded even if the monitor hangs
      while (filling && Date.now() < deadline) {
        const batch = redis.pipeline();
        for (let j = 0; j < 200; j++, i++) batch.set(`test:fill:${i}:value`, value, "EX", 300);
        await batch.exec();
      }
      return i;
    });
    try {
      await new Promise((r) => setTimeout(r, 300)); // full before the first sample
      const report = await monitorEnvironment(resolveEnvironment({ env: env().env }), undefined, { intervalSeconds: 1 });
      const evictions = line(report.lines, "redis.evictions");
      expect(evictions.status, evictions.value).toBe("warn");
      expect(evictions.measured!).toBeGreaterThan(100);
      expect(evictions.threshold).toBe("> 100/s");
      expect(line(report.lines, "redis.memory").status).toBe("warn");
      expect(report.exitCode).toBe(1);
    } finally {
      filling = false;
      expect(await filler).toBeGreaterThan(1000);
      await withRedis(c.redisOptions("admin"), async (r) => {
        await r.config("SET", "maxmemory", "256mb");
        await r.flushdb();
      });
    }
  });

  it("dead tuples above 10% of live fire after a mass update (autovacuum off for the table)", async () => {
    const c = env().connections;
    await withPg(c.postgresConfig("owner"), async (client) => {
      await client.query("ALTER TABLE cryptocurrencies SET (autovacuum_enabled = false)");
      await client.query("INSERT INTO cryptocurrencies (symbol, name) SELECT 'T' || g, 'Test ' || g FROM generate_series(1, 500) g");
      await client.query("UPDATE cryptocurrencies SET name = name || ' (renamed)'");
    }); // the session ends: its statistics reach the shared counters
    try {
      let report = await monitorEnvironment(resolveEnvironment({ env: env().env }), undefined, { intervalSeconds: 0 });
      for (let i = 0; i < 20 && line(report.lines, "postgres.dead_tuples").status !== "warn"; i++) {
        await new Promise((r) => setTimeout(r, 250));
        report = await monitorEnvironment(resolveEnvironment({ env: env().env }), undefined, { intervalSeconds: 0 });
      }
      const dead = line(report.lines, "postgres.dead_tuples");
      expect(dead.status, dead.value).toBe("warn");
      expect(dead.detail).toMatch(/public\.cryptocurrencies 500 dead \/ 500 live \(100%\)/);
      expect(report.exitCode).toBe(1);
    } finally {
      await withPg(c.postgresConfig("owner"), async (client) => {
        await client.query("DELETE FROM cryptocurrencies");
        await client.query("VACUUM cryptocurrencies");
        await client.query("ALTER TABLE cryptocurrencies RESET (autovacuum_enabled)");
      });
    }
  });

  it("a hit rate below 70% fires (the CLI exits 1 and shows the threshold)", async () => {
    const c = env().connections;
    await withRedis(c.redisOptions("admin"), (r) => r.config("RESETSTAT"));
    await withRedis(c.redisOptions("app"), async (redis) => {
      await redis.set("test:hit:1:value", "v", "EX", 300);
      const batch = redis.pipeline();
      for (let i = 0; i < 100; i++) batch.get("test:hit:1:value");
      for (let i = 0; i < 300; i++) batch.get(`test:miss:${i}:value`);
      await batch.exec();
    });
    const result = await runCli("monitor", ["--env", env().env, "--interval", "0.2"]);
    expect(result.code).toBe(1);
    expect(result.stdout).toMatch(/WARN hit rate +25% since start .*\(alert < 70%\)/);
    await withRedis(c.redisOptions("admin"), async (r) => {
      await r.config("RESETSTAT");
      await r.unlink("test:hit:1:value");
    });
  });

  it("refuses a bad --interval (64)", async () => {
    const result = await runCli("monitor", ["--env", env().env, "--interval", "soon"]);
    expect(result.code).toBe(64);
    expect(result.stderr).toContain('--interval "soon": expected a number of seconds from 0 to 60');
  });
});
