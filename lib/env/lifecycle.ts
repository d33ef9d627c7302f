/**
 * The lifecycle commands (down, status, restart, logs) for every local environment, whatever its
 * engine: an embedded environment is found by its state folder and pid files, a Docker one by its
 * record AND by the labels the toolkit puts on its containers, volumes and network, so that
 * nothing the toolkit made becomes unreachable to it (state lost, containers removed by hand).
 */
import { existsSync, readdirSync } from "node:fs";
import { CliError, EXIT } from "../errors.js";
import { POSTGRES_DATA_PATH, REDIS_DATA_PATH } from "../engines/docker/containers.js";
import { resourceName } from "../spec/access.js";
import { probeEngine } from "../engines/docker/engine.js";
import { credentialsOrNothing, downEmbedded, EmbeddedEnvironment, probeVersions, statusEmbedded, type DownOptions, type DownReport, type ServiceStatus, type StatusReport } from "../engines/embedded/environment.js";
import { EnvironmentConnections, readRecord, specOf, type EnvironmentRecord } from "../state/record.js";
import { blockedFolder, currentUserName, envPaths, ephemeralRoot, isEphemeralId, rootStateRoot, stateRoot } from "../state/paths.js";
import { run } from "../process.js";

type Log = (message: string) => void;

/** Whether a name under a state root can be an environment (lock folders and drill scratch folders cannot). */
const ENVIRONMENT_FOLDER = /^[a-z][a-z0-9-]{0,39}$/;

/** The record, or the error that reading it gave (status reports it instead of failing). */
function tryRecord(env: string): { record?: EnvironmentRecord; error?: CliError } {
  try {
    return { record: readRecord(env) };
  } catch (error) {
    if (error instanceof CliError) return { error };
    throw error;
  }
}

/** `down` for both engines. Docker: stop the containers (data kept) or, with destroy, remove everything. */
export async function stopEnvironment(env: string, options: DownOptions): Promise<DownReport> {
  const paths = envPaths(env);
  if (options.byPidFiles) {
    const report = existsSync(paths.dir) ? await downEmbedded(env, options) : { env, engine: "embedded" as const, stopped: { postgres: false, redis: false }, destroyed: false };
    // An ephemeral id may be a Docker environment with a corrupt record: its labelled containers.
    if (isEphemeralId(env) && (await dockerObjectsExist(env))) return dockerDown(env, options, report.notes);
    if (!existsSync(paths.dir)) throw new CliError(`environment '${env}' has no state folder (${paths.dir}); there is nothing to stop`, EXIT.ERROR, "see: npm run status -- --all");
    return report;
  }
  const { record, error } = tryRecord(env);
  if (error && !options.destroy) throw error;
  if (record?.engine === "docker") return dockerDown(env, options);
  // No (readable) record: for an ephemeral id, Docker objects labelled with it are still its own.
  if (!record && isEphemeralId(env) && (await dockerObjectsExist(env))) {
    return dockerDown(env, options, ["its state (env.json) was missing or unreadable: found its Docker objects by their labels"]);
  }
  if (!record && !error) assertStateVisible(env);
  return downEmbedded(env, options);
}

async function dockerDown(env: string, options: DownOptions, notes: string[] = []): Promise<DownReport> {
  const { removeDockerEnvironment, stopDockerEnvironment } = await import("../engines/docker/environment.js");
  const log = options.log ?? (() => undefined);
  if (options.destroy) {
    const { findDockerObjects } = await import("../engines/docker/environment.js");
    const running = (await findDockerObjects(env)).containers.filter((c) => c.running).map((c) => c.name);
    const removed = await removeDockerEnvironment(env, log, { lockWaitSeconds: options.lockWaitSeconds });
    const was = (what: string) => running.some((name) => name.endsWith(`-${what}`));
    return { env, engine: "docker", stopped: { postgres: was("postgres"), redis: was("redis") }, destroyed: true, removed, ...(notes.length ? { notes } : {}) };
  }
  const { stopped, missing } = await stopDockerEnvironment(env, log, { lockWaitSeconds: options.lockWaitSeconds });
  const was = (what: string) => stopped.some((name) => name.endsWith(`-${what}`));
  if (missing.length) notes.push(`container ${missing.join(" and ")} no longer exists (removed outside the toolkit); remove the rest: npm run down -- --env ${env} --destroy --yes`);
  return { env, engine: "docker", stopped: { postgres: was("postgres"), redis: was("redis") }, destroyed: false, ...(notes.length ? { notes } : {}) };
}

/** True when an answering engine holds objects labelled with this id (false without an engine). */
async function dockerObjectsExist(env: string): Promise<boolean> {
  const { hasDockerObjects } = await import("../engines/docker/environment.js");
  return hasDockerObjects(env);
}

