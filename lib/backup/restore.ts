/**
 * `restoreEnvironment`: puts a backup back, safely.
 *
 *   1. verify the backup (manifest, every size and sha256, the RDB) before touching anything;
 *   2. refuse a backup whose migration head this code does not know (a newer schema);
 *   3. take the environment's lock; refuse a target that holds data unless --yes;
 *   4-5. at the same time: PostgreSQL into a new database, checked; Redis (RDB loaded with
 *      appendonly no, then AOF rewritten), checked, its previous files kept aside;
 *   6. swap the new database in, drop the old one; drop Redis's previous files.
 * A failure before step 6 leaves PostgreSQL untouched (the new database is dropped) and puts
 * Redis's previous files back.
 *
 * `--from` is a backup folder, or a single dump file made outside the toolkit (plain SQL,
 * .sql.gz or custom format): that restores PostgreSQL only, without a manifest to check against.
 */
import { interceptTermination } from "../signals.js";
import { existsSync, statSync } from "node:fs";
import path from "node:path";
import { CliError, EXIT } from "../errors.js";
import { registerSecret } from "../redact.js";
import { withRedis } from "../db/clients.js";
import { knownMigrations } from "../db/migrate.js";
import { specOf } from "../state/record.js";
import { withEnvLock } from "../state/lock.js";
import { envPaths } from "../state/paths.js";
import { writeFileAtomic } from "../fs.js";
import type { AwsClients, AwsRestoreResult } from "../aws/snapshots.js";
import { isAwsEnvironment } from "./backup.js";
import { openLocalEnvironment, type LocalEnvironment } from "../env/environment.js";
import type { Manifest } from "./manifest.js";
import { detectDumpKind, postgresHasData, prepareDatabaseRestore, restoreTables, type DumpKind, type LoadProgress } from "./postgres-restore.js";
import { restoreRedisDocker, restoreRedisEmbedded, type RedisRestoreReport } from "./redis.js";
import { totalKeys } from "../db/redis-info.js";
import { verifyBackup } from "./verify.js";

export interface RestoreOptions {
  env: string;
  /** A backup folder, or a dump file made outside the toolkit. */
  from: string;
  /** Replace only this table's rows. */
  table?: string;
  /** Allow replacing data that is there. */
  yes?: boolean;
  /** pg_restore --jobs for a custom archive (default 2): see DatabaseRestoreOptions.jobs. */
  jobs?: number;
  log?: (message: string) => void;
  progress?: (message: string) => void;
  lockWaitSeconds?: number;
  aws?: { clients?: AwsClients; now?: Date };
}

export interface RestoreReport {
  env: string;
  from: string;
  /** Backup id, or "external dump". */
  source: string;
  verified: boolean;
  mode: "database" | "tables" | "aws";
  postgres?: {
    tool: string;
    tables: Record<string, number>;
    migrationHead?: string | null;
    replacedExisting?: boolean;
    droppedLines: string[];
    seconds: number;
  };
  redis?: RedisRestoreReport;
  aws?: Omit<AwsRestoreResult, "redisAuthToken"> & { redisAuthTokenFile?: string };
  warnings: string[];
  seconds: number;
}

/** Refuses a backup whose schema is newer than the code (its migration head is unknown here). */
export function assertKnownHead(manifest: Manifest): void {
  const head = manifest.postgres?.migrationHead;
  if (!head) return;
  const known = knownMigrations();
  if (!known.includes(head)) {
    throw new CliError(
      `backup ${manifest.id} comes from a newer schema: its migration head ${head} is unknown to this code (newest known: ${known.at(-1)})`,
      EXIT.ERROR,
      "restore it with the version of the toolkit that made it (or update this checkout); nothing was changed",
    );
  }
}

