#!/usr/bin/env tsx
/**
 * Runbook: the guide's metrics against its alerting thresholds (spec.alerts), in one glance.
 *   PostgreSQL: connections vs max_connections, slow queries, cache/index hit ratios, dead
 *   tuples, table sizes, unused indexes.
 *   Redis: memory vs maxmemory, hit rate, evictions/s and commands/s (two INFO samples
 *   --interval seconds apart), clients, keys.
 * --serve: the same metrics as a Prometheus exporter on 127.0.0.1, until SIGTERM or Ctrl-C.
 * --rules: Prometheus alerting rules of those thresholds (with spec.monitor's for: and severity).
 */
import { runCommand } from "../lib/cli.js";
import { CliError, EXIT } from "../lib/errors.js";
import { specOf } from "../lib/state/record.js";
import { ENVIRONMENT_FLAGS, environmentFromFlags } from "../lib/env/resolve.js";
import { formatMonitorReport, monitorEnvironment } from "../lib/monitor/monitor.js";
import { alertingRules, alertingRulesYaml } from "../lib/monitor/rules.js";
import { parseListenAddress, serveMetrics } from "../lib/monitor/server.js";
import { interceptTermination } from "../lib/signals.js";

await runCommand({
  name: "monitor",
  summary: "Metrics vs the alert thresholds: PostgreSQL connections, slow queries, dead tuples…; Redis memory, hit rate, evictions/s. Also a Prometheus exporter and its alerting rules.",
  usage: "[--env NAME] [--database-url URL] [--redis-url URL] [--interval SECONDS | --serve [HOST:]PORT [--allow-non-loopback] | --rules] [--json]",
  flags: {
    ...ENVIRONMENT_FLAGS,
    interval: { type: "string", help: "seconds between the two Redis samples for rates (0-60, decimals allowed; 0: no rates)", default: "1" },
    serve: { type: "string", help: "serve Prometheus metrics on [HOST:]PORT (default host 127.0.0.1; PORT 0: a free one; HOST alone: port monitor.port) until SIGTERM" },
    "allow-non-loopback": { type: "boolean", help: "let --serve bind an address other than 127.0.0.0/8, ::1 or localhost (the page has no authentication)" },
    rules: { type: "boolean", help: "print Prometheus alerting rules made from spec.alerts and spec.monitor (YAML; --json: JSON) and exit" },
  },
  details: [
    "Examples:",
    "  npm run monitor",
    "  npm run monitor -- --env eph-0123abcd --interval 5 --json",
    "  npm run monitor -- --serve 9187                 # http://127.0.0.1:9187/metrics",
    "  npm run monitor -- --env prod --rules > rules/prod.yml && promtool check rules rules/prod.yml",
    "",
  ].join("\n"),
  exitCodes: { 0: "all within thresholds (--serve: stopped by SIGTERM/SIGINT; --rules: printed)", 1: "a threshold crossed (a WARN line)", 2: "something could not be measured (unreachable, or a statistic this login may not read; --serve: the port is taken)", 64: "bad usage (a non-loopback --serve without --allow-non-loopback)" },
  async run(ctx) {
    const modes = [ctx.flags.serve !== undefined && "--serve", ctx.flags.rules && "--rules", process.argv.some((a) => a === "--interval" || a.startsWith("--interval=")) && "--interval"].filter(Boolean);
    if (modes.length > 1) throw new CliError(`${modes.join(" and ")} do not go together: choose one`, EXIT.USAGE);
    if (ctx.flags["allow-non-loopback"] && ctx.flags.serve === undefined) throw new CliError("--allow-non-loopback only applies to --serve", EXIT.USAGE);

    if (ctx.flags.rules) {
      if (ctx.flags["database-url"] || ctx.flags["redis-url"]) throw new CliError("--rules reads only the spec (--env); --database-url/--redis-url do not apply", EXIT.USAGE);
      const spec = specOf(ctx.flags.env || "dev");
      return { data: alertingRules(spec), human: alertingRulesYaml(spec).trimEnd() };
    }

    if (ctx.flags.serve !== undefined) {
      // The address first: a usage mistake is reported before anything connects.
      const address = parseListenAddress(ctx.flags.serve, specOf(ctx.flags.env || "dev").monitor.port, { allowNonLoopback: ctx.flags["allow-non-loopback"] });
      const target = environmentFromFlags(ctx.flags, ctx.log);
      let lastDown = "";
      const server = await serveMetrics(target, target.spec, address, {
        onScrape(scrape) {
          const down = scrape.errors.join("; ");
          if (down && down !== lastDown) ctx.log(`scrape: ${down}`);
          else if (!down && lastDown) ctx.log("scrape: every server answers again");
          lastDown = down;
        },
      });
      ctx.log(`serving ${target.label} metrics on ${server.url} (scrape bound ${target.spec.monitor.scrapeTimeoutSeconds} s); SIGTERM or Ctrl-C stops`);
      // Stopping is how an exporter ends: the first signal closes the server and exits 0.
      const signal = await new Promise<NodeJS.Signals>((resolve) => interceptTermination(resolve));
      await server.close();
      return { data: { served: server.url, stoppedBy: signal }, human: `stopped (${signal}); served ${server.url}` };
    }

    const interval = Number(ctx.flags.interval);
    if (!/^\d+(\.\d+)?$/.test(ctx.flags.interval ?? "") || interval > 60) {
      throw new CliError(`--interval ${JSON.stringify(ctx.flags.interval)}: expected a number of seconds from 0 to 60 (e.g. 1 or 0.5)`, EXIT.USAGE);
    }
    const target = environmentFromFlags(ctx.flags, ctx.log);
    ctx.progress(`sampling ${target.label} for ${interval} s`);
    const report = await monitorEnvironment(target, target.spec, { intervalSeconds: interval });
    return { code: report.exitCode, data: report, human: formatMonitorReport(report) };
  },
});
