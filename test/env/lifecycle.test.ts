/**
 * The lifecycle and client commands on the embedded engine, as an operator runs them: connect
 * (psql and redis-cli with the password in their environment, never argv), env (0600 .pgpass and
 * dotenv files), logs, restart (also while another run holds the lock), status --all next to lock
 * and drill folders, a corrupt env.json (down --by-pid-files stops the servers, data kept) and
 * status as a user who cannot read root's state. Each file runs its own named environment in a
 * sandbox ($CPI_STATE_DIR, $TMPDIR), on free ports.
 */
import { spawn } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import lockfile from "proper-lockfile";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EXIT } from "../../lib/errors.js";
import { freePort } from "../../lib/state/ports.js";
import { processAlive } from "../../lib/state/processes.js";
import { makeSandbox, runScript, secretsOf, waitFor, type Sandbox, type ScriptRun } from "../support/commands.js";

const ENV = "life";
let sandbox: Sandbox;
let env: NodeJS.ProcessEnv;
let dir: string;
let ports: { pg: number; redis: number };
let secrets: string[];

const run = (name: string, args: string[], extra: NodeJS.ProcessEnv = {}) => runScript(name, args, { projectDir: sandbox.projectDir, env: { ...env, ...extra }, timeoutMs: 90_000 });
const ok = (r: ScriptRun) => expect(r.code, `${r.stderr}\n${r.stdout}`).toBe(0);
const pids = () => ({
  postgres: Number(readFileSync(path.join(dir, "postgres", "data", "postmaster.pid"), "utf8").split("\n")[0]),
  redis: Number(readFileSync(path.join(dir, "redis", "redis.pid"), "utf8").trim()),
});

beforeAll(async () => {
  sandbox = makeSandbox();
  const tmp = path.join(sandbox.root, "tmp");
  mkdirSync(tmp, { mode: 0o755 });
  chmodSync(tmp, 0o755);
  env = { ...sandbox.env, TMPDIR: tmp }; // ephemeral state and drill folders of these runs only
  ports = { pg: await freePort(), redis: await freePort() };
  sandbox.writeStack(ENV, `config:\n  crypto-prediction-infra:postgres:\n    port: ${ports.pg}\n  crypto-prediction-infra:redis:\n    port: ${ports.redis}\n`);
  ok(await run("up", ["--env", ENV]));
  dir = path.join(sandbox.stateDir, ENV);
  secrets = secretsOf(path.join(dir, "credentials.json"));
}, 120_000);

afterAll(async () => {
  if (sandbox) {
    await run("down", ["--env", ENV, "--destroy", "--yes"]);
    sandbox.remove();
  }
}, 60_000);

describe("connect", () => {
  it("psql runs as the guide's crypto_user, with PGPASSWORD in its environment and no password in its argv; client args after -- and its exit code pass through", async () => {
    // psql's \! runs a shell whose parent ($PPID) is psql itself: its argv and environment, as ps sees them.
    const probe = "\\! tr '\\0' ' ' < /proc/$PPID/cmdline; echo; tr '\\0' '\\n' < /proc/$PPID/environ | grep -c '^PGPASSWORD='";
    const r = await run("connect", ["psql", "--env", ENV, "--", "-X", "-At", "-c", "SELECT current_user", "-c", probe]);
    ok(r);
    const [who, argv, withPassword] = r.stdout.trim().split("\n");
    expect(who).toBe("crypto_user");
    expect(argv).toMatch(/psql/);
    expect(withPassword).toBe("1");
    for (const secret of secrets) expect(r.stdout + r.stderr).not.toContain(secret);

    const readonly = await run("connect", ["psql", "--env", ENV, "--as", "readonly", "--", "-X", "-At", "-c", "SELECT current_user"]);
    expect(readonly.stdout.trim()).toBe("crypto_readonly");
    const failed = await run("connect", ["psql", "--env", ENV, "--", "-X", "-c", "SELECT 1/0"]);
    expect(failed.code).toBe(1); // psql's own code for a failed -c
    const noDb = await run("connect", ["psql", "--env", ENV, "--", "-X", "-d", "no_such_db", "-c", "SELECT 1"]);
    expect(noDb.code).toBe(2); // psql could not connect: the user's -d won over the environment's database
    expect(noDb.stderr).toContain('database "no_such_db" does not exist');
  });

  it("redis-cli runs as the app user (or admin), with REDISCLI_AUTH in its environment and no password in its argv", async () => {
    const record = path.join(sandbox.root, "redis-cli-seen");
    const wrapper = path.join(sandbox.root, "redis-cli-wrapper.sh");
    // A wrapper that notes what the client is started with, then runs the real redis-cli.
    writeFileSync(wrapper, `#!/bin/sh\nprintf '%s\\n' "$*" > ${record}\n[ -n "$REDISCLI_AUTH" ] && echo auth-in-env >> ${record}\nexec redis-cli "$@"\n`, { mode: 0o755 });
    const r = await run("connect", ["redis", "--env", ENV, "--", "ACL", "WHOAMI"], { REDIS_CLI_BIN: wrapper });
    ok(r);
    expect(r.stdout.trim()).toBe("crypto_app");
    const seen = readFileSync(record, "utf8");
    expect(seen).toContain("auth-in-env");
    expect(seen).toContain(`-p ${ports.redis}`);
    for (const secret of secrets) expect(seen).not.toContain(secret);
    const admin = await run("connect", ["redis", "--env", ENV, "--as", "admin", "--", "ACL", "WHOAMI"]);
    expect(admin.stdout.trim()).toBe("default");
    const memory = await run("connect", ["redis", "--env", ENV, "--", "info", "memory"]); // the guide's command
    expect(memory.stdout).toContain("used_memory:");
  });

  it("refuses what cannot work: a Redis role that does not exist, no or an unknown client (64), an environment that is not there (2)", async () => {
    const badRole = await run("connect", ["redis", "--env", ENV, "--as", "readonly"]);
    expect(badRole.code).toBe(EXIT.USAGE);
    expect(badRole.stderr).toContain("Redis has two users");
    expect((await run("connect", ["--env", ENV])).code).toBe(EXIT.USAGE);
    const unknown = await run("connect", ["mysql", "--env", ENV]);
    expect(unknown.code).toBe(EXIT.USAGE);
    expect(unknown.stderr).toContain('"mysql": expected psql or redis');
    const noEnv = await run("connect", ["psql", "--env", "eph-0000000000"]);
    expect(noEnv.code).toBe(EXIT.ERROR);
    const described = await run("connect", ["psql", "--env", ENV, "--json"]);
    ok(described);
    expect(described.json).toMatchObject({ tool: "psql", user: "crypto_user", passwordIn: "PGPASSWORD" });
    for (const secret of secrets) expect(described.stdout).not.toContain(secret);
  });
});

