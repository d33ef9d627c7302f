/**
 * The parts of backup/restore that need no server: the SQL stream filters, the manifest's
 * checksum, retention, the cron line, version rules, pg_restore's error filter, and the
 * pg_dump resolution order (with `--version` fixtures standing for installed client tools).
 */
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { text } from "node:stream/consumers";
import { afterAll, describe, expect, it } from "vitest";
import { manifestChecksum, parseManifest, sealManifest, manifestText, type ManifestBody } from "../../lib/backup/manifest.js";
import { archiveMinMajor, onlyKnownRestoreErrors } from "../../lib/backup/postgres-restore.js";
import { isoWeek, planRetention, scheduleLine, type BackupEntry } from "../../lib/backup/retention.js";
import { RestrictedDumpStream, TableDataFilter } from "../../lib/backup/sql-stream.js";
import { CliError, EXIT } from "../../lib/errors.js";
import { resolvePgTool } from "../../lib/pgtools/resolve.js";
import { parsePgVersion, psqlSupportsRestrict } from "../../lib/pgtools/version.js";
import { loadSpec, parseSpec } from "../../lib/spec/load.js";

const DUMP17 = [
  "--",
  "-- PostgreSQL database dump",
  "--",
  "",
  "\\restrict abcDEF123",
  "",
  "-- Dumped from database version 16.14",
  "-- Dumped by pg_dump version 17.12",
  "",
  "SET statement_timeout = 0;",
  "SET lock_timeout = 0;",
  "SET transaction_timeout = 0;",
  "SET client_encoding = 'UTF8';",
  "SELECT pg_catalog.set_config('search_path', '', false);",
  "",
  "ALTER SCHEMA public OWNER TO crypto_user;",
  "CREATE EXTENSION IF NOT EXISTS pg_stat_statements WITH SCHEMA public;",
  "COMMENT ON EXTENSION pg_stat_statements IS 'track planning and execution statistics of all SQL statements executed';",
  "",
  "CREATE TABLE public.notes (id integer, body text);",
  "CREATE TABLE public.other (id integer);",
  "",
  "--",
  "-- Data for Name: notes; Type: TABLE DATA; Schema: public; Owner: crypto_user",
  "--",
  "",
  "COPY public.notes (id, body) FROM stdin;",
  "1\tSET transaction_timeout = 0;",
  "2\tsecond row",
  "\\.",
  "",
  "-- Data for Name: other; Type: TABLE DATA; Schema: public; Owner: crypto_user",
  "COPY public.other (id) FROM stdin;",
  "7",
  "\\.",
  "",
  "-- Name: notes_id_seq; Type: SEQUENCE SET; Schema: public; Owner: crypto_user",
  "SELECT pg_catalog.setval('public.notes_id_seq', 2, true);",
  "-- Name: other_id_seq; Type: SEQUENCE SET; Schema: public; Owner: crypto_user",
  "SELECT pg_catalog.setval('public.other_id_seq', 7, true);",
  "ALTER TABLE ONLY public.notes ADD CONSTRAINT notes_pkey PRIMARY KEY (id);",
  "",
  "\\unrestrict abcDEF123",
  "",
].join("\n");

/** Feeds text in small, uneven chunks (lines split across chunks) through a transform. */
async function through(transform: NodeJS.ReadWriteStream, input: string, chunk = 7): Promise<string> {
  const pieces: Buffer[] = [];
  const bytes = Buffer.from(input);
  for (let i = 0; i < bytes.length; i += chunk) pieces.push(bytes.subarray(i, i + chunk));
  return text(Readable.from(pieces).pipe(transform as NodeJS.ReadWriteStream) as unknown as Readable);
}

