/**
 * A throw-away environment as Docker containers, for CI jobs (`env:ci --engine docker`): the
 * same container definitions as the Pulumi Docker component (lib/engines/docker/containers.ts), started
 * with the docker CLI (no Pulumi engine needed), with unique names and free ports.
 *
 *   const started = await new DockerEnvironment("ci").withEphemeral().start();
 *   started.connections.postgresUrl("app");
 *
 * Secrets never reach argv: environment values are passed as `-e NAME` (the CLI reads them from
 * its own environment) and files are copied in with `docker cp` before the container starts.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { accessSync, constants, existsSync, mkdtempSync, mkdirSync, rmSync, writeFileSync, chmodSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { CliError, EXIT } from "../../errors.js";
import { withPg } from "../../db/clients.js";
import { migrate, MIGRATIONS_TABLE } from "../../db/migrate.js";
import { applyRoleSql, postMigrationSql } from "../../db/roles.js";
import { generateCredentials, writeCredentials } from "../../state/credentials.js";
import { EnvironmentConnections, readEnvironmentState, readRecord, writeRecord, type EnvironmentRecord } from "../../state/record.js";
import { folderBytes } from "../../state/folder-bytes.js";
import { withEnvLock } from "../../state/lock.js";
import { ensureDir } from "../../fs.js";
import { envPaths } from "../../state/paths.js";
import { freePort } from "../../state/ports.js";
import { loadSpec, specHash } from "../../spec/load.js";
import type { Spec } from "../../spec/schema.js";
import { POSTGRES_ARCHIVE_PATH, POSTGRES_BACKUP_VOLUME_PATH, postgresContainer, redisContainer, type ContainerDefinition } from "./containers.js";
import { resourceName } from "../../spec/access.js";
import { requireEngine } from "./engine.js";
import { shellWord } from "../../shell.js";
import { run } from "../../process.js";

type Log = (message: string) => void;

/** Builder of a Docker environment; `start()` creates network, volumes and containers and waits until healthy. */
export class DockerEnvironment {
  private log: Log = () => undefined;
  private healthTimeoutSeconds = 60;
  private extraOverrides: Record<string, unknown> = {};

  /** @param baseEnv the stack whose spec is copied (default ci: offline images). */
  constructor(private readonly baseEnv = "ci") {}

  withLog(log: Log): this {
    this.log = log;
    return this;
  }

  /** Always ephemeral: a new id, free ports, own names (kept for symmetry with EmbeddedEnvironment). */
  withEphemeral(): this {
    return this;
  }

  /** Spec values the copy runs with on top of the stack's (recorded with it), e.g. a backup bucket. */
  withSpecOverrides(overrides: Record<string, unknown>): this {
    this.extraOverrides = overrides;
    return this;
  }

  /** How long to wait for both containers to report healthy (default 60 s). */
  withHealthTimeout(seconds: number): this {
    this.healthTimeoutSeconds = seconds;
    return this;
  }

