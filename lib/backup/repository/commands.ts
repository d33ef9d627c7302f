/**
 * What the commands do with a bucket (backup.repository): the local backup and restore paths
 * stay as they are, and these move their folders through the bucket.
 *   backup      local folder as today → upload (files, then the manifest) → local copy removed → WAL pushed
 *   restore     download into a staging folder (each object checked) → the existing restore → staging removed
 *   restore --to  push WAL → base backups' manifests + the chosen one's files + the WAL it needs
 *               downloaded → the existing recovery → downloaded WAL removed again
 * A refusal names the object (s3://bucket/key) and changes nothing.
 */
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { CliError, EXIT } from "../../cli.js";
import { specOf } from "../../env/environment.js";
import { onTermination } from "../../signals.js";
import { backupRoot } from "../backup.js";
import { listBackupDirs } from "../files.js";
import { restoreEnvironment, type RestoreOptions, type RestoreReport } from "../restore.js";
import { verifyBackup, type VerifiedBackup } from "../verify.js";
import { archiveDirOf } from "../physical/catalog.js";
import { recoverTo, RecoveryCheckError, type RecoveryOptions, type RecoveryReport, type RecoveryTarget } from "../physical/recover.js";
import { parseSegmentName, readArchive } from "../physical/wal.js";
import { downloadBackup, entryOf, latestLogical, listRemoteBackups, pruneRemote, uploadBackup, type UploadReport } from "./backups.js";
import { repositoryKeys, RepositoryObjectError, RepositoryUnavailableError, type BackupRepository } from "./repository.js";
import { fetchWal, pushWal, walBacklog, type PushReport } from "./wal.js";

/** A repository error as the CLI reports it: a bad or missing object is a finding (1), an unreachable bucket could not run (2). */
export function repositoryCliError(error: unknown, hint = "nothing was changed"): unknown {
  if (error instanceof RepositoryObjectError) return new CliError(error.message, EXIT.PROBLEM, hint);
  if (error instanceof RepositoryUnavailableError) return new CliError(error.message, EXIT.ERROR, `${hint}; check the bucket, the endpoint and the AWS credentials (environment, shared config or instance role)`);
  return error;
}

/** Who uploads (object metadata; a prune tells a killed upload on this host from a running one). */
export function uploaderTag(): string {
  return `${os.hostname()}:${process.pid}`;
}

/** What `restore --to` downloaded from the bucket: the chosen base backup's files and the WAL. */
export interface DownloadReport {
  bytes: number;
  seconds: number;
}

export interface StoredBackup {
  upload: UploadReport;
  /** The WAL push that follows every backup; a failure there does not undo the backup. */
  push?: PushReport;
  pushError?: string;
}

/** Uploads a local backup folder, removes it once every object is confirmed, then pushes the WAL. */
export async function storeBackup(repo: BackupRepository, env: string, dir: string, progress?: (m: string) => void): Promise<StoredBackup> {
  let upload: UploadReport;
  try {
    upload = await uploadBackup(repo, env, dir, progress, uploaderTag());
  } catch (error) {
    throw repositoryCliError(error, `the backup is kept at ${dir}; the bucket holds no manifest for it, so it is not listed there as complete`);
  }
  rmSync(dir, { recursive: true, force: true });
  const stored: StoredBackup = { upload };
  if (specOf(env).backup.archive.enabled) {
    try {
      stored.push = await pushWal(repo, env, archiveDirOf(env), progress);
    } catch (error) {
      stored.pushError = (error as Error).message;
    }
  }
  return stored;
}

/** A killed upload of this host: its process is gone (another host's uploads wait for the hour). */
export function uploadEnded(uploader: string): boolean {
  const m = /^(.*):(\d+)$/.exec(uploader);
  if (!m || m[1] !== os.hostname()) return false;
  const pid = Number(m[2]);
  if (pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "ESRCH";
  }
}

