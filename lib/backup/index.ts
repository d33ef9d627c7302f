/** Backup and restore: the guide's procedures, made safe, verifiable and fast (see README.md). */
export { backupEnvironment, backupRoot, type BackupOptions, type BackupResult } from "./backup.js";
export { restoreEnvironment, assertKnownHead, type RestoreOptions, type RestoreReport } from "./restore.js";
export { verifyBackup, BackupVerificationError, type VerifiedBackup } from "./verify.js";
export { listBackups, planRetention, pruneBackups, scheduleLine, type BackupEntry, type PruneReport } from "./retention.js";
export { parseManifest, manifestSchema, MANIFEST_FILE, type Manifest } from "./manifest.js";
export { DEFAULT_LEVEL, DUMP_FILE, type DumpFormat } from "./postgres-dump.js";
