/**
 * The guide's metrics as a Prometheus exporter: one scrape reads PostgreSQL (pg_stat_activity,
 * pg_stat_database, pg_stat_user_tables, pg_stat_statements, pg_stat_archiver), Redis (INFO) and
 * the environment's backup listing, and renders them with prom-client in the text exposition
 * format. Raw values only (counters as `_total`, sizes in bytes, ages in seconds): thresholds live
 * in the alerting rules (./rules.ts), so Prometheus judges them over time.
 *
 *   const scrape = await scrapeMetrics(resolveEnvironment({ env: "dev" }));
 *   scrape.text; // "# HELP cpi_postgres_up …"
 *
 * One scrape is bounded by spec.monitor.scrapeTimeoutSeconds: a server that is down, refuses the
 * login or does not answer in time is `cpi_<server>_up 0` in an otherwise normal answer.
 */
import pg from "pg";
import { Redis } from "ioredis";
import { Counter, Gauge, Registry } from "prom-client";
import { registerSecret } from "../redact.js";
import { backupRoot } from "../backup/backup.js";
import { listBackups } from "../backup/retention.js";
import type { Environment } from "../env/environment.js";
import type { Spec } from "../spec/schema.js";
import { errorText } from "../verify/report.js";
import { parseInfo, parseKeyspace } from "../db/redis-info.js";
import { redisOptions } from "../verify/redis.js";

export interface ScrapeOptions {
  /** Bound of the whole scrape, seconds. Default: spec.monitor.scrapeTimeoutSeconds. */
  timeoutSeconds?: number;
  /** Clock for the backup age (tests). */
  now?: () => Date;
}

export interface Scrape {
  /** The exposition text (Prometheus text format 0.0.4). */
  text: string;
  contentType: string;
  /** Whether each server answered (absent: not part of the target). */
  up: { postgres?: boolean; redis?: boolean };
  /** Why a server is down, for the exporter's log (no secrets). */
  errors: string[];
  ms: number;
}

/** Samples one metric family at a time into a registry made for this scrape (no stale series). */
class Samples {
  private readonly families = new Map<string, Gauge | Counter>();
  constructor(readonly registry: Registry) {}

  gauge(name: string, help: string, value: number | undefined, labels: Record<string, string> = {}): void {
    if (value === undefined || !Number.isFinite(value)) return;
    let family = this.families.get(name) as Gauge | undefined;
    if (!family) {
      family = new Gauge({ name, help, labelNames: Object.keys(labels), registers: [this.registry] });
      this.families.set(name, family);
    }
    family.set(labels, value);
  }

  /** A counter kept by the server (its value is read, not counted here). */
  counter(name: string, help: string, value: number | undefined, labels: Record<string, string> = {}): void {
    if (value === undefined || !Number.isFinite(value) || value < 0) return;
    let family = this.families.get(name) as Counter | undefined;
    if (!family) {
      family = new Counter({ name, help, labelNames: Object.keys(labels), registers: [this.registry] });
      this.families.set(name, family);
    }
    family.inc(labels, value);
  }
}

/**
 * Scrapes a target again and again over one PostgreSQL session and one Redis connection (a
 * SCRAM login and a backend start cost more than the whole scrape). A connection that fails or
 * times out is dropped, and the next scrape opens a new one.
 */
export class MetricsCollector {
  private pgClient?: Promise<pg.Client>;
  private redisClient?: Promise<Redis>;

  constructor(
    readonly target: Environment,
    readonly spec: Spec = target.spec,
    private readonly options: ScrapeOptions = {},
  ) {}

