/**
 * What each target does with each documented setting: applied as written, mapped to something
 * else, or not supported (and why). The rows are computed from the same functions the targets
 * use (postgresSettings/redisSettings for embedded and Docker, rdsParameters/elasticacheParameters
 * and the AWS mapping rules below for AWS), so the table cannot drift from the code.
 *
 * Also here, because the table and the AWS component share them: the ElastiCache node-memory
 * check, the backup/snapshot window mapping and the CloudWatch alarm rules.
 *
 * Regenerate the markdown: `npx tsx -e 'import { capabilities, capabilitiesMarkdown } from
 * "./lib/aws/capabilities.ts"; import { loadSpec } from "./lib/spec/index.ts";
 * console.log(capabilitiesMarkdown(capabilities(loadSpec("prod"))))'`
 */
import type { Spec } from "../spec/schema.js";
import {
  elasticacheParameters,
  postgresSettings,
  rdsParameters,
  redisSettings,
  type RdsParameter,
} from "../spec/render.js";
import { humanBytes, parseRedisSize } from "../spec/units.js";
import { backupExpiryDays, environmentPrefix } from "./backup-bucket.js";
import { mdCell } from "../markdown.js";

// ---------------------------------------------------------------------------------------------
// ElastiCache node memory
// ---------------------------------------------------------------------------------------------

/**
 * Memory of ElastiCache node types, GiB, as AWS's "Supported node types" table lists it. Only the
 * current-generation types the project may use; an unknown type is refused with a clear error.
 */
export const ELASTICACHE_NODE_MEMORY_GIB: Readonly<Record<string, number>> = {
  "cache.t3.micro": 0.5,
  "cache.t3.small": 1.37,
  "cache.t3.medium": 3.09,
  "cache.t4g.micro": 0.5,
  "cache.t4g.small": 1.37,
  "cache.t4g.medium": 3.09,
  "cache.m6g.large": 6.38,
  "cache.m6g.xlarge": 12.93,
  "cache.m6g.2xlarge": 26.04,
  "cache.m7g.large": 6.38,
  "cache.m7g.xlarge": 12.93,
  "cache.r6g.large": 13.07,
  "cache.r6g.xlarge": 26.32,
  "cache.r6g.2xlarge": 52.82,
  "cache.r7g.large": 13.07,
  "cache.r7g.xlarge": 26.32,
};

/** A spec's cache size requirement that ElastiCache cannot meet, or an unknown node type. */
export class AwsMappingError extends Error {
  constructor(
    readonly key: string,
    message: string,
  ) {
    super(`crypto-prediction-infra:${key}: ${message}`);
    this.name = "AwsMappingError";
  }
}

export interface CacheNodeFit {
  nodeType: string;
  /** The node's memory, bytes. */
  nodeBytes: number;
  /** What Redis may use for data: node memory × (1 − reserved-memory-percent). */
  usableBytes: number;
  /** The spec's redis.maxmemory, bytes. */
  maxmemoryBytes: number;
}

const GIB = 1024 ** 3;

/** Usable data memory of a node type with the given reserved-memory-percent; undefined when unknown. */
export function usableCacheBytes(nodeType: string, reservedMemoryPercent: number): number | undefined {
  const gib = ELASTICACHE_NODE_MEMORY_GIB[nodeType];
  if (gib === undefined) return undefined;
  return Math.floor(Math.floor(gib * GIB) * (1 - reservedMemoryPercent / 100));
}

/** The smallest known node type whose usable memory holds `bytes`. */
export function smallestCacheNodeType(bytes: number, reservedMemoryPercent: number): string | undefined {
  return Object.keys(ELASTICACHE_NODE_MEMORY_GIB)
    .filter((t) => usableCacheBytes(t, reservedMemoryPercent)! >= bytes)
    .sort((a, b) => ELASTICACHE_NODE_MEMORY_GIB[a]! - ELASTICACHE_NODE_MEMORY_GIB[b]!)[0];
}

/**
 * ElastiCache fixes maxmemory by node type, so the spec's maxmemory becomes a floor on the node:
 * node memory × (1 − aws.reservedMemoryPercent) must hold redis.maxmemory. Throws AwsMappingError
 * for an unknown node type or one that is too small, naming a node type that fits.
 */
export function cacheNodeFit(spec: Spec): CacheNodeFit {
  const nodeType = spec.aws.cacheNodeType;
  const reserved = spec.aws.reservedMemoryPercent;
  const maxmemoryBytes = parseRedisSize(spec.redis.maxmemory)!;
  const usableBytes = usableCacheBytes(nodeType, reserved);
  const fitting = smallestCacheNodeType(maxmemoryBytes, reserved);
  const suggestion = fitting ? `; ${fitting} fits` : "; no known node type fits";
  if (usableBytes === undefined) {
    throw new AwsMappingError(
      "aws.cacheNodeType",
      `unknown ElastiCache node type ${JSON.stringify(nodeType)}: its memory is not in lib/aws/capabilities.ts ` +
        `(known: ${Object.keys(ELASTICACHE_NODE_MEMORY_GIB).join(", ")})${suggestion}`,
    );
  }
  if (usableBytes < maxmemoryBytes) {
    throw new AwsMappingError(
      "aws.cacheNodeType",
      `${nodeType} leaves ${humanBytes(usableBytes)} for data with aws.reservedMemoryPercent ${reserved}, ` +
        `below redis.maxmemory ${spec.redis.maxmemory} (${humanBytes(maxmemoryBytes)})${suggestion}`,
    );
  }
  return { nodeType, nodeBytes: Math.floor(ELASTICACHE_NODE_MEMORY_GIB[nodeType]! * GIB), usableBytes, maxmemoryBytes };
}

