/**
 * Bad input, part 2: an environment's own files. A running environment (in a sandbox: its own
 * $CPI_STATE_DIR and a copy of the project for its stack file) gets missing, empty, corrupt or
 * wrong state and credential files, unknown and malformed environment names, ports that others
 * hold, and a data dir of another major version. Every command refuses with one message naming
 * the file (or key, port, name) and a distinct exit code, and afterwards the servers run as
 * before with their data. Stale pid files (a crash, a reboot) are recovered from, not refused.
 */
import { spawn } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import pg from "pg";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EXIT } from "../../lib/errors.js";
import { freePort } from "../../lib/state/ports.js";
import { processAlive } from "../../lib/state/processes.js";
import { makeSandbox, runScript, snapshot, waitFor, type Sandbox, type ScriptRun } from "../support/commands.js";

const ENV = "rel";
let sandbox: Sandbox;
let dir: string;
let files: { credentials: string; record: string; redisConf: string; pgSpecConf: string; pgPid: string; redisPid: string };
let baseline: Record<string, string>;
let pids: { postgres: number; redis: number };
let credentials: any;

const run = (name: string, args: string[]) => runScript(name, args, { projectDir: sandbox.projectDir, env: sandbox.env, timeoutMs: 60_000 });
const runAll = (commands: string[][]) => Promise.all(commands.map(([name, ...args]) => run(name!, args)));

function stack(pgPort: number, redisPort: number, extra = ""): string {
  return `config:\n  crypto-prediction-infra:postgres:\n    port: ${pgPort}\n${extra}  crypto-prediction-infra:redis:\n    port: ${redisPort}\n`;
}

/** One message naming what is wrong, the expected exit code. */
function expectRefused(result: ScriptRun, code: number, ...says: string[]): void {
  expect(result.code, `${result.stderr}\n${result.stdout}`).toBe(code);
  expect(result.stderr.match(/^[a-z:-]+: error: /gm), result.stderr).toHaveLength(1);
  for (const text of says) expect(result.stderr).toContain(text);
}

function readPids() {
  return {
    postgres: Number(readFileSync(files.pgPid, "utf8").split("\n")[0]),
    redis: Number(readFileSync(files.redisPid, "utf8").trim()),
  };
}

/** The servers still run (same processes), with their data, and the toolkit's files are as they were. */
async function expectUntouched(): Promise<void> {
  expect(readPids()).toEqual(pids);
  expect(processAlive(pids.postgres) && processAlive(pids.redis)).toBe(true);
  for (const file of [files.credentials, files.record, files.redisConf, files.pgSpecConf]) {
    expect(readFileSync(file, "utf8"), file).toBe(baseline[file]);
  }
  const client = new pg.Client({ host: "127.0.0.1", port: stackPorts.pg, database: "crypto_prediction_db", user: "crypto_app", password: credentials.postgres.appPassword });
  await client.connect();
  const { rowCount } = await client.query("SELECT 1 FROM cryptocurrencies WHERE symbol = 'KEEP'");
  await client.end();
  expect(rowCount).toBe(1);
  const redis = new Redis({ host: "127.0.0.1", port: stackPorts.redis, username: "crypto_app", password: credentials.redis.appPassword, maxRetriesPerRequest: 1 });
  expect(await redis.get("bad-state:keep:1:value")).toBe("kept");
  redis.disconnect();
}

let stackPorts: { pg: number; redis: number };

beforeAll(async () => {
  sandbox = makeSandbox();
  stackPorts = { pg: await freePort(), redis: await freePort() };
  sandbox.writeStack(ENV, stack(stackPorts.pg, stackPorts.redis));
  const up = await run("up", ["--env", ENV]);
  expect(up.code, up.stderr).toBe(0);
  dir = path.join(sandbox.stateDir, ENV);
  files = {
    credentials: path.join(dir, "credentials.json"),
    record: path.join(dir, "env.json"),
    redisConf: path.join(dir, "redis", "redis.conf"),
    pgSpecConf: path.join(dir, "postgres", "data", "spec.conf"),
    pgPid: path.join(dir, "postgres", "data", "postmaster.pid"),
    redisPid: path.join(dir, "redis", "redis.pid"),
  };
  credentials = JSON.parse(readFileSync(files.credentials, "utf8"));
  const client = new pg.Client({ host: "127.0.0.1", port: stackPorts.pg, database: "crypto_prediction_db", user: "crypto_app", password: credentials.postgres.appPassword });
  await client.connect();
  await client.query("INSERT INTO cryptocurrencies (symbol, name) VALUES ('KEEP', 'must survive every refused command')");
  await client.end();
  const redis = new Redis({ host: "127.0.0.1", port: stackPorts.redis, username: "crypto_app", password: credentials.redis.appPassword });
  await redis.set("bad-state:keep:1:value", "kept");
  redis.disconnect();
  baseline = Object.fromEntries([files.credentials, files.record, files.redisConf, files.pgSpecConf].map((f) => [f, readFileSync(f, "utf8")]));
  pids = readPids();
}, 120_000);

