/**
 * The physical backups of an environment and what its WAL archive can reach: `backup list`
 * (each base backup, the restorable window) and `backup prune` (keep backup.keepBase base
 * backups, delete only the WAL that none of them needs).
 */
import { existsSync, readFileSync, rmSync, statSync } from "node:fs";
import path from "node:path";
import { CliError, EXIT } from "../../errors.js";
import { readRecord, specOf } from "../../state/record.js";
import { withEnvLock } from "../../state/lock.js";
import { envPaths } from "../../state/paths.js";
import { processAlive } from "../../state/processes.js";
import { backupRoot } from "../backup.js";
import { listBackupDirs } from "../files.js";
import { parsePhysicalManifest, PHYSICAL_MANIFEST_FILE, type PhysicalManifest } from "./manifest.js";
import { latestTimeline, parseLsn, readArchive, segmentOf, segmentsOnPath, type ArchiveContents } from "./wal.js";

export interface PhysicalBackupInfo {
  id: string;
  dir: string;
  /** From stopTime on, this backup plus the archive can reach any time. */
  stopTime: string;
  startLsn: string;
  stopLsn: string;
  timeline: number;
  startWal: string;
  /** Bytes of the folder's files (compressed tar, server manifest, RDB). */
  bytes: number;
  manifest: PhysicalManifest;
}

export interface PhysicalListing {
  root: string;
  archiveDir: string;
  backups: PhysicalBackupInfo[];
  /** The earliest and latest time a restore can reach (oldest backup's end, newest archived segment). */
  window?: { earliest: string; latest: string };
  /** Base-backup folders that are not usable (damaged manifest, another environment's). */
  unrecognised: { dir: string; why: string }[];
}

/** Where an environment's WAL archive is, as this process reads it. */
export function archiveDirOf(env: string): string {
  const record = readRecord(env);
  if (!record) throw new CliError(`environment '${env}' has no local state, so it has no WAL archive here`, EXIT.ERROR, `bring it up: npm run up -- --env ${env}`);
  if (record.engine === "docker") {
    // The WAL-archive volume's host folder, recorded by env:ci --engine docker (lib/backup/physical/docker-host.ts).
    const recorded = (record.docker as { archiveDir?: string } | undefined)?.archiveDir;
    if (!recorded) throw new CliError(`Docker environment '${env}' has no WAL archive in its record (${envPaths(env).record})`, EXIT.ERROR, "recreate it with npm run env:ci -- --engine docker");
    return recorded;
  }
  return envPaths(env).pgArchive;
}

export function isPhysicalBackupDir(dir: string): boolean {
  return existsSync(path.join(dir, PHYSICAL_MANIFEST_FILE));
}

export function listPhysical(env: string, out?: string, archiveDir = archiveDirOf(env)): PhysicalListing & { archive: ArchiveContents } {
  const spec = specOf(env);
  const root = backupRoot(spec, env, out);
  const backups: PhysicalBackupInfo[] = [];
  const unrecognised: { dir: string; why: string }[] = [];
  for (const dir of listBackupDirs(root).complete.filter(isPhysicalBackupDir)) {
    const { manifest, problems } = parsePhysicalManifest(readFileSync(path.join(dir, PHYSICAL_MANIFEST_FILE), "utf8"));
    if (!manifest) {
      unrecognised.push({ dir, why: `${PHYSICAL_MANIFEST_FILE}: ${problems.join("; ")}` });
      continue;
    }
    if (manifest.env !== env) {
      unrecognised.push({ dir, why: `a backup of '${manifest.env}'` });
      continue;
    }
    const p = manifest.postgres;
    backups.push({ id: manifest.id, dir, stopTime: p.stopTime, startLsn: p.startLsn, stopLsn: p.stopLsn, timeline: p.timeline, startWal: p.startWal, bytes: manifest.files.reduce((n, f) => n + f.bytes, 0), manifest });
  }
  backups.sort((a, b) => a.stopTime.localeCompare(b.stopTime));
  const archive = readArchive(archiveDir);
  const last = backups.at(-1);
  const reachable = last ? segmentsOnPath(archive, latestTimeline(archive, last.timeline, parseLsn(last.startLsn))) : [];
  const newest = reachable.reduce<Date | undefined>((m, s) => (!m || s.archivedAt > m ? s.archivedAt : m), undefined);
  const oldest = backups[0];
  const window = oldest && newest && newest.getTime() >= Date.parse(oldest.stopTime) ? { earliest: oldest.stopTime, latest: newest.toISOString() } : undefined;
  return { root, archiveDir, backups, window, unrecognised, archive };
}

