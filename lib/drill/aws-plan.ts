/**
 * The drill on AWS (spec.target aws: staging, prod), planned, not run: the same seven phases map to
 * RDS/ElastiCache snapshots → new instances from them → verify. Every identifier is derived from
 * the spec exactly as the stack (stacks/aws-data-stack.ts) and the backup's AWS code
 * (lib/aws/snapshots.ts) name them, so the printed commands work as they stand once AWS
 * credentials are set. The live resources are never touched: the "disaster" is declared, and the
 * recovery is built next to them, then deleted.
 */
import { backupId } from "../backup/files.js";
import { resourceName } from "../spec/access.js";
import { awsIdentifiers, restoredIdentifiers, snapshotNames } from "../aws/snapshots.js";
import { rpoObjectiveSeconds, type Spec } from "../spec/schema.js";
import type { PhaseName } from "./report.js";
import { shellWord } from "../shell.js";

export interface AwsPlanStep {
  phase: PhaseName;
  title: string;
  /** The toolkit command that does it, when there is one. */
  toolkit?: string;
  /** AWS SDK calls (client: Command {parameters}). */
  sdk: string[];
  /** AWS CLI equivalents (bash). */
  cli: string[];
  note?: string;
}

export interface AwsDrillPlan {
  env: string;
  region: string;
  /** Names used throughout. */
  identifiers: {
    rdsInstance: string;
    replicationGroup: string;
    rdsSnapshot: string;
    cacheSnapshot: string;
    restoredRdsInstance: string;
    restoredReplicationGroup: string;
    rdsParameterGroup: string;
    rdsSubnetGroup: string;
    cacheParameterGroup: string;
    cacheSubnetGroup: string;
  };
  objectives: { rtoSeconds: number; rpoSeconds: number };
  steps: AwsPlanStep[];
  /** How RTO and RPO are read off the run. */
  measure: string[];
}

