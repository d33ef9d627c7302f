/**
 * Throw-away CI environments on either engine. Both record themselves like any local
 * environment (env.json + credentials), so verify, backup and drift work on them by id.
 */
import { existsSync, rmSync } from "node:fs";
import { CliError, EXIT } from "../errors.js";
import { withPg } from "../db/clients.js";
import type { Credentials } from "../state/credentials.js";
import { downEmbedded, EmbeddedEnvironment } from "../engines/embedded/environment.js";
import { readRecord, type EnvironmentConnections } from "../state/record.js";
import { envPaths, isEphemeralId } from "../state/paths.js";

export interface StartedCiEnvironment {
  id: string;
  engine: "embedded" | "docker";
  connections: EnvironmentConnections;
  /** Every password, for CI log masking. */
  secrets: string[];
  seconds: number;
}

export interface CiEnvironmentOptions {
  engine: "embedded" | "docker";
  /** Stack whose spec is copied (default ci). */
  baseEnv: string;
  seed: boolean;
  log: (message: string) => void;
}

export async function startCiEnvironment(options: CiEnvironmentOptions): Promise<StartedCiEnvironment> {
  const started = Date.now();
  let id: string;
  let connections: EnvironmentConnections;
  if (options.engine === "embedded") {
    const env = await new EmbeddedEnvironment(options.baseEnv).withEphemeral().withLog(options.log).start();
    id = env.env;
    connections = env.connections;
  } else {
    const { DockerEnvironment } = await import("../engines/docker/environment.js");
    const env = await new DockerEnvironment(options.baseEnv).withEphemeral().withLog(options.log).start();
    id = env.env;
    connections = env.connections;
  }
  if (options.seed) {
    options.log("seeding sample data");
    const { seedMarketData } = await import("../db/seed/index.js");
    await withPg(connections.postgresConfig("owner"), (client) => seedMarketData(client));
  }
  return { id, engine: options.engine, connections, secrets: secretsOf(connections.credentials), seconds: (Date.now() - started) / 1000 };
}

function secretsOf(c: Credentials): string[] {
  return [c.postgres.superuserPassword, c.postgres.ownerPassword, c.postgres.appPassword, c.postgres.readonlyPassword, c.redis.adminPassword, c.redis.appPassword];
}

/**
 * Removes a CI environment and everything it made; says what it removed. A Docker environment is
 * found by its record or, when that is gone or corrupt, by its labels.
 */
export async function removeCiEnvironment(id: string, log: (message: string) => void): Promise<{ id: string; removed: string[] }> {
  if (!isEphemeralId(id)) {
    throw new CliError(`${JSON.stringify(id)} is not a CI environment id (eph-…)`, EXIT.USAGE, "named environments are stopped with: npm run down -- --env NAME");
  }
  let record: ReturnType<typeof readRecord>;
  try {
    record = readRecord(id);
  } catch {
    record = undefined; // corrupt: whatever runs is found by pid files or labels below
  }
  if (record?.engine === "docker" || (record === undefined && (await hasDockerObjects(id)))) {
    const { removeDockerEnvironment } = await import("../engines/docker/environment.js");
    return { id, removed: await removeDockerEnvironment(id, log) };
  }
  if (!existsSync(envPaths(id).dir)) return { id, removed: [] };
  const report = await downEmbedded(id, { destroy: true, log });
  rmSync(envPaths(id).dir, { recursive: true, force: true });
  return { id, removed: [report.stopped.postgres && "postgres process", report.stopped.redis && "redis process", "state dir"].filter((x): x is string => Boolean(x)) };
}

async function hasDockerObjects(id: string): Promise<boolean> {
  const { hasDockerObjects: check } = await import("../engines/docker/environment.js");
  return check(id);
}
