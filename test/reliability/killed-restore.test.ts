/**
 * The toolkit SIGKILLed in the middle of a restore (no cleanup runs): PostgreSQL holds the old
 * data or the restored data, never a mix; `up` brings the servers back with the spec's settings,
 * and running the restore again gives exactly the backup, with no scratch database or set-aside
 * Redis files left behind. (A killed backup: killed-backup.test.ts.)
 */
import { readdirSync } from "node:fs";
import path from "node:path";
import pg from "pg";
import { describe, expect, it } from "vitest";
import { withPg } from "../../lib/db/clients.js";
import { describeBackups } from "../support/docker.js";
import { useKillFixture } from "../support/kill-fixture.js";
import { fillForBackup, killGroup, runScript, sleep, startScript, waitFor } from "../support/commands.js";

const { environment, workDir, counts } = useKillFixture();

async function scratchDatabases(): Promise<string[]> {
  const { spec, connections } = environment();
  return withPg(connections.postgresConfig("admin", "postgres"), async (c) =>
    (await c.query("SELECT datname FROM pg_database WHERE datname LIKE $1 ORDER BY 1", [`${spec.postgres.database}\\_\\_%`])).rows.map((r: { datname: string }) => r.datname),
  );
}

describeBackups("SIGKILL in the middle of", () => {
  it("a restore: old data or restored data, never a mix; up and a second restore finish the job", async () => {
    const env = environment();
    const made = await runScript("backup", ["--env", env.env, "--out", path.join(workDir(), "kill-restore"), "--json"]);
    expect(made.code, made.stderr).toBe(0);
    const backedUp = { candles: made.json.manifest.postgres.tables.market_data as number, after: false, redisKeys: made.json.manifest.redis.keys as number };
    // Make the live data differ from the backup, so that old and restored can be told apart.
    await withPg(env.connections.postgresConfig("owner"), async (c) => {
      await c.query("DELETE FROM market_data WHERE id % 2 = 0");
      await c.query("INSERT INTO cryptocurrencies (symbol, name) VALUES ('AFTER', 'written after the backup')");
    });
    const old = await counts();
    expect(old.candles).toBeLessThan(backedUp.candles);

    const run = startScript("restore", ["--env", env.env, "--from", made.json.dir, "--yes"]);
    await waitFor("the restore's scratch database", async () => (await scratchDatabases()).length > 0, 60_000, 20);
    await sleep(500);
    killGroup(run.child, "SIGKILL");
    await run.done;

    const afterKill = await withPg(env.connections.postgresConfig("admin"), async (c) => (await c.query("SELECT (SELECT count(*) FROM market_data)::int AS candles, EXISTS (SELECT 1 FROM cryptocurrencies WHERE symbol = 'AFTER') AS after")).rows[0]);
    const state = afterKill.candles === old.candles && afterKill.after ? "old" : afterKill.candles === backedUp.candles && !afterKill.after ? "restored" : "mixed";
    expect(state, JSON.stringify(afterKill)).not.toBe("mixed");
    console.log(`[figures] killed restore: PostgreSQL held the ${state} data after the kill`);

    const up = await runScript("up", ["--env", env.env, "--json"]);
    expect(up.code, up.stderr).toBe(0);
    expect(up.json.settings.filter((s: { ok: boolean }) => !s.ok)).toEqual([]);

    const again = await runScript("restore", ["--env", env.env, "--from", made.json.dir, "--yes"]);
    expect(again.code, again.stderr).toBe(0);
    expect(await counts()).toEqual(backedUp);
    expect(await scratchDatabases(), "scratch databases left behind").toEqual([]);
    expect(readdirSync(env.paths.redisDir).filter((f) => f.startsWith(".restore-old-") || f.includes(".restore-")), "Redis files set aside and left behind").toEqual([]);
    // The application still logs in: the roles survived the swap of databases.
    const client = new pg.Client(env.connections.postgresConfig("app"));
    await client.connect();
    expect((await client.query("SELECT count(*)::int AS n FROM market_data")).rows[0].n).toBe(backedUp.candles);
    await client.end();
  }, 180_000);
});
