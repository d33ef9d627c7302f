/**
 * The guide's metrics and alerting thresholds (spec.alerts) as one sampled snapshot.
 *
 * PostgreSQL: connection use vs max_connections, queries slower than the threshold (running now,
 * and on average in pg_stat_statements when it is loaded), cache and index hit ratios, dead
 * tuples vs live per table, table sizes, unused indexes. Redis: memory vs maxmemory, hit rate,
 * evictions per second and commands per second between two INFO samples, clients. Lines with a
 * threshold are ok or warn; the rest are information.
 */
import type pg from "pg";
import type { Redis } from "ioredis";
import { EXIT, type ExitCode } from "../errors.js";
import { redact } from "../redact.js";
import { withPg, withRedis } from "../db/clients.js";
import type { Environment } from "../env/environment.js";
import type { Spec } from "../spec/schema.js";
import { humanBytes } from "../spec/units.js";
import { archivingSkipReason, assessArchiver, checkArchiveFolder, freshnessOf, readArchiver, walPushAssessment, type Assessment } from "../verify/archive.js";
import { errorText } from "../verify/report.js";
import { parseInfo } from "../db/redis-info.js";
import { redisOptions } from "../verify/redis.js";

export type MetricStatus = "ok" | "warn" | "info" | "error";

export interface MetricLine {
  id: string;
  server: "postgres" | "redis";
  title: string;
  status: MetricStatus;
  /** The measured value, for people (e.g. "12 / 100 (12%)"). */
  value: string;
  /** The alert threshold, for people (e.g. "> 80%"); absent for information lines. */
  threshold?: string;
  /** More about the value: which tables, which queries. */
  detail?: string;
  /** The number compared with the threshold (percent, per second, count). */
  measured?: number;
}

export interface MonitorReport {
  env: string;
  target: string;
  intervalSeconds: number;
  lines: MetricLine[];
  warnings: number;
  /** 0 all within thresholds, 1 a threshold crossed, 2 something could not be measured. */
  exitCode: ExitCode;
  ms: number;
}

export interface MonitorOptions {
  /** Seconds between the two Redis samples (rates). Default 1; 0 skips the rates. */
  intervalSeconds?: number;
}

export async function monitorEnvironment(target: Environment, spec: Spec = target.spec, options: MonitorOptions = {}): Promise<MonitorReport> {
  const started = performance.now();
  const interval = options.intervalSeconds ?? 1;
  const parts = await Promise.all([
    target.postgres
      ? withPg(target.postgres.config("admin"), async (client) => [...(await postgresMetrics(client, spec)), ...(await archiveMetrics(client, target, spec))]).catch((error: unknown) => [errorLine("postgres", `could not connect to ${target.postgres!.label}: ${errorText(error)}`)])
      : Promise.resolve([]),
    target.redis
      ? withRedis(redisOptions(target.redis, "admin"), (redis) => redisMetrics(redis, spec, interval)).catch((error: unknown) => [errorLine("redis", `could not connect to ${target.redis!.label}: ${errorText(error)}`)])
      : Promise.resolve([]),
  ]);
  const lines = parts.flat();
  const warnings = lines.filter((l) => l.status === "warn").length;
  const exitCode: ExitCode = warnings ? EXIT.PROBLEM : lines.some((l) => l.status === "error") ? EXIT.ERROR : EXIT.OK;
  return { env: spec.env, target: target.label, intervalSeconds: interval, lines, warnings, exitCode, ms: Math.round(performance.now() - started) };
}

function errorLine(server: "postgres" | "redis", message: string): MetricLine {
  return { id: `${server}.connect`, server, title: "connect", status: "error", value: message };
}

const pct = (part: number, whole: number) => (whole > 0 ? (100 * part) / whole : 0);
const fmtPct = (value: number) => `${value >= 10 || value === 0 ? Math.round(value) : value.toFixed(1)}%`;

// ---- PostgreSQL ------------------------------------------------------------------------------

