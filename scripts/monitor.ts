#!/usr/bin/env tsx
/**
 * Runbook: the guide's metrics against its alerting thresholds (spec.alerts), in one glance.
 *   PostgreSQL: connections vs max_connections, slow queries, cache/index hit ratios, dead
 *   tuples, table sizes, unused indexes.
 *   Redis: memory vs maxmemory, hit rate, evictions/s and commands/s (two INFO samples
 *   --interval seconds apart), clients, keys.
 */
import { CliError, EXIT, runCommand } from "../lib/cli.js";
import { TARGET_FLAGS, targetFromFlags } from "../lib/env/target.js";
import { formatMonitorReport, monitorEnvironment } from "../lib/monitor/monitor.js";

await runCommand({
  name: "monitor",
  summary: "Metrics vs the alert thresholds: PostgreSQL connections, slow queries, dead tuples…; Redis memory, hit rate, evictions/s.",
  usage: "[--env NAME] [--database-url URL] [--redis-url URL] [--interval SECONDS] [--json]",
  flags: {
    ...TARGET_FLAGS,
    interval: { type: "string", help: "seconds between the two Redis samples for rates (0-60, decimals allowed; 0: no rates)", default: "1" },
  },
  details: [
    "Examples:",
    "  npm run monitor",
    "  npm run monitor -- --env eph-0123abcd --interval 5 --json",
    "",
  ].join("\n"),
  exitCodes: { 0: "all within thresholds", 1: "a threshold crossed (a WARN line)", 2: "something could not be measured (unreachable, or a statistic this login may not read)" },
  async run(ctx) {
    const interval = Number(ctx.flags.interval);
    if (!/^\d+(\.\d+)?$/.test(ctx.flags.interval ?? "") || interval > 60) {
      throw new CliError(`--interval ${JSON.stringify(ctx.flags.interval)}: expected a number of seconds from 0 to 60 (e.g. 1 or 0.5)`, EXIT.USAGE);
    }
    const target = targetFromFlags(ctx.flags, ctx.log);
    ctx.progress(`sampling ${target.label} for ${interval} s`);
    const report = await monitorEnvironment(target, target.spec, { intervalSeconds: interval });
    return { code: report.exitCode, data: report, human: formatMonitorReport(report) };
  },
});
