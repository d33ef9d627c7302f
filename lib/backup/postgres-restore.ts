/**
 * PostgreSQL restore, in two shapes:
 *
 * - Whole database: the dump is loaded into a NEW database next to the live one, checked (a
 *   database of this project: its migrations a known, non-empty prefix of this code's, the tables
 *   those migrations make, row counts against the manifest), and only then swapped in by renaming
 *   (connections to the old one are refused and terminated first; both renames commit together).
 *   A failed load or check drops the new database and leaves the live one untouched. A custom
 *   archive loads with `pg_restore --jobs`; a plain `.sql`/`.sql.gz` dump goes through one psql.
 * - Tables (`--table`, or a single-table backup): the table's rows are replaced inside ONE
 *   transaction in the live database (DELETE, COPY from the dump, setval, then row-count and
 *   foreign-key checks, then COMMIT). A failure, or a dump that ends early, commits nothing.
 *
 * A dump is data: it is loaded as the schema owner (no superuser: the server refuses COPY …
 * PROGRAM, untrusted languages and extensions, file access), and psql reads it in restricted mode
 * (`\restrict` with a random key of this run, sql-stream.ts), so no meta-command of the dump runs.
 *
 * Dumps made by a newer pg_dump than the server are accepted: for psql, the known incompatible
 * preamble lines are left out of the stream (sql-stream.ts); for pg_restore, which sends the
 * same SET on each of its connections, its errors are accepted only when every one of them is
 * exactly that known error. ON_ERROR_STOP / any other error still fails the restore.
 */
