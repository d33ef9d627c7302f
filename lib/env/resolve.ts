/**
 * "Where do I connect?" for the operational commands (verify, drift, monitor, maintain, cache,
 * and the DR drill): either a local environment by name (`--env`: embedded, or Docker made by
 * `env:ci --engine docker`; both keep the same record and credentials), or any server given by
 * URL (`--database-url` / `--redis-url`, e.g. from Pulumi stack outputs). In both cases `--env`
 * names the spec to compare against (default dev).
 *
 * URLs: the password may be left out of the URL and given in $PGPASSWORD / $REDISCLI_AUTH (the
 * libpq and redis-cli conventions), which keeps it out of argv (visible in `ps`). A password in a
 * URL is accepted, redacted from every output, and warned about.
 */
import type { ClientConfig } from "pg";
import type { RedisOptions } from "ioredis";
import { type FlagSpec } from "../cli.js";
import { CliError, EXIT } from "../errors.js";
import { registerSecret } from "../redact.js";
import type { Spec } from "../spec/schema.js";
import { specOf } from "../state/record.js";
import { openEnvironment, urlEnvironment, type Environment, type PostgresEndpoint, type RedisEndpoint } from "./environment.js";
import type { PostgresRole, RedisRole } from "../spec/access.js";

export interface EnvironmentOptions {
  env?: string;
  databaseUrl?: string;
  redisUrl?: string;
  /** Where to warn about passwords in argv (default: nowhere). */
  warn?: (message: string) => void;
}

/** The flags every command that connects takes; spread into a Command's `flags`. */
export const ENVIRONMENT_FLAGS = {
  env: { type: "string", help: "environment: a local env (Pulumi.<env>.yaml stack or ephemeral id), or the spec to compare URLs with", default: "dev" },
  "database-url": { type: "string", help: "check this PostgreSQL instead of the env's (postgresql://user@host:port/db; password in $PGPASSWORD)" },
  "redis-url": { type: "string", help: "check this Redis instead of the env's (redis[s]://user@host:port/db; password in $REDISCLI_AUTH)" },
} as const satisfies Record<string, FlagSpec>;

/** The environment the ENVIRONMENT_FLAGS values name. */
export function environmentFromFlags(flags: { env?: string; "database-url"?: string; "redis-url"?: string }, warn?: (message: string) => void): Environment {
  return resolveEnvironment({ env: flags.env || "dev", databaseUrl: flags["database-url"] || undefined, redisUrl: flags["redis-url"] || undefined, warn });
}

/** A local environment by name, or the servers of the given URLs compared with `env`'s spec. */
export function resolveEnvironment(options: EnvironmentOptions): Environment {
  const env = options.env ?? "dev";
  if (options.databaseUrl === undefined && options.redisUrl === undefined) return openEnvironment(env);
  const spec = specOf(env);
  const postgres = options.databaseUrl === undefined ? undefined : postgresFromUrl(options.databaseUrl, spec, options.warn);
  const redis = options.redisUrl === undefined ? undefined : redisFromUrl(options.redisUrl, spec, options.warn);
  return urlEnvironment(env, spec, postgres, redis);
}

function badUrl(flag: string, url: string, why: string, allowed: string): CliError {
  return new CliError(`--${flag} ${JSON.stringify(redactUrl(url))}: ${why}`, EXIT.USAGE, allowed);
}

/** The URL with its password replaced, for messages. */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z]+:\/\/[^:/@]*:)[^@]*@/i, "$1***@");
}

/**
 * A postgresql:// URL as node-postgres options. Parsed here rather than passed as
 * `connectionString`, because node-postgres lets the string override an explicit `database`, and
 * the commands need other databases of the same server (drift's scratch database).
 * Query parameters: sslmode=disable|require|verify-ca|verify-full (require: encrypted, not
 * verified, as libpq does).
 */
