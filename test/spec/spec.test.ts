/**
 * The spec: units both ways, the guide's defaults, every kind of bad value (with a message that
 * names the key, the value and what is allowed), cross-field and machine checks, stack-file
 * overrides, and the render functions' output.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  formatPgSize,
  formatRedisSize,
  knownKeysAt,
  listEnvironments,
  loadSpec,
  parsePgSize,
  parseRedisSize,
  parseSpec,
  postgresArgs,
  postgresConf,
  redisArgs,
  redisConf,
  REDIS_EVICTION_POLICIES,
  SpecError,
  type Spec,
} from "../../lib/spec/index.js";

const KB = 1024;
const MB = 1024 ** 2;
const GB = 1024 ** 3;

describe("units", () => {
  it("parses PostgreSQL sizes in powers of 1024, case-sensitive as the server is", () => {
    expect(parsePgSize("128kB")).toBe(128 * KB);
    expect(parsePgSize("256MB")).toBe(256 * MB);
    expect(parsePgSize("1GB")).toBe(GB);
    expect(parsePgSize("2TB")).toBe(2 * 1024 ** 4);
    expect(parsePgSize("8192B")).toBe(8192);
    for (const bad of ["256mb", "256Mb", "1.5GB", "-1MB", "256", "MB", "", "256 megabytes", "1KB"]) expect(parsePgSize(bad), bad).toBeUndefined();
  });

  it("formats bytes as PostgreSQL's SHOW does: the largest unit that divides exactly", () => {
    expect(formatPgSize(256 * MB)).toBe("256MB");
    expect(formatPgSize(GB)).toBe("1GB");
    expect(formatPgSize(1536 * KB)).toBe("1536kB");
    expect(formatPgSize(100)).toBe("100B");
    for (const text of ["128kB", "16MB", "1GB", "3TB"]) expect(formatPgSize(parsePgSize(text)!)).toBe(text);
  });

  it("parses Redis sizes: kb/mb/gb are powers of 1024, k/m/g powers of 1000, any case; a bare number is bytes", () => {
    expect(parseRedisSize("256mb")).toBe(256 * MB);
    expect(parseRedisSize("256MB")).toBe(256 * MB);
    expect(parseRedisSize("1m")).toBe(1_000_000);
    expect(parseRedisSize("1M")).toBe(1_000_000);
    expect(parseRedisSize("1kb")).toBe(1024);
    expect(parseRedisSize("1k")).toBe(1000);
    expect(parseRedisSize("2gb")).toBe(2 * GB);
    expect(parseRedisSize("2g")).toBe(2e9);
    expect(parseRedisSize("1000")).toBe(1000);
    expect(parseRedisSize(4096)).toBe(4096);
    for (const bad of ["-1mb", "1.5mb", "12xb", "mb", "", "lots"]) expect(parseRedisSize(bad), bad).toBeUndefined();
    for (const bad of [-1, 1.5, Number.NaN]) expect(parseRedisSize(bad), String(bad)).toBeUndefined();
  });

  it("formats Redis sizes in binary units when exact, else bytes (1m is not a whole number of kb)", () => {
    expect(formatRedisSize(256 * MB)).toBe("256mb");
    expect(formatRedisSize(GB)).toBe("1gb");
    expect(formatRedisSize(2048)).toBe("2kb");
    expect(formatRedisSize(parseRedisSize("1m")!)).toBe("1000000");
    expect(parseRedisSize(formatRedisSize(parseRedisSize("3g")!))).toBe(3e9);
  });
});

describe("defaults: the guide's values", () => {
  const spec = parseSpec("dev", {});

  it("fills every setting the guide names", () => {
    expect(spec.postgres).toMatchObject({
      version: 16,
      port: 5432,
      database: "crypto_prediction_db",
      user: "crypto_user",
      sharedBuffers: "256MB",
      effectiveCacheSize: "1GB",
      workMem: "16MB",
      maintenanceWorkMem: "128MB",
    });
    expect(spec.redis).toMatchObject({ version: 7, port: 6379, db: 0, maxmemory: "256mb", maxmemoryPolicy: "allkeys-lru", save: [{ seconds: 60, changes: 1000 }], appendonly: true });
    expect(spec.pool).toEqual({ postgresSize: 20, postgresMaxOverflow: 10, postgresTimeoutSeconds: 30, redisMaxConnections: 50 });
    expect(spec.cache).toMatchObject({ ttlShortSeconds: 300, ttlMediumSeconds: 1800, ttlLongSeconds: 3600 });
    expect(spec.env).toBe("dev");
  });

  it("renders the guide's postgresql.conf lines", () => {
    const conf = postgresConf(spec);
    expect(conf).toContain("shared_buffers = '256MB'\n");
    expect(conf).toContain("effective_cache_size = '1GB'\n");
    expect(conf).toContain("work_mem = '16MB'\n");
    expect(conf).toContain("maintenance_work_mem = '128MB'\n");
  });

  it("renders the guide's postgres -c arguments", () => {
    const args = postgresArgs(spec);
    for (const pair of ["shared_buffers=256MB", "effective_cache_size=1GB", "work_mem=16MB", "maintenance_work_mem=128MB"]) {
      const at = args.indexOf(pair);
      expect(at, pair).toBeGreaterThan(0);
      expect(args[at - 1]).toBe("-c");
    }
  });

  it("renders the guide's redis.conf lines and redis-server arguments", () => {
    const conf = redisConf(spec).split("\n");
    for (const line of ["maxmemory 256mb", "maxmemory-policy allkeys-lru", "save 60 1000", "appendonly yes"]) expect(conf, line).toContain(line);
    const args = redisArgs(spec);
    const pairs = Object.fromEntries(Array.from({ length: args.length / 2 }, (_, i) => [args[2 * i], args[2 * i + 1]]));
    expect(pairs).toMatchObject({ "--maxmemory": "256mb", "--maxmemory-policy": "allkeys-lru", "--save": "60 1000", "--appendonly": "yes" });
  });

  it("renders converted values: a size the user wrote in another unit comes out in the server's form", () => {
    const custom = parseSpec("dev", { postgres: { sharedBuffers: "524288kB", effectiveCacheSize: "2048MB" }, redis: { maxmemory: "1g", save: [] } });
    expect(postgresConf(custom)).toContain("shared_buffers = '512MB'");
    expect(postgresConf(custom)).toContain("effective_cache_size = '2GB'");
    expect(redisConf(custom)).toContain("maxmemory 1000000000\n"); // 10⁹ bytes is no whole number of mb
    expect(redisConf(custom)).toContain('save ""\n');
  });
});

/** The SpecError a bad input raises; fails when it does not raise one. */
function specError(input: unknown, options: { memoryBytes?: number } = {}): SpecError {
  try {
    parseSpec("dev", input, options);
  } catch (error) {
    expect(error).toBeInstanceOf(SpecError);
    return error as SpecError;
  }
  throw new Error(`expected a SpecError for ${JSON.stringify(input)}`);
}

