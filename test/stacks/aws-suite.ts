/**
 * The checks every AWS stack (staging, prod) must pass, run against index.ts under mocks.
 * Expected values come from the spec (loadSpec); units are converted here independently of
 * lib/spec/render.ts (bytes / 8192 for pages, / 1024 for kB), so a wrong unit in either fails.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { ELASTICACHE_NODE_MEMORY_GIB } from "../../lib/aws/mapping.js";
import type { CapabilityRow } from "../../lib/docs/capabilities.js";
import { resourceName } from "../../lib/spec/access.js";
import { loadSpec, specHash } from "../../lib/spec/load.js";
import { elasticacheParameters, rdsParameters } from "../../lib/spec/render.js";
import type { Spec } from "../../lib/spec/schema.js";
import { parsePgSize, parseRedisSize } from "../../lib/spec/units.js";
import { expectAllParented, expectPoliciesPass, expectSecretsStaySecret } from "../support/pulumi-checks.js";
import { MOCK_RDS_MASTER_PASSWORD, mockPassword, runProgram, type Recorded, type Run } from "../support/pulumi.js";

export const T = {
  rds: "aws:rds/instance:Instance",
  rdsParams: "aws:rds/parameterGroup:ParameterGroup",
  rdsSubnets: "aws:rds/subnetGroup:SubnetGroup",
  cache: "aws:elasticache/replicationGroup:ReplicationGroup",
  cacheParams: "aws:elasticache/parameterGroup:ParameterGroup",
  cacheSubnets: "aws:elasticache/subnetGroup:SubnetGroup",
  sg: "aws:ec2/securityGroup:SecurityGroup",
  vpc: "aws:ec2/vpc:Vpc",
  subnet: "aws:ec2/subnet:Subnet",
  alarm: "aws:cloudwatch/metricAlarm:MetricAlarm",
  logGroup: "aws:cloudwatch/logGroup:LogGroup",
  logFilter: "aws:cloudwatch/logMetricFilter:LogMetricFilter",
  topic: "aws:sns/topic:Topic",
  provider: "pulumi:providers:aws",
  key: "aws:kms/key:Key",
  cacheUser: "aws:elasticache/user:User",
  cacheUserGroup: "aws:elasticache/userGroup:UserGroup",
  schedule: "aws:scheduler/schedule:Schedule",
  eventSubscription: "aws:rds/eventSubscription:EventSubscription",
  role: "aws:iam/role:Role",
  flowLog: "aws:ec2/flowLog:FlowLog",
  lambda: "aws:lambda/function:Function",
  backupReplication: "aws:rds/instanceAutomatedBackupsReplication:InstanceAutomatedBackupsReplication",
  iamPolicy: "aws:iam/policy:Policy",
  bucket: "aws:s3/bucket:Bucket",
  bucketVersioning: "aws:s3/bucketVersioning:BucketVersioning",
  bucketEncryption: "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
  bucketPublicAccess: "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
  bucketOwnership: "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
  bucketPolicy: "aws:s3/bucketPolicy:BucketPolicy",
  bucketLifecycle: "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
  backupBucket: "crypto-prediction-infra:aws:BackupBucket",
} as const;

/** The bucket's setting resources, each of which must be a child of the BackupBucket component. */
export const BUCKET_SETTINGS = [T.bucketVersioning, T.bucketEncryption, T.bucketPublicAccess, T.bucketOwnership, T.bucketPolicy, T.bucketLifecycle] as const;

/** Every Allow statement of an IAM policy names actions and resources of this bucket, prefix and key only. */
export function expectLeastPrivilege(policy: { Statement: Record<string, any>[] }, bucketArn: string, prefix: string, keyArn: string): void {
  const list = (v: unknown) => (Array.isArray(v) ? v : [v]) as string[];
  for (const st of policy.Statement) {
    expect(st.Effect).toBe("Allow");
    for (const action of list(st.Action)) expect(action, action).not.toContain("*");
    for (const resource of list(st.Resource)) expect([bucketArn, `${bucketArn}/${prefix}*`, keyArn], resource).toContain(resource);
  }
}

/** The primary RDS instance (not a read replica). */
export const primaryDb = (r: Recorded) => r.inputs.replicateSourceDb === undefined;

