/**
 * The guide's health checks (/health/db, /health/cache, /health/detailed) as one function:
 * connectivity, server versions, every tuned setting, the schema at the migrations' head with
 * every expected constraint and index, a write/read/delete probe on both servers, and Redis
 * persistence. Every check runs concurrently, each on its own connection.
 *
 *   const report = await verifyEnvironment(resolveEnvironment({ env: "dev" }));
 *   if (!report.ok) …
 *
 * `npm run verify` prints it; the DR drill calls it after a restore.
 */
import { randomBytes } from "node:crypto";
import type pg from "pg";
import type { Redis } from "ioredis";
import { withPg, withRedis } from "../db/clients.js";
import { compareSchemas, expectedSchema, introspectSchema, type ExpectedSchema, type SchemaObject } from "../drift/schema.js";
import type { Environment } from "../env/environment.js";
import type { Spec } from "../spec/schema.js";
import { humanBytes } from "../spec/units.js";
import { errorText, exitCodeOf, summarise, type Check, type CheckGroup, type VerifyReport } from "./report.js";
import { parseInfo } from "../db/redis-info.js";
import { redisOptions } from "./redis.js";
import { checkPostgresSettings, checkRedisSettings } from "../db/settings.js";
import { archiveTargetOf, archivingSkipReason, assessArchiver, checkArchiveFolder, freshnessOf, readArchiver, walPushAssessment, type ArchiverState, type Assessment } from "./archive.js";

export interface VerifyOptions {
  /** Which health endpoint: db, cache, or both (default). */
  groups?: CheckGroup[];
  /** A reference schema already derived (the drill derives it once for several checks). */
  expected?: ExpectedSchema;
}

/** Runs every health check of the target against `spec` (default: the target's spec). */
export async function verifyEnvironment(target: Environment, spec: Spec = target.spec, options: VerifyOptions = {}): Promise<VerifyReport> {
  const started = performance.now();
  const groups = options.groups ?? ["db", "cache"];
  const work: Promise<Check[]>[] = [];
  if (groups.includes("db")) {
    work.push(
      target.postgres
        ? postgresChecks(target, spec, options)
        : Promise.resolve([{ id: "db.connect", group: "db", title: "connect", status: "skip", detail: "no --database-url given: PostgreSQL not checked" } satisfies Check]),
    );
  }
  if (groups.includes("cache")) {
    work.push(
      target.redis
        ? redisChecks(target, spec)
        : Promise.resolve([{ id: "cache.connect", group: "cache", title: "connect", status: "skip", detail: "no --redis-url given: Redis not checked" } satisfies Check]),
    );
  }
  const checks = (await Promise.all(work)).flat();
  const exitCode = exitCodeOf(checks);
  return { env: spec.env, target: target.label, ok: exitCode === 0, exitCode, summary: summarise(checks), checks, ms: Math.round(performance.now() - started) };
}

/** Times a piece of work. */
async function timed<T>(work: () => Promise<T>): Promise<{ value?: T; error?: unknown; ms: number }> {
  const t = performance.now();
  try {
    const value = await work();
    return { value, ms: Math.round(performance.now() - t) };
  } catch (error) {
    return { error, ms: Math.round(performance.now() - t) };
  }
}

// ---- PostgreSQL ------------------------------------------------------------------------------

interface AdminFacts {
  versionNum: number;
  version: string;
  settings: Awaited<ReturnType<typeof checkPostgresSettings>>;
  applied: string[];
  live: SchemaObject[];
  database: string;
  /** pg_stat_archiver and friends, or why they could not be read. */
  archiver: ArchiverState | Error;
}

