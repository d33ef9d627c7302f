/**
 * Backup and restore on real embedded servers (PostgreSQL 16 + Redis 7, appendonly yes as the
 * guide sets it): seeded data → backup → damage → restore gives back every table's rows
 * (count and checksum) and every Redis key, value and expiry, in both dump formats; one table
 * alone; a dump made with plain pg_dump; and Redis's AOF holds the restored data.
 *
 * pg_dump must be at least the server's version: on these machines only the offline image has a
 * 16+ client (Debian 12 ships 15), so these tests need the Docker engine (describeDocker).
 */
import "../support/docker.js";
import { execFile } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, expect, it } from "vitest";
import { MANIFEST_FILE, parseManifest, type Manifest } from "../../lib/backup/manifest.js";
import { withPg, withRedis } from "../../lib/db/clients.js";
import { migrationHead } from "../../lib/db/migrate.js";
import { OFFLINE_IMAGES } from "../../lib/engines/docker/images.js";
import { EmbeddedEnvironment, type StartedEmbeddedEnvironment } from "../../lib/engines/embedded/environment.js";
import { serviceUser } from "../../lib/state/paths.js";
import { findRedisServer, startRedis, stopRedis } from "../../lib/engines/embedded/redis-server.js";
import { damage, fingerprint, seedSample, type Fingerprint } from "../support/backup.js";
import { describeDocker, dockerBinary, requireOfflineImages } from "../support/docker.js";
import { runCli, useEphemeralEnvironment } from "../support/embedded.js";

const run = promisify(execFile);

