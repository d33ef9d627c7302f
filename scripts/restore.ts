#!/usr/bin/env tsx
/**
 * Runbook: restore an environment from a backup (the guide's "Restore", made safe).
 *   1. verify the backup: manifest, every file's size and sha256, the RDB (nothing touched yet);
 *   2. refuse a backup from a newer schema, and a target holding data unless --yes;
 *   3. PostgreSQL into a new database (as the schema owner; pg_restore --jobs for a custom archive,
 *      one psql in restricted mode for plain SQL), checked (migrations a known prefix, the tables
 *      they make, row counts against the manifest), then swapped in by renaming
 *      (the old data stays intact until that moment); --table replaces one table in one transaction;
 *   4. Redis: stopped, RDB placed, started with appendonly no, AOF rewritten, keys checked.
 * With backup.repository a bucket: `--from ID|latest` (and `--to`) download into a staging folder,
 * each object checked against its SHA-256, and then take the same path.
 * `--check` only verifies. AWS environments: new RDS and ElastiCache resources from the snapshots;
 * `--to TIME|latest` there recovers RDS to a point in time into a new instance (lib/aws/point-in-time.ts).
 */
import path from "node:path";
import { CliError, ENV_FLAG, EXIT, runCommand } from "../lib/cli.js";
import { restoreEnvironment, type RestoreReport } from "../lib/backup/restore.js";
import { isAwsEnvironment } from "../lib/backup/backup.js";
import { verifyBackup, BackupVerificationError } from "../lib/backup/verify.js";
import { humanBytes } from "../lib/spec/units.js";
import { parseRecoveryTarget, recoverTo, type RecoveryReport } from "../lib/backup/physical/index.js";
import { existsSync } from "node:fs";
import { specOf } from "../lib/env/environment.js";
import { openRepository } from "../lib/backup/repository/index.js";
import { recoverFromRepository, restoreFromRepository } from "../lib/backup/repository/commands.js";

