/**
 * The checks every Docker stack (dev, ci) must pass, run against index.ts under mocks. Expected
 * values come from the spec (loadSpec) and lib/engines/docker/containers.ts; the guide's literal numbers
 * are asserted where the stack keeps the guide's defaults.
 */
import { beforeAll, describe, expect, it } from "vitest";
import type { CapabilityRow } from "../../lib/docs/capabilities.js";
import { POSTGRES_ARCHIVE_PATH, POSTGRES_BACKUP_VOLUME_PATH, POSTGRES_DATA_PATH, REDIS_DATA_PATH, postgresContainer, redisContainer, type ContainerDefinition, type ContainerSecrets } from "../../lib/engines/docker/containers.js";
import { resourceName } from "../../lib/spec/access.js";
import { loadSpec, specHash } from "../../lib/spec/load.js";
import { postgresSettings, redisSettings } from "../../lib/spec/render.js";
import type { Spec } from "../../lib/spec/schema.js";
import { parsePgSize } from "../../lib/spec/units.js";
import { envValue, expectAllParented, expectPoliciesPass, expectSecretsStaySecret, violations } from "../support/pulumi-checks.js";
import { mockPassword, runProgram, type Recorded, type Run } from "../support/pulumi.js";

const CONTAINER = "docker:index/container:Container";

/** The container secrets as the mocks generated them (RandomPassword results by resource name). */
export function mockContainerSecrets(spec: Spec): ContainerSecrets {
  const pw = (what: string) => mockPassword(`${spec.namePrefix}-${what}`);
  return {
    postgresPassword: pw("postgres-superuser-password"),
    roles: { owner: pw("postgres-owner-password"), app: pw("postgres-app-password"), readonly: pw("postgres-readonly-password"), backup: pw("postgres-backup-password") },
    redisPassword: pw("redis-admin-password"),
    redisAppPassword: pw("redis-app-password"),
  };
}

/** A container's inputs must be exactly its definition from lib/engines/docker/containers.ts. */
function expectMatchesDefinition(c: Recorded, def: ContainerDefinition): void {
  expect(c.inputs.name).toBe(def.name);
  expect(c.inputs.command).toEqual(def.command);
  expect(c.inputs.envs).toEqual(Object.entries(def.env).map(([k, v]) => `${k}=${v}`));
  expect(c.inputs.uploads).toEqual(def.files.map((f) => ({ file: f.path, content: f.content, permissions: `0${f.mode.toString(8)}` })));
  expect(c.inputs.healthcheck).toEqual({
    tests: def.healthcheck.test,
    interval: `${def.healthcheck.intervalSeconds}s`,
    timeout: `${def.healthcheck.timeoutSeconds}s`,
    retries: def.healthcheck.retries,
    startPeriod: `${def.healthcheck.startPeriodSeconds}s`,
  });
  expect(c.inputs.ports).toEqual(def.ports.map((p) => ({ internal: p.internal, external: p.external, ip: p.hostIp, protocol: "tcp" })));
  expect(c.inputs.labels).toEqual(Object.entries(def.labels).map(([label, value]) => ({ label, value })));
  if (def.shmSizeBytes !== undefined) expect(c.inputs.shmSize * 1024 * 1024).toBeGreaterThanOrEqual(def.shmSizeBytes);
  expect(c.inputs.restart).toBe("unless-stopped");
  expect(c.inputs.wait).toBe(true);
  expect(c.inputs.waitTimeout).toBeGreaterThanOrEqual(def.healthcheck.startPeriodSeconds + def.healthcheck.retries * def.healthcheck.intervalSeconds);
}

/** Arguments after `flag` in a command. */
function argAfter(command: string[], flag: string): string | undefined {
  const i = command.indexOf(flag);
  return i < 0 ? undefined : command[i + 1];
}

