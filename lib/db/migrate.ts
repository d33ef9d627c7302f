/**
 * Migrations with node-pg-migrate (TypeScript files in migrations/, loaded by its own jiti),
 * run as the schema owner. Its advisory lock keeps two runners from migrating at once.
 */
import { readdirSync } from "node:fs";
import path from "node:path";
import pg from "pg";
import { PROJECT_DIR } from "../spec/load.js";

export const MIGRATIONS_DIR = path.join(PROJECT_DIR, "migrations");
export const MIGRATIONS_TABLE = "pgmigrations";

/** Migration names in order (file names without extension): the code's view of the schema. */
export function knownMigrations(): string[] {
  return readdirSync(MIGRATIONS_DIR)
    .filter((f) => /^\d+_.+\.ts$/.test(f))
    .map((f) => f.replace(/\.ts$/, ""))
    .sort();
}

/** The newest migration the code knows. */
export function migrationHead(): string {
  return knownMigrations().at(-1)!;
}

/** Names of the migrations applied to a database, oldest first (empty when none ran). */
export async function appliedMigrations(client: pg.ClientBase): Promise<string[]> {
  const exists = await client.query("SELECT to_regclass($1) IS NOT NULL AS present", [`public.${MIGRATIONS_TABLE}`]);
  if (!exists.rows[0].present) return [];
  const { rows } = await client.query(`SELECT name FROM ${MIGRATIONS_TABLE} ORDER BY run_on, id`);
  return rows.map((r: { name: string }) => r.name);
}

export interface MigrateOptions {
  direction: "up" | "down";
  /** Migrations to run; default all (up) or 1 (down). */
  count?: number;
  log?: (message: string) => void;
}

/** Applies (or reverts) migrations over one client connected as the schema owner. */
export async function migrate(client: pg.ClientBase, options: MigrateOptions): Promise<string[]> {
  // Loaded here, not at the top: backup and restore use this module's queries, not the runner.
  const { runner } = await import("node-pg-migrate");
  const ran = await runner({
    dbClient: client,
    dir: MIGRATIONS_DIR,
    migrationsTable: MIGRATIONS_TABLE,
    direction: options.direction,
    count: options.count ?? (options.direction === "down" ? 1 : Infinity),
    checkOrder: true,
    singleTransaction: true,
    log: () => undefined,
    logger: { debug: () => undefined, info: () => undefined, warn: (m: string) => options.log?.(m), error: (m: string) => options.log?.(m) },
  });
  return ran.map((m) => m.name);
}

/** Applied and pending migrations. */
export async function migrationStatus(client: pg.ClientBase): Promise<{ applied: string[]; pending: string[]; unknown: string[] }> {
  const applied = await appliedMigrations(client);
  const known = knownMigrations();
  return {
    applied,
    pending: known.filter((m) => !applied.includes(m)),
    unknown: applied.filter((m) => !known.includes(m)),
  };
}
