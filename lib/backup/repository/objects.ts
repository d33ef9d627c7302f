/**
 * The object store under a bucket repository (S3ObjectStore): put/get/head/list/delete of keys
 * relative to the bucket's prefix:
 * `<env>/backups/<id>/<file>` and `<env>/wal/<segment>`. Every object carries its SHA-256
 * (object metadata `sha256` in a bucket); `get` checks it while the bytes stream and fails,
 * naming the object, when the end does not match.
 */
import { createHash } from "node:crypto";
import { Transform, type Readable } from "node:stream";

export interface PutOptions {
  /** SHA-256 of the content, known beforehand (the manifest's, or hashFile's): the upload is checked against it. */
  sha256: string;
  /** The size, when known (a file): a bucket then takes it in one streamed request, with no part buffers. */
  bytes?: number;
  /** Extra object metadata (never a secret): e.g. archived-at of a WAL segment. */
  metadata?: Record<string, string>;
}

export interface ObjectInfo {
  key: string;
  bytes: number;
  lastModified: Date;
}

export interface ObjectHead extends ObjectInfo {
  sha256?: string;
  metadata: Record<string, string>;
}

export interface ObjectStore {
  /** Uploads a stream; resolves once the object is stored, with what streamed through. */
  put(key: string, body: Readable, options: PutOptions): Promise<{ bytes: number; sha256: string }>;
  /** The object's bytes; the stream errors (naming the object) if they do not match its SHA-256 (or `expectSha256`). */
  get(key: string, options?: { expectSha256?: string }): Promise<{ body: Readable; head: ObjectHead }>;
  /** undefined when there is no such object. */
  head(key: string): Promise<ObjectHead | undefined>;
  list(prefix: string): Promise<ObjectInfo[]>;
  delete(keys: string[]): Promise<void>;
  /** Where a key is, for messages: s3://bucket/prefix/key or /path/key. */
  locate(key: string): string;
  /** s3://bucket/prefix (region, endpoint) or the folder. */
  describe(): string;
  /** A bucket's protection: what is wrong (public, unversioned, unencrypted) and what could not be read. */
  posture?(): Promise<{ problems: string[]; unknown: string[] }>;
}

/** Raised when an object is missing or its bytes do not match their SHA-256. */
export class RepositoryObjectError extends Error {
  constructor(
    readonly location: string,
    readonly problem: string,
  ) {
    super(`${location}: ${problem}`);
    this.name = "RepositoryObjectError";
  }
}

/** The bucket could not be reached or refused the request (not a finding about an object's content). */
export class RepositoryUnavailableError extends Error {
  constructor(
    readonly location: string,
    problem: string,
  ) {
    super(`${location}: ${problem}`);
    this.name = "RepositoryUnavailableError";
  }
}

/** A pass-through that hashes what streams and, at the end, fails when the digest is not `expected`. */
export function verifyingStream(location: string, expected: string[]): Transform & { digest(): { bytes: number; sha256: string } } {
  const hash = createHash("sha256");
  let bytes = 0;
  let sha256 = "";
  const stream = new Transform({
    transform(chunk: Buffer, _enc, done) {
      hash.update(chunk);
      bytes += chunk.length;
      done(null, chunk);
    },
    flush(done) {
      sha256 = hash.digest("hex");
      const wrong = expected.filter((e) => e && e !== sha256);
      if (wrong.length) return done(new RepositoryObjectError(location, `SHA-256 mismatch: the object's bytes hash to ${sha256}, expected ${wrong[0]} (corrupted or replaced; not used)`));
      done();
    },
  });
  return Object.assign(stream, { digest: () => ({ bytes, sha256 }) });
}

/** Object keys of an environment. */
export const repositoryKeys = {
  backups: (env: string) => `${env}/backups/`,
  backup: (env: string, id: string) => `${env}/backups/${id}/`,
  backupFile: (env: string, id: string, file: string) => `${env}/backups/${id}/${file}`,
  wal: (env: string) => `${env}/wal/`,
  walFile: (env: string, name: string) => `${env}/wal/${name}`,
};
