/**
 * Where a physical backup and a recovery happen: the engine-specific parts behind one interface.
 * The embedded implementation is here; the Docker one (WAL archive on a volume, the recovery in a
 * helper container) lives in ./docker-host.ts.
 *
 *   createStaging → the server writes base.tar + backup_manifest (BASE_BACKUP TARGET 'server')
 *   createRecoveryDir → startRecovery (temporary server on a free port, archive_mode off) → swapIn
 */
import { existsSync, readdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import path from "node:path";
import type { ClientConfig } from "pg";
import { CliError, EXIT } from "../../errors.js";
import { withPg } from "../../db/clients.js";
import { embeddedArchiveTarget } from "../../engines/embedded/environment.js";
import { type EnvPaths, ensureServiceDir, serviceUser } from "../../state/paths.js";
import { freePort } from "../../state/ports.js";
import { processAlive } from "../../state/processes.js";
import { postmasterPid, startPostgres, stopPostgres, writeHbaConf, writeServerConf } from "../../engines/embedded/postgres-server.js";
import { postgresConf } from "../../spec/render.js";
import type { LocalEnvironment } from "../../env/environment.js";

/** A temporary server running a recovery. */
export interface RecoveryServer {
  /** node-postgres options for the admin role on it. */
  config(database?: string): ClientConfig;
  /** The end of its log (for a failure's message). */
  logTail(): string;
  stop(): Promise<void>;
}

export interface PhysicalHost {
  readonly engine: "embedded" | "docker";
  /** The WAL archive as this process reads it. */
  readonly archiveDir: string;
  /** The archive as the recovering server reads it (its restore_command). */
  readonly serverArchiveDir: string;
  /** Whether the live server runs (a restore then switches WAL first, and stops it for the swap). */
  liveRunning(): boolean;
  /** A folder the server writes a base backup into: its path for TARGET_DETAIL, and this process's. */
  createStaging(id: string): { serverPath: string; localPath: string };
  removeStaging(localPath: string): void;
  /** Removes the staging folders of backups whose process is gone (a kill -9). */
  sweepStaging(): string[];
  /** A new, empty data folder beside the live one, owned by the server's account (this process's path). */
  createRecoveryDir(): string;
  /** Makes the unpacked folder the server's (ownership, 0700). */
  adoptRecoveryDir(dir: string): Promise<void>;
  /** Starts a server on the unpacked folder with these postgresql.conf lines (recovery settings), and waits for it to accept connections. */
  startRecovery(dir: string, recoveryConf: string): Promise<RecoveryServer>;
  /** Puts the recovered folder in place of the live one and starts it; on failure the live one is put back as it was. */
  swapIn(dir: string, log: (m: string) => void): Promise<void>;
  discardRecoveryDir(dir: string): void;
}

const RECOVERY_DIR_PREFIX = "data.recovering-";
const REPLACED_DIR_PREFIX = "data.replaced-";

export async function physicalHost(local: LocalEnvironment): Promise<PhysicalHost> {
  if (local.kind === "docker") {
    const { dockerPhysicalHost } = (await import("./docker-host.js" as string)) as { dockerPhysicalHost: (l: LocalEnvironment) => Promise<PhysicalHost> };
    return dockerPhysicalHost(local);
  }
  return embeddedPhysicalHost(local);
}

/** Folders named `<prefix><pid>` (or `<id>-<pid>`) whose process has ended. */
function deadPidEntries(dir: string, prefix: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((name) => name.startsWith(prefix))
    .filter((name) => {
      const pid = Number(/-(\d+)$/.exec(name)?.[1]);
      return !(pid > 0 && (pid === process.pid || processAlive(pid)));
    })
    .map((name) => path.join(dir, name));
}

export function embeddedPhysicalHost(local: LocalEnvironment): PhysicalHost {
  const { spec, paths } = local;
  const user = serviceUser();
  const recoveryPaths = (dir: string): EnvPaths => ({ ...paths, pgData: dir, pgSpecConf: path.join(dir, "spec.conf"), pgLog: `${dir}.log` });
  return {
    engine: "embedded",
    archiveDir: paths.pgArchive,
    serverArchiveDir: paths.pgArchive,
    liveRunning: () => postmasterPid(paths) !== undefined,
    createStaging(id) {
      ensureServiceDir(paths.pgBackupStaging, user);
      const dir = path.join(paths.pgBackupStaging, `${id}-${process.pid}`);
      rmSync(dir, { recursive: true, force: true });
      return { serverPath: dir, localPath: dir }; // the server creates it (BASE_BACKUP wants a new or empty folder)
    },
    removeStaging: (dir) => rmSync(dir, { recursive: true, force: true }),
    sweepStaging() {
      const dead = deadPidEntries(paths.pgBackupStaging, "");
      for (const dir of dead) rmSync(dir, { recursive: true, force: true });
      return dead;
    },
    createRecoveryDir() {
      for (const dir of [...deadPidEntries(paths.pgDir, RECOVERY_DIR_PREFIX), ...deadPidEntries(paths.pgDir, REPLACED_DIR_PREFIX).filter(() => existsSync(paths.pgData))]) {
        rmSync(dir, { recursive: true, force: true });
        rmSync(`${dir}.log`, { force: true });
      }
      const dir = path.join(paths.pgDir, `${RECOVERY_DIR_PREFIX}${process.pid}`);
      rmSync(dir, { recursive: true, force: true });
      return ensureServiceDir(dir, user);
    },
    async adoptRecoveryDir(dir) {
      if (!user) return;
      const { $ } = await import("zx");
      await $({ quiet: true })`chown -R ${user.uid}:${user.gid} ${dir}`;
    },
    async startRecovery(dir, recoveryConf) {
      const port = await freePort();
      const rp = recoveryPaths(dir);
      // Archiving is off while it recovers: a recovery that is thrown away must not leave a new
      // timeline's files in the live archive.
      writeServerConf(rp, postgresConf(spec) + recoveryConf, port, user);
      writeHbaConf(dir, spec.postgres.backupUser, user);
      const tail = () => readTail(rp.pgLog);
      try {
        await startPostgres(rp, user);
      } catch (error) {
        throw new CliError(`the recovery server did not start: ${(error as Error).message.split("\n")[0]}\n${tail()}`, EXIT.PROBLEM, `nothing was changed; see ${rp.pgLog}`);
      }
      return {
        config: (database?: string) => ({ ...local.connection("admin", database), port }),
        logTail: tail,
        stop: async () => {
          await stopPostgres(rp, user, "fast").catch(() => stopPostgres(rp, user, "immediate"));
        },
      };
    },
    async swapIn(dir, log) {
      const wasRunning = postmasterPid(paths) !== undefined;
      const replaced = path.join(paths.pgDir, `${REPLACED_DIR_PREFIX}${process.pid}`);
      // The live settings (port, archive into the live archive) replace the recovery's.
      writeServerConf(recoveryPaths(dir), postgresConf(spec, embeddedArchiveTarget(paths)), spec.postgres.port, user);
      writeHbaConf(dir, spec.postgres.backupUser, user);
      if (wasRunning) {
        log("stopping the live PostgreSQL for the swap");
        await stopPostgres(paths, user, "fast");
      }
      const hadLive = existsSync(paths.pgData);
      if (hadLive) renameSync(paths.pgData, replaced);
      renameSync(dir, paths.pgData);
      try {
        await startPostgres(paths, user);
        await withPg(local.connection("admin"), (c) => c.query("SELECT 1"));
      } catch (error) {
        log("the recovered data did not start: putting the live data back");
        await stopPostgres(paths, user, "immediate").catch(() => undefined);
        renameSync(paths.pgData, dir);
        if (hadLive) renameSync(replaced, paths.pgData);
        if (wasRunning) await startPostgres(paths, user).catch(() => undefined);
        throw error;
      }
      rmSync(replaced, { recursive: true, force: true });
    },
    discardRecoveryDir(dir) {
      rmSync(dir, { recursive: true, force: true });
      rmSync(`${dir}.log`, { force: true });
    },
  };
}

function readTail(file: string, lines = 8): string {
  try {
    return readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "";
  }
}
