/**
 * The policy pack's handlers, called directly with hand-built resources (policy/index.ts, which
 * starts the analyzer, is never imported): each reports a bad resource and passes a good one.
 */
import { describe, expect, it } from "vitest";
import { loadSpec } from "../../lib/spec/load.js";
import { elasticacheParameters, rdsParameters } from "../../lib/spec/render.js";
import {
  policies,
  stackHandlers,
  stackOfUrn,
  stackPolicies,
  TYPES,
  validateAlarmActions,
  validateBackupRetention,
  validateBucketKmsEncryption,
  validateBucketLifecycle,
  validateBucketPublicAccessBlock,
  validateBucketTlsOnly,
  validateBucketVersioning,
  validateCacheRbac,
  validateCustomerManagedKeys,
  validateEncryption,
  validateEnhancedMonitoring,
  validateLoopbackPorts,
  validateNoPublicDatabase,
  validateParametersMatchSpec,
  validateParametersMatchStackSpec,
  type PolicyArgs,
  type StackHandler,
  type StackResourceArgs,
} from "../../policy/policies.js";
import { backupBucketPolicy, lifecycleRules } from "../../lib/aws/backup-bucket.js";

type Handler = (args: PolicyArgs, report: (message: string) => void) => void;

function check(handler: Handler, type: string, props: Record<string, unknown>, stack = "prod"): string[] {
  const found: string[] = [];
  handler({ type, props, name: "r", urn: `urn:pulumi:${stack}::crypto-prediction-infra::${type}::r` }, (m) => found.push(m));
  return found;
}

describe("policy no-public-database", () => {
  it("reports a publicly accessible RDS instance and passes a private one", () => {
    expect(check(validateNoPublicDatabase, TYPES.rdsInstance, { publiclyAccessible: true, storageEncrypted: true })).toHaveLength(1);
    expect(check(validateNoPublicDatabase, TYPES.rdsInstance, { publiclyAccessible: false })).toEqual([]);
  });

  it("reports 0.0.0.0/0 and ::/0 ingress in a security group, rule or ingress rule; passes private CIDRs", () => {
    const open = { ingress: [{ protocol: "tcp", fromPort: 5432, toPort: 5432, cidrBlocks: ["10.0.0.0/8", "0.0.0.0/0"] }] };
    expect(check(validateNoPublicDatabase, TYPES.securityGroup, open)).toEqual([expect.stringContaining("0.0.0.0/0")]);
    expect(check(validateNoPublicDatabase, TYPES.securityGroup, { ingress: [{ fromPort: 6379, toPort: 6379, ipv6CidrBlocks: ["::/0"] }] })).toHaveLength(1);
    expect(check(validateNoPublicDatabase, TYPES.securityGroupRule, { type: "ingress", fromPort: 5432, toPort: 5432, cidrBlocks: ["0.0.0.0/0"] })).toHaveLength(1);
    expect(check(validateNoPublicDatabase, TYPES.securityGroupRule, { type: "egress", cidrBlocks: ["0.0.0.0/0"] })).toEqual([]);
    expect(check(validateNoPublicDatabase, TYPES.ingressRule, { fromPort: 5432, cidrIpv4: "0.0.0.0/0" })).toHaveLength(1);
    expect(check(validateNoPublicDatabase, TYPES.securityGroup, { ingress: [{ fromPort: 5432, toPort: 5432, cidrBlocks: ["10.42.0.0/16"], securityGroups: ["sg-1"] }] })).toEqual([]);
  });
});

describe("policy encryption-on", () => {
  it("reports unencrypted (or unset) RDS storage and passes encrypted", () => {
    expect(check(validateEncryption, TYPES.rdsInstance, { storageEncrypted: false })).toHaveLength(1);
    expect(check(validateEncryption, TYPES.rdsInstance, {})).toHaveLength(1);
    expect(check(validateEncryption, TYPES.rdsInstance, { storageEncrypted: true })).toEqual([]);
  });

  it("reports ElastiCache without at-rest or transit encryption and passes both on", () => {
    expect(check(validateEncryption, TYPES.replicationGroup, { atRestEncryptionEnabled: true })).toEqual([expect.stringContaining("transit")]);
    expect(check(validateEncryption, TYPES.replicationGroup, { transitEncryptionEnabled: true })).toEqual([expect.stringContaining("at-rest")]);
    expect(check(validateEncryption, TYPES.replicationGroup, { atRestEncryptionEnabled: true, transitEncryptionEnabled: true })).toEqual([]);
  });
});

