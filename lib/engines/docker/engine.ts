/**
 * Finding the Docker engine: which client binary to use, whether the engine answers, and, when it
 * does not, what exactly is missing and the command that fixes it. `npm run images`, the
 * container tests (test/support/docker.ts) and .ci/docker.sh agree on these answers.
 */
import { spawnSync } from "node:child_process";
import { accessSync, constants } from "node:fs";
import path from "node:path";
import { CliError, EXIT } from "../../errors.js";
import { run } from "../../process.js";

/**
 * Client binaries, best first. /usr/bin/docker is Debian's docker.io 20.10 client, matching the
 * engine; /usr/local/bin/docker (28.x) lacks buildx and warns on every build.
 */
export const DOCKER_CLIENT_CANDIDATES = ["/usr/bin/docker", "/usr/local/bin/docker"] as const;

/** How to start the engine in the background on these machines (no systemd). */
export const START_DOCKERD = "dockerd >/tmp/dockerd.log 2>&1 &";
/** How to install the engine and client (Debian 12). */
export const INSTALL_DOCKER = "apt-get update && apt-get install -y docker.io";

export interface EngineStatus {
  /** The client binary that will be used; undefined when none is installed. */
  binary?: string;
  /** The engine answered `docker info`. */
  answering: boolean;
  /** The engine's version, when it answered. */
  serverVersion?: string;
  /** What is wrong, when it did not answer. */
  problem?: string;
  /** The command(s) that fix it. */
  fix?: string;
}

/** The Docker client to use: $DOCKER_CLI when set, else the first candidate present, else `docker` on PATH. */
export function findDockerBinary(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.DOCKER_CLI) return isExecutable(env.DOCKER_CLI) ? env.DOCKER_CLI : undefined;
  for (const candidate of DOCKER_CLIENT_CANDIDATES) if (isExecutable(candidate)) return candidate;
  for (const dir of (env.PATH ?? "").split(path.delimiter)) {
    if (dir && isExecutable(path.join(dir, "docker"))) return path.join(dir, "docker");
  }
  return undefined;
}

/** Whether the engine daemon binary is installed (so starting it is the fix, not installing it). */
export function dockerdInstalled(env: NodeJS.ProcessEnv = process.env): boolean {
  const dirs = ["/usr/sbin", "/usr/bin", ...(env.PATH ?? "").split(path.delimiter)];
  return dirs.some((dir) => dir && isExecutable(path.join(dir, "dockerd")));
}

/**
 * Asks the engine for its version (synchronously: test files decide at collection time whether
 * to run their Docker suites). Never throws.
 */
export function probeEngine(timeoutMs = 10_000, env: NodeJS.ProcessEnv = process.env): EngineStatus {
  const binary = findDockerBinary(env);
  if (!binary) {
    return {
      answering: false,
      problem: "no Docker client is installed",
      fix: `${INSTALL_DOCKER}; then start the engine: ${START_DOCKERD}`,
    };
  }
  // `version` (not `info --format`, whose template error hides the reason when the engine is down).
  const result = spawnSync(binary, ["version", "--format", "{{.Server.Version}}"], { encoding: "utf8", timeout: timeoutMs, env });
  const version = result.stdout?.trim();
  if (result.status === 0 && version) return { binary, answering: true, serverVersion: version };
  const stderr = (result.stderr ?? "").trim();
  if (result.error && (result.error as NodeJS.ErrnoException).code === "ETIMEDOUT") {
    return { binary, answering: false, problem: `the Docker engine did not answer \`docker info\` within ${timeoutMs / 1000} s`, fix: "check /tmp/dockerd.log; restart dockerd" };
  }
  if (/permission denied/i.test(stderr)) {
    return { binary, answering: false, problem: `no permission to use the Docker socket (${firstLine(stderr)})`, fix: "run as root, or add this user to the docker group and log in again" };
  }
  const fix = dockerdInstalled(env) ? START_DOCKERD + "  (then wait until `docker info` answers)" : `${INSTALL_DOCKER}; then ${START_DOCKERD}`;
  return { binary, answering: false, problem: `the Docker engine is not answering (${firstLine(stderr) || `exit ${result.status}`})`, fix };
}

/** The client binary of an answering engine; otherwise a CliError naming what is missing and the fix. */
export function requireEngine(env: NodeJS.ProcessEnv = process.env): string {
  const status = probeEngine(10_000, env);
  if (!status.answering || !status.binary) throw new CliError(status.problem ?? "no Docker engine", EXIT.ERROR, status.fix);
  return status.binary;
}

/**
 * Environment for `docker build`: the classic builder. It builds FROM the locally imported base
 * images without contacting a registry, and the 20.10 client has no buildx.
 */
export function dockerBuildEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return { ...env, DOCKER_BUILDKIT: "0" };
}

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The line that says why (the client may print template noise first). */
function firstLine(text: string): string {
  const lines = text.split("\n").map((l) => l.trim()).filter(Boolean);
  return lines.find((l) => /cannot connect|permission denied|error/i.test(l)) ?? lines[0] ?? "";
}

/** Runs the docker CLI; a failure becomes a CliError with its message. */
export async function docker(binary: string, args: string[], options: { timeoutMs?: number } = {}): Promise<string> {
  try {
    const { stdout } = await run(binary, args, { timeout: options.timeoutMs ?? 120_000 });
    return stdout;
  } catch (error) {
    const e = error as { stderr?: string; message: string };
    throw new CliError(`docker ${args.slice(0, 2).join(" ")} failed: ${(e.stderr || e.message).trim().split("\n").slice(-3).join(" | ")}`, EXIT.ERROR);
  }
}
