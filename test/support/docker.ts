/**
 * Docker test support: `describeDocker` runs a suite only when an engine answers, and
 * `startDefinedContainer` starts EXACTLY what lib/engines/docker/containers.ts defines (command, env,
 * files, healthcheck, 127.0.0.1 ports, labels, shm, named volume) through testcontainers.
 *
 * Import this module before anything that imports testcontainers: the environment below must be
 * set first, and testcontainers itself is only loaded lazily, inside the helpers.
 */
import type { GenericContainer as GenericContainerType, StartedTestContainer } from "testcontainers";
import { createServer } from "node:net";
import type { Readable } from "node:stream";
import { $ } from "zx";
import { describe, it } from "vitest";
import type { ContainerDefinition } from "../../lib/engines/docker/containers.js";
import { probeEngine, type EngineStatus } from "../../lib/engines/docker/engine.js";
import { missingOfflineImages } from "../../lib/engines/docker/images.js";

// Ryuk (the reaper) is an image from a registry, which cannot be pulled here; the helpers clean up.
process.env.TESTCONTAINERS_RYUK_DISABLED = "true";
// This machine has /.dockerenv, so testcontainers would pull alpine to find the host's address.
process.env.TESTCONTAINERS_HOST_OVERRIDE ??= "localhost";

/** Whether an engine answered when the test file was collected, and if not why and how to fix it. */
export const dockerEngine: EngineStatus = probeEngine(5_000);

/**
 * A describe block that needs Docker. No engine: skipped with one console line saying why, unless
 * REQUIRE_DOCKER=1 (CI), where it fails instead.
 */
export function describeDocker(name: string, fn: () => void): void {
  if (!dockerEngine.answering) {
    const why = `${dockerEngine.problem}; fix: ${dockerEngine.fix}`;
    if (process.env.REQUIRE_DOCKER === "1") {
      describe(name, () => {
        it("has a Docker engine (REQUIRE_DOCKER=1)", () => {
          throw new Error(`REQUIRE_DOCKER=1 but ${why}`);
        });
      });
      return;
    }
    console.warn(`[docker] skipping "${name}": ${why} (set REQUIRE_DOCKER=1 to fail instead)`);
  }
  describe.runIf(dockerEngine.answering)(name, fn);
}

/**
 * Backups need pg_dump 16 or newer. Debian 12 ships 15, so on these machines it runs from the
 * offline PostgreSQL image: suites that back up are Docker suites (skipped with one line when no
 * engine answers, failed under REQUIRE_DOCKER=1).
 */
export const backupsPossible = dockerEngine.answering;

/** A describe block that makes backups (see backupsPossible). */
export function describeBackups(name: string, fn: () => void): void {
  describeDocker(`${name} [pg_dump 16+ from the offline image]`, fn);
}

/** The Docker client of the answering engine. */
export function dockerBinary(): string {
  if (!dockerEngine.binary) throw new Error(`no Docker client: ${dockerEngine.problem}`);
  return dockerEngine.binary;
}

/** Fails with the fix when `npm run images` has not built the offline images yet (nothing can be pulled). */
export async function requireOfflineImages(): Promise<void> {
  const missing = await missingOfflineImages(dockerBinary());
  if (missing.length) throw new Error(`missing image(s) ${missing.join(", ")}: run \`npm run images\` first (no registry is reachable)`);
}

/** The healthcheck's command as `docker exec` takes it. */
export function healthcheckCommand(definition: ContainerDefinition): string[] {
  const [kind, ...rest] = definition.healthcheck.test;
  if (kind === "CMD-SHELL") return ["/bin/sh", "-c", rest.join(" ")];
  if (kind === "CMD") return rest;
  throw new Error(`unsupported healthcheck ${JSON.stringify(definition.healthcheck.test)}`);
}

/** The definition's healthcheck test in testcontainers' tuple type (same words, nothing added). */
function healthTest(test: string[]): ["CMD-SHELL", string] | ["CMD", ...string[]] {
  const [kind, ...rest] = test;
  if (kind === "CMD-SHELL" && rest.length === 1) return ["CMD-SHELL", rest[0]!];
  if (kind === "CMD") return ["CMD", ...rest];
  throw new Error(`unsupported healthcheck ${JSON.stringify(test)}`);
}

export interface StartOptions {
  /** Named volume mounted on the definition's dataPath. */
  volume?: string;
  /** Default 60 s. */
  startupTimeoutMs?: number;
}

/**
 * Starts a container from a ContainerDefinition and waits until Docker reports it healthy (the
 * definition's own healthcheck). Uses the local image only: nothing is pulled.
 */
