/**
 * Migrations on a real server, through `npm run migrate` as an operator runs it: status lists
 * applied and pending, down refuses to drop tables without --yes (saying what it would drop),
 * down --count 3 --yes removes the schema, up restores it (with the app role's privileges), and
 * bad actions are refused.
 */
import { describe, expect, it } from "vitest";
import { EXIT } from "../../lib/errors.js";
import { withPg } from "../../lib/db/clients.js";
import { knownMigrations } from "../../lib/db/migrate.js";
import { runCli, useEphemeralEnvironment } from "../support/embedded.js";

const environment = useEphemeralEnvironment();
const TABLES = ["cryptocurrencies", "market_data", "predictions"];

const migrate = (...args: string[]) => runCli("migrate", [...args, "--env", environment().env, "--json"]);

async function presentTables(): Promise<string[]> {
  return withPg(environment().connections.postgresConfig("owner"), async (client) => {
    const { rows } = await client.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename = ANY($1) ORDER BY tablename", [TABLES]);
    return rows.map((r: { tablename: string }) => r.tablename);
  });
}

describe("npm run migrate", () => {
  const all = knownMigrations();

  it("knows the three migrations of the guide's tables, in order", () => {
    expect(all).toHaveLength(3);
    expect(all.map((m) => m.replace(/^\d+_/, ""))).toEqual(["cryptocurrencies", "market-data", "predictions"]);
  });

  it("status lists every migration as applied after up", async () => {
    const status = await migrate("status");
    expect(status.code, status.stderr).toBe(EXIT.OK);
    expect(status.json).toEqual({ applied: all, pending: [], unknown: [] });
    const human = await runCli("migrate", ["status", "--env", environment().env]);
    expect(human.stdout).toContain(`applied (3):\n  ✓ ${all[0]}`);
    expect(human.stdout).toContain("pending (0):");
  });

  it("down without --yes says what it would drop (tables and their rows), exits 64 and changes nothing, for any count", async () => {
    await withPg(environment().connections.postgresConfig("owner"), (client) =>
      client.query("INSERT INTO cryptocurrencies (symbol, name, coin_gecko_id) VALUES ('BTC', 'Bitcoin', 'bitcoin'), ('XRP', 'XRP', 'ripple')"),
    );
    for (const args of [["down"], ["down", "--count", "1"], ["down", "--count", "3"], ["down", "--count", "1000"]]) {
      const refused = await migrate(...args);
      expect(refused.code, `${args.join(" ")}: ${refused.stderr}`).toBe(EXIT.USAGE);
      expect(refused.stderr).toContain("would drop data");
      expect(refused.stderr).toContain("DROP TABLE");
      expect(refused.stderr).toContain("nothing was changed");
      expect(refused.stderr).toContain(`--env ${environment().env} --yes`);
      expect(refused.json.ok).toBe(false);
    }
    const all3 = await migrate("down", "--count", "3");
    expect(all3.stderr).toMatch(/DROP TABLE "?cryptocurrencies"? \(2 rows\)/);
    expect(all3.stderr).toMatch(/DROP TABLE "?market_data"? \(0 rows\)/);
    expect(await presentTables()).toEqual(TABLES.slice().sort());
    expect((await migrate("status")).json).toEqual({ applied: all, pending: [], unknown: [] });
    await withPg(environment().connections.postgresConfig("owner"), async (client) => {
      expect(Number((await client.query("SELECT count(*) AS n FROM cryptocurrencies")).rows[0].n)).toBe(2);
      await client.query("DELETE FROM cryptocurrencies");
    });
  });

  it("down --count 3 --yes reverts all three, newest first, and drops every table", async () => {
    const down = await migrate("down", "--count", "3", "--yes");
    expect(down.code, down.stderr).toBe(EXIT.OK);
    expect(down.json).toEqual({ action: "down", ran: all.slice().reverse() });
    expect(await presentTables()).toEqual([]);
    expect((await migrate("status")).json).toEqual({ applied: [], pending: all, unknown: [] });
    const again = await migrate("down"); // nothing left to revert: nothing to ask about
    expect(again.code, again.stderr).toBe(EXIT.OK);
    expect(again.json.ran).toEqual([]);
  });

  it("up applies them all again; the app role has its DML, the read-only role only reads", async () => {
    const up = await migrate("up");
    expect(up.code, up.stderr).toBe(EXIT.OK);
    expect(up.json).toEqual({ action: "up", ran: all });
    expect(await presentTables()).toEqual(TABLES.slice().sort());
    expect((await migrate("status")).json).toEqual({ applied: all, pending: [], unknown: [] });

    const { connections } = environment();
    await withPg(connections.postgresConfig("app"), async (client) => {
      await client.query("INSERT INTO cryptocurrencies (symbol, name, coin_gecko_id) VALUES ('ETH', 'Ethereum', 'ethereum')");
      expect((await client.query("UPDATE cryptocurrencies SET is_active = false WHERE symbol = 'ETH'")).rowCount).toBe(1);
      await expect(client.query("SELECT * FROM pgmigrations")).rejects.toMatchObject({ code: "42501" });
      await expect(client.query("DROP TABLE predictions")).rejects.toMatchObject({ code: "42501" });
    });
    await withPg(connections.postgresConfig("readonly"), async (client) => {
      expect((await client.query("SELECT symbol FROM cryptocurrencies")).rows).toEqual([{ symbol: "ETH" }]);
      await expect(client.query("DELETE FROM cryptocurrencies")).rejects.toMatchObject({ code: "42501" });
    });
    // The trigger of the first migration came back too.
    await withPg(connections.postgresConfig("owner"), async (client) => {
      const { rows } = await client.query("SELECT updated_at > created_at AS touched FROM cryptocurrencies WHERE symbol = 'ETH'");
      expect(rows).toEqual([{ touched: true }]);
    });
  });

  it("up when up to date does nothing", async () => {
    const up = await migrate("up");
    expect(up.code).toBe(EXIT.OK);
    expect(up.json.ran).toEqual([]);
  });

  it("down --yes (default count 1) reverts the newest only; status shows it pending; up brings it back", async () => {
    const down = await migrate("down", "--yes");
    expect(down.code, down.stderr).toBe(EXIT.OK);
    expect(down.json).toEqual({ action: "down", ran: [all[2]] });
    expect(await presentTables()).toEqual(["cryptocurrencies", "market_data"]);
    expect((await migrate("status")).json).toEqual({ applied: all.slice(0, 2), pending: [all[2]], unknown: [] });
    const up = await migrate("up");
    expect(up.json).toEqual({ action: "up", ran: [all[2]] });
    expect(await presentTables()).toEqual(TABLES.slice().sort());
  });

  it("refuses an unknown action, a bad count and an unknown environment", async () => {
    const unknown = await migrate("sideways");
    expect(unknown.code).toBe(EXIT.USAGE);
    expect(unknown.stderr).toContain('unknown action "sideways": expected up, down or status');
    const count = await migrate("down", "--count", "0");
    expect(count.code).toBe(EXIT.USAGE);
    expect(count.stderr).toContain('--count "0": expected a whole number');
    const missing = await runCli("migrate", ["status", "--env", "eph-0000000000"]);
    expect(missing.code).toBe(EXIT.ERROR);
    expect(missing.stderr).toContain("eph-0000000000");
    expect(await presentTables()).toEqual(TABLES.slice().sort());
  });
});
