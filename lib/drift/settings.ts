/**
 * Configuration drift of the servers: live settings against the spec, and against what nobody
 * declared. PostgreSQL: every spec setting (pg_settings, in its units), every ALTER SYSTEM
 * override (postgresql.auto.conf, loaded or not), every ALTER DATABASE/ROLE … SET, pending
 * restarts and broken config lines. Redis: the spec's settings and a baseline of Redis 7 defaults
 * the toolkit relies on (CONFIG GET), and the ACL users (extra users, a default user without a
 * password, an application user allowed a command it must not run).
 */
import type pg from "pg";
import type { Redis } from "ioredis";
import { redisAclLines } from "../spec/access.js";
import type { Environment } from "../env/environment.js";
import { localPostgresSettings, redisConfigGetValue, redisSettings } from "../spec/render.js";
import { archiveTargetOf } from "../verify/archive.js";
import type { Spec } from "../spec/schema.js";
import { checkPostgresSettings, type SettingCheck } from "../db/settings.js";

/** One finding: what, what the spec/migrations say, what is live, and how to fix it. */
export interface DriftItem {
  name: string;
  expected: string;
  actual: string;
  fix: string;
  /** Where the live value comes from, when known (a file and line, a catalog). */
  source?: string;
}

/** A live PostgreSQL setting as the report lists it. */
export interface PostgresSettingRow {
  name: string;
  expected?: string;
  /** As SHOW prints it. */
  shown: string;
  /** pg_settings.setting and its unit (e.g. 32768 × 8kB). */
  setting: string;
  unit: string | null;
  source: string;
  sourcefile: string | null;
  pendingRestart: boolean;
  inSpec: boolean;
}

/** A live Redis setting as the report lists it. */
export interface RedisSettingRow {
  name: string;
  expected: string;
  actual: string | undefined;
  /** spec: declared by the spec; baseline: a Redis 7 default the toolkit relies on. */
  from: "spec" | "baseline";
}

// ---- PostgreSQL ------------------------------------------------------------------------------

/** How to put a spec setting back, per kind of target. */
/** How to restart the servers of the environment a report is about (URLs: the operator's own way). */
function restartHint(target: Environment): string {
  return target.kind === "urls" ? "restart the server (reboot the instance)" : `restart the server: npm run down -- --env ${target.env} && npm run up -- --env ${target.env}`;
}

function reapplyHint(target: Environment): string {
  return target.kind === "urls"
    ? "set it back in the instance's parameter group (pulumi up applies the spec)"
    : `re-apply the spec: npm run up -- --env ${target.env}`;
}

export interface PostgresSettingsDrift {
  rows: PostgresSettingRow[];
  items: DriftItem[];
  /** Parts that could not be read (e.g. pg_file_settings needs a superuser). */
  errors: string[];
}

