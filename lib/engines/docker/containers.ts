/**
 * What the PostgreSQL and Redis containers run, derived from the spec: command, environment,
 * files, healthcheck and published ports. The Docker Pulumi component (stacks/docker-data-stack.ts),
 * the container tests and `env:ci --engine docker` all use these functions, so a container
 * started by any of them runs exactly the same thing.
 */
import type { Spec } from "../../spec/schema.js";
import { postgresArgs, redisArgs } from "../../spec/render.js";
import { parsePgSize } from "../../spec/units.js";
import { bootstrapSql, type RolePasswords } from "../../db/roles.js";
import { redisAclLines, resourceName } from "../../spec/access.js";

/** Port PostgreSQL listens on inside its container. */
export const POSTGRES_CONTAINER_PORT = 5432;
/** Port Redis listens on inside its container. */
export const REDIS_CONTAINER_PORT = 6379;
/** Where PostgreSQL keeps its data (the official image's PGDATA). */
export const POSTGRES_DATA_PATH = "/var/lib/postgresql/data";
/**
 * The PostgreSQL container's backup volume: archived WAL (basic_archive.archive_directory) and
 * the folder where the server writes a base backup (BASE_BACKUP TARGET 'server') before the
 * toolkit compresses it into the environment's backup repository. A volume of its own, so that
 * losing the data volume (a disaster) leaves the archive, and a restore reads it.
 */
export const POSTGRES_BACKUP_VOLUME_PATH = "/var/lib/postgresql/backup";
export const POSTGRES_ARCHIVE_PATH = `${POSTGRES_BACKUP_VOLUME_PATH}/wal`;
export const POSTGRES_BACKUP_STAGING_PATH = `${POSTGRES_BACKUP_VOLUME_PATH}/staging`;
/** Init script: the base-backup role may open a replication session (BASE_BACKUP) from the container's own networks. */
export const POSTGRES_REPLICATION_HBA_SCRIPT_PATH = "/docker-entrypoint-initdb.d/20-replication-hba.sh";
/** Where Redis keeps dump.rdb and appendonlydir. */
export const REDIS_DATA_PATH = "/data";
/** The password file that the postgres image's entrypoint reads (POSTGRES_PASSWORD_FILE). */
export const POSTGRES_PASSWORD_PATH = "/run/secrets/postgres-password";
/** The init script that creates the least-privilege roles (lib/db/roles.ts) on first start. */
export const POSTGRES_ROLES_SCRIPT_PATH = "/docker-entrypoint-initdb.d/10-roles.sql";
/** The superuser the image's entrypoint creates; the toolkit's admin connection. */
export const POSTGRES_SUPERUSER = "postgres";
/** Redis's config file inside the container: it holds the passwords, so they are not in argv. */
export const REDIS_CONF_PATH = "/usr/local/etc/redis/redis.conf";
/** The Redis admin password as a file, for the healthcheck's redis-cli (never an environment variable). */
export const REDIS_PASSWORD_PATH = "/run/secrets/redis-admin-password";
/**
 * The uid and gid of the images' service users (postgres, redis): 999, as in the official images
 * and the Dockerfiles in docker/. Secret files are theirs, mode 0600, so the server reads them and
 * nobody else in the container does (root, which runs the healthcheck, reads every file).
 */
export const IMAGE_SERVICE_UID = 999;

/** A file to place in the container before it starts. */
export interface ContainerFile {
  path: string;
  content: string;
  /** Octal mode. */
  mode: number;
  /** The content is a secret (Pulumi wraps it with pulumi.secret). */
  secret: boolean;
  /**
   * Owner inside the container (uid = gid). Tools that cannot set it (Pulumi's uploads) leave
   * the file root's: the images' entrypoints then hand secret files to the service user.
   */
  owner?: number;
}

/** One container's definition, independent of the tool that starts it. */
export interface ContainerDefinition {
  name: string;
  image: string;
  /** Arguments after the image's entrypoint. */
  command: string[];
  /** Environment variables; none holds a secret (`docker inspect` shows them): secrets are files. */
  env: Record<string, string>;
  files: ContainerFile[];
  healthcheck: { test: string[]; intervalSeconds: number; timeoutSeconds: number; retries: number; startPeriodSeconds: number };
  /** Container port → host port, published on 127.0.0.1 only. */
  ports: { internal: number; external: number; hostIp: "127.0.0.1" }[];
  /** Named volume mount point. */
  dataPath: string;
  /** Further named volumes: `what` names the volume as resourceName(spec, what) does. */
  volumes?: { what: string; path: string }[];
  shmSizeBytes?: number;
  labels: Record<string, string>;
}

