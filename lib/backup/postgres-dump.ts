/**
 * PostgreSQL backup: pg_dump of the environment's database, in the guide's form (plain SQL
 * through gzip -6) or pg_dump's custom format (zstd, for speed), streamed to the backup folder
 * and hashed on the way.
 *
 * The row counts of the manifest come from the very snapshot pg_dump dumps: an admin session
 * exports a REPEATABLE READ snapshot, counts in it, and pg_dump imports it (--snapshot), so the
 * counts match the dump even while the application writes.
 */
import { closeSync, openSync } from "node:fs";
import path from "node:path";
import type pg from "pg";
import { CliError, EXIT } from "../errors.js";
import { withPg } from "../db/clients.js";
import { appliedMigrations } from "../db/migrate.js";
import { sqlIdent } from "../db/roles.js";
import { startProcess, type StartedProcess } from "../pgtools/process.js";
import { connectionArgs, resolvePgTool, type PgTool } from "../pgtools/resolve.js";
import { shortVersion } from "../pgtools/version.js";
import { fsyncFile, hashGrowingFile } from "./files.js";
import type { LocalEnvironment } from "../env/environment.js";
import type { Manifest, ManifestFile } from "./manifest.js";
import { publicTables } from "../db/catalog.js";

export type DumpFormat = "sql" | "custom";

/** Compression of each format: the guide's gzip -6 for SQL; zstd level 1 for custom (measured: faster than gzip -6 and smaller). */
export const DEFAULT_LEVEL: Record<DumpFormat, number> = { sql: 6, custom: 1 };
export const LEVEL_RANGE: Record<DumpFormat, [number, number]> = { sql: [1, 9], custom: [1, 19] };
export const DUMP_FILE: Record<DumpFormat, string> = { sql: "postgres.sql.gz", custom: "postgres.dump" };

export interface DumpOptions {
  format: DumpFormat;
  level?: number;
  /** One table (public schema) instead of the whole database. */
  table?: string;
  /** Folder to write into (the backup's partial folder). */
  dir: string;
  onBytes?: (bytes: number) => void;
  log?: (message: string) => void;
  signal?: AbortSignal;
}

export interface DumpResult {
  part: NonNullable<Manifest["postgres"]>;
  file: ManifestFile;
  tool: PgTool;
}

export async function dumpPostgres(local: LocalEnvironment, options: DumpOptions): Promise<DumpResult> {
  const { spec } = local;
  const database = spec.postgres.database;
  const level = options.level ?? DEFAULT_LEVEL[options.format];
  return withPg(local.connection("admin", database), async (client) => {
    const serverVersion = String((await client.query("SHOW server_version")).rows[0].server_version).split(" ")[0]!;
    const serverMajor = Math.floor(Number((await client.query("SHOW server_version_num")).rows[0].server_version_num) / 10000);
    const tables = await publicTables(client);
    if (options.table !== undefined && !tables.includes(options.table)) {
      throw new CliError(`--table ${JSON.stringify(options.table)}: no such table in ${database}`, EXIT.USAGE, `tables: ${tables.join(", ")}`);
    }
    const tool = await resolvePgTool("pg_dump", { minMajor: serverMajor, reason: `the server is PostgreSQL ${serverVersion}; an older pg_dump refuses it` }, local.tools);
    options.log?.(`postgres: pg_dump ${shortVersion(tool.version)} (${tool.location}), ${options.format === "sql" ? `plain SQL, gzip -${level}` : `custom format, zstd:${level}`}`);

    // The snapshot pg_dump will see: counted here, exported to pg_dump, held until it is done.
    await client.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
    try {
      const snapshot = String((await client.query("SELECT pg_export_snapshot() AS id")).rows[0].id);
      const scope = options.table !== undefined ? [options.table] : tables;

      const file = path.join(options.dir, DUMP_FILE[options.format]);
      const args = [
        ...connectionArgs(tool, local.connections.credentials.postgres.superuser, database),
        `--snapshot=${snapshot}`,
        // A table locked exclusively (a migration) fails the backup after a while instead of hanging it.
        "--lock-wait-timeout=120s",
        ...(options.format === "custom" ? ["--format=custom", `--compress=zstd:${level}`] : ["--format=plain"]),
        ...(options.table !== undefined ? [`--table=public.${sqlIdent(options.table)}`] : []),
      ];
      // pg_dump starts first; the counts run meanwhile, in the same snapshot.
      const dumping = runDump(tool, args, local.connections.credentials.postgres.superuserPassword, options.format, level, file, options);
      dumping.catch(() => undefined);
      const rows: Record<string, number> = {};
      for (const table of scope) rows[table] = Number((await client.query(`SELECT count(*) AS n FROM public.${sqlIdent(table)}`)).rows[0].n);
      const migrations = await appliedMigrations(client);
      const written = await dumping;
      await client.query("COMMIT");
      return {
        tool,
        file: written,
        part: {
          serverVersion,
          serverMajor,
          database,
          format: options.format,
          compression: options.format === "sql" ? `gzip:${level}` : `zstd:${level}`,
          file: written.name,
          pgDump: { version: tool.version.text, major: tool.version.major, minor: tool.version.minor, source: tool.source, location: tool.location },
          migrationHead: migrations.at(-1) ?? null,
          migrations,
          tables: rows,
        },
      };
    } catch (error) {
      await client.query("ROLLBACK").catch(() => undefined);
      throw error;
    }
  });
}