/** The plan for `env`'s spec, with snapshot and restore names for a run at `now`. */
export function awsDrillPlan(spec: Spec, now = new Date()): AwsDrillPlan {
  const region = spec.aws.region;
  const live = awsIdentifiers(spec);
  const id = backupId(now);
  const snaps = snapshotNames(spec, id);
  const restored = restoredIdentifiers(spec, now);
  const ids = {
    rdsInstance: live.rdsInstance,
    replicationGroup: live.replicationGroup,
    rdsSnapshot: snaps.rds,
    cacheSnapshot: snaps.elasticache,
    restoredRdsInstance: restored.rdsInstance,
    restoredReplicationGroup: restored.replicationGroup,
    rdsParameterGroup: resourceName(spec, `postgres${spec.postgres.version}`),
    rdsSubnetGroup: resourceName(spec, "postgres"),
    cacheParameterGroup: resourceName(spec, `redis${spec.redis.version}`),
    cacheSubnetGroup: resourceName(spec, "redis"),
  };
  const q = shellWord;
  const aws = `aws --region ${q(region)}`;
  const db = spec.postgres.database;
  const markerSql = `INSERT INTO market_data (cryptocurrency_id, timestamp, open_price, high_price, low_price, close_price, volume, data_source) SELECT id, now(), 0, 0, 0, 0, 0, 'dr-drill:${id.toLowerCase()}' FROM cryptocurrencies WHERE symbol = 'DRILL'`;
  const endpointOf = (instance: string) => `$(${aws} rds describe-db-instances --db-instance-identifier ${q(instance)} --query 'DBInstances[0].Endpoint.Address' --output text)`;
  const cacheEndpointOf = (group: string) => `$(${aws} elasticache describe-replication-groups --replication-group-id ${q(group)} --query 'ReplicationGroups[0].NodeGroups[0].PrimaryEndpoint.Address' --output text)`;
  const secretOf = (instance: string) =>
    `$(${aws} secretsmanager get-secret-value --secret-id "$(${aws} rds describe-db-instances --db-instance-identifier ${q(instance)} --query 'DBInstances[0].MasterUserSecret.SecretArn' --output text)" --query SecretString --output text | jq -r .password)`;

  const steps: AwsPlanStep[] = [
    {
      phase: "prepare",
      title: "Check the live resources; write a marker row and key (from a host inside the VPC)",
      sdk: [
        `RDS: DescribeDBInstances {DBInstanceIdentifier: "${ids.rdsInstance}"}`,
        `ElastiCache: DescribeReplicationGroups {ReplicationGroupId: "${ids.replicationGroup}"}`,
      ],
      cli: [
        `${aws} rds describe-db-instances --db-instance-identifier ${q(ids.rdsInstance)} --query 'DBInstances[0].[DBInstanceStatus,Endpoint.Address,MasterUserSecret.SecretArn]'`,
        `${aws} elasticache describe-replication-groups --replication-group-id ${q(ids.replicationGroup)} --query 'ReplicationGroups[0].[Status,NodeGroups[0].PrimaryEndpoint.Address]'`,
        `export PGPASSWORD=${secretOf(ids.rdsInstance)}`,
        `psql "host=${endpointOf(ids.rdsInstance)} port=${spec.postgres.port} dbname=${db} user=${spec.postgres.user} sslmode=verify-full" -c ${q(`INSERT INTO cryptocurrencies (symbol, name, is_active) VALUES ('DRILL', 'DR drill markers (not a real coin)', false) ON CONFLICT (symbol) DO NOTHING`)} -c ${q(markerSql)}`,
        `REDISCLI_AUTH="$REDIS_AUTH_TOKEN" redis-cli --tls -h ${cacheEndpointOf(ids.replicationGroup)} -p ${spec.redis.port} SET drill:${id.toLowerCase()}:0:written_at "$(date +%s%3N)"`,
      ],
      note: "The Redis AUTH token is the stack's secret output (pulumi stack output --show-secrets); never put it in argv.",
    },
    {
      phase: "backup",
      title: "Snapshot both (the backup command does this and writes the manifest)",
      toolkit: `npm run backup -- --env ${spec.env}`,
      sdk: [
        `RDS: CreateDBSnapshot {DBInstanceIdentifier: "${ids.rdsInstance}", DBSnapshotIdentifier: "${ids.rdsSnapshot}"}`,
        `ElastiCache: CreateSnapshot {ReplicationGroupId: "${ids.replicationGroup}", SnapshotName: "${ids.cacheSnapshot}"}`,
        `poll DescribeDBSnapshots / DescribeSnapshots until both are "available"`,
      ],
      cli: [
        `${aws} rds create-db-snapshot --db-instance-identifier ${q(ids.rdsInstance)} --db-snapshot-identifier ${q(ids.rdsSnapshot)}`,
        `${aws} elasticache create-snapshot --replication-group-id ${q(ids.replicationGroup)} --snapshot-name ${q(ids.cacheSnapshot)}`,
        `${aws} rds wait db-snapshot-available --db-snapshot-identifier ${q(ids.rdsSnapshot)}`,
        `until [ "$(${aws} elasticache describe-snapshots --snapshot-name ${q(ids.cacheSnapshot)} --query 'Snapshots[0].SnapshotStatus' --output text)" = available ]; do sleep 15; done`,
      ],
    },
    {
      phase: "writes",
      title: "Keep writing markers for a bounded time (the application's writes after the snapshot are the RPO exposure)",
      sdk: [],
      cli: [`for i in $(seq 1 60); do psql "…same connection as above…" -qc ${q(markerSql)}; sleep 1; done   # note the last acknowledged time`],
    },
    {
      phase: "disaster",
      title: "Declare the disaster (start the RTO clock); the live resources stay up — the recovery is built beside them",
      sdk: [],
      cli: [`DRILL_T0=$(date +%s)`],
      note: "A real loss would delete the live instance; a drill must not. Everything below creates new resources.",
    },
    {
      phase: "recreate",
      title: "New RDS instance and ElastiCache replication group from the snapshots (phases 5 and 6 are one step on AWS)",
      toolkit: `npm run restore -- --env ${spec.env} --from "$(ls -d ${spec.backup.dir}/${spec.env}/2*/ | tail -1)"   # the newest backup; names its new resources itself`,
      sdk: [
        `RDS: RestoreDBInstanceFromDBSnapshot {DBInstanceIdentifier: "${ids.restoredRdsInstance}", DBSnapshotIdentifier: "${ids.rdsSnapshot}", DBInstanceClass: "${spec.aws.rdsInstanceClass}", DBSubnetGroupName: "${ids.rdsSubnetGroup}", DBParameterGroupName: "${ids.rdsParameterGroup}", VpcSecurityGroupIds: <the live instance's>, Port: ${spec.postgres.port}, MultiAZ: ${spec.aws.multiAz}, PubliclyAccessible: false, ManageMasterUserPassword: true}`,
        `ElastiCache: CreateReplicationGroup {ReplicationGroupId: "${ids.restoredReplicationGroup}", SnapshotName: "${ids.cacheSnapshot}", CacheNodeType: "${spec.aws.cacheNodeType}", NumCacheClusters: ${1 + spec.aws.cacheReplicas}, CacheSubnetGroupName: "${ids.cacheSubnetGroup}", CacheParameterGroupName: "${ids.cacheParameterGroup}", SecurityGroupIds: <the live group's>, Port: ${spec.redis.port}, TransitEncryptionEnabled: true, AtRestEncryptionEnabled: true, AuthToken: <new, stored 0600>}`,
      ],
      cli: [
        `SG_PG=$(${aws} rds describe-db-instances --db-instance-identifier ${q(ids.rdsInstance)} --query 'DBInstances[0].VpcSecurityGroups[].VpcSecurityGroupId' --output text)`,
        `${aws} rds restore-db-instance-from-db-snapshot --db-instance-identifier ${q(ids.restoredRdsInstance)} --db-snapshot-identifier ${q(ids.rdsSnapshot)} --db-instance-class ${q(spec.aws.rdsInstanceClass)} --db-subnet-group-name ${q(ids.rdsSubnetGroup)} --db-parameter-group-name ${q(ids.rdsParameterGroup)} --vpc-security-group-ids $SG_PG --port ${spec.postgres.port} ${spec.aws.multiAz ? "--multi-az" : "--no-multi-az"} --no-publicly-accessible --manage-master-user-password`,
        `SG_REDIS=$(${aws} elasticache describe-cache-clusters --cache-cluster-id "$(${aws} elasticache describe-replication-groups --replication-group-id ${q(ids.replicationGroup)} --query 'ReplicationGroups[0].MemberClusters[0]' --output text)" --query 'CacheClusters[0].SecurityGroups[].SecurityGroupId' --output text)`,
        `${aws} elasticache create-replication-group --cli-input-json file://restore-redis.json   # the parameters above; the AuthToken only in this 0600 file, never in argv`,
      ],
    },
    {
      phase: "restore",
      title: "Wait until both are available",
      sdk: [`poll DescribeDBInstances / DescribeReplicationGroups until "available"`],
      cli: [
        `${aws} rds wait db-instance-available --db-instance-identifier ${q(ids.restoredRdsInstance)}`,
        `${aws} elasticache wait replication-group-available --replication-group-id ${q(ids.restoredReplicationGroup)}`,
      ],
    },
    {
      phase: "verify",
      title: "The verify command against the new endpoints; row counts and newest marker against the manifest (stop the RTO clock)",
      toolkit: `npm run verify -- --env ${spec.env} --database-url "postgresql://${spec.postgres.user}@${endpointOf(ids.restoredRdsInstance)}:${spec.postgres.port}/${db}?sslmode=verify-full" --redis-url "rediss://${cacheEndpointOf(ids.restoredReplicationGroup)}:${spec.redis.port}/${spec.redis.db}"`,
      sdk: [],
      cli: [
        `export PGPASSWORD=${secretOf(ids.restoredRdsInstance)} REDISCLI_AUTH="$(cat <the new AUTH token file>)"`,
        `psql "host=${endpointOf(ids.restoredRdsInstance)} port=${spec.postgres.port} dbname=${db} user=${spec.postgres.user} sslmode=verify-full" -c "SELECT max(timestamp) FROM market_data WHERE data_source LIKE 'dr-drill:%'" -c "SELECT 'market_data', count(*) FROM market_data UNION ALL SELECT 'predictions', count(*) FROM predictions UNION ALL SELECT 'cryptocurrencies', count(*) FROM cryptocurrencies"`,
        `echo "RTO: $(( $(date +%s) - DRILL_T0 )) s"`,
      ],
    },
  ];
  steps.push({
    phase: "verify",
    title: "Clean up the drill's resources (after the report is filed)",
    sdk: [`RDS: DeleteDBInstance {DBInstanceIdentifier: "${ids.restoredRdsInstance}", SkipFinalSnapshot: true, DeleteAutomatedBackups: true}`, `ElastiCache: DeleteReplicationGroup {ReplicationGroupId: "${ids.restoredReplicationGroup}", RetainPrimaryCluster: false}`],
    cli: [
      `${aws} rds delete-db-instance --db-instance-identifier ${q(ids.restoredRdsInstance)} --skip-final-snapshot --delete-automated-backups`,
      `${aws} elasticache delete-replication-group --replication-group-id ${q(ids.restoredReplicationGroup)} --no-retain-primary-cluster`,
      `psql "…live instance…" -c "DELETE FROM market_data WHERE data_source = 'dr-drill:${id.toLowerCase()}'"   # the markers on the live instance`,
    ],
    note: `Keep the snapshots per backup.retentionDays (${spec.backup.retentionDays} days), or delete them: aws rds delete-db-snapshot / aws elasticache delete-snapshot.`,
  });

  return {
    env: spec.env,
    region,
    identifiers: ids,
    objectives: { rtoSeconds: spec.dr.rtoSeconds, rpoSeconds: rpoObjectiveSeconds(spec) },
    steps,
    measure: [
      `RTO = time from DRILL_T0 (phase 4) to the end of verification; objective dr.rtoSeconds = ${spec.dr.rtoSeconds} s.`,
      `RPO = last acknowledged marker write before DRILL_T0 − newest marker (max(timestamp)) on the restored instance; objective dr.rpoSeconds = ${rpoObjectiveSeconds(spec)} s.`,
      `Snapshots bound the RPO by the time since the last snapshot; RDS point-in-time recovery (restore-db-instance-to-point-in-time --use-latest-restorable-time) lowers it to about 5 minutes for PostgreSQL.`,
    ],
  };
}

