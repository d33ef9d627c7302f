/**
 * What each target does with each documented setting: applied as written, mapped to something
 * else, or not supported (and why). The rows are computed from the same functions the targets
 * use (postgresSettings/redisSettings for embedded and Docker, rdsParameters/elasticacheParameters
 * and lib/aws/mapping.ts for AWS), and each row's spec key and RDS unit come from those settings,
 * so the table cannot drift from the code. `npm run docs` writes it into the README; the stacks
 * export it as the `capabilities` output.
 */
import type { Spec } from "../spec/schema.js";
import { elasticacheParameters, postgresSettings, rdsParameters, redisSettings, type RdsParameter } from "../spec/render.js";
import { humanBytes } from "../spec/units.js";
import { backupExpiryDays, environmentPrefix } from "../aws/backup-bucket.js";
import {
  AwsMappingError,
  awsAlarmRules,
  cacheFailover,
  cacheNodeFit,
  cacheSnapshotRetentionDays,
  rdsBackupWindow,
  slowQueryAlarmPossible,
  type CacheNodeFit,
} from "../aws/mapping.js";
import { mdCell } from "../markdown.js";


export const TARGETS = ["embedded", "docker", "aws"] as const;
export type TargetName = (typeof TARGETS)[number];
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
  const unit = p.unit ? ` (${p.unit})` : "";
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
      key: s.key ?? `(fixed) ${s.name}`,
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
      key: s.key,
      value: s.value,
      embedded: applied(`redis.conf: ${s.name} ${s.value === "" ? '""' : s.value}`),
      docker: applied(`redis-server --${s.name} ${s.value === "" ? '""' : s.value}`),
      aws: cell,
    });
  }
  const localRedis = new Set(redisSettings(spec).map((s) => s.name));
  for (const p of ec.filter((p) => !localRedis.has(p.name))) {
    rows.push({
      key: p.key,
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
