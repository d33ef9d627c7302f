/**
 * The backup bucket of the toolkit's S3 repository (logical dumps, base backups, WAL, Redis RDB
 * copied off the machine): versioned, SSE-KMS with the stack's customer-managed key and bucket
 * keys, every public access blocked, ACLs off (BucketOwnerEnforced), a bucket policy that denies
 * requests without TLS and puts with another encryption or key, the lifecycle of
 * lib/aws/backup-bucket.ts, optional access logs; and a managed IAM policy for whoever runs
 * backups (this environment's prefix and the key only). With aws.backupBucket.bucketName the
 * bucket exists already: only the policy is made.
 */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { backupAccessPolicy, backupBucketPolicy, bucketArn, createdBucketName, environmentKeyPrefix, repositoryUrl, type LifecycleRule } from "../lib/aws/backup-bucket.js";
import { resourceName } from "../lib/spec/access.js";

export interface BackupBucketArgs {
  /** Prefix of the created bucket's and the IAM policy's names (spec: namePrefix). */
  namePrefix: string;
  /** The environment whose backups the IAM policy admits (spec: env). */
  env: string;
  /** The region S3 uses the key in (spec: aws.region). */
  region: string;
  /** The repository's key prefix (spec: aws.backupBucket.prefix); the environment writes under `<prefix>/<env>/`. */
  prefix: string;
  /**
   * The key: the bucket's default encryption, the one its policy requires and the IAM policy
   * grants (spec: aws.backupBucket.kmsKeyArn for an existing bucket, else the stack's key).
   */
  kmsKeyArn: pulumi.Input<string>;
  /**
   * An existing bucket: only the IAM policy and the outputs are made (spec: aws.backupBucket.bucketName).
   * @default none: `<namePrefix>-backups-<account>` is created
   */
  existingBucketName?: string;
  /** The created bucket's lifecycle (lib/aws/backup-bucket.ts's lifecycleRules, from the retention keys). */
  lifecycleRules: LifecycleRule[];
  /**
   * `pulumi destroy` may delete a bucket that holds backups (spec: aws.backupBucket.forceDestroy).
   * @default false
   */
  forceDestroy?: boolean;
  /**
   * Bucket receiving the S3 server access logs (spec: aws.backupBucket.accessLogBucket).
   * @default none: no access logs
   */
  accessLogBucket?: string;
  /**
   * IAM role given the access policy (spec: aws.backupBucket.roleName).
   * @default none: the policy is made, attached by whoever needs it
   */
  roleName?: string;
}

/** The S3 backup repository's bucket and its access policy. */
export class BackupBucket extends pulumi.ComponentResource {
  /** Created unless `existingBucketName` names one. */
  readonly bucket?: aws.s3.Bucket;
  readonly versioning?: aws.s3.BucketVersioning;
  readonly encryption?: aws.s3.BucketServerSideEncryptionConfiguration;
  readonly publicAccessBlock?: aws.s3.BucketPublicAccessBlock;
  readonly ownershipControls?: aws.s3.BucketOwnershipControls;
  readonly bucketPolicy?: aws.s3.BucketPolicy;
  readonly lifecycle?: aws.s3.BucketLifecycleConfiguration;
  readonly logging?: aws.s3.BucketLogging;
  /** Least privilege for whoever runs backups of this environment. */
  readonly accessPolicy: aws.iam.Policy;

  readonly bucketName: pulumi.Output<string>;
  readonly bucketArn: pulumi.Output<string>;
  /** `s3://<bucket>/<prefix>`: the value of `backup.repository`. */
  readonly repositoryUrl: pulumi.Output<string>;
  readonly policyArn: pulumi.Output<string>;
  /** The key the bucket encrypts with, and the one `backup.repository.kmsKeyId` must name. */
  readonly kmsKeyArn: pulumi.Output<string>;

