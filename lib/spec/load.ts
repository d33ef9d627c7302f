/**
 * The one loader of the spec: `Pulumi.<env>.yaml` config → validated `Spec`.
 *
 * The Pulumi program (index.ts) and every script call it, so an environment's overrides mean the
 * same thing to `pulumi up`, `npm run up` and the operational scripts.
 */
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parse as parseYaml } from "yaml";
import { schema, type Spec } from "./schema.js";
import { knownKeysAt } from "./keys.js";
import { formatPgSize, formatRedisSize, parsePgSize, parseRedisSize, humanBytes } from "./units.js";
import { systemFolderOf } from "../system-folders.js";
import { canonicalJson } from "../canonical-json.js";

/** The Pulumi project name, which is also the config namespace of every spec key. */
export const PROJECT = "crypto-prediction-infra";
/**
 * The project's root folder: the nearest folder above this module with a Pulumi.yaml (this
 * module runs from lib/spec/ under tsx and vitest, and from .build/ when bundled by bin/cpi.mjs).
 */
export const PROJECT_DIR = findProjectDir(path.dirname(fileURLToPath(import.meta.url)));

function findProjectDir(start: string): string {
  for (let dir = start; ; dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, "Pulumi.yaml"))) return dir;
    if (path.dirname(dir) === dir) return path.resolve(start, "..", "..");
  }
}

export interface SpecIssue {
  /** Dotted config key, e.g. `postgres.sharedBuffers`. */
  key: string;
  /** The offending value as written, when there is one. */
  value?: unknown;
  message: string;
}

/** A spec that does not validate: every issue names the key, the value and what is allowed. */
export class SpecError extends Error {
  constructor(
    readonly source: string,
    readonly issues: SpecIssue[],
  ) {
    super(
      `invalid spec in ${source}:\n` +
        issues
          .map((i) => `  - ${PROJECT}:${i.key}${i.value === undefined ? "" : ` = ${JSON.stringify(i.value)}`}: ${i.message}`)
          .join("\n"),
    );
    this.name = "SpecError";
  }
}

export interface ParseSpecOptions {
  /** Where the input came from, for messages. Default: `Pulumi.<env>.yaml`. */
  source?: string;
  /**
   * Memory that the servers may use, in bytes: shared_buffers and maxmemory must fit in it.
   * Default: this machine's memory or its cgroup limit, for the local targets; not checked for aws.
   */
  memoryBytes?: number;
}

const ENV_NAME = /^[a-z][a-z0-9-]{0,39}$/;

/** Validates raw config (keys without the project namespace) into a spec. Throws SpecError. */
export function parseSpec(env: string, input: unknown, options: ParseSpecOptions = {}): Spec {
  const source = options.source ?? `Pulumi.${env}.yaml`;
  if (!ENV_NAME.test(env)) {
    throw new SpecError(source, [{ key: "(environment name)", value: env, message: "use lowercase letters, digits and - (at most 40)" }]);
  }
  const result = schema.safeParse(input ?? {}, { reportInput: true });
  if (!result.success) {
    throw new SpecError(
      source,
      result.error.issues.flatMap((issue): SpecIssue[] => {
        const key = issue.path.join(".");
        if (issue.code === "unrecognized_keys") {
          // One issue per unknown key, with its value and the keys allowed at that level.
          const where = key ? `${key}.` : "";
          const allowed = knownKeysAt(issue.path).join(", ");
          const input = issue.input as Record<string, unknown> | undefined;
          return issue.keys.map((k) => ({ key: where + k, value: input?.[k], message: `unknown key; allowed${key ? ` in ${key}` : ""}: ${allowed}` }));
        }
        return [{ key: key || "(root)", value: issue.input, message: issue.message }];
      }),
    );
  }
  const spec: Spec = { ...result.data, env };
  const problems = crossFieldIssues(spec, options.memoryBytes ?? (spec.target === "aws" ? undefined : machineMemoryBytes()));
  if (problems.length) throw new SpecError(source, problems);
  return spec;
}

