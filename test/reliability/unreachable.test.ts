/**
 * Unreachable servers: every command that connects fails with exit 2 and a message naming the
 * server, within a stated bound. Two kinds of unreachable:
 *   - hung (SIGSTOP: the kernel still accepts the TCP connection, nobody answers): bounded by
 *     the 10 s connect timeout of lib/db/clients.ts (PostgreSQL and Redis alike);
 *   - stopped (nothing listens): refused at once, so the command fails in about its start-up time.
 * Measured times are printed as `[figures] …` lines for README.md.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { EXIT } from "../../lib/errors.js";
import { STATUS_PROBE_MS } from "../../lib/engines/embedded/environment.js";
import { redisPid } from "../../lib/engines/embedded/redis-server.js";
import { useEphemeralEnvironment } from "../support/embedded.js";
import { runScript } from "../support/commands.js";

const environment = useEphemeralEnvironment();

/** The connect timeout of withPg/withRedis (lib/db/clients.ts). */
const CONNECT_TIMEOUT_S = 10;
/** Process start-up and the rest of the command on a loaded 2-core machine. */
const SLACK_S = 25;

/** Commands that read from an environment's servers (none of them writes anything). */
const READERS: string[][] = [["migrate", "status"], ["verify"], ["cache", "stats"], ["monitor"], ["drift"]];
/** `up` on a running environment first checks that both servers accept its credentials. */
const WITH_UP = [...READERS, ["up"]];

async function runAll(commands: string[][], env: string) {
  return Promise.all(commands.map(([name, ...args]) => runScript(name!, [...args, "--env", env], { timeoutMs: 120_000 })));
}

describe("unreachable servers", () => {
  it(`hung servers (SIGSTOP): every reader fails with exit 2 naming the server within ${CONNECT_TIMEOUT_S} s + start-up`, async () => {
    const env = environment();
    const pgPid = Number(readFileSync(path.join(env.paths.pgData, "postmaster.pid"), "utf8").split("\n")[0]);
    const rPid = redisPid(env.paths)!;
    process.kill(pgPid, "SIGSTOP");
    process.kill(rPid, "SIGSTOP");
    let results;
    let status;
    try {
      [results, status] = await Promise.all([runAll(WITH_UP, env.env), runScript("status", ["--env", env.env, "--json"], { timeoutMs: 120_000 })]);
    } finally {
      process.kill(pgPid, "SIGCONT");
      process.kill(rPid, "SIGCONT");
    }
    results.forEach((r, i) => {
      const command = WITH_UP[i]!.join(" ");
      expect(r.code, `${command}: ${r.stderr}`).toBe(EXIT.ERROR);
      expect(r.stderr + r.stdout, command).toMatch(/(PostgreSQL|Redis) at 127\.0\.0\.1:\d+ did not answer within 10s/);
      expect(r.ms, command).toBeGreaterThanOrEqual(CONNECT_TIMEOUT_S * 1000);
      expect(r.ms, command).toBeLessThan((CONNECT_TIMEOUT_S + SLACK_S) * 1000);
      console.log(`[figures] hung servers: npm run ${command} failed (exit ${r.code}) in ${(r.ms / 1000).toFixed(1)} s`);
    });
    // status reports, rather than fails: both processes run, neither answers within its 3 s probe.
    expect(status.code, status.stderr).toBe(0);
    expect(status.json).toMatchObject({ postgres: { running: true, answering: false }, redis: { running: true, answering: false } });
    expect(status.ms).toBeLessThan((STATUS_PROBE_MS / 1000 + SLACK_S) * 1000);
    console.log(`[figures] hung servers: npm run status reported both running, not answering, in ${(status.ms / 1000).toFixed(1)} s`);
  }, 120_000);

  it("stopped servers: every reader fails at once (exit 2, connection refused, with the port)", async () => {
    const env = environment();
    await env.stop();
    const results = await runAll(READERS, env.env);
    results.forEach((r, i) => {
      const command = READERS[i]!.join(" ");
      expect(r.code, `${command}: ${r.stderr}`).toBe(EXIT.ERROR);
      expect(r.stderr + r.stdout, command).toMatch(/ECONNREFUSED 127\.0\.0\.1:\d+/);
      expect(r.ms, command).toBeLessThan(SLACK_S * 1000);
      console.log(`[figures] stopped servers: npm run ${command} failed (exit ${r.code}) in ${(r.ms / 1000).toFixed(1)} s (${READERS.length} at once)`);
    });
    // The headline figure: one `npm run migrate -- status` alone, as an operator runs it.
    const alone = await runScript("migrate", ["status", "--env", env.env]);
    expect(alone.code).toBe(EXIT.ERROR);
    expect(alone.stderr).toContain(`could not connect: connect ECONNREFUSED 127.0.0.1:${env.spec.postgres.port}`);
    expect(alone.stderr).toContain("hint: is the environment up?");
    console.log(`[figures] stopped servers: npm run migrate -- status alone failed in ${(alone.ms / 1000).toFixed(1)} s`);
  }, 120_000);
});
