/**
 * The guide's hourly Redis snapshots on ElastiCache (aws.cacheSnapshots): an EventBridge
 * Scheduler schedule calls CreateSnapshot through the scheduler's universal target, with a role
 * that may do only that; and, because manual snapshots never expire, a Lambda function (the code
 * of lib/aws/cache-snapshot-prune.ts, bundled with esbuild) deletes the schedule's snapshots older
 * than aws.cacheSnapshots.keepHours, on its own schedule.
 */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { buildSync } from "esbuild";
import path from "node:path";
import { scheduledSnapshotPrefix } from "../lib/aws/cache-snapshot-prune.js";
import { resourceName } from "../lib/spec/access.js";
import { PROJECT_DIR } from "../lib/spec/load.js";
import { assumedBy } from "./aws-monitoring.js";

export interface AwsCacheSnapshotsArgs {
  /** Prefix of the roles', function's and schedules' names (spec: namePrefix). */
  namePrefix: string;
  /** The environment's name, for the descriptions (spec: env). */
  env: string;
  /** The region of the replication group and its snapshots (spec: aws.region). */
  region: string;
  /** When snapshots are taken: an EventBridge Scheduler rate() or cron() (spec: aws.cacheSnapshots.schedule). */
  schedule: string;
  /** Scheduled snapshots older than this many hours are deleted (spec: aws.cacheSnapshots.keepHours). */
  keepHours: number;
  /** The replication group to snapshot. */
  replicationGroupId: pulumi.Input<string>;
  /** The stack's KMS key (the schedule's input and the function's environment). */
  kmsKeyArn: pulumi.Input<string>;
  /**
   * How often the clean-up runs.
   * @default "rate(1 hour)"
   */
  pruneSchedule?: string;
}

/** Universal target of EventBridge Scheduler for ElastiCache CreateSnapshot. */
export const CREATE_SNAPSHOT_TARGET = "arn:aws:scheduler:::aws-sdk:elasticache:createSnapshot";
/** Scheduler context attribute: unique per invocation, so every snapshot name is new. */
export const EXECUTION_ID = "<aws.scheduler.execution-id>";

/** The prune function's code: lib/aws/cache-snapshot-prune.ts as one CommonJS file. */
export function pruneFunctionCode(): string {
  const out = buildSync({
    entryPoints: [path.join(PROJECT_DIR, "lib/aws/cache-snapshot-prune.ts")],
    bundle: true,
    platform: "node",
    format: "cjs",
    target: "node20",
    external: ["@aws-sdk/*"],
    write: false,
    logLevel: "error",
  });
  return out.outputFiles[0]!.text;
}

/** Hourly CreateSnapshot and the clean-up of old scheduled snapshots. */
export class AwsCacheSnapshots extends pulumi.ComponentResource {
  readonly schedule: aws.scheduler.Schedule;
  readonly pruneSchedule: aws.scheduler.Schedule;
  readonly pruneFunction: aws.lambda.Function;
  readonly schedulerRole: aws.iam.Role;