describe("env", () => {
  it("--format pgpass --out writes a 0600 .pgpass atomically, with which the guide's psql command connects", async () => {
    const out = path.join(sandbox.root, "files", ".pgpass");
    mkdirSync(path.dirname(out), { recursive: true });
    writeFileSync(out, "old\n", { mode: 0o644 });
    const r = await run("env", ["--env", ENV, "--format", "pgpass", "--out", out, "--json"]);
    ok(r);
    expect(statSync(out).mode & 0o777).toBe(0o600);
    expect(readdirSync(path.dirname(out))).toEqual([".pgpass"]); // no temp file left
    for (const secret of secrets) expect(r.stdout + r.stderr).not.toContain(secret);
    const psql = await new Promise<{ code: number | null; stdout: string }>((resolve) => {
      const child = spawn("psql", ["-h", "localhost", "-p", String(ports.pg), "-U", "crypto_user", "-d", "crypto_prediction_db", "-X", "-At", "-w", "-c", "SELECT current_user"], {
        env: { PATH: process.env.PATH, PGPASSFILE: out },
      });
      let stdout = "";
      child.stdout.on("data", (d) => (stdout += d));
      child.on("close", (code) => resolve({ code, stdout }));
    });
    expect(psql).toEqual({ code: 0, stdout: "crypto_user\n" });
  });

  it("--format dotenv gives libpq's and redis-cli's variables; refuses a folder as --out and a missing --format", async () => {
    const r = await run("env", ["--env", ENV, "--format", "dotenv", "--as", "app"]);
    ok(r);
    const vars = Object.fromEntries(r.stdout.trim().split("\n").map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1).replace(/^'|'$/g, "")]));
    expect(vars).toMatchObject({ PGHOST: "127.0.0.1", PGPORT: String(ports.pg), PGUSER: "crypto_app", REDIS_USERNAME: "crypto_app", REDIS_PORT: String(ports.redis) });
    const cli = await new Promise<string>((resolve) => {
      const child = spawn("redis-cli", ["-p", vars.REDIS_PORT!, "--user", vars.REDIS_USERNAME!, "ACL", "WHOAMI"], { env: { PATH: process.env.PATH, REDISCLI_AUTH: vars.REDISCLI_AUTH } });
      let out = "";
      child.stdout.on("data", (d) => (out += d));
      child.on("close", () => resolve(out.trim()));
    });
    expect(cli).toBe("crypto_app");
    const folder = await run("env", ["--env", ENV, "--format", "dotenv", "--out", sandbox.root]);
    expect(folder.code).toBe(EXIT.USAGE);
    expect(folder.stderr).toContain("is a folder");
    expect((await run("env", ["--env", ENV])).code).toBe(EXIT.USAGE);
  });
});

