/**
 * Item 5, the DR drill's RTO at 1M rows with point-in-time recovery (target ≤ 5 s; dev archives
 * WAL, so the drill kills the servers, deletes the data folder and recovers from the base backup
 * and the archived WAL): `npm run drill -- --rows N --json` on a scratch copy of the dev spec
 * (archive_timeout 1 s there), as an operator runs it; the RTO (disaster → verified) is the
 * drill's own measure (report.rto.seconds). `measureDrillRto` is the one function to change if
 * the drill's interface changes; it returns samples, or why nothing was measured.
 */
import { existsSync } from "node:fs";
import path from "node:path";
import { PROJECT_DIR } from "../spec/load.js";
import type { BenchContext, BenchItem } from "./harness.js";
import { failureText } from "./process.js";
import { atMost, measuredRow, skippedRow } from "./results.js";

export type DrillMeasurement = { samples: number[]; details?: Record<string, unknown> } | { notMeasured: string };

/** Seconds the application keeps writing after the backup (before the disaster: outside the RTO). */
const WRITE_SECONDS = { full: "3", quick: "2" } as const;

export async function measureDrillRto(ctx: BenchContext, rows: number): Promise<DrillMeasurement> {
  if (!existsSync(path.join(PROJECT_DIR, "scripts", "drill.ts"))) return { notMeasured: "drill not present" };
  await ctx.warmUp("drill");
  const rto: number[] = [];
  const rpo: number[] = [];
  const pgRpo: number[] = [];
  const wall: number[] = [];
  const exitCodes = new Set<number>();
  for (let i = 1; i <= ctx.plan.repetitions; i++) {
    ctx.progress(`drill ${i}/${ctx.plan.repetitions} (${rows.toLocaleString("en-US")} rows)`);
    const run = await ctx.children.script("drill", ["--env", "dev", "--rows", String(rows), "--write-seconds", WRITE_SECONDS[ctx.plan.mode], "--json"]);
    const seconds = run.json?.rto?.seconds;
    // Exit 1 with an RTO is a drill that recovered but missed an objective: still a measurement.
    if (typeof seconds !== "number") throw new Error(`drill: ${failureText(run)}`);
    exitCodes.add(run.code);
    rto.push(seconds);
    if (typeof run.json?.rpo?.seconds === "number") rpo.push(run.json.rpo.seconds);
    if (typeof run.json?.rpo?.postgres?.rpoSeconds === "number") pgRpo.push(run.json.rpo.postgres.rpoSeconds);
    wall.push(Math.round(run.seconds * 10) / 10);
  }
  return { samples: rto, details: { commandSeconds: wall, rpoSeconds: rpo, postgresRpoSeconds: pgRpo, method: "pitr", writeSeconds: Number(WRITE_SECONDS[ctx.plan.mode]), exitCodes: [...exitCodes].sort() } };
}

export const drillItem: BenchItem = {
  name: "drill",
  title: "5. DR drill",
  async run(ctx) {
    const row = { id: "drill.rto", label: `drill RTO with point-in-time recovery (kill -9 → verified), ${ctx.plan.rows.toLocaleString("en-US")} rows`, unit: "s" as const, target: atMost(5, "s") };
    const measured = await measureDrillRto(ctx, ctx.plan.rows);
    if ("notMeasured" in measured) return [skippedRow({ ...row, reason: measured.notMeasured, status: "not measured" })];
    const rpo = (measured.details?.postgresRpoSeconds ?? []) as number[];
    return [
      measuredRow({ ...row, samples: measured.samples, details: measured.details }),
      ...(rpo.length ? [measuredRow({ id: "drill.rpo.postgres", label: "drill RPO of PostgreSQL (newest acknowledged − newest recovered write; scratch archive_timeout 1 s)", unit: "s", samples: rpo, target: atMost(1, "s") })] : []),
    ];
  },
};
