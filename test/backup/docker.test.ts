/**
 * Backup and restore of a Docker environment (`env:ci --engine docker`): pg_dump runs with
 * `docker exec` in the PostgreSQL container, the RDB leaves the Redis container with `docker cp`,
 * and the Redis restore loads the RDB in a helper container on the same volume (appendonly no,
 * then the AOF rewritten) before the environment's container starts again. A restored docker
 * backup also restores into an embedded environment.
 */
import "../support/docker.js";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, expect, it } from "vitest";
import { withRedis } from "../../lib/db/clients.js";
import { DockerEnvironment, type StartedDockerEnvironment } from "../../lib/engines/docker/environment.js";
import { EmbeddedEnvironment } from "../../lib/engines/embedded/environment.js";
import { damage, fingerprint, seedSample, type Fingerprint } from "../support/backup.js";
import { describeDocker, dockerBinary, requireOfflineImages } from "../support/docker.js";
import { runCli } from "../support/embedded.js";

const run = promisify(execFile);

describeDocker("backup and restore: docker environment", () => {
  const out = mkdtempSync(path.join(os.tmpdir(), "cpi-backup-docker-"));
  let started: StartedDockerEnvironment | undefined;
  let original: Fingerprint;
  let backupDir: string;

  beforeAll(async () => {
    await requireOfflineImages();
    started = await new DockerEnvironment("ci").withEphemeral().start();
    await seedSample(started.connections, 1500);
    original = await fingerprint(started.connections);
  });
  afterAll(async () => {
    await started?.remove();
    rmSync(out, { recursive: true, force: true });
  });

  it("backs up with docker exec pg_dump (version-checked in the container) and docker cp of the RDB", async () => {
    // Custom format: its restore copies the archive into the container for pg_restore --jobs 2.
    const made = await runCli("backup", ["--env", started!.env, "--out", out, "--format", "custom", "--json"]);
    expect(made.code, made.stderr).toBe(0);
    backupDir = made.json.dir;
    expect(made.json.manifest).toMatchObject({
      engine: "docker",
      postgres: { format: "custom", pgDump: { source: "docker-exec", location: `docker exec ${started!.record.docker!.containers.postgres}` } },
      redis: { keys: Object.keys(original.redis).length, appendonly: true },
    });
    expect(made.json.manifest.postgres.pgDump.major).toBeGreaterThanOrEqual(16);
  });

  it("round trip: damage, restore --yes; every row and key is back, and the container reloads it from its AOF", async () => {
    const { connections, record } = started!;
    await damage(connections);
    const restored = await runCli("restore", ["--env", started!.env, "--from", backupDir, "--yes", "--json"]);
    expect(restored.code, restored.stderr).toBe(0);
    expect(restored.json).toMatchObject({ mode: "database", redis: { aofRewritten: true } });
    expect(await fingerprint(connections)).toEqual(original);
    // No helper container is left, and a restart of Redis (AOF on) keeps the data.
    const { stdout } = await run(dockerBinary(), ["ps", "-a", "--format", "{{.Names}}", "--filter", `name=${record.docker!.containers.redis}-restore`]);
    expect(stdout.trim()).toBe("");
    await run(dockerBinary(), ["restart", record.docker!.containers.redis]);
    const deadline = Date.now() + 30_000;
    for (;;) {
      const ok = await withRedis(connections.redisOptions("admin"), (r) => r.ping()).catch(() => undefined);
      if (ok === "PONG" || Date.now() > deadline) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect((await fingerprint(connections)).redis).toEqual(original.redis);
  });

  it("a docker backup restores into an embedded environment", async () => {
    const embedded = await new EmbeddedEnvironment("dev").withEphemeral().start();
    try {
      const restored = await runCli("restore", ["--env", embedded.env, "--from", backupDir, "--json"]);
      expect(restored.code, restored.stderr).toBe(0);
      expect(await fingerprint(embedded.connections)).toEqual(original);
    } finally {
      await embedded.destroy();
    }
  });
});
