/**
 * Point-in-time recovery of a Docker environment (`env:ci --engine docker`): the server in the
 * container archives WAL onto the backup volume (basic_archive), BASE_BACKUP writes into the same
 * volume's staging folder, and `restore --to` recovers in a helper container on that volume before
 * the environment's container starts again on the recovered folder.
 */
import "../../support/docker.js";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { withPg } from "../../../lib/db/clients.js";
import { DockerEnvironment, type StartedDockerEnvironment } from "../../../lib/engines/docker/environment.js";
import { describeDocker, requireOfflineImages } from "../../support/docker.js";
import { runCli } from "../../support/embedded.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describeDocker("point-in-time recovery: docker environment", () => {
  const out = mkdtempSync(path.join(os.tmpdir(), "cpi-pitr-docker-"));
  let started: StartedDockerEnvironment | undefined;
  const owner = <T>(sql: string) => withPg(started!.connections.postgresConfig("owner"), async (c) => (await c.query(sql)).rows as T);
  const symbols = async () => (await owner<{ symbol: string }[]>("SELECT symbol FROM cryptocurrencies WHERE symbol LIKE 'PITD%' ORDER BY symbol")).map((r) => r.symbol);
  const insert = (symbol: string) => owner(`INSERT INTO cryptocurrencies (symbol, name) VALUES ('${symbol}', 'pitr docker test')`);

  beforeAll(async () => {
    await requireOfflineImages();
    started = await new DockerEnvironment("ci").withEphemeral().start();
  }, 300_000);
  afterAll(async () => {
    await started?.remove();
    rmSync(out, { recursive: true, force: true });
  });

  it("archives WAL on the volume, and restore --to brings back exactly the first batch, then latest both", async () => {
    const settings = await withPg(started!.connections.postgresConfig("admin"), async (c) => (await c.query("SELECT current_setting('archive_mode') AS mode, current_setting('archive_library') AS library")).rows[0]);
    expect(settings).toEqual({ mode: "on", library: "basic_archive" });

    const made = await runCli("backup", ["--env", started!.env, "--physical", "--out", out, "--json"], { timeoutMs: 180_000 });
    expect(made.code, made.stderr).toBe(0);
    await insert("PITDA");
    await sleep(1100);
    const between = new Date();
    await sleep(1100);
    await insert("PITDB");

    const latest = await runCli("restore", ["--env", started!.env, "--to", "latest", "--out", out, "--yes", "--json"], { timeoutMs: 300_000 });
    expect(latest.code, latest.stderr).toBe(0);
    expect(await symbols()).toEqual(["PITDA", "PITDB"]);

    const toTime = await runCli("restore", ["--env", started!.env, "--to", between.toISOString(), "--out", out, "--yes", "--json"], { timeoutMs: 300_000 });
    expect(toTime.code, toTime.stderr).toBe(0);
    expect(await symbols()).toEqual(["PITDA"]);
    expect(Date.parse(toTime.json.recoveredTo)).toBeLessThanOrEqual(between.getTime());

    const verify = await runCli("verify", ["--env", started!.env, "--json"], { timeoutMs: 120_000 });
    expect(verify.code, verify.stderr).toBe(0);
  }, 900_000);
});
