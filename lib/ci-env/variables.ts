/**
 * The connection variables of a throw-away CI environment, in the formats CI systems read:
 * dotenv lines, JSON, or GitHub Actions (masked secrets + $GITHUB_ENV lines).
 */
import type { EnvironmentConnections } from "../state/record.js";

export type VariableFormat = "dotenv" | "json" | "github";

/** DATABASE_URL and REDIS_URL (application roles), their parts, and the owner URL for migrations. */
export function connectionVariables(id: string, engine: string, connections: EnvironmentConnections): Record<string, string> {
  const pg = connections.postgresConfig("app");
  const redis = connections.redisOptions("app");
  return {
    CPI_ENV_ID: id,
    CPI_ENGINE: engine,
    DATABASE_URL: connections.postgresUrl("app"),
    DATABASE_OWNER_URL: connections.postgresUrl("owner"),
    DATABASE_READONLY_URL: connections.postgresUrl("readonly"),
    PGHOST: String(pg.host),
    PGPORT: String(pg.port),
    PGDATABASE: String(pg.database),
    PGUSER: String(pg.user),
    PGPASSWORD: String(pg.password),
    REDIS_URL: connections.redisUrl("app"),
    REDIS_HOST: String(redis.host),
    REDIS_PORT: String(redis.port),
    REDIS_DB: String(redis.db ?? 0),
    REDIS_USERNAME: String(redis.username),
    REDIS_PASSWORD: String(redis.password),
  };
}

/** dotenv: KEY=value lines, values quoted when they need it. */
export function toDotenv(vars: Record<string, string>): string {
  return Object.entries(vars)
    .map(([k, v]) => `${k}=${/^[A-Za-z0-9_./:@%+-]*$/.test(v) ? v : JSON.stringify(v)}`)
    .join("\n");
}

/**
 * GitHub Actions: `::add-mask::` for each secret (so the log hides it), then KEY=value lines
 * for $GITHUB_ENV.
 */
export function toGithub(vars: Record<string, string>, secrets: string[]): { mask: string; envFile: string } {
  return { mask: secrets.map((s) => `::add-mask::${s}`).join("\n"), envFile: toDotenv(vars) };
}
