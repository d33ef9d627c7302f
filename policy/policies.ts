/**
 * The project's policies, as pure `validateResource` handlers (tests call them directly with
 * hand-built arguments; policy/index.ts puts them in a PolicyPack):
 *   - no public database: RDS not publicly accessible, no 0.0.0.0/0 or ::/0 ingress;
 *   - encryption on: RDS storage, ElastiCache at rest and in transit;
 *   - Docker containers publish ports on loopback only (no host network, no publish-all);
 *   - parameter groups hold exactly the spec's values (rdsParameters/elasticacheParameters of
 *     the stack's Pulumi.<stack>.yaml, loaded through the spec's one loader);
 *   - alarms have actions (someone hears them);
 *   - data is encrypted with a customer-managed key (rotation on), not an AWS-managed one;
 *   - RDS keeps automated backups at least 7 days;
 *   - prod's RDS instances have enhanced monitoring;
 *   - ElastiCache authenticates with RBAC user groups, not a static AUTH token.
 */
import type { ReportViolation, ResourceValidation, ResourceValidationArgs, ResourceValidationPolicy } from "@pulumi/policy";
import { loadSpec } from "../lib/spec/load.js";
import { elasticacheParameters, rdsParameters } from "../lib/spec/render.js";
import type { Spec } from "../lib/spec/schema.js";

/** Resource type tokens the policies look at. */
export const TYPES = {
  rdsInstance: "aws:rds/instance:Instance",
  rdsClusterInstance: "aws:rds/clusterInstance:ClusterInstance",
  rdsCluster: "aws:rds/cluster:Cluster",
  rdsParameterGroup: "aws:rds/parameterGroup:ParameterGroup",
  replicationGroup: "aws:elasticache/replicationGroup:ReplicationGroup",
  cacheParameterGroup: "aws:elasticache/parameterGroup:ParameterGroup",
  securityGroup: "aws:ec2/securityGroup:SecurityGroup",
  securityGroupRule: "aws:ec2/securityGroupRule:SecurityGroupRule",
  ingressRule: "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
  container: "docker:index/container:Container",
  metricAlarm: "aws:cloudwatch/metricAlarm:MetricAlarm",
  logGroup: "aws:cloudwatch/logGroup:LogGroup",
  snsTopic: "aws:sns/topic:Topic",
  kmsKey: "aws:kms/key:Key",
} as const;

/** Minimum automated backup retention of an RDS instance, days. */
export const MIN_BACKUP_RETENTION_DAYS = 7;
/** Stacks whose RDS instances must have enhanced monitoring. */
export const MONITORED_STACKS = new Set(["prod"]);

/** The arguments a handler reads; a subset of ResourceValidationArgs, so tests can build them by hand. */
export type PolicyArgs = Pick<ResourceValidationArgs, "type" | "props" | "urn" | "name">;
type Handler = (args: PolicyArgs, report: ReportViolation) => void;

const WORLD = new Set(["0.0.0.0/0", "::/0"]);
const LOOPBACK = new Set(["127.0.0.1", "::1"]);
const isTrue = (v: unknown) => v === true || v === "true";

/** The stack of a URN: `urn:pulumi:<stack>::<project>::<type>::<name>`. */
export function stackOfUrn(urn: string): string | undefined {
  return /^urn:pulumi:([^:]+)::/.exec(urn)?.[1];
}