// ---------------------------------------------------------------------------------------------
// Persistence and backups on AWS
// ---------------------------------------------------------------------------------------------

/** Redis persists in the spec when it snapshots (save rules) or keeps an AOF. */
export function redisPersists(spec: Spec): boolean {
  return spec.redis.save.length > 0 || spec.redis.appendonly;
}

/** ElastiCache automatic snapshot retention: backup.retentionDays when the spec persists, else 0 (off). */
export function cacheSnapshotRetentionDays(spec: Spec): number {
  return redisPersists(spec) ? spec.backup.retentionDays : 0;
}

/** Replicas with automatic failover and Multi-AZ when aws.cacheReplicas ≥ 1. */
export function cacheFailover(spec: Spec): boolean {
  return spec.aws.cacheReplicas >= 1;
}

/** Length of the RDS backup window derived from backup.schedule (AWS minimum: 30 minutes). */
export const RDS_BACKUP_WINDOW_MINUTES = 30;

/**
 * RDS's daily backup window (UTC) from backup.schedule: `0 2 * * *` → `02:00-02:30`. Undefined when
 * the schedule is not a fixed daily time (AWS then picks a window).
 */
export function rdsBackupWindow(schedule: string): string | undefined {
  const fields = schedule.trim().split(/\s+/);
  if (fields.length !== 5) return undefined;
  const [minute, hour, dom, month, dow] = fields as [string, string, string, string, string];
  if (!/^\d{1,2}$/.test(minute) || !/^\d{1,2}$/.test(hour) || dom !== "*" || month !== "*" || dow !== "*") return undefined;
  const start = Number(hour) * 60 + Number(minute);
  if (Number(hour) > 23 || Number(minute) > 59) return undefined;
  return `${hhmm(start)}-${hhmm(start + RDS_BACKUP_WINDOW_MINUTES)}`;
}

/** Whether a daily window `HH:MM-HH:MM` meets a weekly `ddd:HH:MM-ddd:HH:MM` window (time of day only: a daily window meets it every week). */
export function windowsOverlap(daily: string, weekly: string): boolean {
  const d = /^(\d\d):(\d\d)-(\d\d):(\d\d)$/.exec(daily);
  const w = /^[a-z]{3}:(\d\d):(\d\d)-[a-z]{3}:(\d\d):(\d\d)$/i.exec(weekly);
  if (!d || !w) return false;
  const minutes = (m: RegExpExecArray, i: number) => Number(m[i]) * 60 + Number(m[i + 1]);
  const ranges = (start: number, end: number): [number, number][] =>
    end > start ? [[start, end]] : [[start, 1440], [0, end]];
  const a = ranges(minutes(d, 1), minutes(d, 3));
  const b = ranges(minutes(w, 1), minutes(w, 3));
  return a.some(([s1, e1]) => b.some(([s2, e2]) => s1 < e2 && s2 < e1));
}

function hhmm(totalMinutes: number): string {
  const m = ((totalMinutes % 1440) + 1440) % 1440;
  return `${String(Math.floor(m / 60)).padStart(2, "0")}:${String(m % 60).padStart(2, "0")}`;
}

// ---------------------------------------------------------------------------------------------
// CloudWatch alarm rules (the guide's Alerting Thresholds)
// ---------------------------------------------------------------------------------------------

/** Namespace of the custom slow-query metric (from the PostgreSQL log's `duration:` lines). */
export const SLOW_QUERY_NAMESPACE = "CryptoPrediction/PostgreSQL";
export const SLOW_QUERY_METRIC = "SlowQueries";
/** Seconds per alarm period. */
export const ALARM_PERIOD_SECONDS = 60;

export interface AlarmRule {
  /** Short id, used in resource names: `postgres-connections`. */
  id: string;
  /** Which resource's metric: the RDS instance, each read replica, each ElastiCache member cluster, or the PostgreSQL log. */
  source: "rds" | "rds-replica" | "elasticache" | "rds-log";
  /** The spec key that sets the threshold. */
  specKey: string;
  namespace: string;
  metricName: string;
  statistic: "Average" | "Maximum" | "Minimum" | "Sum";
  comparisonOperator: "GreaterThanThreshold" | "LessThanThreshold";
  threshold: number;
  period: number;
  evaluationPeriods: number;
  treatMissingData: "missing" | "notBreaching" | "breaching" | "ignore";
  /** Silence is itself a problem (the resource stopped reporting): INSUFFICIENT_DATA notifies too. */
  notifyInsufficientData: boolean;
  /** What fires it, in the guide's words, with the unit conversion spelled out. */
  description: string;
}

/** True when the slow-query alarm has a source: PostgreSQL logs exported and log_min_duration_statement on. */
export function slowQueryAlarmPossible(spec: Spec): boolean {
  return spec.aws.logExports.includes("postgresql") && spec.postgres.logMinDurationStatementMs >= 0;
}

/**
 * The CloudWatch alarms of the spec's thresholds. Units: connections as a count of
 * max_connections, storage in bytes, evictions as a per-period Sum (per second × period).
 */
