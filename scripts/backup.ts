#!/usr/bin/env tsx
/**
 * Runbook: back up an environment (the guide's "Backup & Recovery", made safe and verifiable).
 *   1. hold the environment's lock;
 *   2. PostgreSQL: pg_dump (a version at least the server's: PG_BIN, PATH, or the Docker image)
 *      of one snapshot, plain SQL + gzip -6 as in the guide, or --format custom (zstd);
 *      Redis: BGSAVE, wait for it, copy dump.rdb, check it;
 *   3. write manifest.json (versions, migration head, rows per table, keys, sha256 per file)
 *      and publish the folder with one rename.
 * AWS environments (staging, prod): RDS + ElastiCache snapshots. Also: --list, --prune, --schedule.
 */
import path from "node:path";
import { CliError, ENV_FLAG, EXIT, runCommand, shellWord } from "../lib/cli.js";
import { backupEnvironment, backupRoot, type BackupResult } from "../lib/backup/backup.js";
import { listBackups, pruneBackups, scheduleLine } from "../lib/backup/retention.js";
import { DEFAULT_LEVEL, type DumpFormat } from "../lib/backup/postgres-dump.js";
import { specOf } from "../lib/env/environment.js";
import { PROJECT_DIR } from "../lib/spec/load.js";
import { humanBytes } from "../lib/spec/units.js";

await runCommand({
  name: "backup",
  summary: "Back up an environment: PostgreSQL (pg_dump) + Redis (RDB) into one verified folder; AWS: snapshots.",
  usage: "[--env NAME] [--table T] [--format sql|custom] [--level N] [--out DIR] [--json] | --list | --prune [--dry-run] | --schedule",
  flags: {
    env: ENV_FLAG,
    table: { type: "string", help: "one table of the public schema (PostgreSQL only), e.g. market_data" },
    format: { type: "string", help: "sql: plain SQL + gzip (the guide's); custom: pg_dump's format, zstd (faster)", choices: ["sql", "custom"], default: "sql" },
    level: { type: "string", help: `compression level: gzip 1-9 (default ${DEFAULT_LEVEL.sql}), zstd 1-19 (default ${DEFAULT_LEVEL.custom})` },
    out: { type: "string", help: "folder that receives the backup folder (default: <backup.dir>/<env> in the project)" },
    list: { type: "boolean", help: "list this environment's backups" },
    prune: { type: "boolean", help: "delete backups beyond backup.keepDaily / backup.keepWeekly (no new backup)" },
    "dry-run": { type: "boolean", help: "with --prune: only say what would be deleted" },
    schedule: { type: "boolean", help: "print the crontab line (backup.schedule) that backs up and prunes" },
  },
  details: [
    "Examples:",
    "  npm run backup -- --env dev",
    "  npm run backup -- --env dev --format custom",
    "  npm run backup -- --env dev --table market_data",
    "  npm run backup -- --env dev --prune --dry-run",
    "  npm run -s backup -- --env dev --schedule                 # the line for crontab -e",
    "pg_dump is looked for in $PG_BIN, then PATH (by version), then the environment's Docker image.",
  ].join("\n"),
  async run(ctx) {
    const env = ctx.flags.env ?? "dev";
    const modes = (["list", "prune", "schedule"] as const).filter((m) => ctx.flags[m]);
    if (modes.length > 1) throw new CliError(`--${modes.join(" and --")} cannot be combined`, EXIT.USAGE);
    if (ctx.flags["dry-run"] && !ctx.flags.prune) throw new CliError("--dry-run goes with --prune", EXIT.USAGE);
    if (modes.length && (ctx.flags.table !== undefined || ctx.flags.level !== undefined)) {
      throw new CliError(`--table and --level make a backup; they do not go with --${modes[0]}`, EXIT.USAGE);
    }

    if (ctx.flags.schedule) {
      const line = scheduleLine(specOf(env), env, { out: ctx.flags.out });
      return { data: line, human: `# crypto-prediction-infra: back up '${env}' at "${line.schedule}" (backup.schedule), then prune\n${line.cron}` };
    }
    if (ctx.flags.list) {
      const listing = listBackups(env, backupRoot(specOf(env), env, ctx.flags.out));
      const rel = (d: string) => path.relative(PROJECT_DIR, d) || d;
      return {
        data: listing,
        human: [
          `${listing.backups.length} backup(s) of '${env}' in ${rel(listing.root)}:`,
          ...listing.backups.map((b) => `  ${b.id.padEnd(40)} ${b.scope.padEnd(22)} ${humanBytes(b.bytes).padStart(9)}  ${rel(b.dir)}`),
          ...listing.unrecognised.map((u) => `  ? ${rel(u.dir)}: ${u.why}`),
          ...(listing.partial.length ? [`  ${listing.partial.length} unfinished (.partial-…) folder(s); --prune removes them`] : []),
        ].join("\n"),
      };
    }
    if (ctx.flags.prune) {
      const report = await pruneBackups({ env, out: ctx.flags.out, dryRun: ctx.flags["dry-run"], log: ctx.log });
      const verb = report.dryRun ? "would delete" : "deleted";
      return {
        data: report,
        human: [
          `${env}: keeping ${report.kept.length} backup(s) (keepDaily ${report.keepDaily}, keepWeekly ${report.keepWeekly}); ${verb} ${report.removed.length}` +
            (report.removedPartial.length ? ` and ${report.removedPartial.length} unfinished folder(s)` : ""),
          ...report.removed.map((r) => `  ${verb}: ${r.id} (${humanBytes(r.bytes)})`),
          ...report.unrecognised.map((u) => `  left alone: ${u.dir} (${u.why})`),
        ].join("\n"),
      };
    }

    const format = (ctx.flags.format ?? "sql") as DumpFormat;
    const level = ctx.flags.level === undefined ? undefined : ctx.intFlag("level", DEFAULT_LEVEL[format], 1, format === "sql" ? 9 : 19);
    const result = await backupEnvironment({ env, format, level, table: ctx.flags.table, out: ctx.flags.out, log: ctx.log, progress: ctx.progress });
    return { data: { ok: true, dir: result.dir, bytes: result.bytes, seconds: result.seconds, manifest: result.manifest }, human: describe(env, result) };
  },
});

