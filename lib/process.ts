/**
 * Running a program to completion and reading its output: zx's `$` (arguments quoted by zx, the
 * output collected, a timeout that kills it). A failure is a CommandError that keeps what the
 * callers read of it: the exit code (or the signal), stdout and stderr.
 */
import { execFile } from "node:child_process";
import { $, ProcessOutput } from "zx";

export interface RunOptions {
  /** Kill the program after this many milliseconds. @default no limit */
  timeout?: number;
  /** Its whole environment. @default process.env */
  env?: NodeJS.ProcessEnv;
  /** Its working folder. @default this process's */
  cwd?: string;
  /** Run it as this user (the service user of a root run): node's execFile, as zx cannot switch users. */
  uid?: number;
  gid?: number;
}

export class CommandError extends Error {
  constructor(
    readonly file: string,
    /** The exit code, or the signal that ended it. */
    readonly code: number | string | null,
    readonly stdout: string,
    readonly stderr: string,
  ) {
    super(`Command failed: ${file} (${typeof code === "number" ? `exit ${code}` : (code ?? "no exit code")})${stderr.trim() ? `\n${stderr.trim()}` : ""}`);
    this.name = "CommandError";
  }
}

/** Runs `file args…`; resolves with its output when it exits 0, else rejects with a CommandError. */
export async function run(file: string, args: readonly string[], options: RunOptions = {}): Promise<{ stdout: string; stderr: string }> {
  if (options.uid !== undefined) return runAs(file, args, options);
  try {
    const out = await $({ quiet: true, verbose: false, env: options.env ?? process.env, ...(options.cwd ? { cwd: options.cwd } : {}), ...(options.timeout ? { timeout: options.timeout } : {}) })`${file} ${args}`;
    return { stdout: out.stdout, stderr: out.stderr };
  } catch (error) {
    if (error instanceof ProcessOutput) throw new CommandError(file, error.exitCode ?? error.signal ?? null, error.stdout, error.stderr);
    throw error;
  }
}

function runAs(file: string, args: readonly string[], options: RunOptions): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { env: options.env ?? process.env, cwd: options.cwd, uid: options.uid, gid: options.gid, timeout: options.timeout, maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) => {
      if (!error) return resolve({ stdout, stderr });
      const code = typeof error.code === "number" ? error.code : (error.signal ?? (typeof error.code === "string" ? error.code : null));
      reject(new CommandError(file, code, stdout, stderr || error.message));
    });
  });
}
