#!/usr/bin/env tsx
/**
 * Runbook: restore an environment from a backup (the guide's "Restore", made safe).
 *   1. verify the backup: manifest, every file's size and sha256, the RDB (nothing touched yet);
 *   2. refuse a backup from a newer schema, and a target holding data unless --yes;
 *   3. PostgreSQL into a new database, row counts checked, then swapped in by renaming
 *      (the old data stays intact until that moment); --table replaces one table in one transaction;
 *   4. Redis: stopped, RDB placed, started with appendonly no, AOF rewritten, keys checked.
 * `--check` only verifies. AWS environments: new RDS and ElastiCache resources from the snapshots;
 * `--to TIME|latest` there recovers RDS to a point in time into a new instance (lib/aws/point-in-time.ts).
 */
import path from "node:path";
import { CliError, ENV_FLAG, EXIT, runCommand } from "../lib/cli.js";
import { restoreEnvironment, type RestoreReport } from "../lib/backup/restore.js";
import { isAwsEnvironment } from "../lib/backup/backup.js";
import { verifyBackup, BackupVerificationError } from "../lib/backup/verify.js";
import { humanBytes } from "../lib/spec/units.js";

await runCommand({
  name: "restore",
  summary: "Restore an environment from a backup folder (verified first) or a plain pg_dump file.",
  usage: "--env NAME --from DIR|FILE [--table T] [--yes] [--jobs N] [--json] | --from DIR --check | --env staging|prod --to TIME|latest",
  flags: {
    env: ENV_FLAG,
    from: { type: "string", help: "a backup folder (npm run backup), or a dump file: .sql, .sql.gz or pg_dump --format=custom" },
    table: { type: "string", help: "replace only this table's rows (one transaction; the rest is untouched)" },
    yes: { type: "boolean", help: "replace data that is there (refused without it)" },
    jobs: { type: "string", help: "connections that load rows at once (default 2; 1 = one psql/pg_restore stream)" },
    check: { type: "boolean", help: "only verify the backup (manifest, sizes, sha256, RDB); change nothing" },
    to: { type: "string", help: "recover to TIME (ISO-8601, e.g. 2026-12-03T08:00:00Z) or latest" },
  },
  details: [
    "Examples:",
    "  npm run restore -- --from backups/dev/20251127T020000Z --check",
    "  npm run restore -- --env dev --from backups/dev/20251127T020000Z --yes",
    "  npm run restore -- --env dev --from backups/dev/20251127T020000Z --table market_data --yes",
    "  npm run restore -- --env dev --from backup.sql --yes          # a dump made with plain pg_dump",
    "  npm run restore -- --env prod --to 2026-12-03T08:00:00Z       # AWS: a new RDS instance recovered to that time",
  ].join("\n"),
  async run(ctx) {
    if (ctx.flags.to !== undefined && isAwsEnvironment(ctx.flags.env ?? "dev")) {
      const pitr = await import("../lib/aws/point-in-time.js");
      const r = await pitr.restoreToPointInTimeCommand(ctx.flags.env!, ctx.flags.to, ctx.progress);
      return { data: { ok: true, ...r }, human: pitr.describePointInTime(r) };
    }
    if (!ctx.flags.from) throw new CliError("--from is required: a backup folder or a dump file", EXIT.USAGE, "list backups: npm run backup -- --list --env NAME");
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

function describe(r: RestoreReport): string {
  const lines = [`${r.env}: restored ${r.source}${r.mode === "tables" ? ` (${Object.keys(r.postgres?.tables ?? {}).join(", ")} only)` : ""} in ${r.seconds.toFixed(1)} s`];
  if (r.postgres) {
    const rows = Object.entries(r.postgres.tables).map(([t, n]) => `${t} ${n.toLocaleString("en-US")}`).join(", ");
    lines.push(`  postgres  ${rows}  [${r.postgres.tool}]${r.verified ? "; row counts match the manifest" : ""}`);
    if (r.postgres.droppedLines.length) lines.push(`            skipped ${[...new Set(r.postgres.droppedLines)].join(" ")} (unknown to this server's version)`);
  }
  if (r.redis) lines.push(`  redis     ${r.redis.keys.toLocaleString("en-US")} keys (${r.redis.keysLoaded} loaded, ${r.redis.keysExpiredOnLoad} expired since the backup)${r.redis.aofRewritten ? "; AOF rewritten" : ""}`);
  if (r.aws) lines.push(`  aws       RDS ${r.aws.rds.instanceIdentifier} (${r.aws.rds.status}), ElastiCache ${r.aws.elasticache.replicationGroupId} (${r.aws.elasticache.status})${r.aws.redisAuthTokenFile ? `; AUTH token in ${r.aws.redisAuthTokenFile} (0600)` : ""}`);
  lines.push(...r.warnings.map((w) => `  note: ${w}`));
  return lines.join("\n");
}
