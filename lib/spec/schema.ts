/**
 * The spec: every documented setting of the data layer, typed and validated in one place.
 *
 * Defaults are the values of the user's guide (docs/database-setup-guide.md); each
 * environment overrides them in `Pulumi.<env>.yaml` under the project's config namespace. Every
 * target (embedded, Docker, AWS) and every script derives what it needs from a parsed `Spec`
 * through the pure functions in ./render.ts: no value is written twice.
 */
import { z } from "zod";
import { PG_SIZE_HELP, REDIS_SIZE_HELP, parsePgSize, parseRedisSize } from "./units.js";

/**
 * What each setting's `.meta()` says of it: the README's config keys table (lib/spec/keys.ts)
 * is made from these, the schema's defaults and the RDS units of lib/spec/render.ts.
 */
export interface SettingDoc {
  /** What the setting is, in a phrase. */
  about: string;
  /** The unit or form of its value, where it has one. */
  unit?: string;
  /** Which targets or commands read it. */
  appliesTo: string;
}

declare module "zod" {
  interface GlobalMeta extends Partial<SettingDoc> {}
}

/** appliesTo of a setting every target reads. */
const ALL_TARGETS = "embedded, docker, aws";

const pgSize = z
  .string({ error: `expected ${PG_SIZE_HELP}` })
  .refine((v) => parsePgSize(v) !== undefined, { error: `not a PostgreSQL size; use ${PG_SIZE_HELP}` });
const redisSize = z
  .union([z.string(), z.number()], { error: `expected ${REDIS_SIZE_HELP}` })
  .refine((v) => parseRedisSize(v) !== undefined, { error: `not a Redis size; use ${REDIS_SIZE_HELP}` });
const port = z
  .number({ error: "expected a TCP port number (1024-65535)" })
  .int({ error: "expected a whole TCP port number (1024-65535)" })
  .min(1024, { error: "ports below 1024 need root to bind; use 1024-65535" })
  .max(65535, { error: "ports go up to 65535" });
const identifier = z
  .string({ error: "expected a PostgreSQL identifier" })
  .regex(/^[a-z_][a-z0-9_]{0,62}$/, { error: "use lowercase letters, digits and _ (at most 63, not starting with a digit)" });
const count = (what: string) =>
  z.number({ error: `expected a number of ${what}` }).int({ error: `expected a whole number of ${what}` });
const seconds = z.number({ error: "expected a number of seconds" }).positive({ error: "must be above 0 seconds" });
const percent = z.number({ error: "expected a percentage" }).min(0, { error: "must be 0-100" }).max(100, { error: "must be 0-100" });

/** Severities of the alerting rules (the `severity` label). */
export const ALERT_SEVERITIES = ["info", "warning", "critical"] as const;
const severity = z.enum(ALERT_SEVERITIES, { error: `expected one of ${ALERT_SEVERITIES.join(", ")}` });

/** The eviction policies Redis 7 accepts for `maxmemory-policy`. */
export const REDIS_EVICTION_POLICIES = [
  "noeviction",
  "allkeys-lru",
  "allkeys-lfu",
  "allkeys-random",
  "volatile-lru",
  "volatile-lfu",
  "volatile-random",
  "volatile-ttl",
] as const;

/** Retention periods CloudWatch Logs accepts, days. */
export const LOG_RETENTION_DAYS = [1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653] as const;

const saveRule = z.strictObject({
  /** Seconds of the window. */
  seconds: count("seconds").min(1, { error: "must be at least 1 second" }),
  /** Key changes within the window that trigger a snapshot. */
  changes: count("changes").min(1, { error: "must be at least 1 change" }),
});

export const postgresSchema = z.strictObject({
  /** Major version; the toolkit ships PostgreSQL 16. */
  version: z.literal(16, { error: "only PostgreSQL 16 is supported" }).default(16).meta({ about: "PostgreSQL major version (16 only)", appliesTo: ALL_TARGETS }),
  /** TCP port on 127.0.0.1 (embedded) or published on 127.0.0.1 (Docker). Guide: 5432. */
  port: port.default(5432).meta({ about: "port on 127.0.0.1", appliesTo: "embedded, docker" }),
  /** Guide: crypto_prediction_db. */
  database: identifier.default("crypto_prediction_db").meta({ about: "database name", appliesTo: ALL_TARGETS }),
  /** Owner of the schema, runs migrations (DDL). Guide: crypto_user. */
  user: identifier.default("crypto_user").meta({ about: "schema owner; runs migrations", appliesTo: ALL_TARGETS }),
  /** Application role: DML on the guide's tables only. */
  appUser: identifier.default("crypto_app").meta({ about: "application role: DML on the guide's tables only", appliesTo: ALL_TARGETS }),
  /** Read-only role for reporting. */
  readonlyUser: identifier.default("crypto_readonly").meta({ about: "read-only reporting role", appliesTo: ALL_TARGETS }),
  /** Base backups over the replication protocol (REPLICATION + pg_write_server_files, nothing else; embedded and Docker). */
  backupUser: identifier.default("crypto_backup").meta({ about: "base-backup role: REPLICATION and pg_write_server_files only, replication from 127.0.0.1", appliesTo: "embedded, docker" }),
  /** Guide: 256MB. */
  sharedBuffers: pgSize.default("256MB").meta({ about: "shared_buffers", unit: "PostgreSQL size (kB/MB/GB)", appliesTo: ALL_TARGETS }),
  /** Guide: 1GB. */
  effectiveCacheSize: pgSize.default("1GB").meta({ about: "effective_cache_size", unit: "PostgreSQL size", appliesTo: ALL_TARGETS }),
  /** Guide: 16MB. */
  workMem: pgSize.default("16MB").meta({ about: "work_mem", unit: "PostgreSQL size", appliesTo: ALL_TARGETS }),
  /** Guide: 128MB. */
  maintenanceWorkMem: pgSize.default("128MB").meta({ about: "maintenance_work_mem", unit: "PostgreSQL size", appliesTo: ALL_TARGETS }),
  /** PostgreSQL's default; the pool (20 + 10 overflow) must fit in it with room for admin sessions. */
  maxConnections: count("connections").min(10, { error: "must be at least 10" }).max(10000, { error: "must be at most 10000" }).default(100).meta({ about: "max_connections; must fit the client pool + 3", unit: "connections", appliesTo: ALL_TARGETS }),
  /** Guide (Troubleshooting, slow queries): log statements slower than 1000 ms. */
  logMinDurationStatementMs: count("milliseconds").min(-1, { error: "-1 (off) or more" }).default(1000).meta({ about: "log_min_duration_statement (guide: 1000)", unit: "ms", appliesTo: ALL_TARGETS }),
  /** Guide (Troubleshooting) queries pg_stat_statements, so it is preloaded. */
  sharedPreloadLibraries: z.array(z.enum(["pg_stat_statements", "auto_explain"])).default(["pg_stat_statements"]).meta({ about: "shared_preload_libraries (pg_stat_statements for slow queries)", appliesTo: ALL_TARGETS }),
});

