/**
 * Loading the seed: the guide's sample cryptocurrencies (coins.ts), the deterministic series of
 * 1-minute candles (series.ts) in binary COPY form (copy-binary.ts), and a few predictions of the
 * guide's example shape.
 *
 * The series is a pure function of (symbol, minute): candle i of BTC is the same on every run and
 * every machine (integer PRNG, plain IEEE arithmetic, prices as whole ticks), so re-running inserts
 * nothing, and a longer run adds only the missing minutes. Rows stream to COPY (binary format) in
 * chunks of a few thousand:
 *   - a symbol whose range holds no rows yet is COPYed straight into market_data;
 *   - a symbol whose range is partly there goes through a TEMP staging table and
 *     INSERT … SELECT … ON CONFLICT DO NOTHING;
 *   - a symbol whose range is complete is skipped without generating anything.
 * Seeds of one database are serialised by an advisory lock. The direct COPYs are spread over
 * `workers` connections (one server process per core); they commit together only when every COPY
 * succeeded, so a failed run loads no series. Where the role may, the load skips the per-row
 * foreign-key triggers (about half the server's CPU per row) and locks the referenced coins
 * instead: see `bulk`. The benchmark and the DR drill call
 * `seedMarketData` directly.
 */
import { once } from "node:events";
import type { Writable } from "node:stream";
import { finished } from "node:stream/promises";
import pg from "pg";
import { from as copyFrom } from "pg-copy-streams";
import { connectPg } from "../clients.js";
import { SAMPLE_CRYPTOCURRENCIES, type SampleCryptocurrency } from "./coins.js";
import { COPY_BINARY_HEADER, COPY_BINARY_TRAILER, COPY_COLUMNS, ROWS_PER_CHUNK, copyChunks } from "./copy-binary.js";
import { CANDLE_MS, SERIES_START, prng, symbolSeed } from "./series.js";

/** Default number of symbols: the guide's BTC and ETH plus three well-known coins. */
export const DEFAULT_SYMBOLS = 5;
/** Default history per symbol, hours of 1-minute candles. */
export const DEFAULT_HOURS = 24;
/** Upper bound of `rows` (and of symbols × hours × 60): 100 million candles. */
export const MAX_ROWS = 100_000_000;
/** Model of the seeded predictions (the guide's example). */
export const SEED_MODEL = { name: "LSTM-v1", version: "1.0.0" } as const;
/** At most this many predictions per symbol: one per seeded day, target one day later (the guide's shape). */
export const PREDICTIONS_PER_SYMBOL = 7;
/** Default COPY connections: one server process per core of a 2-core machine. */
export const DEFAULT_WORKERS = 2;

/** Any constant: the key of the advisory lock that serialises seeds of one database. */
const SEED_LOCK_KEY = 727_001;

export interface SeedOptions {
  /** How many of SAMPLE_CRYPTOCURRENCIES (1-20), in order. Default 5. */
  symbols?: number;
  /** Hours of 1-minute candles per symbol (rows = symbols × hours × 60). Default 24. */
  hours?: number;
  /** Total market_data rows instead of hours: split evenly across symbols (the first ones take the remainder). */
  rows?: number;
  /** Seed the predictions too. Default true. */
  predictions?: boolean;
  /**
   * COPY connections at once (the caller's client counts as one). Default 2: one server process
   * per core. 1 runs everything on `client`, in one transaction.
   */
  workers?: number;
  /**
   * Opens one more connection as the same role, for the other workers. Default: a pg.Client with
   * `client`'s own host, port, user, password and database (when `client` is a pg.Client).
   */
  connect?: () => Promise<pg.Client>;
  /**
   * Skip the per-row foreign-key triggers during the load (session_replication_role = replica)
   * and lock the referenced cryptocurrencies instead, when the role may (the bootstrap grants it
   * to the schema owner) and market_data has no triggers of its own. Default true; false checks
   * every row through its trigger (about half the server's CPU per row).
   */
  bulk?: boolean;
  /** Called as rows stream (about every ROWS_PER_CHUNK rows), when the last is sent, and once committed. */
  onProgress?: (progress: SeedProgress) => void;
}

export interface SeedProgress {
  /**
   * streaming: rows are being sent; finishing: all are sent, the server is still working through
   * them (with row triggers, every foreign-key check runs at the end of its COPY) and committing;
   * done: committed.
   */
  phase: "streaming" | "finishing" | "done";
  /** market_data rows streamed so far. */
  rows: number;
  /** Rows this run streams (symbols already complete are not streamed). */
  totalRows: number;
  /** Since the first COPY byte. */
  seconds: number;
}

