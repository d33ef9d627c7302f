/**
 * `runDrill`: the guide's Disaster Recovery Plan ("test restore procedures monthly", "document
 * RTO/RPO") as one timed run, built from the toolkit's own functions:
 *
 *   1. prepare   scratch copy of the env's spec (or the env itself, --in-place), seedMarketData,
 *                marker row + key (write 0)
 *   2. backup    backupEnvironment, while a writer keeps adding markers (writes 1, 2, …)
 *   3. writes    the writer goes on for `writeSeconds` after the backup: the RPO exposure
 *   4. disaster  stop the servers, delete their data                       ┐
 *   5. recreate  `up` from the spec (Docker: a new environment)             │ RTO
 *   6. restore   restoreEnvironment of the newest backup                    │
 *   7. verify    verifyEnvironment + row counts and keys vs the manifest    ┘
 *
 * RPO = newest write acknowledged before the disaster − newest write present after the restore,
 * per store, the worse one counts. Both are checked against the spec's dr.rtoSeconds/rpoSeconds.
 * A scratch environment (and its backups) is removed at the end, whatever happened, unless
 * `keep`. An in-place drill holds the environment's lock throughout and removes its markers.
 */
import { randomBytes } from "node:crypto";
import type pg from "pg";
import { existsSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { backupEnvironment, backupRoot, toolkitVersion, type BackupResult } from "../backup/backup.js";
import { backupId } from "../backup/files.js";
import { openEnvironment, openLocalEnvironment } from "../env/environment.js";
import { takeBaseBackup } from "../backup/physical/base-backup.js";
import type { DumpFormat } from "../backup/postgres-dump.js";
import { restoreEnvironment } from "../backup/restore.js";
import { openBackupRepository, type BackupRepository } from "../backup/repository/index.js";
import { CliError, EXIT } from "../errors.js";
import { withPg, withRedis } from "../db/clients.js";
import { publicTables } from "../db/catalog.js";
import { totalKeys } from "../db/redis-info.js";
import { sqlIdent } from "../db/roles.js";
import { DEFAULT_SYMBOLS, seedMarketData, type SeedProgress } from "../db/seed/index.js";
import { readRecord } from "../state/record.js";
import { withEnvLock } from "../state/lock.js";
import { envPaths, ephemeralRoot } from "../state/paths.js";
import { resolveEnvironment } from "../env/resolve.js";
import { ensureDir } from "../fs.js";
import { deepMerge, loadSpec, specHash } from "../spec/load.js";
import { rpoObjectiveSeconds, type Spec } from "../spec/schema.js";
import { errorText } from "../verify/report.js";
import { verifyEnvironment } from "../verify/verify.js";
import { ensureDrillCoin, insertMarkerRow, markerSource, postgresMarkers, redisMarkers, removeMarkers, setMarkerKey, startMarkerWriter, type AcknowledgedWrites, type MarkerWriter, type PresentMarkers } from "./markers.js";
import { DRILL_REPORT_KIND, PHASES, type DrillReport, type PhaseName, type PhaseRecord, type StoreRecovery, type TableComparison } from "./report.js";
import { createScratchSubject, inPlaceSubject, scratchBaseEnv, type DrillEngine, type DrillSubject } from "./subject.js";

type Log = (message: string) => void;

/** market_data rows a scratch drill seeds by default (an in-place drill seeds none unless asked). */
export const DEFAULT_SCRATCH_ROWS = 100_000;
/** How long the writer goes on after the backup, by default. */
export const DEFAULT_WRITE_SECONDS = 1.5;
/** Pause between two marker writes of one store, by default (50 writes a second each). */
export const DEFAULT_WRITE_INTERVAL_MS = 20;
/**
 * archive_timeout of a scratch copy in a point-in-time recovery drill: short, so that writes for a
 * few seconds after the base backup span several archived segments (recovered from the archive,
 * not from the base backup). The report states it beside the environment's own.
 */
export const DRILL_ARCHIVE_TIMEOUT_SECONDS = 1;
/** A PITR drill writes this many archive timeouts after the base backup, by default. */
export const PITR_WRITE_TIMEOUTS = 3;

/** pitr: base backup + archived WAL, recovery to the latest (where archiving is on); logical: the backup command's dump. */
export type DrillMethod = "pitr" | "logical";

export interface DrillHooks {
  /**
   * Runs after phase 3, before the disaster, with the backup just made (the test suite flips a
   * byte of it here). Not timed.
   */
  afterBackup?(backup: { dir: string }): void | Promise<void>;
  /** Called once the environment to drill exists (tests note its id, ports and state folder). */
  onSubject?(subject: { env: string; engine: DrillEngine; stateDir: string; ports: { postgres: number; redis: number } }): void;
}

export interface DrillOptions {
  /** The environment: its spec is drilled on a scratch copy; with `inPlace`, the environment itself. */
  env: string;
  /** Engine of the scratch copy (default embedded). An in-place drill uses the environment's own. */
  engine?: DrillEngine;
  /** Drill the named environment itself: its data is destroyed and restored. Needs `yes`. */
  inPlace?: boolean;
  yes?: boolean;
  /** market_data rows to seed (default DEFAULT_SCRATCH_ROWS on a scratch copy, 0 in place). */
  rows?: number;
  /** Backup format of a logical drill (default: the backup command's, sql). */
  format?: DumpFormat;
  /** Default: pitr where the spec archives WAL (backup.archive.enabled) on the embedded engine, else logical. */
  method?: DrillMethod;
  writeSeconds?: number;
  writeIntervalMs?: number;
  /** Leave the scratch environment (and its backups) up at the end. */
  keep?: boolean;
  log?: Log;
  progress?: Log;
  /** Aborting stops the drill at the next phase and cleans up. */
  signal?: AbortSignal;
  lockWaitSeconds?: number;
  hooks?: DrillHooks;
}

/** What the options resolve to, before anything runs; throws CliError (usage) for a bad combination. */
export function resolveDrillOptions(options: DrillOptions): {
  spec: Spec;
  specEnv: string;
  /** The drilled environment's own spec overrides (a scratch copy gets them too). */
  specOverrides: Record<string, unknown>;
  engine: DrillEngine;
  rows: number;
  writeSeconds: number;
  writeIntervalMs: number;
  format: DumpFormat;
  method: DrillMethod;
  /** The drilled servers' archive_timeout (a scratch PITR copy: DRILL_ARCHIVE_TIMEOUT_SECONDS). */
  archiveTimeoutSeconds?: number;
} {
  envPaths(options.env); // the name's shape
  if (options.inPlace && !options.yes) {
    throw new CliError(`--in-place destroys the data of environment '${options.env}' (its servers are stopped and their data deleted, then restored from a new backup)`, EXIT.USAGE, `confirm with: npm run drill -- --env ${options.env} --in-place --yes`);
  }
  if (options.yes && !options.inPlace) throw new CliError("--yes confirms --in-place; a scratch drill needs no confirmation", EXIT.USAGE);
  if (options.inPlace && options.keep) throw new CliError("--keep leaves a scratch environment up; an in-place drill has none", EXIT.USAGE);
  const rows = options.rows ?? (options.inPlace ? 0 : DEFAULT_SCRATCH_ROWS);
  if (!Number.isInteger(rows) || rows < 0) throw new CliError(`--rows ${rows}: expected a whole number, 0 or more`, EXIT.USAGE);
  const writeIntervalMs = options.writeIntervalMs ?? DEFAULT_WRITE_INTERVAL_MS;
  const specEnv = options.inPlace ? (openEnvironmentRecordBase(options.env) ?? options.env) : scratchBaseEnv(options.env);
  // An environment made with overrides (a bucket, other ports…) is drilled with them.
  const specOverrides = readRecord(options.env)?.specOverrides ?? {};
  const spec = loadSpec(specEnv, { overrides: specOverrides });
  if (spec.target === "aws") {
    throw new CliError(
      `environment '${options.env}' is on AWS (spec.target aws): its drill (snapshot → new instance → verify) is planned, not run here`,
      EXIT.USAGE,
      `print the steps: npm run drill -- --env ${options.env} --plan`,
    );
  }
  const engine: DrillEngine = options.inPlace ? openEnvironment(options.env).record.engine : (options.engine ?? "embedded");
  if (options.inPlace && options.engine && options.engine !== engine) {
    throw new CliError(`--engine ${options.engine}: an in-place drill uses the environment's own engine (${engine})`, EXIT.USAGE);
  }
  const method: DrillMethod = options.method ?? (spec.backup.archive.enabled && engine === "embedded" ? "pitr" : "logical");
  if (method === "pitr" && !spec.backup.archive.enabled) {
    throw new CliError(`--method pitr: '${specEnv}' does not archive WAL (backup.archive.enabled: false)`, EXIT.USAGE, `drill its logical backups: npm run drill -- --env ${options.env} --method logical`);
  }
  if (method === "pitr" && engine !== "embedded") throw new CliError("--method pitr runs on the embedded engine; drill Docker with --method logical", EXIT.USAGE);
  if (method === "pitr" && options.format) throw new CliError("--format is the logical drill's dump format; a point-in-time drill takes a base backup", EXIT.USAGE);
  const archiveTimeoutSeconds = method === "pitr" ? (options.inPlace ? spec.backup.archive.timeoutSeconds : DRILL_ARCHIVE_TIMEOUT_SECONDS) : undefined;
  // PITR: the writes outlast the archive timeout, so some of what comes back was archived after the base backup.
  const writeSeconds =
    options.writeSeconds ??
    (archiveTimeoutSeconds === undefined ? DEFAULT_WRITE_SECONDS : options.inPlace ? archiveTimeoutSeconds + DEFAULT_WRITE_SECONDS : Math.max(DEFAULT_WRITE_SECONDS, PITR_WRITE_TIMEOUTS * archiveTimeoutSeconds));
  if (!(writeSeconds >= 0 && writeSeconds <= 600)) throw new CliError(`--write-seconds ${writeSeconds}: expected 0-600 seconds`, EXIT.USAGE);
  return { spec, specEnv, specOverrides, engine, rows, writeSeconds, writeIntervalMs, format: options.format ?? "sql", method, archiveTimeoutSeconds };
}

function openEnvironmentRecordBase(env: string): string | undefined {
  return openEnvironment(env).record.baseEnv;
}

/** The drill was interrupted (signal). */
class Interrupted extends Error {
  constructor() {
    super("interrupted: the drill stopped at the next phase and cleaned up");
  }
}

/**
 * Runs a drill and returns its report (status pass/fail/error with the exit code it maps to).
 * Throws only for bad options (CliError, usage) and a busy environment (EXIT.BUSY): everything
 * that happens once the drill started is in the report.
 */
export async function runDrill(options: DrillOptions): Promise<DrillReport> {
  const resolved = resolveDrillOptions(options);
  const log = options.log ?? (() => undefined);
  if (options.inPlace) {
    const paths = envPaths(options.env);
    return withEnvLock(options.env, paths.lock, { purpose: "running a DR drill on it", waitSeconds: options.lockWaitSeconds, onWait: log }, () => drill(options, resolved));
  }
  return drill(options, resolved);
}

async function drill(options: DrillOptions, resolved: ReturnType<typeof resolveDrillOptions>): Promise<DrillReport> {
  const log = options.log ?? (() => undefined);
  const progress = options.progress ?? (() => undefined);
  const startedAt = new Date();
  const runId = `${backupId(startedAt).toLowerCase()}-${randomBytes(3).toString("hex")}`;
  const { spec } = resolved;
  const report: DrillReport = {
    kind: DRILL_REPORT_KIND,
    version: 1,
    runId,
    env: options.env,
    mode: options.inPlace ? "in-place" : "scratch",
    engine: resolved.engine,
    specEnv: resolved.specEnv,
    specHash: specHash(spec),
    startedAt: startedAt.toISOString(),
    completedAt: startedAt.toISOString(),
    status: "error",
    exitCode: EXIT.ERROR,
    reasons: [],
    objectives: { rtoSeconds: spec.dr.rtoSeconds, rpoSeconds: rpoObjectiveSeconds(spec) },
    rto: { objectiveSeconds: spec.dr.rtoSeconds, measured: false },
    rpo: { objectiveSeconds: rpoObjectiveSeconds(spec), measured: false },
    phases: PHASES.map((p, i): PhaseRecord => ({ number: i + 1, name: p.name, title: p.title, status: "skipped", detail: "not reached" })),
    method: resolved.method,
    settings: {
      rows: resolved.rows,
      format: resolved.method === "pitr" ? "base backup (BASE_BACKUP, zstd) + archived WAL" : resolved.format,
      writeSeconds: resolved.writeSeconds,
      writeIntervalMs: resolved.writeIntervalMs,
      keep: options.keep === true,
      ...(resolved.archiveTimeoutSeconds !== undefined ? { archiveTimeoutSeconds: resolved.archiveTimeoutSeconds, specArchiveTimeoutSeconds: spec.backup.archive.timeoutSeconds } : {}),
    },
    machine: { cpus: os.cpus().length, node: process.version, toolkit: toolkitVersion() },
  };

  const phase = async <T>(name: PhaseName, work: (detail: (text: string) => void) => Promise<T>): Promise<T> => {
    // Once an in-place drill has destroyed the environment, it runs on until it is restored.
    if (options.signal?.aborted && (report.mode === "scratch" || rtoStarted === undefined)) throw new Interrupted();
    const record = report.phases.find((p) => p.name === name)!;
    log(`drill: ${record.number}/${PHASES.length} ${record.title}`);
    record.startedAt = new Date().toISOString();
    record.detail = "";
    const t = performance.now();
    try {
      const value = await work((text) => (record.detail = text));
      record.status = "ok";
      return value;
    } catch (error) {
      record.status = "failed";
      record.error = errorText(error);
      throw Object.assign(error instanceof Error ? error : new Error(String(error)), { drillPhase: record });
    } finally {
      record.seconds = (performance.now() - t) / 1000;
    }
  };

  // Scratch backups live outside the environment (a disaster does not take them), and go with it.
  const backupsDir = options.inPlace ? backupRoot(spec, options.env) : path.join(ephemeralRoot(), `drill-${runId}`, "backups");
  let subject: DrillSubject | undefined;
  /** Where the drill's backup goes: the spec's bucket, or (a folder repository) backupsDir. */
  let repo: BackupRepository | undefined;
  let writer: MarkerWriter | undefined;
  let writes: { postgres: AcknowledgedWrites; redis: AcknowledgedWrites } | undefined;
  let backupDoneAt = 0;
  let rtoStarted: number | undefined;
  let rtoSeconds: number | undefined;
  let recovered = false;
  let present: { postgres: PresentMarkers; redis: PresentMarkers } | undefined;
  let verifyProblems: string[] = [];
  /** PITR: row counts before the disaster (the run's marker rows aside): recovery must bring them all back. */
  let expectedTables: Record<string, number> = {};
  const pitr = resolved.method === "pitr";

  try {
    // 1. Prepare.
    const markerAcks = await phase("prepare", async (detail) => {
      if (options.inPlace) {
        subject = inPlaceSubject(options.env);
      } else {
        log(`drill: starting a scratch ${resolved.engine} copy of '${resolved.specEnv}' (free ports, temporary state)`);
        // A PITR scratch copy archives every DRILL_ARCHIVE_TIMEOUT_SECONDS while there are writes (stated in the report).
        const overrides = deepMerge(resolved.specOverrides, pitr ? { backup: { archive: { timeoutSeconds: resolved.archiveTimeoutSeconds } } } : {});
        subject = await createScratchSubject(resolved.specEnv, resolved.engine, log, overrides);
      }
      const opened = openEnvironment(subject.env);
      report.subject = { env: subject.env, ports: { postgres: opened.spec.postgres.port, redis: opened.spec.redis.port } };
      options.hooks?.onSubject?.({ env: subject.env, engine: subject.engine, stateDir: opened.paths.dir, ports: report.subject.ports! });
      const c = opened.connections;
      if (resolved.rows > 0) {
        const seeded = await withPg(c.postgresConfig("owner"), (client) =>
          seedMarketData(client, { rows: resolved.rows, symbols: Math.min(DEFAULT_SYMBOLS, resolved.rows), onProgress: seedProgress(progress) }),
        );
        report.seed = { rows: seeded.plannedRows, inserted: seeded.inserted, seconds: seeded.totalSeconds, rowsPerSecond: seeded.rowsPerSecond };
      }
      const marker = { seq: 0, at: Date.now() };
      const coinId = await withPg(c.postgresConfig("app"), async (client) => {
        const id = await ensureDrillCoin(client);
        await insertMarkerRow(client, id, runId, marker);
        return id;
      });
      const pgAck = { ...marker, ackedAt: Date.now() };
      await withRedis(c.redisOptions("app"), (redis) => setMarkerKey(redis, runId, marker));
      const redisAck = { ...marker, ackedAt: Date.now() };
      detail(
        `${subject.mode === "scratch" ? `scratch ${subject.engine} environment ${subject.env}; ` : ""}` +
          `${report.seed ? `${report.seed.inserted.toLocaleString("en-US")} market_data rows seeded (${report.seed.rows.toLocaleString("en-US")} planned); ` : "no rows seeded; "}` +
          `marker row and key written at ${new Date(marker.at).toISOString()}`,
      );
      return { coinId, pgAck, redisAck };
    });

    // 2. Back up, with the application writing.
    const backup = await phase("backup", async (detail) => {
      const environment = subject!.environment();
      writer = await startMarkerWriter({ pg: environment.connection("app"), redis: environment.redisConnection("app"), runId, coinId: markerAcks.coinId, intervalMs: resolved.writeIntervalMs, firstSeq: 1 });
      ensureDir(path.dirname(backupsDir), 0o700);
      repo = await openBackupRepository(subject!.env, spec.backup.repository === "local" ? { out: backupsDir } : {});
      if (pitr) {
        const t = performance.now();
        const base = await takeBaseBackup(openLocalEnvironment(subject!.env), { out: repo.workDir, log, progress });
        const stored = await repo.store(base.dir, progress);
        backupDoneAt = Date.now();
        const m = base.manifest;
        report.backup = {
          id: m.id,
          dir: stored.location,
          bytes: m.files.reduce((n, f) => n + f.bytes, 0),
          seconds: (performance.now() - t) / 1000,
          manifestChecksum: m.checksum,
          files: m.files.map((f) => ({ name: f.name, bytes: f.bytes, sha256: f.sha256 })),
          physical: { startLsn: m.postgres.startLsn, stopLsn: m.postgres.stopLsn, stopTime: m.postgres.stopTime, timeline: m.postgres.timeline, systemIdentifier: m.postgres.systemIdentifier, compression: m.postgres.compression, tarBytes: m.postgres.tarBytes },
          ...(m.redis ? { redis: { keys: m.redis.keys } } : {}),
        };
        detail(`base backup ${m.id}: ${m.files.map((f) => `${f.name} ${f.bytes.toLocaleString("en-US")} B`).join(", ")}; WAL ${m.postgres.startLsn} → ${m.postgres.stopLsn}${stored.upload ? `; uploaded to ${stored.location}` : ""}; the application kept writing meanwhile`);
        return { dir: stored.location, physical: base.manifest } as const;
      }
      const result = await backupEnvironment({ env: subject!.env, format: resolved.format, out: repo.workDir, log, progress, lockWaitSeconds: options.lockWaitSeconds });
      const stored = await repo.store(result.dir, progress);
      backupDoneAt = Date.now();
      report.backup = {
        id: result.manifest.id,
        dir: stored.location,
        bytes: result.bytes,
        seconds: result.seconds,
        manifestChecksum: result.manifest.checksum,
        files: result.manifest.files.map((f) => ({ name: f.name, bytes: f.bytes, sha256: f.sha256 })),
        ...(result.manifest.postgres
          ? { postgres: { format: result.manifest.postgres.format, compression: result.manifest.postgres.compression, pgDump: `pg_dump ${result.manifest.postgres.pgDump.version} (${result.manifest.postgres.pgDump.location})`, tables: result.manifest.postgres.tables } }
          : {}),
        ...(result.manifest.redis ? { redis: { keys: result.manifest.redis.keys } } : {}),
      };
      detail(`backup ${result.manifest.id}: ${result.manifest.files.map((f) => `${f.name} ${f.bytes.toLocaleString("en-US")} B`).join(", ")}${stored.upload ? `; uploaded to ${stored.location}` : ""}; the application kept writing meanwhile`);
      return { dir: stored.location, logical: result } as const;
    });

    // 3. Keep writing: what is acknowledged now is not in the backup. PITR: the application is
    // still writing when the disaster strikes (a crash loses what was not archived, not a tidy stop).
    const collectWrites = async () => {
      const acks = await writer!.stop();
      writer = undefined;
      acks.postgres.acknowledged.unshift(markerAcks.pgAck);
      acks.redis.acknowledged.unshift(markerAcks.redisAck);
      return acks;
    };
    const after = (w: AcknowledgedWrites) => w.acknowledged.filter((a) => a.ackedAt > backupDoneAt).length;
    const acknowledgedText = (acks: { postgres: AcknowledgedWrites; redis: AcknowledgedWrites }) =>
      `acknowledged: PostgreSQL ${acks.postgres.acknowledged.length} rows (${after(acks.postgres)} after the backup), Redis ${acks.redis.acknowledged.length} keys (${after(acks.redis)} after the backup)` +
      (acks.postgres.failed || acks.redis.failed ? `; failed writes: PostgreSQL ${acks.postgres.failed}, Redis ${acks.redis.failed}` : "");
    writes = await phase("writes", async (detail) => {
      await sleep(resolved.writeSeconds * 1000, options.signal);
      if (pitr) {
        expectedTables = await withPg(subject!.environment().connection("admin"), (client) => tableCounts(client, runId));
        detail(`${resolved.writeSeconds} s of writes after the base backup (archive_timeout ${resolved.archiveTimeoutSeconds} s); the writer goes on into the disaster`);
        return undefined;
      }
      const acks = await collectWrites();
      detail(acknowledgedText(acks));
      return acks;
    });
    await options.hooks?.afterBackup?.(backup);

    // 4. Disaster. The RTO clock starts.
    rtoStarted = performance.now();
    report.disaster = await phase("disaster", async (detail) => {
      const result = pitr ? await subject!.crash(log) : await subject!.disaster(log);
      if (pitr) {
        writes = await collectWrites(); // its writes fail from the crash on; what was acknowledged before counts
        result.destroyed.push(`writer stopped after the crash; ${acknowledgedText(writes)}`);
      }
      detail(`${subject!.env}: ${result.destroyed.join("; ")}`);
      return result;
    });

    // 5. Recreate from the spec.
    await phase("recreate", async (detail) => {
      if (pitr) {
        // The record, credentials, configuration and the archive survived; the recovery makes the data folder.
        detail(`nothing to recreate: ${subject!.env}'s record, credentials, configuration and WAL archive survived; the recovery builds the data folder from the base backup`);
        return;
      }
      const before = subject!.env;
      const result = await subject!.recreate(log);
      if (subject!.env !== before) report.subject!.recreatedAs = subject!.env;
      detail(`${subject!.env} up from the spec of '${resolved.specEnv}', empty, migrations applied (${result.seconds.toFixed(1)} s)`);
    });

    // 6. Restore the newest backup.
    await phase("restore", async (detail) => {
      if (pitr) {
        const recovered = await repo!.recover({ latest: true }, { yes: true, log, progress, lockWaitSeconds: options.lockWaitSeconds });
        const from = repo!.kind === "bucket" ? `${repo!.describe()}/${recovered.backup.id}` : recovered.backup.dir;
        report.restore = { backupId: recovered.backup.id, dir: from, isDrillBackup: recovered.backup.id === backup.physical!.id, seconds: recovered.seconds, tool: `recovery from the archive (restore --to latest${repo!.kind === "bucket" ? ", from the bucket" : ""})`, warnings: [] };
        report.pitr = {
          window: recovered.window,
          backupId: recovered.backup.id,
          walSegments: recovered.walSegments,
          timeline: recovered.timeline,
          recoveredTo: recovered.recoveredTo,
          endLsn: recovered.endLsn,
          archiveTimeoutSeconds: resolved.archiveTimeoutSeconds!,
          writesRecoveredAfterBackup: 0,
        };
        detail(`recovered ${subject!.env} to the end of the archive from base backup ${recovered.backup.id}: ${recovered.walSegments} WAL segments replayed, last transaction ${recovered.recoveredTo ?? "?"}; window ${recovered.window.earliest} → ${recovered.window.latest}${recovered.redis ? "; Redis RDB loaded" : ""}`);
        return;
      }
      // The repository of the environment that was backed up (a Docker copy comes back under a new name).
      const newest = await repo!.fetch("latest", progress);
      let restored;
      try {
        restored = await restoreEnvironment({ env: subject!.env, from: newest.dir, yes: true, log, progress, lockWaitSeconds: options.lockWaitSeconds });
      } finally {
        newest.release();
      }
      report.restore = {
        backupId: newest.id,
        dir: newest.location,
        isDrillBackup: newest.id === backup.logical!.manifest.id,
        seconds: restored.seconds,
        tool: restored.postgres?.tool,
        warnings: restored.warnings,
      };
      detail(`restored ${newest.id}${report.restore.isDrillBackup ? " (this drill's backup)" : ""}: ${Object.entries(restored.postgres?.tables ?? {}).map(([t, n]) => `${t} ${n.toLocaleString("en-US")}`).join(", ")}${restored.redis ? "; Redis RDB loaded" : ""}`);
    });

    // 7. Verify: the verify command's checks, then the data against the manifest.
    await phase("verify", async (detail) => {
      const opened = openEnvironment(subject!.env);
      const c = opened.connections;
      const expectedCounts = pitr ? expectedTables : (backup.logical!.manifest.postgres?.tables ?? {});
      const tables: TableComparison[] = await withPg(c.postgresConfig("admin"), async (client) => {
        const out: TableComparison[] = [];
        if (pitr) {
          const actual = await tableCounts(client, runId);
          for (const [table, expected] of Object.entries(expectedCounts)) out.push({ table, expected, actual: actual[table], ok: actual[table] === expected });
          return out;
        }
        for (const [table, expected] of Object.entries(expectedCounts)) {
          const actual = await client
            .query<{ n: string }>(`SELECT count(*) AS n FROM public.${sqlIdent(table)}`)
            .then((r) => Number(r.rows[0]!.n))
            .catch(() => undefined);
          out.push({ table, expected, actual, ok: actual === expected });
        }
        return out;
      });
      const pgPresent = await withPg(c.postgresConfig("admin"), (client) => postgresMarkers(client, runId));
      const { keys: redisKeys, markers: redisPresent } = await withRedis(c.redisOptions("admin"), async (redis) => {
        const keys = totalKeys(await redis.info("keyspace"));
        return { keys, markers: await redisMarkers(redis, runId) };
      });
      present = { postgres: pgPresent, redis: redisPresent };
      const expectedKeys = (pitr ? backup.physical!.redis?.keys : backup.logical!.manifest.redis?.keys) ?? 0;
      report.comparison = { ok: tables.every((t) => t.ok) && redisKeys === expectedKeys, tables, redisKeys: { expected: expectedKeys, actual: redisKeys, ok: redisKeys === expectedKeys } };

      const verified = await verifyEnvironment(resolveEnvironment({ env: subject!.env }));
      const failed = verified.checks.filter((ch) => ch.status === "fail" || ch.status === "error");
      report.verify = { ok: verified.ok, summary: verified.summary, failed: failed.map((ch) => ({ id: ch.id, title: ch.title, status: ch.status, detail: ch.detail, hint: ch.hint })), ms: verified.ms };
      rtoSeconds = (performance.now() - rtoStarted!) / 1000;

      verifyProblems = [
        ...tables.filter((t) => !t.ok).map((t) => `table ${t.table} has ${t.actual === undefined ? "no readable rows" : t.actual.toLocaleString("en-US")} rows after the restore; the backup's manifest says ${t.expected.toLocaleString("en-US")}`),
        ...(report.comparison.redisKeys.ok ? [] : [`Redis holds ${redisKeys.toLocaleString("en-US")} keys after the restore; the backup's manifest says ${expectedKeys.toLocaleString("en-US")}`]),
        ...failed.map((ch) => `health check failed: ${ch.title}: ${ch.detail}`),
      ];
      detail(
        `${verified.summary.ok} health checks ok${verified.summary.fail + verified.summary.error ? `, ${verified.summary.fail + verified.summary.error} not` : ""}; ` +
          `${tables.filter((t) => t.ok).length}/${tables.length} tables and ${report.comparison.redisKeys.ok ? "the" : "NOT the"} Redis key count match the manifest`,
      );
      if (verifyProblems.length) throw new Error(`${verifyProblems.length} problem(s) after the restore`);
      recovered = true;
    });
  } catch (error) {
    const failedPhase = (error as { drillPhase?: PhaseRecord }).drillPhase;
    if (error instanceof Interrupted || options.signal?.aborted) {
      report.reasons.push(new Interrupted().message);
    } else if (failedPhase?.name === "verify" && verifyProblems.length) {
      report.reasons.push(...verifyProblems);
    } else if (failedPhase) {
      report.reasons.push(`phase ${failedPhase.number} (${failedPhase.name}) failed: ${errorText(error)}`);
    } else {
      report.reasons.push(`the drill failed between phases: ${errorText(error)}`);
    }
    if (report.mode === "in-place" && rtoStarted !== undefined && report.phases.find((p) => p.name === "restore")!.status !== "ok" && report.backup) {
      report.reasons.push(`environment '${options.env}' was destroyed and is not recovered: restore it by hand: npm run restore -- --env ${options.env} --from ${report.backup.dir} --yes`);
    }
    log(`drill: ${report.reasons.join("; ")}`);
  } finally {
    if (writer) await (writer as MarkerWriter).stop().catch(() => undefined);
  }

  // Measures: RTO and RPO, then the verdict.
  const reachedDisaster = rtoStarted !== undefined;
  // A drill that never reached the disaster (the environment could not start, an image is
  // missing…) measured nothing: it scores no objective and reports that it could not run.
  if (reachedDisaster) report.rto = { seconds: rtoSeconds, objectiveSeconds: spec.dr.rtoSeconds, measured: true, ok: recovered && rtoSeconds !== undefined && rtoSeconds <= spec.dr.rtoSeconds };
  else report.reasons.push("the drill could not run up to the disaster: RTO and RPO were not measured");
  if (reachedDisaster && writes && present) {
    const postgres = storeRecovery(writes.postgres, present.postgres, backupDoneAt);
    const redis = storeRecovery(writes.redis, present.redis, backupDoneAt);
    const worst = [postgres.rpoSeconds, redis.rpoSeconds].some((s) => s === undefined) ? undefined : Math.max(postgres.rpoSeconds!, redis.rpoSeconds!);
    report.rpo = { seconds: worst, objectiveSeconds: rpoObjectiveSeconds(spec), measured: true, ok: worst !== undefined && worst <= rpoObjectiveSeconds(spec), postgres, redis };
    if (report.pitr) {
      // Writes acknowledged after the base backup ended that came back: they were replayed from archived WAL.
      const presentSeqs = new Set(present.postgres.seqs);
      report.pitr.writesRecoveredAfterBackup = writes.postgres.acknowledged.filter((a) => a.ackedAt > backupDoneAt && presentSeqs.has(a.seq)).length;
      if (recovered && report.pitr.writesRecoveredAfterBackup === 0 && postgres.acknowledgedAfterBackup > 0 && resolved.writeSeconds > report.pitr.archiveTimeoutSeconds) {
        report.reasons.push(`PostgreSQL: none of the ${postgres.acknowledgedAfterBackup} writes acknowledged after the base backup came back: nothing was recovered from the archived WAL`);
      }
    }
    for (const [name, store] of [["PostgreSQL", postgres], ["Redis", redis]] as const) {
      if (store.present === 0) report.reasons.push(`${name}: no drill write survived the restore, not even the marker written before the backup`);
      else if (!store.contiguous) report.reasons.push(`${name}: the restored writes have gaps (${store.present} present up to the newest): the backup is not one consistent point in time`);
    }
  } else if (reachedDisaster) {
    report.rpo = { objectiveSeconds: rpoObjectiveSeconds(spec), measured: true, ok: false }; // destroyed, and not recovered
  }
  if (recovered) {
    if (!report.rto.ok) report.reasons.push(`RTO ${rtoSeconds!.toFixed(1)} s is above the objective dr.rtoSeconds = ${spec.dr.rtoSeconds} s`);
    if (report.rpo.seconds !== undefined && !report.rpo.ok) report.reasons.push(`RPO ${report.rpo.seconds.toFixed(1)} s is above the objective dr.rpoSeconds = ${report.rpo.objectiveSeconds} s`);
  }
  report.status = report.reasons.length === 0 && recovered ? "pass" : reachedDisaster && !options.signal?.aborted ? "fail" : "error";
  report.exitCode = report.status === "pass" ? EXIT.OK : report.status === "fail" ? EXIT.PROBLEM : EXIT.ERROR;

  // Clean-up: the data the disaster moved aside; markers of an in-place drill; the scratch environment and its backups.
  if (subject) {
    try {
      const lost = await subject.discardLostData();
      if (report.disaster && lost.removed.length) {
        report.disaster.bytes = lost.bytes;
        report.disaster.destroyed.push(...lost.removed.map((d) => `${d} deleted after the recovery`));
      }
    } catch (error) {
      log(`drill: warning: could not delete the data moved aside by the disaster: ${errorText(error)}`);
    }
    await cleanUp(report, subject, options, backupsDir, runId, log, repo);
  }
  report.completedAt = new Date().toISOString();
  return report;
}

async function cleanUp(report: DrillReport, subject: DrillSubject, options: DrillOptions, backupsDir: string, runId: string, log: Log, repo?: BackupRepository): Promise<void> {
  if (subject.mode === "in-place") {
    try {
      const environment = subject.environment();
      report.cleanup = { removed: [], markers: await removeMarkers(environment.connection("admin"), environment.redisConnection("admin"), runId) };
    } catch (error) {
      report.cleanup = { removed: [], error: `the drill's markers (data_source dr-drill:${runId}, keys drill:${runId}:*) could not be removed: ${errorText(error)}` };
      log(`drill: warning: ${report.cleanup.error}`);
    }
    return;
  }
  const drillDir = path.dirname(backupsDir);
  if (options.keep) {
    report.kept = { env: subject.env, backupsDir, removeWith: `${subject.removeCommand()} && rm -rf ${drillDir}` };
    return;
  }
  report.cleanup = { removed: [] };
  try {
    report.cleanup.removed.push(...(await subject.remove(log)));
  } catch (error) {
    report.cleanup.error = `scratch environment ${subject.env} could not be removed: ${errorText(error)}; remove it with: ${subject.removeCommand()}`;
    log(`drill: warning: ${report.cleanup.error}`);
  }
  if (existsSync(drillDir)) {
    rmSync(drillDir, { recursive: true, force: true });
    report.cleanup.removed.push(`backups ${drillDir}`);
  }
  if (repo?.kind === "bucket") {
    try {
      await repo.discard();
      report.cleanup.removed.push(`backups and WAL of ${repo.env} in ${repo.describe()}`);
    } catch (error) {
      report.cleanup.error = `the scratch backups in ${repo.describe()} (${repo.env}/) could not be removed: ${errorText(error)}`;
      log(`drill: warning: ${report.cleanup.error}`);
    }
  }
}

/** Rows of every table of the public schema, this run's marker rows aside (they measure the RPO). */
async function tableCounts(client: pg.ClientBase, runId: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const name of await publicTables(client)) {
    const where = name === "market_data" ? " WHERE data_source IS DISTINCT FROM $1" : "";
    const { rows: n } = await client.query<{ n: string }>(`SELECT count(*) AS n FROM public.${sqlIdent(name)}${where}`, where ? [markerSource(runId)] : []);
    out[name] = Number(n[0]!.n);
  }
  return out;
}

