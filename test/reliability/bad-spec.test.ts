/**
 * Bad input, part 1: the spec. Every leaf key of the schema gets a value of the wrong type (driven
 * by schemaKeys(), so a new key is covered the day it is added), and a catalogue of wrong units
 * and ranges goes through `npm run up` as an operator would write it in Pulumi.<env>.yaml. Each
 * is refused with exit 2 and one message that names the key, the value and what is allowed, and
 * nothing is created. (Catalogue: README.md.)
 */
import { existsSync } from "node:fs";
import { stringify as toYaml } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EXIT } from "../../lib/errors.js";
import { schemaKeys } from "../../lib/spec/keys.js";
import { parseSpec, PROJECT, SpecError } from "../../lib/spec/load.js";
import { schema } from "../../lib/spec/schema.js";
import { makeSandbox, runScript, type Sandbox } from "../support/commands.js";

// ---- wrong types, from the schema ------------------------------------------------------------

type ZodLike = { _zod: { def: { type: string; innerType?: ZodLike; shape?: Record<string, ZodLike>; values?: unknown[] } } };

/** The schema node of a dotted key, without default/optional wrappers. */
function leafType(key: string): ZodLike {
  const unwrap = (node: ZodLike) => {
    while (["default", "prefault", "optional"].includes(node._zod.def.type)) node = node._zod.def.innerType!;
    return node;
  };
  let node = unwrap(schema as unknown as ZodLike);
  for (const part of key.split(".")) node = unwrap(node._zod.def.shape![part]!);
  return node;
}

/**
 * A value of the wrong type for a key, as people get it wrong in YAML: a quoted number for a
 * number, `yes` (a string in YAML 1.2) for a boolean, a bare word for a list, a number for a string.
 */
function wrongTypeValue(key: string, fallback: unknown): unknown {
  const node = leafType(key);
  switch (node._zod.def.type) {
    case "number":
      return String(fallback ?? 1);
    case "literal": {
      const literal = node._zod.def.values?.[0];
      return typeof literal === "number" ? String(literal) : 12;
    }
    case "boolean":
      return "yes";
    case "array":
      return "a-single-word";
    case "union": // string | number (Redis sizes)
      return true;
    default: // string, enum
      return 12;
  }
}

function nested(dotted: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, any> = {};
  for (const [key, value] of Object.entries(dotted)) {
    const parts = key.split(".");
    let node = out;
    for (const part of parts.slice(0, -1)) node = node[part] ??= {};
    node[parts.at(-1)!] = value;
  }
  return out;
}

/** A stack file: each top-level spec key under the project's namespace, as Pulumi writes it. */
function stackYaml(values: Record<string, unknown>): string {
  return toYaml({ config: Object.fromEntries(Object.entries(values).map(([k, v]) => [`${PROJECT}:${k}`, v])) });
}

const KEYS = schemaKeys();

describe("every spec key refuses a value of the wrong type, naming the key and the value", () => {
  it("covers every leaf key of the schema", () => {
    expect(KEYS.length).toBeGreaterThan(60);
  });

  it.each(KEYS.map((k) => [k.key, wrongTypeValue(k.key, k.default)] as const))("%s = %j", (key, value) => {
    let error: unknown;
    try {
      parseSpec("dev", nested({ [key]: value }), { memoryBytes: 2 ** 40 });
    } catch (e) {
      error = e;
    }
    expect(error, `${key} accepted ${JSON.stringify(value)}`).toBeInstanceOf(SpecError);
    const issues = (error as SpecError).issues;
    expect(issues.map((i) => i.key)).toEqual([key]);
    expect(issues[0]!.message.length).toBeGreaterThan(5);
    expect((error as SpecError).message).toContain(`${PROJECT}:${key} = ${JSON.stringify(value)}: `);
  });
});

// ---- through the CLI -------------------------------------------------------------------------

let sandbox: Sandbox;
beforeAll(() => {
  sandbox = makeSandbox();
});
afterAll(() => sandbox?.remove());

async function upRefuses(env: string, yaml: string, extraArgs: string[] = []) {
  sandbox.writeStack(env, yaml);
  const result = await runScript("up", ["--env", env, ...extraArgs], { projectDir: sandbox.projectDir, env: sandbox.env, timeoutMs: 60_000 });
  expect(result.code, result.stderr).toBe(EXIT.ERROR);
  // One message (with its hint), and nothing made: no state folder, no lock, no server.
  expect(result.stderr.match(/^up: error: /gm)).toHaveLength(1);
  expect(existsSync(sandbox.stateDir), "the state folder was created").toBe(false);
  return result;
}