/** Checks that involve more than one key, or the machine. */
export function crossFieldIssues(spec: Spec, memoryBytes: number | undefined): SpecIssue[] {
  const issues: SpecIssue[] = [];
  const pg = spec.postgres;
  const sharedBuffers = parsePgSize(pg.sharedBuffers)!;
  const effectiveCache = parsePgSize(pg.effectiveCacheSize)!;
  const maxmemory = parseRedisSize(spec.redis.maxmemory)!;
  if (sharedBuffers > effectiveCache) {
    issues.push({
      key: "postgres.sharedBuffers",
      value: pg.sharedBuffers,
      message: `is above postgres.effectiveCacheSize (${pg.effectiveCacheSize}); the cache estimate includes shared_buffers, so raise effectiveCacheSize or lower sharedBuffers`,
    });
  }
  if (sharedBuffers < 128 * 1024) issues.push({ key: "postgres.sharedBuffers", value: pg.sharedBuffers, message: "PostgreSQL needs at least 128kB" });
  else if (sharedBuffers < minSharedBuffers(pg.maxConnections)) {
    issues.push({
      key: "postgres.sharedBuffers",
      value: pg.sharedBuffers,
      message: `must be at least ${formatPgSize(minSharedBuffers(pg.maxConnections))} for postgres.maxConnections ${pg.maxConnections} (2 buffers of 8kB per connection): every session pins buffers, and with fewer queries fail with "no unpinned buffers available"`,
    });
  }
  if (maxmemory > 0 && maxmemory < MIN_REDIS_MAXMEMORY) {
    issues.push({
      key: "redis.maxmemory",
      value: spec.redis.maxmemory,
      message: `must be at least ${formatRedisSize(MIN_REDIS_MAXMEMORY)}: Redis uses about 1 MB for itself and its clients' buffers before any key, and below that every write fails with "OOM command not allowed"`,
    });
  }
  if (parsePgSize(pg.workMem)! < 64 * 1024) issues.push({ key: "postgres.workMem", value: pg.workMem, message: "PostgreSQL needs at least 64kB" });
  if (parsePgSize(pg.maintenanceWorkMem)! < 1024 * 1024) {
    issues.push({ key: "postgres.maintenanceWorkMem", value: pg.maintenanceWorkMem, message: "PostgreSQL needs at least 1MB" });
  }
  if (memoryBytes !== undefined) {
    if (sharedBuffers > memoryBytes) {
      issues.push({ key: "postgres.sharedBuffers", value: pg.sharedBuffers, message: `is above this machine's memory (${humanBytes(memoryBytes)})` });
    }
    if (maxmemory > memoryBytes) {
      issues.push({ key: "redis.maxmemory", value: spec.redis.maxmemory, message: `is above this machine's memory (${humanBytes(memoryBytes)})` });
    }
    for (const [key, value] of [["workMem", pg.workMem], ["maintenanceWorkMem", pg.maintenanceWorkMem], ["effectiveCacheSize", pg.effectiveCacheSize]] as const) {
      if (parsePgSize(value)! > memoryBytes) issues.push({ key: `postgres.${key}`, value, message: `is above this machine's memory (${humanBytes(memoryBytes)}); the planner and sorts would count on memory that is not there` });
    }
    if (parsePgSize(spec.docker.shmSize)! > memoryBytes) issues.push({ key: "docker.shmSize", value: spec.docker.shmSize, message: `is above this machine's memory (${humanBytes(memoryBytes)})` });
    if (sharedBuffers <= memoryBytes && maxmemory <= memoryBytes && sharedBuffers + maxmemory > memoryBytes) {
      issues.push({
        key: "redis.maxmemory",
        value: spec.redis.maxmemory,
        message: `plus postgres.sharedBuffers (${pg.sharedBuffers}) is above this machine's memory (${humanBytes(memoryBytes)}); both servers run here, so one of them would be killed for memory`,
      });
    }
  }
  if (maxmemory === 0) issues.push({ key: "redis.maxmemory", value: spec.redis.maxmemory, message: "0 means no limit; the guide caps the cache (e.g. 256mb)" });
  const poolMax = spec.pool.postgresSize + spec.pool.postgresMaxOverflow;
  if (poolMax + RESERVED_CONNECTIONS > pg.maxConnections) {
    issues.push({
      key: "postgres.maxConnections",
      value: pg.maxConnections,
      message: `must leave room for the client pool (pool.postgresSize + pool.postgresMaxOverflow = ${poolMax}) plus ${RESERVED_CONNECTIONS} admin connections`,
    });
  }
  if (spec.pool.redisMaxConnections > REDIS_MAX_CLIENTS) {
    issues.push({ key: "pool.redisMaxConnections", value: spec.pool.redisMaxConnections, message: `is above Redis's maxclients (${REDIS_MAX_CLIENTS}); the connections beyond it are refused` });
  }
  const backupDirProblem = backupDirIssue(spec.backup.dir);
  if (backupDirProblem) issues.push({ key: "backup.dir", value: spec.backup.dir, message: backupDirProblem });
  if (pg.port === spec.redis.port) issues.push({ key: "redis.port", value: spec.redis.port, message: "is the same as postgres.port" });
  const { ttlShortSeconds: s, ttlMediumSeconds: m, ttlLongSeconds: l } = spec.cache;
  if (!(s < m && m < l)) issues.push({ key: "cache", value: { s, m, l }, message: "TTL tiers must grow: ttlShortSeconds < ttlMediumSeconds < ttlLongSeconds" });
  const names = [pg.user, pg.appUser, pg.readonlyUser, pg.backupUser];
  if (new Set(names).size !== names.length) issues.push({ key: "postgres.appUser", value: names, message: "user, appUser, readonlyUser and backupUser must be four different roles" });
  for (const cidr of spec.aws.allowedCidrs) {
    if (/^0\.0\.0\.0\/0$|^::\/0$/.test(cidr)) issues.push({ key: "aws.allowedCidrs", value: cidr, message: "a database is never open to the internet; list your application's CIDRs or security groups" });
  }
  const window = /^(\d\d):(\d\d)-(\d\d):(\d\d)$/.exec(spec.aws.snapshotWindow);
  if (window) {
    const start = Number(window[1]) * 60 + Number(window[2]);
    const end = Number(window[3]) * 60 + Number(window[4]);
    if ((end - start + 1440) % 1440 < 60) issues.push({ key: "aws.snapshotWindow", value: spec.aws.snapshotWindow, message: "ElastiCache needs a window of at least 60 minutes" });
  }
  if (spec.aws.rdsMaxAllocatedStorageGb < spec.aws.rdsAllocatedStorageGb) {
    issues.push({ key: "aws.rdsMaxAllocatedStorageGb", value: spec.aws.rdsMaxAllocatedStorageGb, message: "must be at least aws.rdsAllocatedStorageGb" });
  }
  return issues;
}

