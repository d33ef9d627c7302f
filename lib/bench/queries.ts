/**
 * Item 6, do the guide's indexes serve its query patterns? At 1M and 10M market_data rows: the
 * latest price per symbol, one symbol's candles over a day and over a month (the unique
 * (cryptocurrency_id, timestamp) index), and every symbol over an hour (idx_market_data_timestamp,
 * the guide's "fast lookups by timestamp range"). Each pattern: p50/p95 latency over many
 * executions as the application role, and its EXPLAIN plan, checked for an index scan on the
 * expected index.
 */
import type pg from "pg";
import { withPg } from "../db/clients.js";
import { CANDLE_MS, DEFAULT_SYMBOLS, plannedCandles, SERIES_START } from "../db/seed/index.js";
import type { BenchContext, BenchItem } from "./harness.js";
import { measuredRow, usesIndex, type Row } from "./results.js";

const UNIQUE_INDEX = "uq_market_data_crypto_timestamp";
const TIMESTAMP_INDEX = "idx_market_data_timestamp";
const INDEX_SCANS = new Set(["Index Scan", "Index Only Scan", "Bitmap Index Scan"]);
const DAY_MS = 86_400_000;
const WARM_UP = 3;

interface Series {
  /** cryptocurrency ids, in seed order. */
  ids: number[];
  /** Candles per symbol (the shortest series). */
  candles: number;
}

export interface QueryPattern {
  id: string;
  label: string;
  sql: string;
  /** Parameters of execution `i`: spread over the series so that runs do not repeat one range. */
  params(i: number, series: Series): unknown[];
  indexes: string[];
}

/** Start of the `i`-th window of `windowMs` that fits in the series (windows cycle by a stride). */
function windowStart(i: number, series: Series, windowMs: number, stride: number): Date {
  const windows = Math.max(1, Math.floor((series.candles * CANDLE_MS) / windowMs));
  return new Date(SERIES_START + ((i * stride) % windows) * windowMs);
}

export const QUERY_PATTERNS: QueryPattern[] = [
  {
    id: "latest",
    label: "latest price per symbol",
    sql: `SELECT c.symbol, m.timestamp, m.close_price
            FROM cryptocurrencies c
            CROSS JOIN LATERAL (SELECT timestamp, close_price FROM market_data
                                 WHERE cryptocurrency_id = c.id ORDER BY timestamp DESC LIMIT 1) m
           WHERE c.is_active`,
    params: () => [],
    indexes: [UNIQUE_INDEX],
  },
  {
    id: "day",
    label: "one symbol, one day",
    sql: `SELECT timestamp, open_price, high_price, low_price, close_price, volume FROM market_data
           WHERE cryptocurrency_id = $1 AND timestamp >= $2 AND timestamp < $3 ORDER BY timestamp`,
    params: (i, s) => {
      const start = windowStart(i, s, DAY_MS, 7);
      return [s.ids[i % s.ids.length], start, new Date(start.getTime() + DAY_MS)];
    },
    indexes: [UNIQUE_INDEX],
  },
  {
    id: "month",
    label: "one symbol, one month (30 days)",
    sql: `SELECT timestamp, open_price, high_price, low_price, close_price, volume FROM market_data
           WHERE cryptocurrency_id = $1 AND timestamp >= $2 AND timestamp < $3 ORDER BY timestamp`,
    params: (i, s) => {
      const start = windowStart(i, s, 30 * DAY_MS, 3);
      return [s.ids[i % s.ids.length], start, new Date(start.getTime() + 30 * DAY_MS)];
    },
    indexes: [UNIQUE_INDEX],
  },
  {
    id: "hour-all",
    label: "every symbol, one hour (timestamp range)",
    sql: `SELECT cryptocurrency_id, timestamp, close_price FROM market_data
           WHERE timestamp >= $1 AND timestamp < $2 ORDER BY timestamp`,
    params: (i, s) => {
      const start = windowStart(i, s, 3_600_000, 37);
      return [start, new Date(start.getTime() + 3_600_000)];
    },
    indexes: [TIMESTAMP_INDEX],
  },
];

