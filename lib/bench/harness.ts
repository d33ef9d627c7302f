/**
 * The benchmark harness: runs the chosen items in order, each a function returning rows of
 * samples; keeps every environment it makes in a private temp folder and removes them all at the
 * end, on failure and on Ctrl-C; writes results.json and results.md atomically.
 *
 * Isolation: the run points $TMPDIR at its own folder (mode 0711: the servers' account must enter
 * it). Ephemeral environments live under $TMPDIR, so every one this run or its child commands
 * made is found there and removed, even one whose id a killed child never printed.
 */
import { interceptTermination } from "../signals.js";
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { withPg } from "../db/clients.js";
import { seedMarketData } from "../db/seed/index.js";
import { downEmbedded, EmbeddedEnvironment, type StartedEmbeddedEnvironment } from "../engines/embedded/environment.js";
import { processAlive } from "../state/processes.js";
import { readRecord } from "../state/record.js";
import { ephemeralRoot, isEphemeralId } from "../state/paths.js";
import { writeFileAtomic } from "../fs.js";
import { describeMachine, loadAverage } from "./machine.js";
import { ChildProcesses } from "./process.js";
import { formatRowLine, renderMarkdown } from "./report.js";
import { itemStatus, RESULTS_KIND, resultsSchema, skippedRow, type BenchResults, type ItemResult, type Machine, type Row } from "./results.js";

type Log = (message: string) => void;

/** Sizes and repetitions of a run. */
export interface BenchPlan {
  mode: "full" | "quick";
  /** Repetitions of every timed figure (at least 5 in a full run). */
  repetitions: number;
  /** market_data rows of the seed, backup and query items (1M; quick: 20k). */
  rows: number;
  /** The query item's large table (10M); undefined: not measured (quick). */
  largeRows?: number;
  /** Executions per query for its p50/p95. */
  queryExecutions: number;
  /** Untimed first runs (tsx compile cache, first connections) before the timed ones. */
  warmUps: boolean;
  /** A child command that runs longer is killed and its row reports the failure. */
  commandTimeoutMs: number;
}

export const FULL_PLAN: BenchPlan = { mode: "full", repetitions: 5, rows: 1_000_000, largeRows: 10_000_000, queryExecutions: 50, warmUps: true, commandTimeoutMs: 15 * 60_000 };
/** A smoke run: every code path, small and few (its figures mean nothing). */
export const QUICK_PLAN: BenchPlan = { mode: "quick", repetitions: 2, rows: 20_000, queryExecutions: 10, warmUps: false, commandTimeoutMs: 3 * 60_000 };

/** What an item gets. */
export interface BenchContext {
  plan: BenchPlan;
  children: ChildProcesses;
  machine: Machine;
  /** The run's private folder (also $TMPDIR). */
  workDir: string;
  log: Log;
  progress: Log;
  /** An untimed run of a command (`--help`: tsx's compile cache) before timing it; none in --quick. */
  warmUp(script: string): Promise<void>;
  /** Registers a cleanup step run at the end (or on interrupt); returns a function that runs it now. */
  defer(label: string, step: () => Promise<unknown>): () => Promise<void>;
  /** A new ephemeral embedded environment (dev spec), destroyed at the end at the latest. */
  /** An ephemeral copy of dev's spec; `specOverrides` on top (e.g. archiving off). */
  embedded(label: string, specOverrides?: Record<string, unknown>): Promise<{ env: StartedEmbeddedEnvironment; destroy: () => Promise<void> }>;
  /** A shared environment holding `rows` seeded market_data rows; callers only read from it. */
  seeded(rows: number): Promise<StartedEmbeddedEnvironment>;
}

export interface BenchItem {
  name: string;
  title: string;
  run(ctx: BenchContext): Promise<Row[]>;
}

export interface RunOptions {
  items: BenchItem[];
  /** Every item's name in the results' order (lib/bench/items.ts); kept items of `--only` runs sort by it. */
  order: string[];
  plan: BenchPlan;
  /** Where results.json and results.md go. */
  outDir: string;
  command: string;
  log: Log;
  progress: Log;
}

export interface RunOutcome {
  results: BenchResults;
  /** Rows that failed to measure, or had runs that failed (not slowness: slowness never fails the run). */
  errors: Row[];
  files: string[];
}