async function postgresChecks(target: Environment, spec: Spec, options: VerifyOptions): Promise<Check[]> {
  const pgEndpoint = target.postgres!;
  const migrations = import("../db/migrate.js"); // node-pg-migrate: loaded alongside the connections
  const adminTask = timed(() =>
    withPg(pgEndpoint.config("admin"), async (client): Promise<AdminFacts> => {
      const { appliedMigrations } = await migrations;
      // One connection runs one query at a time: these are sequential (a few ms each).
      const version = await client.query<{ num: string; version: string; db: string }>("SELECT current_setting('server_version_num') AS num, current_setting('server_version') AS version, current_database() AS db");
      const settings = await checkPostgresSettings(client, spec, archiveTargetOf(target));
      const applied = await appliedMigrations(client);
      const live = await introspectSchema(client);
      const archiver = await readArchiver(client).catch((e: unknown) => (e instanceof Error ? e : new Error(String(e))));
      return { versionNum: Number(version.rows[0]!.num), version: version.rows[0]!.version, settings, applied, live, database: version.rows[0]!.db, archiver };
    }),
  );
  const expectedTask = options.expected ? Promise.resolve({ value: options.expected, ms: 0, error: undefined }) : timed(() => expectedSchema(pgEndpoint, spec, { perRoleLogins: target.perRoleLogins }));
  const probeTask = timed(() => withPg(pgEndpoint.config(target.perRoleLogins ? "owner" : "admin"), postgresProbe));
  const appTask = target.perRoleLogins ? timed(() => withPg(pgEndpoint.config("app"), appPrivileges)) : undefined;

  const admin = await adminTask;
  if (admin.error) {
    // Nothing else can be said about a server we cannot reach; the other tasks fail the same way.
    await Promise.allSettled([expectedTask, probeTask, appTask]);
    return [{ id: "db.connect", group: "db", title: "connect", status: "error", detail: `could not connect to ${pgEndpoint.label}: ${errorText(admin.error)}`, hint: target.unreachableHint, ms: admin.ms }];
  }
  const facts = admin.value!;
  const checks: Check[] = [{ id: "db.connect", group: "db", title: "connect", status: "ok", detail: `${pgEndpoint.label} answered (${admin.ms} ms)`, ms: admin.ms }];

  const major = Math.floor(facts.versionNum / 10000);
  checks.push({
    id: "db.version",
    group: "db",
    title: "server version",
    status: major === spec.postgres.version ? "ok" : "fail",
    detail: `PostgreSQL ${facts.version}`,
    expected: String(spec.postgres.version),
    actual: String(major),
    hint: major === spec.postgres.version ? undefined : `the spec runs PostgreSQL ${spec.postgres.version}: upgrade or replace the server`,
  });

  for (const s of facts.settings) {
    if (s.unreadable) {
      checks.push({ id: `db.setting.${s.name}`, group: "db", title: `setting ${s.name}`, status: "error", detail: `could not check: ${s.unreadable}`, expected: s.expected, hint: `verify with the admin login (npm run verify -- --env ${target.env}, without a URL), or GRANT pg_read_all_settings TO this login` });
      continue;
    }
    checks.push({
      id: `db.setting.${s.name}`,
      group: "db",
      title: `setting ${s.name}`,
      status: s.ok ? "ok" : "fail",
      detail: s.ok ? `${s.actual}` : `${s.actual ?? "(absent)"}, spec says ${s.expected}${s.pendingRestart ? " (changed in a file; needs a restart)" : ""}`,
      expected: s.expected,
      actual: s.actual,
      hint: s.ok ? undefined : target.kind === "urls" ? "set it in the server's parameter group / config, or find out why it drifted: npm run drift" : `re-apply the spec: npm run up -- --env ${target.env} (npm run drift shows where the value comes from)`,
    });
  }

  checks.push(...(await archiveChecks(target, spec, facts.archiver)), ...(await bucketChecks(target, spec)));

  const { knownMigrations } = await migrations;
  const known = knownMigrations();
  const pending = known.filter((m) => !facts.applied.includes(m));
  const unknown = facts.applied.filter((m) => !known.includes(m));
  const head = known.at(-1) ?? "(none)";
  checks.push({
    id: "db.migrations",
    group: "db",
    title: "migrations at head",
    status: pending.length || unknown.length ? "fail" : "ok",
    detail: pending.length || unknown.length ? [pending.length && `${pending.length} pending (${pending.join(", ")})`, unknown.length && `applied but unknown to this code: ${unknown.join(", ")}`].filter(Boolean).join("; ") : `${facts.applied.length}/${known.length} applied, head ${head}`,
    expected: head,
    actual: facts.applied.at(-1) ?? "(none)",
    hint: pending.length ? `npm run migrate -- up --env ${target.env}` : unknown.length ? "this code is older than the database: deploy the newer code (or revert with the code that made them)" : undefined,
  });

  const expected = await expectedTask;
  if (expected.error) {
    checks.push({
      id: "db.schema",
      group: "db",
      title: "schema objects",
      status: "error",
      detail: `could not derive the migrations' schema in a scratch database: ${errorText(expected.error)}`,
      hint: "the check needs a login that may CREATE DATABASE on this server (the admin; on RDS the master user)",
    });
  } else {
    checks.push(...schemaChecks(expected.value!.objects, facts.live, facts.database, spec.env));
  }

  const probe = await probeTask;
  checks.push({
    id: "db.probe",
    group: "db",
    title: "write/read/delete probe",
    status: probe.error ? "fail" : "ok",
    detail: probe.error ? `a scratch write failed: ${errorText(probe.error)}` : `temporary table written, read back and deleted (${probe.ms} ms)`,
    hint: probe.error ? "is the server read-only (a replica, default_transaction_read_only) or out of disk? see its log" : undefined,
    ms: probe.ms,
  });

  if (appTask) {
    const app = await appTask;
    const expectedTables = expected.value?.objects.filter((o) => o.kind === "table" && o.schema === "public").map((o) => o.name) ?? [];
    checks.push(appCheck(app, expectedTables, spec));
  }
  return checks;
}

