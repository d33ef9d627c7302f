/** The documented exit codes and the error every command reports as one line with a hint. */
/** Exit codes of every command (README: Exit codes). */
export const EXIT = {
  /** Done; or, for checks, nothing found. */
  OK: 0,
  /** The command ran and found a problem (drift, a failed check, a threshold, a failed drill). */
  PROBLEM: 1,
  /** The command could not run: bad input, a server unreachable, a tool missing. Nothing was changed. */
  ERROR: 2,
  /** Another run holds this environment's lock. Nothing was changed. */
  BUSY: 3,
  /** Unknown flag or bad arguments. Nothing was changed. */
  USAGE: 64,
} as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** An error meant for the operator: what is wrong, with which value, and what to do. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly code: ExitCode = EXIT.ERROR,
    readonly hint?: string,
  ) {
    super(message);
    this.name = "CliError";
  }
}
