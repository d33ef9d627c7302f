/**
 * prod: AWS, Multi-AZ with failover, deletion protection, final snapshots, alarms to SNS, bigger
 * buffers. The differences from staging are checked against a staging run of the same program.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { loadSpec } from "../../lib/spec/load.js";
import { alarms, awsStackSuite, param, rdsUnits, T } from "./aws-suite.js";
import { runProgram, type Run } from "./harness.js";

const { run, spec } = awsStackSuite("prod");

describe("stack prod versus staging", () => {
  let staging: Run;
  const stagingSpec = loadSpec("staging");
  beforeAll(async () => {
    staging = await runProgram("staging");
  });

  it("is Multi-AZ with deletion protection and final snapshots; staging is not", () => {
    const prod = run().one(T.rds).inputs;
    const stg = staging.one(T.rds).inputs;
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
    expect(run().one(T.rds).inputs.backupRetentionPeriod).toBe(14);
    expect(staging.one(T.rds).inputs.backupRetentionPeriod).toBe(stagingSpec.backup.retentionDays);
    expect(prod.finalSnapshotIdentifier).toBe(`${prod.replicationGroupId}-final`);
  });

  it("sends every alarm to its SNS topic; staging's alarms have no action", () => {
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

  it("takes prod's own buffer sizes (1GB, 3GB) in 8 kB pages, staging the guide's", () => {
    const prod = run().one(T.rdsParams);
    expect(param(prod, "shared_buffers")!.value).toBe(rdsUnits(spec.postgres.sharedBuffers, 8192));
    expect(param(prod, "shared_buffers")!.value).toBe("131072"); // 1GB / 8kB
    expect(param(prod, "effective_cache_size")!.value).toBe("393216"); // 3GB / 8kB
    expect(param(staging.one(T.rdsParams), "shared_buffers")!.value).toBe("32768");
    // Settings prod does not override are the same as staging's.
    expect(param(prod, "work_mem")).toEqual(param(staging.one(T.rdsParams), "work_mem"));
    expect(run().one(T.rds).inputs.instanceClass).not.toBe(staging.one(T.rds).inputs.instanceClass);
  });
});
