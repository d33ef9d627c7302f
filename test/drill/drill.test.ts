/**
 * `npm run drill` on real servers (embedded, and once on the Docker target): a small drill passes
 * and its JSON and markdown reports carry every field; --keep leaves the recovered scratch copy up
 * and the printed command removes it; a backup corrupted between the backup and the restore fails
 * the drill (exit 1) with the reason, leaving no state folder, process or port behind; an in-place
 * drill holds the environment's lock, brings its data back and removes its markers. Usage mistakes
 * change nothing.
 */
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EXIT, type CliError } from "../../lib/errors.js";
import { withPg, withRedis } from "../../lib/db/clients.js";
import { seedMarketData } from "../../lib/db/seed/index.js";
import { awsDrillPlan, formatAwsPlanMarkdown, PHASES, resolveDrillOptions, runDrill, type DrillReport } from "../../lib/drill/index.js";
import { corruptBackupFile } from "../support/drill.js";
import { withEnvLock } from "../../lib/state/lock.js";
import { awsIdentifiers, snapshotNames } from "../../lib/aws/snapshots.js";
import { envPaths, ephemeralRoot } from "../../lib/state/paths.js";
import { isPortFree } from "../../lib/state/ports.js";
import { loadSpec, PROJECT_DIR } from "../../lib/spec/load.js";
import { describeBackups, describeDocker, dockerBinary, requireOfflineImages } from "../support/docker.js";
import { runCli, useEphemeralEnvironment } from "../support/embedded.js";

