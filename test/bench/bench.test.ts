/**
 * `npm run bench` cannot rot: a --quick run measures every item on real servers and writes
 * results.json / results.md of the documented shape (speed is never asserted); --only keeps the
 * other items of the previous run; Ctrl-C removes every environment the run made; bad flags are
 * usage errors that write nothing. Each run gets its own $TMPDIR, so "nothing left behind" is
 * checked by that folder being empty afterwards.
 */
import { spawn } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { mergeResults } from "../../lib/bench/harness.js";
import { commandLine } from "../../lib/bench/process.js";
import { resultsSchema, type BenchResults } from "../../lib/bench/results.js";
import { median, percentile, summarise } from "../../lib/bench/stats.js";
import { PROJECT_DIR } from "../../lib/spec/load.js";
import { describeBackups } from "../support/docker.js";
import { runCli } from "../support/embedded.js";

const ITEMS = ["startup", "seed", "backup", "operations", "drill", "queries", "archiving", "bucket", "scrape"];
const dirs: string[] = [];

/** A private $TMPDIR the servers' account can enter (the bench keeps its environments there). */
function privateTmp(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), "cpi-bench-test-"));
  chmodSync(dir, 0o711);
  dirs.push(dir);
  return dir;
}

/** What is left in a private $TMPDIR (tsx's compile cache does not count: it holds no environment). */
function leftovers(tmp: string): string[] {
  return readdirSync(tmp).filter((name) => !name.startsWith("tsx-"));
}

/** Processes whose command line mentions the folder (servers of a leaked environment would). */
function processesUnder(dir: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ");
      if (cmdline.includes(dir)) found.push(`${pid}: ${cmdline}`);
    } catch {
      // gone
    }
  }
  return found;
}

afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describe("bench (pure parts)", () => {
  it("median, nearest-rank percentile and summary", () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 95)).toBe(10);
    expect(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 50)).toBe(5);
    expect(summarise([5, 1, 3], { p95: true })).toEqual({ runs: 3, median: 3, min: 1, max: 5, p95: 5 });
    expect(() => median([])).toThrow(RangeError);
  });
});