export interface ContainerSecrets {
  /** Password of the PostgreSQL superuser the image's entrypoint creates (POSTGRES_USER=postgres). */
  postgresPassword: string;
  /** Passwords of the owner, app and read-only roles. */
  roles: RolePasswords;
  /** Password of Redis's default user (the toolkit's admin connection). */
  redisPassword: string;
  /** Password of Redis's application ACL user. */
  redisAppPassword: string;
}

/** Fields of a definition that never carry a secret: previews, `docker inspect` and compose.yaml show them. */
export const PLAIN_FIELDS = ["name", "image", "command", "healthcheck", "ports", "dataPath", "volumes", "shmSizeBytes", "labels"] as const;

const dummySecrets = (tag: string): ContainerSecrets => ({
  postgresPassword: `dummy${tag}superuser`,
  roles: { owner: `dummy${tag}owner`, app: `dummy${tag}app`, readonly: `dummy${tag}readonly`, backup: `dummy${tag}backup` },
  redisPassword: `dummy${tag}redisadmin`,
  redisAppPassword: `dummy${tag}redisapp`,
});

/**
 * A definition built twice with two different dummy passwords: any field that differs carries a
 * secret. Throws when a PLAIN_FIELDS field, or the set of files or variables, depends on one.
 */
export function dummyDefinitions(build: (secrets: ContainerSecrets) => ContainerDefinition): [ContainerDefinition, ContainerDefinition] {
  const a = build(dummySecrets("AAAA"));
  const b = build(dummySecrets("BBBB"));
  for (const field of PLAIN_FIELDS) {
    if (JSON.stringify(a[field]) !== JSON.stringify(b[field])) throw new Error(`container ${a.name}: ${field} depends on a password; only env and files may carry secrets (lib/engines/docker/containers.ts)`);
  }
  if (JSON.stringify(a.files.map((f) => f.path)) !== JSON.stringify(b.files.map((f) => f.path)) || JSON.stringify(Object.keys(a.env)) !== JSON.stringify(Object.keys(b.env))) {
    throw new Error(`container ${a.name}: the set of files or environment variables depends on a password`);
  }
  return [a, b];
}

/** Labels on every Docker resource: env and spec hash, for drift review. */
export function dockerLabels(spec: Spec, specHashValue: string): Record<string, string> {
  return {
    "crypto-prediction-infra.env": spec.env,
    "crypto-prediction-infra.spec-hash": specHashValue,
  };
}

/**
 * The PostgreSQL container. The image's entrypoint creates the superuser and POSTGRES_DB, then
 * runs the roles script: the schema owner (crypto_user), the app and the read-only role. The
 * healthcheck uses TCP: the unix socket answers while the init-time server runs.
 */
export function postgresContainer(spec: Spec, secrets: Pick<ContainerSecrets, "postgresPassword" | "roles">, specHashValue: string): ContainerDefinition {
  const pg = spec.postgres;
  const server = ["postgres", ...postgresArgs(spec, { archiveDirectory: POSTGRES_ARCHIVE_PATH })];
  return {
    name: resourceName(spec, "postgres"),
    image: spec.images.postgres,
    // A fresh named volume is root's: its folders are made the server's before the image's
    // entrypoint (which drops to postgres) runs the server; `docker inspect` still shows the tuning.
    command: ["bash", "-c", BACKUP_VOLUME_SETUP, "postgres-with-backup-volume", ...server],
    env: {
      POSTGRES_USER: POSTGRES_SUPERUSER,
      POSTGRES_DB: pg.database,
      POSTGRES_PASSWORD_FILE: POSTGRES_PASSWORD_PATH,
      POSTGRES_INITDB_ARGS: "--auth-host=scram-sha-256 --auth-local=scram-sha-256",
      PGDATA: POSTGRES_DATA_PATH,
    },
    files: [
      { path: POSTGRES_PASSWORD_PATH, content: secrets.postgresPassword, mode: 0o600, secret: true, owner: IMAGE_SERVICE_UID },
      { path: POSTGRES_ROLES_SCRIPT_PATH, content: bootstrapSql(spec, secrets.roles), mode: 0o600, secret: true, owner: IMAGE_SERVICE_UID },
      { path: POSTGRES_REPLICATION_HBA_SCRIPT_PATH, content: replicationHbaScript(spec), mode: 0o555, secret: false },
    ],
    healthcheck: {
      test: ["CMD", "pg_isready", "-h", "127.0.0.1", "-p", String(POSTGRES_CONTAINER_PORT), "-U", pg.user, "-d", pg.database],
      intervalSeconds: 1,
      timeoutSeconds: 3,
      retries: 30,
      startPeriodSeconds: 2,
    },
    ports: [{ internal: POSTGRES_CONTAINER_PORT, external: pg.port, hostIp: "127.0.0.1" }],
    dataPath: POSTGRES_DATA_PATH,
    volumes: [{ what: "postgres-backup", path: POSTGRES_BACKUP_VOLUME_PATH }],
    shmSizeBytes: parsePgSize(spec.docker.shmSize),
    labels: dockerLabels(spec, specHashValue),
  };
}