describe("RestrictedDumpStream", () => {
  const KEY = "ourkey0123456789";
  const stream = (serverMajor = 16, presetExtensions = ["pg_stat_statements"]) => new RestrictedDumpStream({ serverMajor, key: KEY, presetExtensions });
  /** The dump as psql must get it: ours around it, its own \restrict lines and the dropped ones empty. */
  const expected = (dump: string, blank: string[]) => {
    let body = dump.replace("\\restrict abcDEF123\n", "\n").replace("\\unrestrict abcDEF123\n", "\n");
    for (const line of blank) body = body.replace(`${line}\n`, "\n");
    return `\\restrict ${KEY}\n${body}\n\\unrestrict ${KEY}\n`;
  };

  it("frames the dump with our key, blanks its own \\restrict / \\unrestrict, the known incompatible SET and the preset extension's comment", async () => {
    const filter = stream();
    const out = await through(filter, DUMP17);
    const comment = "COMMENT ON EXTENSION pg_stat_statements IS 'track planning and execution statistics of all SQL statements executed';";
    expect(out).toBe(expected(DUMP17, ["SET transaction_timeout = 0;", comment]));
    expect(filter.dropped).toEqual(["SET transaction_timeout = 0;", comment]);
    // The same text inside COPY data is data: it stays. Line numbers stay (blanks, not removals).
    expect(out).toContain("1\tSET transaction_timeout = 0;\n");
    const copyLine = (text: string) => text.split("\n").indexOf("COPY public.notes (id, body) FROM stdin;");
    expect(copyLine(out)).toBe(copyLine(DUMP17) + 1);
  });

  it("leaves the incompatible line for a server that knows it, and a comment on an extension the target does not have", async () => {
    const filter = stream(17, []);
    expect(await through(filter, DUMP17)).toBe(expected(DUMP17, []));
    expect(filter.dropped).toEqual([]);
  });

  it("does not touch a line that only resembles the known one", async () => {
    const input = DUMP17.replace("SET transaction_timeout = 0;", "SET transaction_timeout = 5;");
    expect(await through(stream(16, []), input)).toBe(expected(input, []));
  });

  it("keeps every other \\restrict / \\unrestrict (psql then refuses them): a second one, one mid-dump, one with another key, one followed by SQL", async () => {
    const cases = [
      DUMP17.replace("CREATE TABLE public.other", "\\unrestrict abcDEF123\n\\! id\nCREATE TABLE public.other"),
      DUMP17.replace("\\unrestrict abcDEF123", "\\unrestrict otherKEY"),
      DUMP17.replace("\\unrestrict abcDEF123\n", "\\unrestrict abcDEF123\n\\! id\n"),
      DUMP17.replace("SET statement_timeout = 0;", "\\restrict second\nSET statement_timeout = 0;"),
    ];
    for (const input of cases) {
      const out = await through(stream(), input);
      expect(out.startsWith(`\\restrict ${KEY}\n`)).toBe(true);
      expect(out.endsWith(`\n\\unrestrict ${KEY}\n`)).toBe(true);
      expect(out.match(/^\\(un)?restrict (?!ourkey)/gm)?.length ?? 0).toBeGreaterThan(0);
    }
  });

  it("a dump without \\restrict (an older pg_dump) is framed all the same; its text passes as is", async () => {
    const old = DUMP17.replace("\\restrict abcDEF123\n", "").replace("\\unrestrict abcDEF123\n", "");
    expect(await through(stream(17, []), old, 4096)).toBe(`\\restrict ${KEY}\n${old}\n\\unrestrict ${KEY}\n`);
  });
});

describe("archiveMinMajor", () => {
  const root = mkdtempSync(path.join(os.tmpdir(), "cpi-archive-"));
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  it("reads the archive version from a custom dump's header: 1.16 needs pg_restore 17, 1.15 16", () => {
    const file = (minor: number) => {
      const f = path.join(root, `v${minor}.dump`);
      writeFileSync(f, Buffer.concat([Buffer.from("PGDMP"), Buffer.from([1, minor, 0]), Buffer.alloc(32)]));
      return f;
    };
    expect(archiveMinMajor(file(16))).toBe(17);
    expect(archiveMinMajor(file(15))).toBe(16);
    expect(archiveMinMajor(file(14))).toBe(0);
  });
});

