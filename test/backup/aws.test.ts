/**
 * AWS backups and restores (staging, prod) with the AWS SDK mocked (aws-sdk-client-mock): which
 * calls are made, with which arguments, and the manifest folder a backup leaves.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { mockClient } from "aws-sdk-client-mock";
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
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import { backupEnvironment } from "../../lib/backup/backup.js";
import { MANIFEST_FILE, parseManifest } from "../../lib/backup/manifest.js";
import { restoreEnvironment } from "../../lib/backup/restore.js";
import { verifyBackup } from "../../lib/backup/verify.js";
import { awsIdentifiers, restoredIdentifiers, snapshotNames } from "../../lib/aws/snapshots.js";
import { envPaths } from "../../lib/state/paths.js";
import { loadSpec } from "../../lib/spec/load.js";

const rds = mockClient(RDSClient);
const elasticache = mockClient(ElastiCacheClient);
const clients = { rds: new RDSClient({ region: "us-east-1" }), elasticache: new ElastiCacheClient({ region: "us-east-1" }) };
const out = mkdtempSync(path.join(os.tmpdir(), "cpi-aws-backup-"));
// The restore writes the new replication group's AUTH token into the env's state folder.
process.env.CPI_STATE_DIR = mkdtempSync(path.join(os.tmpdir(), "cpi-aws-state-"));

afterAll(() => {
  rmSync(out, { recursive: true, force: true });
  rmSync(process.env.CPI_STATE_DIR!, { recursive: true, force: true });
});

const spec = loadSpec("staging");

beforeEach(() => {
  rds.reset();
  elasticache.reset();
  rds.on(DescribeDBInstancesCommand).resolves({
    DBInstances: [
      {
        DBInstanceIdentifier: awsIdentifiers(spec).rdsInstance,
        DBSubnetGroup: { DBSubnetGroupName: "stg-postgres-subnets" },
        VpcSecurityGroups: [{ VpcSecurityGroupId: "sg-0pg", Status: "active" }],
        DBParameterGroups: [{ DBParameterGroupName: "stg-postgres16" }],
        Endpoint: { Port: 5432 },
        MultiAZ: false,
      },
    ],
  });
  rds.on(CreateDBSnapshotCommand).resolves({ DBSnapshot: { Status: "creating", DBSnapshotArn: "arn:aws:rds:us-east-1:1:snapshot:x" } });
  rds.on(DescribeDBSnapshotsCommand).resolves({ DBSnapshots: [{ Status: "available" }] });
  elasticache.on(DescribeReplicationGroupsCommand).resolves({
    ReplicationGroups: [
      { ReplicationGroupId: awsIdentifiers(spec).replicationGroup, MemberClusters: ["stg-redis-001"], CacheNodeType: "cache.t4g.small", TransitEncryptionEnabled: true, AtRestEncryptionEnabled: true, NodeGroups: [{ PrimaryEndpoint: { Port: 6379 } }] },
    ],
  });
  elasticache.on(DescribeCacheClustersCommand).resolves({
    CacheClusters: [{ CacheClusterId: "stg-redis-001", CacheSubnetGroupName: "stg-redis-subnets", SecurityGroups: [{ SecurityGroupId: "sg-0redis" }], CacheParameterGroup: { CacheParameterGroupName: "stg-redis7" }, EngineVersion: "7.1" }],
  });
  elasticache.on(CreateSnapshotCommand).resolves({ Snapshot: { SnapshotStatus: "creating" } });
  elasticache.on(DescribeSnapshotsCommand).resolves({ Snapshots: [{ SnapshotStatus: "available" }] });
  rds.on(RestoreDBInstanceFromDBSnapshotCommand).resolves({ DBInstance: { DBInstanceStatus: "creating" } });
  elasticache.on(CreateReplicationGroupCommand).resolves({ ReplicationGroup: { Status: "creating" } });
});

describe("AWS target: snapshots", () => {
  const now = new Date("2025-11-27T02:00:00Z");

  it("backup creates an RDS and an ElastiCache snapshot named from namePrefix, waits for both, and writes a manifest", async () => {
    const result = await backupEnvironment({ env: "staging", out, now: () => now, aws: { clients, pollMs: 0 } });
    const names = snapshotNames(spec, "20251127T020000Z");

    const created = rds.commandCalls(CreateDBSnapshotCommand);
    expect(created).toHaveLength(1);
    expect(created[0]!.args[0].input).toMatchObject({ DBInstanceIdentifier: `${spec.namePrefix}-postgres`, DBSnapshotIdentifier: names.rds });
    const cache = elasticache.commandCalls(CreateSnapshotCommand);
    expect(cache).toHaveLength(1);
    expect(cache[0]!.args[0].input).toMatchObject({ ReplicationGroupId: `${spec.namePrefix}-redis`, SnapshotName: names.elasticache });
    expect(rds.commandCalls(DescribeDBSnapshotsCommand)[0]!.args[0].input).toEqual({ DBSnapshotIdentifier: names.rds });

    expect(path.basename(result.dir)).toBe("20251127T020000Z");
    expect(statSync(result.dir).mode & 0o777).toBe(0o700);
    expect(statSync(path.join(result.dir, MANIFEST_FILE)).mode & 0o777).toBe(0o600);
    const { manifest } = parseManifest(readFileSync(path.join(result.dir, MANIFEST_FILE), "utf8"));
    expect(manifest).toMatchObject({ engine: "aws", env: "staging", files: [], aws: { rds: { snapshotIdentifier: names.rds, status: "available", settings: { securityGroupIds: ["sg-0pg"] } } } });
    await expect(verifyBackup(result.dir)).resolves.toMatchObject({ manifest: { id: "20251127T020000Z" } });
  });

  it("backup fails clearly when the instance is not there, and leaves no backup folder", async () => {
    rds.on(DescribeDBInstancesCommand).rejects(new Error("DBInstanceNotFound"));
    const before = existsSync(out) ? (await import("node:fs")).readdirSync(out) : [];
    await expect(backupEnvironment({ env: "staging", out, now: () => new Date("2025-11-28T02:00:00Z"), aws: { clients, pollMs: 0 } })).rejects.toThrow(
      /RDS instance crypto-prediction-staging-postgres not found|RDS instance .*-postgres not found/,
    );
    expect((await import("node:fs")).readdirSync(out)).toEqual(before);
    expect(rds.commandCalls(CreateDBSnapshotCommand)).toHaveLength(0);
  });

  it("restore creates new resources from the snapshots with the settings recorded at backup time", async () => {
    const made = await backupEnvironment({ env: "staging", out, now: () => new Date("2025-11-29T02:00:00Z"), aws: { clients, pollMs: 0 } });
    const restoredAt = new Date("2025-11-29T03:00:00Z");
    const report = await restoreEnvironment({ env: "staging", from: made.dir, aws: { clients, now: restoredAt } });
    const ids = restoredIdentifiers(spec, restoredAt);
    expect(ids.replicationGroup.length).toBeLessThanOrEqual(40);

    const restore = rds.commandCalls(RestoreDBInstanceFromDBSnapshotCommand);
    expect(restore).toHaveLength(1);
    expect(restore[0]!.args[0].input).toMatchObject({
      DBInstanceIdentifier: ids.rdsInstance,
      DBSnapshotIdentifier: made.manifest.aws!.rds.snapshotIdentifier,
      DBInstanceClass: spec.aws.rdsInstanceClass,
      DBSubnetGroupName: "stg-postgres-subnets",
      VpcSecurityGroupIds: ["sg-0pg"],
      DBParameterGroupName: "stg-postgres16",
      PubliclyAccessible: false,
    });
    const group = elasticache.commandCalls(CreateReplicationGroupCommand);
    expect(group).toHaveLength(1);
    const input = group[0]!.args[0].input;
    expect(input).toMatchObject({
      ReplicationGroupId: ids.replicationGroup,
      SnapshotName: made.manifest.aws!.elasticache.snapshotName,
      CacheNodeType: "cache.t4g.small",
      CacheSubnetGroupName: "stg-redis-subnets",
      SecurityGroupIds: ["sg-0redis"],
      CacheParameterGroupName: "stg-redis7",
      TransitEncryptionEnabled: true,
      Engine: "redis",
    });
    // The new group's AUTH token goes to a 0600 file, never into the report.
    expect(input.AuthToken).toMatch(/^[A-Za-z0-9]{32,}$/);
    expect(JSON.stringify(report)).not.toContain(input.AuthToken);
    const tokenFile = report.aws!.redisAuthTokenFile!;
    expect(tokenFile.startsWith(envPaths("staging").dir)).toBe(true);
    expect(statSync(tokenFile).mode & 0o777).toBe(0o600);
    expect(readFileSync(tokenFile, "utf8").trim()).toBe(input.AuthToken);
    // The live resources are never modified.
    expect(rds.commandCalls(CreateDBSnapshotCommand)).toHaveLength(1);
  });
});
