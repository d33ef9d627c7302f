/**
 * Streaming edits of plain-SQL dumps on their way to psql, without buffering the dump.
 *
 * A dump is data, not a script the operator wrote: every stream these filters produce starts with
 * psql's `\restrict KEY` (a random key of this run, never printed) and ends with `\unrestrict KEY`,
 * so psql refuses every meta-command in between (`\!`, `\o |cmd`, `\copy … program`, `\i`,
 * `\connect`, `\setenv`…), wherever it stands on a line. The dump's own `\restrict K` (its first
 * lines) and `\unrestrict K` (its last line), which pg_dump writes since August 2025, are
 * replaced by empty lines; a `\restrict`/`\unrestrict` anywhere else reaches psql and is refused.
 *
 * - `RestrictedDumpStream`: a whole dump. In its head (the SETs and the schema and extension
 *   lines before the first other statement) it also replaces with empty lines exactly the known
 *   lines this server rejects (pg_dump 17's `SET transaction_timeout = 0;` on a 16 server) and the
 *   `COMMENT ON EXTENSION` of extensions the restore's database already has (the roles bootstrap
 *   created them as a superuser; the schema owner, who loads the dump, may not comment on them).
 *   Every other line reaches psql untouched, so with ON_ERROR_STOP a real error stops the load.
 * - `TableDataFilter`: keeps only the data of chosen tables (their COPY blocks and their
 *   sequences' setval, each where pg_dump's table of contents comment announces it), framed by a
 *   caller's header and footer: a single-table restore replaces one table's rows inside one
 *   transaction whatever else the dump holds.
 */
import { randomBytes } from "node:crypto";
import { Transform, type TransformCallback } from "node:stream";
import { StringDecoder } from "node:string_decoder";

/** Lines of newer pg_dumps that older servers reject, and the server major that accepts them. */
export const INCOMPATIBLE_PREAMBLE_LINES: readonly { line: string; sinceMajor: number; why: string }[] = [
  { line: "SET transaction_timeout = 0;", sinceMajor: 17, why: "transaction_timeout exists from PostgreSQL 17 on" },
];

/** The first line of a COPY block in a dump's script; group 1 is the table (`public."Odd Name"` too). */
export const COPY_HEADER = /^COPY ((?:"(?:[^"]|"")*"|[^\s."]+)(?:\.(?:"(?:[^"]|"")*"|[^\s."]+))?) .*FROM stdin;$/;

/** pg_dump's `\restrict KEY` line (the key is alphanumeric). */
const RESTRICT_LINE = /^\\restrict ([A-Za-z0-9]+)$/;

/** A key for psql's `\restrict`: random per run, alphanumeric, never printed. */
export function restrictKey(): string {
  return randomBytes(24).toString("hex");
}

/** Lines that may appear in a dump's preamble. */
export function isPreambleLine(line: string): boolean {
  return line === "" || line.startsWith("--") || line.startsWith("SET ") || line.startsWith("SELECT pg_catalog.set_config(") || /^\\(restrict|unrestrict) /.test(line);
}

/** Lines of a dump's head after the preamble: schemas and extensions, one line each. */
function isHeadLine(line: string): boolean {
  return isPreambleLine(line) || /^(CREATE SCHEMA |ALTER SCHEMA \S+ OWNER TO |CREATE EXTENSION IF NOT EXISTS |COMMENT ON (SCHEMA|EXTENSION) )/.test(line);
}

/** Lines to drop for a server of this major version. */
export function incompatibleLinesFor(serverMajor: number): Set<string> {
  return new Set(INCOMPATIBLE_PREAMBLE_LINES.filter((l) => serverMajor < l.sinceMajor).map((l) => l.line));
}

/** `COMMENT ON EXTENSION name IS '…';` on one line: the extension's name. */
function commentedExtension(line: string): string | undefined {
  const match = /^COMMENT ON EXTENSION (?:"((?:[^"]|"")+)"|([a-z_][a-z0-9_]*)) IS '(?:[^']|'')*';$/.exec(line);
  return match ? (match[1]?.replace(/""/g, '"') ?? match[2]) : undefined;
}

/** Lines longer than this end the head scan (no head line is anywhere near it). */
const MAX_HEAD_LINE = 64 * 1024;
/** Bytes held back until the end, where pg_dump's `\unrestrict K` stands (it is within the last 100 bytes). */
const TAIL_BYTES = 4096;

export interface RestrictedDumpOptions {
  serverMajor: number;
  /** psql's `\restrict` key of this run (restrictKey()). */
  key: string;
  /** Extensions the target database already has: their COMMENT ON EXTENSION lines are dropped. */
  presetExtensions?: string[];
}