function storeRecovery(writes: AcknowledgedWrites, present: PresentMarkers, backupDoneAt: number): StoreRecovery {
  const acked = writes.acknowledged;
  const last = acked.at(-1);
  const presentSeqs = new Set(present.seqs);
  const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString());
  return {
    acknowledged: acked.length,
    acknowledgedAfterBackup: acked.filter((a) => a.ackedAt > backupDoneAt).length,
    failedWrites: writes.failed,
    lastAcknowledgedAt: iso(last?.at),
    present: present.count,
    newestPresentAt: iso(present.newest?.at),
    contiguous: present.contiguous,
    lost: acked.filter((a) => !presentSeqs.has(a.seq)).length,
    rpoSeconds: last && present.newest ? Math.max(0, last.at - present.newest.at) / 1000 : undefined,
  };
}

function seedProgress(progress: Log): (p: SeedProgress) => void {
  let last = 0;
  return (p) => {
    const now = performance.now();
    if (p.totalRows === 0 || (now - last < 1000 && p.rows < p.totalRows)) return;
    last = now;
    progress(`drill: seeding ${p.rows.toLocaleString("en-US")}/${p.totalRows.toLocaleString("en-US")} market_data rows`);
  };
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    }
    signal?.addEventListener("abort", done, { once: true });
  });
}