export type SymbolLoad = "copy" | "staged" | "complete";

export interface SeedResult {
  /** Rows streamed through COPY (new rows, plus the already-present ones of staged ranges). */
  rows: number;
  /** Seconds of the market-data load: first COPY byte to the last commit. */
  seconds: number;
  /** rows / seconds. */
  rowsPerSecond: number;
  /** market_data rows that did not exist before. */
  inserted: number;
  /** The series' rows this run covers (symbols × candles each), present before or not. */
  plannedRows: number;
  /** COPY connections used. */
  workers: number;
  /**
   * How market_data's foreign key was enforced during the load: `row triggers` (PostgreSQL's own
   * check per row) or `locked parents` (the referenced rows locked FOR KEY SHARE up front, every
   * row referencing one of them; see `bulk`).
   */
  foreignKeys: "row triggers" | "locked parents";
  cryptocurrencies: { symbol: string; id: number; candles: number; load: SymbolLoad }[];
  predictionsInserted: number;
  /** The whole call: cryptocurrencies, planning, load, predictions and ANALYZE. */
  totalSeconds: number;
}

/** Candles per symbol for the options: `rows` split evenly, or hours × 60. Throws RangeError naming the option. */
export function plannedCandles(options: Pick<SeedOptions, "symbols" | "hours" | "rows">): number[] {
  const symbols = options.symbols ?? DEFAULT_SYMBOLS;
  if (!Number.isInteger(symbols) || symbols < 1 || symbols > SAMPLE_CRYPTOCURRENCIES.length) {
    throw new RangeError(`symbols ${symbols}: expected a whole number from 1 to ${SAMPLE_CRYPTOCURRENCIES.length}`);
  }
  if (options.rows !== undefined && options.hours !== undefined) throw new RangeError("give rows or hours, not both");
  if (options.rows !== undefined) {
    if (!Number.isInteger(options.rows) || options.rows < symbols || options.rows > MAX_ROWS) {
      throw new RangeError(`rows ${options.rows}: expected a whole number from ${symbols} (one per symbol) to ${MAX_ROWS}`);
    }
    const each = Math.floor(options.rows / symbols);
    const extra = options.rows % symbols;
    return Array.from({ length: symbols }, (_, i) => each + (i < extra ? 1 : 0));
  }
  const hours = options.hours ?? DEFAULT_HOURS;
  if (!Number.isInteger(hours) || hours < 1 || symbols * hours * 60 > MAX_ROWS) {
    throw new RangeError(`hours ${hours}: expected a whole number from 1 to ${Math.floor(MAX_ROWS / 60 / symbols)} (at most ${MAX_ROWS} rows)`);
  }
  return Array.from({ length: symbols }, () => hours * 60);
}

interface PlannedSymbol {
  coin: SampleCryptocurrency;
  id: number;
  count: number;
  load: SymbolLoad;
}

/**
 * Seeds cryptocurrencies, market_data and predictions. Connect as the schema owner: the staging
 * table is TEMP, which the app role may not create. Idempotent.
 */