export async function postgresSettingsDrift(client: pg.ClientBase, spec: Spec, target: Environment): Promise<PostgresSettingsDrift> {
  const items: DriftItem[] = [];
  const errors: string[] = [];
  // Local targets archive WAL: their archiving settings are the spec's like the others.
  const archive = archiveTargetOf(target);
  const declared = new Map(localPostgresSettings(spec, archive).map((s) => [s.name, s]));
  const checks = new Map<string, SettingCheck>((await checkPostgresSettings(client, spec, archive)).map((c) => [c.name, c]));

  // ALTER SYSTEM writes postgresql.auto.conf; pg_file_settings reads the files as they are now,
  // so an override that was never reloaded shows too. Superuser (or pg_read_all_settings) only.
  let autoConf: { name: string; setting: string; applied: boolean; error: string | null; sourcefile: string; sourceline: number }[] = [];
  let fileErrors: { sourcefile: string; sourceline: number; name: string | null; error: string }[] = [];
  try {
    const { rows } = await client.query("SELECT name, setting, applied, error, sourcefile, sourceline FROM pg_file_settings ORDER BY seqno");
    autoConf = rows.filter((r) => /postgresql\.auto\.conf$/.test(r.sourcefile ?? ""));
    fileErrors = rows.filter((r) => r.error);
  } catch (error) {
    errors.push(`ALTER SYSTEM overrides not checked: pg_file_settings is not readable by this login (${(error as Error).message}); grant pg_read_all_settings or use the admin login`);
  }
  const overridden = [...new Set([...autoConf.map((r) => r.name), ...declared.keys(), ...fileErrors.flatMap((e) => (e.name ? [e.name] : []))])];
  const { rows: live } = await client.query<{ name: string; setting: string; unit: string | null; shown: string; source: string; sourcefile: string | null; pending_restart: boolean; context: string }>(
    `SELECT name, setting, unit, current_setting(name) AS shown, source, sourcefile, pending_restart, context
       FROM pg_settings WHERE name = ANY($1) OR pending_restart ORDER BY name`,
    [overridden],
  );
  const liveByName = new Map(live.map((r) => [r.name, r]));

  const rows: PostgresSettingRow[] = live.map((r) => ({
    name: r.name,
    expected: declared.get(r.name)?.value,
    shown: r.shown,
    setting: r.setting,
    unit: r.unit,
    source: r.source,
    sourcefile: r.sourcefile,
    pendingRestart: r.pending_restart,
    inSpec: declared.has(r.name),
  }));

  // 1. The spec's settings.
  for (const [name, check] of checks) {
    if (check.ok) continue;
    if (check.unreadable) {
      errors.push(`${name} not checked: ${check.unreadable}`);
      continue;
    }
    const row = liveByName.get(name);
    const fromAuto = autoConf.some((a) => a.name === name);
    items.push({
      name,
      expected: check.expected,
      actual: `${check.actual ?? "(absent)"}${row?.pending_restart ? " (a file holds a new value: pending restart)" : ""}`,
      source: row ? describeSource(row) : undefined,
      fix: fromAuto ? `ALTER SYSTEM RESET ${name}; SELECT pg_reload_conf();${row?.context === "postmaster" ? " then restart the server" : ""}` : row?.pending_restart ? `${restartHint(target)} to load the file's value, then check again` : reapplyHint(target),
    });
  }
  // 2. ALTER SYSTEM overrides: undeclared configuration, whatever their value.
  const lastAuto = new Map(autoConf.map((a) => [a.name, a])); // a later line wins
  for (const [name, entry] of lastAuto) {
    const spec = declared.get(name);
    if (spec && !checks.get(name)?.ok) continue; // already reported above, with this fix
    const row = liveByName.get(name);
    const loaded = row && row.sourcefile === entry.sourcefile;
    items.push({
      name,
      expected: spec ? `${spec.value} from the spec, not from ALTER SYSTEM` : "not overridden (the server's configuration file or default)",
      actual: `${entry.setting} set by ALTER SYSTEM${loaded ? "" : `, not loaded yet (live: ${row?.shown ?? "?"})`}`,
      source: `${entry.sourcefile}:${entry.sourceline}`,
      fix: `ALTER SYSTEM RESET ${name}; SELECT pg_reload_conf();${row?.context === "postmaster" ? " then restart the server" : ""} — or, if the value is wanted, declare it in the spec`,
    });
  }
  // 3. Pending restarts of settings outside the spec.
  for (const row of live) {
    if (row.pending_restart && !declared.has(row.name) && !lastAuto.has(row.name)) {
      items.push({ name: row.name, expected: `the live value (${row.shown})`, actual: "a configuration file holds a different value, loaded only at restart", source: describeSource(row), fix: "restart the server, or revert the file's line" });
    }
  }
  // 4. ALTER DATABASE / ALTER ROLE … SET: per-session defaults nobody declared.
  const { rows: dbRole } = await client.query<{ datname: string | null; rolname: string | null; config: string }>(
    `SELECT d.datname, r.rolname, unnest(s.setconfig) AS config
       FROM pg_db_role_setting s LEFT JOIN pg_database d ON d.oid = s.setdatabase LEFT JOIN pg_roles r ON r.oid = s.setrole
      ORDER BY 1, 2, 3`,
  );
  for (const r of dbRole) {
    const [name, ...value] = r.config.split("=");
    const scope = r.datname && r.rolname ? `ROLE ${r.rolname} IN DATABASE ${r.datname}` : r.datname ? `DATABASE ${r.datname}` : `ROLE ${r.rolname}`;
    const reset = r.datname && r.rolname ? `ALTER ROLE ${r.rolname} IN DATABASE ${r.datname} RESET ${name};` : r.datname ? `ALTER DATABASE ${r.datname} RESET ${name};` : `ALTER ROLE ${r.rolname} RESET ${name};`;
    items.push({
      name: `${name} (${scope})`,
      expected: declared.has(name!) ? `${declared.get(name!)!.value} from the spec for every session` : "no per-database or per-role override",
      actual: `${value.join("=")} set by ALTER ${scope.startsWith("ROLE") ? "ROLE" : "DATABASE"} … SET`,
      source: "pg_db_role_setting",
      fix: `${reset} — or, if the value is wanted, declare it in the spec`,
    });
  }
  // 5. Lines the server could not apply: a restart-only setting whose file value differs from the
  //    live one, or a line it refuses. ALTER SYSTEM lines were reported above.
  for (const e of fileErrors) {
    if (autoConf.some((a) => a.sourcefile === e.sourcefile && a.sourceline === e.sourceline)) continue;
    const restartOnly = /could not be applied/i.test(e.error);
    const row = e.name ? liveByName.get(e.name) : undefined;
    // A command-line setting (the Docker target's `postgres -c …`) outranks every file: the
    // file's line can never apply, so it is not waiting for a restart.
    if (restartOnly && row && (row.source === "command line" || row.source === "override")) continue;
    items.push({
      name: e.name ?? "(config line)",
      expected: restartOnly ? `the file's value to be live` : "a line the server accepts",
      actual: restartOnly ? `live ${row?.shown ?? "value differs"}; the file's value needs a restart` : e.error,
      source: `${e.sourcefile}:${e.sourceline}`,
      fix: restartOnly ? `${restartHint(target)}, or revert the line` : "correct or remove the line, then SELECT pg_reload_conf()",
    });
  }
  return { rows, items, errors };
}

