/**
 * The guide's own client commands (`psql -h localhost -U crypto_user -d crypto_prediction_db`,
 * `redis-cli info memory`) against a local environment, with the tools' own conventions for
 * secrets: the password goes into the client's ENVIRONMENT (PGPASSWORD, REDISCLI_AUTH), never
 * into argv (which every local user can read in `ps`), or into a 0600 file (.pgpass, dotenv).
 */
import { spawn } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { which } from "zx";
import { CliError, EXIT } from "../errors.js";
import { writeFileAtomic } from "../fs.js";
import type { EnvironmentState } from "../state/record.js";
import type { PostgresRole, RedisRole } from "../spec/access.js";

export type ClientTool = "psql" | "redis";
/** What `--as` may name: PostgreSQL's four roles; Redis has admin (default user) and app. */
export type LoginRole = PostgresRole;
export const LOGIN_ROLES = ["owner", "app", "readonly", "admin"] as const;

/** How to start a client: the binary, its arguments (no secret) and the variables it reads. */
export interface ClientInvocation {
  tool: ClientTool;
  binary: string;
  args: string[];
  /** Connection variables (PGHOST…; the password variable's value is a secret). */
  env: Record<string, string>;
  /** The variable holding the password. */
  passwordVariable: "PGPASSWORD" | "REDISCLI_AUTH";
  role: string;
  user: string;
  target: string;
}

/** The Redis user behind a login role: admin is Redis's default user; every other role uses the app user. */
export function redisRoleFor(role: LoginRole): RedisRole {
  return role === "admin" ? "admin" : "app";
}

/** Finds a client on PATH (or $PSQL_BIN / $REDIS_CLI_BIN); fails with the install command. */
export function findClient(tool: ClientTool): string {
  const [name, variable, pkg] = tool === "psql" ? ["psql", "PSQL_BIN", "postgresql-client"] : ["redis-cli", "REDIS_CLI_BIN", "redis-tools"];
  const override = process.env[variable];
  if (override) {
    if (!existsSync(override)) throw new CliError(`${variable}=${override} does not exist`, EXIT.ERROR, `unset it, or point it at a ${name} binary`);
    return override;
  }
  const found = which.sync(name, { nothrow: true, path: [process.env.PATH ?? "", "/usr/bin", "/usr/local/bin"].join(path.delimiter) });
  if (found) return found;
  throw new CliError(`${name} was not found on PATH`, EXIT.ERROR, `install it: sudo apt-get install -y ${pkg} (or set ${variable})`);
}

/** The client command line for an environment and role, extra arguments appended after the connection's. */
export function clientInvocation(opened: EnvironmentState, tool: ClientTool, role: LoginRole | undefined, extra: string[]): ClientInvocation {
  const c = opened.connections;
  if (tool === "psql") {
    const r = role ?? "owner";
    const cfg = c.postgresConfig(r);
    return {
      tool,
      binary: findClient("psql"),
      // Connection parts as libpq variables: arguments the user adds (-d other_db, -U …) win.
      args: extra,
      env: { PGHOST: String(cfg.host), PGPORT: String(cfg.port), PGUSER: String(cfg.user), PGDATABASE: String(cfg.database), PGPASSWORD: String(cfg.password), PGAPPNAME: "cpi-connect" },
      passwordVariable: "PGPASSWORD",
      role: r,
      user: String(cfg.user),
      target: `postgresql://${cfg.user}@${cfg.host}:${cfg.port}/${cfg.database}`,
    };
  }
  if (role && role !== "admin" && role !== "app") {
    throw new CliError(`--as ${role}: Redis has two users, admin (its default user) and app (${opened.spec.redis.appUser})`, EXIT.USAGE, "use --as app or --as admin");
  }
  const r: RedisRole = role === "admin" ? "admin" : "app";
  const o = c.redisOptions(r);
  return {
    tool,
    binary: findClient("redis"),
    args: ["-h", String(o.host), "-p", String(o.port), "--user", String(o.username), "-n", String(o.db ?? 0), ...extra],
    env: { REDISCLI_AUTH: String(o.password) },
    passwordVariable: "REDISCLI_AUTH",
    role: r,
    user: String(o.username),
    target: `redis://${o.username}@${o.host}:${o.port}/${o.db ?? 0}`,
  };
}