async function postgresMetrics(client: pg.Client, spec: Spec): Promise<MetricLine[]> {
  const a = spec.alerts;
  const lines: MetricLine[] = [];
  const thresholdMs = a.queryTimeSeconds * 1000;

  const conn = (
    await client.query<{ used: number; active: number; idle_tx: number; slow: number; max: number }>(`
      SELECT count(*) FILTER (WHERE backend_type = 'client backend')::int AS used,
             count(*) FILTER (WHERE backend_type = 'client backend' AND state = 'active')::int AS active,
             count(*) FILTER (WHERE state LIKE 'idle in transaction%')::int AS idle_tx,
             count(*) FILTER (WHERE state = 'active' AND pid <> pg_backend_pid() AND backend_type = 'client backend'
                                AND now() - query_start > make_interval(secs => $1))::int AS slow,
             current_setting('max_connections')::int AS max
        FROM pg_stat_activity`,
      [a.queryTimeSeconds],
    )
  ).rows[0]!;
  const usedPct = pct(conn.used, conn.max);
  lines.push({
    id: "postgres.connections",
    server: "postgres",
    title: "connections",
    status: usedPct > a.connectionPoolPercent ? "warn" : "ok",
    value: `${conn.used} / ${conn.max} (${fmtPct(usedPct)})`,
    threshold: `> ${a.connectionPoolPercent}% of max_connections`,
    detail: `${conn.active} active, ${conn.idle_tx} idle in transaction`,
    measured: usedPct,
  });
  lines.push({
    id: "postgres.queries.running",
    server: "postgres",
    title: "queries running now",
    status: conn.slow ? "warn" : "ok",
    value: `${conn.slow} running longer than ${a.queryTimeSeconds} s`,
    threshold: `> ${a.queryTimeSeconds} s`,
    detail: conn.slow ? "SELECT pid, now() - query_start, query FROM pg_stat_activity WHERE state = 'active' ORDER BY 2 DESC" : undefined,
    measured: conn.slow,
  });

  // Slow statements on average, from pg_stat_statements when the library is loaded and the extension exists.
  const statements = (
    await client.query<{ preloaded: boolean; installed: boolean }>(
      `SELECT 'pg_stat_statements' = ANY(string_to_array(replace(current_setting('shared_preload_libraries'), ' ', ''), ',')) AS preloaded,
              EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements') AS installed`,
    )
  ).rows[0]!;
  if (statements.preloaded && statements.installed) {
    const { rows } = await client.query<{ calls: string; mean_ms: number; max_ms: number; query: string }>(
      `SELECT calls, mean_exec_time AS mean_ms, max_exec_time AS max_ms, left(regexp_replace(query, '\\s+', ' ', 'g'), 100) AS query
         FROM pg_stat_statements
        WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND mean_exec_time > $1 AND query !~* 'password'
        ORDER BY mean_exec_time DESC LIMIT 5`,
      [thresholdMs],
    );
    lines.push({
      id: "postgres.queries.slow",
      server: "postgres",
      title: "slow statements (mean)",
      status: rows.length ? "warn" : "ok",
      value: rows.length ? `${rows.length}${rows.length === 5 ? "+" : ""} statement${rows.length > 1 ? "s" : ""} slower than ${a.queryTimeSeconds} s on average` : `none slower than ${a.queryTimeSeconds} s on average`,
      threshold: `> ${a.queryTimeSeconds} s`,
      detail: rows.length ? rows.map((r) => `${(r.mean_ms / 1000).toFixed(2)} s × ${r.calls}: ${r.query}`).join(" | ") : undefined,
      measured: rows.length,
    });
  } else {
    lines.push({
      id: "postgres.queries.slow",
      server: "postgres",
      title: "slow statements (mean)",
      status: "info",
      value: "pg_stat_statements is not available",
      detail: !statements.preloaded ? "add pg_stat_statements to shared_preload_libraries (spec: postgres.sharedPreloadLibraries) and restart" : "CREATE EXTENSION pg_stat_statements (the roles bootstrap does it)",
    });
  }

  const ratios = (
    await client.query<{ blks_hit: string; blks_read: string; idx_hit: string | null; idx_read: string | null }>(`
      SELECT d.blks_hit, d.blks_read,
             (SELECT sum(idx_blks_hit) FROM pg_statio_user_indexes) AS idx_hit,
             (SELECT sum(idx_blks_read) FROM pg_statio_user_indexes) AS idx_read
        FROM pg_stat_database d WHERE d.datname = current_database()`)
  ).rows[0]!;
  const ratioLine = (id: string, title: string, hit: number, read: number): MetricLine => ({
    id,
    server: "postgres",
    title,
    status: "info",
    value: hit + read ? fmtPct(pct(hit, hit + read)) : "no block reads yet",
    detail: `${hit} hits, ${read} reads from disk or the OS cache`,
    measured: hit + read ? pct(hit, hit + read) : undefined,
  });
  lines.push(ratioLine("postgres.cache_hit_ratio", "cache hit ratio", Number(ratios.blks_hit), Number(ratios.blks_read)));
  lines.push(ratioLine("postgres.index_hit_ratio", "index hit ratio", Number(ratios.idx_hit ?? 0), Number(ratios.idx_read ?? 0)));

  const { rows: tables } = await client.query<{ name: string; live: string; dead: string; bytes: string }>(`
    SELECT schemaname || '.' || relname AS name, n_live_tup AS live, n_dead_tup AS dead, pg_total_relation_size(relid) AS bytes
      FROM pg_stat_user_tables ORDER BY pg_total_relation_size(relid) DESC`);
  const bloated = tables.filter((t) => Number(t.dead) > 0 && Number(t.dead) > (a.deadTuplePercent / 100) * Number(t.live));
  const worst = [...tables].sort((x, y) => pct(Number(y.dead), Number(y.live)) - pct(Number(x.dead), Number(x.live)))[0];
  const deadText = (t: (typeof tables)[number]) => `${t.name} ${t.dead} dead / ${t.live} live${Number(t.live) ? ` (${fmtPct(pct(Number(t.dead), Number(t.live)))})` : ""}`;
  lines.push({
    id: "postgres.dead_tuples",
    server: "postgres",
    title: "dead tuples",
    status: bloated.length ? "warn" : "ok",
    value: bloated.length ? `${bloated.length} table${bloated.length > 1 ? "s" : ""} above ${a.deadTuplePercent}% of live` : worst && Number(worst.dead) ? `worst: ${deadText(worst)}` : "none",
    threshold: `> ${a.deadTuplePercent}% of live tuples`,
    detail: bloated.length ? `${bloated.map(deadText).join(", ")}; run npm run maintain -- --env ${spec.env} (VACUUM ANALYZE), and check autovacuum` : undefined,
    measured: bloated.length,
  });
  lines.push({
    id: "postgres.table_sizes",
    server: "postgres",
    title: "table sizes",
    status: "info",
    value: humanBytes(tables.reduce((n, t) => n + Number(t.bytes), 0)) + " in " + tables.length + " tables",
    detail: tables.slice(0, 6).map((t) => `${t.name} ${humanBytes(Number(t.bytes))}`).join(", "),
  });

  const { rows: unused } = await client.query<{ name: string; bytes: string }>(`
    SELECT s.schemaname || '.' || s.indexrelname AS name, pg_relation_size(s.indexrelid) AS bytes
      FROM pg_stat_user_indexes s JOIN pg_index i ON i.indexrelid = s.indexrelid
     WHERE s.idx_scan = 0 AND NOT i.indisunique AND NOT i.indisprimary
     ORDER BY pg_relation_size(s.indexrelid) DESC`);
  lines.push({
    id: "postgres.unused_indexes",
    server: "postgres",
    title: "unused indexes",
    status: "info",
    value: unused.length ? `${unused.length} never scanned since the statistics were reset` : "none",
    detail: unused.length ? unused.map((u) => `${u.name} (${humanBytes(Number(u.bytes))})`).join(", ") + "; unique and primary-key indexes are not counted (they enforce constraints)" : undefined,
  });
  return lines;
}

