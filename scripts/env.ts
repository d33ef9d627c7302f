#!/usr/bin/env tsx
/**
 * Runbook: an environment's connection settings in the files the tools read: a `.pgpass` for
 * libpq (psql, pg_dump, …) or dotenv lines (PG* variables, REDISCLI_AUTH, DATABASE_URL,
 * REDIS_URL). With --out the file is written atomically with mode 0600; without it the lines go
 * to stdout (they hold passwords: redirect them, do not paste them).
 */
import { ENV_FLAG, runCommand } from "../lib/cli.js";
import { CliError, EXIT } from "../lib/errors.js";
import { dotenvText, dotenvVariables, LOGIN_ROLES, pgpassLines, writeCredentialsFile, type LoginRole } from "../lib/env/clients.js";
import { openEnvironment } from "../lib/env/environment.js";

await runCommand({
  name: "env",
  summary: "Write an environment's connection settings as a 0600 .pgpass or dotenv file (or print them).",
  usage: "--format pgpass|dotenv [--env NAME] [--as owner|app|readonly|admin] [--out FILE] [--json]",
  flags: {
    env: ENV_FLAG,
    format: { type: "string", help: "pgpass: host:port:db:user:password lines; dotenv: PG*, REDIS*, URLs", choices: ["pgpass", "dotenv"] },
    as: { type: "string", help: "role (pgpass default: owner, app and readonly; dotenv default: owner; Redis: app, or admin with --as admin)", choices: LOGIN_ROLES },
    out: { type: "string", help: "write to this file (atomically, mode 0600) instead of stdout" },
  },
  details: [
    "Examples:",
    "  npm run -s env -- --format pgpass --out ~/.pgpass && psql -h localhost -U crypto_user -d crypto_prediction_db",
    "  npm run -s env -- --format dotenv --as app --out .env.local",
    "  set -a; . ./.env.local; set +a; redis-cli --user \"$REDIS_USERNAME\" info memory",
  ].join("\n"),
  async run(ctx) {
    const format = ctx.flags.format;
    if (!format) throw new CliError("--format is required", EXIT.USAGE, "use --format pgpass or --format dotenv");
    const opened = openEnvironment(ctx.flags.env ?? "dev");
    const role = ctx.flags.as as LoginRole | undefined;
    const content = (format === "pgpass" ? pgpassLines(opened, role).join("\n") : dotenvText(dotenvVariables(opened, role ?? "owner"))) + "\n";
    if (ctx.flags.out) {
      const file = writeCredentialsFile(ctx.flags.out, content);
      const lines = content.trimEnd().split("\n").length;
      const use = format === "pgpass" ? `libpq reads it as ~/.pgpass, or with PGPASSFILE=${file}` : `load it with: set -a; . ${file}; set +a`;
      return { data: { env: opened.env, format, file, mode: "0600", lines }, human: `${opened.env}: wrote ${lines} ${format} line(s) to ${file} (mode 0600); ${use}` };
    }
    // Without --out the secrets are the output, on purpose (like env:ci's variables).
    return { data: { env: opened.env, format, content }, human: content.trimEnd(), revealSecrets: true };
  },
});