/**
 * Throws when the environment's state exists but this user cannot read it (e.g. made by root,
 * owned by the servers' account, mode 0700): "has no local state" would point the wrong way.
 */
export function assertStateVisible(env: string): void {
  const problem = stateAccessProblem(env);
  if (problem) throw new CliError(problem.problem, EXIT.ERROR, problem.hint);
}

/** Why this user cannot see an environment's state, when that is the reason it looks absent. */
export function stateAccessProblem(env: string): { problem: string; hint: string } | undefined {
  const paths = envPaths(env);
  const user = currentUserName();
  const sudo = "run the command as root (e.g. sudo npm run status -- --env " + env + ")";
  const blocked = blockedFolder(paths.dir);
  if (blocked) {
    return {
      problem: `the state of '${env}' is in ${paths.dir}, which user '${user}' cannot read: ${blocked.dir} belongs to '${blocked.owner}' (mode ${blocked.mode.toString(8)}); environments brought up as root keep their state for the servers' account`,
      hint: sudo,
    };
  }
  if (!existsSync(paths.dir) && process.getuid?.() !== 0 && !process.env.CPI_STATE_DIR && !isEphemeralId(env)) {
    const rootDir = `${rootStateRoot()}/${env}`;
    const rootBlocked = blockedFolder(rootDir);
    if (existsSync(rootDir) || rootBlocked) {
      return { problem: `'${env}' was not brought up by user '${user}': root keeps its state in ${rootDir}${rootBlocked ? ` (${rootBlocked.dir} belongs to '${rootBlocked.owner}', mode ${rootBlocked.mode.toString(8)})` : ""}`, hint: sudo };
    }
  }
  return undefined;
}

/** `status` of one environment, both engines. Never throws for a broken environment: it says what is wrong. */
export async function environmentStatus(env: string): Promise<StatusReport> {
  envPaths(env); // the name's shape (a usage error)
  const { record, error } = tryRecord(env);
  if (error) return { env, exists: true, problem: error.message, hint: error.hint, unreadable: true };
  if (record?.engine === "docker") return dockerStatus(env, record);
  if (record) return statusEmbedded(env, record);
  const access = stateAccessProblem(env);
  if (access) return { env, exists: false, problem: access.problem, hint: access.hint, unreadable: true };
  if (isEphemeralId(env) && (await dockerObjectsExist(env))) {
    return {
      env,
      exists: true,
      engine: "docker",
      problem: `no state (env.json) for '${env}', but the Docker engine holds objects labelled crypto-prediction-infra.env=${env}`,
      hint: `remove them: npm run env:ci -- --down ${env}`,
    };
  }
  if (existsSync(envPaths(env).dir)) {
    return { env, exists: true, problem: `the state folder ${envPaths(env).dir} has no env.json (a run was interrupted while creating it?)`, hint: `remove it: npm run down -- --env ${env} --destroy --yes` };
  }
  return { env, exists: false };
}

/** A Docker environment's status: its containers' states and health, versions, volume sizes. */
async function dockerStatus(env: string, record: EnvironmentRecord): Promise<StatusReport> {
  const spec = specOf(env, record);
  const base = { env, exists: true, engine: "docker", ephemeral: record.ephemeral };
  const names = record.docker?.containers ?? { postgres: resourceName(spec, "postgres"), redis: resourceName(spec, "redis") };
  const idle = (port: number, container: string): ServiceStatus => ({ running: false, answering: false, port, container, state: "unknown" });
  const engine = probeEngine(5_000);
  if (!engine.answering || !engine.binary) {
    return { ...base, postgres: idle(spec.postgres.port, names.postgres), redis: idle(spec.redis.port, names.redis), problem: `the Docker engine does not answer: ${engine.problem}`, hint: engine.fix, unreadable: true };
  }
  const { findDockerObjects, volumeBytes } = await import("../engines/docker/environment.js");
  const found = await findDockerObjects(env, engine.binary, record);
  const pg = found.containers.find((c) => c.name === names.postgres);
  const redis = found.containers.find((c) => c.name === names.redis);
  const credentials = credentialsOrNothing(envPaths(env), env);
  const connections = credentials && new EnvironmentConnections(spec, credentials);
  const [[pgVersion, redisVersion], pgBytes, redisBytes] = await Promise.all([
    probeVersions(connections, pg?.running === true, redis?.running === true),
    volumeBytes(resourceName(spec, "postgres-data"), pg, POSTGRES_DATA_PATH, engine.binary),
    volumeBytes(resourceName(spec, "redis-data"), redis, REDIS_DATA_PATH, engine.binary),
  ]);
  const service = (port: number, name: string, c: typeof pg, version: string | undefined, dataBytes: number | undefined): ServiceStatus => ({
    running: c?.running === true,
    answering: version !== undefined,
    port,
    container: name,
    state: c?.state ?? "missing",
    ...(c?.health ? { health: c.health } : {}),
    version,
    dataBytes,
  });
  const missing = [pg, redis].filter((c) => !c || c.state === "missing").map((c, i) => c?.name ?? [names.postgres, names.redis][i]);
  return {
    ...base,
    postgres: service(spec.postgres.port, names.postgres, pg, pgVersion, pgBytes),
    redis: service(spec.redis.port, names.redis, redis, redisVersion, redisBytes),
    ...(missing.length ? { problem: `container ${missing.join(" and ")} no longer exists (removed outside the toolkit)`, hint: `remove the rest: npm run down -- --env ${env} --destroy --yes` } : {}),
  };
}