export async function restoreEnvironment(options: RestoreOptions): Promise<RestoreReport> {
  const started = Date.now();
  const log = options.log ?? (() => undefined);
  const from = path.resolve(options.from);
  if (!existsSync(from)) throw new CliError(`--from ${options.from}: no such backup folder or dump file`, EXIT.USAGE);
  const warnings: string[] = [];

  // 1-2. Everything about the backup is checked before the target is looked at.
  let manifest: Manifest | undefined;
  let dumpFile: string | undefined;
  let kind: DumpKind | undefined;
  if (statSync(from).isDirectory()) {
    log(`verifying ${from}`);
    manifest = (await verifyBackup(from)).manifest;
    assertKnownHead(manifest);
    if (manifest.postgres) {
      dumpFile = path.join(from, manifest.postgres.file);
      kind = manifest.postgres.format === "custom" ? "custom" : "sql.gz";
    }
  } else {
    dumpFile = from;
    kind = detectDumpKind(from);
    warnings.push("external dump: no manifest, so no checksums or row counts to check against; its migrations and tables are checked after the load");
  }
  if (manifest && manifest.env !== options.env) warnings.push(`backup of '${manifest.env}' restored into '${options.env}'`);

  if (manifest?.engine === "aws" || isAwsEnvironment(options.env)) return restoreAws(options, manifest, warnings, started);

  let tables: string[] | undefined;
  if (manifest?.scope === "table") {
    const inBackup = Object.keys(manifest.postgres?.tables ?? {});
    if (options.table !== undefined && !inBackup.includes(options.table)) {
      throw new CliError(`--table ${JSON.stringify(options.table)}: backup ${manifest.id} holds only ${inBackup.join(", ")}`, EXIT.USAGE);
    }
    tables = options.table !== undefined ? [options.table] : inBackup;
  } else if (options.table !== undefined) {
    if (manifest && !(options.table in (manifest.postgres?.tables ?? {}))) {
      throw new CliError(`--table ${JSON.stringify(options.table)}: backup ${manifest.id} has no such table`, EXIT.USAGE, `tables: ${Object.keys(manifest.postgres?.tables ?? {}).join(", ")}`);
    }
    tables = [options.table];
  }
  if (!dumpFile || !kind) throw new CliError(`backup ${from} holds no PostgreSQL dump`, EXIT.USAGE);

  const local = openLocalEnvironment(options.env);
  const { paths } = local;
  // A logical dump loads into the same or a newer major only: a newer server's dump may use what this one lacks.
  const targetMajor = local.spec.postgres.version;
  if (manifest?.postgres && manifest.postgres.serverMajor > targetMajor) {
    throw new CliError(
      `backup ${manifest.id} comes from PostgreSQL ${manifest.postgres.serverMajor}; environment '${options.env}' runs PostgreSQL ${targetMajor}`,
      EXIT.ERROR,
      `restore it into PostgreSQL ${manifest.postgres.serverMajor} or newer; nothing was changed`,
    );
  }
  return withEnvLock(options.env, paths.lock, { purpose: "restoring it", waitSeconds: options.lockWaitSeconds, onWait: log }, async () => {
    // 3. A target that holds data is replaced only when asked to.
    const withRedisPart = !tables && manifest?.redis !== undefined;
    const pgData = await postgresHasData(local, tables);
    const redisKeys = withRedisPart ? await redisKeyCount(local) : 0;
    if ((pgData.length || redisKeys) && !options.yes) {
      const what = [pgData.length ? `rows in ${pgData.join(", ")}` : "", redisKeys ? `${redisKeys} Redis keys` : ""].filter(Boolean).join(" and ");
      throw new CliError(`environment '${options.env}' is not empty (${what}); the restore would replace that data`, EXIT.USAGE, `to replace it: npm run restore -- --env ${options.env} --from ${options.from}${options.table ? ` --table ${options.table}` : ""} --yes`);
    }
    const onProgress = loadProgress(options.progress);

    if (tables) {
      const report = await restoreTables(local, dumpFile!, tables, { kind: kind!, manifest, onProgress, log });
      return {
        env: options.env,
        from,
        source: manifest?.id ?? "external dump",
        verified: manifest !== undefined,
        mode: "tables",
        postgres: { tool: report.tool, tables: report.tables, droppedLines: report.droppedLines, seconds: report.seconds },
        warnings,
        seconds: (Date.now() - started) / 1000,
      } satisfies RestoreReport;
    }

    // 4-6. See restoreDatabaseAndRedis.
    const rdb = withRedisPart ? path.join(from, manifest!.redis!.file) : undefined;
    const signals = holdSignals(log);
    let done: Awaited<ReturnType<typeof restoreDatabaseAndRedis>>;
    try {
      done = await restoreDatabaseAndRedis(local, dumpFile!, kind!, manifest, rdb, options, signals, log);
    } finally {
      signals.release();
    }
    const { prepared, redis, swap } = done;
    if (manifest?.postgres?.migrationHead !== undefined && manifest.postgres.migrationHead !== knownMigrations().at(-1)) {
      warnings.push(`the backup's schema is at ${manifest.postgres.migrationHead ?? "no migration"}; apply the newer ones: npm run migrate -- up --env ${options.env}`);
    }
    return {
      env: options.env,
      from,
      source: manifest?.id ?? "external dump",
      verified: manifest !== undefined,
      mode: "database",
      postgres: {
        tool: prepared.tool,
        tables: prepared.tables,
        migrationHead: prepared.migrationHead,
        replacedExisting: swap.replaced,
        droppedLines: prepared.droppedLines,
        seconds: prepared.seconds + swap.seconds,
      },
      ...(redis ? { redis: redis.report } : {}),
      warnings,
      seconds: (Date.now() - started) / 1000,
    } satisfies RestoreReport;
  });
}

/**
 * PostgreSQL into a new database, checked (the live one untouched so far), and, at the same
 * time, Redis (live, its previous files kept aside until the end); then the swap. A failure of
 * either part, or a signal received meanwhile, drops the new database and puts Redis's previous
 * files back.
 */
