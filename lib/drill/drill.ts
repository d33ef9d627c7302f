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
import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { backupEnvironment, backupRoot, toolkitVersion, type BackupResult } from "../backup/backup.js";
import { backupId } from "../backup/files.js";
import type { DumpFormat } from "../backup/postgres-dump.js";
import { restoreEnvironment } from "../backup/restore.js";
import { listBackups } from "../backup/retention.js";
import { CliError, EXIT } from "../cli.js";
import { withPg, withRedis } from "../db/clients.js";
import { sqlIdent } from "../db/roles.js";
import { DEFAULT_SYMBOLS, seedMarketData, type SeedProgress } from "../db/seed.js";
import { openEnvironment } from "../env/environment.js";
import { withEnvLock } from "../env/lock.js";
import { envPaths, ephemeralRoot } from "../env/paths.js";
import { resolveTarget } from "../env/target.js";
import { ensureDir } from "../fs.js";
import { loadSpec, specHash } from "../spec/load.js";
import type { Spec } from "../spec/schema.js";
import { errorText } from "../verify/report.js";
import { verifyEnvironment } from "../verify/verify.js";
import { ensureDrillCoin, insertMarkerRow, postgresMarkers, redisMarkers, removeMarkers, setMarkerKey, startMarkerWriter, type AcknowledgedWrites, type MarkerWriter, type PresentMarkers } from "./markers.js";
import { DRILL_REPORT_KIND, PHASES, type DrillReport, type PhaseName, type PhaseRecord, type StoreRecovery, type TableComparison } from "./report.js";
import { createScratchSubject, inPlaceSubject, scratchBaseEnv, type DrillEngine, type DrillSubject } from "./subject.js";

type Log = (message: string) => void;

/** market_data rows a scratch drill seeds by default (an in-place drill seeds none unless asked). */
export const DEFAULT_SCRATCH_ROWS = 100_000;
/** How long the writer goes on after the backup, by default. */
export const DEFAULT_WRITE_SECONDS = 1.5;
/** Pause between two marker writes of one store, by default (50 writes a second each). */
export const DEFAULT_WRITE_INTERVAL_MS = 20;