/** Runs as root before the image's entrypoint: the backup volume's folders, owned by the server (0700). */
const BACKUP_VOLUME_SETUP = [
  `install -d -o postgres -g postgres -m 0700 ${POSTGRES_BACKUP_VOLUME_PATH} ${POSTGRES_ARCHIVE_PATH} ${POSTGRES_BACKUP_STAGING_PATH}`,
  `chown postgres:postgres ${POSTGRES_BACKUP_VOLUME_PATH}`,
  'exec docker-entrypoint.sh "$@"',
].join(" && ");

/**
 * The init script that lets the base-backup role (and only it) open a replication session.
 * `samenet`: the container's own networks, which is where the published 127.0.0.1 port's
 * connections come from (the bridge's gateway); the image's `host all all all` line does not
 * cover replication.
 */
export function replicationHbaScript(spec: Spec): string {
  return `#!/usr/bin/env bash\nset -e\nprintf 'host replication ${spec.postgres.backupUser} samenet scram-sha-256\\n' >> "$PGDATA/pg_hba.conf"\n`;
}

/** Non-secret server lines of the container's redis.conf. */
export function redisContainerConf(spec: Spec, secrets: ContainerSecrets): string {
  return [
    `port ${REDIS_CONTAINER_PORT}`,
    `dir ${REDIS_DATA_PATH}`,
    `protected-mode yes`,
    ...redisAclLines(spec, secrets.redisPassword, secrets.redisAppPassword),
  ].join("\n").concat("\n");
}

/**
 * The Redis container: `redis-server <conf> --<setting> …`. The passwords live in the conf file
 * (0600, the redis user's); the spec's settings are arguments, so `docker inspect` shows the
 * tuning. The healthcheck's redis-cli reads the admin password from a 0600 file into
 * REDISCLI_AUTH of its own process: no password in argv, nor in the container's environment.
 */
export function redisContainer(spec: Spec, secrets: ContainerSecrets, specHashValue: string): ContainerDefinition {
  return {
    name: resourceName(spec, "redis"),
    image: spec.images.redis,
    command: ["redis-server", REDIS_CONF_PATH, ...redisArgs(spec)],
    env: {},
    files: [
      { path: REDIS_CONF_PATH, content: redisContainerConf(spec, secrets), mode: 0o600, secret: true, owner: IMAGE_SERVICE_UID },
      { path: REDIS_PASSWORD_PATH, content: secrets.redisPassword, mode: 0o600, secret: true, owner: IMAGE_SERVICE_UID },
    ],
    healthcheck: {
      test: ["CMD-SHELL", `REDISCLI_AUTH="$(cat ${REDIS_PASSWORD_PATH})" redis-cli -p ${REDIS_CONTAINER_PORT} ping | grep -q PONG`],
      intervalSeconds: 1,
      timeoutSeconds: 3,
      retries: 30,
      startPeriodSeconds: 1,
    },
    ports: [{ internal: REDIS_CONTAINER_PORT, external: spec.redis.port, hostIp: "127.0.0.1" }],
    dataPath: REDIS_DATA_PATH,
    labels: dockerLabels(spec, specHashValue),
  };
}
