/**
 * Point-in-time recovery of a Docker environment through a backup bucket: the base backup goes up
 * from the backup volume, the WAL archived on the volume is pushed, and `restore --to` downloads
 * both into the volume before the helper container recovers there. s3rver on 127.0.0.1.
 */
import "../../support/docker.js";
import { afterAll, beforeAll, expect, it } from "vitest";
import { withPg } from "../../../lib/db/clients.js";
import { DockerEnvironment, type StartedDockerEnvironment } from "../../../lib/engines/docker/environment.js";
import { describeDocker, requireOfflineImages } from "../../support/docker.js";
import { runCli } from "../../support/embedded.js";
import { startS3, type StartedS3 } from "../../support/s3.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describeDocker("point-in-time recovery: docker environment, backup bucket", () => {
  let s3: StartedS3;
  let started: StartedDockerEnvironment | undefined;
  const owner = <T>(sql: string) => withPg(started!.connections.postgresConfig("owner"), async (c) => (await c.query(sql)).rows as T);
  const symbols = async () => (await owner<{ symbol: string }[]>("SELECT symbol FROM cryptocurrencies WHERE symbol LIKE 'PITS%' ORDER BY symbol")).map((r) => r.symbol);
  const insert = (symbol: string) => owner(`INSERT INTO cryptocurrencies (symbol, name) VALUES ('${symbol}', 'pitr docker bucket test')`);
  const cli = (name: string, args: string[]) => runCli(name, ["--env", started!.env, ...args, "--json"], { env: s3.env, timeoutMs: 300_000 });

  beforeAll(async () => {
    await requireOfflineImages();
    s3 = await startS3();
    started = await new DockerEnvironment("ci")
      .withSpecOverrides({ backup: { repository: { url: `s3://${s3.bucket}/d`, region: "us-east-1", walPushSeconds: 10 } } })
      .start();
  }, 300_000);
  afterAll(async () => {
    await started?.remove();
    await s3?.destroy();
  });

  it("backs up to the bucket, and restore --to brings back exactly the first batch, then latest both", async () => {
    const made = await cli("backup", ["--physical"]);
    expect(made.code, made.stderr).toBe(0);
    await insert("PITSA");
    await sleep(1100);
    const between = new Date();
    await sleep(1100);
    await insert("PITSB");

    const latest = await cli("restore", ["--to", "latest", "--yes"]);
    expect(latest.code, latest.stderr).toBe(0);
    expect(latest.json.walFetched).toBeGreaterThan(0);
    // Every WAL segment is 16 MiB: the download report counts at least those it fetched.
    expect(latest.json.download.bytes).toBeGreaterThanOrEqual(latest.json.walFetched * 16 * 1024 * 1024);
    expect(latest.json.download.seconds).toBeGreaterThan(0);
    expect(await symbols()).toEqual(["PITSA", "PITSB"]);

    const toTime = await cli("restore", ["--to", between.toISOString(), "--yes"]);
    expect(toTime.code, toTime.stderr).toBe(0);
    expect(await symbols()).toEqual(["PITSA"]);
    expect(Date.parse(toTime.json.recoveredTo)).toBeLessThanOrEqual(between.getTime());

    // The recovered server archives on its new timeline; the push (cron's job) takes it up.
    const push = await cli("backup", ["push-wal"]);
    expect(push.code, push.stderr).toBe(0);
    const verify = await cli("verify", []);
    expect(verify.code, JSON.stringify(verify.json?.checks?.filter((c: { status: string }) => c.status === "fail"))).toBe(0);
  }, 900_000);
});
