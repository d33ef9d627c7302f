/**
 * prod: AWS, Multi-AZ with failover, deletion protection, final snapshots, alarms to SNS, bigger
 * buffers. The differences from staging are checked against a staging run of the same program.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { loadSpec } from "../../lib/spec/load.js";
import { alarms, awsStackSuite, param, primaryDb, rdsUnits, T } from "./aws-suite.js";
import { runProgram, type Run } from "../support/pulumi.js";

const { run, spec } = awsStackSuite("prod");

describe("stack prod versus staging", () => {
  let staging: Run;
  const stagingSpec = loadSpec("staging");
  beforeAll(async () => {
    staging = await runProgram("staging");
  });

  it("is Multi-AZ with deletion protection and final snapshots; staging is not", () => {
    const prod = run().one(T.rds, primaryDb).inputs;
    const stg = staging.one(T.rds, primaryDb).inputs;
    expect([prod.multiAz, prod.deletionProtection, prod.skipFinalSnapshot, prod.deleteAutomatedBackups]).toEqual([true, true, false, false]);
    expect(prod.finalSnapshotIdentifier).toBe(`${prod.identifier}-final`);
    expect([stg.multiAz, stg.deletionProtection, stg.skipFinalSnapshot]).toEqual([false, false, true]);
    expect(prod.performanceInsightsEnabled).toBe(true);
    expect(stg.performanceInsightsEnabled).toBe(false);
    expect(prod.identifier).not.toBe(stg.identifier);
  });

  it("has a replica with automatic failover and keeps backups and snapshots longer", () => {
    const prod = run().one(T.cache).inputs;
    const stg = staging.one(T.cache).inputs;
    expect([prod.numCacheClusters, prod.automaticFailoverEnabled, prod.multiAzEnabled]).toEqual([2, true, true]);
    expect([stg.numCacheClusters, stg.automaticFailoverEnabled]).toEqual([1, false]);
    expect(prod.snapshotRetentionLimit).toBe(spec.backup.retentionDays);
    expect(run().one(T.rds, primaryDb).inputs.backupRetentionPeriod).toBe(14);
    expect(staging.one(T.rds, primaryDb).inputs.backupRetentionPeriod).toBe(stagingSpec.backup.retentionDays);
    expect(prod.finalSnapshotIdentifier).toBe(`${prod.replicationGroupId}-final`);
  });

  it("sends every alarm to its SNS topic; staging has a topic of its own", () => {
    const topic = run().one(T.topic);
    const arn = run().outputs.alarmTopicArns!.value as string[];
    expect(arn).toHaveLength(1);
    expect(arn[0]).toContain(topic.name);
    for (const a of run().all(T.alarm)) {
      expect(a.inputs.alarmActions).toEqual(arn);
      expect(a.inputs.okActions).toEqual(arn);
    }
    // Two cache members: twice the Redis alarms of staging.
    expect(alarms(run(), "Evictions")).toHaveLength(2);
    expect(alarms(staging, "Evictions")).toHaveLength(1);
  });

  it("has a read replica in another zone, backups replicated to another region, enhanced monitoring", () => {
    const primary = run().one(T.rds, primaryDb).inputs;
    const replicas = run().all(T.rds).filter((r) => !primaryDb(r));
    expect(replicas).toHaveLength(spec.aws.replicas.count);
    expect(spec.aws.replicas.count).toBe(1);
    const replica = replicas[0]!.inputs;
    expect(replica).toMatchObject({
      identifier: `${primary.identifier}-replica-1`,
      replicateSourceDb: primary.identifier,
      storageEncrypted: true,
      kmsKeyId: primary.kmsKeyId,
      publiclyAccessible: false,
      parameterGroupName: primary.parameterGroupName,
      monitoringInterval: 60,
    });
    // Subnets are in us-east-1a and 1b (sorted); the replica is pinned to the second.
    const zones = run().all(T.subnet).map((x) => x.inputs.availabilityZone);
    expect(replica.availabilityZone).toBe(zones[1]);
    expect(replica.availabilityZone).not.toBe(zones[0]);
    const backups = run().one(T.backupReplication).inputs;
    expect(backups).toMatchObject({ sourceDbInstanceArn: `arn:aws:mock:us-east-1:123456789012:${run().one(T.rds, primaryDb).name}`, region: "us-west-2", retentionPeriod: 14 });
    // Its key lives in the backups' region.
    const remoteKey = run().one(T.key, (k) => k.inputs.region === "us-west-2");
    expect(backups.kmsKeyId).toBe(`arn:aws:mock:us-east-1:123456789012:${remoteKey.name}`);
    expect(primary.monitoringInterval).toBe(60);
    expect(staging.one(T.rds, primaryDb).inputs.monitoringInterval).toBe(0);
    expect(run().outputs.postgresReaderHosts!.value).toEqual([`${replica.identifier}.mock.us-east-1.rds.amazonaws.com`]);
    // The IAM policy is attached to the spec's role.
    const attach = run().one("aws:iam/rolePolicyAttachment:RolePolicyAttachment", (a) => a.inputs.role === spec.aws.iamAuth.roleName);
    expect(attach.inputs.policyArn).toContain("postgres-connect");
  });

  it("takes prod's own buffer sizes (1GB, 3GB) in 8 kB pages, staging the guide's", () => {
    const prod = run().one(T.rdsParams);
    expect(param(prod, "shared_buffers")!.value).toBe(rdsUnits(spec.postgres.sharedBuffers, 8192));
    expect(param(prod, "shared_buffers")!.value).toBe("131072"); // 1GB / 8kB
    expect(param(prod, "effective_cache_size")!.value).toBe("393216"); // 3GB / 8kB
    expect(param(staging.one(T.rdsParams), "shared_buffers")!.value).toBe("32768");
    // Settings prod does not override are the same as staging's.
    expect(param(prod, "work_mem")).toEqual(param(staging.one(T.rdsParams), "work_mem"));
    expect(run().one(T.rds, primaryDb).inputs.instanceClass).not.toBe(staging.one(T.rds, primaryDb).inputs.instanceClass);
  });
});