/** A staging folder under the backup root, removed on exit and on a signal. */
function stagingDir(env: string, what: string): { dir: string; remove: () => void } {
  const root = backupRoot(specOf(env), env);
  const dir = path.join(root, `.s3-${what}-${process.pid}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const unregister = onTermination(`remove ${dir}`, () => rmSync(dir, { recursive: true, force: true }));
  return {
    dir,
    remove: () => {
      unregister();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** `--from ID|latest` → the backup id in the bucket. */
async function resolveId(repo: BackupRepository, env: string, from: string): Promise<string> {
  if (from !== "latest") {
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(from)) throw new CliError(`--from ${JSON.stringify(from)}: neither a local folder nor a backup id in ${repo.describe()}`, EXIT.USAGE, `list them: npm run backup -- --env ${env} --list`);
    return from;
  }
  const latest = latestLogical(await listRemoteBackups(repo, env));
  if (!latest) throw new CliError(`--from latest: no complete full logical backup of '${env}' in ${repo.describe()}`, EXIT.ERROR, `make one: npm run backup -- --env ${env}`);
  return latest.id;
}

/** `restore --from ID|latest [--check]` against the bucket. */
export async function restoreFromRepository(repo: BackupRepository, options: RestoreOptions & { check?: boolean }): Promise<{ id: string; location: string; verified?: VerifiedBackup; report?: RestoreReport }> {
  const id = await resolveId(repo, options.env, options.from).catch((e) => Promise.reject(repositoryCliError(e)));
  const staging = stagingDir(options.env, `restore-${id}`);
  const location = repo.locate(repositoryKeys.backup(options.env, id));
  try {
    const dir = path.join(staging.dir, id);
    try {
      const kind = await downloadBackup(repo, options.env, id, dir, options.progress);
      if (kind === "physical") throw new CliError(`${location}: a base backup; restore it with --to TIME|latest`, EXIT.USAGE);
    } catch (error) {
      throw repositoryCliError(error, "nothing was changed; the live data is as it was");
    }
    if (options.check) return { id, location, verified: await verifyBackup(dir) };
    const report = await restoreEnvironment({ ...options, from: dir });
    return { id, location, report: { ...report, source: location } };
  } finally {
    staging.remove();
  }
}

/** `restore --to TIME|latest` against the bucket: only the WAL from the chosen base backup's start is downloaded. */
export async function recoverFromRepository(repo: BackupRepository, env: string, target: RecoveryTarget, opts: RecoveryOptions): Promise<RecoveryReport & { repository: string; walFetched: number; download: DownloadReport }> {
  const archiveDir = archiveDirOf(env);
  // What is archived here goes up first: the bucket then holds everything up to now.
  try {
    await pushWal(repo, env, archiveDir, opts.progress);
  } catch (error) {
    throw repositoryCliError(error, "nothing was changed; the archived WAL is still in " + archiveDir);
  }
  const staging = stagingDir(env, "recover");
  let fetched: string[] = [];
  const download: DownloadReport = { bytes: 0, seconds: 0 };
  const timed = async (dir: string, files: () => string[], work: () => Promise<void>) => {
    const started = Date.now();
    await work();
    download.seconds += (Date.now() - started) / 1000;
    for (const name of files()) download.bytes += statSync(path.join(dir, name)).size;
  };
  try {
    let oldestStart: string | undefined;
    try {
      const listing = await listRemoteBackups(repo, env);
      const bases = listing.backups.filter((b) => b.kind === "physical");
      if (!bases.length) throw new CliError(`no base backup of '${env}' in ${repo.describe()}`, EXIT.ERROR, `make one: npm run backup -- --env ${env} --physical`);
      for (const b of bases) await downloadBackup(repo, env, b.id, path.join(staging.dir, b.id), opts.progress, "manifest");
      // The WAL from the start of the base backup the recovery will choose (the newest that ends
      // before the target, as recoverTo picks it); a target by LSN may need any: from the oldest.
      const byEnd = [...bases].sort((x, y) => x.physical!.postgres.stopTime.localeCompare(y.physical!.postgres.stopTime));
      const chosen = target.latest ? byEnd.at(-1) : target.time ? (byEnd.filter((b) => Date.parse(b.physical!.postgres.stopTime) <= target.time!.getTime()).at(-1) ?? byEnd[0]) : undefined;
      oldestStart = chosen?.physical!.postgres.startWal ?? bases.map((b) => b.physical!.postgres.startWal).sort((x, y) => Number(parseSegmentName(x)!.segno - parseSegmentName(y)!.segno))[0];
    } catch (error) {
      throw repositoryCliError(error);
    }
    const report = await recoverTo(env, target, {
      ...opts,
      out: staging.dir,
      beforeListing: async (dir) => {
        try {
          await timed(dir, () => fetched, async () => {
            fetched = (await fetchWal(repo, env, dir, oldestStart, opts.progress)).fetched;
          });
        } catch (error) {
          throw repositoryCliError(error);
        }
      },
      fetchBackup: async (b) => {
        try {
          // Its manifest came down earlier, with every base backup's: count only what this adds.
          const had = new Set(existsSync(b.dir) ? readdirSync(b.dir) : []);
          await timed(b.dir, () => readdirSync(b.dir).filter((name) => !had.has(name)), async () => {
            await downloadBackup(repo, env, b.id, b.dir, opts.progress);
          });
        } catch (error) {
          throw repositoryCliError(error);
        }
      },
    }).catch((error: unknown) => {
      // A gap in the chain: the segment is in neither place; name the object the bucket should hold.
      if (error instanceof RecoveryCheckError && /missing/.test(error.message) && path.dirname(error.file) === archiveDir) {
        throw new RecoveryCheckError(repo.locate(repositoryKeys.walFile(env, path.basename(error.file))), `no such object (and not in ${archiveDir}): ${error.message}`);
      }
      throw error;
    });
    return { ...report, repository: repo.describe(), walFetched: fetched.length, download: { bytes: download.bytes, seconds: Math.round(download.seconds * 1000) / 1000 } };
  } finally {
    staging.remove();
    // What was fetched is in the bucket: the archive folder goes back to holding only what waits to be pushed.
    for (const name of fetched) if (parseSegmentName(name) && existsSync(path.join(archiveDir, name))) rmSync(path.join(archiveDir, name), { force: true });
  }
}

export interface RepositoryListing {
  repository: string;
  logical: { id: string; scope: string; createdAt: string; bytes: number; location: string }[];
  physical: { id: string; stopTime: string; timeline: number; startWal: string; bytes: number; location: string }[];
  incomplete: { id: string; location: string; objects: number; newest: string }[];
  unrecognised: { id: string; location: string; why: string }[];
  wal: { objects: number; bytes: number; backlog: ReturnType<typeof walBacklog> };
  window?: { earliest: string; latest: string };
  /** Backup folders still here: an upload that failed keeps the local copy (it is not in the bucket). */
  localOnly: string[];
}

/** `backup --list` with a bucket: complete backups (manifest there), incomplete ones, the WAL and the restorable window. */
export async function listRepository(repo: BackupRepository, env: string): Promise<RepositoryListing> {
  let listing;
  let walObjects;
  try {
    listing = await listRemoteBackups(repo, env);
    walObjects = (await repo.list(repositoryKeys.wal(env))).filter((o) => parseSegmentName(o.key.split("/").at(-1)!));
  } catch (error) {
    throw repositoryCliError(error);
  }
  const archive = specOf(env).backup.archive.enabled ? readArchive(archiveDirOf(env)) : undefined;
  const logical = listing.backups.filter((b) => b.kind === "logical").map(entryOf);
  const physical = listing.backups
    .filter((b) => b.kind === "physical")
    .map((b) => ({ id: b.id, stopTime: b.physical!.postgres.stopTime, timeline: b.physical!.postgres.timeline, startWal: b.physical!.postgres.startWal, bytes: b.physical!.files.reduce((n, f) => n + f.bytes, 0), location: b.location }))
    .sort((a, b) => a.stopTime.localeCompare(b.stopTime));
  // The newest archived segment: the bucket's (its archived-at) or one still waiting here.
  let newest: number | undefined;
  const lastPushed = walObjects.sort((a, b) => a.lastModified.getTime() - b.lastModified.getTime()).at(-1);
  if (lastPushed) {
    const head = await repo.head(lastPushed.key).catch(() => undefined);
    newest = Date.parse(head?.metadata["archived-at"] ?? lastPushed.lastModified.toISOString());
  }
  for (const s of archive?.segments ?? []) newest = Math.max(newest ?? 0, s.archivedAt.getTime());
  const oldest = physical[0];
  const window = oldest && newest !== undefined && newest >= Date.parse(oldest.stopTime) ? { earliest: oldest.stopTime, latest: new Date(newest).toISOString() } : undefined;
  return {
    repository: repo.describe(),
    logical: logical.map((e) => ({ id: e.id, scope: e.scope, createdAt: e.createdAt.toISOString(), bytes: e.bytes, location: e.dir })),
    physical,
    incomplete: listing.incomplete.map((i) => ({ id: i.id, location: i.location, objects: i.objects.length, newest: i.newest.toISOString() })),
    unrecognised: listing.unrecognised,
    wal: { objects: walObjects.length, bytes: walObjects.reduce((n, o) => n + o.bytes, 0), backlog: archive ? walBacklog(archive.dir) : { segments: 0, bytes: 0 } },
    window,
    localOnly: listBackupDirs(backupRoot(specOf(env), env)).complete,
  };
}

/** `backup --push-wal`: one pass; a bucket that cannot be reached leaves every segment here (exit 2). */
export async function pushWalCommand(repo: BackupRepository, env: string, progress?: (m: string) => void): Promise<PushReport> {
  const archiveDir = archiveDirOf(env);
  try {
    return await pushWal(repo, env, archiveDir, progress);
  } catch (error) {
    const b = walBacklog(archiveDir);
    throw repositoryCliError(error, `the archived WAL stays in ${archiveDir} (${b.segments} segment(s), ${(b.bytes / 1048576).toFixed(1)} MiB), nothing is lost; the next push uploads it`);
  }
}

/** `backup --prune` with a bucket. */
export async function pruneRepository(repo: BackupRepository, env: string, dryRun: boolean) {
  const spec = specOf(env);
  try {
    return await pruneRemote(repo, env, spec.backup, { dryRun, uploadEnded });
  } catch (error) {
    throw repositoryCliError(error);
  }
}