/** The archiver (pg_stat_archiver), the WAL waiting for it, its folder: see archive.ts. */
async function archiveChecks(target: Environment, spec: Spec, archiver: ArchiverState | Error): Promise<Check[]> {
  const skip = archivingSkipReason(spec);
  if (skip) return [{ id: "db.archive.archiver", group: "db", title: "WAL archiver", status: "skip", detail: skip }];
  if (archiver instanceof Error) {
    return [{ id: "db.archive.archiver", group: "db", title: "WAL archiver", status: "error", detail: `could not read pg_stat_archiver / pg_ls_archive_statusdir(): ${errorText(archiver)}`, hint: "the check needs a superuser or a member of pg_monitor" }];
  }
  const folder = archiver.archiveMode === "off" ? undefined : await checkArchiveFolder(target, archiver.archiveDirectory);
  const freshness = await freshnessOf(target, spec);
  const push = await walPushAssessment(target, spec);
  const pushCheck: Check[] = push ? [{ id: "db.archive.push", group: "db", title: "WAL pushed to the bucket", status: push.status, detail: push.detail, expected: push.threshold, hint: push.hint }] : [];
  return [...[...assessArchiver(archiver, spec, folder), ...(freshness ? [freshness] : [])].map(assessmentCheck), ...pushCheck];
}

/**
 * The backup bucket's protection (backup.repository an S3 bucket): public, unversioned or
 * unencrypted is a warning, not a failure (backups still work); what the server does not answer
 * is said too. The staging and prod stacks' backup bucket has all of it.
 */
async function bucketChecks(target: Environment, spec: Spec): Promise<Check[]> {
  if (target.kind === "urls" || spec.backup.repository === "local") return [];
  const { openBackupRepository } = await import("../backup/repository/index.js");
  const repo = await openBackupRepository(target.env);
  if (!repo.posture) return [];
  const { problems, unknown } = await repo.posture();
  const findings = [...problems, ...unknown.map((u) => `could not read ${u}`)];
  return [
    {
      id: "db.backup.bucket",
      group: "db",
      title: "backup bucket",
      status: findings.length ? "warn" : "ok",
      detail: `${repo.describe()}: ${findings.length ? findings.join("; ") : "versioned, encrypted by default, public access blocked"}`,
      hint: findings.length ? "turn on versioning, default encryption (SSE-KMS) and all four public access blocks, as the staging/prod stacks' backup bucket has them" : undefined,
    },
  ];
}