  async start(): Promise<StartedDockerEnvironment> {
    const docker = requireEngine();
    const id = `eph-${randomBytes(5).toString("hex")}`;
    const specOverrides = { ...this.extraOverrides, namePrefix: `cpi-${id}`, postgres: { port: await freePort() }, redis: { port: await freePort() } };
    const spec: Spec = { ...loadSpec(this.baseEnv, { overrides: specOverrides }), env: id };
    for (const image of [spec.images.postgres, spec.images.redis]) {
      if (!(await dockerOk(docker, ["image", "inspect", image]))) {
        throw new CliError(`image ${image} is not on this machine, and no registry can be reached`, EXIT.ERROR, "build the offline images: npm run images (or set images.* in the stack file)");
      }
    }
    const credentials = generateCredentials();
    const secrets = {
      postgresPassword: credentials.postgres.superuserPassword,
      roles: { owner: credentials.postgres.ownerPassword, app: credentials.postgres.appPassword, readonly: credentials.postgres.readonlyPassword, backup: credentials.postgres.backupPassword },
      redisPassword: credentials.redis.adminPassword,
      redisAppPassword: credentials.redis.appPassword,
    };
    const hash = specHash(spec);
    const pg = postgresContainer(spec, secrets, hash);
    const redis = redisContainer(spec, secrets, hash);
    const network = resourceName(spec, "net");
    const volumes = { postgres: resourceName(spec, "postgres-data"), redis: resourceName(spec, "redis-data") };
    // The definitions' further volumes (the PostgreSQL backup volume: archived WAL).
    const extraVolumes = [pg, redis].flatMap((def) => (def.volumes ?? []).map((v) => resourceName(spec, v.what)));
    const record: EnvironmentRecord = {
      env: id,
      engine: "docker",
      ephemeral: true,
      baseEnv: this.baseEnv,
      specOverrides,
      createdAt: new Date().toISOString(),
      docker: { containers: { postgres: pg.name, redis: redis.name }, volumes: [...Object.values(volumes), ...extraVolumes], network },
    };
    // Record first: whatever fails below, `env:ci --down ID` knows what to remove.
    const paths = envPaths(id);
    ensureDir(path.dirname(paths.dir), 0o700);
    ensureDir(paths.dir, 0o700);
    writeCredentials(paths.credentials, credentials);
    writeRecord(paths, record);

    const started = Date.now();
    try {
      this.log(`creating network ${network} and volumes`);
      const labels = labelArgs(pg.labels);
      await docker$(docker, ["network", "create", ...labels, network]);
      for (const volume of [...Object.values(volumes), ...extraVolumes]) await docker$(docker, ["volume", "create", ...labels, volume]);
      // The WAL archive's folder on this host (backups and restores read it there): recorded.
      const backupVolume = resourceName(spec, "postgres-backup");
      const mountpoint = (await docker$(docker, ["volume", "inspect", "-f", "{{.Mountpoint}}", backupVolume])).trim();
      record.docker = { ...record.docker!, archiveDir: path.posix.join(mountpoint, path.posix.relative(POSTGRES_BACKUP_VOLUME_PATH, POSTGRES_ARCHIVE_PATH)) };
      writeRecord(paths, record);
      this.log(`starting ${pg.name} (${pg.image}) and ${redis.name} (${redis.image})`);
      await Promise.all([createAndStart(docker, pg, network, volumes.postgres, spec), createAndStart(docker, redis, network, volumes.redis, spec)]);
      await Promise.all([waitHealthy(docker, pg.name, this.healthTimeoutSeconds), waitHealthy(docker, redis.name, this.healthTimeoutSeconds)]);
      this.log(`healthy in ${((Date.now() - started) / 1000).toFixed(1)}s; applying migrations`);
      const connections = new EnvironmentConnections(spec, credentials);
      await withPg(connections.postgresConfig("owner"), async (client) => {
        await migrate(client, { direction: "up", log: this.log });
        await applyRoleSql(client, postMigrationSql(spec, MIGRATIONS_TABLE));
      });
      return new StartedDockerEnvironment(spec, record, connections, (Date.now() - started) / 1000);
    } catch (error) {
      await removeDockerEnvironment(id, () => undefined).catch(() => undefined);
      throw error;
    }
  }
}

/** A running Docker environment: it knows its own connection URLs. */
export class StartedDockerEnvironment {
  constructor(
    readonly spec: Spec,
    readonly record: EnvironmentRecord,
    readonly connections: EnvironmentConnections,
    /** From creating the network to healthy and migrated. */
    readonly seconds: number,
  ) {}

  get env(): string {
    return this.spec.env;
  }

  /** Removes containers, volumes, network and state. */
  remove(): Promise<string[]> {
    return removeDockerEnvironment(this.env, () => undefined);
  }
}

/** Label every Docker object of an environment carries (lib/engines/docker/containers.ts: dockerLabels). */
export const ENV_LABEL = "crypto-prediction-infra.env";

/** One container of an environment, as the engine sees it now. */
export interface DockerContainerState {
  name: string;
  /** created, running, exited, … ("missing" when the record names it and the engine has none). */
  state: string;
  running: boolean;
  /** healthy, unhealthy, starting (when it has a healthcheck and runs). */
  health?: string;
}

/** What of an environment exists on the engine: by its labels, and by the names its record holds. */
export interface DockerObjects {
  containers: DockerContainerState[];
  volumes: string[];
  networks: string[];
}

/**
 * The record of a Docker environment, or undefined when there is none or it is unreadable: a
 * corrupt state file must not hide containers from the commands that stop and remove them.
 */
function recordOrNothing(id: string): EnvironmentRecord | undefined {
  try {
    return readRecord(id);
  } catch {
    return undefined;
  }
}

