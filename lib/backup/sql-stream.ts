/**
 * Streaming edits of plain-SQL dumps on their way to psql, without buffering the dump.
 *
 * - `CompatibilityFilter`: a dump made by a newer pg_dump than the server starts with settings
 *   the server does not know (pg_dump 17 writes `SET transaction_timeout = 0;`, which a 16 server
 *   rejects). Exactly those known lines are dropped, and only in the dump's preamble (before the
 *   first statement that is not a SET, a comment or a psql `\restrict`); every other line reaches
 *   psql untouched, so with ON_ERROR_STOP a real error still stops the restore.
 * - `TableDataFilter`: keeps only the data of chosen tables (their COPY blocks and their
 *   sequences' setval), framed by a caller's header and footer: a single-table restore replaces
 *   one table's rows inside one transaction whatever else the dump holds.
 */
import { Transform, type TransformCallback } from "node:stream";
import { StringDecoder } from "node:string_decoder";

/** Lines of newer pg_dumps that older servers reject, and the server major that accepts them. */
export const INCOMPATIBLE_PREAMBLE_LINES: readonly { line: string; sinceMajor: number; why: string }[] = [
  { line: "SET transaction_timeout = 0;", sinceMajor: 17, why: "transaction_timeout exists from PostgreSQL 17 on" },
];

/** The first line of a COPY block in a dump's script; group 1 is the table (`public."Odd Name"` too). */
export const COPY_HEADER = /^COPY ((?:"(?:[^"]|"")*"|[^\s."]+)(?:\.(?:"(?:[^"]|"")*"|[^\s."]+))?) .*FROM stdin;$/;

/** Lines that may appear in a dump's preamble. */
export function isPreambleLine(line: string): boolean {
  return line === "" || line.startsWith("--") || line.startsWith("SET ") || line.startsWith("SELECT pg_catalog.set_config(") || /^\\(restrict|unrestrict) /.test(line);
}

/** Lines to drop for a server of this major version. */
export function incompatibleLinesFor(serverMajor: number): Set<string> {
  return new Set(INCOMPATIBLE_PREAMBLE_LINES.filter((l) => serverMajor < l.sinceMajor).map((l) => l.line));
}

/**
 * The preamble of a dump's first bytes, minus the lines this server rejects, and the byte offset
 * where the rest of the dump begins. Lets a restore hand psql the (tiny) edited preamble and then
 * the rest of the dump untouched, straight from gunzip, without the data passing through Node.
 * Undefined when the preamble does not end within `head`.
 */
export function splitPreamble(head: string, serverMajor: number): { preamble: string; restOffset: number; dropped: string[] } | undefined {
  const incompatible = incompatibleLinesFor(serverMajor);
  const kept: string[] = [];
  const dropped: string[] = [];
  let start = 0;
  for (;;) {
    const end = head.indexOf("\n", start);
    if (end < 0) return undefined;
    const line = head.slice(start, end);
    if (!isPreambleLine(line)) return { preamble: kept.join(""), restOffset: Buffer.byteLength(head.slice(0, start)), dropped };
    if (incompatible.has(line)) dropped.push(line);
    else kept.push(line, "\n");
    start = end + 1;
  }
}

/** Lines longer than this end the preamble scan (no preamble line is anywhere near it). */
const MAX_PREAMBLE_LINE = 64 * 1024;

export class CompatibilityFilter extends Transform {
  private readonly incompatible: Set<string>;
  private inPreamble: boolean;
  private pending = "";
  private readonly decoder = new StringDecoder("utf8");
  /** The lines dropped, in order. */
  readonly dropped: string[] = [];

  constructor(serverMajor: number) {
    super();
    this.incompatible = incompatibleLinesFor(serverMajor);
    this.inPreamble = this.incompatible.size > 0;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (!this.inPreamble) return callback(null, chunk);
    const text = this.pending + this.decoder.write(chunk);
    let start = 0;
    const out: string[] = [];
    for (;;) {
      const end = text.indexOf("\n", start);
      if (end < 0) break;
      const line = text.slice(start, end);
      if (!isPreambleLine(line)) {
        this.inPreamble = false;
        out.push(text.slice(start));
        this.pending = "";
        return callback(null, out.join(""));
      }
      if (this.incompatible.has(line)) this.dropped.push(line);
      else out.push(line, "\n");
      start = end + 1;
    }
    this.pending = text.slice(start);
    if (this.pending.length > MAX_PREAMBLE_LINE) {
      this.inPreamble = false;
      out.push(this.pending);
      this.pending = "";
    }
    callback(null, out.join(""));
  }

  override _flush(callback: TransformCallback): void {
    callback(null, this.pending + this.decoder.end());
  }
}

export interface TableDataFilterOptions {
  /** Tables whose data to keep, as `schema.table` (e.g. public.market_data). */
  tables: string[];
  /** Sequences whose setval to keep, as `schema.sequence`. */
  sequences: string[];
  serverMajor: number;
  /** SQL after the preamble, before the first data (BEGIN, DELETE…). */
  header: string;
  /** SQL at the end of a complete stream, given the rows per table seen (checks, COMMIT). */
  footer(rows: Map<string, number>): string;
}