/** Runs the items, cleans up, writes the results. */
export async function runBenchmark(options: RunOptions): Promise<RunOutcome> {
  const startedAt = new Date();
  await sweepAbandonedRuns(options.log);
  const workDir = mkdtempSync(path.join(os.tmpdir(), WORK_DIR_PREFIX));
  chmodSync(workDir, 0o711);
  writeFileSync(path.join(workDir, PID_FILE), String(process.pid), { mode: 0o600 });
  const previousTmp = process.env.TMPDIR;
  process.env.TMPDIR = workDir;
  const children = new ChildProcesses(options.plan.commandTimeoutMs);
  const cleanups = new Map<number, { label: string; step: () => Promise<unknown> }>();
  let nextCleanup = 0;
  const runCleanup = async (id: number) => {
    const entry = cleanups.get(id);
    if (!entry) return;
    cleanups.delete(id);
    try {
      await entry.step();
    } catch (error) {
      options.log(`cleanup: ${entry.label} failed: ${(error as Error).message}`);
    }
  };
  // Once only: the interrupt handler and the normal end may both ask for it.
  let cleaning: Promise<void> | undefined;
  const cleanupAll = () =>
    (cleaning ??= (async () => {
      await children.stopAll();
      for (const id of [...cleanups.keys()].reverse()) await runCleanup(id);
      await sweepEnvironments(ephemeralRoot(), options.log);
    })());

  // Ctrl-C / kill: stop children, remove every environment, then exit (130/143).
  let interrupted = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupted) return;
    interrupted = true;
    options.log(`\n${signal}: stopping and removing everything this run made…`);
    void cleanupAll()
      .catch(() => undefined)
      .finally(() => {
        removeWorkDir(workDir);
        process.exit(signal === "SIGINT" ? 130 : 143);
      });
  };
  const releaseSignals = interceptTermination(onSignal);

  const fixtures = new Map<number, Promise<StartedEmbeddedEnvironment>>();
  const machine = await describeMachine();
  const ctx: BenchContext = {
    plan: options.plan,
    children,
    machine,
    workDir,
    log: options.log,
    progress: options.progress,
    async warmUp(script) {
      if (options.plan.warmUps) await children.script(script, ["--help"]);
    },
    defer(label, step) {
      const id = nextCleanup++;
      cleanups.set(id, { label, step });
      return () => runCleanup(id);
    },
    async embedded(label, specOverrides = {}) {
      if (interrupted) throw new Error("the benchmark was interrupted");
      options.progress(`${label}: starting an ephemeral environment`);
      const env = await new EmbeddedEnvironment("dev").withEphemeral().withSpecOverrides(specOverrides).start();
      const destroy = ctx.defer(`destroy ${env.env} (${label})`, () => env.destroy());
      return { env, destroy };
    },
    seeded(rows) {
      let fixture = fixtures.get(rows);
      if (!fixture) {
        fixture = (async () => {
          const { env } = await ctx.embedded(`fixture ${rows.toLocaleString("en-US")} rows`);
          await withPg(env.connections.postgresConfig("owner"), (client) =>
            seedMarketData(client, { rows, onProgress: throttled((p) => options.progress(`seeding ${p.rows.toLocaleString("en-US")}/${p.totalRows.toLocaleString("en-US")} rows (${p.seconds.toFixed(0)} s)`)) }),
          );
          return env;
        })();
        fixtures.set(rows, fixture);
      }
      return fixture;
    },
  };

  const items: ItemResult[] = [];
  try {
    for (const item of options.items) {
      if (interrupted) break;
      const started = Date.now();
      const load = loadAverage()[0]!;
      options.log(`== ${item.title} (load average ${load})`);
      let rows: Row[];
      try {
        rows = await item.run(ctx);
      } catch (error) {
        if (interrupted) throw error;
        const message = (error as Error).message.split("\n")[0] ?? String(error);
        options.log(`   ${item.name}: error: ${message}`);
        rows = [skippedRow({ id: `${item.name}.error`, label: `${item.title}: could not run`, unit: "s", reason: message, status: "error" })];
      }
      const result: ItemResult = {
        name: item.name,
        title: item.title,
        status: itemStatus(rows),
        measuredAt: new Date(started).toISOString(),
        loadAverage1: load,
        seconds: Math.round((Date.now() - started) / 100) / 10,
        rows,
      };
      if (result.status !== "measured") {
        const reasons = [...new Set(rows.filter((r) => r.reason).map((r) => r.reason!))];
        if (reasons.length) result.reason = reasons.join("; ");
      }
      items.push(result);
      for (const row of rows) options.log(`   ${formatRowLine(row)}`);
    }
  } finally {
    options.progress("removing the environments this run made");
    await cleanupAll();
    releaseSignals();
    if (previousTmp === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = previousTmp;
    removeWorkDir(workDir);
  }
  // Interrupted: the signal handler exits (130/143) once cleanup is done; write no results.
  if (interrupted) await new Promise<never>(() => undefined);

  machine.loadAverage.end = loadAverage();
  const completedAt = new Date();
  const current: BenchResults = {
    kind: RESULTS_KIND,
    version: 1,
    mode: options.plan.mode,
    startedAt: startedAt.toISOString(),
    completedAt: completedAt.toISOString(),
    seconds: Math.round((completedAt.getTime() - startedAt.getTime()) / 100) / 10,
    command: options.command,
    machine,
    repetitions: options.plan.repetitions,
    runs: [{ command: options.command, startedAt: startedAt.toISOString(), completedAt: completedAt.toISOString(), loadAverageStart: machine.loadAverage.start }],
    items,
  };
  const resultsFile = path.join(options.outDir, "results.json");
  const results = resultsSchema.parse(mergeResults(readPrevious(resultsFile), current, options.order));
  writeFileAtomic(resultsFile, JSON.stringify(results, null, 2) + "\n", 0o644);
  const markdownFile = path.join(options.outDir, "results.md");
  writeFileAtomic(markdownFile, renderMarkdown(results) + "\n", 0o644);
  const errors = items.flatMap((i) => i.rows.filter((r) => r.status === "error" || typeof r.details?.failedRuns === "number"));
  return { results, errors, files: [resultsFile, markdownFile] };
}

