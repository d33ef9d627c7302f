/**
 * Item 4, verify, drift and monitor latency on a healthy environment (the seeded fixture): each
 * as the user runs it (`tsx scripts/NAME.ts --env ID --json`) and its function in-process (target
 * resolution included), so the command start-up cost shows. monitor's figure includes its
 * sampling interval (the default 1 s).
 */
import { existsSync } from "node:fs";
import path from "node:path";
import { PROJECT_DIR } from "../spec/load.js";
import type { BenchContext, BenchItem } from "./harness.js";
import { failureText } from "./process.js";
import { atMost, measuredRow, skippedRow, type Row } from "./results.js";

interface Operation {
  name: "verify" | "drift" | "monitor";
  /** What the row says it measures. */
  what: string;
  targetSeconds: number;
  args: string[];
  /** The command's function, in this process; returns its exit code. */
  inProcess(env: string): Promise<number>;
}

const OPERATIONS: Operation[] = [
  {
    name: "verify",
    what: "verify (health: db + cache)",
    targetSeconds: 1,
    args: [],
    async inProcess(env) {
      const { openEnvironment } = await import("../env/environment.js");
      const { verifyEnvironment } = await import("../verify/verify.js");
      const target = openEnvironment(env);
      return (await verifyEnvironment(target, target.spec, { groups: ["db", "cache"] })).exitCode;
    },
  },
  {
    name: "drift",
    what: "drift (settings, ACL, schema vs migrations)",
    targetSeconds: 1,
    args: [],
    async inProcess(env) {
      const { openEnvironment } = await import("../env/environment.js");
      const { reviewDrift } = await import("../drift/drift.js");
      const target = openEnvironment(env);
      return (await reviewDrift(target, target.spec, { infra: "auto" })).exitCode;
    },
  },
  {
    name: "monitor",
    what: "monitor (incl. its 1 s sampling interval)",
    targetSeconds: 2,
    args: ["--interval", "1"],
    async inProcess(env) {
      const { openEnvironment } = await import("../env/environment.js");
      const { monitorEnvironment } = await import("../monitor/monitor.js");
      const target = openEnvironment(env);
      return (await monitorEnvironment(target, target.spec, { intervalSeconds: 1 })).exitCode;
    },
  },
];

export const operationsItem: BenchItem = {
  name: "operations",
  title: "4. verify / drift / monitor",
  async run(ctx) {
    const env = await ctx.seeded(ctx.plan.rows);
    const rows: Row[] = [];
    for (const op of OPERATIONS) rows.push(...(await measureOperation(ctx, op, env.env)));
    return rows;
  },
};

async function measureOperation(ctx: BenchContext, op: Operation, env: string): Promise<Row[]> {
  const ids = { command: `${op.name}.command`, inProcess: `${op.name}.in-process` };
  const labels = { command: `${op.what}: command wall time`, inProcess: `${op.name}: in-process` };
  const target = atMost(op.targetSeconds, "s");
  if (!existsSync(path.join(PROJECT_DIR, "scripts", `${op.name}.ts`))) {
    const reason = `not measured: scripts/${op.name}.ts not present`;
    return [skippedRow({ id: ids.command, label: labels.command, unit: "s", target, reason, status: "not measured" }), skippedRow({ id: ids.inProcess, label: labels.inProcess, unit: "s", target, reason, status: "not measured" })];
  }
  const args = ["--env", env, "--json", ...op.args];
  const exitCodes = new Set<number>();
  if (ctx.plan.warmUps) {
    // Untimed: tsx's compile cache, first connections, module loading in this process.
    exitCodes.add(await op.inProcess(env));
    await ctx.warmUp(op.name);
  }
  const command: number[] = [];
  const inProcess: number[] = [];
  for (let i = 1; i <= ctx.plan.repetitions; i++) {
    ctx.progress(`${op.name} ${i}/${ctx.plan.repetitions}`);
    const run = await ctx.children.script(op.name, args);
    if (run.code >= 2) throw new Error(`${op.name} could not run on a healthy environment: ${failureText(run)}`);
    exitCodes.add(run.code);
    command.push(run.seconds);
    const started = performance.now();
    exitCodes.add(await op.inProcess(env));
    inProcess.push((performance.now() - started) / 1000);
  }
  // Exit 1 means it found something on the fresh environment: still a latency, but say so.
  const details = { exitCodes: [...exitCodes].sort() };
  return [
    measuredRow({ id: ids.command, label: labels.command, unit: "s", samples: command, target, details }),
    measuredRow({ id: ids.inProcess, label: labels.inProcess, unit: "s", samples: inProcess, target }),
  ];
}