import { closeSync, createReadStream, mkdtempSync, openSync, readFileSync, readSync, rmSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import { createHash, randomBytes } from "node:crypto";
import type { Readable, Writable } from "node:stream";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import type pg from "pg";
import { CliError, EXIT } from "../errors.js";
import { connectPg, withPg } from "../db/clients.js";
import { appliedMigrations, knownMigrations, MIGRATIONS_DIR, MIGRATIONS_TABLE } from "../db/migrate.js";
import { ephemeralRoot } from "../state/paths.js";
import { writeFileAtomic } from "../fs.js";
import { applyRoleSql, bootstrapSql, postMigrationSql, privilegesSql, sqlIdent, sqlLiteral } from "../db/roles.js";
import { bootstrapExtensions } from "../drift/schema.js";
import { startProcess, type StartedProcess } from "../pgtools/process.js";
import { connectionArgs, resolvePgTool, type PgCommand, type PgTool, type StagedFile } from "../pgtools/resolve.js";
import { psqlSupportsRestrict, shortVersion } from "../pgtools/version.js";
import type { LocalEnvironment } from "../env/environment.js";
import type { Manifest } from "./manifest.js";
import { RestrictedDumpStream, restrictKey, TableDataFilter } from "./sql-stream.js";
import { publicTables } from "../db/catalog.js";
import { run } from "../process.js";


/** What a dump file is, from its first bytes. */
export type DumpKind = "sql" | "sql.gz" | "custom";

export function detectDumpKind(file: string): DumpKind {
  const head = Buffer.alloc(512);
  const fd = openSync(file, "r");
  let n: number;
  try {
    n = readSync(fd, head, 0, head.length, 0);
  } finally {
    closeSync(fd);
  }
  const bytes = head.subarray(0, n);
  if (bytes.subarray(0, 5).toString("latin1") === "PGDMP") return "custom";
  if (bytes[0] === 0x1f && bytes[1] === 0x8b) return "sql.gz";
  if (bytes.length >= 262 && bytes.subarray(257, 262).toString("latin1") === "ustar") {
    throw new CliError(`${file} is a tar archive (pg_dump --format=tar?); restore takes plain SQL (.sql, .sql.gz) or custom-format dumps`, EXIT.USAGE);
  }
  if (bytes[0] === 0x28 && bytes[1] === 0xb5 && bytes[2] === 0x2f && bytes[3] === 0xfd) {
    throw new CliError(`${file} is zstd-compressed SQL; decompress it first (zstd -d), or use pg_dump --format=custom`, EXIT.USAGE);
  }
  const text = bytes.toString("utf8");
  if (!/^(--|SET |\\|CREATE |SELECT |BEGIN|\s)/.test(text) || text.includes("\u0000")) {
    throw new CliError(`${file} does not look like a PostgreSQL dump (plain SQL, gzip-compressed SQL or custom format)`, EXIT.USAGE);
  }
  return "sql";
}

/**
 * The lowest pg_restore major that reads a custom archive, from its header (`PGDMP`, then the
 * archive version): 1.16 is written by pg_dump 17 (pg_restore 16 and older refuse it), 1.15 by 16.
 */
export function archiveMinMajor(file: string): number {
  const head = Buffer.alloc(8);
  const fd = openSync(file, "r");
  try {
    readSync(fd, head, 0, head.length, 0);
  } finally {
    closeSync(fd);
  }
  if (head.subarray(0, 5).toString("latin1") !== "PGDMP" || head[5] !== 1) return 0;
  const minor = head[6]!;
  return minor >= 16 ? 17 + (minor - 16) : minor === 15 ? 16 : 0;
}

async function serverInfo(client: pg.ClientBase): Promise<{ version: string; major: number }> {
  const version = String((await client.query("SHOW server_version")).rows[0].server_version).split(" ")[0]!;
  const major = Math.floor(Number((await client.query("SHOW server_version_num")).rows[0].server_version_num) / 10000);
  return { version, major };
}

/**
 * The psql that loads dumps: one that knows `\restrict`, whatever the dump holds, since the load
 * runs in restricted mode. An older psql is refused (not worked around with a filter: only psql's
 * own lexer knows where a meta-command starts).
 */
async function resolvePsql(local: LocalEnvironment): Promise<PgTool> {
  return resolvePgTool(
    "psql",
    {
      minMajor: 9,
      reason: "it reads the dump in restricted mode (\\restrict), so that the dump can run no psql meta-command",
      refuse: (v) => (!psqlSupportsRestrict(v) ? `${shortVersion(v)} does not know \\restrict (needs 13.22, 14.19, 15.14, 16.10, 17.6 or newer)` : undefined),
    },
    local.tools,
  );
}

/** pg_restore able to read the archive: at least the pg_dump that wrote it (its header says), and the server. */
async function resolvePgRestore(local: LocalEnvironment, file: string, manifest: Manifest | undefined, serverMajor: number): Promise<PgTool> {
  const dumpMajor = Math.max(manifest?.postgres?.pgDump.major ?? 0, archiveMinMajor(file));
  const minMajor = Math.max(dumpMajor, serverMajor);
  return resolvePgTool("pg_restore", { minMajor, reason: dumpMajor > serverMajor ? `the archive was written by pg_dump ${dumpMajor}` : `the server is PostgreSQL ${serverMajor}` }, local.tools);
}

/** The schema owner's login: every dump loads as it (never as a superuser). */
function ownerLogin(local: LocalEnvironment): { user: string; password: string } {
  return { user: local.spec.postgres.user, password: local.connections.credentials.postgres.ownerPassword };
}

/**
 * pg_restore's errors are acceptable when each is the known "newer setting" one. Parallel workers
 * write to one stderr at once, and pg_restore writes its `pg_restore: ` and `error: ` prefixes and
 * the message in separate writes (even the name and its `: `), so they interleave in any order: the known messages are taken
 * out wherever they stand, and nothing but prefixes may be left.
 */
export function onlyKnownRestoreErrors(stderr: string, serverMajor: number): boolean {
  if (serverMajor >= 17) return false;
  const error = /could not execute query: ERROR: {1,2}unrecognized configuration parameter "transaction_timeout"/g;
  const command = /Command was: SET transaction_timeout = 0;/g;
  const ignoredTotal = /errors ignored on restore: (\d+)/g;
  const known = (stderr.match(error) ?? []).length;
  const commands = (stderr.match(command) ?? []).length;
  const ignored = [...stderr.matchAll(ignoredTotal)].map((m) => Number(m[1]));
  // The program name, its colon and the space after it are separate writes too: only those
  // tokens and whitespace may be left.
  const rest = stderr.replace(error, "").replace(command, "").replace(ignoredTotal, "").replace(/pg_restore:|error:|warning:|\s+/g, "");
  // Parallel workers print their errors but count them apart: the leader's total may be lower.
  return known > 0 && commands === known && rest === "" && ignored.length === 1 && ignored[0]! >= 1 && ignored[0]! <= known;
}

export interface LoadProgress {
  bytesRead: number;
  totalBytes: number;
}

/** Streams `source` through `transforms` into a process's stdin; the process's error wins over a broken pipe. */
async function streamInto(source: Readable, transforms: (NodeJS.ReadWriteStream | Writable)[], target: StartedProcess, others: StartedProcess[] = []): Promise<void> {
  try {
    await Promise.all([pipeline([source, ...transforms, target.child.stdin!] as unknown as readonly NodeJS.ReadWriteStream[]), target.exited, ...others.map((o) => o.exited)]);
  } catch (error) {
    const all = [target, ...others];
    // A broken pipe means a process stopped reading: give it a moment to exit and say why.
    if (["EPIPE", "ERR_STREAM_PREMATURE_CLOSE", "ERR_STREAM_DESTROYED"].includes(String((error as { code?: unknown }).code))) {
      await Promise.race([Promise.allSettled(all.map((p) => p.exited)), new Promise((r) => setTimeout(r, 5_000))]);
    }
    const ended = all.filter((p) => p.child.exitCode !== null || p.child.signalCode !== null);
    source.destroy();
    await Promise.all(all.map((p) => p.kill()));
    for (const p of ended) {
      const processError = await p.exited.then(() => undefined, (e: Error) => e);
      if (processError) throw processError;
    }
    throw error;
  }
}

/**
 * Load errors in the operator's terms: gunzip's name the file (a cut or damaged .gz, or one that
 * is not gzip at all), and psql's refusal of a meta-command says that the dump tried to run one.
 */
function nameLoadErrors(file: string): (error: unknown) => never {
  return (error) => {
    const code = (error as { code?: unknown }).code;
    const message = String((error as Error).message);
    if (typeof code === "string" && code.startsWith("Z_")) throw new CliError(`${path.basename(file)} is not a complete gzip stream (truncated or damaged: ${message})`, EXIT.ERROR);
    if (/backslash commands are restricted|\\unrestrict: wrong key/.test(message)) {
      throw new CliError(
        `${path.basename(file)} contains a psql meta-command (\\! \\o \\copy \\i \\connect \\setenv …); a dump is data, and restore runs none of them: refused, nothing was changed`,
        EXIT.ERROR,
        "a dump from pg_dump has none besides its own \\restrict / \\unrestrict lines (pg_dump --create adds \\connect: dump without --create); load a script you wrote yourself with psql, not restore",
      );
    }
    throw error;
  };
}

function readWithProgress(file: string, onProgress?: (p: LoadProgress) => void): Readable {
  const totalBytes = statSync(file).size;
  const stream = createReadStream(file, { highWaterMark: 1024 * 1024 });
  let bytesRead = 0;
  stream.on("data", (chunk) => {
    bytesRead += chunk.length;
    onProgress?.({ bytesRead, totalBytes });
  });
  return stream;
}

// ---- whole database --------------------------------------------------------------------------

export interface PreparedDatabaseRestore {
  /** The database holding the restored data until the swap. */
  database: string;
  serverVersion: string;
  tool: string;
  /** Rows per table in the restored database (checked against the manifest when there is one). */
  tables: Record<string, number>;
  migrationHead: string | null;
  /** Lines of the dump left out as incompatible with this server (or not the owner's to run). */
  droppedLines: string[];
  seconds: number;
  /** Renames the restored database into place and drops the old one. */
  swap(log: (m: string) => void): Promise<{ replaced: boolean; seconds: number }>;
  /** Drops the restored database (the live one was never touched). */
  discard(): Promise<void>;
}

export interface DatabaseRestoreOptions {
  kind: DumpKind;
  manifest?: Manifest;
  /** `pg_restore --jobs` for a custom archive (default 2); a plain SQL dump is one psql stream. */
  jobs?: number;
  onProgress?: (p: LoadProgress) => void;
  /** Progress lines while the server loads (rows copied, indexes built), about once a second. */
  progress?: (m: string) => void;
  log: (m: string) => void;
}

/**
 * Reports what the server is doing in the new database (pg_stat_progress_copy and
 * pg_stat_progress_create_index): the load's progress whatever tool feeds it.
 */
function watchLoad(local: LocalEnvironment, database: string, progress?: (m: string) => void, expected: Record<string, number> = {}): () => Promise<void> {
  if (!progress) return async () => undefined;
  const started = Date.now();
  let stop: () => void = () => undefined;
  // Stopping wakes the loop at once: the restore never waits out the rest of a second.
  const stopped = new Promise<"stopped">((resolve) => (stop = () => resolve("stopped")));
  // Connected to the new database itself, so that relation ids resolve to names.
  const watching = withPg(local.connection("admin", database), async (client) => {
    for (;;) {
      const next = await Promise.race([stopped, new Promise<"tick">((resolve) => setTimeout(() => resolve("tick"), 1000).unref())]);
      if (next === "stopped") break;
      const { rows } = await client.query(
        // A table loaded over several sessions has one COPY each: summed.
        `SELECT 'copy' AS kind, c.relid::regclass::text AS rel, sum(c.tuples_processed) AS n FROM pg_stat_progress_copy c WHERE c.datname = $1 GROUP BY c.relid
         UNION ALL SELECT 'index', i.relid::regclass::text, i.blocks_done FROM pg_stat_progress_create_index i WHERE i.datname = $1`,
        [database],
      );
      const parts = (rows as { kind: string; rel: string | null; n: string }[]).map((r) => (r.kind === "copy" ? `${Number(r.n).toLocaleString("en-US")}${r.rel && expected[r.rel] !== undefined ? ` of ${expected[r.rel]!.toLocaleString("en-US")}` : ""} rows into ${r.rel}` : `building an index of ${r.rel}`));
      progress(`restore: postgres ${((Date.now() - started) / 1000).toFixed(0)} s: ${parts.join(", ") || "working"}`);
    }
  }).catch(() => undefined);
  return async () => {
    stop();
    await watching;
  };
}

/** The names of the restore's and the old databases: `<db>__restore_<hex>`, `<db>__old_<hex>`. */
function sideNames(database: string): { restore: string; old: string; pattern: string } {
  const base = database.slice(0, 40);
  const tag = randomBytes(3).toString("hex");
  return { restore: `${base}__restore_${tag}`, old: `${base}__old_${tag}`, pattern: `${base}\\_\\_restore\\_%|${base}\\_\\_old\\_%` };
}

/**
 * What the load's role (the schema owner) could change outside the database it loads into: the
 * live database's settings, privileges, connection limit, flags and comment, and the owner role's
 * own settings, connection limit and expiry. Taken before and after the load: a dump that changed
 * any of it is refused, and what it changed is put back (restoreSharedState).
 */
interface SharedState {
  settings: { inDatabase: boolean; forRole: boolean; config: string[] }[];
  acl: { grantee: string; privilege: string; grantable: boolean }[];
  database: { connlimit: number; allowconn: boolean; istemplate: boolean; comment: string | null };
  role: { connlimit: number; validuntil: string | null };
}

async function sharedState(client: pg.ClientBase, database: string, owner: string): Promise<SharedState> {
  const { rows } = await client.query(
    `SELECT json_build_object(
       'settings', coalesce((SELECT json_agg(json_build_object('inDatabase', s.setdatabase <> 0, 'forRole', s.setrole <> 0, 'config', s.setconfig) ORDER BY s.setdatabase, s.setrole)
                      FROM pg_db_role_setting s
                     WHERE (s.setdatabase = d.oid AND s.setrole IN (0, r.oid)) OR (s.setdatabase = 0 AND s.setrole = r.oid)), '[]'::json),
       'acl', coalesce((SELECT json_agg(json_build_object('grantee', CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END, 'privilege', a.privilege_type, 'grantable', a.is_grantable) ORDER BY 1, 2)
                 FROM aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a), '[]'::json),
       'database', json_build_object('connlimit', d.datconnlimit, 'allowconn', d.datallowconn, 'istemplate', d.datistemplate, 'comment', shobj_description(d.oid, 'pg_database')),
       'role', json_build_object('connlimit', r.rolconnlimit, 'validuntil', r.rolvaliduntil::text)
     )::text AS state
     FROM pg_database d, pg_roles r WHERE d.datname = $1 AND r.rolname = $2`,
    [database, owner],
  );
  return JSON.parse(String(rows[0].state)) as SharedState;
}

/** Puts back what sharedState() saw before the load (run as a superuser). */
async function restoreSharedState(client: pg.ClientBase, database: string, owner: string, before: SharedState, after: SharedState): Promise<void> {
  const db = sqlIdent(database);
  const role = sqlIdent(owner);
  const target = (s: { inDatabase: boolean; forRole: boolean }) => (s.inDatabase && s.forRole ? `ROLE ${role} IN DATABASE ${db}` : s.inDatabase ? `DATABASE ${db}` : `ROLE ${role}`);
  const differs = (k: keyof SharedState) => JSON.stringify(before[k]) !== JSON.stringify(after[k]);
  if (differs("settings")) {
    for (const scope of [...after.settings, ...before.settings]) await client.query(`ALTER ${target(scope)} RESET ALL`);
    for (const scope of before.settings) {
      for (const setting of scope.config) {
        const at = setting.indexOf("=");
        await client.query(`ALTER ${target(scope)} SET ${sqlIdent(setting.slice(0, at))} TO ${sqlLiteral(setting.slice(at + 1))}`);
      }
    }
  }
  if (differs("acl")) {
    const grantee = (g: string) => (g === "PUBLIC" ? "PUBLIC" : sqlIdent(g));
    for (const g of new Set([...after.acl, ...before.acl].map((a) => a.grantee))) await client.query(`REVOKE ALL ON DATABASE ${db} FROM ${grantee(g)} CASCADE`);
    for (const a of before.acl) await client.query(`GRANT ${a.privilege} ON DATABASE ${db} TO ${grantee(a.grantee)}${a.grantable ? " WITH GRANT OPTION" : ""}`);
  }
  if (differs("database")) {
    await client.query(`ALTER DATABASE ${db} WITH CONNECTION LIMIT ${Number(before.database.connlimit)} ALLOW_CONNECTIONS ${before.database.allowconn} IS_TEMPLATE ${before.database.istemplate}`);
    await client.query(`COMMENT ON DATABASE ${db} IS ${before.database.comment === null ? "NULL" : sqlLiteral(before.database.comment)}`);
  }
  if (differs("role")) {
    await client.query(`ALTER ROLE ${role} WITH CONNECTION LIMIT ${Number(before.role.connlimit)} VALID UNTIL ${sqlLiteral(before.role.validuntil ?? "infinity")}`);
  }
}

/** The parts of two shared states that differ, for the message. */
function sharedChanges(before: SharedState, after: SharedState): string[] {
  return (Object.keys(before) as (keyof SharedState)[]).filter((k) => JSON.stringify(before[k]) !== JSON.stringify(after[k])).map((k) => ({ settings: "settings (ALTER DATABASE/ROLE … SET)", acl: "privileges on the database", database: "connection limit, connections allowed, template flag or comment", role: "connection limit or expiry of the role" })[k]);
}

/**
 * The public tables each prefix of this code's migrations makes: element i holds the tables after
 * the first i+1 migrations. Derived for real, as drift derives its reference: the migrations run
 * one by one as the schema owner in a scratch database `name` on the same server, then dropped.
 */
async function tablesByMigration(local: LocalEnvironment, serverMajor: number, name: string): Promise<string[][]> {
  // The answer depends only on the migrations' text and the server's major: kept on disk by both,
  // so only the first restore after a change of either pays for the scratch run.
  const hash = createHash("sha256").update(`postgres ${serverMajor}\n`);
  for (const m of knownMigrations()) hash.update(`${m}\n`).update(readFileSync(path.join(MIGRATIONS_DIR, `${m}.ts`)));
  const key = hash.digest("hex");
  const cacheFile = path.join(ephemeralRoot(), "restore-tables-by-migration.json");
  let cache: Record<string, string[][]> = {};
  try {
    cache = JSON.parse(readFileSync(cacheFile, "utf8"));
  } catch {
    cache = {};
  }
  if (Array.isArray(cache[key])) return cache[key]!;
  const steps = await migrateInScratch(local, name);
  try {
    writeFileAtomic(cacheFile, JSON.stringify({ [key]: steps }) + "\n", 0o600);
  } catch {
    // a cache only
  }
  return steps;
}

async function migrateInScratch(local: LocalEnvironment, name: string): Promise<string[][]> {
  const { spec, connections } = local;
  const { migrate } = await import("../db/migrate.js");
  return withPg(local.connection("admin", "postgres"), async (admin) => {
    await admin.query(`CREATE DATABASE ${sqlIdent(name)} OWNER ${sqlIdent(spec.postgres.user)} TEMPLATE template0`);
    try {
      await withPg(local.connection("admin", name), (c) => c.query(privilegesSql({ ...spec, postgres: { ...spec.postgres, database: name } })));
      return await withPg(connections.postgresConfig("owner", name), async (client) => {
        const steps: string[][] = [];
        for (let i = 0; i < knownMigrations().length; i++) {
          await migrate(client, { direction: "up", count: 1 });
          steps.push(await publicTables(client));
        }
        return steps;
      });
    } finally {
      await admin.query(`DROP DATABASE IF EXISTS ${sqlIdent(name)} WITH (FORCE)`).catch(() => undefined);
    }
  });
}

export async function prepareDatabaseRestore(local: LocalEnvironment, file: string, options: DatabaseRestoreOptions): Promise<PreparedDatabaseRestore> {
  const started = Date.now();
  const { spec, connections } = local;
  const database = spec.postgres.database;
  const names = sideNames(database);
  const server = await withPg(local.connection("admin", "postgres"), async (client) => {
    const info = await serverInfo(client);
    // Left by a killed restore (we hold the environment's lock, so none is in use).
    const [restorePattern, oldPattern] = names.pattern.split("|");
    const { rows: leftovers } = await client.query("SELECT datname FROM pg_database WHERE datname LIKE $1 OR datname LIKE $2", [restorePattern, oldPattern]);
    for (const { datname } of leftovers) {
      options.log(`postgres: dropping ${datname}, left by an interrupted restore`);
      await client.query(`DROP DATABASE IF EXISTS ${sqlIdent(datname)} WITH (FORCE)`);
    }
    const { rows } = await client.query(
      `SELECT pg_encoding_to_char(encoding) AS encoding, datcollate, datctype FROM pg_database WHERE datname = $1
        UNION ALL SELECT pg_encoding_to_char(encoding), datcollate, datctype FROM pg_database WHERE datname = 'template1' LIMIT 1`,
      [database],
    );
    const like = rows[0] as { encoding: string; datcollate: string; datctype: string };
    await client.query(
      `CREATE DATABASE ${sqlIdent(names.restore)} TEMPLATE template0 ENCODING ${sqlLiteral(like.encoding)} LC_COLLATE ${sqlLiteral(like.datcollate)} LC_CTYPE ${sqlLiteral(like.datctype)}`,
    );
    return info;
  });
  const discard = async () => {
    await withPg(local.connection("admin", "postgres"), (c) => c.query(`DROP DATABASE IF EXISTS ${sqlIdent(names.restore)} WITH (FORCE)`)).catch(() => undefined);
  };
  // What a database of this project holds, derived from the migrations while the dump loads.
  const presetExtensions = bootstrapExtensions(spec);
  // pg_restore's tool, staging and list while the new database is bootstrapped.
  const archive = options.kind === "custom" ? prepareArchive(local, file, options.manifest, server.major, presetExtensions) : undefined;
  archive?.catch(() => undefined);
  // Its name matches the restore's: one a killed restore leaves is dropped by the next.
  const expectedTables = tablesByMigration(local, server.major, `${names.restore}_migrations`);
  expectedTables.catch(() => undefined);
  try {
    // Owner, grants and default privileges of the spec's roles, as `up` gives the live database.
    const { ownerPassword, appPassword, readonlyPassword } = connections.credentials.postgres;
    const bootstrap = bootstrapSql({ ...spec, postgres: { ...spec.postgres, database: names.restore } }, { owner: ownerPassword, app: appPassword, readonly: readonlyPassword });
    await withPg(local.connection("admin", names.restore), (c) => applyRoleSql(c, bootstrap));
    options.log(`postgres: loading the dump into a new database ${names.restore}, as ${spec.postgres.user}`);
    /** What loaded the dump, for the report: "psql 15.18 (/usr/bin/psql)". */
    let tool: string;
    let droppedLines: string[] = [];
    const stopWatching = watchLoad(local, names.restore, options.progress, options.manifest?.postgres?.tables);
    // A superuser session on the live database during the load: the owner, whom the dump runs as,
    // owns that database too, and DROP DATABASE … WITH (FORCE) cannot end a superuser's session.
    const liveExists = await withPg(local.connection("admin", "postgres"), async (c) => (await c.query("SELECT 1 FROM pg_database WHERE datname = $1", [database])).rowCount === 1);
    let guard: pg.Client | undefined;
    let before: SharedState | undefined;
    try {
      if (liveExists) {
        guard = await connectPg(local.connection("admin", database));
        before = await sharedState(guard, database, spec.postgres.user);
      }
      if (archive) {
        const prepared = await archive;
        droppedLines = await runPgRestore(prepared, local, file, names.restore, server.major, options.jobs ?? 2, options.onProgress);
        tool = `${toolLabel(prepared.tool)}, --jobs ${options.jobs ?? 2}`;
      } else {
        const psql = await resolvePsql(local);
        droppedLines = await loadPlainSql(psql, local, file, options.kind === "sql.gz" ? "sql.gz" : "sql", names.restore, server.major, presetExtensions, options.onProgress);
        tool = toolLabel(psql);
      }
    } finally {
      await archive?.then((a) => a.cleanup(), () => undefined);
      await stopWatching();
      // The owner may change its own role (its password, settings): back to what `up` set.
      await withPg(local.connection("admin", names.restore), (c) => c.query(bootstrap)).catch(() => undefined);
      try {
        const after = guard && before ? await sharedState(guard, database, spec.postgres.user) : undefined;
        const changed = before && after ? sharedChanges(before, after) : [];
        if (changed.length) {
          await restoreSharedState(guard!, database, spec.postgres.user, before!, after!);
          const fixed = sharedChanges(before!, await sharedState(guard!, database, spec.postgres.user));
          throw new CliError(
            `restore refused: the dump changed what lies outside the database it loads into: ${changed.join("; ")} of the live database ${database} or of role ${spec.postgres.user}` +
              (fixed.length ? `; NOT all put back: ${fixed.join("; ")}` : "; put back as it was"),
            EXIT.PROBLEM,
            "a dump from pg_dump changes nothing outside its own database: check where this one came from",
          );
        }
      } finally {
        await guard?.end().catch(() => undefined);
      }
    }
    if (droppedLines.length) options.log(`postgres: left out ${droppedLines.length} line(s) of the dump: ${[...new Set(droppedLines)].join(" ")}`);
    const checked = await withPg(local.connection("admin", names.restore), async (c) => checkRestoredDatabase(c, options.manifest, await expectedTables));
    // The dump's tables got the owner's default privileges (pg_dump restates only ACLs that differ
    // from the built-in default): the migrations' bookkeeping goes back to owner-only, as after `up`.
    await withPg(local.connection("admin", names.restore), (c) => applyRoleSql(c, postMigrationSql(spec, MIGRATIONS_TABLE)));
    return {
      database: names.restore,
      serverVersion: server.version,
      tool,
      tables: checked.tables,
      migrationHead: checked.head,
      droppedLines,
      seconds: (Date.now() - started) / 1000,
      swap: (log) => swapDatabases(local, names.restore, names.old, database, log),
      discard,
    };
  } catch (error) {
    await archive?.then((a) => a.cleanup(), () => undefined);
    await expectedTables.catch(() => undefined); // its scratch database is dropped before the process can end
    await discard();
    throw error;
  }
}

/**
 * Plain SQL (.sql, or .sql.gz through gunzip) into ONE psql, as the schema owner, in restricted
 * mode: the stream starts with `\restrict KEY` and ends with `\unrestrict KEY` (RestrictedDumpStream).
 */
async function loadPlainSql(
  tool: PgTool,
  local: LocalEnvironment,
  file: string,
  kind: "sql" | "sql.gz",
  database: string,
  serverMajor: number,
  presetExtensions: string[],
  onProgress?: (p: LoadProgress) => void,
): Promise<string[]> {
  const filter = new RestrictedDumpStream({ serverMajor, key: restrictKey(), presetExtensions });
  const psql = startProcess(loadingPsql(tool, local, database), { what: `psql (${tool.location})`, stdio: ["pipe", "ignore", "pipe"] });
  await streamInto(readWithProgress(file, onProgress), kind === "sql.gz" ? [createGunzip(), filter] : [filter], psql).catch(nameLoadErrors(file));
  return filter.dropped;
}

/** "pg_restore 17.12 (docker run IMAGE)". */
function toolLabel(tool: PgTool): string {
  return `${tool.name} ${shortVersion(tool.version)} (${tool.location})`;
}

/** psql loading a whole dump into the new database (no commit waits for its WAL flush: a failed load is dropped anyway). */
function loadingPsql(tool: PgTool, local: LocalEnvironment, database: string): PgCommand {
  const owner = ownerLogin(local);
  return tool.command(psqlArgs(tool, owner.user, database), { password: owner.password, stdin: true, env: { PGOPTIONS: "-c synchronous_commit=off" } });
}

/** psql as every restore runs it: no psqlrc, quiet, stopping at the first error. */
export function psqlArgs(tool: PgTool, user: string, database: string): string[] {
  return ["--no-psqlrc", "--quiet", "--set", "ON_ERROR_STOP=1", ...connectionArgs(tool, user, database)];
}

/**
 * The archive's table of contents minus the entries the owner may not run: COMMENT ON EXTENSION
 * of the extensions the roles bootstrap created (only their owner, a superuser, may comment).
 * Returns the list for `pg_restore -L`, and the entries left out.
 */
async function restoreList(tool: PgTool, staged: { path: string; mount?: string }, presetExtensions: string[]): Promise<{ list: string; dropped: string[] }> {
  const command = tool.command(["--list", staged.path], { password: "", files: [staged] });
  const { stdout } = await run(command.file, command.args, { env: command.env, timeout: 120_000}).catch((error: { stderr?: string; message: string }) => {
    throw new CliError(`pg_restore --list (${tool.location}) failed: ${(error.stderr || error.message).trim().split("\n").slice(-3).join(" | ")}`, EXIT.ERROR);
  });
  const dropped: string[] = [];
  const kept = stdout.split("\n").filter((line) => {
    const match = /^\d+; \d+ \d+ COMMENT - EXTENSION (\S+)/.exec(line);
    if (match && presetExtensions.includes(match[1]!)) {
      dropped.push(`COMMENT ON EXTENSION ${match[1]}`);
      return false;
    }
    return true;
  });
  return { list: kept.join("\n"), dropped };
}

/** A custom archive made ready for pg_restore: the tool, the archive and its edited list where the tool sees them. */
interface PreparedArchive {
  tool: PgTool;
  staged: StagedFile;
  stagedList: StagedFile;
  /** TOC entries left out (see restoreList). */
  dropped: string[];
  cleanup(): Promise<void>;
}

/** Resolves pg_restore, stages the archive and writes its list: done while the new database is made. */
async function prepareArchive(local: LocalEnvironment, file: string, manifest: Manifest | undefined, serverMajor: number, presetExtensions: string[]): Promise<PreparedArchive> {
  const tool = await resolvePgRestore(local, file, manifest, serverMajor);
  const staged = await tool.stageFile(file);
  const work = mkdtempSync(path.join(os.tmpdir(), "cpi-restore-"));
  let stagedList: StagedFile | undefined;
  const cleanup = async () => {
    await stagedList?.cleanup();
    await staged.cleanup();
    rmSync(work, { recursive: true, force: true });
  };
  try {
    const { list, dropped } = await restoreList(tool, staged, presetExtensions);
    const listFile = path.join(work, "toc.list");
    writeFileSync(listFile, list, { mode: 0o644 });
    stagedList = await tool.stageFile(listFile);
    return { tool, staged, stagedList, dropped, cleanup };
  } catch (error) {
    await cleanup();
    throw error;
  }
}

async function runPgRestore(archive: PreparedArchive, local: LocalEnvironment, file: string, database: string, serverMajor: number, jobs: number, onProgress?: (p: LoadProgress) => void): Promise<string[]> {
  const { tool, staged, stagedList } = archive;
  // A newer pg_restore sends settings an older server rejects, once per connection: those errors
  // (and only those) are accepted, so --exit-on-error cannot be used then.
  const tolerant = tool.version.major > serverMajor && serverMajor < 17;
  const owner = ownerLogin(local);
  const args = [...connectionArgs(tool, owner.user, database), `--jobs=${jobs}`, `--use-list=${stagedList.path}`, ...(tolerant ? [] : ["--exit-on-error"]), staged.path];
  const totalBytes = statSync(file).size;
  const restore = startProcess(tool.command(args, { password: owner.password, files: [staged, stagedList], env: { PGOPTIONS: "-c synchronous_commit=off", PG_COLOR: "never" } }), {
    what: `pg_restore (${tool.location})`,
    stdio: ["ignore", "ignore", "pipe"],
    accept: (code, stderr) => tolerant && code === 1 && onlyKnownRestoreErrors(stderr, serverMajor),
  });
  await restore.exited;
  onProgress?.({ bytesRead: totalBytes, totalBytes });
  return archive.dropped;
}

/**
 * Whether the restored database is a database of this project, before anything is swapped in:
 * its migrations are a non-empty prefix of this code's (none at all is not "known": a dump that
 * creates nothing would otherwise replace good data with nothing), the tables those migrations
 * make are all there, and its row counts match the manifest when there is one.
 */
async function checkRestoredDatabase(client: pg.ClientBase, manifest: Manifest | undefined, tablesAfter: string[][]): Promise<{ tables: Record<string, number>; head: string | null }> {
  const known = knownMigrations();
  const noHint = "restore a backup made by `npm run backup`, or a pg_dump of an environment of this project; nothing was changed";
  if (!(await client.query("SELECT to_regclass($1) IS NOT NULL AS present", [`public.${MIGRATIONS_TABLE}`])).rows[0].present) {
    throw new CliError(`restore check failed: the dump is not a database of this project: it has no ${MIGRATIONS_TABLE} table (the migrations' record)`, EXIT.PROBLEM, noHint);
  }
  const applied = await appliedMigrations(client);
  const unknown = applied.filter((m) => !known.includes(m));
  if (unknown.length) {
    throw new CliError(
      `the dump's schema is newer than this code: migration(s) ${unknown.join(", ")} are unknown here (newest known: ${known.at(-1)})`,
      EXIT.PROBLEM,
      "restore with the version of the toolkit that made the backup, or update this checkout",
    );
  }
  if (!applied.length) throw new CliError(`restore check failed: the dump is not a database of this project: its ${MIGRATIONS_TABLE} table records no migration`, EXIT.PROBLEM, noHint);
  if (applied.some((m, i) => known[i] !== m)) {
    throw new CliError(`restore check failed: the dump's migrations (${applied.join(", ")}) are not the first ${applied.length} of this code's (${known.slice(0, applied.length).join(", ")})`, EXIT.PROBLEM, noHint);
  }
  const present = new Set(await publicTables(client));
  const required = tablesAfter[applied.length - 1] ?? [];
  const missingTables = required.filter((t) => !present.has(t));
  if (missingTables.length) {
    throw new CliError(`restore check failed: table(s) ${missingTables.join(", ")} that migration ${applied.at(-1)} makes are missing after the load`, EXIT.PROBLEM, noHint);
  }
  const expected = manifest?.postgres?.tables ?? {};
  const tables: Record<string, number> = {};
  for (const table of new Set([...present, ...Object.keys(expected)])) {
    if (!present.has(table)) throw new CliError(`restore check failed: table ${table} of the backup is missing after the load`, EXIT.PROBLEM);
    tables[table] = Number((await client.query(`SELECT count(*) AS n FROM public.${sqlIdent(table)}`)).rows[0].n);
  }
  const wrong = Object.entries(expected).filter(([t, n]) => tables[t] !== n);
  if (wrong.length) {
    throw new CliError(`restore check failed: row counts differ from the manifest: ${wrong.map(([t, n]) => `${t} ${tables[t]} (backup: ${n})`).join(", ")}`, EXIT.PROBLEM);
  }
  return { tables, head: applied.at(-1) ?? null };
}

/**
 * Puts the restored database in place: the live one refuses new connections, its sessions are
 * terminated, both renames commit in one transaction, then the old one is dropped. Database-level
 * settings (ALTER DATABASE … SET) of the live database are carried over.
 */
async function swapDatabases(local: LocalEnvironment, restored: string, old: string, database: string, log: (m: string) => void): Promise<{ replaced: boolean; seconds: number }> {
  const started = Date.now();
  return withPg(local.connection("admin", "postgres"), async (client) => {
    const exists = (await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [database])).rowCount === 1;
    if (!exists) {
      await client.query(`ALTER DATABASE ${sqlIdent(restored)} RENAME TO ${sqlIdent(database)}`);
      return { replaced: false, seconds: (Date.now() - started) / 1000 };
    }
    const { rows: settings } = await client.query(
      `SELECT unnest(s.setconfig) AS setting FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = $1 AND s.setrole = 0`,
      [database],
    );
    for (const { setting } of settings as { setting: string }[]) {
      const at = setting.indexOf("=");
      await client.query(`ALTER DATABASE ${sqlIdent(restored)} SET ${sqlIdent(setting.slice(0, at))} TO ${sqlLiteral(setting.slice(at + 1))}`);
    }
    log(`postgres: swapping ${restored} in for ${database} (its sessions are ended)`);
    await client.query(`ALTER DATABASE ${sqlIdent(database)} ALLOW_CONNECTIONS false`);
    try {
      const deadline = Date.now() + 30_000;
      for (;;) {
        const { rows } = await client.query("SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", [database]);
        if (!rows.length) break;
        if (Date.now() > deadline) throw new CliError(`sessions on ${database} did not end within 30 s`, EXIT.ERROR);
      }
      await client.query("BEGIN");
      await client.query(`ALTER DATABASE ${sqlIdent(database)} RENAME TO ${sqlIdent(old)}`);
      await client.query(`ALTER DATABASE ${sqlIdent(restored)} RENAME TO ${sqlIdent(database)}`);
      await client.query("COMMIT");
    } catch (error) {
      await client.query("ROLLBACK").catch(() => undefined);
      await client.query(`ALTER DATABASE ${sqlIdent(database)} ALLOW_CONNECTIONS true`).catch(() => undefined);
      throw error;
    }
    // The restore is done; an old copy that cannot be dropped now is dropped by the next restore.
    await client.query(`DROP DATABASE ${sqlIdent(old)} WITH (FORCE)`).catch((error: Error) => log(`postgres: warning: could not drop the old database ${old}: ${error.message}`));
    return { replaced: true, seconds: (Date.now() - started) / 1000 };
  });
}

