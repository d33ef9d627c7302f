/**
 * Fault injection for the drill tests: a byte of a backup's file flipped between the backup and
 * the restore (runDrill's afterBackup hook), as a disk or a transfer would damage it.
 */
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { BASE_TAR_FILE, PHYSICAL_MANIFEST_FILE } from "../../lib/backup/physical/manifest.js";

/**
 * Flips one byte in the middle of a backup's file (`postgres`, `redis`, `manifest`, or
 * a file name), as a disk or a transfer would. Returns the file changed.
 */
export function corruptBackupFile(backupDir: string, which: string): string {
  const physical = existsSync(path.join(backupDir, PHYSICAL_MANIFEST_FILE));
  const manifestName = physical ? PHYSICAL_MANIFEST_FILE : "manifest.json";
  const manifest = JSON.parse(readFileSync(path.join(backupDir, manifestName), "utf8")) as { postgres?: { file: string }; redis?: { file: string } };
  const postgresFile = physical ? BASE_TAR_FILE : manifest.postgres?.file;
  const name = which === "postgres" ? postgresFile : which === "redis" ? manifest.redis?.file : which === "manifest" ? manifestName : which;
  const file = path.join(backupDir, name ?? "");
  if (!name || !existsSync(file) || !statSync(file).isFile()) throw new Error(`cannot corrupt ${JSON.stringify(which)}: no such file in ${backupDir}`);
  const bytes = readFileSync(file);
  const at = Math.floor(bytes.length / 2);
  bytes[at] = bytes[at]! ^ 0xff;
  writeFileSync(file, bytes);
  return file;
}