/**
 * Runs the client attached to this terminal (stdio inherited) and resolves with its exit code
 * (128 + signal number when a signal ended it). Ctrl-C belongs to the client (psql cancels the
 * query): this process ignores SIGINT/SIGQUIT meanwhile and passes SIGTERM/SIGHUP on.
 */
export function runClient(invocation: ClientInvocation): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(invocation.binary, invocation.args, { stdio: "inherit", env: { ...process.env, ...invocation.env } });
    const ignore = () => undefined;
    const forward = (signal: NodeJS.Signals) => () => child.kill(signal);
    const handlers: [NodeJS.Signals, () => void][] = [["SIGINT", ignore], ["SIGQUIT", ignore], ["SIGTERM", forward("SIGTERM")], ["SIGHUP", forward("SIGHUP")]];
    for (const [signal, handler] of handlers) process.on(signal, handler);
    const done = () => {
      for (const [signal, handler] of handlers) process.off(signal, handler);
    };
    child.once("error", (error) => {
      done();
      reject(new CliError(`could not start ${invocation.binary}: ${error.message}`, EXIT.ERROR));
    });
    child.once("exit", (code, signal) => {
      done();
      resolve(code ?? 128 + (signal ? (os.constants.signals[signal] ?? 0) : 0));
    });
  });
}

// ---- files --------------------------------------------------------------------------------------

export type CredentialsFormat = "pgpass" | "dotenv";

/** A .pgpass field: `:` and `\` are escaped with a backslash (libpq's rule). */
function pgpassField(value: string): string {
  return value.replace(/[\\:]/g, (c) => `\\${c}`);
}

/**
 * The .pgpass lines of an environment: every role (or the one asked for), for both 127.0.0.1
 * and localhost (the guide connects with -h localhost).
 */
export function pgpassLines(opened: EnvironmentState, role?: LoginRole): string[] {
  const roles: LoginRole[] = role ? [role] : ["owner", "app", "readonly"];
  const lines: string[] = [];
  for (const r of roles) {
    const cfg = opened.connections.postgresConfig(r);
    for (const host of ["127.0.0.1", "localhost"]) lines.push([host, String(cfg.port), String(cfg.database), String(cfg.user), String(cfg.password)].map(pgpassField).join(":"));
  }
  return lines;
}

/** dotenv lines for one role: libpq's and redis-cli's variables, and the two URLs. */
export function dotenvVariables(opened: EnvironmentState, role: LoginRole = "owner"): Record<string, string> {
  const c = opened.connections;
  const pg = c.postgresConfig(role);
  const redisRole = redisRoleFor(role);
  const redis = c.redisOptions(redisRole);
  return {
    PGHOST: String(pg.host),
    PGPORT: String(pg.port),
    PGDATABASE: String(pg.database),
    PGUSER: String(pg.user),
    PGPASSWORD: String(pg.password),
    DATABASE_URL: c.postgresUrl(role),
    REDIS_HOST: String(redis.host),
    REDIS_PORT: String(redis.port),
    REDIS_DB: String(redis.db ?? 0),
    REDIS_USERNAME: String(redis.username),
    REDISCLI_AUTH: String(redis.password),
    REDIS_URL: c.redisUrl(redisRole),
  };
}

/** KEY=value lines; values quoted (single quotes, shell-safe) when they need it. */
export function dotenvText(vars: Record<string, string>): string {
  return Object.entries(vars)
    .map(([k, v]) => `${k}=${/^[A-Za-z0-9_./:@%+-]*$/.test(v) ? v : `'${v.replace(/'/g, `'\\''`)}'`}`)
    .join("\n");
}

/**
 * Writes a credentials file atomically (temp file in the same folder, then rename) with mode 0600:
 * a reader never sees half a file, and a symlink at the path is replaced, not written through.
 * Refuses a folder and a missing parent folder.
 */
export function writeCredentialsFile(file: string, content: string): string {
  const target = path.resolve(file);
  const parent = path.dirname(target);
  if (!existsSync(parent)) throw new CliError(`--out ${file}: folder ${parent} does not exist`, EXIT.USAGE, "create it first, or choose another path");
  if (existsSync(target)) {
    const stat = statSync(target);
    if (stat.isDirectory()) throw new CliError(`--out ${file}: is a folder; give a file name (e.g. ${path.join(file, ".pgpass")})`, EXIT.USAGE);
  }
  try {
    writeFileAtomic(target, content, 0o600);
  } catch (error) {
    throw new CliError(`--out ${file}: cannot write it: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, EXIT.ERROR, "choose a path you can write");
  }
  return target;
}