describe("policy loopback-ports-only", () => {
  it("reports ports on all interfaces, host networking and publish-all; passes 127.0.0.1", () => {
    expect(check(validateLoopbackPorts, TYPES.container, { ports: [{ internal: 5432, external: 5432 }] })).toEqual([expect.stringContaining("0.0.0.0")]);
    expect(check(validateLoopbackPorts, TYPES.container, { ports: [{ internal: 5432, external: 5432, ip: "0.0.0.0" }] })).toHaveLength(1);
    expect(check(validateLoopbackPorts, TYPES.container, { networkMode: "host" })).toHaveLength(1);
    expect(check(validateLoopbackPorts, TYPES.container, { publishAllPorts: true })).toHaveLength(1);
    expect(check(validateLoopbackPorts, TYPES.container, { ports: [{ internal: 6379, external: 16379, ip: "127.0.0.1" }] })).toEqual([]);
  });
});

describe("policy parameters-match-spec", () => {
  const prod = loadSpec("prod");
  const good = rdsParameters(prod).map((p) => ({ ...p }));

  it("passes an RDS group equal to rdsParameters(loadSpec(stack)) and reads the stack from the URN", () => {
    expect(stackOfUrn("urn:pulumi:prod::crypto-prediction-infra::aws:rds/parameterGroup:ParameterGroup::x")).toBe("prod");
    expect(check(validateParametersMatchStackSpec, TYPES.rdsParameterGroup, { family: "postgres16", parameters: good })).toEqual([]);
  });

  it("reports a wrong value, a wrong apply method, a missing and an unknown parameter", () => {
    const wrong = good.map((p) => (p.name === "shared_buffers" ? { ...p, value: "32768" } : p)); // staging's value in prod
    expect(check(validateParametersMatchStackSpec, TYPES.rdsParameterGroup, { family: "postgres16", parameters: wrong })).toEqual([
      expect.stringContaining("shared_buffers = 32768, the spec says 131072"),
    ]);
    const immediate = good.map((p) => (p.name === "shared_buffers" ? { ...p, applyMethod: "immediate" } : p));
    expect(check(validateParametersMatchStackSpec, TYPES.rdsParameterGroup, { family: "postgres16", parameters: immediate })).toEqual([
      expect.stringContaining("pending-reboot"),
    ]);
    const missing = good.filter((p) => p.name !== "work_mem");
    expect(check(validateParametersMatchStackSpec, TYPES.rdsParameterGroup, { family: "postgres16", parameters: missing })).toEqual([
      expect.stringContaining("work_mem is missing"),
    ]);
    const extra = [...good, { name: "random_page_cost", value: "1.1", applyMethod: "immediate" }];
    expect(check(validateParametersMatchStackSpec, TYPES.rdsParameterGroup, { family: "postgres16", parameters: extra })).toEqual([
      expect.stringContaining("random_page_cost is not in the spec"),
    ]);
  });

  it("compares the same group against the stack it belongs to", () => {
    // prod's values are wrong for staging.
    expect(check(validateParametersMatchStackSpec, TYPES.rdsParameterGroup, { family: "postgres16", parameters: good }, "staging").length).toBeGreaterThan(0);
    expect(check(validateParametersMatchStackSpec, TYPES.rdsParameterGroup, { family: "postgres16", parameters: good }, "nosuchstack")).toEqual([
      expect.stringContaining("cannot load the spec"),
    ]);
  });

  it("checks ElastiCache groups against elasticacheParameters", () => {
    const params = elasticacheParameters(prod);
    expect(check(validateParametersMatchStackSpec, TYPES.cacheParameterGroup, { family: "redis7", parameters: params })).toEqual([]);
    const lfu = params.map((p) => (p.name === "maxmemory-policy" ? { ...p, value: "allkeys-lfu" } : p));
    expect(check(validateParametersMatchStackSpec, TYPES.cacheParameterGroup, { family: "redis7", parameters: lfu })).toEqual([
      expect.stringContaining("the spec says allkeys-lru"),
    ]);
  });

  it("takes the spec from an injected loader", () => {
    const handler = validateParametersMatchSpec(() => ({ ...prod, postgres: { ...prod.postgres, workMem: "32MB" } }));
    expect(check(handler, TYPES.rdsParameterGroup, { family: "postgres16", parameters: good })).toEqual([expect.stringContaining("work_mem = 16384, the spec says 32768")]);
  });
});

