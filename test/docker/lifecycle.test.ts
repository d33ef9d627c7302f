/**
 * A Docker environment (env:ci --engine docker) through the same lifecycle commands as an
 * embedded one: status (running, healthy, sizes), connect, logs, down (containers stopped, data
 * kept), up (started again), restart, a container removed by hand, down --destroy --yes (nothing
 * left, found by label), state lost or corrupt while containers live (env:ci --down still finds
 * them), no secret in `docker inspect`, and a drill whose image is missing (could not run, exit 2).
 */
import { execFileSync } from "node:child_process";
import { existsSync, rmSync, writeFileSync } from "node:fs";
import { afterAll, expect, it } from "vitest";
import { dockerBinary, describeDocker, requireOfflineImages } from "../support/docker.js";
import { EXIT } from "../../lib/errors.js";
import { envPaths } from "../../lib/state/paths.js";
import { makeSandbox, runScript, secretsOf, type Sandbox, type ScriptRun } from "../support/commands.js";

const ok = (r: ScriptRun) => expect(r.code, `${r.stderr}\n${r.stdout}`).toBe(0);
const docker = (args: string[]) => execFileSync(dockerBinary(), args, { encoding: "utf8" }).trim();
const labelled = (id: string) => {
  const label = `label=crypto-prediction-infra.env=${id}`;
  return [docker(["ps", "-aq", "--filter", label]), docker(["volume", "ls", "-q", "--filter", label]), docker(["network", "ls", "-q", "--filter", label])].join("").trim();
};
const made: string[] = [];
let sandbox: Sandbox | undefined;

async function spinUp(): Promise<string> {
  const r = await runScript("env-ci", ["--engine", "docker", "--format", "json"], { timeoutMs: 150_000 });
  ok(r);
  made.push(r.json.CPI_ENV_ID);
  return r.json.CPI_ENV_ID as string;
}

afterAll(async () => {
  for (const id of made) await runScript("env-ci", ["--down", id], { timeoutMs: 90_000 });
  sandbox?.remove();
}, 180_000);

