/** The backup repository of an environment: its spec's backup.repository (local: undefined, backup.dir as always). */
import type { Spec } from "../../spec/schema.js";
import type { BackupRepository } from "./repository.js";
import { S3Repository } from "./s3.js";

export { FolderRepository } from "./folder.js";
export { S3Repository, RepositoryUnavailableError } from "./s3.js";
export * from "./repository.js";

/** The bucket of an environment whose spec names one; undefined for the local repository (backup.dir). */
export function openRepository(spec: Spec): (BackupRepository & { walPushSeconds: number }) | undefined {
  const r = spec.backup.repository;
  if (r === "local") return undefined;
  return Object.assign(new S3Repository(r), { walPushSeconds: r.walPushSeconds });
}