describe("TableDataFilter", () => {
  const make = () =>
    new TableDataFilter({
      tables: ["public.notes"],
      sequences: ["public.notes_id_seq"],
      serverMajor: 16,
      key: "tablekey",
      header: "BEGIN;\n",
      footer: (rows) => `-- rows ${[...rows].map(([t, n]) => `${t}=${n}`).join(",")}\nCOMMIT;\n`,
    });

  it("keeps the chosen table's COPY block and setval between header and footer, and no DDL or other data", async () => {
    const out = await through(make(), DUMP17);
    expect(out).toContain("BEGIN;\nCOPY public.notes (id, body) FROM stdin;\n1\tSET transaction_timeout = 0;\n2\tsecond row\n\\.\n");
    expect(out).toContain("SELECT pg_catalog.setval('public.notes_id_seq', 2, true);");
    expect(out).not.toContain("CREATE TABLE");
    expect(out).not.toContain("ALTER TABLE");
    expect(out).not.toContain("public.other");
    expect(out).not.toMatch(/^SET transaction_timeout/m);
    expect(out.trimEnd().endsWith("-- rows public.notes=2\nCOMMIT;\n\n\\unrestrict tablekey")).toBe(true);
    expect(out.startsWith("\\restrict tablekey\n")).toBe(true);
    expect(out).not.toContain("abcDEF123");
  });

  it("takes no COPY header from inside a function body: the table's rows come from its real block", async () => {
    const withFunction = DUMP17.replace(
      "CREATE TABLE",
      "CREATE FUNCTION public.f() RETURNS text LANGUAGE sql AS $$ SELECT '\nCOPY public.notes (id, body) FROM stdin;\n9\tnot a row\n'::text $$;\nCREATE TABLE",
    );
    const out = await through(make(), withFunction);
    expect(out).not.toContain("not a row");
    expect(out).toContain("BEGIN;\nCOPY public.notes (id, body) FROM stdin;\n1\tSET transaction_timeout = 0;\n2\tsecond row\n\\.\n");
    expect(out.trimEnd().endsWith("-- rows public.notes=2\nCOMMIT;\n\n\\unrestrict tablekey")).toBe(true);
  });

  it("refuses a dump that ends inside a COPY block, so no COMMIT is written", async () => {
    const cut = DUMP17.slice(0, DUMP17.indexOf("2\tsecond row"));
    await expect(through(make(), cut)).rejects.toThrow(/truncated/);
  });
});

describe("manifest", () => {
  const body: ManifestBody = {
    kind: "crypto-prediction-infra/backup",
    version: 1,
    id: "20251127T020000Z",
    env: "dev",
    engine: "embedded",
    scope: "full",
    startedAt: "2025-11-27T02:00:00.000Z",
    completedAt: "2025-11-27T02:00:03.000Z",
    seconds: 3,
    specHash: "abc123",
    toolkit: "crypto-prediction-infra 0.1.0",
    files: [{ name: "postgres.sql.gz", bytes: 10, sha256: "a".repeat(64) }],
  };

  it("round-trips, and a changed value breaks its checksum", () => {
    const text = manifestText(sealManifest(body));
    expect(parseManifest(text).manifest?.checksum).toBe(manifestChecksum(body));
    const tampered = text.replace('"bytes": 10', '"bytes": 11');
    expect(parseManifest(tampered).problems.join()).toMatch(/checksum does not match/);
  });

  it("names the key of a malformed manifest", () => {
    expect(parseManifest("{ not json").problems[0]).toMatch(/not valid JSON/);
    const { checksum: _c, ...noFiles } = sealManifest(body) as unknown as Record<string, unknown>;
    delete noFiles.files;
    expect(parseManifest(JSON.stringify(noFiles)).problems.join()).toMatch(/files|checksum/);
  });
});

describe("retention", () => {
  const entry = (iso: string, scope = "full"): BackupEntry => ({ dir: `/b/${iso}`, id: iso, scope, createdAt: new Date(iso), bytes: 1 });

  it("keeps the newest backup of each of the last keepDaily days and keepWeekly ISO weeks", () => {
    const entries = [
      entry("2025-11-27T02:00:00Z"),
      entry("2025-11-27T01:00:00Z"), // same day, older: not a daily keeper
      entry("2025-11-26T02:00:00Z"),
      entry("2025-11-25T02:00:00Z"),
      entry("2025-11-16T02:00:00Z"), // week 46
      entry("2025-11-09T02:00:00Z"), // week 45
      entry("2025-11-02T02:00:00Z"), // week 44: beyond keepWeekly 3
      entry("2025-11-27T03:00:00Z", "table:market_data"),
    ];
    const decisions = planRetention(entries, 2, 3);
    const kept = decisions.filter((d) => d.keep).map((d) => d.entry.id);
    expect(kept.sort()).toEqual(["2025-11-09T02:00:00Z", "2025-11-16T02:00:00Z", "2025-11-26T02:00:00Z", "2025-11-27T02:00:00Z", "2025-11-27T03:00:00Z"].sort());
    expect(decisions.find((d) => d.entry.id === "2025-11-27T02:00:00Z")!.reasons).toEqual(["daily 2025-11-27", "weekly 2025-W48"]);
  });

  it("computes ISO weeks across year ends", () => {
    expect(isoWeek(new Date("2025-12-29T00:00:00Z"))).toBe("2026-W01");
    expect(isoWeek(new Date("2021-01-03T00:00:00Z"))).toBe("2020-W53");
    expect(isoWeek(new Date("2025-11-27T00:00:00Z"))).toBe("2025-W48");
  });
});

