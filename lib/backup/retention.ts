/**
 * Retention (`backup prune`) and the schedule line (`backup schedule`), from the spec:
 * keep the newest backup of each of the last `backup.keepDaily` days that have one, and of each
 * of the last `backup.keepWeekly` ISO weeks; remove the other complete backups of the
 * environment, and the `.partial-…` folders of killed runs. Days and weeks are UTC, like the
 * backup ids. Full and single-table backups are kept by separate counts. Folders whose manifest
 * cannot be read are never removed (they are reported): prune deletes only what it recognises.
 */
import { existsSync, readFileSync, rmSync, statSync } from "node:fs";
import path from "node:path";
import { withEnvLock } from "../state/lock.js";
import { envPaths } from "../state/paths.js";
import { processAlive } from "../state/processes.js";
import { specOf } from "../state/record.js";
import { PROJECT_DIR } from "../spec/load.js";
import type { Spec } from "../spec/schema.js";
import { backupRoot } from "./backup.js";
import { listBackupDirs } from "./files.js";
import { MANIFEST_FILE, parseManifest } from "./manifest.js";
import { PHYSICAL_MANIFEST_FILE } from "./physical/manifest.js";
import { shellWord } from "../shell.js";

export interface BackupEntry {
  dir: string;
  id: string;
  /** full, or table:<name>. */
  scope: string;
  createdAt: Date;
  bytes: number;
}

export interface RetentionDecision {
  entry: BackupEntry;
  keep: boolean;
  /** daily 2025-11-27, weekly 2025-W48… */
  reasons: string[];
}

/** Which backups the policy keeps. Pure: the entries in, a decision per entry out. */
export function planRetention(entries: BackupEntry[], keepDaily: number, keepWeekly: number): RetentionDecision[] {
  const decisions = new Map<BackupEntry, string[]>(entries.map((e) => [e, []]));
  const scopes = new Set(entries.map((e) => e.scope));
  for (const scope of scopes) {
    const newestFirst = entries.filter((e) => e.scope === scope).sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime());
    const take = (bucket: (d: Date) => string, limit: number, label: string) => {
      const seen = new Set<string>();
      for (const entry of newestFirst) {
        const key = bucket(entry.createdAt);
        if (seen.has(key)) continue;
        if (seen.size >= limit) break;
        seen.add(key);
        decisions.get(entry)!.push(`${label} ${key}`);
      }
    };
    take(utcDay, keepDaily, "daily");
    take(isoWeek, keepWeekly, "weekly");
  }
  return entries.map((entry) => ({ entry, keep: decisions.get(entry)!.length > 0, reasons: decisions.get(entry)! }));
}

export function utcDay(d: Date): string {
  return d.toISOString().slice(0, 10);
}

/** ISO 8601 week of a UTC date: 2025-W48. */
export function isoWeek(d: Date): string {
  const day = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()));
  const weekday = day.getUTCDay() || 7;
  day.setUTCDate(day.getUTCDate() + 4 - weekday); // the Thursday of this week decides its year
  const yearStart = new Date(Date.UTC(day.getUTCFullYear(), 0, 1));
  const week = Math.ceil(((day.getTime() - yearStart.getTime()) / 86_400_000 + 1) / 7);
  return `${day.getUTCFullYear()}-W${String(week).padStart(2, "0")}`;
}

export interface BackupListing {
  root: string;
  backups: BackupEntry[];
  /** Folders with a missing or unreadable manifest, or another environment's. */
  unrecognised: { dir: string; why: string }[];
  partial: string[];
}

/** The backups under an environment's backup root (manifests parsed, files not hashed). */
export function listBackups(env: string, root: string): BackupListing {
  const { complete, partial } = listBackupDirs(root);
  const backups: BackupEntry[] = [];
  const unrecognised: { dir: string; why: string }[] = [];
  for (const dir of complete) {
    if (existsSync(path.join(dir, PHYSICAL_MANIFEST_FILE))) continue; // a base backup: lib/backup/physical/catalog.ts lists and prunes those
    const file = path.join(dir, MANIFEST_FILE);
    if (!existsSync(file)) {
      unrecognised.push({ dir, why: `no ${MANIFEST_FILE}` });
      continue;
    }
    const { manifest, problems } = parseManifest(readFileSync(file, "utf8"));
    if (!manifest) {
      unrecognised.push({ dir, why: problems.join("; ") });
      continue;
    }
    if (manifest.env !== env) {
      unrecognised.push({ dir, why: `a backup of '${manifest.env}'` });
      continue;
    }
    const scope = manifest.scope === "table" ? `table:${Object.keys(manifest.postgres?.tables ?? {}).join(",")}` : "full";
    backups.push({ dir, id: manifest.id, scope, createdAt: new Date(manifest.startedAt), bytes: manifest.files.reduce((n, f) => n + f.bytes, 0) });
  }
  return { root, backups: backups.sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime()), unrecognised, partial };
}

