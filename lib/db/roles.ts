/**
 * Least-privilege roles of the database (the same SQL for every target):
 * - `postgres.user` (crypto_user) owns the database and schema and runs migrations (DDL);
 * - `postgres.appUser` gets DML on the tables the owner creates, nothing else;
 * - `postgres.readonlyUser` may only read them.
 * The embedded engine runs it after initdb; the Docker target ships it as an initdb.d script.
 */
import { createHash, createHmac, pbkdf2Sync } from "node:crypto";
import type pg from "pg";
import type { Spec } from "../spec/schema.js";

/** Passwords of the three roles of the spec. */
export interface RolePasswords {
  owner: string;
  app: string;
  readonly: string;
  /** The base-backup role (postgres.backupUser); without it that role is left as it is. */
  backup?: string;
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
ALTER ROLE ${sqlIdent(name)} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD ${sqlLiteral(passwordForSql(password))};`;
  // The passwords are SQL literals here: keep this session's statements out of the server log
  // (slow-statement and error-statement lines) and out of pg_stat_statements' query texts.
  return `-- Least-privilege roles (lib/db/roles.ts)
SET log_statement = 'none';
SET log_min_duration_statement = -1;
SET log_min_error_statement = 'panic';
SET pg_stat_statements.track_utility = off;
${role(pg.user, passwords.owner)}
${role(pg.appUser, passwords.app)}
${role(pg.readonlyUser, passwords.readonly)}
${passwords.backup === undefined ? "" : backupRoleSql(spec, passwords.backup)}
${privilegesSql(spec)}`;
}

/**
 * The base-backup role: a replication login (BASE_BACKUP) that may write server files (TARGET
 * 'server'), and nothing else: no database of the project accepts it (CONNECT is revoked from
 * PUBLIC), and pg_hba lets it in only for replication from 127.0.0.1.
 */
function backupRoleSql(spec: Spec, password: string): string {
  const name = spec.postgres.backupUser;
  return `DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = ${sqlLiteral(name)}) THEN
    CREATE ROLE ${sqlIdent(name)} LOGIN REPLICATION;
  END IF;
END $$;
ALTER ROLE ${sqlIdent(name)} LOGIN REPLICATION NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS PASSWORD ${sqlLiteral(passwordForSql(password))};
GRANT pg_write_server_files TO ${sqlIdent(name)};`;
}

/**
 * What each role may do in `spec.postgres.database` (no secrets): run by bootstrapSql, and by
 * drift in its scratch database so that the reference privileges come from this very SQL.
 */
export function privilegesSql(spec: Spec): string {
  const pg = spec.postgres;
  const [owner, app, ro, db] = [pg.user, pg.appUser, pg.readonlyUser, pg.database].map(sqlIdent);
  return `ALTER DATABASE ${db} OWNER TO ${owner};
REVOKE ALL ON DATABASE ${db} FROM PUBLIC;
GRANT CONNECT ON DATABASE ${db} TO ${app}, ${ro};
ALTER SCHEMA public OWNER TO ${owner};
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO ${app}, ${ro};
ALTER DEFAULT PRIVILEGES FOR ROLE ${owner} IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO ${app};
ALTER DEFAULT PRIVILEGES FOR ROLE ${owner} IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO ${app};
ALTER DEFAULT PRIVILEGES FOR ROLE ${owner} IN SCHEMA public GRANT SELECT ON TABLES TO ${ro};
-- Bulk loads (lib/db/seed/load.ts) by the owner skip the per-row foreign-key triggers and lock the
-- referenced rows instead; the owner could drop those constraints anyway. Not the app role.
GRANT SET ON PARAMETER session_replication_role TO ${owner};
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
`;
}

/**
 * A SCRAM-SHA-256 verifier of a password, in the form PostgreSQL stores (and accepts in
 * `PASSWORD '…'`). With it the SQL never carries the password itself, so no statement log
 * (log_statement = all), error line or pg_stat_statements entry can show it.
 */
export function scramVerifier(password: string, salt = saltFor(password), iterations = 4096): string {
  const salted = pbkdf2Sync(password, salt, iterations, 32, "sha256");
  const clientKey = createHmac("sha256", salted).update("Client Key").digest();
  const storedKey = createHash("sha256").update(clientKey).digest();
  const serverKey = createHmac("sha256", salted).update("Server Key").digest();
  return `SCRAM-SHA-256$${iterations}:${salt.toString("base64")}$${storedKey.toString("base64")}:${serverKey.toString("base64")}`;
}

/**
 * A salt derived from the password: the same password always gives the same verifier, so the
 * Docker target's roles script (a Pulumi upload) does not change, and replace the container, on
 * every `pulumi up`. The passwords are 192-bit random values, so a per-password salt is as unique
 * as a random one.
 */
function saltFor(password: string): Buffer {
  return createHmac("sha256", "crypto-prediction-infra/scram-salt").update(password).digest().subarray(0, 16);
}

/** Printable ASCII (every generated password) is hashed here; anything else goes to the server's SASLprep. */
function passwordForSql(password: string): string {
  return /^[\x21-\x7e]+$/.test(password) ? scramVerifier(password) : password;
}

/** Run after migrations: the app and read-only roles may not touch the migrations' bookkeeping. */
export function postMigrationSql(spec: Spec, migrationsTable: string): string {
  const pg = spec.postgres;
  return `REVOKE ALL ON TABLE ${sqlIdent(migrationsTable)} FROM ${sqlIdent(pg.appUser)}, ${sqlIdent(pg.readonlyUser)};`;
}

/**
 * Runs role/privilege DDL (bootstrapSql, privilegesSql, postMigrationSql) as one transaction,
 * retried when another session changed the same catalog row meanwhile. Some of these rows are in
 * catalogs shared by the whole cluster (pg_authid, pg_parameter_acl), so `up` in an environment's
 * database and drift's scratch database of the same cluster collide ("tuple concurrently updated",
 * XX000), as do serialization failures and deadlocks (40001, 40P01). The SQL is idempotent, and
 * a failed attempt is rolled back whole, so running it again is safe.
 */
export async function applyRoleSql(client: pg.ClientBase, sql: string, attempts = 8): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await client.query(`BEGIN;\n${sql}\nCOMMIT;`);
      return;
    } catch (error) {
      await client.query("ROLLBACK").catch(() => undefined);
      if (attempt >= attempts || !isConcurrentCatalogUpdate(error)) throw error;
      await new Promise((r) => setTimeout(r, 20 * attempt + Math.floor(Math.random() * 30)));
    }
  }
}

/** A catalog row updated by another transaction meanwhile (worth trying again). */
export function isConcurrentCatalogUpdate(error: unknown): boolean {
  const e = error as { code?: string; message?: string };
  return e?.code === "40001" || e?.code === "40P01" || (e?.code === "XX000" && /tuple concurrently (updated|deleted)/.test(e.message ?? ""));
}
