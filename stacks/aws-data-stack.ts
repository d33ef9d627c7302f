/**
 * The AWS target: RDS PostgreSQL 16 and an ElastiCache Redis 7 replication group in private
 * subnets, from the spec. Settings reach RDS through a postgres16 parameter group
 * (rdsParameters: RDS units, static parameters pending-reboot) and ElastiCache through a redis7
 * parameter group (elasticacheParameters); what ElastiCache cannot take (maxmemory, save,
 * appendonly) is mapped to the node type, snapshots and replicas, as lib/aws/mapping.ts
 * documents row by row. Production surface (issue 16): one customer-managed key for everything
 * (aws-key.ts), alarms and events to an encrypted topic (aws-alert-topic.ts, aws-alarms.ts),
 * enhanced monitoring and logs (aws-monitoring.ts), ElastiCache RBAC (aws-cache-users.ts),
 * scheduled cache snapshots (aws-cache-snapshots.ts), RDS read replicas, cross-region backups
 * and IAM database authentication. The S3 backup repository's bucket (issue 13:
 * aws-backup-bucket.ts) when aws.backupBucket.enabled.
 */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import {
  AwsMappingError,
  awsAlarmRules,
  cacheFailover,
  cacheNodeFit,
  cacheSnapshotRetentionDays,
  rdsBackupWindow,
  windowsOverlap,
  type CacheNodeFit,
} from "../lib/aws/mapping.js";
import { lifecycleRules } from "../lib/aws/backup-bucket.js";
import { cacheUsers } from "../lib/aws/cache-acl.js";
import { postgresUrl, redisUrl, resourceName } from "../lib/spec/access.js";
import { specHash as computeSpecHash, PROJECT } from "../lib/spec/load.js";
import { elasticacheParameters, rdsParameters } from "../lib/spec/render.js";
import type { Spec } from "../lib/spec/schema.js";
import { AwsAlarms } from "./aws-alarms.js";
import { AwsAlertTopic } from "./aws-alert-topic.js";
import { BackupBucket } from "./aws-backup-bucket.js";
import { AwsCacheSnapshots } from "./aws-cache-snapshots.js";
import { AwsCacheUsers } from "./aws-cache-users.js";
import { AwsKey } from "./aws-key.js";
import { AwsMonitoring } from "./aws-monitoring.js";
import { AwsNetwork, existingNetwork, pickZone } from "./aws-network.js";

export interface AwsDataStackArgs {
  /** The environment's spec, from the one loader (parseSpec/loadSpec). */
  spec: Spec;
  /** Value of the spec-hash tag on the parameter groups. Default: `specHash(spec)`. */
  specHash?: string;
  /**
   * Length of the ElastiCache users' passwords (16-128, letters and digits).
   * @default 64
   */
  passwordLength?: number;
  /**
   * Keep final snapshots (RDS and ElastiCache) and automated backups when the stack is destroyed.
   * Default: `spec.aws.deletionProtection` (prod keeps them; staging does not).
   */
  finalSnapshot?: boolean;
}

/** Redis OSS engine version of ElastiCache for the spec's Redis 7 (parameter group family redis7). */
export const REDIS_ENGINE_VERSION = "7.1";

/** RDS PostgreSQL 16 + ElastiCache Redis 7, from the spec. */
export class AwsDataStack extends pulumi.ComponentResource {
  readonly target = "aws" as const;
  readonly specHash: string;
  readonly provider: aws.Provider;
  readonly network: AwsNetwork;
  readonly postgresParameterGroup: aws.rds.ParameterGroup;
  readonly postgresSubnetGroup: aws.rds.SubnetGroup;
  readonly postgresLogGroups: aws.cloudwatch.LogGroup[];
  readonly postgres: aws.rds.Instance;
  readonly redisParameterGroup: aws.elasticache.ParameterGroup;
  readonly redisSubnetGroup: aws.elasticache.SubnetGroup;
  readonly redisUsers: AwsCacheUsers;
  readonly redis: aws.elasticache.ReplicationGroup;
  readonly key: AwsKey;
  readonly monitoring: AwsMonitoring;
  readonly alertTopic: AwsAlertTopic;
  readonly alarmTopic?: aws.sns.Topic;
  readonly postgresReplicas: aws.rds.Instance[] = [];
  /** Present when aws.replicas.backupRegion is set. */
  readonly backupReplication?: aws.rds.InstanceAutomatedBackupsReplication;
  /** Present when aws.iamAuth.enabled: `rds-db:connect` as postgres.appUser. */
  readonly iamConnectPolicy?: aws.iam.Policy;
  readonly cacheSnapshots?: AwsCacheSnapshots;
  readonly alarms: AwsAlarms;
  readonly cacheNode: CacheNodeFit;
  /** Present when aws.backupBucket.enabled. */
  readonly backupBucket?: BackupBucket;

