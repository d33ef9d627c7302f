#!/usr/bin/env tsx
/**
 * Runbook: the guide's weekly maintenance, with what it changed.
 *   1. VACUUM ANALYZE market_data and predictions (dead tuples out, statistics in);
 *   2. ANALYZE cryptocurrencies (market_data's statistics come from step 1);
 *   3. index health (invalid, never scanned) and table sizes;
 *   4. a summary: dead and live tuples before and after, sizes.
 * Online: VACUUM does not block reads or writes; a lock wait is bounded (--lock-timeout).
 */
import { runCommand } from "../lib/cli.js";
import { ENVIRONMENT_FLAGS, environmentFromFlags } from "../lib/env/resolve.js";
import { formatMaintainReport, maintainEnvironment } from "../lib/maintain/maintain.js";

await runCommand({
  name: "maintain",
  summary: "Weekly maintenance: VACUUM ANALYZE, ANALYZE, index health and table sizes, with dead tuples before and after.",
  usage: "[--env NAME] [--database-url URL] [--as owner|admin] [--lock-timeout SECONDS] [--json]",
  flags: {
    ...ENVIRONMENT_FLAGS,
    as: { type: "string", help: "run as the schema owner or the admin (URL targets: the URL's login)", default: "owner", choices: ["owner", "admin"] },
    "lock-timeout": { type: "string", help: "seconds a step may wait for its table lock (1-3600)", default: "30" },
  },
  details: [
    "Examples:",
    "  npm run maintain",
    "  npm run maintain -- --env eph-0123abcd --as admin --json",
    "",
  ].join("\n"),
  exitCodes: { 0: "done", 1: "done, but a problem found (an invalid index, dead tuples VACUUM could not remove)", 2: "a step could not run (missing table, lock timeout, unreachable server)" },
  async run(ctx) {
    const lockTimeoutSeconds = ctx.intFlag("lock-timeout", 30, 1, 3600);
    const target = environmentFromFlags(ctx.flags, ctx.log);
    const report = await maintainEnvironment(target, target.spec, { role: ctx.flags.as as "owner" | "admin", lockTimeoutSeconds, log: ctx.progress });
    return { code: report.exitCode, data: report, human: formatMaintainReport(report) };
  },
});