  async scrape(): Promise<Scrape> {
    const { target, spec } = this;
    const started = performance.now();
    const timeoutMs = (this.options.timeoutSeconds ?? spec.monitor.scrapeTimeoutSeconds) * 1000;
    const registry = new Registry();
    const samples = new Samples(registry);
    const errors: string[] = [];
    const up: Scrape["up"] = {};
    // A server's samples join the answer only once it answered everything: a timed-out server adds no partial set.
    const pgSamples = new Samples(new Registry());
    const redisSamples = new Samples(new Registry());
    const server = async (name: "postgres" | "redis", work: () => Promise<void>, drop: () => void) => {
      const t = performance.now();
      try {
        await withDeadline(timeoutMs, name === "postgres" ? "PostgreSQL" : "Redis", drop, work);
        up[name] = true;
      } catch (error) {
        drop();
        up[name] = false;
        errors.push(`${name}: ${errorText(error)}`);
      }
      samples.gauge(`cpi_${name}_up`, `1 when ${name === "postgres" ? "PostgreSQL" : "Redis"} answered this scrape in time, else 0`, up[name] ? 1 : 0);
      samples.gauge("cpi_exporter_scrape_duration_seconds", "Time this scrape spent on each server", (performance.now() - t) / 1000, { server: name });
    };
    await Promise.all([
      target.postgres ? server("postgres", async () => postgresMetrics(await this.postgres(timeoutMs), pgSamples), () => this.dropPostgres()) : undefined,
      target.redis ? server("redis", async () => redisMetrics(await this.redis(timeoutMs), redisSamples), () => this.dropRedis()) : undefined,
    ]);
    backupMetrics(await this.fullBackups(target, spec, timeoutMs), samples, this.options.now?.() ?? new Date());
    const merged = Registry.merge([registry, ...(up.postgres ? [pgSamples.registry] : []), ...(up.redis ? [redisSamples.registry] : [])]);
    merged.setDefaultLabels({ env: spec.env });
    return { text: await merged.metrics(), contentType: merged.contentType, up, errors, ms: Math.round(performance.now() - started) };
  }

  private bucketBackups?: { at: number; backups: Promise<FullBackup[]> };

  /**
   * The environment's complete full backups: a folder's are read at every scrape; a bucket's
   * listing (requests, manifests) is kept for a minute and bounded by the scrape's deadline.
   */
  private async fullBackups(target: Environment, spec: Spec, timeoutMs: number): Promise<FullBackup[]> {
    if (spec.backup.repository === "local" || target.kind === "urls") {
      try {
        return listBackups(target.env, backupRoot(spec, target.env)).backups.filter((b) => b.scope === "full");
      } catch {
        return []; // an unreadable backup folder is a missing backup, which the rules see as such
      }
    }
    if (!this.bucketBackups || Date.now() - this.bucketBackups.at > 60_000) {
      const listing = import("../backup/repository/index.js").then(async ({ openBackupRepository }) => (await (await openBackupRepository(target.env)).list()).logical);
      this.bucketBackups = { at: Date.now(), backups: listing.then((l) => l.filter((b) => b.scope === "full").map((b) => ({ createdAt: new Date(b.createdAt), bytes: b.bytes })).sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime())) };
      this.bucketBackups.backups.catch(() => (this.bucketBackups = undefined));
    }
    return withDeadline(timeoutMs, "the backup bucket", () => undefined, () => this.bucketBackups!.backups).catch(() => []);
  }

  /** Closes the connections. */
  async close(): Promise<void> {
    const [pgClient, redis] = [this.pgClient, this.redisClient];
    this.pgClient = this.redisClient = undefined;
    await Promise.all([pgClient?.then((c) => c.end()).catch(() => undefined), redis?.then((r) => r.disconnect()).catch(() => undefined)]);
  }

  private postgres(timeoutMs: number): Promise<pg.Client> {
    return (this.pgClient ??= (async () => {
      const config = this.target.postgres!.config("admin");
      if (typeof config.password === "string") registerSecret(config.password);
      const client = new pg.Client({ ...config, connectionTimeoutMillis: timeoutMs, statement_timeout: timeoutMs, application_name: "cpi-exporter" });
      client.on("error", () => this.dropPostgres());
      client.on("end", () => this.dropPostgres());
      await client.connect();
      return client;
    })());
  }

  private dropPostgres(): void {
    const current = this.pgClient;
    this.pgClient = undefined;
    // The socket, not end(): a server that stopped answering never completes a goodbye.
    void current?.then((c) => (c as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy()).catch(() => undefined);
  }

  private redis(timeoutMs: number): Promise<Redis> {
    return (this.redisClient ??= (async () => {
      const options = redisOptions(this.target.redis!, "admin");
      if (typeof options.password === "string") registerSecret(options.password);
      const redis = new Redis({ ...options, lazyConnect: true, connectTimeout: timeoutMs, commandTimeout: timeoutMs, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false, connectionName: "cpi-exporter" });
      let lastError: Error | undefined;
      redis.on("error", (e: Error) => (lastError = e));
      redis.on("end", () => this.dropRedis());
      try {
        await redis.connect();
      } catch (error) {
        redis.disconnect();
        throw lastError ?? error;
      }
      return redis;
    })());
  }

  private dropRedis(): void {
    const current = this.redisClient;
    this.redisClient = undefined;
    void current?.then((r) => r.disconnect()).catch(() => undefined);
  }
}

