/**
 * A backup repository in an S3-compatible bucket. Uploads stream (lib-storage's Upload: multipart
 * for large files, a few 8 MiB parts in memory at most), hashing the bytes on their way; the
 * SHA-256 is known beforehand (the manifest's), stored as object metadata `sha256`, and a stream
 * that hashes to something else is deleted and refused. Downloads are checked against it as they
 * stream. Credentials: the AWS SDK's default chain only (environment, shared config, instance
 * role); AWS_ENDPOINT_URL_S3 is honoured by the SDK. The SDK's own CRC checksums are off
 * (WHEN_REQUIRED): S3-compatible servers vary in supporting them, and the SHA-256 covers it.
 */
import {
  DeleteObjectCommand,
  GetBucketEncryptionCommand,
  GetBucketPolicyStatusCommand,
  GetBucketVersioningCommand,
  GetObjectCommand,
  GetPublicAccessBlockCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  type StorageClass,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { Readable } from "node:stream";
import { onTermination } from "../../signals.js";
import type { S3RepositorySpec } from "../../spec/schema.js";
import { RepositoryObjectError, RepositoryUnavailableError, verifyingStream, type ObjectStore, type ObjectHead, type ObjectInfo, type PutOptions } from "./objects.js";

/** Up to this size a file of known size goes in one PutObject (S3 takes up to 5 GiB so; larger ones are multipart). */
const SINGLE_PUT_MAX_BYTES = 64 * 1024 * 1024;

export function parseS3Url(url: string): { bucket: string; prefix: string } {
  const m = /^s3:\/\/([^/]+)(\/.*)?$/.exec(url);
  if (!m) throw new Error(`${url}: expected s3://bucket/prefix`);
  return { bucket: m[1]!, prefix: (m[2] ?? "").replace(/^\/+|\/+$/g, "") };
}

export class S3ObjectStore implements ObjectStore {
  readonly bucket: string;
  readonly prefix: string;
  readonly client: S3Client;

  constructor(readonly spec: S3RepositorySpec) {
    ({ bucket: this.bucket, prefix: this.prefix } = parseS3Url(spec.url));
    const endpoint = spec.endpoint ?? process.env.AWS_ENDPOINT_URL_S3;
    // The SDK warns on every run under Node 20 about releases of 2027; the commands' stderr is for findings.
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
    this.client = new S3Client({
      region: spec.region,
      ...(spec.endpoint ? { endpoint: spec.endpoint } : {}),
      // An S3-compatible server on its own host name takes bucket/key paths, not bucket.host names.
      forcePathStyle: endpoint !== undefined,
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
      maxAttempts: 3,
    });
  }

  private fullKey(key: string): string {
    return this.prefix ? `${this.prefix}/${key}` : key;
  }

  private relative(full: string): string {
    return this.prefix ? full.slice(this.prefix.length + 1) : full;
  }

  locate(key: string): string {
    return `s3://${this.bucket}/${this.fullKey(key)}`;
  }

  describe(): string {
    const endpoint = this.spec.endpoint ?? process.env.AWS_ENDPOINT_URL_S3;
    return `s3://${this.bucket}${this.prefix ? `/${this.prefix}` : ""} (${this.spec.region}${endpoint ? `, ${endpoint}` : ""})`;
  }

  async put(key: string, body: Readable, options: PutOptions): Promise<{ bytes: number; sha256: string }> {
    const check = verifyingStream(`${this.locate(key)} (upload)`, [options.sha256]);
    const params = {
      Bucket: this.bucket,
      Key: this.fullKey(key),
      StorageClass: this.spec.storageClass as StorageClass,
      ServerSideEncryption: this.spec.sse,
      ...(this.spec.kmsKeyId ? { SSEKMSKeyId: this.spec.kmsKeyId } : {}),
      Metadata: { ...options.metadata, sha256: options.sha256 },
    };
    if (options.bytes !== undefined && options.bytes <= SINGLE_PUT_MAX_BYTES) {
      // Size known and moderate (a WAL segment, a manifest, an RDB): one PutObject streams it, no part buffers.
      // A source error or a wrong hash (at the stream's end) aborts the request; if the server had
      // every byte already, confirmDigest deletes the object.
      const abort = new AbortController();
      let streamError: unknown;
      body.once("error", (e) => check.destroy(e));
      check.once("error", (e) => {
        streamError = e;
        abort.abort();
      });
      try {
        await this.client.send(new PutObjectCommand({ ...params, Body: body.pipe(check), ContentLength: options.bytes }), { abortSignal: abort.signal });
      } catch (error) {
        if (streamError) {
          await this.removeAborted(key);
          throw streamError;
        }
        throw this.explain(error, key, "upload");
      }
      // The server may answer as soon as the last byte arrives, before the hash has seen the source's end.
      await hashed(check);
      if (streamError) {
        await this.removeAborted(key);
        throw streamError;
      }
      return this.confirmDigest(key, check.digest(), options.sha256);
    }
    const upload = new Upload({
      client: this.client,
      // Two 5 MiB parts in flight (S3's smallest part): the memory a stream of any size needs.
      queueSize: 2,
      partSize: 5 * 1024 * 1024,
      leavePartsOnError: false,
      params: { ...params, Body: body.pipe(check) },
    });
    // A source that fails (or hashes wrong) aborts the upload; a complete object of other bytes is deleted.
    body.once("error", (e) => check.destroy(e));
    // Told to stop: the multipart upload is aborted, so its parts are not left in the bucket (a kill -9
    // leaves them invisible to listings: the bucket's AbortIncompleteMultipartUpload lifecycle rule removes them).
    const unregister = onTermination(`abort the upload of ${this.locate(key)}`, () => upload.abort());
    try {
      await upload.done();
    } catch (error) {
      throw this.explain(error, key, "upload");
    } finally {
      unregister();
    }
    return this.confirmDigest(key, check.digest(), options.sha256);
  }

  /**
   * Removes what an aborted PutObject may have left: S3 stores nothing of an incomplete request,
   * but some S3-compatible servers store what arrived, and only after the connection closes.
   * Bounded: a few checks over about a second.
   */
  private async removeAborted(key: string): Promise<void> {
    for (let i = 0; i < 8; i++) {
      await new Promise((r) => setTimeout(r, 100));
      await this.delete([key]).catch(() => undefined);
      if (i >= 2 && !(await this.head(key).catch(() => undefined))) return;
    }
  }

  /** What streamed must be what was promised: otherwise the object goes. */
  private async confirmDigest(key: string, digest: { bytes: number; sha256: string }, expected: string): Promise<{ bytes: number; sha256: string }> {
    if (digest.sha256 !== expected) {
      await this.delete([key]).catch(() => undefined);
      throw new RepositoryObjectError(this.locate(key), `uploaded bytes hash to ${digest.sha256}, expected ${expected} (the file changed while it was read); the object was deleted`);
    }
    return digest;
  }

  async head(key: string): Promise<ObjectHead | undefined> {
    try {
      const r = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.fullKey(key) }));
      const metadata = r.Metadata ?? {};
      return { key, bytes: r.ContentLength ?? 0, lastModified: r.LastModified ?? new Date(0), sha256: metadata.sha256, metadata };
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw this.explain(error, key, "HEAD");
    }
  }

  async get(key: string, options: { expectSha256?: string } = {}): Promise<{ body: Readable; head: ObjectHead }> {
    let r;
    try {
      r = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.fullKey(key) }));
    } catch (error) {
      if (isNotFound(error)) throw new RepositoryObjectError(this.locate(key), "no such object");
      throw this.explain(error, key, "GET");
    }
    const metadata = r.Metadata ?? {};
    const head: ObjectHead = { key, bytes: r.ContentLength ?? 0, lastModified: r.LastModified ?? new Date(0), sha256: metadata.sha256, metadata };
    if (!metadata.sha256 && !options.expectSha256) throw new RepositoryObjectError(this.locate(key), "has no sha256 metadata, so it cannot be checked (not written by this toolkit)");
    const source = r.Body as Readable;
    const check = verifyingStream(this.locate(key), [metadata.sha256 ?? "", options.expectSha256 ?? ""]);
    source.once("error", (e) => check.destroy(e));
    return { body: source.pipe(check), head };
  }

  async list(prefix: string): Promise<ObjectInfo[]> {
    const out: ObjectInfo[] = [];
    let token: string | undefined;
    // Bounded: a page is up to 1000 keys; 10 000 pages is ten million objects.
    for (let page = 0; page < 10_000; page++) {
      let r;
      try {
        r = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.fullKey(prefix), ContinuationToken: token }));
      } catch (error) {
        throw this.explain(error, prefix, "LIST");
      }
      for (const o of r.Contents ?? []) if (o.Key) out.push({ key: this.relative(o.Key), bytes: o.Size ?? 0, lastModified: o.LastModified ?? new Date(0) });
      if (!r.IsTruncated || !r.NextContinuationToken) break;
      token = r.NextContinuationToken;
    }
    return out.sort((a, b) => a.key.localeCompare(b.key));
  }

  /**
   * What AWS Config and Security Hub flag on a backup bucket: no versioning (a deleted or
   * overwritten backup is gone), no default encryption, public access not fully blocked, a public
   * policy. A call the server does not answer (S3-compatible servers implement some) is unknown.
   */
  async posture(): Promise<{ problems: string[]; unknown: string[] }> {
    const problems: string[] = [];
    const unknown: string[] = [];
    const ask = async <T>(what: string, call: () => Promise<T>, missing: RegExp): Promise<T | "missing" | undefined> => {
      try {
        return await call();
      } catch (error) {
        const name = (error as { name?: string }).name ?? "";
        if (missing.test(name)) return "missing";
        unknown.push(`${what}: ${name || (error as Error).message}`);
        return undefined;
      }
    };
    const bucket = { Bucket: this.bucket };
    const versioning = await ask("versioning", () => this.client.send(new GetBucketVersioningCommand(bucket)), /^$/);
    if (versioning && versioning !== "missing" && versioning.Status !== "Enabled") problems.push("not versioned (a deleted or overwritten backup cannot be recovered)");
    const encryption = await ask("default encryption", () => this.client.send(new GetBucketEncryptionCommand(bucket)), /ServerSideEncryptionConfigurationNotFound/);
    if (encryption === "missing") problems.push("no default encryption");
    const block = await ask("public access block", () => this.client.send(new GetPublicAccessBlockCommand(bucket)), /NoSuchPublicAccessBlockConfiguration/);
    const c = block && block !== "missing" ? block.PublicAccessBlockConfiguration : undefined;
    if (block === "missing" || (c && !(c.BlockPublicAcls && c.IgnorePublicAcls && c.BlockPublicPolicy && c.RestrictPublicBuckets))) problems.push("public access not fully blocked");
    const status = await ask("policy status", () => this.client.send(new GetBucketPolicyStatusCommand(bucket)), /NoSuchBucketPolicy/);
    if (status && status !== "missing" && status.PolicyStatus?.IsPublic) problems.push("public (its bucket policy grants public access)");
    return { problems, unknown };
  }

  async delete(keys: string[]): Promise<void> {
    // One request per key: DeleteObjects needs a Content-MD5 or checksum header that S3-compatible servers handle unevenly.
    for (const key of keys) {
      try {
        await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.fullKey(key) }));
      } catch (error) {
        if (!isNotFound(error)) throw this.explain(error, key, "DELETE");
      }
    }
  }

  /** An SDK error as a message naming the object and the operation (never credentials: the SDK does not put them in errors). */
  private explain(error: unknown, key: string, what: string): Error {
    if (error instanceof RepositoryObjectError) return error;
    const e = error as { name?: string; message?: string; code?: string; $metadata?: { httpStatusCode?: number } };
    const status = e.$metadata?.httpStatusCode ? ` (HTTP ${e.$metadata.httpStatusCode})` : "";
    const text = error instanceof S3ServiceException ? `${e.name}${status}: ${e.message}` : `${e.code ?? e.name ?? "error"}: ${e.message ?? String(error)}`;
    return new RepositoryUnavailableError(this.locate(key), `${what} failed: ${text}`);
  }
}


/** Resolves once a verifying stream has hashed its whole input (its flush ran), or failed; bounded to a minute. */
function hashed(stream: NodeJS.WritableStream & { writableFinished: boolean }): Promise<void> {
  if (stream.writableFinished) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, 60_000);
    const done = () => (clearTimeout(timer), resolve());
    stream.once("finish", done);
    stream.once("error", done);
  });
}

function isNotFound(error: unknown): boolean {
  const e = error as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e.name === "NotFound" || e.name === "NoSuchKey" || e.$metadata?.httpStatusCode === 404;
}

/** A whole body as a Readable (small objects: manifests). */
export function readableOf(content: string | Buffer): Readable {
  return Readable.from([Buffer.from(content)]);
}