export function postgresFromUrl(url: string, spec: Spec, warn?: (message: string) => void): PostgresEndpoint {
  const allowed = "expected postgresql://USER[:PASSWORD]@HOST[:PORT][/DATABASE][?sslmode=require|verify-full|disable]";
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw badUrl("database-url", url, "not a URL", allowed);
  }
  if (parsed.protocol !== "postgresql:" && parsed.protocol !== "postgres:") throw badUrl("database-url", url, `scheme ${parsed.protocol} is not postgresql:`, allowed);
  if (!parsed.hostname) throw badUrl("database-url", url, "no host", allowed);
  const user = decodeURIComponent(parsed.username);
  if (!user) throw badUrl("database-url", url, "no user name", allowed);
  let password = decodeURIComponent(parsed.password);
  if (password) {
    registerSecret(password);
    warn?.("warning: --database-url holds a password, which other local users can read in the process list; prefer $PGPASSWORD");
  } else {
    password = process.env.PGPASSWORD ?? "";
    registerSecret(password);
  }
  const database = decodeURIComponent(parsed.pathname.replace(/^\//, "")) || spec.postgres.database;
  const port = parsed.port ? Number(parsed.port) : 5432;
  const sslmode = parsed.searchParams.get("sslmode") ?? "prefer";
  const modes = ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"];
  if (!modes.includes(sslmode)) throw badUrl("database-url", url, `sslmode=${sslmode} is not one of ${modes.join(", ")}`, allowed);
  for (const key of parsed.searchParams.keys()) {
    if (key !== "sslmode") throw badUrl("database-url", url, `unsupported parameter ${key}`, allowed);
  }
  // prefer/allow: node-postgres cannot fall back, so they mean "no TLS" here, as for a local server.
  const ssl = sslmode === "require" ? { rejectUnauthorized: false } : sslmode.startsWith("verify") ? { rejectUnauthorized: true } : undefined;
  const host = parsed.hostname.replace(/^\[|\]$/g, "");
  return {
    config: (_role, db = database) => ({ host, port, user, password, database: db, ssl, connectionTimeoutMillis: 10_000 }),
    label: `${user}@${parsed.host}/${database}`,
  };
}

/** A redis:// or rediss:// URL as ioredis options (db from the path, else the spec's). */
export function redisFromUrl(url: string, spec: Spec, warn?: (message: string) => void): RedisEndpoint {
  const allowed = "expected redis[s]://[USER[:PASSWORD]@]HOST[:PORT][/DB]";
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw badUrl("redis-url", url, "not a URL", allowed);
  }
  if (parsed.protocol !== "redis:" && parsed.protocol !== "rediss:") throw badUrl("redis-url", url, `scheme ${parsed.protocol} is not redis: or rediss:`, allowed);
  if (!parsed.hostname) throw badUrl("redis-url", url, "no host", allowed);
  const username = decodeURIComponent(parsed.username) || undefined;
  let password = decodeURIComponent(parsed.password);
  if (password) {
    registerSecret(password);
    warn?.("warning: --redis-url holds a password, which other local users can read in the process list; prefer $REDISCLI_AUTH");
  } else {
    password = process.env.REDISCLI_AUTH ?? "";
    registerSecret(password);
  }
  const dbText = parsed.pathname.replace(/^\//, "");
  const db = dbText === "" ? spec.redis.db : Number(dbText);
  if (!Number.isInteger(db) || db < 0 || db > 15) throw badUrl("redis-url", url, `database ${JSON.stringify(dbText)} is not 0-15`, allowed);
  const port = parsed.port ? Number(parsed.port) : 6379;
  const host = parsed.hostname.replace(/^\[|\]$/g, "");
  const options: RedisOptions = {
    host,
    port,
    db,
    ...(username ? { username } : {}),
    ...(password ? { password } : {}),
    ...(parsed.protocol === "rediss:" ? { tls: { servername: host } } : {}),
    connectTimeout: 10_000,
  };
  return { options: () => ({ ...options }), label: `${username ? `${username}@` : ""}${parsed.host}/${db}` };
}
