/**
 * The AWS commands' logic with the AWS SDK mocked (aws-sdk-client-mock): point-in-time recovery
 * (restore --to), the reboot of pending static parameters and its drift item, the clean-up of
 * scheduled cache snapshots; and the ElastiCache ACL derived from the local targets' ACL.
 */
import { mockClient } from "aws-sdk-client-mock";
import { DescribeDBInstancesCommand, RDSClient, RebootDBInstanceCommand, RestoreDBInstanceToPointInTimeCommand } from "@aws-sdk/client-rds";
import { DeleteSnapshotCommand, DescribeSnapshotsCommand, ElastiCacheClient } from "@aws-sdk/client-elasticache";
import { beforeEach, describe, expect, it } from "vitest";
import { elasticacheAccessStrings, cacheUserId } from "../../lib/aws/cache-acl.js";
import { pruneCacheSnapshots, scheduledSnapshotPrefix } from "../../lib/aws/cache-snapshot-prune.js";
import { parseRecoveryTarget, pointInTimeIdentifier, restoreToPointInTime } from "../../lib/aws/point-in-time.js";
import { inMaintenanceWindow, nextWindowStart, rebootPending } from "../../lib/aws/reboot.js";
import { redisAclLines } from "../../lib/spec/access.js";
import { awsInfraDrift } from "../../lib/drift/infra.js";
import { loadSpec } from "../../lib/spec/load.js";
import { pruneFunctionCode } from "../../stacks/aws-cache-snapshots.js";

const rdsMock = mockClient(RDSClient);
const cacheMock = mockClient(ElastiCacheClient);
const rds = new RDSClient({ region: "us-east-1" });
const elasticache = new ElastiCacheClient({ region: "us-east-1" });
const staging = loadSpec("staging");
const prod = loadSpec("prod");
const now = new Date("2026-12-03T09:00:00Z");

const live = (spec = staging, extra: Record<string, unknown> = {}) => ({
  DBInstanceIdentifier: `${spec.namePrefix}-postgres`,
  DBInstanceStatus: "available",
  DBInstanceClass: spec.aws.rdsInstanceClass,
  BackupRetentionPeriod: spec.backup.retentionDays,
  InstanceCreateTime: new Date("2026-01-01T00:00:00Z"),
  LatestRestorableTime: new Date("2026-12-03T08:55:00Z"),
  DBSubnetGroup: { DBSubnetGroupName: `${spec.namePrefix}-postgres` },
  VpcSecurityGroups: [{ VpcSecurityGroupId: "sg-0pg", Status: "active" }],
  DBParameterGroups: [{ DBParameterGroupName: `${spec.namePrefix}-postgres16`, ParameterApplyStatus: "in-sync" }],
  Endpoint: { Address: "live.example", Port: 5432 },
  MasterUserSecret: { KmsKeyId: "arn:aws:kms:us-east-1:1:key/stack" },
  ...extra,
});

beforeEach(() => {
  rdsMock.reset();
  cacheMock.reset();
});

