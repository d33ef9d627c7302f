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
 * copy removed, and the archived WAL pushed (--push-wal alone does that one pass; cron runs it).
 * AWS environments (staging, prod): RDS + ElastiCache snapshots. Also: --list, --prune, --schedule.
 */
import path from "node:path";
import { CliError, ENV_FLAG, EXIT, runCommand, shellWord } from "../lib/cli.js";
import { backupEnvironment, backupRoot, type BackupResult } from "../lib/backup/backup.js";
import { listBackups, pruneBackups, scheduleLine } from "../lib/backup/retention.js";
import { DEFAULT_LEVEL, type DumpFormat } from "../lib/backup/postgres-dump.js";
import { specOf } from "../lib/env/environment.js";
import { localEnvironment } from "../lib/backup/local-env.js";
import { listPhysical, prunePhysical, takeBaseBackup, type PhysicalManifest } from "../lib/backup/physical/index.js";
import { isAwsEnvironment } from "../lib/backup/backup.js";
import { PROJECT_DIR } from "../lib/spec/load.js";
import { humanBytes } from "../lib/spec/units.js";
import { openRepository } from "../lib/backup/repository/index.js";
import { listRepository, pruneRepository, pushWalCommand, storeBackup, type StoredBackup } from "../lib/backup/repository/commands.js";
import { walPushLines } from "../lib/backup/retention.js";

