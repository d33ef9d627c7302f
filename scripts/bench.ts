#!/usr/bin/env tsx
/**
 * Runbook: measure what the issues' speed targets name, on this machine.
 *   1. startup: `up` cold and warm, `env:ci` on both engines;   2. seed load rate;
 *   3. backup/restore vs the guide's pipeline;   4. verify, drift, monitor latency;
 *   5. the DR drill's RTO;   6. query patterns vs the guide's indexes (1M and 10M rows).
 * Every figure is the median of repeated runs with min and max; every environment it makes is
 * removed at the end, on failure and on Ctrl-C. Writes bench/results.json and bench/results.md
 * (`npm run docs` folds the table into the README). Slowness never fails it.
 */
import path from "node:path";
import { runCommand } from "../lib/cli.js";
import { CliError, EXIT } from "../lib/errors.js";
import { FULL_PLAN, QUICK_PLAN, runBenchmark } from "../lib/bench/harness.js";
import { BENCH_ITEMS } from "../lib/bench/items.js";
import { renderHuman } from "../lib/bench/report.js";
import { PROJECT_DIR } from "../lib/spec/load.js";

const NAMES = BENCH_ITEMS.map((i) => i.name);

await runCommand({
  name: "bench",
  summary: "Benchmark: startup, seed rate, backup/restore vs the guide, verify/drift/monitor, drill, query plans; writes bench/results.{json,md}.",
  usage: "[--quick] [--only NAME[,NAME]] [--out DIR] [--json]",
  flags: {
    quick: { type: "boolean", help: "small sizes (20k rows, 2 runs each, no 10M table): a smoke run, not representative" },
    only: { type: "string", help: `run only these items: ${NAMES.join(", ")}` },
    out: { type: "string", help: "folder for results.json and results.md (relative: to the project)", default: "bench" },
  },
  details: [
    "Examples:",
    "  npm run bench                       # full run, 10-20 minutes",
    "  npm run bench -- --quick --out /tmp/bench",
    "  npm run bench -- --only seed,queries",
    "",
    "With --only, the other items of an earlier run of the same mode on the same machine are kept in results.json.",
  ].join("\n"),
  exitCodes: { 0: "measured (targets met or not)", 1: "a figure could not be measured, or some of its runs failed (an error, not slowness)" },
  async run(ctx) {
    const only = ctx.flags.only?.split(",").map((n) => n.trim()).filter(Boolean);
    if (ctx.flags.only !== undefined && !only?.length) throw new CliError(`--only needs item names: ${NAMES.join(", ")}`, EXIT.USAGE);
    const unknown = only?.filter((n) => !NAMES.includes(n)) ?? [];
    if (unknown.length) throw new CliError(`--only ${JSON.stringify(ctx.flags.only)}: unknown item ${unknown.join(", ")}; expected some of ${NAMES.join(", ")}`, EXIT.USAGE);
    const items = only ? BENCH_ITEMS.filter((i) => only.includes(i.name)) : BENCH_ITEMS;
    const outDir = path.resolve(PROJECT_DIR, ctx.flags.out || "bench");

    const outcome = await runBenchmark({
      items,
      order: NAMES,
      plan: ctx.flags.quick ? QUICK_PLAN : FULL_PLAN,
      outDir,
      command: ["npm run bench --", ...process.argv.slice(2)].join(" "),
      log: ctx.log,
      progress: ctx.progress,
    });
    return {
      code: outcome.errors.length ? EXIT.PROBLEM : EXIT.OK,
      data: outcome.results,
      human: renderHuman(outcome.results, outcome.files),
    };
  },
});