/**
 * Items of an earlier run are kept when this run measured only some (`--only`), provided it ran
 * in the same mode on the same hardware; each item keeps its own date and load average.
 */
export function mergeResults(previous: BenchResults | undefined, current: BenchResults, itemOrder: string[]): BenchResults {
  if (!previous || previous.mode !== current.mode) return current;
  // MemTotal of one kind of machine varies by a few hundred kB between boots (kernel reservations).
  const same = (a: Machine, b: Machine) => a.cores === b.cores && Math.abs(a.memoryBytes - b.memoryBytes) <= 0.01 * b.memoryBytes && a.cpuModel === b.cpuModel;
  if (!same(previous.machine, current.machine)) return current;
  const ran = new Set(current.items.map((i) => i.name));
  const kept = previous.items.filter((i) => !ran.has(i.name));
  if (!kept.length) return current;
  const order = (name: string) => (itemOrder.includes(name) ? itemOrder.indexOf(name) : itemOrder.length);
  const items = [...kept, ...current.items].sort((a, b) => order(a.name) - order(b.name));
  // The earlier runs that still contribute an item.
  const runs = previous.runs.filter((run) => kept.some((item) => item.measuredAt >= run.startedAt && item.measuredAt <= run.completedAt));
  return { ...current, items, runs: [...runs, ...current.runs], machine: { ...current.machine, pgTools: current.machine.pgTools ?? previous.machine.pgTools } };
}


function readPrevious(file: string): BenchResults | undefined {
  if (!existsSync(file)) return undefined;
  try {
    const parsed = resultsSchema.safeParse(JSON.parse(readFileSync(file, "utf8")));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

const WORK_DIR_PREFIX = "cpi-bench-";
const WORK_DIR = /^cpi-bench-[A-Za-z0-9]{6}$/;
const PID_FILE = "bench.pid";

/**
 * A run killed outright (SIGKILL, a crash) could not clean up: the next run removes what its
 * folder still holds, once the process named in its pid file is gone.
 */
async function sweepAbandonedRuns(log: Log): Promise<void> {
  const tmp = os.tmpdir();
  const previous = process.env.TMPDIR;
  for (const name of readdirSync(tmp).filter((n) => WORK_DIR.test(n))) {
    const dir = path.join(tmp, name);
    let pid: number;
    try {
      pid = Number(readFileSync(path.join(dir, PID_FILE), "utf8").trim());
    } catch {
      continue; // not ours, or still being created
    }
    if (!Number.isInteger(pid) || pid <= 0 || processAlive(pid)) continue;
    log(`cleanup: removing what an interrupted benchmark run (pid ${pid}) left in ${dir}`);
    process.env.TMPDIR = dir;
    try {
      await sweepEnvironments(ephemeralRoot(), log);
    } finally {
      if (previous === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = previous;
    }
    removeWorkDir(dir);
  }
}

/** Removes the run's folder; a child killed a moment ago may still be writing its compile cache there. */
function removeWorkDir(dir: string): void {
  try {
    rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
  } catch {
    // a temp folder left behind holds no environment: those were removed above
  }
}

/** Removes every environment under the run's ephemeral root: embedded ones stopped and deleted, Docker ones removed. */
async function sweepEnvironments(root: string, log: Log): Promise<void> {
  if (!existsSync(root)) return;
  for (const id of readdirSync(root).filter(isEphemeralId)) {
    try {
      let engine: string | undefined;
      try {
        engine = readRecord(id)?.engine;
      } catch {
        engine = undefined;
      }
      if (engine === "docker") {
        const { removeDockerEnvironment } = await import("../engines/docker/environment.js");
        await removeDockerEnvironment(id, () => undefined);
      } else {
        await downEmbedded(id, { destroy: true, lockWaitSeconds: 20 });
      }
      log(`cleanup: removed ${id}, which a step had left behind`);
    } catch (error) {
      log(`cleanup: could not remove ${id}: ${(error as Error).message}`);
    }
  }
}

/** At most one call per 500 ms (progress of a long load). */
export function throttled<T>(fn: (value: T) => void, ms = 500): (value: T) => void {
  let last = 0;
  return (value) => {
    const now = Date.now();
    if (now - last >= ms) {
      last = now;
      fn(value);
    }
  };
}
