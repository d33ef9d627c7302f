/** Physical backups and point-in-time recovery (BASE_BACKUP + basic_archive): the API the commands, the drill and the benchmark use. */
export { takeBaseBackup, type BaseBackupOptions } from "./base-backup.js";
export { archiveDirOf, isPhysicalBackupDir, listPhysical, prunePhysical, type PhysicalBackupInfo, type PhysicalListing, type PhysicalPruneReport } from "./catalog.js";
export { physicalHost, embeddedPhysicalHost, type PhysicalHost, type RecoveryServer } from "./host.js";
export { PHYSICAL_MANIFEST_FILE, type PhysicalManifest } from "./manifest.js";
export { parseRecoveryTarget, recoverTo, RecoveryCheckError, type RecoveryOptions, type RecoveryReport, type RecoveryTarget } from "./recover.js";
