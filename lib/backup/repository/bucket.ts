/**
 * A backup repository in an S3-compatible bucket (backup.repository: s3://bucket/prefix). Backups
 * are made in a local staging folder as in a folder repository and move through the bucket:
 *   store       upload (files, then the manifest) → local copy removed → archived WAL pushed
 *   fetch       download into a staging folder (each object checked), removed by release()
 *   recover     push WAL → base backups' manifests + the chosen one's files + the WAL it needs
 *               downloaded → the folder's recovery → downloaded WAL removed again
 * A refusal names the object (s3://bucket/key) and changes nothing.
 */
import { existsSync, mkdirSync, readdirSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { CliError, EXIT } from "../../errors.js";
import { specOf } from "../../state/record.js";
import { withEnvLock } from "../../state/lock.js";
import { envPaths } from "../../state/paths.js";
import { onTermination } from "../../signals.js";
import type { S3RepositorySpec } from "../../spec/schema.js";
import { backupRoot } from "../backup.js";
import { listBackupDirs } from "../files.js";
import { archiveDirOf } from "../physical/catalog.js";
import { recoverTo, RecoveryCheckError, type RecoveryOptions, type RecoveryTarget } from "../physical/recover.js";
import { parseLsn, parseSegmentName, readArchive } from "../physical/wal.js";
import { downloadBackup, entryOf, latestLogical, listRemoteBackups, pruneRemote, uploadBackup, type RemoteBackup } from "./backups.js";
import { repositoryKeys, RepositoryObjectError, RepositoryUnavailableError, type ObjectStore } from "./objects.js";
import type { BackupRepository, DownloadReport, FetchedBackup, RepositoryListing, RepositoryPruneReport, RepositoryRecoveryReport, StoredBackup } from "./repository.js";
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

export interface BucketBackupRepositoryProps {
  env: string;
  /** The object store of backup.repository (one S3 client per spec). */
  objects: ObjectStore & { posture?(): Promise<{ problems: string[]; unknown: string[] }> };
  spec: S3RepositorySpec;
}

export class BucketBackupRepository implements BackupRepository {
  readonly kind = "bucket";
  readonly env: string;
  readonly objects: BucketBackupRepositoryProps["objects"];
  readonly walPushSeconds: number;
  /** Backups are made here and removed once the bucket confirms every object. */
  readonly workDir: string;

  constructor(props: BucketBackupRepositoryProps) {
    this.env = props.env;
    this.objects = props.objects;
    this.walPushSeconds = props.spec.walPushSeconds;
    this.workDir = backupRoot(specOf(props.env), props.env);
  }

  describe(): string {
    return this.objects.describe();
  }

  posture(): Promise<{ problems: string[]; unknown: string[] }> {
    return this.objects.posture ? this.objects.posture() : Promise.resolve({ problems: [], unknown: [] });
  }

  /** Uploads a local backup folder, removes it once every object is confirmed, then pushes the WAL. */
  async store(dir: string, progress?: (m: string) => void): Promise<StoredBackup> {
    let upload;
    try {
      upload = await uploadBackup(this.objects, this.env, dir, progress, uploaderTag());
    } catch (error) {
      throw repositoryCliError(error, `the backup is kept at ${dir}; the bucket holds no manifest for it, so it is not listed there as complete`);
    }
    rmSync(dir, { recursive: true, force: true });
    const stored: StoredBackup = { id: upload.id, location: upload.location, upload };
    if (specOf(this.env).backup.archive.enabled) {
      try {
        stored.push = await pushWal(this.objects, this.env, archiveDirOf(this.env), progress);
      } catch (error) {
        stored.pushError = (error as Error).message;
      }
    }
    return stored;
  }

  /** `backup push-wal`: one pass; a bucket that cannot be reached leaves every segment here (exit 2). */
  async pushWal(progress?: (m: string) => void): Promise<PushReport> {
    const archiveDir = archiveDirOf(this.env);
    try {
      return await pushWal(this.objects, this.env, archiveDir, progress);
    } catch (error) {
      const b = walBacklog(archiveDir);
      throw repositoryCliError(error, `the archived WAL stays in ${archiveDir} (${b.segments} segment(s), ${(b.bytes / 1048576).toFixed(1)} MiB), nothing is lost; the next push uploads it`);
    }
  }

  /** `ID|latest` downloaded into a staging folder under the backup root (removed by release, on exit and on a signal). */
  async fetch(from: string, progress?: (m: string) => void): Promise<FetchedBackup> {
    const id = await this.resolveId(from).catch((e) => Promise.reject(repositoryCliError(e)));
    const staging = this.stagingDir(`restore-${id}`);
    const location = this.objects.locate(repositoryKeys.backup(this.env, id));
    const dir = path.join(staging.dir, id);
    try {
      const kind = await downloadBackup(this.objects, this.env, id, dir, progress);
      return { id, location, dir, kind, release: staging.remove };
    } catch (error) {
      staging.remove();
      throw repositoryCliError(error, "nothing was changed; the live data is as it was");
    }
  }

  /** `restore --to TIME|latest` / `--to-lsn`: only the WAL from the chosen base backup's start is downloaded. */
  async recover(target: RecoveryTarget, opts: RecoveryOptions): Promise<RepositoryRecoveryReport> {
    const env = this.env;
    const repo = this.objects;
    const archiveDir = archiveDirOf(env);
    // What is archived here goes up first: the bucket then holds everything up to now.
    try {
      await pushWal(repo, env, archiveDir, opts.progress);
    } catch (error) {
      throw repositoryCliError(error, "nothing was changed; the archived WAL is still in " + archiveDir);
    }
    const staging = this.stagingDir("recover");
    let fetched: string[] = [];
    const download: DownloadReport = { bytes: 0, seconds: 0 };
    const timed = async (dir: string, files: () => string[], work: () => Promise<void>) => {
      const started = Date.now();
      await work();
      download.seconds += (Date.now() - started) / 1000;
      for (const name of files()) download.bytes += statSync(path.join(dir, name)).size;
    };
    try {
      let fromWal: string | undefined;
      try {
        const listing = await listRemoteBackups(repo, env);
        const bases = listing.backups.filter((b) => b.kind === "physical");
        if (!bases.length) throw new CliError(`no base backup of '${env}' in ${repo.describe()}`, EXIT.ERROR, `make one: npm run backup -- --env ${env} --physical`);
        for (const b of bases) await downloadBackup(repo, env, b.id, path.join(staging.dir, b.id), opts.progress, "manifest");
        fromWal = chosenBase(bases, target).physical!.postgres.startWal;
      } catch (error) {
        throw repositoryCliError(error);
      }
      const report = await recoverTo(env, target, {
        ...opts,
        out: staging.dir,
        beforeListing: async (dir) => {
          try {
            await timed(dir, () => fetched, async () => {
              fetched = (await fetchWal(repo, env, dir, fromWal, opts.progress)).fetched;
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

  /** Complete backups (manifest there), incomplete ones, the WAL and the restorable window. */
  async list(): Promise<RepositoryListing> {
    const env = this.env;
    const repo = this.objects;
    let listing;
    let walObjects;
    try {
      listing = await listRemoteBackups(repo, env);
      walObjects = (await repo.list(repositoryKeys.wal(env))).filter((o) => parseSegmentName(o.key.split("/").at(-1)!));
    } catch (error) {
      throw repositoryCliError(error);
    }
    const archive = specOf(env).backup.archive.enabled ? readArchive(archiveDirOf(env)) : undefined;
    const physical = listing.backups
      .filter((b) => b.kind === "physical")
      .map((b) => {
        const p = b.physical!.postgres;
        return { id: b.id, stopTime: p.stopTime, startLsn: p.startLsn, stopLsn: p.stopLsn, timeline: p.timeline, startWal: p.startWal, bytes: b.physical!.files.reduce((n, f) => n + f.bytes, 0), location: b.location };
      })
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
    const waiting = archive ? walBacklog(archive.dir) : { segments: 0, bytes: 0 };
    return {
      env,
      repository: repo.describe(),
      logical: listing.backups
        .filter((b) => b.kind === "logical")
        .map(entryOf)
        .map((e) => ({ id: e.id, scope: e.scope, createdAt: e.createdAt.toISOString(), bytes: e.bytes, location: e.dir })),
      physical,
      ...(window ? { window } : {}),
      ...(archive ? { wal: { location: repo.locate(repositoryKeys.wal(env)), segments: walObjects.length, bytes: walObjects.reduce((n, o) => n + o.bytes, 0), waiting: { segments: waiting.segments, bytes: waiting.bytes } } } : {}),
      incomplete: listing.incomplete.map((i) => ({ id: i.id, location: i.location, objects: i.objects.length, newest: i.newest.toISOString() })),
      unrecognised: listing.unrecognised.map((u) => ({ location: u.location, why: u.why })),
      localOnly: listBackupDirs(this.workDir).complete,
    };
  }

  /** Retention in the bucket, under the environment's lock. */
  async prune(options: { dryRun?: boolean; log?: (m: string) => void; lockWaitSeconds?: number }): Promise<RepositoryPruneReport> {
    const spec = specOf(this.env);
    const run = async (): Promise<RepositoryPruneReport> => {
      let r;
      try {
        r = await pruneRemote(this.objects, this.env, spec.backup, { dryRun: options.dryRun === true, uploadEnded });
      } catch (error) {
        throw repositoryCliError(error);
      }
      return {
        env: this.env,
        repository: r.location,
        dryRun: r.dryRun,
        keepDaily: spec.backup.keepDaily,
        keepWeekly: spec.backup.keepWeekly,
        keepBase: spec.backup.keepBase,
        kept: r.kept,
        removed: r.removed,
        keptBase: r.keptBase,
        removedBase: r.removedBase,
        removedWal: r.removedWal,
        ...(r.keepWalFrom ? { keepWalFrom: r.keepWalFrom } : {}),
        removedIncomplete: r.removedIncomplete,
        unrecognised: r.unrecognised.map((u) => ({ location: u.location, why: u.why })),
      };
    };
    if (options.dryRun) return run();
    return withEnvLock(this.env, envPaths(this.env).lock, { purpose: "pruning its backups", waitSeconds: options.lockWaitSeconds, onWait: options.log }, run);
  }

  async discard(): Promise<void> {
    rmSync(this.workDir, { recursive: true, force: true });
    for (const prefix of [repositoryKeys.backups(this.env), repositoryKeys.wal(this.env)]) {
      const keys = (await this.objects.list(prefix)).map((o) => o.key);
      if (keys.length) await this.objects.delete(keys);
    }
  }

  /** `--from ID|latest` → the backup id in the bucket. */
  private async resolveId(from: string): Promise<string> {
    if (from !== "latest") {
      if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(from)) throw new CliError(`--from ${JSON.stringify(from)}: neither a local folder nor a backup id in ${this.describe()}`, EXIT.USAGE, `list them: npm run backup -- list --env ${this.env}`);
      return from;
    }
    const latest = latestLogical(await listRemoteBackups(this.objects, this.env));
    if (!latest) throw new CliError(`--from latest: no complete full logical backup of '${this.env}' in ${this.describe()}`, EXIT.ERROR, `make one: npm run backup -- --env ${this.env}`);
    return latest.id;
  }

  /** A staging folder under the backup root, removed on exit and on a signal. */
  private stagingDir(what: string): { dir: string; remove: () => void } {
    const dir = path.join(this.workDir, `.s3-${what}-${process.pid}`);
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
}

/**
 * The base backup a recovery to `target` starts from, as recoverTo chooses it: the newest that
 * ends before the target (by time or by LSN), or the newest for latest. Its start is where the
 * WAL download begins.
 */
function chosenBase(bases: RemoteBackup[], target: RecoveryTarget): RemoteBackup {
  const byEnd = [...bases].sort((x, y) => x.physical!.postgres.stopTime.localeCompare(y.physical!.postgres.stopTime));
  if (target.latest) return byEnd.at(-1)!;
  const before = target.time
    ? byEnd.filter((b) => Date.parse(b.physical!.postgres.stopTime) <= target.time!.getTime())
    : byEnd.filter((b) => parseLsn(b.physical!.postgres.stopLsn) <= parseLsn(target.lsn!));
  // None before it: the recovery refuses the target with the window; the oldest's WAL is enough to say so.
  return before.at(-1) ?? byEnd[0]!;
}