/** One scrape over new connections, closed afterwards (never throws for an unreachable server). */
export async function scrapeMetrics(target: Environment, spec: Spec = target.spec, options: ScrapeOptions = {}): Promise<Scrape> {
  const collector = new MetricsCollector(target, spec, options);
  try {
    return await collector.scrape();
  } finally {
    await collector.close();
  }
}

/** Runs work with a deadline; on expiry `abort` tears the connection down and the promise rejects at once. */
async function withDeadline<T>(ms: number, what: string, abort: () => void, work: () => Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      abort();
      reject(Object.assign(new Error(`${what} did not answer within ${ms / 1000} s`), { code: "ETIMEDOUT" }));
    }, ms);
  });
  const running = work();
  running.catch(() => undefined);
  try {
    return await Promise.race([running, expired]);
  } finally {
    clearTimeout(timer);
  }
}

// ---- PostgreSQL ------------------------------------------------------------------------------

interface PgFacts {
  max_connections: number;
  by_state: Record<string, number>;
  longest_query: number;
  longest_xact: number;
  blks_hit: string;
  blks_read: string;
  xact_commit: string;
  xact_rollback: string;
  deadlocks: string;
  database_bytes: string;
  idx_hit: string | null;
  idx_read: string | null;
  unused_indexes: number;
  archived_count: string;
  failed_count: string;
  archived_age: number | null;
  failed_age: number | null;
  archive_mode: string;
  in_recovery: boolean;
  statements: boolean;
}

