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
 * `--from ID|latest` names a backup in the environment's repository (backup.repository); a bucket's
 * is downloaded into a staging folder first, each object checked against its SHA-256 (and `--to`
 * downloads what the recovery needs), and then takes the same path.
 * `--check` only verifies. AWS environments: new RDS and ElastiCache resources from the snapshots;
 * `--to TIME|latest` there recovers RDS to a point in time into a new instance (lib/aws/point-in-time.ts).
 */
import path from "node:path";
import { ENV_FLAG, runCommand } from "../lib/cli.js";
import { CliError, EXIT } from "../lib/errors.js";
import { restoreEnvironment, type RestoreReport } from "../lib/backup/restore.js";
import { isAwsEnvironment } from "../lib/backup/backup.js";
import { verifyBackup, BackupVerificationError } from "../lib/backup/verify.js";
import { humanBytes } from "../lib/spec/units.js";
import { parseRecoveryTarget, type RecoveryReport } from "../lib/backup/physical/index.js";
import { existsSync } from "node:fs";
import { openBackupRepository } from "../lib/backup/repository/index.js";

/** A backup's id in a repository (its folder or key name), or latest. */
const BACKUP_ID = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

await runCommand({
  name: "restore",
  summary: "Restore an environment from a backup folder (verified first) or a plain pg_dump file.",
  usage: "--env NAME --from DIR|FILE [--table T] [--yes] [--jobs N] [--json] | --env NAME --to TIME|latest [--yes] | --env NAME --to-lsn LSN [--yes] | --from DIR --check | --env staging|prod --to TIME|latest",
  flags: {
    env: ENV_FLAG,
    from: { type: "string", help: "a backup folder (npm run backup), a dump file (.sql, .sql.gz or pg_dump --format=custom), or a backup id or latest (the newest full logical backup) in the repository (backup.repository, or --out)" },
    to: { type: "string", help: "recover to TIME (ISO-8601, e.g. 2026-12-03T08:00:00Z) or latest" },
    "to-lsn": { type: "string", help: "recover to a WAL position (e.g. 0/3000028) instead of a time" },
    out: { type: "string", help: "with --to or --from ID|latest: a folder to use as the backup repository instead of backup.repository (default: <backup.dir>/<env>, or the bucket)" },
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
    "  npm run restore -- --env dev --from latest --yes             # the newest full backup in backup.repository",
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
    const env = ctx.flags.env ?? "dev";
    if (ctx.flags.to !== undefined || ctx.flags["to-lsn"] !== undefined) {
      if (ctx.flags.from !== undefined || ctx.flags.table !== undefined || ctx.flags.check) throw new CliError("--to/--to-lsn recover the whole environment from its base backups and WAL archive; they do not go with --from, --table or --check", EXIT.USAGE);
      const target = parseRecoveryTarget(ctx.flags.to, ctx.flags["to-lsn"]);
      if (!ctx.flags.yes) throw new CliError(`restore --to replaces the live data of '${env}' (after checking and recovering it beside the live one)`, EXIT.USAGE, "add --yes to confirm");
      const repo = await openBackupRepository(env, { out: ctx.flags.out });
      const report = await repo.recover(target, { yes: ctx.flags.yes, log: ctx.log, progress: ctx.progress });
      const downloaded = report.download ? `\n  from         ${report.repository} (${humanBytes(report.download.bytes)} in ${report.download.seconds.toFixed(1)} s, ${report.walFetched} WAL file(s) among them)` : "";
      return { data: { ok: true, ...report }, human: describeRecovery(report) + downloaded };
    }
    if (!ctx.flags.from) throw new CliError("--from is required: a backup folder, a dump file, a backup id or latest (or --to TIME|latest for point-in-time recovery)", EXIT.USAGE, "list backups: npm run backup -- list --env NAME");
    const jobs = ctx.flags.check ? 2 : ctx.intFlag("jobs", 2, 1, 16);
    // A folder or file here is restored as it is; a bare name that is neither names a backup in the repository (an id, or latest).
    const byId = !existsSync(path.resolve(ctx.flags.from)) && BACKUP_ID.test(ctx.flags.from);
    const fetched = byId ? await (await openBackupRepository(env, { out: ctx.flags.out })).fetch(ctx.flags.from, ctx.progress) : undefined;
    try {
      const dir = fetched?.dir ?? path.resolve(ctx.flags.from);
      const location = fetched?.location ?? dir;
      if (fetched?.kind === "physical") throw new CliError(`${location}: a base backup; restore it with --to TIME|latest`, EXIT.USAGE);
      if (ctx.flags.check) {
        try {
          const verified = await verifyBackup(dir);
          const files = verified.files.map((f) => `  ok  ${f.name.padEnd(16)} ${humanBytes(f.bytes).padStart(9)}  sha256 ${f.sha256.slice(0, 16)}…`);
          const how = fetched?.kind && fetched.location !== fetched.dir ? `in ${location}: downloaded and verified` : "verified";
          return { data: { ok: true, ...(fetched ? { location } : {}), ...verified, ...(fetched ? { dir: location } : {}) }, human: [`${verified.manifest.id} (${verified.manifest.env}) ${how} in ${verified.seconds.toFixed(1)} s`, ...files].join("\n") };
        } catch (error) {
          // A damaged backup is a finding of the check, not a failure to run it.
          if (error instanceof BackupVerificationError) return { code: EXIT.PROBLEM, data: { ok: false, dir: error.dir, problems: error.problems }, human: [`${error.dir}: NOT usable`, ...error.problems.map((p) => `  ✗ ${p}`)].join("\n") };
          throw error;
        }
      }
      const report = await restoreEnvironment({ env, from: fetched?.dir ?? ctx.flags.from, table: ctx.flags.table, yes: ctx.flags.yes, jobs, log: ctx.log, progress: ctx.progress });
      const shown = fetched ? { ...report, source: location } : report;
      return { data: { ok: true, ...(fetched ? { location } : {}), ...shown }, human: describe(shown) };
    } finally {
      fetched?.release();
    }
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
