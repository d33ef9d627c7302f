#!/usr/bin/env tsx
/**
 * Runbook: back up an environment (the guide's "Backup & Recovery", made safe and verifiable).
 *   1. hold the environment's lock;
 *   2. PostgreSQL: pg_dump (a version at least the server's: PG_BIN, PATH, or the Docker image)
 *      of one snapshot, pg_dump's custom format (zstd), or --format sql: plain SQL + gzip -6 as in the guide;
 *      Redis: BGSAVE, wait for it, copy dump.rdb, check it;
 *   3. write manifest.json (versions, migration head, rows per table, keys, sha256 per file)
 *      and publish the folder with one rename.
 * With backup.repository an S3 bucket: the folder is uploaded (files, then the manifest), the local
 * copy removed, and the archived WAL pushed (`push-wal` alone does that one pass; cron runs it).
 * AWS environments (staging, prod): RDS + ElastiCache snapshots.
 * Subcommands: create (the default), list, prune, schedule, push-wal.
 */
import path from "node:path";
import { ENV_FLAG, runCommand, subcommand } from "../lib/cli.js";
import { CliError, EXIT } from "../lib/errors.js";
import { shellWord } from "../lib/shell.js";
import { backupEnvironment, type BackupResult } from "../lib/backup/backup.js";
import { scheduleLine } from "../lib/backup/retention.js";
import { DEFAULT_LEVEL, type DumpFormat } from "../lib/backup/postgres-dump.js";
import { specOf } from "../lib/state/record.js";
import { openLocalEnvironment } from "../lib/env/environment.js";
import { takeBaseBackup, type PhysicalManifest } from "../lib/backup/physical/index.js";
import { isAwsEnvironment } from "../lib/backup/backup.js";
import { PROJECT_DIR } from "../lib/spec/load.js";
import { humanBytes } from "../lib/spec/units.js";
import { openBackupRepository, type BackupRepository, type RepositoryListing, type RepositoryPruneReport, type StoredBackup } from "../lib/backup/repository/index.js";
import { walPushLines } from "../lib/backup/retention.js";

const OUT_FLAG = { type: "string", help: "a folder to use as the backup repository instead of backup.repository (default: <backup.dir>/<env> in the project, or the bucket)" } as const;

