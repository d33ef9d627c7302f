#!/usr/bin/env tsx
/**
 * Runbook: stop an environment's servers, keeping its data. `--destroy --yes` also deletes its
 * state (data, logs, credentials): there is no undo.
 */
import { CliError, ENV_FLAG, EXIT, runCommand } from "../lib/cli.js";
import { downEmbedded } from "../lib/env/embedded.js";

await runCommand({
  name: "down",
  summary: "Stop an environment's servers (data kept); --destroy --yes deletes all of its state.",
  usage: "[--env NAME] [--destroy --yes] [--json]",
  flags: {
    env: ENV_FLAG,
    destroy: { type: "boolean", help: "also delete data, logs and credentials (needs --yes)" },
    yes: { type: "boolean", help: "confirm --destroy" },
  },
  async run(ctx) {
    const env = ctx.flags.env ?? "dev";
    if (ctx.flags.destroy && !ctx.flags.yes) {
      throw new CliError(`--destroy deletes every file of environment '${env}', data included`, EXIT.USAGE, `confirm with: npm run down -- --env ${env} --destroy --yes`);
    }
    const report = await downEmbedded(env, { destroy: ctx.flags.destroy, log: ctx.log });
    const stopped = [report.stopped.postgres && "PostgreSQL", report.stopped.redis && "Redis"].filter(Boolean);
    return {
      data: report,
      human: `${env}: ${stopped.length ? `stopped ${stopped.join(" and ")}` : "was not running"}${report.destroyed ? "; state deleted" : "; data kept"}`,
    };
  },
});