// ---- tables ----------------------------------------------------------------------------------

export interface TableRestoreReport {
  tables: Record<string, number>;
  tool: string;
  droppedLines: string[];
  seconds: number;
}

interface ForeignKey {
  name: string;
  child: string;
  parent: string;
  childColumns: string[];
  parentColumns: string[];
}

export async function restoreTables(
  local: LocalEnvironment,
  file: string,
  tables: string[],
  options: { kind: DumpKind; manifest?: Manifest; onProgress?: (p: LoadProgress) => void; log: (m: string) => void },
): Promise<TableRestoreReport> {
  const started = Date.now();
  const database = local.spec.postgres.database;
  const { server, sequences, foreignKeys } = await withPg(local.connection("admin", database), async (client) => {
    const info = await serverInfo(client);
    const names = await publicTables(client);
    for (const t of tables) {
      if (!names.includes(t)) throw new CliError(`--table ${JSON.stringify(t)}: no such table in ${database}`, EXIT.USAGE, `tables: ${names.join(", ")}`);
    }
    const regclasses = tables.map((t) => `public.${sqlIdent(t)}`);
    const { rows: seqs } = await client.query(
      `SELECT DISTINCT n.nspname || '.' || s.relname AS name FROM pg_depend d
         JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' JOIN pg_namespace n ON n.oid = s.relnamespace
        WHERE d.refobjid = ANY($1::regclass[]) AND d.deptype IN ('a', 'i')`,
      [regclasses],
    );
    const { rows: fks } = await client.query(
      `SELECT con.conname AS name,
              (SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = con.conrelid) AS child,
              (SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = con.confrelid) AS parent,
              ARRAY(SELECT quote_ident(a.attname) FROM unnest(con.conkey) WITH ORDINALITY k(num, i) JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.num ORDER BY k.i) AS "childColumns",
              ARRAY(SELECT quote_ident(a.attname) FROM unnest(con.confkey) WITH ORDINALITY k(num, i) JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.num ORDER BY k.i) AS "parentColumns"
         FROM pg_constraint con WHERE con.contype = 'f' AND (con.conrelid = ANY($1::regclass[]) OR con.confrelid = ANY($1::regclass[]))`,
      [regclasses],
    );
    return { server: info, sequences: seqs.map((r: { name: string }) => r.name), foreignKeys: fks as ForeignKey[] };
  });

  const expected = options.manifest?.postgres?.tables ?? {};
  const qualified = tables.map((t) => `public.${t}`);
  const header = [
    "BEGIN;",
    // Foreign keys are checked once, below, instead of row by row (and ON DELETE actions of
    // other tables must not fire: their rows point at ids that come back).
    "SET LOCAL session_replication_role = replica;",
    ...tables.map((t) => `LOCK TABLE public.${sqlIdent(t)} IN EXCLUSIVE MODE;`),
    ...tables.map((t) => `DELETE FROM public.${sqlIdent(t)};`),
    "",
  ].join("\n");
  const footer = (seen: Map<string, number>) => {
    const lines: string[] = [];
    const fail = (message: string) => lines.push(`DO $cpi$ BEGIN RAISE EXCEPTION ${sqlLiteral(`restore check failed: ${message}`)}; END $cpi$;`);
    for (const [i, t] of tables.entries()) {
      const rows = seen.get(qualified[i]!);
      if (rows === undefined) fail(`the dump holds no data for table ${t}`);
      else if (expected[t] !== undefined && expected[t] !== rows) fail(`the dump holds ${rows} rows of ${t}, the manifest says ${expected[t]}`);
      const want = expected[t] ?? rows ?? 0;
      lines.push(
        `DO $cpi$ DECLARE n bigint; BEGIN SELECT count(*) INTO n FROM public.${sqlIdent(t)}; IF n <> ${want} THEN RAISE EXCEPTION 'restore check failed: ${t} has % rows after the load, expected ${want}', n; END IF; END $cpi$;`,
      );
    }
    for (const fk of foreignKeys) {
      const notNull = fk.childColumns.map((c) => `c.${c} IS NOT NULL`).join(" AND ");
      const match = fk.childColumns.map((c, i) => `p.${fk.parentColumns[i]} = c.${c}`).join(" AND ");
      lines.push(
        `DO $cpi$ BEGIN IF EXISTS (SELECT 1 FROM ${fk.child} c WHERE ${notNull} AND NOT EXISTS (SELECT 1 FROM ${fk.parent} p WHERE ${match})) THEN ` +
          `RAISE EXCEPTION ${sqlLiteral(`restore check failed: rows of ${fk.child} break foreign key ${fk.name} (to ${fk.parent})`)}; END IF; END $cpi$;`,
      );
    }
    lines.push("COMMIT;", "");
    return lines.join("\n");
  };
  const filter = new TableDataFilter({ tables: qualified, sequences, serverMajor: server.major, key: restrictKey(), header, footer });

  const psqlTool = await resolvePsql(local);
  const restoreTool = options.kind === "custom" ? await resolvePgRestore(local, file, options.manifest, server.major) : undefined;
  const owner = ownerLogin(local);
  const psql = startProcess(psqlTool.command(psqlArgs(psqlTool, owner.user, database), { password: owner.password, stdin: true }), {
    what: `psql (${psqlTool.location})`,
    stdio: ["pipe", "ignore", "pipe"],
  });
  let label = toolLabel(psqlTool);
  options.log(`postgres: replacing the rows of ${tables.join(", ")} in one transaction, as ${owner.user}`);
  if (restoreTool) {
    const staged = await restoreTool.stageFile(file);
    const output = await restoreTool.outputPipe();
    try {
      // pg_restore writes the data of the table (and its sequences) as SQL, without connecting;
      // the filter frames it with the transaction and its checks.
      const selection = ["--schema=public", ...tables.map((t) => `--table=${t}`), ...sequences.map((q) => `--table=${q.slice(q.indexOf(".") + 1)}`)];
      const toSql = startProcess(restoreTool.command(["--data-only", ...selection, `--file=${output.path}`, staged.path], { password: "", files: [staged, output] }), {
        what: `pg_restore (${restoreTool.location})`,
        stdio: ["ignore", output.pipe ? "ignore" : "pipe", "pipe"],
      });
      // pg_restore failing before it opens the pipe leaves the reader waiting: released once it exits.
      const release = () => void output.cleanup();
      toSql.exited.then(release, release);
      const script = output.pipe ? createReadStream(output.pipe, { highWaterMark: 256 * 1024 }) : toSql.child.stdout!;
      await streamInto(script, [filter], psql, [toSql]).catch(nameLoadErrors(file));
    } finally {
      await output.cleanup();
      await staged.cleanup();
    }
    label = `${toolLabel(restoreTool)} + ${label}`;
  } else {
    await streamInto(readWithProgress(file, options.onProgress), options.kind === "sql.gz" ? [createGunzip(), filter] : [filter], psql).catch(nameLoadErrors(file));
  }
  const counts: Record<string, number> = {};
  for (const [i, t] of tables.entries()) counts[t] = filter.rows.get(qualified[i]!) ?? 0;
  return { tables: counts, tool: label, droppedLines: filter.dropped, seconds: (Date.now() - started) / 1000 };
}

/** Whether the target holds data: rows in any of the tables (pgmigrations aside). */
export async function postgresHasData(local: LocalEnvironment, tables?: string[]): Promise<string[]> {
  const database = local.spec.postgres.database;
  return withPg(local.connection("admin", "postgres"), async (admin) => {
    const exists = (await admin.query("SELECT 1 FROM pg_database WHERE datname = $1", [database])).rowCount === 1;
    if (!exists) return [];
    return withPg(local.connection("admin", database), async (client) => {
      const nonEmpty: string[] = [];
      for (const relname of (await publicTables(client)).filter((t) => t !== MIGRATIONS_TABLE)) {
        if (tables && !tables.includes(relname)) continue;
        const { rows: any } = await client.query(`SELECT EXISTS (SELECT 1 FROM public.${sqlIdent(relname)}) AS present`);
        if (any[0].present) nonEmpty.push(relname);
      }
      return nonEmpty;
    });
  });
}
