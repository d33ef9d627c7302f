/**
 * Helpers of the reliability and security tests: run the commands as a user would (one process
 * per run, optionally in a sandbox), read an environment's secrets, and snapshot folders to prove
 * that a refused command changed nothing.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync, chmodSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { PROJECT_DIR } from "../../lib/spec/load.js";

const TSX = path.join(PROJECT_DIR, "node_modules", ".bin", "tsx");

/** How npm's scripts start a command: the bin/cpi.mjs launcher when the project has it, else tsx. */
function commandLine(projectDir: string, name: string, args: string[]): [string, string[]] {
  const launcher = path.join(projectDir, "bin", "cpi.mjs");
  return existsSync(launcher) ? [process.execPath, [launcher, name, ...args]] : [TSX, [path.join(projectDir, "scripts", `${name}.ts`), ...args]];
}

export interface ScriptRun {
  code: number;
  stdout: string;
  stderr: string;
  json: any;
  /** Wall time of the whole run (process start included), ms. */
  ms: number;
}

export interface ScriptOptions {
  /** Project to run the script of (default: this one); a sandbox copy for bad stack files. */
  projectDir?: string;
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
}

/** Starts a command (scripts/<name>.ts) in its own process group; `done` resolves with its outcome. */
export function startScript(name: string, args: string[], options: ScriptOptions = {}): { child: ChildProcess; done: Promise<ScriptRun>; stderr: () => string } {
  const projectDir = options.projectDir ?? PROJECT_DIR;
  const started = Date.now();
  const [file, argv] = commandLine(projectDir, name, args);
  const child = spawn(file, argv, {
    cwd: projectDir,
    env: { ...process.env, ...options.env },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true, // its own process group, so a test can SIGKILL tsx and its node child together
  });
  let stdout = "";
  let stderr = "";
  child.stdout!.on("data", (d) => (stdout += d));
  child.stderr!.on("data", (d) => (stderr += d));
  const timeoutMs = options.timeoutMs ?? 120_000;
  const done = new Promise<ScriptRun>((resolve) => {
    const timer = setTimeout(() => killGroup(child, "SIGKILL"), timeoutMs);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal ? 128 + (os.constants.signals[signal] ?? 0) : -1), stdout, stderr, json: parseJson(stdout), ms: Date.now() - started });
    });
  });
  return { child, done, stderr: () => stderr };
}

/** Runs a command to the end (`npm run NAME -- args` without npm in between). */
export function runScript(name: string, args: string[], options: ScriptOptions = {}): Promise<ScriptRun> {
  return startScript(name, args, options).done;
}

/** Runs `npm run -s NAME -- args` exactly as an operator types it. */
export function runNpmScript(name: string, args: string[], options: ScriptOptions = {}): Promise<ScriptRun> {
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn("npm", ["run", "-s", name, "--", ...args], {
      cwd: options.projectDir ?? PROJECT_DIR,
      env: { ...process.env, ...options.env },
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    });
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (d) => (stdout += d));
    child.stderr!.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => killGroup(child, "SIGKILL"), options.timeoutMs ?? 60_000);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? -1, stdout, stderr, json: parseJson(stdout), ms: Date.now() - started });
    });
  });
}

/** Signals a process started by startScript together with its children (same process group). */
export function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  try {
    if (child.pid) process.kill(-child.pid, signal);
  } catch {
    // already gone
  }
}

function parseJson(text: string): any {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/**
 * A throw-away folder for state ($CPI_STATE_DIR) and, when asked, a copy of the project whose
 * stack files a test may write (the real project's Pulumi.*.yaml stay untouched). Mode 0755 so
 * that the servers' account could enter it.
 */
export interface Sandbox {
  root: string;
  /** $CPI_STATE_DIR of the runs. */
  stateDir: string;
  env: NodeJS.ProcessEnv;
  /** A copy of the project (lib, scripts, migrations, bin, stack files; node_modules linked). */
  projectDir: string;
  /** Writes `Pulumi.<env>.yaml` in the copy. */
  writeStack(env: string, yaml: string): void;
  remove(): void;
}

export function makeSandbox(): Sandbox {
  const root = mkdtempSync(path.join(os.tmpdir(), "cpi-rel-"));
  chmodSync(root, 0o755);
  const stateDir = path.join(root, "state");
  const projectDir = path.join(root, "project");
  mkdirSync(projectDir);
  for (const entry of ["lib", "scripts", "migrations", "bin"].filter((e) => existsSync(path.join(PROJECT_DIR, e)))) cpSync(path.join(PROJECT_DIR, entry), path.join(projectDir, entry), { recursive: true });
  for (const file of readdirSync(PROJECT_DIR).filter((f) => /^(Pulumi(\.[a-z0-9-]+)?\.yaml|package\.json|tsconfig\.json)$/.test(f))) {
    cpSync(path.join(PROJECT_DIR, file), path.join(projectDir, file));
  }
  symlinkSync(path.join(PROJECT_DIR, "node_modules"), path.join(projectDir, "node_modules"));
  return {
    root,
    stateDir,
    env: { CPI_STATE_DIR: stateDir },
    projectDir,
    writeStack(env, yaml) {
      writeFileSync(path.join(projectDir, `Pulumi.${env}.yaml`), yaml);
    },
    remove() {
      rmSync(root, { recursive: true, force: true });
    },
  };
}

/** Every path under a folder with its type, mode, size and mtime: equal snapshots = nothing changed. */
export function snapshot(dir: string, options: { serversRunning?: boolean } = {}): Record<string, string> {
  const out: Record<string, string> = {};
  if (!existsSync(dir)) return out;
  const walk = (d: string) => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const file = path.join(d, entry.name);
      const relative = path.relative(dir, file);
      // Server-owned files change on their own while a server runs (WAL, stats, RDB, logs):
      // then compare what the toolkit writes; the caller checks the servers' data by querying it.
      if (options.serversRunning && serverOwned(dir, relative)) continue;
      const stat = statSync(file, { throwIfNoEntry: false });
      if (!stat) continue;
      out[relative] = entry.isDirectory() ? `dir ${(stat.mode & 0o777).toString(8)}` : `file ${(stat.mode & 0o777).toString(8)} ${stat.size} ${stat.mtimeMs}`;
      if (entry.isDirectory()) walk(file);
    }
  };
  walk(dir);
  return out;
}

