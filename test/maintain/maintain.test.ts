/**
 * `npm run maintain` on real servers: the guide's weekly tasks remove the dead tuples of a mass
 * update and refresh statistics, reporting before and after; dead tuples that an old transaction
 * keeps alive are a problem (exit 1) naming that transaction.
 */
import pg from "pg";
import { describe, expect, it } from "vitest";
import { withPg } from "../../lib/db/clients.js";
import { resolveEnvironment } from "../../lib/env/resolve.js";
import { maintainEnvironment } from "../../lib/maintain/maintain.js";
import { runCli, useEphemeralEnvironment } from "../support/embedded.js";

const env = useEphemeralEnvironment();

/** Inserts a coin and `rows` candles, then updates every candle: `rows` dead tuples in market_data. */
async function churn(rows: number): Promise<void> {
  await withPg(env().connections.postgresConfig("owner"), async (client) => {
    await client.query("ALTER TABLE market_data SET (autovacuum_enabled = false)");
    await client.query("INSERT INTO cryptocurrencies (symbol, name) VALUES ('MNT', 'Maintenance test') ON CONFLICT (symbol) DO NOTHING");
    await client.query("DELETE FROM market_data");
    await client.query(
      `INSERT INTO market_data (cryptocurrency_id, timestamp, open_price, high_price, low_price, close_price, volume)
       SELECT (SELECT id FROM cryptocurrencies WHERE symbol = 'MNT'), timestamptz '2024-01-01' + g * interval '1 minute', 100, 110, 90, 105, 1
         FROM generate_series(1, $1) g`,
      [rows],
    );
    await client.query("UPDATE market_data SET volume = volume + 1");
  });
}

/** Waits (bounded) until the statistics show the dead tuples: sessions report them when they end. */
async function deadTuplesVisible(min: number): Promise<void> {
  await withPg(env().connections.postgresConfig("admin"), async (client) => {
    for (let i = 0; i < 40; i++) {
      await client.query("SELECT pg_stat_clear_snapshot()");
      const { rows } = await client.query("SELECT n_dead_tup::int AS dead FROM pg_stat_user_tables WHERE relname = 'market_data'");
      if (rows[0].dead >= min) return;
      await new Promise((r) => setTimeout(r, 250));
    }
    throw new Error(`market_data never showed ${min} dead tuples`);
  });
}

describe("maintain", () => {
  it("VACUUM ANALYZE removes the dead tuples of a mass update; the report says what changed (exit 0)", async () => {
    await churn(2000);
    await deadTuplesVisible(2000);
    const result = await runCli("maintain", ["--env", env().env, "--json"]);
    expect(result.code, result.stderr).toBe(0);
    const report = result.json;
    expect(report.role).toBe(env().spec.postgres.user);
    expect(report.steps.map((s: { sql: string; status: string }) => `${s.sql}: ${s.status}`)).toEqual([
      "VACUUM (ANALYZE) market_data: done",
      "VACUUM (ANALYZE) predictions: done",
      "ANALYZE cryptocurrencies: done",
      "ANALYZE market_data: skipped",
    ]);
    const md = report.changes.find((c: { table: string }) => c.table === "market_data");
    expect(md.deadBefore).toBeGreaterThanOrEqual(2000);
    expect(md.deadAfter).toBe(0);
    expect(md.liveAfter).toBe(2000);
    const sizes = report.sizes.find((s: { table: string }) => s.table === "market_data");
    expect(sizes.lastVacuum).not.toBeNull();
    expect(sizes.lastAnalyze).not.toBeNull();
    expect(report.indexHealth.invalid).toEqual([]);
    const human = await runCli("maintain", ["--env", env().env]);
    expect(human.stdout).toMatch(/market_data +dead 0 → 0 +live 2000 → 2000/);
  });

  it("dead tuples an old transaction keeps visible are a problem (exit 1) naming that session", async () => {
    const holder = new pg.Client(env().connections.postgresConfig("readonly"));
    await holder.connect();
    try {
      await holder.query("BEGIN ISOLATION LEVEL REPEATABLE READ");
      await holder.query("SELECT count(*) FROM market_data"); // takes the snapshot that pins the old rows
      const pid = (await holder.query("SELECT pg_backend_pid() AS pid")).rows[0].pid as number;
      await churn(500);
      await deadTuplesVisible(500);
      const report = await maintainEnvironment(resolveEnvironment({ env: env().env }), undefined, { role: "admin" });
      expect(report.exitCode).toBe(1);
      expect(report.problems.join("\n")).toMatch(new RegExp(`market_data: \\d+ dead tuples .* remain after VACUUM; an old transaction keeps them visible: pid ${pid}`));
    } finally {
      await holder.query("ROLLBACK").catch(() => undefined);
      await holder.end();
    }
    const again = await maintainEnvironment(resolveEnvironment({ env: env().env }));
    expect(again.problems).toEqual([]);
    expect(again.changes.find((c) => c.table === "market_data")!.deadAfter).toBe(0);
    await withPg(env().connections.postgresConfig("owner"), (c) => c.query("ALTER TABLE market_data RESET (autovacuum_enabled)"));
  });
});