export const redisSchema = z.strictObject({
  /** Major version; the toolkit ships Redis 7. */
  version: z.literal(7, { error: "only Redis 7 is supported" }).default(7).meta({ about: "Redis major version (7 only)", appliesTo: ALL_TARGETS }),
  /** Guide: 6379. */
  port: port.default(6379).meta({ about: "port on 127.0.0.1", appliesTo: "embedded, docker" }),
  /** Guide: database 0. */
  db: count("databases").min(0, { error: "must be 0-15" }).max(15, { error: "must be 0-15" }).default(0).meta({ about: "database number in URLs", appliesTo: ALL_TARGETS }),
  /** Guide: 256mb. */
  maxmemory: redisSize.default("256mb").meta({ about: "maxmemory", unit: "Redis size (mb = 1024², m = 10⁶)", appliesTo: "embedded, docker; aws: node type checked" }),
  /** Guide: allkeys-lru. */
  maxmemoryPolicy: z.enum(REDIS_EVICTION_POLICIES, { error: `expected one of ${REDIS_EVICTION_POLICIES.join(", ")}` }).default("allkeys-lru").meta({ about: "maxmemory-policy", appliesTo: ALL_TARGETS }),
  /** Guide: `save 60 1000`. */
  save: z.array(saveRule).default([{ seconds: 60, changes: 1000 }]).meta({ about: "RDB save points", unit: "[{seconds, changes}]", appliesTo: "embedded, docker; aws: snapshots" }),
  /** Guide: `appendonly yes`. */
  appendonly: z.boolean({ error: "expected true or false" }).default(true).meta({ about: "AOF persistence", appliesTo: "embedded, docker; aws: replicas" }),
  /** Redis's default; bounds the loss of acknowledged writes on a crash to about one second. */
  appendfsync: z.enum(["always", "everysec", "no"], { error: "expected always, everysec or no" }).default("everysec").meta({ about: "AOF fsync policy (everysec: ≤ ~1 s of writes lost on a crash)", appliesTo: "embedded, docker" }),
  /** ACL user of the application: no FLUSHALL/FLUSHDB, CONFIG, KEYS, DEBUG or other dangerous commands. */
  appUser: z.string().regex(/^[a-z][a-z0-9_-]{0,31}$/, { error: "use lowercase letters, digits, _ and -" }).default("crypto_app").meta({ about: "Redis ACL user of the application (no FLUSH*, CONFIG, KEYS, DEBUG)", appliesTo: "embedded, docker" }),
});

const logRetention = z
  .number()
  .refine((d) => LOG_RETENTION_DAYS.includes(d as (typeof LOG_RETENTION_DAYS)[number]), { error: "not a CloudWatch Logs retention (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, …)" });
const arn = (what: string) => z.string().regex(/^arn:aws[a-z-]*:/, { error: `expected the ARN of ${what} (arn:aws:…)` });

/** Intervals RDS enhanced monitoring accepts, seconds (0 = off). */
export const ENHANCED_MONITORING_INTERVALS = [0, 1, 5, 10, 15, 30, 60] as const;
/** RDS event categories the event subscription may name. */
export const RDS_EVENT_CATEGORIES = ["availability", "backup", "configuration change", "creation", "deletion", "failover", "failure", "low storage", "maintenance", "notification", "read replica", "recovery", "restoration"] as const;

/**
 * The production surface of the AWS target (issue 16): alert delivery, monitoring, keys,
 * identity, replicas and change management. Kept apart so the `aws` object stays readable.
 */