/** Archiving: the archiver, WAL waiting for it, its folder (verify's assessments, as metric lines). */
async function archiveMetrics(client: pg.Client, target: Environment, spec: Spec): Promise<MetricLine[]> {
  const skip = archivingSkipReason(spec);
  if (skip) return [{ id: "postgres.archiver", server: "postgres", title: "WAL archiver", status: "info", value: skip }];
  let state;
  try {
    state = await readArchiver(client);
  } catch (error) {
    return [{ id: "postgres.archiver", server: "postgres", title: "WAL archiver", status: "error", value: `could not read pg_stat_archiver: ${errorText(error)}`, detail: "needs a superuser or a member of pg_monitor" }];
  }
  const folder = state.archiveMode === "off" ? undefined : await checkArchiveFolder(target, state.archiveDirectory);
  const freshness = await freshnessOf(target, spec);
  const push = await walPushAssessment(target, spec);
  const pushLine: MetricLine[] = push
    ? [{ id: "postgres.wal_push_backlog", server: "postgres", title: "WAL waiting to be pushed", status: push.status === "fail" ? "warn" : push.status === "skip" ? "info" : push.status, value: push.detail, threshold: push.threshold, detail: push.status === "fail" ? push.hint : undefined }]
    : [];
  return [...[...assessArchiver(state, spec, folder), ...(freshness ? [freshness] : [])].map(assessmentLine), ...pushLine];
}

