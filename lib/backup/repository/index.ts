/** The backup repository of an environment: its spec's backup.repository (local: undefined, backup.dir as always). */
import type { Spec } from "../../spec/schema.js";
import type { BackupRepository } from "./repository.js";

export { FolderRepository } from "./folder.js";
export * from "./repository.js";

/**
 * The bucket of an environment whose spec names one; undefined for the local repository
 * (backup.dir). The AWS SDK is loaded only then: local backups stay lean.
 */
export async function openRepository(spec: Spec): Promise<(BackupRepository & { walPushSeconds: number }) | undefined> {
  const r = spec.backup.repository;
  if (r === "local") return undefined;
  // One client per spec: verify's checks (push backlog, freshness, the bucket's protection) share it.
  const known = opened.get(r);
  if (known) return known;
  const { S3Repository } = await import("./s3.js");
  const repo = Object.assign(new S3Repository(r), { walPushSeconds: r.walPushSeconds });
  opened.set(r, repo);
  return repo;
}

const opened = new WeakMap<object, BackupRepository & { walPushSeconds: number }>();
