/**
 * Concurrency on one environment, with real parallel processes: `up` and `down` never act at
 * once (the environment lock), a run that cannot wait fails fast with exit 3, and one that can
 * waits and says so. (Two concurrent `up`s: test/env/embedded.test.ts; a SIGKILLed run's lock:
 * killed-toolkit.test.ts.)
 *
 * To hold the lock for as long as the test needs, a run is frozen with SIGSTOP right after it
 * took the lock, and thawed with SIGCONT.
 */
import pg from "pg";
import { beforeAll, describe, expect, it } from "vitest";
import { EXIT } from "../../lib/errors.js";
import { useEphemeralEnvironment } from "../support/embedded.js";
import { killGroup, runningServers, runScript, startAndFreezeInLock, startScript, waitFor } from "../support/commands.js";

const environment = useEphemeralEnvironment();
const NO_WAIT = { CPI_LOCK_WAIT_SECONDS: "0" };

beforeAll(async () => {
  const client = new pg.Client(environment().connections.postgresConfig("app"));
  await client.connect();
  await client.query("INSERT INTO cryptocurrencies (symbol, name) VALUES ('LOCK', 'kept through every race')");
  await client.end();
});

async function markerPresent(): Promise<boolean> {
  const client = new pg.Client(environment().connections.postgresConfig("readonly"));
  await client.connect();
  try {
    return (await client.query("SELECT 1 FROM cryptocurrencies WHERE symbol = 'LOCK'")).rowCount === 1;
  } finally {
    await client.end();
  }
}

describe("up and down racing on one environment", () => {
  it("while up holds the lock, down with no wait fails fast (exit 3) and changes nothing; up then completes", async () => {
    const env = environment();
    await env.stop();
    const up = await startAndFreezeInLock("up", ["--env", env.env], env.paths.lock);
    let down;
    try {
      down = await runScript("down", ["--env", env.env], { env: NO_WAIT });
    } finally {
      killGroup(up.child, "SIGCONT");
    }
    expect(down.code, down.stderr).toBe(EXIT.BUSY);
    expect(down.stderr).toContain(`environment '${env.env}' is busy: another run holds its lock`);
    expect(down.stderr).toContain("CPI_LOCK_WAIT_SECONDS");
    const upDone = await up.done;
    expect(upDone.code, upDone.stderr).toBe(0);
    expect(await runningServers(env.env)).toEqual({ postgres: true, redis: true });
    expect(await markerPresent()).toBe(true);
  }, 90_000);

  it("while down holds the lock, up waits (and says so), then runs after it: the last one wins, whole", async () => {
    const env = environment();
    const down = await startAndFreezeInLock("down", ["--env", env.env], env.paths.lock);
    const up = startScript("up", ["--env", env.env]);
    try {
      await waitFor("up to report that it waits", () => up.stderr().includes("is locked by another run; waiting up to 120s"), 30_000);
    } finally {
      killGroup(down.child, "SIGCONT");
    }
    const [downDone, upDone] = await Promise.all([down.done, up.done]);
    expect(downDone.code, downDone.stderr).toBe(0);
    expect(upDone.code, upDone.stderr).toBe(0);
    expect(await runningServers(env.env)).toEqual({ postgres: true, redis: true });
    expect(await markerPresent()).toBe(true);
  }, 90_000);

  it("started at the same instant (2 rounds): both succeed one after the other, and the servers are never left half up", async () => {
    const env = environment();
    for (let round = 0; round < 2; round++) {
      const [up, down] = await Promise.all([runScript("up", ["--env", env.env]), runScript("down", ["--env", env.env])]);
      expect(up.code, up.stderr).toBe(0);
      expect(down.code, down.stderr).toBe(0);
      const state = await runningServers(env.env);
      expect(state.postgres, `round ${round}: ${JSON.stringify(state)}`).toBe(state.redis);
    }
    const up = await runScript("up", ["--env", env.env]);
    expect(up.code, up.stderr).toBe(0);
    expect(await markerPresent()).toBe(true);
  }, 120_000);
});