await runCommand({
  name: "backup",
  summary: "Back up an environment: PostgreSQL (pg_dump or BASE_BACKUP) + Redis (RDB) into one verified backup, in a folder or a bucket; AWS: snapshots.",
  default: "create",
  // Before the subcommands these were mode flags; crontabs written then keep working.
  formerFlags: { list: "list", prune: "prune", schedule: "schedule", "push-wal": "push-wal" },
  details: [
    "Examples:",
    "  npm run backup -- create --env dev                      # or just: npm run backup -- --env dev",
    "  npm run backup -- create --env dev --physical           # base backup for restore --to TIME",
    "  npm run backup -- create --env dev --format sql         # the guide's .sql.gz",
    "  npm run backup -- list --env dev",
    "  npm run backup -- prune --env dev --dry-run",
    "  npm run -s backup -- schedule --env dev                 # the lines for crontab -e",
    "  npm run backup -- push-wal --env dev                    # bucket: push the archived WAL now",
  ].join("\n"),
  subcommands: {
    create: subcommand({
      summary: "make a backup: pg_dump (custom or sql), or --physical (BASE_BACKUP), plus the Redis RDB; verified, published atomically",
      usage: "[--env NAME] [--physical | --table T | --format custom|sql [--level N]] [--out DIR] [--json]",
      flags: {
        env: ENV_FLAG,
        table: { type: "string", help: "one table of the public schema (PostgreSQL only), e.g. market_data" },
        physical: { type: "boolean", help: "a base backup made by the server (BASE_BACKUP, SHA-256 manifest, zstd) for point-in-time recovery with the WAL archive" },
        format: { type: "string", help: "custom (default): pg_dump's format, zstd, restored with pg_restore --jobs; sql: plain SQL + gzip (the guide's .sql.gz). Without it and without a pg_dump 16+, a physical backup is made", choices: ["custom", "sql"] },
        level: { type: "string", help: `compression level: gzip 1-9 (default ${DEFAULT_LEVEL.sql}), zstd 1-19 (default ${DEFAULT_LEVEL.custom})` },
        out: OUT_FLAG,
      },
      details: "pg_dump is looked for in $PG_BIN, then PATH (by version), then the environment's Docker image.",
      async run(ctx) {
        const env = ctx.flags.env ?? "dev";
        if (ctx.flags.physical && (ctx.flags.table !== undefined || ctx.flags.format !== undefined || ctx.flags.level !== undefined)) {
          throw new CliError("--physical makes a base backup of the whole cluster; it does not go with --table, --format or --level", EXIT.USAGE);
        }
        // Usage before the stack file: a bad number is refused whatever the environment.
        const format = (ctx.flags.format ?? "custom") as DumpFormat;
        const level = ctx.flags.level === undefined ? undefined : ctx.intFlag("level", DEFAULT_LEVEL[format], 1, format === "sql" ? 9 : 19);
        const repo = await openBackupRepository(env, { out: ctx.flags.out });
        if (ctx.flags.physical) return physicalBackup(env, ctx, repo);
        let result: BackupResult;
        try {
          result = await backupEnvironment({ env, format, level, table: ctx.flags.table, out: repo.workDir, log: ctx.log, progress: ctx.progress });
        } catch (error) {
          // No format asked for, and no pg_dump that can dump a 16 server (Debian 12 ships 15): the server makes the backup itself.
          const noPgDump = error instanceof CliError && /^no usable pg_dump/.test(error.message);
          if (!noPgDump || ctx.flags.format !== undefined || ctx.flags.table !== undefined || ctx.flags.level !== undefined || isAwsEnvironment(env) || !specOf(env).backup.archive.enabled) throw error;
          ctx.progress(`backup: ${withoutCandidates(error.message)}; making a physical backup instead (BASE_BACKUP needs no client tools)`);
          return physicalBackup(env, ctx, repo, error.message);
        }
        const stored = await repo.store(result.dir, ctx.progress);
        if (stored.upload) return { data: { ok: true, location: stored.location, bytes: result.bytes, seconds: result.seconds, upload: stored.upload, push: stored.push, pushError: stored.pushError, manifest: result.manifest }, human: describeStored(env, stored) };
        return { data: { ok: true, dir: result.dir, bytes: result.bytes, seconds: result.seconds, manifest: result.manifest }, human: describe(env, result) };
      },
    }),
    list: subcommand({
      summary: "list the environment's backups, the point-in-time window and the WAL (folder or bucket: one shape)",
      usage: "[--env NAME] [--out DIR] [--json]",
      flags: { env: ENV_FLAG, out: OUT_FLAG },
      async run(ctx) {
        const repo = await openBackupRepository(ctx.flags.env ?? "dev", { out: ctx.flags.out });
        const listing = await repo.list();
        return { data: listing, human: describeListing(listing, repo.kind) };
      },
    }),
    prune: subcommand({
      summary: "delete backups beyond backup.keepDaily / keepWeekly, base backups beyond keepBase, and the WAL none of the kept ones needs",
      usage: "[--env NAME] [--out DIR] [--dry-run] [--json]",
      flags: { env: ENV_FLAG, out: OUT_FLAG, "dry-run": { type: "boolean", help: "only say what would be deleted" } },
      async run(ctx) {
        const repo = await openBackupRepository(ctx.flags.env ?? "dev", { out: ctx.flags.out });
        const report = await repo.prune({ dryRun: ctx.flags["dry-run"], log: ctx.log });
        return { data: report, human: describePrune(report) };
      },
    }),
    schedule: subcommand({
      summary: "print the crontab line (backup.schedule) that backs up and prunes; with a bucket also the WAL push lines",
      usage: "[--env NAME] [--out DIR] [--json]",
      flags: { env: ENV_FLAG, out: OUT_FLAG },
      async run(ctx) {
        const env = ctx.flags.env ?? "dev";
        const repo = await openBackupRepository(env, { out: ctx.flags.out });
        const line = scheduleLine(specOf(env), env, { out: ctx.flags.out });
        const push = repo.walPushSeconds !== undefined && specOf(env).backup.archive.enabled ? walPushLines(specOf(env), env, repo.walPushSeconds) : undefined;
        return {
          data: { ...line, ...(push ? { push } : {}) },
          human: [
            `# crypto-prediction-infra: back up '${env}' at "${line.schedule}" (backup.schedule), then prune`,
            line.cron,
            ...(push ? [`# push the archived WAL to ${repo.describe()} every ${push.everySeconds} s (backup.repository.walPushSeconds)`, ...push.lines] : []),
          ].join("\n"),
        };
      },
    }),
    "push-wal": subcommand({
      summary: "with backup.repository a bucket: upload the archived WAL not yet there, confirm each segment, then delete it here (one pass)",
      usage: "[--env NAME] [--json]",
      flags: { env: ENV_FLAG },
      async run(ctx) {
        const env = ctx.flags.env ?? "dev";
        const repo = await openBackupRepository(env, {});
        if (!repo.pushWal) throw new CliError(`push-wal: '${env}' keeps its WAL archive in ${repo.describe()} (backup.repository is local); there is no bucket to push to`, EXIT.USAGE, 'set backup.repository to { url: "s3://bucket/prefix", region } in the stack file');
        const r = await repo.pushWal(ctx.progress);
        const mib = (n: number) => `${(n / 1048576).toFixed(1)} MiB`;
        return {
          data: { ok: true, ...r },
          human: `${env}: pushed ${r.pushed.length} WAL file(s) (${mib(r.pushed.reduce((n, p) => n + p.bytes, 0))}) to ${r.location} in ${r.seconds.toFixed(1)} s; ${r.deletedLocal} local segment(s) deleted after confirmation; ${r.backlog.segments} waiting`,
        };
      },
    }),
  },
});