/** The plan for people (and for a --report file). */
export function formatAwsPlanMarkdown(plan: AwsDrillPlan): string {
  const md = [
    `# DR drill plan: ${plan.env} (AWS, ${plan.region})`,
    "",
    "Planned, not run: `npm run drill` runs the drill on embedded and Docker targets only. Run these steps from a host that reaches the VPC, with AWS credentials set.",
    "",
    `Objectives (spec): RTO ≤ ${plan.objectives.rtoSeconds} s (\`dr.rtoSeconds\`), RPO ≤ ${plan.objectives.rpoSeconds} s (\`dr.rpoSeconds\`).`,
    "",
    "| Resource | Identifier |",
    "|---|---|",
    ...Object.entries(plan.identifiers).map(([k, v]) => `| ${k} | \`${v}\` |`),
    "",
  ];
  plan.steps.forEach((step, i) => {
    md.push(`## ${i + 1}. ${step.phase}: ${step.title}`, "");
    if (step.toolkit) md.push(`Toolkit: \`${step.toolkit}\``, "");
    if (step.sdk.length) md.push("AWS SDK:", "", ...step.sdk.map((s) => `- ${s}`), "");
    if (step.cli.length) md.push("```bash", ...step.cli, "```", "");
    if (step.note) md.push(`> ${step.note}`, "");
  });
  md.push("## Measuring", "", ...plan.measure.map((m) => `- ${m}`), "");
  return md.join("\n");
}
