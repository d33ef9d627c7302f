#!/usr/bin/env tsx
/**
 * Runbook: the guide's `psql -h localhost -U crypto_user -d crypto_prediction_db` and
 * `redis-cli info memory`, against a local environment, without pasting a password anywhere:
 * the real client starts attached to this terminal with the password in its environment
 * (PGPASSWORD / REDISCLI_AUTH), never in argv. Arguments after `--` go to the client.
 */
import { ENV_FLAG, runCommand } from "../lib/cli.js";
import { EXIT } from "../lib/errors.js";
import { clientInvocation, LOGIN_ROLES, runClient, type ClientTool, type LoginRole } from "../lib/env/clients.js";
import { openEnvironment } from "../lib/env/environment.js";

// Everything after the first `--` belongs to the client (npm already took its own `--`).
const argv = process.argv.slice(2);
const split = argv.indexOf("--");
const own = split === -1 ? argv : argv.slice(0, split);
const extra = split === -1 ? [] : argv.slice(split + 1);

await runCommand(
  {
    name: "connect",
    summary: "Start psql or redis-cli on an environment as one of its roles; the password goes in the client's environment, never argv.",
    usage: "psql|redis [--env NAME] [--as owner|app|readonly|admin] [--json] [-- CLIENT ARGS…]",
    positional: { min: 1, max: 1 },
    flags: {
      env: ENV_FLAG,
      as: { type: "string", help: "role: psql default owner (the guide's crypto_user); redis: app (default) or admin", choices: LOGIN_ROLES },
    },
    details: [
      "Examples:",
      "  npm run connect -- psql                                  # psql as crypto_user on crypto_prediction_db",
      "  npm run connect -- psql --as readonly -- -c 'SELECT count(*) FROM market_data'",
      "  npm run connect -- redis -- info memory                  # the guide's redis-cli info memory",
      "  npm run connect -- redis --env eph-0123456789 --as admin",
      "--json prints the connection (no password) and starts nothing.",
      "Exit codes here: the client's own exit code once it started; 2 the client or environment is missing; 64 bad usage.",
    ].join("\n"),
    async run(ctx) {
      const tool = ctx.args[0] as string;
      if (tool !== "psql" && tool !== "redis" && tool !== "redis-cli") {
        const { CliError } = await import("../lib/errors.js");
        throw new CliError(`${JSON.stringify(tool)}: expected psql or redis`, EXIT.USAGE, "usage: npm run connect -- psql|redis [--env NAME] [--as ROLE] [-- ARGS]");
      }
      const opened = openEnvironment(ctx.flags.env ?? "dev");
      const invocation = clientInvocation(opened, tool === "psql" ? "psql" : ("redis" satisfies ClientTool), ctx.flags.as as LoginRole | undefined, extra);
      const described = { env: opened.env, tool: invocation.tool, binary: invocation.binary, args: invocation.args, role: invocation.role, user: invocation.user, target: invocation.target, passwordIn: invocation.passwordVariable };
      if (ctx.json) return { data: described };
      ctx.log(`connect: ${invocation.target} as ${invocation.role} (password in ${invocation.passwordVariable})`);
      const code = await runClient(invocation);
      // The client printed everything; exit with its code (and print nothing more).
      await new Promise<void>((resolve) => process.stdout.write("", () => resolve()));
      process.exit(code);
    },
  },
  own,
);