/** "no usable pg_dump: it must be 16 or newer (…)" without the list of tools tried. */
function withoutCandidates(message: string): string {
  return message.split("; tried ")[0]!;
}

async function physicalBackup(env: string, ctx: { log: (m: string) => void; progress: (m: string) => void }, repo: BackupRepository, instead?: string) {
  const { dir, manifest } = await takeBaseBackup(openLocalEnvironment(env), { out: repo.workDir, log: ctx.log, progress: ctx.progress });
  const bytes = manifest.files.reduce((n, f) => n + f.bytes, 0);
  const stored = await repo.store(dir, ctx.progress);
  if (stored.upload) {
    return { data: { ok: true, physical: true, ...(instead ? { instead } : {}), location: stored.location, bytes, seconds: manifest.seconds, upload: stored.upload, push: stored.push, pushError: stored.pushError, manifest }, human: describeStored(env, stored) };
  }
  return { data: { ok: true, physical: true, ...(instead ? { instead } : {}), dir, bytes, seconds: manifest.seconds, manifest }, human: describePhysical(env, dir, manifest, instead) };
}

function describeStored(env: string, s: StoredBackup): string {
  const upload = s.upload!;
  return [
    `${env}: backup ${upload.id} uploaded in ${upload.seconds.toFixed(1)} s → ${upload.location} (${upload.files.length} object(s), the manifest last; the local copy removed)`,
    ...upload.files.map((f) => `  ${f.name.padEnd(16)} ${humanBytes(f.bytes).padStart(9)}  sha256 ${f.sha256.slice(0, 16)}…`),
    ...(s.push ? [`  WAL: pushed ${s.push.pushed.length} file(s), ${s.push.backlog.segments} waiting`] : []),
    ...(s.pushError ? [`  WAL push failed (the segments stay here; the next push uploads them): ${s.pushError}`] : []),
    `restore with: npm run restore -- --env ${env} --from ${upload.id} --yes   (or --to TIME|latest for a base backup)`,
  ].join("\n");
}

