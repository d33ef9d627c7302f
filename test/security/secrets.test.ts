/**
 * Secrets: the passwords of an environment (read from its credentials.json) appear in no
 * process's argv, no `--json` output without `--show-secrets`, no error message, no server log
 * line and no pg_stat_statements text, even with every statement logged. State files are 0600,
 * their folders 0700, and the state folder is git-ignored.
 */
import { execFile } from "node:child_process";
import { readdirSync, readFileSync, statSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { beforeAll, describe, expect, it } from "vitest";
import { withPg, withRedis } from "../../lib/db/clients.js";
import { PROJECT_DIR } from "../../lib/spec/load.js";
import { useEphemeralEnvironment } from "../support/embedded.js";
import { leakedSecrets, runScript, secretsOf, sleep, waitFor } from "../support/commands.js";

const exec = promisify(execFile);
const environment = useEphemeralEnvironment();
let secrets: string[];

beforeAll(() => {
  secrets = secretsOf(environment().paths.credentials);
  expect(secrets.every((s) => s.length >= 16)).toBe(true);
});

/** Runs commands against the environment, reporting all of their output. */
async function runAgainstEnvironment(commands: string[][], env: NodeJS.ProcessEnv = {}) {
  const id = environment().env;
  return Promise.all(commands.map(([name, ...args]) => runScript(name!, [...args, "--env", id], { env })));
}

describe("secrets", () => {
  it("appear in no process's argv while the servers and the tools run (ps -eo args)", async () => {
    const seen = new Set<string>();
    let sampling = true;
    const sampler = (async () => {
      for (let i = 0; sampling && i < 10_000; i++) {
        const { stdout } = await exec("ps", ["-eo", "args", "--no-headers"], { maxBuffer: 16 * 1024 * 1024 });
        for (const line of stdout.split("\n")) seen.add(line);
        await sleep(25);
      }
    })();
    const results = await runAgainstEnvironment([["up"], ["migrate", "status"], ["verify"], ["status"], ["cache", "stats"]]);
    sampling = false;
    await sampler;
    for (const r of results) expect(r.code, r.stderr).toBe(0);
    const lines = [...seen];
    // The sampler saw the tools and both servers of this environment.
    expect(lines.some((l) => /bin\/cpi\.mjs up |scripts\/up\.ts /.test(l))).toBe(true);
    expect(lines.some((l) => l.includes(`postgres -D ${environment().paths.pgData}`))).toBe(true);
    expect(lines.some((l) => l.includes(`redis-server 127.0.0.1:${environment().spec.redis.port}`))).toBe(true);
    expect(lines.filter((l) => leakedSecrets(l, secrets).length)).toEqual([]);
    console.log(`[figures] process list: ${lines.length} distinct argv lines sampled, 0 with a secret`);
  }, 120_000);

  it("appear in no --json output without --show-secrets (and do with it: the check can see them)", async () => {
    const results = await runAgainstEnvironment([
      ["up", "--json"],
      ["status", "--json"],
      ["migrate", "status", "--json"],
      ["verify", "--json"],
      ["cache", "stats", "--json"],
    ]);
    for (const r of results) {
      expect(r.code, r.stderr).toBe(0);
      expect(r.json, r.stdout).toBeDefined();
      expect(leakedSecrets(r.stdout + r.stderr, secrets)).toEqual([]);
    }
    const up = results[0]!.json;
    expect(up.postgres.urls.app).toMatch(/^postgresql:\/\/crypto_app:\*\*\*@127\.0\.0\.1:\d+\//);
    expect(up.redis.urls.admin).toMatch(/^redis:\/\/default:\*\*\*@127\.0\.0\.1:\d+\//);

    const [revealed] = await runAgainstEnvironment([["up", "--json", "--show-secrets"]]);
    expect(revealed!.code).toBe(0);
    expect(leakedSecrets(revealed!.stdout, secrets).length).toBeGreaterThanOrEqual(5);
    expect(leakedSecrets(revealed!.stderr, secrets)).toEqual([]);
  }, 120_000);

  it("appear in no error message, JSON error or debug stack trace", async () => {
    const { credentials } = environment().connections;
    const closed = await new Promise<number>((resolve) => {
      const s = net.createServer().listen(0, "127.0.0.1", () => {
        const { port } = s.address() as net.AddressInfo;
        s.close(() => resolve(port));
      });
    });
    const app = encodeURIComponent(credentials.postgres.appPassword);
    const results = await runAgainstEnvironment(
      [
        ["verify", "--json", "--database-url", `postgresql://crypto_app:${app}@127.0.0.1:${closed}/crypto_prediction_db`],
        ["verify", "--database-url", `mysql://crypto_app:${app}@127.0.0.1/crypto_prediction_db`],
        ["maintain", "--database-url", `postgresql://crypto_user:${encodeURIComponent(credentials.postgres.ownerPassword)}@127.0.0.1:${closed}/crypto_prediction_db`],
      ],
      { CPI_DEBUG: "1" },
    );
    for (const r of results) {
      expect(r.code, r.stderr).not.toBe(0);
      expect(r.stderr.length).toBeGreaterThan(0);
      expect(leakedSecrets(r.stdout + r.stderr, secrets)).toEqual([]);
    }
  }, 120_000);

  it("appear in no server log line and no pg_stat_statements text, even with every statement logged", async () => {
    const env = environment();
    const admin = env.connections.postgresConfig("admin", "postgres");
    // The worst case an operator can configure: log every statement, every duration and connection.
    await withPg(admin, async (c) => {
      await c.query("ALTER SYSTEM SET log_statement = 'all'");
      await c.query("ALTER SYSTEM SET log_min_duration_statement = 0");
      await c.query("ALTER SYSTEM SET log_connections = on");
      await c.query("SELECT pg_reload_conf()");
    });
    try {
      await sleep(200); // the postmaster's children reload asynchronously
      // `up` re-applies the roles (ALTER ROLE … PASSWORD) over a fresh session.
      const results = await runAgainstEnvironment([["up"], ["migrate", "status"], ["verify"]]);
      // up and verify run, and report the overridden log_min_duration_statement as drift (exit 1).
      for (const r of results) expect([0, 1], r.stderr).toContain(r.code);
      expect(results[0]!.stdout).toContain("log_min_duration_statement: expected 1000");
      // Failed logins with a wrong password, on both servers.
      const wrongPg = new pg.Client({ ...env.connections.postgresConfig("app"), password: "not-the-password-0000" });
      await expect(wrongPg.connect()).rejects.toThrow(/password authentication failed/);
      await expect(withRedis({ ...env.connections.redisOptions("app"), password: "not-the-password-0000" }, (r) => r.ping())).rejects.toThrow(/WRONGPASS/);
    } finally {
      await withPg(admin, async (c) => {
        await c.query("ALTER SYSTEM RESET ALL");
        await c.query("SELECT pg_reload_conf()");
      });
    }
    const pgLog = readFileSync(env.paths.pgLog, "utf8");
    const redisLog = readFileSync(env.paths.redisLog, "utf8");
    // The log did record the bootstrap statements and the failed login: the check below means something.
    expect(pgLog).toContain("ALTER ROLE");
    expect(pgLog).toContain('password authentication failed for user "crypto_app"');
    expect(leakedSecrets(pgLog, secrets)).toEqual([]);
    expect(leakedSecrets(redisLog, secrets)).toEqual([]);
    const texts = await withPg(env.connections.postgresConfig("admin"), async (c) => (await c.query("SELECT query FROM pg_stat_statements")).rows.map((r: { query: string }) => r.query));
    expect(texts.length).toBeGreaterThan(0);
    expect(texts.filter((q) => leakedSecrets(q, secrets).length)).toEqual([]);
    console.log(`[figures] logs: postgres.log ${pgLog.split("\n").length} lines (every statement logged), redis.log ${redisLog.split("\n").length} lines, pg_stat_statements ${texts.length} texts: 0 secrets`);
  }, 120_000);
});

describe("state on disk", () => {
  it("every state file is 0600 (or stricter) and every folder 0700, Redis's own files included", async () => {
    const env = environment();
    // Make Redis write its snapshot now, so files it creates later are covered too.
    await withRedis(env.connections.redisOptions("admin"), async (r) => {
      const before = Number(await r.lastsave());
      await r.bgsave();
      await waitFor("BGSAVE", async () => Number(await r.lastsave()) > before, 20_000, 100);
    });
    const loose: string[] = [];
    let files = 0;
    const walk = (dir: string) => {
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        const file = path.join(dir, entry.name);
        const mode = statSync(file).mode & 0o777;
        if (entry.isDirectory()) {
          if (mode !== 0o700) loose.push(`${file} ${mode.toString(8)}`);
          walk(file);
        } else {
          files++;
          if (mode & 0o077) loose.push(`${file} ${mode.toString(8)}`);
        }
      }
    };
    expect(statSync(env.paths.dir).mode & 0o777).toBe(0o700);
    expect(statSync(path.dirname(env.paths.dir)).mode & 0o777).toBe(0o700);
    walk(env.paths.dir);
    expect(files).toBeGreaterThan(100);
    expect(loose).toEqual([]);
    for (const file of [env.paths.credentials, env.paths.record, env.paths.redisConf, env.paths.redisLog, env.paths.pgLog, path.join(env.paths.redisDir, "dump.rdb")]) {
      expect(statSync(file).mode & 0o777, file).toBe(0o600);
    }
  });

  it("the project's state folder is git-ignored", async () => {
    for (const p of [".state", ".state/dev/credentials.json", ".state/dev/postgres/data/postgresql.conf"]) {
      const { stdout } = await exec("git", ["check-ignore", p], { cwd: PROJECT_DIR });
      expect(stdout.trim()).toBe(p);
    }
  });
});