describe("schedule", () => {
  it("prints the guide's 2 AM cron line for this project's command, backup then prune", () => {
    const line = scheduleLine(loadSpec("dev"), "dev", { projectDir: "/srv/cpi", nodeBin: "/opt/node/bin/node" });
    expect(line.cron.startsWith("0 2 * * * cd /srv/cpi && export PATH=/opt/node/bin:")).toBe(true);
    expect(line.cron).toContain("{ npm run -s backup -- create --env dev && npm run -s backup -- prune --env dev; } >>");
  });

  it("follows backup.schedule and escapes % for cron", () => {
    const spec = parseSpec("dev", { backup: { schedule: "30 3 * * 1" } }, { memoryBytes: 8 * 1024 ** 3 });
    const line = scheduleLine(spec, "dev", { projectDir: "/srv/100%", nodeBin: "/usr/bin/node" });
    expect(line.cron.startsWith("30 3 * * 1 ")).toBe(true);
    expect(line.cron).toContain("'/srv/100\\%'");
    expect(line.command).toContain("'/srv/100%'");
  });
});

describe("versions", () => {
  it("parses client tool versions", () => {
    expect(parsePgVersion("pg_dump (PostgreSQL) 17.12 (Debian 17.12-0+deb13u1)")).toMatchObject({ major: 17, minor: 12 });
    expect(parsePgVersion("psql (PostgreSQL) 15.18")).toMatchObject({ major: 15, minor: 18 });
  });

  it("knows which psql understands \\restrict", () => {
    const v = (s: string) => parsePgVersion(s)!;
    expect(psqlSupportsRestrict(v("15.14"))).toBe(true);
    expect(psqlSupportsRestrict(v("15.13"))).toBe(false);
    expect(psqlSupportsRestrict(v("16.9"))).toBe(false);
    expect(psqlSupportsRestrict(v("17.6"))).toBe(true);
    expect(psqlSupportsRestrict(v("18.0"))).toBe(true);
  });

  it("accepts pg_restore's errors only when every one is the known newer-setting error", () => {
    const known = [
      'pg_restore: error: could not execute query: ERROR:  unrecognized configuration parameter "transaction_timeout"',
      "Command was: SET transaction_timeout = 0;",
    ];
    const stderr = [...known, ...known, ...known, "pg_restore: warning: errors ignored on restore: 2", ""].join("\n");
    expect(onlyKnownRestoreErrors(stderr, 16)).toBe(true);
    expect(onlyKnownRestoreErrors(stderr, 17)).toBe(false);
    const real = [...known, 'pg_restore: error: could not execute query: ERROR:  relation "x" already exists', "Command was: CREATE TABLE x ();", "pg_restore: warning: errors ignored on restore: 2"].join("\n");
    expect(onlyKnownRestoreErrors(real, 16)).toBe(false);
    // Two parallel workers writing at once: one line loses its prefix, one message is joined to another line.
    const interleaved = [
      "pg_restore: pg_restore: error: could not execute query: ERROR:  unrecognized configuration parameter \"transaction_timeout\"",
      ' error: could not execute query: ERROR:  unrecognized configuration parameter "transaction_timeout"',
      "Command was: SET transaction_timeout = 0;",
      "Command was: SET transaction_timeout = 0;",
      "pg_restore: warning: errors ignored on restore: 1",
    ].join("\n");
    expect(onlyKnownRestoreErrors(interleaved, 16)).toBe(true);
    expect(onlyKnownRestoreErrors(interleaved.replace("SET transaction_timeout = 0;", "DROP TABLE x;"), 16)).toBe(false);
    // Prefixes and bodies are separate writes: any order of them is still only the known error.
    const body = 'could not execute query: ERROR:  unrecognized configuration parameter "transaction_timeout"\nCommand was: SET transaction_timeout = 0;\n';
    const scrambled = `pg_restore: pg_restore: error: ${body}error: ${body}pg_restore: error: ${body}pg_restore: warning: errors ignored on restore: 2\n`;
    expect(onlyKnownRestoreErrors(scrambled, 16)).toBe(true);
    expect(onlyKnownRestoreErrors(scrambled.replace("error: could not", "error: could not connect; could not"), 16)).toBe(false);
    expect(onlyKnownRestoreErrors(`${scrambled}pg_restore: error: could not execute query: ERROR:  permission denied\n`, 16)).toBe(false);
    expect(onlyKnownRestoreErrors(scrambled.replace("errors ignored on restore: 2", "errors ignored on restore: 4"), 16)).toBe(false);
    // Seen in CI: the name and its ": " are separate writes, so two workers' prefixes merge.
    const split = `pg_restore: error: ${body}pg_restore:pg_restore:  error: error: ${body}${body}pg_restore: error: ${body}pg_restore: warning: errors ignored on restore: 2\n`;
    expect(onlyKnownRestoreErrors(split, 16)).toBe(true);
    expect(onlyKnownRestoreErrors(split.replace("pg_restore:pg_restore:", "pg_restore:pg_dump:"), 16)).toBe(false);
  });
});