export async function seedMarketData(client: pg.ClientBase, options: SeedOptions = {}): Promise<SeedResult> {
  const startedAt = performance.now();
  const perSymbol = plannedCandles(options);
  const coins = SAMPLE_CRYPTOCURRENCIES.slice(0, perSymbol.length);
  await client.query("SELECT pg_advisory_lock($1)", [SEED_LOCK_KEY]);
  const extra: pg.Client[] = [];
  try {
    // 1. The coins, committed first so that other connections' COPYs see them.
    const ids = await upsertCryptocurrencies(client, coins);

    // 2. What is there already decides how each symbol loads.
    const plan: PlannedSymbol[] = [];
    for (const [i, coin] of coins.entries()) {
      const id = ids.get(coin.symbol)!;
      const count = perSymbol[i]!;
      const existing = await countRows(client, [id], count);
      plan.push({ coin, id, count, load: existing === 0 ? "copy" : existing >= count ? "complete" : "staged" });
    }
    const totalRows = plan.filter((p) => p.load !== "complete").reduce((sum, p) => sum + p.count, 0);
    const planEnd = Math.max(...plan.map((p) => p.count));
    const before = await countRows(client, plan.map((p) => p.id), planEnd);

    // 3. The load.
    const direct = plan.filter((p) => p.load === "copy");
    const connect = options.connect ?? sameLogin(client);
    const directRows = direct.reduce((sum, p) => sum + p.count, 0);
    // At least a chunk each: a tiny load is not worth another connection.
    const workers = connect ? Math.max(1, Math.min(options.workers ?? DEFAULT_WORKERS, Math.ceil(directRows / ROWS_PER_CHUNK))) : 1;
    for (let i = 1; i < workers; i++) extra.push(await connect!());
    const loadStarted = performance.now();
    let streamed = 0;
    const progress = (phase: SeedProgress["phase"]) => options.onProgress?.({ phase, rows: streamed, totalRows, seconds: (performance.now() - loadStarted) / 1000 });
    const onChunk = (rows: number) => {
      streamed += rows;
      progress(streamed < totalRows ? "streaming" : "finishing");
    };

    const clients = [client, ...extra];
    const bulk = options.bulk !== false && (await mayLoadInBulk(client));
    await Promise.all(clients.map((c) => c.query("BEGIN")));
    try {
      if (bulk) await Promise.all(clients.map((c) => enterBulkMode(c, plan)));
      // One COPY per connection; the first failure stops the others (CopyFail) and rolls all back.
      const abort: { reason?: unknown } = {};
      const copies = await Promise.allSettled(
        splitIntoSegments(direct, workers).map((group, i) =>
          copyInto(clients[i]!, "market_data", group, onChunk, abort).catch((error: unknown) => {
            abort.reason ??= error;
            throw error;
          }),
        ),
      );
      if (abort.reason !== undefined || copies.some((c) => c.status === "rejected")) throw abort.reason;
      const staged = plan.filter((p) => p.load === "staged");
      if (staged.length) {
        await client.query("CREATE TEMP TABLE seed_market_data (LIKE market_data INCLUDING DEFAULTS EXCLUDING IDENTITY) ON COMMIT DROP");
        await client.query("ALTER TABLE seed_market_data DROP COLUMN id");
        await copyInto(client, "seed_market_data", splitIntoSegments(staged, 1)[0]!, onChunk, {});
        await client.query(
          `INSERT INTO market_data (${COPY_COLUMNS}) SELECT ${COPY_COLUMNS} FROM seed_market_data ORDER BY cryptocurrency_id, timestamp ON CONFLICT (cryptocurrency_id, timestamp) DO NOTHING`,
        );
      }
    } catch (error) {
      // Nothing of this run stays: every connection rolls back.
      await Promise.all(clients.map((c) => c.query("ROLLBACK").catch(() => undefined)));
      throw error;
    }
    await Promise.all(clients.map((c) => c.query("COMMIT")));
    const seconds = (performance.now() - loadStarted) / 1000;
    progress("done");
    const after = await countRows(client, plan.map((p) => p.id), planEnd);

    // 4. Predictions, then fresh planner statistics after a bulk load.
    const predictionsInserted = options.predictions === false ? 0 : await seedPredictions(client, plan);
    if (after > before) await client.query("ANALYZE market_data, predictions");
    return {
      rows: streamed,
      seconds,
      rowsPerSecond: seconds > 0 ? Math.round(streamed / seconds) : 0,
      inserted: after - before,
      plannedRows: plan.reduce((sum, p) => sum + p.count, 0),
      workers,
      foreignKeys: bulk ? "locked parents" : "row triggers",
      cryptocurrencies: plan.map((p) => ({ symbol: p.coin.symbol, id: p.id, candles: p.count, load: p.load })),
      predictionsInserted,
      totalSeconds: (performance.now() - startedAt) / 1000,
    };
  } finally {
    await Promise.all(extra.map((c) => c.end().catch(() => undefined)));
    await client.query("SELECT pg_advisory_unlock($1)", [SEED_LOCK_KEY]).catch(() => undefined);
  }
}

/**
 * Whether this session may load without per-row foreign-key triggers: it may set
 * session_replication_role (PostgreSQL 15+ parameter privilege; superusers may), and
 * market_data has no triggers besides its constraints' (replica mode would skip those too).
 */
async function mayLoadInBulk(client: pg.ClientBase): Promise<boolean> {
  const { rows } = await client.query<{ allowed: boolean }>(
    `SELECT has_parameter_privilege('session_replication_role', 'SET')
        AND NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgrelid = 'market_data'::regclass AND NOT tgisinternal) AS allowed`,
  );
  return rows[0]!.allowed === true;
}

