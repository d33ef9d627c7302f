#!/usr/bin/env tsx
/**
 * Runbook: apply pending static RDS parameters (AWS stacks).
 *   1. read the primary and its replicas: which parameter groups are pending-reboot;
 *   2. nothing pending: done. Outside aws.maintenanceWindow without --now: say when the next
 *      window starts (exit 1: the reboot is still pending);
 *   3. reboot each pending instance and wait until it is available and in sync.
 * prod needs --yes always; --now needs --yes everywhere.
 */
import { runCommand } from "../lib/cli.js";

await runCommand({
  name: "reboot",
  summary: "Reboot RDS instances whose static parameters are pending (in the maintenance window, or --now --yes).",
  usage: "--env staging|prod [--now] [--yes] [--dry-run] [--json]",
  flags: {
    env: { type: "string", help: "the AWS stack (Pulumi.<env>.yaml with target aws)", default: "staging" },
    now: { type: "boolean", help: "reboot at once instead of only inside aws.maintenanceWindow (needs --yes)" },
    yes: { type: "boolean", help: "confirm the reboot (always needed for prod and for --now)" },
    "dry-run": { type: "boolean", help: "only say what is pending and when it would reboot" },
  },
  details: [
    "Examples:",
    "  npm run reboot -- --env staging --dry-run",
    "  npm run reboot -- --env prod --yes            # from a job scheduled inside the maintenance window",
    "  npm run reboot -- --env staging --now --yes",
    "",
    "Exit: 0 nothing pending or rebooted; 1 still pending (outside the window, or --dry-run); 2 could not run; 64 missing --yes.",
  ].join("\n"),
  async run(ctx) {
    const [{ rebootPending, describeReboot }, { specOf }, { RDSClient }] = await Promise.all([
      import("../lib/aws/reboot.js"),
      import("../lib/state/record.js"),
      import("@aws-sdk/client-rds"),
    ]);
    const spec = specOf(ctx.flags.env ?? "staging");
    if (spec.target !== "aws") {
      const { CliError, EXIT } = await import("../lib/errors.js");
      throw new CliError(`--env ${spec.env} is not an AWS stack (target ${spec.target}): local servers apply settings when they restart (npm run up)`, EXIT.USAGE);
    }
    const report = await rebootPending(spec, new RDSClient({ region: spec.aws.region }), { now: ctx.flags.now, yes: ctx.flags.yes, dryRun: ctx.flags["dry-run"], log: ctx.progress });
    return { code: report.code, data: report, human: describeReboot(report) };
  },
});