function describeSource(row: { source: string; sourcefile: string | null }): string {
  return row.sourcefile ? `${row.source} (${row.sourcefile})` : row.source;
}

// ---- Redis -----------------------------------------------------------------------------------

/**
 * Redis 7 defaults the toolkit relies on but the spec does not set: durability (stop writes when
 * a snapshot fails, checksums, AOF rewrite behaviour), safety (protected mode, no DEBUG/MODULE
 * commands), capacity and behaviour. A change to any of these is drift even though the guide
 * does not mention it.
 */
export const REDIS_BASELINE: Readonly<Record<string, string>> = {
  "protected-mode": "yes",
  "stop-writes-on-bgsave-error": "yes",
  rdbcompression: "yes",
  rdbchecksum: "yes",
  "aof-use-rdb-preamble": "yes",
  "no-appendfsync-on-rewrite": "no",
  "auto-aof-rewrite-percentage": "100",
  "auto-aof-rewrite-min-size": "67108864",
  maxclients: "10000",
  timeout: "0",
  "tcp-keepalive": "300",
  databases: "16",
  "maxmemory-samples": "5",
  hz: "10",
  "notify-keyspace-events": "",
  "slowlog-log-slower-than": "10000",
  "lazyfree-lazy-eviction": "no",
  "io-threads": "1",
  "enable-debug-command": "no",
  "enable-module-command": "no",
  "enable-protected-configs": "no",
};

export interface RedisSettingsDrift {
  rows: RedisSettingRow[];
  items: DriftItem[];
  errors: string[];
}

/** The spec's and the baseline's settings, read with one CONFIG GET. */
export async function redisSettingsDrift(redis: Redis, spec: Spec, target: Environment): Promise<RedisSettingsDrift> {
  const wanted: RedisSettingRow[] = [
    ...redisSettings(spec).map((s) => ({ name: s.name, expected: redisConfigGetValue(s), actual: undefined, from: "spec" as const })),
    ...Object.entries(REDIS_BASELINE).map(([name, expected]) => ({ name, expected, actual: undefined, from: "baseline" as const })),
  ];
  const reply = (await redis.call("CONFIG", "GET", ...wanted.map((w) => w.name))) as string[];
  const live = new Map<string, string>();
  for (let i = 0; i + 1 < reply.length; i += 2) live.set(reply[i]!, reply[i + 1]!);
  const rows = wanted.map((w) => ({ ...w, actual: live.get(w.name) }));
  const items: DriftItem[] = rows
    .filter((r) => r.actual !== r.expected)
    .map((r) => ({
      name: r.name,
      expected: `${r.expected === "" ? '""' : r.expected}${r.from === "baseline" ? " (Redis 7 default)" : ""}`,
      actual: r.actual === undefined ? "(not reported)" : r.actual === "" ? '""' : r.actual,
      source: "CONFIG GET",
      fix:
        `CONFIG SET ${r.name} ${r.expected === "" ? '""' : r.expected} (as the admin user)` +
        (target.kind === "urls" ? "" : `; npm run up -- --env ${target.env} also re-applies the spec`) +
        (r.from === "baseline" ? " — or, if the value is wanted, declare it in the spec" : ""),
    }));
  return { rows, items, errors: [] };
}