/** Finds an environment's containers, volumes and network by label (and by its record's names). */
export async function findDockerObjects(id: string, docker = requireEngine(), record = recordOrNothing(id)): Promise<DockerObjects> {
  const label = `label=${ENV_LABEL}=${id}`;
  const listed = async (args: string[]) => (await docker$(docker, args)).split("\n").map((l) => l.trim()).filter(Boolean);
  const names = new Set([...(record?.docker ? Object.values(record.docker.containers) : []), ...(await listed(["ps", "-aq", "--filter", label, "--format", "{{.Names}}"]))]);
  const containers: DockerContainerState[] = [];
  for (const name of names) {
    const out = await docker$(docker, ["container", "inspect", "-f", "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}", name]).catch(() => undefined);
    if (out === undefined) {
      containers.push({ name, state: "missing", running: false });
      continue;
    }
    const [state = "unknown", health] = out.trim().split(/\s+/);
    // A stopped container keeps its last health status: it means nothing then.
    containers.push({ name, state, running: state === "running", ...(health && state === "running" ? { health } : {}) });
  }
  const exists = async (kind: "volume" | "network", name: string) => dockerOk(docker, [kind, "inspect", name]);
  const volumes = new Set(await listed(["volume", "ls", "-q", "--filter", label]));
  for (const v of record?.docker?.volumes ?? []) if (await exists("volume", v)) volumes.add(v);
  const networks = new Set(await listed(["network", "ls", "--filter", label, "--format", "{{.Name}}"]));
  if (record?.docker?.network && (await exists("network", record.docker.network))) networks.add(record.docker.network);
  return { containers, volumes: [...volumes], networks: [...networks] };
}

/** True when the engine holds anything labelled with this id (false without an engine). */
export async function hasDockerObjects(id: string): Promise<boolean> {
  const { probeEngine } = await import("./engine.js");
  const engine = probeEngine(5_000);
  if (!engine.answering || !engine.binary) return false;
  const o = await findDockerObjects(id, engine.binary);
  return o.containers.some((c) => c.state !== "missing") || o.volumes.length > 0 || o.networks.length > 0;
}

/**
 * Removes everything a Docker environment made: its recorded containers, volumes and network,
 * anything else labelled with its id, and then its state folder. The state goes last, and only
 * when nothing labelled with the id is left: otherwise the toolkit could no longer find what it
 * made (a failed removal keeps the state, and the error says what is left). Returns what it removed.
 */
export async function removeDockerEnvironment(id: string, log: Log, options: { lockWaitSeconds?: number } = {}): Promise<string[]> {
  const docker = requireEngine();
  const paths = envPaths(id);
  return withEnvLock(id, paths.lock, { purpose: "removing it", waitSeconds: options.lockWaitSeconds, onWait: log }, async () => {
    const found = await findDockerObjects(id, docker);
    const removed: string[] = [];
    for (const c of found.containers) if (c.state !== "missing" && (await dockerOk(docker, ["rm", "-f", "-v", c.name]))) removed.push(`container ${c.name}`);
    for (const name of found.volumes) if (await dockerOk(docker, ["volume", "rm", "-f", name])) removed.push(`volume ${name}`);
    for (const name of found.networks) if (await dockerOk(docker, ["network", "rm", name])) removed.push(`network ${name}`);
    const left = await findDockerObjects(id, docker);
    const remaining = [...left.containers.filter((c) => c.state !== "missing").map((c) => `container ${c.name}`), ...left.volumes.map((v) => `volume ${v}`), ...left.networks.map((n) => `network ${n}`)];
    if (remaining.length) {
      throw new CliError(`${id}: could not remove ${remaining.join(", ")}; its state is kept so that the toolkit can still find them`, EXIT.ERROR, `see why: docker ps -a --filter label=${ENV_LABEL}=${id}; then again: npm run env:ci -- --down ${id}`);
    }
    if (existsSync(paths.dir)) {
      rmSync(paths.dir, { recursive: true, force: true });
      removed.push("state dir");
    }
    log(`removed ${removed.length} resources of ${id}`);
    return removed;
  });
}

/** Stops an environment's containers (data kept in the volumes). Returns the containers stopped. */
export async function stopDockerEnvironment(id: string, log: Log, options: { lockWaitSeconds?: number } = {}): Promise<{ stopped: string[]; missing: string[] }> {
  const docker = requireEngine();
  const paths = envPaths(id);
  return withEnvLock(id, paths.lock, { purpose: "stopping it", waitSeconds: options.lockWaitSeconds, onWait: log }, async () => {
    const found = await findDockerObjects(id, docker);
    const running = found.containers.filter((c) => c.running).map((c) => c.name);
    // PostgreSQL's image stops on SIGINT (fast shutdown, data flushed); Redis saves on SIGTERM.
    if (running.length) await docker$(docker, ["stop", "-t", "60", ...running]);
    return { stopped: running, missing: found.containers.filter((c) => c.state === "missing").map((c) => c.name) };
  });
}

