#!/usr/bin/env tsx
/**
 * Runbook: load the sample data into an environment (idempotent: re-running adds nothing).
 *   1. open the environment (it must be up and migrated) and connect as the schema owner;
 *   2. the guide's sample cryptocurrencies (BTC, ETH, …);
 *   3. a deterministic synthetic series of 1-minute OHLCV candles per symbol, streamed with COPY
 *      over --workers connections (progress on stderr);
 *   4. a few predictions of the guide's shape; print rows and rows/s.
 */
import { ENV_FLAG, runCommand } from "../lib/cli.js";
import { CliError, EXIT } from "../lib/errors.js";
import { withPg } from "../lib/db/clients.js";
import { DEFAULT_HOURS, DEFAULT_SYMBOLS, DEFAULT_WORKERS, MAX_ROWS, SAMPLE_CRYPTOCURRENCIES, seedMarketData, type SeedProgress } from "../lib/db/seed/index.js";
import { openEnvironment } from "../lib/env/environment.js";

const number = (n: number) => n.toLocaleString("en-US");

await runCommand({
  name: "seed",
  summary: "Load the sample cryptocurrencies, a deterministic 1-minute OHLCV series and a few predictions (idempotent).",
  usage: "[--env NAME] [--symbols N] [--hours H | --rows N] [--workers N] [--json]",
  flags: {
    env: ENV_FLAG,
    symbols: { type: "string", help: `how many sample coins, BTC and ETH first (1-${SAMPLE_CRYPTOCURRENCIES.length})`, default: String(DEFAULT_SYMBOLS) },
    hours: { type: "string", help: `hours of 1-minute candles per coin: rows = symbols × hours × 60 (default: ${DEFAULT_HOURS})` },
    rows: { type: "string", help: "total market_data rows instead of --hours, split evenly across the coins" },
    workers: { type: "string", help: "COPY connections at once (one server process each)", default: String(DEFAULT_WORKERS) },
  },
  details: [
    "The series starts at 2024-01-01 00:00 UTC, one candle a minute per coin; the same options give the same",
    "rows on every run, so re-running inserts nothing and a longer run adds only the missing minutes.",
    "Examples:",
    "  npm run seed                                   # 5 coins × 24 h = 7,200 candles",
    "  npm run seed -- --symbols 10 --rows 1000000    # 1M candles (100,000 per coin, ~69 days)",
    "  npm run -s seed -- --env ci --hours 168 --json",
  ].join("\n"),
  async run(ctx) {
    const symbols = ctx.intFlag("symbols", DEFAULT_SYMBOLS, 1, SAMPLE_CRYPTOCURRENCIES.length);
    if (ctx.flags.hours !== undefined && ctx.flags.rows !== undefined) {
      throw new CliError("--hours and --rows both given: choose one (--rows N is the total; --hours H is per coin)", EXIT.USAGE);
    }
    const hours = ctx.flags.hours === undefined ? undefined : ctx.intFlag("hours", DEFAULT_HOURS, 1, Math.floor(MAX_ROWS / 60 / symbols));
    const rows = ctx.flags.rows === undefined ? undefined : ctx.intFlag("rows", 0, symbols, MAX_ROWS);
    const workers = ctx.intFlag("workers", DEFAULT_WORKERS, 1, 8);
    const env = ctx.flags.env ?? "dev";
    const { connections } = openEnvironment(env);
    const config = connections.postgresConfig("owner");

    let lastProgress = 0;
    const onProgress = (p: SeedProgress) => {
      const now = performance.now();
      if (p.totalRows === 0 || (p.phase === "streaming" && now - lastProgress < 1000)) return;
      lastProgress = now;
      const rate = p.seconds > 0 ? Math.round(p.rows / p.seconds) : 0;
      if (p.phase === "finishing") ctx.progress(`seed: all ${number(p.totalRows)} rows sent in ${p.seconds.toFixed(1)} s; waiting for the server to finish and commit`);
      else ctx.progress(`seed: ${number(p.rows)}/${number(p.totalRows)} market_data rows (${Math.floor((100 * p.rows) / p.totalRows)}%${p.phase === "done" ? ", committed" : ""}), ${number(rate)} rows/s`);
    };
    ctx.log(`seeding ${env}: ${symbols} cryptocurrencies, ${rows !== undefined ? `${number(rows)} rows` : `${hours ?? DEFAULT_HOURS} h of 1-minute candles each`}`);
    const result = await withPg(config, (client) =>
      seedMarketData(client, {
        symbols,
        hours,
        rows,
        workers,
        onProgress,
      }),
    ).catch((error: { code?: string; message: string }) => {
      if (error.code === "42P01") throw new CliError(`${env} has no schema yet (${error.message})`, EXIT.ERROR, `apply the migrations: npm run migrate -- up --env ${env}`);
      throw error;
    });

    const complete = result.cryptocurrencies.filter((c) => c.load === "complete").length;
    return {
      data: { env, ...result },
      human: [
        `${env}: ${result.cryptocurrencies.length} cryptocurrencies (${result.cryptocurrencies.map((c) => c.symbol).join(", ")})`,
        `  market_data: ${number(result.inserted)} new of ${number(result.plannedRows)} planned rows` +
          (complete ? ` (${complete} coin${complete > 1 ? "s" : ""} already complete)` : ""),
        `  COPY: ${number(result.rows)} rows in ${result.seconds.toFixed(2)} s = ${number(result.rowsPerSecond)} rows/s over ${result.workers} connection${result.workers > 1 ? "s" : ""} (foreign keys: ${result.foreignKeys})`,
        `  predictions: ${number(result.predictionsInserted)} new`,
      ].join("\n"),
    };
  },
});
