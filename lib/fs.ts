/** File helpers that never leave a half-written file behind. */
import { randomBytes } from "node:crypto";
import { chmodSync, mkdirSync, readFileSync, renameSync, rmSync, statfsSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { CliError, EXIT } from "./errors.js";

/** Writes a file atomically (temp file in the same folder, then rename), with the given mode. */
export function writeFileAtomic(file: string, content: string | Uint8Array, mode = 0o600): void {
  makeDirs(path.dirname(file), 0o700);
  const temp = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(4).toString("hex")}.tmp`);
  try {
    writeFileSync(temp, content, { mode });
    chmodSync(temp, mode);
    renameSync(temp, file);
  } catch (error) {
    rmSync(temp, { force: true });
    throw error;
  }
}

/**
 * writeFileAtomic, unless the file already holds exactly this content with this mode: then
 * nothing is written (a repeated `up` leaves its files, and their mtimes, alone). Returns
 * whether it wrote.
 */
export function writeFileAtomicIfChanged(file: string, content: string, mode = 0o600): boolean {
  try {
    if ((statSync(file).mode & 0o777) === mode && readFileSync(file, "utf8") === content) return false;
  } catch {
    // absent or unreadable: write it
  }
  writeFileAtomic(file, content, mode);
  return true;
}

/** mkdir -p with a mode applied to the last folder even when it already existed. */
export function ensureDir(dir: string, mode = 0o700): string {
  makeDirs(dir, mode);
  chmodSync(dir, mode);
  return dir;
}

/** Below this much free space, a failed write is the disk being full, whatever the tool said. */
const NEARLY_FULL_BYTES = 256 * 1024;

/**
 * A write that failed because the disk under `dir` is full, as one clear error (`no space left
 * on /mnt/backups`), or undefined when that was not the cause. The tools say it many ways: gzip's
 * "No space left on device", ENOSPC from Node, or only the broken pipe pg_dump sees when the
 * writer downstream of it died.
 */
export function diskFullError(error: unknown, dir: string, what = "writing"): CliError | undefined {
  const e = error as { code?: string; message?: string };
  const said = e?.code === "ENOSPC" || /No space left on device|ENOSPC/i.test(e?.message ?? "");
  let free: number | undefined;
  try {
    const fs = statfsSync(dir);
    free = fs.bavail * fs.bsize;
  } catch {
    // the folder is gone (discarded): judge by the message alone
  }
  if (!said && !(free !== undefined && free < NEARLY_FULL_BYTES)) return undefined;
  const mount = mountPointOf(dir);
  return new CliError(
    `no space left on ${mount} while ${what} (${dir})${free !== undefined ? `: ${free < 1024 * 1024 ? `${Math.round(free / 1024)} kB` : `${(free / 1048576).toFixed(1)} MB`} free` : ""}; nothing was kept`,
    EXIT.ERROR,
    `free some space on ${mount}, or write elsewhere (--out DIR)`,
  );
}

/** The mount point holding `dir` (from /proc/self/mounts; the folder itself when unknown). */
export function mountPointOf(dir: string): string {
  const resolved = path.resolve(dir);
  try {
    const points = readFileSync("/proc/self/mounts", "utf8")
      .split("\n")
      .map((l) => l.split(" ")[1]?.replace(/\\040/g, " "))
      .filter((p): p is string => Boolean(p) && (resolved === p || resolved.startsWith(p === "/" ? "/" : `${p}/`)));
    return points.sort((a, b) => b.length - a.length)[0] ?? resolved;
  } catch {
    return resolved;
  }
}

/** statfs magic numbers of kernel file systems, where nothing of ours may be created. */
const KERNEL_FILE_SYSTEMS: Record<number, string> = { 0x9fa0: "/proc", 0x62656572: "/sys", 0x1cd1: "devpts", 0x64626720: "debugfs", 0x27e0eb: "cgroup", 0x63677270: "cgroup2", 0x73636673: "securityfs" };

/**
 * mkdir -p, one folder at a time, with an error that names the folder and the reason.
 * Node's own recursive mkdir never returns under /proc (it loops, blocking the event loop, so not
 * even SIGTERM gets through); walking the path ourselves fails at the first folder that cannot be.
 */
export function makeDirs(dir: string, mode = 0o700): void {
  const target = path.resolve(dir);
  const missing: string[] = [];
  let existing = target;
  for (;;) {
    let stat;
    try {
      stat = statSync(existing);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== "ENOENT") throw folderError(target, existing, error);
      missing.unshift(existing);
      existing = path.dirname(existing);
      continue;
    }
    if (!stat.isDirectory()) {
      throw new CliError(`cannot use ${target} as a folder: ${existing} is ${stat.isFile() ? "a file" : "not a folder"}`, EXIT.ERROR, "choose a folder path (it is created when absent)");
    }
    break;
  }
  if (!missing.length) return;
  const kernel = kernelFileSystem(existing);
  if (kernel) throw new CliError(`cannot create ${target}: ${existing} is on ${kernel}, a kernel file system that holds no folders of ours`, EXIT.ERROR, "choose a folder on a disk");
  for (const folder of missing) {
    try {
      mkdirSync(folder, { mode });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "EEXIST" && statSync(folder).isDirectory()) continue; // made meanwhile by another run
      throw folderError(target, folder, error);
    }
  }
}

function kernelFileSystem(dir: string): string | undefined {
  try {
    return KERNEL_FILE_SYSTEMS[statfsSync(dir).type];
  } catch {
    return undefined;
  }
}

function folderError(target: string, at: string, error: unknown): CliError {
  const e = error as NodeJS.ErrnoException;
  const why: Record<string, string> = {
    EACCES: "permission denied",
    EPERM: "not permitted",
    EROFS: "read-only file system",
    ENOSPC: "no space left on the device",
    ENOTDIR: "a part of the path is a file",
    EEXIST: "a file of that name exists",
  };
  return new CliError(`cannot create folder ${target}: ${at}: ${why[e.code ?? ""] ?? e.message}`, EXIT.ERROR, "choose a folder you can write to");
}
