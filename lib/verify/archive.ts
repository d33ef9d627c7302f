/**
 * Continuous archiving's health, shared by `verify` (checks) and `monitor` (metric lines):
 *
 *   archiver   pg_stat_archiver: failing now (the last failure is newer than the last success),
 *              the failed count and the last failed WAL;
 *   lag        the oldest completed WAL segment still waiting for the archiver
 *              (pg_wal/archive_status/*.ready) against alerts.archiveLagSeconds. An idle server's
 *              old last_archived_time is no failure: archive_timeout switches segments only when
 *              there were writes, so what counts is WAL written and not archived, not the clock;
 *   folder     the archive folder exists and the server's OS user may write into it (local
 *              targets; the archiver only finds out at the next segment, which may be an hour away);
 *   freshness  the newest base backup's age against alerts.backupMaxAgeHours.
 *
 * An assessment is neutral (ok / fail / skip / error); verify and monitor word it their way.
 */
import { accessSync, constants, existsSync, statSync } from "node:fs";
import path from "node:path";
import type pg from "pg";
import { POSTGRES_ARCHIVE_PATH } from "../engines/docker/containers.js";
import { findDockerBinary } from "../engines/docker/engine.js";
import { embeddedArchiveTarget } from "../engines/embedded/environment.js";

import { envPaths, serviceUser } from "../state/paths.js";
import type { Environment } from "../env/environment.js";
import type { ArchiveTarget } from "../spec/render.js";
import type { Spec } from "../spec/schema.js";
import { run } from "../process.js";
import { openEnvironment } from "../env/environment.js";

/**
 * Where a local target's server archives (its settings are then checked like every other one);
 * undefined for servers given by URL (RDS archives on its own) and when the spec turns archiving off.
 */
export function archiveTargetOf(target: Pick<Environment, "kind" | "env" | "spec">): ArchiveTarget | undefined {
  if (target.kind === "urls") return undefined;
  if (target.kind === "docker") return { archiveDirectory: POSTGRES_ARCHIVE_PATH };
  return embeddedArchiveTarget(envPaths(target.env));
}

/** What the server says about its archiving. */
export interface ArchiverState {
  walLevel: string;
  archiveMode: string;
  archiveLibrary: string;
  /** basic_archive.archive_directory; absent when the module is not loaded in this session. */
  archiveDirectory?: string;
  archiveTimeoutSeconds: number;
  inRecovery: boolean;
  archivedCount: number;
  lastArchivedWal?: string;
  lastArchivedAt?: string;
  failedCount: number;
  lastFailedWal?: string;
  lastFailedAt?: string;
  /** The segment being written now (absent during recovery). */
  currentWal?: string;
  /** Completed segments waiting for the archiver, and how long the oldest has waited. */
  waiting: number;
  oldestWaitingWal?: string;
  oldestWaitingSeconds?: number;
}

/** Reads pg_stat_archiver, the archive settings and pg_wal/archive_status (needs a superuser or pg_monitor). */
export async function readArchiver(client: pg.ClientBase): Promise<ArchiverState> {
  const { rows } = await client.query<{
    wal_level: string;
    archive_mode: string;
    archive_library: string;
    archive_directory: string | null;
    archive_timeout: number;
    in_recovery: boolean;
    archived_count: string;
    last_archived_wal: string | null;
    last_archived_time: Date | null;
    failed_count: string;
    last_failed_wal: string | null;
    last_failed_time: Date | null;
    current_wal: string | null;
  }>(`
    SELECT current_setting('wal_level') AS wal_level,
           current_setting('archive_mode') AS archive_mode,
           current_setting('archive_library') AS archive_library,
           current_setting('basic_archive.archive_directory', true) AS archive_directory,
           (SELECT setting::int FROM pg_settings WHERE name = 'archive_timeout') AS archive_timeout,
           pg_is_in_recovery() AS in_recovery,
           a.archived_count, a.last_archived_wal, a.last_archived_time,
           a.failed_count, a.last_failed_wal, a.last_failed_time,
           CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_walfile_name(pg_current_wal_lsn()) END AS current_wal
      FROM pg_stat_archiver a`);
  const r = rows[0]!;
  const waiting = await client.query<{ n: number; oldest: string | null; age: number | null }>(`
    SELECT count(*)::int AS n,
           (array_agg(replace(name, '.ready', '') ORDER BY modification))[1] AS oldest,
           extract(epoch FROM now() - min(modification))::float8 AS age
      FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'`);
  const w = waiting.rows[0]!;
  return {
    walLevel: r.wal_level,
    archiveMode: r.archive_mode,
    archiveLibrary: r.archive_library,
    archiveDirectory: r.archive_directory || undefined,
    archiveTimeoutSeconds: Number(r.archive_timeout),
    inRecovery: r.in_recovery,
    archivedCount: Number(r.archived_count),
    lastArchivedWal: r.last_archived_wal ?? undefined,
    lastArchivedAt: r.last_archived_time?.toISOString(),
    failedCount: Number(r.failed_count),
    lastFailedWal: r.last_failed_wal ?? undefined,
    lastFailedAt: r.last_failed_time?.toISOString(),
    currentWal: r.current_wal ?? undefined,
    waiting: w.n,
    oldestWaitingWal: w.oldest ?? undefined,
    oldestWaitingSeconds: w.age === null ? undefined : Math.max(0, w.age),
  };
}

