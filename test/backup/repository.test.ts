/**
 * The object store under a bucket repository against a real S3-protocol server, s3rver
 * (127.0.0.1). put/get/head/list/delete, the SHA-256 carried as metadata and checked
 * while the bytes stream, and a replaced object refused naming it.
 */
import { createHash, randomBytes } from "node:crypto";
import { PutObjectCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readableOf } from "../../lib/backup/repository/s3.js";
import { S3ObjectStore } from "../../lib/backup/repository/s3.js";
import type { ObjectStore } from "../../lib/backup/repository/objects.js";
import { parseSpec } from "../../lib/spec/load.js";
import { startS3, type StartedS3 } from "../support/s3.js";

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
async function readAll(r: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of r) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

describe("backup.repository in the spec", () => {
  const message = (repository: unknown) => {
    try {
      parseSpec("dev", { backup: { repository } });
      return "";
    } catch (error) {
      return (error as Error).message;
    }
  };
  it("defaults to local and fills the bucket's defaults", () => {
    expect(parseSpec("dev", {}).backup.repository).toBe("local");
    expect(parseSpec("dev", { backup: { repository: { url: "s3://cpi-backups/prod", region: "eu-west-1" } } }).backup.repository).toEqual({ url: "s3://cpi-backups/prod", region: "eu-west-1", storageClass: "STANDARD", sse: "AES256", walPushSeconds: 60 });
  });
  it("refuses bad urls, bucket names, endpoints and KMS settings with the reason", () => {
    expect(message({ url: "https://cpi-backups", region: "eu-west-1" })).toMatch(/must start with s3:\/\//);
    expect(message({ url: "s3://ab", region: "eu-west-1" })).toMatch(/3-63 characters/);
    expect(message({ url: "s3://Bad_Bucket", region: "eu-west-1" })).toMatch(/lowercase letters/);
    expect(message({ url: "s3://cpi-backups", region: "eu-west-1", endpoint: "ftp://x" })).toMatch(/http:\/\/ or https:\/\//);
    expect(message({ url: "s3://cpi-backups", region: "eu-west-1", sse: "aws:kms" })).toMatch(/backup\.repository\.kmsKeyId = .*required with sse "aws:kms"/);
    expect(message({ url: "s3://cpi-backups", region: "eu-west-1", kmsKeyId: "k" })).toMatch(/backup\.repository\.kmsKeyId = .*goes only with sse "aws:kms"/);
    expect(message({ url: "s3://cpi-backups", region: "eu-west-1", accessKey: "AKIA" })).toMatch(/backup\.repository\.accessKey = "AKIA": unknown key; allowed in backup.repository: url, region, endpoint/);
  });
});

describe("S3 object store", () => {
  let s3: StartedS3 | undefined;
  let repo: ObjectStore;
  beforeAll(async () => {
    s3 = await startS3("cpi-unit");
    Object.assign(process.env, { AWS_ACCESS_KEY_ID: "S3RVER", AWS_SECRET_ACCESS_KEY: "unit-secret" });
    repo = new S3ObjectStore({ url: "s3://cpi-unit/pre/fix", region: "us-east-1", endpoint: s3.endpoint, storageClass: "STANDARD", sse: "AES256", walPushSeconds: 60 });
  });
  afterAll(async () => {
    await s3?.destroy();
  });

  it("stores, lists, reads back (checked), and deletes", async () => {
    const big = randomBytes(9 * 1024 * 1024 + 17); // more than one multipart part
    const small = Buffer.from("manifest\n");
    expect(await repo.put("dev/backups/1/base.tar.zst", readableOf(big), { sha256: sha(big) })).toEqual({ bytes: big.length, sha256: sha(big) });
    // Size known: one streamed request (a bucket's PutObject); unknown: multipart.
    await repo.put("dev/backups/1/manifest.json", readableOf(small), { sha256: sha(small), bytes: small.length, metadata: { "archived-at": "2026-01-01T00:00:00.000Z" } });
    const head = await repo.head("dev/backups/1/manifest.json");
    expect(head).toMatchObject({ bytes: small.length, sha256: sha(small), metadata: { "archived-at": "2026-01-01T00:00:00.000Z" } });
    expect(await repo.head("dev/backups/1/none")).toBeUndefined();
    expect((await repo.list("dev/backups/")).map((o) => [o.key, o.bytes])).toEqual([
      ["dev/backups/1/base.tar.zst", big.length],
      ["dev/backups/1/manifest.json", small.length],
    ]);
    expect(sha(await readAll((await repo.get("dev/backups/1/base.tar.zst")).body))).toBe(sha(big));
    await repo.delete(["dev/backups/1/base.tar.zst", "dev/backups/1/manifest.json"]);
    expect(await repo.list("dev/")).toEqual([]);
    expect(repo.locate("dev/x")).toBe("s3://cpi-unit/pre/fix/dev/x");
  });

  it("refuses an upload whose bytes are not the SHA-256 it was given, and stores nothing", async () => {
    const data = Buffer.from("the real bytes");
    await expect(repo.put("dev/wal/x", readableOf(data), { sha256: sha(Buffer.from("other")) })).rejects.toThrow(/SHA-256 mismatch|hash to/);
    await expect(repo.put("dev/wal/x", readableOf(data), { sha256: sha(Buffer.from("other")), bytes: data.length })).rejects.toThrow(/SHA-256 mismatch|hash to/);
    expect(await repo.head("dev/wal/x")).toBeUndefined();
  });

  it("fails a download whose bytes do not match, naming the object", async () => {
    const good = Buffer.from("good content");
    await repo.put("dev/wal/000000010000000000000001", readableOf(good), { sha256: sha(good) });
    // Other bytes under the old metadata: what a damaged or replaced object looks like.
    await s3!.client.send(new PutObjectCommand({ Bucket: "cpi-unit", Key: "pre/fix/dev/wal/000000010000000000000001", Body: "evil content", Metadata: { sha256: sha(good) } }));
    const { body } = await repo.get("dev/wal/000000010000000000000001");
    await expect(readAll(body)).rejects.toThrow(new RegExp(`${repo.locate("dev/wal/000000010000000000000001").replace(/[/.]/g, "\\$&")}: SHA-256 mismatch`));
    await expect(repo.get("dev/wal/missing")).rejects.toThrow(/dev\/wal\/missing: no such object/);
  });
});
