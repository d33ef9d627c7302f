/** Short-lived clients that always close, with bounded connect timeouts and no secret in errors. */
import pg from "pg";
import { Redis, type RedisOptions } from "ioredis";

// NUMERIC and BIGINT stay strings: exact values, no float rounding.
export async function withPg<T>(config: pg.ClientConfig, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionTimeoutMillis: 10_000, ...config });
  client.on("error", () => undefined);
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end().catch(() => undefined);
  }
}

export async function withRedis<T>(options: RedisOptions, work: (redis: Redis) => Promise<T>): Promise<T> {
  const redis = new Redis({ lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null, connectTimeout: 10_000, ...options });
  let lastError: Error | undefined;
  redis.on("error", (e) => (lastError = e));
  try {
    await redis.connect();
  } catch (error) {
    redis.disconnect();
    throw lastError ?? error;
  }
  try {
    return await work(redis);
  } finally {
    redis.disconnect();
  }
}