export async function startDefinedContainer(definition: ContainerDefinition, options: StartOptions = {}): Promise<StartedTestContainer> {
  const { GenericContainer, PullPolicy, Wait } = await import("testcontainers");

  /** testcontainers publishes ports on every interface; a definition's ports carry their host IP. */
  class DefinedContainer extends GenericContainer {
    withDefinedPorts(ports: ContainerDefinition["ports"]): this {
      this.withExposedPorts(...ports.map((p) => ({ container: p.internal, host: p.external })));
      for (const p of ports) this.hostConfig.PortBindings![`${p.internal}/tcp`] = [{ HostIp: p.hostIp, HostPort: String(p.external) }];
      return this;
    }
  }

  const hc = definition.healthcheck;
  let container: GenericContainerType = new DefinedContainer(definition.image)
    .withDefinedPorts(definition.ports)
    .withName(definition.name)
    .withCommand(definition.command)
    .withEnvironment(definition.env)
    .withLabels(definition.labels)
    .withCopyArchivesToContainer(await filesAsTars(definition.files))
    .withHealthCheck({
      test: healthTest(hc.test),
      interval: hc.intervalSeconds * 1000,
      timeout: hc.timeoutSeconds * 1000,
      retries: hc.retries,
      startPeriod: hc.startPeriodSeconds * 1000,
    })
    .withWaitStrategy(Wait.forHealthCheck())
    .withStartupTimeout(options.startupTimeoutMs ?? 60_000)
    .withPullPolicy(PullPolicy.defaultPolicy());
  if (definition.shmSizeBytes !== undefined) container = container.withSharedMemorySize(definition.shmSizeBytes);
  if (options.volume) container = container.withBindMounts([{ source: options.volume, target: definition.dataPath, mode: "rw" }]);
  return container.start();
}

/**
 * The definition's files as tar archives, one per owner (withCopyContentToContainer would make
 * every file root's, and a 0600 secret file must be its service user's to be read by the server).
 */
async function filesAsTars(files: ContainerDefinition["files"]): Promise<{ tar: Readable; target: string }[]> {
  const { mkdtempSync, mkdirSync, rmSync, writeFileSync, chmodSync } = await import("node:fs");
  const { spawnSync } = await import("node:child_process");
  const { Readable } = await import("node:stream");
  const os = await import("node:os");
  const path = await import("node:path");
  const archives = [];
  for (const owner of new Set(files.map((f) => f.owner ?? 0))) {
    const staging = mkdtempSync(path.join(os.tmpdir(), "cpi-test-files-"));
    const relative = files.filter((f) => (f.owner ?? 0) === owner).map((f) => {
      const rel = f.path.replace(/^\/+/, "");
      mkdirSync(path.join(staging, path.dirname(rel)), { recursive: true, mode: 0o700 });
      writeFileSync(path.join(staging, rel), f.content, { mode: 0o600 });
      chmodSync(path.join(staging, rel), f.mode);
      return rel;
    });
    const tar = spawnSync("tar", ["-C", staging, "--numeric-owner", `--owner=${owner}`, `--group=${owner}`, "-cf", "-", ...relative], { maxBuffer: 64 * 1024 * 1024 });
    rmSync(staging, { recursive: true, force: true });
    if (tar.status !== 0) throw new Error(`tar failed: ${tar.stderr}`);
    archives.push({ tar: Readable.from([tar.stdout]), target: "/" });
  }
  return archives;
}

/** Creates a named volume (labelled, so a stray one left by a killed run can be found). */
export async function createVolume(name: string, labels: Record<string, string>): Promise<void> {
  const labelArgs = Object.entries({ ...labels, "crypto-prediction-infra.test": "true" }).flatMap(([k, v]) => ["--label", `${k}=${v}`]);
  await $({ quiet: true })`${dockerBinary()} volume create ${labelArgs} ${name}`;
}

export async function removeVolume(name: string): Promise<void> {
  await $({ quiet: true, nothrow: true })`${dockerBinary()} volume rm -f ${name}`;
}

/** Removes a container by name whatever its state (cleanup after a failed start). */
export async function removeContainer(name: string): Promise<void> {
  await $({ quiet: true, nothrow: true })`${dockerBinary()} rm -f -v ${name}`;
}

/** `docker inspect` of a container. */
export async function inspectContainer(id: string): Promise<DockerInspect> {
  const out = await $({ quiet: true })`${dockerBinary()} inspect ${id}`;
  return (JSON.parse(out.stdout) as DockerInspect[])[0]!;
}

/** The parts of `docker inspect` the tests read. */
export interface DockerInspect {
  State: { Running: boolean; Health?: { Status: string } };
  HostConfig: { PortBindings: Record<string, { HostIp: string; HostPort: string }[] | null> | null };
  NetworkSettings: { Ports: Record<string, { HostIp: string; HostPort: string }[] | null> | null };
  Mounts: { Type: string; Name?: string; Destination: string }[];
}

/** Ports free on 127.0.0.1 right now (the container tests must not collide with dev servers). */
export async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: count }, () =>
      new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
        const server = createServer();
        server.once("error", reject);
        server.listen(0, "127.0.0.1", () => resolve(server));
      }),
    ),
  );
  const ports = servers.map((s) => (s.address() as { port: number }).port);
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  return ports;
}
