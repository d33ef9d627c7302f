/**
 * One environment, however it runs: the embedded engine, Docker containers (both local, with
 * state under the toolkit's folder), or servers given by URL. Every operation (verify, drift,
 * monitor, maintain, cache, backup, restore, drill, seed) takes an `Environment` and asks it for
 * a connection per role, the way a started testcontainer hands out its URI: callers never
 * assemble a login or a URL by hand.
 */
import type { ClientConfig } from "pg";
import type { RedisOptions } from "ioredis";
import { CliError, EXIT } from "../errors.js";
import { POSTGRES_CONTAINER_PORT } from "../engines/docker/containers.js";
import { findDockerBinary, probeEngine } from "../engines/docker/engine.js";
import type { DownReport } from "../engines/embedded/environment.js";
import { defaultToolImages, type PgToolContext } from "../pgtools/resolve.js";
import type { PostgresRole, RedisRole } from "../spec/access.js";
import type { Spec } from "../spec/schema.js";
import type { EnvPaths } from "../state/paths.js";
import { readEnvironmentState, type EnvironmentConnections, type EnvironmentRecord } from "../state/record.js";
import { stopEnvironment } from "./lifecycle.js";

/** How to reach PostgreSQL as each role (servers given by URL have one login for every role). */
export interface PostgresEndpoint {
  config(role: PostgresRole, database?: string): ClientConfig;
  /** host:port/database, no secrets. */
  label: string;
}

/** How to reach Redis as each user (servers given by URL have one login for both). */
export interface RedisEndpoint {
  options(role: RedisRole): RedisOptions;
  /** host:port/db, no secrets. */
  label: string;
}

type Log = (message: string) => void;

export interface Environment {
  /** Its name (`--env`), or the spec's name that servers given by URL are compared with. */
  readonly env: string;
  readonly spec: Spec;
  /** A local environment (embedded or docker), or servers given by URL. */
  readonly kind: "embedded" | "docker" | "urls";
  /** One line for reports, without secrets. */
  readonly label: string;
  /** Distinct logins per role (local environments); false when one URL stands for every role. */
  readonly perRoleLogins: boolean;
  /** Absent only when a URL was given for the other server alone. */
  readonly postgres?: PostgresEndpoint;
  readonly redis?: RedisEndpoint;
  /** What to do when the servers do not answer. */
  readonly unreachableHint: string;
  /** node-postgres options for a role (default database: the spec's); a CliError when it has no PostgreSQL. */
  connection(role: PostgresRole, database?: string): ClientConfig;
  /** ioredis options for a role; a CliError when it has no Redis. */
  redisConnection(role: RedisRole): RedisOptions;
  /** Stops its servers, data kept (`down`). Servers given by URL are not the toolkit's to stop. */
  stop(log?: Log): Promise<DownReport>;
  /** Removes its servers and all its state (`down --destroy`). */
  destroy(log?: Log): Promise<DownReport>;
}

/** The Docker client and the containers of a Docker environment. */
export interface DockerHandles {
  binary: string;
  postgres: string;
  redis: string;
}

/** An environment this machine runs: its record, files and logins besides the connections. */
export interface LocalEnvironment extends Environment {
  readonly kind: "embedded" | "docker";
  readonly record: EnvironmentRecord;
  readonly paths: EnvPaths;
  readonly connections: EnvironmentConnections;
  /** Where pg_dump, pg_restore and psql of the right version may come from. */
  readonly tools: PgToolContext;
  /** Docker environments: the client binary and the containers (a CliError when no Docker client is installed). */
  readonly docker: DockerHandles | undefined;
}