/**
 * Keeps the preamble (minus incompatible lines), then the caller's header, the COPY blocks of the
 * chosen tables and their setval calls, then the footer. Nothing else of the dump passes: no DDL,
 * no other table's data. The footer is written only when the input ended normally, so a cut
 * stream never reaches a COMMIT.
 */
export class TableDataFilter extends Transform {
  private readonly incompatible: Set<string>;
  private readonly tables: Set<string>;
  private readonly sequences: Set<string>;
  private state: "preamble" | "scan" | "copy" | "skip" = "preamble";
  private current = "";
  private currentRows = 0;
  private pending: Buffer = Buffer.alloc(0);
  readonly rows = new Map<string, number>();
  readonly dropped: string[] = [];
  private readonly lexer = new SqlLineTracker();

  constructor(private readonly options: TableDataFilterOptions) {
    super();
    this.incompatible = incompatibleLinesFor(options.serverMajor);
    this.tables = new Set(options.tables.flatMap(qualifiedVariants));
    this.sequences = new Set(options.sequences.flatMap(qualifiedVariants));
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
    out.push(this.options.footer(this.rows));
    callback(null, out.join(""));
  }

  /** A line outside COPY data. */
  private line(line: string, out: string[]): void {
    // A line inside a string, a function body or a comment is never a COPY header or a setval.
    if (!this.lexer.line(line)) return;
    if (this.state === "preamble") {
      if (isPreambleLine(line)) {
        if (this.incompatible.has(line)) this.dropped.push(line);
        else if (!line.startsWith("\\unrestrict")) out.push(line, "\n");
        return;
      }
      this.state = "scan";
      out.push(this.options.header);
    }
    const copy = COPY_HEADER.exec(line);
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
    const setval = /^SELECT pg_catalog\.setval\('([^']+)', \d+, (true|false)\);$/.exec(line);
    if (setval && (this.sequences.has(setval[1]!) || this.sequences.has(canonicalName(setval[1]!)))) out.push(line, "\n");
    if (/^\\(restrict|unrestrict) /.test(line)) out.push(line, "\n");
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

type LexState = { kind: "top" } | { kind: "quote"; escapes: boolean } | { kind: "ident" } | { kind: "dollar"; tag: string } | { kind: "comment"; depth: number };

/**
 * Follows a SQL script line by line, as psql's lexer does, to tell whether a line begins outside
 * every string, quoted identifier, dollar-quoted body and block comment. A line that reads like a
 * COPY header or a `\connect` inside a function body is then the function's, not the script's.
 */
export class SqlLineTracker {
  private state: LexState = { kind: "top" };

  /** Whether `line` starts at the script's top level; then moves past it. */
  line(line: string): boolean {
    const atTop = this.state.kind === "top";
    if (atTop && line.startsWith("\\")) return true; // a psql meta-command: no SQL to follow
    let i = 0;
    while (i < line.length) {
      const state = this.state;
      const c = line[i]!;
      if (state.kind === "top") {
        if (c === "-" && line[i + 1] === "-") return atTop; // the rest is a comment
        if (c === "/" && line[i + 1] === "*") {
          this.state = { kind: "comment", depth: 1 };
          i += 2;
        } else if (c === "'") {
          const prefix = line[i - 1];
          this.state = { kind: "quote", escapes: (prefix === "E" || prefix === "e") && !/[A-Za-z0-9_]/.test(line[i - 2] ?? "") };
          i++;
        } else if (c === '"') {
          this.state = { kind: "ident" };
          i++;
        } else if (c === "$" && !/[A-Za-z0-9_$]/.test(line[i - 1] ?? "")) {
          const tag = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(line.slice(i));
          if (tag) {
            this.state = { kind: "dollar", tag: tag[0] };
            i += tag[0].length;
          } else i++;
        } else i++;
      } else if (state.kind === "quote") {
        if (state.escapes && c === "\\") i += 2;
        else if (c === "'" && line[i + 1] === "'") i += 2;
        else {
          if (c === "'") this.state = { kind: "top" };
          i++;
        }
      } else if (state.kind === "ident") {
        if (c === '"' && line[i + 1] === '"') i += 2;
        else {
          if (c === '"') this.state = { kind: "top" };
          i++;
        }
      } else if (state.kind === "dollar") {
        const end = line.indexOf(state.tag, i);
        if (end < 0) break;
        this.state = { kind: "top" };
        i = end + state.tag.length;
      } else {
        if (c === "/" && line[i + 1] === "*") {
          state.depth++;
          i += 2;
        } else if (c === "*" && line[i + 1] === "/") {
          state.depth--;
          if (state.depth === 0) this.state = { kind: "top" };
          i += 2;
        } else i++;
      }
    }
    return atTop;
  }
}
