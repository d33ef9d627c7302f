/**
 * Pure functions from the spec to each target's form. The embedded engine, the Docker and AWS
 * Pulumi components, the container tests and the verify/drift checks all call these, so one
 * change to the spec moves every target together.
 */
import type { Spec } from "./schema.js";
import { bytesToUnits, formatPgSize, formatRedisSize, parsePgSize, parseRedisSize } from "./units.js";

/** One PostgreSQL setting: its GUC name, its value as postgresql.conf takes it, and how verify reads it. */
export interface PostgresSetting {
  name: string;
  /** The spec key it comes from; absent for what the toolkit fixes (password_encryption, archiving). */
  key?: string;
  value: string;
  /** How SHOW prints it, for comparison: sizes are compared in bytes. */
  kind: "size" | "integer" | "string" | "list";
  /** Static settings need a restart (RDS: applyMethod pending-reboot). */
  restart: boolean;
}

/**
 * The tuned PostgreSQL settings of the spec, in the server's own units. Listening and
 * authentication belong to each target (embedded: 127.0.0.1; container: all interfaces inside,
 * published on 127.0.0.1), so they are not here.
 */
export function postgresSettings(spec: Spec): PostgresSetting[] {
  const pg = spec.postgres;
  const size = (v: string) => formatPgSize(parsePgSize(v)!);
  return [
    { name: "shared_buffers", key: "postgres.sharedBuffers", value: size(pg.sharedBuffers), kind: "size", restart: true },
    { name: "effective_cache_size", key: "postgres.effectiveCacheSize", value: size(pg.effectiveCacheSize), kind: "size", restart: false },
    { name: "work_mem", key: "postgres.workMem", value: size(pg.workMem), kind: "size", restart: false },
    { name: "maintenance_work_mem", key: "postgres.maintenanceWorkMem", value: size(pg.maintenanceWorkMem), kind: "size", restart: false },
    { name: "max_connections", key: "postgres.maxConnections", value: String(pg.maxConnections), kind: "integer", restart: true },
    { name: "log_min_duration_statement", key: "postgres.logMinDurationStatementMs", value: String(pg.logMinDurationStatementMs), kind: "integer", restart: false },
    { name: "shared_preload_libraries", key: "postgres.sharedPreloadLibraries", value: pg.sharedPreloadLibraries.join(","), kind: "list", restart: true },
    { name: "password_encryption", value: "scram-sha-256", kind: "string", restart: false },
  ];
}

/** Where a local target's server archives WAL: a folder the server's OS user owns. */
export interface ArchiveTarget {
  /** basic_archive.archive_directory as the server sees it (embedded: the env's state; Docker: the WAL-archive volume). */
  archiveDirectory: string;
}

/** The GUC of basic_archive that names its folder (a placeholder until the archiver loads the module). */
export const ARCHIVE_DIRECTORY_SETTING = "basic_archive.archive_directory";

/**
 * Continuous WAL archiving (backup.archive) for the targets that archive themselves (embedded,
 * Docker): basic_archive, PostgreSQL's own archiver module (temp file, fsync, rename; refuses to
 * overwrite a different file). RDS archives on its own and takes none of these (lib/docs/capabilities.ts).
 * wal_level and archive_mode need a restart; the library, its folder and the timeout a reload.
 */
export function archiveSettings(spec: Spec, target: ArchiveTarget): PostgresSetting[] {
  const archive = spec.backup.archive;
  const settings: PostgresSetting[] = [
    { name: "wal_level", value: "replica", kind: "string", restart: true },
    { name: "archive_mode", value: archive.enabled ? "on" : "off", kind: "string", restart: true },
  ];
  if (!archive.enabled) return settings;
  return settings.concat([
    { name: "archive_library", value: "basic_archive", kind: "string", restart: false },
    { name: ARCHIVE_DIRECTORY_SETTING, value: target.archiveDirectory, kind: "string", restart: false },
    { name: "archive_timeout", value: String(archive.timeoutSeconds), kind: "integer", restart: false },
  ]);
}

/** The settings a local target's server runs with: the spec's tuning, plus archiving when it has an archive. */
export function localPostgresSettings(spec: Spec, target?: ArchiveTarget): PostgresSetting[] {
  return target ? postgresSettings(spec).concat(archiveSettings(spec, target)) : postgresSettings(spec);
}

/** `postgres -c name=value …` arguments (Docker target, container tests). */
export function postgresArgs(spec: Spec, target?: ArchiveTarget): string[] {
  return localPostgresSettings(spec, target).flatMap((s) => ["-c", `${s.name}=${s.value}`]);
}

/** postgresql.conf lines (embedded target: the data dir's included spec.conf). */
export function postgresConf(spec: Spec, target?: ArchiveTarget): string {
  return localPostgresSettings(spec, target)
    .map((s) => `${s.name} = '${s.value.replace(/'/g, "''")}'`)
    .join("\n")
    .concat("\n");
}

