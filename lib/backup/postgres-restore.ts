/**
 * PostgreSQL restore, in two shapes:
 *
 * - Whole database: the dump is loaded into a NEW database next to the live one, checked (row
 *   counts against the manifest, migrations known to this code), and only then swapped in by
 *   renaming (connections to the old one are refused and terminated first; both renames commit
 *   together). A failed load or check drops the new database and leaves the live one untouched.
 *   A toolkit backup (it has a manifest) loads with its rows spread over COPY sessions
 *   (parallel-load.ts); a dump made elsewhere goes through one psql, or pg_restore --jobs.
 * - Tables (`--table`, or a single-table backup): the table's rows are replaced inside ONE
 *   transaction in the live database (DELETE, COPY from the dump, setval, then row-count and
 *   foreign-key checks, then COMMIT). A failure, or a dump that ends early, commits nothing.
 *
 * Dumps made by a newer pg_dump than the server are accepted: for psql, the known incompatible
 * preamble lines are filtered out of the stream (sql-stream.ts); for pg_restore, which sends the
 * same SET on each of its connections, its errors are accepted only when every one of them is
 * exactly that known error. ON_ERROR_STOP / any other error still fails the restore.
 */
import { closeSync, createReadStream, mkdtempSync, openSync, readSync, rmSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import { randomBytes } from "node:crypto";
import type { Readable, Writable } from "node:stream";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { createGunzip } from "node:zlib";
import type pg from "pg";
import { CliError, EXIT } from "../cli.js";
import { connectPg, withPg } from "../db/clients.js";
import { appliedMigrations, knownMigrations } from "../db/migrate.js";
import { applyRoleSql, bootstrapSql, sqlIdent, sqlLiteral } from "../db/roles.js";
import { startProcess, type StartedProcess } from "../pgtools/process.js";
import { connectionArgs, resolvePgTool, type PgCommand, type PgTool } from "../pgtools/resolve.js";
import { psqlSupportsRestrict, shortVersion } from "../pgtools/version.js";
import type { LocalEnvironment } from "./local-env.js";
import type { Manifest } from "./manifest.js";
import { loadScriptInParallel, ScriptEndedEarly } from "./parallel-load.js";
import { CompatibilityFilter, splitPreamble, TableDataFilter } from "./sql-stream.js";

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

/** The first bytes of a plain or gzip SQL dump, decompressed (to see whether it has `\restrict`). */
async function dumpHead(file: string, kind: DumpKind, bytes = 16 * 1024): Promise<string> {
  const source = createReadStream(file, { start: 0, end: kind === "sql" ? bytes - 1 : 64 * 1024 - 1 });
  const stream: Readable = kind === "sql.gz" ? source.pipe(createGunzip()) : source;
  const chunks: Buffer[] = [];
  let length = 0;
  try {
    for await (const chunk of stream) {
      chunks.push(chunk as Buffer);
      length += (chunk as Buffer).length;
      if (length >= bytes) break;
    }
  } catch {
    // a cut-off gzip member: what was read is enough
  } finally {
    source.destroy();
  }
  // Decoded once: a character split between chunks cannot shift the byte offsets computed from it.
  return Buffer.concat(chunks).toString("utf8");
}

async function serverInfo(client: pg.ClientBase): Promise<{ version: string; major: number }> {
  const version = String((await client.query("SHOW server_version")).rows[0].server_version).split(" ")[0]!;
  const major = Math.floor(Number((await client.query("SHOW server_version_num")).rows[0].server_version_num) / 10000);
  return { version, major };
}

/** The psql for this dump: one that understands `\restrict` when the dump uses it. */
async function resolvePsql(local: LocalEnvironment, file: string, kind: DumpKind): Promise<PgTool> {
  const restricted = kind === "custom" || /^\\restrict /m.test(await dumpHead(file, kind));
  return resolvePgTool(
    "psql",
    {
      minMajor: 9,
      reason: restricted ? "the dump uses \\restrict (pg_dump from August 2025 on)" : "it runs the dump's SQL",
      refuse: (v) => (restricted && !psqlSupportsRestrict(v) ? `${shortVersion(v)} does not know \\restrict (needs 13.22, 14.19, 15.14, 16.10, 17.6 or newer)` : undefined),
    },
    local.tools,
  );
}

/** pg_restore able to read the archive: at least the pg_dump that wrote it, and the server. */
async function resolvePgRestore(local: LocalEnvironment, manifest: Manifest | undefined, serverMajor: number): Promise<PgTool> {
  const dumpMajor = manifest?.postgres?.pgDump.major ?? serverMajor;
  const minMajor = Math.max(dumpMajor, serverMajor);
  return resolvePgTool("pg_restore", { minMajor, reason: `the archive was written by pg_dump ${dumpMajor}` }, local.tools);
}

/**
 * pg_restore's errors are acceptable when each is the known "newer setting" one. Parallel workers
 * write to one stderr at once, so a line can lose its `pg_restore:` prefix or be joined to
 * another: count the messages wherever they stand instead of parsing lines.
 */
export function onlyKnownRestoreErrors(stderr: string, serverMajor: number): boolean {
  if (serverMajor >= 17) return false;
  const count = (pattern: RegExp) => (stderr.match(pattern) ?? []).length;
  const errors = count(/error: /g);
  const known = count(/error: could not execute query: ERROR: {1,2}unrecognized configuration parameter "transaction_timeout"/g);
  const commands = stderr.match(/Command was: [^\n]*/g) ?? [];
  const ignored = /errors ignored on restore: (\d+)/.exec(stderr);
  // Parallel workers print their errors but count them apart: the leader's total may be lower.
  return (
    known > 0 &&
    known === errors &&
    commands.length === known &&
    commands.every((c) => c.trim() === "Command was: SET transaction_timeout = 0;") &&
    ignored !== null &&
    Number(ignored[1]) >= 1 &&
    Number(ignored[1]) <= known
  );
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

/** gunzip errors name the file: a cut or damaged .gz is refused (and was never half-committed). */
function nameGzipErrors(file: string): (error: unknown) => never {
  return (error) => {
    const code = (error as { code?: unknown }).code;
    if (typeof code === "string" && code.startsWith("Z_")) throw new CliError(`${path.basename(file)} is not a complete gzip stream (truncated or damaged: ${(error as Error).message})`, EXIT.ERROR);
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
  /** Lines of the dump dropped as incompatible with this server. */
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
  /**
   * Connections that load rows at once (default 2). A toolkit backup's rows are spread over them
   * (parallel-load.ts); an external custom-format dump gets `pg_restore --jobs` this many.
   */
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
  const watching = withPg(local.pgConfig(database), async (client) => {
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

export async function prepareDatabaseRestore(local: LocalEnvironment, file: string, options: DatabaseRestoreOptions): Promise<PreparedDatabaseRestore> {
  const started = Date.now();
  const { spec, connections } = local.opened;
  const database = spec.postgres.database;
  const names = sideNames(database);
  const server = await withPg(local.pgConfig("postgres"), async (client) => {
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
    await withPg(local.pgConfig("postgres"), (c) => c.query(`DROP DATABASE IF EXISTS ${sqlIdent(names.restore)} WITH (FORCE)`)).catch(() => undefined);
  };
  try {
    // Owner, grants and default privileges of the spec's roles, as `up` gives the live database.
    const { ownerPassword, appPassword, readonlyPassword } = connections.credentials.postgres;
    await withPg(local.pgConfig(names.restore), (c) =>
      applyRoleSql(c, bootstrapSql({ ...spec, postgres: { ...spec.postgres, database: names.restore } }, { owner: ownerPassword, app: appPassword, readonly: readonlyPassword })),
    );
    options.log(`postgres: loading the dump into a new database ${names.restore}`);
    /** What loaded the dump, for the report: "psql 15.18 (/usr/bin/psql)". */
    let tool: string;
    let droppedLines: string[] = [];
    /** Rows the server acknowledged per table loaded over COPY sessions. */
    let copied: Record<string, number> = {};
    const stopWatching = watchLoad(local, names.restore, options.progress, options.manifest?.postgres?.tables);
    try {
      if (options.manifest && options.kind !== "sql" && (options.jobs ?? 2) > 1) {
        // A toolkit backup: pg_dump's script, in pg_dump's order, so its rows can be spread.
        const loaded = await loadInParallel(local, file, options.kind, names.restore, server.major, options.manifest, options.jobs ?? 2);
        tool = loaded.tool;
        droppedLines = loaded.dropped;
        copied = loaded.copied;
      } else if (options.kind === "custom") {
        const pgRestore = await resolvePgRestore(local, options.manifest, server.major);
        await runPgRestore(pgRestore, local, file, names.restore, server.major, options.jobs ?? 2, options.onProgress);
        tool = toolLabel(pgRestore);
      } else {
        const psql = await resolvePsql(local, file, options.kind);
        droppedLines = await loadSql(psql, local, file, options.kind, names.restore, server.major, options.onProgress);
        tool = toolLabel(psql);
      }
    } finally {
      await stopWatching();
    }
    if (droppedLines.length) options.log(`postgres: dropped ${droppedLines.length} line(s) PostgreSQL ${server.major} does not know: ${[...new Set(droppedLines)].join(" ")}`);
    const checked = await withPg(local.pgConfig(names.restore), (c) => checkRestoredDatabase(c, options.manifest, copied));
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
    await discard();
    throw error;
  }
}

/**
 * Plain SQL into psql. The edited preamble (known-incompatible lines out) is written to a 0600
 * temp file; bash then feeds psql that file followed by the rest of the dump straight from gunzip
 * (pipefail: a truncated gzip fails the load), so the dump never passes through Node. A preamble
 * too long to find in the dump's head falls back to filtering the stream in Node.
 */
async function loadSql(tool: PgTool, local: LocalEnvironment, file: string, kind: DumpKind, database: string, serverMajor: number, onProgress?: (p: LoadProgress) => void): Promise<string[]> {
  const psqlCommand = loadingPsql(tool, local, database);
  const what = `psql (${tool.location})`;
  const split = splitPreamble(await dumpHead(file, kind, 256 * 1024), serverMajor);
  if (!split) {
    const filter = new CompatibilityFilter(serverMajor);
    const psql = startProcess(psqlCommand, { what, stdio: ["pipe", "ignore", "pipe"] });
    await streamInto(readWithProgress(file, onProgress), kind === "sql.gz" ? [createGunzip(), filter] : [filter], psql).catch(nameGzipErrors(file));
    return filter.dropped;
  }
  const work = mkdtempSync(path.join(os.tmpdir(), "cpi-restore-"));
  const preamble = path.join(work, "preamble.sql");
  writeFileSync(preamble, split.preamble, { mode: 0o600 });
  try {
    const script = kind === "sql.gz" ? `cat "$1" && gzip -dc "$2" | tail -c +"$3"` : `cat "$1" && tail -c +"$3" "$2"`;
    const feeder = startProcess({ file: "bash", args: ["-o", "pipefail", "-c", script, "restore-feed", preamble, file, String(split.restOffset + 1)], env: process.env }, {
      what: `reading ${path.basename(file)}`,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const psql = startProcess(psqlCommand, { what, stdio: [feeder.child.stdout!, "ignore", "pipe"] });
    feeder.child.stdout!.destroy(); // psql holds its own copy of the pipe
    const totalBytes = statSync(file).size;
    try {
      await Promise.all([feeder.exited, psql.exited]);
    } catch (error) {
      await Promise.all([feeder.kill(), psql.kill()]);
      const feedError = await feeder.exited.then(() => undefined, (e: Error) => e);
      if (feedError && /gzip|unexpected end|crc|format/i.test(feedError.message)) {
        throw new CliError(`${path.basename(file)} is not a complete gzip stream (truncated or damaged): ${feedError.message}`, EXIT.ERROR);
      }
      throw (await psql.exited.then(() => undefined, (e: Error) => e)) ?? feedError ?? error;
    }
    onProgress?.({ bytesRead: totalBytes, totalBytes });
    return split.dropped;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/**
 * A toolkit backup's script (gunzip's output, or pg_restore's script of the archive) through
 * loadScriptInParallel: psql runs the statements, `connections` sessions load the rows.
 */
async function loadInParallel(
  local: LocalEnvironment,
  file: string,
  kind: "sql.gz" | "custom",
  database: string,
  serverMajor: number,
  manifest: Manifest,
  connections: number,
): Promise<{ tool: string; dropped: string[]; copied: Record<string, number> }> {
  const psqlTool = await resolvePsql(local, file, kind);
  const restoreTool = kind === "custom" ? await resolvePgRestore(local, manifest, serverMajor) : undefined;
  const staged = restoreTool ? await restoreTool.stageFile(file) : undefined;
  const output = restoreTool ? await restoreTool.outputPipe() : undefined;
  try {
    // pg_restore with --file writes the archive as a script and never connects.
    const source = restoreTool
      ? startProcess(restoreTool.command([`--file=${output!.path}`, staged!.path], { password: "", files: [staged!, output!] }), {
          what: `pg_restore (${restoreTool.location})`,
          stdio: ["ignore", "pipe", "pipe"],
        })
      : startProcess({ file: "gzip", args: ["-dc", file], env: process.env }, { what: `gzip -dc ${path.basename(file)}`, stdio: ["ignore", "pipe", "pipe"] });
    const script = output?.pipe ? createReadStream(output.pipe, { highWaterMark: 256 * 1024 }) : source.child.stdout!;
    // pg_restore failing before it opens the pipe leaves the reader waiting: released once it exits.
    const release = () => void output?.cleanup();
    source.exited.then(release, release);
    const psql = startProcess(loadingPsql(psqlTool, local, database), {
      what: `psql (${psqlTool.location})`,
      stdio: ["pipe", "pipe", "pipe"],
    });
    const loading = loadScriptInParallel({ script, psql, serverMajor, connections, connect: () => connectPg(local.pgConfig(database)) });
    loading.catch(() => source.kill()); // a failed load stops its source (which may be waiting to write)
    const [load, read] = await Promise.allSettled([loading, source.exited]);
    if (load.status === "fulfilled" && read.status === "fulfilled") {
      const tool = `${restoreTool ? `${toolLabel(restoreTool)} script → ` : "gzip -dc → "}${toolLabel(psqlTool)}, rows over ${connections} COPY sessions`;
      return { tool, dropped: load.value.dropped, copied: Object.fromEntries(Object.entries(load.value.spread).map(([table, { rows }]) => [table, rows])) };
    }
    await Promise.all([source.kill(), psql.kill()]);
    // The load's own failure (a refused row, psql's error) is the reason, unless all it saw was its
    // input ending early: then the source's failure (a cut gzip, pg_restore refusing the archive) is.
    const loadError = load.status === "rejected" ? (load.reason as Error) : undefined;
    if (loadError && !(loadError instanceof ScriptEndedEarly)) throw loadError;
    if (read.status === "rejected") {
      const sourceError = read.reason as Error;
      if (kind === "sql.gz") throw new CliError(`${path.basename(file)} is not a complete gzip stream (truncated or damaged): ${sourceError.message}`, EXIT.ERROR);
      throw sourceError;
    }
    throw loadError;
  } finally {
    await output?.cleanup();
    await staged?.cleanup();
  }
}

/** "pg_restore 17.12 (docker run IMAGE)". */
function toolLabel(tool: PgTool): string {
  return `${tool.name} ${shortVersion(tool.version)} (${tool.location})`;
}

/** psql loading a whole dump into the new database (no commit waits for its WAL flush: a failed load is dropped anyway). */
function loadingPsql(tool: PgTool, local: LocalEnvironment, database: string): PgCommand {
  return tool.command(psqlArgs(tool, local, database), { password: local.pgAdmin.password, stdin: true, env: { PGOPTIONS: "-c synchronous_commit=off" } });
}

/** psql as every restore runs it: no psqlrc, quiet, stopping at the first error. */
export function psqlArgs(tool: PgTool, local: LocalEnvironment, database: string): string[] {
  return ["--no-psqlrc", "--quiet", "--set", "ON_ERROR_STOP=1", ...connectionArgs(tool, local.pgAdmin.user, database)];
}

async function runPgRestore(tool: PgTool, local: LocalEnvironment, file: string, database: string, serverMajor: number, jobs: number, onProgress?: (p: LoadProgress) => void): Promise<void> {
  const staged = await tool.stageFile(file);
  // A newer pg_restore sends settings an older server rejects, once per connection: those errors
  // (and only those) are accepted, so --exit-on-error cannot be used then.
  const tolerant = tool.version.major > serverMajor && serverMajor < 17;
  const args = [
    ...connectionArgs(tool, local.pgAdmin.user, database),
    `--jobs=${jobs}`,
    ...(tolerant ? [] : ["--exit-on-error"]),
    staged.path,
  ];
  const totalBytes = statSync(file).size;
  try {
    const restore = startProcess(tool.command(args, { password: local.pgAdmin.password, files: [staged], env: { PGOPTIONS: "-c synchronous_commit=off" } }), {
      what: `pg_restore (${tool.location})`,
      stdio: ["ignore", "ignore", "pipe"],
      accept: (code, stderr) => tolerant && code === 1 && onlyKnownRestoreErrors(stderr, serverMajor),
    });
    await restore.exited;
    onProgress?.({ bytesRead: totalBytes, totalBytes });
  } finally {
    await staged.cleanup();
  }
}

/**
 * Row counts against the manifest; migrations known to this code. `copied` holds the rows the
 * server acknowledged per COPY into a plain (unpartitioned) table of the new database, which
 * nothing else writes to: those are its row counts, and counting them again is skipped.
 */
async function checkRestoredDatabase(client: pg.ClientBase, manifest: Manifest | undefined, copied: Record<string, number> = {}): Promise<{ tables: Record<string, number>; head: string | null }> {
  const expected = manifest?.postgres?.tables ?? {};
  const { rows } = await client.query(
    `SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind IN ('r','p') AND NOT c.relispartition ORDER BY 1`,
  );
  const kinds = new Map((rows as { relname: string; relkind: string }[]).map((r) => [r.relname, r.relkind]));
  const tables: Record<string, number> = {};
  for (const table of new Set([...kinds.keys(), ...Object.keys(expected)])) {
    if (!kinds.has(table)) throw new CliError(`restore check failed: table ${table} of the backup is missing after the load`, EXIT.PROBLEM);
    const acknowledged = kinds.get(table) === "r" ? copied[`public.${table}`] : undefined;
    tables[table] = acknowledged ?? Number((await client.query(`SELECT count(*) AS n FROM public.${sqlIdent(table)}`)).rows[0].n);
  }
  const wrong = Object.entries(expected).filter(([t, n]) => tables[t] !== n);
  if (wrong.length) {
    throw new CliError(`restore check failed: row counts differ from the manifest: ${wrong.map(([t, n]) => `${t} ${tables[t]} (backup: ${n})`).join(", ")}`, EXIT.PROBLEM);
  }
  const applied = await appliedMigrations(client);
  const known = knownMigrations();
  const unknown = applied.filter((m) => !known.includes(m));
  if (unknown.length) {
    throw new CliError(
      `the dump's schema is newer than this code: migration(s) ${unknown.join(", ")} are unknown here (newest known: ${known.at(-1)})`,
      EXIT.PROBLEM,
      "restore with the version of the toolkit that made the backup, or update this checkout",
    );
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
  return withPg(local.pgConfig("postgres"), async (client) => {
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
  const database = local.opened.spec.postgres.database;
  const { server, sequences, foreignKeys } = await withPg(local.pgConfig(database), async (client) => {
    const info = await serverInfo(client);
    const { rows: existing } = await client.query(`SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind IN ('r','p') ORDER BY 1`);
    const names = existing.map((r: { relname: string }) => r.relname);
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
  const filter = new TableDataFilter({ tables: qualified, sequences, serverMajor: server.major, header, footer });

  const psqlTool = await resolvePsql(local, file, options.kind);
  const restoreTool = options.kind === "custom" ? await resolvePgRestore(local, options.manifest, server.major) : undefined;
  const psql = startProcess(psqlTool.command(psqlArgs(psqlTool, local, database), { password: local.pgAdmin.password, stdin: true }), {
    what: `psql (${psqlTool.location})`,
    stdio: ["pipe", "ignore", "pipe"],
  });
  let label = toolLabel(psqlTool);
  options.log(`postgres: replacing the rows of ${tables.join(", ")} in one transaction`);
  if (restoreTool) {
    const staged = await restoreTool.stageFile(file);
    try {
      // pg_restore writes the archive's data as SQL (no server connection); the filter keeps the table's.
      const toSql = startProcess(restoreTool.command(["--data-only", "--file=-", staged.path], { password: "", files: [staged] }), {
        what: `pg_restore (${restoreTool.location})`,
        stdio: ["ignore", "pipe", "pipe"],
      });
      await streamInto(toSql.child.stdout!, [filter], psql, [toSql]);
    } finally {
      await staged.cleanup();
    }
    label = `${toolLabel(restoreTool)} + ${label}`;
  } else {
    await streamInto(readWithProgress(file, options.onProgress), options.kind === "sql.gz" ? [createGunzip(), filter] : [filter], psql).catch(nameGzipErrors(file));
  }
  const counts: Record<string, number> = {};
  for (const [i, t] of tables.entries()) counts[t] = filter.rows.get(qualified[i]!) ?? 0;
  return { tables: counts, tool: label, droppedLines: filter.dropped, seconds: (Date.now() - started) / 1000 };
}

/** Whether the target holds data: rows in any of the tables (pgmigrations aside). */
export async function postgresHasData(local: LocalEnvironment, tables?: string[]): Promise<string[]> {
  const database = local.opened.spec.postgres.database;
  return withPg(local.pgConfig("postgres"), async (admin) => {
    const exists = (await admin.query("SELECT 1 FROM pg_database WHERE datname = $1", [database])).rowCount === 1;
    if (!exists) return [];
    return withPg(local.pgConfig(database), async (client) => {
      const { rows } = await client.query(
        `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind IN ('r','p') AND c.relname <> 'pgmigrations' ORDER BY 1`,
      );
      const nonEmpty: string[] = [];
      for (const { relname } of rows as { relname: string }[]) {
        if (tables && !tables.includes(relname)) continue;
        const { rows: any } = await client.query(`SELECT EXISTS (SELECT 1 FROM public.${sqlIdent(relname)}) AS present`);
        if (any[0].present) nonEmpty.push(relname);
      }
      return nonEmpty;
    });
  });
}
