/**
 * Point-in-time recovery on real embedded servers, without Docker: base backups made by the
 * server (BASE_BACKUP), WAL archived by basic_archive, `restore --to` through the CLI as users
 * run it. Every refusal names the file and leaves the live data as it was (same rows, same
 * postmaster).
 */
import { spawn } from "node:child_process";
import { copyFileSync, cpSync, existsSync, mkdtempSync, openSync, readdirSync, readSync, renameSync, rmSync, writeSync, closeSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { listPhysical } from "../../../lib/backup/physical/catalog.js";
import { latestTimeline, parseLsn, parseSegmentName, readArchive, segmentsOnPath } from "../../../lib/backup/physical/wal.js";
import { withPg } from "../../../lib/db/clients.js";
import { EmbeddedEnvironment, type StartedEmbeddedEnvironment } from "../../../lib/engines/embedded/environment.js";
import { postmasterPid } from "../../../lib/engines/embedded/postgres-server.js";
import { PROJECT_DIR } from "../../../lib/spec/load.js";
import { runCli } from "../../support/embedded.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("point-in-time recovery (embedded)", () => {
  let env: StartedEmbeddedEnvironment;
  let other: StartedEmbeddedEnvironment | undefined;
  const out = mkdtempSync(path.join(os.tmpdir(), "cpi-pitr-"));
  const owner = <T>(sql: string) => withPg(env.connections.postgresConfig("owner"), async (c) => (await c.query(sql)).rows as T);
  const symbols = async () => (await owner<{ symbol: string }[]>("SELECT symbol FROM cryptocurrencies WHERE symbol LIKE 'PITR%' ORDER BY symbol")).map((r) => r.symbol);
  const insert = (symbol: string) => owner(`INSERT INTO cryptocurrencies (symbol, name) VALUES ('${symbol}', 'pitr test')`);
  /** A write and a segment switch: the archive grows by one segment. */
  const nextSegment = async (symbol: string) => {
    await insert(symbol);
    await withPg(env.connections.postgresConfig("admin"), (c) => c.query("SELECT pg_switch_wal()"));
  };
  const backup = async () => {
    const made = await runCli("backup", ["--env", env.env, "--physical", "--out", out, "--json"]);
    expect(made.code, made.stderr).toBe(0);
    return made.json as { dir: string; manifest: { id: string; postgres: { stopTime: string; startWal: string } } };
  };
  const restore = (args: string[], outDir = out) => runCli("restore", ["--env", env.env, ...args, "--out", outDir, "--yes", "--json"], { timeoutMs: 180_000 });
  /** The refusal changed nothing: same rows, and the live server was not even restarted. */
  const expectUntouched = async (before: { symbols: string[]; pid: number | undefined }) => {
    expect(await symbols()).toEqual(before.symbols);
    expect(postmasterPid(env.paths)).toBe(before.pid);
  };
  const snapshot = async () => ({ symbols: await symbols(), pid: postmasterPid(env.paths) });
  const archiveDir = () => env.paths.pgArchive;

  beforeAll(async () => {
    env = await new EmbeddedEnvironment("dev").withEphemeral().withSpecOverrides({ backup: { keepBase: 2 } }).start();
  });
  afterAll(async () => {
    await env?.destroy();
    await other?.destroy();
    rmSync(out, { recursive: true, force: true });
  });

  it("recovers to a time between two batches (exactly the first), and to latest (both)", async () => {
    const made = await backup();
    expect(readdirSync(made.dir).sort()).toEqual(["backup_manifest", "base.tar.zst", "physical.json", "redis.rdb"]);
    await insert("PITRA");
    await sleep(1100);
    const between = new Date();
    await sleep(1100);
    await insert("PITRB");

    // latest first: recovering to a time opens a new timeline, and latest then means its end.
    const latest = await restore(["--to", "latest"]);
    expect(latest.code, latest.stderr).toBe(0);
    expect(await symbols()).toEqual(["PITRA", "PITRB"]);
    expect(latest.json.backup.id).toBe(made.manifest.id);

    const toTime = await restore(["--to", between.toISOString()]);
    expect(toTime.code, toTime.stderr).toBe(0);
    expect(await symbols()).toEqual(["PITRA"]);
    expect(toTime.json.timeline).toBeGreaterThanOrEqual(2);
    expect(Date.parse(toTime.json.recoveredTo)).toBeLessThanOrEqual(between.getTime());
  }, 300_000);

  it("lists the base backup and the restorable window, in JSON and for people", async () => {
    const listed = await runCli("backup", ["list", "--env", env.env, "--out", out, "--json"]);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.json.physical).toHaveLength(1);
    expect(listed.json.wal).toMatchObject({ location: archiveDir(), waiting: { segments: 0, bytes: 0 } });
    expect(listed.json.wal.segments).toBeGreaterThan(0);
    const { earliest, latest } = listed.json.window;
    expect(Date.parse(earliest)).toBeLessThan(Date.parse(latest));
    const human = await runCli("backup", ["list", "--env", env.env, "--out", out]);
    expect(human.stdout).toContain(`restorable window: ${earliest} to ${latest}`);
  });

  it("backup without a format, where no pg_dump 16+ is found, says so and makes a physical backup", async () => {
    const elsewhere = mkdtempSync(path.join(os.tmpdir(), "cpi-pitr-fallback-"));
    try {
      // Debian 12's pg_dump 15 on PATH and no Docker client: the README's fresh machine.
      const made = await runCli("backup", ["--env", env.env, "--out", elsewhere, "--json"], { env: { DOCKER_CLI: "/nonexistent/docker", PG_BIN: "" } });
      expect(made.code, made.stderr).toBe(0);
      expect(made.stderr).toMatch(/no usable pg_dump.*making a physical backup instead/);
      expect(made.json).toMatchObject({ physical: true });
      expect(readdirSync(made.json.dir)).toContain("physical.json");
      // An explicit format still means pg_dump, and still fails clearly.
      const explicit = await runCli("backup", ["--env", env.env, "--out", elsewhere, "--format", "sql"], { env: { DOCKER_CLI: "/nonexistent/docker", PG_BIN: "" } });
      expect(explicit.code).toBe(2);
      expect(explicit.stderr).toContain("no usable pg_dump");
    } finally {
      rmSync(elsewhere, { recursive: true, force: true });
    }
  }, 120_000);

  it("refuses a TIME before the oldest backup or after the newest WAL, with the window", async () => {
    const before = await snapshot();
    const early = await restore(["--to", "2020-01-01T00:00:00Z"]);
    expect(early.code).toBe(64);
    expect(early.stderr).toMatch(/outside what the backups can reach: the restorable window is \S+ to \S+/);
    const late = await restore(["--to", new Date(Date.now() + 3_600_000).toISOString()]);
    expect(late.code).toBe(64);
    expect(late.stderr).toContain("the restorable window is");
    await expectUntouched(before);
  }, 120_000);

  it("refuses a base backup with one flipped byte, naming the file", async () => {
    const damaged = mkdtempSync(path.join(os.tmpdir(), "cpi-pitr-damaged-"));
    try {
      const [only] = listPhysical(env.env, out).backups;
      const copy = path.join(damaged, path.basename(only!.dir));
      cpSync(only!.dir, copy, { recursive: true });
      const tar = path.join(copy, "base.tar.zst");
      flipByte(tar, Math.floor(statSync(tar).size / 2));
      const before = await snapshot();
      const refused = await restore(["--to", "latest"], damaged);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain(tar);
      expect(refused.stderr).toContain("SHA-256");
      await expectUntouched(before);
    } finally {
      rmSync(damaged, { recursive: true, force: true });
    }
  }, 120_000);

  it("refuses a WAL chain with a segment missing in the middle, naming it", async () => {
    for (const s of ["PITRC", "PITRD", "PITRE"]) await nextSegment(s);
    await sleep(500);
    const middle = middleSegment();
    const aside = `${middle}.aside`;
    renameSync(middle, aside);
    try {
      const before = await snapshot();
      const refused = await restore(["--to", "latest"]);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain(middle);
      expect(refused.stderr).toContain("missing");
      await expectUntouched(before);
    } finally {
      renameSync(aside, middle);
    }
  }, 120_000);

  it("refuses a WAL segment from another cluster, naming it", async () => {
    other = await new EmbeddedEnvironment("dev").withEphemeral().start();
    await withPg(other.connections.postgresConfig("admin"), async (c) => {
      await c.query("SELECT txid_current()");
      await c.query("SELECT pg_switch_wal()");
    });
    for (let i = 0; i < 100 && !readArchive(other.paths.pgArchive).segments.length; i++) await sleep(100);
    const foreign = readArchive(other.paths.pgArchive).segments[0]!;
    const middle = middleSegment();
    const aside = `${middle}.aside`;
    renameSync(middle, aside);
    copyFileSync(path.join(other.paths.pgArchive, foreign.name), middle);
    try {
      const before = await snapshot();
      const refused = await restore(["--to", "latest"]);
      expect(refused.code).toBe(1);
      expect(refused.stderr).toContain(middle);
      expect(refused.stderr).toContain("another cluster");
      await expectUntouched(before);
    } finally {
      rmSync(middle, { force: true });
      renameSync(aside, middle);
    }
  }, 120_000);

  it("a base backup killed with SIGKILL half-way leaves nothing that --list shows as complete, and the next backup works", async () => {
    const countBefore = listPhysical(env.env, out).backups.length;
    const child = spawn(process.execPath, [path.join(PROJECT_DIR, "bin", "cpi.mjs"), "backup", "--env", env.env, "--physical", "--out", out], { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    const started = new Promise<void>((resolve) => child.stderr.on("data", (d) => ((stderr += d), /the server writes the base backup|compressing/.test(stderr) && resolve())));
    const exited = new Promise<void>((resolve) => child.on("exit", () => resolve()));
    await Promise.race([started, sleep(30_000)]);
    child.kill("SIGKILL");
    await exited;
    const listed = listPhysical(env.env, out);
    expect(listed.backups).toHaveLength(countBefore);
    expect(readdirSync(out).filter((n) => !n.startsWith(".")).length).toBe(countBefore);
    const next = await backup();
    expect(existsSync(path.join(next.dir, "physical.json"))).toBe(true);
    expect(listPhysical(env.env, out).backups).toHaveLength(countBefore + 1);
  }, 120_000);

  it("prune keeps backup.keepBase base backups and every segment they need: the oldest kept one restores", async () => {
    await nextSegment("PITRF");
    const third = await backup();
    await nextSegment("PITRG");
    const backups = listPhysical(env.env, out).backups;
    expect(backups.length).toBe(3);
    const dry = await runCli("backup", ["prune", "--env", env.env, "--dry-run", "--out", out, "--json"]);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.json.removedBase.map((r: { id: string }) => r.id)).toEqual([backups[0]!.id]);
    expect(listPhysical(env.env, out).backups.length).toBe(3); // a dry run deletes nothing

    const pruned = await runCli("backup", ["prune", "--env", env.env, "--out", out, "--json"]);
    expect(pruned.code, pruned.stderr).toBe(0);
    const kept = listPhysical(env.env, out).backups;
    expect(kept.map((b) => b.id)).toEqual([backups[1]!.id, backups[2]!.id]);
    const keepFrom = parseSegmentName(kept[0]!.startWal)!.segno;
    expect(pruned.json.removedWal.length).toBeGreaterThan(0);
    for (const w of pruned.json.removedWal as { name: string }[]) expect(parseSegmentName(w.name.slice(0, 24))!.segno).toBeLessThan(keepFrom);
    expect(readArchive(archiveDir()).segments.some((s) => s.segno === keepFrom)).toBe(true);

    // The oldest kept backup, recovered to just after it ended (before the third backup): PITRF is not there yet.
    const symbolsAtOldestKept = await symbols();
    const target = new Date(Date.parse(kept[0]!.stopTime) + 10);
    expect(target.getTime()).toBeLessThan(Date.parse(third.manifest.postgres.stopTime));
    const restored = await restore(["--to", target.toISOString()]);
    expect(restored.code, restored.stderr).toBe(0);
    expect(restored.json.backup.id).toBe(kept[0]!.id);
    expect(await symbols()).toEqual(symbolsAtOldestKept.filter((s) => s !== "PITRF" && s !== "PITRG"));
  }, 300_000);

  /** A segment strictly inside the chain of the newest backup (not its first, not the newest). */
  function middleSegment(): string {
    const [newest] = listPhysical(env.env, out).backups.slice(-1);
    const start = parseSegmentName(newest!.startWal)!.segno;
    const archive = readArchive(archiveDir());
    // Only the segments recovery reads: earlier restores left abandoned timelines' segments beside them.
    const onPath = segmentsOnPath(archive, latestTimeline(archive, newest!.timeline, parseLsn(newest!.startLsn)));
    // A segment that holds a timeline switch is on two timelines, and recovery may read either:
    // take one that only the newest timeline has, with more WAL after it.
    const segments = onPath.filter((s) => s.segno > start && onPath.filter((o) => o.segno === s.segno).length === 1);
    expect(segments.length).toBeGreaterThanOrEqual(2);
    return path.join(archiveDir(), segments.at(-2)!.name);
  }
});

function flipByte(file: string, offset: number): void {
  const fd = openSync(file, "r+");
  try {
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, offset);
    b[0] = b[0]! ^ 0xff;
    writeSync(fd, b, 0, 1, offset);
  } finally {
    closeSync(fd);
  }
}
