/**
 * Least-privilege roles of the database (the same SQL for every target):
 * - `postgres.user` (crypto_user) owns the database and schema and runs migrations (DDL);
 * - `postgres.appUser` gets DML on the tables the owner creates, nothing else;
 * - `postgres.readonlyUser` may only read them.
 * The embedded engine runs it after initdb; the Docker target ships it as an initdb.d script.
 */
import type { Spec } from "../spec/schema.js";

/** Passwords of the three roles of the spec. */
export interface RolePasswords {
  owner: string;
  app: string;
  readonly: string;
}

/** A SQL string literal. */
export function sqlLiteral(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}

/** A SQL identifier (the spec restricts names to [a-z0-9_], so quoting is a formality). */
export function sqlIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/**
 * Creates the roles and hands the database to its owner. Runs as a superuser connected to
 * `spec.postgres.database`, which must exist. Idempotent: roles that exist get new passwords.
 */
export function bootstrapSql(spec: Spec, passwords: RolePasswords): string {
  const pg = spec.postgres;
  const [owner, app, ro, db] = [pg.user, pg.appUser, pg.readonlyUser, pg.database].map(sqlIdent);
  const role = (name: string, password: string) =>
    `DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = ${sqlLiteral(name)}) THEN
    CREATE ROLE ${sqlIdent(name)} LOGIN;
  END IF;
END $$;
ALTER ROLE ${sqlIdent(name)} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD ${sqlLiteral(password)};`;
  return `-- Least-privilege roles (lib/db/roles.ts)
SET log_statement = 'none';
${role(pg.user, passwords.owner)}
${role(pg.appUser, passwords.app)}
${role(pg.readonlyUser, passwords.readonly)}
ALTER DATABASE ${db} OWNER TO ${owner};
REVOKE ALL ON DATABASE ${db} FROM PUBLIC;
GRANT CONNECT ON DATABASE ${db} TO ${app}, ${ro};
ALTER SCHEMA public OWNER TO ${owner};
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO ${app}, ${ro};
ALTER DEFAULT PRIVILEGES FOR ROLE ${owner} IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO ${app};
ALTER DEFAULT PRIVILEGES FOR ROLE ${owner} IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO ${app};
ALTER DEFAULT PRIVILEGES FOR ROLE ${owner} IN SCHEMA public GRANT SELECT ON TABLES TO ${ro};
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
`;
}

/** Run after migrations: the app and read-only roles may not touch the migrations' bookkeeping. */
export function postMigrationSql(spec: Spec, migrationsTable: string): string {
  const pg = spec.postgres;
  return `REVOKE ALL ON TABLE ${sqlIdent(migrationsTable)} FROM ${sqlIdent(pg.appUser)}, ${sqlIdent(pg.readonlyUser)};`;
}