export function awsAlarmRules(spec: Spec): AlarmRule[] {
  const a = spec.alerts;
  const period = ALARM_PERIOD_SECONDS;
  const maxConnections = spec.postgres.maxConnections;
  const connections = Math.floor((maxConnections * a.connectionPoolPercent) / 100);
  const storageBytes = Math.floor((spec.aws.rdsAllocatedStorageGb * GIB * spec.aws.freeStorageAlarmPercent) / 100);
  const rules: AlarmRule[] = [
    {
      id: "postgres-connections",
      source: "rds",
      specKey: "alerts.connectionPoolPercent",
      namespace: "AWS/RDS",
      metricName: "DatabaseConnections",
      statistic: "Maximum",
      comparisonOperator: "GreaterThanThreshold",
      threshold: connections,
      period,
      evaluationPeriods: 5,
      treatMissingData: "missing",
      notifyInsufficientData: true,
      description: `connections > ${a.connectionPoolPercent}% of max_connections ${maxConnections} (${connections}) for 5 minutes`,
    },
  ];
  if (slowQueryAlarmPossible(spec)) {
    rules.push({
      id: "postgres-slow-queries",
      source: "rds-log",
      specKey: "alerts.queryTimeSeconds",
      namespace: SLOW_QUERY_NAMESPACE,
      metricName: SLOW_QUERY_METRIC,
      statistic: "Sum",
      comparisonOperator: "GreaterThanThreshold",
      threshold: 0,
      period,
      evaluationPeriods: 1,
      treatMissingData: "notBreaching",
      notifyInsufficientData: false,
      description:
        `a statement slower than ${spec.postgres.logMinDurationStatementMs} ms (log_min_duration_statement; guide: query time > ${a.queryTimeSeconds} s) ` +
        `was logged in the last minute`,
    });
  }
  rules.push(
    {
      id: "postgres-free-storage",
      source: "rds",
      specKey: "aws.freeStorageAlarmPercent",
      namespace: "AWS/RDS",
      metricName: "FreeStorageSpace",
      statistic: "Minimum",
      comparisonOperator: "LessThanThreshold",
      threshold: storageBytes,
      period: 300,
      evaluationPeriods: 1,
      treatMissingData: "missing",
      notifyInsufficientData: true,
      description: storageDescription(spec, storageBytes),
    },
    {
      id: "postgres-cpu",
      source: "rds",
      specKey: "aws.cpuAlarmPercent",
      namespace: "AWS/RDS",
      metricName: "CPUUtilization",
      statistic: "Average",
      comparisonOperator: "GreaterThanThreshold",
      threshold: spec.aws.cpuAlarmPercent,
      period,
      evaluationPeriods: 5,
      treatMissingData: "missing",
      notifyInsufficientData: true,
      description: `CPU > ${spec.aws.cpuAlarmPercent}% for 5 minutes`,
    },
    {
      id: "redis-memory",
      source: "elasticache",
      specKey: "alerts.redisMemoryPercent",
      namespace: "AWS/ElastiCache",
      metricName: "DatabaseMemoryUsagePercentage",
      statistic: "Maximum",
      comparisonOperator: "GreaterThanThreshold",
      threshold: a.redisMemoryPercent,
      period,
      evaluationPeriods: 5,
      treatMissingData: "missing",
      notifyInsufficientData: true,
      description: `memory > ${a.redisMemoryPercent}% of maxmemory for 5 minutes`,
    },
    {
      id: "redis-evictions",
      source: "elasticache",
      specKey: "alerts.redisEvictionsPerSecond",
      namespace: "AWS/ElastiCache",
      metricName: "Evictions",
      statistic: "Sum",
      comparisonOperator: "GreaterThanThreshold",
      threshold: a.redisEvictionsPerSecond * period,
      period,
      evaluationPeriods: 1,
      treatMissingData: "notBreaching",
      notifyInsufficientData: false,
      description: `evictions > ${a.redisEvictionsPerSecond}/s (Sum > ${a.redisEvictionsPerSecond * period} per ${period} s)`,
    },
    {
      id: "redis-hit-rate",
      source: "elasticache",
      specKey: "alerts.redisHitRatePercent",
      namespace: "AWS/ElastiCache",
      metricName: "CacheHitRate",
      statistic: "Average",
      comparisonOperator: "LessThanThreshold",
      threshold: a.redisHitRatePercent,
      period,
      evaluationPeriods: 5,
      treatMissingData: "notBreaching",
      notifyInsufficientData: false,
      description: `hit rate < ${a.redisHitRatePercent}% for 5 minutes (no lookups: not breaching)`,
    },
  );
  const x = spec.aws.alarms;
  const latencySeconds = x.latencyMs / 1000;
  rules.push(
    {
      id: "postgres-freeable-memory",
      source: "rds",
      specKey: "aws.alarms.freeableMemoryMb",
      namespace: "AWS/RDS",
      metricName: "FreeableMemory",
      statistic: "Minimum",
      comparisonOperator: "LessThanThreshold",
      threshold: x.freeableMemoryMb * 1024 * 1024,
      period,
      evaluationPeriods: 5,
      treatMissingData: "missing",
      notifyInsufficientData: true,
      description: `freeable memory < ${x.freeableMemoryMb} MiB (${x.freeableMemoryMb * 1024 * 1024} bytes) for 5 minutes`,
    },
    ...(["Read", "Write"] as const).map(
      (kind): AlarmRule => ({
        id: `postgres-${kind.toLowerCase()}-latency`,
        source: "rds",
        specKey: "aws.alarms.latencyMs",
        namespace: "AWS/RDS",
        metricName: `${kind}Latency`,
        statistic: "Average",
        comparisonOperator: "GreaterThanThreshold",
        threshold: latencySeconds,
        period,
        evaluationPeriods: 5,
        treatMissingData: "notBreaching",
        notifyInsufficientData: false,
        description: `${kind.toLowerCase()} latency > ${x.latencyMs} ms (${latencySeconds} s) for 5 minutes`,
      }),
    ),
    {
      id: "postgres-xid-wraparound",
      source: "rds",
      specKey: "aws.alarms.transactionIds",
      namespace: "AWS/RDS",
      metricName: "MaximumUsedTransactionIDs",
      statistic: "Maximum",
      comparisonOperator: "GreaterThanThreshold",
      threshold: x.transactionIds,
      period: 300,
      evaluationPeriods: 1,
      treatMissingData: "missing",
      notifyInsufficientData: true,
      description: `oldest unfrozen transaction age > ${x.transactionIds} of 2^31 (wraparound: VACUUM FREEZE is falling behind)`,
    },
  );
  if (spec.aws.replicas.count > 0) {
    rules.push({
      id: "postgres-replica-lag",
      source: "rds-replica",
      specKey: "aws.alarms.replicaLagSeconds",
      namespace: "AWS/RDS",
      metricName: "ReplicaLag",
      statistic: "Maximum",
      comparisonOperator: "GreaterThanThreshold",
      threshold: x.replicaLagSeconds,
      period,
      evaluationPeriods: 5,
      // A replica that reports no lag has stopped replicating (or is gone).
      treatMissingData: "breaching",
      notifyInsufficientData: true,
      description: `a read replica lags > ${x.replicaLagSeconds} s for 5 minutes (no data: breaching)`,
    });
  }
  rules.push(
    {
      id: "redis-engine-cpu",
      source: "elasticache",
      specKey: "aws.alarms.cacheEngineCpuPercent",
      namespace: "AWS/ElastiCache",
      metricName: "EngineCPUUtilization",
      statistic: "Average",
      comparisonOperator: "GreaterThanThreshold",
      threshold: x.cacheEngineCpuPercent,
      period,
      evaluationPeriods: 5,
      treatMissingData: "missing",
      notifyInsufficientData: true,
      description: `Redis engine thread CPU > ${x.cacheEngineCpuPercent}% for 5 minutes`,
    },
    {
      id: "redis-connections",
      source: "elasticache",
      specKey: "aws.alarms.cacheConnections",
      namespace: "AWS/ElastiCache",
      metricName: "CurrConnections",
      statistic: "Maximum",
      comparisonOperator: "GreaterThanThreshold",
      threshold: x.cacheConnections,
      period,
      evaluationPeriods: 5,
      treatMissingData: "missing",
      notifyInsufficientData: false,
      description: `client connections > ${x.cacheConnections} for 5 minutes (the pool allows ${spec.pool.redisMaxConnections} per app instance)`,
    },
  );
  return rules;
}

