/**
 * Prometheus alerting rules made from the spec: the guide's six thresholds (spec.alerts) over the
 * exporter's metrics (./exporter.ts), each with the `for:` and `severity` of spec.monitor. Every
 * expression selects `env="<env>"`, so the rules of several environments (each with its own
 * thresholds) can be loaded into one Prometheus.
 *
 *   stringify(alertingRules(spec))   // what `npm run monitor -- --rules` prints
 */
import { stringify } from "yaml";
import type { Spec } from "../spec/schema.js";
import { HIT_RATE_MIN_LOOKUPS } from "./monitor.js";

export type AlertKey = keyof Spec["monitor"]["alertFor"];

export interface AlertingRule {
  alert: string;
  expr: string;
  for: string;
  labels: { severity: string; env: string };
  annotations: { summary: string; description: string };
}

export interface RuleFile {
  groups: { name: string; rules: AlertingRule[] }[];
}

/** The alert names, by spec key. */
export const ALERT_NAMES: Record<AlertKey, string> = {
  connectionPool: "CpiPostgresConnectionPoolHigh",
  queryTime: "CpiPostgresSlowQueries",
  deadTuples: "CpiPostgresDeadTuplesHigh",
  redisMemory: "CpiRedisMemoryHigh",
  redisHitRate: "CpiRedisHitRateLow",
  redisEvictions: "CpiRedisEvictionsHigh",
};

/** The rule file for one environment. */
export function alertingRules(spec: Spec): RuleFile {
  const a = spec.alerts;
  const m = spec.monitor;
  const sel = `{env=${JSON.stringify(spec.env)}}`;
  const w = `[${m.rateWindowSeconds}s]`;
  const rule = (key: AlertKey, expr: string, summary: string, description: string): AlertingRule => ({
    alert: ALERT_NAMES[key],
    expr,
    for: `${m.alertFor[key]}s`,
    labels: { severity: m.severity[key], env: spec.env },
    annotations: { summary, description },
  });
  const rules = [
    rule(
      "connectionPool",
      `sum without (state) (cpi_postgres_connections${sel}) / cpi_postgres_max_connections${sel} * 100 > ${a.connectionPoolPercent}`,
      `PostgreSQL connections above ${a.connectionPoolPercent}% of max_connections (${spec.env})`,
      `{{ $value | printf "%.0f" }}% of max_connections in use; the client pool (size + overflow) or a leak is close to exhausting them. See pg_stat_activity.`,
    ),
    rule(
      "queryTime",
      `cpi_postgres_longest_query_seconds${sel} > ${a.queryTimeSeconds}` +
        ` or rate(cpi_postgres_statements_exec_seconds_total${sel}${w}) / rate(cpi_postgres_statements_calls_total${sel}${w}) > ${a.queryTimeSeconds}`,
      `PostgreSQL queries slower than ${a.queryTimeSeconds} s (${spec.env})`,
      `A query has been running, or statements took on average over ${m.rateWindowSeconds} s, {{ $value | printf "%.2f" }} s. See pg_stat_activity and pg_stat_statements (npm run monitor -- --env ${spec.env}).`,
    ),
    rule(
      "deadTuples",
      `cpi_postgres_table_dead_tuples${sel} / cpi_postgres_table_live_tuples${sel} * 100 > ${a.deadTuplePercent}`,
      `Dead tuples above ${a.deadTuplePercent}% of live in {{ $labels.table }} (${spec.env})`,
      `{{ $labels.table }} has dead tuples at {{ $value | printf "%.0f" }}% of its live ones; autovacuum is not keeping up. Run npm run maintain (VACUUM ANALYZE).`,
    ),
    rule(
      "redisMemory",
      `cpi_redis_memory_used_bytes${sel} / cpi_redis_memory_max_bytes${sel} * 100 > ${a.redisMemoryPercent} and cpi_redis_memory_max_bytes${sel} > 0`,
      `Redis memory above ${a.redisMemoryPercent}% of maxmemory (${spec.env})`,
      `used_memory is {{ $value | printf "%.0f" }}% of maxmemory; the eviction policy (${spec.redis.maxmemoryPolicy}) is about to drop keys.`,
    ),
    rule(
      "redisHitRate",
      `rate(cpi_redis_keyspace_hits_total${sel}${w}) / (rate(cpi_redis_keyspace_hits_total${sel}${w}) + rate(cpi_redis_keyspace_misses_total${sel}${w})) * 100 < ${a.redisHitRatePercent}` +
        ` and increase(cpi_redis_keyspace_hits_total${sel}${w}) + increase(cpi_redis_keyspace_misses_total${sel}${w}) >= ${HIT_RATE_MIN_LOOKUPS}`,
      `Redis hit rate below ${a.redisHitRatePercent}% (${spec.env})`,
      `{{ $value | printf "%.0f" }}% of key lookups over ${m.rateWindowSeconds} s found their key (judged from ${HIT_RATE_MIN_LOOKUPS} lookups up); check TTLs and what is cached.`,
    ),
    rule(
      "redisEvictions",
      `rate(cpi_redis_evicted_keys_total${sel}${w}) > ${a.redisEvictionsPerSecond}`,
      `Redis evicting more than ${a.redisEvictionsPerSecond} keys/s (${spec.env})`,
      `{{ $value | printf "%.0f" }} keys/s evicted over ${m.rateWindowSeconds} s: maxmemory (${String(spec.redis.maxmemory)}) is too small for the working set.`,
    ),
  ];
  return { groups: [{ name: `crypto-prediction-infra-${spec.env}`, rules }] };
}

/** The rule file as Prometheus reads it. */
export function alertingRulesYaml(spec: Spec): string {
  const header = `# Prometheus alerting rules of ${spec.env}, generated from the spec (Pulumi.${spec.env}.yaml: alerts, monitor) by\n#   npm run monitor -- --env ${spec.env} --rules\n`;
  return header + stringify(alertingRules(spec), { lineWidth: 0 });
}
