#!/usr/bin/env tsx
/**
 * Runbook: is this environment what the spec says, and healthy? (the guide's /health/db,
 * /health/cache and /health/detailed)
 *   1. connect to PostgreSQL and Redis; check their major versions;
 *   2. every tuned setting equals the spec;
 *   3. the schema is at the migrations' head, with every constraint and index they make;
 *   4. write, read and delete a scratch row and a scratch key;
 *   5. Redis persistence: last BGSAVE ok, AOF on and not failing.
 */
import { runCommand } from "../lib/cli.js";
import { CliError, EXIT } from "../lib/errors.js";
import { ENVIRONMENT_FLAGS, environmentFromFlags } from "../lib/env/resolve.js";
import { formatVerifyReport, type CheckGroup } from "../lib/verify/report.js";
import { verifyEnvironment } from "../lib/verify/verify.js";

await runCommand({
  name: "verify",
  summary: "Health check: connectivity, versions, settings vs the spec, schema at head, write probes, Redis persistence.",
  usage: "[--env NAME] [--database-url URL] [--redis-url URL] [--check db|cache|detailed] [--json]",
  flags: {
    ...ENVIRONMENT_FLAGS,
    check: { type: "string", help: "which health check: db (PostgreSQL), cache (Redis) or detailed (both)", default: "detailed", choices: ["db", "cache", "detailed"] },
  },
  details: [
    "Examples:",
    "  npm run verify",
    "  npm run verify -- --env eph-0123abcd --check cache --json",
    "  PGPASSWORD=… REDISCLI_AUTH=… npm run verify -- --env staging \\",
    "      --database-url postgresql://crypto_admin@db.example:5432/crypto_prediction_db?sslmode=verify-full \\",
    "      --redis-url rediss://default@cache.example:6379/0",
    "",
  ].join("\n"),
  exitCodes: { 0: "every check ok", 1: "a problem found (even if some checks could not run)", 2: "nothing failed, but something could not be checked (server unreachable, a setting this login may not read)" },
  async run(ctx) {
    const target = environmentFromFlags(ctx.flags, ctx.log);
    const groups: CheckGroup[] = ctx.flags.check === "db" ? ["db"] : ctx.flags.check === "cache" ? ["cache"] : ["db", "cache"];
    if ((ctx.flags.check === "db" && !target.postgres) || (ctx.flags.check === "cache" && !target.redis)) {
      throw new CliError(`--check ${ctx.flags.check} needs ${ctx.flags.check === "db" ? "--database-url" : "--redis-url"} when URLs are given`, EXIT.USAGE);
    }
    ctx.progress(`verifying ${target.label}`);
    const report = await verifyEnvironment(target, target.spec, { groups });
    return { code: report.exitCode, data: report, human: formatVerifyReport(report) };
  },
});