export class RestrictedDumpStream extends Transform {
  private readonly incompatible: Set<string>;
  private readonly preset: Set<string>;
  private inHead = true;
  private started = false;
  private pending = "";
  private readonly decoder = new StringDecoder("utf8");
  private tail: Buffer = Buffer.alloc(0);
  /** The key of the dump's own `\restrict` line, when it had one. */
  private dumpKey: string | undefined;
  /** The lines dropped, in order (none of them a `\restrict`/`\unrestrict` line). */
  readonly dropped: string[] = [];

  constructor(private readonly options: RestrictedDumpOptions) {
    super();
    this.incompatible = incompatibleLinesFor(options.serverMajor);
    this.preset = new Set(options.presetExtensions ?? []);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.start();
    if (!this.inHead) {
      this.hold(chunk);
      return callback();
    }
    const text = this.pending + this.decoder.write(chunk);
    let start = 0;
    const out: string[] = [];
    for (;;) {
      const end = text.indexOf("\n", start);
      if (end < 0) break;
      const line = text.slice(start, end);
      if (!isHeadLine(line)) {
        this.inHead = false;
        out.push(text.slice(start));
        this.pending = "";
        this.hold(Buffer.from(out.join("")));
        return callback();
      }
      out.push(this.headLine(line), "\n");
      start = end + 1;
    }
    this.pending = text.slice(start);
    if (this.pending.length > MAX_HEAD_LINE) {
      this.inHead = false;
      out.push(this.pending);
      this.pending = "";
    }
    this.hold(Buffer.from(out.join("")));
    callback();
  }

  override _flush(callback: TransformCallback): void {
    this.start();
    const rest = this.pending + this.decoder.end();
    if (rest) this.hold(Buffer.from(this.inHead && !rest.includes("\n") ? this.headLine(rest) : rest));
    this.push(withoutTrailingUnrestrict(this.tail, this.dumpKey));
    this.push(`\n\\unrestrict ${this.options.key}\n`);
    callback();
  }

  /** A head line as it goes to psql: itself, or an empty line in its place. */
  private headLine(line: string): string {
    const restrict = RESTRICT_LINE.exec(line);
    if (restrict && this.dumpKey === undefined) {
      this.dumpKey = restrict[1]!;
      return "";
    }
    if (this.incompatible.has(line)) {
      this.dropped.push(line);
      return "";
    }
    const extension = commentedExtension(line);
    if (extension !== undefined && this.preset.has(extension)) {
      this.dropped.push(line);
      return "";
    }
    return line;
  }

  private start(): void {
    if (this.started) return;
    this.started = true;
    this.push(`\\restrict ${this.options.key}\n`);
  }

  /** Passes on all but the last TAIL_BYTES. */
  private hold(data: Buffer): void {
    if (!data.length) return;
    if (data.length >= TAIL_BYTES) {
      if (this.tail.length) this.push(this.tail);
      this.push(data.subarray(0, data.length - TAIL_BYTES));
      this.tail = Buffer.from(data.subarray(data.length - TAIL_BYTES));
      return;
    }
    const joined = Buffer.concat([this.tail, data]);
    const cut = Math.max(0, joined.length - TAIL_BYTES);
    if (cut) this.push(joined.subarray(0, cut));
    this.tail = joined.subarray(cut);
  }
}

/**
 * The dump's end minus its own `\unrestrict K`, when that is its last line (only empty and comment
 * lines after it) and K is the key of its `\restrict`: where pg_dump writes it. Anywhere else the
 * line stays, and psql refuses it.
 */
function withoutTrailingUnrestrict(tail: Buffer, key: string | undefined): Buffer {
  if (key === undefined) return tail;
  const line = Buffer.from(`\\unrestrict ${key}`);
  const at = tail.lastIndexOf(line);
  if (at < 0 || (at > 0 && tail[at - 1] !== 0x0a)) return tail;
  const after = tail.subarray(at + line.length).toString("utf8");
  if (!/^(\n(--[^\n]*)?)*\n?$/.test(after)) return tail;
  return Buffer.concat([tail.subarray(0, at), Buffer.from(after)]);
}

export interface TableDataFilterOptions {
  /** Tables whose data to keep, as `schema.table` (e.g. public.market_data). */
  tables: string[];
  /** Sequences whose setval to keep, as `schema.sequence`. */
  sequences: string[];
  serverMajor: number;
  /** psql's `\restrict` key of this run (restrictKey()). */
  key: string;
  /** SQL after the preamble, before the first data (BEGIN, DELETE…). */
  header: string;
  /** SQL at the end of a complete stream, given the rows per table seen (checks, COMMIT). */
  footer(rows: Map<string, number>): string;
}

/** pg_dump's table-of-contents comment before a table's data or a sequence's setval. */
const TOC_DATA = /^-- (?:Data for )?Name: [^;]*; Type: (TABLE DATA|SEQUENCE SET); /;

/**
 * Keeps the preamble (minus incompatible and `\restrict` lines), then the caller's header, the
 * COPY blocks of the chosen tables and their setval calls, then the footer. Nothing else of the
 * dump passes: no DDL, no other table's data, no meta-command. A COPY header or setval counts
 * only right after pg_dump's table-of-contents comment announcing it (so a function body that
 * merely contains such a line is passed over). The footer is written only when the input ended
 * normally, so a cut stream never reaches a COMMIT.
 */
