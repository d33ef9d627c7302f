/**
 * Every command ends on SIGTERM, SIGINT and SIGHUP, and cleans up first: what a run holds
 * (its environment's lock, a half-written backup folder, child processes such as pg_dump) is
 * registered here while held, and released in reverse order when a signal comes. Then the process
 * exits 128 + the signal's number (SIGTERM 143, SIGINT 130, SIGHUP 129), as a shell reports it.
 * A second signal exits at once; the clean-ups are bounded (CLEANUP_LIMIT_MS) so a stuck one
 * never keeps the process alive.
 */
import os from "node:os";

type Cleanup = () => unknown;

const cleanups = new Map<number, { what: string; run: Cleanup }>();
let nextId = 0;
let interceptor: ((signal: NodeJS.Signals) => void) | undefined;
let installed = false;
let terminating = false;

/** How long the clean-ups may take in all before the process exits anyway. */
export const CLEANUP_LIMIT_MS = 10_000;

export const TERMINATION_SIGNALS = ["SIGTERM", "SIGINT", "SIGHUP"] as const;

/** The exit code of a run ended by `signal`: 128 + its number. */
export function signalExitCode(signal: NodeJS.Signals): number {
  return 128 + (os.constants.signals[signal] ?? 15);
}

/** Registers what to undo if the process is told to stop; returns the function that unregisters it. */
export function onTermination(what: string, run: Cleanup): () => void {
  const id = nextId++;
  cleanups.set(id, { what, run });
  return () => void cleanups.delete(id);
}

/**
 * A command that stops by itself at a safe point (the DR drill finishes its phase and cleans up)
 * takes the first signal; a second one ends the process through the clean-ups as usual.
 */
export function interceptTermination(handler: (signal: NodeJS.Signals) => void): () => void {
  interceptor = handler;
  return () => {
    if (interceptor === handler) interceptor = undefined;
  };
}

/** Installs the handlers (once per process; runCommand does it). */
export function installTerminationHandlers(log: (message: string) => void): void {
  if (installed) return;
  installed = true;
  for (const signal of TERMINATION_SIGNALS) {
    process.on(signal, () => {
      if (interceptor && !terminating) {
        const handler = interceptor;
        interceptor = undefined;
        handler(signal);
        return;
      }
      void terminate(signal, log);
    });
  }
}

/**
 * The exit under way when a signal is being handled, else undefined. A command's own work fails
 * while its children are stopped (a broken pipe, a closed connection): that failure is not the
 * run's outcome, the signal is, so the command waits for this instead of reporting it.
 */
export function terminationUnderWay(): Promise<never> | undefined {
  return underWay;
}
let underWay: Promise<never> | undefined;

/** Runs the clean-ups (newest first, bounded) and exits 128 + the signal's number. */
export function terminate(signal: NodeJS.Signals, log: (message: string) => void): Promise<never> {
  const code = signalExitCode(signal);
  if (terminating) process.exit(code);
  terminating = true;
  underWay = runCleanups(signal, code, log);
  return underWay;
}

async function runCleanups(signal: NodeJS.Signals, code: number, log: (message: string) => void): Promise<never> {
  const pending = [...cleanups.values()].reverse();
  cleanups.clear();
  log(`${signal}: stopping${pending.length ? `; ${pending.map((c) => c.what).join(", ")}` : ""}`);
  const limit = new Promise<void>((resolve) => setTimeout(resolve, CLEANUP_LIMIT_MS).unref());
  const all = (async () => {
    for (const cleanup of pending) {
      try {
        await cleanup.run();
      } catch (error) {
        log(`${signal}: could not ${cleanup.what}: ${(error as Error).message}`);
      }
    }
  })();
  await Promise.race([all, limit]);
  process.exit(code);
}
