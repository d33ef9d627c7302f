#!/usr/bin/env tsx
/** Runbook: apply, revert or list the schema migrations of an environment (as the schema owner). */
import { ENV_FLAG, runCommand } from "../lib/cli.js";
import { CliError, EXIT } from "../lib/errors.js";
import { withPg } from "../lib/db/clients.js";
import { migrate, migrationStatus, MIGRATIONS_TABLE, planMigrations } from "../lib/db/migrate.js";
import { applyRoleSql, postMigrationSql } from "../lib/db/roles.js";
import { openEnvironment } from "../lib/env/environment.js";

await runCommand({
  name: "migrate",
  summary: "Apply (up), revert (down) or list (status) the schema migrations.",
  usage: "up|down|status [--env NAME] [--count N] [--yes] [--json]",
  positional: { min: 1, max: 1 },
  flags: {
    env: ENV_FLAG,
    count: { type: "string", help: "how many migrations (up: all; down: 1)" },
    yes: { type: "boolean", help: "run migrations that drop tables, columns or rows (down reverts create table: its data goes)" },
  },
  details: [
    "Examples:",
    "  npm run migrate -- status",
    "  npm run migrate -- up",
    "  npm run migrate -- down --count 3 --env ci          # says what it would drop, changes nothing",
    "  npm run migrate -- down --count 3 --env ci --yes    # drops it",
    "",
    "A run whose SQL drops a table, a column or rows (every down here) needs --yes; without it, it lists",
    "what would be dropped with the rows each table holds, and exits 64 having changed nothing.",
  ].join("\n"),
  exitCodes: { 64: "bad usage, or migrations that would drop data without --yes (nothing changed)" },
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
      const direction = action as "up" | "down";
      if (!ctx.flags.yes) {
        // node-pg-migrate's dry run renders the SQL; anything that loses data waits for --yes.
        const plan = await planMigrations(client, { direction, count });
        if (plan.destructive.length) {
          const env = ctx.flags.env ?? "dev";
          const lost = plan.destructive.map((d) => `${d.kind} ${d.table}${d.rows !== undefined ? ` (${d.rows.toLocaleString("en-US")} rows)` : ""} in ${d.migration}`);
          throw new CliError(
            `${direction} ${plan.migrations.length} migration(s) would drop data in '${env}': ${lost.join("; ")}; nothing was changed`,
            EXIT.USAGE,
            `back up first (npm run backup -- --env ${env}), then add --yes: ${ctx.rerun(["--yes"])}`,
          );
        }
      }
      const ran = await migrate(client, { direction, count, log: ctx.log });
      await applyRoleSql(client, postMigrationSql(spec, MIGRATIONS_TABLE));
      return { data: { action, ran }, human: ran.length ? `${action}: ${ran.join(", ")}` : `${action}: nothing to do` };
    });
  },
});