const ASSESSMENT_IDS: Record<Assessment["key"], string> = { archiver: "postgres.archiver", lag: "postgres.archive_lag", folder: "postgres.archive_folder", freshness: "postgres.backup_age" };

/** A verify assessment as a monitor line: a failure is a WARN (exit 1). */
export function assessmentLine(a: Assessment): MetricLine {
  const status: MetricStatus = a.status === "fail" ? "warn" : a.status === "skip" ? "info" : a.status;
  return { id: ASSESSMENT_IDS[a.key], server: "postgres", title: a.title, status, value: a.value, threshold: a.threshold, detail: a.status === "fail" ? a.hint : undefined, measured: a.measured };
}

// ---- Redis -----------------------------------------------------------------------------------

const num = (info: Map<string, string>, key: string) => Number(info.get(key) ?? 0);

/**
 * Lookups below which a hit rate says nothing: the rate is judged over the sampling window when
 * it saw this many, else since the server's start, else not at all (an idle cache is no alert).
 */
export const HIT_RATE_MIN_LOOKUPS = 100;

async function redisMetrics(redis: Redis, spec: Spec, intervalSeconds: number): Promise<MetricLine[]> {
  const a = spec.alerts;
  const first = parseInfo(await redis.info("all"));
  const t1 = performance.now();
  if (intervalSeconds > 0) await new Promise((r) => setTimeout(r, intervalSeconds * 1000));
  const second = intervalSeconds > 0 ? parseInfo(await redis.info("all")) : first;
  const seconds = intervalSeconds > 0 ? (performance.now() - t1) / 1000 : 0;
  const lines: MetricLine[] = [];

  const used = num(second, "used_memory");
  const max = num(second, "maxmemory");
  const memPct = pct(used, max);
  lines.push({
    id: "redis.memory",
    server: "redis",
    title: "memory",
    status: max > 0 && memPct > a.redisMemoryPercent ? "warn" : max > 0 ? "ok" : "info",
    value: max > 0 ? `${humanBytes(used)} / ${humanBytes(max)} (${fmtPct(memPct)})` : `${humanBytes(used)} (no maxmemory: unbounded)`,
    threshold: `> ${a.redisMemoryPercent}% of maxmemory`,
    detail: `policy ${second.get("maxmemory_policy") ?? "?"}, peak ${humanBytes(num(second, "used_memory_peak"))}, fragmentation ${second.get("mem_fragmentation_ratio") ?? "?"}`,
    measured: memPct,
  });

  const hits = num(second, "keyspace_hits");
  const misses = num(second, "keyspace_misses");
  const windowHits = hits - num(first, "keyspace_hits");
  const windowMisses = misses - num(first, "keyspace_misses");
  const useWindow = windowHits + windowMisses >= HIT_RATE_MIN_LOOKUPS;
  const [h, m] = useWindow ? [windowHits, windowMisses] : [hits, misses];
  const rate = pct(h, h + m);
  const judged = h + m >= HIT_RATE_MIN_LOOKUPS;
  lines.push({
    id: "redis.hit_rate",
    server: "redis",
    title: "hit rate",
    status: !judged ? "info" : rate < a.redisHitRatePercent ? "warn" : "ok",
    value: h + m === 0 ? "no lookups yet" : `${fmtPct(rate)} ${useWindow ? `over the last ${seconds.toFixed(1)} s` : "since start (or CONFIG RESETSTAT)"}${judged ? "" : ` — too few lookups to judge (< ${HIT_RATE_MIN_LOOKUPS})`}`,
    threshold: `< ${a.redisHitRatePercent}%`,
    detail: `${h} hits, ${m} misses${useWindow ? "" : `; the sampling window saw ${windowHits + windowMisses} lookups`}`,
    measured: h + m ? rate : undefined,
  });

  if (seconds > 0) {
    const evictions = (num(second, "evicted_keys") - num(first, "evicted_keys")) / seconds;
    lines.push({
      id: "redis.evictions",
      server: "redis",
      title: "evictions",
      status: evictions > a.redisEvictionsPerSecond ? "warn" : "ok",
      value: `${evictions.toFixed(evictions < 10 ? 1 : 0)}/s over ${seconds.toFixed(1)} s`,
      threshold: `> ${a.redisEvictionsPerSecond}/s`,
      detail: `${num(second, "evicted_keys")} evicted since start; maxmemory-policy ${second.get("maxmemory_policy") ?? "?"}`,
      measured: evictions,
    });
    // Our own second INFO is the one command of ours between the samples.
    const ops = Math.max(0, num(second, "total_commands_processed") - num(first, "total_commands_processed") - 1) / seconds;
    lines.push({ id: "redis.ops", server: "redis", title: "commands per second", status: "info", value: `${ops.toFixed(ops < 10 ? 1 : 0)}/s over ${seconds.toFixed(1)} s`, detail: `instantaneous_ops_per_sec ${second.get("instantaneous_ops_per_sec") ?? "?"}`, measured: ops });
  } else {
    lines.push({ id: "redis.evictions", server: "redis", title: "evictions", status: "info", value: `${num(second, "evicted_keys")} since start (no interval: rate not sampled)` });
  }

  lines.push({
    id: "redis.clients",
    server: "redis",
    title: "clients",
    status: "info",
    value: `${num(second, "connected_clients")} connected${second.has("maxclients") ? ` / ${second.get("maxclients")}` : ""}`,
    detail: `${num(second, "blocked_clients")} blocked, ${num(second, "rejected_connections")} connections rejected since start`,
    measured: num(second, "connected_clients"),
  });
  const keyspace = [...second.entries()].filter(([k]) => /^db\d+$/.test(k)).map(([k, v]) => `${k} ${v}`);
  lines.push({ id: "redis.keys", server: "redis", title: "keys", status: "info", value: keyspace.length ? keyspace.join("; ") : "empty" });
  return lines;
}

// ---- output ----------------------------------------------------------------------------------

const MARK: Record<MetricStatus, string> = { ok: "ok  ", warn: "WARN", info: "    ", error: "ERR " };

export function formatMonitorReport(report: MonitorReport): string {
  const lines = [
    `${report.env}: ${report.warnings ? `${report.warnings} warning${report.warnings > 1 ? "s" : ""}` : report.exitCode === EXIT.ERROR ? "could not measure everything" : "all within thresholds"} (${report.ms} ms, interval ${report.intervalSeconds} s)`,
    `  target: ${report.target}`,
  ];
  for (const server of ["postgres", "redis"] as const) {
    const ls = report.lines.filter((l) => l.server === server);
    if (!ls.length) continue;
    lines.push(server === "postgres" ? "  PostgreSQL" : "  Redis");
    for (const l of ls) {
      lines.push(`    ${MARK[l.status]} ${l.title.padEnd(24)} ${l.value}${l.threshold ? `  (alert ${l.threshold})` : ""}`);
      if (l.detail && l.status !== "ok") lines.push(`         ${l.detail}`);
    }
  }
  return redact(lines.join("\n"));
}
