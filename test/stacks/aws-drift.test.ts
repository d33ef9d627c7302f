/**
 * drift against an AWS stack (servers given by URL, spec.target aws) compares the roles'
 * privileges too, as `npm run bootstrap` grants them: here on a real PostgreSQL 16 whose owner
 * login stands in for the RDS master user (one login for every role, like an AWS URL target).
 */
import { afterAll, describe, expect, it } from "vitest";
import { withPg } from "../../lib/db/clients.js";
import { reviewDrift } from "../../lib/drift/drift.js";
import { resolveEnvironment } from "../../lib/env/resolve.js";
import { useEphemeralEnvironment } from "../support/embedded.js";

const env = useEphemeralEnvironment("dev");
const saved = process.env.PGPASSWORD;
afterAll(() => {
  if (saved === undefined) delete process.env.PGPASSWORD;
  else process.env.PGPASSWORD = saved;
});

describe("drift on an AWS stack's URL compares privileges", () => {
  it("finds none after the bootstrap's grants, and names a revoked one", async () => {
    const started = env();
    const admin = started.connections.postgresConfig("admin");
    const owner = started.connections.postgresConfig("owner");
    // The RDS master may create databases and extensions (rds_superuser); the local owner may not.
    await withPg(admin, (c) => c.query(`ALTER ROLE ${owner.user} SUPERUSER`));
    try {
      process.env.PGPASSWORD = String(owner.password);
      // staging's spec names the same database and roles as dev's (the guide's).
      const target = resolveEnvironment({ env: "staging", databaseUrl: `postgresql://${owner.user}@127.0.0.1:${owner.port}/${owner.database}` });
      expect(target.perRoleLogins).toBe(false);
      const clean = await reviewDrift(target, target.spec, { infra: "no" });
      const schema = clean.sections.find((s) => s.id === "schema")!;
      expect(schema.compared).toContain("and privileges");
      expect(schema.items).toEqual([]);
      expect(schema.status).toBe("ok");

      await withPg(admin, (c) => c.query(`REVOKE SELECT ON TABLE market_data FROM ${started.spec.postgres.readonlyUser}`));
      const drifted = await reviewDrift(target, target.spec, { infra: "no" });
      const items = drifted.sections.find((s) => s.id === "schema")!.items;
      expect(items).toEqual([expect.objectContaining({ name: expect.stringContaining(`privilege ${started.spec.postgres.readonlyUser}`), fix: expect.stringContaining("GRANT SELECT") })]);
    } finally {
      await withPg(admin, async (c) => {
        await c.query(`ALTER ROLE ${owner.user} NOSUPERUSER`);
        await c.query(`GRANT SELECT ON TABLE market_data TO ${started.spec.postgres.readonlyUser}`);
      });
    }
  });
});
