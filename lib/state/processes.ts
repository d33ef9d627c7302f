/** Is a server process still there: pid files can be stale, pids reused, and daemons zombies. */
import { readFileSync } from "node:fs";

/**
 * True while the process exists and is not a zombie. A daemonized server that exits stays a
 * zombie until init reaps it (slowly, in containers): it is gone all the same.
 */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return true; // no procfs: kill(0) said it exists
  }
}

/** True when the pid runs a process whose command line contains `marker` (a reused pid does not count). */
export function processRuns(pid: number, marker: string): boolean {
  if (!processAlive(pid)) return false;
  let cmdline: string;
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
  } catch {
    return true; // no procfs (or not ours to read): trust the pid
  }
  return cmdline.includes(marker);
}
