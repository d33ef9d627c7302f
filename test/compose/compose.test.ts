/**
 * `npm run compose`: compose.yaml from the Docker target's container definitions, no secret in it;
 * `--check` tells a stale or missing committed file; and with Debian's docker-compose (1.29) and
 * the offline images: up, healthy, every setting as the spec says (verify's own checks), ports on
 * 127.0.0.1 only, named volumes and labels, the least-privilege roles made from the secrets; and
 * `down -v` leaves no container, volume or network behind.
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { describeDocker, dockerBinary, freePorts, inspectContainer, requireOfflineImages } from "../support/docker.js";
import { withPg, withRedis } from "../../lib/db/clients.js";
import { checkComposeFile, composeProject, writeComposeProject } from "../../lib/compose/compose.js";
import { POSTGRES_DATA_PATH, REDIS_DATA_PATH, postgresContainer, redisContainer } from "../../lib/engines/docker/containers.js";
import { readCredentials } from "../../lib/state/credentials.js";
import { loadSpec, PROJECT_DIR, specHash } from "../../lib/spec/load.js";
import type { Spec } from "../../lib/spec/schema.js";
import { checkPostgresSettings, checkRedisSettings } from "../../lib/db/settings.js";
import { runCli } from "../support/embedded.js";

const run = promisify(execFile);
const work = mkdtempSync(path.join(os.tmpdir(), "cpi-compose-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe("npm run compose", () => {
  it("compose.yaml carries the definitions' fields and no password; the secrets are 0444 files in a 0700 folder", () => {
    const spec = loadSpec("ci");
    const dir = path.join(work, "ci");
    const written = writeComposeProject(spec, dir);
    const yaml = readFileSync(written.composeFile, "utf8");
    const credentials = readCredentials(written.credentialsFile, spec.env);
    const passwords = [...Object.values(credentials.postgres), ...Object.values(credentials.redis)].filter((v) => v.length >= 16);
    // The superuser, the owner, app, read-only and backup roles, Redis's admin and app users.
    expect(passwords).toHaveLength(7);
    for (const password of passwords) expect(yaml).not.toContain(password);
    const hash = specHash(spec);
    const pg = postgresContainer(spec, { postgresPassword: "x", roles: { owner: "x", app: "x", readonly: "x", backup: "x" } }, hash);
    const redis = redisContainer(spec, { postgresPassword: "x", roles: { owner: "x", app: "x", readonly: "x", backup: "x" }, redisPassword: "x", redisAppPassword: "x" }, hash);
    // Read as docker-compose 1.x reads it (YAML 1.1: a bare yes would be a boolean).
    const parsed = parseYaml(yaml, { version: "1.1" }) as { services: Record<string, { command: unknown; healthcheck: { test: unknown }; shm_size: number }> };
    // Compose reads `$$` as one literal `$` (the postgres command's shell step uses "$@").
    const interpolated = (v: unknown) => (v as string[]).map((a) => a.replaceAll("$$", "$"));
    expect(pg.command.join(" ")).toContain('"$@"');
    expect(interpolated(parsed.services.postgres!.command)).toEqual(pg.command);
    expect(interpolated(parsed.services.redis!.command)).toEqual(redis.command);
    expect(interpolated(parsed.services.postgres!.healthcheck.test)).toEqual(pg.healthcheck.test);
    expect(parsed.services.postgres!.shm_size).toBe(pg.shmSizeBytes);
    expect(yaml).toContain(`image: ${spec.images.postgres}`);
    expect(yaml).toContain(`- 127.0.0.1:${spec.postgres.port}:5432`);
    expect(yaml).toContain(`- 127.0.0.1:${spec.redis.port}:6379`);
    expect(yaml).toContain(`name: ${spec.namePrefix}-postgres-data`);
    expect(yaml).toContain(`name: ${spec.namePrefix}-postgres-backup`);
    expect(yaml).toContain(`crypto-prediction-infra.spec-hash: ${hash}`);
    // The healthcheck reads Redis's password from its secret file: no env file, no password in the environment.
    expect(yaml).toContain(`REDISCLI_AUTH="$$(cat /run/secrets/redis-admin-password)"`);
    expect(yaml).not.toContain("env_file");
    expect(statSync(written.secretsDir).mode & 0o777).toBe(0o700);
    const modes = Object.fromEntries(readdirSync(written.secretsDir).map((f) => [f, statSync(path.join(written.secretsDir, f)).mode & 0o777]));
    expect(modes).toEqual({
      "credentials.json": 0o600,
      "postgres-postgres-password": 0o444,
      "postgres-10-roles-sql": 0o444,
      "postgres-20-replication-hba-sh": 0o444,
      "redis-redis-admin-password": 0o444,
      "redis-redis-conf": 0o444,
    });
    expect(readFileSync(path.join(written.secretsDir, "redis-redis-admin-password"), "utf8")).toBe(credentials.redis.adminPassword);
    expect(readFileSync(path.join(dir, ".gitignore"), "utf8")).toContain("/secrets/");
    // Again: the passwords are kept, nothing is rewritten.
    const again = writeComposeProject(spec, dir);
    expect(again.generatedPasswords).toBe(false);
    expect(again.written).toEqual([]);
  });

  it("the secrets of the committed project are git-ignored (its .gitignore)", async () => {
    for (const p of ["compose/dev/secrets/credentials.json", "compose/dev/secrets/redis-redis-admin-password", "compose/dev/secrets/postgres-10-roles-sql"]) {
      const { stdout } = await run("git", ["check-ignore", p], { cwd: PROJECT_DIR });
      expect(stdout.trim()).toBe(p);
    }
    const tracked = (await run("git", ["ls-files", "compose"], { cwd: PROJECT_DIR })).stdout.trim().split("\n");
    expect(tracked.sort()).toEqual(["compose/dev/.gitignore", "compose/dev/compose.yaml"]);
  });

  it("--check: the committed compose/dev/compose.yaml matches Pulumi.dev.yaml; a stale file exits 1 naming the lines, a missing one 2", async () => {
    const committed = await runCli("compose", ["--env", "dev", "--check"]);
    expect(committed.stdout + committed.stderr).toContain("matches the spec of dev");
    expect(committed.code).toBe(0);
    const dir = path.join(work, "check");
    expect((await runCli("compose", ["--env", "dev", "--out", dir])).code).toBe(0);
    expect((await runCli("compose", ["--env", "dev", "--out", dir, "--check"])).code).toBe(0);
    const file = path.join(dir, "compose.yaml");
    writeFileSync(file, readFileSync(file, "utf8").replace("- 127.0.0.1:5432:5432", "- 127.0.0.1:5433:5432"));
    const stale = await runCli("compose", ["--env", "dev", "--out", dir, "--check"]);
    expect(stale.code).toBe(1);
    expect(stale.stdout).toContain("no longer matches the spec of dev");
    expect(stale.stdout).toContain("- - 127.0.0.1:5433:5432");
    expect(stale.stdout).toContain("+ - 127.0.0.1:5432:5432");
    // A spec change (another port) makes the file stale too.
    expect(checkComposeFile({ ...loadSpec("dev", { overrides: { redis: { port: 6390 } } }), env: "dev" }, path.join(PROJECT_DIR, "compose", "dev", "compose.yaml")).status).toBe("stale");
    rmSync(file);
    const missing = await runCli("compose", ["--env", "dev", "--out", dir, "--check", "--json"]);
    expect(missing.code).toBe(2);
    expect(missing.json.status).toBe("missing");
  });
});

describeDocker("docker-compose (1.29) with the offline images", () => {
  it("up: healthy, every setting as the spec says, 127.0.0.1 only; down -v leaves nothing", async () => {
    await requireOfflineImages();
    const id = `eph-${randomBytes(5).toString("hex")}`;
    const [pgPort, redisPort] = await freePorts(2);
    const spec: Spec = { ...loadSpec("ci", { overrides: { namePrefix: `cpi-${id}`, postgres: { port: pgPort }, redis: { port: redisPort } } }), env: id };
    const dir = path.join(work, id);
    const written = writeComposeProject(spec, dir);
    const project = composeProject(spec);
    const compose = (args: string[], timeout = 180_000) => run("docker-compose", ["-p", project.projectName, "-f", written.composeFile, ...args], { cwd: dir, timeout, env: { ...process.env, DOCKER_HOST: process.env.DOCKER_HOST ?? "unix:///var/run/docker.sock" } });
    const docker = (args: string[]) => run(dockerBinary(), args, { timeout: 30_000 }).then((r) => r.stdout.trim());
    const label = `label=crypto-prediction-infra.env=${id}`;
    try {
      await compose(["config", "-q"]);
      await compose(["up", "-d"]);
      // Healthy by the definitions' own healthchecks (bounded).
      const deadline = Date.now() + 90_000;
      for (;;) {
        const states = await Promise.all([`${spec.namePrefix}-postgres`, `${spec.namePrefix}-redis`].map((name) => docker(["inspect", "-f", "{{.State.Health.Status}}", name])));
        if (states.every((s) => s === "healthy")) break;
        if (Date.now() > deadline) throw new Error(`not healthy after 90 s: ${states.join(", ")}; ${(await compose(["logs", "--tail", "20"]).catch((e) => e)).stdout ?? ""}`);
        await new Promise((r) => setTimeout(r, 500));
      }
      const credentials = readCredentials(written.credentialsFile, spec.env);
      const pgConfig = (user: string, password: string) => ({ host: "127.0.0.1", port: pgPort, user, password, database: spec.postgres.database });
      const pgChecks = await withPg(pgConfig("postgres", credentials.postgres.superuserPassword), (client) => checkPostgresSettings(client, spec));
      expect(pgChecks.filter((c) => !c.ok), JSON.stringify(pgChecks)).toEqual([]);
      const redisChecks = await withRedis({ host: "127.0.0.1", port: redisPort, password: credentials.redis.adminPassword }, (redis) => checkRedisSettings(redis, spec));
      expect(redisChecks.filter((c) => !c.ok), JSON.stringify(redisChecks)).toEqual([]);
      expect(pgChecks.length + redisChecks.length).toBeGreaterThan(10);
      // The roles script ran from its secret file: the app role logs in with its password; Redis's app user cannot FLUSHALL.
      expect(await withPg(pgConfig(spec.postgres.appUser, credentials.postgres.appPassword), async (c) => (await c.query("SELECT current_user AS u")).rows[0].u)).toBe(spec.postgres.appUser);
      await expect(withRedis({ host: "127.0.0.1", port: redisPort, username: spec.redis.appUser, password: credentials.redis.appPassword }, (r) => r.flushall())).rejects.toThrow(/NOPERM|permission/i);
      for (const name of [`${spec.namePrefix}-postgres`, `${spec.namePrefix}-redis`]) {
        const inspect = await inspectContainer(name);
        const bindings = Object.values(inspect.HostConfig.PortBindings ?? {}).flat().filter(Boolean);
        expect(bindings.length).toBe(1);
        for (const b of bindings) expect(b!.HostIp).toBe("127.0.0.1");
        expect(inspect.Mounts.find((m) => m.Type === "volume" && m.Destination === (name.endsWith("-postgres") ? POSTGRES_DATA_PATH : REDIS_DATA_PATH))?.Name).toBe(`${name}-data`);
        const env = JSON.parse(await docker(["inspect", "-f", "{{json .Config.Env}}", name])) as string[];
        // No variable carries a password: the healthcheck reads Redis's from its secret file, as in the Docker target.
        const passwords = [...Object.values(credentials.postgres), ...Object.values(credentials.redis)].filter((p) => p.length >= 16);
        for (const entry of env) for (const p of passwords) expect(entry).not.toContain(p);
        expect(JSON.parse(await docker(["inspect", "-f", "{{json .Config.Labels}}", name]))).toMatchObject({ "crypto-prediction-infra.env": id, "crypto-prediction-infra.spec-hash": specHash(spec) });
      }
    } finally {
      await compose(["down", "-v", "--remove-orphans"], 120_000).catch(() => undefined);
    }
    expect(await docker(["ps", "-aq", "--filter", label])).toBe("");
    expect(await docker(["volume", "ls", "-q", "--filter", label])).toBe("");
    expect(await docker(["network", "ls", "-q", "--filter", label])).toBe("");
    expect(await docker(["ps", "-aq", "--filter", `name=${spec.namePrefix}`])).toBe("");
  }, 300_000);
});