  constructor(name: string, args: AwsCacheSnapshotsArgs, opts?: pulumi.ComponentResourceOptions) {
    super("crypto-prediction-infra:aws:CacheSnapshots", name, {}, opts);
    const child = { parent: this };
    const account = aws.getCallerIdentityOutput({}, child).accountId;
    const region = args.region;

    this.schedulerRole = new aws.iam.Role(`${name}-scheduler-role`, { name: resourceName(args, "cache-snapshots"), assumeRolePolicy: JSON.stringify(assumedBy("scheduler.amazonaws.com")) }, child);
    const functionRole = new aws.iam.Role(`${name}-prune-role`, { name: resourceName(args, "cache-snapshot-prune"), assumeRolePolicy: JSON.stringify(assumedBy("lambda.amazonaws.com")) }, child);
    new aws.iam.RolePolicyAttachment(`${name}-prune-logs`, { role: functionRole.name, policyArn: "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole" }, child);
    new aws.iam.RolePolicy(
      `${name}-prune-policy`,
      {
        role: functionRole.id,
        policy: pulumi.all([account, args.replicationGroupId, args.kmsKeyArn]).apply(([acct, rg, key]) =>
          JSON.stringify({
            Version: "2012-10-17",
            Statement: [
              { Effect: "Allow", Action: "elasticache:DescribeSnapshots", Resource: "*" },
              // The function's environment is encrypted with the stack's key.
              { Effect: "Allow", Action: "kms:Decrypt", Resource: key },
              { Effect: "Allow", Action: "elasticache:DeleteSnapshot", Resource: `arn:aws:elasticache:${region}:${acct}:snapshot:${scheduledSnapshotPrefix(rg)}*` },
            ],
          }),
        ),
      },
      child,
    );
    this.pruneFunction = new aws.lambda.Function(
      `${name}-prune`,
      {
        name: resourceName(args, "cache-snapshot-prune"),
        runtime: "nodejs20.x",
        handler: "index.handler",
        role: functionRole.arn,
        timeout: 300,
        memorySize: 128,
        kmsKeyArn: args.kmsKeyArn,
        code: new pulumi.asset.AssetArchive({ "index.js": new pulumi.asset.StringAsset(pruneFunctionCode()) }),
        environment: { variables: { REPLICATION_GROUP_ID: args.replicationGroupId, KEEP_HOURS: String(args.keepHours) } },
      },
      child,
    );
    new aws.iam.RolePolicy(
      `${name}-scheduler-policy`,
      {
        role: this.schedulerRole.id,
        policy: pulumi.all([account, args.replicationGroupId, this.pruneFunction.arn]).apply(([acct, rg, fn]) =>
          JSON.stringify({
            Version: "2012-10-17",
            Statement: [
              {
                Effect: "Allow",
                Action: ["elasticache:CreateSnapshot", "elasticache:AddTagsToResource"],
                Resource: [`arn:aws:elasticache:${region}:${acct}:replicationgroup:${rg}`, `arn:aws:elasticache:${region}:${acct}:snapshot:${scheduledSnapshotPrefix(rg)}*`],
              },
              { Effect: "Allow", Action: "lambda:InvokeFunction", Resource: fn },
            ],
          }),
        ),
      },
      child,
    );
    this.schedule = new aws.scheduler.Schedule(
      `${name}-create`,
      {
        name: resourceName(args, "cache-snapshot"),
        description: `ElastiCache CreateSnapshot of ${args.env} (${args.schedule}); kept ${args.keepHours} h`,
        scheduleExpression: args.schedule,
        flexibleTimeWindow: { mode: "OFF" },
        kmsKeyArn: args.kmsKeyArn,
        target: {
          arn: CREATE_SNAPSHOT_TARGET,
          roleArn: this.schedulerRole.arn,
          input: pulumi.output(args.replicationGroupId).apply((rg) => JSON.stringify({ ReplicationGroupId: rg, SnapshotName: `${scheduledSnapshotPrefix(rg)}${EXECUTION_ID}` })),
          retryPolicy: { maximumRetryAttempts: 2, maximumEventAgeInSeconds: 3600 },
        },
      },
      child,
    );
    this.pruneSchedule = new aws.scheduler.Schedule(
      `${name}-prune-schedule`,
      {
        name: resourceName(args, "cache-snapshot-prune"),
        description: `Deletes ${args.env}'s scheduled ElastiCache snapshots older than ${args.keepHours} h`,
        scheduleExpression: args.pruneSchedule ?? "rate(1 hour)",
        flexibleTimeWindow: { mode: "OFF" },
        kmsKeyArn: args.kmsKeyArn,
        target: { arn: this.pruneFunction.arn, roleArn: this.schedulerRole.arn },
      },
      child,
    );
    this.registerOutputs({ scheduleName: this.schedule.name });
  }
}