/** An archive assessment as a verify check. */
export function assessmentCheck(a: Assessment): Check {
  const id = a.key === "freshness" ? "db.backup.freshness" : `db.archive.${a.key}`;
  return { id, group: "db", title: a.title, status: a.status, detail: a.value, expected: a.threshold, hint: a.status === "fail" || a.status === "error" ? a.hint : undefined };
}

/** Constraints, indexes and tables the migrations make must all be there (extra ones are drift's business). */
function schemaChecks(expected: SchemaObject[], live: SchemaObject[], database: string, env: string): Check[] {
  const drift = compareSchemas(expected, live);
  const missing = (kinds: string[]) => drift.filter((d) => (d.difference === "missing" || d.difference === "changed" || d.difference === "invalid") && kinds.includes(d.kind));
  const count = (kinds: string[]) => expected.filter((o) => kinds.includes(o.kind)).length;
  const groups: { id: string; title: string; kinds: string[] }[] = [
    { id: "db.schema.tables", title: "tables and columns", kinds: ["schema", "table", "column", "type"] },
    { id: "db.schema.constraints", title: "constraints", kinds: ["constraint"] },
    { id: "db.schema.indexes", title: "indexes", kinds: ["index"] },
    { id: "db.schema.other", title: "triggers, functions, sequences", kinds: ["trigger", "function", "sequence", "extension"] },
  ];
  return groups.map((g) => {
    const bad = missing(g.kinds);
    const total = count(g.kinds);
    return {
      id: g.id,
      group: "db",
      title: g.title,
      status: bad.length ? "fail" : "ok",
      detail: bad.length
        ? `${bad.length} of ${total} not as the migrations make them: ${bad.map((d) => `${d.name} (${d.difference})`).join(", ")}`
        : `${total}/${total} present in ${database}, as the migrations make them`,
      hint: bad.length ? `${bad[0]!.fix}${bad.length > 1 ? ` (and ${bad.length - 1} more: npm run drift -- --env ${env} --md drift.md)` : ""}` : undefined,
    } satisfies Check;
  });
}

/** Writes, reads and deletes a row of a temporary table (scratch name, gone at disconnect anyway). */
async function postgresProbe(client: pg.Client): Promise<void> {
  const table = `cpi_verify_probe_${randomBytes(4).toString("hex")}`;
  const token = randomBytes(8).toString("hex");
  await client.query(`CREATE TEMP TABLE ${table} (k text PRIMARY KEY, v text NOT NULL)`);
  try {
    await client.query(`INSERT INTO ${table} VALUES ('probe', $1)`, [token]);
    const read = await client.query(`SELECT v FROM ${table} WHERE k = 'probe'`);
    if (read.rows[0]?.v !== token) throw new Error("the value read back differs from the one written");
    const deleted = await client.query(`DELETE FROM ${table} WHERE k = 'probe'`);
    if (deleted.rowCount !== 1) throw new Error("the probe row could not be deleted");
  } finally {
    await client.query(`DROP TABLE IF EXISTS ${table}`);
  }
}

interface TablePrivileges {
  table: string;
  select: boolean;
  insert: boolean;
  update: boolean;
  delete: boolean;
}

async function appPrivileges(client: pg.Client): Promise<TablePrivileges[]> {
  const { rows } = await client.query<TablePrivileges>(`
    SELECT c.relname AS table, has_table_privilege(c.oid, 'SELECT') AS select, has_table_privilege(c.oid, 'INSERT') AS insert,
           has_table_privilege(c.oid, 'UPDATE') AS update, has_table_privilege(c.oid, 'DELETE') AS delete
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')`);
  return rows;
}

