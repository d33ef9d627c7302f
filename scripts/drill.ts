#!/usr/bin/env tsx
/**
 * Runbook: the guide's Disaster Recovery Plan, tested ("test restore procedures monthly",
 * "document RTO/RPO") in one timed run that a scheduler can start and a compliance file can hold.
 *   1. prepare: a scratch copy of the environment's spec (or, --in-place --yes, the environment
 *      itself, under its lock); seed rows; a marker row and key;
 *   2. back up while the application keeps writing: a base backup (PITR, where the spec archives
 *      WAL; the scratch copy archives every second) or npm run backup's dump (--method logical);
 *   3. keep writing for a bounded time: the writes the backup cannot hold (RPO exposure);
 *   4. disaster: PITR: kill -9 of every server process and the data folders deleted (no last
 *      flush); logical: stop the servers, delete their data;   5. recreate from the spec (PITR:
 *      nothing to recreate, the archive and configuration survive);
 *   6. restore: PITR: recover to the latest from the base backup and the archived WAL (restore
 *      --to latest); logical: restore the newest backup;   7. verify (npm run verify's checks) and compare the data with
 *      the backup's manifest.
 * RTO (4 → 7) and RPO (newest acknowledged vs newest restored write) are checked against
 * dr.rtoSeconds / dr.rpoSeconds. Exit 0 pass, 1 fail, 2 could not run. AWS: --plan prints the steps.
 */
import { existsSync, statSync } from "node:fs";
import path from "node:path";
import { decimalNumberIn } from "../lib/input.js";
import { interceptTermination } from "../lib/signals.js";
import { ENV_FLAG, runCommand } from "../lib/cli.js";
import { CliError, EXIT } from "../lib/errors.js";
import { awsDrillPlan, DEFAULT_SCRATCH_ROWS, DEFAULT_WRITE_SECONDS, formatAwsPlanMarkdown, formatDrillMarkdown, formatDrillText, runDrill } from "../lib/drill/index.js";
import type { DrillEngine, DrillMethod } from "../lib/drill/index.js";
import type { DumpFormat } from "../lib/backup/postgres-dump.js";
import { specOf } from "../lib/state/record.js";
import { writeFileAtomic } from "../lib/fs.js";
import { MAX_ROWS } from "../lib/db/seed/index.js";

await runCommand({
  name: "drill",
  summary: "Disaster-recovery drill: back up, destroy, recreate, restore, verify; measures RTO and RPO against the spec's dr objectives.",
  usage: "[--env NAME] [--rows N] [--engine embedded|docker] [--keep] [--report FILE.md] [--json] | --env NAME --in-place --yes | --env AWS_ENV --plan",
  flags: {
    env: ENV_FLAG,
    rows: { type: "string", help: `market_data rows to seed first (default ${DEFAULT_SCRATCH_ROWS.toLocaleString("en-US")} on a scratch copy, 0 in place)` },
    engine: { type: "string", help: "engine of the scratch copy (default embedded)", choices: ["embedded", "docker"] },
    method: { type: "string", help: "pitr: base backup + archived WAL, recovered to the latest (default where the spec archives WAL, embedded); logical: the dump of npm run backup --format", choices: ["pitr", "logical"] },
    format: { type: "string", help: "logical drill: backup format, as npm run backup --format (default sql)", choices: ["sql", "custom"] },
    "write-seconds": { type: "string", help: `how long the application keeps writing after the backup (default ${DEFAULT_WRITE_SECONDS})` },
    keep: { type: "boolean", help: "leave the scratch environment (and its backup) up; prints how to remove it" },
    report: { type: "string", help: "also write the report as markdown to this file (atomically, 0600)" },
    "in-place": { type: "boolean", help: "drill the environment itself: its data is destroyed and restored (needs --yes)" },
    yes: { type: "boolean", help: "confirm --in-place" },
    plan: { type: "boolean", help: "AWS environments: print the drill's steps (snapshot → new instance → verify) with the spec's identifiers" },
  },
  details: [
    "By default the drill runs on a scratch copy of the environment's spec (ephemeral, free ports), removed at the end.",
    "Examples:",
    "  npm run drill -- --env dev --report drills/$(date +%F).md",
    "  npm run drill -- --env ci --engine docker --rows 1000000 --json   # Docker: the logical drill",
    "  npm run drill -- --env dev --method logical --format custom",
    "  npm run drill -- --env dev --keep                   # inspect the recovered copy afterwards",
    "  npm run drill -- --env dev --in-place --yes         # destroys and restores dev itself (under its lock)",
    "  npm run drill -- --env staging --plan               # AWS: the steps, not run",
  ].join("\n"),
  exitCodes: { 0: "pass", 1: "the recovery failed or missed dr.rtoSeconds/dr.rpoSeconds", 2: "the drill could not run up to the disaster" },
  async run(ctx) {
    const env = ctx.flags.env ?? "dev";
    const reportFile = ctx.flags.report ? path.resolve(ctx.flags.report) : undefined;
    if (reportFile && existsSync(reportFile) && statSync(reportFile).isDirectory()) throw new CliError(`--report ${ctx.flags.report}: is a folder; give a file name, e.g. drill.md`, EXIT.USAGE);

    if (ctx.flags.plan) {
      const others: string[] = [...(["rows", "engine", "write-seconds"] as const).filter((f) => ctx.flags[f] !== undefined), ...(["keep", "in-place", "yes"] as const).filter((f) => ctx.flags[f])];
      if (others.length) throw new CliError(`--plan prints the AWS steps; --${others.join(", --")} do not apply to it`, EXIT.USAGE);
      const spec = specOf(env);
      if (spec.target !== "aws") throw new CliError(`--plan: environment '${env}' is not on AWS (spec.target ${spec.target}); run its drill: npm run drill -- --env ${env}`, EXIT.USAGE);
      const plan = awsDrillPlan(spec);
      const markdown = formatAwsPlanMarkdown(plan);
      if (reportFile) writeFileAtomic(reportFile, markdown, 0o600);
      return { data: plan, human: markdown };
    }

    const rows = ctx.flags.rows === undefined ? undefined : ctx.intFlag("rows", 0, 0, MAX_ROWS);
    let writeSeconds: number | undefined;
    if (ctx.flags["write-seconds"] !== undefined) {
      writeSeconds = decimalNumberIn("--write-seconds", ctx.flags["write-seconds"], 0, 600, "seconds");
    }

    // Ctrl-C / SIGTERM: stop at the next phase and clean up (a second one exits through lib/signals.ts's clean-ups).
    const abort = new AbortController();
    interceptTermination((signal) => {
      ctx.log(`drill: ${signal}: stopping after the current phase and cleaning up (again to exit now)`);
      abort.abort();
    });

    const report = await runDrill({
      env,
      engine: ctx.flags.engine as DrillEngine | undefined,
      inPlace: ctx.flags["in-place"],
      yes: ctx.flags.yes,
      rows,
      method: ctx.flags.method as DrillMethod | undefined,
      format: ctx.flags.format as DumpFormat | undefined,
      writeSeconds,
      keep: ctx.flags.keep,
      log: ctx.log,
      progress: ctx.progress,
      signal: abort.signal,
    });
    if (reportFile) writeFileAtomic(reportFile, formatDrillMarkdown(report), 0o600);
    return {
      code: report.exitCode,
      data: report,
      human: formatDrillText(report) + (reportFile ? `\n  report: ${path.relative(process.cwd(), reportFile) || reportFile}` : ""),
    };
  },
});
