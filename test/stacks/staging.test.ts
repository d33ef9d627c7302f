/**
 * staging: AWS with the guide's values. Besides the shared AWS checks, the guide's literal
 * numbers must arrive in RDS's units and as the guide's alarm thresholds.
 */
import { describe, expect, it } from "vitest";
import { alarms, awsStackSuite, param, primaryDb, T } from "./aws-suite.js";

const { run } = awsStackSuite("staging");

describe("stack staging: the guide's literal values in AWS units", () => {
  it("converts the guide's sizes to 8 kB pages and kB", () => {
    const group = run().one(T.rdsParams);
    expect(param(group, "shared_buffers")!.value).toBe("32768"); // 256MB / 8kB
    expect(param(group, "effective_cache_size")!.value).toBe("131072"); // 1GB / 8kB
    expect(param(group, "work_mem")!.value).toBe("16384"); // 16MB / 1kB
    expect(param(group, "maintenance_work_mem")!.value).toBe("131072"); // 128MB / 1kB
    expect(param(run().one(T.cacheParams), "maxmemory-policy")!.value).toBe("allkeys-lru");
  });

  it("alarms at the guide's thresholds: 80%, 1 s, 90%, 70%, 100/s", () => {
    expect(alarms(run(), "DatabaseConnections")[0]!.inputs.threshold).toBe(80); // 80% of max_connections 100
    for (const a of alarms(run(), "DatabaseMemoryUsagePercentage")) expect(a.inputs.threshold).toBe(90);
    for (const a of alarms(run(), "CacheHitRate")) expect(a.inputs.threshold).toBe(70);
    for (const a of alarms(run(), "Evictions")) expect(a.inputs.threshold / a.inputs.period).toBe(100);
    expect(alarms(run(), "SlowQueries")).toHaveLength(1); // log_min_duration_statement = 1000 ms
  });

  it("is single-AZ without failover, deletion protection, final snapshot or replicas; its alarms go to its own topic", () => {
    const db = run().one(T.rds, primaryDb).inputs;
    expect([db.multiAz, db.deletionProtection, db.skipFinalSnapshot, db.finalSnapshotIdentifier]).toEqual([false, false, true, undefined]);
    const rg = run().one(T.cache).inputs;
    expect([rg.numCacheClusters, rg.automaticFailoverEnabled, rg.multiAzEnabled]).toEqual([1, false, false]);
    const topic = run().one(T.topic);
    expect(topic.inputs.name).toBe("crypto-prediction-staging-alarms");
    for (const a of run().all(T.alarm)) expect(a.inputs.alarmActions).toEqual([`arn:aws:mock:us-east-1:123456789012:${topic.name}`]);
    expect(run().all(T.rds)).toHaveLength(1);
    expect(run().all(T.backupReplication)).toEqual([]);
    expect(db.monitoringInterval).toBe(0);
  });
});
