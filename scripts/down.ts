#!/usr/bin/env tsx
/**
 * Runbook: stop an environment's servers, keeping its data (embedded: the processes; Docker: the
 * containers). `--destroy --yes` also deletes its state (data, logs, credentials; Docker: the
 * containers, volumes and network): there is no undo.
 */
import { ENV_FLAG, runCommand } from "../lib/cli.js";
import { CliError, EXIT } from "../lib/errors.js";
import { stopEnvironment } from "../lib/env/lifecycle.js";

await runCommand({
  name: "down",
  summary: "Stop an environment's servers or containers (data kept); --destroy --yes deletes all of it.",
  usage: "[--env NAME] [--destroy --yes] [--by-pid-files] [--json]",
  flags: {
    env: ENV_FLAG,
    destroy: { type: "boolean", help: "also delete data, logs and credentials; Docker: containers, volumes, network (needs --yes)" },
    yes: { type: "boolean", help: "confirm --destroy" },
    "by-pid-files": { type: "boolean", help: "do not read env.json (corrupt): stop the servers its data folder's pid files name" },
  },
  details: "Examples:\n  npm run down\n  npm run down -- --env eph-0123456789 --destroy --yes\n  npm run down -- --env dev --by-pid-files      # env.json is corrupt: stop the servers anyway, data kept",
  async run(ctx) {
    const env = ctx.flags.env ?? "dev";
    if (ctx.flags.destroy && !ctx.flags.yes) {
      throw new CliError(`--destroy deletes every file of environment '${env}', data included`, EXIT.USAGE, `confirm with: npm run down -- --env ${env} --destroy --yes`);
    }
    const report = await stopEnvironment(env, { destroy: ctx.flags.destroy, log: ctx.log, byPidFiles: ctx.flags["by-pid-files"] });
    const stopped = [report.stopped.postgres && "PostgreSQL", report.stopped.redis && "Redis"].filter(Boolean);
    const what = report.engine === "docker" ? (report.destroyed ? `removed ${report.removed?.join(", ") || "nothing (already gone)"}` : stopped.length ? `stopped the ${stopped.join(" and ")} containers` : "no container was running") : stopped.length ? `stopped ${stopped.join(" and ")}` : "was not running";
    return {
      data: report,
      human: [`${env}: ${what}${report.destroyed ? (report.engine === "docker" ? "" : "; state deleted") : "; data kept"}`, ...(report.notes ?? []).map((n) => `  note: ${n}`)].join("\n"),
    };
  },
});