describe("policy alarms-have-actions", () => {
  it("reports an alarm without actions or with actions disabled; passes one with a topic", () => {
    expect(check(validateAlarmActions, TYPES.metricAlarm, { name: "a" })).toEqual([expect.stringContaining("no alarmActions")]);
    expect(check(validateAlarmActions, TYPES.metricAlarm, { name: "a", alarmActions: [] })).toHaveLength(1);
    expect(check(validateAlarmActions, TYPES.metricAlarm, { name: "a", alarmActions: ["arn:aws:sns:us-east-1:1:t"], actionsEnabled: false })).toEqual([expect.stringContaining("actionsEnabled")]);
    expect(check(validateAlarmActions, TYPES.metricAlarm, { name: "a", alarmActions: ["arn:aws:sns:us-east-1:1:t"] })).toEqual([]);
  });
});

describe("policy customer-managed-keys", () => {
  const key = "arn:aws:kms:us-east-1:1:key/abc";
  it("reports RDS, Performance Insights and the master secret on AWS-managed keys; passes the stack's key", () => {
    expect(check(validateCustomerManagedKeys, TYPES.rdsInstance, { storageEncrypted: true })).toEqual([expect.stringContaining("kmsKeyId")]);
    expect(check(validateCustomerManagedKeys, TYPES.rdsInstance, { kmsKeyId: "alias/aws/rds" })).toHaveLength(1);
    expect(check(validateCustomerManagedKeys, TYPES.rdsInstance, { kmsKeyId: key, performanceInsightsEnabled: true, manageMasterUserPassword: true })).toEqual([
      expect.stringContaining("performanceInsightsKmsKeyId"),
      expect.stringContaining("masterUserSecretKmsKeyId"),
    ]);
    expect(check(validateCustomerManagedKeys, TYPES.rdsInstance, { kmsKeyId: key, performanceInsightsEnabled: true, performanceInsightsKmsKeyId: key, manageMasterUserPassword: true, masterUserSecretKmsKeyId: key })).toEqual([]);
  });

  it("reports ElastiCache, log groups, SNS without the key and a key without rotation; passes them with it", () => {
    expect(check(validateCustomerManagedKeys, TYPES.replicationGroup, { atRestEncryptionEnabled: true })).toHaveLength(1);
    expect(check(validateCustomerManagedKeys, TYPES.replicationGroup, { kmsKeyId: key })).toEqual([]);
    expect(check(validateCustomerManagedKeys, TYPES.logGroup, { name: "/x" })).toHaveLength(1);
    expect(check(validateCustomerManagedKeys, TYPES.logGroup, { name: "/x", kmsKeyId: key })).toEqual([]);
    expect(check(validateCustomerManagedKeys, TYPES.snsTopic, { kmsMasterKeyId: "alias/aws/sns" })).toHaveLength(1);
    expect(check(validateCustomerManagedKeys, TYPES.snsTopic, { kmsMasterKeyId: key })).toEqual([]);
    expect(check(validateCustomerManagedKeys, TYPES.kmsKey, { enableKeyRotation: false })).toEqual([expect.stringContaining("rotate")]);
    expect(check(validateCustomerManagedKeys, TYPES.kmsKey, { enableKeyRotation: true })).toEqual([]);
  });
});

