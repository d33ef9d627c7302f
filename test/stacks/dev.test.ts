/**
 * dev: the guide's values on Docker. Besides the shared Docker checks, the guide's literal
 * numbers must reach the containers unchanged.
 */
import { describe, expect, it } from "vitest";
import { resourceName } from "../../lib/spec/access.js";
import { dockerStackSuite } from "./docker-suite.js";

const { run, spec } = dockerStackSuite("dev");

describe("stack dev: the guide's literal values", () => {
  it("passes the guide's PostgreSQL performance settings and port", () => {
    const pg = run().one("docker:index/container:Container", (c) => c.inputs.name === resourceName(spec, "postgres"));
    expect(pg.inputs.command).toEqual(
      expect.arrayContaining(["shared_buffers=256MB", "effective_cache_size=1GB", "work_mem=16MB", "maintenance_work_mem=128MB"]),
    );
    expect(pg.inputs.ports).toEqual([{ internal: 5432, external: 5432, ip: "127.0.0.1", protocol: "tcp" }]);
    expect(pg.inputs.name).toBe("crypto-prediction-postgres");
  });

  it("passes the guide's Redis memory and persistence settings and port", () => {
    const redis = run().one("docker:index/container:Container", (c) => c.inputs.name === resourceName(spec, "redis"));
    const command = redis.inputs.command as string[];
    const after = (flag: string) => command[command.indexOf(flag) + 1];
    expect([after("--maxmemory"), after("--maxmemory-policy"), after("--save"), after("--appendonly")]).toEqual(["256mb", "allkeys-lru", "60 1000", "yes"]);
    expect(redis.inputs.ports).toEqual([{ internal: 6379, external: 6379, ip: "127.0.0.1", protocol: "tcp" }]);
  });
});
