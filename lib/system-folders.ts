/**
 * Folders of the operating system that no backup, state or report of the toolkit may be written
 * into (a spec with `backup.dir: /etc` wrote backups into /etc). No dependencies: the spec's
 * schema uses it too.
 */
import path from "node:path";

/** Trees that belong to the system or the kernel: nothing of ours goes anywhere inside them. */
const SYSTEM_TREES = ["/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/run", "/sbin", "/sys", "/usr", "/var/lib/dpkg", "/var/lib/apt", "/var/log", "/var/cache", "/var/spool", "/var/mail", "/var/run"];
/** Shared top-level folders: a subfolder of them is fine, the folder itself is not. */
const SHARED_ROOTS = ["/", "/home", "/media", "/mnt", "/opt", "/root", "/srv", "/tmp", "/var", "/var/lib", "/var/tmp"];

/** The system folder that `dir` is or is inside, if any (e.g. "/etc" for /etc/backups). */
export function systemFolderOf(dir: string): string | undefined {
  const resolved = path.resolve(dir);
  if (SHARED_ROOTS.includes(resolved)) return resolved;
  return SYSTEM_TREES.find((tree) => resolved === tree || resolved.startsWith(tree + "/"));
}