await runCommand({
  name: "restore",
  summary: "Restore an environment from a backup folder (verified first) or a plain pg_dump file.",
  usage: "--env NAME --from DIR|FILE [--table T] [--yes] [--jobs N] [--json] | --env NAME --to TIME|latest [--yes] | --env NAME --to-lsn LSN [--yes] | --from DIR --check | --env staging|prod --to TIME|latest",
  flags: {
    env: ENV_FLAG,
    from: { type: "string", help: "a backup folder (npm run backup), or a dump file: .sql, .sql.gz or pg_dump --format=custom; with a bucket (backup.repository): a backup id, or latest" },
    to: { type: "string", help: "recover to TIME (ISO-8601, e.g. 2026-12-03T08:00:00Z) or latest" },
    "to-lsn": { type: "string", help: "recover to a WAL position (e.g. 0/3000028) instead of a time" },
    out: { type: "string", help: "with --to: the backup folder's parent holding the base backups (default: <backup.dir>/<env>; with a bucket: the bucket, unless --out names a local folder)" },
    table: { type: "string", help: "replace only this table's rows (one transaction; the rest is untouched)" },
    yes: { type: "boolean", help: "replace data that is there (refused without it)" },
    jobs: { type: "string", help: "pg_restore --jobs for a custom archive (default 2); a plain SQL dump is one psql stream" },
    check: { type: "boolean", help: "only verify the backup (manifest, sizes, sha256, RDB); change nothing" },
  },
  details: [
    "Examples:",
    "  npm run restore -- --from backups/dev/20251127T020000Z --check",
    "  npm run restore -- --env dev --from backups/dev/20251127T020000Z --yes",
    "  npm run restore -- --env dev --from backups/dev/20251127T020000Z --table market_data --yes",
    "  npm run restore -- --env dev --from backup.sql --yes          # a dump made with plain pg_dump",
    "  npm run restore -- --env dev --to 2026-12-03T08:00:00Z --yes  # point in time: base backup + archived WAL",
    "  npm run restore -- --env dev --to latest --yes",
    "--to picks the newest base backup that ends before TIME, checks it (physical.json, backup_manifest, the WAL chain,",
    "the system identifier), recovers beside the live data folder, verifies, and only then swaps it in.",
    "  npm run restore -- --env prod --to 2026-12-03T08:00:00Z       # AWS: a new RDS instance recovered to that time",
  ].join("\n"),
  async run(ctx) {
    if (ctx.flags.to !== undefined && isAwsEnvironment(ctx.flags.env ?? "dev")) {
      const pitr = await import("../lib/aws/point-in-time.js");
      const r = await pitr.restoreToPointInTimeCommand(ctx.flags.env!, ctx.flags.to, ctx.progress);
      return { data: { ok: true, ...r }, human: pitr.describePointInTime(r) };
    }
    if (ctx.flags.to !== undefined || ctx.flags["to-lsn"] !== undefined) {
      if (ctx.flags.from !== undefined || ctx.flags.table !== undefined || ctx.flags.check) throw new CliError("--to/--to-lsn recover the whole environment from its base backups and WAL archive; they do not go with --from, --table or --check", EXIT.USAGE);
      const target = parseRecoveryTarget(ctx.flags.to, ctx.flags["to-lsn"]);
      const repo = await openRepository(specOf(ctx.flags.env ?? "dev"));
      if (repo && ctx.flags.out === undefined) {
        if (!ctx.flags.yes) throw new CliError(`restore --to replaces the live data of '${ctx.flags.env ?? "dev"}' (after checking and recovering it beside the live one)`, EXIT.USAGE, "add --yes to confirm");
        const report = await recoverFromRepository(repo, ctx.flags.env ?? "dev", target, { yes: ctx.flags.yes, log: ctx.log, progress: ctx.progress });
        return { data: { ok: true, ...report }, human: `${describeRecovery(report)}\n  from         ${report.repository} (${humanBytes(report.download.bytes)} in ${report.download.seconds.toFixed(1)} s, ${report.walFetched} WAL file(s) among them)` };
      }
      const report = await recoverTo(ctx.flags.env ?? "dev", target, { yes: ctx.flags.yes, out: ctx.flags.out, log: ctx.log, progress: ctx.progress });
      return { data: { ok: true, ...report }, human: describeRecovery(report) };
    }
    if (!ctx.flags.from) throw new CliError("--from is required: a backup folder or a dump file (or --to TIME|latest for point-in-time recovery)", EXIT.USAGE, "list backups: npm run backup -- --list --env NAME");
    const repo = await openRepository(specOf(ctx.flags.env ?? "dev"));
    if (repo && !existsSync(path.resolve(ctx.flags.from))) {
      // Not a folder or file here: a backup id (or latest) in the bucket.
      const jobs = ctx.flags.check ? 2 : ctx.intFlag("jobs", 2, 1, 16);
      try {
        const r = await restoreFromRepository(repo, { env: ctx.flags.env ?? "dev", from: ctx.flags.from, check: ctx.flags.check, table: ctx.flags.table, yes: ctx.flags.yes, jobs, log: ctx.log, progress: ctx.progress });
        if (r.verified) {
          const v = r.verified;
          return { data: { ok: true, location: r.location, ...v, dir: r.location }, human: [`${v.manifest.id} (${v.manifest.env}) in ${r.location}: downloaded and verified in ${v.seconds.toFixed(1)} s`, ...v.files.map((f) => `  ok  ${f.name.padEnd(16)} ${humanBytes(f.bytes).padStart(9)}  sha256 ${f.sha256.slice(0, 16)}…`)].join("\n") };
        }
        return { data: { ok: true, location: r.location, ...r.report! }, human: describe(r.report!) };
      } catch (error) {
        if (ctx.flags.check && error instanceof BackupVerificationError) return { code: EXIT.PROBLEM, data: { ok: false, dir: error.dir, problems: error.problems }, human: [`${error.dir}: NOT usable`, ...error.problems.map((p) => `  ✗ ${p}`)].join("\n") };
        throw error;
      }
    }
    if (ctx.flags.check) {
      try {
        const verified = await verifyBackup(path.resolve(ctx.flags.from));
        const files = verified.files.map((f) => `  ok  ${f.name.padEnd(16)} ${humanBytes(f.bytes).padStart(9)}  sha256 ${f.sha256.slice(0, 16)}…`);
        return { data: { ok: true, ...verified }, human: [`${verified.manifest.id} (${verified.manifest.env}): verified in ${verified.seconds.toFixed(1)} s`, ...files].join("\n") };
      } catch (error) {
        // A damaged backup is a finding of the check, not a failure to run it.
        if (error instanceof BackupVerificationError) return { code: EXIT.PROBLEM, data: { ok: false, dir: error.dir, problems: error.problems }, human: [`${error.dir}: NOT usable`, ...error.problems.map((p) => `  ✗ ${p}`)].join("\n") };
        throw error;
      }
    }
    const jobs = ctx.intFlag("jobs", 2, 1, 16);
    const report = await restoreEnvironment({ env: ctx.flags.env ?? "dev", from: ctx.flags.from, table: ctx.flags.table, yes: ctx.flags.yes, jobs, log: ctx.log, progress: ctx.progress });
    return { data: { ok: true, ...report }, human: describe(report) };
  },
});

