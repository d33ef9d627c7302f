/**
 * The parallel loader (lib/backup/parallel-load.ts) on a real PostgreSQL 16 with a real psql:
 * a script's rows are spread over two COPY sessions and come back exactly (escapes, a value
 * that looks like the end-of-data line, an empty table, a quoted table name), whatever the
 * chunking of the stream; psql runs the rest in order; failures are reported, never hidden.
 */
import "./support/docker.js";
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { beforeAll, expect, it } from "vitest";
import { localEnvironment, type LocalEnvironment } from "../lib/backup/local-env.js";
import { loadScriptInParallel, type ParallelLoadResult } from "../lib/backup/parallel-load.js";
import { psqlArgs } from "../lib/backup/postgres-restore.js";
import { connectPg, withPg } from "../lib/db/clients.js";
import { startProcess } from "../lib/pgtools/process.js";
import { resolvePgTool, type PgTool } from "../lib/pgtools/resolve.js";
import { describeBackups } from "./support/docker.js";
import { useEphemeralEnvironment } from "./support/embedded.js";

const BIG_ROWS = 40_000; // ~4 MiB of rows: several 1 MiB slices, so both sessions get some

/** A script in pg_dump's shape: preamble, pre-data, COPY blocks with setval, post-data. */
function dumpScript(options: { badRow?: boolean; cutInsideCopy?: boolean } = {}): string {
  const rows: string[] = [];
  for (let id = 1; id <= BIG_ROWS; id++) rows.push(`${id}\tnote ${id} ${"x".repeat(80)}\n`);
  // COPY text escapes: a tab and a backslash inside a value, and a value that is `\.` itself.
  rows[7] = `8\ta\\tb\\\\c\n`;
  rows[8] = `9\t\\\\.\n`;
  if (options.badRow) rows[BIG_ROWS - 5] = `-1\trefused by the CHECK\n`;
  const big = rows.join("");
  const script = [
    "--\n-- PostgreSQL database dump\n--\n\n",
    "SET statement_timeout = 0;\nSET transaction_timeout = 0;\nSET client_encoding = 'UTF8';\nSET standard_conforming_strings = on;\n",
    "SELECT pg_catalog.set_config('search_path', '', false);\n\n",
    "CREATE TABLE public.big (id bigint NOT NULL, note text, CONSTRAINT big_id_positive CHECK (id > 0));\n",
    "CREATE SEQUENCE public.big_id_seq;\n",
    "CREATE TABLE public.empty (id integer);\n",
    'CREATE TABLE public."Odd Name" (v text);\n',
    // Lines inside a function body, a string or a comment are the script's text, not statements:
    // one like the preamble line that is dropped, one like a COPY header, one like \connect.
    "CREATE FUNCTION public.kept() RETURNS text LANGUAGE sql AS $_$ SELECT '\nSET transaction_timeout = 0;\nCOPY public.big (id, note) FROM stdin;\n\\connect other\n'::text $_$;\n",
    "/* a comment over lines\nCOPY public.empty (id) FROM stdin;\n*/\n\n",
    "--\n-- Data for Name: big; Type: TABLE DATA\n--\n\n",
    "COPY public.big (id, note) FROM stdin;\n",
    options.cutInsideCopy ? big.slice(0, big.length / 2) : big,
  ];
  if (options.cutInsideCopy) return script.join("");
  script.push(
    "\\.\n\n",
    "COPY public.empty (id) FROM stdin;\n\\.\n\n",
    'COPY public."Odd Name" (v) FROM stdin;\nplain\n\\.\n\n',
    "SELECT pg_catalog.setval('public.big_id_seq', 40000, true);\n\n",
    "CREATE INDEX big_note ON public.big USING btree (note);\n",
    "ALTER TABLE ONLY public.big ADD CONSTRAINT big_pkey PRIMARY KEY (id);\n",
  );
  return script.join("");
}

/** The stream in pieces of `size` bytes: every boundary a real pipe could produce gets a turn. */
function chunked(text: string, size: number): Readable {
  const bytes = Buffer.from(text);
  return Readable.from(
    (function* () {
      for (let at = 0; at < bytes.length; at += size) yield bytes.subarray(at, at + size);
    })(),
  );
}