/**
 * With storage autoscaling (rdsMaxAllocatedStorageGb above rdsAllocatedStorageGb) RDS grows the
 * volume when free space stays under 10%, until the ceiling; the alarm then says that growth
 * cannot keep up or the ceiling is near, and names both sizes.
 */
function storageDescription(spec: Spec, storageBytes: number): string {
  const { rdsAllocatedStorageGb: allocated, rdsMaxAllocatedStorageGb: max, freeStorageAlarmPercent: pct } = spec.aws;
  const scaling = max > allocated ? `; autoscaling ${allocated} → ${max} GB adds room first, so this fires when it cannot` : "; no storage autoscaling";
  return `free storage < ${pct}% of ${allocated} GB (${storageBytes} bytes)${scaling}`;
}

// ---------------------------------------------------------------------------------------------
// The capability table
// ---------------------------------------------------------------------------------------------

export const TARGETS = ["embedded", "docker", "aws"] as const;
export type Target = (typeof TARGETS)[number];
export type Support = "applied" | "mapped" | "not supported";

export interface CapabilityCell {
  support: Support;
  /** How (applied/mapped) or why not (not supported). */
  detail: string;
}

export interface CapabilityRow {
  /** The spec key (or keys) of the setting. */
  key: string;
  /** The spec's value for this environment. */
  value: string;
  embedded: CapabilityCell;
  docker: CapabilityCell;
  aws: CapabilityCell;
}

const applied = (detail: string): CapabilityCell => ({ support: "applied", detail });
const mapped = (detail: string): CapabilityCell => ({ support: "mapped", detail });
const unsupported = (detail: string): CapabilityCell => ({ support: "not supported", detail });

/** Spec key of each PostgreSQL GUC that postgresSettings() renders. */
const PG_KEYS: Record<string, string> = {
  shared_buffers: "postgres.sharedBuffers",
  effective_cache_size: "postgres.effectiveCacheSize",
  work_mem: "postgres.workMem",
  maintenance_work_mem: "postgres.maintenanceWorkMem",
  max_connections: "postgres.maxConnections",
  log_min_duration_statement: "postgres.logMinDurationStatementMs",
  shared_preload_libraries: "postgres.sharedPreloadLibraries",
  password_encryption: "(fixed) password_encryption",
};