/** Below this, Redis's own overhead fills maxmemory and writes fail with OOM. */
export const MIN_REDIS_MAXMEMORY = 8 * 1024 * 1024;
/** Redis's default maxclients. */
export const REDIS_MAX_CLIENTS = 10_000;

/** shared_buffers that max_connections sessions can work with: 2 pinned 8 kB buffers each, and PostgreSQL's 128kB. */
export function minSharedBuffers(maxConnections: number): number {
  return Math.max(128 * 1024, 2 * 8192 * maxConnections);
}

/**
 * backup.dir is relative to the project and stays inside it, or an absolute folder outside the
 * system's (whether the user owns it is checked when a backup runs: lib/backup/location.ts).
 */
export function backupDirIssue(dir: string): string | undefined {
  if (path.isAbsolute(dir)) {
    const system = systemFolderOf(dir);
    if (system) return system === path.resolve(dir) ? `${system} is a system folder; backups need a folder of their own (e.g. backups, or /srv/backups/crypto)` : `is inside the system folder ${system}; use a folder in the project (e.g. backups) or one you own`;
    return undefined;
  }
  const normalized = path.normalize(dir);
  if (normalized === ".") return "is the project folder itself; use a subfolder (e.g. backups)";
  if (normalized === ".." || normalized.startsWith(`..${path.sep}`)) return "leaves the project; a relative backup.dir stays inside it (or give an absolute folder you own)";
  return undefined;
}