function describe(env: string, result: BackupResult): string {
  const m = result.manifest;
  const relative = path.relative(process.cwd(), result.dir);
  const rel = !relative || relative.startsWith("..") ? result.dir : relative;
  const size = (name: string) => humanBytes(m.files.find((f) => f.name === name)?.bytes ?? 0);
  const lines = [`${env}: backup ${m.id} in ${m.seconds.toFixed(1)} s → ${rel}`];
  if (m.postgres) {
    const rows = Object.values(m.postgres.tables).reduce((a, b) => a + b, 0);
    lines.push(
      `  postgres  ${m.postgres.file.padEnd(16)} ${size(m.postgres.file).padStart(9)}  ${m.postgres.compression}, pg_dump ${m.postgres.pgDump.major}.${m.postgres.pgDump.minor} (${m.postgres.pgDump.location}); ` +
        `${Object.keys(m.postgres.tables).length} table(s), ${rows.toLocaleString("en-US")} rows; schema at ${m.postgres.migrationHead ?? "no migration"}`,
    );
  }
  if (m.redis) lines.push(`  redis     ${m.redis.file.padEnd(16)} ${size(m.redis.file).padStart(9)}  ${m.redis.keys.toLocaleString("en-US")} keys (${m.redis.expires} with a TTL), Redis ${m.redis.serverVersion}`);
  if (m.aws) lines.push(`  aws       RDS snapshot ${m.aws.rds.snapshotIdentifier} (${m.aws.rds.status}); ElastiCache snapshot ${m.aws.elasticache.snapshotName} (${m.aws.elasticache.status})`);
  lines.push(
    `  manifest  manifest.json: size and sha256 of every file`,
    `check it:     npm run restore -- --env ${env} --from ${shellWord(rel)} --check`,
    `restore with: npm run restore -- --env ${env} --from ${shellWord(rel)} --yes   # replaces the data of '${env}'`,
  );
  return lines.join("\n");
}
