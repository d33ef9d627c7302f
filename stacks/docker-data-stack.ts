/**
 * The Docker target: PostgreSQL 16 and Redis 7 containers on a private bridge network, data in
 * named volumes, ports published on 127.0.0.1 only. Every container property comes from
 * lib/engines/docker/containers.ts (postgresContainer/redisContainer), so `pulumi up`, the container tests
 * and `env:ci --engine docker` run the same thing.
 */
import * as docker from "@pulumi/docker";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import { POSTGRES_SUPERUSER, dummyDefinitions, postgresContainer, redisContainer, type ContainerDefinition, type ContainerSecrets } from "../lib/engines/docker/containers.js";
import { postgresUrl, postgresUser, redisUrl, redisUser, resourceName, type PostgresRole, type RedisRole } from "../lib/spec/access.js";
import { specHash as computeSpecHash } from "../lib/spec/load.js";
import type { Spec } from "../lib/spec/schema.js";

export interface DockerDataStackArgs {
  /** The environment's spec, from the one loader (parseSpec/loadSpec). */
  spec: Spec;
  /** Value of the spec-hash label on every container, volume and network. Default: `specHash(spec)`. */
  specHash?: string;
  /** Length of the generated passwords (letters and digits only, so URLs and redis.conf need no quoting). Default: 32. */
  passwordLength?: number;
}

/** PostgreSQL 16 + Redis 7 in Docker, from the spec. */
export class DockerDataStack extends pulumi.ComponentResource {
  readonly target = "docker" as const;
  readonly specHash: string;
  readonly network: docker.Network;
  readonly postgresVolume: docker.Volume;
  readonly redisVolume: docker.Volume;
  /** Archived WAL and base backups being written (lib/engines/docker/containers.ts: POSTGRES_BACKUP_VOLUME_PATH). */
  readonly postgresBackupVolume: docker.Volume;
  readonly postgresImage: docker.RemoteImage;
  readonly redisImage: docker.RemoteImage;
  readonly postgres: docker.Container;
  readonly redis: docker.Container;

  readonly postgresHost: pulumi.Output<string>;
  readonly postgresPort: pulumi.Output<number>;
  readonly redisHost: pulumi.Output<string>;
  readonly redisPort: pulumi.Output<number>;
  /** Schema owner's URL (migrations, the toolkit's scripts); secret. */
  readonly postgresUrl: pulumi.Output<string>;
  /** Redis default (admin) user's URL; secret. */
  readonly redisUrl: pulumi.Output<string>;
  /** URL per PostgreSQL role (admin = the image's superuser); secrets. */
  readonly postgresUrls: Record<PostgresRole, pulumi.Output<string>>;
  /** URL per Redis user (admin = default user, app = the ACL user); secrets. */
  readonly redisUrls: Record<RedisRole, pulumi.Output<string>>;
  readonly containerNames: pulumi.Output<{ postgres: string; redis: string }>;