/** One Redis setting as CONFIG GET names it and redis.conf writes it. */
export interface RedisSetting {
  name: string;
  /** The spec key it comes from. */
  key: string;
  value: string;
  /** How CONFIG GET prints it: sizes come back in bytes. */
  kind: "size" | "string";
}

/** The tuned Redis settings of the spec (guide: Memory and Persistence Settings). */
export function redisSettings(spec: Spec): RedisSetting[] {
  const r = spec.redis;
  return [
    { name: "maxmemory", key: "redis.maxmemory", value: formatRedisSize(parseRedisSize(r.maxmemory)!), kind: "size" },
    { name: "maxmemory-policy", key: "redis.maxmemoryPolicy", value: r.maxmemoryPolicy, kind: "string" },
    { name: "save", key: "redis.save", value: r.save.map((s) => `${s.seconds} ${s.changes}`).join(" "), kind: "string" },
    { name: "appendonly", key: "redis.appendonly", value: r.appendonly ? "yes" : "no", kind: "string" },
    { name: "appendfsync", key: "redis.appendfsync", value: r.appendfsync, kind: "string" },
  ];
}

/** `redis-server --name value …` arguments (Docker target, container tests). No secrets: those go in a conf file. */
export function redisArgs(spec: Spec): string[] {
  return redisSettings(spec).flatMap((s) => [`--${s.name}`, s.value]);
}

/** redis.conf lines for the settings (an empty `save` is written as `save ""`). */
export function redisConf(spec: Spec): string {
  return redisSettings(spec)
    .map((s) => `${s.name} ${s.value === "" ? '""' : s.value}`)
    .join("\n")
    .concat("\n");
}

/** Value as CONFIG GET prints it: sizes in bytes, the rest as written. */
export function redisConfigGetValue(setting: RedisSetting): string {
  return setting.kind === "size" ? String(parseRedisSize(setting.value)) : setting.value;
}

/** An RDS DB parameter, in RDS's units. */
export interface RdsParameter {
  name: string;
  /** The spec key it comes from; absent for RDS-only parameters (rds.force_ssl, password_encryption). */
  key?: string;
  value: string;
  /** The unit RDS takes a size in, when it is one. */
  unit?: RdsSizeUnit["label"];
  applyMethod: "immediate" | "pending-reboot";
}

/** A unit RDS takes a size parameter in: the parameter's own unit in PostgreSQL. */
export interface RdsSizeUnit {
  bytes: number;
  label: "8 kB pages" | "kB";
}

const PAGES: RdsSizeUnit = { bytes: 8192, label: "8 kB pages" };
const KB: RdsSizeUnit = { bytes: 1024, label: "kB" };

/** PostgreSQL's unit for each size parameter as RDS takes it. */
export const RDS_SIZE_UNITS: Readonly<Record<string, RdsSizeUnit>> = {
  shared_buffers: PAGES,
  effective_cache_size: PAGES,
  work_mem: KB,
  maintenance_work_mem: KB,
};

/**
 * The spec's PostgreSQL settings for an RDS parameter group (family postgres16). Static
 * parameters are `pending-reboot` (RDS refuses `immediate` for them). password_encryption is
 * RDS's own default (scram-sha-256 on 16) and rds.force_ssl is added: TLS in transit.
 */
export function rdsParameters(spec: Spec): RdsParameter[] {
  const params: RdsParameter[] = postgresSettings(spec)
    .filter((s) => s.name !== "password_encryption")
    .map((s): RdsParameter => {
      const unit = s.kind === "size" ? RDS_SIZE_UNITS[s.name]! : undefined;
      return {
        name: s.name,
        key: s.key,
        value: unit ? String(bytesToUnits(parsePgSize(s.value)!, unit.bytes, s.name)) : s.value,
        ...(unit ? { unit: unit.label } : {}),
        applyMethod: s.restart ? "pending-reboot" : "immediate",
      };
    });
  params.push({ name: "rds.force_ssl", value: "1", applyMethod: "immediate" });
  params.push({ name: "password_encryption", value: "scram-sha-256", applyMethod: "immediate" });
  return params;
}

/**
 * The spec's Redis settings for an ElastiCache parameter group (family redis7). maxmemory is
 * fixed by the node type, and save/appendonly are not supported (snapshots and replicas take
 * their place): see lib/docs/capabilities.ts.
 */
export function elasticacheParameters(spec: Spec): { name: string; key: string; value: string }[] {
  return [
    { name: "maxmemory-policy", key: "redis.maxmemoryPolicy", value: spec.redis.maxmemoryPolicy },
    { name: "reserved-memory-percent", key: "aws.reservedMemoryPercent", value: String(spec.aws.reservedMemoryPercent) },
  ];
}