/** The application role logs in and has DML on every table of the schema, except the migrations' bookkeeping. */
function appCheck(app: { value?: TablePrivileges[]; error?: unknown; ms: number }, expectedTables: string[], spec: Spec): Check {
  const base = { id: "db.app", group: "db" as const, title: `app role ${spec.postgres.appUser}`, ms: app.ms };
  if (app.error) return { ...base, status: "fail", detail: `cannot log in: ${errorText(app.error)}`, hint: `re-apply the roles: npm run up -- --env ${spec.env}` };
  const privileges = new Map(app.value!.map((p) => [p.table, p]));
  const problems: string[] = [];
  for (const table of expectedTables) {
    const p = privileges.get(table);
    const isBookkeeping = table === "pgmigrations";
    if (isBookkeeping) {
      if (p && (p.select || p.insert || p.update || p.delete)) problems.push(`${table}: has access to the migrations' bookkeeping`);
    } else if (!p || !(p.select && p.insert && p.update && p.delete)) {
      problems.push(`${table}: lacks ${(["select", "insert", "update", "delete"] as const).filter((k) => !p?.[k]).join("/").toUpperCase()}`);
    }
  }
  return problems.length
    ? { ...base, status: "fail", detail: problems.join("; "), hint: `re-apply the roles' grants: npm run up -- --env ${spec.env}` }
    : { ...base, status: "ok", detail: `logs in; DML on ${expectedTables.filter((t) => t !== "pgmigrations").length} tables, none on pgmigrations` };
}

// ---- Redis -----------------------------------------------------------------------------------

