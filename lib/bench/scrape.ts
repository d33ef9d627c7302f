/**
 * Item 9, one Prometheus scrape of a healthy environment (the seeded fixture): GET /metrics from
 * the exporter as `monitor --serve` runs it (its sessions kept between scrapes), and a one-off
 * scrape that opens and closes its own connections (what a first scrape, or a restarted server,
 * costs). Environment: 200 ms.
 */
import { openEnvironment } from "../env/environment.js";
import { scrapeMetrics } from "../monitor/exporter.js";
import { serveMetrics } from "../monitor/server.js";
import type { BenchItem } from "./harness.js";
import { atMost, measuredRow, type Row } from "./results.js";

/** Scrapes per figure: more than the other items' repetitions, since one takes milliseconds. */
const SCRAPES_PER_REPETITION = 4;

export const scrapeItem: BenchItem = {
  name: "scrape",
  title: "9. Prometheus scrape (monitor --serve)",
  async run(ctx) {
    const env = await ctx.seeded(ctx.plan.rows);
    const target = openEnvironment(env.env);
    const server = await serveMetrics(target, target.spec, { host: "127.0.0.1", port: 0 });
    const stop = ctx.defer("stop the exporter", () => server.close());
    const count = ctx.plan.repetitions * SCRAPES_PER_REPETITION;
    const served: number[] = [];
    const oneOff: number[] = [];
    let bytes = 0;
    try {
      const get = async () => {
        const started = performance.now();
        const response = await fetch(server.url, { signal: AbortSignal.timeout(30_000) });
        const text = await response.text();
        if (response.status !== 200 || !text.includes("cpi_postgres_up{") || /cpi_(postgres|redis)_up\{[^}]*\} 0/.test(text)) throw new Error(`the scrape of a healthy environment failed: HTTP ${response.status}`);
        bytes = text.length;
        return (performance.now() - started) / 1000;
      };
      if (ctx.plan.warmUps) await get(); // the first scrape opens the sessions
      for (let i = 1; i <= count; i++) {
        ctx.progress(`scrape ${i}/${count}`);
        served.push(await get());
      }
      for (let i = 1; i <= ctx.plan.repetitions; i++) {
        ctx.progress(`one-off scrape ${i}/${ctx.plan.repetitions}`);
        const started = performance.now();
        const scrape = await scrapeMetrics(target);
        if (!scrape.up.postgres || !scrape.up.redis) throw new Error(`a one-off scrape saw a server down: ${scrape.errors.join("; ")}`);
        oneOff.push((performance.now() - started) / 1000);
      }
    } finally {
      await stop();
    }
    const target200 = atMost(0.2, "s");
    const rows: Row[] = [
      measuredRow({ id: "scrape.served", label: "GET /metrics, sessions kept (monitor --serve)", unit: "s", samples: served, target: target200, p95: true, details: { bytes } }),
      measuredRow({ id: "scrape.one-off", label: "one scrape with new connections", unit: "s", samples: oneOff, target: target200 }),
    ];
    return rows;
  },
};
