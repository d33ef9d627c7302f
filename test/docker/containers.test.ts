/**
 * The containers of lib/engines/docker/containers.ts, started for real on the offline images (`npm run
 * images`) with exactly what postgresContainer/redisContainer define: the servers run the spec's
 * settings, the healthchecks work, ports are on 127.0.0.1 only, passwords are required, and data
 * lives on the named volume.
 */
import {
  createVolume,
  describeDocker,
  freePorts,
  healthcheckCommand,
  inspectContainer,
  removeContainer,
  removeVolume,
  requireOfflineImages,
  startDefinedContainer,
} from "../support/docker.js";
import { randomBytes } from "node:crypto";
import { connect } from "node:net";
import pg from "pg";
import { Redis } from "ioredis";
import type { StartedTestContainer } from "testcontainers";
import { afterAll, beforeAll, expect, it } from "vitest";
import { POSTGRES_SUPERUSER, postgresContainer, redisContainer, type ContainerDefinition, type ContainerSecrets } from "../../lib/engines/docker/containers.js";
import { resourceName } from "../../lib/spec/access.js";
import { OFFLINE_IMAGES } from "../../lib/engines/docker/images.js";
import { loadSpec, specHash } from "../../lib/spec/load.js";
import { postgresSettings, redisConfigGetValue, redisSettings } from "../../lib/spec/render.js";
import type { Spec } from "../../lib/spec/schema.js";
import { parsePgSize } from "../../lib/spec/units.js";

