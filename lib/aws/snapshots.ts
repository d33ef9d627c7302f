/**
 * Backups of the AWS target (staging, prod): an RDS snapshot of the PostgreSQL instance and an
 * ElastiCache snapshot of the Redis replication group (BGSAVE and file copies are blocked on
 * ElastiCache). Restore creates NEW resources from them (RestoreDBInstanceFromDBSnapshot,
 * CreateReplicationGroup with SnapshotName) next to the live ones, which are never touched.
 *
 * Names follow stacks/aws-data-stack.ts: the RDS instance `<namePrefix>-postgres`, the
 * replication group `<namePrefix>-redis` (lib/engines/docker/containers.ts resourceName). The settings a
 * restore needs (subnet groups, security groups, parameter groups) are read from the live
 * resources at backup time and kept in the manifest, so a restore works when they are gone.
 */
import { randomBytes } from "node:crypto";
import {
  CreateDBSnapshotCommand,
  DescribeDBInstancesCommand,
  DescribeDBSnapshotsCommand,
  RDSClient,
  RestoreDBInstanceFromDBSnapshotCommand,
} from "@aws-sdk/client-rds";
import {
  CreateReplicationGroupCommand,
  CreateSnapshotCommand,
  DescribeCacheClustersCommand,
  DescribeReplicationGroupsCommand,
  DescribeSnapshotsCommand,
  ElastiCacheClient,
} from "@aws-sdk/client-elasticache";
import { CliError, EXIT } from "../errors.js";
import { resourceName } from "../spec/access.js";
import type { Spec } from "../spec/schema.js";

export interface AwsClients {
  rds: RDSClient;
  elasticache: ElastiCacheClient;
}

export function awsClients(spec: Spec): AwsClients {
  return { rds: new RDSClient({ region: spec.aws.region }), elasticache: new ElastiCacheClient({ region: spec.aws.region }) };
}

/** The live resources' identifiers (stacks/aws-data-stack.ts names them so). */
export function awsIdentifiers(spec: Spec): { rdsInstance: string; replicationGroup: string } {
  return { rdsInstance: resourceName(spec, "postgres"), replicationGroup: resourceName(spec, "redis") };
}

/** What a restore needs to recreate the resources, as they were at backup time. */
export interface RdsSettings {
  subnetGroup?: string;
  securityGroupIds: string[];
  parameterGroup?: string;
  port?: number;
  multiAz?: boolean;
}
export interface CacheSettings {
  nodeType?: string;
  subnetGroup?: string;
  securityGroupIds: string[];
  parameterGroup?: string;
  port?: number;
  numCacheClusters: number;
  transitEncryption?: boolean;
  atRestEncryption?: boolean;
  engineVersion?: string;
  /** RBAC user groups (stacks/aws-cache-users.ts); a restore reuses them instead of a new AUTH token. */
  userGroupIds?: string[];
}

export interface AwsSnapshotResult {
  region: string;
  rds: { instanceIdentifier: string; snapshotIdentifier: string; snapshotArn?: string; status: string; settings: RdsSettings };
  elasticache: { replicationGroupId: string; snapshotName: string; status: string; settings: CacheSettings };
  seconds: number;
}

export interface SnapshotOptions {
  /** The backup's id (UTC time), part of the snapshot names. */
  id: string;
  /** Wait until both snapshots are available (default true), at most this long. */
  wait?: boolean;
  waitSeconds?: number;
  /** Delay between polls, ms (default 15 s; tests use 0). */
  pollMs?: number;
  log?: (m: string) => void;
}

/** Snapshot names: `<namePrefix>-postgres-<id>`, `<namePrefix>-redis-<id>` (lowercase, AWS's alphabet). */
export function snapshotNames(spec: Spec, id: string): { rds: string; elasticache: string } {
  const suffix = id.toLowerCase().replace(/[^a-z0-9-]/g, "-");
  const { rdsInstance, replicationGroup } = awsIdentifiers(spec);
  return { rds: `${rdsInstance}-${suffix}`, elasticache: `${replicationGroup}-${suffix}` };
}

