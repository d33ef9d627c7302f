/**
 * The one Environment interface: a local environment opened by name and servers given by URL
 * answer the same connection(role) / redisConnection(role), and a local one stops and destroys
 * its own servers. Real servers: an ephemeral embedded environment.
 */
import { existsSync } from "node:fs";
import { Redis, type RedisOptions } from "ioredis";
import { describe, expect, it } from "vitest";
import { withPg } from "../../lib/db/clients.js";
import { EmbeddedEnvironment } from "../../lib/engines/embedded/environment.js";
import { openEnvironment, openLocalEnvironment } from "../../lib/env/environment.js";
import { resolveEnvironment } from "../../lib/env/resolve.js";
import { CliError, EXIT } from "../../lib/errors.js";

async function currentUser(config: Parameters<typeof withPg>[0]): Promise<string> {
  return withPg(config, async (c) => (await c.query("SELECT current_user AS u")).rows[0].u as string);
}

async function redisWhoami(options: RedisOptions): Promise<string> {
  const redis = new Redis({ ...options, lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await redis.connect();
    return String(await redis.call("ACL", "WHOAMI"));
  } finally {
    redis.disconnect();
  }
}

describe("Environment", () => {
  it("a local one and the same servers given by URL answer connection(role) alike; stop and destroy act on a local one only", async () => {
    const started = await new EmbeddedEnvironment("dev").withEphemeral().start();
    try {
      const local = openLocalEnvironment(started.env);
      expect(local.kind).toBe("embedded");
      expect(local.docker).toBeUndefined();
      expect(local.tools).toMatchObject({ engine: "embedded", hostPort: local.spec.postgres.port });
      // Each role logs in as its own PostgreSQL role and Redis user.
      expect(await currentUser(local.connection("app"))).toBe(local.spec.postgres.appUser);
      expect(await currentUser(local.connection("owner"))).toBe(local.spec.postgres.user);
      expect(await redisWhoami(local.redisConnection("app"))).toBe(local.spec.redis.appUser);

      // The same servers by URL (password from the environment, as libpq takes it).
      const url = new URL(local.connections.postgresUrl("readonly"));
      const password = decodeURIComponent(url.password);
      url.password = "";
      const previous = process.env.PGPASSWORD;
      process.env.PGPASSWORD = password;
      try {
        const given = resolveEnvironment({ env: "dev", databaseUrl: url.toString() });
        expect(given.kind).toBe("urls");
        expect(given.perRoleLogins).toBe(false);
        // One login stands for every role.
        expect(await currentUser(given.connection("admin"))).toBe(local.spec.postgres.readonlyUser);
        expect(() => given.redisConnection("app")).toThrow(/only --database-url was given/);
        const refused = await given.stop().catch((e: unknown) => e);
        expect(refused).toBeInstanceOf(CliError);
        expect((refused as CliError).code).toBe(EXIT.USAGE);
      } finally {
        if (previous === undefined) delete process.env.PGPASSWORD;
        else process.env.PGPASSWORD = previous;
      }

      const stopped = await local.stop();
      expect(stopped.stopped).toEqual({ postgres: true, redis: true });
      expect(stopped.destroyed).toBe(false);
      expect(existsSync(local.paths.dir)).toBe(true);
      const destroyed = await openEnvironment(started.env).destroy();
      expect(destroyed.destroyed).toBe(true);
      expect(existsSync(local.paths.dir)).toBe(false);
      expect(() => openEnvironment(started.env)).toThrow(/does not exist|no local state/);
    } finally {
      await started.destroy().catch(() => undefined);
    }
  }, 120_000);
});
