/**
 * What backup and restore need to know about a local environment (embedded processes, or Docker
 * containers made by `env:ci --engine docker`): how to log in as the admin roles, where the
 * PostgreSQL client tools may come from, and how to reach Redis's files.
 */
import type { ClientConfig } from "pg";
import type { RedisOptions } from "ioredis";
import { CliError, EXIT } from "../errors.js";
import { POSTGRES_CONTAINER_PORT } from "../docker/containers.js";
import { findDockerBinary, probeEngine } from "../docker/engine.js";
import { openEnvironment, type OpenedEnvironment } from "../env/environment.js";
import { defaultToolImages, type PgToolContext } from "../pgtools/resolve.js";
import { run } from "../process.js";


export interface LocalEnvironment {
  opened: OpenedEnvironment;
  env: string;
  engine: "embedded" | "docker";
  /** PostgreSQL superuser login (the toolkit's admin connection). */
  pgAdmin: { user: string; password: string };
  pgConfig(database?: string): ClientConfig;
  redisAdmin: RedisOptions;
  tools: PgToolContext;
  /** docker target: the client binary and the containers. */
  docker?: { binary: string; postgres: string; redis: string };
}

export function localEnvironment(env: string): LocalEnvironment {
  const opened = openEnvironment(env);
  const { record, spec, connections } = opened;
  const base = {
    opened,
    env,
    engine: record.engine,
    pgAdmin: { user: connections.credentials.postgres.superuser, password: connections.credentials.postgres.superuserPassword },
    pgConfig: (database?: string) => connections.postgresConfig("admin", database),
    redisAdmin: connections.redisOptions("admin"),
  };
  if (record.engine === "docker") {
    const containers = record.docker?.containers;
    if (!containers) throw new CliError(`environment '${env}' is a Docker environment without containers in its record (${opened.paths.record})`, EXIT.ERROR);
    // No `docker info` up front: the first docker call says whether the engine answers.
    const binary = findDockerBinary();
    if (!binary) {
      const engine = probeEngine();
      throw new CliError(`environment '${env}' runs in Docker, and ${engine.problem}`, EXIT.ERROR, engine.fix);
    }
    return {
      ...base,
      tools: { engine: "docker", hostPort: spec.postgres.port, container: { name: containers.postgres, port: POSTGRES_CONTAINER_PORT }, images: defaultToolImages(spec.images.postgres) },
      docker: { binary, postgres: containers.postgres, redis: containers.redis },
    };
  }
  return { ...base, tools: { engine: "embedded", hostPort: spec.postgres.port, images: defaultToolImages(spec.images.postgres) } };
}

/** Runs the docker CLI; a failure becomes a CliError with its message. */
export async function docker(binary: string, args: string[], options: { timeoutMs?: number } = {}): Promise<string> {
  try {
    const { stdout } = await run(binary, args, { timeout: options.timeoutMs ?? 120_000});
    return stdout;
  } catch (error) {
    const e = error as { stderr?: string; message: string };
    throw new CliError(`docker ${args.slice(0, 2).join(" ")} failed: ${(e.stderr || e.message).trim().split("\n").slice(-3).join(" | ")}`, EXIT.ERROR);
  }
}
