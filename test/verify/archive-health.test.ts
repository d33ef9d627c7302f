/**
 * Continuous archiving's health in `verify` and `monitor`, on a real embedded server with
 * basic_archive: a healthy archiver is ok; an unwritable archive folder makes both commands exit 1
 * and name the folder, at once (before any segment fails) and, once a segment is due, through
 * pg_stat_archiver (failing, last failed WAL) and the WAL waiting behind it; fixing the folder
 * clears both.
 */
import { chmodSync, rmSync, statSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { backupRoot } from "../../lib/backup/backup.js";
import { openLocalEnvironment } from "../../lib/env/environment.js";
import { takeBaseBackup } from "../../lib/backup/physical/base-backup.js";
import { withPg } from "../../lib/db/clients.js";
import { resolveEnvironment } from "../../lib/env/resolve.js";
import { loadSpec } from "../../lib/spec/load.js";
import { monitorEnvironment } from "../../lib/monitor/monitor.js";
import { assessFreshness } from "../../lib/verify/archive.js";
import { verifyEnvironment } from "../../lib/verify/verify.js";
import { runCli, useEphemeralEnvironment } from "../support/embedded.js";

const env = useEphemeralEnvironment();
/** The environment's own backup repository (backup.dir/<env>): the freshness check reads it. */
let backupsOut = "";
afterAll(() => backupsOut && rmSync(backupsOut, { recursive: true, force: true }));
beforeAll(() => {
  backupsOut = backupRoot(env().spec, env().env);
});

const admin = () => env().connections.postgresConfig("admin");

/** The archive folder as the server names it. */
async function archiveDir(): Promise<string> {
  return withPg(admin(), async (c) => (await c.query<{ d: string }>("SELECT current_setting('basic_archive.archive_directory') AS d")).rows[0]!.d);
}

/** A write, then a segment switch: a completed segment the archiver must take. */
async function completeSegment(): Promise<string> {
  return withPg(admin(), async (c) => {
    await c.query("CREATE TABLE IF NOT EXISTS archive_health_probe (n int); INSERT INTO archive_health_probe VALUES (1)");
    return (await c.query<{ w: string }>("SELECT pg_walfile_name(pg_switch_wal()) AS w")).rows[0]!.w;
  });
}

/** Waits (bounded) until pg_stat_archiver satisfies `done`. */
async function waitArchiver(done: (row: { last_archived_wal: string | null; last_failed_wal: string | null; failing: boolean }) => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const row = await withPg(admin(), async (c) =>
      (await c.query("SELECT last_archived_wal, last_failed_wal, coalesce(last_failed_time >= coalesce(last_archived_time, '-infinity'), false) AS failing FROM pg_stat_archiver")).rows[0],
    );
    if (done(row)) return;
    if (Date.now() > deadline) throw new Error(`pg_stat_archiver did not show ${what} within 20 s: ${JSON.stringify(row)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe("archiving in verify and monitor", () => {
  it("a healthy archiver: a completed segment is archived, and every archive check is ok", async () => {
    const segment = await completeSegment();
    await waitArchiver((r) => r.last_archived_wal !== null && r.last_archived_wal >= segment, `${segment} archived`);
    const report = await verifyEnvironment(resolveEnvironment({ env: env().env }));
    const archive = report.checks.filter((c) => c.id.startsWith("db.archive."));
    expect(archive.map((c) => [c.id, c.status])).toEqual([
      ["db.archive.archiver", "ok"],
      ["db.archive.lag", "ok"],
      ["db.archive.folder", "ok"],
    ]);
    expect(archive[0]!.detail).toContain(segment);
    const monitor = await monitorEnvironment(resolveEnvironment({ env: env().env }), undefined, { intervalSeconds: 0 });
    expect(monitor.lines.filter((l) => l.id.startsWith("postgres.archive")).map((l) => [l.id, l.status])).toEqual([
      ["postgres.archiver", "ok"],
      ["postgres.archive_lag", "ok"],
      ["postgres.archive_folder", "ok"],
    ]);
    expect(report.checks.find((c) => c.id === "db.backup.freshness")).toMatchObject({ status: "ok", detail: expect.stringContaining("no base backup yet") });
  });

  it("backup freshness: the newest base backup's age against alerts.backupMaxAgeHours (verify and monitor)", { timeout: 120_000 }, async () => {
    const made = await takeBaseBackup(openLocalEnvironment(env().env), { out: backupsOut });
    const target = resolveEnvironment({ env: env().env });
    const byId = (r: Awaited<ReturnType<typeof verifyEnvironment>>) => r.checks.find((c) => c.id === "db.backup.freshness")!;
    // The repository is the env's own (backup.dir): look there, as the commands do.
    const fresh = await verifyEnvironment(target, target.spec, { groups: ["db"] });
    expect(byId(fresh)).toMatchObject({ status: "ok", detail: expect.stringContaining(made.manifest.id) });
    await new Promise((r) => setTimeout(r, 1500));
    const strict = { ...target.spec, alerts: { ...target.spec.alerts, backupMaxAgeHours: 0.0002 } }; // 0.72 s
    const late = await verifyEnvironment(target, strict, { groups: ["db"] });
    expect(byId(late)).toMatchObject({ status: "fail", detail: expect.stringContaining(made.manifest.id) });
    expect(late.exitCode).toBe(1);
    const monitored = await monitorEnvironment(target, strict, { intervalSeconds: 0 });
    expect(monitored.lines.find((l) => l.id === "postgres.backup_age")).toMatchObject({ status: "warn" });
  });

  it("an unwritable archive folder: verify and monitor exit 1 and name it; fixing it clears both", async () => {
    const dir = await archiveDir();
    const mode = statSync(dir).mode & 0o777;
    chmodSync(dir, 0o500);
    try {
      // At once, before the archiver has anything to fail on.
      const verify = await runCli("verify", ["--env", env().env, "--check", "db", "--json"]);
      expect(verify.code, verify.stderr).toBe(1);
      const folder = verify.json.checks.find((c: { id: string }) => c.id === "db.archive.folder");
      expect(folder.status).toBe("fail");
      expect(folder.detail).toContain(dir);
      const monitor = await runCli("monitor", ["--env", env().env, "--interval", "0"]);
      expect(monitor.code, monitor.stderr).toBe(1);
      expect(monitor.stdout).toMatch(/WARN archive folder/);
      expect(monitor.stdout).toContain(dir);

      // A segment falls due: the archiver fails on it, and it waits.
      const segment = await completeSegment();
      await waitArchiver((r) => r.failing && r.last_failed_wal === segment, `a failure on ${segment}`);
      await new Promise((r) => setTimeout(r, 1200));
      const target = resolveEnvironment({ env: env().env });
      const strict = { ...target.spec, alerts: { ...target.spec.alerts, archiveLagSeconds: 1 } };
      const failing = await verifyEnvironment(target, strict, { groups: ["db"] });
      const byId = (id: string) => failing.checks.find((c) => c.id === id)!;
      expect(byId("db.archive.archiver").status).toBe("fail");
      expect(byId("db.archive.archiver").detail).toContain(`last failed WAL ${segment}`);
      expect(byId("db.archive.archiver").detail).toContain(dir);
      expect(byId("db.archive.lag").status).toBe("fail");
      expect(byId("db.archive.lag").detail).toContain(segment);
      expect(failing.exitCode).toBe(1);
      const monitored = await monitorEnvironment(target, strict, { intervalSeconds: 0 });
      expect(monitored.lines.find((l) => l.id === "postgres.archiver")!.status).toBe("warn");
      expect(monitored.exitCode).toBe(1);
    } finally {
      chmodSync(dir, mode);
    }
    // Fixed: the next segment wakes the archiver, which takes the backlog too.
    const next = await completeSegment();
    await waitArchiver((r) => !r.failing && r.last_archived_wal !== null && r.last_archived_wal >= next, `${next} archived after the fix`);
    const verify = await runCli("verify", ["--env", env().env, "--check", "db", "--json"]);
    expect(verify.code, JSON.stringify(verify.json?.checks?.filter((c: { status: string }) => c.status !== "ok"))).toBe(0);
    // Other lines may warn on a loaded machine (verify's scratch database makes slow DDL): the archive's are ok.
    const monitor = await runCli("monitor", ["--env", env().env, "--interval", "0", "--json"]);
    const archiveLines = monitor.json.lines.filter((l: { id: string }) => l.id.startsWith("postgres.archive"));
    expect(archiveLines.map((l: { id: string; status: string }) => [l.id, l.status])).toEqual([
      ["postgres.archiver", "ok"],
      ["postgres.archive_lag", "ok"],
      ["postgres.archive_folder", "ok"],
    ]);
  });
});

describe("backup freshness", () => {
  const spec = loadSpec("dev");
  const now = Date.parse("2026-12-03T12:00:00Z");
  it("the newest base backup's age against alerts.backupMaxAgeHours; none at all is late only once the environment is older than that", () => {
    expect(assessFreshness({ id: "b1", at: "2026-12-03T02:00:00Z" }, spec, "2026-11-01T00:00:00Z", now)).toMatchObject({ status: "ok", measured: 10 });
    expect(assessFreshness({ id: "b0", at: "2026-12-02T09:00:00Z" }, spec, "2026-11-01T00:00:00Z", now)).toMatchObject({ status: "fail", measured: 27, value: expect.stringContaining("b0") });
    expect(assessFreshness(undefined, spec, "2026-12-03T11:00:00Z", now)).toMatchObject({ status: "ok", value: expect.stringContaining("due within 25.0 h") });
    expect(assessFreshness(undefined, spec, "2026-12-01T00:00:00Z", now)).toMatchObject({ status: "fail", value: expect.stringContaining("no base backup") });
  });
});