export interface PruneReport {
  root: string;
  dryRun: boolean;
  keepDaily: number;
  keepWeekly: number;
  kept: { id: string; reasons: string[] }[];
  removed: { id: string; dir: string; bytes: number }[];
  removedPartial: string[];
  unrecognised: { dir: string; why: string }[];
}

/** Applies the spec's retention to an environment's backups (under its lock). */
export async function pruneBackups(options: { env: string; out?: string; dryRun?: boolean; log?: (m: string) => void; lockWaitSeconds?: number }): Promise<PruneReport> {
  const spec = specOf(options.env);
  const root = backupRoot(spec, options.env, options.out);
  const run = async (): Promise<PruneReport> => {
    const listing = listBackups(options.env, root);
    const decisions = planRetention(listing.backups, spec.backup.keepDaily, spec.backup.keepWeekly);
    const removed = decisions.filter((d) => !d.keep).map((d) => ({ id: d.entry.id, dir: d.entry.dir, bytes: d.entry.bytes }));
    // A partial folder is junk unless the backup that writes it still runs (its pid is in the name).
    const removedPartial = listing.partial.filter((dir) => {
      const pid = Number(/-(\d+)$/.exec(path.basename(dir))?.[1]);
      return !(pid > 0 && pid !== process.pid && processAlive(pid) && Date.now() - statSync(dir).mtimeMs < 86_400_000);
    });
    if (!options.dryRun) {
      for (const r of removed) rmSync(r.dir, { recursive: true, force: true });
      for (const dir of removedPartial) rmSync(dir, { recursive: true, force: true });
    }
    return {
      root,
      dryRun: options.dryRun === true,
      keepDaily: spec.backup.keepDaily,
      keepWeekly: spec.backup.keepWeekly,
      kept: decisions.filter((d) => d.keep).map((d) => ({ id: d.entry.id, reasons: d.reasons })),
      removed,
      removedPartial,
      unrecognised: listing.unrecognised,
    };
  };
  if (options.dryRun) return run();
  return withEnvLock(options.env, envPaths(options.env).lock, { purpose: "pruning its backups", waitSeconds: options.lockWaitSeconds, onWait: options.log }, run);
}

export interface ScheduleLine {
  schedule: string;
  command: string;
  /** The crontab line (`%` escaped, as cron requires). */
  cron: string;
  log: string;
}

/**
 * The guide's cron line for this project: at spec.backup.schedule (default `0 2 * * *`), a backup
 * then the retention, appended to a log next to the backups. PATH carries this Node's folder,
 * since cron's PATH is minimal.
 */
export function scheduleLine(spec: Spec, env: string, options: { projectDir?: string; nodeBin?: string; out?: string } = {}): ScheduleLine {
  const projectDir = options.projectDir ?? PROJECT_DIR;
  const nodeDir = path.dirname(options.nodeBin ?? process.execPath);
  const root = backupRoot(spec, env, options.out);
  const log = path.join(root, "backup.log");
  const args = `--env ${shellWord(env)}${options.out ? ` --out ${shellWord(path.resolve(options.out))}` : ""}`;
  const command =
    `cd ${shellWord(projectDir)} && export PATH=${shellWord(nodeDir)}:/usr/local/bin:/usr/bin:/bin && mkdir -p -m 700 ${shellWord(root)} && ` +
    `{ npm run -s backup -- create ${args} && npm run -s backup -- prune ${args}; } >> ${shellWord(log)} 2>&1`;
  return { schedule: spec.backup.schedule, command, cron: `${spec.backup.schedule} ${command.replace(/%/g, "\\%")}`, log };
}

/**
 * With a bucket (backup.repository): the cron lines that push the archived WAL every
 * walPushSeconds. cron counts minutes, so a shorter interval is several lines of the same minute,
 * each sleeping its share first; a longer one runs every N minutes.
 */
export function walPushLines(spec: Spec, env: string, walPushSeconds: number, options: { projectDir?: string; nodeBin?: string } = {}): { everySeconds: number; lines: string[] } {
  const projectDir = options.projectDir ?? PROJECT_DIR;
  const nodeDir = path.dirname(options.nodeBin ?? process.execPath);
  const root = backupRoot(spec, env);
  const log = path.join(root, "push-wal.log");
  const command = (sleep: number) =>
    `cd ${shellWord(projectDir)} && export PATH=${shellWord(nodeDir)}:/usr/local/bin:/usr/bin:/bin && mkdir -p -m 700 ${shellWord(root)} && ` +
    `${sleep ? `sleep ${sleep} && ` : ""}npm run -s backup -- push-wal --env ${shellWord(env)} >> ${shellWord(log)} 2>&1`;
  if (walPushSeconds >= 60) {
    const minutes = Math.max(1, Math.round(walPushSeconds / 60));
    return { everySeconds: minutes * 60, lines: [`${minutes === 1 ? "*" : `*/${minutes}`} * * * * ${command(0)}`] };
  }
  const perMinute = Math.floor(60 / walPushSeconds);
  return { everySeconds: 60 / perMinute, lines: Array.from({ length: perMinute }, (_, i) => `* * * * * ${command(Math.round((i * 60) / perMinute))}`) };
}