describeBackups("loading a dump's rows over several sessions", () => {
  const env = useEphemeralEnvironment();
  let psqlTool: PgTool;
  let local: LocalEnvironment;

  beforeAll(async () => {
    local = localEnvironment(env().env);
    psqlTool = await resolvePgTool("psql", { minMajor: 9, reason: "it runs the script" }, local.tools);
  });

  const config = (database: string) => env().connections.postgresConfig("admin", database);

  /** The loader as a restore runs it: its psql arguments, its sessions (connectPg). */
  async function load(script: Readable, connections = 2): Promise<{ database: string; result?: ParallelLoadResult; error?: Error }> {
    const database = `load_${randomBytes(4).toString("hex")}`;
    await withPg(config("postgres"), (c) => c.query(`CREATE DATABASE ${database}`));
    const psql = startProcess(psqlTool.command(psqlArgs(psqlTool, local, database), { password: local.pgAdmin.password, stdin: true }), { what: "psql", stdio: ["pipe", "pipe", "pipe"] });
    try {
      return { database, result: await loadScriptInParallel({ script, psql, connect: () => connectPg(config(database)), connections, serverMajor: 16 }) };
    } catch (error) {
      await psql.kill();
      return { database, error: error as Error };
    }
  }

  const query = (database: string, sql: string) => withPg(config(database), async (c) => (await c.query(sql)).rows);

  it.each([
    ["64 KiB chunks (a pipe's)", 65_536],
    ["odd 4,099-byte chunks", 4_099],
  ])("spreads the rows over both sessions and loads every one exactly (%s)", async (_label, size) => {
    const { database, result, error } = await load(chunked(dumpScript(), size));
    expect(error).toBeUndefined();
    expect(result!.spread["public.big"]).toEqual({ rows: BIG_ROWS, copies: 2 });
    expect(result!.spread["public.empty"]).toEqual({ rows: 0, copies: 0 });
    expect(result!.spread["public.Odd Name"]).toEqual({ rows: 1, copies: 1 });
    expect(result!.dropped).toEqual(["SET transaction_timeout = 0;"]);
    const [totals] = await query(database, "SELECT count(*)::int AS n, sum(id)::bigint AS s FROM public.big");
    expect(totals).toEqual({ n: BIG_ROWS, s: String((BIG_ROWS * (BIG_ROWS + 1)) / 2) });
    expect(await query(database, "SELECT note FROM public.big WHERE id IN (8, 9) ORDER BY id")).toEqual([{ note: "a\tb\\c" }, { note: "\\." }]);
    expect(await query(database, 'SELECT v FROM public."Odd Name"')).toEqual([{ v: "plain" }]);
    expect(await query(database, "SELECT public.kept() AS body")).toEqual([{ body: "\nSET transaction_timeout = 0;\nCOPY public.big (id, note) FROM stdin;\n\\connect other\n" }]);
    // psql ran the data section's setval and the post-data, after the rows.
    expect(await query(database, "SELECT nextval('public.big_id_seq')::int AS n")).toEqual([{ n: BIG_ROWS + 1 }]);
    expect((await query(database, "SELECT indexname FROM pg_indexes WHERE tablename = 'big' ORDER BY 1")).map((r) => r.indexname)).toEqual(["big_note", "big_pkey"]);
  });

  it("finds the end of each block whatever splits it: 1- to 7-byte chunks of a small script", async () => {
    const script = dumpScript().replace(/(TABLE DATA\n--\n\nCOPY public\.big \(id, note\) FROM stdin;\n)[\s\S]*?\n\\\.\n/, (_all, header: string) => `${header}1\tone\n2\t\\\\.\n3\tthree\n\\.\n`);
    for (const size of [1, 2, 3, 5, 7]) {
      const { database, result, error } = await load(chunked(script, size));
      expect(error, `chunks of ${size}`).toBeUndefined();
      expect(result!.spread["public.big"]!.rows, `chunks of ${size}`).toBe(3);
      expect(await query(database, "SELECT id::int, note FROM public.big ORDER BY id")).toEqual([
        { id: 1, note: "one" },
        { id: 2, note: "\\." },
        { id: 3, note: "three" },
      ]);
    }
  });

  it("a row the server refuses fails the load, naming the constraint", async () => {
    const { error } = await load(chunked(dumpScript({ badRow: true }), 65_536));
    expect(error?.message).toMatch(/big_id_positive/);
  });

  it("a script cut inside a COPY block fails as truncated", async () => {
    const { error } = await load(chunked(dumpScript({ cutInsideCopy: true }), 65_536));
    expect(error?.message).toMatch(/ends inside a COPY block/);
  });

  it("an error in the statements stops psql (ON_ERROR_STOP) and fails the load with its message", async () => {
    const { error } = await load(chunked(dumpScript().replace("CREATE TABLE public.empty", "CREATE TABLE public.nosuchschema.empty"), 65_536));
    expect(error?.message).toMatch(/psql failed .*(cross-database|improper qualified name)/);
  });

  it("a script that switches database (\\connect) goes through psql alone, as written", async () => {
    const other = `load_${randomBytes(4).toString("hex")}`;
    await withPg(config("postgres"), (c) => c.query(`CREATE DATABASE ${other}`));
    const switching = dumpScript().replace("CREATE TABLE public.big", `\\connect ${other}\nCREATE TABLE public.big`);
    const { database, result, error } = await load(chunked(switching, 65_536));
    expect(error).toBeUndefined();
    expect(result!.spread).toEqual({});
    // The rows went where the script said: into the database it connected to.
    expect(await query(database, "SELECT count(*)::int AS n FROM pg_tables WHERE tablename = 'big'")).toEqual([{ n: 0 }]);
    expect(await query(other, "SELECT count(*)::int AS n FROM public.big")).toEqual([{ n: BIG_ROWS }]);
  });

  it("a COPY after the first post-data statement goes through psql, in order", async () => {
    const script = dumpScript() + "CREATE TABLE public.late (v integer);\nCOPY public.late (v) FROM stdin;\n1\n2\n\\.\n";
    const { database, result, error } = await load(chunked(script, 65_536));
    expect(error).toBeUndefined();
    expect(result!.spread["public.late"]).toBeUndefined();
    expect(await query(database, "SELECT sum(v)::int AS s FROM public.late")).toEqual([{ s: 3 }]);
  });

  it("with one connection, every block goes through that one session", async () => {
    const { result, error } = await load(chunked(dumpScript(), 65_536), 1);
    expect(error).toBeUndefined();
    expect(result!.spread["public.big"]).toEqual({ rows: BIG_ROWS, copies: 1 });
  });

  it("a docker-run tool's output pipe: folders of processes that are gone are swept, and a reader still waiting for a tool that never opened it is released by cleanup", async () => {
    const tool = await resolvePgTool("pg_dump", { minMajor: 16, reason: "the server is PostgreSQL 16" }, localEnvironment(env().env).tools);
    // Pipe folders of a process that is gone (a SIGKILLed backup) are swept; a live one's are kept.
    const exited = spawn("true");
    await once(exited, "close");
    const deadOnes = mkdtempSync(path.join(os.tmpdir(), `cpi-pipe-${exited.pid}-`));
    const liveOnes = mkdtempSync(path.join(os.tmpdir(), `cpi-pipe-${process.ppid}-`));
    const output = await tool.outputPipe();
    if (tool.source === "docker-run") {
      expect(existsSync(deadOnes), "a dead process's pipe folder").toBe(false);
      expect(existsSync(liveOnes), "a live process's pipe folder").toBe(true);
    }
    rmSync(deadOnes, { recursive: true, force: true });
    rmSync(liveOnes, { recursive: true, force: true });
    if (tool.source !== "docker-run") {
      expect(output).toMatchObject({ path: "-", pipe: undefined }); // direct tools write to stdout
      return;
    }
    expect(output.mount).toBe(`${path.dirname(output.pipe!)}:/cpi-output`);
    const reader = spawn("sh", ["-c", 'exec cat < "$0"', output.pipe!], { stdio: ["ignore", "pipe", "pipe"] });
    await new Promise((r) => setTimeout(r, 300));
    expect(reader.exitCode, "the reader waits for a writer").toBeNull();
    await output.cleanup();
    const [code] = await once(reader, "close");
    expect(code).toBe(0);
    expect(existsSync(path.dirname(output.pipe!))).toBe(false);
  });
});
