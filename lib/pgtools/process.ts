/**
 * Child processes of streaming jobs (pg_dump, psql, pg_restore, gzip, docker): started with
 * their streams wired, stderr kept (the last 64 kB, redacted on output), and a promise of their
 * exit that rejects with a message naming the tool and the end of what it said.
 */
import { spawn, type ChildProcess, type StdioOptions } from "node:child_process";
import { CliError, EXIT } from "../errors.js";
import { redact } from "../redact.js";
import type { PgCommand } from "./resolve.js";
import { onTermination } from "../signals.js";

export interface StartedProcess {
  child: ChildProcess;
  /** Resolves with stderr when the process exits 0; rejects otherwise (or when it could not start). */
  exited: Promise<string>;
  /** stderr so far. */
  stderr(): string;
  /** Stops the process (SIGTERM, then SIGKILL) and removes what it may leave behind. */
  kill(): Promise<void>;
}

export interface StartOptions {
  /** What it is, for messages ("pg_dump", "psql restore"). */
  what: string;
  stdio: StdioOptions;
  /** Exit codes that count as success, with stderr to decide (default: 0 only). */
  accept?: (code: number, stderr: string) => boolean;
}

const STDERR_LIMIT = 64 * 1024;

export function startProcess(command: Pick<PgCommand, "file" | "args" | "env"> & Partial<Pick<PgCommand, "abort">>, options: StartOptions): StartedProcess {
  const child = spawn(command.file, command.args, { env: command.env, stdio: options.stdio });
  let stderr = "";
  child.stderr?.setEncoding("utf8");
  child.stderr?.on("data", (chunk: string) => {
    stderr += chunk;
    if (stderr.length > STDERR_LIMIT * 2) stderr = stderr.slice(-STDERR_LIMIT);
  });
  const exited = new Promise<string>((resolve, reject) => {
    child.once("error", (error) => reject(new CliError(`${options.what} could not start: ${error.message}`, EXIT.ERROR)));
    child.once("close", (code, signal) => {
      const accepted = code !== null && (code === 0 || options.accept?.(code, stderr) === true);
      if (accepted) resolve(stderr);
      else reject(new CliError(`${options.what} failed (${signal ? `signal ${signal}` : `exit ${code}`}): ${tailOf(stderr) || "no message"}`, EXIT.ERROR));
    });
  });
  exited.catch(() => undefined); // observed by the caller; never an unhandled rejection
  const kill = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 5_000);
      await new Promise((resolve) => child.once("close", resolve));
      clearTimeout(timer);
    }
    await command.abort?.();
  };
  // This process told to stop: its children stop with it (a plain `kill PID` reaches only us).
  const unregister = onTermination(`stop ${options.what}`, kill);
  child.once("close", unregister);
  child.once("error", unregister);
  return { child, exited, stderr: () => stderr, kill };
}

/** The last lines of a tool's stderr, redacted, on one line. */
export function tailOf(stderr: string, lines = 6): string {
  return redact(stderr.trim().split("\n").filter(Boolean).slice(-lines).join(" | "));
}
