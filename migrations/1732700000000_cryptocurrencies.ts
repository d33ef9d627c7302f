/**
 * Guide, Schema Details 1: cryptocurrency metadata. Unique symbol and coin_gecko_id,
 * soft delete through is_active, timestamps maintained by a trigger.
 */
import type { MigrationBuilder } from "node-pg-migrate";

export async function up(pgm: MigrationBuilder): Promise<void> {
  pgm.createTable("cryptocurrencies", {
    id: { type: "integer", primaryKey: true, sequenceGenerated: { precedence: "BY DEFAULT" } },
    symbol: { type: "varchar(20)", notNull: true },
    name: { type: "varchar(100)", notNull: true },
    coin_gecko_id: { type: "varchar(100)" },
    is_active: { type: "boolean", notNull: true, default: true },
    created_at: { type: "timestamptz", notNull: true, default: pgm.func("now()") },
    updated_at: { type: "timestamptz", notNull: true, default: pgm.func("now()") },
  });
  pgm.addConstraint("cryptocurrencies", "uq_cryptocurrencies_symbol", { unique: "symbol" });
  pgm.addConstraint("cryptocurrencies", "uq_cryptocurrencies_coin_gecko_id", { unique: "coin_gecko_id" });
  pgm.createIndex("cryptocurrencies", ["symbol", "is_active"], { name: "idx_crypto_symbol_active" });

  // One trigger function for every table with updated_at.
  pgm.createFunction(
    "set_updated_at",
    [],
    { returns: "trigger", language: "plpgsql", replace: true },
    "BEGIN NEW.updated_at := now(); RETURN NEW; END;",
  );
  pgm.createTrigger("cryptocurrencies", "trg_cryptocurrencies_updated_at", {
    when: "BEFORE",
    operation: "UPDATE",
    level: "ROW",
    function: "set_updated_at",
  });
}

export async function down(pgm: MigrationBuilder): Promise<void> {
  pgm.dropTable("cryptocurrencies");
  pgm.dropFunction("set_updated_at", []);
}
