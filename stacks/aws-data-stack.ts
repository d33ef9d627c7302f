/**
 * The AWS target: RDS PostgreSQL 16 and an ElastiCache Redis 7 replication group in private
 * subnets, from the spec. Settings reach RDS through a postgres16 parameter group
 * (rdsParameters: RDS units, static parameters pending-reboot) and ElastiCache through a redis7
 * parameter group (elasticacheParameters); what ElastiCache cannot take (maxmemory, save,
 * appendonly) is mapped to the node type, snapshots and replicas, as lib/aws/capabilities.ts
 * documents row by row.
 */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import {
  AwsMappingError,
  cacheFailover,
  cacheNodeFit,
  cacheSnapshotRetentionDays,
  rdsBackupWindow,
  windowsOverlap,
  type CacheNodeFit,
} from "../lib/aws/capabilities.js";
import { resourceName } from "../lib/docker/containers.js";
import { specHash as computeSpecHash, PROJECT } from "../lib/spec/load.js";
import { elasticacheParameters, rdsParameters } from "../lib/spec/render.js";
import type { Spec } from "../lib/spec/schema.js";
import { AwsAlarms } from "./aws-alarms.js";
import { AwsNetwork } from "./aws-network.js";
import { postgresUrl, redisUrl } from "./docker-data-stack.js";

export interface AwsDataStackArgs {
  /** The environment's spec, from the one loader (parseSpec/loadSpec). */
  spec: Spec;
  /** Value of the spec-hash tag on the parameter groups. Default: `specHash(spec)`. */
  specHash?: string;
  /** Length of the ElastiCache AUTH token (16-128, letters and digits). Default: 64. */
  authTokenLength?: number;
  /**
   * Keep final snapshots (RDS and ElastiCache) and automated backups when the stack is destroyed.
   * Default: `spec.aws.deletionProtection` (prod keeps them; staging does not).
   */
  finalSnapshot?: boolean;
}

/** Redis OSS engine version of ElastiCache for the spec's Redis 7 (parameter group family redis7). */
export const REDIS_ENGINE_VERSION = "7.1";
/** Performance Insights retention when enabled: 7 days is the free tier. */
export const PERFORMANCE_INSIGHTS_RETENTION_DAYS = 7;

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
  readonly redisAuthToken: random.RandomPassword;
  readonly redis: aws.elasticache.ReplicationGroup;
  readonly alarmTopic?: aws.sns.Topic;
  readonly alarms: AwsAlarms;
  readonly cacheNode: CacheNodeFit;

  readonly postgresHost: pulumi.Output<string>;
  readonly postgresPort: pulumi.Output<number>;
  readonly redisHost: pulumi.Output<string>;
  readonly redisReaderHost: pulumi.Output<string>;
  readonly redisPort: pulumi.Output<number>;
  /** Master user's URL with the password read from Secrets Manager at deploy time (secret; RDS rotates it: see README.md). */
  readonly postgresUrl: pulumi.Output<string>;
  /** `rediss://` URL with the AUTH token (secret). */
  readonly redisUrl: pulumi.Output<string>;
  /** The master user is the schema owner; the app and read-only roles are the toolkit's to create (lib/db/roles.ts). */
  readonly postgresUrls: { owner: pulumi.Output<string> };
  /** ElastiCache with an AUTH token has one user. */
  readonly redisUrls: { admin: pulumi.Output<string> };
  /** Secrets Manager secret of the RDS master password. */
  readonly postgresMasterSecretArn: pulumi.Output<string>;
  readonly alarmTopicArns: pulumi.Output<string[]>;
  /** Static parameters: changing them needs a reboot (`aws rds reboot-db-instance`). */
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

    this.network = new AwsNetwork(`${name}-network`, { spec }, comp);

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
          { name: rdsLogGroupName(identifier, type), retentionInDays: spec.aws.logRetentionDays },
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
        dbName: spec.postgres.database,
        username: spec.postgres.user,
        manageMasterUserPassword: true,
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
        performanceInsightsEnabled: spec.aws.performanceInsights,
        performanceInsightsRetentionPeriod: spec.aws.performanceInsights ? PERFORMANCE_INSIGHTS_RETENTION_DAYS : undefined,
        enabledCloudwatchLogsExports: spec.aws.logExports,
        autoMinorVersionUpgrade: true,
        allowMajorVersionUpgrade: false,
      },
      { ...res, dependsOn: this.postgresLogGroups },
    );

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
        parameters: elasticacheParameters(spec),
        tags,
      },
      res,
    );
    this.redisSubnetGroup = new aws.elasticache.SubnetGroup(
      `${name}-redis-subnets`,
      { name: replicationGroupId, description: `Private subnets of ${replicationGroupId}`, subnetIds: this.network.subnetIds },
      res,
    );
    this.redisAuthToken = new random.RandomPassword(
      `${name}-redis-auth-token`,
      { length: args.authTokenLength ?? 64, special: false, minLower: 1, minUpper: 1, minNumeric: 1 },
      { parent: this },
    );
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
        transitEncryptionEnabled: true,
        authToken: pulumi.secret(this.redisAuthToken.result),
        snapshotRetentionLimit: snapshotDays,
        snapshotWindow: snapshotDays > 0 ? spec.aws.snapshotWindow : undefined,
        maintenanceWindow: spec.aws.maintenanceWindow,
        autoMinorVersionUpgrade: true,
        finalSnapshotIdentifier: keepFinal && snapshotDays > 0 ? `${replicationGroupId}-final` : undefined,
      },
      res,
    );

    // --- Alarms -----------------------------------------------------------------------------
    if (spec.aws.createAlarmTopic) {
      this.alarmTopic = new aws.sns.Topic(`${name}-alarm-topic`, { name: resourceName(spec, "alarms") }, res);
    }
    const actions: pulumi.Input<string>[] = [
      ...(this.alarmTopic ? [this.alarmTopic.arn] : []),
      ...(spec.aws.alarmTopicArn ? [spec.aws.alarmTopicArn] : []),
    ];
    this.alarmTopicArns = pulumi.all(actions);
    const postgresLog = this.postgresLogGroups[spec.aws.logExports.indexOf("postgresql")];
    this.alarms = new AwsAlarms(
      `${name}-alarms`,
      {
        spec,
        dbInstanceIdentifier: this.postgres.identifier,
        cacheClusterIds: this.redis.memberClusters,
        cacheClusterCount: 1 + spec.aws.cacheReplicas,
        postgresLogGroupName: postgresLog?.name,
        actions,
      },
      comp,
    );

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
    this.redisUrl = pulumi.secret(
      pulumi.all([this.redis.primaryEndpointAddress, this.redisAuthToken.result]).apply(([host, token]) =>
        redisUrl({ host, port: spec.redis.port, user: "default", password: token, db: spec.redis.db, tls: true }),
      ),
    );
    this.postgresUrls = { owner: this.postgresUrl };
    this.redisUrls = { admin: this.redisUrl };

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
    });
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