/** A local environment by name, from its state (it need not be running); fails clearly when there is none. */
export function openEnvironment(env: string): LocalEnvironment {
  const state = readEnvironmentState(env);
  const { record, spec, connections, paths } = state;
  const kind = record.engine;
  let docker: DockerHandles | undefined;
  const tools: PgToolContext =
    kind === "docker" && record.docker
      ? { engine: "docker", hostPort: spec.postgres.port, container: { name: record.docker.containers.postgres, port: POSTGRES_CONTAINER_PORT }, images: defaultToolImages(spec.images.postgres) }
      : { engine: kind, hostPort: spec.postgres.port, images: defaultToolImages(spec.images.postgres) };
  return {
    env,
    spec,
    kind,
    record,
    paths,
    connections,
    tools,
    label: `${env} (${kind}${record.ephemeral ? ", ephemeral" : ""}; PostgreSQL 127.0.0.1:${spec.postgres.port}, Redis 127.0.0.1:${spec.redis.port})`,
    perRoleLogins: true,
    postgres: { config: (role, database) => connections.postgresConfig(role, database), label: `127.0.0.1:${spec.postgres.port}/${spec.postgres.database}` },
    redis: { options: (role) => connections.redisOptions(role), label: `127.0.0.1:${spec.redis.port}/${spec.redis.db}` },
    unreachableHint:
      kind === "embedded" ? `is it running? npm run status -- --env ${env}; start it: npm run up -- --env ${env}` : `is it running? npm run status -- --env ${env}; start its containers: npm run up -- --env ${env}`,
    connection: (role, database) => connections.postgresConfig(role, database),
    redisConnection: (role) => connections.redisOptions(role),
    // Found on first use: a Docker environment's state can be read (status, connect) without a Docker client.
    get docker() {
      if (kind !== "docker") return undefined;
      docker ??= dockerHandles(env, record, paths);
      return docker;
    },
    stop: (log) => stopEnvironment(env, { destroy: false, log }),
    destroy: (log) => stopEnvironment(env, { destroy: true, log }),
  };
}

/**
 * A local environment whose servers this command works on directly (backup, restore): as
 * openEnvironment, and a Docker environment's client and containers are checked now, before
 * anything starts.
 */
export function openLocalEnvironment(env: string): LocalEnvironment {
  const environment = openEnvironment(env);
  void environment.docker;
  return environment;
}

function dockerHandles(env: string, record: EnvironmentRecord, paths: EnvPaths): DockerHandles {
  const containers = record.docker?.containers;
  if (!containers) throw new CliError(`environment '${env}' is a Docker environment without containers in its record (${paths.record})`, EXIT.ERROR);
  // No `docker info` up front: the first docker call says whether the engine answers.
  const binary = findDockerBinary();
  if (!binary) {
    const engine = probeEngine();
    throw new CliError(`environment '${env}' runs in Docker, and ${engine.problem}`, EXIT.ERROR, engine.fix);
  }
  return { binary, postgres: containers.postgres, redis: containers.redis };
}

/** Servers given by URL, compared with `spec`: connections only; the toolkit neither stops nor removes them. */
export function urlEnvironment(env: string, spec: Spec, postgres: PostgresEndpoint | undefined, redis: RedisEndpoint | undefined): Environment {
  const notManaged = async (): Promise<DownReport> => {
    throw new CliError("servers given by --database-url/--redis-url are not the toolkit's to stop or remove", EXIT.USAGE, "stop them where they run (pulumi destroy for a stack)");
  };
  return {
    env,
    spec,
    kind: "urls",
    label: [postgres && `postgresql://${postgres.label}`, redis && `redis://${redis.label}`].filter(Boolean).join(" + ") + ` (spec: ${env})`,
    perRoleLogins: false,
    postgres,
    redis,
    unreachableHint: "check the URL, the network path (security groups, VPN) and the password ($PGPASSWORD / $REDISCLI_AUTH)",
    connection: (role, database) => {
      if (!postgres) throw new CliError("no PostgreSQL to connect to: only --redis-url was given", EXIT.USAGE, "add --database-url postgresql://USER@HOST:PORT/DB");
      return postgres.config(role, database);
    },
    redisConnection: (role) => {
      if (!redis) throw new CliError("no Redis to connect to: only --database-url was given", EXIT.USAGE, "add --redis-url redis[s]://USER@HOST:PORT/DB");
      return redis.options(role);
    },
    stop: notManaged,
    destroy: notManaged,
  };
}
