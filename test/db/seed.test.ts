/**
 * The seed: a deterministic series that satisfies every constraint, loaded with COPY, idempotent
 * (run twice: same counts), completing partial ranges, all-or-nothing across its connections,
 * serialised between concurrent runs; and `npm run seed` as an operator runs it.
 */
import pg from "pg";
import { describe, expect, it } from "vitest";
import { EXIT } from "../../lib/errors.js";
import { withPg } from "../../lib/db/clients.js";
import {
  candles,
  copyChunks,
  plannedCandles,
  SAMPLE_CRYPTOCURRENCIES,
  seedMarketData,
  splitIntoSegments,
  type SeedResult,
} from "../../lib/db/seed/index.js";
import { runCli, useEphemeralEnvironment } from "../support/embedded.js";

const environment = useEphemeralEnvironment();
const owner = <T>(work: (client: pg.Client) => Promise<T>) => withPg(environment().connections.postgresConfig("owner"), work);

const INSERT_UNKNOWN_COIN = "INSERT INTO market_data (cryptocurrency_id, timestamp, open_price, high_price, low_price, close_price) VALUES (999999, now(), 1, 1, 1, 1)";

async function counts(): Promise<{ cryptocurrencies: number; marketData: number; predictions: number; evaluated: number }> {
  return owner(async (client) => {
    const { rows } = await client.query(`SELECT (SELECT count(*) FROM cryptocurrencies)::int AS cryptocurrencies,
                                                (SELECT count(*) FROM market_data)::int AS "marketData",
                                                (SELECT count(*) FROM predictions)::int AS predictions,
                                                (SELECT count(*) FROM predictions WHERE evaluated_at IS NOT NULL)::int AS evaluated`);
    return rows[0];
  });
}

/** A digest of every candle of one coin, to compare the series before and after. */
async function seriesDigest(symbol: string, options: { before?: string; sameRows?: boolean } = {}): Promise<string> {
  // sameRows: the row ids and creation times too (rows kept, not replaced by equal ones).
  const identity = options.sameRows ? "m.id, m.created_at," : "";
  return owner(async (client) => {
    const { rows } = await client.query(
      `SELECT md5(string_agg(concat_ws(',', ${identity} m.timestamp, open_price, high_price, low_price, close_price, volume, market_cap), ';' ORDER BY m.timestamp)) AS digest
         FROM market_data m JOIN cryptocurrencies c ON c.id = m.cryptocurrency_id WHERE c.symbol = $1 AND m.timestamp < $2::timestamptz`,
      [symbol, options.before ?? "infinity"],
    );
    return rows[0].digest;
  });
}

/**
 * Decodes binary COPY rows of market_data's COPY columns into text, independently of the writer:
 * int4, timestamptz (µs since 2000), numeric (base-10000 groups), varchar.
 */
function decodeCopyRows(data: Buffer): string[][] {
  const rows: string[][] = [];
  let at = 0;
  while (at < data.length) {
    const fields = data.readInt16BE(at);
    at += 2;
    const row: string[] = [];
    for (let f = 0; f < fields; f++) {
      const length = data.readInt32BE(at);
      const field = data.subarray(at + 4, at + 4 + length);
      at += 4 + length;
      if (f === 0) row.push(String(field.readInt32BE(0)));
      else if (f === 1) row.push(new Date(Date.UTC(2000, 0, 1) + (field.readInt32BE(0) * 2 ** 32 + field.readUInt32BE(4)) / 1000).toISOString());
      else if (f === 8) row.push(field.toString("latin1"));
      else row.push(numericText(field));
    }
    rows.push(row);
  }
  return rows;
}

function numericText(field: Buffer): string {
  const count = field.readInt16BE(0);
  const weight = field.readInt16BE(2);
  if (field.readUInt16BE(4) !== 0) return `sign ${field.readUInt16BE(4)}`; // only positive values are written
  const scale = field.readInt16BE(6);
  const group = (i: number) => (i >= 0 && i < count ? field.readInt16BE(8 + 2 * i) : 0);
  let whole = "";
  for (let i = 0; i <= weight; i++) whole += String(group(i)).padStart(4, "0");
  let fraction = "";
  for (let i = weight + 1; fraction.length < scale; i++) fraction += String(group(i)).padStart(4, "0");
  return `${whole.replace(/^0+(?=\d)/, "") || "0"}.${fraction.slice(0, scale)}`;
}

