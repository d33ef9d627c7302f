/** How many bytes the files under a folder hold (status's data size; missing or unreadable parts count 0). */
import { lstat, readdir } from "node:fs/promises";
import path from "node:path";

export async function folderBytes(dir: string): Promise<number> {
  let total = 0;
  const walk = async (d: string) => {
    for (const entry of await readdir(d, { withFileTypes: true }).catch(() => [])) {
      const file = path.join(d, entry.name);
      if (entry.isDirectory()) await walk(file);
      else total += (await lstat(file).catch(() => ({ size: 0 }))).size;
    }
  };
  await walk(dir);
  return total;
}
