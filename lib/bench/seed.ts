/**
 * Item 2, seed load rate: seedMarketData at the plan's size (1M market_data rows) into an
 * ephemeral environment, emptied (TRUNCATE + CHECKPOINT) before each run so every run loads into
 * the same empty table with a quiet WAL.
 */
import { withPg } from "../db/clients.js";
import { seedMarketData } from "../db/seed/index.js";
import { throttled, type BenchItem } from "./harness.js";
import { atLeast, measuredRow } from "./results.js";

export const seedItem: BenchItem = {
  name: "seed",
  title: "2. Seed load rate",
  async run(ctx) {
    const { rows } = ctx.plan;
    const { env, destroy } = await ctx.embedded("seed");
    const rates: number[] = [];
    const seconds: number[] = [];
    for (let i = 1; i <= ctx.plan.repetitions; i++) {
      await withPg(env.connections.postgresConfig("owner"), (c) => c.query("TRUNCATE market_data, predictions RESTART IDENTITY"));
      await withPg(env.connections.postgresConfig("admin"), (c) => c.query("CHECKPOINT"));
      const result = await withPg(env.connections.postgresConfig("owner"), (client) =>
        seedMarketData(client, {
          rows,
          onProgress: throttled((p) => ctx.progress(`seed ${i}/${ctx.plan.repetitions}: ${p.rows.toLocaleString("en-US")}/${p.totalRows.toLocaleString("en-US")} rows`)),
        }),
      );
      if (result.inserted !== rows) throw new Error(`seed inserted ${result.inserted} rows, expected ${rows}`);
      rates.push(result.rowsPerSecond);
      seconds.push(result.seconds);
    }
    await destroy();
    return [
      measuredRow({
        id: "seed.rate",
        label: `seed load rate, ${rows.toLocaleString("en-US")} market_data rows (binary COPY over 2 connections, committed together)`,
        unit: "rows/s",
        samples: rates,
        target: atLeast(250_000, "rows/s"),
        details: { rows, loadSeconds: seconds.map((s) => Math.round(s * 1000) / 1000) },
      }),
    ];
  },
};
