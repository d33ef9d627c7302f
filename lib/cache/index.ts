/** The guide's cache strategy for the application: key naming, TTL tiers, cache-aside, write-through, invalidation. */
export * from "./keys.js";
export * from "./cache.js";