/** Spec key of each Redis setting that redisSettings() renders. */
const REDIS_KEYS: Record<string, string> = {
  maxmemory: "redis.maxmemory",
  "maxmemory-policy": "redis.maxmemoryPolicy",
  save: "redis.save",
  appendonly: "redis.appendonly",
  appendfsync: "redis.appendfsync",
};

/** Why an RDS-only parameter has no local counterpart. */
const RDS_ONLY_REASON: Record<string, string> = {
  "rds.force_ssl": "local servers listen on 127.0.0.1 only, without TLS",
};

/** Local targets have no alarm service: `npm run monitor` checks the guide's thresholds instead. */
const ALERT_MONITOR = mapped("no alarm service: `npm run monitor` reports warn past this threshold (exit 1)");
/** AWS-only alarms (the guide names no local check for them). */
const ALERT_LOCAL = "an AWS alarm only; no local counterpart";

function rdsCell(p: RdsParameter | undefined, guc: string): CapabilityCell {
  if (!p) return unsupported(`not in the postgres16 parameter group (rdsParameters omits ${guc})`);
  const unit = guc === "shared_buffers" || guc === "effective_cache_size" ? " (8 kB pages)" : guc === "work_mem" || guc === "maintenance_work_mem" ? " (kB)" : "";
  const reboot = p.applyMethod === "pending-reboot" ? "; static: pending-reboot, applied at the next reboot" : "";
  return applied(`parameter group ${p.name} = ${p.value}${unit}${reboot}`);
}

