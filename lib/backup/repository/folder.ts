/**
 * A backup repository in a folder: keys are paths under the root; each object's SHA-256 is kept
 * beside it (`<file>.sha256`, like a bucket's object metadata). Writes go to a temporary name and
 * are renamed into place, so a reader never sees half an object.
 */
import { createReadStream, createWriteStream, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from "node:fs";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import type { Readable } from "node:stream";
import { writeFileAtomic } from "../../fs.js";
import { RepositoryObjectError, verifyingStream, type BackupRepository, type ObjectHead, type ObjectInfo, type PutOptions } from "./repository.js";

const META = ".meta.json";

export class FolderRepository implements BackupRepository {
  constructor(readonly root: string) {}

  locate(key: string): string {
    return path.join(this.root, key);
  }

  describe(): string {
    return this.root;
  }

  async put(key: string, body: Readable, options: PutOptions): Promise<{ bytes: number; sha256: string }> {
    const file = this.locate(key);
    mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    const temp = `${file}.tmp-${process.pid}`;
    const check = verifyingStream(`${file} (upload)`, [options.sha256]);
    try {
      await pipeline(body, check, createWriteStream(temp, { mode: 0o600 }));
      writeFileAtomic(file + META, JSON.stringify({ ...options.metadata, sha256: options.sha256 }), 0o600);
      renameSync(temp, file);
    } catch (error) {
      rmSync(temp, { force: true });
      throw error;
    }
    return check.digest();
  }

  async head(key: string): Promise<ObjectHead | undefined> {
    const file = this.locate(key);
    if (!existsSync(file) || !statSync(file).isFile()) return undefined;
    const st = statSync(file);
    const metadata = existsSync(file + META) ? (JSON.parse(readFileSync(file + META, "utf8")) as Record<string, string>) : {};
    return { key, bytes: st.size, lastModified: st.mtime, sha256: metadata.sha256, metadata };
  }

  async get(key: string, options: { expectSha256?: string } = {}): Promise<{ body: Readable; head: ObjectHead }> {
    const head = await this.head(key);
    if (!head) throw new RepositoryObjectError(this.locate(key), "no such object");
    const body = createReadStream(this.locate(key)).pipe(verifyingStream(this.locate(key), [head.sha256 ?? "", options.expectSha256 ?? ""]));
    return { body, head };
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    const out: ObjectInfo[] = [];
    const walk = (dir: string) => {
      if (!existsSync(dir)) return;
      for (const entry of readdirSync(dir, { withFileTypes: true })) {
        const full = path.join(dir, entry.name);
        if (entry.isDirectory()) walk(full);
        else if (!entry.name.endsWith(META) && !entry.name.startsWith(".") && !/\.tmp-\d+$/.test(entry.name)) {
          const key = path.relative(this.root, full).split(path.sep).join("/");
          if (key.startsWith(prefix)) {
            const st = statSync(full);
            out.push({ key, bytes: st.size, lastModified: st.mtime });
          }
        }
      }
    };
    walk(this.root);
    return out.sort((a, b) => a.key.localeCompare(b.key));
  }

  async delete(keys: string[]): Promise<void> {
    for (const key of keys) {
      rmSync(this.locate(key), { force: true });
      rmSync(this.locate(key) + META, { force: true });
    }
  }
}