  readonly postgresHost: pulumi.Output<string>;
  readonly postgresPort: pulumi.Output<number>;
  readonly redisHost: pulumi.Output<string>;
  readonly redisReaderHost: pulumi.Output<string>;
  readonly redisPort: pulumi.Output<number>;
  /** Master user's URL with the password read from Secrets Manager at deploy time (secret; RDS rotates it: see README.md). */
  readonly postgresUrl: pulumi.Output<string>;
  /** `rediss://` URL of the admin (`default`) user (secret). */
  readonly redisUrl: pulumi.Output<string>;
  /** The master user is the schema owner; the app and read-only roles are the toolkit's to create (lib/db/roles.ts). */
  readonly postgresUrls: { owner: pulumi.Output<string> };
  /** ElastiCache RBAC users: admin (`default`) and the app user (secrets). */
  readonly redisUrls: { admin: pulumi.Output<string>; app: pulumi.Output<string> };
  /** Read replicas' endpoints. */
  readonly postgresReaderHosts: pulumi.Output<string[]>;
  /** Secrets Manager secret of the RDS master password. */
  readonly postgresMasterSecretArn: pulumi.Output<string>;
  readonly alarmTopicArns: pulumi.Output<string[]>;
  /** Static parameters: changing them needs a reboot (`npm run reboot -- --env <stack>`). */
  readonly pendingRebootParameters: string[];

