/**
 * Where an environment's backups are kept (backup.repository), behind one interface that every
 * command uses: a folder on this machine (FolderBackupRepository, backup.dir, the default) or an
 * S3-compatible bucket (BucketBackupRepository). Backups are made in a local folder either way
 * (`workDir`); `store` publishes one there, the rest reads, restores and prunes what is stored.
 * A listing and a prune report have one shape whichever repository answers.
 */
import type { PhysicalBackupInfo } from "../physical/catalog.js";
import type { RecoveryOptions, RecoveryReport, RecoveryTarget } from "../physical/recover.js";
import type { UploadReport } from "./backups.js";
import type { PushReport } from "./wal.js";

export interface ListedLogicalBackup {
  id: string;
  /** full, or table:NAME,… */
  scope: string;
  createdAt: string;
  bytes: number;
  location: string;
}

/** A base backup as a listing shows it: the folder catalog's facts, with where it is. */
export type ListedBaseBackup = Omit<PhysicalBackupInfo, "dir" | "manifest"> & { location: string };

export interface RepositoryListing {
  env: string;
  /** The folder, or s3://bucket/prefix. */
  repository: string;
  logical: ListedLogicalBackup[];
  /** Base backups, oldest first (by stopTime). */
  physical: ListedBaseBackup[];
  /** The earliest and latest time `restore --to` can reach. */
  window?: { earliest: string; latest: string };
  /** The archived WAL, where the environment archives it; `waiting`: segments here not yet pushed to the bucket. */
  wal?: { location: string; segments: number; bytes: number; waiting: { segments: number; bytes: number } };
  /** Unfinished backups: a folder's .partial-… folders, a bucket's objects without a manifest. --prune removes them. */
  incomplete: { id: string; location: string; objects: number; newest: string }[];
  /** Backups that are not usable here: a damaged manifest, another environment's. */
  unrecognised: { location: string; why: string }[];
  /** With a bucket: backup folders still on this machine (an upload that failed keeps its local copy). */
  localOnly: string[];
}

export interface RepositoryPruneReport {
  env: string;
  repository: string;
  dryRun: boolean;
  keepDaily: number;
  keepWeekly: number;
  keepBase: number;
  /** Logical backups kept, and the retention rules that keep each. */
  kept: { id: string; reasons: string[] }[];
  removed: { id: string; location: string; bytes: number }[];
  keptBase: string[];
  removedBase: { id: string; location: string; bytes: number }[];
  /** WAL older than the oldest kept base backup's start. */
  removedWal: { name: string; bytes: number }[];
  /** The first segment a kept base backup needs (nothing from it on is deleted). */
  keepWalFrom?: string;
  /** Leftovers of killed backups or uploads (never a running one). */
  removedIncomplete: { id: string; location: string; objects: number }[];
  unrecognised: { location: string; why: string }[];
}

/** A backup just published in the repository. */
export interface StoredBackup {
  id: string;
  location: string;
  /** A bucket: what was uploaded (the local copy is removed once every object is confirmed). */
  upload?: UploadReport;
  /** A bucket: the WAL push that follows every backup; a failure there does not undo the backup. */
  push?: PushReport;
  pushError?: string;
}

/** A stored backup as a local folder, for restore and `restore --check`. */
export interface FetchedBackup {
  id: string;
  location: string;
  dir: string;
  kind: "logical" | "physical";
  /** Removes what fetching staged (a bucket's download); a folder's backup is left as it is. */
  release(): void;
}

/** What `restore --to` downloaded from a bucket: the chosen base backup's files and the WAL. */
export interface DownloadReport {
  bytes: number;
  seconds: number;
}

export type RepositoryRecoveryReport = RecoveryReport & {
  repository: string;
  /** A bucket: what came down for the recovery. */
  download?: DownloadReport;
  walFetched?: number;
};

export interface BackupRepository {
  readonly kind: "folder" | "bucket";
  readonly env: string;
  /** The folder, or s3://bucket/prefix (region, endpoint). */
  describe(): string;
  /** Where a new backup folder is made: the repository itself, or a bucket's local staging folder. */
  readonly workDir: string;
  /** Publishes a finished backup folder made in workDir. */
  store(dir: string, progress?: (m: string) => void): Promise<StoredBackup>;
  list(): Promise<RepositoryListing>;
  /** Retention: backup.keepDaily / keepWeekly for logical backups, keepBase and the WAL they need. */
  prune(options: { dryRun?: boolean; log?: (m: string) => void; lockWaitSeconds?: number }): Promise<RepositoryPruneReport>;
  /** `ID` or `latest` (the newest full logical backup) as a local folder; refuses, naming it, one that is missing or incomplete. */
  fetch(from: string, progress?: (m: string) => void): Promise<FetchedBackup>;
  /** `restore --to`: the newest base backup before the target and the archived WAL after it. */
  recover(target: RecoveryTarget, options: RecoveryOptions): Promise<RepositoryRecoveryReport>;
  /** Deletes every backup and archived WAL of this environment here (a scratch drill's, at its end). */
  discard(): Promise<void>;
  /** A bucket: how often cron pushes the archived WAL (backup.repository.walPushSeconds). */
  readonly walPushSeconds?: number;
  /** A bucket: one push of the archived WAL (upload, confirm, delete here). */
  pushWal?(progress?: (m: string) => void): Promise<PushReport>;
  /** A bucket's protection: what is wrong (public, unversioned, unencrypted) and what could not be read. */
  posture?(): Promise<{ problems: string[]; unknown: string[] }>;
}