/** No database reachable from the internet: RDS not publicly accessible, no world-open ingress. */
export const validateNoPublicDatabase: Handler = ({ type, props }, report) => {
  if ((type === TYPES.rdsInstance || type === TYPES.rdsClusterInstance) && isTrue(props.publiclyAccessible)) {
    report("the database is publicly accessible: set publiclyAccessible false and reach it from the VPC");
  }
  const world = (cidrs: unknown): string[] => (Array.isArray(cidrs) ? cidrs.filter((c): c is string => typeof c === "string" && WORLD.has(c)) : []);
  if (type === TYPES.securityGroup) {
    for (const rule of (props.ingress as Record<string, unknown>[] | undefined) ?? []) {
      for (const cidr of [...world(rule.cidrBlocks), ...world(rule.ipv6CidrBlocks)]) {
        report(`ingress on ports ${rule.fromPort}-${rule.toPort} is open to ${cidr}: list the application's CIDRs or security groups`);
      }
    }
  }
  if (type === TYPES.securityGroupRule && props.type === "ingress") {
    for (const cidr of [...world(props.cidrBlocks), ...world(props.ipv6CidrBlocks)]) {
      report(`ingress rule on ports ${props.fromPort}-${props.toPort} is open to ${cidr}`);
    }
  }
  if (type === TYPES.ingressRule) {
    for (const cidr of [props.cidrIpv4, props.cidrIpv6]) if (typeof cidr === "string" && WORLD.has(cidr)) report(`ingress rule on port ${props.fromPort} is open to ${cidr}`);
  }
};

/** Data encrypted at rest and in transit. */
export const validateEncryption: Handler = ({ type, props }, report) => {
  if ((type === TYPES.rdsInstance || type === TYPES.rdsCluster) && !isTrue(props.storageEncrypted) && props.replicateSourceDb === undefined) {
    report("storage is not encrypted: set storageEncrypted true (it cannot be turned on later without a restore)");
  }
  if (type === TYPES.replicationGroup) {
    if (!isTrue(props.atRestEncryptionEnabled)) report("ElastiCache at-rest encryption is off: set atRestEncryptionEnabled true");
    if (!isTrue(props.transitEncryptionEnabled)) report("ElastiCache in-transit encryption is off: set transitEncryptionEnabled true (and an auth token)");
  }
};

/** Docker containers listen on loopback only: every published port has ip 127.0.0.1 (or ::1). */
export const validateLoopbackPorts: Handler = ({ type, props }, report) => {
  if (type !== TYPES.container) return;
  if (props.networkMode === "host") report("network mode host exposes every port the container opens on all interfaces");
  if (isTrue(props.publishAllPorts)) report("publishAllPorts publishes the image's ports on all interfaces");
  for (const port of (props.ports as Record<string, unknown>[] | undefined) ?? []) {
    const ip = port.ip as string | undefined;
    if (ip === undefined || !LOOPBACK.has(ip)) {
      report(`port ${port.internal} is published on ${ip ?? "0.0.0.0 (the default)"}: publish on 127.0.0.1 only`);
    }
  }
};

/**
 * Parameter groups hold the spec's values, in the target's units: a postgres16 RDS group equals
 * rdsParameters(spec) and a redis7 ElastiCache group elasticacheParameters(spec) (names, values
 * and, for RDS, apply methods), where spec is the stack's spec. `specOf` defaults to loadSpec.
 */
export function validateParametersMatchSpec(specOf: (stack: string) => Spec = (stack) => loadSpec(stack)): Handler {
  return ({ type, props, urn }, report) => {
    const isRds = type === TYPES.rdsParameterGroup && /^postgres\d+$/.test(String(props.family));
    const isCache = type === TYPES.cacheParameterGroup && /^redis\d+$/.test(String(props.family));
    if (!isRds && !isCache) return;
    const stack = stackOfUrn(urn);
    let spec: Spec;
    try {
      if (!stack) throw new Error(`no stack in URN ${urn}`);
      spec = specOf(stack);
    } catch (error) {
      report(`cannot load the spec of stack ${stack ?? "?"} to compare parameters: ${(error as Error).message}`);
      return;
    }
    const family = isRds ? `postgres${spec.postgres.version}` : `redis${spec.redis.version}`;
    if (props.family !== family) report(`family ${props.family} is not the spec's ${family}`);
    const expected = new Map(
      (isRds ? rdsParameters(spec) : elasticacheParameters(spec).map((p) => ({ ...p, applyMethod: undefined }))).map((p) => [p.name, p] as const),
    );
    const actual = new Map(((props.parameters as { name: string; value: unknown; applyMethod?: string }[] | undefined) ?? []).map((p) => [p.name, p] as const));
    for (const [name, want] of expected) {
      const got = actual.get(name);
      if (!got) report(`parameter ${name} is missing; the spec says ${want.value}`);
      else {
        if (String(got.value) !== want.value) report(`parameter ${name} = ${got.value}, the spec says ${want.value}`);
        if (isRds && (got.applyMethod ?? "immediate") !== want.applyMethod) report(`parameter ${name} applies ${got.applyMethod ?? "immediate"}, must be ${want.applyMethod}`);
      }
    }
    for (const name of actual.keys()) if (!expected.has(name)) report(`parameter ${name} is not in the spec: add it to lib/spec (schema + render) instead`);
  };
}

