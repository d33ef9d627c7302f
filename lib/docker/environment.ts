/**
 * A throw-away environment as Docker containers, for CI jobs (`env:ci --engine docker`): the
 * same container definitions as the Pulumi Docker component (lib/docker/containers.ts), started
 * with the docker CLI (no Pulumi engine needed), with unique names and free ports.
 *
 *   const started = await new DockerEnvironment("ci").withEphemeral().start();
 *   started.connections.postgresUrl("app");
 *
 * Secrets never reach argv: environment values are passed as `-e NAME` (the CLI reads them from
 * its own environment) and files are copied in with `docker cp` before the container starts.
 */
import { execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, mkdirSync, rmSync, writeFileSync, chmodSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { CliError, EXIT } from "../cli.js";
import { withPg } from "../db/clients.js";
import { migrate, MIGRATIONS_TABLE } from "../db/migrate.js";
import { applyRoleSql, postMigrationSql } from "../db/roles.js";
import { generateCredentials, writeCredentials } from "../env/credentials.js";
import { EnvironmentConnections, readRecord, writeRecord, type EnvironmentRecord } from "../env/environment.js";
import { ensureDir } from "../fs.js";
import { envPaths } from "../env/paths.js";
import { freePort } from "../env/ports.js";
import { loadSpec, specHash } from "../spec/load.js";
import type { Spec } from "../spec/schema.js";
import { POSTGRES_ARCHIVE_PATH, POSTGRES_BACKUP_VOLUME_PATH, postgresContainer, redisContainer, resourceName, type ContainerDefinition } from "./containers.js";
import { requireEngine } from "./engine.js";

const run = promisify(execFile);
type Log = (message: string) => void;

/** Builder of a Docker environment; `start()` creates network, volumes and containers and waits until healthy. */
export class DockerEnvironment {
  private log: Log = () => undefined;
  private healthTimeoutSeconds = 60;

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

  /** How long to wait for both containers to report healthy (default 60 s). */
  withHealthTimeout(seconds: number): this {
    this.healthTimeoutSeconds = seconds;
    return this;
  }

  async start(): Promise<StartedDockerEnvironment> {
    const docker = requireEngine();
    const id = `eph-${randomBytes(5).toString("hex")}`;
    const specOverrides = { namePrefix: `cpi-${id}`, postgres: { port: await freePort() }, redis: { port: await freePort() } };
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

/**
 * Removes everything a Docker environment made: its recorded containers, volumes and network,
 * anything else labelled with its id, and its state folder. Returns what it removed.
 */
export async function removeDockerEnvironment(id: string, log: Log): Promise<string[]> {
  const docker = requireEngine();
  const record = readRecord(id);
  const removed: string[] = [];
  const label = `label=crypto-prediction-infra.env=${id}`;
  const listed = async (args: string[]) => (await docker$(docker, args)).split("\n").map((l) => l.trim()).filter(Boolean);
  const containers = new Set([...(record?.docker ? Object.values(record.docker.containers) : []), ...(await listed(["ps", "-aq", "--filter", label, "--format", "{{.Names}}"]))]);
  for (const name of containers) if (await dockerOk(docker, ["rm", "-f", "-v", name])) removed.push(`container ${name}`);
  const volumes = new Set([...(record?.docker?.volumes ?? []), ...(await listed(["volume", "ls", "-q", "--filter", label]))]);
  for (const name of volumes) if (await dockerOk(docker, ["volume", "rm", "-f", name])) removed.push(`volume ${name}`);
  const networks = new Set([...(record?.docker?.network ? [record.docker.network] : []), ...(await listed(["network", "ls", "-q", "--filter", label, "--format", "{{.Name}}"]))]);
  for (const name of networks) if (await dockerOk(docker, ["network", "rm", name])) removed.push(`network ${name}`);
  const dir = envPaths(id).dir;
  rmSync(dir, { recursive: true, force: true });
  removed.push("state dir");
  log(`removed ${removed.length} resources of ${id}`);
  return removed;
}

// ---- helpers ---------------------------------------------------------------------------------

async function docker$(docker: string, args: string[], env?: NodeJS.ProcessEnv): Promise<string> {
  try {
    const { stdout } = await run(docker, args, { env: { ...process.env, ...env }, maxBuffer: 16 * 1024 * 1024 });
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
  const healthCmd = hc.test[0] === "CMD-SHELL" ? hc.test.slice(1).join(" ") : hc.test.slice(1).map(shellQuote).join(" ");
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

/** Copies the definition's files into the created container as a tar of files only (parents are created, existing folders keep their modes). */
async function copyFilesIn(docker: string, def: ContainerDefinition): Promise<void> {
  const staging = mkdtempSync(path.join(os.tmpdir(), "cpi-files-"));
  try {
    const relative = def.files.map((file) => {
      const rel = file.path.replace(/^\/+/, "");
      mkdirSync(path.join(staging, path.dirname(rel)), { recursive: true, mode: 0o700 });
      writeFileSync(path.join(staging, rel), file.content, { mode: 0o600 });
      chmodSync(path.join(staging, rel), file.mode);
      return rel;
    });
    await new Promise<void>((resolve, reject) => {
      const tar = spawn("tar", ["-C", staging, "--owner=0", "--group=0", "-cf", "-", ...relative], { stdio: ["ignore", "pipe", "pipe"] });
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

function shellQuote(arg: string): string {
  return /^[A-Za-z0-9_./:=-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}