export async function createAwsSnapshots(spec: Spec, clients: AwsClients, options: SnapshotOptions): Promise<AwsSnapshotResult> {
  const started = Date.now();
  const log = options.log ?? (() => undefined);
  const ids = awsIdentifiers(spec);
  const names = snapshotNames(spec, options.id);
  const tags = [
    { Key: "project", Value: "crypto-prediction-infra" },
    { Key: "env", Value: spec.env },
    { Key: "backup-id", Value: options.id },
  ];

  const rdsSettings = await describeRds(clients, ids.rdsInstance);
  const cacheSettings = await describeCache(clients, ids.replicationGroup);

  log(`aws: RDS snapshot ${names.rds} of ${ids.rdsInstance}`);
  const rds = await clients.rds.send(new CreateDBSnapshotCommand({ DBInstanceIdentifier: ids.rdsInstance, DBSnapshotIdentifier: names.rds, Tags: tags }));
  log(`aws: ElastiCache snapshot ${names.elasticache} of ${ids.replicationGroup}`);
  const cache = await clients.elasticache.send(new CreateSnapshotCommand({ ReplicationGroupId: ids.replicationGroup, SnapshotName: names.elasticache, Tags: tags }));

  let rdsStatus = rds.DBSnapshot?.Status ?? "creating";
  let cacheStatus = cache.Snapshot?.SnapshotStatus ?? "creating";
  if (options.wait !== false) {
    const deadline = Date.now() + (options.waitSeconds ?? 3600) * 1000;
    const pollMs = options.pollMs ?? 15_000;
    while (rdsStatus !== "available" || cacheStatus !== "available") {
      if (["failed", "deleted", "incompatible-restore"].includes(rdsStatus)) throw new CliError(`RDS snapshot ${names.rds} is ${rdsStatus}`, EXIT.ERROR);
      if (["failed", "deleting"].includes(cacheStatus)) throw new CliError(`ElastiCache snapshot ${names.elasticache} is ${cacheStatus}`, EXIT.ERROR);
      if (Date.now() > deadline) {
        throw new CliError(`snapshots not available after ${options.waitSeconds ?? 3600} s (RDS ${rdsStatus}, ElastiCache ${cacheStatus})`, EXIT.ERROR, "they keep being created in AWS; check again with the AWS console or CLI");
      }
      await new Promise((r) => setTimeout(r, pollMs));
      if (rdsStatus !== "available") {
        const d = await clients.rds.send(new DescribeDBSnapshotsCommand({ DBSnapshotIdentifier: names.rds }));
        rdsStatus = d.DBSnapshots?.[0]?.Status ?? rdsStatus;
      }
      if (cacheStatus !== "available") {
        const d = await clients.elasticache.send(new DescribeSnapshotsCommand({ SnapshotName: names.elasticache }));
        cacheStatus = d.Snapshots?.[0]?.SnapshotStatus ?? cacheStatus;
      }
      log(`aws: waiting: RDS ${rdsStatus}, ElastiCache ${cacheStatus}`);
    }
  }
  return {
    region: spec.aws.region,
    rds: { instanceIdentifier: ids.rdsInstance, snapshotIdentifier: names.rds, snapshotArn: rds.DBSnapshot?.DBSnapshotArn, status: rdsStatus, settings: rdsSettings },
    elasticache: { replicationGroupId: ids.replicationGroup, snapshotName: names.elasticache, status: cacheStatus, settings: cacheSettings },
    seconds: (Date.now() - started) / 1000,
  };
}

