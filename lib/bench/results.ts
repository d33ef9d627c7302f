/**
 * The benchmark's results document (bench/results.json): the machine it ran on, and per item the
 * rows people read, each with its samples, median/min/max, its target and whether it was met.
 * The zod schema is the contract: the writer validates before writing, the merge reads with it,
 * and test/bench/bench.test.ts checks the shape with it.
 */
import { z } from "zod";
import { round, summarise } from "./stats.js";

export const RESULTS_KIND = "crypto-prediction-infra/bench";

export const UNITS = ["s", "ms", "rows/s", "MB", "MB/s", "x", "%"] as const;
export type Unit = (typeof UNITS)[number];

/** A numeric target is judged on the median; an index target on the captured query plan. */
const targetSchema = z.discriminatedUnion("kind", [
  z.strictObject({ kind: z.literal("max"), value: z.number(), text: z.string() }),
  z.strictObject({ kind: z.literal("min"), value: z.number(), text: z.string() }),
  z.strictObject({ kind: z.literal("index"), indexes: z.array(z.string()).min(1), text: z.string() }),
]);
export type Target = z.infer<typeof targetSchema>;

export const ROW_STATUSES = ["measured", "skipped", "not measured", "error"] as const;
export type RowStatus = (typeof ROW_STATUSES)[number];

const rowSchema = z.strictObject({
  /** Stable key, e.g. `up.cold.command`. */
  id: z.string().regex(/^[a-z0-9][a-z0-9_.-]*$/),
  label: z.string(),
  unit: z.enum(UNITS),
  status: z.enum(ROW_STATUSES),
  /** Why a row has no figures (skipped, not measured, error). */
  reason: z.string().optional(),
  samples: z.array(z.number()),
  runs: z.number().int().min(0),
  median: z.number().optional(),
  min: z.number().optional(),
  max: z.number().optional(),
  p95: z.number().optional(),
  target: targetSchema.optional(),
  /** Target met (numeric: by the median); null when there is no target or no figure. */
  met: z.boolean().nullable(),
  details: z.record(z.string(), z.unknown()).optional(),
});
export type Row = z.infer<typeof rowSchema>;

export const ITEM_STATUSES = ["measured", "partial", "skipped", "not measured", "error"] as const;

const itemSchema = z.strictObject({
  name: z.string(),
  title: z.string(),
  status: z.enum(ITEM_STATUSES),
  /** Why nothing (or not everything) was measured. */
  reason: z.string().optional(),
  measuredAt: z.iso.datetime(),
  /** 1-minute load average when the item started: other work on the machine skews figures. */
  loadAverage1: z.number(),
  seconds: z.number().min(0),
  rows: z.array(rowSchema),
  notes: z.array(z.string()).optional(),
});
export type ItemResult = z.infer<typeof itemSchema>;

const machineSchema = z.strictObject({
  os: z.string(),
  cpuModel: z.string(),
  cores: z.number().int().min(1),
  memoryBytes: z.number().int().min(0),
  /** 1, 5 and 15-minute load averages when the run started and ended. */
  loadAverage: z.strictObject({ start: z.array(z.number()).length(3), end: z.array(z.number()).length(3) }),
  node: z.string(),
  postgres: z.string().nullable(),
  redis: z.string().nullable(),
  /** The engine's version; null when no engine answered. */
  docker: z.string().nullable(),
  /** pg_dump/psql used by the backup item (where from), when it ran. */
  pgTools: z.string().nullable(),
  /** How the commands were started (what `npm run NAME` runs). */
  launcher: z.string(),
});
export type Machine = z.infer<typeof machineSchema>;

const runSchema = z.strictObject({
  command: z.string(),
  startedAt: z.iso.datetime(),
  completedAt: z.iso.datetime(),
  /** 1, 5 and 15-minute load averages when the run started. */
  loadAverageStart: z.array(z.number()).length(3),
});
export type RunRecord = z.infer<typeof runSchema>;

export const resultsSchema = z.strictObject({
  kind: z.literal(RESULTS_KIND),
  version: z.literal(1),
  mode: z.enum(["full", "quick"]),
  startedAt: z.iso.datetime(),
  completedAt: z.iso.datetime(),
  seconds: z.number().min(0),
  /** The command line of the latest run (items from an earlier run keep their own measuredAt). */
  command: z.string(),
  machine: machineSchema,
  /** Minimum repetitions per figure in this mode. */
  repetitions: z.number().int().min(1),
  /** The runs whose items are in this file (several after `--only`), oldest first. */
  runs: z.array(runSchema).min(1),
  items: z.array(itemSchema),
});
export type BenchResults = z.infer<typeof resultsSchema>;

// ---- row builders ----------------------------------------------------------------------------

export interface MeasuredRowInput {
  id: string;
  label: string;
  unit: Unit;
  samples: number[];
  target?: Target;
  /** Also report p95 (latency rows). */
  p95?: boolean;
  /** For index targets: whether the plan used an expected index. */
  met?: boolean;
  details?: Record<string, unknown>;
}

export function measuredRow(input: MeasuredRowInput): Row {
  if (!input.samples.length) return skippedRow({ id: input.id, label: input.label, unit: input.unit, target: input.target, reason: "no samples", status: "error" });
  const summary = summarise(input.samples, { p95: input.p95 });
  const median = round(summary.median);
  return {
    id: input.id,
    label: input.label,
    unit: input.unit,
    status: "measured",
    samples: input.samples.map(round),
    runs: summary.runs,
    median,
    min: round(summary.min),
    max: round(summary.max),
    ...(summary.p95 !== undefined ? { p95: round(summary.p95) } : {}),
    ...(input.target ? { target: input.target } : {}),
    met: judge(input.target, median, input.met),
    ...(input.details ? { details: input.details } : {}),
  };
}

export function skippedRow(input: { id: string; label: string; unit: Unit; reason: string; target?: Target; status?: Exclude<RowStatus, "measured">; details?: Record<string, unknown> }): Row {
  return {
    id: input.id,
    label: input.label,
    unit: input.unit,
    status: input.status ?? "skipped",
    reason: input.reason,
    samples: [],
    runs: 0,
    ...(input.target ? { target: input.target } : {}),
    met: null,
    ...(input.details ? { details: input.details } : {}),
  };
}

function judge(target: Target | undefined, median: number, met: boolean | undefined): boolean | null {
  if (!target) return null;
  switch (target.kind) {
    case "max":
      return median <= target.value;
    case "min":
      return median >= target.value;
    case "index":
      return met ?? null;
  }
}

export const atMost = (value: number, unit: string): Target => ({ kind: "max", value, text: `≤ ${value}${unit === "x" ? "×" : ` ${unit}`}`.replace(" %", "%") });
export const atLeast = (value: number, unit: string): Target => ({ kind: "min", value, text: `≥ ${value.toLocaleString("en-US")}${unit === "x" ? "×" : ` ${unit}`}` });
export const usesIndex = (indexes: string[]): Target => ({ kind: "index", indexes, text: `index scan on ${indexes.join(" or ")}` });

/** An item's status from its rows. */
export function itemStatus(rows: Row[]): ItemResult["status"] {
  if (!rows.length) return "error";
  const measured = rows.filter((r) => r.status === "measured").length;
  if (measured === rows.length) return "measured";
  if (measured > 0) return "partial";
  if (rows.some((r) => r.status === "error")) return "error";
  return rows.every((r) => r.status === "not measured") ? "not measured" : "skipped";
}
