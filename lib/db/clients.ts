/** Short-lived clients that always close, with bounded connect timeouts and no secret in errors. */
import pg from "pg";
import { Redis, type RedisOptions } from "ioredis";

/**
 * A connected client with a bounded connect (10 s unless the config says otherwise), for work
 * that outlives one callback (COPY sessions); the caller ends it. A dropped connection does not
 * throw out of the event loop: it fails the query in progress, which reports it.
 */
export async function connectPg(config: pg.ClientConfig): Promise<pg.Client> {
  const client = new pg.Client({ connectionTimeoutMillis: 10_000, ...config });
  client.on("error", () => undefined);
  try {
    await client.connect();
  } catch (error) {
    // pg says only "timeout expired": name the server and the bound (the CLI maps ETIMEDOUT to exit 2).
    if ((error as Error).message === "timeout expired") {
      const seconds = (config.connectionTimeoutMillis ?? 10_000) / 1000;
      throw Object.assign(new Error(`PostgreSQL at ${config.host}:${config.port} did not answer within ${seconds}s`), { code: "ETIMEDOUT" });
    }
    throw error;
  }
  return client;
}

// NUMERIC and BIGINT stay strings: exact values, no float rounding.
export async function withPg<T>(config: pg.ClientConfig, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = await connectPg(config);
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
  // ioredis's connectTimeout covers only the TCP connect: a server that accepts but never answers
  // would hang AUTH and the ready check forever, so bound the whole handshake.
  const connectMs = redis.options.connectTimeout ?? 10_000;
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(Object.assign(new Error(`Redis at ${redis.options.host}:${redis.options.port} did not answer within ${connectMs / 1000}s`), { code: "ETIMEDOUT" })), connectMs);
  });
  try {
    await Promise.race([redis.connect(), timedOut]);
  } catch (error) {
    redis.disconnect();
    throw (error as { code?: string }).code === "ETIMEDOUT" ? error : (lastError ?? error);
  } finally {
    clearTimeout(timer);
  }
  try {
    return await work(redis);
  } finally {
    redis.disconnect();
  }
}
