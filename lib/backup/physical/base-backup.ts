/**
 * `takeBaseBackup`: a physical backup made by the server itself. Over a replication connection as
 * the base-backup role, BASE_BACKUP (TARGET 'server', MANIFEST with SHA-256, CHECKPOINT 'fast',
 * WAIT true) writes base.tar and backup_manifest into a staging folder the server owns; the
 * toolkit compresses the tar with zstd (this server build compresses only with gzip, which is
 * slow) into a `.partial-…` folder in the backup repository, hashing as the file grows, adds the
 * Redis RDB and its manifest (physical.json), and publishes the folder with one rename. A failure
 * or a kill -9 leaves only a `.partial-…` folder and a staging folder, which the next run sweeps.
 */
import { writeFileSync } from "node:fs";
import path from "node:path";
import pg from "pg";
import { $ } from "zx";
import { CliError, EXIT } from "../../errors.js";
import { connectPg, withPg } from "../../db/clients.js";
import { MIGRATIONS_TABLE } from "../../db/migrate.js";
import { withEnvLock } from "../../state/lock.js";
import { specHash } from "../../spec/load.js";
import { diskFullError, writeFileAtomic } from "../../fs.js";
import { backupRoot, toolkitVersion } from "../backup.js";
import { backupId, createPartialDir, fsyncFile, hashFile, hashGrowingFile } from "../files.js";
import type { LocalEnvironment } from "../../env/environment.js";
import { snapshotRedis } from "../redis.js";
import { physicalHost } from "./host.js";
import { BASE_TAR_FILE, PHYSICAL_MANIFEST_FILE, physicalManifestText, sealPhysicalManifest, SERVER_MANIFEST_FILE, type PhysicalManifest } from "./manifest.js";
import { parseLsn, segmentName, segmentOf } from "./wal.js";

export interface BaseBackupOptions {
  /** Folder that receives the backup folder (default: spec.backup.dir/<env>). */
  out?: string;
  progress?: (message: string) => void;
  log?: (message: string) => void;
  signal?: AbortSignal;
  lockWaitSeconds?: number;
  /** Leave Redis out (the benchmark times PostgreSQL alone). */
  skipRedis?: boolean;
}

/** zstd level and threads: level 1 on both cores keeps up with the disk (see README). */
export const ZSTD_ARGS = ["-1", "-T2"];

