/**
 * A real S3-protocol server for tests: s3rver (npm; Debian 12 packages no S3 server, MinIO and
 * moto are not available here) on 127.0.0.1, its objects in a temporary folder. It accepts any
 * credentials; they are passed only in the child command's environment.
 */
import { mkdtempSync, rmSync } from "node:fs";
import net, { type AddressInfo } from "node:net";
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

export interface HoldingProxy {
  endpoint: string;
  /** Resolves when a request matching `hold` arrived and was held (never forwarded). */
  held: Promise<void>;
  close(): Promise<void>;
}

/**
 * A TCP proxy on 127.0.0.1 in front of the S3 server that forwards everything until a request's
 * first line matches `hold`, then holds that connection: the client waits for an answer that never
 * comes, so a test can kill it at an exact point of an upload.
 */
export async function startHoldingProxy(upstreamPort: number, hold: RegExp): Promise<HoldingProxy> {
  let onHeld!: () => void;
  const held = new Promise<void>((r) => (onHeld = r));
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(upstreamPort, "127.0.0.1");
    sockets.add(client).add(upstream);
    let holding = false;
    client.on("data", (chunk) => {
      if (holding) return;
      if (hold.test(chunk.toString("latin1").split("\r\n", 1)[0]!)) {
        holding = true;
        onHeld();
        return;
      }
      upstream.write(chunk);
    });
    upstream.on("data", (chunk) => {
      if (!holding) client.write(chunk);
    });
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    held,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