describe("restore --env staging|prod --to TIME|latest (RestoreDBInstanceToPointInTime)", () => {
  const target = pointInTimeIdentifier(staging, now);

  beforeEach(() => {
    rdsMock.on(DescribeDBInstancesCommand, { DBInstanceIdentifier: `${staging.namePrefix}-postgres` }).resolves({ DBInstances: [live()] });
    rdsMock.on(RestoreDBInstanceToPointInTimeCommand).resolves({ DBInstance: { DBInstanceStatus: "creating" } });
    rdsMock
      .on(DescribeDBInstancesCommand, { DBInstanceIdentifier: target })
      .resolvesOnce({ DBInstances: [{ DBInstanceStatus: "creating" }] })
      .resolves({ DBInstances: [{ DBInstanceStatus: "available", Endpoint: { Address: `${target}.abc.us-east-1.rds.amazonaws.com`, Port: 5432 } }] });
  });

  it("recovers into a new instance with the stack's parameter group, subnet group and security groups, waits, and reports the endpoint", async () => {
    const to = new Date("2026-12-03T08:00:00Z");
    const r = await restoreToPointInTime(staging, rds, { to, now, pollMs: 0 });
    const calls = rdsMock.commandCalls(RestoreDBInstanceToPointInTimeCommand);
    expect(calls).toHaveLength(1);
    expect(calls[0]!.args[0].input).toMatchObject({
      SourceDBInstanceIdentifier: `${staging.namePrefix}-postgres`,
      TargetDBInstanceIdentifier: target,
      RestoreTime: to,
      DBSubnetGroupName: `${staging.namePrefix}-postgres`,
      VpcSecurityGroupIds: ["sg-0pg"],
      DBParameterGroupName: `${staging.namePrefix}-postgres16`,
      DBInstanceClass: staging.aws.rdsInstanceClass,
      PubliclyAccessible: false,
      ManageMasterUserPassword: true,
      MasterUserSecretKmsKeyId: "arn:aws:kms:us-east-1:1:key/stack",
      EnableIAMDatabaseAuthentication: true,
      CACertificateIdentifier: staging.aws.caCertIdentifier,
    });
    expect(calls[0]!.args[0].input.UseLatestRestorableTime).toBeUndefined();
    expect(r.endpoint).toEqual({ address: `${target}.abc.us-east-1.rds.amazonaws.com`, port: 5432 });
    expect(r.status).toBe("available");
    expect(r.window).toEqual({ earliest: "2026-11-26T09:00:00.000Z", latest: "2026-12-03T08:55:00.000Z", retentionDays: 7 });
    // It polled the NEW instance, never modified the live one.
    expect(rdsMock.commandCalls(DescribeDBInstancesCommand).filter((c) => c.args[0].input.DBInstanceIdentifier === target)).toHaveLength(2);
  });

  it("`latest` asks for the latest restorable time", async () => {
    await restoreToPointInTime(staging, rds, { to: parseRecoveryTarget("latest"), now, pollMs: 0 });
    const input = rdsMock.commandCalls(RestoreDBInstanceToPointInTimeCommand)[0]!.args[0].input;
    expect([input.UseLatestRestorableTime, input.RestoreTime]).toEqual([true, undefined]);
  });

  it("refuses a TIME outside the restorable window, with the window in the message, creating nothing", async () => {
    for (const to of ["2026-11-20T00:00:00Z", "2026-12-03T08:58:00Z"]) {
      await expect(restoreToPointInTime(staging, rds, { to: parseRecoveryTarget(to), now, pollMs: 0 })).rejects.toThrow(
        /outside crypto-prediction-staging-postgres's restorable window 2026-11-26T09:00:00\.000Z … 2026-12-03T08:55:00\.000Z/,
      );
    }
    expect(rdsMock.commandCalls(RestoreDBInstanceToPointInTimeCommand)).toHaveLength(0);
  });

  it("refuses a --to that is not a time, and an instance without automated backups", async () => {
    expect(() => parseRecoveryTarget("yesterday")).toThrow(/not a time.*|ISO-8601/);
    expect(() => parseRecoveryTarget("2026-12-03 08:00")).toThrow(/not a time/);
    rdsMock.on(DescribeDBInstancesCommand, { DBInstanceIdentifier: `${staging.namePrefix}-postgres` }).resolves({ DBInstances: [live(staging, { BackupRetentionPeriod: 0 })] });
    await expect(restoreToPointInTime(staging, rds, { to: "latest", now, pollMs: 0 })).rejects.toThrow(/no automated backups/);
  });

  it("fails clearly when the new instance fails", async () => {
    rdsMock.on(DescribeDBInstancesCommand, { DBInstanceIdentifier: target }).resolves({ DBInstances: [{ DBInstanceStatus: "incompatible-restore" }] });
    await expect(restoreToPointInTime(staging, rds, { to: "latest", now, pollMs: 0 })).rejects.toThrow(/is incompatible-restore/);
  });
});