export const queriesItem: BenchItem = {
  name: "queries",
  title: "6. Query patterns vs indexes",
  async run(ctx) {
    const sizes = [ctx.plan.rows, ...(ctx.plan.largeRows ? [ctx.plan.largeRows] : [])];
    const rows: Row[] = [];
    for (const size of sizes) {
      ctx.progress(`queries: preparing ${size.toLocaleString("en-US")} rows`);
      const env = await ctx.seeded(size);
      const series: Series = {
        ids: await withPg(env.connections.postgresConfig("app"), async (c) => (await c.query<{ id: number }>("SELECT id FROM cryptocurrencies ORDER BY id LIMIT $1", [DEFAULT_SYMBOLS])).rows.map((r) => r.id)),
        candles: Math.min(...plannedCandles({ rows: size })),
      };
      await withPg(env.connections.postgresConfig("app"), async (client) => {
        for (const pattern of QUERY_PATTERNS) rows.push(await measurePattern(ctx, client, pattern, series, size));
      });
    }
    return rows;
  },
};

async function measurePattern(ctx: BenchContext, client: pg.Client, pattern: QueryPattern, series: Series, size: number): Promise<Row> {
  const executions = ctx.plan.queryExecutions;
  const sizeLabel = size >= 1_000_000 ? `${size / 1_000_000}M` : `${size / 1000}k`;
  const plan = await explain(client, pattern.sql, pattern.params(0, series));
  const used = plan.nodes.filter((n) => INDEX_SCANS.has(n.type) && n.index !== undefined && pattern.indexes.includes(n.index));
  for (let i = 0; i < WARM_UP; i++) await client.query(pattern.sql, pattern.params(i, series));
  const latencies: number[] = [];
  let returned = 0;
  for (let i = 0; i < executions; i++) {
    if (i % 10 === 0) ctx.progress(`queries ${sizeLabel}: ${pattern.label} ${i}/${executions}`);
    const started = performance.now();
    const result = await client.query(pattern.sql, pattern.params(i, series));
    latencies.push(performance.now() - started);
    returned += result.rowCount ?? 0;
  }
  return measuredRow({
    id: `queries.${sizeLabel.toLowerCase()}.${pattern.id}`,
    label: `${pattern.label}, ${sizeLabel} rows: latency p50`,
    unit: "ms",
    samples: latencies,
    p95: true,
    target: usesIndex(pattern.indexes),
    met: used.length > 0,
    details: {
      rows: size,
      executions,
      meanRowsReturned: Math.round(returned / executions),
      plan: plan.text,
      indexesUsed: [...new Set(plan.nodes.filter((n) => n.index).map((n) => `${n.type}: ${n.index}`))],
    },
  });
}

interface PlanNode {
  type: string;
  index?: string;
  relation?: string;
  direction?: string;
}

/** EXPLAIN (FORMAT JSON) as a flat list of nodes (pre-order) and one line of text. */
export async function explain(client: pg.ClientBase, sql: string, params: unknown[]): Promise<{ nodes: PlanNode[]; text: string }> {
  const { rows } = await client.query(`EXPLAIN (FORMAT JSON) ${sql}`, params);
  const raw = rows[0]?.["QUERY PLAN"];
  const document = typeof raw === "string" ? JSON.parse(raw) : raw;
  const nodes: PlanNode[] = [];
  const walk = (node: Record<string, unknown>) => {
    nodes.push({
      type: String(node["Node Type"]),
      ...(node["Index Name"] ? { index: String(node["Index Name"]) } : {}),
      ...(node["Relation Name"] ? { relation: String(node["Relation Name"]) } : {}),
      ...(node["Scan Direction"] && node["Scan Direction"] !== "Forward" ? { direction: String(node["Scan Direction"]) } : {}),
    });
    for (const child of (node.Plans as Record<string, unknown>[] | undefined) ?? []) walk(child);
  };
  walk(document[0].Plan);
  const text = nodes
    .map((n) => `${n.type}${n.direction ? ` ${n.direction}` : ""}${n.index ? ` using ${n.index}` : ""}${n.relation ? ` on ${n.relation}` : ""}`)
    .join(" → ");
  return { nodes, text };
}