describe("policy backups-retained", () => {
  it("reports fewer than 7 days (or none) and passes 7; read replicas are exempt", () => {
    expect(check(validateBackupRetention, TYPES.rdsInstance, { backupRetentionPeriod: 3 })).toEqual([expect.stringContaining("below 7 days")]);
    expect(check(validateBackupRetention, TYPES.rdsInstance, {})).toHaveLength(1);
    expect(check(validateBackupRetention, TYPES.rdsInstance, { backupRetentionPeriod: 7 })).toEqual([]);
    expect(check(validateBackupRetention, TYPES.rdsInstance, { replicateSourceDb: "primary" })).toEqual([]);
  });
});

describe("policy enhanced-monitoring-in-prod", () => {
  it("reports a prod instance without enhanced monitoring; passes it with a role and interval, and staging without", () => {
    expect(check(validateEnhancedMonitoring, TYPES.rdsInstance, { monitoringInterval: 0 }, "prod")).toEqual([expect.stringContaining("Pulumi.prod.yaml")]);
    expect(check(validateEnhancedMonitoring, TYPES.rdsInstance, { monitoringInterval: 60 }, "prod")).toHaveLength(1); // no role
    expect(check(validateEnhancedMonitoring, TYPES.rdsInstance, { monitoringInterval: 60, monitoringRoleArn: "arn:aws:iam::1:role/m" }, "prod")).toEqual([]);
    expect(check(validateEnhancedMonitoring, TYPES.rdsInstance, { monitoringInterval: 0 }, "staging")).toEqual([]);
  });
});

describe("policy elasticache-rbac", () => {
  it("reports a replication group with an AUTH token or no user group; passes a user group", () => {
    expect(check(validateCacheRbac, TYPES.replicationGroup, { authToken: "t" })).toEqual([expect.stringContaining("no RBAC user group"), expect.stringContaining("static AUTH token")]);
    expect(check(validateCacheRbac, TYPES.replicationGroup, { userGroupIds: ["g"] })).toEqual([]);
  });
});

describe("the pack", () => {
  it("holds the nine policies, mandatory", () => {
    expect(policies.map((p) => [p.name, p.enforcementLevel])).toEqual([
      ["no-public-database", "mandatory"],
      ["encryption-on", "mandatory"],
      ["loopback-ports-only", "mandatory"],
      ["parameters-match-spec", "mandatory"],
      ["alarms-have-actions", "mandatory"],
      ["customer-managed-keys", "mandatory"],
      ["backups-retained", "mandatory"],
      ["enhanced-monitoring-in-prod", "mandatory"],
      ["elasticache-rbac", "mandatory"],
    ]);
  });
});

// ---------------------------------------------------------------------------------------------
// S3 buckets: stack handlers, a bucket and its setting resources
// ---------------------------------------------------------------------------------------------

const BUCKET = "crypto-prediction-prod-backups-123456789012";
const KEY = "arn:aws:kms:us-east-1:123456789012:key/abc";
const res = (type: string, name: string, props: Record<string, unknown>): StackResourceArgs => ({ type, name, props, urn: `urn:pulumi:prod::crypto-prediction-infra::${type}::${name}` });
const bucket = res(TYPES.s3Bucket, "b", { bucket: BUCKET });
/** A bucket with every setting the stack gives it. */
function goodBucket(): StackResourceArgs[] {
  return [
    bucket,
    res(TYPES.s3Versioning, "v", { bucket: BUCKET, versioningConfiguration: { status: "Enabled" } }),
    res(TYPES.s3Encryption, "e", { bucket: BUCKET, rules: [{ applyServerSideEncryptionByDefault: { sseAlgorithm: "aws:kms", kmsMasterKeyId: KEY }, bucketKeyEnabled: true }] }),
    res(TYPES.s3PublicAccessBlock, "p", { bucket: BUCKET, blockPublicAcls: true, blockPublicPolicy: true, ignorePublicAcls: true, restrictPublicBuckets: true }),
    res(TYPES.s3BucketPolicy, "bp", { bucket: BUCKET, policy: JSON.stringify(backupBucketPolicy(BUCKET, KEY)) }),
    res(TYPES.s3Lifecycle, "l", { bucket: BUCKET, rules: lifecycleRules(loadSpec("prod")) }),
  ];
}
function checkStack(handler: StackHandler, resources: StackResourceArgs[]): string[] {
  const found: string[] = [];
  handler(resources, (m) => found.push(m));
  return found;
}
/** The good bucket with one setting replaced (or removed: props undefined). */
function withSetting(type: string, props: Record<string, unknown> | undefined): StackResourceArgs[] {
  const others = goodBucket().filter((r) => r.type !== type);
  return props ? [...others, res(type, "x", { bucket: BUCKET, ...props })] : others;
}