await runCommand({
  name: "backup",
  summary: "Back up an environment: PostgreSQL (pg_dump) + Redis (RDB) into one verified folder; AWS: snapshots.",
  usage: "[--env NAME] [--physical | --table T | --format custom|sql [--level N]] [--out DIR] [--json] | --list | --prune [--dry-run] | --schedule | --push-wal",
  flags: {
    env: ENV_FLAG,
    table: { type: "string", help: "one table of the public schema (PostgreSQL only), e.g. market_data" },
    physical: { type: "boolean", help: "a base backup made by the server (BASE_BACKUP, SHA-256 manifest, zstd) for point-in-time recovery with the WAL archive" },
    format: { type: "string", help: "custom (default): pg_dump's format, zstd, restored with pg_restore --jobs; sql: plain SQL + gzip (the guide's .sql.gz). Without it and without a pg_dump 16+, a physical backup is made", choices: ["custom", "sql"] },
    level: { type: "string", help: `compression level: gzip 1-9 (default ${DEFAULT_LEVEL.sql}), zstd 1-19 (default ${DEFAULT_LEVEL.custom})` },
    out: { type: "string", help: "folder that receives the backup folder (default: <backup.dir>/<env> in the project)" },
    list: { type: "boolean", help: "list this environment's backups" },
    prune: { type: "boolean", help: "delete backups beyond backup.keepDaily / backup.keepWeekly, base backups beyond backup.keepBase and the WAL none of the kept ones needs (no new backup)" },
    "dry-run": { type: "boolean", help: "with --prune: only say what would be deleted" },
    schedule: { type: "boolean", help: "print the crontab line (backup.schedule) that backs up and prunes (with a bucket: and the WAL push lines)" },
    "push-wal": { type: "boolean", help: "with backup.repository a bucket: upload the archived WAL not yet there, confirm each segment, then delete it here (one pass)" },
  },
  details: [
    "Examples:",
    "  npm run backup -- --env dev",
    "  npm run backup -- --env dev --physical                   # base backup for restore --to TIME",
    "  npm run backup -- --env dev --format sql                  # the guide's .sql.gz",
    "  npm run backup -- --env dev --table market_data",
    "  npm run backup -- --env dev --prune --dry-run",
    "  npm run -s backup -- --env dev --schedule                 # the line for crontab -e",
    "  npm run backup -- --env dev --push-wal                    # bucket: push the archived WAL now",
    "pg_dump is looked for in $PG_BIN, then PATH (by version), then the environment's Docker image.",
  ].join("\n"),
  async run(ctx) {
    const env = ctx.flags.env ?? "dev";
    const modes = (["list", "prune", "schedule", "push-wal"] as const).filter((m) => ctx.flags[m]);
    if (modes.length > 1) throw new CliError(`--${modes.join(" and --")} cannot be combined`, EXIT.USAGE);
    if (ctx.flags["dry-run"] && !ctx.flags.prune) throw new CliError("--dry-run goes with --prune", EXIT.USAGE);
    if (modes.length && (ctx.flags.table !== undefined || ctx.flags.level !== undefined)) {
      throw new CliError(`--table and --level make a backup; they do not go with --${modes[0]}`, EXIT.USAGE);
    }

    if (ctx.flags.physical && (modes.length || ctx.flags.table !== undefined || ctx.flags.format !== undefined || ctx.flags.level !== undefined)) {
      throw new CliError("--physical makes a base backup of the whole cluster; it does not go with --table, --format, --level, --list, --prune, --schedule or --push-wal", EXIT.USAGE);
    }
    // Usage before the stack file: a bad number is refused whatever the environment.
    const format = (ctx.flags.format ?? "custom") as DumpFormat;
    const level = ctx.flags.level === undefined ? undefined : ctx.intFlag("level", DEFAULT_LEVEL[format], 1, format === "sql" ? 9 : 19);

    const repo = isAwsEnvironment(env) ? undefined : await openRepository(specOf(env));
    if (ctx.flags["push-wal"] && !repo) throw new CliError(`--push-wal: '${env}' keeps its WAL archive here (backup.repository is local); there is no bucket to push to`, EXIT.USAGE, 'set backup.repository to { url: "s3://bucket/prefix", region } in the stack file');
    if (ctx.flags.schedule) {
      const line = scheduleLine(specOf(env), env, { out: ctx.flags.out });
      const push = repo && specOf(env).backup.archive.enabled ? walPushLines(specOf(env), env, repo.walPushSeconds) : undefined;
      return {
        data: { ...line, ...(push ? { push } : {}) },
        human: [
          `# crypto-prediction-infra: back up '${env}' at "${line.schedule}" (backup.schedule), then prune`,
          line.cron,
          ...(push ? [`# push the archived WAL to ${repo!.describe()} every ${push.everySeconds} s (backup.repository.walPushSeconds)`, ...push.lines] : []),
        ].join("\n"),
      };
    }
    if (ctx.flags["push-wal"]) {
      const r = await pushWalCommand(repo!, env, ctx.progress);
      const mib = (n: number) => `${(n / 1048576).toFixed(1)} MiB`;
      return {
        data: { ok: true, ...r },
        human: `${env}: pushed ${r.pushed.length} WAL file(s) (${mib(r.pushed.reduce((n, p) => n + p.bytes, 0))}) to ${r.location} in ${r.seconds.toFixed(1)} s; ${r.deletedLocal} local segment(s) deleted after confirmation; ${r.backlog.segments} waiting`,
      };
    }
    if (ctx.flags.list && repo) {
      const l = await listRepository(repo, env);
      const human = [
        `${l.logical.length} logical backup(s) of '${env}' in ${l.repository}:`,
        ...l.logical.map((b) => `  ${b.id.padEnd(40)} ${b.scope.padEnd(22)} ${humanBytes(b.bytes).padStart(9)}  ${b.location}`),
        `${l.physical.length} base backup(s); WAL: ${l.wal.objects} segment(s) in the bucket (${humanBytes(l.wal.bytes)}), ${l.wal.backlog.segments} waiting to be pushed:`,
        ...l.physical.map((b) => `  ${b.id.padEnd(40)} ends ${b.stopTime}  timeline ${b.timeline}  ${humanBytes(b.bytes).padStart(9)}  ${b.location}`),
        ...l.incomplete.map((i) => `  incomplete (no manifest: an upload that did not finish): ${i.id}, ${i.objects} object(s); --prune removes it`),
        ...l.unrecognised.map((u) => `  ? ${u.location}: ${u.why}`),
        ...l.localOnly.map((d) => `  not in the bucket (kept here after a failed upload): ${d}`),
        l.window ? `restorable window: ${l.window.earliest} to ${l.window.latest} (npm run restore -- --env ${env} --to TIME|latest)` : `restorable window: none yet`,
      ];
      return { data: l, human: human.join("\n") };
    }
    if (ctx.flags.prune && repo) {
      const r = await pruneRepository(repo, env, ctx.flags["dry-run"] === true);
      const verb = r.dryRun ? "would delete" : "deleted";
      return {
        data: r,
        human: [
          `${env} in ${r.location}: keeping ${r.kept.length} logical backup(s) and ${r.keptBase.length} base backup(s) with the WAL from ${r.keepWalFrom ?? "(all: no base backup)"}; ` +
            `${verb} ${r.removed.length} logical, ${r.removedBase.length} base backup(s), ${r.removedWal.length} WAL object(s) and ${r.removedIncomplete.length} incomplete upload(s)`,
          ...[...r.removed, ...r.removedBase].map((b) => `  ${verb}: ${b.id} (${humanBytes(b.bytes)})`),
          ...r.removedIncomplete.map((i) => `  ${verb}: incomplete ${i.id} (${i.objects} object(s))`),
          ...r.unrecognised.map((u) => `  left alone: ${u.location} (${u.why})`),
        ].join("\n"),
      };
    }
    if (ctx.flags.list) {
      const listing = listBackups(env, backupRoot(specOf(env), env, ctx.flags.out));
      const physical = isAwsEnvironment(env) ? undefined : listPhysical(env, ctx.flags.out);
      const rel = (d: string) => path.relative(PROJECT_DIR, d) || d;
      const { archive: _archive, ...physicalData } = physical ?? { archive: undefined };
      const human = [
        `${listing.backups.length} logical backup(s) of '${env}' in ${rel(listing.root)}:`,
        ...listing.backups.map((b) => `  ${b.id.padEnd(40)} ${b.scope.padEnd(22)} ${humanBytes(b.bytes).padStart(9)}  ${rel(b.dir)}`),
        ...listing.unrecognised.map((u) => `  ? ${rel(u.dir)}: ${u.why}`),
        ...(listing.partial.length ? [`  ${listing.partial.length} unfinished (.partial-…) folder(s); --prune removes them`] : []),
      ];
      if (physical) {
        human.push(
          `${physical.backups.length} base backup(s), WAL archive ${rel(physical.archiveDir)} (${physical.archive.segments.length} segment(s)):`,
          ...physical.backups.map((b) => `  ${b.id.padEnd(40)} ends ${b.stopTime}  timeline ${b.timeline}  ${humanBytes(b.bytes).padStart(9)}  ${rel(b.dir)}`),
          ...physical.unrecognised.map((u) => `  ? ${rel(u.dir)}: ${u.why}`),
          physical.window
            ? `restorable window: ${physical.window.earliest} to ${physical.window.latest} (npm run restore -- --env ${env} --to TIME|latest)`
            : physical.backups.length
              ? "restorable window: opens at the oldest base backup's end once WAL after it is archived (within backup.archive.timeoutSeconds; restore --to archives the current WAL first)"
              : `restorable window: none (no base backup: npm run backup -- --env ${env} --physical)`,
        );
      }
      return {
        data: { ...listing, physical: physical ? { ...physicalData, backups: physical.backups.map(({ manifest: _m, ...b }) => b), window: physical.window } : undefined },
        human: human.join("\n"),
      };
    }
    if (ctx.flags.prune) {
      const report = await pruneBackups({ env, out: ctx.flags.out, dryRun: ctx.flags["dry-run"], log: ctx.log });
      const physical = isAwsEnvironment(env) ? undefined : await prunePhysical(env, { out: ctx.flags.out, dryRun: ctx.flags["dry-run"], log: ctx.log });
      const verb = report.dryRun ? "would delete" : "deleted";
      const walBytes = physical?.removedWal.reduce((n, w) => n + w.bytes, 0) ?? 0;
      return {
        data: { ...report, physical },
        human: [
          `${env}: keeping ${report.kept.length} backup(s) (keepDaily ${report.keepDaily}, keepWeekly ${report.keepWeekly}); ${verb} ${report.removed.length}` +
            (report.removedPartial.length ? ` and ${report.removedPartial.length} unfinished folder(s)` : ""),
          ...report.removed.map((r) => `  ${verb}: ${r.id} (${humanBytes(r.bytes)})`),
          ...report.unrecognised.map((u) => `  left alone: ${u.dir} (${u.why})`),
          ...(physical
            ? [
                `${env}: keeping ${physical.kept.length} base backup(s) (keepBase ${physical.keepBase}) and the WAL from ${physical.keepWalFrom ?? "(all: no base backup)"}; ${verb} ${physical.removed.length} base backup(s) and ${physical.removedWal.length} WAL file(s) (${humanBytes(walBytes)})`,
                ...physical.removed.map((r) => `  ${verb}: ${r.id} (${humanBytes(r.bytes)})`),
              ]
            : []),
        ].join("\n"),
      };
    }

    if (ctx.flags.physical) return physicalBackup(env, ctx, undefined, repo);
    let result: BackupResult;
    try {
      result = await backupEnvironment({ env, format, level, table: ctx.flags.table, out: ctx.flags.out, log: ctx.log, progress: ctx.progress });
    } catch (error) {
      // No format asked for, and no pg_dump that can dump a 16 server (Debian 12 ships 15): the server makes the backup itself.
      const noPgDump = error instanceof CliError && /^no usable pg_dump/.test(error.message);
      if (!noPgDump || ctx.flags.format !== undefined || ctx.flags.table !== undefined || ctx.flags.level !== undefined || isAwsEnvironment(env) || !specOf(env).backup.archive.enabled) throw error;
      ctx.progress(`backup: ${withoutCandidates(error.message)}; making a physical backup instead (BASE_BACKUP needs no client tools)`);
      return physicalBackup(env, ctx, error.message, repo);
    }
    if (repo) {
      const stored = await storeBackup(repo, env, result.dir, ctx.progress);
      return { data: { ok: true, location: stored.upload.location, bytes: result.bytes, seconds: result.seconds, upload: stored.upload, push: stored.push, pushError: stored.pushError, manifest: result.manifest }, human: describeStored(env, stored) };
    }
    return { data: { ok: true, dir: result.dir, bytes: result.bytes, seconds: result.seconds, manifest: result.manifest }, human: describe(env, result) };
  },
});

