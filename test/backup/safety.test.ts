/**
 * What restore refuses, and what a failed or killed run leaves behind, on real embedded servers.
 * Every refusal names the file or the reason, exits non-zero, and leaves the target exactly as it
 * was (checked by fingerprint: row checksums and every Redis key).
 *
 * pg_dump 16+ comes from the offline image on these machines (Debian 12 ships 15): describeDocker.
 */
import "../support/docker.js";
import { execFile, spawn } from "node:child_process";
import { promisify } from "node:util";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { gunzipSync, gzipSync } from "node:zlib";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { backupId, hashFile } from "../../lib/backup/files.js";
import { MANIFEST_FILE, manifestText, parseManifest, sealManifest, type Manifest } from "../../lib/backup/manifest.js";
import { BackupVerificationError, verifyBackup } from "../../lib/backup/verify.js";
import { restoreEnvironment } from "../../lib/backup/restore.js";
import { PROJECT_DIR } from "../../lib/spec/load.js";
import { EXIT } from "../../lib/errors.js";
import { withPg } from "../../lib/db/clients.js";
import { fingerprint, seedSample, type Fingerprint } from "../support/backup.js";
import { describeDocker, dockerBinary, requireOfflineImages } from "../support/docker.js";
import { PGTOOL_LABEL } from "../../lib/pgtools/resolve.js";
import { runCli, useEphemeralEnvironment } from "../support/embedded.js";

const run = promisify(execFile);

