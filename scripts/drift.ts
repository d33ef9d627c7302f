#!/usr/bin/env tsx
/**
 * Runbook: configuration drift review — is the live environment what is declared?
 *   1. PostgreSQL settings vs the spec, plus anything set by ALTER SYSTEM / ALTER DATABASE|ROLE SET;
 *   2. Redis settings vs the spec and Redis 7's defaults; the ACL users;
 *   3. the schema vs what the migrations make (in a scratch database on the same server);
 *   4. with the Pulumi CLI, the infrastructure (pulumi preview --refresh --expect-no-changes);
 *   5. --md FILE writes the review as markdown: what, expected, actual, how to fix.
 */
import path from "node:path";
import { runCommand } from "../lib/cli.js";
import { driftMarkdown, formatDriftReport, reviewDrift } from "../lib/drift/drift.js";
import { ENVIRONMENT_FLAGS, environmentFromFlags } from "../lib/env/resolve.js";
import { writeFileAtomic } from "../lib/fs.js";

await runCommand({
  name: "drift",
  summary: "Configuration drift review: live settings, schema and infrastructure vs the spec, the migrations and the Pulumi program.",
  usage: "[--env NAME] [--database-url URL] [--redis-url URL] [--md FILE] [--infra auto|yes|no] [--json]",
  flags: {
    ...ENVIRONMENT_FLAGS,
    md: { type: "string", help: "also write the review as markdown to FILE (0600)" },
    infra: { type: "string", help: "pulumi preview: auto = when the CLI is on PATH and URLs were given", default: "auto", choices: ["auto", "yes", "no"] },
  },
  details: [
    "Examples:",
    "  npm run drift",
    "  npm run drift -- --env eph-0123abcd --md drift-review.md",
    "  PGPASSWORD=… REDISCLI_AUTH=… npm run drift -- --env prod --database-url postgresql://admin@db.example/crypto_prediction_db?sslmode=verify-full --redis-url rediss://default@cache.example:6379",
    "",
  ].join("\n"),
  exitCodes: { 0: "no drift", 1: "drift found (even if some parts could not be checked)", 2: "no drift found, but some part could not be checked (unreachable server, a setting this login may not read, pulumi error)" },
  async run(ctx) {
    const target = environmentFromFlags(ctx.flags, ctx.log);
    ctx.progress(`reviewing drift of ${target.label}`);
    const report = await reviewDrift(target, target.spec, { infra: ctx.flags.infra as "auto" | "yes" | "no", log: ctx.log });
    if (ctx.flags.md) {
      const file = path.resolve(ctx.flags.md);
      writeFileAtomic(file, driftMarkdown(report) + "\n", 0o600);
      ctx.log(`review written to ${file}`);
    }
    return { code: report.exitCode, data: report, human: formatDriftReport(report) };
  },
});