async function postgresMetrics(client: pg.Client, s: Samples): Promise<void> {
  const f = (
    await client.query<PgFacts>(`
      SELECT current_setting('max_connections')::int AS max_connections,
             (SELECT coalesce(json_object_agg(state, n), '{}') FROM (
                SELECT coalesce(state, 'unknown') AS state, count(*)::int AS n FROM pg_stat_activity
                 WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() GROUP BY 1) s) AS by_state,
             (SELECT coalesce(extract(epoch FROM max(now() - query_start)), 0)::float8 FROM pg_stat_activity
               WHERE state = 'active' AND backend_type = 'client backend' AND pid <> pg_backend_pid()) AS longest_query,
             (SELECT coalesce(extract(epoch FROM max(now() - xact_start)), 0)::float8 FROM pg_stat_activity
               WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()) AS longest_xact,
             d.blks_hit, d.blks_read, d.xact_commit, d.xact_rollback, d.deadlocks,
             pg_database_size(current_database()) AS database_bytes,
             (SELECT sum(idx_blks_hit) FROM pg_statio_user_indexes) AS idx_hit,
             (SELECT sum(idx_blks_read) FROM pg_statio_user_indexes) AS idx_read,
             (SELECT count(*)::int FROM pg_stat_user_indexes u JOIN pg_index i ON i.indexrelid = u.indexrelid
               WHERE u.idx_scan = 0 AND NOT i.indisunique AND NOT i.indisprimary) AS unused_indexes,
             a.archived_count, a.failed_count,
             extract(epoch FROM now() - a.last_archived_time)::float8 AS archived_age,
             extract(epoch FROM now() - a.last_failed_time)::float8 AS failed_age,
             current_setting('archive_mode') AS archive_mode,
             pg_is_in_recovery() AS in_recovery,
             ('pg_stat_statements' = ANY(string_to_array(replace(current_setting('shared_preload_libraries'), ' ', ''), ','))
               AND EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements')) AS statements
        FROM pg_stat_database d, pg_stat_archiver a
       WHERE d.datname = current_database()`)
  ).rows[0]!;
  const { rows: tables } = await client.query<{ name: string; live: string; dead: string; bytes: string }>(
    `SELECT schemaname || '.' || relname AS name, n_live_tup AS live, n_dead_tup AS dead, pg_total_relation_size(relid) AS bytes FROM pg_stat_user_tables`,
  );
  const statements = f.statements
    ? (
        await client.query<{ calls: string | null; seconds: number | null }>(
          `SELECT sum(calls) AS calls, (sum(total_exec_time) / 1000)::float8 AS seconds FROM pg_stat_statements
            WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())`,
        )
      ).rows[0]
    : undefined;

  s.gauge("cpi_postgres_max_connections", "max_connections of the server", f.max_connections);
  const states = { active: 0, idle: 0, "idle in transaction": 0, ...f.by_state };
  for (const [state, n] of Object.entries(states)) s.gauge("cpi_postgres_connections", "Client connections by state (pg_stat_activity), the exporter's own excluded", n, { state });
  s.gauge("cpi_postgres_longest_query_seconds", "Age of the longest-running active query (0 when none runs)", f.longest_query);
  s.gauge("cpi_postgres_longest_transaction_seconds", "Age of the oldest open transaction (0 when none)", f.longest_xact);
  s.gauge("cpi_postgres_statements_available", "1 when pg_stat_statements is preloaded and created (statement totals are exported)", statements ? 1 : 0);
  if (statements) {
    s.counter("cpi_postgres_statements_calls_total", "Statements executed (pg_stat_statements, this database)", Number(statements.calls ?? 0));
    s.counter("cpi_postgres_statements_exec_seconds_total", "Time spent executing statements (pg_stat_statements, this database)", statements.seconds ?? 0);
  }
  s.counter("cpi_postgres_blocks_hit_total", "Block reads served by shared_buffers (pg_stat_database)", Number(f.blks_hit));
  s.counter("cpi_postgres_blocks_read_total", "Block reads from disk or the OS cache (pg_stat_database)", Number(f.blks_read));
  s.counter("cpi_postgres_index_blocks_hit_total", "Index block reads served by shared_buffers", Number(f.idx_hit ?? 0));
  s.counter("cpi_postgres_index_blocks_read_total", "Index block reads from disk or the OS cache", Number(f.idx_read ?? 0));
  s.counter("cpi_postgres_transactions_committed_total", "Committed transactions (pg_stat_database)", Number(f.xact_commit));
  s.counter("cpi_postgres_transactions_rolled_back_total", "Rolled-back transactions (pg_stat_database)", Number(f.xact_rollback));
  s.counter("cpi_postgres_deadlocks_total", "Deadlocks detected (pg_stat_database)", Number(f.deadlocks));
  s.gauge("cpi_postgres_database_size_bytes", "Size of the database", Number(f.database_bytes));
  s.gauge("cpi_postgres_unused_indexes", "Indexes never scanned since the statistics reset (unique and primary keys not counted)", f.unused_indexes);
  for (const t of tables) {
    s.gauge("cpi_postgres_table_live_tuples", "Estimated live rows per table (pg_stat_user_tables)", Number(t.live), { table: t.name });
    s.gauge("cpi_postgres_table_dead_tuples", "Estimated dead rows per table (pg_stat_user_tables)", Number(t.dead), { table: t.name });
    s.gauge("cpi_postgres_table_size_bytes", "Size of each table with its indexes and TOAST", Number(t.bytes), { table: t.name });
  }
  s.gauge("cpi_postgres_archive_mode_enabled", "1 when archive_mode is on or always", f.archive_mode === "off" ? 0 : 1);
  s.counter("cpi_postgres_wal_archived_total", "WAL files archived (pg_stat_archiver)", Number(f.archived_count));
  s.counter("cpi_postgres_wal_archive_failed_total", "Failed WAL archive attempts (pg_stat_archiver)", Number(f.failed_count));
  s.gauge("cpi_postgres_wal_last_archived_age_seconds", "Seconds since the last WAL file was archived (absent: never)", f.archived_age ?? undefined);
  s.gauge("cpi_postgres_wal_last_archive_failure_age_seconds", "Seconds since the last failed archive attempt (absent: never)", f.failed_age ?? undefined);
  s.gauge("cpi_postgres_in_recovery", "1 while the server is in recovery (a standby or a restore)", f.in_recovery ? 1 : 0);
}

