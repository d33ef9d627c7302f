/**
 * A backup onto a full disk (issue 14, item 11): a 2 MB tmpfs mounted by the test (as root; else
 * skipped with one line) receives a backup of a few hundred thousand rows. The run fails with
 * "no space left on <mount>" (exit 2), never pg_dump's "Broken pipe", keeps nothing, and releases
 * its lock.
 */
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EXIT } from "../../lib/errors.js";
import { useEphemeralEnvironment } from "../support/embedded.js";
import { fillForBackup, runScript } from "../support/commands.js";

const isRoot = process.getuid?.() === 0;
if (!isRoot) console.warn("[disk-full] skipping: mounting a small tmpfs needs root");

describe.runIf(isRoot)("a backup onto a full disk", () => {
  const environment = useEphemeralEnvironment();
  const mount = mkdtempSync(path.join(os.tmpdir(), "cpi-full-"));
  let mounted = false;
  beforeAll(() => {
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=2m,mode=0755", "tmpfs", mount]);
    mounted = true;
  });
  afterAll(() => {
    if (mounted) execFileSync("umount", [mount]);
    rmSync(mount, { recursive: true, force: true });
  });

  it("says 'no space left on <mount>' (exit 2), not a broken pipe, keeps nothing and releases the lock", async () => {
    const env = environment();
    await fillForBackup(env.connections, 30_000);
    const out = path.join(mount, "backups");
    const result = await runScript("backup", ["--env", env.env, "--out", out], { timeoutMs: 180_000 });
    expect(result.code, result.stderr).toBe(EXIT.ERROR);
    expect(result.stderr).toContain(`no space left on ${mount}`);
    expect(result.stderr).not.toMatch(/Broken pipe/i);
    expect(existsSync(env.paths.lock)).toBe(false);
    expect(readdirSync(out)).toEqual([]);
  }, 240_000);
});