/**
 * Starts the stopped containers of an existing Docker environment (after `down`), waits until
 * both are healthy and applies pending migrations. `restart` stops them first.
 */
export async function startDockerEnvironment(id: string, log: Log, options: { restart?: boolean; healthTimeoutSeconds?: number; lockWaitSeconds?: number } = {}): Promise<{ started: string[]; alreadyRunning: string[]; migrationsApplied: string[]; seconds: number }> {
  const docker = requireEngine();
  const paths = envPaths(id);
  const t = Date.now();
  return withEnvLock(id, paths.lock, { purpose: options.restart ? "restarting it" : "starting it", waitSeconds: options.lockWaitSeconds, onWait: log }, async () => {
    const opened = readEnvironmentState(id);
    const found = await findDockerObjects(id, docker, opened.record);
    const wanted = opened.record.docker ? Object.values(opened.record.docker.containers) : found.containers.map((c) => c.name);
    const missing = wanted.filter((name) => found.containers.find((c) => c.name === name)?.state !== undefined && found.containers.find((c) => c.name === name)!.state === "missing");
    if (missing.length) {
      throw new CliError(
        `${id}: container ${missing.join(" and ")} no longer exists (removed outside the toolkit); a Docker environment is throw-away and cannot be recreated under its id`,
        EXIT.ERROR,
        `remove what is left: npm run env:ci -- --down ${id}; then make a new one: npm run env:ci -- --engine docker`,
      );
    }
    const alreadyRunning = found.containers.filter((c) => c.running).map((c) => c.name);
    if (options.restart && alreadyRunning.length) {
      log(`${id}: restarting ${alreadyRunning.join(", ")}`);
      await docker$(docker, ["restart", "-t", "60", ...alreadyRunning]);
    }
    const toStart = found.containers.filter((c) => !c.running).map((c) => c.name);
    if (toStart.length) {
      log(`${id}: starting ${toStart.join(", ")}`);
      await docker$(docker, ["start", ...toStart]);
    }
    await Promise.all(wanted.map((name) => waitHealthy(docker, name, options.healthTimeoutSeconds ?? 60)));
    const migrationsApplied = await withPg(opened.connections.postgresConfig("owner"), async (client) => {
      const ran = await migrate(client, { direction: "up", log });
      await client.query(postMigrationSql(opened.spec, MIGRATIONS_TABLE));
      return ran;
    });
    return { started: options.restart ? [...alreadyRunning, ...toStart] : toStart, alreadyRunning: options.restart ? [] : alreadyRunning, migrationsApplied, seconds: (Date.now() - t) / 1000 };
  });
}

/** Bytes in a named volume: its folder on the engine's host, or `du` in the running container. */
export async function volumeBytes(volume: string, container: DockerContainerState | undefined, dataPath: string, docker = requireEngine()): Promise<number | undefined> {
  const mountpoint = (await docker$(docker, ["volume", "inspect", "-f", "{{.Mountpoint}}", volume]).catch(() => "")).trim();
  if (mountpoint) {
    try {
      accessSync(mountpoint, constants.R_OK | constants.X_OK);
      return await folderBytes(mountpoint);
    } catch {
      // not on this host, or not ours to read
    }
  }
  if (!container?.running) return undefined;
  const out = await docker$(docker, ["exec", container.name, "du", "-sb", dataPath]).catch(() => "");
  const bytes = Number(out.split(/\s+/)[0]);
  return Number.isFinite(bytes) && out ? bytes : undefined;
}

/** `docker logs` of an environment's container (stdout and stderr interleaved as Docker keeps them). */
export function dockerLogsArgs(container: string, lines: number, follow: boolean): string[] {
  return ["logs", "--tail", String(lines), ...(follow ? ["--follow"] : []), container];
}

// ---- helpers ---------------------------------------------------------------------------------

async function docker$(docker: string, args: string[], env?: NodeJS.ProcessEnv): Promise<string> {
  try {
    const { stdout } = await run(docker, args, { env: { ...process.env, ...env }});
    return stdout;
  } catch (error) {
    const e = error as { stderr?: string; message: string };
    throw new CliError(`docker ${args[0]} ${args[1] ?? ""} failed: ${(e.stderr || e.message).trim()}`, EXIT.ERROR);
  }
}