// ---- Redis -----------------------------------------------------------------------------------

async function redisMetrics(redis: Redis, s: Samples): Promise<void> {
  const info = parseInfo(await redis.info());
  const num = (key: string) => (info.has(key) ? Number(info.get(key)) : undefined);
  s.gauge("cpi_redis_memory_used_bytes", "Memory used by Redis (used_memory)", num("used_memory"));
  s.gauge("cpi_redis_memory_max_bytes", "maxmemory (0: unbounded)", num("maxmemory"));
  s.gauge("cpi_redis_memory_peak_bytes", "Peak memory used since start", num("used_memory_peak"));
  s.counter("cpi_redis_keyspace_hits_total", "Key lookups that found the key", num("keyspace_hits"));
  s.counter("cpi_redis_keyspace_misses_total", "Key lookups that did not find the key", num("keyspace_misses"));
  s.counter("cpi_redis_evicted_keys_total", "Keys evicted because of maxmemory", num("evicted_keys"));
  s.counter("cpi_redis_expired_keys_total", "Keys removed because their TTL expired", num("expired_keys"));
  s.counter("cpi_redis_commands_processed_total", "Commands processed", num("total_commands_processed"));
  s.counter("cpi_redis_connections_received_total", "Connections accepted", num("total_connections_received"));
  s.counter("cpi_redis_rejected_connections_total", "Connections rejected because of maxclients", num("rejected_connections"));
  s.gauge("cpi_redis_connected_clients", "Client connections open (the exporter's included)", num("connected_clients"));
  s.gauge("cpi_redis_blocked_clients", "Clients blocked in a blocking call", num("blocked_clients"));
  s.gauge("cpi_redis_max_clients", "maxclients", num("maxclients"));
  s.gauge("cpi_redis_uptime_seconds", "Seconds since the server started", num("uptime_in_seconds"));
  s.gauge("cpi_redis_rdb_changes_since_last_save", "Writes since the last RDB snapshot", num("rdb_changes_since_last_save"));
  s.gauge("cpi_redis_rdb_last_save_timestamp_seconds", "Unix time of the last successful RDB snapshot", num("rdb_last_save_time"));
  s.gauge("cpi_redis_aof_enabled", "1 when the append-only file is on", num("aof_enabled"));
  for (const [db, { keys }] of Object.entries(parseKeyspace(info))) s.gauge("cpi_redis_keys", "Keys per database", keys, { db: db.slice(2) });
}

// ---- backups ---------------------------------------------------------------------------------

interface FullBackup {
  createdAt: Date;
  bytes: number;
}

/**
 * Age of the newest full backup of the environment, per kind. `logical` is the toolkit's backup
 * (lib/backup) in its repository; other kinds (a physical base backup) add their own label value.
 */
function backupMetrics(backups: FullBackup[], s: Samples, now: Date): void {
  const newest = backups.at(-1);
  s.gauge("cpi_backups", "Complete full backups of the environment in its backup repository (backup.repository)", backups.length, { kind: "logical" });
  if (newest) {
    s.gauge("cpi_backup_newest_age_seconds", "Seconds since the newest complete full backup started", Math.max(0, (now.getTime() - newest.createdAt.getTime()) / 1000), { kind: "logical" });
    s.gauge("cpi_backup_newest_size_bytes", "Size of the newest complete full backup", newest.bytes, { kind: "logical" });
  }
}