/** A forbidden command as ACL DRYRUN needs it (with arguments of a valid arity). */
const DRYRUN_ARGS: Readonly<Record<string, string[]>> = {
  keys: ["keys", "*"],
  config: ["config", "get", "maxmemory"],
  debug: ["debug", "object", "x"],
  script: ["script", "flush"],
  flushall: ["flushall"],
  flushdb: ["flushdb"],
  shutdown: ["shutdown"],
};

/**
 * The ACL users: only `default` (admin, with a password) and the application user, who must be
 * denied every command its rules deny (read from the same ACL lines the servers are given) and
 * the dangerous categories (INFO, ACL and MONITOR stand for them, unless the lines allow one back).
 */
export async function redisAclDrift(redis: Redis, spec: Spec): Promise<DriftItem[]> {
  const items: DriftItem[] = [];
  const appUser = spec.redis.appUser;
  const users = (await redis.call("ACL", "USERS")) as string[];
  for (const user of users) {
    if (user !== "default" && user !== appUser) {
      items.push({ name: `ACL user ${user}`, expected: `only default and ${appUser}`, actual: `user ${user} exists`, source: "ACL USERS", fix: `ACL DELUSER ${user} — or, if it is wanted, declare it (lib/engines/docker/containers.ts redisAclLines)` });
    }
  }
  const flagsOf = async (user: string) => {
    const info = (await redis.call("ACL", "GETUSER", user)) as unknown[] | null;
    if (!info) return undefined;
    const i = info.indexOf("flags");
    return (info[i + 1] as string[]) ?? [];
  };
  const defaultFlags = await flagsOf("default");
  if (defaultFlags?.includes("nopass")) {
    items.push({ name: "ACL user default", expected: "a password", actual: "nopass: anyone who reaches the port is admin", source: "ACL GETUSER default", fix: "ACL SETUSER default resetpass >NEWPASSWORD (and store it as the environment's admin password)" });
  }
  const appFlags = await flagsOf(appUser);
  if (!appFlags) {
    items.push({ name: `ACL user ${appUser}`, expected: "exists (the application's user)", actual: "missing", source: "ACL USERS", fix: `re-create it: npm run up -- --env ${spec.env} (local environments), or ACL SETUSER ${appUser} with the rules of redisAclLines (lib/engines/docker/containers.ts)` });
    return items;
  }
  if (!appFlags.includes("on")) items.push({ name: `ACL user ${appUser}`, expected: "on", actual: "off: the application cannot log in", source: "ACL GETUSER", fix: `ACL SETUSER ${appUser} on` });
  const appLine = redisAclLines(spec, "x", "x").find((l) => l.startsWith(`user ${appUser} `)) ?? "";
  const denied = [...appLine.matchAll(/ -([a-z|]+)(?= |$)/g)].map((m) => m[1]!);
  const allowed = new Set([...appLine.matchAll(/ \+([a-z|]+)(?= |$)/g)].map((m) => m[1]!));
  // The explicit denials, plus commands that stand for the denied categories (@dangerous, @admin)
  // unless the line allows them back (e.g. +info).
  const probes = [...denied.map((c) => DRYRUN_ARGS[c] ?? [c]), ["info"], ["acl", "list"], ["monitor"]].filter((c) => !allowed.has(c[0]!));
  for (const command of probes) {
    const reply = await (redis.call("ACL", "DRYRUN", appUser, ...command) as Promise<string>).catch((e: Error) => `ERR ${e.message}`);
    if (reply === "OK") {
      items.push({ name: `ACL ${appUser}: ${command[0]!.toUpperCase()}`, expected: "denied", actual: "allowed", source: "ACL DRYRUN", fix: `ACL SETUSER ${appUser} -${command[0]} (and find out who widened the rules: ACL LOG)` });
    }
  }
  return items;
}