const awsProductionSchema = {
  /** Who hears the alarms (the SNS topic's subscriptions) and the extra alarm thresholds. */
  alarms: z
    .strictObject({
      /** E-mail subscriptions of the alarm topic (each must confirm once). */
      emails: z.array(z.email({ error: "expected an e-mail address" })).default([]).meta({ about: "e-mail subscriptions of the alarm topic", appliesTo: "aws" }),
      /** HTTPS endpoints (pager, chat webhooks) subscribed to the alarm topic. */
      httpsEndpoints: z.array(z.url({ protocol: /^https$/, error: "expected an https:// URL" })).default([]).meta({ about: "HTTPS subscriptions of the alarm topic (pager, chat webhook)", appliesTo: "aws" }),
      /** RDS FreeableMemory alarm: below this many MiB. */
      freeableMemoryMb: count("MiB").min(1).default(256).meta({ about: "RDS FreeableMemory alarm", unit: "MiB", appliesTo: "aws alarms" }),
      /** RDS ReadLatency / WriteLatency alarm: above this many milliseconds. */
      latencyMs: z.number().positive({ error: "must be above 0 ms" }).default(20).meta({ about: "RDS ReadLatency/WriteLatency alarms", unit: "ms", appliesTo: "aws alarms" }),
      /** RDS MaximumUsedTransactionIDs alarm (wraparound at 2^31): above this many. */
      transactionIds: count("transaction ids").min(1).max(2_000_000_000).default(1_000_000_000).meta({ about: "RDS MaximumUsedTransactionIDs alarm (wraparound at 2^31)", unit: "xids", appliesTo: "aws alarms" }),
      /** RDS ReplicaLag alarm on each read replica: above this many seconds. */
      replicaLagSeconds: seconds.default(60).meta({ about: "RDS ReplicaLag alarm per read replica", unit: "s", appliesTo: "aws alarms" }),
      /** ElastiCache EngineCPUUtilization alarm (Redis's own thread), percent. */
      cacheEngineCpuPercent: percent.default(90).meta({ about: "ElastiCache EngineCPUUtilization alarm", unit: "%", appliesTo: "aws alarms" }),
      /** ElastiCache CurrConnections alarm: above this many client connections per node. */
      cacheConnections: count("connections").min(1).default(1000).meta({ about: "ElastiCache CurrConnections alarm per node", unit: "connections", appliesTo: "aws alarms" }),
    })
    .prefault({}),
  /** RDS event subscription to the alarm topic. */
  events: z
    .strictObject({
      rdsCategories: z.array(z.enum(RDS_EVENT_CATEGORIES)).default(["failover", "failure", "low storage", "maintenance", "notification"]).meta({ about: "RDS event subscription categories (to the alarm topic)", appliesTo: "aws" }),
    })
    .prefault({}),
  /** What the stack records about itself. */
  monitoring: z
    .strictObject({
      /** RDS enhanced monitoring interval, seconds (0 = off). */
      enhancedIntervalSeconds: z
        .number()
        .refine((v) => ENHANCED_MONITORING_INTERVALS.includes(v as (typeof ENHANCED_MONITORING_INTERVALS)[number]), { error: "expected 0, 1, 5, 10, 15, 30 or 60" })
        .default(0)
        .meta({ about: "RDS enhanced monitoring interval (with its IAM role)", unit: "s (0 = off)", appliesTo: "aws" }),
      /** Performance Insights retention when aws.performanceInsights is on, days (7 is free; or 31 × months up to 731). */
      performanceInsightsRetentionDays: z
        .number()
        .int()
        .refine((d) => d === 7 || (d % 31 === 0 && d >= 31 && d <= 713) || d === 731, { error: "expected 7, a multiple of 31 up to 713, or 731" })
        .default(7)
        .meta({ about: "Performance Insights retention (7 free)", unit: "days", appliesTo: "aws" }),
      /** ElastiCache slow-log and engine-log delivery to CloudWatch Logs. */
      cacheLogs: z.boolean().default(true).meta({ about: "ElastiCache slow-log and engine-log to CloudWatch Logs", appliesTo: "aws" }),
      /** VPC flow logs of a created VPC (to CloudWatch Logs). */
      flowLogs: z.boolean().default(true).meta({ about: "VPC flow logs of a created VPC", appliesTo: "aws" }),
      /** What the flow logs record. */
      flowLogTraffic: z.enum(["ALL", "ACCEPT", "REJECT"]).default("REJECT").meta({ about: "flow log traffic type (ALL, ACCEPT, REJECT)", appliesTo: "aws" }),
    })
    .prefault({}),
  /** The stack's customer-managed KMS key (RDS, Performance Insights, master secret, ElastiCache, logs, SNS). */
  kms: z
    .strictObject({
      /** An existing key to use instead of creating one. */
      keyArn: arn("a KMS key").optional().meta({ about: "existing customer-managed KMS key (else one is created, rotation on)", appliesTo: "aws" }),
      /** Waiting period before a destroyed key is deleted, days. */
      deletionWindowDays: count("days").min(7, { error: "must be 7-30" }).max(30, { error: "must be 7-30" }).default(30).meta({ about: "deletion window of the created key", unit: "days", appliesTo: "aws" }),
    })
    .prefault({}),
  /** IAM database authentication for the app role. */
  iamAuth: z
    .strictObject({
      enabled: z.boolean().default(true).meta({ about: "RDS IAM database authentication (app role logs in with IAM tokens)", appliesTo: "aws" }),
      /** An IAM role that gets `rds-db:connect` as postgres.appUser. Default: none (the policy is made, attach it yourself). */
      roleName: z.string().regex(/^[\w+=,.@-]{1,64}$/, { error: "expected an IAM role name" }).optional().meta({ about: "IAM role given rds-db:connect as postgres.appUser", appliesTo: "aws" }),
    })
    .prefault({}),
  /** RDS read replicas and cross-region backups. */
  replicas: z
    .strictObject({
      /** Read replicas of the RDS instance, each in another zone than the primary. */
      count: count("replicas").min(0).max(5).default(0).meta({ about: "RDS read replicas (other zones)", unit: "replicas", appliesTo: "aws" }),
      /** Instance class of the replicas. Default: aws.rdsInstanceClass. */
      instanceClass: z.string().optional().meta({ about: "replica instance class (default: aws.rdsInstanceClass)", appliesTo: "aws" }),
      /** Region automated backups are replicated to. Default: none. */
      backupRegion: z.string().regex(/^[a-z]{2}(-[a-z]+)+-\d$/, { error: "expected an AWS region such as us-west-2" }).optional().meta({ about: "region automated backups are replicated to", appliesTo: "aws" }),
    })
    .prefault({}),
  /** ElastiCache manual snapshots on a schedule (the guide's hourly snapshots). */
  cacheSnapshots: z
    .strictObject({
      enabled: z.boolean().default(true).meta({ about: "scheduled ElastiCache CreateSnapshot (EventBridge Scheduler) and clean-up", appliesTo: "aws" }),
      /** EventBridge Scheduler expression of CreateSnapshot. */
      schedule: z.string().regex(/^(rate|cron)\(.+\)$/, { error: "expected rate(…) or cron(…)" }).default("rate(1 hour)").meta({ about: "when the manual snapshots are taken (guide: hourly)", unit: "rate()/cron()", appliesTo: "aws" }),
      /** Manual snapshots older than this are deleted (they never expire by themselves), hours. */
      keepHours: count("hours").min(1).max(24 * 35).default(48).meta({ about: "manual snapshots older than this are deleted", unit: "h", appliesTo: "aws" }),
    })
    .prefault({}),
  /**
   * The S3 bucket of the toolkit's backup repository (logical dumps, base backups, WAL, Redis RDB
   * copied off the machine; `backup.repository` points at it). Lifecycle: lib/aws/backup-bucket.ts.
   */
  backupBucket: z
    .strictObject({
      /** Provision the bucket (or, with bucketName, only its access policy) on AWS stacks. */
      enabled: z.boolean({ error: "expected true or false" }).default(true).meta({ about: "S3 bucket of the backup repository (versioned, SSE-KMS, TLS-only, lifecycle) and its IAM policy", appliesTo: "aws" }),
      /** An existing bucket to use: nothing is created but the IAM policy and the outputs. Default: a bucket `<namePrefix>-backups-<account>`. */
      bucketName: z
        .string()
        .regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, { error: "expected an S3 bucket name (3-63 lowercase letters, digits, . and -)" })
        .optional()
        .meta({ about: "existing bucket: only the IAM policy and the outputs are made (default: `<namePrefix>-backups-<account>`)", appliesTo: "aws" }),
      /** The bucket's key: the one an existing bucket encrypts with (or another for the created bucket). Default: the stack's key (aws.kms.keyArn or the created one). */
      kmsKeyArn: arn("a KMS key").optional().meta({ about: "key of an existing bucket (default: the stack's key)", appliesTo: "aws" }),
      /** Key prefix of the repository in the bucket; each environment writes under `<prefix>/<env>/`. */
      prefix: z
        .string()
        .regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, { error: "expected one path segment: lowercase letters, digits, ., _ and - (no /)" })
        .default("crypto-prediction-infra")
        .meta({ about: "repository key prefix; an environment writes under `<prefix>/<env>/`", appliesTo: "aws" }),
      /** Let `pulumi destroy` delete a bucket that still holds backups (every version). */
      forceDestroy: z.boolean({ error: "expected true or false" }).default(false).meta({ about: "`pulumi destroy` may delete a bucket that holds backups", appliesTo: "aws" }),
      /** Current backups and WAL expire after this many days. Default: max(backup.keepDaily, 7 × backup.keepWeekly, backup.retentionDays) + 1. */
      expireDays: count("days").min(1, { error: "must be at least 1 day" }).max(3650, { error: "at most 3650 days" }).optional().meta({ about: "current backups/ and wal/ objects expire (default max(keepDaily, 7×keepWeekly, retentionDays) + 1)", unit: "days", appliesTo: "aws" }),
      /** Overwritten and deleted versions are kept this many days, then expire. */
      noncurrentVersionDays: count("days").min(1, { error: "must be at least 1 day" }).max(3650, { error: "at most 3650 days" }).default(30).meta({ about: "overwritten or deleted versions kept this long", unit: "days", appliesTo: "aws" }),
      /** Incomplete multipart uploads (a killed backup) are aborted after this many days. */
      abortIncompleteUploadDays: count("days").min(1, { error: "must be at least 1 day" }).max(30, { error: "at most 30 days" }).default(1).meta({ about: "incomplete multipart uploads aborted after", unit: "days", appliesTo: "aws" }),
      /** A bucket that receives the S3 server access logs of the backup bucket. Default: none. */
      accessLogBucket: z
        .string()
        .regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, { error: "expected an S3 bucket name (3-63 lowercase letters, digits, . and -)" })
        .optional()
        .meta({ about: "bucket receiving the S3 server access logs", appliesTo: "aws" }),
      /** An IAM role that gets the backup access policy (whoever runs backups). Default: none (attach it yourself). */
      roleName: z.string().regex(/^[\w+=,.@-]{1,64}$/, { error: "expected an IAM role name" }).optional().meta({ about: "IAM role given the backup access policy", appliesTo: "aws" }),
    })
    .prefault({}),
  /** RDS blue/green deployments for engine upgrades (off: in-place upgrades). */
  blueGreenUpdate: z.boolean().default(false).meta({ about: "RDS blue/green deployment for engine upgrades", appliesTo: "aws" }),
  /** The RDS server certificate authority, set explicitly so it never changes under the clients. */
  caCertIdentifier: z.enum(["rds-ca-rsa2048-g1", "rds-ca-rsa4096-g1", "rds-ca-ecc384-g1"]).default("rds-ca-rsa2048-g1").meta({ about: "RDS server CA, set explicitly", appliesTo: "aws" }),
  /** RDS Extended Support after the engine's end of standard support (it costs money): disabled upgrades instead. */
  engineLifecycleSupport: z.enum(["open-source-rds-extended-support", "open-source-rds-extended-support-disabled"]).default("open-source-rds-extended-support-disabled").meta({ about: "RDS Extended Support (costs money; disabled by default)", appliesTo: "aws" }),
};