describe("policy bucket-versioning", () => {
  it("reports suspended versioning and a bucket without it; passes Enabled", () => {
    expect(checkStack(validateBucketVersioning, goodBucket())).toEqual([]);
    expect(checkStack(validateBucketVersioning, withSetting(TYPES.s3Versioning, { versioningConfiguration: { status: "Suspended" } }))).toEqual([expect.stringContaining("versioning is Suspended")]);
    expect(checkStack(validateBucketVersioning, withSetting(TYPES.s3Versioning, undefined))).toEqual([expect.stringContaining(`bucket ${BUCKET} has no versioning`)]);
  });

  it("matches a setting to its bucket by dependency when the name is not known yet (preview), and counts the *V2 resources", () => {
    const unnamed = { ...res(TYPES.s3Versioning, "v", { versioningConfiguration: { status: "Enabled" } }), propertyDependencies: { bucket: [{ urn: bucket.urn }] } };
    expect(checkStack(validateBucketVersioning, [bucket, unnamed])).toEqual([]);
    const other = res(TYPES.s3Versioning, "v", { bucket: "another-bucket", versioningConfiguration: { status: "Enabled" } });
    expect(checkStack(validateBucketVersioning, [bucket, other])).toHaveLength(1);
    expect(checkStack(validateBucketVersioning, [bucket, res("aws:s3/bucketVersioningV2:BucketVersioningV2", "v2", { bucket: BUCKET, versioningConfiguration: { status: "Enabled" } })])).toEqual([]);
  });
});

describe("policy bucket-kms-encryption", () => {
  it("reports SSE-S3, the AWS-managed key, no key and a bucket without default encryption; passes SSE-KMS with the stack's key", () => {
    expect(checkStack(validateBucketKmsEncryption, goodBucket())).toEqual([]);
    const rule = (d: Record<string, unknown>) => ({ rules: [{ applyServerSideEncryptionByDefault: d }] });
    expect(checkStack(validateBucketKmsEncryption, withSetting(TYPES.s3Encryption, rule({ sseAlgorithm: "AES256" })))).toEqual([expect.stringContaining("use sseAlgorithm aws:kms")]);
    expect(checkStack(validateBucketKmsEncryption, withSetting(TYPES.s3Encryption, rule({ sseAlgorithm: "aws:kms", kmsMasterKeyId: "alias/aws/s3" })))).toEqual([expect.stringContaining("AWS-managed key")]);
    expect(checkStack(validateBucketKmsEncryption, withSetting(TYPES.s3Encryption, rule({ sseAlgorithm: "aws:kms", kmsMasterKeyId: "arn:aws:kms:us-east-1:1:alias/aws/s3" })))).toHaveLength(1);
    expect(checkStack(validateBucketKmsEncryption, withSetting(TYPES.s3Encryption, rule({ sseAlgorithm: "aws:kms" })))).toHaveLength(1);
    expect(checkStack(validateBucketKmsEncryption, withSetting(TYPES.s3Encryption, undefined))).toEqual([expect.stringContaining("has no default encryption")]);
  });
});

describe("policy bucket-public-access-blocked", () => {
  it("reports each public access setting that is off and a bucket without the block; passes all four on", () => {
    expect(checkStack(validateBucketPublicAccessBlock, goodBucket())).toEqual([]);
    expect(checkStack(validateBucketPublicAccessBlock, withSetting(TYPES.s3PublicAccessBlock, { blockPublicAcls: true, blockPublicPolicy: false, ignorePublicAcls: true }))).toEqual([
      expect.stringContaining("blockPublicPolicy is not true"),
      expect.stringContaining("restrictPublicBuckets is not true"),
    ]);
    expect(checkStack(validateBucketPublicAccessBlock, withSetting(TYPES.s3PublicAccessBlock, undefined))).toEqual([expect.stringContaining("has no public access block")]);
  });
});

