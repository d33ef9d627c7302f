#!/usr/bin/env tsx
/** Runbook: is an environment running, on which ports, with which versions, and how much data. */
import { readdirSync } from "node:fs";
import { ENV_FLAG, runCommand } from "../lib/cli.js";
import { STATUS_PROBE_MS, statusEmbedded, type ServiceStatus, type StatusReport } from "../lib/env/embedded.js";
import { ephemeralRoot, stateRoot } from "../lib/env/paths.js";
import { humanBytes } from "../lib/spec/units.js";

await runCommand({
  name: "status",
  summary: "Show whether an environment runs, its ports, server versions and data size.",
  usage: "[--env NAME | --all] [--json]",
  flags: {
    env: ENV_FLAG,
    all: { type: "boolean", help: "every local environment, ephemeral ones included" },
  },
  async run(ctx) {
    const envs = ctx.flags.all ? localEnvironments() : [ctx.flags.env ?? "dev"];
    const reports = await Promise.all(envs.map(statusEmbedded));
    return { data: ctx.flags.all ? reports : reports[0], human: reports.map(describe).join("\n") || "no local environments" };
  },
});

function localEnvironments(): string[] {
  const list = (dir: string) => {
    try {
      return readdirSync(dir, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name);
    } catch {
      return [];
    }
  };
  return [...list(stateRoot()), ...list(ephemeralRoot())].sort();
}

function describe(r: StatusReport): string {
  if (!r.exists) return `${r.env}: not created here (npm run up -- --env ${r.env})`;
  const state = (s: ServiceStatus) => (!s.running ? "stopped" : s.answering ? "running" : `running, not answering within ${STATUS_PROBE_MS / 1000} s`);
  const line = (name: string, s: ServiceStatus) => `  ${name.padEnd(10)} ${state(s)}  127.0.0.1:${s.port}  ${s.version ?? ""}  data ${humanBytes(s.dataBytes ?? 0)}`;
  return [`${r.env} (${r.engine}${r.ephemeral ? ", ephemeral" : ""})`, line("PostgreSQL", r.postgres!), line("Redis", r.redis!)].join("\n");
}