describe("pg_dump resolution", () => {
  const root = mkdtempSync(path.join(os.tmpdir(), "cpi-pgtools-"));
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  /** A folder with a `pg_dump` that answers --version like an installed one of that version. */
  const toolDir = (name: string, version: string) => {
    const dir = path.join(root, name);
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, "pg_dump"), `#!/bin/sh\necho "pg_dump (PostgreSQL) ${version}"\n`);
    chmodSync(path.join(dir, "pg_dump"), 0o755);
    return dir;
  };
  const context = { engine: "embedded" as const, hostPort: 5432, images: ["crypto-prediction-infra/postgres:16-offline"] };
  const noDocker = { DOCKER_CLI: path.join(root, "no-docker") };

  it("uses PG_BIN when it is new enough", async () => {
    const tool = await resolvePgTool("pg_dump", { minMajor: 16, reason: "server 16" }, context, { PATH: "/nonexistent", PG_BIN: toolDir("pgbin17", "17.2"), ...noDocker });
    expect(tool).toMatchObject({ source: "PG_BIN", version: { major: 17 } });
  });

  it("refuses an old PG_BIN instead of looking elsewhere", async () => {
    const error = await resolvePgTool("pg_dump", { minMajor: 16, reason: "server 16" }, context, { PATH: toolDir("path17", "17.2"), PG_BIN: toolDir("pgbin15", "15.18"), ...noDocker }).catch((e) => e);
    expect(error).toBeInstanceOf(CliError);
    expect(error.message).toMatch(/PG_BIN=.*pgbin15: pg_dump 15.18 cannot be used: older than 16/);
  });

  it("skips an old pg_dump on PATH for a newer one", async () => {
    const tool = await resolvePgTool("pg_dump", { minMajor: 16, reason: "server 16" }, context, { PATH: [toolDir("a15", "15.18"), toolDir("b16", "16.4")].join(":"), ...noDocker });
    expect(tool).toMatchObject({ source: "PATH", location: path.join(root, "b16", "pg_dump"), version: { major: 16, minor: 4 } });
  });

  it("fails naming what it tried and exactly what to install, never running an old pg_dump", async () => {
    const error = await resolvePgTool("pg_dump", { minMajor: 16, reason: "the server is PostgreSQL 16.14" }, context, { PATH: toolDir("only15", "15.18"), ...noDocker }).catch((e) => e);
    expect(error).toBeInstanceOf(CliError);
    expect(error.code).toBe(EXIT.ERROR);
    expect(error.message).toContain(`${path.join(root, "only15", "pg_dump")} (15.18: older than 16)`);
    expect(error.message).toMatch(/Docker: no Docker client/);
    expect(error.hint).toMatch(/apt-get install -y postgresql-client-17/);
    expect(error.hint).toMatch(/npm run images/);
  });
});
