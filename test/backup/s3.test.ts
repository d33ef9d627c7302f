/**
 * Backups through an S3 bucket (backup.repository) on a real S3-protocol server: s3rver on
 * 127.0.0.1, the endpoint and (dummy) credentials only in the commands' environment. Base
 * backups go up with their manifest last and leave no local copy; the WAL is pushed and the
 * local segments deleted only once confirmed; `restore --to` downloads what it needs and
 * recovers exactly the first batch, or everything; a replaced object, a missing WAL segment
 * and a backup without its manifest are refused naming the object, live data untouched; an
 * outage keeps the WAL here, fails verify, and the push after it uploads everything. No secret
 * in argv, output or object metadata. Logical backups (pg_dump 16 from the offline image) too.
 */
import "../support/docker.js";
import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync, rmSync, utimesSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { DeleteObjectCommand, GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { withPg, withRedis } from "../../lib/db/clients.js";
import { EmbeddedEnvironment, type StartedEmbeddedEnvironment } from "../../lib/engines/embedded/environment.js";
import { postmasterPid } from "../../lib/engines/embedded/postgres-server.js";
import { PROJECT_DIR } from "../../lib/spec/load.js";
import { SEGMENT_NAME } from "../../lib/backup/physical/wal.js";
import { damage, fingerprint, seedSample } from "../support/backup.js";
import { describeDocker, requireOfflineImages } from "../support/docker.js";
import { runCli, type CliRun } from "../support/embedded.js";
import { S3_TEST_SECRET, startHoldingProxy, startS3, type StartedS3 } from "../support/s3.js";
import { killGroup, startScript } from "../support/commands.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const PREFIX = "t";

/** The AWS secret and every password of the environment's credentials (each role's). */
function secretsOf(env: StartedEmbeddedEnvironment): string[] {
  const out: string[] = [S3_TEST_SECRET];
  const walk = (v: unknown, key = "") => {
    if (typeof v === "string" && /password/i.test(key)) out.push(v);
    else if (v && typeof v === "object") for (const [k, x] of Object.entries(v)) walk(x, k);
  };
  walk(env.connections.credentials);
  return out;
}

function bucketEnvironment(s3: StartedS3, overrides: Record<string, unknown> = {}) {
  return new EmbeddedEnvironment("dev").withEphemeral().withSpecOverrides({ backup: { keepBase: 2, repository: { url: `s3://${s3.bucket}/${PREFIX}`, region: "us-east-1", walPushSeconds: 10 }, ...overrides } });
}

async function listKeys(s3: StartedS3, prefix: string): Promise<string[]> {
  const r = await s3.client.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: prefix }));
  return (r.Contents ?? []).map((o) => o.Key!).sort();
}

async function getObject(s3: StartedS3, key: string): Promise<{ body: Buffer; metadata: Record<string, string> }> {
  const r = await s3.client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: key }));
  return { body: Buffer.from(await r.Body!.transformToByteArray()), metadata: r.Metadata ?? {} };
}

