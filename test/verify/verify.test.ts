/**
 * `npm run verify` on real servers: a healthy environment verifies clean (in-process, by the CLI,
 * and by URL); a broken setting, a dropped constraint and a failing write are problems (exit 1);
 * an unreachable server could not be checked (exit 2); bad URLs are usage errors (64). The same
 * checks run on a Docker environment when an engine is there.
 */
import { createServer } from "node:net";
import { describe, expect, it } from "vitest";
import { withPg, withRedis } from "../../lib/db/clients.js";
import { postgresFromUrl, redisFromUrl, resolveEnvironment } from "../../lib/env/resolve.js";
import { loadSpec } from "../../lib/spec/load.js";
import { verifyEnvironment } from "../../lib/verify/verify.js";
import { describeDocker, requireOfflineImages } from "../support/docker.js";
import { runCli, useEphemeralEnvironment } from "../support/embedded.js";

const env = useEphemeralEnvironment();

/** A loopback port nobody listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as { port: number }).port;
  await new Promise((r) => server.close(r));
  return port;
}

describe("verify", () => {
  it("a healthy environment verifies clean, with every check of the guide", async () => {
    const report = await verifyEnvironment(resolveEnvironment({ env: env().env }));
    const bad = report.checks.filter((c) => c.status !== "ok");
    expect(bad, JSON.stringify(bad, null, 2)).toEqual([]);
    expect(report.exitCode).toBe(0);
    const ids = report.checks.map((c) => c.id);
    for (const id of ["db.connect", "db.version", "db.setting.shared_buffers", "db.setting.work_mem", "db.migrations", "db.schema.constraints", "db.schema.indexes", "db.probe", "db.app", "cache.connect", "cache.version", "cache.setting.maxmemory", "cache.setting.appendonly", "cache.probe", "cache.persistence.rdb", "cache.persistence.aof"]) {
      expect(ids).toContain(id);
    }
    // The probes clean up after themselves.
    await withRedis(env().connections.redisOptions("admin"), async (redis) => expect(await redis.scan("0", "MATCH", "verify:probe:*", "COUNT", 1000)).toEqual(["0", []]));
  });

  it("the CLI prints the report as JSON and exits 0; --check cache runs only Redis's checks", async () => {
    const all = await runCli("verify", ["--env", env().env, "--json"]);
    expect(all.code, all.stderr).toBe(0);
    expect(all.json.ok).toBe(true);
    const cache = await runCli("verify", ["--env", env().env, "--check", "cache", "--json"]);
    expect(cache.code, cache.stderr).toBe(0);
    expect(new Set(cache.json.checks.map((c: { group: string }) => c.group))).toEqual(new Set(["cache"]));
  });

  it("verifies a server given by URL, with the password outside argv", async () => {
    const c = env().connections;
    const pgUrl = new URL(c.postgresUrl("admin"));
    const redisUrl = new URL(c.redisUrl("admin"));
    const password = { pg: decodeURIComponent(pgUrl.password), redis: decodeURIComponent(redisUrl.password) };
    pgUrl.password = "";
    redisUrl.password = "";
    const result = await runCli("verify", ["--env", env().env, "--database-url", pgUrl.toString(), "--redis-url", redisUrl.toString(), "--json"], {
      env: { PGPASSWORD: password.pg, REDISCLI_AUTH: password.redis },
    });
    expect(result.code, result.stdout + result.stderr).toBe(0);
    expect(result.json.target).toContain("postgresql://");
    expect(result.stdout + result.stderr).not.toContain(password.pg);
  });

  it("a drifted setting, a missing constraint and an unwritable server are problems (exit 1), each with a fix", async () => {
    const c = env().connections;
    await withRedis(c.redisOptions("admin"), (r) => r.config("SET", "maxmemory-policy", "noeviction"));
    await withPg(c.postgresConfig("owner"), (p) => p.query("ALTER TABLE market_data DROP CONSTRAINT ck_market_data_high_low"));
    await withPg(c.postgresConfig("admin"), (p) => p.query(`ALTER ROLE ${env().spec.postgres.user} IN DATABASE ${env().spec.postgres.database} SET default_transaction_read_only = on`));
    try {
      const result = await runCli("verify", ["--env", env().env, "--json"]);
      expect(result.code).toBe(1);
      const failed = Object.fromEntries(result.json.checks.filter((x: { status: string }) => x.status === "fail").map((x: { id: string; hint?: string; detail: string }) => [x.id, x]));
      expect(Object.keys(failed).sort()).toEqual(["cache.setting.maxmemory-policy", "db.probe", "db.schema.constraints"]);
      expect(failed["cache.setting.maxmemory-policy"].detail).toContain("allkeys-lru");
      expect(failed["db.schema.constraints"].detail).toContain("ck_market_data_high_low");
      expect(failed["db.schema.constraints"].hint).toContain("ADD CONSTRAINT ck_market_data_high_low CHECK");
      expect(failed["db.probe"].detail).toContain("read-only");
      const human = await runCli("verify", ["--env", env().env]);
      expect(human.code).toBe(1);
      expect(human.stdout).toMatch(/FAIL setting maxmemory-policy/);
    } finally {
      await withPg(c.postgresConfig("admin"), (p) => p.query(`ALTER ROLE ${env().spec.postgres.user} IN DATABASE ${env().spec.postgres.database} RESET default_transaction_read_only`));
      await withPg(c.postgresConfig("owner"), (p) => p.query("ALTER TABLE market_data ADD CONSTRAINT ck_market_data_high_low CHECK (high_price >= low_price)"));
      await withRedis(c.redisOptions("admin"), (r) => r.config("SET", "maxmemory-policy", "allkeys-lru"));
    }
    expect((await verifyEnvironment(resolveEnvironment({ env: env().env }))).exitCode).toBe(0);
  });

  it("an unreachable server could not be checked (exit 2) and says what to do", async () => {
    const [pgPort, redisPort] = [await closedPort(), await closedPort()];
    const result = await runCli("verify", ["--env", env().env, "--database-url", `postgresql://nobody@127.0.0.1:${pgPort}/x`, "--redis-url", `redis://127.0.0.1:${redisPort}`, "--json"]);
    expect(result.code).toBe(2);
    expect(result.json.checks.map((c: { id: string; status: string }) => `${c.id}:${c.status}`)).toEqual(["db.connect:error", "cache.connect:error"]);
    expect(result.json.checks[0].hint).toMatch(/check the URL/);
  });

  it("refuses a bad URL (64), naming the flag and what is allowed, without echoing the password", async () => {
    const result = await runCli("verify", ["--database-url", "mysql://u:s3cretpassw0rd@h/db"]);
    expect(result.code).toBe(64);
    expect(result.stderr).toMatch(/--database-url .*scheme mysql: is not postgresql:/);
    expect(result.stderr).toMatch(/expected postgresql:\/\//);
    expect(result.stderr).not.toContain("s3cretpassw0rd");
  });
});

describe("targets given by URL", () => {
  const spec = loadSpec("dev");
  it("takes the database from the URL (else the spec's), TLS from sslmode, the password from $PGPASSWORD", () => {
    const saved = process.env.PGPASSWORD;
    process.env.PGPASSWORD = "from-the-environment";
    try {
      const endpoint = postgresFromUrl("postgresql://admin@db.example:6432?sslmode=require", spec);
      expect(endpoint.config("admin")).toMatchObject({ host: "db.example", port: 6432, user: "admin", password: "from-the-environment", database: "crypto_prediction_db", ssl: { rejectUnauthorized: false } });
      expect(endpoint.config("owner", "other").database).toBe("other");
      expect(postgresFromUrl("postgres://a:pw@h/x?sslmode=verify-full", spec).config("admin")).toMatchObject({ password: "pw", database: "x", ssl: { rejectUnauthorized: true } });
      expect(endpoint.label).not.toContain("from-the-environment");
    } finally {
      if (saved === undefined) delete process.env.PGPASSWORD;
      else process.env.PGPASSWORD = saved;
    }
    expect(() => postgresFromUrl("postgresql://admin@h/x?sslmode=sometimes", spec)).toThrow(/sslmode=sometimes is not one of disable/);
  });

  it("takes the Redis db from the path and TLS from rediss://", () => {
    expect(redisFromUrl("rediss://default@cache.example:6380/3", spec).options("admin")).toMatchObject({ host: "cache.example", port: 6380, db: 3, username: "default", tls: { servername: "cache.example" } });
    expect(redisFromUrl("redis://127.0.0.1", spec).options("app")).toMatchObject({ port: 6379, db: 0 });
    expect(() => redisFromUrl("redis://h/16", spec)).toThrow(/database "16" is not 0-15/);
  });
});

describeDocker("verify on a Docker environment (env:ci --engine docker)", () => {
  it("a fresh Docker environment verifies clean and shows no drift", async () => {
    await requireOfflineImages();
    const { DockerEnvironment } = await import("../../lib/engines/docker/environment.js");
    const docker = await new DockerEnvironment("ci").withEphemeral().start();
    try {
      const report = await verifyEnvironment(resolveEnvironment({ env: docker.env }));
      expect(report.checks.filter((c) => c.status !== "ok"), JSON.stringify(report.checks, null, 2)).toEqual([]);
      const drift = await runCli("drift", ["--env", docker.env, "--json"]);
      expect(drift.code, JSON.stringify(drift.json?.sections, null, 2)).toBe(0);
    } finally {
      await docker.remove();
    }
  }, 180_000);
});
