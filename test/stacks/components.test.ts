/**
 * The components beyond the four stack files: what they refuse (a spec AWS cannot honour, half a
 * network, a password in a container's command) and how other specs map (existing VPC,
 * persistence off, no log export, an external alarm topic), plus the capability table's rules.
 */
import * as pulumi from "@pulumi/pulumi";
import { describe, expect, it } from "vitest";
import { AwsMappingError, cacheNodeFit, rdsBackupWindow, smallestCacheNodeType, windowsOverlap } from "../../lib/aws/mapping.js";
import { capabilities, capabilitiesMarkdown } from "../../lib/docs/capabilities.js";
import { postgresContainer, type ContainerSecrets } from "../../lib/engines/docker/containers.js";
import { loadSpec } from "../../lib/spec/load.js";
import { postgresSettings, redisSettings } from "../../lib/spec/render.js";
import { AwsDataStack } from "../../stacks/aws-data-stack.js";
import { existingNetwork, subnetCidr } from "../../stacks/aws-network.js";
import { octalMode, secretAwareDefinition, shmSizeMb } from "../../stacks/docker-data-stack.js";
import { runComponents } from "../support/pulumi.js";

const staging = (overrides: Record<string, unknown>) => loadSpec("staging", { overrides });

describe("AwsDataStack refuses what AWS cannot do", () => {
  it("an unknown cache node type, naming a type that fits", async () => {
    const spec = staging({ aws: { cacheNodeType: "cache.x9.huge" } });
    await expect(runComponents("staging", () => new AwsDataStack("t", { spec }))).rejects.toThrow(/aws\.cacheNodeType: unknown ElastiCache node type "cache\.x9\.huge".*cache\.t3\.micro fits/s);
  });

  it("a node whose usable memory is below redis.maxmemory", async () => {
    const spec = staging({ redis: { maxmemory: "2gb" } });
    expect(() => cacheNodeFit(spec)).toThrow(AwsMappingError);
    await expect(runComponents("staging", () => new AwsDataStack("t", { spec }))).rejects.toThrow(/cache\.t4g\.small leaves .* below redis\.maxmemory 2gb.*cache\.t3\.medium fits/);
  });

  it("a backup window inside the maintenance window", async () => {
    const spec = staging({ backup: { schedule: "30 3 * * *" } });
    await expect(runComponents("staging", () => new AwsDataStack("t", { spec }))).rejects.toThrow(/backup\.schedule: RDS backup window 03:30-04:00 overlaps/);
  });

  it("subnets without a VPC, or a VPC without two subnets", () => {
    expect(() => existingNetwork(staging({ aws: { subnetIds: ["subnet-1", "subnet-2"] } }))).toThrow(/without aws\.vpcId/);
    expect(() => existingNetwork(staging({ aws: { vpcId: "vpc-1", subnetIds: ["subnet-1"] } }))).toThrow(/at least two/);
  });
});

