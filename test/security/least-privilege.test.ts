/**
 * Least privilege: each PostgreSQL role can do its job and nothing more (owner: DDL; app: DML on
 * the guide's tables; read-only: SELECT), the URLs `up --json` prints say which role they log in
 * as, both servers of both engines listen on loopback only (read from the kernel's socket tables:
 * the test connects to nothing but loopback), and Redis refuses anonymous clients and keeps the
 * dangerous commands from the application's ACL user while the admin keeps what it needs.
 */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import pg from "pg";
import { Redis } from "ioredis";
import { describe, expect, it } from "vitest";
import { withPg, withRedis } from "../../lib/db/clients.js";
import type { PostgresRole } from "../../lib/spec/access.js";
import { useEphemeralEnvironment } from "../support/embedded.js";
import { runScript } from "../support/commands.js";
import { describeDocker, dockerBinary, requireOfflineImages } from "../support/docker.js";
import { isLoopback, listeningSockets, listeningSocketsOf, type ListeningSocket } from "../support/listening.js";

const environment = useEphemeralEnvironment();

const as = <T>(role: PostgresRole, work: (c: pg.Client) => Promise<T>) => withPg(environment().connections.postgresConfig(role), work);

/** The SQLSTATE of a statement that must fail (42501: insufficient_privilege). */
async function sqlstate(role: PostgresRole, sql: string): Promise<string | undefined> {
  return as(role, async (c) => {
    try {
      await c.query(sql);
      return undefined;
    } catch (error) {
      return (error as { code?: string }).code;
    }
  });
}

describe("PostgreSQL roles", () => {
  it("none of the three is a superuser or may create roles or databases", async () => {
    const spec = environment().spec.postgres;
    const { rows } = await as("admin", (c) =>
      c.query("SELECT rolname, rolsuper, rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles WHERE rolname = ANY($1) ORDER BY rolname", [[spec.user, spec.appUser, spec.readonlyUser]]),
    );
    expect(rows).toHaveLength(3);
    for (const r of rows) expect([r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolbypassrls], r.rolname).toEqual([false, false, false, false]);
  });

  it("the base-backup role may open a replication session and nothing else: no database, no superuser, only from 127.0.0.1", async () => {
    const { spec, connections } = environment();
    const { rows } = await as("admin", (c) =>
      c.query(
        "SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, rolreplication, pg_has_role(rolname, 'pg_write_server_files', 'MEMBER') AS writes, pg_has_role(rolname, 'pg_read_all_data', 'MEMBER') AS reads FROM pg_roles WHERE rolname = $1",
        [spec.postgres.backupUser],
      ),
    );
    expect(rows[0]).toEqual({ rolsuper: false, rolcreaterole: false, rolcreatedb: false, rolbypassrls: false, rolreplication: true, writes: true, reads: false });
    const replication = connections.replicationConfig();
    const identified = await withPg(replication, async (c) => (await c.query("IDENTIFY_SYSTEM")).rows[0]);
    expect(identified.systemid).toMatch(/^\d+$/);
    const refused = (config: pg.ClientConfig) => withPg(config, (c) => c.query("SELECT 1")).then(() => undefined, (e: { code?: string }) => e.code);
    const { replication: _r, ...plain } = replication;
    expect(await refused({ ...plain, database: spec.postgres.database })).toBe("42501"); // CONNECT is revoked from PUBLIC
    expect(await refused({ ...replication, host: "::1" })).toBe("ECONNREFUSED"); // replication only from 127.0.0.1 (the only address it listens on)
  });

  it("the owner (crypto_user) can run DDL", async () => {
    await as("owner", async (c) => {
      await c.query("CREATE TABLE lp_owner_probe (id int)");
      await c.query("ALTER TABLE lp_owner_probe ADD COLUMN note text");
      await c.query("CREATE INDEX lp_owner_probe_idx ON lp_owner_probe (id)");
      await c.query("DROP TABLE lp_owner_probe");
    });
  });

  it("the app role (crypto_app) has DML on the guide's tables", async () => {
    await as("app", async (c) => {
      await c.query("BEGIN");
      const { rows } = await c.query("INSERT INTO cryptocurrencies (symbol, name) VALUES ('LPAPP', 'probe') RETURNING id");
      await c.query("UPDATE cryptocurrencies SET name = 'probe 2' WHERE id = $1", [rows[0].id]);
      await c.query("SELECT count(*) FROM market_data");
      await c.query("DELETE FROM cryptocurrencies WHERE id = $1", [rows[0].id]);
      await c.query("ROLLBACK");
    });
  });

  const APP_DENIED: [string, string][] = [
    ["DROP a table", "DROP TABLE cryptocurrencies"],
    ["ALTER a table", "ALTER TABLE cryptocurrencies ADD COLUMN hacked int"],
    ["CREATE a table in public", "CREATE TABLE public.lp_app_table (id int)"],
    ["CREATE an index", "CREATE INDEX lp_app_idx ON cryptocurrencies (name)"],
    ["TRUNCATE a table", "TRUNCATE market_data"],
    ["CREATE a schema", "CREATE SCHEMA lp_app_schema"],
    ["CREATE a temporary table", "CREATE TEMP TABLE lp_app_temp (id int)"],
    ["touch the migrations' bookkeeping", "DELETE FROM pgmigrations"],
    ["CREATE a role", "CREATE ROLE lp_app_role"],
  ];
  it.each(APP_DENIED)("the app role cannot %s (42501)", async (_what, sql) => {
    expect(await sqlstate("app", sql)).toBe("42501");
  });

  it("the read-only role (crypto_readonly) can read", async () => {
    await as("readonly", (c) => c.query("SELECT count(*) FROM cryptocurrencies JOIN predictions p ON true LIMIT 1"));
  });

  const READONLY_DENIED: [string, string][] = [
    ["INSERT", "INSERT INTO cryptocurrencies (symbol, name) VALUES ('LPRO', 'no')"],
    ["UPDATE", "UPDATE cryptocurrencies SET name = 'no'"],
    ["DELETE", "DELETE FROM market_data"],
    ["CREATE a table", "CREATE TABLE lp_ro_table (id int)"],
    ["DROP a table", "DROP TABLE predictions"],
    ["read the migrations' bookkeeping", "SELECT * FROM pgmigrations"],
  ];
  it.each(READONLY_DENIED)("the read-only role cannot %s (42501)", async (_what, sql) => {
    expect(await sqlstate("readonly", sql)).toBe("42501");
  });
});