function describeRecovery(r: RecoveryReport): string {
  const to = r.target.time ?? (r.target.lsn ? `LSN ${r.target.lsn}` : "latest");
  const rows = Object.entries(r.tables).map(([t, n]) => `${t} ${n.toLocaleString("en-US")}`).join(", ");
  return [
    `${r.env}: recovered to ${to} in ${r.seconds.toFixed(1)} s (window ${r.window.earliest} to ${r.window.latest})`,
    `  base backup  ${r.backup.id} (ends ${r.backup.stopTime}), ${r.walSegments} archived WAL segment(s) to timeline ${r.timeline}; last transaction replayed ${r.recoveredTo ?? "(none after the backup)"}, ended at ${r.endLsn}`,
    `  postgres     ${rows}`,
    ...(r.redis ? [`  redis        ${r.redis.keys.toLocaleString("en-US")} keys from the base backup's RDB${r.redis.aofRewritten ? "; AOF rewritten" : ""}`] : []),
  ].join("\n");
}

function describe(r: RestoreReport): string {
  const lines = [`${r.env}: restored ${r.source}${r.mode === "tables" ? ` (${Object.keys(r.postgres?.tables ?? {}).join(", ")} only)` : ""} in ${r.seconds.toFixed(1)} s`];
  if (r.postgres) {
    const rows = Object.entries(r.postgres.tables).map(([t, n]) => `${t} ${n.toLocaleString("en-US")}`).join(", ");
    lines.push(`  postgres  ${rows}  [${r.postgres.tool}]${r.verified ? "; row counts match the manifest" : ""}`);
    if (r.postgres.droppedLines.length) lines.push(`            left out of the load: ${[...new Set(r.postgres.droppedLines)].join(" ")} (unknown to this server's version, or an extension's comment only its superuser owner may set)`);
  }
  if (r.redis) lines.push(`  redis     ${r.redis.keys.toLocaleString("en-US")} keys (${r.redis.keysLoaded} loaded, ${r.redis.keysExpiredOnLoad} expired since the backup)${r.redis.aofRewritten ? "; AOF rewritten" : ""}`);
  if (r.aws) lines.push(`  aws       RDS ${r.aws.rds.instanceIdentifier} (${r.aws.rds.status}), ElastiCache ${r.aws.elasticache.replicationGroupId} (${r.aws.elasticache.status})${r.aws.redisAuthTokenFile ? `; AUTH token in ${r.aws.redisAuthTokenFile} (0600)` : ""}`);
  lines.push(...r.warnings.map((w) => `  note: ${w}`));
  return lines.join("\n");
}