async function describeRds(clients: AwsClients, identifier: string): Promise<RdsSettings> {
  let instance;
  try {
    instance = (await clients.rds.send(new DescribeDBInstancesCommand({ DBInstanceIdentifier: identifier }))).DBInstances?.[0];
  } catch (error) {
    throw new CliError(`RDS instance ${identifier} not found or not readable: ${(error as Error).message}`, EXIT.ERROR, "is the stack deployed (pulumi up) and are AWS credentials set?");
  }
  if (!instance) throw new CliError(`RDS instance ${identifier} not found`, EXIT.ERROR);
  return {
    subnetGroup: instance.DBSubnetGroup?.DBSubnetGroupName,
    securityGroupIds: (instance.VpcSecurityGroups ?? []).map((g) => g.VpcSecurityGroupId!).filter(Boolean),
    parameterGroup: instance.DBParameterGroups?.[0]?.DBParameterGroupName,
    port: instance.Endpoint?.Port ?? instance.DbInstancePort,
    multiAz: instance.MultiAZ,
  };
}

async function describeCache(clients: AwsClients, replicationGroupId: string): Promise<CacheSettings> {
  let group;
  try {
    group = (await clients.elasticache.send(new DescribeReplicationGroupsCommand({ ReplicationGroupId: replicationGroupId }))).ReplicationGroups?.[0];
  } catch (error) {
    throw new CliError(`ElastiCache replication group ${replicationGroupId} not found or not readable: ${(error as Error).message}`, EXIT.ERROR, "is the stack deployed (pulumi up) and are AWS credentials set?");
  }
  if (!group) throw new CliError(`ElastiCache replication group ${replicationGroupId} not found`, EXIT.ERROR);
  const member = group.MemberClusters?.[0];
  const cluster = member ? (await clients.elasticache.send(new DescribeCacheClustersCommand({ CacheClusterId: member }))).CacheClusters?.[0] : undefined;
  return {
    nodeType: group.CacheNodeType ?? cluster?.CacheNodeType,
    subnetGroup: cluster?.CacheSubnetGroupName,
    securityGroupIds: (cluster?.SecurityGroups ?? []).map((g) => g.SecurityGroupId!).filter(Boolean),
    parameterGroup: cluster?.CacheParameterGroup?.CacheParameterGroupName,
    port: group.NodeGroups?.[0]?.PrimaryEndpoint?.Port ?? cluster?.CacheNodes?.[0]?.Endpoint?.Port,
    numCacheClusters: group.MemberClusters?.length ?? 1,
    transitEncryption: group.TransitEncryptionEnabled,
    atRestEncryption: group.AtRestEncryptionEnabled,
    engineVersion: cluster?.EngineVersion,
    userGroupIds: group.UserGroupIds?.length ? group.UserGroupIds : undefined,
  };
}

export interface AwsRestoreResult {
  rds: { instanceIdentifier: string; fromSnapshot: string; status: string };
  elasticache: { replicationGroupId: string; fromSnapshot: string; status: string };
  /** The new replication group's AUTH token (transit encryption needs one); the caller stores it 0600. */
  redisAuthToken?: string;
  seconds: number;
}

/** New identifiers for restored resources: `<prefix>-postgres-r<stamp>`, `<prefix>-redis-r<stamp>` (ElastiCache ids: at most 40 characters). */
export function restoredIdentifiers(spec: Spec, now: Date): { rdsInstance: string; replicationGroup: string } {
  const stamp = `r${Math.floor(now.getTime() / 60_000).toString(36)}`;
  const cut = (prefix: string, room: number) => prefix.slice(0, room).replace(/-+$/, "");
  return {
    rdsInstance: `${cut(spec.namePrefix, 63 - "-postgres-".length - stamp.length)}-postgres-${stamp}`,
    replicationGroup: `${cut(spec.namePrefix, 40 - "-redis-".length - stamp.length)}-redis-${stamp}`,
  };
}

export interface AwsBackupRecord {
  rds: { snapshotIdentifier: string; settings?: RdsSettings };
  elasticache: { snapshotName: string; settings?: CacheSettings };
}

