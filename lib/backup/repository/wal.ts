/**
 * Archived WAL and the bucket. basic_archive keeps writing segments into the environment's
 * archive folder; `pushWal` uploads each one not yet in the bucket (metadata: sha256 and the
 * time it was archived, which point-in-time recovery reads), confirms it by HEAD, and only then
 * deletes the local file: a bucket outage leaves the segments where they are, never lost, and the
 * next push uploads them. History files (tiny; recovery follows timelines with them) are pushed
 * and also kept. `fetchWal` brings back what a recovery needs, checked as it streams.
 */
import { chownSync, createReadStream, existsSync, readdirSync, rmSync, statSync, utimesSync } from "node:fs";
import path from "node:path";
import { hashFile } from "../files.js";
import { parseSegmentName, SEGMENT_NAME } from "../physical/wal.js";
import { downloadObject } from "./backups.js";
import { repositoryKeys, type ObjectStore } from "./objects.js";

const HISTORY = /^[0-9A-F]{8}\.history$/;
const BACKUP_HISTORY = /^[0-9A-F]{24}\.[0-9A-F]{8}\.backup$/;

/** Files of the archive folder that belong in the bucket (complete ones: basic_archive renames them into place). */
function pushable(name: string): boolean {
  return SEGMENT_NAME.test(name) || HISTORY.test(name) || BACKUP_HISTORY.test(name);
}

export interface PushReport {
  archiveDir: string;
  location: string;
  pushed: { name: string; bytes: number }[];
  /** Already in the bucket with the same SHA-256 (a push cut short before the local delete). */
  alreadyThere: string[];
  deletedLocal: number;
  /** Segments still in the archive folder after this pass, and the oldest one's age. */
  backlog: WalBacklog;
  seconds: number;
}

export interface WalBacklog {
  segments: number;
  bytes: number;
  oldestSeconds?: number;
}

export async function pushWal(repo: ObjectStore, env: string, archiveDir: string, progress?: (m: string) => void): Promise<PushReport> {
  const started = Date.now();
  const names = existsSync(archiveDir) ? readdirSync(archiveDir).filter(pushable).sort() : [];
  const report: PushReport = { archiveDir, location: repo.locate(repositoryKeys.wal(env)), pushed: [], alreadyThere: [], deletedLocal: 0, backlog: { segments: 0, bytes: 0 }, seconds: 0 };
  for (const name of names) {
    const file = path.join(archiveDir, name);
    const key = repositoryKeys.walFile(env, name);
    const local = await hashFile(file);
    const archivedAt = statSync(file).mtime;
    let head = await repo.head(key);
    if (head?.sha256 === local.sha256) report.alreadyThere.push(name);
    else {
      progress?.(`push-wal: ${name} → ${repo.locate(key)}`);
      await repo.put(key, createReadStream(file), { sha256: local.sha256, bytes: local.bytes, metadata: { "archived-at": archivedAt.toISOString() } });
      head = await repo.head(key);
      if (head?.sha256 !== local.sha256 || head.bytes !== local.bytes) throw new Error(`${repo.locate(key)}: not confirmed after upload (HEAD sha256 ${head?.sha256 ?? "none"}); ${file} is kept`);
      report.pushed.push({ name, bytes: local.bytes });
    }
    // Confirmed in the bucket: the local segment may go (history files stay: tiny, and timelines are followed with them).
    if (SEGMENT_NAME.test(name)) {
      rmSync(file, { force: true });
      report.deletedLocal++;
    }
  }
  report.backlog = walBacklog(archiveDir);
  report.seconds = (Date.now() - started) / 1000;
  return report;
}

/** Segments in the archive folder not yet pushed (with a bucket, each is deleted once pushed). */
export function walBacklog(archiveDir: string, now = Date.now()): WalBacklog {
  const backlog: WalBacklog = { segments: 0, bytes: 0 };
  if (!existsSync(archiveDir)) return backlog;
  let oldest = Infinity;
  for (const name of readdirSync(archiveDir)) {
    if (!SEGMENT_NAME.test(name)) continue;
    const st = statSync(path.join(archiveDir, name));
    backlog.segments++;
    backlog.bytes += st.size;
    oldest = Math.min(oldest, st.mtimeMs);
  }
  if (backlog.segments) backlog.oldestSeconds = Math.max(0, (now - oldest) / 1000);
  return backlog;
}

/**
 * Downloads into the archive folder the bucket's WAL that is not there: segments from `fromSegment`
 * (the oldest base backup's start; none older is needed) and every history file, each checked
 * against its SHA-256, its time set to when it was archived (recovery picks the last segment for a
 * target time by it), owned as the archive folder is (by the server's user: the host's postgres
 * account for the embedded engine, the container's uid on a Docker volume).
 */
export async function fetchWal(repo: ObjectStore, env: string, archiveDir: string, fromSegment: string | undefined, progress?: (m: string) => void): Promise<{ fetched: string[] }> {
  const prefix = repositoryKeys.wal(env);
  const from = fromSegment ? parseSegmentName(fromSegment)?.segno : undefined;
  const fetched: string[] = [];
  const owner = statSync(archiveDir);
  for (const o of await repo.list(prefix)) {
    const name = o.key.slice(prefix.length);
    const seg = parseSegmentName(name);
    if (!seg && !HISTORY.test(name)) continue;
    if (seg && from !== undefined && seg.segno < from) continue;
    const file = path.join(archiveDir, name);
    if (existsSync(file)) continue;
    progress?.(`restore: downloading ${repo.locate(o.key)}`);
    const { metadata } = await downloadObject(repo, o.key, file);
    const at = metadata["archived-at"] ? new Date(metadata["archived-at"]) : o.lastModified;
    utimesSync(file, at, at);
    try {
      chownSync(file, owner.uid, owner.gid);
    } catch {
      // an archive this process cannot chown in (not root): it is then this process's own, as the server's is
    }
    fetched.push(name);
  }
  return { fetched };
}