async function dockerOk(docker: string, args: string[]): Promise<boolean> {
  try {
    await run(docker, args);
    return true;
  } catch {
    return false;
  }
}

function labelArgs(labels: Record<string, string>): string[] {
  return Object.entries(labels).flatMap(([k, v]) => ["--label", `${k}=${v}`]);
}

/** `docker create` + files copied in + `docker start`, from a definition. */
async function createAndStart(docker: string, def: ContainerDefinition, network: string, volume: string, spec: Spec): Promise<void> {
  const hc = def.healthcheck;
  const healthCmd = hc.test[0] === "CMD-SHELL" ? hc.test.slice(1).join(" ") : hc.test.slice(1).map(shellWord).join(" ");
  const args = [
    "create",
    "--name", def.name,
    "--network", network,
    "--restart", "unless-stopped",
    "-v", `${volume}:${def.dataPath}`,
    ...(def.volumes ?? []).flatMap((v) => ["-v", `${resourceName(spec, v.what)}:${v.path}`]),
    "--health-cmd", healthCmd,
    "--health-interval", `${hc.intervalSeconds}s`,
    "--health-timeout", `${hc.timeoutSeconds}s`,
    "--health-retries", String(hc.retries),
    "--health-start-period", `${hc.startPeriodSeconds}s`,
    ...labelArgs(def.labels),
    ...def.ports.flatMap((p) => ["-p", `${p.hostIp}:${p.external}:${p.internal}`]),
    ...(def.shmSizeBytes ? ["--shm-size", String(def.shmSizeBytes)] : []),
    // Values come from the docker CLI's own environment, so they never appear in argv.
    ...Object.keys(def.env).flatMap((name) => ["-e", name]),
    def.image,
    ...def.command,
  ];
  await docker$(docker, args, def.env);
  if (def.files.length) await copyFilesIn(docker, def);
  await docker$(docker, ["start", def.name]);
}

/**
 * Copies the definition's files into the created container as tars of files only (parents are
 * created, existing folders keep their modes), one tar per owner: a secret file is its service
 * user's, mode 0600.
 */
async function copyFilesIn(docker: string, def: ContainerDefinition): Promise<void> {
  const owners = [...new Set(def.files.map((f) => f.owner ?? 0))];
  for (const owner of owners) {
    const staging = mkdtempSync(path.join(os.tmpdir(), "cpi-files-"));
    try {
      const relative = def.files.filter((f) => (f.owner ?? 0) === owner).map((file) => {
        const rel = file.path.replace(/^\/+/, "");
        mkdirSync(path.join(staging, path.dirname(rel)), { recursive: true, mode: 0o700 });
        writeFileSync(path.join(staging, rel), file.content, { mode: 0o600 });
        chmodSync(path.join(staging, rel), file.mode);
        return rel;
      });
      await new Promise<void>((resolve, reject) => {
        const tar = spawn("tar", ["-C", staging, "--numeric-owner", `--owner=${owner}`, `--group=${owner}`, "-cf", "-", ...relative], { stdio: ["ignore", "pipe", "pipe"] });
        const cp = spawn(docker, ["cp", "-", `${def.name}:/`], { stdio: ["pipe", "ignore", "pipe"] });
        let stderr = "";
        tar.stderr.on("data", (d) => (stderr += d));
        cp.stderr.on("data", (d) => (stderr += d));
        tar.stdout.pipe(cp.stdin);
        cp.on("close", (code) => (code === 0 ? resolve() : reject(new CliError(`docker cp into ${def.name} failed: ${stderr.trim()}`, EXIT.ERROR))));
      });
    } finally {
      rmSync(staging, { recursive: true, force: true });
    }
  }
}

/** Waits until Docker reports the container healthy; fails with its last health log when it does not. */
async function waitHealthy(docker: string, name: string, timeoutSeconds: number): Promise<void> {
  const deadline = Date.now() + timeoutSeconds * 1000;
  for (;;) {
    const status = (await docker$(docker, ["inspect", "-f", "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}", name])).trim();
    if (status.endsWith("healthy") && !status.endsWith("unhealthy")) return;
    if (status.startsWith("exited") || status.startsWith("dead") || Date.now() > deadline) {
      const logs = await docker$(docker, ["logs", "--tail", "15", name]).catch(() => "");
      throw new CliError(`container ${name} is not healthy (${status}) after ${timeoutSeconds}s: ${logs.trim().split("\n").slice(-5).join(" | ")}`, EXIT.ERROR);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