/** S3 bucket names: 3-63 characters, lowercase letters, digits, dots and hyphens, a letter or digit at each end, not an IP address. */
function bucketProblem(bucket: string): string | undefined {
  if (bucket.length < 3 || bucket.length > 63) return `bucket name ${JSON.stringify(bucket)} must be 3-63 characters`;
  if (!/^[a-z0-9][a-z0-9.-]*[a-z0-9]$/.test(bucket)) return `bucket name ${JSON.stringify(bucket)} may hold only lowercase letters, digits, '.' and '-', and must begin and end with a letter or digit`;
  if (bucket.includes("..")) return `bucket name ${JSON.stringify(bucket)} may not hold two dots in a row`;
  if (/^\d+\.\d+\.\d+\.\d+$/.test(bucket)) return `bucket name ${JSON.stringify(bucket)} may not look like an IP address`;
  return undefined;
}

export const S3_STORAGE_CLASSES = ["STANDARD", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR", "REDUCED_REDUNDANCY"] as const;

/** backup.repository as an S3 bucket (url s3://bucket/prefix). */
const s3Repository = z
  .strictObject({
    url: z.string({ error: "expected s3://bucket/prefix" }).superRefine((url, ctx) => {
      const m = /^s3:\/\/([^/]*)(\/.*)?$/.exec(url);
      if (!m) return void ctx.addIssue({ code: "custom", message: `${JSON.stringify(url)}: expected s3://bucket/prefix (the url must start with s3://)` });
      const problem = bucketProblem(m[1]!);
      if (problem) ctx.addIssue({ code: "custom", message: problem });
      const prefix = (m[2] ?? "").replace(/^\/+|\/+$/g, "");
      if (prefix && !/^[A-Za-z0-9!_.*'()\/-]+$/.test(prefix)) ctx.addIssue({ code: "custom", message: `prefix ${JSON.stringify(prefix)} may hold only letters, digits and !_.*'()/-` });
    }),
    region: z.string({ error: "expected an AWS region such as eu-west-1" }).regex(/^[a-z]{2}(-[a-z]+)+-\d$/, { error: "expected an AWS region such as eu-west-1" }),
    /** An S3-compatible endpoint (MinIO, s3rver, ...); path-style requests are used with it. */
    endpoint: z
      .string()
      .refine((u) => URL.canParse(u) && /^https?:$/.test(new URL(u).protocol), { error: "expected an http:// or https:// URL, e.g. https://s3.example.com" })
      .optional(),
    storageClass: z.enum(S3_STORAGE_CLASSES, { error: `expected one of ${S3_STORAGE_CLASSES.join(", ")}` }).default("STANDARD"),
    sse: z.enum(["AES256", "aws:kms"], { error: 'expected "AES256" or "aws:kms"' }).default("AES256"),
    /** The KMS key of sse aws:kms (required with it, refused without it). */
    kmsKeyId: z.string().min(1).optional(),
    /** How often `backup push-wal` runs from cron; the RPO with the bucket is archive_timeout + this. */
    walPushSeconds: count("seconds").min(10, { error: "at least 10 s" }).max(3600, { error: "at most 3600 s (one hour)" }).default(60),
  })
  .superRefine((r, ctx) => {
    if (r.sse === "aws:kms" && !r.kmsKeyId) ctx.addIssue({ code: "custom", path: ["kmsKeyId"], message: 'required with sse "aws:kms" (the KMS key id or ARN)' });
    if (r.sse !== "aws:kms" && r.kmsKeyId) ctx.addIssue({ code: "custom", path: ["kmsKeyId"], message: 'goes only with sse "aws:kms"' });
  });
export type S3RepositorySpec = z.infer<typeof s3Repository>;

export const schema = z.strictObject({
  /** Pulumi target of the stack; `npm run up` always runs the spec on the embedded engine. */
  target: z.enum(["docker", "aws"], { error: "expected docker or aws" }).default("docker").meta({ about: "`docker` or `aws`: what `pulumi up` makes for this stack (`npm run up` is always embedded)", appliesTo: "pulumi up" }),
  /** Prefix of resource, container and volume names (guide: crypto-prediction-postgres). */
  namePrefix: z.string().regex(/^[a-z][a-z0-9-]{1,30}$/, { error: "use lowercase letters, digits and - (2-31 characters)" }).default("crypto-prediction").meta({ about: "prefix of container, volume and AWS resource names", appliesTo: "docker, aws" }),
  postgres: postgresSchema.prefault({}),
  redis: redisSchema.prefault({}),
  /** Client pools (guide: Performance Tuning). */
  pool: z
    .strictObject({
      /** Guide: pool_size 20. */
      postgresSize: count("connections").min(1, { error: "must be at least 1" }).default(20).meta({ about: "pool_size", unit: "connections", appliesTo: "clients; maxConnections check" }),
      /** Guide: max_overflow 10. */
      postgresMaxOverflow: count("connections").min(0, { error: "must be 0 or more" }).default(10).meta({ about: "max_overflow", unit: "connections", appliesTo: "clients; maxConnections check" }),
      /** Guide: pool_timeout 30 s. */
      postgresTimeoutSeconds: seconds.default(30).meta({ about: "pool_timeout", unit: "s", appliesTo: "clients" }),
      /** Guide: max_connections 50. */
      redisMaxConnections: count("connections").min(1, { error: "must be at least 1" }).default(50).meta({ about: "Redis max_connections", unit: "connections", appliesTo: "clients" }),
    })
    .prefault({}),
  /** Cache strategy (guide: Cache TTL Tiers, Key Naming Convention). */
  cache: z
    .strictObject({
      ttlShortSeconds: count("seconds").min(1, { error: "must be at least 1 second" }).default(300).meta({ about: "short TTL tier (latest prices)", unit: "s", appliesTo: "cache module" }),
      ttlMediumSeconds: count("seconds").min(1, { error: "must be at least 1 second" }).default(1800).meta({ about: "medium TTL tier (recent predictions)", unit: "s", appliesTo: "cache module" }),
      ttlLongSeconds: count("seconds").min(1, { error: "must be at least 1 second" }).default(3600).meta({ about: "long TTL tier (metadata)", unit: "s", appliesTo: "cache module" }),
      keyPattern: z.literal("{domain}:{entity}:{id}:{attribute}").default("{domain}:{entity}:{id}:{attribute}").meta({ about: "key naming convention", appliesTo: "cache module" }),
    })
    .prefault({}),
  /** Alerting thresholds (guide: Monitoring). */
  alerts: z
    .strictObject({
      connectionPoolPercent: percent.default(80).meta({ about: "connections in use vs max_connections", unit: "%", appliesTo: "monitor, aws alarms" }),
      queryTimeSeconds: seconds.default(1).meta({ about: "slow query threshold", unit: "s", appliesTo: "monitor, aws alarms" }),
      deadTuplePercent: percent.default(10).meta({ about: "dead tuples vs live tuples", unit: "%", appliesTo: "monitor" }),
      redisMemoryPercent: percent.default(90).meta({ about: "used memory vs maxmemory", unit: "%", appliesTo: "monitor, aws alarms" }),
      redisHitRatePercent: percent.default(70).meta({ about: "minimum cache hit rate", unit: "%", appliesTo: "monitor, aws alarms" }),
      redisEvictionsPerSecond: z.number().min(0, { error: "must be 0 or more" }).default(100).meta({ about: "evictions per second", unit: "1/s", appliesTo: "monitor, aws alarms" }),
      /** WAL waiting to be archived for longer than this is a failing check (verify, monitor). */
      archiveLagSeconds: seconds.default(300).meta({ about: "WAL not archived for longer than this fails the archiver check", unit: "s", appliesTo: "verify, monitor" }),
      /** The newest base backup older than this is a failing check; default: a day plus two hours of slack for the daily schedule. */
      backupMaxAgeHours: z.number({ error: "expected a number of hours" }).positive({ error: "must be above 0 hours" }).default(26).meta({ about: "newest base backup older than this fails the freshness check", unit: "h", appliesTo: "verify, monitor" }),
    })
    .prefault({}),
  /** The Prometheus exporter (`monitor --serve`) and the alerting rules made from `alerts` (`monitor --rules`). */
  monitor: z
    .strictObject({
      /** Default port of `monitor --serve HOST` (postgres_exporter's). Default 9187. */
      port: port.default(9187).meta({ about: "port of the Prometheus exporter when `--serve` names only a host (127.0.0.1)", appliesTo: "monitor --serve" }),
      /** One scrape's bound: a server that has not answered by then is reported `up 0`. Below Prometheus's scrape_timeout (10 s). Default 5. */
      scrapeTimeoutSeconds: seconds.max(60, { error: "must be at most 60 seconds" }).default(5).meta({ about: "bound of one scrape; a server silent that long is `cpi_*_up 0`", unit: "s", appliesTo: "monitor --serve" }),
      /** Window of the rules' rate() and increase() (evictions/s, hit rate, mean query time), seconds. Default 300. */
      rateWindowSeconds: count("seconds").min(2, { error: "must be at least 2 seconds (two scrapes)" }).default(300).meta({ about: "window of the rules' rate()/increase() (evictions/s, hit rate, mean query time)", unit: "s", appliesTo: "monitor --rules" }),
      /** How long each condition must hold before its alert fires (the rule's `for:`), seconds. */
      alertFor: z
        .strictObject({
          connectionPool: count("seconds").min(0, { error: "must be 0 or more" }).default(300).meta({ about: "`for:` of the connections vs max_connections alert", unit: "s", appliesTo: "monitor --rules" }),
          queryTime: count("seconds").min(0, { error: "must be 0 or more" }).default(60).meta({ about: "`for:` of the query time alert", unit: "s", appliesTo: "monitor --rules" }),
          deadTuples: count("seconds").min(0, { error: "must be 0 or more" }).default(900).meta({ about: "`for:` of the dead tuples alert", unit: "s", appliesTo: "monitor --rules" }),
          redisMemory: count("seconds").min(0, { error: "must be 0 or more" }).default(300).meta({ about: "`for:` of the Redis memory alert", unit: "s", appliesTo: "monitor --rules" }),
          redisHitRate: count("seconds").min(0, { error: "must be 0 or more" }).default(600).meta({ about: "`for:` of the Redis hit rate alert", unit: "s", appliesTo: "monitor --rules" }),
          redisEvictions: count("seconds").min(0, { error: "must be 0 or more" }).default(120).meta({ about: "`for:` of the Redis evictions/s alert", unit: "s", appliesTo: "monitor --rules" }),
        })
        .prefault({}),
      /** The `severity` label of each alert (what Alertmanager routes on). */
      severity: z
        .strictObject({
          connectionPool: severity.default("critical").meta({ about: "`severity` label of the connections vs max_connections alert", unit: "info/warning/critical", appliesTo: "monitor --rules" }),
          queryTime: severity.default("warning").meta({ about: "`severity` label of the query time alert", unit: "info/warning/critical", appliesTo: "monitor --rules" }),
          deadTuples: severity.default("warning").meta({ about: "`severity` label of the dead tuples alert", unit: "info/warning/critical", appliesTo: "monitor --rules" }),
          redisMemory: severity.default("warning").meta({ about: "`severity` label of the Redis memory alert", unit: "info/warning/critical", appliesTo: "monitor --rules" }),
          redisHitRate: severity.default("warning").meta({ about: "`severity` label of the Redis hit rate alert", unit: "info/warning/critical", appliesTo: "monitor --rules" }),
          redisEvictions: severity.default("warning").meta({ about: "`severity` label of the Redis evictions/s alert", unit: "info/warning/critical", appliesTo: "monitor --rules" }),
        })
        .prefault({}),
    })
    .prefault({}),
  /** Backup policy (guide: Backup & Recovery). */
  backup: z
    .strictObject({
      /** Guide: daily at 2 AM. */
      schedule: z.string().regex(/^(\S+\s+){4}\S+$/, { error: "expected a five-field cron expression" }).default("0 2 * * *").meta({ about: "when backups run (guide: daily 02:00)", unit: "cron", appliesTo: "backup schedule" }),
      keepDaily: count("backups").min(1, { error: "keep at least 1" }).default(7).meta({ about: "daily backups kept", unit: "backups", appliesTo: "backup prune" }),
      keepWeekly: count("backups").min(0, { error: "must be 0 or more" }).default(4).meta({ about: "weekly backups kept", unit: "backups", appliesTo: "backup prune" }),
      /** Folder for backups: relative to the project (and inside it), or an absolute folder the user owns; never a system folder such as /etc. */
      dir: z.string().min(1).default("backups").meta({ about: "backup folder, relative to the project", unit: "path", appliesTo: "backup, restore" }),
      /** AWS automated backups / snapshot retention, days. */
      retentionDays: count("days").min(1, { error: "must be 1-35" }).max(35, { error: "must be 1-35 (AWS limit)" }).default(7).meta({ about: "RDS backup retention (PITR) and ElastiCache snapshot retention", unit: "days", appliesTo: "aws" }),
      /** Base backups (physical, BASE_BACKUP) kept by `backup prune`; WAL older than the oldest kept one is deleted. */
      keepBase: count("base backups").min(1, { error: "keep at least 1" }).max(100, { error: "at most 100" }).default(7).meta({ about: "physical base backups kept; WAL no kept backup needs is deleted", unit: "base backups", appliesTo: "backup prune" }),
      /**
       * Where backups and archived WAL are kept: "local" (backup.dir on this machine, the default) or an
       * S3-compatible bucket (lib/backup/repository). Credentials come from the AWS chain only, never from here.
       */
      repository: z.union([z.literal("local"), s3Repository], { error: 'expected "local" or { url: "s3://bucket/prefix", region, ... }' }).default("local").meta({ about: "where backups and archived WAL are kept: backup.dir here, or an S3-compatible bucket (credentials from the AWS chain only)", unit: "\"local\" or { url: \"s3://bucket/prefix\", region, endpoint?, storageClass?, sse?, kmsKeyId?, walPushSeconds? }", appliesTo: "backup, restore, verify (embedded, docker)" }),
      /** Continuous WAL archiving for point-in-time recovery (embedded and Docker; RDS always archives). */
      archive: z
        .strictObject({
          /** archive_mode = on, archive_library = basic_archive, wal_level = replica. */
          enabled: z.boolean({ error: "expected true or false" }).default(true).meta({ about: "continuous WAL archiving (basic_archive) for point-in-time recovery", appliesTo: "embedded, docker (RDS always archives)" }),
          /** archive_timeout: a WAL segment is archived at least this often while there are writes; bounds the RPO. */
          timeoutSeconds: count("seconds").min(1, { error: "must be at least 1 second" }).max(3600, { error: "at most 3600 s (one hour)" }).default(60).meta({ about: "archive_timeout: bounds the RPO while there are writes", unit: "s", appliesTo: "embedded, docker" }),
        })
        .prefault({}),
    })
    .prefault({}),
  /** Disaster-recovery objectives checked by `npm run drill`. */
  dr: z
    .strictObject({
      rtoSeconds: seconds.default(300).meta({ about: "recovery time objective", unit: "s", appliesTo: "drill" }),
      /** Default: backup.archive.timeoutSeconds when archiving is on, else one day (a daily backup); see rpoObjectiveSeconds. */
      rpoSeconds: seconds.optional().meta({ about: "recovery point objective (default: backup.archive.timeoutSeconds with archiving, else 86400)", unit: "s", appliesTo: "drill" }),
    })
    .prefault({}),
  /** Images of the Docker target; the ci stack uses the offline tags built by `npm run images`. */
  images: z
    .strictObject({
      postgres: z.string().min(1).default("postgres:16").meta({ about: "PostgreSQL image (ci: the offline build)", appliesTo: "docker" }),
      redis: z.string().min(1).default("redis:7").meta({ about: "Redis image (ci: the offline build)", appliesTo: "docker" }),
    })
    .prefault({}),
  /** Docker target settings. */
  docker: z
    .strictObject({
      /** Size of /dev/shm for PostgreSQL's parallel workers. */
      shmSize: pgSize.default("256MB").meta({ about: "/dev/shm of the PostgreSQL container", unit: "PostgreSQL size", appliesTo: "docker" }),
    })
    .prefault({}),
  /** AWS target settings (staging, prod). */
  aws: z
    .strictObject({
      region: z.string().default("us-east-1").meta({ about: "AWS region of the SDK calls (backup snapshots)", appliesTo: "aws" }),
      /** Existing VPC; a VPC with private subnets is created when absent. */
      vpcId: z.string().optional().meta({ about: "existing VPC (created when absent)", appliesTo: "aws" }),
      subnetIds: z.array(z.string()).optional().meta({ about: "existing private subnets (created when absent)", appliesTo: "aws" }),
      vpcCidr: z.string().default("10.42.0.0/16").meta({ about: "CIDR of a created VPC", appliesTo: "aws" }),
      /** Who may connect to 5432/6379. Never 0.0.0.0/0. */
      allowedCidrs: z.array(z.string()).default([]).meta({ about: "who may connect to 5432/6379 (never 0.0.0.0/0)", appliesTo: "aws" }),
      allowedSecurityGroupIds: z.array(z.string()).default([]).meta({ about: "security groups that may connect", appliesTo: "aws" }),
      rdsInstanceClass: z.string().default("db.t4g.medium").meta({ about: "RDS instance class", appliesTo: "aws" }),
      rdsAllocatedStorageGb: count("GB").min(20, { error: "RDS needs at least 20 GB" }).default(50).meta({ about: "RDS storage", unit: "GB", appliesTo: "aws" }),
      rdsMaxAllocatedStorageGb: count("GB").min(20).default(200).meta({ about: "RDS storage autoscaling ceiling", unit: "GB", appliesTo: "aws" }),
      multiAz: z.boolean().default(false).meta({ about: "RDS Multi-AZ", appliesTo: "aws" }),
      deletionProtection: z.boolean().default(false).meta({ about: "RDS deletion protection (+ final snapshot)", appliesTo: "aws" }),
      performanceInsights: z.boolean().default(false).meta({ about: "RDS Performance Insights", appliesTo: "aws" }),
      logExports: z.array(z.enum(["postgresql", "upgrade"])).default(["postgresql"]).meta({ about: "RDS CloudWatch log exports", appliesTo: "aws" }),
      cacheNodeType: z.string().default("cache.t4g.small").meta({ about: "ElastiCache node type (usable memory must hold redis.maxmemory)", appliesTo: "aws" }),
      cacheReplicas: count("replicas").min(0).max(5).default(0).meta({ about: "replicas per shard (≥ 1: Multi-AZ + automatic failover)", unit: "replicas", appliesTo: "aws" }),
      /** ElastiCache keeps this share of memory for non-data use. */
      reservedMemoryPercent: percent.default(25).meta({ about: "ElastiCache reserved-memory-percent", unit: "%", appliesTo: "aws" }),
      snapshotWindow: z.string().regex(/^\d\d:\d\d-\d\d:\d\d$/, { error: "expected HH:MM-HH:MM (UTC), at least 60 minutes" }).default("01:00-02:00").meta({ about: "ElastiCache snapshot window (≥ 60 min)", unit: "HH:MM-HH:MM UTC", appliesTo: "aws" }),
      maintenanceWindow: z.string().default("sun:03:00-sun:04:00").meta({ about: "maintenance window of RDS and ElastiCache", appliesTo: "aws" }),
      alarmTopicArn: z.string().optional().meta({ about: "SNS topic for alarms", appliesTo: "aws" }),
      /** Every AWS stack gets its own topic so that alarms reach someone; off only with aws.alarmTopicArn. */
      createAlarmTopic: z.boolean().default(true).meta({ about: "create the stack's SNS topic for alarms (KMS-encrypted)", appliesTo: "aws" }),
      /** RDS CPUUtilization alarm threshold, percent (the guide names no CPU figure). Default 80. */
      cpuAlarmPercent: percent.default(80).meta({ about: "RDS CPUUtilization alarm (the guide names no figure)", unit: "%", appliesTo: "aws alarms" }),
      /** RDS FreeStorageSpace alarm: below this share of rdsAllocatedStorageGb, percent. Default 10. */
      freeStorageAlarmPercent: percent.default(10).meta({ about: "RDS FreeStorageSpace alarm", unit: "% of rdsAllocatedStorageGb", appliesTo: "aws alarms" }),
      /** Retention of the RDS PostgreSQL log group (slow-query alarm source), days; a CloudWatch Logs value. Default 30. */
      logRetentionDays: logRetention.default(30).meta({ about: "retention of the RDS PostgreSQL log group", unit: "days", appliesTo: "aws" }),
      ...awsProductionSchema,
    })
    .prefault({}),
});

/** The spec as written in `Pulumi.<env>.yaml`: every key optional. */
export type SpecInput = z.input<typeof schema>;
/** The parsed spec, with the guide's defaults filled in and the environment's name. */
export type Spec = z.output<typeof schema> & { env: string };

/** RDS uploads transaction logs for point-in-time recovery every five minutes. */
const RDS_LOG_UPLOAD_SECONDS = 300;

/**
 * The drill's RPO objective: `dr.rpoSeconds`, or what the backup policy promises: the archive
 * timeout on the local targets (a day, the daily backup, without archiving), RDS's log upload
 * interval on AWS.
 */
export function rpoObjectiveSeconds(spec: Spec): number {
  if (spec.dr.rpoSeconds !== undefined) return spec.dr.rpoSeconds;
  if (spec.target === "aws") return RDS_LOG_UPLOAD_SECONDS;
  return spec.backup.archive.enabled ? spec.backup.archive.timeoutSeconds : 86_400;
}
