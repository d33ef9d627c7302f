/**
 * The README's config keys table, generated from the schema (keys and defaults) and this map
 * (unit and where each key applies). A test fails when a schema key has no row here, so the
 * table cannot fall behind the schema.
 */
import { z } from "zod";
import { schema } from "./schema.js";

export interface KeyDoc {
  unit?: string;
  /** Which targets or commands read it. */
  appliesTo: string;
  about: string;
}

const ALL = "embedded, docker, aws";

export const KEY_DOCS: Record<string, KeyDoc> = {
  target: { appliesTo: "pulumi up", about: "`docker` or `aws`: what `pulumi up` makes for this stack (`npm run up` is always embedded)" },
  namePrefix: { appliesTo: "docker, aws", about: "prefix of container, volume and AWS resource names" },
  "postgres.version": { appliesTo: ALL, about: "PostgreSQL major version (16 only)" },
  "postgres.port": { appliesTo: "embedded, docker", about: "port on 127.0.0.1" },
  "postgres.database": { appliesTo: ALL, about: "database name" },
  "postgres.user": { appliesTo: ALL, about: "schema owner; runs migrations" },
  "postgres.appUser": { appliesTo: ALL, about: "application role: DML on the guide's tables only" },
  "postgres.readonlyUser": { appliesTo: ALL, about: "read-only reporting role" },
  "postgres.backupUser": { appliesTo: "embedded, docker", about: "base-backup role: REPLICATION and pg_write_server_files only, replication from 127.0.0.1" },
  "postgres.sharedBuffers": { unit: "PostgreSQL size (kB/MB/GB)", appliesTo: `${ALL} (RDS: 8 kB pages, pending-reboot)`, about: "shared_buffers" },
  "postgres.effectiveCacheSize": { unit: "PostgreSQL size", appliesTo: `${ALL} (RDS: 8 kB pages)`, about: "effective_cache_size" },
  "postgres.workMem": { unit: "PostgreSQL size", appliesTo: `${ALL} (RDS: kB)`, about: "work_mem" },
  "postgres.maintenanceWorkMem": { unit: "PostgreSQL size", appliesTo: `${ALL} (RDS: kB)`, about: "maintenance_work_mem" },
  "postgres.maxConnections": { unit: "connections", appliesTo: ALL, about: "max_connections; must fit the client pool + 3" },
  "postgres.logMinDurationStatementMs": { unit: "ms", appliesTo: ALL, about: "log_min_duration_statement (guide: 1000)" },
  "postgres.sharedPreloadLibraries": { appliesTo: ALL, about: "shared_preload_libraries (pg_stat_statements for slow queries)" },
  "redis.version": { appliesTo: ALL, about: "Redis major version (7 only)" },
  "redis.port": { appliesTo: "embedded, docker", about: "port on 127.0.0.1" },
  "redis.db": { appliesTo: ALL, about: "database number in URLs" },
  "redis.maxmemory": { unit: "Redis size (mb = 1024², m = 10⁶)", appliesTo: "embedded, docker; aws: node type checked", about: "maxmemory" },
  "redis.maxmemoryPolicy": { appliesTo: ALL, about: "maxmemory-policy" },
  "redis.save": { unit: "[{seconds, changes}]", appliesTo: "embedded, docker; aws: snapshots", about: "RDB save points" },
  "redis.appendonly": { appliesTo: "embedded, docker; aws: replicas", about: "AOF persistence" },
  "redis.appendfsync": { appliesTo: "embedded, docker", about: "AOF fsync policy (everysec: ≤ ~1 s of writes lost on a crash)" },
  "redis.appUser": { appliesTo: "embedded, docker", about: "Redis ACL user of the application (no FLUSH*, CONFIG, KEYS, DEBUG)" },
  "pool.postgresSize": { unit: "connections", appliesTo: "clients; maxConnections check", about: "pool_size" },
  "pool.postgresMaxOverflow": { unit: "connections", appliesTo: "clients; maxConnections check", about: "max_overflow" },
  "pool.postgresTimeoutSeconds": { unit: "s", appliesTo: "clients", about: "pool_timeout" },
  "pool.redisMaxConnections": { unit: "connections", appliesTo: "clients", about: "Redis max_connections" },
  "cache.ttlShortSeconds": { unit: "s", appliesTo: "cache module", about: "short TTL tier (latest prices)" },
  "cache.ttlMediumSeconds": { unit: "s", appliesTo: "cache module", about: "medium TTL tier (recent predictions)" },
  "cache.ttlLongSeconds": { unit: "s", appliesTo: "cache module", about: "long TTL tier (metadata)" },
  "cache.keyPattern": { appliesTo: "cache module", about: "key naming convention" },
  "alerts.connectionPoolPercent": { unit: "%", appliesTo: "monitor, aws alarms", about: "connections in use vs max_connections" },
  "alerts.queryTimeSeconds": { unit: "s", appliesTo: "monitor, aws alarms", about: "slow query threshold" },
  "alerts.deadTuplePercent": { unit: "%", appliesTo: "monitor", about: "dead tuples vs live tuples" },
  "alerts.redisMemoryPercent": { unit: "%", appliesTo: "monitor, aws alarms", about: "used memory vs maxmemory" },
  "alerts.redisHitRatePercent": { unit: "%", appliesTo: "monitor, aws alarms", about: "minimum cache hit rate" },
  "alerts.redisEvictionsPerSecond": { unit: "1/s", appliesTo: "monitor, aws alarms", about: "evictions per second" },
  "alerts.archiveLagSeconds": { unit: "s", appliesTo: "verify, monitor", about: "WAL not archived for longer than this fails the archiver check" },
  "alerts.backupMaxAgeHours": { unit: "h", appliesTo: "verify, monitor", about: "newest base backup older than this fails the freshness check" },
  "monitor.port": { appliesTo: "monitor --serve", about: "port of the Prometheus exporter when `--serve` names only a host (127.0.0.1)" },
  "monitor.scrapeTimeoutSeconds": { unit: "s", appliesTo: "monitor --serve", about: "bound of one scrape; a server silent that long is `cpi_*_up 0`" },
  "monitor.rateWindowSeconds": { unit: "s", appliesTo: "monitor --rules", about: "window of the rules' rate()/increase() (evictions/s, hit rate, mean query time)" },
  "monitor.alertFor.connectionPool": { unit: "s", appliesTo: "monitor --rules", about: "`for:` of the connections vs max_connections alert" },
  "monitor.alertFor.queryTime": { unit: "s", appliesTo: "monitor --rules", about: "`for:` of the query time alert" },
  "monitor.alertFor.deadTuples": { unit: "s", appliesTo: "monitor --rules", about: "`for:` of the dead tuples alert" },
  "monitor.alertFor.redisMemory": { unit: "s", appliesTo: "monitor --rules", about: "`for:` of the Redis memory alert" },
  "monitor.alertFor.redisHitRate": { unit: "s", appliesTo: "monitor --rules", about: "`for:` of the Redis hit rate alert" },
  "monitor.alertFor.redisEvictions": { unit: "s", appliesTo: "monitor --rules", about: "`for:` of the Redis evictions/s alert" },
  "monitor.severity.connectionPool": { unit: "info/warning/critical", appliesTo: "monitor --rules", about: "`severity` label of the connections vs max_connections alert" },
  "monitor.severity.queryTime": { unit: "info/warning/critical", appliesTo: "monitor --rules", about: "`severity` label of the query time alert" },
  "monitor.severity.deadTuples": { unit: "info/warning/critical", appliesTo: "monitor --rules", about: "`severity` label of the dead tuples alert" },
  "monitor.severity.redisMemory": { unit: "info/warning/critical", appliesTo: "monitor --rules", about: "`severity` label of the Redis memory alert" },
  "monitor.severity.redisHitRate": { unit: "info/warning/critical", appliesTo: "monitor --rules", about: "`severity` label of the Redis hit rate alert" },
  "monitor.severity.redisEvictions": { unit: "info/warning/critical", appliesTo: "monitor --rules", about: "`severity` label of the Redis evictions/s alert" },
  "backup.schedule": { unit: "cron", appliesTo: "backup schedule", about: "when backups run (guide: daily 02:00)" },
  "backup.keepDaily": { unit: "backups", appliesTo: "backup prune", about: "daily backups kept" },
  "backup.keepWeekly": { unit: "backups", appliesTo: "backup prune", about: "weekly backups kept" },
  "backup.dir": { unit: "path", appliesTo: "backup, restore", about: "backup folder, relative to the project" },
  "backup.retentionDays": { unit: "days", appliesTo: "aws", about: "RDS backup retention (PITR) and ElastiCache snapshot retention" },
  "backup.repository": { unit: '"local" or { url: "s3://bucket/prefix", region, endpoint?, storageClass?, sse?, kmsKeyId?, walPushSeconds? }', appliesTo: "backup, restore, verify (embedded, docker)", about: "where backups and archived WAL are kept: backup.dir here, or an S3-compatible bucket (credentials from the AWS chain only)" },
  "backup.keepBase": { unit: "base backups", appliesTo: "backup prune", about: "physical base backups kept; WAL no kept backup needs is deleted" },
  "backup.archive.enabled": { appliesTo: "embedded, docker (RDS always archives)", about: "continuous WAL archiving (basic_archive) for point-in-time recovery" },
  "backup.archive.timeoutSeconds": { unit: "s", appliesTo: "embedded, docker", about: "archive_timeout: bounds the RPO while there are writes" },
  "dr.rtoSeconds": { unit: "s", appliesTo: "drill", about: "recovery time objective" },
  "dr.rpoSeconds": { unit: "s", appliesTo: "drill", about: "recovery point objective (default: backup.archive.timeoutSeconds with archiving, else 86400)" },
  "images.postgres": { appliesTo: "docker", about: "PostgreSQL image (ci: the offline build)" },
  "images.redis": { appliesTo: "docker", about: "Redis image (ci: the offline build)" },
  "docker.shmSize": { unit: "PostgreSQL size", appliesTo: "docker", about: "/dev/shm of the PostgreSQL container" },
  "aws.region": { appliesTo: "aws", about: "AWS region of the SDK calls (backup snapshots)" },
  "aws.vpcId": { appliesTo: "aws", about: "existing VPC (created when absent)" },
  "aws.subnetIds": { appliesTo: "aws", about: "existing private subnets (created when absent)" },
  "aws.vpcCidr": { appliesTo: "aws", about: "CIDR of a created VPC" },
  "aws.allowedCidrs": { appliesTo: "aws", about: "who may connect to 5432/6379 (never 0.0.0.0/0)" },
  "aws.allowedSecurityGroupIds": { appliesTo: "aws", about: "security groups that may connect" },
  "aws.rdsInstanceClass": { appliesTo: "aws", about: "RDS instance class" },
  "aws.rdsAllocatedStorageGb": { unit: "GB", appliesTo: "aws", about: "RDS storage" },
  "aws.rdsMaxAllocatedStorageGb": { unit: "GB", appliesTo: "aws", about: "RDS storage autoscaling ceiling" },
  "aws.multiAz": { appliesTo: "aws", about: "RDS Multi-AZ" },
  "aws.deletionProtection": { appliesTo: "aws", about: "RDS deletion protection (+ final snapshot)" },
  "aws.performanceInsights": { appliesTo: "aws", about: "RDS Performance Insights" },
  "aws.logExports": { appliesTo: "aws", about: "RDS CloudWatch log exports" },
  "aws.cacheNodeType": { appliesTo: "aws", about: "ElastiCache node type (usable memory must hold redis.maxmemory)" },
  "aws.cacheReplicas": { unit: "replicas", appliesTo: "aws", about: "replicas per shard (≥ 1: Multi-AZ + automatic failover)" },
  "aws.reservedMemoryPercent": { unit: "%", appliesTo: "aws", about: "ElastiCache reserved-memory-percent" },
  "aws.snapshotWindow": { unit: "HH:MM-HH:MM UTC", appliesTo: "aws", about: "ElastiCache snapshot window (≥ 60 min)" },
  "aws.maintenanceWindow": { appliesTo: "aws", about: "maintenance window of RDS and ElastiCache" },
  "aws.cpuAlarmPercent": { unit: "%", appliesTo: "aws alarms", about: "RDS CPUUtilization alarm (the guide names no figure)" },
  "aws.freeStorageAlarmPercent": { unit: "% of rdsAllocatedStorageGb", appliesTo: "aws alarms", about: "RDS FreeStorageSpace alarm" },
  "aws.logRetentionDays": { unit: "days", appliesTo: "aws", about: "retention of the RDS PostgreSQL log group" },
  "aws.alarmTopicArn": { appliesTo: "aws", about: "SNS topic for alarms" },
  "aws.createAlarmTopic": { appliesTo: "aws", about: "create the stack's SNS topic for alarms (KMS-encrypted)" },
  "aws.alarms.emails": { appliesTo: "aws", about: "e-mail subscriptions of the alarm topic" },
  "aws.alarms.httpsEndpoints": { appliesTo: "aws", about: "HTTPS subscriptions of the alarm topic (pager, chat webhook)" },
  "aws.alarms.freeableMemoryMb": { unit: "MiB", appliesTo: "aws alarms", about: "RDS FreeableMemory alarm" },
  "aws.alarms.latencyMs": { unit: "ms", appliesTo: "aws alarms", about: "RDS ReadLatency/WriteLatency alarms" },
  "aws.alarms.transactionIds": { unit: "xids", appliesTo: "aws alarms", about: "RDS MaximumUsedTransactionIDs alarm (wraparound at 2^31)" },
  "aws.alarms.replicaLagSeconds": { unit: "s", appliesTo: "aws alarms", about: "RDS ReplicaLag alarm per read replica" },
  "aws.alarms.cacheEngineCpuPercent": { unit: "%", appliesTo: "aws alarms", about: "ElastiCache EngineCPUUtilization alarm" },
  "aws.alarms.cacheConnections": { unit: "connections", appliesTo: "aws alarms", about: "ElastiCache CurrConnections alarm per node" },
  "aws.events.rdsCategories": { appliesTo: "aws", about: "RDS event subscription categories (to the alarm topic)" },
  "aws.monitoring.enhancedIntervalSeconds": { unit: "s (0 = off)", appliesTo: "aws", about: "RDS enhanced monitoring interval (with its IAM role)" },
  "aws.monitoring.performanceInsightsRetentionDays": { unit: "days", appliesTo: "aws", about: "Performance Insights retention (7 free)" },
  "aws.monitoring.cacheLogs": { appliesTo: "aws", about: "ElastiCache slow-log and engine-log to CloudWatch Logs" },
  "aws.monitoring.flowLogs": { appliesTo: "aws", about: "VPC flow logs of a created VPC" },
  "aws.monitoring.flowLogTraffic": { appliesTo: "aws", about: "flow log traffic type (ALL, ACCEPT, REJECT)" },
  "aws.kms.keyArn": { appliesTo: "aws", about: "existing customer-managed KMS key (else one is created, rotation on)" },
  "aws.kms.deletionWindowDays": { unit: "days", appliesTo: "aws", about: "deletion window of the created key" },
  "aws.iamAuth.enabled": { appliesTo: "aws", about: "RDS IAM database authentication (app role logs in with IAM tokens)" },
  "aws.iamAuth.roleName": { appliesTo: "aws", about: "IAM role given rds-db:connect as postgres.appUser" },
  "aws.replicas.count": { unit: "replicas", appliesTo: "aws", about: "RDS read replicas (other zones)" },
  "aws.replicas.instanceClass": { appliesTo: "aws", about: "replica instance class (default: aws.rdsInstanceClass)" },
  "aws.replicas.backupRegion": { appliesTo: "aws", about: "region automated backups are replicated to" },
  "aws.cacheSnapshots.enabled": { appliesTo: "aws", about: "scheduled ElastiCache CreateSnapshot (EventBridge Scheduler) and clean-up" },
  "aws.cacheSnapshots.schedule": { unit: "rate()/cron()", appliesTo: "aws", about: "when the manual snapshots are taken (guide: hourly)" },
  "aws.cacheSnapshots.keepHours": { unit: "h", appliesTo: "aws", about: "manual snapshots older than this are deleted" },
  "aws.backupBucket.enabled": { appliesTo: "aws", about: "S3 bucket of the backup repository (versioned, SSE-KMS, TLS-only, lifecycle) and its IAM policy" },
  "aws.backupBucket.bucketName": { appliesTo: "aws", about: "existing bucket: only the IAM policy and the outputs are made (default: `<namePrefix>-backups-<account>`)" },
  "aws.backupBucket.kmsKeyArn": { appliesTo: "aws", about: "key of an existing bucket (default: the stack's key)" },
  "aws.backupBucket.prefix": { appliesTo: "aws", about: "repository key prefix; an environment writes under `<prefix>/<env>/`" },
  "aws.backupBucket.forceDestroy": { appliesTo: "aws", about: "`pulumi destroy` may delete a bucket that holds backups" },
  "aws.backupBucket.expireDays": { unit: "days", appliesTo: "aws", about: "current backups/ and wal/ objects expire (default max(keepDaily, 7×keepWeekly, retentionDays) + 1)" },
  "aws.backupBucket.noncurrentVersionDays": { unit: "days", appliesTo: "aws", about: "overwritten or deleted versions kept this long" },
  "aws.backupBucket.abortIncompleteUploadDays": { unit: "days", appliesTo: "aws", about: "incomplete multipart uploads aborted after" },
  "aws.backupBucket.accessLogBucket": { appliesTo: "aws", about: "bucket receiving the S3 server access logs" },
  "aws.backupBucket.roleName": { appliesTo: "aws", about: "IAM role given the backup access policy" },
  "aws.blueGreenUpdate": { appliesTo: "aws", about: "RDS blue/green deployment for engine upgrades" },
  "aws.caCertIdentifier": { appliesTo: "aws", about: "RDS server CA, set explicitly" },
  "aws.engineLifecycleSupport": { appliesTo: "aws", about: "RDS Extended Support (costs money; disabled by default)" },
};