describe("policy bucket-tls-only", () => {
  const arn = `arn:aws:s3:::${BUCKET}`;
  const deny = (over: Record<string, unknown>) => ({ policy: { Version: "2012-10-17", Statement: [{ Effect: "Deny", Principal: "*", Action: "s3:*", Resource: [arn, `${arn}/*`], Condition: { Bool: { "aws:SecureTransport": "false" } }, ...over }] } });
  it("passes the stack's policy (a JSON string) and the statement as an object", () => {
    expect(checkStack(validateBucketTlsOnly, goodBucket())).toEqual([]);
    expect(checkStack(validateBucketTlsOnly, withSetting(TYPES.s3BucketPolicy, deny({})))).toEqual([]);
  });

  it("reports a policy without the TLS deny, one that covers only the objects or only some actions, an Allow, and a bucket without a policy", () => {
    for (const bad of [{ Condition: undefined }, { Resource: `${arn}/*` }, { Action: "s3:GetObject" }, { Effect: "Allow" }, { Principal: { AWS: "arn:aws:iam::1:root" } }]) {
      expect(checkStack(validateBucketTlsOnly, withSetting(TYPES.s3BucketPolicy, deny(bad))), JSON.stringify(bad)).toEqual([expect.stringContaining("without TLS are allowed")]);
    }
    expect(checkStack(validateBucketTlsOnly, withSetting(TYPES.s3BucketPolicy, { policy: "not json" }))).toEqual([expect.stringContaining("not a policy document")]);
    expect(checkStack(validateBucketTlsOnly, withSetting(TYPES.s3BucketPolicy, undefined))).toEqual([expect.stringContaining("has no bucket policy")]);
  });
});

describe("policy bucket-lifecycle", () => {
  it("reports rules that expire nothing or keep incomplete uploads, disabled rules and a bucket without a lifecycle; passes the stack's rules", () => {
    expect(checkStack(validateBucketLifecycle, goodBucket())).toEqual([]);
    expect(checkStack(validateBucketLifecycle, withSetting(TYPES.s3Lifecycle, { rules: [{ id: "a", status: "Enabled", abortIncompleteMultipartUpload: { daysAfterInitiation: 1 } }] }))).toEqual([
      expect.stringContaining("storage grows forever"),
    ]);
    expect(checkStack(validateBucketLifecycle, withSetting(TYPES.s3Lifecycle, { rules: [{ id: "a", status: "Enabled", expiration: { days: 30 } }] }))).toEqual([
      expect.stringContaining("incomplete multipart uploads"),
    ]);
    const disabled = lifecycleRules(loadSpec("prod")).map((r) => ({ ...r, status: "Disabled" }));
    expect(checkStack(validateBucketLifecycle, withSetting(TYPES.s3Lifecycle, { rules: disabled }))).toHaveLength(2);
    expect(checkStack(validateBucketLifecycle, withSetting(TYPES.s3Lifecycle, undefined))).toEqual([expect.stringContaining("has no lifecycle configuration")]);
  });
});

describe("the pack's stack policies", () => {
  it("are the five bucket policies, mandatory, each calling its handler with the stack's resources", () => {
    expect(stackPolicies.map((p) => [p.name, p.enforcementLevel])).toEqual([
      ["bucket-versioning", "mandatory"],
      ["bucket-kms-encryption", "mandatory"],
      ["bucket-public-access-blocked", "mandatory"],
      ["bucket-tls-only", "mandatory"],
      ["bucket-lifecycle", "mandatory"],
    ]);
    for (const p of stackPolicies) {
      const found: string[] = [];
      void p.validateStack({ resources: [bucket], stackTags: new Map(), notApplicable: () => { throw new Error("n/a"); } } as never, (m: string) => found.push(m));
      expect(found, p.name).toHaveLength(1);
      expect(checkStack(stackHandlers[p.name]!, [bucket])).toEqual(found);
    }
  });
});