describe("S3 repository: base backups, WAL push and point-in-time recovery (embedded)", () => {
  let s3: StartedS3;
  let env: StartedEmbeddedEnvironment;
  const runs: CliRun[] = [];
  const cli = async (name: string, args: string[], timeoutMs = 180_000) => {
    const r = await runCli(name, args, { env: s3.env, timeoutMs });
    runs.push(r);
    return r;
  };
  const owner = <T>(sql: string) => withPg(env.connections.postgresConfig("owner"), async (c) => (await c.query(sql)).rows as T);
  const symbols = async () => (await owner<{ symbol: string }[]>("SELECT symbol FROM cryptocurrencies WHERE symbol LIKE 'S3%' ORDER BY symbol")).map((r) => r.symbol);
  const insert = (symbol: string) => owner(`INSERT INTO cryptocurrencies (symbol, name) VALUES ('${symbol}', 's3 test')`);
  const snapshot = async () => ({ symbols: await symbols(), pid: postmasterPid(env.paths) });
  const expectUntouched = async (before: { symbols: string[]; pid: number | undefined }) => {
    expect(await symbols()).toEqual(before.symbols);
    expect(postmasterPid(env.paths)).toBe(before.pid);
  };
  const envPrefix = () => `${PREFIX}/${env.env}`;
  const localSegments = () => readdirSync(env.paths.pgArchive).filter((n) => SEGMENT_NAME.test(n));
  const restore = (args: string[]) => cli("restore", ["--env", env.env, ...args, "--yes", "--json"]);
  let base: { id: string; location: string };

  beforeAll(async () => {
    s3 = await startS3();
    env = await bucketEnvironment(s3).start();
  }, 120_000);
  afterAll(async () => {
    // The environment's backup root in the project held only staging folders (the backups are in the bucket).
    if (env) rmSync(path.join(PROJECT_DIR, env.spec.backup.dir, env.env), { recursive: true, force: true });
    await env?.destroy();
    await s3?.destroy();
  });

  it("backup --physical uploads every file, the manifest last, removes the local copy and pushes the WAL", async () => {
    await withRedis(env.connections.redisOptions("admin"), (r) => r.set("s3:probe", "from-the-backup"));
    // Watch every process's argv while the backup runs: no password and no AWS secret may appear.
    const argv = new Set<string>();
    let watching = true;
    const watcher = (async () => {
      for (let i = 0; i < 20_000 && watching; i++) {
        for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
          try {
            argv.add(readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " "));
          } catch {
            // the process ended
          }
        }
        await sleep(20);
      }
    })();
    const made = await cli("backup", ["--env", env.env, "--physical", "--json"]);
    watching = false;
    await watcher;
    expect(made.code, made.stderr).toBe(0);
    base = { id: made.json.manifest.id, location: made.json.location };
    expect(base.location).toBe(`s3://${s3.bucket}/${envPrefix()}/backups/${base.id}/`);
    expect(await listKeys(s3, `${envPrefix()}/backups/`)).toEqual(["backup_manifest", "base.tar.zst", "physical.json", "redis.rdb"].map((f) => `${envPrefix()}/backups/${base.id}/${f}`));
    expect(made.json.upload.files.map((f: { name: string }) => f.name).at(-1)).toBe("physical.json");
    expect(existsSync(path.join(PROJECT_DIR, env.spec.backup.dir, env.env, base.id))).toBe(false);
    // Each object carries the manifest's SHA-256.
    for (const f of made.json.manifest.files as { name: string; sha256: string }[]) {
      const head = await s3.client.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: `${envPrefix()}/backups/${base.id}/${f.name}` }));
      expect(head.Metadata?.sha256).toBe(f.sha256);
    }
    // The WAL went up; what is confirmed there is gone here.
    expect((await listKeys(s3, `${envPrefix()}/wal/`)).length).toBeGreaterThan(0);
    expect(localSegments()).toEqual([]);
    const secrets = secretsOf(env);
    expect(secrets.length).toBeGreaterThanOrEqual(7);
    for (const line of argv) for (const s of secrets) expect(line, "a secret in a process's argv").not.toContain(s);

    const listed = await cli("backup", ["list", "--env", env.env, "--json"]);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.json.physical.map((b: { id: string }) => b.id)).toEqual([base.id]);
    expect(listed.json.incomplete).toEqual([]);
    expect(listed.json.localOnly).toEqual([]);
  }, 240_000);

  it("restore --to a time between two batches brings back exactly the first, --to latest both, and Redis from the backup", async () => {
    await insert("S3A");
    await sleep(1100);
    const between = new Date();
    await sleep(1100);
    await insert("S3B");
    await withRedis(env.connections.redisOptions("admin"), (r) => r.del("s3:probe"));

    const latest = await restore(["--to", "latest"]);
    expect(latest.code, latest.stderr).toBe(0);
    expect(await symbols()).toEqual(["S3A", "S3B"]);
    expect(latest.json.backup.id).toBe(base.id);
    expect(latest.json.walFetched).toBeGreaterThan(0);
    // Every WAL segment is 16 MiB: the download report counts at least those it fetched.
    expect(latest.json.download.bytes).toBeGreaterThanOrEqual(latest.json.walFetched * 16 * 1024 * 1024);
    expect(latest.json.download.seconds).toBeGreaterThan(0);
    expect(await withRedis(env.connections.redisOptions("admin"), (r) => r.get("s3:probe"))).toBe("from-the-backup");

    const toTime = await restore(["--to", between.toISOString()]);
    expect(toTime.code, toTime.stderr).toBe(0);
    expect(await symbols()).toEqual(["S3A"]);
    // The downloaded WAL is not left behind to be mistaken for a backlog.
    expect(localSegments().length).toBeLessThanOrEqual(2);
  }, 400_000);

  it("refuses a replaced object (bytes not its SHA-256), naming it; the live data is untouched", async () => {
    const key = `${envPrefix()}/backups/${base.id}/base.tar.zst`;
    const original = await getObject(s3, key);
    await s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: Buffer.concat([original.body.subarray(0, 1000), Buffer.from("not the backup")]), Metadata: original.metadata }));
    try {
      const before = await snapshot();
      const refused = await restore(["--to", "latest"]);
      expect(refused.code, refused.stderr).toBe(1);
      expect(refused.stderr).toContain(`s3://${s3.bucket}/${key}: SHA-256 mismatch`);
      await expectUntouched(before);
    } finally {
      await s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: original.body, Metadata: original.metadata }));
    }
  }, 240_000);

  it("refuses a WAL segment missing from the bucket, naming the object; the live data is untouched", async () => {
    const startWal = (await cli("backup", ["list", "--env", env.env, "--json"])).json.physical[0].startWal as string;
    const key = `${envPrefix()}/wal/${startWal}`;
    const original = await getObject(s3, key);
    await s3.client.send(new DeleteObjectCommand({ Bucket: s3.bucket, Key: key }));
    try {
      const before = await snapshot();
      const refused = await restore(["--to", "latest"]);
      expect(refused.code, refused.stderr).toBe(1);
      expect(refused.stderr).toContain(`s3://${s3.bucket}/${key}: no such object`);
      await expectUntouched(before);
    } finally {
      await s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: original.body, Metadata: original.metadata }));
    }
  }, 240_000);

  it("an upload killed before its manifest: not listed as complete, refused naming the manifest, swept by --prune", async () => {
    // What a kill -9 mid-upload leaves: parts, no manifest, written by a process that is gone.
    const dead = spawn(process.execPath, ["-e", ""]);
    await new Promise((r) => dead.on("exit", r));
    const id = "20200101T000000Z-base";
    for (const f of ["base.tar.zst", "backup_manifest"]) {
      await s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: `${envPrefix()}/backups/${id}/${f}`, Body: "part", Metadata: { sha256: "0".repeat(64), uploader: `${os.hostname()}:${dead.pid}` } }));
    }
    const listed = await cli("backup", ["list", "--env", env.env, "--json"]);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.json.physical.map((b: { id: string }) => b.id)).toEqual([base.id]);
    expect(listed.json.incomplete).toMatchObject([{ id, objects: 2 }]);
    const before = await snapshot();
    const refused = await restore(["--from", id]);
    expect(refused.code, refused.stderr).toBe(1);
    expect(refused.stderr).toContain(`s3://${s3.bucket}/${envPrefix()}/backups/${id}/manifest.json: no such object: backup ${id} is incomplete`);
    await expectUntouched(before);

    const pruned = await cli("backup", ["prune", "--env", env.env, "--json"]);
    expect(pruned.code, pruned.stderr).toBe(0);
    expect(pruned.json.removedIncomplete).toMatchObject([{ id, objects: 2 }]);
    expect(pruned.json.keptBase).toEqual([base.id]);
    expect(await listKeys(s3, `${envPrefix()}/backups/${id}/`)).toEqual([]);
    expect((await listKeys(s3, `${envPrefix()}/backups/${base.id}/`)).length).toBe(4);
  }, 120_000);

  it("a backup SIGKILLed mid-upload (its base.tar.zst stored, backup_manifest in flight): no complete backup is listed, restore refuses it, --prune sweeps its parts", async () => {
    // The proxy holds the PUT of backup_manifest: the kill lands at exactly that point of the upload.
    const proxy = await startHoldingProxy(s3.port, /^PUT \S*\/backup_manifest[? ]/);
    try {
      const run = startScript("backup", ["--env", env.env, "--physical"], { env: { ...s3.env, AWS_ENDPOINT_URL_S3: proxy.endpoint } });
      await Promise.race([proxy.held, run.done.then((r) => Promise.reject(new Error(`the backup ended before its upload was held: ${r.code} ${r.stderr}`)))]);
      killGroup(run.child, "SIGKILL");
      await run.done;
      const id = /backups\/([^/]+)\/backup_manifest/.exec(run.stderr())![1]!;
      const keys = await listKeys(s3, `${envPrefix()}/backups/${id}/`);
      expect(keys).toEqual([`${envPrefix()}/backups/${id}/base.tar.zst`]);

      const listed = await cli("backup", ["list", "--env", env.env, "--json"]);
      expect(listed.code, listed.stderr).toBe(0);
      expect(listed.json.physical.map((b: { id: string }) => b.id)).not.toContain(id);
      expect(listed.json.incomplete).toMatchObject([{ id, objects: 1 }]);
      // The backup itself is not lost: its local copy stays until an upload completes.
      const local = (listed.json.localOnly as string[]).filter((dir) => path.basename(dir) === id);
      expect(local).toHaveLength(1);
      const before = await snapshot();
      const refused = await restore(["--from", id]);
      expect(refused.code, refused.stderr).toBe(1);
      expect(refused.stderr).toContain(`backup ${id} is incomplete`);
      rmSync(local[0]!, { recursive: true, force: true });
      await expectUntouched(before);

      const pruned = await cli("backup", ["prune", "--env", env.env, "--json"]);
      expect(pruned.code, pruned.stderr).toBe(0);
      expect(pruned.json.removedIncomplete).toMatchObject([{ id, objects: 1 }]);
      expect(await listKeys(s3, `${envPrefix()}/backups/${id}/`)).toEqual([]);
    } finally {
      await proxy.close();
    }
  }, 180_000);

  it("a bucket outage: the push fails (exit 2), the WAL stays here, verify fails naming the backlog; after it, one push uploads everything", async () => {
    await s3.stop();
    try {
      await insert("S3C");
      const switched = await withPg(env.connections.postgresConfig("admin"), async (c) => (await c.query("SELECT pg_walfile_name(pg_switch_wal()) AS f")).rows[0].f as string);
      for (let i = 0; i < 300 && !localSegments().includes(switched); i++) await sleep(100);
      expect(localSegments()).toContain(switched);
      // A backup made during the outage stays here, whole, and the bucket gets no manifest for it.
      const kept = await cli("backup", ["--env", env.env, "--physical", "--json"]);
      expect(kept.code, kept.stderr).toBe(2);
      expect(kept.stderr).toMatch(/the backup is kept at \S+-base/);
      const failed = await cli("backup", ["push-wal", "--env", env.env, "--json"]);
      expect(failed.code, failed.stderr).toBe(2);
      expect(failed.stderr).toMatch(/stays in .* nothing is lost/);
      expect(localSegments()).toContain(switched);
      // Two push intervals later (10 s each) the backlog is a failing check.
      const old = new Date(Date.now() - 60_000);
      for (const n of localSegments()) utimesSync(path.join(env.paths.pgArchive, n), old, old);
      const verify = await cli("verify", ["--env", env.env, "--check", "db", "--json"]);
      expect(verify.code, verify.stderr).toBe(1);
      const push = verify.json.checks.find((c: { id: string }) => c.id === "db.archive.push");
      expect(push.status).toBe("fail");
      expect(push.detail).toMatch(new RegExp(`^WAL waiting to be pushed: ${localSegments().length} segments, [\\d.]+ MiB, oldest \\d+ s`));
      // monitor shows the same backlog as a WARN (exit 1).
      const monitor = await cli("monitor", ["--env", env.env, "--interval", "0", "--json"]);
      expect(monitor.code, monitor.stderr).toBe(1);
      expect(monitor.json.lines.find((l: { id: string }) => l.id === "postgres.wal_push_backlog")).toMatchObject({ status: "warn", value: expect.stringMatching(/^WAL waiting to be pushed: \d+ segments/) });
    } finally {
      await s3.restart();
    }
    const pushed = await cli("backup", ["push-wal", "--env", env.env, "--json"]);
    expect(pushed.code, pushed.stderr).toBe(0);
    expect(pushed.json.pushed.length).toBeGreaterThan(0);
    expect(localSegments()).toEqual([]);
    const verify = await cli("verify", ["--env", env.env, "--check", "db", "--json"]);
    expect(verify.json.checks.find((c: { id: string }) => c.id === "db.archive.push").status).toBe("ok");
    // s3rver keeps no versions and answers NotImplemented for encryption and public access: a warning, never the exit code.
    const bucket = verify.json.checks.find((c: { id: string }) => c.id === "db.backup.bucket");
    expect(bucket.status).toBe("warn");
    expect(bucket.detail).toMatch(/not versioned .*could not read default encryption: NotImplemented/);
    const others = verify.json.checks.filter((c: { id: string }) => c.id !== "db.backup.bucket").map((c: { status: string }) => c.status);
    expect(verify.code).toBe(others.includes("fail") ? 1 : others.includes("error") ? 2 : 0);
    const monitorAfter = await cli("monitor", ["--env", env.env, "--interval", "0", "--json"]);
    expect(monitorAfter.json.lines.find((l: { id: string }) => l.id === "postgres.wal_push_backlog").status).toBe("ok");
    const listed = await cli("backup", ["list", "--env", env.env, "--json"]);
    expect(listed.json.localOnly).toHaveLength(1);
    expect(listed.json.physical).toHaveLength(1);
    rmSync(listed.json.localOnly[0], { recursive: true, force: true });

    const latest = await restore(["--to", "latest"]);
    expect(latest.code, latest.stderr).toBe(0);
    expect(await symbols()).toEqual(["S3A", "S3C"]);
  }, 400_000);

  it("drill runs through the bucket: the scratch copy's base backup is uploaded, recovered from the bucket with its WAL, and its objects removed at the end", async () => {
    const before = await listKeys(s3, `${PREFIX}/`);
    const drill = await cli("drill", ["--env", env.env, "--rows", "2000", "--json"], 300_000);
    expect(drill.code, drill.stderr).toBe(0);
    expect(drill.json).toMatchObject({ status: "pass", method: "pitr" });
    const scratch = drill.json.subject.env as string;
    expect(drill.json.backup.dir).toBe(`s3://${s3.bucket}/${PREFIX}/${scratch}/backups/${drill.json.backup.id}/`);
    expect(drill.json.restore).toMatchObject({ backupId: drill.json.backup.id, isDrillBackup: true, tool: expect.stringContaining("from the bucket") });
    expect(drill.json.pitr.writesRecoveredAfterBackup).toBeGreaterThan(0);
    expect(drill.json.cleanup.removed).toContainEqual(expect.stringMatching(new RegExp(`^backups and WAL of ${scratch} in s3://${s3.bucket}/${PREFIX} `)));
    expect(await listKeys(s3, `${PREFIX}/${scratch}/`)).toEqual([]);
    expect(await listKeys(s3, `${PREFIX}/`)).toEqual(before);
  }, 300_000);

  it("--schedule prints the WAL push lines; no secret in any output or object metadata", async () => {
    const schedule = await cli("backup", ["schedule", "--env", env.env, "--json"]);
    expect(schedule.code, schedule.stderr).toBe(0);
    expect(schedule.json.push).toMatchObject({ everySeconds: 10 });
    expect(schedule.json.push.lines).toHaveLength(6);
    expect(schedule.json.push.lines[1]).toMatch(/^\* \* \* \* \* .*sleep 10 && npm run -s backup -- push-wal --env \S+ /);

    const secrets = secretsOf(env);
    for (const r of runs) for (const s of secrets) expect(r.stdout + r.stderr, "a secret in a command's output").not.toContain(s);
    for (const key of await listKeys(s3, `${PREFIX}/`)) {
      const head = await s3.client.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: key }));
      expect(Object.keys(head.Metadata ?? {}).filter((k) => !["sha256", "uploader", "archived-at"].includes(k)), key).toEqual([]);
      for (const s of secrets) expect(JSON.stringify(head.Metadata), key).not.toContain(s);
    }
  }, 60_000);
});

