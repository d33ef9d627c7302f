/**
 * A dump is data, and a restore swaps in only a database of this project (issue 14, items 1-2),
 * on a real embedded PostgreSQL 16 with the real psql and pg_restore the restore resolves:
 *
 * - a plain SQL file that creates no tables (or an empty migrations record, or a migration whose
 *   tables are missing) is refused before the swap: exit 1, naming what is missing, live rows intact;
 * - every psql meta-command in a dump (`\!`, `\o |cmd`, `\copy … program`, `\i`, `\connect`,
 *   `\setenv`, one mid-line, the dump's own `\unrestrict` mid-dump) is refused and never runs:
 *   each would create a marker file, which must not exist afterwards;
 * - server-side escapes are refused because the load runs as the schema owner (COPY … PROGRAM,
 *   LANGUAGE c, an extension that is not there), and what the owner could change outside the
 *   loaded database (DROP DATABASE of the live one, ALTER DATABASE … SET) is refused and put back;
 * - a meta-command-looking line inside a string is data (psql's own lexer decides): it loads.
 *
 * The guide's plain dump comes from pg_dump 17 (the offline image): a Docker suite.
 */
import "../support/docker.js";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { gzipSync } from "node:zlib";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, expect, it } from "vitest";
import { withPg } from "../../lib/db/clients.js";
import { knownMigrations } from "../../lib/db/migrate.js";
import { OFFLINE_IMAGES } from "../../lib/engines/docker/images.js";
import { fingerprint, seedSample, type Fingerprint } from "../support/backup.js";
import { describeBackups, dockerBinary, requireOfflineImages } from "../support/docker.js";
import { runCli, useEphemeralEnvironment } from "../support/embedded.js";

const run = promisify(execFile);