describe("reboot of pending static parameters", () => {
  const pending = (spec = staging, replicas: string[] = []) => {
    rdsMock.on(DescribeDBInstancesCommand, { DBInstanceIdentifier: `${spec.namePrefix}-postgres` }).resolves({
      DBInstances: [live(spec, { DBParameterGroups: [{ DBParameterGroupName: "pg", ParameterApplyStatus: "pending-reboot" }], ReadReplicaDBInstanceIdentifiers: replicas })],
    });
  };

  it("knows the maintenance window (weekly, UTC, wrapping) and the next one", () => {
    const w = "sun:03:00-sun:04:00";
    expect(inMaintenanceWindow(w, new Date("2026-12-06T03:30:00Z"))).toBe(true); // a Sunday
    expect(inMaintenanceWindow(w, new Date("2026-12-06T04:00:00Z"))).toBe(false);
    expect(inMaintenanceWindow("sat:23:00-sun:01:00", new Date("2026-12-06T00:30:00Z"))).toBe(true);
    expect(nextWindowStart(w, now).toISOString()).toBe("2026-12-06T03:00:00.000Z");
  });

  it("outside the window without --now: reboots nothing, says when (exit 1)", async () => {
    pending();
    const r = await rebootPending(staging, rds, { at: now, pollMs: 0 });
    expect([r.decision, r.code, r.nextWindow]).toEqual(["outside the maintenance window", 1, "2026-12-06T03:00:00.000Z"]);
    expect(rdsMock.commandCalls(RebootDBInstanceCommand)).toHaveLength(0);
  });

  it("refuses --now without --yes, and prod without --yes even in the window", async () => {
    pending(prod);
    await expect(rebootPending(staging, rds, { now: true, at: now })).rejects.toThrow(/--now reboots the database/);
    await expect(rebootPending(prod, rds, { at: new Date("2026-12-06T03:30:00Z") })).rejects.toThrow(/production stack: a reboot needs --yes/);
    expect(rdsMock.commandCalls(RebootDBInstanceCommand)).toHaveLength(0);
  });

  it("in the window (or --now --yes) reboots the pending primary and replicas and waits until in sync", async () => {
    pending(staging, [`${staging.namePrefix}-postgres-replica-1`]);
    rdsMock.on(DescribeDBInstancesCommand, { DBInstanceIdentifier: `${staging.namePrefix}-postgres-replica-1` }).resolves({
      DBInstances: [live(staging, { DBInstanceIdentifier: `${staging.namePrefix}-postgres-replica-1`, DBParameterGroups: [{ DBParameterGroupName: "pg", ParameterApplyStatus: "pending-reboot" }] })],
    });
    rdsMock.on(RebootDBInstanceCommand).callsFake((input: { DBInstanceIdentifier: string }) => {
      // After the reboot the instance reports in-sync.
      rdsMock.on(DescribeDBInstancesCommand, { DBInstanceIdentifier: input.DBInstanceIdentifier }).resolves({ DBInstances: [live(staging, { DBInstanceIdentifier: input.DBInstanceIdentifier })] });
      return { DBInstance: { DBInstanceStatus: "rebooting" } };
    });
    const r = await rebootPending(staging, rds, { at: new Date("2026-12-06T03:10:00Z"), pollMs: 0 });
    expect([r.decision, r.code]).toEqual(["rebooted", 0]);
    expect(rdsMock.commandCalls(RebootDBInstanceCommand).map((c) => c.args[0].input.DBInstanceIdentifier)).toEqual([`${staging.namePrefix}-postgres`, `${staging.namePrefix}-postgres-replica-1`]);
    expect(r.instances.every((i) => i.rebooted && i.applyStatus === "in-sync")).toBe(true);
  });

  it("nothing pending: nothing to do", async () => {
    rdsMock.on(DescribeDBInstancesCommand).resolves({ DBInstances: [live()] });
    const r = await rebootPending(staging, rds, { now: true, yes: true, at: now, pollMs: 0 });
    expect([r.decision, r.code]).toEqual(["nothing pending", 0]);
    expect(rdsMock.commandCalls(RebootDBInstanceCommand)).toHaveLength(0);
  });

  it("drift reports a pending reboot as drift, even when the preview finds none", async () => {
    pending();
    const preview = async () => ({ status: "ok" as const, items: [] });
    const r = await awsInfraDrift(staging, { rds, preview });
    expect(r.status).toBe("drift");
    expect(r.items).toEqual([expect.objectContaining({ name: `rds ${staging.namePrefix}-postgres`, actual: expect.stringContaining("pending-reboot: static parameters (shared_buffers, max_connections, shared_preload_libraries)"), fix: expect.stringContaining("npm run reboot -- --env staging") })]);
    rdsMock.reset();
    rdsMock.on(DescribeDBInstancesCommand).resolves({ DBInstances: [live()] });
    expect((await awsInfraDrift(staging, { rds, preview })).status).toBe("ok");
    rdsMock.reset();
    rdsMock.on(DescribeDBInstancesCommand).rejects(new Error("no credentials"));
    const failed = await awsInfraDrift(staging, { rds, preview });
    expect([failed.status, failed.note]).toEqual(["error", expect.stringContaining("pending reboots not checked")]);
  });
});

