/**
 * Guide, Schema Details 2: OHLCV time series. BIGINT id for billions of rows, exact NUMERIC
 * prices, one row per (cryptocurrency, timestamp), checks that keep every candle consistent.
 * A coin with history cannot be hard-deleted (ON DELETE RESTRICT): deactivate it instead.
 */
import type { MigrationBuilder } from "node-pg-migrate";

export async function up(pgm: MigrationBuilder): Promise<void> {
  pgm.createTable("market_data", {
    id: { type: "bigint", primaryKey: true, sequenceGenerated: { precedence: "BY DEFAULT" } },
    cryptocurrency_id: { type: "integer", notNull: true, references: "cryptocurrencies", onDelete: "RESTRICT" },
    timestamp: { type: "timestamptz", notNull: true },
    open_price: { type: "numeric(20,8)", notNull: true },
    high_price: { type: "numeric(20,8)", notNull: true },
    low_price: { type: "numeric(20,8)", notNull: true },
    close_price: { type: "numeric(20,8)", notNull: true },
    volume: { type: "numeric(30,8)", notNull: true, default: 0 },
    market_cap: { type: "numeric(30,2)" },
    data_source: { type: "varchar(50)" },
    created_at: { type: "timestamptz", notNull: true, default: pgm.func("now()") },
  });
  pgm.renameConstraint("market_data", "market_data_cryptocurrency_id_fkey", "fk_market_data_cryptocurrency");
  pgm.addConstraint("market_data", "uq_market_data_crypto_timestamp", { unique: ["cryptocurrency_id", "timestamp"] });
  pgm.addConstraint("market_data", "ck_market_data_prices_nonnegative", {
    check: "open_price >= 0 AND high_price >= 0 AND low_price >= 0 AND close_price >= 0",
  });
  pgm.addConstraint("market_data", "ck_market_data_volume_nonnegative", { check: "volume >= 0" });
  pgm.addConstraint("market_data", "ck_market_data_market_cap_nonnegative", { check: "market_cap >= 0" });
  pgm.addConstraint("market_data", "ck_market_data_high_low", { check: "high_price >= low_price" });
  pgm.addConstraint("market_data", "ck_market_data_high_brackets", { check: "high_price >= open_price AND high_price >= close_price" });
  pgm.addConstraint("market_data", "ck_market_data_low_brackets", { check: "low_price <= open_price AND low_price <= close_price" });
  pgm.createIndex("market_data", "timestamp", { name: "idx_market_data_timestamp" });
}

export async function down(pgm: MigrationBuilder): Promise<void> {
  pgm.dropTable("market_data");
}