/**
 * In the open transaction: no row triggers until it ends, and the coins every row references
 * locked FOR KEY SHARE (what each foreign-key check would take), so none can be deleted or have
 * its id changed before the commit. CHECK, NOT NULL and unique constraints still apply per row.
 */
async function enterBulkMode(client: pg.ClientBase, plan: PlannedSymbol[]): Promise<void> {
  await client.query("SET LOCAL session_replication_role = replica");
  const ids = plan.map((p) => p.id);
  const { rows } = await client.query<{ id: number }>("SELECT id FROM cryptocurrencies WHERE id = ANY($1) FOR KEY SHARE", [ids]);
  if (rows.length !== new Set(ids).size) {
    const gone = ids.filter((id) => !rows.some((r) => r.id === id));
    throw new Error(`cryptocurrencies ${gone.join(", ")} were deleted while the seed ran; nothing was loaded`);
  }
}

/** Opens connections like `client` (same server, database and login), when it is a pg.Client. */
function sameLogin(client: pg.ClientBase): (() => Promise<pg.Client>) | undefined {
  if (!(client instanceof pg.Client)) return undefined;
  const ssl = (client as unknown as { connectionParameters?: { ssl?: pg.ClientConfig["ssl"] } }).connectionParameters?.ssl;
  return () => connectPg({ host: client.host, port: client.port, user: client.user, password: client.password, database: client.database, ssl });
}

/**
 * Streams the symbols' candles into `table` with one COPY, waiting whenever the socket is full.
 * Stops early (CopyFail) when `abort.reason` is set by another connection's failure.
 */
async function copyInto(client: pg.ClientBase, table: string, group: Segment<PlannedSymbol>[], onChunk: (rows: number) => void, abort: { reason?: unknown }): Promise<void> {
  if (!group.length) return;
  const copy: Writable = client.query(copyFrom(`COPY ${table} (${COPY_COLUMNS}) FROM STDIN (FORMAT binary)`));
  let failed: unknown;
  copy.on("error", (error) => (failed ??= error)); // the server refused a row: surfaced below
  copy.write(COPY_BINARY_HEADER);
  for (const { item: p, from, to } of group) {
    for (const chunk of copyChunks(p.coin, p.id, to, from)) {
      if (failed !== undefined) throw failed;
      if (abort.reason !== undefined) {
        copy.destroy(new Error("another seed connection failed"));
        await finished(copy).catch(() => undefined);
        return;
      }
      if (!copy.write(chunk.data)) await once(copy, "drain"); // rejects when the COPY fails meanwhile
      onChunk(chunk.rows);
    }
  }
  copy.end(COPY_BINARY_TRAILER);
  await finished(copy);
}

/** Minutes [from, to) of one coin's series. */
export interface Segment<T> {
  item: T;
  from: number;
  to: number;
}

/**
 * Cuts the coins' series, in order, into `groups` runs of equal rows (a coin may be split between
 * two groups): each connection gets the same work, and each keeps to neighbouring index keys.
 */
export function splitIntoSegments<T extends { count: number }>(items: T[], groups: number): Segment<T>[][] {
  const total = items.reduce((sum, item) => sum + item.count, 0);
  const out: Segment<T>[][] = [];
  let group: Segment<T>[] = [];
  let room = Math.ceil(total / groups);
  for (const item of items) {
    let from = 0;
    while (from < item.count) {
      const to = Math.min(item.count, from + room);
      group.push({ item, from, to });
      room -= to - from;
      from = to;
      if (room === 0) {
        out.push(group);
        group = [];
        room = Math.ceil(total / groups);
      }
    }
  }
  if (group.length) out.push(group);
  return out;
}

async function upsertCryptocurrencies(client: pg.ClientBase, coins: readonly SampleCryptocurrency[]): Promise<Map<string, number>> {
  // In list order, so that a fresh database gives BTC id 1, as the guide's examples assume.
  await client.query(
    `INSERT INTO cryptocurrencies (symbol, name, coin_gecko_id, is_active)
     SELECT symbol, name, coin_gecko_id, true FROM unnest($1::varchar[], $2::varchar[], $3::varchar[]) WITH ORDINALITY AS c(symbol, name, coin_gecko_id, n)
      WHERE NOT EXISTS (SELECT 1 FROM cryptocurrencies x WHERE x.symbol = c.symbol)
      ORDER BY n
     ON CONFLICT DO NOTHING`,
    [coins.map((c) => c.symbol), coins.map((c) => c.name), coins.map((c) => c.coinGeckoId)],
  );
  const { rows } = await client.query<{ id: number; symbol: string }>("SELECT id, symbol FROM cryptocurrencies WHERE symbol = ANY($1)", [coins.map((c) => c.symbol)]);
  const ids = new Map(rows.map((r) => [r.symbol, r.id]));
  const missing = coins.filter((c) => !ids.has(c.symbol));
  if (missing.length) {
    throw new Error(`cannot seed ${missing.map((c) => c.symbol).join(", ")}: another cryptocurrency already has coin_gecko_id ${missing.map((c) => c.coinGeckoId).join(", ")}`);
  }
  return ids;
}

