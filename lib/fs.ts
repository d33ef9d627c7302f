/** File helpers that never leave a half-written file behind. */
import { randomBytes } from "node:crypto";
import { chmodSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";

/** Writes a file atomically (temp file in the same folder, then rename), with the given mode. */
export function writeFileAtomic(file: string, content: string | Uint8Array, mode = 0o600): void {
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
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
  mkdirSync(dir, { recursive: true, mode });
  chmodSync(dir, mode);
  return dir;
}