/**
 * pg_dump → file. The last process of the chain writes into the file itself (its stdout is the
 * file): SQL goes pg_dump → gzip → file, as in the guide's pipeline; custom format pg_dump → file.
 * A pg_dump in `docker run` writes into a named pipe instead of its stdout (see ToolOutput), read
 * by gzip or cat. This process only follows the file to hash it, so the dump never passes
 * through Node's memory.
 */
async function runDump(tool: PgTool, args: string[], password: string, format: DumpFormat, level: number, file: string, options: DumpOptions): Promise<ManifestFile> {
  const output = await tool.outputPipe();
  const fd = openSync(file, "wx", 0o600);
  const processes: StartedProcess[] = [];
  let dump: StartedProcess;
  try {
    // --no-sync: a pipe cannot be fsynced; the file it fills is, by this process, below.
    const command = tool.command(output.pipe ? [...args, `--file=${output.path}`, "--no-sync"] : args, { password, files: [output] });
    const gzip = ["gzip", `-${level}`, "-c"];
    if (output.pipe) {
      dump = startProcess(command, { what: `pg_dump (${tool.location})`, stdio: ["ignore", "ignore", "pipe"] });
      processes.push(dump);
      // The shell opens the pipe (waiting for pg_dump to), then becomes the reader.
      const reader = format === "sql" ? gzip : ["cat"];
      processes.push(startProcess({ file: "sh", args: ["-c", 'exec "$@" < "$0"', output.pipe, ...reader], env: process.env }, { what: reader[0]!, stdio: ["ignore", fd, "pipe"] }));
    } else if (format === "sql") {
      dump = startProcess(command, { what: `pg_dump (${tool.location})`, stdio: ["ignore", "pipe", "pipe"] });
      processes.push(dump);
      processes.push(startProcess({ file: gzip[0]!, args: gzip.slice(1), env: process.env }, { what: "gzip", stdio: [dump.child.stdout!, fd, "pipe"] }));
      // gzip holds its own copy of the pipe; ours is never read, and an unread stream never ends
      // (the process's 'close' would wait for it forever).
      dump.child.stdout!.destroy();
    } else {
      dump = startProcess(command, { what: `pg_dump (${tool.location})`, stdio: ["ignore", fd, "pipe"] });
      processes.push(dump);
    }
  } catch (error) {
    await output.cleanup();
    throw error;
  } finally {
    closeSync(fd); // the children have their own copies
  }
  // pg_dump failing before it opens the pipe leaves its reader waiting: unblocked at once.
  void dump.exited.catch(() => output.cleanup());
  const onAbort = () => void Promise.all(processes.map((p) => p.kill()));
  options.signal?.addEventListener("abort", onAbort);
  try {
    const written = await hashGrowingFile(file, Promise.all(processes.map((p) => p.exited)), options.onBytes);
    await fsyncFile(file);
    return written;
  } catch (error) {
    await Promise.all(processes.map((p) => p.kill()));
    // pg_dump's own message says more than a broken pipe downstream, unless the writer's disk
    // filled up (gzip: "No space left on device"): then pg_dump saw only the broken pipe.
    const full = processes.find((p) => /No space left on device/i.test(p.stderr()));
    if (full) throw new CliError(`${full.stderr().trim().split("\n").pop()} (${file})`, EXIT.ERROR);
    const dumpError = await dump.exited.then(() => undefined, (e: Error) => e);
    throw dumpError ?? error;
  } finally {
    options.signal?.removeEventListener("abort", onAbort);
    await output.cleanup();
  }
}
