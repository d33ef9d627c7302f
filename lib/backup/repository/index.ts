/** The backup repository of an environment: its spec's backup.repository, or a folder given by --out. */
import { isAwsEnvironment } from "../backup.js";
import { specOf } from "../../state/record.js";
import type { S3RepositorySpec } from "../../spec/schema.js";
import { FolderBackupRepository } from "./folder.js";
import type { BackupRepository } from "./repository.js";
import type { S3ObjectStore } from "./s3.js";

export { FolderBackupRepository } from "./folder.js";
export * from "./repository.js";
export * from "./objects.js";

export interface OpenRepositoryOptions {
  /**
   * A folder to use as the repository instead of backup.repository (the commands' --out).
   * @default the spec's backup.repository: backup.dir/<env>, or the bucket
   */
  out?: string;
}

/**
 * The repository the commands read and write for `env`. The AWS SDK is loaded only for a bucket:
 * local backups stay lean. An AWS environment's folder holds the manifests of its snapshots.
 */
export async function openBackupRepository(env: string, options: OpenRepositoryOptions = {}): Promise<BackupRepository> {
  const aws = isAwsEnvironment(env);
  const r = specOf(env).backup.repository;
  if (options.out !== undefined || r === "local" || aws) return new FolderBackupRepository({ env, out: options.out, physical: !aws });
  const { BucketBackupRepository } = await import("./bucket.js");
  return new BucketBackupRepository({ env, objects: await objectStoreOf(r), spec: r });
}

/** One S3 client per spec: verify's checks (push backlog, freshness, the bucket's protection) share it. */
async function objectStoreOf(r: S3RepositorySpec): Promise<S3ObjectStore> {
  const key = JSON.stringify(r);
  const known = opened.get(key);
  if (known) return known;
  const { S3ObjectStore } = await import("./s3.js");
  const store = new S3ObjectStore(r);
  opened.set(key, store);
  return store;
}

const opened = new Map<string, S3ObjectStore>();