export interface DrillHooks {
  /**
   * Runs after phase 3, before the disaster, with the backup just made (the test suite flips a
   * byte of it here). Not timed.
   */
  afterBackup?(backup: BackupResult): void | Promise<void>;
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
  /** Backup format (default: the backup command's, sql). */
  format?: DumpFormat;
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
export function resolveDrillOptions(options: DrillOptions): { spec: Spec; specEnv: string; engine: DrillEngine; rows: number; writeSeconds: number; writeIntervalMs: number; format: DumpFormat } {
  envPaths(options.env); // the name's shape
  if (options.inPlace && !options.yes) {
    throw new CliError(`--in-place destroys the data of environment '${options.env}' (its servers are stopped and their data deleted, then restored from a new backup)`, EXIT.USAGE, `confirm with: npm run drill -- --env ${options.env} --in-place --yes`);
  }
  if (options.yes && !options.inPlace) throw new CliError("--yes confirms --in-place; a scratch drill needs no confirmation", EXIT.USAGE);
  if (options.inPlace && options.keep) throw new CliError("--keep leaves a scratch environment up; an in-place drill has none", EXIT.USAGE);
  const rows = options.rows ?? (options.inPlace ? 0 : DEFAULT_SCRATCH_ROWS);
  if (!Number.isInteger(rows) || rows < 0) throw new CliError(`--rows ${rows}: expected a whole number, 0 or more`, EXIT.USAGE);
  const writeSeconds = options.writeSeconds ?? DEFAULT_WRITE_SECONDS;
  if (!(writeSeconds >= 0 && writeSeconds <= 600)) throw new CliError(`--write-seconds ${writeSeconds}: expected 0-600 seconds`, EXIT.USAGE);
  const writeIntervalMs = options.writeIntervalMs ?? DEFAULT_WRITE_INTERVAL_MS;
  const specEnv = options.inPlace ? (openEnvironmentRecordBase(options.env) ?? options.env) : scratchBaseEnv(options.env);
  const spec = loadSpec(specEnv);
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
  return { spec, specEnv, engine, rows, writeSeconds, writeIntervalMs, format: options.format ?? "sql" };
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
    objectives: { rtoSeconds: spec.dr.rtoSeconds, rpoSeconds: spec.dr.rpoSeconds },
    rto: { objectiveSeconds: spec.dr.rtoSeconds, measured: false },
    rpo: { objectiveSeconds: spec.dr.rpoSeconds, measured: false },
    phases: PHASES.map((p, i): PhaseRecord => ({ number: i + 1, name: p.name, title: p.title, status: "skipped", detail: "not reached" })),
    settings: { rows: resolved.rows, format: resolved.format, writeSeconds: resolved.writeSeconds, writeIntervalMs: resolved.writeIntervalMs, keep: options.keep === true },
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
  let writer: MarkerWriter | undefined;
  let writes: { postgres: AcknowledgedWrites; redis: AcknowledgedWrites } | undefined;
  let backupDoneAt = 0;
  let rtoStarted: number | undefined;
  let rtoSeconds: number | undefined;
  let recovered = false;
  let present: { postgres: PresentMarkers; redis: PresentMarkers } | undefined;
  let verifyProblems: string[] = [];

  try {
    // 1. Prepare.
    const markerAcks = await phase("prepare", async (detail) => {
      if (options.inPlace) {
        subject = inPlaceSubject(options.env);
      } else {
        log(`drill: starting a scratch ${resolved.engine} copy of '${resolved.specEnv}' (free ports, temporary state)`);
        subject = await createScratchSubject(resolved.specEnv, resolved.engine, log);
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
      const c = subject!.connections();
      writer = await startMarkerWriter({ pg: c.postgresConfig("app"), redis: c.redisOptions("app"), runId, coinId: markerAcks.coinId, intervalMs: resolved.writeIntervalMs, firstSeq: 1 });
      ensureDir(path.dirname(backupsDir), 0o700);
      const result = await backupEnvironment({ env: subject!.env, format: resolved.format, out: backupsDir, log, progress, lockWaitSeconds: options.lockWaitSeconds });
      backupDoneAt = Date.now();
      report.backup = {
        id: result.manifest.id,
        dir: result.dir,
        bytes: result.bytes,
        seconds: result.seconds,
        manifestChecksum: result.manifest.checksum,
        files: result.manifest.files.map((f) => ({ name: f.name, bytes: f.bytes, sha256: f.sha256 })),
        ...(result.manifest.postgres
          ? { postgres: { format: result.manifest.postgres.format, compression: result.manifest.postgres.compression, pgDump: `pg_dump ${result.manifest.postgres.pgDump.version} (${result.manifest.postgres.pgDump.location})`, tables: result.manifest.postgres.tables } }
          : {}),
        ...(result.manifest.redis ? { redis: { keys: result.manifest.redis.keys } } : {}),
      };
      detail(`backup ${result.manifest.id}: ${result.manifest.files.map((f) => `${f.name} ${f.bytes.toLocaleString("en-US")} B`).join(", ")}; the application kept writing meanwhile`);
      return result;
    });

    // 3. Keep writing: what is acknowledged now is not in the backup.
    writes = await phase("writes", async (detail) => {
      await sleep(resolved.writeSeconds * 1000, options.signal);
      const acks = await writer!.stop();
      writer = undefined;
      acks.postgres.acknowledged.unshift(markerAcks.pgAck);
      acks.redis.acknowledged.unshift(markerAcks.redisAck);
      const after = (w: AcknowledgedWrites) => w.acknowledged.filter((a) => a.ackedAt > backupDoneAt).length;
      detail(
        `acknowledged: PostgreSQL ${acks.postgres.acknowledged.length} rows (${after(acks.postgres)} after the backup), Redis ${acks.redis.acknowledged.length} keys (${after(acks.redis)} after the backup)` +
          (acks.postgres.failed || acks.redis.failed ? `; failed writes: PostgreSQL ${acks.postgres.failed}, Redis ${acks.redis.failed}` : ""),
      );
      return acks;
    });
    await options.hooks?.afterBackup?.(backup);

    // 4. Disaster. The RTO clock starts.
    rtoStarted = performance.now();
    report.disaster = await phase("disaster", async (detail) => {
      const result = await subject!.disaster(log);
      detail(`${subject!.env}: ${result.destroyed.join("; ")}`);
      return result;
    });

    // 5. Recreate from the spec.
    await phase("recreate", async (detail) => {
      const before = subject!.env;
      const result = await subject!.recreate(log);
      if (subject!.env !== before) report.subject!.recreatedAs = subject!.env;
      detail(`${subject!.env} up from the spec of '${resolved.specEnv}', empty, migrations applied (${result.seconds.toFixed(1)} s)`);
    });

    // 6. Restore the newest backup.
    await phase("restore", async (detail) => {
      const newest = listBackups(backup.manifest.env, backupsDir).backups.filter((b) => b.scope === "full").at(-1);
      if (!newest) throw new Error(`no complete backup of '${backup.manifest.env}' in ${backupsDir}`);
      const restored = await restoreEnvironment({ env: subject!.env, from: newest.dir, yes: true, log, progress, lockWaitSeconds: options.lockWaitSeconds });
      report.restore = {
        backupId: newest.id,
        dir: newest.dir,
        isDrillBackup: path.resolve(newest.dir) === path.resolve(backup.dir),
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
      const manifest = backup.manifest;
      const tables: TableComparison[] = await withPg(c.postgresConfig("admin"), async (client) => {
        const out: TableComparison[] = [];
        for (const [table, expected] of Object.entries(manifest.postgres?.tables ?? {})) {
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
        const keyspace = await redis.info("keyspace");
        const keys = [...keyspace.matchAll(/^db\d+:keys=(\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
        return { keys, markers: await redisMarkers(redis, runId) };
      });
      present = { postgres: pgPresent, redis: redisPresent };
      const expectedKeys = manifest.redis?.keys ?? 0;
      report.comparison = { ok: tables.every((t) => t.ok) && redisKeys === expectedKeys, tables, redisKeys: { expected: expectedKeys, actual: redisKeys, ok: redisKeys === expectedKeys } };

      const verified = await verifyEnvironment(resolveTarget({ env: subject!.env }));
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
    report.rpo = { seconds: worst, objectiveSeconds: spec.dr.rpoSeconds, measured: true, ok: worst !== undefined && worst <= spec.dr.rpoSeconds, postgres, redis };
    for (const [name, store] of [["PostgreSQL", postgres], ["Redis", redis]] as const) {
      if (store.present === 0) report.reasons.push(`${name}: no drill write survived the restore, not even the marker written before the backup`);
      else if (!store.contiguous) report.reasons.push(`${name}: the restored writes have gaps (${store.present} present up to the newest): the backup is not one consistent point in time`);
    }
  } else if (reachedDisaster) {
    report.rpo = { objectiveSeconds: spec.dr.rpoSeconds, measured: true, ok: false }; // destroyed, and not recovered
  }
  if (recovered) {
    if (!report.rto.ok) report.reasons.push(`RTO ${rtoSeconds!.toFixed(1)} s is above the objective dr.rtoSeconds = ${spec.dr.rtoSeconds} s`);
    if (report.rpo.seconds !== undefined && !report.rpo.ok) report.reasons.push(`RPO ${report.rpo.seconds.toFixed(1)} s is above the objective dr.rpoSeconds = ${spec.dr.rpoSeconds} s`);
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
    await cleanUp(report, subject, options, backupsDir, runId, log);
  }
  report.completedAt = new Date().toISOString();
  return report;
}

async function cleanUp(report: DrillReport, subject: DrillSubject, options: DrillOptions, backupsDir: string, runId: string, log: Log): Promise<void> {
  if (subject.mode === "in-place") {
    try {
      const c = subject.connections();
      report.cleanup = { removed: [], markers: await removeMarkers(c.postgresConfig("admin"), c.redisOptions("admin"), runId) };
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

/**
 * Test hook: flips one byte in the middle of a backup's file (`postgres`, `redis`, `manifest`, or
 * a file name), as a disk or a transfer would. Returns the file changed.
 */
export function corruptBackupFile(backupDir: string, which: string): string {
  const manifest = JSON.parse(readFileSync(path.join(backupDir, "manifest.json"), "utf8")) as { postgres?: { file: string }; redis?: { file: string } };
  const name = which === "postgres" ? manifest.postgres?.file : which === "redis" ? manifest.redis?.file : which === "manifest" ? "manifest.json" : which;
  const file = path.join(backupDir, name ?? "");
  if (!name || !existsSync(file) || !statSync(file).isFile()) throw new CliError(`cannot corrupt ${JSON.stringify(which)}: no such file in ${backupDir}`, EXIT.USAGE);
  const bytes = readFileSync(file);
  const at = Math.floor(bytes.length / 2);
  bytes[at] = bytes[at]! ^ 0xff;
  writeFileSync(file, bytes);
  return file;
}
