/**
 * Where backups may be written, checked before the environment's lock is taken and before any
 * folder is made: inside the project (spec.backup.dir is relative to it), or an explicit path the
 * user owns or may create, never a system folder (/etc, /usr, …) or a kernel file system (/proc:
 * Node's recursive mkdir spins there forever).
 */
import { accessSync, constants, existsSync, statfsSync, statSync } from "node:fs";
import path from "node:path";
import { CliError, EXIT } from "../errors.js";
import { systemFolderOf } from "../system-folders.js";

const KERNEL_FS = new Set([0x9fa0 /* proc */, 0x62656572 /* sysfs */, 0x1cd1 /* devpts */, 0x64626720 /* debugfs */, 0x63677270 /* cgroup2 */, 0x27e0eb /* cgroup */]);

/**
 * Refuses a backup folder that cannot work, naming where the path came from (`--out`,
 * `backup.dir in Pulumi.dev.yaml`), the value, and why.
 */
export function assertUsableBackupRoot(root: string, source: string): void {
  const dir = path.resolve(root);
  const refuse = (why: string, hint = "use a folder in the project (backup.dir) or one you own, e.g. --out ~/backups") => {
    throw new CliError(`${source} ${JSON.stringify(root)}: ${why}`, EXIT.USAGE, hint);
  };
  const system = systemFolderOf(dir);
  if (system) refuse(system === dir ? `${dir} is a system folder; backups need a folder of their own` : `is inside the system folder ${system}`);
  let existing = dir;
  while (!existsSync(existing) && path.dirname(existing) !== existing) existing = path.dirname(existing);
  const stat = statSync(existing);
  if (!stat.isDirectory()) refuse(`${existing} is a file, not a folder`);
  try {
    if (KERNEL_FS.has(statfsSync(existing).type)) refuse(`${existing} is on a kernel file system, where no folder can be made`);
  } catch (error) {
    if (error instanceof CliError) throw error;
  }
  const uid = process.getuid?.();
  if (existing === dir && uid !== undefined && uid !== 0 && stat.uid !== uid) refuse(`${dir} belongs to another user (uid ${stat.uid}); backups hold the data, keep them in a folder you own`);
  try {
    accessSync(existing, constants.W_OK | constants.X_OK);
  } catch {
    refuse(`${existing} is not writable by this user`);
  }
}
