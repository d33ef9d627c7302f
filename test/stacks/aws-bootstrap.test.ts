/**
 * `npm run bootstrap` for RDS, against a real PostgreSQL 16 made to look like RDS: a master user
 * that is not a superuser (CREATEROLE, owns the database, like RDS's), and an `rds_iam` role. The
 * roles come out with the local targets' privileges, and a second run changes nothing.
 */
import { describe, expect, it } from "vitest";
import { bootstrapRds, rdsBootstrapSql } from "../../lib/aws/bootstrap.js";
import { withPg } from "../../lib/db/clients.js";
import { loadSpec } from "../../lib/spec/load.js";
import { useEphemeralEnvironment } from "../support/embedded.js";

const env = useEphemeralEnvironment("dev");
const MASTER_PASSWORD = "Rds-like-master-1234";

describe("bootstrap of the app and read-only roles on an RDS-like server", () => {
  it("creates them with IAM logins and the local grants, idempotently, as a non-superuser master", async () => {
    const started = env();
    const admin = (db = "postgres") => started.connections.postgresConfig("admin", db);
    const spec = loadSpec("staging", { overrides: { postgres: { database: "rds_db", user: "rds_master", appUser: "rds_app", readonlyUser: "rds_ro" } } });
    await withPg(admin(), async (c) => {
      await c.query(`CREATE ROLE rds_master LOGIN CREATEROLE PASSWORD '${MASTER_PASSWORD}'`);
      await c.query("CREATE ROLE rds_iam NOLOGIN");
      // RDS's master may grant rds_iam (through rds_superuser).
      await c.query("GRANT rds_iam TO rds_master WITH ADMIN OPTION");
      await c.query("CREATE DATABASE rds_db OWNER rds_master");
    });
    // RDS lets rds_superuser create pg_stat_statements; here the admin does it beforehand.
    await withPg(admin("rds_db"), (c) => c.query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements"));
    const master = { ...admin("rds_db"), user: "rds_master", password: MASTER_PASSWORD };

    const first = await withPg(master, (c) => bootstrapRds(c, spec));
    expect(first.owner).toBe("rds_master");
    expect(first.roles).toEqual([
      { name: "rds_app", created: true, iam: true },
      { name: "rds_ro", created: true, iam: true },
    ]);
    await withPg(master, async (c) => {
      await c.query("CREATE TABLE prices (id int PRIMARY KEY, v numeric)");
      await c.query("CREATE TABLE pgmigrations (id int)");
    });
    const second = await withPg(master, (c) => bootstrapRds(c, spec));
    expect(second.roles.map((r) => r.created)).toEqual([false, false]);

    await withPg(admin("rds_db"), async (c) => {
      const can = async (role: string, table: string, privilege: string) =>
        (await c.query("SELECT has_table_privilege($1, $2, $3) AS ok", [role, table, privilege])).rows[0].ok as boolean;
      expect(await can("rds_app", "prices", "INSERT")).toBe(true);
      expect(await can("rds_ro", "prices", "SELECT")).toBe(true);
      expect(await can("rds_ro", "prices", "INSERT")).toBe(false);
      expect(await can("rds_app", "pgmigrations", "SELECT")).toBe(false); // postMigrationSql, as locally
      const roles = (await c.query("SELECT rolname, rolsuper, rolcreaterole, rolcanlogin FROM pg_roles WHERE rolname IN ('rds_app','rds_ro') ORDER BY 1")).rows;
      expect(roles).toEqual([
        { rolname: "rds_app", rolsuper: false, rolcreaterole: false, rolcanlogin: true },
        { rolname: "rds_ro", rolsuper: false, rolcreaterole: false, rolcanlogin: true },
      ]);
      expect((await c.query("SELECT has_database_privilege('rds_app', 'rds_db', 'CONNECT') AS ok")).rows[0].ok).toBe(true);
      expect((await c.query("SELECT has_database_privilege('public', 'rds_db', 'CONNECT') AS ok")).rows[0].ok).toBe(false);
    });
    await withPg(admin(), async (c) => {
      await c.query("DROP DATABASE rds_db");
      await c.query("DROP ROLE rds_app; DROP ROLE rds_ro; DROP ROLE rds_iam; DROP ROLE rds_master");
    });
  });

  it("sets no password and keeps the superuser-only grant from failing the transaction", () => {
    const sql = rdsBootstrapSql(loadSpec("prod"));
    expect(sql).not.toMatch(/PASSWORD/i);
    expect(sql).toMatch(/EXCEPTION WHEN insufficient_privilege[\s\S]*GRANT SET ON PARAMETER session_replication_role/);
    expect(sql).toContain("GRANT rds_iam TO");
  });
});
