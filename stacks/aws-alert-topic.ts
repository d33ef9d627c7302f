/**
 * Where alarms and events go: the stack's SNS topic, encrypted with the stack's key, subscribed by
 * the spec's e-mail and HTTPS endpoints (aws.alarms.emails, aws.alarms.httpsEndpoints), with a
 * topic policy that lets CloudWatch alarms, RDS event subscriptions and ElastiCache notifications
 * publish. An existing topic (aws.alarmTopicArn) receives the same.
 */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { resourceName } from "../lib/spec/access.js";
import type { Spec } from "../lib/spec/schema.js";

export interface AwsAlertTopicArgs {
  /** The environment's spec: aws.createAlarmTopic, aws.alarmTopicArn, aws.alarms.emails/httpsEndpoints. */
  spec: Spec;
  /** The stack's KMS key (aws-key.ts) that encrypts the topic. */
  kmsKeyArn: pulumi.Input<string>;
}

/** The SNS topic(s) every alarm and event notification of the stack goes to. */
export class AwsAlertTopic extends pulumi.ComponentResource {
  /** Created when aws.createAlarmTopic is true. */
  readonly topic?: aws.sns.Topic;
  readonly subscriptions: aws.sns.TopicSubscription[] = [];
  /** The created topic first, then aws.alarmTopicArn. */
  readonly arns: pulumi.Input<string>[];
  /** The topic ElastiCache notifications and RDS events go to (one only: ElastiCache takes one). */
  readonly primaryArn?: pulumi.Input<string>;

  constructor(name: string, args: AwsAlertTopicArgs, opts?: pulumi.ComponentResourceOptions) {
    super("crypto-prediction-infra:aws:AlertTopic", name, {}, opts);
    const { spec } = args;
    const child = { parent: this };
    if (spec.aws.createAlarmTopic) {
      this.topic = new aws.sns.Topic(`${name}-topic`, { name: resourceName(spec, "alarms"), kmsMasterKeyId: args.kmsKeyArn }, child);
      new aws.sns.TopicPolicy(
        `${name}-policy`,
        { arn: this.topic.arn, policy: this.topic.arn.apply((arn) => JSON.stringify(topicPolicy(arn))) },
        child,
      );
      const subscribe = (protocol: "email" | "https", endpoint: string, i: number) =>
        this.subscriptions.push(
          new aws.sns.TopicSubscription(`${name}-${protocol}-${i}`, { topic: this.topic!.arn, protocol, endpoint, endpointAutoConfirms: protocol === "https" ? false : undefined }, child),
        );
      spec.aws.alarms.emails.forEach((e, i) => subscribe("email", e, i));
      spec.aws.alarms.httpsEndpoints.forEach((e, i) => subscribe("https", e, i));
    }
    this.arns = [...(this.topic ? [this.topic.arn] : []), ...(spec.aws.alarmTopicArn ? [spec.aws.alarmTopicArn] : [])];
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
