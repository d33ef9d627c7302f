/**
 * Item 8, backups off the machine: a base backup and `restore --to latest` at the plan's rows
 * through an S3 bucket (backup.repository; s3rver on 127.0.0.1, started by this item) against the
 * same through a folder (--out), two ephemeral environments of the same spec and seed, the order
 * alternating per repetition. The bucket's run includes the upload, the WAL push and the
 * downloads; the upload and download throughput are read from the commands' reports. Targets: the bucket's backup+restore at most 1.5× the folder's, peak RSS ≤ 150 MB.
 */
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { withPg } from "../db/clients.js";
import { seedMarketData } from "../db/seed/index.js";
import { PROJECT_DIR } from "../spec/load.js";
import { throttled, type BenchItem } from "./harness.js";
import { failureText } from "./process.js";
import { atMost, measuredRow, skippedRow, type Row } from "./results.js";

const BUCKET = "cpi-bench";

const ROWS = {
  folder: { id: "bucket.folder.total", label: "base backup + restore --to latest through a folder", unit: "s" },
  bucket: { id: "bucket.s3.total", label: "base backup + restore --to latest through an S3 bucket (s3rver, 127.0.0.1)", unit: "s" },
  upload: { id: "bucket.s3.upload", label: "upload throughput of the base backup to the bucket (its objects' bytes / upload time)", unit: "MB/s" },
  download: { id: "bucket.s3.download", label: "download throughput of restore --to latest (base backup + WAL bytes / download time)", unit: "MB/s" },
  ratio: { id: "bucket.ratio", label: "bucket vs folder, backup+restore (same repetition)", unit: "x", target: atMost(1.5, "x") },
  rss: { id: "bucket.rss", label: "peak RSS of backup and restore through the bucket", unit: "MB", target: atMost(150, "MB") },
} as const;