afterAll(async () => {
  if (sandbox) {
    await run("down", ["--env", ENV, "--destroy", "--yes"]);
    sandbox.remove();
  }
}, 60_000);

/** Breaks a file, runs commands against the environment, puts the file back. */
async function withBrokenFile(file: string, breakIt: () => void, commands: string[][]): Promise<ScriptRun[]> {
  const original = readFileSync(file, "utf8");
  breakIt();
  try {
    return await runAll(commands);
  } finally {
    writeFileSync(file, original, { mode: 0o600 });
    chmodSync(file, 0o600);
  }
}

const UP = ["up", "--env", ENV];
const MIGRATE = ["migrate", "status", "--env", ENV];
const STATUS = ["status", "--env", ENV];
const DOWN = ["down", "--env", ENV];

describe("credentials.json", () => {
  it("missing: up, migrate and down refuse (exit 2) naming the file", async () => {
    const results = await withBrokenFile(files.credentials, () => rmSync(files.credentials), [UP, MIGRATE, DOWN]);
    for (const r of results) expectRefused(r, EXIT.ERROR, `credentials file ${files.credentials} is missing`);
    await expectUntouched();
  });

  it("empty: refused (exit 2) naming the file", async () => {
    const results = await withBrokenFile(files.credentials, () => writeFileSync(files.credentials, ""), [UP, MIGRATE, DOWN]);
    for (const r of results) expectRefused(r, EXIT.ERROR, `credentials file ${files.credentials} is empty or not valid JSON`);
    await expectUntouched();
  });

  it("corrupt (valid JSON, wrong shape): refused (exit 2) naming the file and the field", async () => {
    const results = await withBrokenFile(files.credentials, () => writeFileSync(files.credentials, '{"postgres": {}}'), [UP, MIGRATE, DOWN]);
    for (const r of results) expectRefused(r, EXIT.ERROR, `credentials file ${files.credentials} is corrupt`, "postgres.superuser");
    await expectUntouched();
  });

  it("readable by others (0644): refused (exit 2) with the chmod to run", async () => {
    const results = await withBrokenFile(files.credentials, () => chmodSync(files.credentials, 0o644), [UP, MIGRATE, DOWN]);
    for (const r of results) expectRefused(r, EXIT.ERROR, "has mode 644", `chmod 600 ${files.credentials}`);
    await expectUntouched();
  });

  it("wrong passwords: up refuses before rewriting any file; migrate names the role; no password is printed", async () => {
    const wrong = { ...credentials, postgres: { ...credentials.postgres, superuserPassword: "Wrong-superuser-password-123", ownerPassword: "Wrong-owner-password-1234" } };
    const [up, migrate] = await withBrokenFile(files.credentials, () => writeFileSync(files.credentials, JSON.stringify(wrong)), [UP, MIGRATE]);
    expectRefused(up!, EXIT.ERROR, `refused the password in ${files.credentials}`, 'password authentication failed for user "postgres"');
    expectRefused(migrate!, EXIT.ERROR, 'password authentication failed for user "crypto_user"');
    for (const r of [up!, migrate!]) expect(r.stderr + r.stdout).not.toMatch(/Wrong-(superuser|owner)-password/);
    await expectUntouched();
  });

  it("wrong Redis admin password: up refuses naming Redis and the file", async () => {
    const wrong = { ...credentials, redis: { ...credentials.redis, adminPassword: "Wrong-redis-admin-password-1" } };
    const [up] = await withBrokenFile(files.credentials, () => writeFileSync(files.credentials, JSON.stringify(wrong)), [UP]);
    expectRefused(up!, EXIT.ERROR, `Redis on 127.0.0.1:${stackPorts.redis} refused the password in ${files.credentials}`);
    expect(up!.stderr).not.toContain("Wrong-redis-admin-password-1");
    await expectUntouched();
  });
});