  constructor(name: string, args: BackupBucketArgs, opts?: pulumi.ComponentResourceOptions) {
    super("crypto-prediction-infra:aws:BackupBucket", name, {}, opts);
    const child = { parent: this };
    const keyArn = pulumi.output(args.kmsKeyArn);
    const environmentPrefix = environmentKeyPrefix(args.prefix, args.env);
    this.kmsKeyArn = keyArn;

    if (args.existingBucketName) {
      this.bucketName = pulumi.output(args.existingBucketName);
    } else {
      // The name is known at preview (the account id comes from an invoke), so are the policies built from it.
      const account = aws.getCallerIdentityOutput({}, child).accountId;
      const bucketName = account.apply((id) => createdBucketName(args.namePrefix, id));
      this.bucket = new aws.s3.Bucket(`${name}-bucket`, { bucket: bucketName, forceDestroy: args.forceDestroy ?? false }, child);
      const bucket = this.bucket.bucket;
      this.bucketName = bucket;
      // Later settings wait for the public access block: a policy put while S3 still evaluates public access can be refused.
      this.publicAccessBlock = new aws.s3.BucketPublicAccessBlock(
        `${name}-public-access`,
        { bucket, blockPublicAcls: true, blockPublicPolicy: true, ignorePublicAcls: true, restrictPublicBuckets: true },
        child,
      );
      this.ownershipControls = new aws.s3.BucketOwnershipControls(`${name}-ownership`, { bucket, rule: { objectOwnership: "BucketOwnerEnforced" } }, child);
      this.versioning = new aws.s3.BucketVersioning(`${name}-versioning`, { bucket, versioningConfiguration: { status: "Enabled" } }, child);
      this.encryption = new aws.s3.BucketServerSideEncryptionConfiguration(
        `${name}-encryption`,
        {
          bucket,
          rules: [{ applyServerSideEncryptionByDefault: { sseAlgorithm: "aws:kms", kmsMasterKeyId: keyArn }, bucketKeyEnabled: true, blockedEncryptionTypes: ["SSE-C"] }],
        },
        child,
      );
      this.bucketPolicy = new aws.s3.BucketPolicy(
        `${name}-policy`,
        { bucket, policy: pulumi.all([bucket, keyArn]).apply(([n, k]) => JSON.stringify(backupBucketPolicy(n, k))) },
        { ...child, dependsOn: [this.publicAccessBlock] },
      );
      // Expiry needs versioning in place to keep the noncurrent versions it expires later.
      this.lifecycle = new aws.s3.BucketLifecycleConfiguration(`${name}-lifecycle`, { bucket, rules: args.lifecycleRules }, { ...child, dependsOn: [this.versioning] });
      if (args.accessLogBucket) {
        this.logging = new aws.s3.BucketLogging(`${name}-logging`, { bucket, targetBucket: args.accessLogBucket, targetPrefix: pulumi.interpolate`${bucket}/` }, child);
      }
    }
    this.bucketArn = this.bucketName.apply(bucketArn);
    this.repositoryUrl = this.bucketName.apply((n) => repositoryUrl(n, args.prefix));

    this.accessPolicy = new aws.iam.Policy(
      `${name}-access`,
      {
        name: resourceName(args, "backup-access"),
        description: `Backups of ${args.env}: objects under ${environmentPrefix} of the backup bucket, and its key through S3`,
        policy: pulumi.all([this.bucketName, keyArn]).apply(([n, k]) => JSON.stringify(backupAccessPolicy({ region: args.region, environmentPrefix }, n, k))),
      },
      child,
    );
    this.policyArn = this.accessPolicy.arn;
    if (args.roleName) {
      new aws.iam.RolePolicyAttachment(`${name}-access-role`, { role: args.roleName, policyArn: this.accessPolicy.arn }, child);
    }

    this.registerOutputs({ bucketName: this.bucketName, bucketArn: this.bucketArn, repositoryUrl: this.repositoryUrl, policyArn: this.policyArn });
  }
}
