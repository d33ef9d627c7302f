/** Small Redis helpers shared by verify, drift, monitor and cache. */
import type { RedisOptions } from "ioredis";
import type { RedisRole } from "../env/environment.js";
import type { RedisEndpoint } from "../env/target.js";

/** INFO's `key:value` lines as a map. */
export function parseInfo(text: string): Map<string, string> {
  const map = new Map<string, string>();
  for (const line of text.split(/\r?\n/)) {
    const i = line.indexOf(":");
    if (i > 0 && !line.startsWith("#")) map.set(line.slice(0, i), line.slice(i + 1).trim());
  }
  return map;
}

/** Client options for a role; ioredis's ready check sends INFO, which an app user may not run, so these skip it. */
export function redisOptions(endpoint: RedisEndpoint, role: RedisRole): RedisOptions {
  return { ...endpoint.options(role), enableReadyCheck: false };
}