describe("env.json (the state record)", () => {
  const everyCommand = [UP, MIGRATE, STATUS, DOWN];
  it("empty: every command refuses (exit 2) naming the file", async () => {
    const results = await withBrokenFile(files.record, () => writeFileSync(files.record, ""), everyCommand);
    for (const r of results) expectRefused(r, EXIT.ERROR, `state file ${files.record} is corrupt`);
    await expectUntouched();
  });

  it("not JSON: refused (exit 2) naming the file", async () => {
    const results = await withBrokenFile(files.record, () => writeFileSync(files.record, '{"env": "rel", '), everyCommand);
    for (const r of results) expectRefused(r, EXIT.ERROR, `state file ${files.record} is corrupt`, "JSON");
    await expectUntouched();
  });

  it("wrong shape: refused (exit 2) naming the file and the field", async () => {
    const results = await withBrokenFile(files.record, () => writeFileSync(files.record, baseline[files.record]!.replace('"embedded"', '"podman"')), everyCommand);
    for (const r of results) expectRefused(r, EXIT.ERROR, `state file ${files.record} is corrupt: engine:`, "embedded");
    await expectUntouched();
  });
});

describe("the stack file of a running environment", () => {
  it("edited to a bad value: up, migrate and status refuse naming the key; the servers keep running", async () => {
    const stackFile = path.join(sandbox.projectDir, `Pulumi.${ENV}.yaml`);
    const results = await withBrokenFile(stackFile, () => writeFileSync(stackFile, stack(stackPorts.pg, stackPorts.redis, "    workMem: lots\n")), [UP, MIGRATE, STATUS]);
    for (const r of results) expectRefused(r, EXIT.ERROR, 'crypto-prediction-infra:postgres.workMem = "lots"', "PostgreSQL unit");
    await expectUntouched();
  });

  it("deleted: refused (exit 2) naming the missing stack file", async () => {
    const stackFile = path.join(sandbox.projectDir, `Pulumi.${ENV}.yaml`);
    const results = await withBrokenFile(stackFile, () => rmSync(stackFile), [UP, MIGRATE, STATUS]);
    for (const r of results) expectRefused(r, EXIT.ERROR, `"${ENV}": no such environment`, `Pulumi.${ENV}.yaml`);
    await expectUntouched();
  });
});

describe("environment names", () => {
  it("an unknown environment: refused (exit 2) listing the known ones; nothing is created", async () => {
    const results = await runAll([["up", "--env", "nosuch"], ["migrate", "status", "--env", "nosuch"], ["down", "--env", "nosuch"]]);
    expectRefused(results[0]!, EXIT.ERROR, '"nosuch": no such environment', "known: ci, dev");
    expectRefused(results[1]!, EXIT.ERROR, "environment 'nosuch' has no local state");
    expectRefused(results[2]!, EXIT.ERROR, "environment 'nosuch' has no local state; there is nothing to stop");
    expect(existsSync(path.join(sandbox.stateDir, "nosuch"))).toBe(false);
    await expectUntouched();
  });

  it("an unknown ephemeral id: refused (exit 2); nothing is created", async () => {
    const id = "eph-0000000000";
    const results = await runAll([["up", "--env", id], ["migrate", "status", "--env", id], ["down", "--env", id, "--destroy", "--yes"]]);
    expectRefused(results[0]!, EXIT.ERROR, `ephemeral environment '${id}' does not exist`);
    expectRefused(results[1]!, EXIT.ERROR, `environment '${id}' has no local state`, "npm run status -- --all");
    expectRefused(results[2]!, EXIT.ERROR, `environment '${id}' has no local state`);
    await expectUntouched();
  });

  it("names that are paths (.., ., ../.., rel/../rel) or not lowercase: down --destroy --yes refuses (exit 64) and deletes nothing", async () => {
    const canary = path.join(sandbox.stateDir, "canary");
    writeFileSync(canary, "still here");
    const before = snapshot(sandbox.root, { serversRunning: true });
    const names = ["..", ".", "../..", `${ENV}/../${ENV}`, "Dev", "-rf"];
    const results = await runAll(names.map((name) => ["down", `--env=${name}`, "--destroy", "--yes"]));
    results.forEach((r, i) => expectRefused(r, EXIT.USAGE, `--env ${JSON.stringify(names[i])}: not an environment name`));
    expect(snapshot(sandbox.root, { serversRunning: true })).toEqual(before);
    rmSync(canary);
    await expectUntouched();
  });
});