/** Seeded rows of these coins within the first `minutes` minutes of the series. */
async function countRows(client: pg.ClientBase, ids: number[], minutes: number): Promise<number> {
  const { rows } = await client.query<{ n: string }>(
    "SELECT count(*) AS n FROM market_data WHERE cryptocurrency_id = ANY($1) AND timestamp >= $2 AND timestamp < $3",
    [ids, new Date(SERIES_START), new Date(SERIES_START + minutes * CANDLE_MS)],
  );
  return Number(rows[0]!.n);
}

/**
 * Predictions of the guide's shape (LSTM-v1 1.0.0, target one day after the prediction): one per
 * seeded day and symbol, up to PREDICTIONS_PER_SYMBOL. The predicted price is that minute's close
 * moved by a deterministic ±3 %; once the target candle is seeded too (in this run or a later, longer
 * one), the prediction is evaluated against it (actual_price, evaluated_at, market_data_id). An
 * identical prediction is not repeated.
 */
async function seedPredictions(client: pg.ClientBase, plan: PlannedSymbol[]): Promise<number> {
  const ids: number[] = [];
  const at: Date[] = [];
  const factor: string[] = [];
  const confidence: string[] = [];
  for (const p of plan) {
    const random = prng(symbolSeed(p.coin.symbol) ^ 0x5eed);
    const days = Math.min(PREDICTIONS_PER_SYMBOL, Math.ceil(p.count / 1440));
    for (let d = 0; d < days; d++) {
      ids.push(p.id);
      at.push(new Date(SERIES_START + d * 86_400_000));
      factor.push((1 + 0.06 * (random() - 0.5)).toFixed(6));
      confidence.push((0.55 + 0.4 * random()).toFixed(4));
    }
  }
  const { rowCount } = await client.query(
    `INSERT INTO predictions (cryptocurrency_id, prediction_timestamp, target_timestamp, predicted_price, confidence_score,
                              model_name, model_version, features, market_data_id, actual_price, evaluated_at)
     SELECT s.cid, s.at, s.at + interval '1 day', round(base.close_price * s.factor, 8), s.confidence,
            $5::varchar, $6::varchar, jsonb_build_object('source', 'seed', 'interval', '1m', 'horizon', '1d'),
            target.id, target.close_price, CASE WHEN target.id IS NOT NULL THEN s.at + interval '1 day' END
       FROM unnest($1::int[], $2::timestamptz[], $3::numeric[], $4::numeric[]) AS s(cid, at, factor, confidence)
       JOIN market_data base ON base.cryptocurrency_id = s.cid AND base.timestamp = s.at
       LEFT JOIN market_data target ON target.cryptocurrency_id = s.cid AND target.timestamp = s.at + interval '1 day'
      WHERE NOT EXISTS (
        SELECT 1 FROM predictions p
         WHERE p.cryptocurrency_id = s.cid AND p.prediction_timestamp = s.at AND p.target_timestamp = s.at + interval '1 day'
           AND p.model_name = $5::varchar AND p.model_version = $6::varchar)`,
    [ids, at, factor, confidence, SEED_MODEL.name, SEED_MODEL.version],
  );
  // A longer run may have seeded the target candle of an earlier run's prediction: evaluate it now,
  // so the result does not depend on the order of runs.
  await client.query(
    `UPDATE predictions p SET market_data_id = m.id, actual_price = m.close_price, evaluated_at = p.target_timestamp
       FROM market_data m
      WHERE p.evaluated_at IS NULL AND p.features->>'source' = 'seed' AND p.cryptocurrency_id = ANY($1)
        AND m.cryptocurrency_id = p.cryptocurrency_id AND m.timestamp = p.target_timestamp`,
    [plan.map((p) => p.id)],
  );
  return rowCount ?? 0;
}