export type AssessmentStatus = "ok" | "fail" | "skip" | "error";

/** One judged fact; verify makes a Check of it, monitor a MetricLine. */
export interface Assessment {
  /** archiver, lag, folder, freshness. */
  key: "archiver" | "lag" | "folder" | "freshness";
  title: string;
  status: AssessmentStatus;
  /** What was found, one line. */
  value: string;
  /** The threshold, for people (e.g. "> 300 s"). */
  threshold?: string;
  /** The number compared with the threshold. */
  measured?: number;
  hint?: string;
}

/** The archiver is failing now: its last failure is newer than its last success (or it never succeeded). */
export function archiverFailing(state: ArchiverState): boolean {
  if (!state.lastFailedAt) return false;
  return !state.lastArchivedAt || Date.parse(state.lastFailedAt) >= Date.parse(state.lastArchivedAt);
}

/** Why archiving does not apply here (spec off), or undefined. */
export function archivingSkipReason(spec: Spec): string | undefined {
  if (spec.target === "aws") return "RDS archives on its own (point-in-time restore: restore --to)";
  if (!spec.backup.archive.enabled) return "the spec turns archiving off (backup.archive.enabled: false)";
  return undefined;
}

/** The archiver's state, judged against the spec's thresholds. `folderProblem`: what is wrong with the archive folder, when it was checked. */
export function assessArchiver(state: ArchiverState, spec: Spec, folder?: { checked: boolean; problem?: string }): Assessment[] {
  const lagLimit = spec.alerts.archiveLagSeconds;
  const out: Assessment[] = [];
  if (state.archiveMode === "off") {
    out.push({
      key: "archiver",
      title: "WAL archiver",
      status: "fail",
      value: "archive_mode is off: no WAL is archived, point-in-time recovery has nothing to replay",
      hint: "the spec says backup.archive.enabled: true; re-apply it: npm run up (archive_mode needs a restart)",
    });
    return out;
  }
  const failing = archiverFailing(state);
  const where = state.archiveDirectory ? ` into ${state.archiveDirectory}` : "";
  out.push({
    key: "archiver",
    title: "WAL archiver",
    status: failing ? "fail" : "ok",
    value: failing
      ? `failing${where}: last failed WAL ${state.lastFailedWal} at ${state.lastFailedAt}; ${state.failedCount} failures since the statistics were reset; last success ${state.lastArchivedWal ? `${state.lastArchivedWal} at ${state.lastArchivedAt}` : "never"}`
      : state.archivedCount
        ? `${state.archivedCount} segments archived${where}, last ${state.lastArchivedWal} at ${state.lastArchivedAt}${state.failedCount ? ` (${state.failedCount} earlier failures, recovered)` : ""}`
        : `no segment completed yet${where} (nothing to archive)`,
    measured: state.failedCount,
    hint: failing ? `the archive folder${state.archiveDirectory ? ` ${state.archiveDirectory}` : ""} must exist and be writable by the server's OS user, with free space; the server's log says why (basic_archive); the archiver retries within a minute` : undefined,
  });
  const age = state.oldestWaitingSeconds ?? 0;
  const late = state.waiting > 0 && age > lagLimit;
  out.push({
    key: "lag",
    title: "WAL waiting to be archived",
    status: late ? "fail" : "ok",
    value: state.waiting
      ? `${state.waiting} segment${state.waiting > 1 ? "s" : ""} waiting, the oldest (${state.oldestWaitingWal}) for ${Math.round(age)} s`
      : `none: ${state.currentWal ? `writing ${state.currentWal}` : "in recovery"}${state.lastArchivedWal ? `, last archived ${state.lastArchivedWal}` : ""} (an idle server switches no segment, so an old last archive is fine)`,
    threshold: `> ${lagLimit} s`,
    measured: age,
    hint: late ? "the archiver is behind or failing: see the WAL archiver line and the server's log" : undefined,
  });
  if (folder?.checked) {
    out.push({
      key: "folder",
      title: "archive folder",
      status: folder.problem ? "fail" : "ok",
      value: folder.problem ?? `${state.archiveDirectory} writable by the server`,
      hint: folder.problem ? "make it a folder the server's OS user owns (mode 0700); the archiver then catches up by itself" : undefined,
    });
  }
  return out;
}

