/**
 * The Pulumi program: reads the stack's config through the spec's one loader and builds the
 * stack's data layer, DockerDataStack (target: docker; dev, ci) or AwsDataStack (target: aws;
 * staging, prod). Stack outputs are the same for both targets where they can be (hosts, ports,
 * secret connection URLs, spec hash, capability table), so scripts reach any environment alike
 * with `--database-url`/`--redis-url` (passwords in PGPASSWORD/REDISCLI_AUTH, not argv: README).
 */
import * as pulumi from "@pulumi/pulumi";
import { capabilities as capabilityRows, capabilitiesMarkdown } from "./lib/docs/capabilities.js";
import { fromNamespacedConfig, parseSpec, specHash as computeSpecHash } from "./lib/spec/load.js";
import { AwsDataStack } from "./stacks/aws-data-stack.js";
import { DockerDataStack } from "./stacks/docker-data-stack.js";

const stack = pulumi.getStack();
const config = pulumi.runtime.allConfig();
const spec = parseSpec(stack, fromNamespacedConfig(config, `Pulumi.${stack}.yaml`));
const hash = computeSpecHash(spec);

if (spec.target === "aws" && config["aws:region"] !== undefined && config["aws:region"] !== spec.aws.region) {
  pulumi.log.warn(
    `aws:region (${config["aws:region"]}) differs from crypto-prediction-infra:aws.region (${spec.aws.region}); the data layer uses the spec's region`,
  );
}

const data = spec.target === "aws" ? new AwsDataStack(spec.namePrefix, { spec, specHash: hash }) : new DockerDataStack(spec.namePrefix, { spec, specHash: hash });
const rows = capabilityRows(spec);

export const target = spec.target;
export const env = spec.env;
export const specHash = hash;
export const postgresHost = data.postgresHost;
export const postgresPort = data.postgresPort;
export const redisHost = data.redisHost;
export const redisPort = data.redisPort;
/** Secret, schema owner (migrations, the toolkit's scripts): `pulumi stack output postgresUrl --show-secrets`. */
export const postgresUrl = data.postgresUrl;
/** Secret: Redis admin (default user) URL. */
export const redisUrl = data.redisUrl;
/** Secrets: URL per role (Docker: admin, owner, app, readonly; AWS: owner, the RDS master user). */
export const postgresUrls: Record<string, pulumi.Output<string>> = data.postgresUrls;
/** Secrets: URL per Redis user (Docker: admin, app; AWS: admin (`default`), app: ElastiCache RBAC users). */
export const redisUrls: Record<string, pulumi.Output<string>> = data.redisUrls;
/** Docker only. */
export const containerNames = data instanceof DockerDataStack ? data.containerNames : undefined;
/** AWS only. */
export const redisReaderHost = data instanceof AwsDataStack ? data.redisReaderHost : undefined;
export const postgresMasterSecretArn = data instanceof AwsDataStack ? data.postgresMasterSecretArn : undefined;
export const alarmTopicArns = data instanceof AwsDataStack ? data.alarmTopicArns : undefined;
export const postgresReaderHosts = data instanceof AwsDataStack ? data.postgresReaderHosts : undefined;
export const pendingRebootParameters = data instanceof AwsDataStack ? data.pendingRebootParameters : undefined;
/** AWS only, when aws.backupBucket.enabled: the S3 backup repository (README: Backup bucket). */
export const backupBucketName = data instanceof AwsDataStack ? data.backupBucket?.bucketName : undefined;
export const backupBucketArn = data instanceof AwsDataStack ? data.backupBucket?.bucketArn : undefined;
/** `s3://<bucket>/<prefix>`: set `backup.repository` to it. */
export const backupRepositoryUrl = data instanceof AwsDataStack ? data.backupBucket?.repositoryUrl : undefined;
/** The managed IAM policy of whoever runs backups (attach it to their role). */
export const backupPolicyArn = data instanceof AwsDataStack ? data.backupBucket?.policyArn : undefined;
/** The bucket's KMS key: `backup.repository.kmsKeyId` (with sse aws:kms; the bucket policy refuses other keys). */
export const backupKmsKeyArn = data instanceof AwsDataStack ? data.backupBucket?.kmsKeyArn : undefined;
/** What each target does with each documented setting (rows, and as markdown). */
export const capabilities = rows;
export const capabilityTable = capabilitiesMarkdown(rows);