describe("the series (no server)", () => {
  it("splits --rows evenly, the first coins taking the remainder; --hours is per coin", () => {
    expect(plannedCandles({ symbols: 3, rows: 10 })).toEqual([4, 3, 3]);
    expect(plannedCandles({ symbols: 10, rows: 1_000_000 })).toEqual(Array(10).fill(100_000));
    expect(plannedCandles({ symbols: 2, hours: 3 })).toEqual([180, 180]);
    expect(plannedCandles({})).toEqual(Array(5).fill(1440));
    expect(() => plannedCandles({ symbols: 21 })).toThrow(/symbols 21: expected a whole number from 1 to 20/);
    expect(() => plannedCandles({ symbols: 5, rows: 3 })).toThrow(/rows 3: expected a whole number from 5/);
    expect(() => plannedCandles({ hours: 0 })).toThrow(/hours 0/);
    expect(() => plannedCandles({ rows: 10, hours: 1 })).toThrow(/rows or hours, not both/);
  });

  it("is the same on every run, and each candle brackets its open and close", () => {
    const problems: string[] = [];
    for (const coin of SAMPLE_CRYPTOCURRENCIES) {
      const first = [...candles(coin, 10_000)];
      expect([...candles(coin, 10_000)]).toEqual(first);
      let previousClose: number | undefined;
      for (const c of first) {
        const at = `${coin.symbol} minute ${c.minute}`;
        if (![c.open, c.high, c.low, c.close, c.volumeCents, c.marketCapCents].every((v) => Number.isSafeInteger(v) && v >= 0)) problems.push(`${at}: not a whole non-negative number`);
        if (c.high < Math.max(c.open, c.close)) problems.push(`${at}: high below open or close`);
        if (c.low > Math.min(c.open, c.close) || c.low <= 0) problems.push(`${at}: low above open or close, or not positive`);
        if (previousClose !== undefined && c.open !== previousClose) problems.push(`${at}: open is not the previous close`);
        previousClose = c.close;
      }
    }
    expect(problems).toEqual([]);
  });

  it("a longer series starts with the shorter one (so a longer run only adds minutes)", () => {
    const btc = SAMPLE_CRYPTOCURRENCIES[0]!;
    expect([...candles(btc, 5000)].slice(0, 1000)).toEqual([...candles(btc, 1000)]);
  });

  it("writes binary COPY rows: nine fields, UTC timestamps, each coin's decimals", () => {
    const [chunk] = [...copyChunks(SAMPLE_CRYPTOCURRENCIES[0]!, 1, 3)];
    expect(chunk!.rows).toBe(3);
    const rows = decodeCopyRows(chunk!.data);
    expect(rows).toHaveLength(3);
    expect(rows[0]!.slice(0, 3)).toEqual(["1", "2024-01-01T00:00:00.000Z", "45000.00"]);
    expect(rows[0]![8]).toBe("synthetic");
    expect(rows[2]![1]).toBe("2024-01-01T00:02:00.000Z");
    const doge = decodeCopyRows(Buffer.concat([...copyChunks(SAMPLE_CRYPTOCURRENCIES[6]!, 7, 1441)].map((c) => c.data)));
    expect(doge.at(-1)!.slice(1, 3)).toEqual(["2024-01-02T00:00:00.000Z", expect.stringMatching(/^0\.\d{7}$/)]);
  });

  it("writes exactly the walk's numbers, for every coin", () => {
    const problems: string[] = [];
    const text = (units: number, decimals: number) => {
      const digits = String(units).padStart(decimals + 1, "0");
      return `${digits.slice(0, -decimals)}.${digits.slice(-decimals)}`;
    };
    for (const [i, coin] of SAMPLE_CRYPTOCURRENCIES.entries()) {
      const expected = [...candles(coin, 3000)];
      const rows = decodeCopyRows(Buffer.concat([...copyChunks(coin, i + 1, 3000)].map((c) => c.data)));
      if (rows.length !== 3000) problems.push(`${coin.symbol}: ${rows.length} rows`);
      rows.forEach((row, m) => {
        const c = expected[m]!;
        const want = [String(i + 1), new Date(Date.UTC(2024, 0, 1) + m * 60_000).toISOString(), ...[c.open, c.high, c.low, c.close].map((v) => text(v, coin.priceDecimals)), text(c.volumeCents, 2), text(c.marketCapCents, 2), "synthetic"];
        if (row.join("|") !== want.join("|")) problems.push(`${coin.symbol} minute ${m}: ${row.join("|")} ≠ ${want.join("|")}`);
      });
    }
    expect(problems.slice(0, 5)).toEqual([]);
  });

  it("cuts the series, in order, into runs of equal rows for the connections (a coin may be split)", () => {
    const [a, b, c] = [{ count: 100 }, { count: 100 }, { count: 100 }];
    expect(splitIntoSegments([a!, b!, c!], 2)).toEqual([
      [{ item: a, from: 0, to: 100 }, { item: b, from: 0, to: 50 }],
      [{ item: b, from: 50, to: 100 }, { item: c, from: 0, to: 100 }],
    ]);
    expect(splitIntoSegments([a!], 2)).toEqual([[{ item: a, from: 0, to: 50 }], [{ item: a, from: 50, to: 100 }]]);
    expect(splitIntoSegments([a!, b!], 1)).toEqual([[{ item: a, from: 0, to: 100 }, { item: b, from: 0, to: 100 }]]);
    expect(splitIntoSegments([{ count: 3 }], 2).map((g) => g.map((s) => s.to - s.from))).toEqual([[2], [1]]);
  });

  it("writes a coin's later minutes exactly as a whole run does", () => {
    const doge = SAMPLE_CRYPTOCURRENCIES[6]!;
    const whole = Buffer.concat([...copyChunks(doge, 7, 3000)].map((c) => c.data));
    const parts = Buffer.concat([...copyChunks(doge, 7, 1234), ...copyChunks(doge, 7, 3000, 1234)].map((c) => c.data));
    expect(parts.equals(whole)).toBe(true);
  });
});