/** "no usable pg_dump: it must be 16 or newer (…)" without the list of tools tried. */
function withoutCandidates(message: string): string {
  return message.split("; tried ")[0]!;
}

async function physicalBackup(env: string, ctx: { flags: { out?: string }; log: (m: string) => void; progress: (m: string) => void }, instead?: string, repo?: Awaited<ReturnType<typeof openRepository>>) {
  const { dir, manifest } = await takeBaseBackup(localEnvironment(env), { out: ctx.flags.out, log: ctx.log, progress: ctx.progress });
  const bytes = manifest.files.reduce((n, f) => n + f.bytes, 0);
  if (repo) {
    const stored = await storeBackup(repo, env, dir, ctx.progress);
    return { data: { ok: true, physical: true, ...(instead ? { instead } : {}), location: stored.upload.location, bytes, seconds: manifest.seconds, upload: stored.upload, push: stored.push, pushError: stored.pushError, manifest }, human: describeStored(env, stored) };
  }
  return { data: { ok: true, physical: true, ...(instead ? { instead } : {}), dir, bytes, seconds: manifest.seconds, manifest }, human: describePhysical(env, dir, manifest, instead) };
}

function describeStored(env: string, s: StoredBackup): string {
  return [
    `${env}: backup ${s.upload.id} uploaded in ${s.upload.seconds.toFixed(1)} s → ${s.upload.location} (${s.upload.files.length} object(s), the manifest last; the local copy removed)`,
    ...s.upload.files.map((f) => `  ${f.name.padEnd(16)} ${humanBytes(f.bytes).padStart(9)}  sha256 ${f.sha256.slice(0, 16)}…`),
    ...(s.push ? [`  WAL: pushed ${s.push.pushed.length} file(s), ${s.push.backlog.segments} waiting`] : []),
    ...(s.pushError ? [`  WAL push failed (the segments stay here; the next push uploads them): ${s.pushError}`] : []),
    `restore with: npm run restore -- --env ${env} --from ${s.upload.id} --yes   (or --to TIME|latest for a base backup)`,
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
    `restore with: npm run restore -- --env ${env} --to TIME|latest --yes   (window: npm run backup -- --env ${env} --list)`,
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