async function redisChecks(target: Environment, spec: Spec): Promise<Check[]> {
  const endpoint = target.redis!;
  // ElastiCache blocks CONFIG and has no AOF: its settings live in the parameter group.
  const managed = target.kind === "urls" && spec.target === "aws";
  const adminTask = timed(() =>
    withRedis(redisOptions(endpoint, "admin"), async (redis) => {
      const info = await redis.info();
      const settings = managed ? undefined : await checkRedisSettings(redis, spec).catch((e: unknown) => e as Error);
      return { info: parseInfo(info), settings };
    }),
  );
  const probeTask = timed(() => withRedis(redisOptions(endpoint, "app"), redisProbe));
  const admin = await adminTask;
  if (admin.error) {
    await probeTask;
    return [{ id: "cache.connect", group: "cache", title: "connect", status: "error", detail: `could not connect to ${endpoint.label}: ${errorText(admin.error)}`, hint: target.unreachableHint, ms: admin.ms }];
  }
  const { info, settings } = admin.value!;
  const checks: Check[] = [{ id: "cache.connect", group: "cache", title: "connect", status: "ok", detail: `${endpoint.label} answered (${admin.ms} ms)`, ms: admin.ms }];
  const version = info.get("redis_version") ?? "unknown";
  const major = Number(version.split(".")[0]);
  checks.push({
    id: "cache.version",
    group: "cache",
    title: "server version",
    status: major === spec.redis.version ? "ok" : "fail",
    detail: `Redis ${version}`,
    expected: String(spec.redis.version),
    actual: String(major),
    hint: major === spec.redis.version ? undefined : `the spec runs Redis ${spec.redis.version}`,
  });
  if (managed) {
    checks.push({ id: "cache.settings", group: "cache", title: "settings", status: "skip", detail: "ElastiCache blocks CONFIG: its parameter group is checked by npm run drift (pulumi preview)" });
  } else if (settings instanceof Error) {
    checks.push({ id: "cache.settings", group: "cache", title: "settings", status: "error", detail: `CONFIG GET failed: ${errorText(settings)}`, hint: "the check needs Redis's admin user (CONFIG is denied to the app user)" });
  } else {
    for (const s of settings ?? []) {
      checks.push({
        id: `cache.setting.${s.name}`,
        group: "cache",
        title: `setting ${s.name}`,
        status: s.ok ? "ok" : "fail",
        detail: s.ok ? showRedisValue(s.actual) : `${showRedisValue(s.actual)}, spec says ${showRedisValue(s.expected)}`,
        expected: s.expected,
        actual: s.actual,
        hint: s.ok ? undefined : target.kind === "urls" ? `CONFIG SET ${s.name} ${s.expected}, then find out who changed it: npm run drift` : `re-apply the spec: npm run up -- --env ${target.env}`,
      });
    }
  }

  const probe = await probeTask;
  checks.push({
    id: "cache.probe",
    group: "cache",
    title: `write/read/delete probe${target.perRoleLogins ? ` (${spec.redis.appUser})` : ""}`,
    status: probe.error ? "fail" : "ok",
    detail: probe.error ? `failed: ${errorText(probe.error)}` : `scratch key written, read back and deleted (${probe.ms} ms)`,
    hint: probe.error ? "OOM (maxmemory with noeviction)? MISCONF (a failed snapshot stops writes)? NOPERM (the app user's ACL)? see the Redis log" : undefined,
    ms: probe.ms,
  });

  const bgsave = info.get("rdb_last_bgsave_status");
  const lastSave = Number(info.get("rdb_last_save_time") ?? 0);
  checks.push({
    id: "cache.persistence.rdb",
    group: "cache",
    title: "last snapshot (BGSAVE)",
    status: bgsave === "ok" ? "ok" : bgsave === undefined ? "error" : "fail",
    detail: `${bgsave ?? "not reported"}${lastSave ? `, last save ${Math.round(Date.now() / 1000 - lastSave)} s ago` : ""}, ${info.get("rdb_changes_since_last_save") ?? "?"} changes since`,
    expected: "ok",
    actual: bgsave,
    hint: bgsave === "ok" ? undefined : "the last BGSAVE failed (disk full? permissions of the data dir?): see the Redis log, then BGSAVE",
  });
  if (managed) {
    checks.push({ id: "cache.persistence.aof", group: "cache", title: "append-only file", status: "skip", detail: "ElastiCache has no AOF: durability comes from replicas and snapshots" });
  } else if (!spec.redis.appendonly) {
    checks.push({ id: "cache.persistence.aof", group: "cache", title: "append-only file", status: "skip", detail: "the spec turns AOF off (redis.appendonly: false)" });
  } else {
    const enabled = info.get("aof_enabled") === "1";
    const write = info.get("aof_last_write_status");
    const rewrite = info.get("aof_last_bgrewrite_status");
    const ok = enabled && write === "ok" && rewrite === "ok";
    checks.push({
      id: "cache.persistence.aof",
      group: "cache",
      title: "append-only file",
      status: ok ? "ok" : "fail",
      detail: `${enabled ? "on" : "OFF"}, last write ${write ?? "?"}, last rewrite ${rewrite ?? "?"}`,
      expected: "on, last write ok, last rewrite ok",
      actual: `${enabled ? "on" : "off"}, last write ${write}, last rewrite ${rewrite}`,
      hint: ok ? undefined : !enabled ? "CONFIG SET appendonly yes (the spec says so), then check aof_rewrite_in_progress" : "AOF writes are failing (disk full?): see the Redis log; BGREWRITEAOF once fixed",
    });
  }
  return checks;
}

/** A CONFIG GET value for people: byte counts get their binary size too. */
function showRedisValue(value: string | undefined): string {
  if (value === undefined) return "(absent)";
  return /^\d{4,}$/.test(value) ? `${value} (${humanBytes(Number(value))})` : value;
}

/** SET (with a TTL, so a crash leaves nothing for long), GET, UNLINK. */
async function redisProbe(redis: Redis): Promise<void> {
  const key = `verify:probe:${randomBytes(6).toString("hex")}:value`;
  const token = randomBytes(8).toString("hex");
  if ((await redis.set(key, token, "EX", 60)) !== "OK") throw new Error("SET was not acknowledged");
  let read: string | null;
  try {
    read = await redis.get(key);
  } finally {
    // UNLINK's count confirms the delete without a lookup (an EXISTS would count as a cache miss).
    const deleted = await redis.unlink(key);
    if (deleted !== 1) throw new Error("the probe key could not be deleted");
  }
  if (read !== token) throw new Error("the value read back differs from the one written");
}
