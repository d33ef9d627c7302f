/**
 * One lock per environment, so two runs (up, down, backup, restore, drill) never act on it at
 * once. proper-lockfile uses an atomic mkdir and refreshes the lock's mtime while held, so the
 * lock of a killed run goes stale and is taken over instead of blocking forever.
 */
import { AsyncLocalStorage } from "node:async_hooks";
import lockfile from "proper-lockfile";
import { CliError, EXIT } from "../errors.js";
import { ensureDir } from "../fs.js";
import path from "node:path";
import { envWholeNumber } from "../input.js";
import { onTermination } from "../signals.js";

export interface LockOptions {
  /** What the holder is doing, for the message of a run that has to wait. */
  purpose: string;
  /** How long to wait for another run to finish. Default: $CPI_LOCK_WAIT_SECONDS or 120 s; 0 fails fast. */
  waitSeconds?: number;
  onWait?: (message: string) => void;
}

/**
 * The locks this async call chain holds. A run that holds a lock may call functions that take it
 * themselves (the DR drill holds its environment's lock across up, backup and restore): they go
 * ahead instead of waiting for it forever. Other call chains and other processes still wait.
 */
const heldLocks = new AsyncLocalStorage<ReadonlySet<string>>();

/** Runs `work` holding the environment's lock; fails with EXIT.BUSY when it cannot be had in time. */
export async function withEnvLock<T>(env: string, lockPath: string, options: LockOptions, work: () => Promise<T>): Promise<T> {
  const held = heldLocks.getStore();
  if (held?.has(lockPath)) return work();
  const waitSeconds = options.waitSeconds ?? lockWaitSeconds();
  ensureDir(path.dirname(lockPath), 0o700);
  const deadline = Date.now() + waitSeconds * 1000;
  let release: (() => Promise<void>) | undefined;
  let told = false;
  while (!release) {
    try {
      release = await lockfile.lock(lockPath, { realpath: false, lockfilePath: lockPath, stale: 15_000, update: 5_000 });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ELOCKED") throw error;
      if (Date.now() >= deadline) {
        throw new CliError(
          `environment '${env}' is busy: another run holds its lock (${lockPath})`,
          EXIT.BUSY,
          waitSeconds ? `it did not finish within ${waitSeconds}s; try again later` : "try again when it finishes (or set CPI_LOCK_WAIT_SECONDS to wait)",
        );
      }
      if (!told) options.onWait?.(`environment '${env}' is locked by another run; waiting up to ${waitSeconds}s before ${options.purpose}`);
      told = true;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  // A SIGTERM/SIGINT releases it too (lib/signals.ts), so the next run goes ahead at once.
  const releaseOnce = once(release);
  const unregister = onTermination(`release the lock of '${env}'`, releaseOnce);
  try {
    return await heldLocks.run(new Set([...(held ?? []), lockPath]), work);
  } finally {
    unregister();
    await releaseOnce().catch(() => undefined);
  }
}

/** $CPI_LOCK_WAIT_SECONDS (whole seconds, 0 fails fast; default 120); a bad value is refused, not ignored. */
export function lockWaitSeconds(): number {
  return envWholeNumber("CPI_LOCK_WAIT_SECONDS", 120, 0, 86_400, "seconds");
}

function once(release: () => Promise<void>): () => Promise<void> {
  let done: Promise<void> | undefined;
  return () => (done ??= release());
}
