/**
 * The embedded Redis 7 server: the system's redis-server ($REDIS_SERVER_BIN or PATH), started
 * with a 0600 config file that holds the passwords (nothing secret in argv), bound to 127.0.0.1,
 * protected mode on, daemonized so it outlives the command that started it.
 */
import { execFileSync, spawn } from "node:child_process";
import { chownSync, existsSync, readFileSync, readdirSync, renameSync, rmSync } from "node:fs";
import path from "node:path";
import { Redis } from "ioredis";
import { which } from "zx";
import { CliError, EXIT } from "../../errors.js";
import { writeFileAtomicIfChanged } from "../../fs.js";
import { redisAclLines } from "../../spec/access.js";
import { redisConf } from "../../spec/render.js";
import type { Spec } from "../../spec/schema.js";
import type { EnvPaths, ServiceUser } from "../../state/paths.js";
import { processAlive, processRuns } from "../../state/processes.js";

const INSTALL_HINT = "install Redis 7: sudo apt-get install -y redis-server (or set REDIS_SERVER_BIN to a redis-server 7 binary)";

/** A program on PATH or in the folders Debian's packages install into. */
function onPath(name: string): string | undefined {
  return which.sync(name, { nothrow: true, path: [process.env.PATH ?? "", "/usr/bin", "/usr/local/bin", "/usr/sbin"].join(path.delimiter) }) ?? undefined;
}

/**
 * Finds redis-server 7. When it is missing on Debian/Ubuntu and we are root, installs it with
 * apt-get (and says so); otherwise fails with the exact command to run.
 */