describe("scheduled ElastiCache snapshots", () => {
  const rg = `${staging.namePrefix}-redis`;
  const prefix = scheduledSnapshotPrefix(rg);
  const snap = (name: string, hoursAgo: number, status = "available") => ({ SnapshotName: name, SnapshotStatus: status, NodeSnapshots: [{ SnapshotCreateTime: new Date(now.getTime() - hoursAgo * 3600_000) }] });

  it("deletes only the schedule's snapshots older than keepHours, across pages", async () => {
    cacheMock.on(DescribeSnapshotsCommand).resolvesOnce({ Snapshots: [snap(`${prefix}a`, 50), snap(`${prefix}b`, 2), snap("by-hand-1", 500)], Marker: "m" }).resolves({ Snapshots: [snap(`${prefix}c`, 49), snap(`${prefix}d`, 60, "creating")] });
    cacheMock.on(DeleteSnapshotCommand).resolves({});
    const r = await pruneCacheSnapshots(elasticache, { replicationGroupId: rg, namePrefix: prefix, keepHours: 48, now });
    expect(r.deleted).toEqual([`${prefix}a`, `${prefix}c`]);
    expect(r.kept).toEqual([`${prefix}b`, `${prefix}d`]);
    expect(cacheMock.commandCalls(DeleteSnapshotCommand).map((c) => c.args[0].input.SnapshotName)).toEqual(r.deleted);
    expect(cacheMock.commandCalls(DescribeSnapshotsCommand)[0]!.args[0].input).toMatchObject({ ReplicationGroupId: rg, SnapshotSource: "manual" });
  });

  it("bundles the clean-up as the Lambda function's code (the SDK left to the runtime)", () => {
    const code = pruneFunctionCode();
    expect(code).toContain("handler");
    expect(code).toContain('require("@aws-sdk/client-elasticache")');
    const mod: { exports: Record<string, unknown> } = { exports: {} };
    new Function("module", "exports", "require", code)(mod, mod.exports, () => ({}));
    expect(typeof mod.exports.handler).toBe("function");
  });
});

describe("ElastiCache RBAC from the local ACL", () => {
  it("gives the app user the local targets' rules (no CONFIG, FLUSH*, KEYS) and the admin all", () => {
    const access = elasticacheAccessStrings(staging);
    const local = redisAclLines(staging, "a".repeat(16), "b".repeat(16));
    expect(`user ${staging.redis.appUser} on >${"b".repeat(16)} ${access.app.slice(3)}`).toBe(local[1]);
    expect(access.app).toMatch(/^on ~\* &\* \+@all .*-config.*$/);
    expect(access.admin).toBe("on ~* &* +@all");
    expect(cacheUserId("a-very-long-name-prefix-of-thirty", "redis-admin").length).toBeLessThanOrEqual(40);
  });
});

describe("snapshot restore of an RBAC replication group", () => {
  it("reuses the stack's user group instead of making an AUTH token", async () => {
    const { restoreAwsSnapshots } = await import("../../lib/aws/snapshots.js");
    const { RestoreDBInstanceFromDBSnapshotCommand } = await import("@aws-sdk/client-rds");
    const { CreateReplicationGroupCommand } = await import("@aws-sdk/client-elasticache");
    rdsMock.on(RestoreDBInstanceFromDBSnapshotCommand).resolves({ DBInstance: { DBInstanceStatus: "creating" } });
    cacheMock.on(CreateReplicationGroupCommand).resolves({ ReplicationGroup: { Status: "creating" } });
    const r = await restoreAwsSnapshots(staging, { rds, elasticache }, {
      rds: { snapshotIdentifier: "pg-snap" },
      elasticache: { snapshotName: "redis-snap", settings: { securityGroupIds: [], numCacheClusters: 1, transitEncryption: true, userGroupIds: ["crypto-prediction-staging-redis-users"] } },
    });
    const input = cacheMock.commandCalls(CreateReplicationGroupCommand)[0]!.args[0].input;
    expect([input.UserGroupIds, input.AuthToken, input.TransitEncryptionEnabled]).toEqual([["crypto-prediction-staging-redis-users"], undefined, true]);
    expect(r.redisAuthToken).toBeUndefined();
  });
});
