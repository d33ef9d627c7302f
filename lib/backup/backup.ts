/**
 * `backupEnvironment`: one backup folder per run, holding the PostgreSQL dump, the Redis RDB and
 * a manifest, published only when everything is written, hashed and checked.
 *
 *   local (embedded or docker):  pg_dump ∥ (BGSAVE → RDB copy → redis-check-rdb) → manifest → rename
 *   aws (staging, prod):        RDS snapshot + ElastiCache snapshot → manifest → rename
 *
 * The environment's lock is held throughout, so no `up`, `down`, restore or other backup runs on
 * it meanwhile. The DR drill and the benchmark call this function directly.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { CliError, EXIT } from "../errors.js";
import { diskFullError, writeFileAtomic } from "../fs.js";
import { readRecord, specOf } from "../state/record.js";
import { envPaths } from "../state/paths.js";
import { withEnvLock } from "../state/lock.js";
import { PROJECT_DIR, specHash } from "../spec/load.js";
import type { Spec } from "../spec/schema.js";
import type { AwsClients } from "../aws/snapshots.js";
import { backupId, createPartialDir } from "./files.js";
import { openLocalEnvironment } from "../env/environment.js";
import { assertUsableBackupRoot } from "./location.js";
import { MANIFEST_FILE, manifestText, sealManifest, type Manifest, type ManifestBody, type ManifestFile } from "./manifest.js";
import { dumpPostgres, LEVEL_RANGE, type DumpFormat } from "./postgres-dump.js";
import { snapshotRedis } from "./redis.js";

export interface BackupOptions {
  env: string;
  /** custom (default: pg_dump's own format, zstd; restored with pg_restore --jobs) or sql (the guide's gzip'd plain SQL). */
  format?: DumpFormat;
  /** Compression level: gzip 1-9 (default 6) or zstd 1-19 (default 1). */
  level?: number;
  /** One table (PostgreSQL only; Redis is not part of a table backup). */
  table?: string;
  /** Folder that receives the backup folder (default: spec.backup.dir/<env>, relative to the project). */
  out?: string;
  /** Progress lines (stderr). */
  progress?: (message: string) => void;
  log?: (message: string) => void;
  lockWaitSeconds?: number;
  /** AWS: clients (tests pass mocked ones) and how long to wait for the snapshots. */
  aws?: { clients?: AwsClients; wait?: boolean; waitSeconds?: number; pollMs?: number };
  now?: () => Date;
}

export interface BackupResult {
  dir: string;
  manifest: Manifest;
  bytes: number;
  seconds: number;
}

/** Where an environment's backups go: <project>/<spec.backup.dir>/<env>. */
export function backupRoot(spec: Spec, env: string, out?: string): string {
  return out ? path.resolve(out) : path.resolve(PROJECT_DIR, spec.backup.dir, env);
}

export function toolkitVersion(): string {
  try {
    return `crypto-prediction-infra ${JSON.parse(readFileSync(path.join(PROJECT_DIR, "package.json"), "utf8")).version}`;
  } catch {
    return "crypto-prediction-infra";
  }
}

/** Whether an environment is the AWS target (no local state, spec.target aws). */
export function isAwsEnvironment(env: string): boolean {
  return !readRecord(env) && specOf(env).target === "aws";
}

