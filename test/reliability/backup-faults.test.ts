/**
 * Bad input, part 4: backups that must not be restored. A real backup of a filled environment
 * is copied and damaged (manifest missing, not JSON, edited; a dump flipped or cut short; the RDB
 * gone), or re-sealed as if made by a newer toolkit (a newer schema, a newer PostgreSQL major).
 * `npm run restore` refuses each with one message naming the file or field, and the environment
 * keeps its data, including what was written after the backup. `--check` reports the damage
 * as a finding (exit 1).
 */
import { cpSync, mkdtempSync, readFileSync, rmSync, truncateSync, statSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EXIT } from "../../lib/errors.js";
import { manifestText, parseManifest, sealManifest } from "../../lib/backup/manifest.js";
import { backupsPossible, describeBackups } from "../support/docker.js";
import { useEphemeralEnvironment } from "../support/embedded.js";
import { fillForBackup, runScript } from "../support/commands.js";

const environment = useEphemeralEnvironment();
let work: string;
let backupDir: string;
let before: Awaited<ReturnType<typeof dataState>>;

/** What the environment holds: counts, and the markers written after the backup. */
async function dataState() {
  const env = environment();
  const client = new pg.Client(env.connections.postgresConfig("readonly"));
  await client.connect();
  const { rows } = await client.query(
    "SELECT (SELECT count(*) FROM market_data)::int AS candles, (SELECT count(*) FROM cryptocurrencies)::int AS coins, EXISTS (SELECT 1 FROM cryptocurrencies WHERE symbol = 'AFTER') AS after",
  );
  await client.end();
  const redis = new Redis({ ...env.connections.redisOptions("admin"), maxRetriesPerRequest: 1 });
  const state = { ...rows[0], redisKeys: await redis.dbsize(), redisAfter: await redis.get("after:backup:1:marker") };
  redis.disconnect();
  return state;
}