describeDocker("backup and restore: refusals and failures leave everything as it was", () => {
  const env = useEphemeralEnvironment();
  const work = mkdtempSync(path.join(os.tmpdir(), "cpi-backup-safety-"));
  const out = path.join(work, "backups");
  let good: string;
  let before: Fingerprint;

  /** A copy of the good backup to damage. */
  const copy = (name: string) => {
    const dir = path.join(work, name);
    cpSync(good, dir, { recursive: true });
    return dir;
  };
  const readManifest = (dir: string) => parseManifest(readFileSync(path.join(dir, MANIFEST_FILE), "utf8")).manifest!;
  /** Rewrites a manifest with a valid checksum (what a newer toolkit, or a careful forger, would write). */
  const reseal = (dir: string, change: (m: Manifest) => Manifest) => {
    const { checksum: _old, ...body } = change(readManifest(dir));
    writeFileSync(path.join(dir, MANIFEST_FILE), manifestText(sealManifest(body)), { mode: 0o600 });
  };
  const expectUntouched = async () => expect(await fingerprint(env().connections)).toEqual(before);

  beforeAll(async () => {
    await requireOfflineImages();
    await seedSample(env().connections, 1500);
    before = await fingerprint(env().connections);
    const made = await runCli("backup", ["--env", env().env, "--out", out, "--format", "sql", "--json"]);
    expect(made.code, made.stderr).toBe(0);
    good = made.json.dir;
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it("--from ID and --from latest name a backup in the repository (--out): checked like a folder; an unknown id is refused naming the folder", async () => {
    const id = path.basename(good);
    for (const from of [id, "latest"]) {
      const check = await runCli("restore", ["--env", env().env, "--out", out, "--from", from, "--check", "--json"]);
      expect(check.code, check.stderr).toBe(0);
      expect(check.json).toMatchObject({ ok: true, location: good, manifest: { id } });
    }
    const unknown = await runCli("restore", ["--env", env().env, "--out", out, "--from", "20990101T000000Z", "--yes"]);
    expect(unknown.code).toBe(EXIT.USAGE);
    expect(unknown.stderr).toContain(`there is no backup 20990101T000000Z in ${out}`);
    await expectUntouched();
  });

  it("a flipped byte in the dump: --check reports it (exit 1), restore refuses it (exit 2) naming the file", async () => {
    const dir = copy("flipped");
    const file = path.join(dir, "postgres.sql.gz");
    const bytes = readFileSync(file);
    const at = Math.floor(bytes.length / 2);
    bytes[at] = bytes[at]! ^ 0x01;
    writeFileSync(file, bytes);
    const check = await runCli("restore", ["--from", dir, "--check", "--json"]);
    expect(check.code).toBe(1);
    expect(check.json.problems).toEqual(["postgres.sql.gz does not match its sha256 (changed or damaged content)"]);
    const restore = await runCli("restore", ["--env", env().env, "--from", dir, "--yes"]);
    expect(restore.code).toBe(2);
    expect(restore.stderr).toContain("postgres.sql.gz does not match its sha256");
    await expectUntouched();
  });

  it("a truncated gzip, a missing file, a malformed or missing manifest: each refused, naming the file", async () => {
    const problems = async (dir: string) => {
      const error = await verifyBackup(dir).catch((e) => e);
      expect(error).toBeInstanceOf(BackupVerificationError);
      return (error as BackupVerificationError).problems.join("; ");
    };
    const truncated = copy("truncated");
    const gz = path.join(truncated, "postgres.sql.gz");
    truncateSync(gz, Math.floor(readFileSync(gz).length / 2));
    expect(await problems(truncated)).toMatch(/^postgres\.sql\.gz is \d+ bytes, the manifest says \d+ \(truncated\)$/);

    const missing = copy("missing");
    rmSync(path.join(missing, "redis.rdb"));
    expect(await problems(missing)).toBe("missing file redis.rdb");

    const malformed = copy("malformed");
    writeFileSync(path.join(malformed, MANIFEST_FILE), '{"kind": "crypto-prediction-infra/backup", "version": 1,');
    expect(await problems(malformed)).toMatch(/^manifest\.json is malformed: is not valid JSON/);

    const edited = copy("edited");
    writeFileSync(path.join(edited, MANIFEST_FILE), readFileSync(path.join(edited, MANIFEST_FILE), "utf8").replace(/"market_data": \d+/, '"market_data": 1'));
    expect(await problems(edited)).toMatch(/manifest\.json is malformed: checksum does not match/);

    const noManifest = copy("no-manifest");
    rmSync(path.join(noManifest, MANIFEST_FILE));
    expect(await problems(noManifest)).toBe("missing file manifest.json");

    const restore = await runCli("restore", ["--env", env().env, "--from", missing, "--yes", "--json"]);
    expect(restore.code).toBe(2);
    expect(restore.json.error.message).toContain("missing file redis.rdb");
    await expectUntouched();
  });

  it("a truncated gzip that its manifest vouches for: the load fails, the new database is dropped, the live data is intact", async () => {
    const dir = copy("truncated-resealed");
    const gz = path.join(dir, "postgres.sql.gz");
    truncateSync(gz, Math.floor(readFileSync(gz).length * 0.8));
    const entry = await hashFile(gz);
    reseal(dir, (m) => ({ ...m, files: m.files.map((f) => (f.name === entry.name ? entry : f)) }));
    const error = await restoreEnvironment({ env: env().env, from: dir, yes: true }).catch((e) => e);
    expect(String(error.message)).toMatch(/postgres\.sql\.gz is not a complete gzip stream/);
    await expectUntouched();
  });

  it("a manifest whose row counts the load does not match (resealed): the check fails (exit 1), the live data is intact", async () => {
    const dir = copy("miscounted");
    reseal(dir, (m) => ({ ...m, postgres: { ...m.postgres!, tables: { ...m.postgres!.tables, market_data: m.postgres!.tables.market_data! + 1 } } }));
    const expected = readManifest(dir).postgres!.tables.market_data!;
    const restore = await runCli("restore", ["--env", env().env, "--from", dir, "--yes", "--json"]);
    expect(restore.code, restore.stderr).toBe(1);
    expect(restore.stderr).toContain(`restore check failed: row counts differ from the manifest: market_data ${expected - 1} (backup: ${expected})`);
    await expectUntouched();
  });

  it("a dump whose rows the server refuses (resealed): the load fails naming the constraint, not the file, and the live data is intact", async () => {
    const dir = copy("refused-row");
    const gz = path.join(dir, "postgres.sql.gz");
    const sql = gunzipSync(readFileSync(gz)).toString("utf8");
    // The first market_data row gets negative prices (all four, so only ck_market_data_prices_nonnegative refuses it).
    const block = sql.indexOf("COPY public.market_data ");
    const rowStart = sql.indexOf("\n", block) + 1;
    const fields = sql.slice(rowStart, sql.indexOf("\n", rowStart)).split("\t");
    for (const price of [3, 4, 5, 6]) fields[price] = "-1.00000000";
    writeFileSync(gz, gzipSync(sql.slice(0, rowStart) + fields.join("\t") + sql.slice(sql.indexOf("\n", rowStart))));
    const entry = await hashFile(gz);
    reseal(dir, (m) => ({ ...m, files: m.files.map((f) => (f.name === entry.name ? entry : f)) }));
    const restore = await runCli("restore", ["--env", env().env, "--from", dir, "--yes", "--json"]);
    expect(restore.code, restore.stderr).toBe(2);
    expect(restore.stderr).toContain("ck_market_data_prices_nonnegative");
    expect(restore.stderr).not.toContain("not a complete gzip stream");
    await expectUntouched();
  });

  it.each([
    ["cut inside its table of contents (pg_restore fails before writing a line)", 200],
    ["cut inside the market_data rows", 0.8],
  ])("a custom archive that its manifest vouches for, %s: the load fails naming pg_restore, the live data is intact", async (_what, keep) => {
    const made = await runCli("backup", ["--env", env().env, "--format", "custom", "--out", path.join(work, `custom-${keep}`), "--json"]);
    expect(made.code, made.stderr).toBe(0);
    const dir = made.json.dir as string;
    const archive = path.join(dir, "postgres.dump");
    truncateSync(archive, keep < 1 ? Math.floor(readFileSync(archive).length * keep) : keep);
    const entry = await hashFile(archive);
    reseal(dir, (m) => ({ ...m, files: m.files.map((f) => (f.name === entry.name ? entry : f)) }));
    // As a command: a pg_restore that fails before opening its output pipe must not leave the
    // process waiting on that pipe (runCli's timeout fails the test).
    const restore = await runCli("restore", ["--env", env().env, "--from", dir, "--yes", "--json"], { timeoutMs: 60_000 });
    expect(restore.code, restore.stderr).toBe(2);
    expect(restore.stderr).toMatch(/pg_restore .*failed|ends inside a COPY block/);
    await expectUntouched();
  });

  it("refuses a non-empty target without --yes (exit 64), saying what it holds", async () => {
    const restore = await runCli("restore", ["--env", env().env, "--from", good]);
    expect(restore.code).toBe(64);
    expect(restore.stderr).toMatch(/is not empty \(rows in cryptocurrencies, market_data, predictions and \d+ Redis keys\)/);
    expect(restore.stderr).toContain("--yes");
    await expectUntouched();
  });

  it("a table restore that would break a foreign key commits nothing", async () => {
    const made = await runCli("backup", ["--env", env().env, "--out", path.join(work, "table"), "--table", "market_data", "--json"]);
    expect(made.code, made.stderr).toBe(0);
    // A newer candle, and a prediction validated against it: restoring the older market_data would orphan it.
    await withPg(env().connections.postgresConfig("owner"), async (c) => {
      const { rows } = await c.query(
        `INSERT INTO market_data (cryptocurrency_id, timestamp, open_price, high_price, low_price, close_price, volume)
         SELECT cryptocurrency_id, timestamp + interval '10 years', open_price, high_price, low_price, close_price, volume FROM market_data ORDER BY id LIMIT 1 RETURNING id, cryptocurrency_id`,
      );
      await c.query(
        `INSERT INTO predictions (cryptocurrency_id, prediction_timestamp, target_timestamp, predicted_price, model_name, model_version, market_data_id, actual_price, evaluated_at)
         VALUES ($1, now(), now() + interval '1 day', 1, 'LSTM-v1', '1.0.0', $2, 1, now())`,
        [rows[0].cryptocurrency_id, rows[0].id],
      );
    });
    const changed = await fingerprint(env().connections);
    const restored = await runCli("restore", ["--env", env().env, "--from", made.json.dir, "--yes"]);
    expect(restored.code).toBe(2);
    expect(restored.stderr).toMatch(/restore check failed: rows of public\.predictions break foreign key fk_predictions_market_data/);
    expect(await fingerprint(env().connections)).toEqual(changed);
    // Back to the state the other tests expect.
    await withPg(env().connections.postgresConfig("owner"), async (c) => {
      await c.query("DELETE FROM predictions WHERE market_data_id IN (SELECT id FROM market_data WHERE timestamp > now() + interval '1 year')");
      await c.query("DELETE FROM market_data WHERE timestamp > now() + interval '1 year'");
    });
    expect(await fingerprint(env().connections)).toEqual(before);
  });

  it("refuses a backup from a newer schema (migration head unknown to this code)", async () => {
    const dir = copy("future");
    reseal(dir, (m) => ({ ...m, postgres: { ...m.postgres!, migrationHead: "1999999999999_from_the_future", migrations: [...m.postgres!.migrations, "1999999999999_from_the_future"] } }));
    const restore = await runCli("restore", ["--env", env().env, "--from", dir, "--yes"]);
    expect(restore.code).toBe(2);
    expect(restore.stderr).toMatch(/comes from a newer schema: its migration head 1999999999999_from_the_future is unknown to this code/);
    await expectUntouched();
  });

  it("a pg_dump older than the server is never run: the backup fails naming it and what to install, leaving nothing", async () => {
    // PG_BIN is an explicit choice: a 15 there is refused, not skipped (a `--version` fixture stands for Debian 12's client).
    const bin = path.join(work, "pg15-bin");
    mkdirSync(bin, { recursive: true });
    writeFileSync(path.join(bin, "pg_dump"), '#!/bin/sh\necho "pg_dump (PostgreSQL) 15.18"\n', { mode: 0o755 });
    const refusedOut = path.join(work, "refused");
    const made = await runCli("backup", ["--env", env().env, "--out", refusedOut, "--json"], { env: { PG_BIN: bin } });
    expect(made.code).toBe(2);
    expect(made.json.error.message).toMatch(/PG_BIN=.*pg15-bin: pg_dump 15\.18 cannot be used: older than 16 \(the server is PostgreSQL 16/);
    expect(made.json.error.hint).toMatch(/postgresql-client-17/);
    expect(readdirSync(refusedOut)).toEqual([]);
  });

  it("a killed backup leaves only a .partial folder, never a complete-looking one; --prune removes it", async () => {
    const killedOut = path.join(work, "killed");
    const child = spawn(path.join(PROJECT_DIR, "node_modules", ".bin", "tsx"), [path.join(PROJECT_DIR, "scripts", "backup.ts"), "--env", env().env, "--out", killedOut], {
      cwd: PROJECT_DIR,
      stdio: ["ignore", "ignore", "pipe"],
      detached: true, // its own process group: tsx runs the script in a child, and the kill must reach it
    });
    // pg_dump is about to start once the backup names it: kill the whole run then.
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("backup did not start within 60 s")), 60_000);
      child.stderr.on("data", (d: Buffer) => {
        if (d.toString().includes("postgres: pg_dump")) {
          clearTimeout(timer);
          process.kill(-child.pid!, "SIGKILL");
          resolve();
        }
      });
    });
    await new Promise((r) => child.once("close", r));
    // A docker client killed between creating and starting its container leaves it "created".
    const { stdout } = await run(dockerBinary(), ["ps", "-aq", "--filter", `label=${PGTOOL_LABEL}`, "--filter", "status=created"]);
    for (const id of stdout.split("\n").filter(Boolean)) await run(dockerBinary(), ["rm", "-f", id]);
    const left = readdirSync(killedOut);
    expect(left).toHaveLength(1);
    expect(left[0]).toMatch(/^\.partial-/);
    expect(existsSync(path.join(killedOut, left[0]!, MANIFEST_FILE))).toBe(false);
    const listed = await runCli("backup", ["list", "--env", env().env, "--out", killedOut, "--json"]);
    expect(listed.json).toMatchObject({ logical: [], incomplete: [{ location: path.join(killedOut, left[0]!), objects: 1 }] });
    const pruned = await runCli("backup", ["prune", "--env", env().env, "--out", killedOut, "--json"]);
    expect(pruned.code, pruned.stderr).toBe(0);
    expect(readdirSync(killedOut)).toEqual([]);
  });

  it("--prune keeps the newest backup per day (backup.keepDaily) and week; --dry-run deletes nothing", async () => {
    const root = path.join(work, "retention");
    const newest = readManifest(good);
    // Three more backups a few seconds earlier on the same UTC day as the real one.
    const older: string[] = [];
    for (const seconds of [1, 2, 3]) {
      const at = new Date(new Date(newest.startedAt).getTime() - seconds * 1000);
      if (at.toISOString().slice(0, 10) !== newest.startedAt.slice(0, 10)) continue; // just after midnight: fewer copies
      const id = backupId(at);
      cpSync(good, path.join(root, id), { recursive: true });
      reseal(path.join(root, id), (m) => ({ ...m, id, startedAt: at.toISOString(), completedAt: at.toISOString() }));
      older.push(id);
    }
    cpSync(good, path.join(root, newest.id), { recursive: true });
    const dry = await runCli("backup", ["prune", "--env", env().env, "--out", root, "--dry-run", "--json"]);
    expect(dry.code, dry.stderr).toBe(0);
    expect(dry.json.removed.map((r: { id: string }) => r.id).sort()).toEqual(older.sort());
    expect(readdirSync(root)).toHaveLength(older.length + 1);
    const real = await runCli("backup", ["prune", "--env", env().env, "--out", root, "--json"]);
    expect(real.code, real.stderr).toBe(0);
    expect(readdirSync(root)).toEqual([newest.id]);
  });
});
