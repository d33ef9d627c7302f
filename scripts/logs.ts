#!/usr/bin/env tsx
/** Runbook: the servers' logs of an environment (embedded: the log files; Docker: docker logs). */
import { ENV_FLAG, runCommand } from "../lib/cli.js";
import { environmentLogs, type LogService } from "../lib/env/logs.js";

await runCommand({
  name: "logs",
  summary: "Show the last lines of an environment's PostgreSQL and Redis logs (log files, or docker logs).",
  usage: "[--env NAME] [--service postgres|redis] [--lines N] [--json]",
  flags: {
    env: ENV_FLAG,
    service: { type: "string", help: "one server only", choices: ["postgres", "redis"] },
    lines: { type: "string", help: "how many lines of each (1-100000)", default: "100" },
  },
  details: "Examples:\n  npm run logs\n  npm run logs -- --env eph-0123456789 --service postgres --lines 20",
  async run(ctx) {
    const lines = ctx.intFlag("lines", 100, 1, 100_000);
    const logs = await environmentLogs(ctx.flags.env ?? "dev", { service: ctx.flags.service as LogService | undefined, lines });
    const human = logs.map((l) => [`==> ${l.service}: ${l.source} <==`, ...(l.lines.length ? l.lines : ["(empty)"])].join("\n")).join("\n\n");
    return { data: { env: ctx.flags.env ?? "dev", logs }, human };
  },
});