describe("URLs printed by up --json", () => {
  it("name the role they log in as, and each logs in as exactly that role", async () => {
    const env = environment();
    const redacted = await runScript("up", ["--env", env.env, "--json"]);
    expect(redacted.code, redacted.stderr).toBe(0);
    const spec = env.spec;
    expect(redacted.json.postgres.urls.owner).toContain(`postgresql://${spec.postgres.user}:***@`);
    expect(redacted.json.postgres.urls.app).toContain(`postgresql://${spec.postgres.appUser}:***@`);
    expect(redacted.json.postgres.urls.readonly).toContain(`postgresql://${spec.postgres.readonlyUser}:***@`);
    expect(redacted.json.postgres.url).toBe(redacted.json.postgres.urls.app);
    expect(redacted.json.redis.urls.app).toContain(`redis://${spec.redis.appUser}:***@`);
    expect(redacted.json.redis.urls.admin).toContain("redis://default:***@");

    const revealed = await runScript("up", ["--env", env.env, "--json", "--show-secrets"]);
    const expected: Record<string, string> = { owner: spec.postgres.user, app: spec.postgres.appUser, readonly: spec.postgres.readonlyUser };
    for (const [role, url] of Object.entries(revealed.json.postgres.urls as Record<string, string>)) {
      const who = await withPg({ connectionString: url }, async (c) => (await c.query("SELECT current_user AS u")).rows[0].u);
      expect(who, role).toBe(expected[role]);
    }
    for (const [role, url] of Object.entries(revealed.json.redis.urls as Record<string, string>)) {
      const redis = new Redis(url, { maxRetriesPerRequest: 1 });
      try {
        expect(await redis.acl("WHOAMI"), role).toBe(role === "admin" ? "default" : spec.redis.appUser);
      } finally {
        redis.disconnect();
      }
    }
  });
});

// ---- loopback only -----------------------------------------------------------------------------

/** Loopback-only, from the kernel's socket tables: every socket on `port` listens on loopback. */
function expectLoopbackOnly(port: number, what: string): ListeningSocket[] {
  const sockets = listeningSockets().filter((s) => s.port === port);
  expect(sockets.length, `${what}: something listens on port ${port}`).toBeGreaterThan(0);
  expect(sockets.filter((s) => !isLoopback(s.address)).map((s) => `${s.address}:${s.port}`), `${what}: non-loopback listeners`).toEqual([]);
  return sockets;
}

describe("loopback only (from /proc/net/tcp and tcp6; no traffic beyond loopback)", () => {
  it("embedded: every listening socket of the postgres and redis-server processes is on 127.0.0.1, and nothing else listens on their ports", () => {
    const env = environment();
    const pgPid = Number(readFileSync(path.join(env.paths.pgData, "postmaster.pid"), "utf8").split("\n")[0]);
    const redisPid = Number(readFileSync(env.paths.redisPid, "utf8").trim());
    for (const [what, pid, port] of [["postgres", pgPid, env.spec.postgres.port], ["redis", redisPid, env.spec.redis.port]] as const) {
      const own = listeningSocketsOf(pid);
      expect(own.map((s) => `${s.address}:${s.port}`), `${what} (pid ${pid})`).toEqual([`127.0.0.1:${port}`]);
      expectLoopbackOnly(port, what);
    }
    console.log(`[figures] loopback: postgres pid ${pgPid} and redis pid ${redisPid} listen only on 127.0.0.1 (/proc/net/tcp*)`);
  });

  it("and say so in their own settings (listen_addresses, bind, protected-mode)", async () => {
    expect(await as("admin", async (c) => (await c.query("SHOW listen_addresses")).rows[0].listen_addresses)).toBe("127.0.0.1");
    await withRedis(environment().connections.redisOptions("admin"), async (r) => {
      expect(await r.config("GET", "bind")).toEqual(["bind", "127.0.0.1"]);
      expect(await r.config("GET", "protected-mode")).toEqual(["protected-mode", "yes"]);
    });
  });
});

