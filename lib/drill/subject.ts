/**
 * The environment a drill works on, and what "disaster" and "recreate" mean for it.
 *
 *   embedded: disaster = crash both servers (PostgreSQL's immediate mode, Redis SIGKILL), delete
 *             their data folders (cluster, WAL, RDB, AOF); recreate = `up` from the spec on the same
 *             ports. The record and credentials survive: they stand for the stack file and the
 *             secret store, which live outside the machine that was lost.
 *   docker:   disaster = remove the containers, their volumes and network; recreate = a new
 *             environment from the same spec (new id, new ports, new credentials).
 *
 * Scratch subjects are ephemeral copies of the named environment's spec; in-place subjects are
 * the named (embedded) environment itself.
 */
import { existsSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from "node:fs";
import path from "node:path";
import { CliError, EXIT } from "../errors.js";
import { removeCiEnvironment } from "../ci-env/environment.js";
import { EmbeddedEnvironment } from "../engines/embedded/environment.js";
import { readRecord } from "../state/record.js";
import { openEnvironment, type LocalEnvironment } from "../env/environment.js";
import { serviceUser, type EnvPaths } from "../state/paths.js";
import { postmasterPid, stopPostgres } from "../engines/embedded/postgres-server.js";
import { processAlive } from "../state/processes.js";
import { redisPid } from "../engines/embedded/redis-server.js";
import { loadSpec } from "../spec/load.js";

export type DrillEngine = "embedded" | "docker";
type Log = (message: string) => void;

export interface DisasterDetail {
  /** What was destroyed, for the report. */
  destroyed: string[];
  /** Bytes of data deleted (embedded, counted when deleted after the recovery; Docker volumes are not measured). */
  bytes?: number;
}

export interface DrillSubject {
  readonly mode: "scratch" | "in-place";
  readonly engine: DrillEngine;
  /** The stack whose spec it runs. */
  readonly baseEnv: string;
  /** Its id now (a Docker subject gets a new one when it is recreated). */
  env: string;
  /** Every id it has had, oldest first. */
  readonly ids: string[];
  /** The environment it is now (its connections, state and tools). */
  environment(): LocalEnvironment;
  disaster(log: Log): Promise<DisasterDetail>;
  /**
   * The point-in-time recovery drill's disaster: every server process killed with SIGKILL (no
   * checkpoint, no last flush or save), the data folders gone; the record, credentials,
   * configuration and the WAL archive (separate storage, in real life) survive.
   */
  crash(log: Log): Promise<DisasterDetail>;
  /** Deletes what the disaster moved aside (after the recovery: not part of the RTO). */
  discardLostData(): Promise<{ bytes: number; removed: string[] }>;
  recreate(log: Log): Promise<{ seconds: number }>;
  /** Scratch only: removes every id's servers, containers and state. */
  remove(log: Log): Promise<string[]>;
  /** The command that removes it (shown with --keep). */
  removeCommand(): string;
}

/** The stack a scratch copy of `env` runs: its own stack file, or, for a local (ephemeral) env, the stack it was made from. */
export function scratchBaseEnv(env: string): string {
  const record = readRecord(env);
  const base = record?.baseEnv ?? env;
  loadSpec(base); // validates (SpecError names the file and key) before anything starts
  return base;
}

/** A new scratch environment from the stack's spec, with `specOverrides` (those of the environment it copies, and the drill's own). */
export async function createScratchSubject(baseEnv: string, engine: DrillEngine, log: Log, specOverrides: Record<string, unknown> = {}): Promise<DrillSubject> {
  if (engine === "docker") {
    const { DockerEnvironment } = await import("../engines/docker/environment.js");
    const started = await new DockerEnvironment(baseEnv).withEphemeral().withSpecOverrides(specOverrides).withLog(log).start();
    return new DockerSubject(baseEnv, started.env);
  }
  const started = await new EmbeddedEnvironment(baseEnv).withEphemeral().withSpecOverrides(specOverrides).withLog(log).start();
  return new EmbeddedSubject("scratch", baseEnv, started.env);
}

/** The named environment itself (it must exist locally and be embedded). */
export function inPlaceSubject(env: string): DrillSubject {
  const opened = openEnvironment(env);
  if (opened.record.engine !== "embedded") {
    throw new CliError(
      `--in-place: environment '${env}' runs on ${opened.record.engine}; an in-place drill recreates an embedded environment under the same name, and Docker environments are throw-away (a new one gets a new id)`,
      EXIT.USAGE,
      `drill a scratch copy of its spec instead: npm run drill -- --env ${opened.record.baseEnv} --engine docker`,
    );
  }
  return new EmbeddedSubject("in-place", opened.record.baseEnv, env);
}

class EmbeddedSubject implements DrillSubject {
  readonly engine = "embedded" as const;
  readonly ids: string[];
  private readonly lostData: string[] = [];

  constructor(
    readonly mode: "scratch" | "in-place",
    readonly baseEnv: string,
    public env: string,
  ) {
    this.ids = [env];
  }

  environment(): LocalEnvironment {
    return openEnvironment(this.env);
  }

  async disaster(log: Log): Promise<DisasterDetail> {
    const { paths } = openEnvironment(this.env);
    const destroyed: string[] = [];
    // As when the machine dies: no checkpoint (PostgreSQL's immediate mode), no last save (Redis killed).
    let t = performance.now();
    const ms = () => `${Math.round(performance.now() - t)} ms`;
    const [pgStopped, redisKilled] = await Promise.all([stopPostgres(paths, serviceUser(), "immediate"), killRedis(paths)]);
    if (pgStopped) destroyed.push(`PostgreSQL server stopped in immediate mode (no checkpoint)`);
    if (redisKilled) destroyed.push(`Redis server killed (SIGKILL: no last save)`);
    destroyed.push(`servers down in ${ms()}`);
    // The data folders are moved aside at once (the environment has lost them) and deleted after
    // the recovery, so the RTO does not include the file system's time to delete gigabytes.
    for (const dir of dataDirs(paths)) {
      if (!existsSync(dir)) continue;
      const lost = `${dir}.lost-${Date.now().toString(36)}`;
      renameSync(dir, lost);
      this.lostData.push(lost);
      destroyed.push(`data folder ${dir} gone (moved aside, deleted after the recovery)`);
    }
    log(`disaster: ${destroyed.join("; ")}`);
    return { destroyed };
  }

  async crash(log: Log): Promise<DisasterDetail> {
    const { paths } = openEnvironment(this.env);
    const destroyed: string[] = [];
    const t = performance.now();
    const pg = postmasterPid(paths);
    if (pg !== undefined) {
      const killed = await killTree(pg);
      destroyed.push(`PostgreSQL killed (SIGKILL to the postmaster and its ${killed - 1} processes: no checkpoint, no last WAL flush)`);
    }
    if (await killRedis(paths)) destroyed.push("Redis server killed (SIGKILL: no last save)");
    destroyed.push(`servers down in ${Math.round(performance.now() - t)} ms`);
    const redisData = existsSync(paths.redisDir) ? readdirSync(paths.redisDir).filter((f) => f === "dump.rdb" || f === "appendonlydir").map((f) => path.join(paths.redisDir, f)) : [];
    for (const dir of [paths.pgData, ...redisData]) {
      if (!existsSync(dir)) continue;
      const lost = `${dir}.lost-${Date.now().toString(36)}`;
      renameSync(dir, lost);
      this.lostData.push(lost);
      destroyed.push(`${dir} gone (moved aside, deleted after the recovery)`);
    }
    destroyed.push(`kept: the WAL archive ${paths.pgArchive}, the record, credentials and configuration`);
    log(`disaster: ${destroyed.join("; ")}`);
    return { destroyed };
  }

  async discardLostData(): Promise<{ bytes: number; removed: string[] }> {
    let bytes = 0;
    const removed: string[] = [];
    for (const dir of this.lostData.splice(0)) {
      if (!existsSync(dir)) continue;
      bytes += folderBytes(dir);
      rmSync(dir, { recursive: true, force: true });
      removed.push(dir);
    }
    return { bytes, removed };
  }

  async recreate(log: Log): Promise<{ seconds: number }> {
    const started = await new EmbeddedEnvironment(this.env).withLog(log).start();
    return { seconds: started.report.seconds };
  }

  async remove(log: Log): Promise<string[]> {
    if (this.mode !== "scratch") throw new Error("only a scratch environment is removed by the drill");
    return (await removeCiEnvironment(this.env, log)).removed;
  }

  removeCommand(): string {
    return `npm run down -- --env ${this.env} --destroy --yes`;
  }
}

class DockerSubject implements DrillSubject {
  readonly mode = "scratch" as const;
  readonly engine = "docker" as const;
  readonly ids: string[];

  constructor(
    readonly baseEnv: string,
    public env: string,
  ) {
    this.ids = [env];
  }

  environment(): LocalEnvironment {
    return openEnvironment(this.env);
  }

  async disaster(log: Log): Promise<DisasterDetail> {
    const { removeDockerEnvironment } = await import("../engines/docker/environment.js");
    const destroyed = await removeDockerEnvironment(this.env, log);
    return { destroyed };
  }

  async crash(): Promise<DisasterDetail> {
    throw new CliError("the point-in-time recovery drill runs on the embedded engine; drill Docker with --method logical", EXIT.USAGE);
  }

  async discardLostData(): Promise<{ bytes: number; removed: string[] }> {
    return { bytes: 0, removed: [] }; // the volumes went with the disaster
  }

  async recreate(log: Log): Promise<{ seconds: number }> {
    const { DockerEnvironment } = await import("../engines/docker/environment.js");
    const started = await new DockerEnvironment(this.baseEnv).withEphemeral().withLog(log).start();
    this.env = started.env;
    this.ids.push(started.env);
    log(`recreated as ${started.env}`);
    return { seconds: started.seconds };
  }

  async remove(log: Log): Promise<string[]> {
    const removed: string[] = [];
    // Every id: the one destroyed by the disaster may have been only partly removed.
    for (const id of this.ids) removed.push(...(await removeCiEnvironment(id, log)).removed.map((r) => `${id}: ${r}`));
    return removed;
  }

  removeCommand(): string {
    return `npm run env:ci -- --down ${this.env}`;
  }
}

/** SIGKILL to a process and its children (as a machine's crash), then waits (bounded) until all are gone. Returns how many. */
async function killTree(pid: number): Promise<number> {
  const children = readdirSync("/proc")
    .filter((p) => /^\d+$/.test(p))
    .map(Number)
    .filter((p) => {
      try {
        return Number(readFileSync(`/proc/${p}/stat`, "utf8").replace(/^.*\) /s, "").split(" ")[1]) === pid;
      } catch {
        return false;
      }
    });
  const all = [pid, ...children];
  for (const p of all) {
    try {
      process.kill(p, "SIGKILL");
    } catch {
      // gone already
    }
  }
  for (let i = 0; i < 500 && all.some((p) => processAlive(p)); i++) await new Promise((r) => setTimeout(r, 10));
  return all.length;
}

/** SIGKILL, then waits (bounded) until the process is gone. */
async function killRedis(paths: EnvPaths): Promise<boolean> {
  const pid = redisPid(paths);
  if (pid === undefined) return false;
  process.kill(pid, "SIGKILL");
  for (let i = 0; i < 500 && processAlive(pid); i++) await new Promise((r) => setTimeout(r, 10));
  rmSync(paths.redisPid, { force: true });
  return true;
}

/** The folders that hold data (not the record, credentials or configuration). */
function dataDirs(paths: EnvPaths): string[] {
  return [paths.pgDir, paths.redisDir];
}

function folderBytes(dir: string): number {
  if (statSync(dir).isFile()) return statSync(dir).size;
  let total = 0;
  const walk = (d: string) => {
    for (const entry of readdirSync(d, { withFileTypes: true })) {
      const file = path.join(d, entry.name);
      try {
        if (entry.isDirectory()) walk(file);
        else if (entry.isFile()) total += statSync(file).size;
      } catch {
        // vanished while counting
      }
    }
  };
  walk(dir);
  return total;
}
