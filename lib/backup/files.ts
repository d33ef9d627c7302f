/**
 * Files of a backup: written by the tools straight into the file (never through this process),
 * hashed as they grow (size and sha256 known when the last byte lands, no second pass), 0600 in a
 * 0700 folder, fsynced, and published by one rename of the whole folder, so a failed or killed backup leaves only a `.partial-…` folder that nothing
 * mistakes for a backup.
 */
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from "node:fs";
import { open } from "node:fs/promises";
import path from "node:path";
import { ensureDir } from "../fs.js";
import { onTermination } from "../signals.js";
import type { ManifestFile } from "./manifest.js";

/** Prefix of folders that are being written (or were left by a killed backup). */
export const PARTIAL_PREFIX = ".partial-";

/**
 * sha256 of a file that another process is writing (a dump going straight from pg_dump or gzip
 * into the file): follows it as it grows, and finishes once `finished` has settled and the end is
 * read. One reused buffer: the data never piles up in this process (peak memory stays flat however
 * large the dump), and nothing is read twice.
 */
export async function hashGrowingFile(file: string, finished: Promise<unknown>, onBytes?: (bytes: number) => void): Promise<ManifestFile> {
  let done = false;
  const settled = finished.then(
    () => (done = true),
    () => (done = true),
  );
  const handle = await open(file, "r");
  const hash = createHash("sha256");
  const buffer = Buffer.allocUnsafe(1024 * 1024);
  let position = 0;
  try {
    for (;;) {
      const wasDone = done; // read after the writer ended: a short read is then the real end
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, position);
      if (bytesRead > 0) {
        hash.update(buffer.subarray(0, bytesRead));
        position += bytesRead;
        onBytes?.(position);
        continue;
      }
      if (wasDone) break;
      await Promise.race([settled, new Promise((r) => setTimeout(r, 25))]);
    }
  } finally {
    await handle.close();
  }
  await finished; // the writer's own error, if any, wins
  return { name: path.basename(file), bytes: position, sha256: hash.digest("hex") };
}

/** Size and sha256 of a file, with one reused buffer. */
export async function hashFile(file: string): Promise<ManifestFile> {
  return hashGrowingFile(file, Promise.resolve());
}

export async function fsyncFile(file: string): Promise<void> {
  const handle = await open(file, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function fsyncDir(dir: string): Promise<void> {
  try {
    await fsyncFile(dir);
  } catch {
    // some filesystems refuse fsync on folders; the rename is still atomic
  }
}

/** A folder being written: files go in `dir`; `publish()` renames it to its final name. */
export interface PartialDir {
  dir: string;
  /** Renames to `<root>/<id>` (a free variant of it) and returns the final path. */
  publish(): Promise<string>;
  discard(): void;
}

export function createPartialDir(root: string, id: string): PartialDir {
  ensureDir(root, 0o700);
  const dir = path.join(root, `${PARTIAL_PREFIX}${id}-${process.pid}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { mode: 0o700 });
  ensureDir(dir, 0o700);
  // Killed by a signal: the unfinished folder goes (a SIGKILL leaves it for the next run to sweep).
  const unregister = onTermination(`remove ${dir}`, () => rmSync(dir, { recursive: true, force: true }));
  return {
    dir,
    async publish() {
      unregister();
      await fsyncDir(dir);
      let final = path.join(root, id);
      for (let n = 2; existsSync(final); n++) final = path.join(root, `${id}-${n}`);
      renameSync(dir, final);
      await fsyncDir(root);
      return final;
    },
    discard() {
      unregister();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Backup folders under a root (published ones and partial ones). */
export function listBackupDirs(root: string): { complete: string[]; partial: string[] } {
  if (!existsSync(root)) return { complete: [], partial: [] };
  const complete: string[] = [];
  const partial: string[] = [];
  for (const entry of readdirSync(root, { withFileTypes: true })) {
    if (!entry.isDirectory()) continue;
    (entry.name.startsWith(PARTIAL_PREFIX) ? partial : entry.name.startsWith(".") ? [] : complete).push(path.join(root, entry.name));
  }
  return { complete: complete.sort(), partial: partial.sort() };
}

/** The UTC id of a backup started at `date`: 20251127T020000Z. */
export function backupId(date: Date): string {
  return date.toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
}

export function fileMode(file: string): number {
  return statSync(file).mode & 0o777;
}
