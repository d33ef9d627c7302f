/**
 * Live settings vs the spec: PostgreSQL's pg_settings (compared in bytes where a unit applies)
 * and Redis's CONFIG GET (sizes in bytes). `up`, `verify` and `drift` all compare through here.
 */
import type pg from "pg";
import type { Redis } from "ioredis";
import { localPostgresSettings, redisConfigGetValue, redisSettings, type ArchiveTarget } from "../spec/render.js";
import type { Spec } from "../spec/schema.js";
import { parsePgSize } from "../spec/units.js";

export interface SettingCheck {
  server: "postgres" | "redis";
  name: string;
  expected: string;
  actual: string | undefined;
  ok: boolean;
  /** PostgreSQL: the file holds a new value that needs a restart. */
  pendingRestart?: boolean;
  /** Where the live value comes from (pg_settings.source), when known. */
  source?: string;
  /**
   * Why the live value could not be read (then `ok` says nothing): pg_settings hides
   * superuser-only settings (shared_preload_libraries, …) from a login without
   * pg_read_all_settings, such as the schema owner connecting by URL.
   */
  unreadable?: string;
}

/** Bytes of a pg_settings value in its unit (`8kB`, `kB`, `MB`…), or undefined for unitless. */
export function pgSettingBytes(setting: string, unit: string | null): number | undefined {
  if (!unit) return undefined;
  const match = /^(\d*)\s*(B|kB|MB|GB|TB)$/.exec(unit);
  if (!match) return undefined;
  return Number(setting) * Number(match[1] || 1) * parsePgSize(`1${match[2]}`)!;
}

/** The spec's settings on a server; with `archive` (a local target's archive folder), the archiving settings too. */
export async function checkPostgresSettings(client: pg.ClientBase, spec: Spec, archive?: ArchiveTarget): Promise<SettingCheck[]> {
  const declared = localPostgresSettings(spec, archive);
  const { rows } = await client.query<{ name: string; setting: string; unit: string | null; shown: string; pending_restart: boolean; source: string }>(
    "SELECT name, setting, unit, current_setting(name) AS shown, pending_restart, source FROM pg_settings WHERE name = ANY($1)",
    [declared.map((s) => s.name)],
  );
  const live = new Map(rows.map((r) => [r.name, r]));
  // A module's settings (basic_archive.*) are placeholders in a backend that has not loaded the
  // module: pg_settings lists none, current_setting() reads them as the file sets them.
  for (const s of declared.filter((d) => !live.has(d.name) && d.name.includes("."))) {
    const { rows: placeholder } = await client.query<{ v: string | null }>("SELECT current_setting($1, true) AS v", [s.name]);
    const v = placeholder[0]?.v;
    if (v !== null && v !== undefined) live.set(s.name, { name: s.name, setting: v, unit: null, shown: v, pending_restart: false, source: "configuration file" });
  }
  const missing = declared.filter((s) => !live.has(s.name));
  const privileged = missing.length ? await canReadAllSettings(client) : true;
  return declared.map((s) => {
    const row = live.get(s.name);
    if (!row && !privileged) {
      return { server: "postgres", name: s.name, expected: s.value, actual: undefined, ok: false, unreadable: `this login (not a superuser, no pg_read_all_settings) may not read ${s.name}; connect as the admin or GRANT pg_read_all_settings` };
    }
    let ok = false;
    if (row) {
      if (s.kind === "size") ok = pgSettingBytes(row.setting, row.unit) === parsePgSize(s.value);
      else if (s.kind === "list") ok = sameList(row.setting, s.value);
      else ok = row.setting === s.value;
    }
    return { server: "postgres", name: s.name, expected: s.value, actual: row?.shown, ok: ok && !row?.pending_restart, pendingRestart: row?.pending_restart, source: row?.source };
  });
}

/** Whether this login sees every setting: a superuser or a member of pg_read_all_settings. */
export async function canReadAllSettings(client: pg.ClientBase): Promise<boolean> {
  const { rows } = await client.query<{ can: boolean }>(
    "SELECT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) OR pg_has_role(current_user, 'pg_read_all_settings', 'MEMBER') AS can",
  );
  return rows[0]?.can === true;
}

function sameList(a: string, b: string): boolean {
  const norm = (v: string) => v.split(",").map((x) => x.trim()).filter(Boolean).sort().join(",");
  return norm(a) === norm(b);
}

/** The spec's Redis settings, read with one CONFIG GET (Redis 7 takes several names at once). */
export async function checkRedisSettings(redis: Redis, spec: Spec): Promise<SettingCheck[]> {
  const declared = redisSettings(spec);
  const reply = (await redis.call("CONFIG", "GET", ...declared.map((s) => s.name))) as string[];
  const live = new Map<string, string>();
  for (let i = 0; i + 1 < reply.length; i += 2) live.set(reply[i]!, reply[i + 1]!);
  return declared.map((s) => {
    const actual = live.get(s.name);
    const expected = redisConfigGetValue(s);
    return { server: "redis", name: s.name, expected, actual, ok: actual === expected };
  });
}
