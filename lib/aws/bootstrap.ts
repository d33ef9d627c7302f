/**
 * The app and read-only roles on RDS: the local targets create them at first start
 * (lib/db/roles.ts); Pulumi does not run SQL, so `npm run bootstrap -- --env staging|prod` runs the
 * same privileges SQL (privilegesSql) over the master user's connection, from a host that reaches
 * the private endpoint. Idempotent: roles that exist are left as they are, grants are re-stated.
 *
 * Differences from the local targets, and why:
 *   - the owner is the RDS master user, which exists (RDS manages its password in Secrets
 *     Manager, so the bootstrap never sets it);
 *   - the app and read-only roles get no password: they log in with IAM tokens (`rds_iam`,
 *     aws.iamAuth), so there is no password to store or rotate;
 *   - a statement only a true superuser may run (GRANT SET ON PARAMETER; RDS has none) is kept
 *     but turned into a notice when refused: RDS lets rds_superuser set that parameter anyway.
 */
import type { Client } from "pg";
import { postMigrationSql, privilegesSql, sqlIdent, sqlLiteral } from "../db/roles.js";
import { MIGRATIONS_TABLE } from "../db/migrate.js";
import type { Spec } from "../spec/schema.js";

/** The SQL, as one script (no secrets in it). */
export function rdsBootstrapSql(spec: Spec): string {
  const pg = spec.postgres;
  // Only a superuser may touch the SUPERUSER attribute (RDS has none), so attributes are changed
  // only where they differ, and a superuser app role is refused rather than silently kept.
  const role = (name: string) => `DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = ${sqlLiteral(name)}) THEN
    CREATE ROLE ${sqlIdent(name)} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
  END IF;
  IF (SELECT rolsuper FROM pg_roles WHERE rolname = ${sqlLiteral(name)}) THEN
    RAISE EXCEPTION 'role % is a superuser: a least-privilege role must not be; drop or fix it first', ${sqlLiteral(name)};
  END IF;
  IF EXISTS (SELECT FROM pg_roles WHERE rolname = ${sqlLiteral(name)} AND (NOT rolcanlogin OR rolcreatedb OR rolcreaterole)) THEN
    ALTER ROLE ${sqlIdent(name)} LOGIN NOCREATEDB NOCREATEROLE;
  END IF;
END $$;`;
  const privileges = rdsPrivilegesSql(spec);
  return `-- App and read-only roles on RDS (lib/aws/bootstrap.ts; privileges from lib/db/roles.ts)
${role(pg.appUser)}
${role(pg.readonlyUser)}
DO $$ BEGIN
  IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'rds_iam') THEN
    GRANT rds_iam TO ${sqlIdent(pg.appUser)}, ${sqlIdent(pg.readonlyUser)};
  END IF;
END $$;
${privileges}
DO $$ BEGIN
  IF to_regclass(${sqlLiteral(`public.${MIGRATIONS_TABLE}`)}) IS NOT NULL THEN
    EXECUTE ${sqlLiteral(postMigrationSql(spec, MIGRATIONS_TABLE).replace(/;$/, ""))};
  END IF;
END $$;
`;
}

/**
 * The local targets' privileges SQL as RDS can run it: a superuser-only statement becomes a
 * notice when refused. Also drift's reference for an AWS stack (its scratch database).
 */
export function rdsPrivilegesSql(spec: Spec): string {
  return privilegesSql(spec).replace(/^(GRANT SET ON PARAMETER [^;]+;)$/gm, (statement) =>
    `DO $$ BEGIN
  EXECUTE ${sqlLiteral(statement.slice(0, -1))};
EXCEPTION WHEN insufficient_privilege THEN
  RAISE NOTICE 'not granted (no superuser here): %', ${sqlLiteral(statement.slice(0, -1))};
END $$;`,
  );
}

export interface BootstrapResult {
  database: string;
  owner: string;
  roles: { name: string; created: boolean; iam: boolean }[];
  seconds: number;
}

/** Runs the bootstrap in one transaction on a client connected as the owner (the RDS master user) to postgres.database. */
export async function bootstrapRds(client: Client, spec: Spec): Promise<BootstrapResult> {
  const started = Date.now();
  const pg = spec.postgres;
  const names = [pg.appUser, pg.readonlyUser];
  const before = new Set((await client.query<{ rolname: string }>("SELECT rolname FROM pg_roles WHERE rolname = ANY($1)", [names])).rows.map((r) => r.rolname));
  await client.query("BEGIN");
  try {
    await client.query(rdsBootstrapSql(spec));
    await client.query("COMMIT");
  } catch (error) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw error;
  }
  const iam = new Set(
    (
      await client.query<{ member: string }>(
        "SELECT m.rolname AS member FROM pg_auth_members a JOIN pg_roles r ON r.oid = a.roleid JOIN pg_roles m ON m.oid = a.member WHERE r.rolname = 'rds_iam'",
      )
    ).rows.map((r) => r.member),
  );
  const who = (await client.query<{ db: string; me: string }>("SELECT current_database() AS db, current_user AS me")).rows[0]!;
  return { database: who.db, owner: who.me, roles: names.map((name) => ({ name, created: !before.has(name), iam: iam.has(name) })), seconds: (Date.now() - started) / 1000 };
}
