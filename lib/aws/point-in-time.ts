/**
 * Point-in-time recovery on the AWS target: RDS archives WAL itself (automated backups,
 * backup.retentionDays), so `restore --env staging|prod --to TIME|latest` asks RDS for a NEW
 * instance recovered to TIME (RestoreDBInstanceToPointInTime) with the live instance's parameter
 * group, subnet group and security groups, waits until it is available and reports its endpoint.
 * The live instance is never touched; switching the application over is a deliberate step
 * (README: Point-in-time recovery on AWS).
 *
 * The restorable window is read first (DescribeDBInstances): from now − BackupRetentionPeriod days
 * (never before the instance existed) to LatestRestorableTime. A TIME outside it is refused with
 * the window in the message, before anything is created.
 */
import { DescribeDBInstancesCommand, RestoreDBInstanceToPointInTimeCommand, type DBInstance, type RDSClient } from "@aws-sdk/client-rds";
import { CliError, EXIT } from "../errors.js";
import { resourceName } from "../spec/access.js";
import type { Spec } from "../spec/schema.js";
import { awsIdentifiers } from "./snapshots.js";

export type RecoveryTarget = Date | "latest";

export interface RestorableWindow {
  earliest: string;
  latest: string;
  retentionDays: number;
}

export interface PointInTimeResult {
  region: string;
  source: string;
  instanceIdentifier: string;
  /** ISO time, or "latest" (RDS's LatestRestorableTime when the restore began). */
  restoreTime: string;
  window: RestorableWindow;
  status: string;
  endpoint?: { address: string; port: number };
  /** What the new instance took from the live one. */
  settings: { subnetGroup: string; securityGroupIds: string[]; parameterGroup: string };
  seconds: number;
}

export interface PointInTimeOptions {
  to: RecoveryTarget;
  now?: Date;
  /** Wait for the new instance to be available (default true), at most this long. */
  wait?: boolean;
  waitSeconds?: number;
  /** Delay between polls, ms (default 30 s; tests use 0). */
  pollMs?: number;
  log?: (m: string) => void;
}

/** `--to` as a recovery target: ISO-8601 with a zone (Z or ±hh:mm), or `latest`. */
export function parseRecoveryTarget(value: string): RecoveryTarget {
  if (value === "latest") return "latest";
  const iso = /^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d)$/;
  const t = new Date(value);
  if (!iso.test(value) || Number.isNaN(t.getTime())) {
    throw new CliError(`--to ${JSON.stringify(value)} is not a time`, EXIT.USAGE, "give an ISO-8601 time with its zone, e.g. 2026-12-03T08:00:00Z, or latest");
  }
  return t;
}

/** The instance's restorable window: now − retention (not before it was created) to LatestRestorableTime. */
export function restorableWindow(instance: DBInstance, now: Date): RestorableWindow {
  const id = instance.DBInstanceIdentifier ?? "the instance";
  const retentionDays = instance.BackupRetentionPeriod ?? 0;
  if (retentionDays < 1 || !instance.LatestRestorableTime) {
    throw new CliError(`${id} has no automated backups (BackupRetentionPeriod ${retentionDays}): it cannot be recovered to a point in time`, EXIT.ERROR, "set backup.retentionDays ≥ 1 and pulumi up");
  }
  let earliest = now.getTime() - retentionDays * 86_400_000;
  if (instance.InstanceCreateTime) earliest = Math.max(earliest, instance.InstanceCreateTime.getTime());
  return { earliest: new Date(earliest).toISOString(), latest: instance.LatestRestorableTime.toISOString(), retentionDays };
}

/** Refuses a target outside the window, naming it. */
export function checkInWindow(to: RecoveryTarget, window: RestorableWindow, source: string): void {
  if (to === "latest") return;
  const t = to.getTime();
  if (t < Date.parse(window.earliest) || t > Date.parse(window.latest)) {
    throw new CliError(
      `--to ${to.toISOString()} is outside ${source}'s restorable window ${window.earliest} … ${window.latest} (${window.retentionDays} days of automated backups)`,
      EXIT.ERROR,
      "pick a time inside the window, or --to latest",
    );
  }
}

/** `<prefix>-postgres-pitr-<stamp>` (RDS identifiers: at most 63 characters). */
export function pointInTimeIdentifier(spec: Spec, now: Date): string {
  const stamp = Math.floor(now.getTime() / 60_000).toString(36);
  const suffix = `-postgres-pitr-${stamp}`;
  return `${spec.namePrefix.slice(0, 63 - suffix.length).replace(/-+$/, "")}${suffix}`;
}

async function describe(rds: RDSClient, identifier: string): Promise<DBInstance | undefined> {
  return (await rds.send(new DescribeDBInstancesCommand({ DBInstanceIdentifier: identifier }))).DBInstances?.[0];
}