/** Creates new RDS and ElastiCache resources from a backup's snapshots (the live ones are left alone). */
export async function restoreAwsSnapshots(spec: Spec, clients: AwsClients, backup: AwsBackupRecord, options: { now?: Date; log?: (m: string) => void } = {}): Promise<AwsRestoreResult> {
  const started = Date.now();
  const log = options.log ?? (() => undefined);
  const ids = restoredIdentifiers(spec, options.now ?? new Date());
  const rdsSettings = backup.rds.settings ?? { securityGroupIds: [] };
  const cacheSettings = backup.elasticache.settings ?? { securityGroupIds: [], numCacheClusters: 1 + spec.aws.cacheReplicas };
  const tags = [
    { Key: "project", Value: "crypto-prediction-infra" },
    { Key: "env", Value: spec.env },
    { Key: "restored-from", Value: backup.rds.snapshotIdentifier },
  ];

  log(`aws: restoring RDS instance ${ids.rdsInstance} from ${backup.rds.snapshotIdentifier}`);
  const rds = await clients.rds.send(
    new RestoreDBInstanceFromDBSnapshotCommand({
      DBInstanceIdentifier: ids.rdsInstance,
      DBSnapshotIdentifier: backup.rds.snapshotIdentifier,
      DBInstanceClass: spec.aws.rdsInstanceClass,
      DBSubnetGroupName: rdsSettings.subnetGroup ?? resourceName(spec, "postgres"),
      VpcSecurityGroupIds: rdsSettings.securityGroupIds.length ? rdsSettings.securityGroupIds : undefined,
      DBParameterGroupName: rdsSettings.parameterGroup ?? resourceName(spec, `postgres${spec.postgres.version}`),
      Port: rdsSettings.port ?? spec.postgres.port,
      MultiAZ: rdsSettings.multiAz ?? spec.aws.multiAz,
      PubliclyAccessible: false,
      DeletionProtection: spec.aws.deletionProtection,
      CopyTagsToSnapshot: true,
      StorageType: "gp3",
      ManageMasterUserPassword: true,
      Tags: tags,
    }),
  );

  const transit = cacheSettings.transitEncryption ?? true;
  const rbac = cacheSettings.userGroupIds?.length ? cacheSettings.userGroupIds : undefined;
  const authToken = transit && !rbac ? randomBytes(48).toString("base64url").replace(/[^A-Za-z0-9]/g, "").slice(0, 64) : undefined;
  log(`aws: creating replication group ${ids.replicationGroup} from ${backup.elasticache.snapshotName}`);
  const cache = await clients.elasticache.send(
    new CreateReplicationGroupCommand({
      ReplicationGroupId: ids.replicationGroup,
      ReplicationGroupDescription: `Redis ${spec.redis.version} of ${spec.env}, restored from ${backup.elasticache.snapshotName}`,
      SnapshotName: backup.elasticache.snapshotName,
      Engine: "redis",
      EngineVersion: cacheSettings.engineVersion,
      CacheNodeType: cacheSettings.nodeType ?? spec.aws.cacheNodeType,
      NumCacheClusters: cacheSettings.numCacheClusters,
      AutomaticFailoverEnabled: cacheSettings.numCacheClusters > 1,
      MultiAZEnabled: cacheSettings.numCacheClusters > 1,
      CacheSubnetGroupName: cacheSettings.subnetGroup ?? resourceName(spec, "redis"),
      SecurityGroupIds: cacheSettings.securityGroupIds.length ? cacheSettings.securityGroupIds : undefined,
      CacheParameterGroupName: cacheSettings.parameterGroup ?? resourceName(spec, `redis${spec.redis.version}`),
      Port: cacheSettings.port ?? spec.redis.port,
      TransitEncryptionEnabled: transit,
      AtRestEncryptionEnabled: cacheSettings.atRestEncryption ?? true,
      AuthToken: authToken,
      UserGroupIds: rbac,
      Tags: tags,
    }),
  );
  return {
    rds: { instanceIdentifier: ids.rdsInstance, fromSnapshot: backup.rds.snapshotIdentifier, status: rds.DBInstance?.DBInstanceStatus ?? "creating" },
    elasticache: { replicationGroupId: ids.replicationGroup, fromSnapshot: backup.elasticache.snapshotName, status: cache.ReplicationGroup?.Status ?? "creating" },
    redisAuthToken: authToken,
    seconds: (Date.now() - started) / 1000,
  };
}