export async function takeBaseBackup(local: LocalEnvironment, opts: BaseBackupOptions = {}): Promise<{ dir: string; manifest: PhysicalManifest }> {
  const { spec, paths, connections } = local;
  const log = opts.log ?? (() => undefined);
  const progress = opts.progress ?? (() => undefined);
  if (!spec.backup.archive.enabled) {
    throw new CliError(`backup --physical: environment '${local.env}' does not archive WAL (backup.archive.enabled is false), so a base backup could not be recovered`, EXIT.USAGE, "turn backup.archive.enabled on (and run npm run up), or make a logical backup (--format custom)");
  }
  const root = backupRoot(spec, local.env, opts.out);
  const host = await physicalHost(local);
  return withEnvLock(local.env, paths.lock, { purpose: "backing it up", waitSeconds: opts.lockWaitSeconds, onWait: log }, async () => {
    for (const dir of host.sweepStaging()) log(`removed the staging folder of an interrupted base backup: ${dir}`);
    const startedAt = new Date();
    const id = `${backupId(startedAt)}-base`;
    const partial = createPartialDir(root, id);
    const staging = host.createStaging(id);
    let replication: pg.Client | undefined;
    const onAbort = () => void replication?.end().catch(() => undefined);
    opts.signal?.addEventListener("abort", onAbort);
    try {
      const info = await withPg(local.connection("admin"), async (c) => {
        const row = (await c.query("SELECT current_setting('server_version') AS version, (SELECT system_identifier::text FROM pg_control_system()) AS sysid")).rows[0];
        const head = await c
          .query(`SELECT name FROM ${MIGRATIONS_TABLE} ORDER BY run_on DESC, id DESC LIMIT 1`)
          .then((r) => (r.rows[0]?.name as string | undefined) ?? null)
          .catch(() => null);
        return { version: row.version as string, sysid: row.sysid as string, head };
      });
      const redisDone = opts.skipRedis ? Promise.resolve(undefined) : snapshotRedis(local, partial.dir);
      redisDone.catch(() => undefined); // awaited below; a PostgreSQL failure first must not leave it unhandled

      progress("backup: the server writes the base backup (BASE_BACKUP, SHA-256 manifest)");
      replication = await connectPg(connections.replicationConfig());
      const label = `cpi ${local.env} ${id}`.replace(/'/g, "");
      const results = (await replication.query(
        `BASE_BACKUP (LABEL '${label}', CHECKPOINT 'fast', TARGET 'server', TARGET_DETAIL '${staging.serverPath.replace(/'/g, "''")}', MANIFEST 'yes', MANIFEST_CHECKSUMS 'SHA256', WAIT true)`,
      )) as unknown as pg.QueryResult[];
      await replication.end();
      replication = undefined;
      const stopTime = new Date();
      // BASE_BACKUP answers with the start point, the tablespaces, then the end point.
      const start = results[0]!.rows[0] as { recptr: string; tli: string };
      const end = results.filter((r) => r.rows?.[0]?.recptr).at(-1)!.rows[0] as { recptr: string; tli: string };
      if (opts.signal?.aborted) throw new Error("aborted");

      const tar = path.join(staging.localPath, "base.tar");
      const tarInfo = await (await import("node:fs/promises")).stat(tar);
      progress(`backup: compressing ${(tarInfo.size / 1048576).toFixed(0)} MiB with zstd ${ZSTD_ARGS.join(" ")}`);
      const target = path.join(partial.dir, BASE_TAR_FILE);
      writeFileSync(target, "", { mode: 0o600 }); // exists before zstd opens it, so it can be followed as it grows
      const zstd = $({ quiet: true, signal: opts.signal })`zstd -q ${ZSTD_ARGS} -c ${tar} > ${target}`;
      let lastReport = 0;
      const tarFile = await hashGrowingFile(target, zstd.then(() => undefined), (bytes) => {
        if (Date.now() - lastReport > 1000) (lastReport = Date.now()), progress(`backup: ${(bytes / 1048576).toFixed(0)} MiB compressed`);
      });
      await fsyncFile(target);
      const serverManifest = path.join(partial.dir, SERVER_MANIFEST_FILE);
      await $({ quiet: true })`cp ${path.join(staging.localPath, SERVER_MANIFEST_FILE)} ${serverManifest}`;
      await (await import("node:fs/promises")).chmod(serverManifest, 0o600);
      await fsyncFile(serverManifest);
      const manifestFile = await hashFile(serverManifest);
      const redis = await redisDone;

      const completedAt = new Date();
      const startLsn = parseLsn(start.recptr);
      const manifest = sealPhysicalManifest({
        kind: "crypto-prediction-infra/base-backup",
        version: 1,
        id,
        env: local.env,
        engine: local.kind,
        startedAt: startedAt.toISOString(),
        completedAt: completedAt.toISOString(),
        seconds: (completedAt.getTime() - startedAt.getTime()) / 1000,
        specHash: specHash(spec),
        toolkit: toolkitVersion(),
        postgres: {
          serverVersion: info.version,
          systemIdentifier: info.sysid,
          timeline: Number(start.tli),
          startLsn: start.recptr,
          stopLsn: end.recptr,
          startWal: segmentName(Number(start.tli), segmentOf(startLsn)),
          startTime: startedAt.toISOString(),
          stopTime: stopTime.toISOString(),
          compression: `zstd:${ZSTD_ARGS[0]!.slice(1)}`,
          tarBytes: tarInfo.size,
          migrationHead: info.head,
          database: spec.postgres.database,
        },
        ...(redis ? { redis: { serverVersion: redis.part.serverVersion, file: redis.file.name, keys: redis.part.keys, expires: redis.part.expires } } : {}),
        files: [tarFile, manifestFile, ...(redis ? [redis.file] : [])],
      });
      writeFileAtomic(path.join(partial.dir, PHYSICAL_MANIFEST_FILE), physicalManifestText(manifest), 0o600);
      host.removeStaging(staging.localPath);
      const dir = await partial.publish();
      progress(`backup: ${dir} (${((tarFile.bytes + manifestFile.bytes) / 1048576).toFixed(1)} MiB, ${manifest.seconds.toFixed(2)} s)`);
      return { dir, manifest };
    } catch (error) {
      await replication?.end().catch(() => undefined);
      const full = diskFullError(error, partial.dir, "writing the base backup");
      partial.discard();
      host.removeStaging(staging.localPath);
      if (opts.signal?.aborted) throw new CliError("backup --physical: interrupted; nothing was published", EXIT.ERROR);
      throw full ?? error;
    } finally {
      opts.signal?.removeEventListener("abort", onAbort);
    }
  });
}
