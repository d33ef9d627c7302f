/**
 * Item 3, backup and restore at 1M rows: the toolkit's sql and custom formats against the
 * guide's bare pipeline (`pg_dump | gzip > file`, `gunzip -c file | psql`), side by side in the
 * same repetition (the order rotates each repetition, so drifting machine load hits all alike).
 *
 * The guide's pipeline runs the same pg_dump/psql the toolkit resolves (pg_dump ≥ the server's
 * major: on these hosts, pg_dump 17 from the offline image via `docker run --network host`), as
 * the guide's role (the schema owner), and restores into a fresh empty database. The toolkit runs
 * as the user runs it: `tsx scripts/backup.ts` / `restore.ts`, under GNU time for peak RSS. When
 * those commands are not there yet, their functions are timed in-process and RSS is not measured.
 */
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from "node:fs";
import path from "node:path";
import { backupEnvironment } from "../backup/backup.js";
import { openLocalEnvironment } from "../env/environment.js";
import { BASE_TAR_FILE } from "../backup/physical/manifest.js";
import { DUMP_FILE } from "../backup/postgres-dump.js";
import { restoreEnvironment } from "../backup/restore.js";
import { withPg } from "../db/clients.js";
import { sqlIdent } from "../db/roles.js";
import { seedMarketData } from "../db/seed/index.js";
import { resolvePgTool, type PgTool } from "../pgtools/resolve.js";
import { psqlSupportsRestrict, shortVersion } from "../pgtools/version.js";
import { PROJECT_DIR } from "../spec/load.js";
import type { BenchContext, BenchItem } from "./harness.js";
import { throttled } from "./harness.js";
import { failureText, GNU_TIME } from "./process.js";
import { atLeast, atMost, measuredRow, skippedRow, type Row, type Target, type Unit } from "./results.js";
import { shellWord } from "../shell.js";

type Variant = "guide" | "custom" | "sql" | "physical";

interface Sample {
  backupSeconds: number;
  /** Absent when the restore failed (`error` says why). */
  restoreSeconds?: number;
  /** The PostgreSQL dump file (the toolkit's folder also holds the Redis RDB and a manifest). */
  dumpBytes: number;
  backupRssMb?: number;
  restoreRssMb?: number;
  error?: string;
}

const ROWS = {
  guideBackup: { id: "backup.guide.backup", label: "guide: pg_dump | gzip", unit: "s" },
  guideRestore: { id: "backup.guide.restore", label: "guide: gunzip | psql (into an empty database)", unit: "s" },
  customBackup: { id: "backup.custom.backup", label: "toolkit backup --format custom", unit: "s" },
  customRestore: { id: "backup.custom.restore", label: "toolkit restore (custom)", unit: "s" },
  sqlBackup: { id: "backup.sql.backup", label: "toolkit backup --format sql", unit: "s" },
  sqlRestore: { id: "backup.sql.restore", label: "toolkit restore (sql)", unit: "s" },
  customSpeedup: { id: "backup.custom.speedup", label: "custom backup+restore speed-up over the guide's pipeline", unit: "x", target: atLeast(2, "x") },
  customSize: { id: "backup.custom.size-ratio", label: "custom dump size / guide's .sql.gz size", unit: "x", target: atMost(1, "x") },
  sqlBackupOverhead: { id: "backup.sql.backup-overhead", label: "toolkit sql backup overhead over the bare pipeline", unit: "%", target: atMost(10, "%") },
  sqlRestoreOverhead: { id: "backup.sql.restore-overhead", label: "toolkit sql restore overhead over the bare pipeline", unit: "%", target: atMost(10, "%") },
  guideSize: { id: "backup.guide.size", label: "guide's .sql.gz size", unit: "MB" },
  customSizeMb: { id: "backup.custom.size", label: "custom dump size (zstd)", unit: "MB" },
  sqlSize: { id: "backup.sql.size", label: "toolkit sql dump size (gzip -6)", unit: "MB" },
  physicalBackup: { id: "backup.physical.backup", label: "toolkit backup --physical (BASE_BACKUP, SHA-256 manifest, zstd -1 -T2)", unit: "s" },
  physicalRestore: { id: "backup.physical.restore", label: "toolkit restore --to latest (checks, recovery beside the live data, swap)", unit: "s" },
  physicalSpeedup: { id: "backup.physical.speedup", label: "physical backup+restore speed-up over the guide's pipeline", unit: "x", target: atLeast(4, "x") },
  physicalSizeMb: { id: "backup.physical.size", label: "base backup size (base.tar.zst)", unit: "MB" },
  physicalSize: { id: "backup.physical.size-ratio", label: "base backup size / guide's .sql.gz size", unit: "x" },
  backupRss: { id: "backup.cli.backup-rss", label: "backup command peak RSS", unit: "MB", target: atMost(150, "MB") },
  restoreRss: { id: "backup.cli.restore-rss", label: "restore command peak RSS", unit: "MB", target: atMost(150, "MB") },
} satisfies Record<string, { id: string; label: string; unit: Unit; target?: Target }>;

