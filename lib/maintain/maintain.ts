/**
 * The guide's weekly maintenance (PostgreSQL Setup → Maintenance → Regular Tasks):
 *   1. VACUUM ANALYZE market_data; VACUUM ANALYZE predictions;
 *   2. ANALYZE cryptocurrencies; ANALYZE market_data (already done by its VACUUM ANALYZE);
 *   3. index health: never-scanned indexes, invalid indexes;
 *   4. table sizes;
 * with what changed: dead and live tuples, last vacuum and analyze, before and after.
 * Runs as the schema owner (who owns the tables) or the admin; VACUUM does not block reads or
 * writes, and a lock wait is bounded so it never queues forever behind DDL.
 */
import type pg from "pg";
import { EXIT, type ExitCode } from "../errors.js";
import { redact } from "../redact.js";
import { withPg } from "../db/clients.js";
import type { Environment } from "../env/environment.js";
import type { Spec } from "../spec/schema.js";
import { humanBytes } from "../spec/units.js";
import { errorText } from "../verify/report.js";

/** The guide's tasks, in its order. */
export const WEEKLY_TASKS: readonly { sql: string; table: string; what: "vacuum-analyze" | "analyze" }[] = [
  { sql: "VACUUM (ANALYZE) market_data", table: "market_data", what: "vacuum-analyze" },
  { sql: "VACUUM (ANALYZE) predictions", table: "predictions", what: "vacuum-analyze" },
  { sql: "ANALYZE cryptocurrencies", table: "cryptocurrencies", what: "analyze" },
  { sql: "ANALYZE market_data", table: "market_data", what: "analyze" },
];

export interface TableStats {
  table: string;
  live: number;
  dead: number;
  totalBytes: number;
  tableBytes: number;
  indexBytes: number;
  lastVacuum: string | null;
  lastAutovacuum: string | null;
  lastAnalyze: string | null;
  lastAutoanalyze: string | null;
}

export interface MaintainStep {
  sql: string;
  status: "done" | "skipped" | "failed";
  ms: number;
  note?: string;
}

export interface TableChange {
  table: string;
  deadBefore: number;
  deadAfter: number;
  liveBefore: number;
  liveAfter: number;
  /** Dead tuples after, as a share of live, percent. */
  deadPercentAfter: number;
  bytesBefore: number;
  bytesAfter: number;
}

export interface IndexHealth {
  /** Never scanned since the statistics were reset (unique and primary-key indexes excluded: they enforce constraints). */
  unused: { index: string; table: string; bytes: number }[];
  /** Left unusable by a failed CREATE INDEX CONCURRENTLY. */
  invalid: { index: string; table: string }[];
}

export interface MaintainReport {
  env: string;
  target: string;
  /** The login it ran as. */
  role: string;
  steps: MaintainStep[];
  changes: TableChange[];
  indexHealth: IndexHealth;
  sizes: TableStats[];
  /** Found problems (exit 1): invalid indexes, dead tuples VACUUM could not remove. */
  problems: string[];
  exitCode: ExitCode;
  ms: number;
}

const STATS_SQL = `
  SELECT s.relname AS table, s.n_live_tup AS live, s.n_dead_tup AS dead,
         pg_total_relation_size(s.relid) AS total_bytes, pg_relation_size(s.relid) AS table_bytes, pg_indexes_size(s.relid) AS index_bytes,
         s.last_vacuum, s.last_autovacuum, s.last_analyze, s.last_autoanalyze
    FROM pg_stat_user_tables s WHERE s.schemaname = 'public'
   ORDER BY pg_total_relation_size(s.relid) DESC`;

async function tableStats(client: pg.ClientBase): Promise<TableStats[]> {
  await client.query("SELECT pg_stat_clear_snapshot()");
  const { rows } = await client.query(STATS_SQL);
  return rows.map((r) => ({
    table: r.table,
    live: Number(r.live),
    dead: Number(r.dead),
    totalBytes: Number(r.total_bytes),
    tableBytes: Number(r.table_bytes),
    indexBytes: Number(r.index_bytes),
    lastVacuum: r.last_vacuum?.toISOString() ?? null,
    lastAutovacuum: r.last_autovacuum?.toISOString() ?? null,
    lastAnalyze: r.last_analyze?.toISOString() ?? null,
    lastAutoanalyze: r.last_autoanalyze?.toISOString() ?? null,
  }));
}

async function indexHealth(client: pg.ClientBase): Promise<IndexHealth> {
  const { rows } = await client.query(`
    SELECT s.indexrelname AS index, s.relname AS table, pg_relation_size(s.indexrelid) AS bytes,
           s.idx_scan = 0 AND NOT i.indisunique AND NOT i.indisprimary AS unused, NOT i.indisvalid AS invalid
      FROM pg_stat_user_indexes s JOIN pg_index i ON i.indexrelid = s.indexrelid
     WHERE s.schemaname = 'public' ORDER BY pg_relation_size(s.indexrelid) DESC`);
  return {
    unused: rows.filter((r) => r.unused).map((r) => ({ index: r.index, table: r.table, bytes: Number(r.bytes) })),
    invalid: rows.filter((r) => r.invalid).map((r) => ({ index: r.index, table: r.table })),
  };
}

export interface MaintainOptions {
  /** Login: the schema owner (default) or the admin. URL targets use the URL's login. */
  role?: "owner" | "admin";
  log?: (message: string) => void;
  /** How long a step may wait for its table lock (default 30 s). */
  lockTimeoutSeconds?: number;
}

