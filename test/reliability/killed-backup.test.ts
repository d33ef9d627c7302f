/**
 * The toolkit SIGKILLed in the middle of a backup (no cleanup runs): nothing is published (its
 * `.partial-…` folder is listed as unfinished), the environment keeps running with its data, and
 * the next backup (after the stale lock) is whole. (A killed restore: killed-restore.test.ts.)
 */
import { existsSync, readdirSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { describeBackups } from "../support/docker.js";
import { useKillFixture } from "../support/kill-fixture.js";
import { fillForBackup, killGroup, runningServers, runScript, sleep, startScript, waitFor } from "../support/commands.js";

const { environment, workDir, counts } = useKillFixture();

describeBackups("SIGKILL in the middle of", () => {
  it("a backup: nothing is published, the data is untouched, and the next backup is whole", async () => {
    const env = environment();
    const root = path.join(workDir(), "kill-backup");
    const before = await counts();
    const run = startScript("backup", ["--env", env.env, "--out", root]);
    await waitFor("the backup's partial folder", () => existsSync(root) && readdirSync(root).some((d) => d.startsWith(".partial-")), 60_000, 10);
    await sleep(300);
    killGroup(run.child, "SIGKILL");
    const killedAt = Date.now();
    await run.done;

    expect(readdirSync(root).filter((d) => !d.startsWith(".")), "a published backup").toEqual([]);
    expect(await runningServers(env.env)).toEqual({ postgres: true, redis: true });
    expect(await counts()).toEqual(before);
    const listing = await runScript("backup", ["list", "--env", env.env, "--out", root]);
    expect(listing.code, listing.stderr).toBe(0);
    expect(listing.stdout).toMatch(/1 unfinished \(\.partial-…\) folder/);

    const next = await runScript("backup", ["--env", env.env, "--out", root, "--json"]);
    expect(next.code, next.stderr).toBe(0);
    console.log(`[figures] killed backup: the next backup finished ${((Date.now() - killedAt) / 1000).toFixed(1)} s after the kill (stale lock 15 s)`);
    const check = await runScript("restore", ["--from", next.json.dir, "--check"]);
    expect(check.code, check.stderr).toBe(0);
    expect(next.json.manifest.postgres.tables.market_data).toBe(before.candles);
  }, 120_000);
});