/** superuser_reserved_connections (3) that the pool may not take. */
export const RESERVED_CONNECTIONS = 3;

/** This machine's memory, or the cgroup's limit when it is lower. */
export function machineMemoryBytes(): number {
  let memory = os.totalmem();
  for (const file of ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]) {
    try {
      const limit = Number(readFileSync(file, "utf8").trim());
      if (Number.isFinite(limit) && limit > 0 && limit < memory) memory = limit;
    } catch {
      // no such cgroup file: no limit from it
    }
  }
  return memory;
}

/** The environments that have a stack file. */
export function listEnvironments(projectDir = PROJECT_DIR): string[] {
  return readdirSync(projectDir)
    .map((f) => /^Pulumi\.([a-z][a-z0-9-]*)\.yaml$/.exec(f)?.[1])
    .filter((e): e is string => Boolean(e))
    .sort();
}

/** The spec keys of one stack file, without the `crypto-prediction-infra:` namespace. */
export function readStackConfig(env: string, projectDir = PROJECT_DIR): Record<string, unknown> {
  const file = path.join(projectDir, `Pulumi.${env}.yaml`);
  if (!existsSync(file)) {
    const known = listEnvironments(projectDir);
    throw new SpecError(`Pulumi.${env}.yaml`, [
      { key: "(environment)", value: env, message: `no such environment; known: ${known.join(", ") || "none"} (create Pulumi.${env}.yaml to add one)` },
    ]);
  }
  let doc: unknown;
  try {
    doc = parseYaml(readFileSync(file, "utf8"));
  } catch (error) {
    throw new SpecError(file, [{ key: "(file)", message: `is not valid YAML: ${(error as Error).message.split("\n")[0]}` }]);
  }
  const config = (doc as { config?: Record<string, unknown> } | null)?.config ?? {};
  return fromNamespacedConfig(config, `Pulumi.${env}.yaml`);
}

/**
 * Keeps this project's keys and strips their namespace; other namespaces (aws:region,
 * pulumi:…) belong to their providers. Pulumi's runtime gives objects as JSON strings, so
 * strings that are JSON objects or arrays are parsed.
 */
export function fromNamespacedConfig(config: Record<string, unknown>, source: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, raw] of Object.entries(config)) {
    if (!key.startsWith(`${PROJECT}:`)) continue;
    let value = raw;
    if (typeof raw === "string" && /^[[{]/.test(raw.trim())) {
      try {
        value = JSON.parse(raw);
      } catch {
        throw new SpecError(source, [{ key: key.slice(PROJECT.length + 1), value: raw, message: "is not valid JSON" }]);
      }
    }
    if (value && typeof value === "object" && "secure" in (value as object)) {
      throw new SpecError(source, [{ key: key.slice(PROJECT.length + 1), message: "the spec holds no secrets; passwords are generated (remove this secure value)" }]);
    }
    out[key.slice(PROJECT.length + 1)] = value;
  }
  return out;
}

export interface LoadSpecOptions extends ParseSpecOptions {
  projectDir?: string;
  /** Deep-merged over the stack file's values (e.g. free ports for an ephemeral copy). */
  overrides?: Record<string, unknown>;
}

/** Reads and validates `Pulumi.<env>.yaml`. Throws SpecError naming the file, key and value. */
export function loadSpec(env = "dev", options: LoadSpecOptions = {}): Spec {
  const config = readStackConfig(env, options.projectDir);
  return parseSpec(env, deepMerge(config, options.overrides ?? {}), options);
}

/** Plain-object deep merge; arrays and scalars of `over` replace those of `base`. */
export function deepMerge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(over)) {
    const current = out[key];
    out[key] =
      isPlainObject(value) && isPlainObject(current) ? deepMerge(current, value) : value;
  }
  return out;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** A short, stable hash of every setting (not the env name): labels, manifests and drift use it. */
export function specHash(spec: Spec): string {
  const { env: _env, ...settings } = spec;
  return createHash("sha256").update(canonicalJson(settings)).digest("hex").slice(0, 12);
}


