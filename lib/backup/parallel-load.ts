/**
 * Loads a dump's SQL script (gunzip's output, or pg_restore's script of a custom archive) into a
 * new database with the rows of its COPY blocks spread over several connections. On a 2-core
 * machine the server parses COPY text on one core per connection; one psql (or one pg_restore
 * job per table) leaves the other core idle during the longest part of a restore.
 *
 *   script ─▶ psql: the statements before the first COPY (pre-data), then a marker query
 *          ─▶ once psql has answered it: each COPY block's rows, cut at line ends into 1 MiB
 *             slices dealt in turn to N `COPY … FROM STDIN` sessions of the same table
 *          ─▶ psql: setval lines meanwhile; the rest (indexes, constraints, grants) after the
 *             last row is committed
 *
 * psql runs everything but the rows, in the script's order, with ON_ERROR_STOP. Only the data
 * section is spread: a COPY met after the first post-data statement (a script not in pg_dump's
 * order), or any script that switches database (`\connect`), goes through psql as written. Lines
 * inside strings, function bodies and comments are told apart as psql's lexer does
 * (SqlLineTracker): a function may hold a line that reads like a COPY header.
 */
import { randomBytes } from "node:crypto";
import { once } from "node:events";
import type { Readable, Writable } from "node:stream";
import { finished } from "node:stream/promises";
import type pg from "pg";
import { from as copyFrom } from "pg-copy-streams";
import type { StartedProcess } from "../pgtools/process.js";
import { canonicalName, COPY_HEADER, incompatibleLinesFor, isPreambleLine, SqlLineTracker } from "./sql-stream.js";

export interface ParallelLoadArgs {
  /** The script, as it streams out of gunzip or pg_restore. */
  script: Readable;
  /** psql on the new database, with ON_ERROR_STOP; stdin and stdout piped. */
  psql: StartedProcess;
  /** A new session on the new database (one per COPY connection), e.g. connectPg's. */
  connect(): Promise<pg.Client>;
  /** COPY connections (default 2, the cores this toolkit is measured on). */
  connections?: number;
  /** Lines of a newer pg_dump's preamble that this server rejects are dropped. */
  serverMajor: number;
}

export interface ParallelLoadResult {
  /** Preamble lines dropped as unknown to this server. */
  dropped: string[];
  /** Each table whose rows were spread: its rows (the servers' COPY counts, summed) and COPYs. */
  spread: Record<string, { rows: number; copies: number }>;
}

/** Bytes of rows a connection receives before the next one's turn. */
const SLICE_BYTES = 1024 * 1024;
const NEWLINE = 0x0a;
const END_OF_DATA = Buffer.from("\\.\n");

type Phase = "pre-data" | "data" | "rows" | "post-data";

/** The script stopped inside a COPY block: cut short, or its source failed (which then says why). */
export class ScriptEndedEarly extends Error {
  constructor() {
    super("the dump ends inside a COPY block (it is truncated)");
  }
}

export async function loadScriptInParallel(args: ParallelLoadArgs): Promise<ParallelLoadResult> {
  const loader = new ParallelLoader(args);
  try {
    return await loader.run();
  } finally {
    await loader.close();
  }
}

/** One load: the script's phase, psql's input, the COPY sessions and the block being spread. */
class ParallelLoader {
  private phase: Phase = "pre-data";
  /** Before the first statement that is not a SET, a comment or `\restrict`. */
  private inPreamble = true;
  /** Where each line of the statements starts: at the top level, or inside a literal or comment. */
  private readonly lexer = new SqlLineTracker();
  private readonly incompatible: Set<string>;
  private readonly dropped: string[] = [];
  /** The preamble's settings, replayed on each COPY session (client_encoding, search_path…). */
  private readonly settings: string[] = [];
  private readonly spread: ParallelLoadResult["spread"] = {};
  private readonly sessions: pg.Client[] = [];
  private sessionsOpening?: Promise<void>;
  private block?: { table: string; statement: string; copies: (Copy | undefined)[]; turn: number; bytes: number };
  private readonly psqlFailed: Promise<never>;
  private stdinError?: Error;

