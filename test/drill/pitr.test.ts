/**
 * The point-in-time recovery drill (the default where the spec archives WAL), on the embedded
 * engine, without Docker: the disaster is a kill -9 of every server process and the deleted data
 * folders while the application writes; recovery from the base backup plus the archived WAL brings
 * back writes made after the base backup, and the report shows the window, the base backup, the
 * WAL replayed and the RPO. A damaged base backup fails the drill (exit 1) and nothing is left.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { EXIT } from "../../lib/errors.js";
import { formatDrillMarkdown, formatDrillText, PHASES, resolveDrillOptions, runDrill, type DrillReport } from "../../lib/drill/index.js";
import { corruptBackupFile } from "../support/drill.js";
import { envPaths } from "../../lib/state/paths.js";
import { isPortFree } from "../../lib/state/ports.js";
import { runCli } from "../support/embedded.js";

async function expectNothingLeft(report: DrillReport): Promise<void> {
  const env = report.subject!.env;
  expect(existsSync(envPaths(env).dir), `state folder of ${env}`).toBe(false);
  expect(existsSync(path.dirname(report.backup!.dir)), "the drill's backups").toBe(false);
  const mentioning = readdirSync("/proc")
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, "utf8").includes(env);
      } catch {
        return false;
      }
    });
  expect(mentioning, "processes of the scratch environment").toEqual([]);
  expect(await isPortFree(report.subject!.ports!.postgres)).toBe(true);
  expect(await isPortFree(report.subject!.ports!.redis)).toBe(true);
}

describe("drill: point-in-time recovery (embedded, no Docker)", () => {
  it("usage: pitr needs archiving and the embedded engine; --format belongs to the logical drill", () => {
    const code = (options: Parameters<typeof resolveDrillOptions>[0]) => {
      try {
        return resolveDrillOptions(options).method;
      } catch (error) {
        return (error as { code: number }).code;
      }
    };
    expect(code({ env: "dev" })).toBe("pitr");
    expect(code({ env: "dev", method: "logical" })).toBe("logical");
    expect(code({ env: "dev", engine: "docker" })).toBe("logical");
    expect(code({ env: "dev", method: "pitr", engine: "docker" })).toBe(EXIT.USAGE);
    expect(code({ env: "dev", method: "pitr", format: "custom" })).toBe(EXIT.USAGE);
    const resolved = resolveDrillOptions({ env: "dev" });
    expect(resolved.archiveTimeoutSeconds).toBe(1);
    expect(resolved.writeSeconds).toBeGreaterThan(resolved.archiveTimeoutSeconds!);
  });

  it("--rows 20000 passes: writes made after the base backup come back from the archived WAL; the report shows window, backup, WAL and RPO", { timeout: 240_000 }, async () => {
    const result = await runCli("drill", ["--env", "dev", "--rows", "20000", "--json"], { timeoutMs: 230_000 });
    expect(result.code, result.stderr).toBe(EXIT.OK);
    const report = result.json as DrillReport;
    expect(report).toMatchObject({ method: "pitr", status: "pass", exitCode: 0, reasons: [], rto: { ok: true }, rpo: { ok: true } });
    expect(report.phases.map((p) => p.status)).toEqual(PHASES.map(() => "ok"));
    expect(report.settings).toMatchObject({ rows: 20000, archiveTimeoutSeconds: 1, specArchiveTimeoutSeconds: 60 });
    expect(report.objectives.rpoSeconds).toBe(60); // dev's archive timeout (rpoObjectiveSeconds)
    const disaster = report.phases.find((p) => p.name === "disaster")!.detail;
    expect(disaster).toContain("SIGKILL to the postmaster");
    expect(disaster).toContain("kept: the WAL archive");

    const p = report.pitr!;
    expect(p.backupId).toBe(report.backup!.id);
    expect(Date.parse(p.window.earliest)).toBeLessThan(Date.parse(p.window.latest));
    expect(p.walSegments).toBeGreaterThanOrEqual(2);
    expect(p.writesRecoveredAfterBackup).toBeGreaterThan(0);
    const pg = report.rpo.postgres!;
    // Some writes were acknowledged after the base backup and came back, in order, without a gap.
    expect(pg.acknowledgedAfterBackup).toBeGreaterThan(0);
    expect(pg.contiguous).toBe(true);
    expect(pg.present).toBeGreaterThan(pg.acknowledged - pg.acknowledgedAfterBackup);
    // What the crash lost is what was not yet archived: within a few archive timeouts.
    expect(pg.rpoSeconds!).toBeLessThan(report.settings.writeSeconds);
    expect(report.comparison!.tables.every((t) => t.ok)).toBe(true);
    expect(report.comparison!.tables.find((t) => t.table === "market_data")!.expected).toBe(20000);
    expect(report.verify!.ok).toBe(true);
    expect(report.backup!.physical).toMatchObject({ compression: expect.stringMatching(/^zstd/) });

    const human = formatDrillText(report);
    expect(human).toMatch(/point-in-time recovery: window .* → .*; base backup \S+-base; \d+ archived WAL segments replayed/);
    expect(human).toContain("scratch copy; the spec's is 60 s");
    expect(formatDrillMarkdown(report)).toContain("## Point-in-time recovery");
    await expectNothingLeft(report);
  });

  it("a flipped byte in the base backup fails the drill (exit 1) at the restore, naming the file; nothing is left", { timeout: 240_000 }, async () => {
    const flipped: string[] = [];
    const report = await runDrill({ env: "dev", rows: 2000, hooks: { afterBackup: (b) => void flipped.push(corruptBackupFile(b.dir, "postgres")) } });
    expect(report).toMatchObject({ method: "pitr", status: "fail", exitCode: EXIT.PROBLEM });
    expect(flipped).toEqual([path.join(report.backup!.dir, "base.tar.zst")]);
    expect(report.phases.map((p) => p.status)).toEqual(["ok", "ok", "ok", "ok", "ok", "failed", "skipped"]);
    expect(report.reasons[0]).toContain("phase 6 (restore) failed");
    expect(report.reasons[0]).toContain("base.tar.zst");
    await expectNothingLeft(report);
  });
});