  constructor(name: string, args: AwsDataStackArgs, opts?: pulumi.ComponentResourceOptions) {
    super("crypto-prediction-infra:index:AwsDataStack", name, {}, opts);
    const { spec } = args;
    const hash = args.specHash ?? computeSpecHash(spec);
    this.specHash = hash;
    const keepFinal = args.finalSnapshot ?? spec.aws.deletionProtection;

    // Mapping checks first: a spec AWS cannot honour fails before anything is created.
    this.cacheNode = cacheNodeFit(spec);
    const backupWindow = rdsBackupWindow(spec.backup.schedule);
    if (backupWindow && windowsOverlap(backupWindow, spec.aws.maintenanceWindow)) {
      throw new AwsMappingError("backup.schedule", `RDS backup window ${backupWindow} overlaps aws.maintenanceWindow ${spec.aws.maintenanceWindow}`);
    }
    if (windowsOverlap(spec.aws.snapshotWindow, spec.aws.maintenanceWindow)) {
      throw new AwsMappingError("aws.snapshotWindow", `${spec.aws.snapshotWindow} overlaps aws.maintenanceWindow ${spec.aws.maintenanceWindow}`);
    }

    this.provider = new aws.Provider(
      `${name}-aws`,
      { region: spec.aws.region as aws.Region, defaultTags: { tags: { project: PROJECT, env: spec.env } } },
      { parent: this },
    );
    const res = { parent: this, provider: this.provider };
    const comp = { parent: this, providers: [this.provider] };
    const tags = { "spec-hash": hash };

    this.network = new AwsNetwork(
      `${name}-network`,
      {
        namePrefix: spec.namePrefix,
        existing: existingNetwork(spec),
        vpcCidr: spec.aws.vpcCidr,
        allowed: { cidrs: spec.aws.allowedCidrs, securityGroupIds: spec.aws.allowedSecurityGroupIds },
        postgresPort: spec.postgres.port,
        redisPort: spec.redis.port,
      },
      comp,
    );
    this.key = new AwsKey(
      `${name}-kms`,
      { namePrefix: spec.namePrefix, region: spec.aws.region, existingKeyArn: spec.aws.kms.keyArn, deletionWindowDays: spec.aws.kms.deletionWindowDays },
      comp,
    );
    const keyArn = this.key.arn;
    const monitoring = spec.aws.monitoring;
    const createdVpc = this.network.vpc;
    this.monitoring = new AwsMonitoring(
      `${name}-monitoring`,
      {
        namePrefix: spec.namePrefix,
        kmsKeyArn: keyArn,
        logRetentionDays: spec.aws.logRetentionDays,
        enhancedMonitoringRole: monitoring.enhancedIntervalSeconds > 0,
        cacheLogs: monitoring.cacheLogs,
        flowLogs: monitoring.flowLogs && createdVpc ? { vpcId: createdVpc.id, trafficType: monitoring.flowLogTraffic } : undefined,
      },
      comp,
    );
    this.alertTopic = new AwsAlertTopic(
      `${name}-alerts`,
      {
        namePrefix: spec.namePrefix,
        kmsKeyArn: keyArn,
        createTopic: spec.aws.createAlarmTopic,
        existingTopicArn: spec.aws.alarmTopicArn,
        emails: spec.aws.alarms.emails,
        httpsEndpoints: spec.aws.alarms.httpsEndpoints,
      },
      comp,
    );
    this.alarmTopic = this.alertTopic.topic;
    const monitoringRoleArn = this.monitoring.enhancedMonitoringRole?.arn;

    // --- PostgreSQL -------------------------------------------------------------------------
    const identifier = resourceName(spec, "postgres");
    const rdsParams = rdsParameters(spec);
    this.pendingRebootParameters = rdsParams.filter((p) => p.applyMethod === "pending-reboot").map((p) => p.name);
    this.postgresParameterGroup = new aws.rds.ParameterGroup(
      `${name}-postgres-params`,
      {
        name: resourceName(spec, `postgres${spec.postgres.version}`),
        family: `postgres${spec.postgres.version}`,
        description: `PostgreSQL ${spec.postgres.version} settings of ${PROJECT} (Pulumi.${spec.env}.yaml)`,
        parameters: rdsParams.map((p) => ({ name: p.name, value: p.value, applyMethod: p.applyMethod })),
        tags,
      },
      res,
    );
    this.postgresSubnetGroup = new aws.rds.SubnetGroup(
      `${name}-postgres-subnets`,
      { name: identifier, description: `Private subnets of ${identifier}`, subnetIds: this.network.subnetIds },
      res,
    );
    // Created before the instance so that RDS writes into it (with the spec's retention) instead of making its own.
    this.postgresLogGroups = spec.aws.logExports.map(
      (type) =>
        new aws.cloudwatch.LogGroup(
          `${name}-postgres-log-${type}`,
          { name: rdsLogGroupName(identifier, type), retentionInDays: spec.aws.logRetentionDays, kmsKeyId: keyArn },
          res,
        ),
    );
    this.postgres = new aws.rds.Instance(
      `${name}-postgres`,
      {
        identifier,
        engine: "postgres",
        engineVersion: String(spec.postgres.version),
        instanceClass: spec.aws.rdsInstanceClass,
        allocatedStorage: spec.aws.rdsAllocatedStorageGb,
        maxAllocatedStorage: spec.aws.rdsMaxAllocatedStorageGb,
        storageType: "gp3",
        storageEncrypted: true,
        kmsKeyId: keyArn,
        dbName: spec.postgres.database,
        username: spec.postgres.user,
        manageMasterUserPassword: true,
        masterUserSecretKmsKeyId: keyArn,
        iamDatabaseAuthenticationEnabled: spec.aws.iamAuth.enabled,
        port: spec.postgres.port,
        dbSubnetGroupName: this.postgresSubnetGroup.name,
        vpcSecurityGroupIds: [this.network.postgresSecurityGroup.id],
        parameterGroupName: this.postgresParameterGroup.name,
        publiclyAccessible: false,
        multiAz: spec.aws.multiAz,
        deletionProtection: spec.aws.deletionProtection,
        backupRetentionPeriod: spec.backup.retentionDays,
        backupWindow,
        maintenanceWindow: spec.aws.maintenanceWindow,
        copyTagsToSnapshot: true,
        deleteAutomatedBackups: !keepFinal,
        skipFinalSnapshot: !keepFinal,
        finalSnapshotIdentifier: keepFinal ? `${identifier}-final` : undefined,
        ...this.observability(spec, keyArn, monitoringRoleArn),
        enabledCloudwatchLogsExports: spec.aws.logExports,
        autoMinorVersionUpgrade: true,
        allowMajorVersionUpgrade: false,
        caCertIdentifier: spec.aws.caCertIdentifier,
        engineLifecycleSupport: spec.aws.engineLifecycleSupport,
        blueGreenUpdate: { enabled: spec.aws.blueGreenUpdate },
        // One-zone primary with replicas: pinned to the first zone so the replicas are elsewhere.
        availabilityZone: !spec.aws.multiAz && spec.aws.replicas.count > 0 ? this.network.zoneNames?.apply((z) => pickZone(z, 0)) : undefined,
      },
      { ...res, dependsOn: this.postgresLogGroups },
    );

    // Read replicas (aws.replicas.count), each in a zone other than the primary's first zone.
    for (let i = 0; i < spec.aws.replicas.count; i++) {
      this.postgresReplicas.push(
        new aws.rds.Instance(
          `${name}-postgres-replica-${i + 1}`,
          {
            identifier: `${identifier}-replica-${i + 1}`,
            replicateSourceDb: this.postgres.identifier,
            instanceClass: spec.aws.replicas.instanceClass ?? spec.aws.rdsInstanceClass,
            storageType: "gp3",
            storageEncrypted: true,
            kmsKeyId: keyArn,
            vpcSecurityGroupIds: [this.network.postgresSecurityGroup.id],
            parameterGroupName: this.postgresParameterGroup.name,
            publiclyAccessible: false,
            availabilityZone: this.network.zoneNames?.apply((z) => pickZone(z, i + 1)),
            iamDatabaseAuthenticationEnabled: spec.aws.iamAuth.enabled,
            ...this.observability(spec, keyArn, monitoringRoleArn),
            enabledCloudwatchLogsExports: spec.aws.logExports,
            caCertIdentifier: spec.aws.caCertIdentifier,
            autoMinorVersionUpgrade: true,
            maintenanceWindow: spec.aws.maintenanceWindow,
            deletionProtection: spec.aws.deletionProtection,
            skipFinalSnapshot: true,
            copyTagsToSnapshot: true,
          },
          res,
        ),
      );
    }
    if (spec.aws.replicas.backupRegion) {
      // The replicated backups are encrypted with a key in their own region.
      const remoteKey = new AwsKey(
        `${name}-kms-${spec.aws.replicas.backupRegion}`,
        { namePrefix: spec.namePrefix, region: spec.aws.replicas.backupRegion, inRegion: true, deletionWindowDays: spec.aws.kms.deletionWindowDays, purpose: "backups" },
        comp,
      );
      this.backupReplication = new aws.rds.InstanceAutomatedBackupsReplication(
        `${name}-postgres-backup-replication`,
        { sourceDbInstanceArn: this.postgres.arn, region: spec.aws.replicas.backupRegion, retentionPeriod: spec.backup.retentionDays, kmsKeyId: remoteKey.arn },
        res,
      );
    }
    if (spec.aws.iamAuth.enabled) {
      const account = aws.getCallerIdentityOutput({}, { parent: this, provider: this.provider }).accountId;
      this.iamConnectPolicy = new aws.iam.Policy(
        `${name}-postgres-connect`,
        {
          name: resourceName(spec, "postgres-connect"),
          description: `Connect to ${identifier} as ${spec.postgres.appUser} with IAM authentication`,
          policy: pulumi.all([account, this.postgres.resourceId]).apply(([acct, resourceId]) =>
            JSON.stringify({
              Version: "2012-10-17",
              Statement: [{ Effect: "Allow", Action: "rds-db:connect", Resource: `arn:aws:rds-db:${spec.aws.region}:${acct}:dbuser:${resourceId}/${spec.postgres.appUser}` }],
            }),
          ),
        },
        res,
      );
      if (spec.aws.iamAuth.roleName) {
        new aws.iam.RolePolicyAttachment(`${name}-postgres-connect-role`, { role: spec.aws.iamAuth.roleName, policyArn: this.iamConnectPolicy.arn }, res);
      }
    }

    // --- Redis ------------------------------------------------------------------------------
    const replicationGroupId = resourceName(spec, "redis");
    const failover = cacheFailover(spec);
    const snapshotDays = cacheSnapshotRetentionDays(spec);
    this.redisParameterGroup = new aws.elasticache.ParameterGroup(
      `${name}-redis-params`,
      {
        name: resourceName(spec, `redis${spec.redis.version}`),
        family: `redis${spec.redis.version}`,
        description: `Redis ${spec.redis.version} settings of ${PROJECT} (Pulumi.${spec.env}.yaml)`,
        parameters: elasticacheParameters(spec).map((p) => ({ name: p.name, value: p.value })),
        tags,
      },
      res,
    );
    this.redisSubnetGroup = new aws.elasticache.SubnetGroup(
      `${name}-redis-subnets`,
      { name: replicationGroupId, description: `Private subnets of ${replicationGroupId}`, subnetIds: this.network.subnetIds },
      res,
    );
    this.redisUsers = new AwsCacheUsers(`${name}-redis-users`, { namePrefix: spec.namePrefix, users: cacheUsers(spec), passwordLength: args.passwordLength }, comp);
    this.redis = new aws.elasticache.ReplicationGroup(
      `${name}-redis`,
      {
        replicationGroupId,
        description: `Redis ${spec.redis.version} cache of ${PROJECT} (${spec.env})`,
        engine: "redis",
        engineVersion: REDIS_ENGINE_VERSION,
        nodeType: this.cacheNode.nodeType,
        numCacheClusters: 1 + spec.aws.cacheReplicas,
        automaticFailoverEnabled: failover,
        multiAzEnabled: failover,
        port: spec.redis.port,
        parameterGroupName: this.redisParameterGroup.name,
        subnetGroupName: this.redisSubnetGroup.name,
        securityGroupIds: [this.network.redisSecurityGroup.id],
        atRestEncryptionEnabled: true,
        kmsKeyId: keyArn,
        transitEncryptionEnabled: true,
        userGroupIds: [this.redisUsers.userGroup.userGroupId],
        logDeliveryConfigurations: this.monitoring.cacheLogDelivery,
        notificationTopicArn: this.alertTopic.primaryArn,
        snapshotRetentionLimit: snapshotDays,
        snapshotWindow: snapshotDays > 0 ? spec.aws.snapshotWindow : undefined,
        maintenanceWindow: spec.aws.maintenanceWindow,
        autoMinorVersionUpgrade: true,
        finalSnapshotIdentifier: keepFinal && snapshotDays > 0 ? `${replicationGroupId}-final` : undefined,
      },
      res,
    );
    if (spec.aws.cacheSnapshots.enabled) {
      const { schedule, keepHours } = spec.aws.cacheSnapshots;
      this.cacheSnapshots = new AwsCacheSnapshots(
        `${name}-redis-snapshots`,
        { namePrefix: spec.namePrefix, env: spec.env, region: spec.aws.region, schedule, keepHours, replicationGroupId: this.redis.replicationGroupId, kmsKeyArn: keyArn },
        comp,
      );
    }

    // --- Alarms -----------------------------------------------------------------------------
    const actions = this.alertTopic.arns;
    this.alarmTopicArns = pulumi.all(actions);
    const postgresLog = this.postgresLogGroups[spec.aws.logExports.indexOf("postgresql")];
    this.alarms = new AwsAlarms(
      `${name}-alarms`,
      {
        namePrefix: spec.namePrefix,
        env: spec.env,
        rules: awsAlarmRules(spec),
        rdsEventCategories: spec.aws.events.rdsCategories,
        dbInstanceIdentifier: this.postgres.identifier,
        cacheClusterIds: this.redis.memberClusters,
        cacheClusterCount: 1 + spec.aws.cacheReplicas,
        postgresLogGroupName: postgresLog?.name,
        actions,
        replicaIdentifiers: this.postgresReplicas.map((r) => r.identifier),
        eventTopicArn: this.alertTopic.primaryArn,
      },
      comp,
    );

    // --- Backup repository ------------------------------------------------------------------
    if (spec.aws.backupBucket.enabled) {
      const b = spec.aws.backupBucket;
      this.backupBucket = new BackupBucket(
        `${name}-backups`,
        {
          namePrefix: spec.namePrefix,
          env: spec.env,
          region: spec.aws.region,
          prefix: b.prefix,
          kmsKeyArn: b.kmsKeyArn ?? keyArn,
          existingBucketName: b.bucketName,
          lifecycleRules: lifecycleRules(spec),
          forceDestroy: b.forceDestroy,
          accessLogBucket: b.accessLogBucket,
          roleName: b.roleName,
        },
        comp,
      );
    }

    // --- Outputs ----------------------------------------------------------------------------
    this.postgresHost = this.postgres.address;
    this.postgresPort = this.postgres.port;
    this.redisHost = this.redis.primaryEndpointAddress;
    this.redisReaderHost = this.redis.readerEndpointAddress;
    this.redisPort = pulumi.output(spec.redis.port);
    this.postgresMasterSecretArn = this.postgres.masterUserSecrets.apply(masterSecretArn);
    const master = aws.secretsmanager.getSecretVersionOutput({ secretId: this.postgresMasterSecretArn }, { parent: this, provider: this.provider });
    this.postgresUrl = pulumi.secret(
      pulumi.all([this.postgres.address, this.postgres.port, master.secretString]).apply(([host, port, secretString]) =>
        postgresUrl({ host, port, user: spec.postgres.user, password: masterPassword(secretString), database: spec.postgres.database, sslmode: "require" }),
      ),
    );
    const cacheUrl = (role: "admin" | "app") =>
      pulumi.secret(
        pulumi.all([this.redis.primaryEndpointAddress, this.redisUsers.passwords[role].result]).apply(([host, password]) =>
          redisUrl({ host, port: spec.redis.port, user: this.redisUsers.userNames[role], password, db: spec.redis.db, tls: true }),
        ),
      );
    this.redisUrl = cacheUrl("admin");
    this.postgresUrls = { owner: this.postgresUrl };
    this.redisUrls = { admin: this.redisUrl, app: cacheUrl("app") };
    this.postgresReaderHosts = pulumi.all(this.postgresReplicas.map((r) => r.address));

    this.registerOutputs({
      specHash: hash,
      postgresHost: this.postgresHost,
      postgresPort: this.postgresPort,
      redisHost: this.redisHost,
      redisReaderHost: this.redisReaderHost,
      redisPort: this.redisPort,
      postgresUrl: this.postgresUrl,
      redisUrl: this.redisUrl,
      postgresMasterSecretArn: this.postgresMasterSecretArn,
      alarmTopicArns: this.alarmTopicArns,
      postgresReaderHosts: this.postgresReaderHosts,
      kmsKeyArn: keyArn,
      backupBucketName: this.backupBucket?.bucketName,
      backupBucketArn: this.backupBucket?.bucketArn,
      backupRepositoryUrl: this.backupBucket?.repositoryUrl,
      backupPolicyArn: this.backupBucket?.policyArn,
    });
  }

