/**
 * The backup bucket's keys on an AWS stack (staging's config with overrides): an existing bucket
 * gets only the IAM policy and the outputs, `enabled: false` makes nothing, and the optional keys
 * (expiry, force-destroy, access logs, role, prefix) reach the resources. The rule of the derived
 * expiry is checked against lib/aws/backup-bucket.ts's function for other keep settings.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { backupExpiryDays } from "../../lib/aws/backup-bucket.js";
import { loadSpec, parseSpec } from "../../lib/spec/load.js";
import { BUCKET_SETTINGS, expectLeastPrivilege, T } from "./aws-suite.js";
import { expectAllParented, expectPoliciesPass } from "../support/pulumi-checks.js";
import { runProgram, type Run } from "../support/pulumi.js";

const EXISTING = "acme-shared-backups";
const EXISTING_KEY = "arn:aws:kms:us-east-1:123456789012:key/0000-existing";
const isAccess = (p: { name: string }) => p.name.endsWith("-backups-access");

describe("backup bucket: an existing bucket", () => {
  let run: Run;
  beforeAll(async () => {
    run = await runProgram("staging", { aws: { backupBucket: { bucketName: EXISTING, kmsKeyArn: EXISTING_KEY, roleName: "backup-runner" } } });
  });

  it("creates no bucket and no bucket settings, only the access policy, attached to the role", () => {
    expect(run.all(T.bucket)).toEqual([]);
    for (const type of BUCKET_SETTINGS) expect(run.all(type), type).toEqual([]);
    const access = run.one(T.iamPolicy, isAccess);
    const attach = run.one("aws:iam/rolePolicyAttachment:RolePolicyAttachment", (a) => a.inputs.role === "backup-runner");
    expect(attach.inputs.policyArn).toBe(`arn:aws:mock:us-east-1:123456789012:${access.name}`);
    expectAllParented(run);
    expectPoliciesPass(run);
  });

  it("grants the existing bucket's prefix and key, and exports them", () => {
    const policy = JSON.parse(run.one(T.iamPolicy, isAccess).inputs.policy);
    expectLeastPrivilege(policy, `arn:aws:s3:::${EXISTING}`, "crypto-prediction-infra/staging/", EXISTING_KEY);
    expect(policy.Statement[2].Resource).toBe(EXISTING_KEY);
    expect(run.outputs.backupBucketName!.value).toBe(EXISTING);
    expect(run.outputs.backupBucketArn!.value).toBe(`arn:aws:s3:::${EXISTING}`);
    expect(run.outputs.backupRepositoryUrl!.value).toBe(`s3://${EXISTING}/crypto-prediction-infra`);
  });
});

describe("backup bucket: the stack's existing key (aws.kms.keyArn)", () => {
  it("encrypts the created bucket with it and grants only it", async () => {
    const run = await runProgram("staging", { aws: { kms: { keyArn: EXISTING_KEY } } });
    expect(run.all(T.key)).toEqual([]);
    expect(run.one(T.bucketEncryption).inputs.rules[0].applyServerSideEncryptionByDefault).toEqual({ sseAlgorithm: "aws:kms", kmsMasterKeyId: EXISTING_KEY });
    expect(JSON.parse(run.one(T.bucketPolicy).inputs.policy).Statement[2].Condition.StringNotEqualsIfExists["s3:x-amz-server-side-encryption-aws-kms-key-id"]).toBe(EXISTING_KEY);
    expect(JSON.parse(run.one(T.iamPolicy, isAccess).inputs.policy).Statement[2].Resource).toBe(EXISTING_KEY);
  });
});

describe("backup bucket: disabled", () => {
  it("makes nothing and exports nothing", async () => {
    const run = await runProgram("staging", { aws: { backupBucket: { enabled: false } } });
    expect(run.all(T.backupBucket)).toEqual([]);
    expect(run.resources.filter((r) => r.type.startsWith("aws:s3/"))).toEqual([]);
    expect(run.all(T.iamPolicy).filter(isAccess)).toEqual([]);
    for (const key of ["backupBucketName", "backupBucketArn", "backupRepositoryUrl", "backupPolicyArn", "backupKmsKeyArn"]) expect(run.outputs[key]!.value, key).toBeUndefined();
  });
});

describe("backup bucket: the optional keys", () => {
  let run: Run;
  beforeAll(async () => {
    run = await runProgram("staging", {
      aws: { backupBucket: { prefix: "repo", expireDays: 90, noncurrentVersionDays: 7, abortIncompleteUploadDays: 2, forceDestroy: true, accessLogBucket: "acme-access-logs" } },
    });
  });

  it("reach the bucket, its lifecycle, its access logs and the policy's prefix", () => {
    expect(run.one(T.bucket).inputs.forceDestroy).toBe(true);
    const rules = run.one(T.bucketLifecycle).inputs.rules as Record<string, any>[];
    expect(rules.map((r) => [r.filter.prefix, r.expiration?.days])).toEqual([
      ["repo/staging/backups/", 90],
      ["repo/staging/wal/", 90],
      [undefined, undefined],
    ]);
    expect(rules[2]!.noncurrentVersionExpiration).toEqual({ noncurrentDays: 7 });
    expect(rules[2]!.abortIncompleteMultipartUpload).toEqual({ daysAfterInitiation: 2 });
    const name = run.one(T.bucket).inputs.bucket as string;
    expect(run.one("aws:s3/bucketLogging:BucketLogging").inputs).toMatchObject({ bucket: name, targetBucket: "acme-access-logs", targetPrefix: `${name}/` });
    expect(JSON.parse(run.one(T.iamPolicy, isAccess).inputs.policy).Statement[1].Resource).toBe(`arn:aws:s3:::${name}/repo/staging/*`);
    expect(run.outputs.backupRepositoryUrl!.value).toBe(`s3://${name}/repo`);
    expectPoliciesPass(run);
  });
});

describe("backup bucket: the derived expiry", () => {
  const spec = (backup: Record<string, unknown>) => parseSpec("staging", { target: "aws", backup });
  it("is max(keepDaily, 7 × keepWeekly, retentionDays) + 1", () => {
    expect(backupExpiryDays(loadSpec("prod"))).toBe(29);
    expect(backupExpiryDays(spec({ keepDaily: 40, keepWeekly: 4 }))).toBe(41);
    expect(backupExpiryDays(spec({ keepDaily: 3, keepWeekly: 0, retentionDays: 35 }))).toBe(36);
    expect(backupExpiryDays(spec({ keepDaily: 3, keepWeekly: 0, retentionDays: 1 }))).toBe(4);
  });

  it("refuses bad keys naming the key and what is allowed", () => {
    expect(() => parseSpec("staging", { aws: { backupBucket: { bucketName: "Bad_Name" } } })).toThrow(/aws\.backupBucket\.bucketName.*S3 bucket name/s);
    expect(() => parseSpec("staging", { aws: { backupBucket: { prefix: "a/b" } } })).toThrow(/aws\.backupBucket\.prefix.*no \//s);
    expect(() => parseSpec("staging", { aws: { backupBucket: { abortIncompleteUploadDays: 0 } } })).toThrow(/abortIncompleteUploadDays.*at least 1 day/s);
  });
});