/** The folder's problem for the server's OS user (uid/gid), or undefined when it may write there. Runs on the host. */
export function folderWritableProblem(dir: string, user?: { uid: number; gid: number; name: string }): string | undefined {
  if (!existsSync(dir)) return `archive folder ${dir} does not exist`;
  const stat = statSync(dir);
  if (!stat.isDirectory()) return `archive folder ${dir} is not a folder`;
  if (!user) {
    try {
      accessSync(dir, constants.W_OK | constants.X_OK);
      return undefined;
    } catch {
      return `archive folder ${dir} is not writable (mode ${(stat.mode & 0o777).toString(8)})`;
    }
  }
  // As root the toolkit may write anywhere; what matters is the server's account.
  const bits = (s: { uid: number; gid: number; mode: number }, shift: { owner: number; group: number; other: number }) =>
    s.uid === user.uid ? shift.owner : s.gid === user.gid ? shift.group : shift.other;
  const writable = (stat.mode & bits(stat, { owner: 0o300, group: 0o030, other: 0o003 })) === bits(stat, { owner: 0o300, group: 0o030, other: 0o003 });
  if (!writable) return `archive folder ${dir} is not writable by ${user.name} (mode ${(stat.mode & 0o777).toString(8)}, owner uid ${stat.uid})`;
  for (let current = path.dirname(dir); ; current = path.dirname(current)) {
    const s = statSync(current);
    const x = bits(s, { owner: 0o100, group: 0o010, other: 0o001 });
    if ((s.mode & x) === 0) return `archive folder ${dir}: ${user.name} cannot enter ${current} (mode ${(s.mode & 0o777).toString(8)})`;
    if (path.dirname(current) === current) break;
  }
  return undefined;
}

/**
 * Checks the archive folder where the server's OS user sees it: the embedded server's folder on
 * this host (as the service account, not as root, who may write anywhere), a container's through
 * `docker exec` as the postgres user. URL targets: not checked (`checked: false`).
 */
export async function checkArchiveFolder(target: Environment, dir: string | undefined): Promise<{ checked: boolean; problem?: string }> {
  if (target.kind === "urls") return { checked: false };
  if (!dir) return { checked: true, problem: "basic_archive.archive_directory is not set: the archiver has nowhere to write" };
  if (target.kind === "embedded") return { checked: true, problem: folderWritableProblem(dir, serviceUser()) };
  const container = openEnvironment(target.env).record.docker?.containers.postgres;
  const docker = findDockerBinary();
  if (!container || !docker) return { checked: false };
  try {
    await run(docker, ["exec", "-u", "postgres", container, "sh", "-c", 'test -d "$1" && test -w "$1" && test -x "$1"', "sh", dir], { timeout: 20_000 });
    return { checked: true };
  } catch (error) {
    const e = error as { code?: number | string; stderr?: string };
    if (e.code === 1) return { checked: true, problem: `archive folder ${dir} (in container ${container}) is missing or not writable by postgres` };
    return { checked: false };
  }
}

/**
 * The newest base backup of a local environment (its backup repository, backup.dir), judged
 * against alerts.backupMaxAgeHours; undefined for servers given by URL (their backups are RDS's).
 */