export const validateParametersMatchStackSpec = validateParametersMatchSpec();

const isSet = (v: unknown) => typeof v === "string" && v.length > 0;
const isRds = (type: string) => type === TYPES.rdsInstance || type === TYPES.rdsCluster;

/** Every alarm notifies someone: alarm actions present and enabled. */
export const validateAlarmActions: Handler = ({ type, props }, report) => {
  if (type !== TYPES.metricAlarm) return;
  const actions = Array.isArray(props.alarmActions) ? props.alarmActions : [];
  if (actions.length === 0) report(`alarm ${props.name ?? ""} has no alarmActions: nobody hears it; give the stack a topic (aws.createAlarmTopic or aws.alarmTopicArn)`);
  if (props.actionsEnabled === false || props.actionsEnabled === "false") report(`alarm ${props.name ?? ""} has actionsEnabled false`);
};

/** Customer-managed keys (ours, rotated) for every store of data: RDS, ElastiCache, logs, SNS. */
export const validateCustomerManagedKeys: Handler = ({ type, props }, report) => {
  const awsManaged = (v: unknown) => typeof v === "string" && /^alias\/aws\//.test(v);
  if (isRds(type)) {
    if (!isSet(props.kmsKeyId) || awsManaged(props.kmsKeyId)) report("RDS storage uses the AWS-managed key: set kmsKeyId to the stack's customer-managed key (snapshots can then be shared across accounts)");
    if (isTrue(props.performanceInsightsEnabled) && (!isSet(props.performanceInsightsKmsKeyId) || awsManaged(props.performanceInsightsKmsKeyId))) report("Performance Insights uses the AWS-managed key: set performanceInsightsKmsKeyId");
    if (isTrue(props.manageMasterUserPassword) && (!isSet(props.masterUserSecretKmsKeyId) || awsManaged(props.masterUserSecretKmsKeyId))) report("the master-user secret uses the AWS-managed key: set masterUserSecretKmsKeyId");
  }
  if (type === TYPES.replicationGroup && (!isSet(props.kmsKeyId) || awsManaged(props.kmsKeyId))) report("ElastiCache at-rest encryption uses the AWS-managed key: set kmsKeyId");
  if (type === TYPES.logGroup && !isSet(props.kmsKeyId)) report(`log group ${props.name ?? ""} is not encrypted with the stack's key: set kmsKeyId`);
  if (type === TYPES.snsTopic && (!isSet(props.kmsMasterKeyId) || awsManaged(props.kmsMasterKeyId))) report("the SNS topic is not encrypted with the stack's key: set kmsMasterKeyId");
  if (type === TYPES.kmsKey && !isTrue(props.enableKeyRotation)) report("the KMS key does not rotate: set enableKeyRotation true");
};