describeBackups("npm run bench", () => {
  const tmp = privateTmp();
  const out = path.join(tmp, "..", `${path.basename(tmp)}-out`);
  dirs.push(out);

  it("--quick measures every item and writes results.json and results.md of the documented shape; --only then re-measures some and keeps the others", async () => {
    const run = await runCli("bench", ["--quick", "--out", out, "--json"], { env: { TMPDIR: tmp }, timeoutMs: 280_000 });
    const rows: any[] = (run.json?.items ?? []).flatMap((i: any) => i.rows);
    const errors = rows.filter((r) => r.status === "error").map((r) => `${r.id}: ${r.reason}`);
    expect(errors, run.stderr.slice(-3000)).toEqual([]);
    // A measured command whose runs fail is a defect the suite must show, not a warning.
    const failedRuns = rows.filter((r) => typeof r.details?.failedRuns === "number").map((r) => `${r.id}: ${r.details.failures.join("; ")}`);
    expect(failedRuns, "runs of measured commands failed").toEqual([]);
    expect(run.code, run.stderr.slice(-3000)).toBe(0);

    const results: BenchResults = resultsSchema.parse(JSON.parse(readFileSync(path.join(out, "results.json"), "utf8")));
    expect(run.json).toEqual(results); // --json prints what it wrote
    expect(results.mode).toBe("quick");
    expect(results.items.map((i) => i.name)).toEqual(ITEMS);
    expect(results.machine.cores).toBe(os.cpus().length);
    expect(results.machine.postgres).toMatch(/^16\./);
    expect(results.machine.redis).toMatch(/^7\./);
    expect(results.machine.loadAverage.start).toHaveLength(3);

    for (const item of results.items) {
      for (const row of item.rows) {
        if (row.status !== "measured") {
          expect(row.reason, row.id).toBeTruthy();
          continue;
        }
        expect(row.runs, `${row.id}: ${JSON.stringify(row.details?.failures ?? "")}`).toBeGreaterThanOrEqual(2);
        expect(row.samples, row.id).toHaveLength(row.runs);
        expect(row.min!, row.id).toBeLessThanOrEqual(row.median!);
        expect(row.median!, row.id).toBeLessThanOrEqual(row.max!);
        if (row.target) expect(typeof row.met, row.id).toBe("boolean");
      }
    }
    const row = (id: string) => results.items.flatMap((i) => i.rows).find((r) => r.id === id);
    // The targets sit next to their figures.
    expect(row("up.cold.command")).toMatchObject({ status: "measured", target: { kind: "max", value: 3 } });
    expect(row("up.warm.in-process")).toMatchObject({ status: "measured", target: { kind: "max", value: 1 } });
    expect(row("env-ci.embedded.command")).toMatchObject({ status: "measured", target: { kind: "max", value: 3 } });
    expect(row("seed.rate")).toMatchObject({ status: "measured", unit: "rows/s", target: { kind: "min", value: 250_000 } });
    expect(row("verify.command")).toMatchObject({ status: "measured", target: { kind: "max", value: 1 } });
    expect(row("monitor.in-process")).toMatchObject({ status: "measured", target: { kind: "max", value: 2 } });
    expect(row("drill.rto")).toMatchObject({ status: "measured", target: { kind: "max", value: 5 } });
    expect(row("scrape.served")).toMatchObject({ status: "measured", unit: "s", target: { kind: "max", value: 0.2 } });
    expect(row("docker.healthy")?.status).toBe(results.machine.docker ? "measured" : "skipped");
    const backupMeasured = results.machine.pgTools !== null;
    expect(row("backup.custom.speedup")).toMatchObject({ status: backupMeasured ? "measured" : "skipped", target: { kind: "min", value: 2 } });
    expect(row("backup.cli.backup-rss")).toMatchObject({ status: backupMeasured ? "measured" : "skipped", target: { kind: "max", value: 150 } });
    // The guide's indexes serve its selective patterns even on the small table; the plan is recorded.
    for (const pattern of ["latest", "day", "hour-all"]) {
      const q = row(`queries.20k.${pattern}`)!;
      expect(q, pattern).toMatchObject({ status: "measured", unit: "ms", met: true, target: { kind: "index" } });
      expect(q.p95, pattern).toBeGreaterThanOrEqual(q.median!);
      expect(String(q.details?.plan), pattern).toMatch(/Index|Bitmap/);
    }
    expect(row("queries.10m.latest")).toBeUndefined(); // 10M rows: full runs only

    const markdown = readFileSync(path.join(out, "results.md"), "utf8");
    expect(markdown).toContain("| Item | Measure | Median | Min – max | Runs | Target | Met |");
    for (const item of results.items) expect(markdown).toContain(item.title);
    expect(markdown).toMatch(/Load average \(1\/5\/15 min\) at the start of the run: [\d.]+ \/ /);

    expect(leftovers(tmp)).toEqual([]);
    expect(processesUnder(tmp)).toEqual([]);

    // --only re-measures some items and keeps the others of that run.
    const again = await runCli("bench", ["--quick", "--only", "seed", "--out", out, "--json"], { env: { TMPDIR: tmp } });
    expect(again.code, again.stderr).toBe(0);
    const merged = resultsSchema.parse(JSON.parse(readFileSync(path.join(out, "results.json"), "utf8")));
    expect(merged.items.map((i) => i.name)).toEqual(ITEMS);
    expect(merged.items.find((i) => i.name === "drill")).toEqual(results.items.find((i) => i.name === "drill"));
    expect(merged.items.find((i) => i.name === "seed")!.measuredAt > results.items.find((i) => i.name === "seed")!.measuredAt).toBe(true);
    // Both runs are named, each with its load average at start.
    expect(merged.runs.map((r) => r.command)).toEqual([expect.stringContaining("--quick --out"), expect.stringContaining("--only seed")]);
    expect(readFileSync(path.join(out, "results.md"), "utf8")).toContain("at the start of each run");
    // A run of the other mode replaces the file rather than mixing quick and full figures.
    const full = { ...merged, mode: "full" as const, items: merged.items.filter((i) => i.name === "seed") };
    expect(mergeResults(merged, full, ITEMS).items.map((i) => i.name)).toEqual(["seed"]);
  }, 420_000);
});

describe("npm run bench: interruption and bad usage", () => {
  it("Ctrl-C removes every environment the run made and exits 130", async () => {
    const tmp = privateTmp();
    const out = path.join(tmp, "out");
    // As `npm run bench` starts it (one node process: tsx's CLI would SIGKILL a child busy for 60 ms).
    const command = commandLine("bench");
    const child = spawn(command.file, [...command.args, "--quick", "--only", "seed", "--out", out], {
      cwd: PROJECT_DIR,
      env: { ...process.env, TMPDIR: tmp },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
    // Interrupt once the environment is up and the load is running.
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no seed progress within 90 s: ${stderr}`)), 90_000);
      child.stderr.on("data", (d: Buffer) => {
        stderr += d;
        if (/seed 1\/2/.test(stderr)) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    expect(readdirSync(path.join(tmp)).some((n) => n.startsWith("cpi-bench-"))).toBe(true);
    child.kill("SIGINT");
    expect(await exited, stderr).toBe(130);
    expect(stderr).toMatch(/SIGINT: stopping and removing everything/);
    expect(leftovers(tmp), stderr).toEqual([]);
    expect(processesUnder(tmp)).toEqual([]);
    expect(existsSync(path.join(out, "results.json"))).toBe(false);
  }, 120_000);

  it("an unknown --only item is a usage error that writes nothing", async () => {
    const tmp = privateTmp();
    const out = path.join(tmp, "out");
    const run = await runCli("bench", ["--only", "seed,warp", "--out", out], { env: { TMPDIR: tmp } });
    expect(run.code).toBe(64);
    expect(run.stderr).toContain('--only "seed,warp": unknown item warp; expected some of startup, seed, backup, operations, drill, queries');
    expect(existsSync(out)).toBe(false);
    const flag = await runCli("bench", ["--fast"], { env: { TMPDIR: tmp } });
    expect(flag.code).toBe(64);
    expect(flag.stderr).toContain("unknown option --fast");
  });
});