describeBackups("restore: only a sound database of this project is swapped in, and a dump runs no command", () => {
  const env = useEphemeralEnvironment();
  const work = mkdtempSync(path.join(os.tmpdir(), "cpi-dump-safety-"));
  const marker = path.join(work, "marker");
  let guideDump: string;
  let before: Fingerprint;

  const write = (name: string, text: string) => {
    const file = path.join(work, name);
    writeFileSync(file, text);
    return file;
  };
  /** The guide's dump with `lines` inserted after its first COPY block (mid-dump, past the preamble). */
  const withLines = (lines: string) => {
    const at = guideDump.indexOf("\n\\.\n") + 4;
    return guideDump.slice(0, at) + lines + "\n" + guideDump.slice(at);
  };
  const sideDatabases = () =>
    withPg(env().connections.postgresConfig("admin", "postgres"), async (c) => {
      const { rows } = await c.query("SELECT datname FROM pg_database WHERE datname LIKE '%\\_\\_restore\\_%' OR datname LIKE '%\\_\\_old\\_%'");
      return rows.map((r: { datname: string }) => r.datname);
    });
  const expectUntouched = async () => {
    expect(await fingerprint(env().connections)).toEqual(before);
    expect(await sideDatabases()).toEqual([]);
  };

  beforeAll(async () => {
    await requireOfflineImages();
    await seedSample(env().connections, 120);
    before = await fingerprint(env().connections);
    expect(Object.values(before.postgres).reduce((n, t) => n + t.rows, 0)).toBeGreaterThan(0);
    // The guide's command, outside the toolkit: pg_dump -U crypto_user crypto_prediction_db > backup.sql
    const { spec, connections } = env();
    const { stdout } = await run(dockerBinary(), ["run", "--rm", "--network", "host", "--log-driver", "none", "-e", "PGPASSWORD", "--entrypoint", "pg_dump", OFFLINE_IMAGES.postgres, "-h", "127.0.0.1", "-p", String(spec.postgres.port), "-U", spec.postgres.user, spec.postgres.database], {
      env: { ...process.env, PGPASSWORD: connections.credentials.postgres.ownerPassword },
      maxBuffer: 256 * 1024 * 1024,
    });
    guideDump = stdout;
    expect(guideDump).toMatch(/^\\restrict \w+$/m);
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it("a plain SQL file that creates no tables is refused before the swap (exit 1), naming what is missing; the live rows are intact", async () => {
    const file = write("x.sql", "-- not a dump of this project\nSELECT 1;\n");
    const restore = await runCli("restore", ["--env", env().env, "--from", file, "--yes", "--json"]);
    expect(restore.code, restore.stderr).toBe(1);
    expect(restore.json.error.message).toMatch(/not a database of this project: it has no pgmigrations table/);
    await expectUntouched();
  });

  it("an empty migrations record, migrations that are not this code's first ones, or a migration's missing table: each refused (exit 1)", async () => {
    const [first, second] = knownMigrations();
    const table = "CREATE TABLE public.pgmigrations (id serial PRIMARY KEY, name varchar(255) NOT NULL, run_on timestamp NOT NULL);\n";
    const cases: [string, string, RegExp][] = [
      ["empty-record.sql", table, /its pgmigrations table records no migration/],
      ["not-a-prefix.sql", `${table}INSERT INTO public.pgmigrations (name, run_on) VALUES ('${second}', now());\n`, new RegExp(`are not the first 1 of this code's \\(${first}\\)`)],
      ["missing-table.sql", `${table}INSERT INTO public.pgmigrations (name, run_on) VALUES ('${first}', now());\n`, new RegExp(`table\\(s\\) cryptocurrencies that migration ${first} makes are missing`)],
    ];
    for (const [name, sql, message] of cases) {
      const restore = await runCli("restore", ["--env", env().env, "--from", write(name, sql), "--yes", "--json"]);
      expect(restore.code, `${name}: ${restore.stderr}`).toBe(1);
      expect(restore.json.error.message).toMatch(message);
    }
    await expectUntouched();
  }, 240_000);

  it.each([
    ["\\! (shell)", `\\! touch MARKER`],
    ["\\o |cmd (output to a pipe)", `\\o |touch MARKER\nSELECT 1;`],
    ["\\copy … from program", `\\copy public.cryptocurrencies (symbol, name) from program 'touch MARKER'`],
    ["\\i (include a file)", `\\i INCLUDE`],
    ["\\connect (another database)", `\\connect postgres\nCREATE TABLE public.made_after_connect ();`],
    ["\\setenv", `\\setenv PAGER 'touch MARKER'`],
    ["a meta-command mid-line", `SELECT 1 \\! touch MARKER`],
    ["the dump's own \\unrestrict mid-dump, then \\!", `\\unrestrict DUMPKEY\n\\! touch MARKER`],
  ])("a dump with %s is refused (exit 2), nothing runs, the live data is untouched", async (_what, lines) => {
    rmSync(marker, { force: true });
    const include = write("include.sql", `\\! touch ${marker}\n`);
    const dumpKey = /^\\restrict (\w+)$/m.exec(guideDump)![1]!;
    const file = write("meta.sql", withLines(lines.replaceAll("MARKER", marker).replaceAll("INCLUDE", include).replaceAll("DUMPKEY", dumpKey)));
    const restore = await runCli("restore", ["--env", env().env, "--from", file, "--yes", "--json"]);
    expect(restore.code, restore.stderr).toBe(2);
    expect(restore.json.error.message).toMatch(/contains a psql meta-command .*a dump is data/);
    expect(existsSync(marker)).toBe(false);
    await expectUntouched();
  }, 120_000);

  it("the same in a .sql.gz, and in a single-table restore: refused, nothing runs", async () => {
    rmSync(marker, { force: true });
    const gz = path.join(work, "meta.sql.gz");
    writeFileSync(gz, gzipSync(withLines(`\\! touch ${marker}`)));
    const whole = await runCli("restore", ["--env", env().env, "--from", gz, "--yes", "--json"]);
    expect(whole.code, whole.stderr).toBe(2);
    expect(whole.json.error.message).toMatch(/contains a psql meta-command/);
    // A single-table restore keeps only the table's data from the dump; a meta-command in its
    // preamble (before the first statement) would otherwise reach psql.
    const preamble = guideDump.replace("SET statement_timeout = 0;", `SET statement_timeout = 0; \\! touch ${marker}`);
    const table = await runCli("restore", ["--env", env().env, "--from", write("meta-table.sql", preamble), "--table", "market_data", "--yes", "--json"]);
    expect(table.code, table.stderr).toBe(2);
    expect(table.json.error.message).toMatch(/contains a psql meta-command/);
    expect(existsSync(marker)).toBe(false);
    await expectUntouched();
  }, 240_000);

  it("server-side escapes are refused by the server (the load runs as the schema owner, not a superuser)", async () => {
    rmSync(marker, { force: true });
    const cases: [string, RegExp][] = [
      [`COPY (SELECT 1) TO PROGRAM 'touch ${marker}';`, /pg_execute_server_program/],
      [`CREATE FUNCTION public.sys(cstring) RETURNS int AS 'libc.so.6', 'system' LANGUAGE c;`, /permission denied for language c/],
      [`CREATE EXTENSION IF NOT EXISTS cpi_not_installed;`, /extension "cpi_not_installed" is not available|could not open extension control file/],
      [`COPY public.cryptocurrencies (symbol, name) FROM '/etc/passwd';`, /pg_read_server_files/],
    ];
    for (const [sql, message] of cases) {
      const restore = await runCli("restore", ["--env", env().env, "--from", write("escape.sql", withLines(sql)), "--yes", "--json"]);
      expect(restore.code, `${sql}: ${restore.stderr}`).toBe(2);
      expect(restore.json.error.message).toMatch(message);
    }
    expect(existsSync(marker)).toBe(false);
    await expectUntouched();
  }, 240_000);

  it("what the owner could change outside the loaded database: DROP DATABASE of the live one fails, ALTER DATABASE … SET is refused and put back", async () => {
    const { database } = env().spec.postgres;
    const settings = () => withPg(env().connections.postgresConfig("admin", "postgres"), async (c) => (await c.query("SELECT coalesce(json_agg(s.setconfig ORDER BY s.setdatabase, s.setrole), '[]')::text AS s FROM pg_db_role_setting s WHERE s.setdatabase = (SELECT oid FROM pg_database WHERE datname = $1) OR s.setrole = $2::regrole", [database, env().spec.postgres.user])).rows[0].s);
    const settingsBefore = await settings();
    const drop = await runCli("restore", ["--env", env().env, "--from", write("drop.sql", withLines(`DROP DATABASE ${database} WITH (FORCE);`)), "--yes", "--json"]);
    expect(drop.code, drop.stderr).toBe(2);
    expect(drop.json.error.message).toMatch(/permission denied to terminate process|is being accessed by other users/);
    const alter = await runCli("restore", ["--env", env().env, "--from", write("alter.sql", withLines(`ALTER DATABASE ${database} SET default_transaction_read_only = on;\nALTER ROLE CURRENT_USER SET work_mem = '64kB';`)), "--yes", "--json"]);
    expect(alter.code, alter.stderr).toBe(1);
    expect(alter.json.error.message).toMatch(/changed what lies outside the database it loads into: settings .*; put back as it was/);
    expect(await settings()).toBe(settingsBefore);
    await withPg(env().connections.postgresConfig("owner"), async (c) => expect((await c.query("SHOW work_mem")).rows[0].work_mem).not.toBe("64kB"));
    await expectUntouched();
  }, 240_000);

  it("a line that looks like a meta-command inside a string is data: the guide's dump with such a comment loads, and nothing runs", async () => {
    rmSync(marker, { force: true });
    // psql's own lexer tells a string from a command: the comment text holds a line `\! touch …`.
    const file = write("string.sql", withLines(`COMMENT ON TABLE public.market_data IS E'candles\\n\\\\! touch ${marker}\\n';`));
    expect(readFileSync(file, "utf8")).toContain(`\\\\! touch ${marker}`);
    const restore = await runCli("restore", ["--env", env().env, "--from", file, "--yes", "--json"]);
    expect(restore.code, restore.stderr).toBe(0);
    expect(existsSync(marker)).toBe(false);
    const comment = await withPg(env().connections.postgresConfig("owner"), async (c) => (await c.query("SELECT obj_description('public.market_data'::regclass) AS c")).rows[0].c);
    expect(comment).toBe(`candles\n\\! touch ${marker}\n`);
    expect((await fingerprint(env().connections)).postgres).toEqual(before.postgres);
  }, 120_000);

  it("a custom archive is loaded by pg_restore over a connection: a meta-command in its contents is SQL text, never run", async () => {
    rmSync(marker, { force: true });
    await withPg(env().connections.postgresConfig("owner"), (c) => c.query(`COMMENT ON TABLE public.predictions IS ${"E'x\\n\\\\! touch " + marker + "\\n'"}`));
    const made = await runCli("backup", ["--env", env().env, "--out", path.join(work, "custom"), "--json"]);
    expect(made.code, made.stderr).toBe(0);
    expect(made.json.manifest.postgres.format).toBe("custom");
    const restore = await runCli("restore", ["--env", env().env, "--from", made.json.dir, "--yes", "--json"]);
    expect(restore.code, restore.stderr).toBe(0);
    expect(existsSync(marker)).toBe(false);
    await withPg(env().connections.postgresConfig("owner"), (c) => c.query("COMMENT ON TABLE public.predictions IS NULL"));
    expect((await fingerprint(env().connections)).postgres).toEqual(before.postgres);
  }, 180_000);
});
