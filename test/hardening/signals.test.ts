/**
 * Every command ends on SIGTERM and SIGINT and releases what it holds (issue 14, item 7): a real
 * backup, killed with a plain `kill PID` (only the toolkit's own process) while pg_dump and gzip
 * stream, exits 143 (SIGINT: 130), stops its child tools, releases the environment's lock (the
 * next run, which may not wait, proceeds), and publishes nothing (no backup, no .partial- folder).
 * And an output path that cannot work (/proc: Node's recursive mkdir spins there forever) is
 * refused up front, without taking the lock.
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { EXIT } from "../../lib/errors.js";
import { describeBackups } from "../support/docker.js";
import { useEphemeralEnvironment } from "../support/embedded.js";
import { fillForBackup, runScript, startScript, waitFor } from "../support/commands.js";

const environment = useEphemeralEnvironment();
const outRoot = mkdtempSync(path.join(os.tmpdir(), "cpi-signals-"));
afterAll(() => rmSync(outRoot, { recursive: true, force: true }));

/** Pids whose parent is `pid` (from /proc). */
function childrenOf(pid: number): number[] {
  const found: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === pid) found.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}
const alive = (pid: number) => existsSync(`/proc/${pid}`) && !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));

// pg_dump | gzip are the children this kills: without a pg_dump 16 the backup is a physical one.
describeBackups("a backup told to stop", () => {
  it.each([
    ["SIGTERM", 143],
    ["SIGINT", 130],
  ] as const)("backup, %s while pg_dump streams: exit %i, children stopped, lock released, nothing published", async (signal, code) => {
    const env = environment();
    if (signal === "SIGTERM") await fillForBackup(env.connections, 60_000);
    const out = path.join(outRoot, signal);
    const run = startScript("backup", ["--env", env.env, "--out", out, "--format", "sql", "--level", "9", "--json"]); // pg_dump | gzip: two children
    // Wait until the dump is being written: a .partial- folder with a growing file in it.
    const partialFile = () => {
      if (!existsSync(out)) return undefined;
      const partial = readdirSync(out).find((d) => d.startsWith(".partial-"));
      if (!partial) return undefined;
      const file = path.join(out, partial, "postgres.sql.gz");
      return existsSync(file) && statSync(file).size > 0 ? file : undefined;
    };
    await waitFor("the dump to start writing", () => Boolean(partialFile()), 60_000, 20);
    expect(existsSync(env.paths.lock), "the backup holds the lock").toBe(true);
    const children = childrenOf(run.child.pid!);
    expect(children.length, "pg_dump and gzip run").toBeGreaterThan(0);

    process.kill(run.child.pid!, signal); // the toolkit's process only, as `kill PID` does
    const result = await run.done;
    expect(result.code, result.stderr).toBe(code);
    expect(result.stderr).toContain(`${signal}: stopping`);
    await waitFor("the child tools to end", () => children.every((pid) => !alive(pid)), 10_000);
    expect(existsSync(env.paths.lock), "the lock is released").toBe(false);
    expect(readdirSync(out), "nothing published, no partial folder left").toEqual([]);

    const next = await runScript("backup", ["--env", env.env, "--out", out, "--json"], { env: { CPI_LOCK_WAIT_SECONDS: "0" } });
    expect(next.code, next.stderr).toBe(EXIT.OK);
    expect(readdirSync(out)).toHaveLength(1);
    rmSync(out, { recursive: true, force: true });
  }, 240_000);
});

describe("a command given an output it cannot use", () => {
  it("backup --out /proc/nope (and other folders that cannot work): a clear error at once, the lock never taken", async () => {
    const env = environment();
    const cases: [string, RegExp][] = [
      ["/proc/nope", /--out "\/proc\/nope": is inside the system folder \/proc/],
      ["/etc", /--out "\/etc": is inside the system folder \/etc|\/etc is a system folder/],
      ["/etc/passwd/x", /system folder \/etc/],
      [path.join(outRoot, "file", "below"), /is a file, not a folder/],
    ];
    const { writeFileSync } = await import("node:fs");
    writeFileSync(path.join(outRoot, "file"), "not a folder");
    for (const [out, says] of cases) {
      const started = Date.now();
      const result = await runScript("backup", ["--env", env.env, "--out", out], { timeoutMs: 30_000 });
      expect(result.code, `${out}: ${result.stderr}`).toBe(EXIT.USAGE);
      expect(result.stderr).toMatch(says);
      expect(Date.now() - started).toBeLessThan(20_000);
      expect(existsSync(env.paths.lock)).toBe(false);
    }
    expect(existsSync("/proc/nope")).toBe(false);
  }, 120_000);
});