describeDocker("backup and restore: embedded environment", () => {
  const env = useEphemeralEnvironment();
  const out = mkdtempSync(path.join(os.tmpdir(), "cpi-backup-"));
  const plainDump = path.join(mkdtempSync(path.join(os.tmpdir(), "cpi-plain-dump-")), "backup.sql");
  let original: Fingerprint;
  let full: { dir: string; manifest: Manifest };

  beforeAll(async () => {
    await requireOfflineImages();
    await seedSample(env().connections);
    original = await fingerprint(env().connections);
    // The guide's command, outside the toolkit: pg_dump -U crypto_user crypto_prediction_db > backup.sql
    // (pg_dump 17 from the offline image, as the guide runs it with `docker exec`).
    const { spec, connections } = env();
    await run("sh", ["-c", `"$DOCKER" run --rm --network host --log-driver none -e PGPASSWORD --entrypoint pg_dump "$IMAGE" -h 127.0.0.1 -p "$PORT" -U "$OWNER" "$DB" > "$FILE"`], {
      env: { ...process.env, DOCKER: dockerBinary(), IMAGE: OFFLINE_IMAGES.postgres, PORT: String(spec.postgres.port), OWNER: spec.postgres.user, DB: spec.postgres.database, FILE: plainDump, PGPASSWORD: connections.credentials.postgres.ownerPassword },
    });
    const made = await runCli("backup", ["--env", env().env, "--out", out, "--format", "sql", "--json"]);
    expect(made.code, made.stderr).toBe(0);
    full = { dir: made.json.dir, manifest: made.json.manifest };
  });
  afterAll(() => {
    rmSync(out, { recursive: true, force: true });
    rmSync(path.dirname(plainDump), { recursive: true, force: true });
  });

  it("--format sql writes one folder: gzip'd plain SQL (the guide's format), the RDB and a manifest, 0600 files in a 0700 folder", () => {
    const { dir, manifest } = full;
    expect(readdirSync(out)).toEqual([path.basename(dir)]);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(readdirSync(dir).sort()).toEqual([MANIFEST_FILE, "postgres.sql.gz", "redis.rdb"]);
    for (const f of readdirSync(dir)) expect(statSync(path.join(dir, f)).mode & 0o777).toBe(0o600);
    expect(parseManifest(readFileSync(path.join(dir, MANIFEST_FILE), "utf8")).manifest).toEqual(manifest);
    expect(manifest).toMatchObject({ env: env().env, engine: "embedded", scope: "full" });
    expect(manifest.postgres).toMatchObject({ format: "sql", compression: "gzip:6", serverMajor: 16, migrationHead: migrationHead() });
    expect(manifest.postgres!.pgDump.major).toBeGreaterThanOrEqual(16);
    for (const [table, { rows }] of Object.entries(original.postgres)) expect(manifest.postgres!.tables[table]).toBe(rows);
    expect(manifest.redis!.keys).toBe(Object.keys(original.redis).length);
    expect(manifest.redis!.expires).toBe(Object.values(original.redis).filter((k) => k.expiresAt > 0).length);
    for (const f of manifest.files) expect(statSync(path.join(dir, f.name)).size).toBe(f.bytes);
  });

  it("round trip (sql): damage, restore --yes, every row and every key with its TTL is back; AOF stays on", async () => {
    await damage(env().connections);
    expect(await fingerprint(env().connections)).not.toEqual(original);
    const restored = await runCli("restore", ["--env", env().env, "--from", full.dir, "--yes", "--json"]);
    expect(restored.code, restored.stderr).toBe(0);
    expect(restored.json).toMatchObject({ ok: true, mode: "database", verified: true, postgres: { replacedExisting: true } });
    expect(await fingerprint(env().connections)).toEqual(original);
    // The app role still works on the swapped-in database (grants came with it).
    await withPg(env().connections.postgresConfig("app"), (c) => c.query("SELECT count(*) FROM market_data"));
    // Nothing left behind: no side databases.
    await withPg(env().connections.postgresConfig("admin", "postgres"), async (c) => {
      const { rows } = await c.query("SELECT datname FROM pg_database WHERE datname LIKE '%\\_\\_restore\\_%' OR datname LIKE '%\\_\\_old\\_%'");
      expect(rows).toEqual([]);
    });
  });

  it("AOF case: after the restore Redis runs with appendonly yes, and a restart (which loads the AOF, not dump.rdb) keeps every key", async () => {
    const { paths, spec, connections } = env();
    const redisAppendonly = await withRedis(connections.redisOptions("admin"), (r) => r.config("GET", "appendonly"));
    expect(redisAppendonly).toEqual(["appendonly", "yes"]);
    expect(readFileSync(paths.redisConf, "utf8")).toMatch(/^appendonly yes$/m);
    expect(readdirSync(path.join(paths.redisDir, "appendonlydir")).some((f) => f.endsWith(".base.rdb"))).toBe(true);
    await stopRedis(paths, spec.redis.port, connections.credentials.redis.adminPassword);
    // No dump.rdb: whatever the restart brings back comes from the AOF.
    rmSync(path.join(paths.redisDir, "dump.rdb"), { force: true });
    await startRedis(findRedisServer(() => undefined), paths, spec.redis.port, connections.credentials.redis.adminPassword, serviceUser());
    expect((await fingerprint(connections)).redis).toEqual(original.redis);
  });

  it("round trip (custom format, zstd: the default) into a fresh environment with pg_restore --jobs: no --yes needed for an empty target", async () => {
    const made = await runCli("backup", ["--env", env().env, "--out", out, "--json"]);
    expect(made.code, made.stderr).toBe(0);
    expect(made.json.manifest.postgres).toMatchObject({ format: "custom", file: "postgres.dump" });
    expect(made.json.manifest.postgres.compression).toMatch(/^zstd:/);
    let fresh: StartedEmbeddedEnvironment | undefined;
    try {
      fresh = await new EmbeddedEnvironment("dev").withEphemeral().start();
      const restored = await runCli("restore", ["--env", fresh.env, "--from", made.json.dir, "--jobs", "3", "--json"]);
      expect(restored.code, restored.stderr).toBe(0);
      expect(restored.json.postgres.tool).toMatch(/^pg_restore 1[6-9]\.\d+ .*--jobs 3$/);
      expect(await fingerprint(fresh.connections)).toEqual(original);
    } finally {
      await fresh?.destroy();
    }
  }, 180_000);

  it("single table: --table market_data backs up and restores that table alone, in one transaction", async () => {
    const made = await runCli("backup", ["--env", env().env, "--out", out, "--table", "market_data", "--json"]);
    expect(made.code, made.stderr).toBe(0);
    expect(made.json.manifest).toMatchObject({ scope: "table", postgres: { tables: { market_data: original.postgres.market_data!.rows } } });
    expect(made.json.manifest.redis).toBeUndefined();
    await damage(env().connections);
    const damaged = await fingerprint(env().connections);
    const restored = await runCli("restore", ["--env", env().env, "--from", made.json.dir, "--yes", "--json"]);
    expect(restored.code, restored.stderr).toBe(0);
    expect(restored.json).toMatchObject({ mode: "tables", postgres: { tables: { market_data: original.postgres.market_data!.rows } } });
    const after = await fingerprint(env().connections);
    expect(after.postgres.market_data).toEqual(original.postgres.market_data);
    // Everything else is as it was before this restore.
    expect(after.postgres.predictions).toEqual(damaged.postgres.predictions);
    expect(after.redis).toEqual(damaged.redis);
  });

  it("a dump made by plain pg_dump (the guide's command, outside the toolkit) restores", async () => {
    expect(readFileSync(plainDump, "utf8")).toContain("SET transaction_timeout = 0;");
    const restored = await runCli("restore", ["--env", env().env, "--from", plainDump, "--yes", "--json"]);
    expect(restored.code, restored.stderr).toBe(0);
    expect(restored.json).toMatchObject({
      verified: false,
      source: "external dump",
      postgres: { droppedLines: ["SET transaction_timeout = 0;", "COMMENT ON EXTENSION pg_stat_statements IS 'track planning and execution statistics of all SQL statements executed';"] },
    });
    expect((await fingerprint(env().connections)).postgres).toEqual(original.postgres);
  });
});
