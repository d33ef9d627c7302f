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
  return (await runMigrations(client, options, false)).ran;
}

/** A step of a migration run that loses data: a table, a column, or rows. */
export interface DestructiveStep {
  migration: string;
  /** DROP TABLE, DROP COLUMN, TRUNCATE, DELETE, DROP SCHEMA, … */
  kind: string;
  /** The table it is about (schema-qualified when the SQL qualifies it). */
  table: string;
  /** Rows the table holds now (what would be lost), when it exists. */
  rows?: number;
  sql: string;
}

/**
 * What a run would do, without doing it: node-pg-migrate's dry run renders every migration's SQL,
 * which is read for the statements that lose data (so `migrate down` can ask for --yes and say
 * what would go).
 */
export async function planMigrations(client: pg.ClientBase, options: MigrateOptions): Promise<{ migrations: string[]; destructive: DestructiveStep[] }> {
  const { ran, sql } = await runMigrations(client, options, true);
  const destructive: DestructiveStep[] = [];
  for (const { migration, text } of sql) {
    for (const statement of text.split(/;\s*\n/)) {
      const step = destructiveStep(statement);
      if (!step) continue;
      if (step.kind === "DELETE" && new RegExp(`"?${MIGRATIONS_TABLE}"?\\s+WHERE\\s+name=`, "i").test(statement)) continue; // the runner's own bookkeeping
      destructive.push({ migration, ...step, sql: statement.trim() });
    }
  }
  for (const step of destructive) {
    const exists = await client.query("SELECT to_regclass($1) IS NOT NULL AS present", [step.table]);
    if (exists.rows[0].present) step.rows = Number((await client.query(`SELECT count(*) AS n FROM ${step.table}`)).rows[0].n);
  }
  return { migrations: ran, destructive };
}

const DESTRUCTIVE: { kind: string; pattern: RegExp }[] = [
  { kind: "DROP TABLE", pattern: /^\s*DROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?((?:"[^"]+"|\w+)(?:\.(?:"[^"]+"|\w+))?)/i },
  { kind: "DROP MATERIALIZED VIEW", pattern: /^\s*DROP\s+MATERIALIZED\s+VIEW\s+(?:IF\s+EXISTS\s+)?((?:"[^"]+"|\w+)(?:\.(?:"[^"]+"|\w+))?)/i },
  { kind: "DROP COLUMN", pattern: /^\s*ALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?((?:"[^"]+"|\w+)(?:\.(?:"[^"]+"|\w+))?)[\s\S]*\bDROP\s+(?:COLUMN\s+)?(?!CONSTRAINT\b|DEFAULT\b|NOT\b|IDENTITY\b|EXPRESSION\b)/i },
  { kind: "TRUNCATE", pattern: /^\s*TRUNCATE\s+(?:TABLE\s+)?(?:ONLY\s+)?((?:"[^"]+"|\w+)(?:\.(?:"[^"]+"|\w+))?)/i },
  { kind: "DELETE", pattern: /^\s*DELETE\s+FROM\s+(?:ONLY\s+)?((?:"[^"]+"|\w+)(?:\.(?:"[^"]+"|\w+))?)/i },
  { kind: "DROP SCHEMA", pattern: /^\s*DROP\s+SCHEMA\s+(?:IF\s+EXISTS\s+)?((?:"[^"]+"|\w+))/i },
];

function destructiveStep(statement: string): { kind: string; table: string } | undefined {
  const text = statement.replace(/^\s*(--[^\n]*\n\s*)*/, "");
  for (const { kind, pattern } of DESTRUCTIVE) {
    const match = pattern.exec(text);
    if (match) return { kind, table: match[1]! };
  }
  return undefined;
}

async function runMigrations(client: pg.ClientBase, options: MigrateOptions, dryRun: boolean): Promise<{ ran: string[]; sql: { migration: string; text: string }[] }> {
  // Loaded here, not at the top: backup and restore use this module's queries, not the runner.
  const { runner } = await import("node-pg-migrate");
  const sql: { migration: string; text: string }[] = [];
  let current = "";
  const ran = await runner({
    dryRun,
    verbose: dryRun, // the SQL reaches logger.debug only when verbose
    dbClient: client,
    dir: MIGRATIONS_DIR,
    migrationsTable: MIGRATIONS_TABLE,
    direction: options.direction,
    count: options.count ?? (options.direction === "down" ? 1 : Infinity),
    checkOrder: true,
    singleTransaction: true,
    log: () => undefined,
    logger: {
      // The dry run's SQL arrives as debug lines, after the info line naming its migration.
      debug: (m: string) => void (dryRun && sql.push({ migration: current, text: m })),
      info: (m: string) => void (current = /### MIGRATION (\S+)/.exec(m)?.[1] ?? current),
      warn: (m: string) => options.log?.(m),
      error: (m: string) => options.log?.(m),
    },
  });
  return { ran: ran.map((m) => m.name), sql };
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