/** One row per documented setting and what each target does with it. Throws AwsMappingError like the AWS component would. */
export function capabilities(spec: Spec): CapabilityRow[] {
  const rows: CapabilityRow[] = [];
  const pg = spec.postgres;
  const r = spec.redis;
  const aws = spec.aws;

  rows.push({
    key: "postgres.port",
    value: String(pg.port),
    embedded: applied(`listens on 127.0.0.1:${pg.port}`),
    docker: applied(`container 5432 published on 127.0.0.1:${pg.port} only`),
    aws: applied(`RDS port ${pg.port}, private subnets, security group from aws.allowedCidrs/allowedSecurityGroupIds`),
  });
  rows.push({
    key: "postgres.database, postgres.user",
    value: `${pg.database}, ${pg.user}`,
    embedded: applied("created at first start; the owner role from lib/db/roles.ts"),
    docker: applied("POSTGRES_DB; the owner role from the roles init script (generated passwords, secret)"),
    aws: applied("dbName; the owner is the RDS master user, its password managed by RDS in Secrets Manager"),
  });
  rows.push({
    key: "postgres.appUser, postgres.readonlyUser",
    value: `${pg.appUser}, ${pg.readonlyUser}`,
    embedded: applied("created at first start (lib/db/roles.ts)"),
    docker: applied("created by the roles init script (lib/db/roles.ts)"),
    aws: applied(
      `\`npm run bootstrap -- --env ${spec.env} --database-url …\` runs lib/db/roles.ts's privilegesSql as the master user (idempotent); ` +
        (aws.iamAuth.enabled ? `logins with IAM tokens (rds_iam; policy rds-db:connect as ${pg.appUser}${aws.iamAuth.roleName ? ` on role ${aws.iamAuth.roleName}` : ""})` : "passwords set by hand (aws.iamAuth.enabled is off)"),
    ),
  });

  const rds = rdsParameters(spec);
  for (const s of postgresSettings(spec)) {
    rows.push({
      key: PG_KEYS[s.name] ?? s.name,
      value: s.value,
      embedded: applied(`spec.conf: ${s.name} = '${s.value}'`),
      docker: applied(`postgres -c ${s.name}=${s.value}`),
      aws: rdsCell(
        rds.find((p) => p.name === s.name),
        s.name,
      ),
    });
  }
  const local = new Set(postgresSettings(spec).map((s) => s.name));
  for (const p of rds.filter((p) => !local.has(p.name))) {
    const why = RDS_ONLY_REASON[p.name] ?? "RDS-only parameter";
    rows.push({ key: `(aws) ${p.name}`, value: p.value, embedded: unsupported(why), docker: unsupported(why), aws: rdsCell(p, p.name) });
  }

  rows.push({
    key: "redis.port, redis.db",
    value: `${r.port}, ${r.db}`,
    embedded: applied(`listens on 127.0.0.1:${r.port}`),
    docker: applied(`container 6379 published on 127.0.0.1:${r.port} only`),
    aws: applied(`replication group port ${r.port}, TLS (rediss://), database ${r.db}`),
  });
  rows.push({
    key: "redis.appUser",
    value: r.appUser,
    embedded: applied("ACL user without dangerous commands"),
    docker: applied("ACL user in the container's redis.conf"),
    aws: applied("ElastiCache RBAC user group: `default` (admin) and this user with the local ACL as its access string (no CONFIG, FLUSH*, KEYS); passwords are Pulumi secrets"),
  });

  const ec = elasticacheParameters(spec);
  let fit: CacheNodeFit | undefined;
  let fitError: string | undefined;
  try {
    fit = cacheNodeFit(spec);
  } catch (error) {
    if (!(error instanceof AwsMappingError)) throw error;
    fitError = error.message;
  }
  for (const s of redisSettings(spec)) {
    const param = ec.find((p) => p.name === s.name);
    let cell: CapabilityCell;
    if (param) cell = applied(`parameter group ${param.name} = ${param.value}`);
    else if (s.name === "maxmemory") {
      cell = fit
        ? mapped(
            `fixed by the node type: ${fit.nodeType} leaves ${humanBytes(fit.usableBytes)} for data ` +
              `(reserved-memory-percent ${aws.reservedMemoryPercent}) ≥ ${humanBytes(fit.maxmemoryBytes)}`,
          )
        : unsupported(fitError!);
    } else if (s.name === "save") {
      cell = cacheSnapshotRetentionDays(spec) > 0
        ? mapped(
            `daily automatic snapshots in ${aws.snapshotWindow} UTC, kept ${cacheSnapshotRetentionDays(spec)} days (not "${s.value}": ElastiCache has no save rules)` +
              (aws.cacheSnapshots.enabled ? `; plus CreateSnapshot on ${aws.cacheSnapshots.schedule} (EventBridge Scheduler), deleted after ${aws.cacheSnapshots.keepHours} h` : ""),
          )
        : unsupported("persistence is off in the spec: no automatic snapshots");
    } else if (s.name === "appendonly") {
      cell = !r.appendonly
        ? unsupported("off in the spec")
        : cacheFailover(spec)
          ? mapped(`no AOF on ElastiCache: ${aws.cacheReplicas} Multi-AZ replica(s) with automatic failover, plus snapshots`)
          : unsupported("no AOF on ElastiCache and aws.cacheReplicas is 0: writes since the last snapshot are lost if the node fails");
    } else cell = unsupported("ElastiCache has no AOF, so no fsync policy");
    rows.push({
      key: REDIS_KEYS[s.name] ?? s.name,
      value: s.value,
      embedded: applied(`redis.conf: ${s.name} ${s.value === "" ? '""' : s.value}`),
      docker: applied(`redis-server --${s.name} ${s.value === "" ? '""' : s.value}`),
      aws: cell,
    });
  }
  const localRedis = new Set(redisSettings(spec).map((s) => s.name));
  for (const p of ec.filter((p) => !localRedis.has(p.name))) {
    rows.push({
      key: p.name === "reserved-memory-percent" ? "aws.reservedMemoryPercent" : `(aws) ${p.name}`,
      value: p.value,
      embedded: unsupported("ElastiCache-only: local servers take maxmemory directly"),
      docker: unsupported("ElastiCache-only: local servers take maxmemory directly"),
      aws: applied(`parameter group ${p.name} = ${p.value}`),
    });
  }

  const window = rdsBackupWindow(spec.backup.schedule);
  rows.push({
    key: "backup.schedule",
    value: spec.backup.schedule,
    embedded: unsupported("not run by the environment: schedule the toolkit's backup command (cron) with this expression"),
    docker: unsupported("not run by the environment: schedule the toolkit's backup command (cron) with this expression"),
    aws: window ? mapped(`RDS daily automated backup in ${window} UTC`) : mapped("RDS daily automated backup in a window AWS picks (the schedule is not a fixed daily time)"),
  });
  rows.push({
    key: "backup.retentionDays",
    value: String(spec.backup.retentionDays),
    embedded: unsupported("local backups keep backup.keepDaily/keepWeekly files instead"),
    docker: unsupported("local backups keep backup.keepDaily/keepWeekly files instead"),
    aws: applied(
      `RDS backupRetentionPeriod ${spec.backup.retentionDays} days with point-in-time recovery (RDS archives WAL itself: \`restore --env ${spec.env} --to TIME|latest\` ` +
        `calls RestoreDBInstanceToPointInTime into a new instance with the stack's parameter, subnet and security groups); ElastiCache snapshots ${cacheSnapshotRetentionDays(spec)} days` +
        (aws.replicas.backupRegion ? `; automated backups replicated to ${aws.replicas.backupRegion}` : ""),
    ),
  });

  const archive = spec.backup.archive;
  const rdsArchives = applied("RDS archives on its own (automated backups upload transaction logs every 5 minutes): `restore --to TIME` is RestoreDBInstanceToPointInTime; the local archiving settings are not in the parameter group");
  rows.push({
    key: "backup.archive.enabled, backup.archive.timeoutSeconds",
    value: `${archive.enabled}, ${archive.timeoutSeconds}`,
    embedded: archive.enabled
      ? applied(`spec.conf: wal_level = replica, archive_mode = on, archive_library = basic_archive into the environment's postgres/wal-archive, archive_timeout = ${archive.timeoutSeconds}`)
      : applied("archive_mode = off: backups are base backups or dumps, with no point-in-time recovery"),
    docker: archive.enabled
      ? applied(`postgres -c archive_mode=on -c archive_library=basic_archive (directory on the WAL-archive volume) -c archive_timeout=${archive.timeoutSeconds}`)
      : applied("postgres -c archive_mode=off"),
    aws: rdsArchives,
  });
  rows.push({
    key: "backup.keepBase, postgres.backupUser",
    value: `${spec.backup.keepBase}, ${pg.backupUser}`,
    embedded: applied("backup --physical (BASE_BACKUP as the backup role, replication from 127.0.0.1 only); backup prune keeps this many and the WAL they need"),
    docker: applied("backup --physical (BASE_BACKUP as the backup role); backup prune keeps this many and the WAL they need"),
    aws: unsupported("RDS takes its own automated backups (backup.retentionDays); there is no base-backup role"),
  });
  rows.push(backupRepositoryRow(spec));

  const rules = awsAlarmRules(spec);
  const alarm = (specKey: string): CapabilityCell => {
    const rule = rules.find((x) => x.specKey === specKey);
    return rule ? mapped(`CloudWatch ${rule.namespace} ${rule.metricName}: ${rule.description}`) : unsupported("no source metric");
  };
  const a = spec.alerts;
  rows.push({ key: "alerts.connectionPoolPercent", value: String(a.connectionPoolPercent), embedded: ALERT_MONITOR, docker: ALERT_MONITOR, aws: alarm("alerts.connectionPoolPercent") });
  rows.push({
    key: "alerts.queryTimeSeconds",
    value: String(a.queryTimeSeconds),
    embedded: ALERT_MONITOR,
    docker: ALERT_MONITOR,
    aws: slowQueryAlarmPossible(spec)
      ? alarm("alerts.queryTimeSeconds")
      : unsupported("RDS has no query-time metric and the PostgreSQL log is not exported (aws.logExports) or log_min_duration_statement is off"),
  });
  rows.push({
    key: "alerts.deadTuplePercent",
    value: String(a.deadTuplePercent),
    embedded: ALERT_MONITOR,
    docker: ALERT_MONITOR,
    aws: unsupported("no CloudWatch metric for dead tuples: check pg_stat_user_tables (n_dead_tup / n_live_tup) with SQL"),
  });
  for (const key of ["alerts.redisMemoryPercent", "alerts.redisEvictionsPerSecond", "alerts.redisHitRatePercent"] as const) {
    const field = key.slice("alerts.".length) as keyof Spec["alerts"];
    rows.push({ key, value: String(a[field]), embedded: ALERT_MONITOR, docker: ALERT_MONITOR, aws: alarm(key) });
  }
  rows.push({ key: "aws.cpuAlarmPercent", value: String(aws.cpuAlarmPercent), embedded: unsupported(ALERT_LOCAL), docker: unsupported(ALERT_LOCAL), aws: alarm("aws.cpuAlarmPercent") });
  rows.push({ key: "aws.freeStorageAlarmPercent", value: String(aws.freeStorageAlarmPercent), embedded: unsupported(ALERT_LOCAL), docker: unsupported(ALERT_LOCAL), aws: alarm("aws.freeStorageAlarmPercent") });
  for (const field of Object.keys(aws.alarms).filter((k) => k !== "emails" && k !== "httpsEndpoints") as (keyof Spec["aws"]["alarms"])[]) {
    const key = `aws.alarms.${field}`;
    const cell = rules.some((x) => x.specKey === key) ? alarm(key) : unsupported("no read replicas (aws.replicas.count 0)");
    rows.push({ key, value: String(aws.alarms[field]), embedded: unsupported(ALERT_LOCAL), docker: unsupported(ALERT_LOCAL), aws: cell });
  }
  rows.push(...productionRows(spec));
  return rows;
}

