/**
 * Role and privilege DDL from two connections at once (issue 14, item 14: secrets.test.ts failed
 * with "tuple concurrently updated"). `up` re-applies the roles' privileges while `verify`/`drift`
 * apply the very same SQL in a scratch database of the same cluster: GRANT SET ON PARAMETER
 * rewrites one row of a catalog shared by every database (pg_parameter_acl), and two such
 * transactions collide. Here both run for real, concurrently and repeatedly (bounded).
 */
import { describe, expect, it } from "vitest";
import { withPg } from "../../lib/db/clients.js";
import { applyRoleSql, privilegesSql } from "../../lib/db/roles.js";
import { sqlIdent } from "../../lib/db/roles.js";
import { useEphemeralEnvironment } from "../support/embedded.js";

const environment = useEphemeralEnvironment();

describe("role/privilege DDL run concurrently on one cluster", () => {
  it("never fails with 'tuple concurrently updated' (30 rounds, the environment's database and a scratch one at once)", async () => {
    const { connections, spec } = environment();
    const scratch = `cpi_race_${process.pid}`;
    await withPg(connections.postgresConfig("admin", "postgres"), (c) => c.query(`CREATE DATABASE ${sqlIdent(scratch)} OWNER ${sqlIdent(spec.postgres.user)}`));
    try {
      const scratchSpec = { ...spec, postgres: { ...spec.postgres, database: scratch } };
      const failures: string[] = [];
      await withPg(connections.postgresConfig("admin"), (live) =>
        withPg(connections.postgresConfig("admin", scratch), async (other) => {
          for (let round = 0; round < 30; round++) {
            const results = await Promise.allSettled([applyRoleSql(live, privilegesSql(spec)), applyRoleSql(other, privilegesSql(scratchSpec))]);
            for (const r of results) if (r.status === "rejected") failures.push(`round ${round}: ${(r.reason as Error).message}`);
          }
        }),
      );
      expect(failures).toEqual([]);
    } finally {
      await withPg(connections.postgresConfig("admin", "postgres"), (c) => c.query(`DROP DATABASE IF EXISTS ${sqlIdent(scratch)} WITH (FORCE)`));
    }
  }, 180_000);
});