  constructor(name: string, args: DockerDataStackArgs, opts?: pulumi.ComponentResourceOptions) {
    super("crypto-prediction-infra:index:DockerDataStack", name, {}, opts);
    const { spec } = args;
    const hash = args.specHash ?? computeSpecHash(spec);
    this.specHash = hash;
    const child = { parent: this };
    const length = args.passwordLength ?? 32;

    const password = (what: string) =>
      new random.RandomPassword(`${name}-${what}`, { length, special: false, minLower: 1, minUpper: 1, minNumeric: 1 }, child).result.apply((r) => required(r, what));
    const secrets: pulumi.Output<ContainerSecrets> = pulumi.secret(
      pulumi
        .all([
          password("postgres-superuser-password"),
          password("postgres-owner-password"),
          password("postgres-app-password"),
          password("postgres-readonly-password"),
          password("redis-admin-password"),
          password("redis-app-password"),
          password("postgres-backup-password"),
        ])
        .apply(([postgresPassword, owner, app, readonly, redisPassword, redisAppPassword, backup]) => ({
          postgresPassword,
          roles: { owner, app, readonly, backup },
          redisPassword,
          redisAppPassword,
        })),
    );

    const postgresDef = secretAwareDefinition((s) => postgresContainer(spec, s, hash), secrets);
    const redisDef = secretAwareDefinition((s) => redisContainer(spec, s, hash), secrets);
    const labels = toLabels(postgresDef.plain.labels);

    this.network = new docker.Network(
      `${name}-network`,
      {
        name: resourceName(spec, "net"),
        driver: "bridge",
        // Ports published without an address bind to loopback too (defence in depth).
        options: { "com.docker.network.bridge.host_binding_ipv4": "127.0.0.1" },
        labels,
      },
      child,
    );
    this.postgresVolume = new docker.Volume(`${name}-postgres-data`, { name: resourceName(spec, "postgres-data"), labels }, child);
    this.redisVolume = new docker.Volume(`${name}-redis-data`, { name: resourceName(spec, "redis-data"), labels }, child);
    const extra = postgresDef.plain.volumes ?? [];
    const extraVolumes = extra.map((v) => new docker.Volume(`${name}-${v.what}`, { name: resourceName(spec, v.what), labels }, child));
    this.postgresBackupVolume = extraVolumes[0]!;
    this.postgresImage = new docker.RemoteImage(`${name}-postgres-image`, { name: spec.images.postgres, keepLocally: true }, child);
    this.redisImage = new docker.RemoteImage(`${name}-redis-image`, { name: spec.images.redis, keepLocally: true }, child);

    this.postgres = new docker.Container(
      `${name}-postgres`,
      containerArgs(postgresDef, this.postgresImage, this.postgresVolume, this.network, "postgres", extraVolumes),
      child,
    );
    this.redis = new docker.Container(`${name}-redis`, containerArgs(redisDef, this.redisImage, this.redisVolume, this.network, "redis"), child);

    const pgPort = postgresDef.plain.ports[0]!;
    const redisPort = redisDef.plain.ports[0]!;
    this.postgresHost = pulumi.output(pgPort.hostIp);
    this.postgresPort = pulumi.output(pgPort.external);
    this.redisHost = pulumi.output(redisPort.hostIp);
    this.redisPort = pulumi.output(redisPort.external);
    // The URLs wait for the containers (healthy, thanks to `wait`) before they resolve.
    const pgUrl = (role: PostgresRole) =>
      pulumi.secret(
        pulumi.all([secrets, this.postgres.id]).apply(([s]) =>
          postgresUrl({ host: pgPort.hostIp, port: pgPort.external, ...postgresLogin(spec, s, role), database: spec.postgres.database }),
        ),
      );
    const rUrl = (role: RedisRole) =>
      pulumi.secret(
        pulumi.all([secrets, this.redis.id]).apply(([s]) =>
          redisUrl({ host: redisPort.hostIp, port: redisPort.external, ...redisLogin(spec, s, role), db: spec.redis.db }),
        ),
      );
    this.postgresUrls = { admin: pgUrl("admin"), owner: pgUrl("owner"), app: pgUrl("app"), readonly: pgUrl("readonly") };
    this.redisUrls = { admin: rUrl("admin"), app: rUrl("app") };
    this.postgresUrl = this.postgresUrls.owner;
    this.redisUrl = this.redisUrls.admin;
    this.containerNames = pulumi.all([this.postgres.name, this.redis.name]).apply(([postgres, redis]) => ({ postgres, redis }));

    this.registerOutputs({
      specHash: hash,
      postgresHost: this.postgresHost,
      postgresPort: this.postgresPort,
      redisHost: this.redisHost,
      redisPort: this.redisPort,
      postgresUrl: this.postgresUrl,
      redisUrl: this.redisUrl,
      postgresUrls: this.postgresUrls,
      redisUrls: this.redisUrls,
      containerNames: this.containerNames,
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Pure helpers
// ---------------------------------------------------------------------------------------------

/**
 * A container definition split into what depends on the secrets and what does not. The
 * definition is built twice with two different dummy secrets: any field that differs carries a
 * secret, so it is taken from the real definition (built inside the secret output) and stays
 * secret; everything else is plain, so previews show the command, ports and healthcheck.
 */
export interface SecretAwareDefinition {
  /** The definition with dummy secrets: use only for fields that do not depend on them. */
  plain: ContainerDefinition;
  /** Environment as `KEY=value`: plain strings, or secret outputs for values that carry a secret. */
  envs: pulumi.Input<string>[];
  /** File contents by index of `plain.files`: secret when the file is a secret or carries one. */
  fileContents: pulumi.Input<string>[];
}

export function secretAwareDefinition(build: (secrets: ContainerSecrets) => ContainerDefinition, secrets: pulumi.Output<ContainerSecrets>): SecretAwareDefinition {
  const [a, b] = dummyDefinitions(build);
  const real = secrets.apply(build);
  const envs = Object.entries(a.env).map(([key, value]): pulumi.Input<string> =>
    value === b.env[key] ? `${key}=${value}` : pulumi.secret(real.apply((d) => `${key}=${d.env[key]}`)),
  );
  const fileContents = a.files.map((file, i): pulumi.Input<string> =>
    file.secret || file.content !== b.files[i]!.content ? pulumi.secret(real.apply((d) => d.files[i]!.content)) : file.content,
  );
  return { plain: a, envs, fileContents };
}

/** docker.Container arguments for a definition. */
export function containerArgs(
  def: SecretAwareDefinition,
  image: docker.RemoteImage,
  volume: docker.Volume,
  network: docker.Network,
  alias: string,
  /** The definition's further volumes, in its order. */
  extraVolumes: docker.Volume[] = [],
): docker.ContainerArgs {
  const d = def.plain;
  return {
    name: d.name,
    image: image.imageId,
    command: d.command,
    envs: def.envs,
    uploads: d.files.map((f, i) => ({ file: f.path, content: def.fileContents[i]!, permissions: octalMode(f.mode) })),
    healthcheck: {
      tests: d.healthcheck.test,
      interval: `${d.healthcheck.intervalSeconds}s`,
      timeout: `${d.healthcheck.timeoutSeconds}s`,
      retries: d.healthcheck.retries,
      startPeriod: `${d.healthcheck.startPeriodSeconds}s`,
    },
    restart: "unless-stopped",
    ports: d.ports.map((p) => ({ internal: p.internal, external: p.external, ip: p.hostIp, protocol: "tcp" })),
    volumes: [{ volumeName: volume.name, containerPath: d.dataPath }, ...(d.volumes ?? []).map((v, i) => ({ volumeName: extraVolumes[i]!.name, containerPath: v.path }))],
    networksAdvanced: [{ name: network.name, aliases: [alias] }],
    shmSize: d.shmSizeBytes === undefined ? undefined : shmSizeMb(d.shmSizeBytes),
    labels: toLabels(d.labels),
    wait: true,
    waitTimeout: healthyWithinSeconds(d.healthcheck),
    mustRun: true,
  };
}

/** Docker's shm_size is in MB (MiB): rounded up so the spec's size always fits. */
export function shmSizeMb(bytes: number): number {
  return Math.ceil(bytes / 1024 ** 2);
}

/** Octal permissions as the Docker provider takes them: 0o444 → "0444". */
export function octalMode(mode: number): string {
  return mode.toString(8).padStart(4, "0");
}

/** How long `wait` waits for healthy: start period plus every retry's interval and timeout. */
export function healthyWithinSeconds(h: ContainerDefinition["healthcheck"]): number {
  return h.startPeriodSeconds + h.retries * (h.intervalSeconds + h.timeoutSeconds);
}

export function toLabels(labels: Record<string, string>): { label: string; value: string }[] {
  return Object.entries(labels).map(([label, value]) => ({ label, value }));
}

/** A generated value that must be there. */
export function required(value: string | undefined, what: string): string {
  if (value === undefined || value === "") throw new Error(`${what}: the random provider returned no value`);
  return value;
}

/** User and password of a PostgreSQL role in the container (admin: the image's superuser). */
export function postgresLogin(spec: Spec, s: ContainerSecrets, role: PostgresRole): { user: string; password: string } {
  const password = { admin: s.postgresPassword, owner: s.roles.owner, app: s.roles.app, readonly: s.roles.readonly }[role];
  return { user: postgresUser(spec, role, POSTGRES_SUPERUSER), password };
}

/** User and password of a Redis user in the container. */
export function redisLogin(spec: Spec, s: ContainerSecrets, role: RedisRole): { user: string; password: string } {
  return { user: redisUser(spec, role), password: role === "admin" ? s.redisPassword : s.redisAppPassword };
}