export function dockerStackSuite(stack: string): { run: () => Run; spec: Spec } {
  let run: Run;
  const spec = loadSpec(stack);
  const hash = specHash(spec);
  const secrets = mockContainerSecrets(spec);

  describe(`stack ${stack} (docker)`, () => {
    beforeAll(async () => {
      run = await runProgram(stack);
    });

    it("builds one DockerDataStack whose resources are all its children", () => {
      expect(spec.target).toBe("docker");
      expect(run.all("crypto-prediction-infra:index:DockerDataStack")).toHaveLength(1);
      expect(run.all("crypto-prediction-infra:index:AwsDataStack")).toHaveLength(0);
      expect(run.resources.filter((r) => r.type.startsWith("aws:"))).toEqual([]);
      expectAllParented(run);
    });

    it("runs the containers defined by postgresContainer()/redisContainer(), with the generated passwords", () => {
      expectMatchesDefinition(run.one(CONTAINER, (c) => c.inputs.name === resourceName(spec, "postgres")), postgresContainer(spec, secrets, hash));
      expectMatchesDefinition(run.one(CONTAINER, (c) => c.inputs.name === resourceName(spec, "redis")), redisContainer(spec, secrets, hash));
    });

    it("passes every PostgreSQL and Redis setting of the spec as server arguments, in the server's units", () => {
      const pg = run.one(CONTAINER, (c) => c.inputs.name === resourceName(spec, "postgres")).inputs.command as string[];
      const redis = run.one(CONTAINER, (c) => c.inputs.name === resourceName(spec, "redis")).inputs.command as string[];
      for (const s of postgresSettings(spec)) expect(pg).toContain(`${s.name}=${s.value}`);
      for (const s of redisSettings(spec)) expect(argAfter(redis, `--${s.name}`)).toBe(s.value);
      // shared_buffers as PostgreSQL reads it: the spec's bytes.
      const sb = pg.find((a) => a.startsWith("shared_buffers="))!.split("=")[1]!;
      expect(parsePgSize(sb)).toBe(parsePgSize(spec.postgres.sharedBuffers));
    });

    it("keeps data in named volumes and images from spec.images (kept locally)", () => {
      const volumes = run.all("docker:index/volume:Volume").map((v) => v.inputs.name);
      expect(volumes.sort()).toEqual([resourceName(spec, "postgres-data"), resourceName(spec, "postgres-backup"), resourceName(spec, "redis-data")].sort());
      const pg = run.one(CONTAINER, (c) => c.inputs.name === resourceName(spec, "postgres"));
      const redis = run.one(CONTAINER, (c) => c.inputs.name === resourceName(spec, "redis"));
      // Archived WAL lives on a volume of its own: a lost data volume leaves it for point-in-time recovery.
      expect(pg.inputs.volumes).toEqual([
        { volumeName: resourceName(spec, "postgres-data"), containerPath: POSTGRES_DATA_PATH },
        { volumeName: resourceName(spec, "postgres-backup"), containerPath: POSTGRES_BACKUP_VOLUME_PATH },
      ]);
      expect(pg.inputs.command).toContain(`basic_archive.archive_directory=${POSTGRES_ARCHIVE_PATH}`);
      expect(POSTGRES_ARCHIVE_PATH.startsWith(`${POSTGRES_BACKUP_VOLUME_PATH}/`)).toBe(true);
      expect(redis.inputs.volumes).toEqual([{ volumeName: resourceName(spec, "redis-data"), containerPath: REDIS_DATA_PATH }]);
      expect(POSTGRES_DATA_PATH).toBe("/var/lib/postgresql/data");
      expect(REDIS_DATA_PATH).toBe("/data");
      const images = run.all("docker:index/remoteImage:RemoteImage");
      expect(images.map((i) => i.inputs.name).sort()).toEqual([spec.images.postgres, spec.images.redis].sort());
      for (const i of images) expect(i.inputs.keepLocally).toBe(true);
      // The containers run the pulled image (by id), so they follow it.
      expect(pg.inputs.image).toMatch(/^sha256:/);
      expect(pg.inputs.image).not.toBe(redis.inputs.image);
    });

    it("puts both containers on one private network and labels everything with env and spec hash", () => {
      const net = run.one("docker:index/network:Network");
      expect(net.inputs.name).toBe(resourceName(spec, "net"));
      expect(net.inputs.options["com.docker.network.bridge.host_binding_ipv4"]).toBe("127.0.0.1");
      const labelled = [...run.all(CONTAINER), ...run.all("docker:index/volume:Volume"), net];
      for (const r of labelled) {
        expect(r.inputs.labels).toContainEqual({ label: "crypto-prediction-infra.env", value: stack });
        expect(r.inputs.labels).toContainEqual({ label: "crypto-prediction-infra.spec-hash", value: hash });
      }
      for (const c of run.all(CONTAINER)) expect(c.inputs.networksAdvanced).toEqual([{ name: net.inputs.name, aliases: [expect.any(String)] }]);
    });

    it("listens on loopback only", () => {
      const ports = run.all(CONTAINER).flatMap((c) => c.inputs.ports as { ip: string; external: number }[]);
      expect(ports.map((p) => p.ip)).toEqual(["127.0.0.1", "127.0.0.1"]);
      expect(ports.map((p) => p.external).sort()).toEqual([spec.postgres.port, spec.redis.port].sort());
      for (const c of run.all(CONTAINER)) {
        expect(c.inputs.networkMode).toBeUndefined();
        expect(c.inputs.publishAllPorts).toBeUndefined();
        expect(violations(run, c)).toEqual([]);
      }
      expect(run.outputs.postgresHost!.value).toBe("127.0.0.1");
      expect(run.outputs.redisHost!.value).toBe("127.0.0.1");
    });

    it("keeps every password secret: files (0600), none in a container's environment, URLs", () => {
      expectSecretsStaySecret(run);
      for (const c of run.all(CONTAINER)) {
        expect(run.isSecret(c, "uploads.0.content")).toBe(true);
        // `docker inspect` shows Config.Env to anyone with the socket: secrets go as files only.
        const envs = JSON.stringify(c.inputs.envs ?? []);
        for (const secret of [secrets.postgresPassword, secrets.redisPassword, secrets.redisAppPassword, ...Object.values(secrets.roles)]) expect(envs).not.toContain(secret);
        // Every secret file is 0600 (the server user's own); a plain script carries no password.
        const defs = [postgresContainer(spec, secrets, specHash(spec)), redisContainer(spec, secrets, specHash(spec))];
        const files = defs.find((d) => d.name === c.inputs.name)!.files;
        for (const upload of c.inputs.uploads as { file: string; content: string; permissions: string }[]) {
          const file = files.find((f) => f.path === upload.file)!;
          if (file.secret) expect(upload.permissions, upload.file).toBe("0600");
          else for (const secret of Object.values(secrets.roles).concat(secrets.postgresPassword, secrets.redisPassword)) expect(upload.content).not.toContain(secret);
        }
      }
      const redis = run.one(CONTAINER, (c) => c.inputs.name === resourceName(spec, "redis"));
      expect(envValue(redis, "REDISCLI_AUTH")).toBeUndefined();
      expect((redis.inputs.uploads as { file: string }[]).map((u) => u.file)).toContain("/run/secrets/redis-admin-password");
      for (const key of ["postgresUrl", "redisUrl", "postgresUrls", "redisUrls"]) expect(run.outputs[key]!.secret, key).toBe(true);
    });

    it("exports hosts, ports, container names, spec hash and working connection URLs", () => {
      const o = run.outputs;
      expect(o.target!.value).toBe("docker");
      expect(o.specHash!.value).toBe(hash);
      expect(o.postgresPort!.value).toBe(spec.postgres.port);
      expect(o.redisPort!.value).toBe(spec.redis.port);
      expect(o.containerNames!.value).toEqual({ postgres: resourceName(spec, "postgres"), redis: resourceName(spec, "redis") });
      const pg = new URL(o.postgresUrl!.value as string);
      expect([pg.protocol, pg.hostname, Number(pg.port), pg.pathname, pg.username, pg.password]).toEqual([
        "postgresql:", "127.0.0.1", spec.postgres.port, `/${spec.postgres.database}`, spec.postgres.user, secrets.roles.owner,
      ]);
      const redis = new URL(o.redisUrl!.value as string);
      expect([redis.protocol, redis.hostname, Number(redis.port), redis.pathname, redis.username, redis.password]).toEqual([
        "redis:", "127.0.0.1", spec.redis.port, `/${spec.redis.db}`, "default", secrets.redisPassword,
      ]);
      const urls = o.postgresUrls!.value as Record<string, string>;
      expect(Object.keys(urls).sort()).toEqual(["admin", "app", "owner", "readonly"]);
      expect(new URL(urls.app!).username).toBe(spec.postgres.appUser);
      expect(new URL((o.redisUrls!.value as Record<string, string>).app!).username).toBe(spec.redis.appUser);
      expect(o.postgresMasterSecretArn!.value).toBeUndefined();
    });

    it("exports the capability table generated from the spec", () => {
      // Facts stated from the spec here, not by calling the function the stack calls.
      const rows = run.outputs.capabilities!.value as CapabilityRow[];
      expect(rows.find((r) => r.key === "postgres.port")).toMatchObject({ value: String(spec.postgres.port), docker: { support: "applied", detail: `container 5432 published on 127.0.0.1:${spec.postgres.port} only` } });
      expect(new Set(rows.map((r) => r.key)).size).toBe(rows.length);
      expect(run.outputs.capabilityTable!.value).toContain(`| \`postgres.port\` | \`${spec.postgres.port}\` | **applied**: listens on 127.0.0.1:${spec.postgres.port} |`);
      expect((run.outputs.capabilityTable!.value as string).trim().split("\n")).toHaveLength(rows.length + 2);
    });

    it("creates no backup bucket and exports none (the Docker targets use backup.repository as given)", () => {
      expect(run.resources.filter((r) => r.type.startsWith("aws:s3/") || r.type === "crypto-prediction-infra:aws:BackupBucket")).toEqual([]);
      for (const key of ["backupBucketName", "backupBucketArn", "backupRepositoryUrl", "backupPolicyArn", "backupKmsKeyArn"]) expect(run.outputs[key]!.value, key).toBeUndefined();
    });

    it("passes the policy pack", () => {
      expectPoliciesPass(run);
    });
  });

  return { run: () => run, spec };
}
