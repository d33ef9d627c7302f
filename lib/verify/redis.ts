/** Small Redis helpers shared by verify, drift, monitor and cache. */
import type { RedisOptions } from "ioredis";
import type { RedisRole } from "../spec/access.js";
import type { RedisEndpoint } from "../env/environment.js";

/** Client options for a role; ioredis's ready check sends INFO, which an app user may not run, so these skip it. */
export function redisOptions(endpoint: RedisEndpoint, role: RedisRole): RedisOptions {
  return { ...endpoint.options(role), enableReadyCheck: false };
}