export async function restoreToPointInTime(spec: Spec, rds: RDSClient, options: PointInTimeOptions): Promise<PointInTimeResult> {
  const started = Date.now();
  const now = options.now ?? new Date();
  const log = options.log ?? (() => undefined);
  const source = awsIdentifiers(spec).rdsInstance;
  let live: DBInstance | undefined;
  try {
    live = await describe(rds, source);
  } catch (error) {
    throw new CliError(`RDS instance ${source} not found or not readable: ${(error as Error).message}`, EXIT.ERROR, "is the stack deployed (pulumi up) and are AWS credentials set?");
  }
  if (!live) throw new CliError(`RDS instance ${source} not found`, EXIT.ERROR, "is the stack deployed (pulumi up)?");
  const window = restorableWindow(live, now);
  checkInWindow(options.to, window, source);

  const settings = {
    subnetGroup: live.DBSubnetGroup?.DBSubnetGroupName ?? resourceName(spec, "postgres"),
    securityGroupIds: (live.VpcSecurityGroups ?? []).map((g) => g.VpcSecurityGroupId!).filter(Boolean),
    parameterGroup: live.DBParameterGroups?.[0]?.DBParameterGroupName ?? resourceName(spec, `postgres${spec.postgres.version}`),
  };
  const target = pointInTimeIdentifier(spec, now);
  const restoreTime = options.to === "latest" ? "latest" : options.to.toISOString();
  log(`aws: recovering ${source} to ${restoreTime} into a new instance ${target} (window ${window.earliest} … ${window.latest})`);
  const created = await rds.send(
    new RestoreDBInstanceToPointInTimeCommand({
      SourceDBInstanceIdentifier: source,
      TargetDBInstanceIdentifier: target,
      ...(options.to === "latest" ? { UseLatestRestorableTime: true } : { RestoreTime: options.to }),
      DBInstanceClass: live.DBInstanceClass ?? spec.aws.rdsInstanceClass,
      DBSubnetGroupName: settings.subnetGroup,
      VpcSecurityGroupIds: settings.securityGroupIds.length ? settings.securityGroupIds : undefined,
      DBParameterGroupName: settings.parameterGroup,
      Port: live.Endpoint?.Port ?? spec.postgres.port,
      MultiAZ: spec.aws.multiAz,
      PubliclyAccessible: false,
      DeletionProtection: spec.aws.deletionProtection,
      CopyTagsToSnapshot: true,
      StorageType: "gp3",
      EnableIAMDatabaseAuthentication: spec.aws.iamAuth.enabled,
      EnableCloudwatchLogsExports: spec.aws.logExports,
      CACertificateIdentifier: spec.aws.caCertIdentifier,
      EngineLifecycleSupport: spec.aws.engineLifecycleSupport,
      BackupRetentionPeriod: spec.backup.retentionDays,
      ManageMasterUserPassword: true,
      MasterUserSecretKmsKeyId: live.MasterUserSecret?.KmsKeyId,
      Tags: [
        { Key: "project", Value: "crypto-prediction-infra" },
        { Key: "env", Value: spec.env },
        { Key: "restored-from", Value: source },
        { Key: "restore-time", Value: restoreTime },
      ],
    }),
  );
  let status = created.DBInstance?.DBInstanceStatus ?? "creating";
  let endpoint = created.DBInstance?.Endpoint;
  if (options.wait !== false) {
    const limit = options.waitSeconds ?? 3600;
    const deadline = Date.now() + limit * 1000;
    const pollMs = options.pollMs ?? 30_000;
    while (status !== "available" || !endpoint?.Address) {
      if (["failed", "incompatible-restore", "incompatible-parameters", "incompatible-network", "storage-full", "deleting"].includes(status)) {
        throw new CliError(`the new instance ${target} is ${status}`, EXIT.ERROR, "see its events: aws rds describe-events --source-identifier " + target);
      }
      if (Date.now() > deadline) {
        throw new CliError(`${target} is not available after ${limit} s (status ${status})`, EXIT.ERROR, `RDS keeps creating it; check: aws rds describe-db-instances --db-instance-identifier ${target}`);
      }
      await new Promise((r) => setTimeout(r, pollMs));
      const d = await describe(rds, target);
      status = d?.DBInstanceStatus ?? status;
      endpoint = d?.Endpoint ?? endpoint;
      log(`aws: ${target}: ${status}`);
    }
  }
  return {
    region: spec.aws.region,
    source,
    instanceIdentifier: target,
    restoreTime,
    window,
    status,
    endpoint: endpoint?.Address ? { address: endpoint.Address, port: endpoint.Port ?? spec.postgres.port } : undefined,
    settings,
    seconds: (Date.now() - started) / 1000,
  };
}

/** The command's entry: the env's spec and region, the SDK client, progress lines. */
export async function restoreToPointInTimeCommand(env: string, to: string, log: (m: string) => void, rds?: RDSClient): Promise<PointInTimeResult> {
  const target = parseRecoveryTarget(to);
  const { specOf } = await import("../state/record.js");
  const spec = specOf(env);
  const client = rds ?? new (await import("@aws-sdk/client-rds")).RDSClient({ region: spec.aws.region });
  return restoreToPointInTime(spec, client, { to: target, log });
}

/** For people: the new endpoint and what it was made from. */
export function describePointInTime(r: PointInTimeResult): string {
  return [
    `${r.source}: recovered to ${r.restoreTime} into ${r.instanceIdentifier} (${r.status}) in ${r.seconds.toFixed(0)} s`,
    `  endpoint  ${r.endpoint ? `${r.endpoint.address}:${r.endpoint.port}` : "(not yet assigned)"}`,
    `  window    ${r.window.earliest} … ${r.window.latest}`,
    `  from      parameter group ${r.settings.parameterGroup}, subnet group ${r.settings.subnetGroup}, security groups ${r.settings.securityGroupIds.join(", ") || "(VPC default)"}`,
    `  next      point the app at it (or rename it in place of ${r.source}); the live instance is untouched`,
  ].join("\n");
}
