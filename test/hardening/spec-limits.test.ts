/**
 * Spec values that pass a type check but break the environment (issue 14, item 10): a Redis that
 * refuses every write (maxmemory 1b), backups written into /etc, buffers too small for the
 * connections, sizes larger than the machine, a pool beyond Redis's clients. Each is refused with
 * the key, the value and why.
 */
import { describe, expect, it } from "vitest";
import { parseSpec, SpecError } from "../../lib/spec/load.js";

const GB = 1024 ** 3;

function issuesOf(input: unknown, memoryBytes = 24 * GB): { key: string; value?: unknown; message: string }[] {
  try {
    parseSpec("dev", input, { memoryBytes });
  } catch (error) {
    expect(error).toBeInstanceOf(SpecError);
    return (error as SpecError).issues;
  }
  return [];
}

describe("spec values that cannot work are refused, with the reason", () => {
  const cases: { title: string; input: unknown; key: string; says: RegExp; memoryBytes?: number }[] = [
    { title: "redis.maxmemory 1b (every write fails with OOM)", input: { redis: { maxmemory: "1b" } }, key: "redis.maxmemory", says: /at least 8mb.*OOM/ },
    { title: "redis.maxmemory 1mb", input: { redis: { maxmemory: "1mb" } }, key: "redis.maxmemory", says: /at least 8mb/ },
    { title: "redis.maxmemory as a bare number of bytes", input: { redis: { maxmemory: 1000 } }, key: "redis.maxmemory", says: /at least 8mb/ },
    { title: "backup.dir /etc", input: { backup: { dir: "/etc" } }, key: "backup.dir", says: /system folder/ },
    { title: "backup.dir inside /usr", input: { backup: { dir: "/usr/local/backups" } }, key: "backup.dir", says: /inside the system folder \/usr/ },
    { title: "backup.dir /", input: { backup: { dir: "/" } }, key: "backup.dir", says: /system folder/ },
    { title: "backup.dir under /proc", input: { backup: { dir: "/proc/nope" } }, key: "backup.dir", says: /system folder \/proc/ },
    { title: "backup.dir leaving the project", input: { backup: { dir: "../elsewhere" } }, key: "backup.dir", says: /leaves the project/ },
    { title: "backup.dir the project itself", input: { backup: { dir: "." } }, key: "backup.dir", says: /project folder itself/ },
    { title: "sharedBuffers too small for the connections", input: { postgres: { sharedBuffers: "512kB", maxConnections: 100 } }, key: "postgres.sharedBuffers", says: /at least 1600kB for postgres.maxConnections 100.*no unpinned buffers/ },
    { title: "workMem above the machine", input: { postgres: { workMem: "32GB" } }, key: "postgres.workMem", says: /above this machine's memory/ },
    { title: "maintenanceWorkMem above the machine", input: { postgres: { maintenanceWorkMem: "64GB" } }, key: "postgres.maintenanceWorkMem", says: /above this machine's memory/ },
    { title: "effectiveCacheSize above the machine", input: { postgres: { effectiveCacheSize: "2GB" } }, key: "postgres.effectiveCacheSize", says: /above this machine's memory/, memoryBytes: GB },
    { title: "sharedBuffers + maxmemory above the machine", input: { postgres: { sharedBuffers: "600MB" }, redis: { maxmemory: "600mb" } }, key: "redis.maxmemory", says: /plus postgres.sharedBuffers.*one of them would be killed/, memoryBytes: GB },
    { title: "a Redis pool beyond maxclients", input: { pool: { redisMaxConnections: 20000 } }, key: "pool.redisMaxConnections", says: /maxclients \(10000\)/ },
    { title: "TTL tiers out of order", input: { cache: { ttlShortSeconds: 4000 } }, key: "cache", says: /must grow/ },
    { title: "maxConnections below the pool", input: { postgres: { maxConnections: 20 } }, key: "postgres.maxConnections", says: /room for the client pool/ },
  ];
  it.each(cases.map((c) => [c.title, c] as const))("%s", (_title, c) => {
    const issues = issuesOf(c.input, c.memoryBytes);
    const issue = issues.find((i) => i.key === c.key);
    expect(issue, JSON.stringify(issues)).toBeDefined();
    expect(issue!.message).toMatch(c.says);
  });

  it("accepts what works: the guide's defaults, a relative folder in the project, an absolute folder of one's own, 8mb", () => {
    expect(issuesOf({})).toEqual([]);
    expect(issuesOf({ backup: { dir: "var/backups" }, redis: { maxmemory: "8mb" } })).toEqual([]);
    expect(issuesOf({ backup: { dir: "/srv/backups/crypto" } })).toEqual([]);
    expect(issuesOf({ postgres: { sharedBuffers: "2MB", maxConnections: 100 } })).toEqual([]);
  });
});