describe("ports held by another process", () => {
  for (const server of ["postgres", "redis"] as const) {
    it(`${server}.port in use: up refuses (exit 2) naming the port, the key and the holder; nothing is created`, async () => {
      const holder = net.createServer();
      await new Promise<void>((resolve) => holder.listen(0, "127.0.0.1", resolve));
      const busy = (holder.address() as net.AddressInfo).port;
      const other = await freePort();
      const env = `busy-${server}`;
      sandbox.writeStack(env, server === "postgres" ? stack(busy, other) : stack(other, busy));
      try {
        const result = await run("up", ["--env", env]);
        expectRefused(result, EXIT.ERROR, `port ${busy} on 127.0.0.1 (${server}.port) is already in use by node (pid ${process.pid})`, `set ${server}.port in Pulumi.${env}.yaml`);
      } finally {
        holder.close();
      }
      expect(existsSync(path.join(sandbox.stateDir, env))).toBe(false);
      expect(existsSync(path.join(sandbox.stateDir, `.${env}.lock`))).toBe(false);
    });
  }
});

describe("a data dir of another PostgreSQL major version", () => {
  it("up refuses (exit 2) naming the data dir and both versions, and changes nothing in it", async () => {
    const env = "old-major";
    const data = path.join(sandbox.stateDir, env, "postgres", "data");
    mkdirSync(data, { recursive: true });
    writeFileSync(path.join(data, "PG_VERSION"), "15\n");
    sandbox.writeStack(env, stack(await freePort(), await freePort()));
    const before = snapshot(path.join(sandbox.stateDir, env));
    const result = await run("up", ["--env", env]);
    expectRefused(result, EXIT.ERROR, `the data dir ${data} is from PostgreSQL 15; this toolkit runs PostgreSQL 16`, "pg_upgrade");
    expect(snapshot(path.join(sandbox.stateDir, env))).toEqual(before);
    rmSync(path.join(sandbox.stateDir, env), { recursive: true });
  });
});

describe("recovery instead of refusal", () => {
  it("down stops an environment whose stack file is broken; stale pid files (dead or reused pids) do not block up", async () => {
    const stackFile = path.join(sandbox.projectDir, `Pulumi.${ENV}.yaml`);
    const original = readFileSync(stackFile, "utf8");
    writeFileSync(stackFile, "config: [broken\n");
    const down = await run("down", ["--env", ENV]);
    writeFileSync(stackFile, original);
    expect(down.code, down.stderr).toBe(0);
    // pg_ctl stop returns when postmaster.pid is gone, a moment before the process exits.
    await waitFor("both servers to exit", () => !processAlive(pids.postgres) && !processAlive(pids.redis), 10_000);

    // After a reboot the pids in stale pid files can belong to unrelated processes.
    const stranger = spawn("sleep", ["60"], { stdio: "ignore" });
    try {
      writeFileSync(files.pgPid, `${stranger.pid}\n${path.join(dir, "postgres", "data")}\n`);
      writeFileSync(files.redisPid, `${stranger.pid}\n`);
      const [status] = await runAll([["status", "--env", ENV, "--json"]]);
      expect(status!.json.postgres.running).toBe(false);
      expect(status!.json.redis.running).toBe(false);
      const down2 = await run("down", ["--env", ENV]);
      expect(down2.code, down2.stderr).toBe(0);
      expect(processAlive(stranger.pid!), "down signalled an unrelated process").toBe(true);
      writeFileSync(files.pgPid, `${stranger.pid}\n`);
      const up = await run("up", ["--env", ENV, "--json"]);
      expect(up.code, up.stderr).toBe(0);
      expect(up.json.recoveredStalePid).toBe(true);
      expect(processAlive(stranger.pid!)).toBe(true);
    } finally {
      stranger.kill();
    }
    pids = readPids();
    baseline[files.record] = readFileSync(files.record, "utf8");
    await expectUntouched();
  }, 90_000);
});