describe("npm run seed on a real server", () => {
  let first: SeedResult;

  it("loads the defaults: 5 coins (BTC first, id 1) × 24 h of 1-minute candles and a prediction each", async () => {
    const env = environment();
    const run = await runCli("seed", ["--env", env.env, "--json"]);
    expect(run.code, run.stderr).toBe(EXIT.OK);
    first = run.json;
    expect(first).toMatchObject({ env: env.env, rows: 7200, inserted: 7200, plannedRows: 7200, workers: 2, foreignKeys: "locked parents", predictionsInserted: 5 });
    expect(first.rowsPerSecond).toBeGreaterThan(0);
    expect(first.cryptocurrencies.map((c) => [c.symbol, c.load])).toEqual(["BTC", "ETH", "SOL", "BNB", "XRP"].map((s) => [s, "copy"]));
    expect(first.cryptocurrencies[0]!.id).toBe(1);
    expect(run.stderr).toContain("seed: all 7,200 rows sent");
    expect(run.stderr).toContain("seed: 7,200/7,200 market_data rows (100%, committed)");
    expect(run.stderr).toMatch(/rows\/s/);
    expect(await counts()).toEqual({ cryptocurrencies: 5, marketData: 7200, predictions: 5, evaluated: 0 });
  });

  it("is idempotent: a second run adds nothing and streams nothing", async () => {
    const run = await runCli("seed", ["--env", environment().env, "--json"]);
    expect(run.code, run.stderr).toBe(EXIT.OK);
    expect(run.json).toMatchObject({ rows: 0, inserted: 0, plannedRows: 7200, predictionsInserted: 0 });
    expect(run.json.cryptocurrencies.every((c: { load: string }) => c.load === "complete")).toBe(true);
    expect(await counts()).toEqual({ cryptocurrencies: 5, marketData: 7200, predictions: 5, evaluated: 0 });
    const human = await runCli("seed", ["--env", environment().env]);
    expect(human.stdout).toContain("market_data: 0 new of 7,200 planned rows (5 coins already complete)");
  });

  it("stores exactly the generated series, consistent candle to candle, within every constraint", async () => {
    const eth = SAMPLE_CRYPTOCURRENCIES[1]!;
    const expected = [...candles(eth, 1440)];
    await owner(async (client) => {
      const { rows } = await client.query(
        `SELECT m.open_price, m.high_price, m.low_price, m.close_price, m.volume, extract(epoch FROM m.timestamp)::bigint AS at
           FROM market_data m JOIN cryptocurrencies c ON c.id = m.cryptocurrency_id WHERE c.symbol = 'ETH' ORDER BY m.timestamp`,
      );
      expect(rows).toHaveLength(1440);
      const tick = 10 ** eth.priceDecimals;
      rows.forEach((r: Record<string, string>, i: number) => {
        const c = expected[i]!;
        expect([r.open_price, r.high_price, r.low_price, r.close_price].map((v) => Math.round(Number(v) * tick))).toEqual([c.open, c.high, c.low, c.close]);
        expect(Math.round(Number(r.volume) * 100)).toBe(c.volumeCents);
        expect(Number(r.at)).toBe(Date.UTC(2024, 0, 1) / 1000 + 60 * i);
      });
      const { rows: checks } = await client.query(`SELECT
          count(*) FILTER (WHERE high_price < low_price OR high_price < open_price OR high_price < close_price OR low_price > open_price OR low_price > close_price) AS bad_bracket,
          count(*) FILTER (WHERE least(open_price, high_price, low_price, close_price, volume, market_cap) < 0) AS negative,
          count(*) FILTER (WHERE data_source <> 'synthetic') AS other_source,
          count(*) FILTER (WHERE open_price <> previous_close) AS gaps
        FROM (SELECT *, lag(close_price) OVER (PARTITION BY cryptocurrency_id ORDER BY timestamp) AS previous_close FROM market_data) m`);
      expect(checks[0]).toEqual({ bad_bracket: "0", negative: "0", other_source: "0", gaps: "0" });
      const { rows: predictions } = await client.query(
        "SELECT count(*) FILTER (WHERE target_timestamp <= prediction_timestamp OR confidence_score NOT BETWEEN 0 AND 1 OR model_name <> 'LSTM-v1' OR model_version <> '1.0.0') AS bad FROM predictions",
      );
      expect(predictions[0].bad).toBe("0");
    });
  });

  it("a longer run adds only the missing minutes, and evaluates earlier predictions whose target it seeded", async () => {
    const firstDay = await seriesDigest("BTC", { sameRows: true });
    const result = await owner((client) => seedMarketData(client, { hours: 48 }));
    expect(result).toMatchObject({ inserted: 5 * 1440, plannedRows: 5 * 2880, predictionsInserted: 5 });
    expect(result.cryptocurrencies.every((c) => c.load === "staged")).toBe(true);
    expect(await counts()).toEqual({ cryptocurrencies: 5, marketData: 5 * 2880, predictions: 10, evaluated: 5 });
    // The first day's rows are the same rows (ids, created_at): untouched, not replaced.
    expect(await seriesDigest("BTC", { before: "2024-01-02", sameRows: true })).toBe(firstDay);
    const twoDays = await seriesDigest("BTC", { sameRows: true });
    const again = await owner((client) => seedMarketData(client, { hours: 48 }));
    expect(again).toMatchObject({ rows: 0, inserted: 0, predictionsInserted: 0 });
    expect(await seriesDigest("BTC", { sameRows: true })).toBe(twoDays);
  });

  it("restores a partly deleted range to exactly the same series (staged COPY + ON CONFLICT DO NOTHING)", async () => {
    const digest = await seriesDigest("SOL");
    const deleted = await owner(async (client) => (await client.query("DELETE FROM market_data m USING cryptocurrencies c WHERE c.id = m.cryptocurrency_id AND c.symbol = 'SOL' AND extract(minute FROM m.timestamp)::int % 7 = 3")).rowCount);
    expect(deleted).toBeGreaterThan(300);
    const result = await owner((client) => seedMarketData(client, { hours: 48 }));
    expect(result.inserted).toBe(deleted);
    expect(result.cryptocurrencies.find((c) => c.symbol === "SOL")!.load).toBe("staged");
    expect(result.cryptocurrencies.filter((c) => c.load === "complete")).toHaveLength(4);
    expect(await seriesDigest("SOL")).toBe(digest);
  });

  it("loads nothing when one connection's COPY fails: every connection rolls back", async () => {
    // A guard that refuses one AVAX candle: the second connection's COPY fails mid-way.
    await owner((client) =>
      client.query(`CREATE FUNCTION test_refuse_one() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF NEW.timestamp = '2024-01-01 12:00:00+00' AND NEW.cryptocurrency_id = (SELECT id FROM cryptocurrencies WHERE symbol = 'AVAX') THEN
            RAISE EXCEPTION 'test guard refused a candle';
          END IF;
          RETURN NEW;
        END $$;
        CREATE TRIGGER test_refuse_one BEFORE INSERT ON market_data FOR EACH ROW EXECUTE FUNCTION test_refuse_one();`),
    );
    try {
      const before = await counts();
      // A trigger of market_data's own also makes the seed keep the per-row foreign-key triggers.
      await expect(owner((client) => seedMarketData(client, { symbols: 8, hours: 24, workers: 2 }))).rejects.toThrow(/test guard refused a candle/);
      const after = await counts();
      expect(after.marketData).toBe(before.marketData); // ADA and half of DOGE (the other connection) rolled back too
      expect(after.predictions).toBe(before.predictions);
      expect(after.cryptocurrencies).toBe(8); // the coins themselves are committed first, by design
    } finally {
      await owner((client) => client.query("DROP TRIGGER test_refuse_one ON market_data; DROP FUNCTION test_refuse_one()"));
    }
    const retry = await owner((client) => seedMarketData(client, { symbols: 8, hours: 24, workers: 2 }));
    expect(retry.workers).toBe(2);
    expect(retry.inserted).toBe(3 * 1440);
    expect(retry.cryptocurrencies.slice(5).map((c) => c.load)).toEqual(["copy", "copy", "copy"]);
  });

  it("two seeds at once: one waits for the other (advisory lock); the rows are there once", async () => {
    const before = await counts();
    const results = await Promise.all([1, 2].map(() => owner((client) => seedMarketData(client, { symbols: 10, hours: 6 }))));
    expect(results.map((r) => r.inserted).sort((a, b) => a - b)).toEqual([0, 2 * 360]);
    const after = await counts();
    expect(after.marketData).toBe(before.marketData + 2 * 360);
    expect(after.cryptocurrencies).toBe(10);
  });

  it("keeps the per-row foreign-key triggers when market_data has a trigger of its own (it would be skipped too)", async () => {
    await owner((client) =>
      client.query(`CREATE FUNCTION test_pass() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
        CREATE TRIGGER test_pass BEFORE INSERT ON market_data FOR EACH ROW EXECUTE FUNCTION test_pass();`),
    );
    try {
      const result = await owner((client) => seedMarketData(client, { symbols: 10, hours: 7 })); // DOT and LINK had 6 h
      expect(result).toMatchObject({ foreignKeys: "row triggers", inserted: 2 * 60 });
    } finally {
      await owner((client) => client.query("DROP TRIGGER test_pass ON market_data; DROP FUNCTION test_pass()"));
    }
    const checked = await owner((client) => seedMarketData(client, { symbols: 10, hours: 8, bulk: false }));
    expect(checked).toMatchObject({ foreignKeys: "row triggers", inserted: 2 * 60 });
  });

  it("without row triggers: a concurrent writer's conflicting row fails one connection, and both roll back", async () => {
    // TRX's coin exists; a writer holds an uncommitted TRX candle at 12:00 that the plan cannot see.
    await owner((client) => client.query("INSERT INTO cryptocurrencies (symbol, name, coin_gecko_id) VALUES ('TRX', 'TRON', 'tron')"));
    const writer = new pg.Client(environment().connections.postgresConfig("app"));
    await writer.connect();
    try {
      await writer.query("BEGIN");
      await writer.query(
        "INSERT INTO market_data (cryptocurrency_id, timestamp, open_price, high_price, low_price, close_price) SELECT id, '2024-01-01 12:00:00+00', 1, 1, 1, 1 FROM cryptocurrencies WHERE symbol = 'TRX'",
      );
      const before = await counts();
      const seeding = owner((client) => seedMarketData(client, { symbols: 12, hours: 24, workers: 2 })); // LTC on one connection, TRX on the other
      const outcome = seeding.then(() => "loaded", (error: Error) => error.message);
      // The TRX connection waits on the writer's row; once the writer commits, it is a duplicate.
      await owner(async (client) => {
        for (let i = 0; i < 200; i++) {
          const { rowCount } = await client.query("SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'COPY market_data%'");
          if (rowCount) return;
          await new Promise((r) => setTimeout(r, 25));
        }
        throw new Error("the seed never waited for the writer's row");
      });
      await writer.query("COMMIT");
      expect(await outcome).toMatch(/duplicate key value violates unique constraint "uq_market_data_crypto_timestamp"/);
      const after = await counts();
      expect(after.marketData).toBe(before.marketData + 1); // the writer's row only: LTC's connection rolled back too
      await writer.query("DELETE FROM market_data WHERE timestamp = '2024-01-01 12:00:00+00' AND cryptocurrency_id = (SELECT id FROM cryptocurrencies WHERE symbol = 'TRX')");
    } finally {
      await writer.end();
    }
    const retry = await owner((client) => seedMarketData(client, { symbols: 12, hours: 24, workers: 2 }));
    expect(retry).toMatchObject({ foreignKeys: "locked parents", workers: 2 });
    expect(retry.cryptocurrencies.slice(10).map((c) => c.load)).toEqual(["copy", "copy"]);
    const trx = await owner(async (client) => (await client.query("SELECT count(*)::int AS n, count(*) FILTER (WHERE data_source = 'synthetic')::int AS synthetic FROM market_data m JOIN cryptocurrencies c ON c.id = m.cryptocurrency_id WHERE c.symbol = 'TRX'")).rows[0]);
    expect(trx).toEqual({ n: 1440, synthetic: 1440 });
  });

  it("without row triggers: the coins being loaded cannot be deleted meanwhile, and the session's checks come back", async () => {
    const deleter = new pg.Client(environment().connections.postgresConfig("owner"));
    await deleter.connect();
    await deleter.query("SET lock_timeout = '200ms'");
    let attempt: Promise<string> | undefined;
    try {
      const { result, session } = await owner(async (client) => {
        const result = await seedMarketData(client, {
          symbols: 14, // MATIC and BCH are new
          hours: 60,
          onProgress: (p) => {
            // While rows are on their way, try to delete a coin they reference.
            if (p.phase === "streaming" && !attempt) {
              attempt = deleter.query("DELETE FROM cryptocurrencies WHERE symbol = 'BCH'").then(() => "deleted", (error: { code?: string }) => error.code ?? "error");
            }
          },
        });
        const session = (await client.query("SHOW session_replication_role")).rows[0].session_replication_role;
        const unknownCoin = await client.query(INSERT_UNKNOWN_COIN).then(() => "inserted", (error: { code?: string }) => error.code);
        return { result, session: { mode: session, unknownCoin } };
      });
      expect(result.foreignKeys).toBe("locked parents");
      expect(attempt).toBeDefined();
      // Blocked by the seed's lock (lock_timeout), or refused afterwards because rows now reference it.
      expect(["55P03", "23503"]).toContain(await attempt);
      expect(session).toEqual({ mode: "origin", unknownCoin: "23503" });
    } finally {
      await deleter.end();
    }
    await owner(async (client) => {
      const { rows } = await client.query("SELECT count(*)::int AS orphans FROM market_data m LEFT JOIN cryptocurrencies c ON c.id = m.cryptocurrency_id WHERE c.id IS NULL");
      expect(rows[0].orphans).toBe(0);
      expect((await client.query("SELECT 1 FROM cryptocurrencies WHERE symbol = 'BCH'")).rowCount).toBe(1);
    });
  });

  it("only the schema owner may switch the row triggers off: the app and read-only roles may not", async () => {
    for (const role of ["app", "readonly"] as const) {
      await withPg(environment().connections.postgresConfig(role), async (client) => {
        await expect(client.query("SET session_replication_role = replica"), role).rejects.toMatchObject({ code: "42501" });
      });
    }
    await owner(async (client) => {
      await client.query("SET session_replication_role = replica");
      expect((await client.query("SHOW session_replication_role")).rows[0].session_replication_role).toBe("replica");
    });
  });

  it("refuses bad flags (64) and an environment that is not there (2), changing nothing", async () => {
    const env = environment().env;
    const before = await counts();
    const both = await runCli("seed", ["--env", env, "--rows", "100", "--hours", "1"]);
    expect(both.code).toBe(EXIT.USAGE);
    expect(both.stderr).toContain("--hours and --rows both given");
    const symbols = await runCli("seed", ["--env", env, "--symbols", "21"]);
    expect(symbols.code).toBe(EXIT.USAGE);
    expect(symbols.stderr).toContain('--symbols "21": expected a whole number from 1 to 20');
    const rows = await runCli("seed", ["--env", env, "--rows", "2"]);
    expect(rows.code).toBe(EXIT.USAGE);
    expect(rows.stderr).toContain('--rows "2": expected a whole number from 5');
    const missing = await runCli("seed", ["--env", "eph-0000000000"]);
    expect(missing.code).toBe(EXIT.ERROR);
    expect(missing.stderr).toContain("eph-0000000000");
    expect(await counts()).toEqual(before);
  });
});