  constructor(private readonly args: ParallelLoadArgs) {
    this.incompatible = incompatibleLinesFor(args.serverMajor);
    const stdin = args.psql.child.stdin!;
    stdin.on("error", (error) => (this.stdinError = error)); // EPIPE when psql stops: its exit says why
    // psql ending before its input does is a failure: its own error when it has one.
    this.psqlFailed = args.psql.exited.then(
      () => Promise.reject(new Error("psql ended before the whole script was sent")),
      (error: Error) => Promise.reject(error),
    );
    this.psqlFailed.catch(() => undefined);
    args.psql.child.stdout!.resume(); // read (and dropped) except while waiting for the marker
  }

  async run(): Promise<ParallelLoadResult> {
    let carry: Buffer = Buffer.alloc(0);
    for await (const chunk of this.args.script) {
      let data = chunk as Buffer;
      if (carry.length && this.phase === "rows") {
        // Rows are most of the script: join the carried part of a line to the rest of that line
        // only, instead of copying every chunk behind it (memory stays flat).
        const newline = data.indexOf(NEWLINE);
        if (newline < 0) {
          carry = Buffer.concat([carry, data]);
          continue;
        }
        await this.consume(Buffer.concat([carry, data.subarray(0, newline + 1)]));
        data = data.subarray(newline + 1);
      } else if (carry.length) {
        data = Buffer.concat([carry, data]);
      }
      carry = await this.consume(data);
    }
    if (this.phase === "rows") throw new ScriptEndedEarly();
    if (carry.length) await this.consume(Buffer.concat([carry, Buffer.from("\n")]));
    this.args.psql.child.stdin!.end();
    await this.args.psql.exited;
    return { dropped: this.dropped, spread: this.spread };
  }

  /** Handles every whole line of `data` (rows in bulk); returns the unfinished last line. */
  private async consume(data: Buffer): Promise<Buffer> {
    let at = 0;
    const toPsql: string[] = [];
    const flush = async () => {
      if (toPsql.length) await this.toPsql(toPsql.splice(0).join(""));
    };
    while (at < data.length) {
      if (this.phase === "post-data") {
        await flush();
        await this.toPsql(data.subarray(at));
        return Buffer.alloc(0);
      }
      if (this.phase === "rows") {
        await flush();
        const end = data.subarray(at, at + END_OF_DATA.length).equals(END_OF_DATA) ? at : indexOfEnd(data, at);
        if (end >= 0) {
          if (end > at) await this.writeRows(data.subarray(at, end));
          await this.endBlock();
          at = end + END_OF_DATA.length;
          continue;
        }
        const lastNewline = data.lastIndexOf(NEWLINE);
        if (lastNewline < at) return Buffer.from(data.subarray(at));
        await this.writeRows(data.subarray(at, lastNewline + 1));
        return Buffer.from(data.subarray(lastNewline + 1));
      }
      const newline = data.indexOf(NEWLINE, at);
      if (newline < 0) break;
      const line = data.toString("utf8", at, newline);
      at = newline + 1;
      if (!this.lexer.line(line)) {
        toPsql.push(line, "\n"); // inside a string, a function body or a comment: not a statement of the script
        continue;
      }
      if (this.phase === "pre-data") {
        if (/^\\(connect|c) /.test(line)) {
          this.phase = "post-data"; // another database: psql follows the script alone
          toPsql.push(line, "\n");
        } else if (COPY_HEADER.test(line)) {
          await flush();
          await this.startBlock(line);
        } else if (this.inPreamble && isPreambleLine(line)) {
          // Only the preamble's lines are edited or replayed (a function body may hold anything).
          if (this.incompatible.has(line)) this.dropped.push(line);
          else {
            if (line.startsWith("SET ") || line.startsWith("SELECT pg_catalog.set_config(")) this.settings.push(line);
            toPsql.push(line, "\n");
          }
        } else {
          this.inPreamble = false;
          toPsql.push(line, "\n");
        }
      } else if (COPY_HEADER.test(line)) {
        await flush();
        await this.startBlock(line);
      } else if (isDataSectionLine(line)) {
        toPsql.push(line, "\n"); // setval, comments: psql runs them while rows load
      } else {
        // The first post-data statement: every block has ended (its rows committed), psql goes on.
        this.phase = "post-data";
        toPsql.push(line, "\n");
      }
    }
    await flush();
    return Buffer.from(data.subarray(at));
  }

  private async startBlock(header: string): Promise<void> {
    if (this.phase === "pre-data") {
      // The tables must exist before other sessions copy into them: psql answers a marker query
      // only once every statement before it has run.
      this.sessionsOpening ??= this.openSessions();
      await Promise.all([this.psqlCaughtUp(), this.sessionsOpening]);
    }
    const table = COPY_HEADER.exec(header)![1]!;
    this.block = { table, statement: header.slice(0, -1), copies: this.sessions.map(() => undefined), turn: 0, bytes: 0 };
    this.phase = "rows";
  }

