/**
 * The toolkit itself killed (SIGKILL, no cleanup) in the middle of `up`:
 *   - its environment lock is left behind: runs that cannot wait get exit 3 while it is fresh,
 *     and the next `up` takes it over once stale (proper-lockfile: 15 s), never blocked forever;
 *   - a first `up` killed during initdb leaves no half-made cluster: the next `up` completes.
 * (Killed backup/restore runs: pending, see README.md.)
 */
import { existsSync } from "node:fs";
import path from "node:path";
import pg from "pg";
import { describe, expect, it } from "vitest";
import { EXIT } from "../../lib/errors.js";
import { envPaths } from "../../lib/state/paths.js";
import { useEphemeralEnvironment } from "../support/embedded.js";
import { killGroup, runningServers, runScript, startAndFreezeInLock, startScript, waitFor } from "../support/commands.js";

const environment = useEphemeralEnvironment();

/** proper-lockfile's `stale` of lib/state/lock.ts. */
const STALE_S = 15;
const SLACK_S = 30;

describe.concurrent("a SIGKILLed toolkit run", () => {
  it(`leaves a lock that blocks no-wait runs only while fresh (exit 3); the next up takes it over once stale (${STALE_S} s)`, async () => {
    const env = environment();
    const client = new pg.Client(env.connections.postgresConfig("app"));
    await client.connect();
    await client.query("INSERT INTO cryptocurrencies (symbol, name) VALUES ('KILL', 'kept through a killed up')");
    await client.end();
    await env.stop();

    const victim = await startAndFreezeInLock("up", ["--env", env.env], env.paths.lock);
    killGroup(victim.child, "SIGKILL");
    const killedAt = Date.now();
    await victim.done;
    expect(existsSync(env.paths.lock), "the killed run's lock is left behind").toBe(true);

    const busy = await runScript("down", ["--env", env.env], { env: { CPI_LOCK_WAIT_SECONDS: "0" } });
    expect(busy.code, busy.stderr).toBe(EXIT.BUSY);
    expect(busy.stderr).toContain(`environment '${env.env}' is busy`);

    const next = await runScript("up", ["--env", env.env]);
    const seconds = (Date.now() - killedAt) / 1000;
    expect(next.code, next.stderr).toBe(0);
    expect(next.stderr).toContain("is locked by another run; waiting");
    expect(seconds).toBeLessThan(STALE_S + SLACK_S);
    console.log(`[figures] killed up: the next up took over its stale lock and finished ${seconds.toFixed(1)} s after the kill`);
    expect(await runningServers(env.env)).toEqual({ postgres: true, redis: true });
    const check = new pg.Client(env.connections.postgresConfig("readonly"));
    await check.connect();
    expect((await check.query("SELECT 1 FROM cryptocurrencies WHERE symbol = 'KILL'")).rowCount).toBe(1);
    await check.end();
    expect(existsSync(env.paths.lock), "the lock is released").toBe(false);
  }, 120_000);

  it("killed during the first initdb: the next up completes with a whole cluster", async () => {
    const first = startScript("up", ["--ephemeral", "--json"]);
    let id: string | undefined;
    try {
      await waitFor("up to name its environment", () => Boolean((id = /crypto-prediction-infra\/(eph-[a-z0-9]+)\//.exec(first.stderr())?.[1])), 60_000);
      const staging = `${envPaths(id!).pgData}.initdb`;
      await waitFor("initdb to be half-way", () => existsSync(path.join(staging, "PG_VERSION")), 60_000, 10);
    } finally {
      killGroup(first.child, "SIGKILL");
    }
    await first.done;
    expect(id).toBeDefined();
    const paths = envPaths(id!);
    try {
      expect(existsSync(path.join(paths.pgData, "PG_VERSION")), "a half-made cluster at the data dir").toBe(false);
      const next = await runScript("up", ["--env", id!, "--json"]);
      expect(next.code, next.stderr).toBe(0);
      expect(next.json.initialised).toBe(true);
      expect(next.json.migrationsApplied.length).toBeGreaterThan(0);
      expect(await runningServers(id!)).toEqual({ postgres: true, redis: true });
      expect(existsSync(`${paths.pgData}.initdb`), "the staging folder is gone").toBe(false);
    } finally {
      const down = await runScript("down", ["--env", id!, "--destroy", "--yes"]);
      expect(down.code, down.stderr).toBe(0);
    }
  }, 120_000);
});
