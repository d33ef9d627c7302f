/**
 * The default backup repository: a folder on this machine (backup.dir/<env>, or --out), holding
 * one folder per backup (logical: manifest.json; base backup: physical.json) beside the
 * environment's WAL archive. A backup is published by its backup's own rename out of
 * `.partial-…`; this class lists, fetches, prunes and recovers what is there.
 */
import { existsSync, rmSync, statSync } from "node:fs";
import path from "node:path";
import { CliError, EXIT } from "../../errors.js";
import { specOf } from "../../state/record.js";
import { backupRoot } from "../backup.js";
import { isPhysicalBackupDir, listPhysical, prunePhysical } from "../physical/catalog.js";
import { recoverTo, type RecoveryOptions, type RecoveryTarget } from "../physical/recover.js";
import { listBackups, pruneBackups } from "../retention.js";
import { PARTIAL_PREFIX } from "../files.js";
import type { BackupRepository, FetchedBackup, RepositoryListing, RepositoryPruneReport, RepositoryRecoveryReport, StoredBackup } from "./repository.js";

export interface FolderBackupRepositoryProps {
  env: string;
  /**
   * The folder holding the environment's backup folders.
   * @default <backup.dir>/<env> in the project
   */
  out?: string;
  /**
   * Whether base backups and the WAL archive are part of it (not for an AWS environment, whose
   * folder holds the manifests of its snapshots).
   * @default true
   */
  physical?: boolean;
}

export class FolderBackupRepository implements BackupRepository {
  readonly kind = "folder";
  readonly env: string;
  readonly workDir: string;
  private readonly out?: string;
  private readonly physical: boolean;

  constructor(props: FolderBackupRepositoryProps) {
    this.env = props.env;
    this.out = props.out;
    this.workDir = backupRoot(specOf(props.env), props.env, props.out);
    this.physical = props.physical ?? true;
  }

  describe(): string {
    return this.workDir;
  }

  async store(dir: string): Promise<StoredBackup> {
    return { id: path.basename(dir), location: dir };
  }

  async list(): Promise<RepositoryListing> {
    const logical = listBackups(this.env, this.workDir);
    const physical = this.physical ? listPhysical(this.env, this.out) : undefined;
    return {
      env: this.env,
      repository: this.workDir,
      logical: logical.backups.map((b) => ({ id: b.id, scope: b.scope, createdAt: b.createdAt.toISOString(), bytes: b.bytes, location: b.dir })),
      physical: (physical?.backups ?? []).map((b) => ({ id: b.id, stopTime: b.stopTime, startLsn: b.startLsn, stopLsn: b.stopLsn, timeline: b.timeline, startWal: b.startWal, bytes: b.bytes, location: b.dir })),
      ...(physical?.window ? { window: physical.window } : {}),
      ...(physical
        ? { wal: { location: physical.archiveDir, segments: physical.archive.segments.length, bytes: physical.archive.segments.reduce((n, s) => n + s.bytes, 0), waiting: { segments: 0, bytes: 0 } } }
        : {}),
      incomplete: logical.partial.map((dir) => ({ id: path.basename(dir).slice(PARTIAL_PREFIX.length), location: dir, objects: 1, newest: statSync(dir).mtime.toISOString() })),
      unrecognised: [...logical.unrecognised, ...(physical?.unrecognised ?? [])].map((u) => ({ location: u.dir, why: u.why })),
      localOnly: [],
    };
  }

  async prune(options: { dryRun?: boolean; log?: (m: string) => void; lockWaitSeconds?: number }): Promise<RepositoryPruneReport> {
    const spec = specOf(this.env);
    const logical = await pruneBackups({ env: this.env, out: this.out, ...options });
    const physical = this.physical ? await prunePhysical(this.env, { out: this.out, ...options }) : undefined;
    const partial = [...new Set([...logical.removedPartial, ...(physical?.removedPartial ?? [])])];
    return {
      env: this.env,
      repository: this.workDir,
      dryRun: options.dryRun === true,
      keepDaily: spec.backup.keepDaily,
      keepWeekly: spec.backup.keepWeekly,
      keepBase: spec.backup.keepBase,
      kept: logical.kept,
      removed: logical.removed.map((r) => ({ id: r.id, location: r.dir, bytes: r.bytes })),
      keptBase: physical?.kept ?? [],
      removedBase: (physical?.removed ?? []).map((r) => ({ id: r.id, location: r.dir, bytes: r.bytes })),
      removedWal: physical?.removedWal ?? [],
      ...(physical?.keepWalFrom ? { keepWalFrom: physical.keepWalFrom } : {}),
      removedIncomplete: partial.map((dir) => ({ id: path.basename(dir).slice(PARTIAL_PREFIX.length), location: dir, objects: 1 })),
      unrecognised: logical.unrecognised.map((u) => ({ location: u.dir, why: u.why })),
    };
  }

  async fetch(from: string): Promise<FetchedBackup> {
    let id = from;
    if (from === "latest") {
      const newest = listBackups(this.env, this.workDir).backups.filter((b) => b.scope === "full").at(-1);
      if (!newest) throw new CliError(`--from latest: no complete full logical backup of '${this.env}' in ${this.workDir}`, EXIT.ERROR, `make one: npm run backup -- --env ${this.env}`);
      id = newest.id;
    } else if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(from)) {
      throw new CliError(`--from ${JSON.stringify(from)}: neither a folder or file here nor a backup id in ${this.workDir}`, EXIT.USAGE, `list them: npm run backup -- list --env ${this.env}`);
    }
    const dir = path.join(this.workDir, id);
    if (!existsSync(dir)) throw new CliError(`--from ${from}: there is no backup ${id} in ${this.workDir}`, EXIT.USAGE, `list them: npm run backup -- list --env ${this.env}`);
    return { id, location: dir, dir, kind: isPhysicalBackupDir(dir) ? "physical" : "logical", release: () => undefined };
  }

  async recover(target: RecoveryTarget, options: RecoveryOptions): Promise<RepositoryRecoveryReport> {
    const report = await recoverTo(this.env, target, { ...options, out: this.out });
    return { ...report, repository: this.workDir };
  }

  async discard(): Promise<void> {
    rmSync(this.workDir, { recursive: true, force: true });
  }
}
