/**
 * Where alarms and events go: the stack's SNS topic, encrypted with the stack's key, subscribed by
 * the spec's e-mail and HTTPS endpoints (aws.alarms.emails, aws.alarms.httpsEndpoints), with a
 * topic policy that lets CloudWatch alarms, RDS event subscriptions and ElastiCache notifications
 * publish. An existing topic (aws.alarmTopicArn) receives the same.
 */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { resourceName } from "../lib/spec/access.js";

export interface AwsAlertTopicArgs {
  /** Prefix of the topic's name (spec: namePrefix). */
  namePrefix: string;
  /** The stack's KMS key (aws-key.ts) that encrypts the topic. */
  kmsKeyArn: pulumi.Input<string>;
  /** Create the stack's own topic (spec: aws.createAlarmTopic). */
  createTopic: boolean;
  /**
   * A topic made elsewhere that receives the same (spec: aws.alarmTopicArn).
   * @default none
   */
  existingTopicArn?: string;
  /**
   * E-mail subscriptions of the created topic (spec: aws.alarms.emails).
   * @default []
   */
  emails?: string[];
  /**
   * HTTPS subscriptions of the created topic (spec: aws.alarms.httpsEndpoints).
   * @default []
   */
  httpsEndpoints?: string[];
}

/** The SNS topic(s) every alarm and event notification of the stack goes to. */
export class AwsAlertTopic extends pulumi.ComponentResource {
  /** Created when `createTopic` is true. */
  readonly topic?: aws.sns.Topic;
  readonly subscriptions: aws.sns.TopicSubscription[] = [];
  /** The created topic first, then `existingTopicArn`. */
  readonly arns: pulumi.Input<string>[];
  /** The topic ElastiCache notifications and RDS events go to (one only: ElastiCache takes one). */
  readonly primaryArn?: pulumi.Input<string>;

  constructor(name: string, args: AwsAlertTopicArgs, opts?: pulumi.ComponentResourceOptions) {
    super("crypto-prediction-infra:aws:AlertTopic", name, {}, opts);
    const child = { parent: this };
    if (args.createTopic) {
      this.topic = new aws.sns.Topic(`${name}-topic`, { name: resourceName(args, "alarms"), kmsMasterKeyId: args.kmsKeyArn }, child);
      new aws.sns.TopicPolicy(
        `${name}-policy`,
        { arn: this.topic.arn, policy: this.topic.arn.apply((arn) => JSON.stringify(topicPolicy(arn))) },
        child,
      );
      const subscribe = (protocol: "email" | "https", endpoint: string, i: number) =>
        this.subscriptions.push(
          new aws.sns.TopicSubscription(`${name}-${protocol}-${i}`, { topic: this.topic!.arn, protocol, endpoint, endpointAutoConfirms: protocol === "https" ? false : undefined }, child),
        );
      (args.emails ?? []).forEach((e, i) => subscribe("email", e, i));
      (args.httpsEndpoints ?? []).forEach((e, i) => subscribe("https", e, i));
    }
    this.arns = [...(this.topic ? [this.topic.arn] : []), ...(args.existingTopicArn ? [args.existingTopicArn] : [])];
    this.primaryArn = this.arns[0];
    this.registerOutputs({ arns: this.arns });
  }
}

/** Who may publish to the topic: the services that notify on the stack's behalf, in this account. */
export function topicPolicy(topicArn: string): Record<string, unknown> {
  const account = topicArn.split(":")[4];
  return {
    Version: "2012-10-17",
    Statement: [
      {
        Sid: "StackNotifications",
        Effect: "Allow",
        Principal: { Service: ["cloudwatch.amazonaws.com", "events.rds.amazonaws.com", "elasticache.amazonaws.com"] },
        Action: "sns:Publish",
        Resource: topicArn,
        Condition: { StringEquals: { "aws:SourceAccount": account } },
      },
    ],
  };
}
