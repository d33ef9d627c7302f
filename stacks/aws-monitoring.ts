/**
 * What lets people see inside the AWS data layer, from aws.monitoring.*: the IAM role RDS
 * enhanced monitoring needs, the CloudWatch log groups ElastiCache delivers its slow log and
 * engine log to, and VPC flow logs for a VPC the stack created. Every log group keeps
 * aws.logRetentionDays and is encrypted with the stack's key.
 */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { resourceName } from "../lib/spec/access.js";

export interface AwsMonitoringArgs {
  /** Prefix of the roles' and log groups' names (spec: namePrefix). */
  namePrefix: string;
  /** The stack's KMS key for the log groups. */
  kmsKeyArn: pulumi.Input<string>;
  /** Days every log group keeps its events (spec: aws.logRetentionDays). */
  logRetentionDays: number;
  /**
   * Make the IAM role RDS enhanced monitoring runs as (spec: aws.monitoring.enhancedIntervalSeconds > 0).
   * @default false
   */
  enhancedMonitoringRole?: boolean;
  /**
   * ElastiCache's slow-log and engine-log groups (spec: aws.monitoring.cacheLogs).
   * @default false
   */
  cacheLogs?: boolean;
  /**
   * Record flow logs of this VPC (spec: aws.monitoring.flowLogs and flowLogTraffic, for a VPC the stack created).
   * @default none: no flow logs (an existing VPC is someone else's to log)
   */
  flowLogs?: { vpcId: pulumi.Input<string>; trafficType: string };
}

/** The AWS-managed policy enhanced monitoring's role needs. */
export const ENHANCED_MONITORING_POLICY_ARN = "arn:aws:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole";

/** Enhanced monitoring's role, ElastiCache's log groups, VPC flow logs. */
export class AwsMonitoring extends pulumi.ComponentResource {
  /** Present with `enhancedMonitoringRole`. */
  readonly enhancedMonitoringRole?: aws.iam.Role;
  readonly cacheLogGroups: aws.cloudwatch.LogGroup[] = [];
  /** ReplicationGroup.logDeliveryConfigurations for the groups above. */
  readonly cacheLogDelivery: aws.types.input.elasticache.ReplicationGroupLogDeliveryConfiguration[] = [];
  readonly flowLog?: aws.ec2.FlowLog;

  constructor(name: string, args: AwsMonitoringArgs, opts?: pulumi.ComponentResourceOptions) {
    super("crypto-prediction-infra:aws:Monitoring", name, {}, opts);
    const child = { parent: this };
    const logGroup = (suffix: string, groupName: string) =>
      new aws.cloudwatch.LogGroup(`${name}-${suffix}`, { name: groupName, retentionInDays: args.logRetentionDays, kmsKeyId: args.kmsKeyArn }, child);

    if (args.enhancedMonitoringRole) {
      this.enhancedMonitoringRole = new aws.iam.Role(
        `${name}-rds-monitoring-role`,
        { name: resourceName(args, "rds-monitoring"), assumeRolePolicy: JSON.stringify(assumedBy("monitoring.rds.amazonaws.com")) },
        child,
      );
      new aws.iam.RolePolicyAttachment(`${name}-rds-monitoring-policy`, { role: this.enhancedMonitoringRole.name, policyArn: ENHANCED_MONITORING_POLICY_ARN }, child);
    }

    if (args.cacheLogs) {
      for (const logType of ["slow-log", "engine-log"] as const) {
        const group = logGroup(`redis-${logType}`, `/aws/elasticache/${resourceName(args, "redis")}/${logType}`);
        this.cacheLogGroups.push(group);
        this.cacheLogDelivery.push({ destination: group.name, destinationType: "cloudwatch-logs", logFormat: "json", logType });
      }
    }

    if (args.flowLogs) {
      const group = logGroup("flow-logs", `/aws/vpc/${resourceName(args, "vpc")}/flow-logs`);
      const role = new aws.iam.Role(`${name}-flow-logs-role`, { name: resourceName(args, "flow-logs"), assumeRolePolicy: JSON.stringify(assumedBy("vpc-flow-logs.amazonaws.com")) }, child);
      new aws.iam.RolePolicy(
        `${name}-flow-logs-policy`,
        {
          role: role.id,
          policy: group.arn.apply((arn) =>
            JSON.stringify({
              Version: "2012-10-17",
              Statement: [{ Effect: "Allow", Action: ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"], Resource: [arn, `${arn}:*`] }],
            }),
          ),
        },
        child,
      );
      this.flowLog = new aws.ec2.FlowLog(
        `${name}-flow-log`,
        { vpcId: args.flowLogs.vpcId, trafficType: args.flowLogs.trafficType, logDestinationType: "cloud-watch-logs", logDestination: group.arn, iamRoleArn: role.arn, maxAggregationInterval: 60 },
        child,
      );
    }
    this.registerOutputs({ enhancedMonitoringRoleArn: this.enhancedMonitoringRole?.arn });
  }
}

/** A trust policy for one service principal. */
export function assumedBy(service: string): Record<string, unknown> {
  return { Version: "2012-10-17", Statement: [{ Effect: "Allow", Principal: { Service: service }, Action: "sts:AssumeRole" }] };
}
