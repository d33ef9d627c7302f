#!/usr/bin/env tsx
/**
 * Runbook: a throw-away environment for a CI job.
 *   1. start PostgreSQL 16 + Redis 7 (embedded processes or Docker containers) with unique
 *      names and free ports, from the ci stack's spec;
 *   2. apply migrations, seed when asked;
 *   3. print DATABASE_URL, REDIS_URL and their parts (dotenv, json or github format).
 * `--down ID` removes everything it made.
 */
import { appendFileSync } from "node:fs";
import { runCommand } from "../lib/cli.js";
import { CliError, EXIT } from "../lib/errors.js";
import { connectionVariables, toDotenv, toGithub } from "../lib/ci-env/variables.js";
import { startCiEnvironment, removeCiEnvironment } from "../lib/ci-env/environment.js";

await runCommand({
  name: "env:ci",
  summary: "Start an isolated throw-away environment for CI and print its connection variables; --down ID removes it.",
  usage: "[--engine embedded|docker] [--base ci] [--seed] [--format dotenv|json|github] | --down ID",
  flags: {
    engine: { type: "string", help: "embedded processes or Docker containers", choices: ["embedded", "docker"], default: "embedded" },
    base: { type: "string", help: "stack whose spec to copy", default: "ci" },
    seed: { type: "boolean", help: "load the sample data (npm run seed's defaults)" },
    format: { type: "string", help: "how to print the variables", choices: ["dotenv", "json", "github"], default: "dotenv" },
    down: { type: "string", help: "remove the environment with this id (containers, volumes, network, state)" },
  },
  details:
    "Examples:\n  eval \"$(npm run -s env:ci | sed 's/^/export /')\"   # dotenv lines, exported\n  npm run -s env:ci -- --engine docker --seed --format json\n  npm run -s env:ci -- --format github     # masks secrets, appends to $GITHUB_ENV\n  npm run env:ci -- --down eph-0123456789",
  async run(ctx) {
    if (ctx.flags.down !== undefined) {
      if (!ctx.flags.down) throw new CliError("--down needs the environment's id (CPI_ENV_ID)", EXIT.USAGE);
      const removed = await removeCiEnvironment(ctx.flags.down, ctx.log);
      return { data: removed, human: `${removed.id}: removed ${removed.removed.join(", ") || "nothing (already gone)"}` };
    }
    const started = await startCiEnvironment({ engine: ctx.flags.engine as "embedded" | "docker", baseEnv: ctx.flags.base ?? "ci", seed: ctx.flags.seed, log: ctx.log });
    const vars = connectionVariables(started.id, started.engine, started.connections);
    const format = ctx.json ? "json" : ctx.flags.format;
    if (format === "github") {
      const { mask, envFile } = toGithub(vars, started.secrets);
      if (process.env.GITHUB_ENV) appendFileSync(process.env.GITHUB_ENV, envFile + "\n", { mode: 0o600 });
      return { data: vars, human: process.env.GITHUB_ENV ? mask : `${mask}\n${envFile}`, revealSecrets: true };
    }
    return { data: { ...vars, seconds: started.seconds }, human: format === "json" ? JSON.stringify(vars, null, 2) : toDotenv(vars), revealSecrets: true };
  },
});