/** The S3 backup repository: the AWS stacks provision its bucket; the local targets are given one. */
function backupRepositoryRow(spec: Spec): CapabilityRow {
  const b = spec.aws.backupBucket;
  const given = mapped("backup.repository: an s3:// URL; see README");
  const bucket = b.bucketName ? `the existing bucket ${b.bucketName} (nothing created)` : `bucket \`${spec.namePrefix}-backups-<account>\``;
  const settings = b.bucketName
    ? ""
    : ` (versioned, SSE-KMS with ${b.kmsKeyArn ? "aws.backupBucket.kmsKeyArn" : "the stack's key"} and bucket keys, public access blocked, ACLs off, TLS-only policy; ` +
      `backups/ and wal/ expire after ${backupExpiryDays(spec)} days, old versions after ${b.noncurrentVersionDays}, incomplete uploads after ${b.abortIncompleteUploadDays})`;
  return {
    key: "aws.backupBucket.enabled, aws.backupBucket.bucketName",
    value: `${b.enabled}, ${b.bucketName ?? "created"}`,
    embedded: given,
    docker: given,
    aws: b.enabled
      ? applied(
          `${bucket}${settings}; IAM policy ${spec.namePrefix}-backup-access for ${environmentPrefix(spec)} and the key${b.roleName ? `, attached to ${b.roleName}` : ""}; ` +
            "set backup.repository to the stack output backupRepositoryUrl",
        )
      : unsupported("aws.backupBucket.enabled is off: backup.repository names a bucket made elsewhere"),
  };
}