async function restoreDatabaseAndRedis(
  local: LocalEnvironment,
  dumpFile: string,
  kind: DumpKind,
  manifest: Manifest | undefined,
  rdb: string | undefined,
  options: RestoreOptions,
  signals: HeldSignals,
  log: (m: string) => void,
) {
  const [pgResult, redisResult] = await Promise.allSettled([
    prepareDatabaseRestore(local, dumpFile, { kind, manifest, jobs: options.jobs, progress: options.progress, log }),
    rdb ? (local.kind === "docker" ? restoreRedisDocker : restoreRedisEmbedded)(local, rdb, manifest!.redis!.keys, log) : Promise.resolve(undefined),
  ]);
  const undo = async () => {
    if (pgResult.status === "fulfilled") await pgResult.value.discard();
    if (redisResult.status === "fulfilled") await redisResult.value?.rollback();
  };
  if (pgResult.status === "rejected" || redisResult.status === "rejected" || signals.received()) {
    await undo();
    if (signals.received()) throw new CliError(`restore interrupted by ${signals.received()}: the new database was dropped and Redis's previous data put back`, EXIT.ERROR);
    throw pgResult.status === "rejected" ? pgResult.reason : (redisResult as PromiseRejectedResult).reason;
  }
  const prepared = pgResult.value;
  const redis = redisResult.value;
  // The swap: the only step that changes PostgreSQL.
  let swap: { replaced: boolean; seconds: number };
  try {
    swap = await prepared.swap(log);
  } catch (error) {
    await undo();
    throw error;
  }
  await redis?.commit();
  return { prepared, redis, swap };
}

interface HeldSignals {
  received(): string | undefined;
  release(): void;
}

/**
 * Holds SIGINT/SIGTERM during a restore: the first is noted (and the restore undoes its work at
 * the next step), a second one exits at once.
 */
function holdSignals(log: (m: string) => void): HeldSignals {
  let received: string | undefined;
  // The first signal is ours; a second one ends the process through lib/signals.ts's clean-ups.
  const release = interceptTermination((signal) => {
    received = signal;
    log(`restore: ${signal} received; undoing the restore once the running step ends (again to quit now)`);
  });
  return { received: () => received, release };
}

async function redisKeyCount(local: LocalEnvironment): Promise<number> {
  return withRedis(local.redisConnection("admin"), async (redis) => totalKeys(await redis.info("keyspace")));
}

function loadProgress(progress?: (m: string) => void): (p: LoadProgress) => void {
  let last = 0;
  const started = Date.now();
  return ({ bytesRead, totalBytes }) => {
    const now = Date.now();
    if (!progress || (now - last < 1000 && bytesRead < totalBytes)) return;
    last = now;
    const pct = totalBytes ? Math.floor((bytesRead / totalBytes) * 100) : 100;
    progress(`restore: postgres ${pct}% of the dump read (${((bytesRead / 1048576) / Math.max(0.001, (now - started) / 1000)).toFixed(1)} MiB/s)`);
  };
}

async function restoreAws(options: RestoreOptions, manifest: Manifest | undefined, warnings: string[], started: number): Promise<RestoreReport> {
  if (!manifest?.aws) {
    throw new CliError(`environment '${options.env}' is on AWS: restore takes a backup folder made by \`npm run backup -- --env ${options.env}\` (RDS and ElastiCache snapshots)`, EXIT.USAGE);
  }
  if (options.table) throw new CliError("--table: AWS backups are snapshots of whole instances", EXIT.USAGE);
  const spec = specOf(options.env);
  const log = options.log ?? (() => undefined);
  const paths = envPaths(options.env);
  return withEnvLock(options.env, paths.lock, { purpose: "restoring it", waitSeconds: options.lockWaitSeconds, onWait: log }, async () => {
    const { awsClients, restoreAwsSnapshots } = await import("../aws/snapshots.js");
    const result = await restoreAwsSnapshots(spec, options.aws?.clients ?? awsClients(spec), manifest.aws!, { now: options.aws?.now, log });
    let tokenFile: string | undefined;
    if (result.redisAuthToken) {
      registerSecret(result.redisAuthToken);
      tokenFile = path.join(paths.dir, `${result.elasticache.replicationGroupId}.auth-token`);
      writeFileAtomic(tokenFile, result.redisAuthToken + "\n", 0o600);
    }
    const { redisAuthToken: _secret, ...rest } = result;
    warnings.push(
      `new resources ${result.rds.instanceIdentifier} and ${result.elasticache.replicationGroupId} are being created next to the live ones; point the application at them once available (or import them into the stack)`,
    );
    return {
      env: options.env,
      from: path.resolve(options.from),
      source: manifest.id,
      verified: true,
      mode: "aws",
      aws: { ...rest, ...(tokenFile ? { redisAuthTokenFile: tokenFile } : {}) },
      warnings,
      seconds: (Date.now() - started) / 1000,
    } satisfies RestoreReport;
  });
}