export interface PhysicalPruneReport {
  root: string;
  archiveDir: string;
  dryRun: boolean;
  keepBase: number;
  kept: string[];
  removed: { id: string; dir: string; bytes: number }[];
  /** WAL files older than the oldest kept backup's start. */
  removedWal: { name: string; bytes: number }[];
  removedPartial: string[];
  /** The first segment a kept backup needs (nothing from it on is deleted). */
  keepWalFrom?: string;
}

/** Keeps the newest backup.keepBase base backups and the WAL from the oldest kept one's start. */
export async function prunePhysical(env: string, options: { dryRun?: boolean; out?: string; log?: (m: string) => void; lockWaitSeconds?: number } = {}): Promise<PhysicalPruneReport> {
  const spec = specOf(env);
  const run = async (): Promise<PhysicalPruneReport> => {
    const listing = listPhysical(env, options.out);
    const keep = listing.backups.slice(-spec.backup.keepBase);
    const removed = listing.backups.slice(0, Math.max(0, listing.backups.length - spec.backup.keepBase));
    const oldestKept = keep[0];
    // Without a kept backup no WAL is needed by one, but it may be all there is: keep it.
    const keepFrom = oldestKept ? segmentOf(parseLsn(oldestKept.startLsn)) : undefined;
    const removedWal: { name: string; bytes: number }[] = [];
    if (keepFrom !== undefined) {
      for (const s of listing.archive.segments) if (s.segno < keepFrom) removedWal.push({ name: s.name, bytes: s.bytes });
      // Backup history files and .partial segments, by the segment their name starts with.
      for (const name of listing.archive.other) {
        const m = /^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})\.(?:[0-9A-F]{8}\.backup|partial)$/.exec(name);
        if (!m) continue;
        const segno = BigInt(`0x${m[2]}`) * 256n + BigInt(`0x${m[3]}`);
        if (segno < keepFrom) removedWal.push({ name, bytes: statSync(path.join(listing.archiveDir, name)).size });
      }
    }
    const removedPartial = listBackupDirs(listing.root).partial.filter((dir) => {
      const pid = Number(/-(\d+)$/.exec(path.basename(dir))?.[1]);
      return !(pid > 0 && pid !== process.pid && processAlive(pid));
    });
    if (!options.dryRun) {
      for (const r of removed) rmSync(r.dir, { recursive: true, force: true });
      for (const w of removedWal) rmSync(path.join(listing.archiveDir, w.name), { force: true });
      for (const dir of removedPartial) rmSync(dir, { recursive: true, force: true });
    }
    return {
      root: listing.root,
      archiveDir: listing.archiveDir,
      dryRun: options.dryRun === true,
      keepBase: spec.backup.keepBase,
      kept: keep.map((b) => b.id),
      removed: removed.map((b) => ({ id: b.id, dir: b.dir, bytes: b.bytes })),
      removedWal,
      removedPartial,
      keepWalFrom: oldestKept?.startWal,
    };
  };
  if (options.dryRun) return run();
  return withEnvLock(env, envPaths(env).lock, { purpose: "pruning its backups", waitSeconds: options.lockWaitSeconds, onWait: options.log }, run);
}