describe("AwsDataStack maps other specs", () => {
  it("uses an existing VPC and subnets instead of creating them", async () => {
    const spec = staging({ aws: { vpcId: "vpc-123", subnetIds: ["subnet-a", "subnet-b"], allowedCidrs: [], allowedSecurityGroupIds: ["sg-app"] } });
    const run = await runComponents("staging", () => new AwsDataStack("t", { spec }));
    expect(run.all("aws:ec2/vpc:Vpc")).toEqual([]);
    expect(run.all("aws:ec2/subnet:Subnet")).toEqual([]);
    for (const sg of run.all("aws:ec2/securityGroup:SecurityGroup")) {
      expect(sg.inputs.vpcId).toBe("vpc-123");
      expect(sg.inputs.ingress).toEqual([expect.objectContaining({ securityGroups: ["sg-app"] })]);
    }
    expect(run.one("aws:rds/subnetGroup:SubnetGroup").inputs.subnetIds).toEqual(["subnet-a", "subnet-b"]);
    expect(run.one("aws:elasticache/subnetGroup:SubnetGroup").inputs.subnetIds).toEqual(["subnet-a", "subnet-b"]);
  });

  it("turns snapshots off when the spec's Redis does not persist, and says so", async () => {
    const spec = staging({ redis: { save: [], appendonly: false } });
    const run = await runComponents("staging", () => new AwsDataStack("t", { spec }));
    const rg = run.one("aws:elasticache/replicationGroup:ReplicationGroup").inputs;
    expect(rg.snapshotRetentionLimit).toBe(0);
    expect(rg.snapshotWindow).toBeUndefined();
    expect(capabilities(spec).find((r) => r.key === "redis.save")!.aws.support).toBe("not supported");
  });

  it("has no slow-query alarm without the PostgreSQL log export, and says why", async () => {
    const spec = staging({ aws: { logExports: [] } });
    const run = await runComponents("staging", () => new AwsDataStack("t", { spec }));
    expect(run.all("aws:cloudwatch/logMetricFilter:LogMetricFilter")).toEqual([]);
    expect(run.all("aws:cloudwatch/logGroup:LogGroup").filter((g) => g.inputs.name.startsWith("/aws/rds/"))).toEqual([]);
    expect(run.all("aws:cloudwatch/metricAlarm:MetricAlarm").map((a) => a.inputs.metricName)).not.toContain("SlowQueries");
    expect(capabilities(spec).find((r) => r.key === "alerts.queryTimeSeconds")!.aws.detail).toMatch(/not exported/);
  });

  it("takes every alarm threshold from the spec, not from the guide's defaults", async () => {
    const spec = staging({
      postgres: { maxConnections: 200 },
      alerts: { connectionPoolPercent: 50, redisMemoryPercent: 75, redisHitRatePercent: 60, redisEvictionsPerSecond: 10 },
      aws: { cpuAlarmPercent: 65, freeStorageAlarmPercent: 20, rdsAllocatedStorageGb: 100 },
    });
    const run = await runComponents("staging", () => new AwsDataStack("t", { spec }));
    const threshold = (metric: string) => run.all("aws:cloudwatch/metricAlarm:MetricAlarm").find((a) => a.inputs.metricName === metric)!.inputs;
    expect(threshold("DatabaseConnections").threshold).toBe(100);
    expect(threshold("DatabaseMemoryUsagePercentage").threshold).toBe(75);
    expect(threshold("CacheHitRate").threshold).toBe(60);
    expect(threshold("Evictions").threshold / threshold("Evictions").period).toBe(10);
    expect(threshold("CPUUtilization").threshold).toBe(65);
    expect(threshold("FreeStorageSpace").threshold).toBe(20 * 1024 ** 3);
  });

  it("sends alarms to an existing topic", async () => {
    const arn = "arn:aws:sns:us-east-1:123456789012:oncall";
    const spec = staging({ aws: { alarmTopicArn: arn, createAlarmTopic: false } });
    const run = await runComponents("staging", () => new AwsDataStack("t", { spec }));
    expect(run.all("aws:sns/topic:Topic")).toEqual([]);
    for (const a of run.all("aws:cloudwatch/metricAlarm:MetricAlarm")) expect(a.inputs.alarmActions).toEqual([arn]);
  });
});

describe("AwsDataStack's production keys", () => {
  it("uses an existing key, subscribes people, and turns the optional parts off and on", async () => {
    const keyArn = "arn:aws:kms:us-east-1:123456789012:key/existing";
    const spec = staging({
      aws: {
        kms: { keyArn },
        alarms: { emails: ["oncall@example.com"], httpsEndpoints: ["https://pager.example.com/hook"] },
        cacheSnapshots: { enabled: false },
        monitoring: { cacheLogs: false, flowLogs: false, enhancedIntervalSeconds: 15 },
        iamAuth: { enabled: false },
        blueGreenUpdate: true,
        engineLifecycleSupport: "open-source-rds-extended-support",
        backupBucket: { enabled: false },
      },
    });
    const run = await runComponents("staging", () => new AwsDataStack("t", { spec }));
    expect(run.all("aws:kms/key:Key")).toEqual([]);
    const db = run.one("aws:rds/instance:Instance").inputs;
    expect([db.kmsKeyId, db.masterUserSecretKmsKeyId]).toEqual([keyArn, keyArn]);
    expect(db).toMatchObject({ monitoringInterval: 15, iamDatabaseAuthenticationEnabled: false, blueGreenUpdate: { enabled: true }, engineLifecycleSupport: "open-source-rds-extended-support" });
    expect(run.one("aws:sns/topic:Topic").inputs.kmsMasterKeyId).toBe(keyArn);
    const subs = run.all("aws:sns/topicSubscription:TopicSubscription").map((x) => [x.inputs.protocol, x.inputs.endpoint]);
    expect(subs).toEqual([["email", "oncall@example.com"], ["https", "https://pager.example.com/hook"]]);
    expect(run.all("aws:scheduler/schedule:Schedule")).toEqual([]);
    expect(run.all("aws:ec2/flowLog:FlowLog")).toEqual([]);
    expect(run.one("aws:elasticache/replicationGroup:ReplicationGroup").inputs.logDeliveryConfigurations).toEqual([]);
    expect(run.all("aws:iam/policy:Policy")).toEqual([]);
    expect(run.resources.filter((r) => r.type.startsWith("aws:s3/"))).toEqual([]);
  });

  it("refuses bad production values with the key named", () => {
    expect(() => staging({ aws: { monitoring: { enhancedIntervalSeconds: 7 } } })).toThrow(/aws\.monitoring\.enhancedIntervalSeconds/);
    expect(() => staging({ aws: { alarms: { httpsEndpoints: ["http://insecure.example.com"] } } })).toThrow(/aws\.alarms\.httpsEndpoints/);
    expect(() => staging({ aws: { kms: { keyArn: "key-123" } } })).toThrow(/aws\.kms\.keyArn/);
    expect(() => staging({ aws: { replicas: { backupRegion: "mars" } } })).toThrow(/aws\.replicas\.backupRegion/);
  });
});

