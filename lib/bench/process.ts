/**
 * Timed child processes: the toolkit's commands exactly as `npm run` starts them (`node
 * bin/cpi.mjs NAME`, process start included) and the guide's shell pipelines. Each child leads its own process
 * group, so an interrupted benchmark can stop it with everything it started (tsx's node, a
 * pipeline's stages). Peak RSS comes from GNU time (%M: the largest resident set of the process
 * and its descendants).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { PROJECT_DIR } from "../spec/load.js";

export const TSX = path.join(PROJECT_DIR, "node_modules", ".bin", "tsx");
/** The project's launcher: `npm run NAME` is `node bin/cpi.mjs NAME` (a cached esbuild bundle). */
export const LAUNCHER = path.join(PROJECT_DIR, "bin", "cpi.mjs");
export const GNU_TIME = "/usr/bin/time";

/** How `npm run NAME` starts a command (without npm's own start-up): the launcher, else tsx. */
export function commandLine(name: string): { file: string; args: string[]; text: string } {
  if (existsSync(LAUNCHER)) return { file: process.execPath, args: [LAUNCHER, name], text: "node bin/cpi.mjs NAME" };
  return { file: TSX, args: [path.join(PROJECT_DIR, "scripts", `${name}.ts`)], text: "tsx scripts/NAME.ts" };
}

export interface TimedRun {
  code: number;
  /** Wall time from spawn to exit. */
  seconds: number;
  stdout: string;
  stderr: string;
  /** stdout parsed as JSON, when it is. */
  json: any;
  /** Peak resident set (MB) of the process tree, when asked for and GNU time is installed. */
  peakRssMb?: number;
}

export interface RunOptions {
  /** Extra environment (secrets go here, never in args). */
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
  /** Measure peak RSS with GNU time. */
  rss?: boolean;
}

/** Children started by this benchmark, so that cleanup can stop the ones still running. */
export class ChildProcesses {
  private readonly running = new Set<ChildProcess>();
  private stopped = false;

  /** @param defaultTimeoutMs bound of a child that hangs: it is killed and reported as failed. */
  constructor(private readonly defaultTimeoutMs = 30 * 60_000) {}

  /** Runs a command, timing it; never throws for a non-zero exit (the caller reads `code`). */
  async run(file: string, args: string[], options: RunOptions = {}): Promise<TimedRun> {
    if (this.stopped) throw new Error("the benchmark was interrupted");
    const rssDir = options.rss && existsSync(GNU_TIME) ? mkdtempSync(path.join(os.tmpdir(), "cpi-bench-rss-")) : undefined;
    const rssFile = rssDir && path.join(rssDir, "rss");
    const [cmd, argv] = rssFile ? [GNU_TIME, ["-f", "%M", "-o", rssFile, file, ...args]] : [file, args];
    const started = performance.now();
    const child = spawn(cmd, argv, { cwd: PROJECT_DIR, env: { ...process.env, ...options.env }, stdio: ["ignore", "pipe", "pipe"], detached: true });
    this.running.add(child);
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (d: Buffer) => (stdout += d));
    child.stderr!.on("data", (d: Buffer) => (stderr += d));
    let timedOut = false;
    const timeoutMs = options.timeoutMs ?? this.defaultTimeoutMs;
    const timer = setTimeout(() => {
      timedOut = true;
      signalGroup(child, "SIGKILL");
    }, timeoutMs);
    try {
      const code = await new Promise<number>((resolve, reject) => {
        child.on("error", reject);
        child.on("close", (c, signal) => resolve(c ?? (signal ? 128 + (os.constants.signals[signal] ?? 0) : 1)));
      });
      const seconds = (performance.now() - started) / 1000;
      if (timedOut) stderr += `\n(killed: no exit within ${timeoutMs / 1000} s)`;
      let peakRssMb: number | undefined;
      if (rssFile && existsSync(rssFile)) {
        const kb = Number(readFileSync(rssFile, "utf8").trim().split("\n").pop());
        if (Number.isFinite(kb) && kb > 0) peakRssMb = kb / 1024;
      }
      return { code, seconds, stdout, stderr, json: parseJson(stdout), ...(peakRssMb !== undefined ? { peakRssMb } : {}) };
    } finally {
      clearTimeout(timer);
      this.running.delete(child);
      if (rssDir) rmSync(rssDir, { recursive: true, force: true });
    }
  }

  /** A toolkit command as `npm run NAME -- ARGS` starts it (process start included, npm's own excluded). */
  script(name: string, args: string[], options: RunOptions = {}): Promise<TimedRun> {
    const command = commandLine(name);
    return this.run(command.file, [...command.args, ...args], options);
  }

  /** A bash pipeline with pipefail (a failing stage fails it, as zx does). */
  shell(script: string, options: RunOptions = {}): Promise<TimedRun> {
    return this.run("bash", ["-c", `set -euo pipefail\n${script}`], options);
  }

  /** Stops every child still running, with its process group; no new child starts after this. */
  async stopAll(): Promise<void> {
    this.stopped = true;
    const children = [...this.running];
    for (const child of children) signalGroup(child, "SIGTERM");
    const deadline = Date.now() + 10_000;
    while (children.some((c) => c.exitCode === null && c.signalCode === null) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    for (const child of children) if (child.exitCode === null && child.signalCode === null) signalGroup(child, "SIGKILL");
  }
}

function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // already gone
  }
}

/** A command's last stderr lines, for a failure message. */
export function failureText(run: Pick<TimedRun, "code" | "stderr" | "stdout">): string {
  const lines = (run.stderr || run.stdout).trim().split("\n").filter(Boolean);
  return `exit ${run.code}: ${lines.slice(-3).join(" | ") || "(no output)"}`;
}

function parseJson(text: string): any {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
