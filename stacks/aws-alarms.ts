/**
 * CloudWatch alarms for the guide's alerting thresholds (spec.alerts), one per rule of
 * awsAlarmRules() in lib/aws/mapping.ts: RDS metrics on the instance, ElastiCache metrics on
 * every member cluster, and slow queries from the exported PostgreSQL log (RDS has no query-time
 * metric), ReplicaLag on each read replica. Alarm, OK and (where silence is a problem)
 * insufficient-data actions go to the SNS topic(s) given, and so do the RDS events of the
 * instance and its replicas (an event subscription).
 */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { SLOW_QUERY_METRIC, SLOW_QUERY_NAMESPACE, type AlarmRule } from "../lib/aws/mapping.js";
import { resourceName } from "../lib/spec/access.js";

export interface AwsAlarmsArgs {
  /** Prefix of the alarms' names (spec: namePrefix). */
  namePrefix: string;
  /** The environment's name, for the descriptions (spec: env). */
  env: string;
  /** The alarms, one per rule (lib/aws/mapping.ts's awsAlarmRules from spec.alerts and aws.alarms). */
  rules: AlarmRule[];
  /**
   * RDS event categories of the event subscription (spec: aws.events.rdsCategories).
   * @default []
   */
  rdsEventCategories?: string[];
  /** The RDS instance's identifier (dimension DBInstanceIdentifier). */
  dbInstanceIdentifier: pulumi.Input<string>;
  /** The replication group's member cluster ids (dimension CacheClusterId); one alarm per member and rule. */
  cacheClusterIds: pulumi.Input<string[]>;
  /** How many member clusters the replication group has (1 + aws.cacheReplicas). */
  cacheClusterCount: number;
  /** The RDS PostgreSQL log group; required for the slow-query alarm. Default: none (no slow-query alarm). */
  postgresLogGroupName?: pulumi.Input<string>;
  /** SNS topic ARNs for alarm and OK actions. Default: none (alarms only show in the console). */
  actions?: pulumi.Input<string>[];
  /**
   * Identifiers of the RDS read replicas (ReplicaLag alarms, one per replica).
   * @default none
   */
  replicaIdentifiers?: pulumi.Input<string>[];
  /**
   * The topic RDS events (aws.events.rdsCategories) of the instance and its replicas go to.
   * @default none: no event subscription
   */
  eventTopicArn?: pulumi.Input<string>;
}

/** The spec's alarms on one RDS instance and one ElastiCache replication group. */
export class AwsAlarms extends pulumi.ComponentResource {
  readonly alarms: aws.cloudwatch.MetricAlarm[] = [];
  readonly slowQueryFilter?: aws.cloudwatch.LogMetricFilter;
  readonly eventSubscription?: aws.rds.EventSubscription;

  constructor(name: string, args: AwsAlarmsArgs, opts?: pulumi.ComponentResourceOptions) {
    super("crypto-prediction-infra:aws:Alarms", name, {}, opts);
    const child = { parent: this };
    const actions = args.actions ?? [];
    const common = (rule: AlarmRule) => ({
      namespace: rule.namespace,
      metricName: rule.metricName,
      statistic: rule.statistic,
      comparisonOperator: rule.comparisonOperator,
      threshold: rule.threshold,
      period: rule.period,
      evaluationPeriods: rule.evaluationPeriods,
      treatMissingData: rule.treatMissingData,
      alarmActions: actions,
      okActions: actions,
      // Where silence is itself a problem (the resource stopped reporting), say so too.
      insufficientDataActions: rule.notifyInsufficientData ? actions : [],
    });

    for (const rule of args.rules) {
      if (rule.source === "rds") {
        this.alarms.push(
          new aws.cloudwatch.MetricAlarm(
            `${name}-${rule.id}`,
            {
              name: resourceName(args, rule.id),
              alarmDescription: `${args.env}: PostgreSQL ${rule.description} (${rule.specKey})`,
              dimensions: { DBInstanceIdentifier: args.dbInstanceIdentifier },
              ...common(rule),
            },
            child,
          ),
        );
      } else if (rule.source === "rds-replica") {
        (args.replicaIdentifiers ?? []).forEach((replica, i) => {
          this.alarms.push(
            new aws.cloudwatch.MetricAlarm(
              `${name}-${rule.id}-${i}`,
              {
                name: resourceName(args, `${rule.id}-${i + 1}`),
                alarmDescription: `${args.env}: PostgreSQL replica ${i + 1}: ${rule.description} (${rule.specKey})`,
                dimensions: { DBInstanceIdentifier: replica },
                ...common(rule),
              },
              child,
            ),
          );
        });
      } else if (rule.source === "elasticache") {
        for (let i = 0; i < args.cacheClusterCount; i++) {
          this.alarms.push(
            new aws.cloudwatch.MetricAlarm(
              `${name}-${rule.id}-${i}`,
              {
                name: resourceName(args, `${rule.id}-${i}`),
                alarmDescription: `${args.env}: Redis node ${i}: ${rule.description} (${rule.specKey})`,
                dimensions: { CacheClusterId: pulumi.output(args.cacheClusterIds).apply((ids) => memberAt(ids, i)) },
                ...common(rule),
              },
              child,
            ),
          );
        }
      } else if (args.postgresLogGroupName !== undefined) {
        this.slowQueryFilter = new aws.cloudwatch.LogMetricFilter(
          `${name}-slow-query-filter`,
          {
            name: resourceName(args, "slow-queries"),
            logGroupName: args.postgresLogGroupName,
            pattern: SLOW_QUERY_PATTERN,
            metricTransformation: { namespace: SLOW_QUERY_NAMESPACE, name: SLOW_QUERY_METRIC, value: "1", defaultValue: "0", unit: "Count" },
          },
          child,
        );
        this.alarms.push(
          new aws.cloudwatch.MetricAlarm(
            `${name}-${rule.id}`,
            { name: resourceName(args, rule.id), alarmDescription: `${args.env}: PostgreSQL ${rule.description} (${rule.specKey})`, ...common(rule) },
            { parent: this, dependsOn: [this.slowQueryFilter] },
          ),
        );
      }
    }
    if (args.eventTopicArn !== undefined) {
      this.eventSubscription = new aws.rds.EventSubscription(
        `${name}-rds-events`,
        {
          name: resourceName(args, "rds-events"),
          snsTopic: args.eventTopicArn,
          sourceType: "db-instance",
          sourceIds: [args.dbInstanceIdentifier, ...(args.replicaIdentifiers ?? [])],
          eventCategories: args.rdsEventCategories ?? [],
          enabled: true,
        },
        child,
      );
    }
    this.registerOutputs({ alarmNames: this.alarms.map((a) => a.name) });
  }
}

// ---------------------------------------------------------------------------------------------
// Pure helpers
// ---------------------------------------------------------------------------------------------

/**
 * log_min_duration_statement writes `duration: 1234.567 ms  statement: …` for each statement at
 * least that slow; the filter counts those lines.
 */
export const SLOW_QUERY_PATTERN = '"duration:"';

/** The i-th member cluster id in a stable (sorted) order. */
export function memberAt(ids: string[], i: number): string {
  const id = [...ids].sort()[i];
  if (id === undefined) throw new Error(`replication group has ${ids.length} member clusters, expected at least ${i + 1}`);
  return id;
}