describeDocker("a Docker environment through the lifecycle commands", () => {
  it("status, connect, logs, down, up, restart, a container removed by hand, down --destroy --yes; no secret in docker inspect", { timeout: 420_000 }, async () => {
    await requireOfflineImages();
    const id = await spinUp();
    const names = { postgres: `cpi-${id}-postgres`, redis: `cpi-${id}-redis` };
    const secrets = secretsOf(envPaths(id).credentials);

    // No password anywhere in docker inspect (Config.Env included); the secret files are the servers' own, 0600.
    for (const name of Object.values(names)) {
      const inspect = docker(["inspect", name]);
      expect(secrets.filter((s) => inspect.includes(s)), `a password in docker inspect ${name}`).toEqual([]);
      expect(JSON.parse(inspect)[0].Config.Env.join(" ")).not.toMatch(/REDISCLI_AUTH|PGPASSWORD|POSTGRES_PASSWORD=/);
    }
    expect(docker(["exec", names.redis, "stat", "-c", "%a %u", "/usr/local/etc/redis/redis.conf", "/run/secrets/redis-admin-password"]).split("\n")).toEqual(["600 999", "600 999"]);
    expect(docker(["exec", names.postgres, "stat", "-c", "%a %u", "/run/secrets/postgres-password", "/docker-entrypoint-initdb.d/10-roles.sql"]).split("\n")).toEqual(["600 999", "600 999"]);

    const status = await runScript("status", ["--env", id, "--json"]);
    ok(status);
    expect(status.json).toMatchObject({ engine: "docker", postgres: { running: true, answering: true, health: "healthy", version: expect.stringMatching(/^16\./) }, redis: { running: true, answering: true, health: "healthy", version: expect.stringMatching(/^7\./) } });
    expect(status.json.postgres.dataBytes).toBeGreaterThan(1_000_000);
    const all = await runScript("status", ["--all", "--json"]);
    expect(all.json.find((r: { env: string }) => r.env === id)).toMatchObject({ engine: "docker", postgres: { running: true } });

    ok(await runScript("connect", ["psql", "--env", id, "--", "-X", "-c", "INSERT INTO cryptocurrencies (symbol, name) VALUES ('DOCK', 'kept by down')"]));
    const who = await runScript("connect", ["redis", "--env", id, "--", "ACL", "WHOAMI"]);
    expect(who.stdout.trim()).toBe("crypto_app");
    const logs = await runScript("logs", ["--env", id, "--lines", "5", "--json"]);
    ok(logs);
    expect(logs.json.logs.map((l: { source: string }) => l.source)).toEqual([`docker logs ${names.postgres}`, `docker logs ${names.redis}`]);
    expect(logs.json.logs[0].lines.join("\n")).toContain("database system is ready to accept connections");

    // down: the containers stop, the volumes stay, the state stays.
    const down = await runScript("down", ["--env", id, "--json"]);
    ok(down);
    expect(down.json).toMatchObject({ engine: "docker", stopped: { postgres: true, redis: true }, destroyed: false });
    for (const name of Object.values(names)) expect(docker(["inspect", "-f", "{{.State.Running}}", name])).toBe("false");
    const stopped = await runScript("status", ["--env", id, "--json"]);
    expect(stopped.json).toMatchObject({ postgres: { running: false }, redis: { running: false } });
    expect(stopped.json.postgres.dataBytes).toBeGreaterThan(1_000_000);

    // up starts them again with the data; restart gives new processes.
    ok(await runScript("up", ["--env", id], { timeoutMs: 150_000 }));
    const kept = await runScript("connect", ["psql", "--env", id, "--", "-X", "-At", "-c", "SELECT name FROM cryptocurrencies WHERE symbol = 'DOCK'"]);
    expect(kept.stdout.trim()).toBe("kept by down");
    const startedAt = docker(["inspect", "-f", "{{.State.StartedAt}}", names.postgres]);
    ok(await runScript("restart", ["--env", id], { timeoutMs: 150_000 }));
    expect(docker(["inspect", "-f", "{{.State.StartedAt}}", names.postgres])).not.toBe(startedAt);

    // A container removed by hand: status says so; down --destroy --yes removes the rest, state last.
    docker(["rm", "-f", names.redis]);
    const half = await runScript("status", ["--env", id, "--json"]);
    ok(half);
    expect(half.json.problem).toContain(`container ${names.redis} no longer exists`);
    expect(half.json.hint).toContain(`npm run down -- --env ${id} --destroy --yes`);
    const up = await runScript("up", ["--env", id]);
    expect(up.code).toBe(EXIT.ERROR);
    expect(up.stderr).toContain("no longer exists");
    const destroy = await runScript("down", ["--env", id, "--destroy", "--yes", "--json"]);
    ok(destroy);
    expect(destroy.json.removed).toEqual(expect.arrayContaining([`container ${names.postgres}`, `volume cpi-${id}-postgres-data`, `network cpi-${id}-net`, "state dir"]));
    expect(labelled(id)).toBe("");
    expect(existsSync(envPaths(id).dir)).toBe(false);
    const again = await runScript("env-ci", ["--down", id, "--json"]);
    ok(again);
    expect(again.json.removed).toEqual([]);
  });

  it("state deleted or corrupt while the containers live: status --all still lists the id, and env:ci --down / down --destroy find them by label", { timeout: 300_000 }, async () => {
    await requireOfflineImages();
    const id = await spinUp();
    writeFileSync(envPaths(id).record, "{ corrupt");
    const corrupt = await runScript("status", ["--env", id]);
    expect(corrupt.code).toBe(EXIT.ERROR);
    expect(corrupt.stderr).toContain("is corrupt");
    rmSync(envPaths(id).dir, { recursive: true, force: true });
    const all = await runScript("status", ["--all", "--json"]);
    const entry = all.json.find((r: { env: string }) => r.env === id);
    expect(entry?.problem).toContain("the Docker engine holds objects labelled");
    expect(entry?.hint).toContain(`npm run env:ci -- --down ${id}`);
    const removed = await runScript("env-ci", ["--down", id, "--json"]);
    ok(removed);
    expect(removed.json.removed).toEqual(expect.arrayContaining([`container cpi-${id}-postgres`, `container cpi-${id}-redis`, `volume cpi-${id}-redis-data`]));
    expect(labelled(id)).toBe("");
  });

  it("a drill whose image is missing reports that it could not run (exit 2) and scores no objective", { timeout: 120_000 }, async () => {
    sandbox = makeSandbox();
    sandbox.writeStack("noimage", "config:\n  crypto-prediction-infra:target: docker\n  crypto-prediction-infra:images:\n    postgres: crypto-prediction-infra/postgres:no-such-tag\n    redis: crypto-prediction-infra/redis:7-offline\n");
    const r = await runScript("drill", ["--env", "noimage", "--engine", "docker", "--rows", "10", "--write-seconds", "0", "--json"], { projectDir: sandbox.projectDir, env: sandbox.env, timeoutMs: 110_000 });
    expect(r.code, r.stderr).toBe(EXIT.ERROR);
    expect(r.json).toMatchObject({ status: "error", exitCode: 2, rto: { measured: false }, rpo: { measured: false } });
    expect(r.json.rto.ok).toBeUndefined();
    expect(r.json.rpo.ok).toBeUndefined();
    expect(r.json.reasons.join(" ")).toContain("crypto-prediction-infra/postgres:no-such-tag is not on this machine");
    const text = await runScript("drill", ["--env", "noimage", "--engine", "docker", "--rows", "10", "--write-seconds", "0"], { projectDir: sandbox.projectDir, env: sandbox.env, timeoutMs: 110_000 });
    expect(text.code).toBe(EXIT.ERROR);
    expect(text.stdout).toContain("COULD NOT RUN");
    expect(text.stdout).not.toContain("MISSED");
  });
});