/** Every leaf key of the schema, dotted, with its default (undefined when optional without one). */
export function schemaKeys(): { key: string; default: unknown }[] {
  const out: { key: string; default: unknown }[] = [];
  const walk = (shape: Record<string, z.ZodType>, prefix: string) => {
    for (const [name, field] of Object.entries(shape)) {
      const key = prefix + name;
      const { inner, fallback } = unwrap(field);
      if (inner instanceof z.ZodObject) walk(inner.shape as Record<string, z.ZodType>, `${key}.`);
      else out.push({ key, default: fallback });
    }
  };
  walk(schema.shape as Record<string, z.ZodType>, "");
  return out;
}

function unwrap(field: z.ZodType): { inner: z.ZodType; fallback: unknown } {
  let current: z.ZodType = field;
  let fallback: unknown;
  for (;;) {
    const def = (current as unknown as { _zod: { def: { type: string; innerType?: z.ZodType; defaultValue?: unknown } } })._zod.def;
    if (def.type === "default" || def.type === "prefault") {
      if (fallback === undefined) fallback = typeof def.defaultValue === "function" ? (def.defaultValue as () => unknown)() : def.defaultValue;
      current = def.innerType!;
    } else if (def.type === "optional") {
      current = def.innerType!;
    } else {
      return { inner: current, fallback };
    }
  }
}

/** The README's config keys table (markdown). */
export function configKeysMarkdown(): string {
  const rows = schemaKeys().map(({ key, default: d }) => {
    const doc = KEY_DOCS[key];
    const shown = d === undefined ? "—" : `\`${JSON.stringify(d)}\``;
    return `| \`${key}\` | ${shown} | ${doc?.unit ?? ""} | ${doc?.appliesTo ?? "?"} | ${doc?.about ?? "?"} |`;
  });
  return ["| key | default | unit | applies to | what |", "| --- | --- | --- | --- | --- |", ...rows].join("\n");
}