  /** Performance Insights (with the stack's key) and enhanced monitoring, for the primary and each replica. */
  private observability(spec: Spec, keyArn: pulumi.Input<string>, monitoringRoleArn: pulumi.Input<string> | undefined) {
    const m = spec.aws.monitoring;
    return {
      performanceInsightsEnabled: spec.aws.performanceInsights,
      performanceInsightsKmsKeyId: spec.aws.performanceInsights ? keyArn : undefined,
      performanceInsightsRetentionPeriod: spec.aws.performanceInsights ? m.performanceInsightsRetentionDays : undefined,
      monitoringInterval: m.enhancedIntervalSeconds,
      monitoringRoleArn: m.enhancedIntervalSeconds > 0 ? monitoringRoleArn : undefined,
    };
  }
}

// ---------------------------------------------------------------------------------------------
// Pure helpers
// ---------------------------------------------------------------------------------------------

/** The log group RDS writes an exported log to. */
export function rdsLogGroupName(identifier: string, type: string): string {
  return `/aws/rds/instance/${identifier}/${type}`;
}

/** The ARN of the RDS-managed master password secret. */
export function masterSecretArn(secrets: { secretArn: string }[] | undefined): string {
  const arn = secrets?.[0]?.secretArn;
  if (!arn) throw new Error("the RDS instance reports no managed master password secret (manageMasterUserPassword)");
  return arn;
}

/** The password in an RDS-managed secret (`{"username": …, "password": …}`). */
export function masterPassword(secretString: string): string {
  const parsed = JSON.parse(secretString) as { password?: unknown };
  if (typeof parsed.password !== "string") throw new Error("the RDS master secret has no password field");
  return parsed.password;
}
