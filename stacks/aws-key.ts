/**
 * The stack's customer-managed KMS key: one key (rotation on) for RDS storage, Performance
 * Insights, the master-user secret, ElastiCache at rest, the log groups and the SNS topic; or the
 * existing key of aws.kms.keyArn. A customer-managed key (not the aws/rds default) is what lets a
 * snapshot be shared with another account for recovery. The key policy admits the account (IAM
 * decides the rest) and the services that encrypt on the stack's behalf: CloudWatch Logs (log
 * groups), CloudWatch and RDS/ElastiCache events publishing to the encrypted topic.
 */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { resourceName } from "../lib/spec/access.js";

export interface AwsKeyArgs {
  /** Prefix of the alias and the description (spec: namePrefix). */
  namePrefix: string;
  /** The region whose CloudWatch Logs the key policy admits (spec: aws.region, or the backup region). */
  region: string;
  /**
   * Create the key in `region` instead of the provider's region (backups replicated to another
   * region need a key there).
   * @default false
   */
  inRegion?: boolean;
  /**
   * An existing customer-managed key to use instead (spec: aws.kms.keyArn).
   * @default none: a key is created
   */
  existingKeyArn?: string;
  /** Days a deleted key waits before it is gone (spec: aws.kms.deletionWindowDays). */
  deletionWindowDays: number;
  /**
   * What the alias says after the name prefix.
   * @default "data"
   */
  purpose?: string;
}

/** One customer-managed key (or the spec's existing one). */
export class AwsKey extends pulumi.ComponentResource {
  readonly arn: pulumi.Output<string>;
  /** Created only when the spec names no key (or a region is given). */
  readonly key?: aws.kms.Key;
  readonly alias?: aws.kms.Alias;

  constructor(name: string, args: AwsKeyArgs, opts?: pulumi.ComponentResourceOptions) {
    super("crypto-prediction-infra:aws:Key", name, {}, opts);
    const purpose = args.purpose ?? "data";
    const keyRegion = args.inRegion ? args.region : undefined;
    if (args.existingKeyArn) {
      this.arn = pulumi.output(args.existingKeyArn);
    } else {
      const child = { parent: this };
      const identity = aws.getCallerIdentityOutput({}, child);
      this.key = new aws.kms.Key(
        `${name}-key`,
        {
          description: `${args.namePrefix}: RDS, Performance Insights, secrets, ElastiCache, logs and SNS (${purpose})`,
          enableKeyRotation: true,
          deletionWindowInDays: args.deletionWindowDays,
          region: keyRegion,
          policy: identity.accountId.apply((account) => JSON.stringify(keyPolicy(account, args.region))),
        },
        child,
      );
      this.alias = new aws.kms.Alias(`${name}-alias`, { name: `alias/${resourceName(args, purpose)}`, targetKeyId: this.key.keyId, region: keyRegion }, child);
      this.arn = this.key.arn;
    }
    this.registerOutputs({ arn: this.arn });
  }
}

/** The key policy: the account administers it through IAM; the services below may use it. */
export function keyPolicy(account: string, region: string): Record<string, unknown> {
  return {
    Version: "2012-10-17",
    Statement: [
      { Sid: "Account", Effect: "Allow", Principal: { AWS: `arn:aws:iam::${account}:root` }, Action: "kms:*", Resource: "*" },
      {
        Sid: "CloudWatchLogs",
        Effect: "Allow",
        Principal: { Service: `logs.${region}.amazonaws.com` },
        Action: ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
        Resource: "*",
        Condition: { ArnLike: { "kms:EncryptionContext:aws:logs:arn": `arn:aws:logs:${region}:${account}:log-group:*` } },
      },
      {
        Sid: "PublishersToTheEncryptedTopic",
        Effect: "Allow",
        Principal: { Service: ["cloudwatch.amazonaws.com", "events.rds.amazonaws.com", "elasticache.amazonaws.com", "scheduler.amazonaws.com"] },
        Action: ["kms:Decrypt", "kms:GenerateDataKey*"],
        Resource: "*",
      },
    ],
  };
}