describe("bad values: one message naming the key, the value and what is allowed", () => {
  const cases: { title: string; input: unknown; key: string; value: string; allowed: string }[] = [
    { title: "wrong type (string port)", input: { postgres: { port: "5432" } }, key: "postgres.port", value: '"5432"', allowed: "1024-65535" },
    { title: "wrong type (string boolean)", input: { redis: { appendonly: "yes" } }, key: "redis.appendonly", value: '"yes"', allowed: "true or false" },
    { title: "wrong type (number size)", input: { postgres: { workMem: 16 } }, key: "postgres.workMem", value: "16", allowed: "kB, MB, GB" },
    { title: "negative count", input: { postgres: { maxConnections: -5 } }, key: "postgres.maxConnections", value: "-5", allowed: "at least 10" },
    { title: "negative overflow", input: { pool: { postgresMaxOverflow: -1 } }, key: "pool.postgresMaxOverflow", value: "-1", allowed: "0 or more" },
    { title: "negative Redis size", input: { redis: { maxmemory: "-1mb" } }, key: "redis.maxmemory", value: '"-1mb"', allowed: "kb/mb/gb" },
    { title: "unparsable PostgreSQL size", input: { postgres: { sharedBuffers: "256 megabytes" } }, key: "postgres.sharedBuffers", value: '"256 megabytes"', allowed: "B, kB, MB, GB or TB" },
    { title: "Redis unit in a PostgreSQL size", input: { postgres: { sharedBuffers: "256mb" } }, key: "postgres.sharedBuffers", value: '"256mb"', allowed: "e.g. 256MB" },
    { title: "unparsable Redis size", input: { redis: { maxmemory: "lots" } }, key: "redis.maxmemory", value: '"lots"', allowed: "e.g. 256mb" },
    { title: "unknown eviction policy", input: { redis: { maxmemoryPolicy: "lru" } }, key: "redis.maxmemoryPolicy", value: '"lru"', allowed: REDIS_EVICTION_POLICIES.join(", ") },
    { title: "unknown key", input: { postgres: { sharedBufer: "1GB" } }, key: "postgres.sharedBufer", value: '"1GB"', allowed: "sharedBuffers" },
    { title: "unknown top-level key", input: { postgress: {} }, key: "postgress", value: "{}", allowed: "postgres, redis" },
    { title: "port above the range", input: { redis: { port: 70000 } }, key: "redis.port", value: "70000", allowed: "65535" },
    { title: "privileged port", input: { postgres: { port: 80 } }, key: "postgres.port", value: "80", allowed: "1024-65535" },
    { title: "fractional port", input: { postgres: { port: 5432.5 } }, key: "postgres.port", value: "5432.5", allowed: "whole" },
    { title: "unsupported major version", input: { postgres: { version: 15 } }, key: "postgres.version", value: "15", allowed: "PostgreSQL 16" },
    {
      title: "cross-field: shared_buffers above effective_cache_size",
      input: { postgres: { sharedBuffers: "2GB" } },
      key: "postgres.sharedBuffers",
      value: '"2GB"',
      allowed: "postgres.effectiveCacheSize (1GB)",
    },
    {
      title: "cross-field: the pool does not fit max_connections",
      input: { postgres: { maxConnections: 20 } },
      key: "postgres.maxConnections",
      value: "20",
      allowed: "pool.postgresSize + pool.postgresMaxOverflow = 30",
    },
    { title: "cross-field: same port twice", input: { postgres: { port: 7000 }, redis: { port: 7000 } }, key: "redis.port", value: "7000", allowed: "same as postgres.port" },
  ];

  for (const c of cases) {
    it(c.title, () => {
      const error = specError(c.input);
      const issue = error.issues.find((i) => i.key === c.key);
      expect(issue, `issues: ${JSON.stringify(error.issues)}`).toBeDefined();
      const line = error.message.split("\n").find((l) => l.includes(`crypto-prediction-infra:${c.key} `))!;
      expect(line, error.message).toBeDefined();
      expect(line).toContain(`= ${c.value}:`);
      expect(line).toContain(c.allowed);
      expect(error.message).toContain("Pulumi.dev.yaml");
    });
  }

  it("reports every problem at once, not only the first", () => {
    const error = specError({ postgres: { port: "x", workMem: "lots" }, redis: { maxmemoryPolicy: "lru" } });
    expect(error.issues.map((i) => i.key).sort()).toEqual(["postgres.port", "postgres.workMem", "redis.maxmemoryPolicy"]);
  });

  it("refuses maxmemory above the machine's memory", () => {
    const error = specError({ redis: { maxmemory: "2gb" } }, { memoryBytes: GB });
    expect(error.message).toContain('crypto-prediction-infra:redis.maxmemory = "2gb": is above this machine\'s memory (1.0 GiB)');
  });

  it("refuses shared_buffers above the machine's memory", () => {
    const error = specError({ postgres: { sharedBuffers: "2GB", effectiveCacheSize: "4GB" } }, { memoryBytes: GB });
    expect(error.message).toContain('crypto-prediction-infra:postgres.sharedBuffers = "2GB": is above this machine\'s memory (1.0 GiB)');
  });

  it("accepts the same sizes when the machine has the memory", () => {
    const spec = parseSpec("dev", { postgres: { sharedBuffers: "2GB", effectiveCacheSize: "4GB" }, redis: { maxmemory: "2gb" } }, { memoryBytes: 8 * GB });
    expect(postgresConf(spec)).toContain("shared_buffers = '2GB'");
  });

  it("refuses an environment name that is not one", () => {
    expect(() => parseSpec("Dev/../x", {})).toThrow(/environment name.*lowercase letters, digits and -/);
  });

  it("lists the allowed keys of each level", () => {
    expect(knownKeysAt([])).toEqual(expect.arrayContaining(["postgres", "redis", "pool", "cache", "aws"]));
    expect(knownKeysAt(["redis"])).toEqual(expect.arrayContaining(["maxmemory", "maxmemoryPolicy", "save", "appendonly"]));
    expect(knownKeysAt(["nope"])).toEqual([]);
  });
});