/** RDS keeps automated backups (point-in-time recovery) at least MIN_BACKUP_RETENTION_DAYS. Read replicas take the source's. */
export const validateBackupRetention: Handler = ({ type, props }, report) => {
  if (type !== TYPES.rdsInstance || props.replicateSourceDb !== undefined) return;
  const days = Number(props.backupRetentionPeriod ?? 0);
  if (!(days >= MIN_BACKUP_RETENTION_DAYS)) report(`backupRetentionPeriod ${props.backupRetentionPeriod ?? "unset"} is below ${MIN_BACKUP_RETENTION_DAYS} days: set backup.retentionDays ≥ ${MIN_BACKUP_RETENTION_DAYS}`);
};

/** prod's RDS instances have enhanced monitoring (OS metrics every aws.monitoring.enhancedIntervalSeconds). */
export const validateEnhancedMonitoring: Handler = ({ type, props, urn }, report) => {
  if (type !== TYPES.rdsInstance || !MONITORED_STACKS.has(stackOfUrn(urn) ?? "")) return;
  if (!(Number(props.monitoringInterval ?? 0) > 0) || !isSet(props.monitoringRoleArn)) {
    report(`enhanced monitoring is off (monitoringInterval ${props.monitoringInterval ?? 0}): set aws.monitoring.enhancedIntervalSeconds in Pulumi.${stackOfUrn(urn)}.yaml`);
  }
};

/** ElastiCache authenticates users with an RBAC user group (per-user ACLs), not one static AUTH token. */
export const validateCacheRbac: Handler = ({ type, props }, report) => {
  if (type !== TYPES.replicationGroup) return;
  const groups = Array.isArray(props.userGroupIds) ? props.userGroupIds : [];
  if (groups.length === 0) report("ElastiCache has no RBAC user group: set userGroupIds (admin and app users with their own ACLs)");
  if (props.authToken !== undefined) report("ElastiCache uses a static AUTH token: replace it with an RBAC user group");
};

const asValidation = (h: Handler): ResourceValidation => (args, report) => h(args, report);

export const policies: ResourceValidationPolicy[] = [
  {
    name: "no-public-database",
    description: "Databases are not publicly accessible and no security group admits 0.0.0.0/0 or ::/0.",
    enforcementLevel: "mandatory",
    validateResource: asValidation(validateNoPublicDatabase),
  },
  {
    name: "encryption-on",
    description: "RDS storage is encrypted; ElastiCache encrypts at rest and in transit.",
    enforcementLevel: "mandatory",
    validateResource: asValidation(validateEncryption),
  },
  {
    name: "loopback-ports-only",
    description: "Docker containers publish ports on 127.0.0.1 only.",
    enforcementLevel: "mandatory",
    validateResource: asValidation(validateLoopbackPorts),
  },
  {
    name: "parameters-match-spec",
    description: "RDS and ElastiCache parameter groups hold exactly the values of the stack's spec (Pulumi.<stack>.yaml).",
    enforcementLevel: "mandatory",
    validateResource: asValidation(validateParametersMatchStackSpec),
  },
  {
    name: "alarms-have-actions",
    description: "Every CloudWatch alarm notifies a topic.",
    enforcementLevel: "mandatory",
    validateResource: asValidation(validateAlarmActions),
  },
  {
    name: "customer-managed-keys",
    description: "RDS, Performance Insights, the master secret, ElastiCache, log groups and SNS use a customer-managed KMS key with rotation.",
    enforcementLevel: "mandatory",
    validateResource: asValidation(validateCustomerManagedKeys),
  },
  {
    name: "backups-retained",
    description: `RDS keeps automated backups at least ${MIN_BACKUP_RETENTION_DAYS} days.`,
    enforcementLevel: "mandatory",
    validateResource: asValidation(validateBackupRetention),
  },
  {
    name: "enhanced-monitoring-in-prod",
    description: "prod's RDS instances have enhanced monitoring with its role.",
    enforcementLevel: "mandatory",
    validateResource: asValidation(validateEnhancedMonitoring),
  },
  {
    name: "elasticache-rbac",
    description: "ElastiCache uses an RBAC user group, not a static AUTH token.",
    enforcementLevel: "mandatory",
    validateResource: asValidation(validateCacheRbac),
  },
];