export function findRedisServer(log: (message: string) => void): string {
  let bin = process.env.REDIS_SERVER_BIN ?? onPath("redis-server");
  if (process.env.REDIS_SERVER_BIN && !existsSync(process.env.REDIS_SERVER_BIN)) {
    throw new CliError(`REDIS_SERVER_BIN=${process.env.REDIS_SERVER_BIN} does not exist`, EXIT.ERROR, INSTALL_HINT);
  }
  if (!bin && process.getuid?.() === 0 && onPath("apt-get")) {
    log("redis-server is missing: installing it with apt-get install -y redis-server");
    try {
      execFileSync("apt-get", ["install", "-y", "-q", "redis-server"], { stdio: "ignore", env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } });
    } catch {
      execFileSync("apt-get", ["update", "-q"], { stdio: "ignore" });
      execFileSync("apt-get", ["install", "-y", "-q", "redis-server"], { stdio: "ignore", env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" } });
    }
    bin = onPath("redis-server");
  }
  if (!bin) throw new CliError("redis-server was not found", EXIT.ERROR, INSTALL_HINT);
  const major = redisServerMajor(bin);
  if (major !== 7) throw new CliError(`${bin} is Redis ${major}; the toolkit runs Redis 7`, EXIT.ERROR, INSTALL_HINT);
  return bin;
}

/** Major version of a redis-server binary. */
export function redisServerMajor(bin: string): number | undefined {
  const out = execFileSync(bin, ["--version"], { encoding: "utf8" });
  const match = /v=(\d+)\./.exec(out);
  return match ? Number(match[1]) : undefined;
}

export interface RedisConfOptions {
  port: number;
  adminPassword: string;
  appPassword: string;
  /** Override appendonly (restore starts with `no` so that the RDB is loaded, not the AOF). */
  appendonly?: boolean;
}

/** The embedded server's redis.conf: where and how it listens, the spec's settings, the ACL users. */
export function embeddedRedisConf(spec: Spec, paths: EnvPaths, options: RedisConfOptions): string {
  let settings = redisConf(spec);
  if (options.appendonly !== undefined) settings = settings.replace(/^appendonly .*$/m, `appendonly ${options.appendonly ? "yes" : "no"}`);
  return [
    "# Written by crypto-prediction-infra from the spec; rewritten by every `npm run up`.",
    "bind 127.0.0.1",
    `port ${options.port}`,
    "protected-mode yes",
    "daemonize yes",
    `dir ${paths.redisDir}`,
    `pidfile ${paths.redisPid}`,
    `logfile ${paths.redisLog}`,
    "dbfilename dump.rdb",
    "appenddirname appendonlydir",
    settings.trimEnd(),
    ...redisAclLines(spec, options.adminPassword, options.appPassword),
    "",
  ].join("\n");
}

export function writeRedisConf(paths: EnvPaths, content: string, user: ServiceUser | undefined): void {
  writeFileAtomicIfChanged(paths.redisConf, content, 0o600);
  if (user) chownSync(paths.redisConf, user.uid, user.gid);
}

/** Folders a restore moves Redis's previous files into until it commits (lib/backup/redis.ts). */
export const SET_ASIDE_PREFIX = ".restore-old-";

/** Set-aside folders a restore left in the data dir. */
export function setAsideDirs(paths: EnvPaths): string[] {
  if (!existsSync(paths.redisDir)) return [];
  return readdirSync(paths.redisDir).filter((f) => f.startsWith(SET_ASIDE_PREFIX)).map((f) => path.join(paths.redisDir, f));
}

/**
 * Before a start: a restore killed after setting Redis's files aside, and before placing the
 * backup's RDB, left the data dir empty. Put the previous files back so the server starts with
 * the old data (the restore never committed), and drop set-aside folders that are not needed.
 */
export function recoverInterruptedRestore(paths: EnvPaths, log: (message: string) => void): void {
  const live = ["dump.rdb", "appendonlydir"];
  for (const aside of setAsideDirs(paths)) {
    if (live.every((f) => !existsSync(path.join(paths.redisDir, f)))) {
      log(`redis: an interrupted restore left the data in ${path.basename(aside)}; putting it back`);
      for (const f of live) if (existsSync(path.join(aside, f))) renameSync(path.join(aside, f), path.join(paths.redisDir, f));
    }
    rmSync(aside, { recursive: true, force: true });
  }
}

/** Pid of the running server, undefined when none runs (a stale pid file is removed). */
export function redisPid(paths: EnvPaths): number | undefined {
  if (!existsSync(paths.redisPid)) return undefined;
  const pid = Number(readFileSync(paths.redisPid, "utf8").trim());
  if (pid > 0 && processRuns(pid, "redis-server")) return pid;
  rmSync(paths.redisPid, { force: true });
  return undefined;
}

/** Starts redis-server with the config file and waits until it answers an authenticated PING. */
export async function startRedis(bin: string, paths: EnvPaths, port: number, adminPassword: string, user: ServiceUser | undefined): Promise<void> {
  // Redis has no umask setting: its log, pid, RDB and AOF files take the umask it starts with,
  // so start it through sh with umask 077 (files 0600, folders 0700).
  const child = spawn("/bin/sh", ["-c", 'umask 077 && exec "$0" "$@"', bin, paths.redisConf], {
    ...(user ? { uid: user.uid, gid: user.gid } : {}),
    cwd: paths.redisDir,
    stdio: ["ignore", "ignore", "pipe"],
    detached: true,
  });
  let stderr = "";
  child.stderr?.on("data", (d) => (stderr += d));
  const exitCode = await new Promise<number | null>((resolve) => child.on("exit", resolve));
  if (exitCode !== 0) {
    throw new CliError(`redis-server did not start (exit ${exitCode}): ${stderr.trim() || tail(paths.redisLog)}`, EXIT.ERROR, `see ${paths.redisLog}`);
  }
  await waitForRedis(port, adminPassword, 30_000, paths);
}

async function waitForRedis(port: number, password: string, timeoutMs: number, paths: EnvPaths): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError = "";
  while (Date.now() < deadline) {
    const client = new Redis({ host: "127.0.0.1", port, password, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 1000 });
    client.on("error", () => undefined);
    try {
      await client.connect();
      // LOADING: the dataset is still being read; wait for it like a client would.
      if ((await client.ping()) === "PONG") return;
    } catch (error) {
      lastError = (error as Error).message;
    } finally {
      client.disconnect();
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new CliError(`Redis on port ${port} did not answer within ${timeoutMs / 1000}s: ${lastError}`, EXIT.ERROR, `see ${paths.redisLog}`);
}

/** Stops the server: SHUTDOWN (which saves when persistence is on), then waits for the pid to go. */
export async function stopRedis(paths: EnvPaths, port: number, adminPassword: string): Promise<boolean> {
  const pid = redisPid(paths);
  if (pid === undefined) return false;
  const client = new Redis({ host: "127.0.0.1", port, password: adminPassword, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  client.on("error", () => undefined);
  try {
    await client.connect();
    await client.shutdown().catch(() => undefined);
  } catch {
    process.kill(pid, "SIGTERM"); // unreachable by password (e.g. lost credentials): SIGTERM also saves
  } finally {
    client.disconnect();
  }
  const deadline = Date.now() + 30_000;
  while (processAlive(pid)) {
    if (Date.now() > deadline) {
      process.kill(pid, "SIGKILL");
      break;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  rmSync(paths.redisPid, { force: true });
  return true;
}

function tail(file: string): string {
  try {
    return readFileSync(file, "utf8").trim().split("\n").slice(-3).join(" | ");
  } catch {
    return "";
  }
}
