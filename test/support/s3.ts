/**
 * A real S3-protocol server for tests: s3rver (npm; Debian 12 packages no S3 server, MinIO and
 * moto are not available here) on 127.0.0.1, its objects in a temporary folder. It accepts any
 * credentials; they are passed only in the child command's environment.
 */
import { mkdtempSync, rmSync } from "node:fs";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { CreateBucketCommand, S3Client } from "@aws-sdk/client-s3";
import S3rver from "s3rver";

export interface StartedS3 {
  endpoint: string;
  port: number;
  directory: string;
  bucket: string;
  /** The child command's environment: endpoint and (dummy) credentials, nothing else. */
  env: NodeJS.ProcessEnv;
  /** An SDK client for the test's own checks. */
  client: S3Client;
  /** Stops the server (an outage); the objects stay in `directory`. */
  stop(): Promise<void>;
  /** Starts it again on the same port and folder. */
  restart(): Promise<void>;
  destroy(): Promise<void>;
}

export const S3_TEST_SECRET = "s3rver-test-secret-7f3a9c";

export async function startS3(bucket = "cpi-backups"): Promise<StartedS3> {
  const directory = mkdtempSync(path.join(os.tmpdir(), "cpi-s3rver-"));
  let server: S3rver | undefined;
  const start = async (port: number) => {
    server = new S3rver({ address: "127.0.0.1", port, silent: true, directory });
    const address = (await server.run()) as AddressInfo;
    return address.port;
  };
  const port = await start(0);
  const endpoint = `http://127.0.0.1:${port}`;
  const env = { AWS_ENDPOINT_URL_S3: endpoint, AWS_ACCESS_KEY_ID: "S3RVER", AWS_SECRET_ACCESS_KEY: S3_TEST_SECRET, AWS_REGION: "us-east-1", AWS_EC2_METADATA_DISABLED: "true" };
  const client = new S3Client({ region: "us-east-1", endpoint, forcePathStyle: true, credentials: { accessKeyId: "S3RVER", secretAccessKey: S3_TEST_SECRET }, requestChecksumCalculation: "WHEN_REQUIRED", responseChecksumValidation: "WHEN_REQUIRED" });
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  const stop = async () => {
    await server?.close();
    server = undefined;
  };
  return {
    endpoint,
    port,
    directory,
    bucket,
    env,
    client,
    stop,
    restart: async () => {
      await start(port);
    },
    destroy: async () => {
      client.destroy();
      await stop().catch(() => undefined);
      rmSync(directory, { recursive: true, force: true });
    },
  };
}
