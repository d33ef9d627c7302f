#!/usr/bin/env tsx
/**
 * Runbook: bring an environment's data layer up on the embedded engine.
 *   1. validate the spec (Pulumi.<env>.yaml) before anything starts;
 *   2. start PostgreSQL 16 and Redis 7 on 127.0.0.1 (initdb and passwords on first run);
 *   3. apply migrations; 4. check every tuned setting against the spec.
 */
import { ENV_FLAG, runCommand } from "../lib/cli.js";
import { EXIT } from "../lib/errors.js";
import { EmbeddedEnvironment } from "../lib/engines/embedded/environment.js";
import { upSummary } from "../lib/env/report.js";
import { readRecord } from "../lib/state/record.js";

await runCommand({
  name: "up",
  summary: "Start an environment's PostgreSQL 16 + Redis 7 on the embedded engine, migrated and verified (idempotent); a stopped Docker environment's containers.",
  usage: "[--env NAME] [--ephemeral] [--show-secrets] [--json]",
  flags: {
    env: ENV_FLAG,
    ephemeral: { type: "boolean", help: "a throw-away copy of the env's spec: new id, free ports, temp state" },
    "show-secrets": { type: "boolean", help: "print connection URLs with their passwords" },
  },
  details: "Examples:\n  npm run up\n  npm run -s up -- --env ci --json\n  npm run -s up -- --ephemeral --json --show-secrets",
  async run(ctx) {
    const env = ctx.flags.env ?? "dev";
    // A Docker environment (env:ci --engine docker) stopped by `down`: start its containers again.
    if (!ctx.flags.ephemeral && readRecord(env)?.engine === "docker") {
      const { startDockerEnvironment } = await import("../lib/engines/docker/environment.js");
      const result = await startDockerEnvironment(env, ctx.log);
      const what = result.started.length ? `started ${result.started.join(", ")}` : "already up";
      return { data: { env, engine: "docker", ...result }, human: `${env}: ${what}; healthy in ${result.seconds.toFixed(1)}s (docker)${result.migrationsApplied.length ? `; migrations applied: ${result.migrationsApplied.join(", ")}` : ""}` };
    }
    let builder = new EmbeddedEnvironment(env).withLog(ctx.log);
    if (ctx.flags.ephemeral) builder = builder.withEphemeral();
    const started = await builder.start();
    const summary = upSummary(started, ctx.flags["show-secrets"]);
    const drifted = started.report.settings.filter((s) => !s.ok);
    return { code: drifted.length ? EXIT.PROBLEM : EXIT.OK, data: summary.data, human: summary.human, revealSecrets: ctx.flags["show-secrets"] };
  },
});
