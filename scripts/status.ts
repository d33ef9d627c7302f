#!/usr/bin/env tsx
/**
 * Runbook: is an environment running, on which ports, with which versions, and how much data.
 * Embedded environments by their pid files, Docker ones by their containers (found by label).
 */
import { ENV_FLAG, runCommand } from "../lib/cli.js";
import { CliError, EXIT } from "../lib/errors.js";
import { STATUS_PROBE_MS, type ServiceStatus, type StatusReport } from "../lib/engines/embedded/environment.js";
import { environmentStatus, localEnvironmentNames } from "../lib/env/lifecycle.js";
import { isEphemeralId } from "../lib/state/paths.js";
import { humanBytes } from "../lib/spec/units.js";

await runCommand({
  name: "status",
  summary: "Show whether an environment runs (embedded or Docker), its ports, server versions and data size.",
  usage: "[--env NAME | --all] [--json]",
  flags: {
    env: ENV_FLAG,
    all: { type: "boolean", help: "every local environment, ephemeral and Docker ones included" },
  },
  details: "Exit codes here: 0 reported (running or not), 2 an environment's state could not be read (corrupt, not readable by this user, Docker engine not answering).",
  async run(ctx) {
    if (!ctx.flags.all) {
      const report = await environmentStatus(ctx.flags.env ?? "dev");
      if (report.unreadable) throw new CliError(report.problem!, EXIT.ERROR, report.hint);
      return { data: report, human: describe(report) };
    }
    const { names, problems } = await localEnvironmentNames();
    const reports = await Promise.all(
      names.map((env) =>
        environmentStatus(env).catch((error: Error): StatusReport => ({ env, exists: true, problem: error.message, hint: (error as CliError).hint, unreadable: true })),
      ),
    );
    // A state root this user cannot read is one entry more (the JSON stays one array of reports).
    const all: StatusReport[] = [...problems.map((p): StatusReport => ({ env: p.dir, exists: false, problem: p.problem, hint: p.hint, unreadable: true })), ...reports];
    const human = all.map(describe).join("\n") || "no local environments";
    return { code: all.some((r) => r.unreadable) ? EXIT.ERROR : EXIT.OK, data: all, human };
  },
});

function describe(r: StatusReport): string {
  const trouble = r.problem ? [`  problem: ${r.problem}`, ...(r.hint ? [`  hint: ${r.hint}`] : [])] : [];
  if (!r.exists) {
    if (r.problem) return [`${r.env}: state not visible here`, ...trouble].join("\n");
    return isEphemeralId(r.env) ? `${r.env}: does not exist (removed, or never made)` : `${r.env}: not created here (npm run up -- --env ${r.env})`;
  }
  if (!r.postgres || !r.redis) return [`${r.env}${r.engine ? ` (${r.engine})` : ""}`, ...trouble].join("\n");
  const state = (s: ServiceStatus) =>
    (!s.running ? (s.state && s.state !== "exited" && s.state !== "created" ? s.state : "stopped") : s.answering ? "running" : `running, not answering within ${STATUS_PROBE_MS / 1000} s`) + (s.health ? ` (${s.health})` : "");
  const line = (name: string, s: ServiceStatus) =>
    `  ${name.padEnd(10)} ${state(s)}  127.0.0.1:${s.port}  ${s.version ?? ""}  data ${s.dataBytes === undefined ? "unknown" : humanBytes(s.dataBytes)}${s.container ? `  container ${s.container}` : ""}`;
  return [`${r.env} (${r.engine}${r.ephemeral ? ", ephemeral" : ""})`, line("PostgreSQL", r.postgres), line("Redis", r.redis), ...trouble].join("\n");
}