/**
 * Every local environment: state folders named like environments (not lock folders such as
 * `.dev.lock`, not drill scratch folders), plus ephemeral ids that only Docker labels still know.
 */
export async function localEnvironmentNames(): Promise<{ names: string[]; problems: { dir: string; problem: string; hint: string }[] }> {
  const problems: { dir: string; problem: string; hint: string }[] = [];
  const list = (dir: string, keep: (name: string) => boolean) => {
    const blocked = blockedFolder(dir);
    if (blocked) {
      problems.push({ dir, problem: `${dir} cannot be read by user '${currentUserName()}' (${blocked.dir} belongs to '${blocked.owner}', mode ${blocked.mode.toString(8)})`, hint: "run as root (sudo npm run status -- --all)" });
      return [];
    }
    try {
      return readdirSync(dir, { withFileTypes: true }).filter((d) => d.isDirectory() && keep(d.name)).map((d) => d.name);
    } catch {
      return [];
    }
  };
  const names = new Set([...list(stateRoot(), (n) => ENVIRONMENT_FOLDER.test(n) && !isEphemeralId(n)), ...list(ephemeralRoot(), isEphemeralId)]);
  for (const id of await labelledEphemeralIds()) names.add(id);
  return { names: [...names].sort(), problems };
}

/** Ephemeral ids on the labels of the engine's containers and volumes (none without an engine). */
async function labelledEphemeralIds(): Promise<string[]> {
  const engine = probeEngine(5_000);
  if (!engine.answering || !engine.binary) return [];
  const { execFile } = await import("node:child_process");
  const { promisify } = await import("node:util");
    const key = "crypto-prediction-infra.env";
  const ids = new Set<string>();
  for (const args of [["ps", "-a", "--filter", `label=${key}`, "--format", `{{.Label "${key}"}}`], ["volume", "ls", "--filter", `label=${key}`, "--format", `{{.Label "${key}"}}`]]) {
    const { stdout } = await run(engine.binary, args).catch(() => ({ stdout: "" }));
    for (const id of stdout.split("\n").map((l) => l.trim())) if (isEphemeralId(id)) ids.add(id);
  }
  return [...ids];
}

/** `restart` for both engines: stop and start again, under the environment's lock. */
export async function restartEnvironment(env: string, log: Log, lockWaitSeconds?: number): Promise<{ env: string; engine: "embedded" | "docker"; seconds: number; migrationsApplied: string[] }> {
  const t = Date.now();
  const record = readRecord(env);
  if (!record) {
    assertStateVisible(env);
    throw new CliError(`environment '${env}' has no local state; there is nothing to restart`, EXIT.ERROR, isEphemeralId(env) ? "see: npm run status -- --all" : `bring it up: npm run up -- --env ${env}`);
  }
  if (record.engine === "docker") {
    const { startDockerEnvironment } = await import("../engines/docker/environment.js");
    const result = await startDockerEnvironment(env, log, { restart: true, lockWaitSeconds });
    return { env, engine: "docker", seconds: (Date.now() - t) / 1000, migrationsApplied: result.migrationsApplied };
  }
  const { withEnvLock } = await import("../state/lock.js");
  return withEnvLock(env, envPaths(env).lock, { purpose: "restarting it", waitSeconds: lockWaitSeconds, onWait: log }, async () => {
    await downEmbedded(env, { destroy: false, log });
    let builder = new EmbeddedEnvironment(env).withLog(log);
    if (lockWaitSeconds !== undefined) builder = builder.withLockWait(lockWaitSeconds);
    const started = await builder.start();
    return { env, engine: "embedded" as const, seconds: (Date.now() - t) / 1000, migrationsApplied: started.report.migrationsApplied };
  });
}