export async function maintainEnvironment(target: Environment, spec: Spec = target.spec, options: MaintainOptions = {}): Promise<MaintainReport> {
  const started = performance.now();
  const endpoint = target.postgres;
  if (!endpoint) throw new Error("maintenance needs PostgreSQL: give --database-url (or an environment)");
  const role = options.role ?? "owner";
  const log = options.log ?? (() => undefined);
  return withPg(endpoint.config(role), async (client) => {
    const who = (await client.query("SELECT current_user AS u")).rows[0].u as string;
    // A role's statement_timeout must not cut a long VACUUM short; a lock wait is bounded instead.
    await client.query(`SET statement_timeout = 0; SET lock_timeout = '${options.lockTimeoutSeconds ?? 30}s'`);
    const before = await tableStats(client);
    const present = new Set(before.map((t) => t.table));
    const steps: MaintainStep[] = [];
    const vacuumed = new Set<string>();
    for (const task of WEEKLY_TASKS) {
      if (!present.has(task.table)) {
        steps.push({ sql: task.sql, status: "failed", ms: 0, note: `table ${task.table} does not exist (npm run verify -- --env ${target.env})` });
        continue;
      }
      if (task.what === "analyze" && vacuumed.has(task.table)) {
        steps.push({ sql: task.sql, status: "skipped", ms: 0, note: `statistics already updated by VACUUM (ANALYZE) ${task.table}` });
        continue;
      }
      log(`${task.sql}…`);
      const t = performance.now();
      try {
        await client.query(task.sql);
        if (task.what === "vacuum-analyze") vacuumed.add(task.table);
        steps.push({ sql: task.sql, status: "done", ms: Math.round(performance.now() - t) });
      } catch (error) {
        steps.push({ sql: task.sql, status: "failed", ms: Math.round(performance.now() - t), note: errorText(error) });
      }
    }
    const after = await tableStats(client);
    const health = await indexHealth(client);
    const beforeByTable = new Map(before.map((t) => [t.table, t]));
    const changes: TableChange[] = after.map((a) => {
      const b = beforeByTable.get(a.table);
      return {
        table: a.table,
        deadBefore: b?.dead ?? 0,
        deadAfter: a.dead,
        liveBefore: b?.live ?? 0,
        liveAfter: a.live,
        deadPercentAfter: a.live ? Math.round((1000 * a.dead) / a.live) / 10 : 0,
        bytesBefore: b?.totalBytes ?? 0,
        bytesAfter: a.totalBytes,
      };
    });

    const problems: string[] = health.invalid.map((i) => `index ${i.index} on ${i.table} is invalid (a failed CREATE INDEX CONCURRENTLY?): REINDEX INDEX CONCURRENTLY ${i.index}`);
    const stuck = changes.filter((c) => vacuumed.has(c.table) && c.deadAfter > 0 && c.deadPercentAfter > spec.alerts.deadTuplePercent);
    if (stuck.length) {
      const holder = (
        await client.query(`SELECT pid, usename, state, now() - xact_start AS age FROM pg_stat_activity
                             WHERE backend_xmin IS NOT NULL AND pid <> pg_backend_pid() ORDER BY age(backend_xmin) DESC LIMIT 1`)
      ).rows[0];
      for (const c of stuck) {
        problems.push(
          `${c.table}: ${c.deadAfter} dead tuples (${c.deadPercentAfter}% of live) remain after VACUUM` +
            (holder ? `; an old transaction keeps them visible: pid ${holder.pid} (${holder.usename}, ${holder.state}) — end it, then run maintain again` : "; something keeps them visible (a prepared transaction or a replication slot?)"),
        );
      }
    }
    const failed = steps.some((s) => s.status === "failed");
    const exitCode: ExitCode = problems.length ? EXIT.PROBLEM : failed ? EXIT.ERROR : EXIT.OK;
    return { env: spec.env, target: target.label, role: who, steps, changes, indexHealth: health, sizes: after, problems, exitCode, ms: Math.round(performance.now() - started) };
  });
}

export function formatMaintainReport(r: MaintainReport): string {
  const lines = [
    `${r.env}: maintenance ${r.problems.length ? `done, ${r.problems.length} problem${r.problems.length > 1 ? "s" : ""}` : r.exitCode === EXIT.ERROR ? "incomplete" : "done"} as ${r.role} (${r.ms} ms)`,
    `  target: ${r.target}`,
    "  Steps",
    ...r.steps.map((s) => `    ${s.status === "done" ? "done   " : s.status === "skipped" ? "skipped" : "FAILED "} ${s.sql.padEnd(32)} ${s.status === "done" ? `${s.ms} ms` : ""}${s.note ? ` ${s.note}` : ""}`),
    "  What changed (dead tuples before → after; live; total size)",
    ...r.changes.map((c) => `    ${c.table.padEnd(18)} dead ${c.deadBefore} → ${c.deadAfter}   live ${c.liveBefore} → ${c.liveAfter}   ${humanBytes(c.bytesBefore)} → ${humanBytes(c.bytesAfter)}`),
    "  Index health",
    `    invalid: ${r.indexHealth.invalid.length ? r.indexHealth.invalid.map((i) => `${i.index} (${i.table})`).join(", ") : "none"}`,
    `    never scanned: ${r.indexHealth.unused.length ? r.indexHealth.unused.map((i) => `${i.index} (${humanBytes(i.bytes)})`).join(", ") : "none"}`,
    "  Table sizes (table + indexes)",
    ...r.sizes.map((s) => `    ${s.table.padEnd(18)} ${humanBytes(s.totalBytes).padStart(9)}  (table ${humanBytes(s.tableBytes)}, indexes ${humanBytes(s.indexBytes)})`),
    ...(r.problems.length ? ["  Problems", ...r.problems.map((p) => `    • ${p}`)] : []),
  ];
  return redact(lines.join("\n"));
}