export async function freshnessOf(target: Environment, spec: Spec): Promise<Assessment | undefined> {
  if (target.kind === "urls") return undefined;
  try {
    const { openBackupRepository } = await import("../backup/repository/index.js");
    // With a bucket the base backups are there (the local copies are removed once uploaded).
    const newest = (await (await openBackupRepository(target.env)).list()).physical.at(-1);
    return assessFreshness(newest && { id: newest.id, at: newest.stopTime }, spec, openEnvironment(target.env).record.createdAt);
  } catch (error) {
    return { key: "freshness", title: "newest base backup", status: "error", value: `could not list the base backups: ${(error as Error).message.split("\n")[0]}`, threshold: `> ${spec.alerts.backupMaxAgeHours} h` };
  }
}

/** A base backup as the freshness check needs it. */
export interface BaseBackupAge {
  id: string;
  /** When it completed (its stop time). */
  at: string;
}

/**
 * The newest base backup's age against alerts.backupMaxAgeHours. With none at all, an
 * environment younger than the threshold is not yet late (skip); an older one is.
 */
export function assessFreshness(newest: BaseBackupAge | undefined, spec: Spec, environmentCreatedAt: string | undefined, now = Date.now()): Assessment {
  const limitHours = spec.alerts.backupMaxAgeHours;
  const threshold = `> ${limitHours} h`;
  const hint = `take one: npm run backup -- create --env ${spec.env} --physical (schedule it: npm run backup -- schedule)`;
  if (!newest) {
    const ageHours = environmentCreatedAt ? (now - Date.parse(environmentCreatedAt)) / 3_600_000 : Infinity;
    return ageHours > limitHours
      ? { key: "freshness", title: "newest base backup", status: "fail", value: `no base backup, and the environment is ${environmentCreatedAt ? `${ageHours.toFixed(1)} h old` : "of unknown age"}`, threshold, hint }
      : { key: "freshness", title: "newest base backup", status: "ok", value: `no base backup yet; the environment is ${ageHours.toFixed(1)} h old, one is due within ${(limitHours - ageHours).toFixed(1)} h`, threshold, hint };
  }
  const ageHours = (now - Date.parse(newest.at)) / 3_600_000;
  return {
    key: "freshness",
    title: "newest base backup",
    status: ageHours > limitHours ? "fail" : "ok",
    value: `${newest.id}, ${ageHours < 1 ? `${Math.round(ageHours * 60)} min` : `${ageHours.toFixed(1)} h`} old`,
    threshold,
    measured: ageHours,
    hint: ageHours > limitHours ? hint : undefined,
  };
}

/**
 * With a bucket (backup.repository): archived WAL that waits here to be pushed. A segment older
 * than two push intervals means the pushes fail (bucket unreachable, credentials): it is safe
 * on this disk, but not off the machine, so the RPO the bucket promises is not met.
 */
export async function walPushAssessment(target: Environment, spec: Spec): Promise<{ status: AssessmentStatus; detail: string; hint?: string; threshold: string } | undefined> {
  if (target.kind === "urls" || !spec.backup.archive.enabled) return undefined;
  const { openBackupRepository } = await import("../backup/repository/index.js");
  const repo = await openBackupRepository(target.env);
  if (repo.walPushSeconds === undefined) return undefined;
  const { archiveDirOf } = await import("../backup/physical/catalog.js");
  const { walBacklog } = await import("../backup/repository/wal.js");
  const limit = 2 * repo.walPushSeconds;
  const threshold = `oldest waiting > ${limit} s (2 × backup.repository.walPushSeconds)`;
  let b;
  try {
    b = walBacklog(archiveDirOf(target.env));
  } catch (error) {
    return { status: "error", detail: `could not read the archive folder: ${(error as Error).message.split("\n")[0]}`, threshold };
  }
  const detail = `WAL waiting to be pushed: ${b.segments} segments, ${(b.bytes / 1048576).toFixed(1)} MiB, oldest ${Math.round(b.oldestSeconds ?? 0)} s (to ${repo.describe()})`;
  if ((b.oldestSeconds ?? 0) > limit) return { status: "fail", detail, threshold, hint: `push it: npm run backup -- push-wal --env ${target.env} (check the bucket, the endpoint and the credentials; cron: npm run -s backup -- schedule --env ${target.env})` };
  return { status: "ok", detail, threshold };
}