export const backupItem: BenchItem = {
  name: "backup",
  title: "3. Backup & restore",
  async run(ctx) {
    const rows = ctx.plan.rows;
    const sizeLabel = `${rows.toLocaleString("en-US")} rows`;
    const skipAll = (reason: string) =>
      Object.values(ROWS).map((r) => skippedRow({ ...r, label: `${r.label}, ${sizeLabel}`, reason }));

    const commands = ["backup", "restore"].every((name) => existsSync(path.join(PROJECT_DIR, "scripts", `${name}.ts`)));

    const { env, destroy } = await ctx.embedded("backup");

    // The guide's tools: the pg_dump/psql the toolkit would pick (same requirements); none → nothing to compare.
    const local = openLocalEnvironment(env.env);
    let pgDump: PgTool;
    let psql: PgTool;
    try {
      pgDump = await resolvePgTool("pg_dump", { minMajor: 16, reason: "the server is PostgreSQL 16" }, local.tools);
      psql = await resolvePgTool(
        "psql",
        { minMajor: 9, reason: "the dump has \\restrict lines", refuse: (v) => (psqlSupportsRestrict(v) ? undefined : `${shortVersion(v)} does not know \\restrict`) },
        local.tools,
      );
    } catch (error) {
      await destroy();
      return skipAll(`no pg_dump/psql for PostgreSQL 16: ${(error as Error).message.split("\n")[0]}`);
    }
    await withPg(env.connections.postgresConfig("owner"), (client) =>
      seedMarketData(client, { rows, onProgress: throttled((p) => ctx.progress(`backup: seeding ${p.rows.toLocaleString("en-US")}/${p.totalRows.toLocaleString("en-US")} rows`)) }),
    );
    ctx.machine.pgTools = `pg_dump ${shortVersion(pgDump.version)} (${pgDump.location}), psql ${shortVersion(psql.version)} (${psql.location})`;

    const owner = env.connections.postgresConfig("owner");
    const database = env.spec.postgres.database;
    const work = path.join(ctx.workDir, "backups");
    mkdirSync(work, { recursive: true, mode: 0o700 });

    const guide = async (rep: number): Promise<Sample> => {
      const file = path.join(work, `guide-${rep}.sql.gz`);
      const dump = pgDump.command(["-h", pgDump.host, "-p", String(pgDump.port), "-U", String(owner.user), database], { password: String(owner.password) });
      const backup = await ctx.children.shell(`${[dump.file, ...dump.args].map(shellWord).join(" ")} | gzip > ${shellWord(file)}`, { env: dump.env });
      if (backup.code !== 0) throw new Error(`guide's pg_dump | gzip: ${failureText(backup)}`);
      const target = `bench_guide_restore_${rep}`;
      const admin = env.connections.postgresConfig("admin", "postgres");
      await withPg(admin, (c) => c.query(`CREATE DATABASE ${sqlIdent(target)} OWNER ${sqlIdent(String(owner.user))}`));
      try {
        const load = psql.command(["-h", psql.host, "-p", String(psql.port), "-U", String(owner.user), target], { password: String(owner.password), stdin: true });
        // As in the guide: no ON_ERROR_STOP (pg_dump 17's `SET transaction_timeout` fails on 16 and is passed over).
        const restore = await ctx.children.shell(`gunzip -c ${shellWord(file)} | ${[load.file, ...load.args].map(shellWord).join(" ")} > /dev/null`, { env: load.env });
        if (restore.code !== 0) throw new Error(`guide's gunzip | psql: ${failureText(restore)}`);
        const restored = await withPg(env.connections.postgresConfig("admin", target), async (c) => Number((await c.query("SELECT count(*) AS n FROM market_data")).rows[0].n));
        if (restored !== rows) throw new Error(`guide's restore left ${restored} market_data rows, expected ${rows}`);
        return { backupSeconds: backup.seconds, restoreSeconds: restore.seconds, dumpBytes: statSync(file).size };
      } finally {
        await withPg(admin, (c) => c.query(`DROP DATABASE IF EXISTS ${sqlIdent(target)} WITH (FORCE)`));
        rmSync(file, { force: true });
      }
    };

    /** A base backup, then `restore --to latest` from it (the archive holds the WAL since). */
    const physical = async (rep: number): Promise<Sample> => {
      const out = path.join(work, `physical-${rep}`);
      mkdirSync(out, { recursive: true, mode: 0o700 });
      try {
        const backup = await ctx.children.script("backup", ["--env", env.env, "--physical", "--out", out, "--json"], { rss: true });
        if (backup.code !== 0) throw new Error(`backup --physical: ${failureText(backup)}`);
        const tar = path.join(publishedBackup(out), BASE_TAR_FILE);
        const dumpBytes = statSync(tar).size;
        const restore = await ctx.children.script("restore", ["--env", env.env, "--to", "latest", "--out", out, "--yes", "--json"], { rss: true });
        if (restore.code !== 0) return { backupSeconds: backup.seconds, backupRssMb: backup.peakRssMb, dumpBytes, error: `restore --to latest: ${failureText(restore)}` };
        const restored = await withPg(owner, async (c) => Number((await c.query("SELECT count(*) AS n FROM market_data")).rows[0].n));
        if (restored !== rows) throw new Error(`restore --to latest left ${restored} market_data rows, expected ${rows}`);
        return { backupSeconds: backup.seconds, restoreSeconds: restore.seconds, dumpBytes, backupRssMb: backup.peakRssMb, restoreRssMb: restore.peakRssMb };
      } finally {
        rmSync(out, { recursive: true, force: true });
      }
    };

    const toolkit = async (format: "custom" | "sql", rep: number): Promise<Sample> => {
      const out = path.join(work, `${format}-${rep}`);
      mkdirSync(out, { recursive: true, mode: 0o700 });
      try {
        let backupSeconds: number;
        let restoreSeconds: number | undefined;
        let backupRssMb: number | undefined;
        let restoreRssMb: number | undefined;
        if (commands) {
          const backup = await ctx.children.script("backup", ["--env", env.env, "--format", format, "--out", out, "--json"], { rss: true });
          if (backup.code !== 0) throw new Error(`backup --format ${format}: ${failureText(backup)}`);
          backupSeconds = backup.seconds;
          backupRssMb = backup.peakRssMb;
          const dir = publishedBackup(out);
          const restore = await ctx.children.script("restore", ["--env", env.env, "--from", dir, "--yes", "--json"], { rss: true });
          if (restore.code !== 0) {
            return { backupSeconds, backupRssMb, dumpBytes: statSync(path.join(dir, DUMP_FILE[format])).size, error: `restore (${format}): ${failureText(restore)}` };
          }
          restoreSeconds = restore.seconds;
          restoreRssMb = restore.peakRssMb;
        } else {
          let started = performance.now();
          await backupEnvironment({ env: env.env, format, out });
          backupSeconds = (performance.now() - started) / 1000;
          const dir = publishedBackup(out);
          started = performance.now();
          try {
            await restoreEnvironment({ env: env.env, from: dir, yes: true });
          } catch (error) {
            return { backupSeconds, dumpBytes: statSync(path.join(dir, DUMP_FILE[format])).size, error: `restore (${format}): ${(error as Error).message.split("\n")[0]}` };
          }
          restoreSeconds = (performance.now() - started) / 1000;
        }
        const restored = await withPg(owner, async (c) => Number((await c.query("SELECT count(*) AS n FROM market_data")).rows[0].n));
        if (restored !== rows) throw new Error(`toolkit restore (${format}) left ${restored} market_data rows, expected ${rows}`);
        const dumpFile = path.join(publishedBackup(out), DUMP_FILE[format]);
        return { backupSeconds, restoreSeconds, dumpBytes: statSync(dumpFile).size, backupRssMb, restoreRssMb };
      } finally {
        rmSync(out, { recursive: true, force: true });
      }
    };

    if (commands) {
      await ctx.warmUp("backup");
      await ctx.warmUp("restore");
    }
    // A variant failing (a bug in it, a missing tool) does not stop the others, nor its own later
    // repetitions (a flaky failure still leaves samples); failures are counted in the rows.
    const samples: Record<Variant, (Sample | undefined)[]> = { guide: [], custom: [], sql: [], physical: [] };
    const failures: Record<Variant, string[]> = { guide: [], custom: [], sql: [], physical: [] };
    // The physical variant needs the commands (restore --to is a command, not a function here).
    const variants: Variant[] = commands ? ["guide", "custom", "sql", "physical"] : ["guide", "custom", "sql"];
    try {
      for (let rep = 0; rep < ctx.plan.repetitions; rep++) {
        const order = [...variants.slice(rep % variants.length), ...variants.slice(0, rep % variants.length)];
        for (const variant of order) {
          ctx.progress(`backup ${rep + 1}/${ctx.plan.repetitions}: ${variant === "guide" ? "the guide's pipeline" : `toolkit ${variant}`}`);
          try {
            const sample = variant === "guide" ? await guide(rep) : variant === "physical" ? await physical(rep) : await toolkit(variant, rep);
            samples[variant][rep] = sample;
            if (sample.error) failures[variant].push(sample.error);
          } catch (error) {
            samples[variant][rep] = undefined;
            failures[variant].push((error as Error).message.split("\n")[0]!);
          }
          if (!samples[variant][rep] || samples[variant][rep]!.error) ctx.log(`   backup ${rep + 1}: ${variant}: ${failures[variant].at(-1)}`);
        }
      }
    } finally {
      await destroy();
    }

    const label = (r: { label: string }) => `${r.label}, ${sizeLabel}`;
    const how = commands ? "commands as run by a user (tsx, process start included)" : "in-process: scripts/backup.ts / restore.ts not present";
    /** A row of the values that exist; none → an error row naming what failed. */
    const row = (def: { id: string; label: string; unit: Unit; target?: Target }, values: (number | undefined)[], failed: Variant[], details?: Record<string, unknown>): Row => {
      const present = values.filter((v): v is number => v !== undefined && Number.isFinite(v));
      const errors = [...new Set(failed.flatMap((v) => failures[v]))];
      const missing = values.length - present.length;
      if (present.length) return measuredRow({ ...def, label: label(def), samples: present, details: { ...details, ...(missing ? { failedRuns: missing, failures: errors } : {}) } });
      return skippedRow({ ...def, label: label(def), reason: errors.join("; ") || "no runs", status: "error" });
    };
    const reps = Array.from({ length: ctx.plan.repetitions }, (_, i) => i);
    const at = (v: Variant, i: number) => samples[v][i];
    const backupS = (v: Variant) => reps.map((i) => at(v, i)?.backupSeconds);
    const restoreS = (v: Variant) => reps.map((i) => at(v, i)?.restoreSeconds);
    const total = (v: Variant, i: number) => {
      const s = at(v, i);
      return s?.restoreSeconds === undefined ? undefined : s.backupSeconds + s.restoreSeconds;
    };
    const ratio = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined ? undefined : a / b);
    const mb = (v: Variant) => reps.map((i) => (at(v, i) ? at(v, i)!.dumpBytes / 1048576 : undefined));
    const rssRow = (def: typeof ROWS.backupRss, key: "backupRssMb" | "restoreRssMb"): Row => {
      const values = [...samples.custom, ...samples.sql, ...samples.physical].map((s) => s?.[key]).filter((v): v is number => v !== undefined);
      if (values.length) return measuredRow({ ...def, label: `${label(def)} (sql, custom and physical)`, samples: values });
      const reason = !commands ? "scripts/backup.ts / restore.ts not present" : existsSync(GNU_TIME) ? [...failures.custom, ...failures.sql][0] ?? "no runs" : "GNU time (/usr/bin/time) not installed";
      return skippedRow({ ...def, label: label(def), reason, status: commands && existsSync(GNU_TIME) ? "error" : "not measured" });
    };
    return [
      row(ROWS.guideBackup, backupS("guide"), ["guide"]),
      row(ROWS.guideRestore, restoreS("guide"), ["guide"]),
      row(ROWS.customBackup, backupS("custom"), ["custom"], { how }),
      row(ROWS.customRestore, restoreS("custom"), ["custom"], { how }),
      row(ROWS.sqlBackup, backupS("sql"), ["sql"], { how }),
      row(ROWS.sqlRestore, restoreS("sql"), ["sql"], { how }),
      row(ROWS.customSpeedup, reps.map((i) => ratio(total("guide", i), total("custom", i))), ["guide", "custom"]),
      row(ROWS.customSize, reps.map((i) => ratio(at("custom", i)?.dumpBytes, at("guide", i)?.dumpBytes)), ["guide", "custom"]),
      row(ROWS.sqlBackupOverhead, reps.map((i) => pct(ratio(at("sql", i)?.backupSeconds, at("guide", i)?.backupSeconds))), ["guide", "sql"]),
      row(ROWS.sqlRestoreOverhead, reps.map((i) => pct(ratio(at("sql", i)?.restoreSeconds, at("guide", i)?.restoreSeconds))), ["guide", "sql"]),
      row(ROWS.guideSize, mb("guide"), ["guide"]),
      row(ROWS.customSizeMb, mb("custom"), ["custom"]),
      row(ROWS.sqlSize, mb("sql"), ["sql"]),
      row(ROWS.physicalBackup, backupS("physical"), ["physical"], { how }),
      row(ROWS.physicalRestore, restoreS("physical"), ["physical"], { how }),
      row(ROWS.physicalSpeedup, reps.map((i) => ratio(total("guide", i), total("physical", i))), ["guide", "physical"]),
      row(ROWS.physicalSizeMb, mb("physical"), ["physical"]),
      row(ROWS.physicalSize, reps.map((i) => ratio(at("physical", i)?.dumpBytes, at("guide", i)?.dumpBytes)), ["guide", "physical"]),
      rssRow(ROWS.backupRss, "backupRssMb"),
      rssRow(ROWS.restoreRss, "restoreRssMb"),
    ];
  },
};

/** A ratio as an overhead in percent. */
function pct(ratio: number | undefined): number | undefined {
  return ratio === undefined ? undefined : 100 * (ratio - 1);
}

/** The one backup folder a run published under `out` (partial folders start with a dot). */
function publishedBackup(out: string): string {
  const dirs = readdirSync(out).filter((name) => !name.startsWith(".") && statSync(path.join(out, name)).isDirectory());
  if (dirs.length !== 1) throw new Error(`expected one backup folder in ${out}, found ${dirs.length}`);
  return path.join(out, dirs[0]!);
}