describeDocker("loopback only, Docker target (the ports it publishes on the host)", () => {
  it("env:ci --engine docker: the published PostgreSQL and Redis ports listen on 127.0.0.1 only, and Docker binds them to 127.0.0.1", async () => {
    await requireOfflineImages();
    const started = await runScript("env-ci", ["--engine", "docker", "--format", "json"], { timeoutMs: 240_000 });
    expect(started.code, started.stderr).toBe(0);
    const id = started.json.CPI_ENV_ID as string;
    try {
      for (const [what, port] of [["postgres", Number(started.json.PGPORT)], ["redis", Number(started.json.REDIS_PORT)]] as const) {
        expectLoopbackOnly(port, `docker ${what}`);
        const bindings = execFileSync(dockerBinary(), ["ps", "--filter", `publish=${port}`, "--format", "{{.Ports}}"], { encoding: "utf8" }).trim();
        expect(bindings, `docker ${what}`).toContain(`127.0.0.1:${port}->`);
        expect(bindings, `docker ${what}`).not.toMatch(/(^|, )(0\.0\.0\.0|:::|\[::\]):/);
      }
    } finally {
      await runScript("env-ci", ["--down", id], { timeoutMs: 120_000 });
    }
  }, 300_000);
});

// ---- Redis ACL ---------------------------------------------------------------------------------

describe("Redis", () => {
  it("refuses commands from a client without a password (NOAUTH)", async () => {
    // A raw RESP conversation: no client library deciding what to send first.
    const replies = await new Promise<string>((resolve, reject) => {
      const socket = net.connect({ host: "127.0.0.1", port: environment().spec.redis.port });
      let text = "";
      socket.on("data", (d) => {
        text += d;
        if (text.split("\r\n").length > 2) socket.end();
      });
      socket.on("close", () => resolve(text));
      socket.on("error", reject);
      socket.write("GET crypto:BTC:price\r\nFLUSHALL\r\n");
    });
    expect(replies.split("\r\n").slice(0, 2)).toEqual(["-NOAUTH Authentication required.", "-NOAUTH Authentication required."]);
  });

  it("lets the app user do the cache's work (SET/GET/EXPIRE/SCAN/DEL)", async () => {
    await withRedis(environment().connections.redisOptions("app"), async (r) => {
      await r.set("crypto:LP:price", "1", "EX", 60);
      expect(await r.get("crypto:LP:price")).toBe("1");
      expect(await r.ttl("crypto:LP:price")).toBeGreaterThan(0);
      const [, keys] = await r.scan("0", "MATCH", "crypto:LP:*", "COUNT", 100);
      expect(keys).toContain("crypto:LP:price");
      expect(await r.del("crypto:LP:price")).toBe(1);
    });
  });

  const DANGEROUS: string[][] = [["FLUSHALL"], ["FLUSHDB"], ["CONFIG", "GET", "maxmemory"], ["CONFIG", "SET", "appendonly", "no"], ["KEYS", "*"], ["DEBUG", "SLEEP", "0"], ["SHUTDOWN", "NOSAVE"], ["SAVE"], ["BGREWRITEAOF"], ["MONITOR"], ["ACL", "SETUSER", "intruder", "on", ">pw", "+@all"], ["REPLICAOF", "127.0.0.1", "1"], ["SCRIPT", "FLUSH"], ["CLIENT", "KILL", "TYPE", "normal"]];
  it.each(DANGEROUS.map((c) => [c.join(" "), c] as const))("refuses %s from the app user (ACL: NOPERM)", async (_name, command) => {
    const { connections, spec } = environment();
    // What the ACL says (Redis 7 ACL DRYRUN), then what the app user actually gets.
    const verdict = await withRedis(connections.redisOptions("admin"), (r) => r.call("ACL", "DRYRUN", spec.redis.appUser, ...command));
    expect(String(verdict)).toMatch(/has no permissions to run the '[a-z|]+' command/);
    await withRedis(connections.redisOptions("app"), async (r) => {
      // DEBUG is also off for everyone (enable-debug-command no), which Redis checks before the ACL.
      await expect(r.call(command[0]!, ...command.slice(1))).rejects.toThrow(command[0] === "DEBUG" ? /NOPERM|DEBUG command not allowed/ : /NOPERM/);
    });
  });

  it("keeps what the admin (default user) needs: CONFIG GET, INFO, ACL LIST", async () => {
    await withRedis(environment().connections.redisOptions("admin"), async (r) => {
      expect(await r.config("GET", "maxmemory-policy")).toEqual(["maxmemory-policy", environment().spec.redis.maxmemoryPolicy]);
      expect(await r.info("server")).toContain("redis_version:7.");
      expect((await r.acl("LIST")).some((line: string) => line.startsWith(`user ${environment().spec.redis.appUser} on`))).toBe(true);
    });
  });
});