beforeAll(async () => {
  if (!backupsPossible) return;
  const env = environment();
  await fillForBackup(env.connections, 5_000);
  work = mkdtempSync(path.join(os.tmpdir(), "cpi-rel-backup-"));
  const made = await runScript("backup", ["--env", env.env, "--out", path.join(work, "backups"), "--format", "sql", "--json"]);
  expect(made.code, made.stderr).toBe(0);
  backupDir = made.json.dir;
  // Written after the backup: a refused restore must leave it in place.
  const client = new pg.Client(env.connections.postgresConfig("app"));
  await client.connect();
  await client.query("INSERT INTO cryptocurrencies (symbol, name) VALUES ('AFTER', 'written after the backup')");
  await client.end();
  const redis = new Redis({ ...env.connections.redisOptions("app"), maxRetriesPerRequest: 1 });
  await redis.set("after:backup:1:marker", "kept");
  redis.disconnect();
  before = await dataState();
  expect(before.after).toBe(true);
}, 120_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

/** A copy of the backup, damaged by `damage(dir)`. */
function damagedCopy(name: string, damage: (dir: string) => void): string {
  const dir = path.join(work, name);
  cpSync(backupDir, dir, { recursive: true });
  damage(dir);
  return dir;
}

function resealed(dir: string, edit: (body: any) => void): void {
  const { manifest, problems } = parseManifest(readFileSync(path.join(dir, "manifest.json"), "utf8"));
  expect(problems).toEqual([]);
  const { checksum: _checksum, ...body } = manifest!;
  edit(body);
  writeFileSync(path.join(dir, "manifest.json"), manifestText(sealManifest(body)));
}

function flipByteInTheMiddle(file: string): void {
  const bytes = readFileSync(file);
  const at = Math.floor(bytes.length / 2);
  bytes[at] = bytes[at]! ^ 0xff;
  writeFileSync(file, bytes);
}

interface BadBackup {
  title: string;
  make: () => string;
  code: number;
  says: RegExp[];
}

const BAD_BACKUPS: BadBackup[] = [
  { title: "manifest.json missing", make: () => damagedCopy("no-manifest", (d) => rmSync(path.join(d, "manifest.json"))), code: EXIT.ERROR, says: [/failed verification: missing file manifest\.json/] },
  { title: "manifest.json not JSON", make: () => damagedCopy("not-json", (d) => writeFileSync(path.join(d, "manifest.json"), '{"kind": ')), code: EXIT.ERROR, says: [/manifest\.json is malformed/] },
  { title: "manifest.json edited (not re-sealed)", make: () => damagedCopy("edited", (d) => writeFileSync(path.join(d, "manifest.json"), readFileSync(path.join(d, "manifest.json"), "utf8").replace(/"keys": \d+/, '"keys": 1'))), code: EXIT.ERROR, says: [/manifest\.json is malformed: checksum does not match/] },
  { title: "dump with a flipped byte", make: () => damagedCopy("flipped", (d) => flipByteInTheMiddle(path.join(d, "postgres.sql.gz"))), code: EXIT.ERROR, says: [/postgres\.sql\.gz/, /sha256/] },
  { title: "dump cut short", make: () => damagedCopy("truncated", (d) => truncateSync(path.join(d, "postgres.sql.gz"), Math.floor(statSync(path.join(d, "postgres.sql.gz")).size / 2))), code: EXIT.ERROR, says: [/postgres\.sql\.gz/] },
  { title: "Redis RDB missing", make: () => damagedCopy("no-rdb", (d) => rmSync(path.join(d, "redis.rdb"))), code: EXIT.ERROR, says: [/redis\.rdb/] },
  {
    title: "backup from a newer schema (sealed by a newer toolkit)",
    make: () => damagedCopy("newer-schema", (d) => resealed(d, (b) => {
      b.postgres.migrationHead = "1999999999999_from_the_future";
      b.postgres.migrations.push("1999999999999_from_the_future");
    })),
    code: EXIT.ERROR,
    says: [/comes from a newer schema: its migration head 1999999999999_from_the_future is unknown/],
  },
  {
    title: "backup from a newer PostgreSQL major (17 into 16)",
    make: () => damagedCopy("newer-major", (d) => resealed(d, (b) => {
      b.postgres.serverMajor = 17;
      b.postgres.serverVersion = "17.2";
    })),
    code: EXIT.ERROR,
    says: [/comes from PostgreSQL 17; environment '[^']+' runs PostgreSQL 16/],
  },
  { title: "--from a folder that does not exist", make: () => path.join(work, "no-such-backup"), code: EXIT.USAGE, says: [/--from .*no-such-backup: no such backup folder or dump file/] },
];

describeBackups("npm run restore refuses a bad backup, naming what is wrong, and changes nothing", () => {
  it.each(BAD_BACKUPS.map((b) => [b.title, b] as const))("%s", async (_title, bad) => {
    const from = bad.make();
    const result = await runScript("restore", ["--env", environment().env, "--from", from, "--yes"]);
    expect(result.code, result.stderr).toBe(bad.code);
    expect(result.stderr.match(/^restore: error: /gm), result.stderr).toHaveLength(1);
    for (const says of bad.says) expect(result.stderr).toMatch(says);
    expect(await dataState()).toEqual(before);
  });
});

describeBackups("npm run restore, other refusals", () => {
  it("without --yes into an environment that holds data: exit 64 with the command to confirm", async () => {
    const result = await runScript("restore", ["--env", environment().env, "--from", backupDir]);
    expect(result.code, result.stderr).toBe(EXIT.USAGE);
    expect(result.stderr).toMatch(/is not empty \(rows in .*Redis keys\); the restore would replace that data/);
    expect(result.stderr).toContain("--yes");
    expect(await dataState()).toEqual(before);
  });

  it("--check reports a damaged backup as a finding (exit 1), naming the file", async () => {
    const from = damagedCopy("check-flipped", (d) => flipByteInTheMiddle(path.join(d, "redis.rdb")));
    const result = await runScript("restore", ["--from", from, "--check", "--json"]);
    expect(result.code, result.stderr).toBe(EXIT.PROBLEM);
    expect(result.json.ok).toBe(false);
    expect(result.json.problems.join(" ")).toContain("redis.rdb");
    const intact = await runScript("restore", ["--from", backupDir, "--check"]);
    expect(intact.code, intact.stderr).toBe(EXIT.OK);
  });
});