describeDocker("S3 repository: logical backups (pg_dump from the offline image, plain SQL as the guide makes it)", () => {
  let s3: StartedS3;
  let env: StartedEmbeddedEnvironment;
  const cli = (name: string, args: string[]) => runCli(name, args, { env: s3.env, timeoutMs: 180_000 });

  beforeAll(async () => {
    await requireOfflineImages();
    s3 = await startS3();
    env = await bucketEnvironment(s3).start();
    await seedSample(env.connections);
  }, 180_000);
  afterAll(async () => {
    // The environment's backup root in the project held only staging folders (the backups are in the bucket).
    if (env) rmSync(path.join(PROJECT_DIR, env.spec.backup.dir, env.env), { recursive: true, force: true });
    await env?.destroy();
    await s3?.destroy();
  });

  it("round trip through the bucket: backup, damage, restore --from latest gives back every row and key; --check verifies; a replaced object is refused", async () => {
    const original = await fingerprint(env.connections);
    const made = await cli("backup", ["--env", env.env, "--format", "sql", "--json"]);
    expect(made.code, made.stderr).toBe(0);
    const id = made.json.manifest.id as string;
    expect(made.json.location).toBe(`s3://${s3.bucket}/${PREFIX}/${env.env}/backups/${id}/`);
    expect(existsSync(path.join(PROJECT_DIR, env.spec.backup.dir, env.env, id))).toBe(false);
    const listed = await cli("backup", ["list", "--env", env.env, "--json"]);
    expect(listed.json.logical.map((b: { id: string }) => b.id)).toEqual([id]);

    const checked = await cli("restore", ["--env", env.env, "--from", id, "--check", "--json"]);
    expect(checked.code, checked.stderr).toBe(0);

    await damage(env.connections);
    const restored = await cli("restore", ["--env", env.env, "--from", "latest", "--yes", "--json"]);
    expect(restored.code, restored.stderr).toBe(0);
    expect(await fingerprint(env.connections)).toEqual(original);

    const key = `${PREFIX}/${env.env}/backups/${id}/${made.json.manifest.postgres.file}`;
    const head = await s3.client.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: key }));
    await s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: "damaged", Metadata: head.Metadata }));
    const refused = await cli("restore", ["--env", env.env, "--from", id, "--yes", "--json"]);
    expect(refused.code, refused.stderr).toBe(1);
    expect(refused.stderr).toContain(`s3://${s3.bucket}/${key}: SHA-256 mismatch`);
    expect(await fingerprint(env.connections)).toEqual(original);
  }, 400_000);
});