/** Files that a running PostgreSQL or Redis writes, inside an environment's directory. */
const TOOLKIT_FILES_IN_SERVER_DIRS = new Set(["spec.conf", "redis.conf"]);
function serverOwned(root: string, relative: string): boolean {
  const parts = relative.split(path.sep);
  const name = parts.pop()!;
  const inPgData = parts.some((part, i) => part === "data" && parts[i - 1] === "postgres" && existsSync(path.join(root, ...parts.slice(0, i + 1), "PG_VERSION")));
  const inRedisDir = parts.some((part, i) => part === "redis" && existsSync(path.join(root, ...parts.slice(0, i + 1), "redis.conf")));
  return name === "postgres.log" || ((inPgData || inRedisDir) && !TOOLKIT_FILES_IN_SERVER_DIRS.has(name));
}

/** Every password of an environment, from its credentials file. */
export function secretsOf(credentialsFile: string): string[] {
  const c = JSON.parse(readFileSync(credentialsFile, "utf8"));
  return [c.postgres.superuserPassword, c.postgres.ownerPassword, c.postgres.appPassword, c.postgres.readonlyPassword, c.redis.adminPassword, c.redis.appPassword];
}

/** The secrets (or their URL-encoded forms) that occur in a text. */
export function leakedSecrets(text: string, secrets: string[]): string[] {
  return secrets.filter((s) => text.includes(s) || text.includes(encodeURIComponent(s)));
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls until `check` is true; fails after `timeoutMs`. */
export async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 30_000, everyMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** Starts a command and freezes it (SIGSTOP) as soon as it holds the environment lock at `lockPath`. */
export async function startAndFreezeInLock(name: string, args: string[], lockPath: string) {
  const started = startScript(name, args);
  await waitFor(`${name} to take the lock`, () => existsSync(lockPath), 30_000, 10);
  killGroup(started.child, "SIGSTOP");
  return started;
}

/** Which servers `npm run status` reports running. */
export async function runningServers(env: string): Promise<{ postgres: boolean; redis: boolean }> {
  const result = await runScript("status", ["--env", env, "--json"]);
  if (result.code !== 0) throw new Error(`status failed: ${result.stderr}`);
  return { postgres: result.json.postgres.running, redis: result.json.redis.running };
}

/**
 * Puts a few hundred thousand rows and some Redis keys into an environment, so that a backup or
 * restore takes long enough (seconds) to be killed in the middle.
 */
export async function fillForBackup(connections: { postgresConfig(role: "owner" | "admin"): import("pg").ClientConfig; redisOptions(role: "admin"): import("ioredis").RedisOptions }, rowsPerSymbol = 40_000): Promise<void> {
  const { default: pg } = await import("pg");
  const { Redis } = await import("ioredis");
  const client = new pg.Client(connections.postgresConfig("owner"));
  await client.connect();
  try {
    await client.query("INSERT INTO cryptocurrencies (symbol, name) SELECT 'F' || g, 'Fill ' || g FROM generate_series(1, 10) g");
    await client.query(
      `INSERT INTO market_data (cryptocurrency_id, timestamp, open_price, high_price, low_price, close_price, volume, data_source)
       SELECT c.id, timestamptz '2024-01-01 00:00:00+00' + make_interval(mins => g), 100 + g % 7, 110 + g % 7, 90 + g % 7, 105 + g % 7, g, 'fill'
       FROM cryptocurrencies c, generate_series(1, $1::int) g WHERE c.symbol LIKE 'F%'`,
      [rowsPerSymbol],
    );
  } finally {
    await client.end();
  }
  const redis = new Redis({ ...connections.redisOptions("admin"), maxRetriesPerRequest: 1 });
  try {
    const pipeline = redis.pipeline();
    for (let i = 0; i < 2_000; i++) pipeline.set(`crypto:F${i}:price`, String(i));
    await pipeline.exec();
  } finally {
    redis.disconnect();
  }
}