function describePhysical(env: string, dir: string, m: PhysicalManifest, instead?: string): string {
  const relative = path.relative(process.cwd(), dir);
  const rel = !relative || relative.startsWith("..") ? dir : relative;
  const size = (name: string) => humanBytes(m.files.find((f) => f.name === name)?.bytes ?? 0);
  const p = m.postgres;
  return [
    ...(instead ? [`note: ${withoutCandidates(instead)}; made a physical backup instead`] : []),
    `${env}: base backup ${m.id} in ${m.seconds.toFixed(1)} s → ${rel}`,
    `  postgres  base.tar.zst     ${size("base.tar.zst").padStart(9)}  ${p.compression} of ${humanBytes(p.tarBytes)}; WAL ${p.startLsn} … ${p.stopLsn} (timeline ${p.timeline}), system ${p.systemIdentifier}, PostgreSQL ${p.serverVersion}; schema at ${p.migrationHead ?? "no migration"}`,
    `            backup_manifest  ${size("backup_manifest").padStart(9)}  the server's: SHA-256 of every data file`,
    ...(m.redis ? [`  redis     ${m.redis.file.padEnd(16)} ${size(m.redis.file).padStart(9)}  ${m.redis.keys.toLocaleString("en-US")} keys, Redis ${m.redis.serverVersion}`] : []),
    `restore with: npm run restore -- --env ${env} --to TIME|latest --yes   (window: npm run backup -- list --env ${env})`,
  ].join("\n");
}

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

/** `backup list` for people: one renderer for both repositories. */
function describeListing(l: RepositoryListing, kind: BackupRepository["kind"]): string {
  const rel = (d: string) => (d.startsWith("s3://") ? d : path.relative(PROJECT_DIR, d) || d);
  const walLine = l.wal
    ? kind === "bucket"
      ? `WAL: ${l.wal.segments} segment(s) in the bucket (${humanBytes(l.wal.bytes)}), ${l.wal.waiting.segments} waiting to be pushed`
      : `WAL archive ${rel(l.wal.location)} (${l.wal.segments} segment(s))`
    : undefined;
  const lines = [
    `${l.logical.length} logical backup(s) of '${l.env}' in ${rel(l.repository)}:`,
    ...l.logical.map((b) => `  ${b.id.padEnd(40)} ${b.scope.padEnd(22)} ${humanBytes(b.bytes).padStart(9)}  ${rel(b.location)}`),
    ...l.unrecognised.map((u) => `  ? ${rel(u.location)}: ${u.why}`),
    ...(kind === "folder"
      ? l.incomplete.length
        ? [`  ${l.incomplete.length} unfinished (.partial-…) folder(s); --prune removes them`]
        : []
      : l.incomplete.map((i) => `  incomplete (no manifest: an upload that did not finish): ${i.id}, ${i.objects} object(s); --prune removes it`)),
    ...l.localOnly.map((d) => `  not in the bucket (kept here after a failed upload): ${d}`),
  ];
  if (walLine) {
    lines.push(
      `${l.physical.length} base backup(s), ${walLine}:`,
      ...l.physical.map((b) => `  ${b.id.padEnd(40)} ends ${b.stopTime}  timeline ${b.timeline}  ${humanBytes(b.bytes).padStart(9)}  ${rel(b.location)}`),
      l.window
        ? `restorable window: ${l.window.earliest} to ${l.window.latest} (npm run restore -- --env ${l.env} --to TIME|latest)`
        : l.physical.length
          ? "restorable window: opens at the oldest base backup's end once WAL after it is archived (within backup.archive.timeoutSeconds; restore --to archives the current WAL first)"
          : `restorable window: none (no base backup: npm run backup -- --env ${l.env} --physical)`,
    );
  }
  return lines.join("\n");
}

/** `backup prune` for people. */
function describePrune(r: RepositoryPruneReport): string {
  const verb = r.dryRun ? "would delete" : "deleted";
  const walBytes = r.removedWal.reduce((n, w) => n + w.bytes, 0);
  return [
    `${r.env} in ${r.repository}: keeping ${r.kept.length} logical backup(s) (keepDaily ${r.keepDaily}, keepWeekly ${r.keepWeekly}) and ${r.keptBase.length} base backup(s) (keepBase ${r.keepBase}) with the WAL from ${r.keepWalFrom ?? "(all: no base backup)"}; ` +
      `${verb} ${r.removed.length} logical, ${r.removedBase.length} base backup(s), ${r.removedWal.length} WAL file(s) (${humanBytes(walBytes)}) and ${r.removedIncomplete.length} unfinished one(s)`,
    ...[...r.removed, ...r.removedBase].map((b) => `  ${verb}: ${b.id} (${humanBytes(b.bytes)})`),
    ...r.removedIncomplete.map((i) => `  ${verb}: unfinished ${i.id} (${i.objects} object(s))`),
    ...r.unrecognised.map((u) => `  left alone: ${u.location} (${u.why})`),
  ].join("\n");
}