describeDocker("containers from lib/engines/docker/containers.ts (offline images)", () => {
  let spec: Spec;
  let secrets: ContainerSecrets;
  let pgDef: ContainerDefinition;
  let redisDef: ContainerDefinition;
  const volumes = { postgres: "", redis: "" };
  const running: { postgres?: StartedTestContainer; redis?: StartedTestContainer } = {};

  const start = async (which: "postgres" | "redis") => {
    running[which] = await startDefinedContainer(which === "postgres" ? pgDef : redisDef, { volume: volumes[which] });
  };
  const pgClient = (password: string | undefined, user = POSTGRES_SUPERUSER) =>
    new pg.Client({ host: "127.0.0.1", port: spec.postgres.port, user, database: spec.postgres.database, password, connectionTimeoutMillis: 5_000 });
  const redisClient = (options: { username?: string; password?: string }) =>
    new Redis({
      host: "127.0.0.1",
      port: spec.redis.port,
      db: spec.redis.db,
      lazyConnect: true,
      // Fail fast: no ready check, no retries (refused logins are checked on the raw protocol below).
      enableReadyCheck: false,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
      ...options,
    });
  /** Runs fn with a connected client (default: the superuser) and always closes it. */
  const withPg = async <T>(fn: (c: pg.Client) => Promise<T>, user = POSTGRES_SUPERUSER): Promise<T> => {
    const client = pgClient(user === POSTGRES_SUPERUSER ? secrets.postgresPassword : secrets.roles.owner, user);
    await client.connect();
    try {
      return await fn(client);
    } finally {
      await client.end();
    }
  };
  const withRedis = async <T>(fn: (r: Redis) => Promise<T>, options: { username?: string; password?: string } = { password: secrets.redisPassword }): Promise<T> => {
    const client = redisClient(options);
    await client.connect();
    try {
      return await fn(client);
    } finally {
      client.disconnect();
    }
  };

  /** The first reply line of Redis to one inline command on a fresh connection. */
  const redisReply = (command: string) =>
    new Promise<string>((resolve, reject) => {
      const socket = connect({ host: "127.0.0.1", port: spec.redis.port }, () => socket.write(`${command}\r\n`));
      let data = "";
      socket.setTimeout(5_000, () => socket.destroy(new Error(`no reply to ${command.split(" ")[0]}`)));
      socket.on("data", (chunk) => {
        data += chunk.toString();
        if (data.includes("\r\n")) {
          socket.end();
          resolve(data.split("\r\n")[0]!);
        }
      });
      socket.on("error", reject);
    });

  beforeAll(async () => {
    await requireOfflineImages();
    // Free ports and a unique prefix: dev servers, env:ci and a parallel run must not collide.
    const [postgresPort, redisPort] = await freePorts(2);
    spec = loadSpec("ci", {
      overrides: {
        namePrefix: `cpi-test-${randomBytes(3).toString("hex")}`,
        postgres: { port: postgresPort },
        redis: { port: redisPort },
        images: { ...OFFLINE_IMAGES },
      },
    });
    const password = () => randomBytes(18).toString("base64url");
    secrets = {
      postgresPassword: password(),
      roles: { owner: password(), app: password(), readonly: password() },
      redisPassword: password(),
      redisAppPassword: password(),
    };
    pgDef = postgresContainer(spec, secrets, specHash(spec));
    redisDef = redisContainer(spec, secrets, specHash(spec));
    volumes.postgres = resourceName(spec, "postgres-data");
    volumes.redis = resourceName(spec, "redis-data");
    await Promise.all([createVolume(volumes.postgres, pgDef.labels), createVolume(volumes.redis, redisDef.labels)]);

    const started = Date.now();
    const healthy: Record<string, number> = {};
    await Promise.all(
      (["postgres", "redis"] as const).map(async (which) => {
        await start(which);
        healthy[which] = (Date.now() - started) / 1000;
      }),
    );
    console.info(`[docker] healthy after: postgres ${healthy.postgres?.toFixed(1)} s, redis ${healthy.redis?.toFixed(1)} s (fresh volumes)`);
  });

  afterAll(async () => {
    await Promise.all([pgDef, redisDef].filter(Boolean).map((d) => removeContainer(d.name)));
    await Promise.all(Object.values(volumes).filter(Boolean).map(removeVolume));
  });

  it("runs the images of spec.images", () => {
    expect(pgDef.image).toBe(OFFLINE_IMAGES.postgres);
    expect(redisDef.image).toBe(OFFLINE_IMAGES.redis);
  });

  it("PostgreSQL: every SHOW value equals the spec", async () => {
    const settings = postgresSettings(spec);
    // Sizes compare in bytes (SHOW prints 256MB or 1GB); integers in the setting's base unit
    // (SHOW prints log_min_duration_statement 1000 as "1s"); lists as sets.
    const normalise = (kind: string, shown: string, raw: string) =>
      kind === "size" ? parsePgSize(shown) : kind === "integer" ? raw : kind === "list" ? shown.split(",").map((v) => v.trim()).filter(Boolean).sort() : shown;
    const live = await withPg(async (c) => {
      const { rows } = await c.query<{ name: string; setting: string; shown: string; pending_restart: boolean }>(
        "SELECT name, setting, current_setting(name) AS shown, pending_restart FROM pg_settings WHERE name = ANY($1)",
        [settings.map((s) => s.name)],
      );
      return rows;
    });
    const byName = new Map(live.map((r) => [r.name, r]));
    const actual = Object.fromEntries(settings.map((s) => {
      const row = byName.get(s.name);
      return [s.name, row && { value: normalise(s.kind, row.shown, row.setting), pendingRestart: row.pending_restart }];
    }));
    expect(actual).toEqual(Object.fromEntries(settings.map((s) => [s.name, { value: normalise(s.kind, s.value, s.value), pendingRestart: false }])));
  });

  it("Redis: every CONFIG GET value equals the spec (sizes in bytes)", async () => {
    const settings = redisSettings(spec);
    const got = await withRedis(async (r) => {
      const out: Record<string, string | undefined> = {};
      for (const s of settings) out[s.name] = ((await r.config("GET", s.name)) as string[])[1];
      return out;
    });
    expect(got).toEqual(Object.fromEntries(settings.map((s) => [s.name, redisConfigGetValue(s)])));
  });

  it("the healthcheck commands succeed when exec'd, and Docker reports both healthy", async () => {
    for (const [def, container] of [[pgDef, running.postgres!], [redisDef, running.redis!]] as const) {
      const result = await container.exec(healthcheckCommand(def));
      expect({ name: def.name, exitCode: result.exitCode, output: result.output }).toMatchObject({ name: def.name, exitCode: 0 });
      expect((await inspectContainer(container.getId())).State.Health?.Status).toBe("healthy");
    }
  });

  it("publishes the ports on 127.0.0.1 only", async () => {
    for (const [def, container] of [[pgDef, running.postgres!], [redisDef, running.redis!]] as const) {
      const inspect = await inspectContainer(container.getId());
      const expected = Object.fromEntries(def.ports.map((p) => [`${p.internal}/tcp`, [{ HostIp: "127.0.0.1", HostPort: String(p.external) }]]));
      expect(inspect.HostConfig.PortBindings).toEqual(expected);
      // What the engine actually bound: no 0.0.0.0 or :: entry next to 127.0.0.1.
      const bound = Object.fromEntries(Object.entries(inspect.NetworkSettings.Ports ?? {}).filter(([, b]) => b !== null));
      expect(bound).toEqual(expected);
    }
  });

  it("PostgreSQL requires the password (scram-sha-256 everywhere)", async () => {
    for (const [user, password] of [[POSTGRES_SUPERUSER, secrets.postgresPassword], [spec.postgres.user, secrets.roles.owner]] as const) {
      // No password: the server demands SCRAM authentication, which the client cannot answer.
      await expect(pgClient(undefined, user).connect()).rejects.toThrow(/password/i);
      // Wrong password: refused by the server (28P01 invalid_password).
      const wrong = pgClient(`${password}x`, user);
      await expect(wrong.connect()).rejects.toMatchObject({ code: "28P01" });
      await wrong.end().catch(() => {});
    }
    const methods = await withPg(async (c) => (await c.query("SELECT DISTINCT auth_method FROM pg_hba_file_rules WHERE error IS NULL")).rows.map((r) => r.auth_method));
    expect(methods).toEqual(["scram-sha-256"]);
  });

  it("Redis requires the password; the app user cannot run admin commands", async () => {
    // Raw protocol, so the server's own replies are checked (ioredis 6 opens with HELLO and only closes).
    expect(await redisReply("PING")).toMatch(/^-NOAUTH/);
    expect(await redisReply(`AUTH ${secrets.redisPassword}x`)).toMatch(/^-WRONGPASS/);
    expect(await redisReply(`AUTH ${spec.redis.appUser} ${secrets.redisPassword}`)).toMatch(/^-WRONGPASS/);
    const app = { username: spec.redis.appUser, password: secrets.redisAppPassword };
    expect(await withRedis((r) => r.ping(), app)).toBe("PONG");
    await expect(withRedis((r) => r.config("GET", "maxmemory"), app)).rejects.toThrow(/NOPERM/);
  });

  it("keeps data on the named volumes across a restart (containers recreated)", async () => {
    const marker = randomBytes(8).toString("hex");
    // As the schema owner (created by the image's init script from lib/db/roles.ts).
    await withPg(async (c) => {
      await c.query("CREATE TABLE restart_check (marker text)");
      await c.query("INSERT INTO restart_check VALUES ($1)", [marker]);
    }, spec.postgres.user);
    await withRedis((r) => r.set("test:restart:check:marker", marker));

    // Graceful stop (Redis flushes its AOF, PostgreSQL checkpoints), container removed, volume kept.
    await Promise.all([running.postgres!.stop({ timeout: 10_000, remove: true }), running.redis!.stop({ timeout: 10_000, remove: true })]);
    await Promise.all([start("postgres"), start("redis")]);

    for (const [def, container, volume] of [[pgDef, running.postgres!, volumes.postgres], [redisDef, running.redis!, volumes.redis]] as const) {
      const mounts = (await inspectContainer(container.getId())).Mounts;
      expect(mounts).toContainEqual(expect.objectContaining({ Type: "volume", Name: volume, Destination: def.dataPath }));
    }
    expect(await withPg(async (c) => (await c.query("SELECT marker FROM restart_check")).rows, spec.postgres.user)).toEqual([{ marker }]);
    expect(await withRedis((r) => r.get("test:restart:check:marker"))).toBe(marker);
  });
});
