/**
 * Item 7, the cost of continuous archiving on the seed load rate: seedMarketData at the plan's
 * size into two ephemeral environments of the same spec, one archiving WAL (the default:
 * basic_archive, archive_timeout 60 s) and one with backup.archive.enabled false (wal_level
 * replica either way), emptied before each run; the order alternates per repetition, so the
 * machine's drifting load hits both alike. Target: archiving costs at most 10% of the rate.
 */
import { withPg } from "../db/clients.js";
import { seedMarketData } from "../db/seed/index.js";
import { throttled, type BenchItem } from "./harness.js";
import { atMost, measuredRow } from "./results.js";

export const archivingItem: BenchItem = {
  name: "archiving",
  title: "7. WAL archiving's cost on the seed",
  async run(ctx) {
    const { rows } = ctx.plan;
    const on = await ctx.embedded("archiving on");
    const off = await ctx.embedded("archiving off", { backup: { archive: { enabled: false } } });
    const rates: Record<"on" | "off", number[]> = { on: [], off: [] };
    const cost: number[] = [];
    try {
      for (let i = 1; i <= ctx.plan.repetitions; i++) {
        const order = i % 2 ? (["on", "off"] as const) : (["off", "on"] as const);
        const rep: Partial<Record<"on" | "off", number>> = {};
        for (const which of order) {
          const { env } = which === "on" ? on : off;
          await withPg(env.connections.postgresConfig("owner"), (c) => c.query("TRUNCATE market_data, predictions RESTART IDENTITY"));
          await withPg(env.connections.postgresConfig("admin"), (c) => c.query("CHECKPOINT"));
          const result = await withPg(env.connections.postgresConfig("owner"), (client) =>
            seedMarketData(client, { rows, onProgress: throttled((p) => ctx.progress(`archiving ${which} ${i}/${ctx.plan.repetitions}: ${p.rows.toLocaleString("en-US")}/${p.totalRows.toLocaleString("en-US")} rows`)) }),
          );
          if (result.inserted !== rows) throw new Error(`seed (archiving ${which}) inserted ${result.inserted} rows, expected ${rows}`);
          rates[which].push(result.rowsPerSecond);
          rep[which] = result.rowsPerSecond;
        }
        cost.push((100 * (rep.off! - rep.on!)) / rep.off!);
      }
    } finally {
      await on.destroy();
      await off.destroy();
    }
    const label = (what: string) => `${what}, ${rows.toLocaleString("en-US")} market_data rows`;
    return [
      measuredRow({ id: "archiving.seed.on", label: label("seed load rate with WAL archiving on (basic_archive)"), unit: "rows/s", samples: rates.on }),
      measuredRow({ id: "archiving.seed.off", label: label("seed load rate with archiving off (backup.archive.enabled: false)"), unit: "rows/s", samples: rates.off }),
      measuredRow({ id: "archiving.seed.cost", label: label("archiving's cost on the seed load rate (same repetition, order alternating)"), unit: "%", samples: cost, target: atMost(10, "%") }),
    ];
  },
};
