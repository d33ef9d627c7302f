/**
 * ci: throw-away Docker environments next to dev on the same machine: nothing it names or
 * publishes may collide with dev, and it runs the offline images.
 */
import { describe, expect, it } from "vitest";
import { resourceName } from "../../lib/spec/access.js";
import { loadSpec } from "../../lib/spec/load.js";
import { dockerStackSuite } from "./docker-suite.js";

const { run, spec } = dockerStackSuite("ci");

describe("stack ci: no collision with dev", () => {
  const dev = loadSpec("dev");

  it("names no container, volume or network that dev names", () => {
    const devNames = ["postgres", "redis", "postgres-data", "postgres-backup", "redis-data", "net"].map((w) => resourceName(dev, w));
    const ciNames = run()
      .resources.filter((r) => ["docker:index/container:Container", "docker:index/volume:Volume", "docker:index/network:Network"].includes(r.type))
      .map((r) => r.inputs.name as string);
    expect(ciNames).toHaveLength(6);
    expect(ciNames.filter((n) => devNames.includes(n))).toEqual([]);
  });

  it("publishes no port that dev publishes", () => {
    const ciPorts = run()
      .all("docker:index/container:Container")
      .flatMap((c) => (c.inputs.ports as { external: number }[]).map((p) => p.external));
    expect(ciPorts.sort()).toEqual([spec.postgres.port, spec.redis.port].sort());
    for (const port of [dev.postgres.port, dev.redis.port]) expect(ciPorts).not.toContain(port);
  });

  it("uses the offline images, not dev's registry images", () => {
    const images = run().all("docker:index/remoteImage:RemoteImage").map((i) => i.inputs.name as string);
    expect(images.sort()).toEqual([spec.images.postgres, spec.images.redis].sort());
    expect(images).not.toContain(dev.images.postgres);
    expect(images).not.toContain(dev.images.redis);
  });
});
