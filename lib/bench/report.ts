/**
 * results.md: the table the README shows (`npm run docs` folds it into the
 * `<!-- generated:bench -->` block), and the human output of `npm run bench`.
 */
import type { BenchResults, Row } from "./results.js";
import { mdCell } from "../markdown.js";

const GIB = 1024 ** 3;

export function machineLine(results: BenchResults): string {
  const m = results.machine;
  const parts = [
    `${m.cores} cores (${m.cpuModel})`,
    `${(m.memoryBytes / GIB).toFixed(0)} GiB`,
    m.os,
    `Node ${m.node.replace(/^v/, "")}`,
    `PostgreSQL ${m.postgres ?? "?"} (embedded)`,
    `Redis ${m.redis ?? "?"}`,
    m.docker ? `Docker ${m.docker}` : "no Docker engine",
    ...(m.pgTools ? [m.pgTools] : []),
    `commands started as \`${m.launcher}\``,
  ];
  return parts.join(", ");
}

export function renderMarkdown(results: BenchResults): string {
  const m = results.machine;
  const lines = [
    `Measured by \`npm run bench\`${results.mode === "quick" ? " **--quick** (small sizes, a smoke run: not representative)" : ""} on ${results.completedAt.slice(0, 10)}: ${machineLine(results)}.`,
    `Load average (1/5/15 min) at the start of ${results.runs.length > 1 ? "each run" : "the run"}: ${results.runs.map((r) => `${r.loadAverageStart.join(" / ")}${results.runs.length > 1 ? ` (\`${r.command}\`)` : ""}`).join("; ")}; the 1-minute load at the start of each item is under its title${busy(results) ? ". The machine was shared with other work (load above its core count), so figures are pessimistic" : ""}.`,
    `Every figure is the median of ${results.repetitions === 1 ? "1 run" : `at least ${results.repetitions} runs`} (min–max beside it); ratios are measured side by side in the same run. Targets are for reading: nothing fails for slowness.`,
    "",
    "| Item | Measure | Median | Min – max | Runs | Target | Met |",
    "|---|---|---:|---|---:|---|:-:|",
  ];
  for (const item of results.items) {
    item.rows.forEach((row, i) => {
      lines.push(`| ${i === 0 ? `${item.title}<br><sub>load ${item.loadAverage1}${item.measuredAt.slice(0, 10) !== results.completedAt.slice(0, 10) ? `, ${item.measuredAt.slice(0, 10)}` : ""}</sub>` : ""} | ${mdCell(row.label)} | ${medianCell(row)} | ${rangeCell(row)} | ${row.runs || ""} | ${row.target ? mdCell(row.target.text) : ""} | ${metCell(row)} |`);
    });
  }
  const plans = results.items.flatMap((item) => item.rows.filter((r) => typeof r.details?.plan === "string").map((r) => `- ${r.label}: \`${r.details!.plan as string}\``));
  if (plans.length) lines.push("", "<details><summary>Query plans (EXPLAIN)</summary>", "", ...plans, "", "</details>");
  return lines.join("\n");
}

/** Another workload competed for the cores during some item. */
function busy(results: BenchResults): boolean {
  return results.items.some((i) => i.loadAverage1 > results.machine.cores) || results.runs.some((r) => r.loadAverageStart[0]! > results.machine.cores);
}

function medianCell(row: Row): string {
  if (row.status !== "measured") return `*${row.status}*${row.reason ? `: ${mdCell(row.reason)}` : ""}`;
  const failed = typeof row.details?.failedRuns === "number" ? ` (${row.details.failedRuns} run${row.details.failedRuns === 1 ? "" : "s"} failed)` : "";
  return `**${formatValue(row.median!, row.unit)}**${failed}`;
}

function rangeCell(row: Row): string {
  if (row.status !== "measured") return "";
  const range = `${formatValue(row.min!, row.unit, false)} – ${formatValue(row.max!, row.unit, false)}`;
  return row.p95 !== undefined ? `${range} (p95 ${formatValue(row.p95, row.unit)})` : range;
}

function metCell(row: Row): string {
  return row.met === true ? "✅" : row.met === false ? "❌" : "–";
}

/** What `npm run bench` prints for people. */
export function renderHuman(results: BenchResults, files: string[]): string {
  const lines = [`Benchmark (${results.mode}) on ${machineLine(results)}`, `load average at start ${results.machine.loadAverage.start.join(" / ")}, at end ${results.machine.loadAverage.end.join(" / ")}`, ""];
  for (const item of results.items) {
    lines.push(`${item.title} [${item.status}] (load ${item.loadAverage1}${item.measuredAt < results.startedAt ? `; kept from ${item.measuredAt}` : ""})`);
    for (const row of item.rows) lines.push(`  ${formatRowLine(row)}`);
  }
  lines.push("", `written: ${files.join(", ")}`);
  return lines.join("\n");
}

/** One line per row for the log and the human output. */
export function formatRowLine(row: Row): string {
  const label = row.label.length > 58 ? row.label.slice(0, 57) + "…" : row.label;
  if (row.status !== "measured") return `${label.padEnd(58)}  ${row.status}: ${row.reason ?? ""}`;
  const value = `${formatValue(row.median!, row.unit)}`;
  const range = `(${formatValue(row.min!, row.unit, false)}–${formatValue(row.max!, row.unit, false)}${row.p95 !== undefined ? `, p95 ${formatValue(row.p95, row.unit, false)}` : ""}, n=${row.runs})`;
  const target = row.target ? `target ${row.target.text}: ${row.met === true ? "met" : row.met === false ? "NOT met" : "?"}` : "";
  const failed = typeof row.details?.failedRuns === "number" ? `  (${row.details.failedRuns} failed runs)` : "";
  return `${label.padEnd(58)}  ${value.padStart(12)} ${range.padEnd(30)} ${target}${failed}`;
}

/** A figure with its unit, at a sensible precision. */
export function formatValue(value: number, unit: Row["unit"], withUnit = true): string {
  let text: string;
  switch (unit) {
    case "rows/s":
      text = Math.round(value).toLocaleString("en-US");
      break;
    case "%":
      text = value.toFixed(1);
      break;
    case "x":
      text = value.toFixed(2);
      break;
    case "ms":
      text = value < 10 ? value.toFixed(2) : value.toFixed(1);
      break;
    case "MB":
      text = value < 10 ? value.toFixed(2) : value.toFixed(1);
      break;
    default:
      text = value < 10 ? value.toFixed(2) : value.toFixed(1);
  }
  if (!withUnit) return text;
  return unit === "x" ? `${text}×` : unit === "%" ? `${text}%` : `${text} ${unit}`;
}