/** The parameter value a test expects, computed from the spec's size here (not by render.ts). */
export function rdsUnits(size: string, unitBytes: number): string {
  return String(parsePgSize(size)! / unitBytes);
}

export function param(r: Recorded, name: string): { name: string; value: string; applyMethod?: string } | undefined {
  return (r.inputs.parameters as { name: string; value: string; applyMethod?: string }[]).find((p) => p.name === name);
}

export function alarms(run: Run, metricName: string): Recorded[] {
  return run.all(T.alarm).filter((a) => a.inputs.metricName === metricName);
}

export function awsStackSuite(stack: string): { run: () => Run; spec: Spec } {
  let run: Run;
  const spec = loadSpec(stack);

  describe(`stack ${stack} (aws)`, () => {
    beforeAll(async () => {
      run = await runProgram(stack);
    });

    it("builds one AwsDataStack whose resources are all its children, in the spec's region", () => {
      expect(spec.target).toBe("aws");
      expect(run.all("crypto-prediction-infra:index:AwsDataStack")).toHaveLength(1);
      expect(run.resources.filter((r) => r.type.startsWith("docker:"))).toEqual([]);
      expect(run.one(T.provider).inputs.region).toBe(spec.aws.region);
      expectAllParented(run);
      // Every AWS resource goes through the spec's provider, not the ambient default one.
      const provider = run.one(T.provider).name;
      const others = run.resources.filter((x) => x.type.startsWith("aws:") && !(x.provider ?? "").includes(`::${provider}::`));
      expect(others.map((x) => x.name)).toEqual([]);
    });

    it("creates a VPC with private subnets in two zones when the spec names none", () => {
      expect(spec.aws.vpcId).toBeUndefined();
      expect(run.one(T.vpc).inputs.cidrBlock).toBe(spec.aws.vpcCidr);
      const subnets = run.all(T.subnet);
      expect(subnets).toHaveLength(2);
      expect(new Set(subnets.map((s) => s.inputs.availabilityZone)).size).toBe(2);
      for (const s of subnets) expect(s.inputs.mapPublicIpOnLaunch).toBe(false);
      expect(run.resources.filter((r) => r.type === "aws:ec2/internetGateway:InternetGateway")).toEqual([]);
      for (const t of [T.rdsSubnets, T.cacheSubnets]) expect(run.one(t).inputs.subnetIds).toHaveLength(2);
    });

    it("admits 5432 and 6379 only, only from the allowed CIDRs and groups, never the world", () => {
      const rules = (port: number) => {
        const sg = run.one(T.sg, (g) => (g.inputs.ingress as { fromPort: number }[]).some((i) => i.fromPort === port));
        return sg.inputs.ingress as { fromPort: number; toPort: number; protocol: string; cidrBlocks?: string[]; securityGroups?: string[] }[];
      };
      for (const port of [spec.postgres.port, spec.redis.port]) {
        const ingress = rules(port);
        expect(ingress.every((i) => i.fromPort === port && i.toPort === port && i.protocol === "tcp")).toBe(true);
        expect(ingress.flatMap((i) => i.cidrBlocks ?? []).sort()).toEqual([...spec.aws.allowedCidrs].sort());
        expect(ingress.flatMap((i) => i.securityGroups ?? []).sort()).toEqual([...spec.aws.allowedSecurityGroupIds].sort());
        expect(ingress.flatMap((i) => i.cidrBlocks ?? [])).not.toContain("0.0.0.0/0");
      }
      expect([spec.postgres.port, spec.redis.port]).toEqual([5432, 6379]);
      for (const sg of run.all(T.sg)) expect(sg.inputs.egress).toBeUndefined();
    });

    it("gives RDS a postgres16 parameter group with the spec's values in RDS units, static ones pending-reboot", () => {
      const group = run.one(T.rdsParams);
      expect(group.inputs.family).toBe("postgres16");
      expect(group.inputs.parameters).toEqual(rdsParameters(spec).map((p) => ({ name: p.name, value: p.value, applyMethod: p.applyMethod })));
      const pg = spec.postgres;
      expect(param(group, "shared_buffers")).toEqual({ name: "shared_buffers", value: rdsUnits(pg.sharedBuffers, 8192), applyMethod: "pending-reboot" });
      expect(param(group, "effective_cache_size")!.value).toBe(rdsUnits(pg.effectiveCacheSize, 8192));
      expect(param(group, "work_mem")!.value).toBe(rdsUnits(pg.workMem, 1024));
      expect(param(group, "maintenance_work_mem")!.value).toBe(rdsUnits(pg.maintenanceWorkMem, 1024));
      expect(param(group, "max_connections")).toEqual({ name: "max_connections", value: String(pg.maxConnections), applyMethod: "pending-reboot" });
      expect(param(group, "shared_preload_libraries")!.applyMethod).toBe("pending-reboot");
      expect(param(group, "log_min_duration_statement")!.value).toBe(String(pg.logMinDurationStatementMs));
      expect(param(group, "rds.force_ssl")!.value).toBe("1");
      // Values are strings exactly as AWS returns them (no perpetual diff from numbers or units).
      for (const p of group.inputs.parameters as { value: unknown }[]) expect(typeof p.value).toBe("string");
      for (const p of group.inputs.parameters as { value: string }[]) expect(p.value).not.toMatch(/[kMG]B$/);
      expect(run.outputs.pendingRebootParameters!.value).toEqual(["shared_buffers", "max_connections", "shared_preload_libraries"]);
    });

    it("runs RDS PostgreSQL 16 private, encrypted, with managed password, backups and PITR from the spec", () => {
      const db = run.one(T.rds, primaryDb).inputs;
      const group = run.one(T.rdsParams);
      expect(db).toMatchObject({
        identifier: resourceName(spec, "postgres"),
        engine: "postgres",
        engineVersion: "16",
        instanceClass: spec.aws.rdsInstanceClass,
        allocatedStorage: spec.aws.rdsAllocatedStorageGb,
        maxAllocatedStorage: spec.aws.rdsMaxAllocatedStorageGb,
        storageEncrypted: true,
        publiclyAccessible: false,
        manageMasterUserPassword: true,
        dbName: spec.postgres.database,
        username: spec.postgres.user,
        port: spec.postgres.port,
        parameterGroupName: group.inputs.name,
        backupRetentionPeriod: spec.backup.retentionDays,
        multiAz: spec.aws.multiAz,
        deletionProtection: spec.aws.deletionProtection,
        performanceInsightsEnabled: spec.aws.performanceInsights,
        enabledCloudwatchLogsExports: spec.aws.logExports,
        maintenanceWindow: spec.aws.maintenanceWindow,
      });
      expect(db.password).toBeUndefined();
      expect(db.backupRetentionPeriod).toBeGreaterThan(0); // > 0 is what enables point-in-time recovery
      expect(spec.backup.schedule).toBe("0 2 * * *");
      expect(db.backupWindow).toBe("02:00-02:30"); // guide: daily at 2 AM
    });

    it("runs ElastiCache Redis 7 with the spec's parameters on a node that holds maxmemory", () => {
      const group = run.one(T.cacheParams);
      expect(group.inputs.family).toBe("redis7");
      expect(group.inputs.parameters).toEqual(elasticacheParameters(spec).map((p) => ({ name: p.name, value: p.value })));
      expect(param(group, "maxmemory-policy")!.value).toBe(spec.redis.maxmemoryPolicy);
      expect(param(group, "reserved-memory-percent")!.value).toBe(String(spec.aws.reservedMemoryPercent));
      for (const name of ["maxmemory", "save", "appendonly", "appendfsync"]) expect(param(group, name)).toBeUndefined();
      const rg = run.one(T.cache).inputs;
      const usable = ELASTICACHE_NODE_MEMORY_GIB[rg.nodeType]! * 1024 ** 3 * (1 - spec.aws.reservedMemoryPercent / 100);
      expect(usable).toBeGreaterThanOrEqual(parseRedisSize(spec.redis.maxmemory)!);
      expect(rg).toMatchObject({
        engine: "redis",
        nodeType: spec.aws.cacheNodeType,
        numCacheClusters: 1 + spec.aws.cacheReplicas,
        automaticFailoverEnabled: spec.aws.cacheReplicas >= 1,
        multiAzEnabled: spec.aws.cacheReplicas >= 1,
        port: spec.redis.port,
        parameterGroupName: group.inputs.name,
        atRestEncryptionEnabled: true,
        transitEncryptionEnabled: true,
        snapshotRetentionLimit: spec.backup.retentionDays,
        snapshotWindow: spec.aws.snapshotWindow,
      });
      expect(rg.engineVersion).toMatch(/^7\./);
      // RBAC instead of a static AUTH token.
      expect(rg.authToken).toBeUndefined();
      expect(rg.userGroupIds).toEqual([run.one(T.cacheUserGroup).inputs.userGroupId]);
    });

    it("encrypts everything with one customer-managed key, rotation on", () => {
      const key = run.one(T.key, (k) => k.inputs.region === undefined);
      expect(key.inputs.enableKeyRotation).toBe(true);
      const arn = `arn:aws:mock:us-east-1:123456789012:${key.name}`;
      const db = run.one(T.rds, primaryDb).inputs;
      expect([db.kmsKeyId, db.masterUserSecretKmsKeyId]).toEqual([arn, arn]);
      expect(db.performanceInsightsKmsKeyId).toBe(spec.aws.performanceInsights ? arn : undefined);
      expect(run.one(T.cache).inputs.kmsKeyId).toBe(arn);
      for (const g of run.all(T.logGroup)) expect(g.inputs.kmsKeyId, g.inputs.name).toBe(arn);
      expect(run.one(T.topic).inputs.kmsMasterKeyId).toBe(arn);
      const policy = JSON.parse(key.inputs.policy) as { Statement: { Principal: { AWS?: string; Service?: string | string[] } }[] };
      expect(policy.Statement[0]!.Principal.AWS).toBe("arn:aws:iam::123456789012:root");
      expect(JSON.stringify(policy)).toContain(`logs.${spec.aws.region}.amazonaws.com`);
    });

    it("gives ElastiCache an admin and an app user with the local targets' ACL, passwords secret", () => {
      const users = run.all(T.cacheUser);
      expect(users.map((u) => u.inputs.userName).sort()).toEqual(["default", spec.redis.appUser].sort());
      const app = users.find((u) => u.inputs.userName === spec.redis.appUser)!;
      for (const cmd of ["-config", "-flushall", "-flushdb", "-keys", "-@dangerous"]) expect(app.inputs.accessString.split(" ")).toContain(cmd);
      expect(users.find((u) => u.inputs.userName === "default")!.inputs.accessString).toBe("on ~* &* +@all");
      for (const u of users) {
        expect(u.inputs.authenticationMode.type).toBe("password");
        expect(run.isSecret(u, "authenticationMode.passwords")).toBe(true);
        expect(u.inputs.userId.length).toBeLessThanOrEqual(40);
      }
      expect(run.one(T.cacheUserGroup).inputs.userIds.sort()).toEqual(users.map((u) => u.inputs.userId).sort());
    });

    it("sees inside: enhanced monitoring per the spec, PostgreSQL and cache logs, VPC flow logs", () => {
      const db = run.one(T.rds, primaryDb).inputs;
      expect(db.monitoringInterval).toBe(spec.aws.monitoring.enhancedIntervalSeconds);
      const monitoringRole = run.all(T.role).find((r) => r.inputs.assumeRolePolicy.includes("monitoring.rds.amazonaws.com"));
      if (spec.aws.monitoring.enhancedIntervalSeconds > 0) expect(db.monitoringRoleArn).toBe(`arn:aws:mock:us-east-1:123456789012:${monitoringRole!.name}`);
      else expect([db.monitoringRoleArn, monitoringRole]).toEqual([undefined, undefined]);
      const delivery = run.one(T.cache).inputs.logDeliveryConfigurations as { logType: string; destination: string; destinationType: string }[];
      expect(delivery.map((d) => d.logType).sort()).toEqual(["engine-log", "slow-log"]);
      for (const d of delivery) {
        expect(d.destinationType).toBe("cloudwatch-logs");
        expect(run.one(T.logGroup, (g) => g.inputs.name === d.destination).inputs.retentionInDays).toBe(spec.aws.logRetentionDays);
      }
      const flow = run.one(T.flowLog).inputs;
      expect(flow).toMatchObject({ vpcId: `${run.one(T.vpc).name}-id`, trafficType: spec.aws.monitoring.flowLogTraffic, logDestinationType: "cloud-watch-logs" });
    });

    it("sets the CA, extended support and blue/green deliberately, and IAM authentication for the app role", () => {
      const db = run.one(T.rds, primaryDb).inputs;
      expect(db).toMatchObject({
        caCertIdentifier: spec.aws.caCertIdentifier,
        engineLifecycleSupport: "open-source-rds-extended-support-disabled",
        blueGreenUpdate: { enabled: false },
        iamDatabaseAuthenticationEnabled: true,
      });
      const policy = JSON.parse(run.one(T.iamPolicy, (p) => p.inputs.policy.includes("rds-db:connect")).inputs.policy);
      expect(policy.Statement[0].Resource).toMatch(new RegExp(`^arn:aws:rds-db:${spec.aws.region}:123456789012:dbuser:db-[0-9A-F]+/${spec.postgres.appUser}$`));
    });

    it("takes the guide's hourly Redis snapshots with a schedule, and cleans them up", () => {
      const create = run.one(T.schedule, (x) => x.inputs.target.arn === "arn:aws:scheduler:::aws-sdk:elasticache:createSnapshot");
      expect(create.inputs.scheduleExpression).toBe(spec.aws.cacheSnapshots.schedule);
      expect(spec.aws.cacheSnapshots.schedule).toBe("rate(1 hour)");
      const input = JSON.parse(create.inputs.target.input);
      expect(input).toEqual({ ReplicationGroupId: resourceName(spec, "redis"), SnapshotName: `${resourceName(spec, "redis")}-sched-<aws.scheduler.execution-id>` });
      const role = run.one(T.role, (r) => `arn:aws:mock:us-east-1:123456789012:${r.name}` === create.inputs.target.roleArn);
      expect(role.inputs.assumeRolePolicy).toContain("scheduler.amazonaws.com");
      const fn = run.one(T.lambda);
      expect(fn.inputs.environment.variables).toEqual({ REPLICATION_GROUP_ID: resourceName(spec, "redis"), KEEP_HOURS: String(spec.aws.cacheSnapshots.keepHours) });
      const prune = run.one(T.schedule, (x) => x.inputs.target.arn === `arn:aws:mock:us-east-1:123456789012:${fn.name}`);
      expect(prune.inputs.target.roleArn).toBe(create.inputs.target.roleArn);
    });

    it("sends alarms, OK, insufficient data (where silence matters), RDS events and ElastiCache notifications to the topic", () => {
      const arns = run.outputs.alarmTopicArns!.value as string[];
      expect(arns.length).toBeGreaterThan(0);
      for (const a of run.all(T.alarm)) {
        expect(a.inputs.alarmActions, a.inputs.name).toEqual(arns);
        expect(a.inputs.okActions).toEqual(arns);
        expect(["missing", "notBreaching", "breaching"]).toContain(a.inputs.treatMissingData);
      }
      expect(alarms(run, "CPUUtilization")[0]!.inputs.insufficientDataActions).toEqual(arns);
      expect(alarms(run, "SlowQueries")[0]!.inputs.insufficientDataActions).toEqual([]);
      const events = run.one(T.eventSubscription).inputs;
      expect(events).toMatchObject({ snsTopic: arns[0], sourceType: "db-instance", eventCategories: ["failover", "failure", "low storage", "maintenance", "notification"] });
      expect(events.sourceIds).toEqual(run.all(T.rds).map((r) => r.inputs.identifier));
      expect(run.one(T.cache).inputs.notificationTopicArn).toBe(arns[0]);
    });

    it("alarms on memory, latency, wraparound, engine CPU and connections from the spec", () => {
      const x = spec.aws.alarms;
      expect(alarms(run, "FreeableMemory")[0]!.inputs.threshold).toBe(x.freeableMemoryMb * 1024 * 1024);
      for (const m of ["ReadLatency", "WriteLatency"]) expect(alarms(run, m)[0]!.inputs.threshold).toBe(x.latencyMs / 1000);
      expect(alarms(run, "MaximumUsedTransactionIDs")[0]!.inputs.threshold).toBe(x.transactionIds);
      expect(alarms(run, "EngineCPUUtilization")).toHaveLength(1 + spec.aws.cacheReplicas);
      expect(alarms(run, "CurrConnections")).toHaveLength(1 + spec.aws.cacheReplicas);
      for (const a of alarms(run, "CurrConnections")) expect(a.inputs.threshold).toBe(x.cacheConnections);
      const lag = alarms(run, "ReplicaLag");
      expect(lag).toHaveLength(spec.aws.replicas.count);
      expect(lag.map((l) => l.inputs.dimensions.DBInstanceIdentifier)).toEqual(run.all(T.rds).filter((r) => !primaryDb(r)).map((r) => r.inputs.identifier));
    });

    it("alarms on the guide's thresholds from spec.alerts", () => {
      const a = spec.alerts;
      const [connections] = alarms(run, "DatabaseConnections");
      expect(connections!.inputs).toMatchObject({
        namespace: "AWS/RDS",
        comparisonOperator: "GreaterThanThreshold",
        threshold: Math.floor((spec.postgres.maxConnections * a.connectionPoolPercent) / 100),
        dimensions: { DBInstanceIdentifier: resourceName(spec, "postgres") },
      });
      const members = 1 + spec.aws.cacheReplicas;
      const memory = alarms(run, "DatabaseMemoryUsagePercentage");
      const evictions = alarms(run, "Evictions");
      const hitRate = alarms(run, "CacheHitRate");
      for (const set of [memory, evictions, hitRate]) {
        expect(set).toHaveLength(members);
        // One alarm per member cluster, each on a different member.
        expect(new Set(set.map((x) => x.inputs.dimensions.CacheClusterId)).size).toBe(members);
        for (const x of set) expect(x.inputs.dimensions.CacheClusterId).toMatch(new RegExp(`^${resourceName(spec, "redis")}-\\d{3}$`));
      }
      for (const x of memory) expect(x.inputs).toMatchObject({ comparisonOperator: "GreaterThanThreshold", threshold: a.redisMemoryPercent });
      for (const x of hitRate) expect(x.inputs).toMatchObject({ comparisonOperator: "LessThanThreshold", threshold: a.redisHitRatePercent, statistic: "Average" });
      for (const x of evictions) {
        expect(x.inputs).toMatchObject({ comparisonOperator: "GreaterThanThreshold", statistic: "Sum" });
        expect(x.inputs.threshold / x.inputs.period).toBe(a.redisEvictionsPerSecond); // per second × period
      }
      const [cpu] = alarms(run, "CPUUtilization");
      expect(cpu!.inputs.threshold).toBe(spec.aws.cpuAlarmPercent);
      const [storage] = alarms(run, "FreeStorageSpace");
      expect(storage!.inputs).toMatchObject({ comparisonOperator: "LessThanThreshold" });
      expect(storage!.inputs.threshold).toBe(Math.floor((spec.aws.rdsAllocatedStorageGb * 1024 ** 3 * spec.aws.freeStorageAlarmPercent) / 100));
      // Query time: RDS has no such metric; log_min_duration_statement's log lines are counted.
      const filter = run.one(T.logFilter);
      const logGroup = run.one(T.logGroup, (g) => g.inputs.name === `/aws/rds/instance/${resourceName(spec, "postgres")}/postgresql`);
      expect(filter.inputs.logGroupName).toBe(logGroup.inputs.name);
      expect(logGroup.inputs.retentionInDays).toBe(spec.aws.logRetentionDays);
      expect(filter.inputs.pattern).toContain("duration:");
      const [slow] = alarms(run, filter.inputs.metricTransformation.name);
      expect(slow!.inputs).toMatchObject({ namespace: filter.inputs.metricTransformation.namespace, comparisonOperator: "GreaterThanThreshold", threshold: 0 });
      expect(spec.postgres.logMinDurationStatementMs).toBe(a.queryTimeSeconds * 1000);
    });

    it("keeps the cache users' passwords and the master password secret", () => {
      expectSecretsStaySecret(run);
      for (const key of ["postgresUrl", "redisUrl", "postgresUrls", "redisUrls"]) expect(run.outputs[key]!.secret, key).toBe(true);
    });

    it("exports endpoints and TLS connection URLs", () => {
      const o = run.outputs;
      expect(o.target!.value).toBe("aws");
      expect(o.specHash!.value).toBe(specHash(spec));
      const pg = new URL(o.postgresUrl!.value as string);
      expect([pg.hostname, Number(pg.port), pg.username, pg.password, pg.pathname, pg.searchParams.get("sslmode")]).toEqual([
        o.postgresHost!.value, spec.postgres.port, spec.postgres.user, MOCK_RDS_MASTER_PASSWORD, `/${spec.postgres.database}`, "require",
      ]);
      const secretCall = run.calls.find((c) => c.token === "aws:secretsmanager/getSecretVersion:getSecretVersion");
      expect(secretCall!.inputs.secretId).toBe(o.postgresMasterSecretArn!.value);
      const redis = new URL(o.redisUrl!.value as string);
      expect([redis.protocol, redis.hostname, Number(redis.port), redis.username, redis.password]).toEqual([
        "rediss:", o.redisHost!.value, spec.redis.port, "default", mockPassword(`${spec.namePrefix}-redis-users-admin-password`),
      ]);
      const app = new URL((o.redisUrls!.value as Record<string, string>).app!);
      expect([app.username, app.password]).toEqual([spec.redis.appUser, mockPassword(`${spec.namePrefix}-redis-users-app-password`)]);
      expect(o.containerNames!.value).toBeUndefined();
    });

    it("exports the capability table generated from the spec", () => {
      // Facts stated from the spec here, not by calling the function the stack calls.
      const rows = run.outputs.capabilities!.value as CapabilityRow[];
      expect(rows.find((r) => r.key === "postgres.port")).toMatchObject({ value: String(spec.postgres.port), aws: { support: "applied", detail: expect.stringContaining(`RDS port ${spec.postgres.port}`) } });
      expect(new Set(rows.map((r) => r.key)).size).toBe(rows.length);
      expect(rows.every((r) => ["applied", "mapped", "not supported"].includes(r.aws.support))).toBe(true);
      expect(run.outputs.capabilityTable!.value).toContain(`| \`postgres.port\` | \`${spec.postgres.port}\` | **applied**: listens on 127.0.0.1:${spec.postgres.port} |`);
      expect((run.outputs.capabilityTable!.value as string).trim().split("\n")).toHaveLength(rows.length + 2);
    });

    it("provisions the backup bucket as children of one BackupBucket component", () => {
      expect(spec.aws.backupBucket.enabled).toBe(true);
      expect(run.all(T.backupBucket)).toHaveLength(1);
      const bucket = run.one(T.bucket);
      const parented = (r: Recorded) => (r.urn ?? "").split("::")[2]!.includes(`${T.backupBucket}$`);
      expect(parented(bucket)).toBe(true);
      for (const type of BUCKET_SETTINGS) {
        const setting = run.one(type);
        expect(setting.inputs.bucket, type).toBe(bucket.inputs.bucket);
        expect(parented(setting), type).toBe(true);
      }
      expect(parented(run.one(T.iamPolicy, (p) => p.name.endsWith("-backups-access")))).toBe(true);
    });

    it("names the bucket after the stack and the account, keeps it on destroy, versioned, SSE-KMS with the stack's key, closed, ACLs off", () => {
      const key = run.one(T.key, (k) => k.inputs.region === undefined);
      const keyArn = `arn:aws:mock:us-east-1:123456789012:${key.name}`;
      const bucket = run.one(T.bucket).inputs;
      expect(bucket).toEqual({ bucket: `${spec.namePrefix}-backups-123456789012`, forceDestroy: false });
      expect(run.one(T.bucketVersioning).inputs.versioningConfiguration).toEqual({ status: "Enabled" });
      expect(run.one(T.bucketEncryption).inputs.rules).toEqual([
        { applyServerSideEncryptionByDefault: { sseAlgorithm: "aws:kms", kmsMasterKeyId: keyArn }, bucketKeyEnabled: true, blockedEncryptionTypes: ["SSE-C"] },
      ]);
      expect(run.one(T.bucketPublicAccess).inputs).toMatchObject({ blockPublicAcls: true, blockPublicPolicy: true, ignorePublicAcls: true, restrictPublicBuckets: true });
      expect(run.one(T.bucketOwnership).inputs.rule).toEqual({ objectOwnership: "BucketOwnerEnforced" });
    });

    it("denies requests without TLS and puts with another encryption or key in the bucket policy", () => {
      const key = run.one(T.key, (k) => k.inputs.region === undefined);
      const keyArn = `arn:aws:mock:us-east-1:123456789012:${key.name}`;
      const arn = `arn:aws:s3:::${run.one(T.bucket).inputs.bucket}`;
      const policy = JSON.parse(run.one(T.bucketPolicy).inputs.policy);
      expect(policy.Statement).toEqual([
        { Sid: "DenyInsecureTransport", Effect: "Deny", Principal: "*", Action: "s3:*", Resource: [arn, `${arn}/*`], Condition: { Bool: { "aws:SecureTransport": "false" } } },
        { Sid: "DenyOtherEncryption", Effect: "Deny", Principal: "*", Action: "s3:PutObject", Resource: `${arn}/*`, Condition: { StringNotEqualsIfExists: { "s3:x-amz-server-side-encryption": "aws:kms" } } },
        { Sid: "DenyOtherKey", Effect: "Deny", Principal: "*", Action: "s3:PutObject", Resource: `${arn}/*`, Condition: { StringNotEqualsIfExists: { "s3:x-amz-server-side-encryption-aws-kms-key-id": keyArn } } },
      ]);
    });

    it("expires backups and WAL after max(keepDaily, 7 × keepWeekly, retentionDays) + 1 days, old versions and incomplete uploads everywhere", () => {
      const b = spec.backup;
      const days = Math.max(b.keepDaily, 7 * b.keepWeekly, b.retentionDays) + 1;
      expect(days).toBe(29); // 7 daily, 4 weekly: 28 + 1
      const env = `${spec.aws.backupBucket.prefix}/${spec.env}/`;
      expect(run.one(T.bucketLifecycle).inputs.rules).toEqual([
        { id: "expire-backups", status: "Enabled", filter: { prefix: `${env}backups/` }, expiration: { days } },
        { id: "expire-wal", status: "Enabled", filter: { prefix: `${env}wal/` }, expiration: { days } },
        {
          id: "old-versions-and-uploads",
          status: "Enabled",
          filter: {},
          expiration: { expiredObjectDeleteMarker: true },
          noncurrentVersionExpiration: { noncurrentDays: 30 },
          abortIncompleteMultipartUpload: { daysAfterInitiation: 1 },
        },
      ]);
    });

    it("gives whoever runs backups a least-privilege policy: the environment's prefix and the key through S3, nothing else", () => {
      const key = run.one(T.key, (k) => k.inputs.region === undefined);
      const keyArn = `arn:aws:mock:us-east-1:123456789012:${key.name}`;
      const arn = `arn:aws:s3:::${run.one(T.bucket).inputs.bucket}`;
      const access = run.one(T.iamPolicy, (p) => p.name.endsWith("-backups-access"));
      expect(access.inputs.name).toBe(`${spec.namePrefix}-backup-access`);
      const policy = JSON.parse(access.inputs.policy);
      const prefix = `${spec.aws.backupBucket.prefix}/${spec.env}/`;
      expect(policy.Statement).toEqual([
        { Sid: "ListTheEnvironment", Effect: "Allow", Action: "s3:ListBucket", Resource: arn, Condition: { StringLike: { "s3:prefix": [`${prefix}*`] } } },
        { Sid: "ObjectsOfTheEnvironment", Effect: "Allow", Action: ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"], Resource: `${arn}/${prefix}*` },
        { Sid: "TheBucketKeyThroughS3", Effect: "Allow", Action: ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"], Resource: keyArn, Condition: { StringEquals: { "kms:ViaService": `s3.${spec.aws.region}.amazonaws.com` } } },
      ]);
      expectLeastPrivilege(policy, arn, prefix, keyArn);
    });

    it("exports the bucket, its ARN, the repository URL for backup.repository, the policy ARN and the bucket's key", () => {
      const o = run.outputs;
      const name = run.one(T.bucket).inputs.bucket as string;
      const access = run.one(T.iamPolicy, (p) => p.name.endsWith("-backups-access"));
      expect(o.backupBucketName).toEqual({ value: name, secret: false });
      expect(o.backupBucketArn!.value).toBe(`arn:aws:s3:::${name}`);
      expect(o.backupRepositoryUrl!.value).toBe(`s3://${name}/${spec.aws.backupBucket.prefix}`);
      expect(o.backupPolicyArn!.value).toBe(`arn:aws:mock:us-east-1:123456789012:${access.name}`);
      // The key backup.repository.kmsKeyId must name: the one the bucket encrypts with.
      const rules = run.one(T.bucketEncryption).inputs.rules as { applyServerSideEncryptionByDefault: { kmsMasterKeyId: string } }[];
      expect(o.backupKmsKeyArn!.value).toBe(rules[0]!.applyServerSideEncryptionByDefault.kmsMasterKeyId);
    });

    it("passes the policy pack", () => {
      expectPoliciesPass(run);
    });
  });

  return { run: () => run, spec };
}
