/**
 * How the spec maps onto AWS where AWS has no setting of the same name: the ElastiCache
 * node-memory check, the backup and snapshot windows, and the CloudWatch alarm rules. The AWS
 * component and the capability table (lib/docs/capabilities.ts) both read these.
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
      `unknown ElastiCache node type ${JSON.stringify(nodeType)}: its memory is not in lib/aws/mapping.ts ` +
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