describe("DockerDataStack helpers", () => {
  it("refuses a container definition that puts a password where previews show it", async () => {
    const spec = loadSpec("dev");
    const leaky = (s: ContainerSecrets) => {
      const def = postgresContainer(spec, s, "hash");
      return { ...def, command: [...def.command, "-c", `password=${s.postgresPassword}`] };
    };
    await runComponents("dev", () => {
      const secrets = pulumi.secret({ postgresPassword: "p", roles: { owner: "o", app: "a", readonly: "r" }, redisPassword: "r", redisAppPassword: "a" });
      expect(() => secretAwareDefinition(leaky, secrets)).toThrow(/command depends on a password/);
    });
  });

  it("converts sizes and modes for the Docker provider", () => {
    expect(shmSizeMb(256 * 1024 ** 2)).toBe(256);
    expect(shmSizeMb(256 * 1024 ** 2 + 1)).toBe(257);
    expect(octalMode(0o444)).toBe("0444");
    expect(octalMode(0o600)).toBe("0600");
  });
});

describe("mapping rules", () => {
  it("splits the VPC CIDR into private subnets", () => {
    expect(subnetCidr("10.42.0.0/16", 0)).toBe("10.42.0.0/20");
    expect(subnetCidr("10.42.0.0/16", 1)).toBe("10.42.16.0/20");
    expect(() => subnetCidr("10.42.0.0/27", 0)).toThrow(/too small/);
  });

  it("maps the backup schedule to an RDS window and detects overlaps", () => {
    expect(rdsBackupWindow("0 2 * * *")).toBe("02:00-02:30");
    expect(rdsBackupWindow("45 23 * * *")).toBe("23:45-00:15");
    expect(rdsBackupWindow("0 */6 * * *")).toBeUndefined();
    expect(windowsOverlap("02:00-02:30", "sun:03:00-sun:04:00")).toBe(false);
    expect(windowsOverlap("03:30-04:00", "sun:03:00-sun:04:00")).toBe(true);
    expect(windowsOverlap("23:45-00:15", "mon:00:00-mon:01:00")).toBe(true);
  });

  it("picks the smallest node type that holds maxmemory", () => {
    expect(smallestCacheNodeType(256 * 1024 ** 2, 25)).toMatch(/^cache\.t[34]g?\.micro$/);
    expect(smallestCacheNodeType(4 * 1024 ** 3, 25)).toMatch(/large$/);
    expect(smallestCacheNodeType(1024 ** 4, 25)).toBeUndefined();
  });
});

describe("capability table", () => {
  for (const env of ["dev", "prod"]) {
    it(`has a row for every rendered setting of ${env}, with a verdict per target`, () => {
      const spec = loadSpec(env);
      const rows = capabilities(spec);
      const keys = rows.map((r) => r.key);
      expect(keys).toEqual(expect.arrayContaining(["postgres.sharedBuffers", "redis.maxmemory", "redis.save", "redis.appendonly", "alerts.redisHitRatePercent"]));
      expect(rows.length).toBeGreaterThanOrEqual(postgresSettings(spec).length + redisSettings(spec).length);
      for (const r of rows) for (const t of ["embedded", "docker", "aws"] as const) expect(["applied", "mapped", "not supported"]).toContain(r[t].support);
      const md = capabilitiesMarkdown(rows).trim().split("\n");
      expect(md).toHaveLength(rows.length + 2);
      expect(md[0]).toBe("| setting | value | embedded | docker | aws |");
    });
  }

  it("maps maxmemory to the node type, appendonly to replicas (prod) or nothing (staging), and RDS parameters with units", () => {
    const prod = capabilities(loadSpec("prod"));
    const stg = capabilities(loadSpec("staging"));
    expect(prod.find((r) => r.key === "redis.maxmemory")!.aws).toMatchObject({ support: "mapped", detail: expect.stringContaining("cache.r6g.large") });
    expect(prod.find((r) => r.key === "redis.appendonly")!.aws.support).toBe("mapped");
    expect(stg.find((r) => r.key === "redis.appendonly")!.aws.support).toBe("not supported");
    expect(stg.find((r) => r.key === "postgres.sharedBuffers")!.aws.detail).toContain("shared_buffers = 32768 (8 kB pages); static: pending-reboot");
    expect(stg.find((r) => r.key === "redis.appendfsync")!.aws.support).toBe("not supported");
    expect(stg.find((r) => r.key === "alerts.deadTuplePercent")!.aws.support).toBe("not supported");
  });
});
