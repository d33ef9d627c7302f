/**
 * Guide, Schema Details 3: model predictions and their validation. A prediction is linked to the
 * actual outcome (actual_price, evaluated_at, the market_data row) and its error is derived.
 */
import type { MigrationBuilder } from "node-pg-migrate";

export async function up(pgm: MigrationBuilder): Promise<void> {
  pgm.createTable("predictions", {
    id: { type: "bigint", primaryKey: true, sequenceGenerated: { precedence: "BY DEFAULT" } },
    cryptocurrency_id: { type: "integer", notNull: true, references: "cryptocurrencies", onDelete: "RESTRICT" },
    prediction_timestamp: { type: "timestamptz", notNull: true },
    target_timestamp: { type: "timestamptz", notNull: true },
    predicted_price: { type: "numeric(20,8)", notNull: true },
    confidence_score: { type: "numeric(5,4)" },
    model_name: { type: "varchar(100)", notNull: true },
    model_version: { type: "varchar(50)", notNull: true },
    features: { type: "jsonb" },
    // Validation against what happened: filled in when the target time has passed.
    market_data_id: { type: "bigint", references: "market_data", onDelete: "SET NULL" },
    actual_price: { type: "numeric(20,8)" },
    evaluated_at: { type: "timestamptz" },
    prediction_error: { type: "numeric(20,8)", expressionGenerated: "actual_price - predicted_price" },
    created_at: { type: "timestamptz", notNull: true, default: pgm.func("now()") },
  });
  pgm.renameConstraint("predictions", "predictions_cryptocurrency_id_fkey", "fk_predictions_cryptocurrency");
  pgm.renameConstraint("predictions", "predictions_market_data_id_fkey", "fk_predictions_market_data");
  pgm.addConstraint("predictions", "ck_predictions_target_after_prediction", { check: "target_timestamp > prediction_timestamp" });
  pgm.addConstraint("predictions", "ck_predictions_price_nonnegative", { check: "predicted_price >= 0" });
  pgm.addConstraint("predictions", "ck_predictions_actual_price_nonnegative", { check: "actual_price >= 0" });
  pgm.addConstraint("predictions", "ck_predictions_confidence_range", { check: "confidence_score >= 0 AND confidence_score <= 1" });
  pgm.addConstraint("predictions", "ck_predictions_evaluated_has_actual", { check: "(evaluated_at IS NULL) = (actual_price IS NULL)" });
  pgm.createIndex("predictions", ["cryptocurrency_id", "target_timestamp"], { name: "idx_prediction_crypto_target" });
}

export async function down(pgm: MigrationBuilder): Promise<void> {
  pgm.dropTable("predictions");
}
