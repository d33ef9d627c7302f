#!/usr/bin/env tsx
/** Runbook: apply, revert or list the schema migrations of an environment (as the schema owner). */
import { CliError, ENV_FLAG, EXIT, runCommand } from "../lib/cli.js";
import { withPg } from "../lib/db/clients.js";
import { migrate, migrationStatus, MIGRATIONS_TABLE } from "../lib/db/migrate.js";
import { postMigrationSql } from "../lib/db/roles.js";
import { openEnvironment } from "../lib/env/environment.js";

await runCommand({
  name: "migrate",
  summary: "Apply (up), revert (down) or list (status) the schema migrations.",
  usage: "up|down|status [--env NAME] [--count N] [--json]",
  positional: { min: 1, max: 1 },
  flags: {
    env: ENV_FLAG,
    count: { type: "string", help: "how many migrations (up: all; down: 1)" },
  },
  details: "Examples:\n  npm run migrate -- status\n  npm run migrate -- down --count 3\n  npm run migrate -- up",
  async run(ctx) {
    const action = ctx.args[0];
    if (!["up", "down", "status"].includes(action!)) {
      throw new CliError(`unknown action ${JSON.stringify(action)}: expected up, down or status`, EXIT.USAGE);
    }
    // Flags first: a bad --count is a usage error whether or not the environment answers.
    const count = ctx.intFlag("count", action === "down" ? 1 : 1_000_000, 1, 1_000_000);
    const { connections, spec } = openEnvironment(ctx.flags.env ?? "dev");
    return withPg(connections.postgresConfig("owner"), async (client) => {
      if (action === "status") {
        const status = await migrationStatus(client);
        return {
          data: status,
          human: [
            `applied (${status.applied.length}):`,
            ...status.applied.map((m) => `  ✓ ${m}`),
            `pending (${status.pending.length}):`,
            ...status.pending.map((m) => `  · ${m}`),
            ...(status.unknown.length ? [`applied but unknown to this code: ${status.unknown.join(", ")}`] : []),
          ].join("\n"),
        };
      }
      const ran = await migrate(client, { direction: action as "up" | "down", count, log: ctx.log });
      await client.query(postMigrationSql(spec, MIGRATIONS_TABLE));
      return { data: { action, ran }, human: ran.length ? `${action}: ${ran.join(", ")}` : `${action}: nothing to do` };
    });
  },
});