/** What the AWS target adds for production (issue 16), one row per decision. */
function productionRows(spec: Spec): CapabilityRow[] {
  const aws = spec.aws;
  const only = (why: string): Pick<CapabilityRow, "embedded" | "docker"> => ({ embedded: unsupported(why), docker: unsupported(why) });
  const topic = aws.createAlarmTopic ? `the stack's SNS topic (KMS-encrypted)${aws.alarmTopicArn ? " and aws.alarmTopicArn" : ""}` : aws.alarmTopicArn ? "aws.alarmTopicArn" : "no topic";
  const subscribers = [...aws.alarms.emails.map((e) => `e-mail ${e}`), ...aws.alarms.httpsEndpoints.map((u) => `HTTPS ${u}`)];
  const monitoring = aws.monitoring;
  return [
    {
      key: "aws.alarms.emails, aws.alarms.httpsEndpoints",
      value: subscribers.length ? String(subscribers.length) : "none",
      ...only("no alarm service locally: `npm run monitor` exits 1"),
      aws: mapped(
        `alarms (alarm, OK and, where silence matters, insufficient-data actions), RDS events (${aws.events.rdsCategories.join(", ")}) and ElastiCache notifications go to ${topic}` +
          (subscribers.length ? `, subscribed by ${subscribers.join(", ")}` : "; subscribe people with these keys"),
      ),
    },
    {
      key: "aws.monitoring.enhancedIntervalSeconds",
      value: String(monitoring.enhancedIntervalSeconds),
      ...only("OS metrics: the machine's own tools"),
      aws: monitoring.enhancedIntervalSeconds > 0 ? applied(`RDS enhanced monitoring every ${monitoring.enhancedIntervalSeconds} s with its IAM role`) : unsupported("off (0); prod's policy pack requires it"),
    },
    {
      key: "aws.performanceInsights, aws.monitoring.performanceInsightsRetentionDays",
      value: `${aws.performanceInsights}, ${monitoring.performanceInsightsRetentionDays}`,
      ...only("pg_stat_statements (postgres.sharedPreloadLibraries) instead"),
      aws: aws.performanceInsights ? applied(`Performance Insights, ${monitoring.performanceInsightsRetentionDays} days, encrypted with the stack's key`) : unsupported("off"),
    },
    {
      key: "aws.logExports, aws.monitoring.cacheLogs, aws.monitoring.flowLogs",
      value: `${aws.logExports.join("+") || "none"}, ${monitoring.cacheLogs}, ${monitoring.flowLogs}`,
      ...only("logs are files in the environment's folder"),
      aws: applied(
        `RDS ${aws.logExports.join(" and ") || "no"} logs, ${monitoring.cacheLogs ? "ElastiCache slow-log and engine-log" : "no ElastiCache logs"}, ${monitoring.flowLogs ? `VPC flow logs (${monitoring.flowLogTraffic}) of a created VPC` : "no flow logs"}: CloudWatch Logs, ${aws.logRetentionDays} days, the stack's key`,
      ),
    },
    {
      key: "aws.kms.keyArn",
      value: aws.kms.keyArn ?? "created",
      ...only("data folders on the machine's disk (use disk encryption)"),
      aws: applied(`${aws.kms.keyArn ? "the given" : "one created"} customer-managed key (rotation on) for RDS storage, Performance Insights, the master secret, ElastiCache at rest, log groups and SNS: snapshots can be shared across accounts`),
    },
    {
      key: "aws.iamAuth.enabled, aws.iamAuth.roleName",
      value: `${aws.iamAuth.enabled}, ${aws.iamAuth.roleName ?? "—"}`,
      ...only("generated passwords in 0600 files"),
      aws: aws.iamAuth.enabled ? applied(`IAM database authentication; an IAM policy allows rds-db:connect as ${spec.postgres.appUser}${aws.iamAuth.roleName ? `, attached to ${aws.iamAuth.roleName}` : ""}`) : unsupported("off"),
    },
    {
      key: "aws.replicas.count, aws.replicas.backupRegion",
      value: `${aws.replicas.count}, ${aws.replicas.backupRegion ?? "—"}`,
      ...only("one server per environment"),
      aws:
        aws.replicas.count > 0 || aws.replicas.backupRegion
          ? applied(`${aws.replicas.count} RDS read replica(s) in other zones (ReplicaLag alarms)${aws.replicas.backupRegion ? `; automated backups replicated to ${aws.replicas.backupRegion} with a key there` : ""}`)
          : unsupported("no replicas, backups in one region"),
    },
    {
      key: "(aws) static parameters",
      value: rdsParameters(spec).filter((p) => p.applyMethod === "pending-reboot").map((p) => p.name).join(", "),
      embedded: applied("`npm run up` restarts the server when they change"),
      docker: applied("the container is replaced when they change"),
      aws: mapped(`pending-reboot until \`npm run reboot -- --env ${spec.env}\` (in ${aws.maintenanceWindow}, or --now --yes); \`drift\` reports a pending reboot`),
    },
    {
      key: "aws.blueGreenUpdate, aws.caCertIdentifier, aws.engineLifecycleSupport",
      value: `${aws.blueGreenUpdate}, ${aws.caCertIdentifier}, ${aws.engineLifecycleSupport}`,
      ...only("local servers are the installed binaries"),
      aws: applied(
        `${aws.blueGreenUpdate ? "engine upgrades through a blue/green deployment" : "in-place engine upgrades (blue/green off)"}; server CA ${aws.caCertIdentifier}; ` +
          (aws.engineLifecycleSupport.endsWith("-disabled") ? "no RDS Extended Support (upgrade before end of standard support)" : "RDS Extended Support (charged)"),
      ),
    },
  ];
}

/** The rows as a markdown table (one column per target). */
export function capabilitiesMarkdown(rows: CapabilityRow[]): string {
  const cell = (c: CapabilityCell) => mdCell(`**${c.support}**: ${c.detail}`);
  const lines = [
    "| setting | value | embedded | docker | aws |",
    "| --- | --- | --- | --- | --- |",
    ...rows.map((r) => `| \`${r.key}\` | \`${mdCell(r.value)}\` | ${cell(r.embedded)} | ${cell(r.docker)} | ${cell(r.aws)} |`),
  ];
  return lines.join("\n").concat("\n");
}