  private async writeRows(rows: Buffer): Promise<void> {
    const block = this.block!;
    if (block.bytes >= SLICE_BYTES) {
      block.turn = (block.turn + 1) % block.copies.length;
      block.bytes = 0;
    }
    const copy = (block.copies[block.turn] ??= new Copy(this.sessions[block.turn]!, block.statement));
    block.bytes += rows.length;
    await copy.write(rows, this.psqlFailed);
  }

  /** The block's rows are all sent: each session ends its COPY; the servers' counts are summed. */
  private async endBlock(): Promise<void> {
    const block = this.block!;
    const table = (this.spread[canonicalName(block.table)] ??= { rows: 0, copies: 0 });
    for (const copy of block.copies) {
      if (!copy) continue;
      table.rows += await copy.end();
      table.copies++;
    }
    this.block = undefined;
    this.phase = "data";
  }

  private async openSessions(): Promise<void> {
    const count = Math.max(1, this.args.connections ?? 2);
    for (let i = 0; i < count; i++) {
      const client = await this.args.connect();
      this.sessions.push(client);
      for (const setting of this.settings) await client.query(setting);
      await client.query("SET synchronous_commit = off");
    }
  }

  /** Resolves once psql has run every statement sent so far. */
  private async psqlCaughtUp(): Promise<void> {
    const marker = `cpi-sync-${randomBytes(6).toString("hex")}`;
    const stdout = this.args.psql.child.stdout!;
    let seen = "";
    const answered = new Promise<void>((resolve) => {
      const onData = (chunk: Buffer) => {
        seen = (seen + chunk.toString("utf8")).slice(-4096);
        if (seen.includes(marker)) {
          stdout.off("data", onData);
          resolve();
        }
      };
      stdout.on("data", onData);
    });
    await this.toPsql(`SELECT '${marker}' AS sync;\n`);
    await Promise.race([answered, this.psqlFailed]);
  }

  private async toPsql(data: string | Buffer): Promise<void> {
    if (this.stdinError) await this.psqlFailed;
    const stdin = this.args.psql.child.stdin!;
    if (!stdin.write(data)) await Promise.race([once(stdin, "drain"), this.psqlFailed]);
  }

  async close(): Promise<void> {
    for (const copy of this.block?.copies ?? []) if (copy && !copy.stream.destroyed) copy.stream.destroy();
    await Promise.all(this.sessions.map((c) => c.end().catch(() => undefined)));
  }
}

/**
 * A `COPY … FROM STDIN` on one session. Its first error (the server refusing a row, the session
 * dropping) is kept: after it, pg-copy-streams has let go of the connection, and any further
 * write or end would only raise a TypeError of its own in place of the real reason.
 */
class Copy {
  readonly stream: Writable;
  /** Rejects with the first error. */
  readonly failed: Promise<never>;
  private error?: Error;

  constructor(session: pg.Client, statement: string) {
    this.stream = session.query(copyFrom(statement));
    this.failed = new Promise<never>((_, reject) =>
      this.stream.on("error", (error: Error) => {
        this.error ??= error;
        reject(this.error);
      }),
    );
    this.failed.catch(() => undefined);
  }

  async write(rows: Buffer, alsoFailed: Promise<never>): Promise<void> {
    if (this.error) throw this.error;
    if (!this.stream.write(rows)) await Promise.race([once(this.stream, "drain"), this.failed, alsoFailed]);
  }

  /** Ends the COPY; resolves with the rows the server acknowledged. */
  async end(): Promise<number> {
    if (this.error) throw this.error;
    this.stream.end();
    await Promise.race([finished(this.stream), this.failed]);
    return (this.stream as Writable & { rowCount?: number }).rowCount ?? 0;
  }
}

/** Lines of pg_dump's data section other than COPY blocks. */
function isDataSectionLine(line: string): boolean {
  return line === "" || line.startsWith("--") || /^SELECT pg_catalog\.setval\(/.test(line);
}

/** Where the end-of-data line `\.` starts after `from` (at a line start), or -1. */
function indexOfEnd(data: Buffer, from: number): number {
  const at = data.indexOf("\n\\.\n", from);
  return at < 0 ? -1 : at + 1;
}