export class TableDataFilter extends Transform {
  private readonly incompatible: Set<string>;
  private readonly tables: Set<string>;
  private readonly sequences: Set<string>;
  private state: "preamble" | "scan" | "copy" | "skip" = "preamble";
  /** The kind the last table-of-contents comment announced; cleared by any statement line. */
  private announced: "TABLE DATA" | "SEQUENCE SET" | undefined;
  private current = "";
  private currentRows = 0;
  private pending: Buffer = Buffer.alloc(0);
  readonly rows = new Map<string, number>();
  readonly dropped: string[] = [];

  constructor(private readonly options: TableDataFilterOptions) {
    super();
    this.incompatible = incompatibleLinesFor(options.serverMajor);
    this.tables = new Set(options.tables.flatMap(qualifiedVariants));
    this.sequences = new Set(options.sequences.flatMap(qualifiedVariants));
    this.push(`\\restrict ${options.key}\n`);
  }

  // Buffers throughout: COPY data (the bulk) is passed on as slices of the input, one per chunk,
  // counted by newline, never decoded; only the few other lines become strings.
  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    const data = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    let start = 0;
    let runStart = -1; // start of consecutive COPY lines to pass on as one slice
    for (;;) {
      const end = data.indexOf(10, start);
      if (end < 0) break;
      if (this.state === "copy") {
        if (runStart < 0) runStart = start;
        if (end - start === 2 && data[start] === 0x5c && data[start + 1] === 0x2e) {
          this.push(data.subarray(runStart, end + 1));
          runStart = -1;
          this.rows.set(this.current, this.currentRows);
          this.state = "scan";
        } else {
          this.currentRows++;
        }
      } else if (this.state === "skip") {
        if (end - start === 2 && data[start] === 0x5c && data[start + 1] === 0x2e) this.state = "scan";
      } else {
        const out: string[] = [];
        this.line(data.toString("utf8", start, end), out);
        if (out.length) this.push(out.join(""));
      }
      start = end + 1;
    }
    if (runStart >= 0) this.push(data.subarray(runStart, start));
    this.pending = Buffer.from(data.subarray(start));
    callback();
  }

  override _flush(callback: TransformCallback): void {
    const out: string[] = [];
    if (this.pending.length) {
      if (this.state === "copy" || this.state === "skip") return callback(new Error("the dump ends inside a COPY block (it is truncated)"));
      this.line(this.pending.toString("utf8"), out);
    }
    if (this.state === "copy" || this.state === "skip") return callback(new Error("the dump ends inside a COPY block (it is truncated)"));
    if (this.state === "preamble") out.push(this.options.header);
    out.push(this.options.footer(this.rows), `\n\\unrestrict ${this.options.key}\n`);
    callback(null, out.join(""));
  }

  /** A line outside COPY data. */
  private line(line: string, out: string[]): void {
    const toc = TOC_DATA.exec(line);
    if (toc) {
      this.announced = toc[1] as "TABLE DATA" | "SEQUENCE SET";
      return;
    }
    if (this.state === "preamble") {
      if (isPreambleLine(line)) {
        if (this.incompatible.has(line)) this.dropped.push(line);
        else if (!line.startsWith("\\")) out.push(line, "\n");
        return;
      }
      this.state = "scan";
      out.push(this.options.header);
    }
    if (line === "" || line.startsWith("--")) return;
    const announced = this.announced;
    this.announced = undefined;
    const copy = announced === "TABLE DATA" ? COPY_HEADER.exec(line) : null;
    if (copy) {
      const table = canonicalName(copy[1]!);
      if (this.tables.has(copy[1]!) || this.tables.has(table)) {
        this.state = "copy";
        this.current = table;
        this.currentRows = this.rows.get(table) ?? 0;
        this.rows.set(table, this.currentRows);
        out.push(line, "\n");
      } else {
        this.state = "skip";
      }
      return;
    }
    const setval = announced === "SEQUENCE SET" ? /^SELECT pg_catalog\.setval\('([^']+)', \d+, (true|false)\);$/.exec(line) : null;
    if (setval && (this.sequences.has(setval[1]!) || this.sequences.has(canonicalName(setval[1]!)))) out.push(line, "\n");
  }
}

/** `public.market_data` and `public."market_data"`. */
function qualifiedVariants(name: string): string[] {
  const [schema, table] = name.split(".");
  return [name, `${schema}."${table}"`, canonicalName(name)];
}

/** Unquotes `public."Foo"` to `public.Foo`. */
export function canonicalName(name: string): string {
  return name
    .split(".")
    .map((part) => (part.startsWith('"') && part.endsWith('"') ? part.slice(1, -1).replace(/""/g, '"') : part))
    .join(".");
}
