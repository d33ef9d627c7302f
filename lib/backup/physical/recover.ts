/**
 * `recoverTo`: point-in-time recovery of a local environment. Everything is checked before the
 * live data is touched, the recovery runs in a new data folder beside the live one on a temporary
 * server, the result is verified, and only then is it swapped in:
 *
 *   switch WAL on the live server (so the archive holds everything up to now)
 *   → pick the newest base backup that ends before the target; refuse a target outside the window
 *   → check physical.json (sealed), each file's SHA-256, backup_manifest's own checksum,
 *     the WAL chain from the backup's start to the target (present, in order, this cluster's)
 *   → unpack (zstd -d | tar -x), check every data file against backup_manifest
 *   → recover (restore_command from the archive, recovery_target_*, promote), archiving off
 *   → verify (system identifier, database, known migration head, row counts)
 *   → Redis from the same backup (undoable), swap the data folder, start; any failure: live data as it was.
 */
import { createHash } from "node:crypto";
import { chownSync, closeSync, copyFileSync, openSync, readSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { $ } from "zx";
import { CliError, EXIT } from "../../errors.js";
import { withPg } from "../../db/clients.js";
import { knownMigrations, MIGRATIONS_TABLE } from "../../db/migrate.js";
import { withEnvLock } from "../../state/lock.js";
import { serviceUser } from "../../state/paths.js";
import { hashFile } from "../files.js";
import { openLocalEnvironment, type LocalEnvironment } from "../../env/environment.js";
import { restoreRedisDocker, restoreRedisEmbedded, type RedisRestoreReport } from "../redis.js";
import { listPhysical, type PhysicalBackupInfo } from "./catalog.js";
import { physicalHost, type PhysicalHost } from "./host.js";
import { BASE_TAR_FILE, parseServerManifest, SERVER_MANIFEST_FILE } from "./manifest.js";
import { checkChain, formatLsn, isLsn, latestTimeline, parseLsn, segmentOf, segmentsOnPath, type ArchivedSegment } from "./wal.js";

export interface RecoveryTarget {
  time?: Date;
  lsn?: string;
  latest?: true;
}

export interface RecoveryOptions {
  /** Required: the live data is replaced. */
  yes?: boolean;
  out?: string;
  progress?: (m: string) => void;
  log?: (m: string) => void;
  lockWaitSeconds?: number;
  /** Leave Redis as it is (the drill and the benchmark measure PostgreSQL alone when they say so). */
  skipRedis?: boolean;
  /** A bucket (lib/backup/repository): brings its WAL into the archive folder once the live WAL is archived, before the archive is read. */
  beforeListing?: (archiveDir: string) => Promise<void>;
  /** A bucket: downloads the chosen base backup's files into its folder, before they are checked. */
  fetchBackup?: (backup: PhysicalBackupInfo) => Promise<void>;
}

export interface RecoveryReport {
  env: string;
  target: { time?: string; lsn?: string; latest?: true };
  window: { earliest: string; latest: string };
  backup: { id: string; dir: string; stopTime: string; startLsn: string };
  /** Archived segments the chain check found and recovery could read (from the backup's start to the target). */
  walSegments: number;
  timeline: number;
  /** The last transaction replayed (pg_last_xact_replay_timestamp), and where recovery ended. */
  recoveredTo?: string;
  endLsn?: string;
  tables: Record<string, number>;
  redis?: RedisRestoreReport;
  seconds: number;
}

/** A refusal before anything was changed: the file and what is wrong with it. */
export class RecoveryCheckError extends CliError {
  constructor(
    readonly file: string,
    problem: string,
  ) {
    super(`${file}: ${problem}`, EXIT.PROBLEM, "nothing was changed; the live data is as it was");
    this.name = "RecoveryCheckError";
  }
}

const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");

/** Parses `--to`: `latest` or an ISO-8601 time with a zone. */
export function parseRecoveryTarget(to: string | undefined, toLsn: string | undefined): RecoveryTarget {
  if (to !== undefined && toLsn !== undefined) throw new CliError("--to and --to-lsn: give one recovery target, not both", EXIT.USAGE);
  if (toLsn !== undefined) {
    if (!isLsn(toLsn)) throw new CliError(`--to-lsn ${JSON.stringify(toLsn)}: not an LSN; use the form 0/3000028 (pg_current_wal_lsn())`, EXIT.USAGE);
    return { lsn: formatLsn(parseLsn(toLsn)) };
  }
  if (to === undefined) throw new CliError("restore: give --to TIME|latest or --to-lsn LSN", EXIT.USAGE);
  if (to === "latest") return { latest: true };
  const time = /(Z|[+-]\d\d:?\d\d)$/.test(to) ? new Date(to) : new Date(NaN);
  if (Number.isNaN(time.getTime())) {
    throw new CliError(`--to ${JSON.stringify(to)}: recover to TIME (ISO-8601 with a zone, e.g. 2026-12-03T08:00:00Z) or latest`, EXIT.USAGE);
  }
  return { time };
}

export async function recoverTo(env: string, target: RecoveryTarget, opts: RecoveryOptions = {}): Promise<RecoveryReport> {
  const started = Date.now();
  const log = opts.log ?? (() => undefined);
  const report = opts.progress ?? log;
  const progress = (m: string) => report(`${m} [${((Date.now() - started) / 1000).toFixed(1)} s]`);
  const kinds = [target.time, target.lsn, target.latest].filter((v) => v !== undefined).length;
  if (kinds !== 1) throw new CliError("restore: give exactly one recovery target (--to TIME, --to latest or --to-lsn LSN)", EXIT.USAGE);
  if (!opts.yes) throw new CliError(`restore --to replaces the live data of '${env}' (after checking and recovering it beside the live one)`, EXIT.USAGE, "add --yes to confirm");
  const local = openLocalEnvironment(env);
  const host = await physicalHost(local);
  return withEnvLock(env, local.paths.lock, { purpose: "restoring it", waitSeconds: opts.lockWaitSeconds, onWait: log }, async () => {
    if (host.liveRunning()) await archiveCurrentWal(local, host, progress);
    await opts.beforeListing?.(host.archiveDir);
    const listing = listPhysical(env, opts.out, host.archiveDir);
    if (!listing.backups.length) throw new CliError(`no base backup of '${env}' in ${listing.root}`, EXIT.ERROR, `make one: npm run backup -- --env ${env} --physical`);
    if (!listing.window) throw new CliError(`the WAL archive ${host.archiveDir} holds nothing after the oldest base backup of '${env}'`, EXIT.ERROR, `check the archiver: npm run verify -- --env ${env}`);
    const window = listing.window;
    const backup = chooseBackup(listing.backups, target, window, env);
    const archive = listing.archive;

    // 1. The backup's own files.
    await opts.fetchBackup?.(backup);
    progress(`restore: checking base backup ${backup.id}`);
    await checkBackupFiles(backup);
    // 2. The WAL chain from its start to the target.
    const timeline = latestTimeline(archive, backup.timeline, parseLsn(backup.startLsn));
    const lastSegno = targetSegment(segmentsOnPath(archive, timeline), target);
    const chain = checkChain(archive, { startTli: backup.timeline, startLsn: parseLsn(backup.startLsn), lastSegno, systemIdentifier: backup.manifest.postgres.systemIdentifier });
    if (chain.problems.length) throw new RecoveryCheckError(chain.problems[0]!.file, chain.problems.map((p) => `${path.basename(p.file)} ${p.problem}`).join("; "));
    progress(`restore: WAL chain ${chain.segments[0]} … ${chain.segments.at(-1)} (${chain.segments.length} segments, timeline ${chain.timeline}) is complete`);

    // 3. Unpack beside the live data and check every file against the server's manifest.
    const dir = host.createRecoveryDir();
    let swapped = false;
    try {
      progress(`restore: unpacking into ${dir}`);
      await $({ quiet: true })`zstd -q -d -c ${path.join(backup.dir, BASE_TAR_FILE)} | tar -x -C ${dir} -f -`;
      progress("restore: unpacked; checking every file against backup_manifest");
      await checkUnpacked(dir, backup);
      const pgWal = path.join(dir, "pg_wal");
      rmSync(pgWal, { recursive: true, force: true });
      writeFileSync(path.join(dir, "recovery.signal"), "", { mode: 0o600 });
      mkdirSync(path.join(pgWal, "archive_status"), { recursive: true, mode: 0o700 });
      await host.adoptRecoveryDir(dir);

      // 4. Recover on a temporary server.
      progress(`restore: recovering to ${describe(target)}`);
      const server = await host.startRecovery(dir, recoveryConf(host, target));
      let outcome: { recoveredTo?: string; endLsn?: string; tables: Record<string, number> };
      try {
        progress("restore: recovery server started; replaying archived WAL");
        await waitForPromotion(server, env, progress);
        progress("restore: recovered and promoted; verifying");
        outcome = await verifyRecovered(server, local, backup);
      } finally {
        await server.stop();
      }

      // 5. Redis from the same backup (can be undone), then the swap.
      let redis: Awaited<ReturnType<typeof restoreRedisEmbedded>> | undefined;
      const rdb = backup.manifest.redis && path.join(backup.dir, backup.manifest.redis.file);
      if (rdb && !opts.skipRedis) {
        progress("restore: Redis from the backup's RDB");
        redis = await (local.kind === "docker" ? restoreRedisDocker : restoreRedisEmbedded)(local, rdb, backup.manifest.redis!.keys, log);
      }
      try {
        progress("restore: swapping the recovered data folder in");
        await host.swapIn(dir, log);
        swapped = true;
      } catch (error) {
        await redis?.rollback();
        throw error;
      }
      await redis?.commit();
      publishHistoryFiles(host, path.join(local.paths.pgData, "pg_wal"));
      return {
        env,
        target: { ...(target.time ? { time: target.time.toISOString() } : {}), ...(target.lsn ? { lsn: target.lsn } : {}), ...(target.latest ? { latest: true as const } : {}) },
        window,
        backup: { id: backup.id, dir: backup.dir, stopTime: backup.stopTime, startLsn: backup.startLsn },
        walSegments: chain.segments.length,
        timeline: chain.timeline,
        ...outcome,
        redis: redis?.report,
        seconds: (Date.now() - started) / 1000,
      };
    } finally {
      if (!swapped) host.discardRecoveryDir(dir);
    }
  });
}

function describe(target: RecoveryTarget): string {
  return target.time ? target.time.toISOString() : target.lsn ? `LSN ${target.lsn}` : "the end of the archive (latest)";
}

/**
 * A commit (txid_current) and a segment switch on the live server, then a wait until that segment
 * is archived: the archive then reaches the present, and a target time before now has a commit
 * after it for recovery to stop at.
 */
async function archiveCurrentWal(local: LocalEnvironment, host: PhysicalHost, progress: (m: string) => void): Promise<void> {
  const timeoutMs = (local.spec.backup.archive.timeoutSeconds + 30) * 1000;
  const walfile = await withPg(local.connection("admin", "postgres"), async (c) => {
    await c.query("SELECT txid_current()");
    return (await c.query("SELECT pg_walfile_name(pg_switch_wal()) AS f")).rows[0].f as string;
  }).catch(() => undefined);
  if (!walfile) return; // not answering: the archive is what it is
  progress(`restore: waiting for ${walfile} to reach the archive`);
  const deadline = Date.now() + timeoutMs;
  while (!existsSync(path.join(host.archiveDir, walfile))) {
    if (Date.now() > deadline) throw new CliError(`WAL segment ${walfile} did not reach the archive ${host.archiveDir} within ${timeoutMs / 1000} s`, EXIT.ERROR, "check the archiver: npm run verify (pg_stat_archiver); nothing was changed");
    await new Promise((r) => setTimeout(r, 100));
  }
}

function windowText(window: { earliest: string; latest: string }): string {
  return `the restorable window is ${window.earliest} to ${window.latest}`;
}

export function chooseBackup(backups: PhysicalBackupInfo[], target: RecoveryTarget, window: { earliest: string; latest: string }, env: string): PhysicalBackupInfo {
  if (target.latest) return backups.at(-1)!;
  if (target.time) {
    const t = target.time.getTime();
    if (t < Date.parse(window.earliest) || t > Date.parse(window.latest)) {
      throw new CliError(`--to ${target.time.toISOString()} is outside what the backups can reach: ${windowText(window)}`, EXIT.USAGE, `pick a time inside the window (npm run backup -- list --env ${env} shows it), or --to latest`);
    }
    return backups.filter((b) => Date.parse(b.stopTime) <= t).at(-1)!;
  }
  const lsn = parseLsn(target.lsn!);
  const usable = backups.filter((b) => parseLsn(b.stopLsn) <= lsn);
  if (!usable.length) throw new CliError(`--to-lsn ${target.lsn} is before the end of the oldest base backup (${backups[0]!.stopLsn}); ${windowText(window)}`, EXIT.USAGE);
  return usable.at(-1)!;
}

/** The last segment recovery reads: the one holding the LSN, the first archived at or after TIME, or the newest. */
function targetSegment(segments: ArchivedSegment[], target: RecoveryTarget): bigint {
  const newest = segments.reduce((m, s) => (s.segno > m ? s.segno : m), 0n);
  if (target.lsn) {
    const segno = segmentOf(parseLsn(target.lsn));
    if (segno > newest) throw new CliError(`--to-lsn ${target.lsn} is beyond the archive's newest segment`, EXIT.USAGE);
    return segno;
  }
  if (target.time) {
    const t = target.time.getTime();
    const after = segments.filter((s) => s.archivedAt.getTime() >= t).reduce<bigint | undefined>((m, s) => (m === undefined || s.segno < m ? s.segno : m), undefined);
    return after ?? newest;
  }
  return newest;
}

async function checkBackupFiles(backup: PhysicalBackupInfo): Promise<void> {
  for (const f of backup.manifest.files) {
    const file = path.join(backup.dir, f.name);
    if (!existsSync(file)) throw new RecoveryCheckError(file, "missing (listed in physical.json)");
    const actual = await hashFile(file);
    if (actual.bytes !== f.bytes) throw new RecoveryCheckError(file, `${actual.bytes} bytes, physical.json says ${f.bytes}`);
    if (actual.sha256 !== f.sha256) throw new RecoveryCheckError(file, "its SHA-256 does not match physical.json (the file was changed or damaged)");
  }
  const manifestFile = path.join(backup.dir, SERVER_MANIFEST_FILE);
  const parsed = parseServerManifest(readFileSync(manifestFile, "utf8"), sha256);
  if (!parsed.manifest) throw new RecoveryCheckError(manifestFile, parsed.problem!);
  const range = parsed.manifest.walRanges[0];
  if (!range || parseLsn(range.startLsn) !== parseLsn(backup.startLsn)) throw new RecoveryCheckError(manifestFile, `its WAL range starts at ${range?.startLsn}, physical.json at ${backup.startLsn}`);
}

/** Every file of backup_manifest is in the unpacked folder with its size and SHA-256. */
async function checkUnpacked(dir: string, backup: PhysicalBackupInfo): Promise<void> {
  const manifestFile = path.join(backup.dir, SERVER_MANIFEST_FILE);
  const server = parseServerManifest(readFileSync(manifestFile, "utf8"), sha256).manifest!;
  const buffer = Buffer.allocUnsafe(1024 * 1024); // one buffer for the thousand-odd files of a data folder
  for (const f of server.files) {
    const file = path.join(dir, f.path);
    if (!existsSync(file)) throw new RecoveryCheckError(path.join(backup.dir, BASE_TAR_FILE), `${f.path} (listed in backup_manifest) is not in the tar`);
    const actual = hashFileSync(file, buffer);
    if (actual.bytes !== f.size || (f.sha256 && actual.sha256 !== f.sha256)) throw new RecoveryCheckError(path.join(backup.dir, BASE_TAR_FILE), `${f.path} does not match backup_manifest (${actual.bytes} bytes vs ${f.size}; SHA-256 differs)`);
  }
}

function hashFileSync(file: string, buffer: Buffer): { bytes: number; sha256: string } {
  const hash = createHash("sha256");
  const fd = openSync(file, "r");
  let bytes = 0;
  try {
    for (let n; (n = readSync(fd, buffer, 0, buffer.length, null)) > 0; bytes += n) hash.update(buffer.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return { bytes, sha256: hash.digest("hex") };
}

function recoveryConf(host: PhysicalHost, target: RecoveryTarget): string {
  const quote = (v: string) => `'${v.replace(/'/g, "''")}'`;
  const restore = `cp ${host.serverArchiveDir.replace(/'/g, "")}/%f "%p"`;
  const lines = [
    "",
    "# Point-in-time recovery (restore --to): removed when the recovered folder is swapped in.",
    `restore_command = ${quote(restore)}`,
    "recovery_target_timeline = 'latest'",
    "recovery_target_action = 'promote'",
  ];
  // PostgreSQL's timestamptz input: ISO-8601 with a space, the zone as +00.
  if (target.time) lines.push(`recovery_target_time = ${quote(target.time.toISOString().replace("T", " ").replace("Z", "+00"))}`);
  if (target.lsn) lines.push(`recovery_target_lsn = ${quote(target.lsn)}`);
  return lines.join("\n") + "\n";
}

/** Waits until the recovery server has promoted (bounded); a server that stops says why from its log. */
async function waitForPromotion(server: Awaited<ReturnType<PhysicalHost["startRecovery"]>>, env: string, progress: (m: string) => void): Promise<void> {
  const deadline = Date.now() + 30 * 60_000;
  let lastNote = Date.now();
  for (;;) {
    const state = await withPg({ ...server.config("postgres"), connectionTimeoutMillis: 5_000 }, async (c) => (await c.query("SELECT pg_is_in_recovery() AS r, pg_last_wal_replay_lsn()::text AS lsn")).rows[0] as { r: boolean; lsn: string | null }).catch(
      (error: Error) => ({ error }),
    );
    if ("error" in state) {
      const tail = server.logTail();
      if (/recovery ended before configured recovery target was reached/.test(tail)) {
        throw new CliError(`the archive ends before the recovery target: ${tail.split("\n").find((l) => /recovery ended before/.test(l))}`, EXIT.PROBLEM, `pick an earlier time (npm run backup -- list --env ${env} shows the window); nothing was changed`);
      }
      if (Date.now() > deadline || /FATAL|PANIC/.test(tail)) throw new CliError(`recovery failed: ${state.error.message}\n${tail}`, EXIT.PROBLEM, "nothing was changed; the live data is as it was");
    } else if (!state.r) {
      return;
    } else if (Date.now() - lastNote > 2000) {
      lastNote = Date.now();
      progress(`restore: replayed WAL up to ${state.lsn}`);
    }
    if (Date.now() > deadline) throw new CliError("recovery did not finish within 30 minutes", EXIT.PROBLEM, "nothing was changed");
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function verifyRecovered(server: Awaited<ReturnType<PhysicalHost["startRecovery"]>>, local: LocalEnvironment, backup: PhysicalBackupInfo): Promise<{ recoveredTo?: string; endLsn?: string; tables: Record<string, number> }> {
  const database = local.spec.postgres.database;
  const about = await withPg(server.config("postgres"), async (c) => {
    const row = (await c.query("SELECT (SELECT system_identifier::text FROM pg_control_system()) AS sysid, pg_last_xact_replay_timestamp() AS at, pg_current_wal_lsn()::text AS lsn, EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS db", [database])).rows[0];
    return row as { sysid: string; at: Date | null; lsn: string; db: boolean };
  });
  const where = `the recovered data (${backup.id})`;
  if (about.sysid !== backup.manifest.postgres.systemIdentifier) throw new CliError(`${where} has system identifier ${about.sysid}, not ${backup.manifest.postgres.systemIdentifier}`, EXIT.PROBLEM, "nothing was changed");
  if (!about.db) throw new CliError(`${where} has no database ${database}: not a database of this project`, EXIT.PROBLEM, "nothing was changed");
  const tables = await withPg(server.config(database), async (c) => {
    const head = (await c.query(`SELECT name FROM ${MIGRATIONS_TABLE} ORDER BY run_on DESC, id DESC LIMIT 1`)).rows[0]?.name as string | undefined;
    if (head && !knownMigrations().includes(head)) throw new CliError(`${where} comes from a newer schema: migration head ${head} is unknown to this code`, EXIT.ERROR, "restore it with the toolkit version that made it; nothing was changed");
    const names = (await c.query("SELECT relname FROM pg_stat_user_tables WHERE schemaname = 'public' ORDER BY relname")).rows.map((r: { relname: string }) => r.relname);
    const counts: Record<string, number> = {};
    for (const name of names) counts[name] = Number((await c.query(`SELECT count(*) AS n FROM public."${name.replace(/"/g, '""')}"`)).rows[0].n);
    return counts;
  });
  return { recoveredTo: about.at?.toISOString(), endLsn: about.lsn, tables };
}

/** The new timeline's history file goes to the archive, so a later recovery can follow it (archiving was off while it was made). */
function publishHistoryFiles(host: PhysicalHost, pgWal: string): void {
  if (!existsSync(pgWal)) return;
  const user = serviceUser();
  for (const name of readdirSync(pgWal).filter((n) => /^[0-9A-F]{8}\.history$/.test(n))) {
    const dest = path.join(host.archiveDir, name);
    if (existsSync(dest)) continue;
    const temp = `${dest}.tmp-${process.pid}`;
    copyFileSync(path.join(pgWal, name), temp);
    if (user) {
      try {
        chownSync(temp, user.uid, user.gid);
      } catch {
        // an archive this process cannot chown in (a volume): the file stays readable to the server
      }
    }
    renameSync(temp, dest);
  }
}