export const bucketItem: BenchItem = {
  name: "bucket",
  title: "8. Backups through an S3 bucket vs a folder",
  async run(ctx) {
    const { rows } = ctx.plan;
    const label = (what: string) => `${what}, ${rows.toLocaleString("en-US")} market_data rows`;
    let S3rver: typeof import("s3rver").default;
    try {
      S3rver = (await import("s3rver")).default;
    } catch {
      return Object.values(ROWS).map((r) => skippedRow({ ...r, label: label(r.label), reason: "s3rver (a dev dependency) is not installed", status: "not measured" }));
    }
    const directory = mkdtempSync(path.join(ctx.workDir, "s3rver-"));
    const server = new S3rver({ address: "127.0.0.1", port: 0, silent: true, directory });
    const { port } = (await server.run()) as AddressInfo;
    const stopServer = ctx.defer("stop s3rver", () => server.close());
    const endpoint = `http://127.0.0.1:${port}`;
    // s3rver takes any credentials; they reach the commands only through their environment.
    const env = { AWS_ENDPOINT_URL_S3: endpoint, AWS_ACCESS_KEY_ID: "S3RVER", AWS_SECRET_ACCESS_KEY: "S3RVER", AWS_EC2_METADATA_DISABLED: "true" };
    const { CreateBucketCommand, S3Client } = await import("@aws-sdk/client-s3");
    const client = new S3Client({ region: "us-east-1", endpoint, forcePathStyle: true, credentials: { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" } });
    await client.send(new CreateBucketCommand({ Bucket: BUCKET }));
    client.destroy();

    const folderEnv = await ctx.embedded("bucket item: folder");
    const bucketEnv = await ctx.embedded("bucket item: bucket", { backup: { repository: { url: `s3://${BUCKET}/bench`, region: "us-east-1" } } });
    const totals: Record<"folder" | "bucket", number[]> = { folder: [], bucket: [] };
    const ratios: number[] = [];
    const throughput: Record<"upload" | "download", number[]> = { upload: [], download: [] };
    const mbPerSecond = (bytes: number, seconds: number) => (seconds > 0 ? bytes / 1e6 / seconds : undefined);
    const rss: number[] = [];
    const errors: string[] = [];
    try {
      for (const { env: e } of [folderEnv, bucketEnv]) {
        await withPg(e.connections.postgresConfig("owner"), (c) => seedMarketData(c, { rows, onProgress: throttled((p) => ctx.progress(`bucket: seeding ${e.env} ${p.rows.toLocaleString("en-US")}/${p.totalRows.toLocaleString("en-US")} rows`)) }));
      }
      // The first push uploads the seed's WAL: untimed, so every timed run pushes only its own.
      const first = await ctx.children.script("backup", ["push-wal", "--env", bucketEnv.env.env, "--json"], { env });
      if (first.code !== 0) throw new Error(`backup push-wal: ${failureText(first)}`);
      for (let i = 1; i <= ctx.plan.repetitions; i++) {
        const order = i % 2 ? (["folder", "bucket"] as const) : (["bucket", "folder"] as const);
        const rep: Partial<Record<"folder" | "bucket", number>> = {};
        for (const which of order) {
          const e = which === "folder" ? folderEnv.env : bucketEnv.env;
          const out = path.join(ctx.workDir, `bucket-${which}-${i}`);
          mkdirSync(out, { recursive: true, mode: 0o700 });
          const outArgs = which === "folder" ? ["--out", out] : [];
          try {
            ctx.progress(`bucket ${i}/${ctx.plan.repetitions}: ${which}`);
            const backup = await ctx.children.script("backup", ["--env", e.env, "--physical", ...outArgs, "--json"], { env, rss: true });
            if (backup.code !== 0) throw new Error(`${which}: backup --physical: ${failureText(backup)}`);
            const restore = await ctx.children.script("restore", ["--env", e.env, "--to", "latest", ...outArgs, "--yes", "--json"], { env, rss: true });
            if (restore.code !== 0) throw new Error(`${which}: restore --to latest: ${failureText(restore)}`);
            const restored = await withPg(e.connections.postgresConfig("owner"), async (c) => Number((await c.query("SELECT count(*) AS n FROM market_data")).rows[0].n));
            if (restored !== rows) throw new Error(`${which}: restore --to latest left ${restored} market_data rows, expected ${rows}`);
            rep[which] = backup.seconds + restore.seconds;
            totals[which].push(rep[which]!);
            if (which === "bucket") {
              for (const r of [backup.peakRssMb, restore.peakRssMb]) if (r !== undefined) rss.push(r);
              const up = backup.json?.upload as { files: { bytes: number }[]; seconds: number } | undefined;
              const upRate = up && mbPerSecond(up.files.reduce((n, f) => n + f.bytes, 0), up.seconds);
              if (upRate !== undefined) throughput.upload.push(upRate);
              const down = restore.json?.download as { bytes: number; seconds: number } | undefined;
              const downRate = down && mbPerSecond(down.bytes, down.seconds);
              if (downRate !== undefined) throughput.download.push(downRate);
            }
          } catch (error) {
            errors.push((error as Error).message);
          } finally {
            rmSync(out, { recursive: true, force: true });
          }
        }
        if (rep.folder !== undefined && rep.bucket !== undefined) ratios.push(rep.bucket / rep.folder);
      }
    } finally {
      // The bucket environment staged its downloads under the project's backup root.
      rmSync(path.join(PROJECT_DIR, bucketEnv.env.spec.backup.dir, bucketEnv.env.env), { recursive: true, force: true });
      await folderEnv.destroy();
      await bucketEnv.destroy();
      await stopServer();
      rmSync(directory, { recursive: true, force: true });
    }
    const row = (def: (typeof ROWS)[keyof typeof ROWS], samples: number[]): Row =>
      samples.length ? measuredRow({ ...def, label: label(def.label), samples, ...(errors.length ? { details: { failures: errors } } : {}) }) : skippedRow({ ...def, label: label(def.label), reason: errors[0] ?? "no runs", status: "error" });
    return [row(ROWS.folder, totals.folder), row(ROWS.bucket, totals.bucket), row(ROWS.upload, throughput.upload), row(ROWS.download, throughput.download), row(ROWS.ratio, ratios), row(ROWS.rss, rss)];
  },
};
