/**
 * Finding pg_dump, psql and pg_restore for an environment, in the order:
 *   1. $PG_BIN (an explicit choice: used or refused, never skipped);
 *   2. PATH (and Debian's /usr/lib/postgresql/<major>/bin), each checked by version;
 *   3. the environment's Docker image: `docker exec` in a docker target's PostgreSQL container,
 *      `docker run --rm --network host IMAGE` otherwise (image: the spec's, else the offline one).
 * A tool that fails its requirement is never run against the server (pg_dump older than the
 * server aborts, or worse, writes a dump the server cannot read back). When nothing fits, the
 * error lists what was tried and exactly what to install.
 *
 * Passwords reach the tools through PGPASSWORD in their environment, never argv; for Docker,
 * `-e PGPASSWORD` without a value makes the CLI copy it from its own environment.
 */
import { randomBytes } from "node:crypto";
import { closeSync, constants as fsConstants, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, realpathSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { which } from "zx";
import { CliError, EXIT } from "../errors.js";
import { findDockerBinary, probeEngine, START_DOCKERD, type EngineStatus } from "../engines/docker/engine.js";
import { OFFLINE_IMAGES } from "../engines/docker/images.js";
import { ephemeralRoot } from "../state/paths.js";
import { processAlive } from "../state/processes.js";
import { writeFileAtomic } from "../fs.js";
import { parsePgVersion, shortVersion, type PgVersion } from "./version.js";
import { run } from "../process.js";


export const PG_TOOLS = ["pg_dump", "psql", "pg_restore"] as const;
export type PgToolName = (typeof PG_TOOLS)[number];
export type PgToolSource = "PG_BIN" | "PATH" | "docker-exec" | "docker-run";

/** What a tool must be for this job. */
export interface PgToolRequirement {
  /** Lowest acceptable major version (pg_dump: the server's; pg_restore: the dump's pg_dump). */
  minMajor: number;
  /** Why, for messages: "the server is PostgreSQL 16". */
  reason: string;
  /** Further condition (psql: understands `\restrict`); returns why a version does not do. */
  refuse?: (version: PgVersion) => string | undefined;
}

/** Where an environment's tools may come from. */
export interface PgToolContext {
  engine: "embedded" | "docker";
  /** The server's port on the host's 127.0.0.1 (embedded, or the docker target's published port). */
  hostPort: number;
  /** docker target: the PostgreSQL container and the port it listens on inside. */
  container?: { name: string; port: number };
  /** Images for `docker run`, best first (those not on this machine are skipped; nothing is pulled). */
  images: string[];
}

/** A host file made readable by a tool: the path the tool sees, and how to undo the staging. */
export interface StagedFile {
  path: string;
  /** docker run: bind mount `host:container:ro`. */
  mount?: string;
  cleanup(): Promise<void>;
}

/**
 * Where a tool writes a large output (`--file=PATH`) for this host to read. The tool's stdout
 * where that is direct; for `docker run`, a named pipe in a bind-mounted 0700 folder, so the
 * bytes go from the container's process to the reader without passing through dockerd and the
 * docker CLI (a core's worth of copying on a 2-core machine).
 */
export interface ToolOutput {
  /** What to pass as --file: "-" for stdout. */
  path: string;
  /** docker run: bind mount of the pipe's folder. */
  mount?: string;
  /** The named pipe on this host to read from; undefined when the output is the tool's stdout. */
  pipe?: string;
  /** Unblocks a reader still waiting for the tool to open the pipe (it failed first); removes the pipe. */
  cleanup(): Promise<void>;
}

export interface PgCommandOptions {
  password: string;
  /** The tool reads stdin (docker: `-i`). */
  stdin?: boolean;
  /** Files from stageFile() that the tool reads, and an output from outputPipe() it writes. */
  files?: Pick<StagedFile, "mount">[];
  /** Non-secret variables (PGOPTIONS, PGAPPNAME…). */
  env?: Record<string, string>;
}

/** A process to spawn. */
export interface PgCommand {
  file: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  /** Removes what the command may leave behind when it is killed (a `docker run` container). */
  abort(): Promise<void>;
}

/** Where and as whom a client tool connects; the password comes from PGPASSWORD, never argv. */
export function connectionArgs(tool: Pick<PgTool, "host" | "port">, user: string, database: string): string[] {
  return ["--host", tool.host, "--port", String(tool.port), "--username", user, "--dbname", database, "--no-password"];
}

export interface PgTool {
  name: PgToolName;
  version: PgVersion;
  source: PgToolSource;
  /** A path, `docker exec CONTAINER` or `docker run IMAGE`: for messages and manifests. */
  location: string;
  /** The image the tool runs from (docker run), for manifests. */
  image?: string;
  /** Where the tool reaches the server. */
  host: string;
  port: number;
  command(args: string[], options: PgCommandOptions): PgCommand;
  /** Makes a host file readable by the tool (as is, bind mount, or a copy in the container). */
  stageFile(file: string): Promise<StagedFile>;
  /** Where the tool writes a large output for this process (see ToolOutput). */
  outputPipe(): Promise<ToolOutput>;
}

/** The tool's stdout, as is. */
const STDOUT_OUTPUT: ToolOutput = { path: "-", cleanup: async () => undefined };

/** Folders of named pipes carry the pid of the process that made them: `cpi-pipe-<pid>-<random>`. */
const PIPE_DIR = /^cpi-pipe-(\d+)-/;

/** A named pipe in a new 0700 folder, bind-mounted into a `docker run` container. */
async function namedPipeOutput(): Promise<ToolOutput> {
  sweepPipeFolders();
  const dir = mkdtempSync(path.join(os.tmpdir(), `cpi-pipe-${process.pid}-`));
  const pipe = path.join(dir, "output");
  await run("mkfifo", ["-m", "600", pipe], { timeout: 10_000 });
  return {
    path: "/cpi-output/output",
    mount: `${dir}:/cpi-output`,
    pipe,
    async cleanup() {
      // A reader's open() of a FIFO waits for a writer: if the tool never opened it, be that
      // writer for a moment (the reader then sees an empty output). No reader waiting: ENXIO.
      try {
        closeSync(openSync(pipe, fsConstants.O_WRONLY | fsConstants.O_NONBLOCK));
      } catch {
        // nobody waiting
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Removes the pipe folders of processes that are gone (a SIGKILLed backup or restore cannot clean up). */
function sweepPipeFolders(): void {
  let names: string[];
  try {
    names = readdirSync(os.tmpdir());
  } catch {
    return;
  }
  for (const name of names) {
    const pid = Number(PIPE_DIR.exec(name)?.[1]);
    if (!pid || pid === process.pid || processAlive(pid)) continue;
    rmSync(path.join(os.tmpdir(), name), { recursive: true, force: true });
  }
}

/** Label of the short-lived `docker run` containers of the tools. */
export const PGTOOL_LABEL = "crypto-prediction-infra.pgtool";

/** Messages of the tools' C locale, whatever the caller's locale (errors are parsed). */
const TOOL_LOCALE = { LC_MESSAGES: "C", LC_ALL: "C.UTF-8" };

// ---- resolution ------------------------------------------------------------------------------

/** Finds a tool that meets the requirement, or throws CliError naming what was tried and what to install. */
export async function resolvePgTool(name: PgToolName, requirement: PgToolRequirement, context: PgToolContext, env: NodeJS.ProcessEnv = process.env): Promise<PgTool> {
  const tried: string[] = [];
  const verdict = (version: PgVersion): string | undefined =>
    version.major < requirement.minMajor ? `older than ${requirement.minMajor}` : requirement.refuse?.(version);

  // 1. PG_BIN: the operator's explicit choice; a wrong one is an error, not a reason to look elsewhere.
  if (env.PG_BIN) {
    const file = path.join(env.PG_BIN, name);
    if (!existsSync(file)) {
      throw new CliError(`PG_BIN=${env.PG_BIN} has no ${name}`, EXIT.ERROR, `point PG_BIN at a folder holding ${name} ${requirement.minMajor}+, or unset it to search PATH and Docker`);
    }
    const version = await localVersion(file);
    const problem = version ? verdict(version) : "its version could not be read";
    if (problem) {
      throw new CliError(`PG_BIN=${env.PG_BIN}: ${name} ${version ? shortVersion(version) : ""} cannot be used: ${problem} (${requirement.reason})`, EXIT.ERROR, installHint(name, requirement));
    }
    return localTool(name, file, version!, "PG_BIN", context.hostPort);
  }

  // 2. PATH, then Debian's versioned folders, each by version.
  for (const file of localCandidates(name, env)) {
    const version = await localVersion(file);
    const problem = version ? verdict(version) : "version unreadable";
    if (!problem) return localTool(name, file, version!, "PATH", context.hostPort);
    tried.push(`${file} (${version ? shortVersion(version) : "?"}: ${problem})`);
  }
  if (!tried.length) tried.push(`no ${name} on PATH`);

  // 3. Docker: the environment's container, then its image(s). The engine is not probed first
  // (each docker call is time off every backup): the calls that are needed anyway tell whether it
  // answers, and only when none worked is it probed, for the message.
  const docker = findDockerBinary(env);
  let engine: EngineStatus | undefined;
  if (!docker) {
    engine = dockerEngine(env);
    tried.push(`Docker: ${engine.problem}`);
  } else {
    const dockerTried: string[] = [];
    if (context.container) {
      const version = await execVersion(docker, context.container.name, name);
      const problem = version ? verdict(version) : "not found in the container";
      if (!problem) return execTool(name, docker, context.container, version!);
      dockerTried.push(`docker exec ${context.container.name} ${name} (${version ? shortVersion(version) : "-"}: ${problem})`);
    }
    for (const image of [...new Set(context.images)]) {
      const imageId = await imageIdOf(docker, image);
      if (!imageId) {
        dockerTried.push(`image ${image} (not on this machine)`);
        continue;
      }
      const version = (await imageVersions(docker, image, imageId))[name];
      const problem = version ? verdict(version) : "not in the image";
      if (!problem) return runTool(name, docker, image, version!, context.hostPort);
      dockerTried.push(`image ${image} ${name} (${version ? shortVersion(version) : "-"}: ${problem})`);
    }
    engine = dockerEngine(env);
    tried.push(...(engine.answering ? dockerTried : [`Docker: ${engine.problem}`]));
  }
  throw new CliError(`no usable ${name}: it must be ${requirement.minMajor} or newer (${requirement.reason}); tried ${tried.join("; ")}`, EXIT.ERROR, installHint(name, requirement, engine));
}

/** Default images for `docker run`: the spec's, then the offline build of `npm run images`. */
export function defaultToolImages(specImage: string): string[] {
  return [...new Set([specImage, OFFLINE_IMAGES.postgres])];
}

function installHint(name: PgToolName, requirement: PgToolRequirement, engine?: EngineStatus): string {
  const major = Math.max(requirement.minMajor, 17);
  const docker = !engine
    ? "or unset PG_BIN to let the toolkit search PATH and Docker"
    : engine.answering
      ? "or build the offline image that carries them: npm run images"
      : `or let the toolkit run them in Docker: ${engine.fix ?? START_DOCKERD}, then npm run images`;
  return (
    `install PostgreSQL ${requirement.minMajor}+ client tools (${name}) and set PG_BIN to their folder ` +
    `(Debian 13: apt-get install -y postgresql-client-${major}, PG_BIN=/usr/lib/postgresql/${major}/bin; ` +
    `Debian 12 ships only 15: use the PostgreSQL project's apt repository (PGDG) for postgresql-client-${major}), ${docker}`
  );
}

// ---- local binaries --------------------------------------------------------------------------

function localCandidates(name: PgToolName, env: NodeJS.ProcessEnv): string[] {
  const found: string[] = [];
  const seen = new Set<string>();
  const add = (file: string) => {
    try {
      if (!statSync(file).isFile()) return;
      const real = realpathSync(file);
      if (seen.has(real)) return;
      seen.add(real);
      found.push(file);
    } catch {
      // not there
    }
  };
  for (const file of which.sync(name, { all: true, nothrow: true, path: env.PATH ?? "" }) ?? []) add(file);
  // Debian installs each major's tools here; /usr/bin has only a wrapper choosing one of them.
  const debian = "/usr/lib/postgresql";
  if (existsSync(debian)) {
    const majors = readdirSync(debian).filter((d) => /^\d+$/.test(d)).sort((a, b) => Number(b) - Number(a));
    for (const major of majors) add(path.join(debian, major, "bin", name));
  }
  return found;
}

const versionCache = new Map<string, PgVersion | undefined>();

async function localVersion(file: string): Promise<PgVersion | undefined> {
  const key = `local:${file}`;
  if (versionCache.has(key)) return versionCache.get(key);
  let version: PgVersion | undefined;
  try {
    const { stdout } = await run(file, ["--version"], { timeout: 10_000, env: { ...process.env, ...TOOL_LOCALE } });
    version = parsePgVersion(stdout);
  } catch {
    version = undefined;
  }
  versionCache.set(key, version);
  return version;
}

function localTool(name: PgToolName, file: string, version: PgVersion, source: "PG_BIN" | "PATH", port: number): PgTool {
  return {
    name,
    version,
    source,
    location: file,
    host: "127.0.0.1",
    port,
    command(args, options) {
      return { file, args, env: { ...process.env, ...TOOL_LOCALE, ...options.env, PGPASSWORD: options.password }, abort: async () => undefined };
    },
    async stageFile(hostFile) {
      return { path: hostFile, cleanup: async () => undefined };
    },
    outputPipe: async () => STDOUT_OUTPUT,
  };
}

// ---- Docker ----------------------------------------------------------------------------------

let engineCache: EngineStatus | undefined;
function dockerEngine(env: NodeJS.ProcessEnv): EngineStatus {
  if (env !== process.env) return probeEngine(10_000, env);
  engineCache ??= probeEngine(10_000, env);
  return engineCache;
}

async function imageIdOf(docker: string, image: string): Promise<string | undefined> {
  try {
    const { stdout } = await run(docker, ["image", "inspect", "--format", "{{.Id}}", image], { timeout: 15_000 });
    return stdout.trim() || undefined;
  } catch {
    return undefined;
  }
}

/**
 * Versions of the three tools in an image. Image ids are content hashes, so the answer is cached on
 * disk by id: the probe (one `docker run`) happens once per image, not once per backup.
 */
async function imageVersions(docker: string, image: string, imageId: string): Promise<Partial<Record<PgToolName, PgVersion>>> {
  const cacheFile = path.join(ephemeralRoot(), "pgtools-image-versions.json");
  let cache: Record<string, Partial<Record<PgToolName, PgVersion>>> = {};
  try {
    cache = JSON.parse(readFileSync(cacheFile, "utf8"));
  } catch {
    cache = {};
  }
  const cached = cache[imageId];
  if (cached) return cached;
  const script = PG_TOOLS.map((t) => `printf '%s\\t' ${t}; ${t} --version 2>/dev/null || echo`).join("; ");
  const versions: Partial<Record<PgToolName, PgVersion>> = {};
  try {
    const { stdout } = await run(docker, ["run", "--rm", "--log-driver", "none", "--network", "none", "--entrypoint", "sh", image, "-c", script], { timeout: 60_000 });
    for (const line of stdout.split("\n")) {
      const [tool, output] = line.split("\t");
      const version = output ? parsePgVersion(output) : undefined;
      if (version && (PG_TOOLS as readonly string[]).includes(tool!)) versions[tool as PgToolName] = version;
    }
  } catch {
    return versions; // the image cannot run sh: no tools from it (not cached, a later fix counts)
  }
  try {
    writeFileAtomic(cacheFile, JSON.stringify({ ...cache, [imageId]: versions }, null, 2) + "\n", 0o600);
  } catch {
    // a cache only
  }
  return versions;
}

async function execVersion(docker: string, container: string, name: PgToolName): Promise<PgVersion | undefined> {
  const key = `exec:${container}:${name}`;
  if (versionCache.has(key)) return versionCache.get(key);
  let version: PgVersion | undefined;
  try {
    const { stdout } = await run(docker, ["exec", container, name, "--version"], { timeout: 15_000 });
    version = parsePgVersion(stdout);
  } catch {
    version = undefined;
  }
  versionCache.set(key, version);
  return version;
}

function execTool(name: PgToolName, docker: string, container: { name: string; port: number }, version: PgVersion): PgTool {
  return {
    name,
    version,
    source: "docker-exec",
    location: `docker exec ${container.name}`,
    host: "127.0.0.1",
    port: container.port,
    command(args, options) {
      const vars = { ...TOOL_LOCALE, ...options.env };
      return {
        file: docker,
        args: ["exec", ...(options.stdin ? ["-i"] : []), "-e", "PGPASSWORD", ...Object.keys(vars).flatMap((k) => ["-e", k]), container.name, name, ...args],
        env: { ...process.env, ...vars, PGPASSWORD: options.password },
        abort: async () => undefined, // the process in the container ends when its streams close
      };
    },
    async stageFile(hostFile) {
      // A running container takes no new mounts: copy the file in, remove it afterwards.
      const inside = `/tmp/cpi-${randomBytes(4).toString("hex")}-${path.basename(hostFile)}`;
      await run(docker, ["cp", hostFile, `${container.name}:${inside}`], { timeout: 600_000 });
      return {
        path: inside,
        cleanup: async () => {
          await run(docker, ["exec", container.name, "rm", "-f", inside], { timeout: 30_000 }).catch(() => undefined);
        },
      };
    },
    // A running container takes no new mounts: its stdout, through docker exec.
    outputPipe: async () => STDOUT_OUTPUT,
  };
}

function runTool(name: PgToolName, docker: string, image: string, version: PgVersion, hostPort: number): PgTool {
  return {
    name,
    version,
    source: "docker-run",
    location: `docker run ${image}`,
    image,
    host: "127.0.0.1",
    port: hostPort,
    command(args, options) {
      const vars = { ...TOOL_LOCALE, ...options.env };
      const containerName = `cpi-${name.replace("_", "-")}-${randomBytes(4).toString("hex")}`;
      return {
        file: docker,
        args: [
          "run",
          "--rm",
          ...(options.stdin ? ["-i"] : []),
          "--name",
          containerName,
          // Found by label if a killed run leaves it behind (created but never started).
          "--label",
          `${PGTOOL_LABEL}=${name}`,
          // The server listens on the host's loopback; --log-driver none keeps dockerd from
          // copying the whole dump into a container log.
          "--network",
          "host",
          "--log-driver",
          "none",
          "-e",
          "PGPASSWORD",
          ...Object.keys(vars).flatMap((k) => ["-e", k]),
          ...(options.files ?? []).flatMap((f) => (f.mount ? ["-v", f.mount] : [])),
          "--entrypoint",
          name,
          image,
          ...args,
        ],
        env: { ...process.env, ...vars, PGPASSWORD: options.password },
        abort: async () => {
          await run(docker, ["rm", "-f", containerName], { timeout: 30_000 }).catch(() => undefined);
        },
      };
    },
    async stageFile(hostFile) {
      const inside = `/cpi-input/${randomBytes(4).toString("hex")}-${path.basename(hostFile)}`;
      return { path: inside, mount: `${path.resolve(hostFile)}:${inside}:ro`, cleanup: async () => undefined };
    },
    outputPipe: namedPipeOutput,
  };
}
