/**
 * Verifying a backup folder before anything is touched: the manifest parses and its own checksum
 * holds, every file it lists is there with its size and sha256, and the RDB passes
 * redis-check-rdb. Each problem names the file.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { CliError, EXIT } from "../errors.js";
import { hashFile } from "./files.js";
import { MANIFEST_FILE, parseManifest, type Manifest } from "./manifest.js";
import { checkRdb } from "./redis.js";
import type { LocalEnvironment } from "../env/environment.js";

export interface VerifiedBackup {
  dir: string;
  manifest: Manifest;
  files: { name: string; bytes: number; sha256: string }[];
  /** Files in the folder that the manifest does not list (ignored). */
  unlisted: string[];
  seconds: number;
}

/** A backup that fails verification: what is wrong, per file. */
export class BackupVerificationError extends CliError {
  constructor(
    readonly dir: string,
    readonly problems: string[],
  ) {
    super(`backup ${dir} failed verification: ${problems.join("; ")}`, EXIT.ERROR, "nothing was changed; use another backup (npm run backup -- list --env NAME shows them)");
    this.name = "BackupVerificationError";
  }
}

/** Verifies a backup folder; throws BackupVerificationError naming each bad file. */
export async function verifyBackup(dir: string, options: { local?: LocalEnvironment; checkRdb?: boolean } = {}): Promise<VerifiedBackup> {
  const started = Date.now();
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new CliError(`--from ${dir}: no such backup folder`, EXIT.USAGE);
  const manifestPath = path.join(dir, MANIFEST_FILE);
  if (!existsSync(manifestPath)) throw new BackupVerificationError(dir, [`missing file ${MANIFEST_FILE}`]);
  const { manifest, problems: manifestProblems } = parseManifest(readFileSync(manifestPath, "utf8"));
  if (!manifest) throw new BackupVerificationError(dir, manifestProblems.map((p) => `${MANIFEST_FILE} is malformed: ${p}`));

  const problems: string[] = [];
  const listed = new Set(manifest.files.map((f) => f.name));
  for (const name of [manifest.postgres?.file, manifest.redis?.file]) {
    if (name && !listed.has(name)) problems.push(`${MANIFEST_FILE} is malformed: ${name} is used but not listed in files`);
  }
  const results = await Promise.all(
    manifest.files.map(async (entry) => {
      const file = path.join(dir, entry.name);
      if (!existsSync(file)) return `missing file ${entry.name}`;
      const size = statSync(file).size;
      if (size !== entry.bytes) return `${entry.name} is ${size} bytes, the manifest says ${entry.bytes} (${size < entry.bytes ? "truncated" : "grown"})`;
      const actual = await hashFile(file);
      if (actual.sha256 !== entry.sha256) return `${entry.name} does not match its sha256 (changed or damaged content)`;
      return undefined;
    }),
  );
  problems.push(...results.filter((p): p is string => p !== undefined));
  if (!problems.length && manifest.redis && options.checkRdb !== false) {
    try {
      const check = await checkRdb(path.join(dir, manifest.redis.file), options.local);
      if (check.keys !== manifest.redis.keys) problems.push(`${manifest.redis.file} holds ${check.keys} keys, the manifest says ${manifest.redis.keys}`);
    } catch (error) {
      problems.push((error as Error).message);
    }
  }
  if (problems.length) throw new BackupVerificationError(dir, problems);
  const unlisted = readdirSync(dir).filter((f) => f !== MANIFEST_FILE && !listed.has(f));
  return { dir, manifest, files: manifest.files, unlisted, seconds: (Date.now() - started) / 1000 };
}