describe("npm run up with a stack file full of wrong types", () => {
  it("refuses with exit 2, names every key in one message, and creates nothing", async () => {
    const values = nested(Object.fromEntries(KEYS.map((k) => [k.key, wrongTypeValue(k.key, k.default)])));
    const result = await upRefuses("all-wrong", stackYaml(values), ["--json"]);
    for (const { key } of KEYS) expect(result.stderr).toContain(`${PROJECT}:${key} = `);
    expect(result.json.ok).toBe(false);
    expect(result.json.error.exitCode).toBe(EXIT.ERROR);
    expect(result.json.error.message).toContain("invalid spec in Pulumi.all-wrong.yaml");
  });
});

interface SpecCase {
  /** Row of the catalogue. */
  title: string;
  /** Stack values (top-level spec keys), or raw YAML. */
  values: Record<string, unknown> | string;
  /** What the one message must say: the key, the value, what is allowed. */
  says: string[];
}

/** Wrong units and ranges, cross-key rules, and broken files (README.md, "Spec"). */
const SPEC_CASES: SpecCase[] = [
  { title: "PostgreSQL size in Redis's lowercase unit", values: { postgres: { sharedBuffers: "256mb" } }, says: ["postgres.sharedBuffers", '"256mb"', "kB, MB, GB"] },
  { title: "fractional PostgreSQL size", values: { postgres: { workMem: "2.5MB" } }, says: ["postgres.workMem", '"2.5MB"', "whole number"] },
  { title: "work_mem below PostgreSQL's minimum", values: { postgres: { workMem: "32kB" } }, says: ["postgres.workMem", '"32kB"', "at least 64kB"] },
  { title: "shared_buffers above effective_cache_size", values: { postgres: { sharedBuffers: "2GB" } }, says: ["postgres.sharedBuffers", '"2GB"', "effectiveCacheSize"] },
  { title: "shared_buffers above the machine's memory", values: { postgres: { sharedBuffers: "64TB", effectiveCacheSize: "64TB" } }, says: ["postgres.sharedBuffers", '"64TB"', "machine's memory"] },
  { title: "Redis size with a unit Redis does not know", values: { redis: { maxmemory: "256MiB" } }, says: ["redis.maxmemory", '"256MiB"', "kb/mb/gb"] },
  { title: "maxmemory 0 (no limit)", values: { redis: { maxmemory: 0 } }, says: ["redis.maxmemory", "= 0", "no limit"] },
  { title: "maxmemory above the machine's memory", values: { redis: { maxmemory: "4096gb" } }, says: ["redis.maxmemory", '"4096gb"', "machine's memory"] },
  { title: "privileged port", values: { postgres: { port: 80 } }, says: ["postgres.port", "= 80", "1024-65535"] },
  { title: "port above 65535", values: { postgres: { port: 70000 } }, says: ["postgres.port", "= 70000", "65535"] },
  { title: "fractional port", values: { redis: { port: 6379.5 } }, says: ["redis.port", "= 6379.5", "whole"] },
  { title: "Redis and PostgreSQL on one port", values: { postgres: { port: 25999 }, redis: { port: 25999 } }, says: ["redis.port", "= 25999", "same as postgres.port"] },
  { title: "Redis database out of range", values: { redis: { db: 16 } }, says: ["redis.db", "= 16", "0-15"] },
  { title: "max_connections too small for the pool", values: { postgres: { maxConnections: 25 } }, says: ["postgres.maxConnections", "= 25", "client pool"] },
  { title: "PostgreSQL major version other than 16", values: { postgres: { version: 15 } }, says: ["postgres.version", "= 15", "only PostgreSQL 16"] },
  { title: "Redis major version other than 7", values: { redis: { version: 6 } }, says: ["redis.version", "= 6", "only Redis 7"] },
  { title: "appendonly written as in redis.conf (`yes`)", values: "config:\n  crypto-prediction-infra:redis:\n    appendonly: yes\n", says: ["redis.appendonly", '"yes"', "true or false"] },
  { title: "unknown appendfsync policy", values: { redis: { appendfsync: "sometimes" } }, says: ["redis.appendfsync", '"sometimes"', "always, everysec or no"] },
  { title: "unknown eviction policy", values: { redis: { maxmemoryPolicy: "lru" } }, says: ["redis.maxmemoryPolicy", '"lru"', "allkeys-lru"] },
  { title: "RDB save point of 0 seconds", values: { redis: { save: [{ seconds: 0, changes: 1000 }] } }, says: ["redis.save.0.seconds", "= 0", "at least 1 second"] },
  { title: "TTL tiers that do not grow", values: { cache: { ttlShortSeconds: 4000 } }, says: ["cache", "4000", "ttlShortSeconds < ttlMediumSeconds"] },
  { title: "app role equal to the owner role", values: { postgres: { appUser: "crypto_user" } }, says: ["postgres.appUser", "crypto_user", "different roles"] },
  { title: "database name that is not an identifier", values: { postgres: { database: "Crypto-DB" } }, says: ["postgres.database", '"Crypto-DB"', "lowercase letters"] },
  { title: "misspelt key", values: { postgres: { sharedBuffer: "256MB" } }, says: ["postgres.sharedBuffer", "unknown key"] },
  { title: "backup retention above AWS's 35 days", values: { backup: { retentionDays: 36 } }, says: ["backup.retentionDays", "= 36", "1-35"] },
  { title: "backup schedule that is not cron", values: { backup: { schedule: "daily" } }, says: ["backup.schedule", '"daily"', "five-field cron"] },
  { title: "alert percentage above 100", values: { alerts: { connectionPoolPercent: 120 } }, says: ["alerts.connectionPoolPercent", "= 120", "0-100"] },
  { title: "pool timeout of 0 seconds", values: { pool: { postgresTimeoutSeconds: 0 } }, says: ["pool.postgresTimeoutSeconds", "= 0", "above 0 seconds"] },
  { title: "slow-statement threshold below -1", values: { postgres: { logMinDurationStatementMs: -5 } }, says: ["postgres.logMinDurationStatementMs", "= -5", "-1 (off) or more"] },
  { title: "unknown preload library", values: { postgres: { sharedPreloadLibraries: ["pg_cron"] } }, says: ["postgres.sharedPreloadLibraries.0", '"pg_cron"', "pg_stat_statements"] },
  { title: "database open to the internet", values: { target: "aws", aws: { allowedCidrs: ["0.0.0.0/0"] } }, says: ["aws.allowedCidrs", '"0.0.0.0/0"', "never open to the internet"] },
  { title: "ElastiCache snapshot window under 60 minutes", values: { target: "aws", aws: { snapshotWindow: "01:00-01:30" } }, says: ["aws.snapshotWindow", '"01:00-01:30"', "at least 60 minutes"] },
  { title: "CloudWatch retention CloudWatch does not offer", values: { target: "aws", aws: { logRetentionDays: 45 } }, says: ["aws.logRetentionDays", "= 45", "CloudWatch Logs retention"] },
  { title: "storage ceiling below the allocated storage", values: { target: "aws", aws: { rdsMaxAllocatedStorageGb: 30 } }, says: ["aws.rdsMaxAllocatedStorageGb", "= 30", "at least aws.rdsAllocatedStorageGb"] },
  { title: "unknown target", values: { target: "kubernetes" }, says: ["target", '"kubernetes"', "docker or aws"] },
  { title: "a secret in the stack file", values: "config:\n  crypto-prediction-infra:redisPassword:\n    secure: v1:AAABAGxvbmc=\n", says: ["redisPassword", "holds no secrets"] },
  { title: "stack file that is not YAML", values: "config:\n  crypto-prediction-infra:postgres:\n    port: [5432\n", says: ["Pulumi.", "not valid YAML"] },
  { title: "config value that is broken JSON", values: "config:\n  crypto-prediction-infra:postgres: '{\"port\": 5432'\n", says: ["postgres", "not valid JSON"] },
];

describe.concurrent("npm run up refuses wrong units, ranges and broken stack files (exit 2, one message, nothing created)", () => {
  it.each(SPEC_CASES.map((c, i) => [c.title, c, i] as const))("%s", async (_title, specCase, i) => {
    const env = `bad-spec-${i}`;
    const yaml = typeof specCase.values === "string" ? specCase.values : stackYaml(specCase.values);
    const result = await upRefuses(env, yaml);
    for (const text of specCase.says) expect(result.stderr).toContain(text);
  });
});
