/**
 * The Docker target's PhysicalHost. The PostgreSQL container has a backup volume
 * (POSTGRES_BACKUP_VOLUME_PATH: `wal/` is basic_archive's folder, `staging/` where BASE_BACKUP
 * writes), apart from its data volume, so a lost data volume leaves the archive.
 *
 *   base backup  the server writes into staging/ on the backup volume; the toolkit reads it
 *                through the volume's folder on this host (`docker volume inspect` Mountpoint:
 *                a local engine, run as root, as env:ci's Docker environments are);
 *   recovery     a new data folder on the backup volume (beside the archive, same file system as
 *                the data volume), recovered by a helper container of the same image (archiving
 *                off, port published on 127.0.0.1), then swapped in while the container is
 *                stopped: two renames of volume folders, no copy. If the recovered data does not
 *                start, the live data is put back and started as it was.
 */
import { spawnSync } from "node:child_process";
import { appendFileSync, existsSync, readdirSync, renameSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { CliError, EXIT } from "../../errors.js";
import { withPg } from "../../db/clients.js";
import { POSTGRES_ARCHIVE_PATH, POSTGRES_BACKUP_STAGING_PATH, POSTGRES_BACKUP_VOLUME_PATH, POSTGRES_CONTAINER_PORT } from "../../engines/docker/containers.js";
import { resourceName } from "../../spec/access.js";
import { freePort } from "../../state/ports.js";
import { processAlive } from "../../state/processes.js";
import { postgresArgs } from "../../spec/render.js";
import { type LocalEnvironment } from "../../env/environment.js";
import { docker } from "../../engines/docker/engine.js";
import type { PhysicalHost, RecoveryServer } from "./host.js";

/** The postgres user of the images (the official image's uid and gid; the offline image keeps them). */
export const CONTAINER_POSTGRES_UID = 999;

const RECOVERY_DIR_PREFIX = "recovering-";
const REPLACED_DIR_PREFIX = "replaced-";
/** The recovery's settings, included from the recovered postgresql.conf; emptied when it is swapped in. */
const RECOVERY_CONF = "toolkit-recovery.conf";

export async function dockerPhysicalHost(local: LocalEnvironment): Promise<PhysicalHost> {
  const { spec } = local;
  const d = local.docker;
  if (!d) throw new CliError(`environment '${local.env}' is not a Docker environment`, EXIT.ERROR);
  const mountpoint = async (volume: string) => {
    const out = (await docker(d.binary, ["volume", "inspect", "-f", "{{.Mountpoint}}", volume])).trim();
    if (!out || !existsSync(out)) {
      throw new CliError(`volume ${volume} has no folder on this host (${out || "none"}): physical backups of a Docker environment need the engine on this machine, and root`, EXIT.ERROR);
    }
    return out;
  };
  const backupVolume = resourceName(spec, "postgres-backup");
  const dataVolume = resourceName(spec, "postgres-data");
  const backupRoot = await mountpoint(backupVolume);
  const dataRoot = await mountpoint(dataVolume);
  const local2server = (dir: string) => path.posix.join(POSTGRES_BACKUP_VOLUME_PATH, path.relative(backupRoot, dir));
  const stagingRoot = path.join(backupRoot, path.posix.relative(POSTGRES_BACKUP_VOLUME_PATH, POSTGRES_BACKUP_STAGING_PATH));
  const chownServer = (dir: string) => {
    const r = spawnSync("chown", ["-R", `${CONTAINER_POSTGRES_UID}:${CONTAINER_POSTGRES_UID}`, dir], { encoding: "utf8" });
    if (r.status !== 0) throw new CliError(`could not give ${dir} to the container's postgres user: ${r.stderr.trim()}`, EXIT.ERROR);
  };
  const isRunning = (container: string) => {
    const r = spawnSync(d.binary, ["inspect", "-f", "{{.State.Running}}", container], { encoding: "utf8", timeout: 20_000 });
    return r.status === 0 && r.stdout.trim() === "true";
  };
  const running = () => isRunning(d.postgres);
  // The server logs to the container's stderr, which `docker logs` replays on its own stderr.
  const logsOf = (container: string) => () => {
    const r = spawnSync(d.binary, ["logs", "--tail", "15", container], { encoding: "utf8", timeout: 20_000 });
    return `${r.stdout ?? ""}${r.stderr ?? ""}`.trim();
  };
  /** Until the container's server accepts connections; a container that stopped fails at once, with its log. */
  const waitAccepting = async (config: () => ReturnType<LocalEnvironment["connection"]>, seconds: number, container: string) => {
    const deadline = Date.now() + seconds * 1000;
    const tail = () => logsOf(container)().split("\n").slice(-8).join(" | ");
    for (;;) {
      const ok = await withPg({ ...config(), connectionTimeoutMillis: 2_000 }, (c) => c.query("SELECT 1")).then(() => true, () => false);
      if (ok) return;
      if (!isRunning(container)) throw new CliError(`${container} stopped before it accepted connections: ${tail()}`, EXIT.PROBLEM);
      if (Date.now() > deadline) throw new CliError(`${container} did not accept connections within ${seconds} s: ${tail()}`, EXIT.PROBLEM);
      await new Promise((r) => setTimeout(r, 200));
    }
  };

  return {
    engine: "docker",
    archiveDir: path.join(backupRoot, path.posix.relative(POSTGRES_BACKUP_VOLUME_PATH, POSTGRES_ARCHIVE_PATH)),
    serverArchiveDir: POSTGRES_ARCHIVE_PATH,
    liveRunning: running,
    createStaging(id) {
      const localPath = path.join(stagingRoot, `${id}-${process.pid}`);
      rmSync(localPath, { recursive: true, force: true });
      return { serverPath: local2server(localPath), localPath }; // the server creates it
    },
    removeStaging: (dir) => rmSync(dir, { recursive: true, force: true }),
    sweepStaging() {
      const dead = deadPidEntries(stagingRoot, "");
      for (const dir of dead) rmSync(dir, { recursive: true, force: true });
      return dead;
    },
    createRecoveryDir() {
      for (const dir of [...deadPidEntries(backupRoot, RECOVERY_DIR_PREFIX), ...deadPidEntries(backupRoot, REPLACED_DIR_PREFIX).filter(() => existsSync(dataRoot))]) rmSync(dir, { recursive: true, force: true });
      const dir = path.join(backupRoot, `${RECOVERY_DIR_PREFIX}${process.pid}`);
      rmSync(dir, { recursive: true, force: true });
      spawnSync("install", ["-d", "-m", "0700", "-o", String(CONTAINER_POSTGRES_UID), "-g", String(CONTAINER_POSTGRES_UID), dir]);
      if (!existsSync(dir)) throw new CliError(`could not create ${dir} on the backup volume ${backupVolume}`, EXIT.ERROR);
      return dir;
    },
    async adoptRecoveryDir(dir) {
      chownServer(dir);
    },
    async startRecovery(dir, recoveryConf): Promise<RecoveryServer> {
      // The recovery's settings go in a file of their own, included last; the spec's tuning and
      // "no archiving" are arguments, as the live container's are.
      writeFileSync(path.join(dir, RECOVERY_CONF), recoveryConf, { mode: 0o600 });
      appendFileSync(path.join(dir, "postgresql.conf"), `\n# crypto-prediction-infra: recovery settings (emptied once recovered)\ninclude_if_exists '${RECOVERY_CONF}'\n`);
      chownServer(dir);
      const port = await freePort();
      const name = `${d.postgres}-recovery-${process.pid}`;
      await docker(d.binary, ["rm", "-f", name]).catch(() => undefined);
      const logs = logsOf(name);
      await docker(d.binary, [
        "run", "-d", "--name", name,
        "--label", `crypto-prediction-infra.env=${spec.env}`,
        "--user", "postgres",
        "-p", `127.0.0.1:${port}:${POSTGRES_CONTAINER_PORT}`,
        "-v", `${backupVolume}:${POSTGRES_BACKUP_VOLUME_PATH}`,
        "--entrypoint", "postgres",
        spec.images.postgres,
        "-D", local2server(dir),
        ...postgresArgs(spec),
        "-c", "wal_level=replica", "-c", "archive_mode=off", "-c", "listen_addresses=*",
      ]);
      const config = (database?: string) => ({ ...local.connection("admin", database), port });
      try {
        await waitAccepting(() => config(), 120, name);
      } catch (error) {
        await docker(d.binary, ["rm", "-f", name]).catch(() => undefined);
        throw new CliError(`the recovery server did not start: ${(error as Error).message}`, EXIT.PROBLEM, "nothing was changed");
      }
      let lastLogs = "";
      return {
        config,
        logTail: () => lastLogs,
        stop: async () => {
          lastLogs = logs();
          await docker(d.binary, ["stop", "-t", "60", name]).catch(() => undefined);
          await docker(d.binary, ["rm", "-f", name]).catch(() => undefined);
        },
      };
    },
    async swapIn(dir, log) {
      writeFileSync(path.join(dir, RECOVERY_CONF), "", { mode: 0o600 });
      chownServer(dir);
      const wasRunning = running();
      if (wasRunning) {
        log(`stopping ${d.postgres} for the swap`);
        await docker(d.binary, ["stop", "-t", "60", d.postgres]);
      }
      const replaced = path.join(backupRoot, `${REPLACED_DIR_PREFIX}${process.pid}`);
      const hadLive = existsSync(dataRoot);
      if (hadLive) renameSync(dataRoot, replaced);
      renameSync(dir, dataRoot);
      try {
        await docker(d.binary, ["start", d.postgres]);
        await waitAccepting(() => local.connection("admin"), 120, d.postgres);
      } catch (error) {
        log("the recovered data did not start: putting the live data back");
        await docker(d.binary, ["stop", "-t", "10", d.postgres]).catch(() => undefined);
        renameSync(dataRoot, dir);
        if (hadLive) renameSync(replaced, dataRoot);
        if (wasRunning) await docker(d.binary, ["start", d.postgres]).catch(() => undefined);
        throw error;
      }
      rmSync(replaced, { recursive: true, force: true });
    },
    discardRecoveryDir(dir) {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Folders named `<prefix>…-<pid>` (or `<prefix><pid>`) whose process has ended. */
function deadPidEntries(dir: string, prefix: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((name) => name.startsWith(prefix))
    .filter((name) => {
      const pid = Number(/(?:^|-)(\d+)$/.exec(name.slice(prefix.length))?.[1]);
      return !(pid > 0 && (pid === process.pid || processAlive(pid)));
    })
    .map((name) => path.join(dir, name));
}
