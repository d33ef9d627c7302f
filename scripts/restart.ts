#!/usr/bin/env tsx
/**
 * Runbook: restart an environment's servers (embedded: stop, then `up`; Docker: restart the
 * containers and wait until healthy), under its lock, data kept; pending migrations are applied.
 */
import { ENV_FLAG, runCommand } from "../lib/cli.js";
import { restartEnvironment } from "../lib/env/lifecycle.js";

await runCommand({
  name: "restart",
  summary: "Restart an environment's PostgreSQL and Redis (processes or containers), data kept.",
  usage: "[--env NAME] [--json]",
  flags: { env: ENV_FLAG },
  details: "Waits for another run's lock up to CPI_LOCK_WAIT_SECONDS (default 120), then exits 3.",
  async run(ctx) {
    const report = await restartEnvironment(ctx.flags.env ?? "dev", ctx.log);
    return { data: report, human: `${report.env}: restarted (${report.engine}) in ${report.seconds.toFixed(1)}s${report.migrationsApplied.length ? `; migrations applied: ${report.migrationsApplied.join(", ")}` : ""}` };
  },
});
