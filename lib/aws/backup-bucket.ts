/**
 * The backup bucket's rules as plain data (stacks/aws-backup-bucket.ts applies them; the policy
 * pack and the tests read the same): its name, the repository prefix, the lifecycle, the bucket
 * policy and the least-privilege policy of whoever runs backups.
 *
 * Layout: `backup.repository` is `s3://<bucket>/<prefix>`; an environment writes under
 * `<prefix>/<env>/`, backups (dumps, base backups, RDB copies) under `backups/` and WAL under
 * `wal/` (REPOSITORY_LAYOUT). The lifecycle is a backstop for `backup prune`, never ahead of it:
 * current objects expire after max(keepDaily, 7 × keepWeekly, retentionDays) + 1 days. The oldest
 * backup prune keeps is younger than that (daily: < keepDaily days; weekly: the newest of each of
 * the last keepWeekly ISO weeks, < 7 × keepWeekly days; RDS keeps its own for retentionDays), and
 * the extra day absorbs S3's rounding to the next midnight UTC.
 */
import type { Spec } from "../spec/schema.js";

/** Sub-prefixes of an environment's repository (what lib/backup writes). */
export const REPOSITORY_LAYOUT = { backups: "backups/", wal: "wal/" } as const;

/** The bucket the stack creates: S3 names are global, so the account id makes it unique. */
export function createdBucketName(namePrefix: string, accountId: string): string {
  return `${namePrefix}-backups-${accountId}`;
}

/** An environment's key prefix in the bucket, with a trailing slash: `<prefix>/<env>/`. */
export function environmentKeyPrefix(prefix: string, env: string): string {
  return `${prefix}/${env}/`;
}

/** The spec's environment's key prefix in the bucket (aws.backupBucket.prefix). */
export function environmentPrefix(spec: Spec): string {
  return environmentKeyPrefix(spec.aws.backupBucket.prefix, spec.env);
}

/** What `backup.repository` is set to: `s3://<bucket>/<prefix>`. */
export function repositoryUrl(bucket: string, prefix: string): string {
  return `s3://${bucket}/${prefix}`;
}

/** Days after which current backups and WAL expire (see the file comment for the rule). */
export function backupExpiryDays(spec: Spec): number {
  const b = spec.backup;
  return spec.aws.backupBucket.expireDays ?? Math.max(b.keepDaily, 7 * b.keepWeekly, b.retentionDays) + 1;
}

export interface LifecycleRule {
  id: string;
  status: "Enabled";
  filter: { prefix?: string };
  expiration?: { days?: number; expiredObjectDeleteMarker?: boolean };
  noncurrentVersionExpiration?: { noncurrentDays: number };
  abortIncompleteMultipartUpload?: { daysAfterInitiation: number };
}

/**
 * Backups and WAL expire after backupExpiryDays; everywhere in the bucket, old versions expire
 * after noncurrentVersionDays, delete markers with no version left are removed, and incomplete
 * multipart uploads are aborted (S3 takes Days and ExpiredObjectDeleteMarker in separate rules).
 */
export function lifecycleRules(spec: Spec): LifecycleRule[] {
  const env = environmentPrefix(spec);
  const days = backupExpiryDays(spec);
  const b = spec.aws.backupBucket;
  return [
    { id: "expire-backups", status: "Enabled", filter: { prefix: `${env}${REPOSITORY_LAYOUT.backups}` }, expiration: { days } },
    { id: "expire-wal", status: "Enabled", filter: { prefix: `${env}${REPOSITORY_LAYOUT.wal}` }, expiration: { days } },
    {
      id: "old-versions-and-uploads",
      status: "Enabled",
      filter: {},
      expiration: { expiredObjectDeleteMarker: true },
      noncurrentVersionExpiration: { noncurrentDays: b.noncurrentVersionDays },
      abortIncompleteMultipartUpload: { daysAfterInitiation: b.abortIncompleteUploadDays },
    },
  ];
}

type Statement = Record<string, unknown>;
export interface PolicyDocument {
  Version: "2012-10-17";
  Statement: Statement[];
}

export const bucketArn = (bucket: string) => `arn:aws:s3:::${bucket}`;

/**
 * The bucket policy: no request without TLS, and no put that asks for another encryption than
 * SSE-KMS with the bucket's key. A put without encryption headers gets the bucket's default
 * (SSE-KMS, that key), so clients need not send them; one that sends them must name that key.
 */
export function backupBucketPolicy(bucket: string, keyArn: string): PolicyDocument {
  const arn = bucketArn(bucket);
  return {
    Version: "2012-10-17",
    Statement: [
      { Sid: "DenyInsecureTransport", Effect: "Deny", Principal: "*", Action: "s3:*", Resource: [arn, `${arn}/*`], Condition: { Bool: { "aws:SecureTransport": "false" } } },
      {
        Sid: "DenyOtherEncryption",
        Effect: "Deny",
        Principal: "*",
        Action: "s3:PutObject",
        Resource: `${arn}/*`,
        Condition: { StringNotEqualsIfExists: { "s3:x-amz-server-side-encryption": "aws:kms" } },
      },
      {
        Sid: "DenyOtherKey",
        Effect: "Deny",
        Principal: "*",
        Action: "s3:PutObject",
        Resource: `${arn}/*`,
        Condition: { StringNotEqualsIfExists: { "s3:x-amz-server-side-encryption-aws-kms-key-id": keyArn } },
      },
    ],
  };
}

/** Object actions a backup, a restore and a prune need: nothing on the bucket's configuration. */
export const BACKUP_OBJECT_ACTIONS = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"] as const;
/** What S3 asks of the key on the caller's behalf (SSE-KMS puts and gets, multipart uploads). */
export const BACKUP_KEY_ACTIONS = ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"] as const;

/**
 * The IAM policy of whoever runs backups for one environment: list the bucket only under the
 * environment's prefix, read/write/delete objects only there, and use the key only through S3
 * in the stack's region.
 */
export function backupAccessPolicy(where: { region: string; environmentPrefix: string }, bucket: string, keyArn: string): PolicyDocument {
  const arn = bucketArn(bucket);
  const prefix = where.environmentPrefix;
  return {
    Version: "2012-10-17",
    Statement: [
      { Sid: "ListTheEnvironment", Effect: "Allow", Action: "s3:ListBucket", Resource: arn, Condition: { StringLike: { "s3:prefix": [`${prefix}*`] } } },
      { Sid: "ObjectsOfTheEnvironment", Effect: "Allow", Action: [...BACKUP_OBJECT_ACTIONS], Resource: `${arn}/${prefix}*` },
      { Sid: "TheBucketKeyThroughS3", Effect: "Allow", Action: [...BACKUP_KEY_ACTIONS], Resource: keyArn, Condition: { StringEquals: { "kms:ViaService": `s3.${where.region}.amazonaws.com` } } },
    ],
  };
}