describe("logs, restart, status --all", () => {
  it("logs shows the last N lines of each server's log file; --service picks one", async () => {
    const r = await run("logs", ["--env", ENV, "--lines", "2", "--json"]);
    ok(r);
    expect(r.json.logs.map((l: { service: string }) => l.service)).toEqual(["postgres", "redis"]);
    for (const l of r.json.logs) {
      expect(l.lines.length).toBeGreaterThan(0);
      expect(l.lines.length).toBeLessThanOrEqual(2);
    }
    expect(r.json.logs[0].source).toBe(path.join(dir, "postgres", "postgres.log"));
    const one = await run("logs", ["--env", ENV, "--service", "redis", "--lines", "1"]);
    expect(one.stdout).toContain("==> redis:");
    expect(one.stdout).not.toContain("==> postgres:");
    expect((await run("logs", ["--env", ENV, "--lines", "0"])).code).toBe(EXIT.USAGE);
  });

  it("restart gives new server processes with the same data; while another run holds the lock it exits 3, and status --all still lists the environment (not the lock, not a drill folder)", async () => {
    const before = pids();
    const marker = await run("connect", ["psql", "--env", ENV, "--", "-X", "-c", "INSERT INTO cryptocurrencies (symbol, name) VALUES ('LIFE', 'survives restart')"]);
    ok(marker);
    ok(await run("restart", ["--env", ENV]));
    const after = pids();
    expect(after.postgres).not.toBe(before.postgres);
    expect(after.redis).not.toBe(before.redis);
    const kept = await run("connect", ["psql", "--env", ENV, "--", "-X", "-At", "-c", "SELECT name FROM cryptocurrencies WHERE symbol = 'LIFE'"]);
    expect(kept.stdout.trim()).toBe("survives restart");

    const lockPath = path.join(sandbox.stateDir, `.${ENV}.lock`);
    const drillFolder = path.join(env.TMPDIR!, "crypto-prediction-infra", "drill-20260101t000000z-abc123");
    mkdirSync(drillFolder, { recursive: true });
    const release = await lockfile.lock(lockPath, { realpath: false, lockfilePath: lockPath });
    try {
      const busy = await run("restart", ["--env", ENV], { CPI_LOCK_WAIT_SECONDS: "0" });
      expect(busy.code, busy.stderr).toBe(EXIT.BUSY);
      expect(pids()).toEqual(after); // nothing was stopped
      const all = await run("status", ["--all", "--json"]);
      ok(all);
      expect(all.json.map((r: { env: string }) => r.env)).toEqual([ENV]);
      expect(all.json[0].postgres.running).toBe(true);
    } finally {
      await release();
    }
  });
});

describe("a corrupt env.json", () => {
  it("down refuses with a hint to stop by the pid files; down --by-pid-files stops both servers and keeps the data", async () => {
    const record = path.join(dir, "env.json");
    const original = readFileSync(record, "utf8");
    const running = pids();
    writeFileSync(record, "{ not json");
    try {
      const refused = await run("down", ["--env", ENV]);
      expect(refused.code).toBe(EXIT.ERROR);
      expect(refused.stderr).toContain(`state file ${record} is corrupt`);
      expect(refused.stderr).toContain(`npm run down -- --env ${ENV} --by-pid-files`);
      expect(processAlive(running.postgres) && processAlive(running.redis)).toBe(true);

      const stopped = await run("down", ["--env", ENV, "--by-pid-files", "--json"]);
      ok(stopped);
      expect(stopped.json).toMatchObject({ stopped: { postgres: true, redis: true }, destroyed: false });
      await waitFor("both servers to exit", () => !processAlive(running.postgres) && !processAlive(running.redis), 15_000);
      expect(existsSync(path.join(dir, "postgres", "data", "PG_VERSION"))).toBe(true);
    } finally {
      writeFileSync(record, original, { mode: 0o600 });
    }
    ok(await run("up", ["--env", ENV]));
    const kept = await run("connect", ["psql", "--env", ENV, "--", "-X", "-At", "-c", "SELECT count(*) FROM cryptocurrencies WHERE symbol = 'LIFE'"]);
    expect(kept.stdout.trim()).toBe("1");
  }, 90_000);
});

describe("status as a user who cannot read the state", () => {
  it.runIf(process.getuid?.() === 0)("says whose state it is and to run as root, instead of 'not created here' (exit 2)", async () => {
    ok(await run("status", ["--env", ENV])); // as root: builds the launcher's bundle in the sandbox
    const nobody = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, [path.join(sandbox.projectDir, "bin", "cpi.mjs"), "status", "--env", ENV], {
        cwd: sandbox.projectDir,
        env: { PATH: process.env.PATH, ...env, HOME: "/nonexistent" },
        uid: 65534,
        gid: 65534,
      });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (d) => (stdout += d));
      child.stderr.on("data", (d) => (stderr += d));
      child.on("close", (code) => resolve({ code, stdout, stderr }));
    });
    expect(nobody.code, nobody.stderr).toBe(EXIT.ERROR);
    expect(nobody.stdout + nobody.stderr).not.toContain("not created here");
    expect(nobody.stderr).toContain(`which user 'nobody' cannot read`);
    expect(nobody.stderr).toContain("belongs to 'postgres'");
    expect(nobody.stderr).toContain("sudo npm run status");
  });
});
