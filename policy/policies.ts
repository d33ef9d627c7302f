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
 *   - ElastiCache authenticates with RBAC user groups, not a static AUTH token;
 *   - every S3 bucket (the backup repository's) is versioned, SSE-KMS with a customer-managed
 *     key, closed to the public, TLS-only and has a lifecycle (stack handlers: a bucket's
 *     settings are resources of their own, so a missing one is only seen across the stack).
 */
import type { ReportViolation, ResourceValidation, ResourceValidationArgs, ResourceValidationPolicy, StackValidationPolicy } from "@pulumi/policy";
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
  s3Bucket: "aws:s3/bucket:Bucket",
  s3BucketV2: "aws:s3/bucketV2:BucketV2",
  s3Versioning: "aws:s3/bucketVersioning:BucketVersioning",
  s3Encryption: "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
  s3PublicAccessBlock: "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
  s3BucketPolicy: "aws:s3/bucketPolicy:BucketPolicy",
  s3Lifecycle: "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
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

// ---------------------------------------------------------------------------------------------
// S3 buckets (stack handlers)
// ---------------------------------------------------------------------------------------------

/** A resource as a stack handler reads it; propertyDependencies as the pack passes them (optional for tests). */
export type StackResourceArgs = PolicyArgs & { propertyDependencies?: Record<string, { urn: string }[]> };
export type StackHandler = (resources: StackResourceArgs[], report: ReportViolation) => void;

const BUCKET_TYPES = new Set<string>([TYPES.s3Bucket, TYPES.s3BucketV2]);
/** The deprecated *V2 setting resources count as the current ones. */
const v2 = (type: string) => type.replace(/^aws:s3\/(\w+):(\w+)$/, "aws:s3/$1V2:$2V2");

/** A setting resource belongs to a bucket when its `bucket` comes from it (dependency) or names it. */
function belongsTo(setting: StackResourceArgs, bucket: StackResourceArgs): boolean {
  if (setting.propertyDependencies?.bucket?.some((d) => d.urn === bucket.urn)) return true;
  return isSet(setting.props.bucket) && setting.props.bucket === bucket.props.bucket;
}

/**
 * One bucket setting: every resource of `settingType` passes `problems`, and every bucket has one.
 * `what` and `fix` word the report for a bucket without it.
 */
function bucketSetting(settingType: string, what: string, fix: string, problems: (props: Record<string, any>) => string[]): StackHandler {
  return (resources, report) => {
    const settings = resources.filter((r) => r.type === settingType || r.type === v2(settingType));
    for (const s of settings) for (const p of problems(s.props)) report(`${s.name}: ${p}`);
    for (const bucket of resources.filter((r) => BUCKET_TYPES.has(r.type))) {
      if (!settings.some((s) => belongsTo(s, bucket))) report(`bucket ${bucket.props.bucket ?? bucket.name} has no ${what}: ${fix}`);
    }
  };
}

/** Versioning on: an overwritten or deleted backup stays recoverable as a noncurrent version. */
export const validateBucketVersioning = bucketSetting(TYPES.s3Versioning, "versioning", "add a BucketVersioning with status Enabled", (props) =>
  props.versioningConfiguration?.status === "Enabled" ? [] : [`versioning is ${props.versioningConfiguration?.status ?? "unset"}: set versioningConfiguration.status Enabled`],
);

/** Default encryption SSE-KMS with a customer-managed key (not aws/s3, not SSE-S3). */
export const validateBucketKmsEncryption = bucketSetting(TYPES.s3Encryption, "default encryption", "add a BucketServerSideEncryptionConfiguration with aws:kms and the stack's key", (props) => {
  const rules = (props.rules as Record<string, any>[] | undefined) ?? [];
  const byDefault = rules.map((r) => r.applyServerSideEncryptionByDefault as Record<string, unknown> | undefined).filter((d) => d !== undefined);
  const kms = byDefault.filter((d) => d.sseAlgorithm === "aws:kms" || d.sseAlgorithm === "aws:kms:dsse");
  if (kms.length === 0) return [`default encryption is ${byDefault.map((d) => d.sseAlgorithm).join(", ") || "unset"}: use sseAlgorithm aws:kms`];
  const customer = kms.filter((d) => isSet(d.kmsMasterKeyId) && !/^(arn:[^:]+:kms:[^:]*:[^:]*:)?alias\/aws\//.test(String(d.kmsMasterKeyId)));
  return customer.length > 0 ? [] : ["SSE-KMS uses the AWS-managed key aws/s3: set kmsMasterKeyId to the stack's customer-managed key"];
});

const PUBLIC_ACCESS_FLAGS = ["blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"] as const;

/** All four public access blocks on. */
export const validateBucketPublicAccessBlock = bucketSetting(TYPES.s3PublicAccessBlock, "public access block", "add a BucketPublicAccessBlock with all four settings true", (props) =>
  PUBLIC_ACCESS_FLAGS.filter((f) => !isTrue(props[f])).map((f) => `${f} is not true`),
);

/** The statements of a policy document given as a JSON string or an object. */
function statements(policy: unknown): Record<string, any>[] | undefined {
  let doc: unknown = policy;
  if (typeof policy === "string") {
    try {
      doc = JSON.parse(policy);
    } catch {
      return undefined;
    }
  }
  const st = (doc as { Statement?: unknown } | undefined)?.Statement;
  return Array.isArray(st) ? st : st && typeof st === "object" ? [st as Record<string, any>] : undefined;
}
const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : v === undefined ? [] : [v]);

/** The bucket policy denies every request without TLS (aws:SecureTransport false) on the bucket and its objects. */
export const validateBucketTlsOnly = bucketSetting(TYPES.s3BucketPolicy, "bucket policy", "add a BucketPolicy denying s3:* when aws:SecureTransport is false", (props) => {
  const found = statements(props.policy);
  if (!found) return ["the policy is not a policy document"];
  const denies = found.filter((st) => {
    const everyone = st.Principal === "*" || list(st.Principal?.AWS).includes("*");
    const insecure = ["false", false].includes(st.Condition?.Bool?.["aws:SecureTransport"]);
    const resources = list(st.Resource).map(String);
    return st.Effect === "Deny" && everyone && insecure && list(st.Action).includes("s3:*") && resources.some((r) => r.endsWith("/*")) && resources.some((r) => !r.includes("/"));
  });
  return denies.length > 0 ? [] : ["no statement denies s3:* on the bucket and its objects when aws:SecureTransport is false: requests without TLS are allowed"];
});

/** A lifecycle that expires objects (current or noncurrent) and aborts incomplete multipart uploads. */
export const validateBucketLifecycle = bucketSetting(TYPES.s3Lifecycle, "lifecycle configuration", "add a BucketLifecycleConfiguration (expiry, noncurrent versions, incomplete uploads)", (props) => {
  const rules = ((props.rules as Record<string, any>[] | undefined) ?? []).filter((r) => r.status === "Enabled");
  const out: string[] = [];
  if (!rules.some((r) => Number(r.expiration?.days) > 0 || Number(r.noncurrentVersionExpiration?.noncurrentDays) > 0)) out.push("no enabled rule expires objects or noncurrent versions: storage grows forever");
  if (!rules.some((r) => Number(r.abortIncompleteMultipartUpload?.daysAfterInitiation) > 0)) out.push("no enabled rule aborts incomplete multipart uploads: parts of killed uploads are kept (and billed) forever");
  return out;
});

/** The stack handlers, by policy name (policy/index.ts and the tests use the same list). */
export const stackHandlers: Record<string, StackHandler> = {
  "bucket-versioning": validateBucketVersioning,
  "bucket-kms-encryption": validateBucketKmsEncryption,
  "bucket-public-access-blocked": validateBucketPublicAccessBlock,
  "bucket-tls-only": validateBucketTlsOnly,
  "bucket-lifecycle": validateBucketLifecycle,
};

const STACK_DESCRIPTIONS: Record<string, string> = {
  "bucket-versioning": "Every S3 bucket (the backup repository's) has versioning Enabled.",
  "bucket-kms-encryption": "Every S3 bucket encrypts by default with SSE-KMS and a customer-managed key.",
  "bucket-public-access-blocked": "Every S3 bucket has a public access block with all four settings on.",
  "bucket-tls-only": "Every S3 bucket's policy denies requests without TLS.",
  "bucket-lifecycle": "Every S3 bucket has a lifecycle that expires objects and aborts incomplete multipart uploads.",
};

export const stackPolicies: StackValidationPolicy[] = Object.entries(stackHandlers).map(([name, handler]) => ({
  name,
  description: STACK_DESCRIPTIONS[name]!,
  enforcementLevel: "mandatory",
  validateStack: (args, report) => handler(args.resources, report),
}));

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