const work = mkdtempSync(path.join(os.tmpdir(), "cpi-drill-test-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Small and quick: the suite's drills seed 2,000 rows and write for 1 s after the backup (the logical drill: test/drill/pitr.test.ts has the point-in-time one). */
const SMALL = ["--method", "logical", "--rows", "2000", "--write-seconds", "1"];
const SMALL_OPTIONS = { method: "logical", rows: 2000, writeSeconds: 1 } as const;

/** Processes whose command line mentions `text` (postgres names its data folder; redis-server its port). */
function processesMentioning(text: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ");
      if (cmdline.includes(text)) found.push(`${pid}: ${cmdline.trim()}`);
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

async function expectNothingLeft(report: DrillReport): Promise<void> {
  const env = report.subject!.env;
  const ports = report.subject!.ports!;
  expect(existsSync(envPaths(env).dir), `state folder of ${env}`).toBe(false);
  expect(existsSync(path.dirname(report.backup!.dir)), "the drill's backups").toBe(false);
  expect(processesMentioning(env), "processes of the scratch environment").toEqual([]);
  expect(processesMentioning(`redis-server 127.0.0.1:${ports.redis}`), "its redis-server").toEqual([]);
  expect(await isPortFree(ports.postgres), `PostgreSQL port ${ports.postgres}`).toBe(true);
  expect(await isPortFree(ports.redis), `Redis port ${ports.redis}`).toBe(true);
}

describe("drill: usage", () => {
  it("refuses --in-place without --yes, and an AWS environment without --plan (exit 64, nothing made)", async () => {
    const drillDirs = () => (existsSync(ephemeralRoot()) ? readdirSync(ephemeralRoot()).filter((d) => d.startsWith("drill-")) : []);
    const before = drillDirs();
    const noYes = await runCli("drill", ["--env", "dev", "--in-place"]);
    expect(noYes.code).toBe(EXIT.USAGE);
    expect(noYes.stderr).toContain("--in-place destroys the data of environment 'dev'");
    expect(noYes.stderr).toContain("--in-place --yes");
    const usage = (options: Parameters<typeof resolveDrillOptions>[0]) => {
      try {
        resolveDrillOptions(options);
      } catch (error) {
        return { code: (error as CliError).code, text: `${(error as CliError).message} ${(error as CliError).hint ?? ""}` };
      }
      return { code: 0, text: "" };
    };
    expect(usage({ env: "staging" })).toMatchObject({ code: EXIT.USAGE, text: expect.stringContaining("npm run drill -- --env staging --plan") });
    expect(usage({ env: "dev", yes: true })).toMatchObject({ code: EXIT.USAGE, text: expect.stringContaining("--yes confirms --in-place") });
    expect(usage({ env: "dev", keep: true, inPlace: true, yes: true }).code).not.toBe(0);
    expect(usage({ env: "../etc" }).code).toBe(EXIT.USAGE);
    const planLocal = await runCli("drill", ["--env", "dev", "--plan"]);
    expect(planLocal.code).toBe(EXIT.USAGE);
    expect(planLocal.stderr).toContain("is not on AWS");
    expect(drillDirs()).toEqual(before);
  });

  it("--plan prints the AWS steps with the spec's identifiers (snapshot → new instance → verify)", async () => {
    const result = await runCli("drill", ["--env", "staging", "--plan", "--json"]);
    expect(result.code, result.stderr).toBe(0);
    const spec = loadSpec("staging");
    const live = awsIdentifiers(spec);
    expect(result.json.identifiers.rdsInstance).toBe(live.rdsInstance);
    expect(result.json.identifiers.replicationGroup).toBe(live.replicationGroup);
    expect(result.json.steps.map((s: { phase: string }) => s.phase)).toEqual(expect.arrayContaining(PHASES.map((p) => p.name)));
    const cli = result.json.steps.flatMap((s: { cli: string[] }) => s.cli).join("\n");
    for (const command of ["rds create-db-snapshot", "elasticache create-snapshot", "rds restore-db-instance-from-db-snapshot", "rds wait db-instance-available", "elasticache wait replication-group-available"]) expect(cli).toContain(command);
    // Names derive from the spec exactly as the backup's AWS code makes them.
    const now = new Date("2026-01-02T03:04:05Z");
    const plan = awsDrillPlan(spec, now);
    expect(plan.identifiers.rdsSnapshot).toBe(snapshotNames(spec, "20260102T030405Z").rds);
    expect(formatAwsPlanMarkdown(plan)).toContain(`--db-snapshot-identifier ${plan.identifiers.rdsSnapshot}`);
    expect(cli).not.toMatch(/--auth-token/); // the AUTH token never goes to argv
  });
});

describe("the environment lock is re-entrant within one run (the drill holds it across up, backup and restore)", () => {
  it("a nested take by the holder goes ahead; another run still waits and is turned away", async () => {
    const lock = path.join(work, ".eph-locktest.lock");
    const order: string[] = [];
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let entered!: () => void;
    const inside = new Promise<void>((resolve) => (entered = resolve));
    const holder = withEnvLock("locktest", lock, { purpose: "testing", waitSeconds: 0 }, async () => {
      await withEnvLock("locktest", lock, { purpose: "testing", waitSeconds: 0 }, async () => void order.push("nested"));
      entered();
      await released;
    });
    await Promise.race([inside, holder]); // a nested take that waited for itself would reject here (exit 3)
    // Another call chain (as another command would be) does not get in.
    await expect(withEnvLock("locktest", lock, { purpose: "testing", waitSeconds: 0 }, async () => void order.push("other"))).rejects.toMatchObject({ code: EXIT.BUSY });
    release();
    await holder;
    expect(order).toEqual(["nested"]);
  });
});

describeBackups("drill: a scratch copy of dev's spec", () => {
  let kept: DrillReport | undefined;
  afterAll(async () => {
    // Whatever failed above, the kept environment goes.
    if (kept?.kept) spawnSync("bash", ["-c", kept.kept.removeWith], { cwd: PROJECT_DIR, stdio: "ignore", timeout: 60_000 });
  });

  it("passes; the JSON and markdown reports carry every field; --keep leaves it up and says how to remove it", { timeout: 180_000 }, async () => {
    const reportFile = path.join(work, "records", "drill.md");
    const result = await runCli("drill", ["--env", "dev", ...SMALL, "--keep", "--json", "--report", reportFile]);
    expect(result.code, result.stderr).toBe(EXIT.OK);
    const report = result.json as DrillReport;
    kept = report;

    expect(report).toMatchObject({ kind: "crypto-prediction-infra/dr-drill", version: 1, env: "dev", mode: "scratch", engine: "embedded", specEnv: "dev", status: "pass", exitCode: 0, reasons: [] });
    expect(report.runId).toMatch(/^\d{8}t\d{6}z-[0-9a-f]{6}$/);
    expect(report.specHash).toMatch(/^[0-9a-f]{12,64}$/);
    expect(report.subject!.env).toMatch(/^eph-/);
    expect(report.objectives).toEqual({ rtoSeconds: 300, rpoSeconds: 60 }); // dev archives WAL: the RPO objective is its archive timeout
    expect(Date.parse(report.completedAt)).toBeGreaterThan(Date.parse(report.startedAt));
    expect(report.settings).toEqual({ rows: 2000, format: "sql", writeSeconds: 1, writeIntervalMs: 20, keep: true });
    expect(report.seed).toMatchObject({ rows: 2000, inserted: 2000 });
    expect(report.machine).toMatchObject({ cpus: os.cpus().length, node: process.version, toolkit: expect.stringMatching(/^crypto-prediction-infra \d+\.\d+\.\d+/) });

    // Seven phases, each timed, in order.
    expect(report.phases.map((p) => [p.number, p.name, p.status])).toEqual(PHASES.map((p, i) => [i + 1, p.name, "ok"]));
    for (const p of report.phases) {
      expect(p.seconds, p.name).toBeGreaterThan(0);
      expect(Date.parse(p.startedAt!), p.name).not.toBeNaN();
      expect(p.detail, p.name).not.toBe("");
    }
    expect(report.phases[2]!.seconds).toBeGreaterThanOrEqual(1); // the writer ran for --write-seconds

    // RTO: disaster → verified, the sum of phases 4-7 (plus what lies between them).
    const recovery = report.phases.slice(3).reduce((s, p) => s + p.seconds!, 0);
    expect(report.rto.seconds!).toBeGreaterThanOrEqual(recovery - 0.01);
    expect(report.rto.seconds!).toBeLessThan(recovery + 1);
    expect(report.rto).toMatchObject({ objectiveSeconds: 300, ok: true });

    // RPO: per store, the newest acknowledged write vs the newest restored one; the worse counts.
    for (const store of [report.rpo.postgres!, report.rpo.redis!]) {
      expect(store.acknowledged).toBeGreaterThan(store.present); // writes after the backup are lost…
      expect(store.acknowledgedAfterBackup).toBeGreaterThan(0);
      expect(store.lost).toBe(store.acknowledged - store.present);
      expect(store.present).toBeGreaterThanOrEqual(1); // …the marker written before it is not
      expect(store.contiguous).toBe(true);
      expect(store.rpoSeconds!).toBeCloseTo((Date.parse(store.lastAcknowledgedAt!) - Date.parse(store.newestPresentAt!)) / 1000, 3);
      expect(store.rpoSeconds!).toBeGreaterThanOrEqual(1);
      expect(store.failedWrites).toBe(0);
    }
    expect(report.rpo.seconds).toBe(Math.max(report.rpo.postgres!.rpoSeconds!, report.rpo.redis!.rpoSeconds!));
    expect(report.rpo).toMatchObject({ objectiveSeconds: 60, ok: true });

    // The backup: size and checksums, as on disk (it is kept with --keep).
    const backup = report.backup!;
    expect(backup.files.map((f) => f.name).sort()).toEqual(["postgres.sql.gz", "redis.rdb"]);
    expect(backup.bytes).toBe(backup.files.reduce((n, f) => n + f.bytes, 0));
    expect(backup.manifestChecksum).toMatch(/^[0-9a-f]{64}$/);
    for (const f of backup.files) {
      const content = readFileSync(path.join(backup.dir, f.name));
      expect(content.length, f.name).toBe(f.bytes);
      expect(createHash("sha256").update(content).digest("hex"), f.name).toBe(f.sha256);
    }
    expect(report.restore).toMatchObject({ backupId: backup.id, isDrillBackup: true });
    expect(report.disaster!.destroyed.join("\n")).toContain("immediate mode");
    expect(report.disaster!.bytes).toBeGreaterThan(0);

    // The data against the manifest, and the verify command's checks.
    expect(report.comparison!.ok).toBe(true);
    expect(Object.fromEntries(report.comparison!.tables.map((t) => [t.table, t.actual]))).toEqual(backup.postgres!.tables);
    expect(report.comparison!.tables.find((t) => t.table === "market_data")!.expected).toBeGreaterThanOrEqual(2001); // seed + marker
    expect(report.comparison!.redisKeys).toEqual({ expected: backup.redis!.keys, actual: backup.redis!.keys, ok: true });
    expect(report.verify).toMatchObject({ ok: true, failed: [] });
    expect(report.verify!.summary.ok).toBeGreaterThan(20);

    // The markdown record: written atomically, 0600, with every section.
    expect(statSync(reportFile).mode & 0o777).toBe(0o600);
    const md = readFileSync(reportFile, "utf8");
    expect(md).toContain("# DR drill: dev — PASS");
    for (const text of ["RTO (disaster → verified)", "RPO (newest acknowledged write", "`dr.rtoSeconds`", "## Phases", "## Recovery point", "## Backup", backup.manifestChecksum, ...backup.files.map((f) => f.sha256), "## Data against the manifest", "## Health checks", "## Kept"]) {
      expect(md).toContain(text);
    }
    for (const p of PHASES) expect(md).toContain(p.title);
    expect(readdirSync(path.dirname(reportFile))).toEqual(["drill.md"]); // no temp file left

    // --keep: the recovered copy is up, with the restored data; the printed command removes it.
    const env = report.subject!.env;
    const kept_ = report.kept!;
    expect(kept_.env).toBe(env);
    expect(kept_.removeWith).toContain(`npm run down -- --env ${env} --destroy --yes`);
    const status = await runCli("status", ["--env", env, "--json"]);
    expect(status.json).toMatchObject({ exists: true, postgres: { running: true, answering: true, version: expect.stringMatching(/^16\./) }, redis: { running: true, answering: true, version: expect.stringMatching(/^7\./) } });
    const removal = spawnSync("bash", ["-c", kept_.removeWith], { cwd: PROJECT_DIR, encoding: "utf8", timeout: 60_000 });
    expect(removal.status, removal.stderr).toBe(0);
    kept = undefined;
    await expectNothingLeft(report);
  });

  it("a backup corrupted between the backup and the restore fails the drill (exit 1) with the reason, and leaves nothing behind", { timeout: 180_000 }, async () => {
    const flipped: string[] = [];
    const report = await runDrill({ env: "dev", ...SMALL_OPTIONS, hooks: { afterBackup: (b) => void flipped.push(corruptBackupFile(b.dir, "postgres")) } });
    expect(report).toMatchObject({ status: "fail", exitCode: EXIT.PROBLEM });
    expect(report.reasons).toHaveLength(1);
    expect(report.reasons[0]).toContain("phase 6 (restore) failed");
    expect(report.reasons[0]).toContain("postgres.sql.gz does not match its sha256");
    expect(report.phases.map((p) => p.status)).toEqual(["ok", "ok", "ok", "ok", "ok", "failed", "skipped"]);
    expect(report.rto.ok).toBe(false);
    expect(flipped).toEqual([path.join(report.backup!.dir, "postgres.sql.gz")]);
    expect(report.cleanup!.removed).toEqual(expect.arrayContaining(["state dir", expect.stringMatching(/^backups /)]));
    await expectNothingLeft(report);
  });
});

describeDocker("drill: on the Docker target (the ci stack's containers)", () => {
  it("passes, restoring into recreated containers, and removes every container, volume and network it made", { timeout: 180_000 }, async () => {
    await requireOfflineImages();
    const result = await runCli("drill", ["--env", "ci", "--engine", "docker", ...SMALL, "--json"], { timeoutMs: 170_000 });
    expect(result.code, result.stderr).toBe(EXIT.OK);
    const report = result.json as DrillReport;
    expect(report).toMatchObject({ status: "pass", exitCode: 0, rto: { ok: true }, rpo: { ok: true } });
    expect(report.phases.map((p) => p.status)).toEqual(PHASES.map(() => "ok"));
    const env = report.subject!.env;
    const label = `label=crypto-prediction-infra.env=${env}`;
    const docker = (args: string[]) => spawnSync(dockerBinary(), args, { encoding: "utf8" }).stdout.trim();
    expect(docker(["ps", "-aq", "--filter", label]), "containers").toBe("");
    expect(docker(["volume", "ls", "-q", "--filter", label]), "volumes").toBe("");
    expect(docker(["network", "ls", "-q", "--filter", label]), "networks").toBe("");
    expect(existsSync(envPaths(env).dir), `state folder of ${env}`).toBe(false);
    expect(existsSync(path.dirname(report.backup!.dir)), "the drill's backups").toBe(false);
  });
});

describeBackups("drill: in place", () => {
  const env = useEphemeralEnvironment();
  let rowsBefore: Record<string, number>;
  afterAll(() => rmSync(path.join(PROJECT_DIR, "backups", env().env), { recursive: true, force: true }));

  beforeAll(async () => {
    await withPg(env().connections.postgresConfig("owner"), (c) => seedMarketData(c, { rows: 500 }));
    await withRedis(env().connections.redisOptions("app"), (r) => r.set("crypto:BTC:price", "45000.00"));
    rowsBefore = await tableCounts();
  });

  async function tableCounts(): Promise<Record<string, number>> {
    return withPg(env().connections.postgresConfig("admin"), async (c) => {
      const out: Record<string, number> = {};
      for (const t of ["cryptocurrencies", "market_data", "predictions"]) out[t] = Number((await c.query(`SELECT count(*) AS n FROM ${t}`)).rows[0].n);
      return out;
    });
  }

  it("holds the environment's lock throughout, restores its data and removes its markers", { timeout: 180_000 }, async () => {
    const child = spawn(process.execPath, [path.join(PROJECT_DIR, "bin", "cpi.mjs"), "drill", "--env", env().env, "--in-place", "--yes", "--method", "logical", "--write-seconds", "1", "--json"], { cwd: PROJECT_DIR, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const exited = new Promise<number>((resolve) => child.on("close", (code) => resolve(code ?? -1)));

    // While it runs, another command on the environment is turned away (exit 3) and changes nothing.
    const deadline = Date.now() + 60_000;
    while (!stderr.includes("drill: 2/7") && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 50));
    expect(stderr).toContain("drill: 2/7");
    const down = await runCli("down", ["--env", env().env], { env: { CPI_LOCK_WAIT_SECONDS: "0" } });
    expect(down.code, down.stderr).toBe(EXIT.BUSY);
    expect(down.stderr).toContain("is busy: another run holds its lock");

    const code = await exited;
    expect(code, stderr).toBe(EXIT.OK);
    const report = JSON.parse(stdout) as DrillReport;
    expect(report).toMatchObject({ mode: "in-place", env: env().env, status: "pass", settings: { rows: 0 } });
    expect(report.subject!.env).toBe(env().env);
    expect(report.seed).toBeUndefined();
    expect(report.cleanup!.markers!.rows).toBeGreaterThan(0);
    expect(report.cleanup!.markers!.keys).toBeGreaterThan(0);
    expect(report.backup!.dir.startsWith(path.join(PROJECT_DIR, "backups", env().env))).toBe(true); // the env's own backups, kept

    // The environment is back, as it was: same rows, the cache key, no marker left.
    expect(await tableCounts()).toEqual(rowsBefore);
    await withPg(env().connections.postgresConfig("admin"), async (c) => {
      expect(Number((await c.query("SELECT count(*) AS n FROM market_data WHERE data_source LIKE 'dr-drill:%'")).rows[0].n)).toBe(0);
      expect((await c.query("SELECT 1 FROM cryptocurrencies WHERE symbol = 'DRILL'")).rowCount).toBe(0);
    });
    await withRedis(env().connections.redisOptions("admin"), async (r) => {
      expect(await r.get("crypto:BTC:price")).toBe("45000.00");
      expect((await r.scan("0", "MATCH", "drill:*", "COUNT", 1000))[1]).toEqual([]);
    });
    const verify = await runCli("verify", ["--env", env().env, "--json"]);
    expect(verify.code, verify.stdout).toBe(0);
  });
});