describe("stack files: Pulumi.<env>.yaml overrides", () => {
  const projectDir = mkdtempSync(path.join(os.tmpdir(), "cpi-spec-test-"));
  afterAll(() => rmSync(projectDir, { recursive: true, force: true }));
  const stack = (env: string, yaml: string) => writeFileSync(path.join(projectDir, `Pulumi.${env}.yaml`), yaml);

  it("applies the file's values over the guide's defaults, and ignores other namespaces", () => {
    stack(
      "tuned",
      [
        "config:",
        "  aws:region: eu-west-1",
        "  crypto-prediction-infra:postgres:",
        "    sharedBuffers: 512MB",
        "    effectiveCacheSize: 2GB",
        "    port: 15433",
        "  crypto-prediction-infra:redis:",
        "    maxmemory: 128mb",
        "    maxmemoryPolicy: volatile-lru",
        "",
      ].join("\n"),
    );
    const spec: Spec = loadSpec("tuned", { projectDir });
    expect(spec.env).toBe("tuned");
    expect(spec.postgres).toMatchObject({ sharedBuffers: "512MB", effectiveCacheSize: "2GB", port: 15433, workMem: "16MB", maintenanceWorkMem: "128MB" });
    expect(spec.redis).toMatchObject({ maxmemory: "128mb", maxmemoryPolicy: "volatile-lru", appendonly: true });
    expect(redisConf(spec)).toContain("maxmemory 128mb\n");
    expect(postgresConf(spec)).toContain("shared_buffers = '512MB'");
  });

  it("merges programmatic overrides over the file (ephemeral copies)", () => {
    const spec = loadSpec("tuned", { projectDir, overrides: { postgres: { port: 20000 } } });
    expect(spec.postgres.port).toBe(20000);
    expect(spec.postgres.sharedBuffers).toBe("512MB");
  });

  it("takes objects as JSON strings, as Pulumi's runtime gives them", () => {
    stack("json", ['config:', `  crypto-prediction-infra:redis: '{"maxmemory":"64mb"}'`, ""].join("\n"));
    expect(loadSpec("json", { projectDir }).redis.maxmemory).toBe("64mb");
  });

  it("names the file, the key and the value of a bad override", () => {
    stack("bad", ["config:", "  crypto-prediction-infra:redis:", "    maxmemoryPolicy: most-recent", ""].join("\n"));
    expect(() => loadSpec("bad", { projectDir })).toThrow(SpecError);
    expect(() => loadSpec("bad", { projectDir })).toThrow(/Pulumi\.bad\.yaml[\s\S]*redis\.maxmemoryPolicy = "most-recent": expected one of noeviction, allkeys-lru/);
  });

  it("refuses a cross-field problem written in a file", () => {
    stack("cross", ["config:", "  crypto-prediction-infra:postgres:", "    sharedBuffers: 4GB", "    effectiveCacheSize: 1GB", ""].join("\n"));
    expect(() => loadSpec("cross", { projectDir, memoryBytes: 64 * GB })).toThrow(/postgres\.sharedBuffers = "4GB": is above postgres\.effectiveCacheSize \(1GB\)/);
  });

  it("refuses a secret in the spec", () => {
    stack("secret", ["config:", "  crypto-prediction-infra:postgres:", "    secure: AAABAK", ""].join("\n"));
    expect(() => loadSpec("secret", { projectDir })).toThrow(/postgres.*the spec holds no secrets/);
  });

  it("refuses a file that is not YAML, naming it", () => {
    stack("broken", "config:\n  crypto-prediction-infra:postgres: [unclosed\n");
    expect(() => loadSpec("broken", { projectDir })).toThrow(/Pulumi\.broken\.yaml[\s\S]*is not valid YAML/);
  });

  it("names the known environments when asked for one without a file", () => {
    expect(listEnvironments(projectDir)).toEqual(expect.arrayContaining(["bad", "json", "tuned"]));
    expect(() => loadSpec("missing", { projectDir })).toThrow(/no such environment; known: .*tuned/);
  });

  it("loads the project's own stacks", () => {
    for (const env of ["dev", "ci"]) expect(loadSpec(env).postgres.version).toBe(16);
    expect(loadSpec("ci").postgres.port).toBe(15432);
  });
});