export async function backupEnvironment(options: BackupOptions): Promise<BackupResult> {
  const format = options.format ?? "custom";
  if (options.level !== undefined) {
    const [min, max] = LEVEL_RANGE[format];
    if (!Number.isInteger(options.level) || options.level < min || options.level > max) {
      throw new CliError(`--level ${options.level}: ${format === "sql" ? "gzip" : "zstd"} levels are ${min}-${max}`, EXIT.USAGE);
    }
  }
  if (isAwsEnvironment(options.env)) return backupAws(options);
  const local = openLocalEnvironment(options.env);
  const { spec, paths } = local;
  const root = backupRoot(spec, options.env, options.out);
  assertUsableBackupRoot(root, options.out !== undefined ? "--out" : `backup.dir (Pulumi.${options.env}.yaml) →`);
  const log = options.log ?? (() => undefined);

  return withEnvLock(options.env, paths.lock, { purpose: "backing it up", waitSeconds: options.lockWaitSeconds, onWait: log }, async () => {
    const startedAt = (options.now ?? (() => new Date()))();
    const id = backupId(startedAt) + (options.table ? `-table-${options.table}` : "");
    const partial = createPartialDir(root, id);
    const abort = new AbortController();
    const meter = progressMeter(options.progress);
    try {
      // Both at once; the first failure stops the other (pg_dump is killed), and both have ended
      // before the folder is discarded.
      const failFast = <T>(p: Promise<T>) => p.catch((error) => (abort.abort(), Promise.reject(error)));
      const [pgResult, redisResult] = await Promise.allSettled([
        failFast(dumpPostgres(local, { format, level: options.level, table: options.table, dir: partial.dir, onBytes: (b) => meter("postgres", b), log, signal: abort.signal })),
        options.table ? Promise.resolve(undefined) : failFast(snapshotRedis(local, partial.dir, (b) => meter("redis", b))),
      ]);
      if (pgResult.status === "rejected") throw pgResult.reason;
      if (redisResult.status === "rejected") throw redisResult.reason;
      const [pg, redis] = [pgResult.value, redisResult.value];
      const files: ManifestFile[] = [pg.file, ...(redis ? [redis.file] : [])];
      const completedAt = new Date();
      const body: ManifestBody = {
        kind: "crypto-prediction-infra/backup",
        version: 1,
        id,
        env: options.env,
        engine: local.kind,
        scope: options.table ? "table" : "full",
        startedAt: startedAt.toISOString(),
        completedAt: completedAt.toISOString(),
        seconds: (completedAt.getTime() - startedAt.getTime()) / 1000,
        specHash: specHash(spec),
        toolkit: toolkitVersion(),
        postgres: pg.part,
        ...(redis ? { redis: redis.part } : {}),
        files,
      };
      const manifest = sealManifest(body);
      writeFileAtomic(path.join(partial.dir, MANIFEST_FILE), manifestText(manifest), 0o600);
      const dir = await partial.publish();
      return { dir, manifest, bytes: files.reduce((n, f) => n + f.bytes, 0), seconds: manifest.seconds };
    } catch (error) {
      abort.abort();
      const full = diskFullError(error, partial.dir, "writing the backup");
      partial.discard();
      throw full ?? error;
    }
  });
}

/** Throttled "postgres 120 MiB, redis 3 MiB (41 MiB/s)" lines. */
function progressMeter(progress?: (m: string) => void): (what: string, bytes: number) => void {
  const started = Date.now();
  const totals = new Map<string, number>();
  let last = 0;
  return (what, bytes) => {
    totals.set(what, bytes);
    const now = Date.now();
    if (!progress || now - last < 1000) return;
    last = now;
    const mib = (n: number) => `${(n / 1048576).toFixed(1)} MiB`;
    const sum = [...totals.values()].reduce((a, b) => a + b, 0);
    progress(`backup: ${[...totals].map(([w, b]) => `${w} ${mib(b)}`).join(", ")} written (${mib(sum / Math.max(0.001, (now - started) / 1000))}/s)`);
  };
}

async function backupAws(options: BackupOptions): Promise<BackupResult> {
  if (options.table) throw new CliError(`--table: the AWS target is backed up by snapshots of the whole instance; a single table cannot be`, EXIT.USAGE, "dump one table with pg_dump --table against the RDS endpoint");
  const spec = specOf(options.env);
  const root = backupRoot(spec, options.env, options.out);
  const paths = envPaths(options.env);
  const log = options.log ?? (() => undefined);
  return withEnvLock(options.env, paths.lock, { purpose: "backing it up", waitSeconds: options.lockWaitSeconds, onWait: log }, async () => {
    const startedAt = (options.now ?? (() => new Date()))();
    const id = backupId(startedAt);
    const partial = createPartialDir(root, id);
    try {
      // The AWS SDK is loaded only for AWS environments (it is large; local backups stay lean).
      const { awsClients, createAwsSnapshots } = await import("../aws/snapshots.js");
      const result = await createAwsSnapshots(spec, options.aws?.clients ?? awsClients(spec), { id, wait: options.aws?.wait, waitSeconds: options.aws?.waitSeconds, pollMs: options.aws?.pollMs, log });
      const completedAt = new Date();
      const manifest = sealManifest({
        kind: "crypto-prediction-infra/backup",
        version: 1,
        id,
        env: options.env,
        engine: "aws",
        scope: "full",
        startedAt: startedAt.toISOString(),
        completedAt: completedAt.toISOString(),
        seconds: (completedAt.getTime() - startedAt.getTime()) / 1000,
        specHash: specHash(spec),
        toolkit: toolkitVersion(),
        aws: { region: result.region, rds: result.rds, elasticache: result.elasticache },
        files: [],
      });
      writeFileAtomic(path.join(partial.dir, MANIFEST_FILE), manifestText(manifest), 0o600);
      const dir = await partial.publish();
      return { dir, manifest, bytes: 0, seconds: manifest.seconds };
    } catch (error) {
      partial.discard();
      throw error;
    }
  });
}
