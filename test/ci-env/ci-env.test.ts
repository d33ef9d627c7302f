/**
 * `npm run env:ci`: throw-away environments for CI on both engines. The printed variables
 * work, two spin-ups at once do not collide, and `--down ID` leaves nothing behind.
 */
import { existsSync } from "node:fs";
import { execFileSync } from "node:child_process";
import pg from "pg";
import { Redis } from "ioredis";
import { describe, expect, it } from "vitest";
import { dockerBinary, describeDocker } from "../support/docker.js";
import { runCli } from "../support/embedded.js";
import { envPaths } from "../../lib/state/paths.js";
import { portOwner } from "../../lib/state/ports.js";

type Vars = Record<string, string>;

async function spinUp(engine: "embedded" | "docker", extra: string[] = []): Promise<Vars> {
  const result = await runCli("env-ci", ["--engine", engine, "--format", "json", ...extra]);
  expect(result.code, result.stderr).toBe(0);
  return result.json as Vars;
}

/** The variables reach both servers with the application roles. */
async function assertUsable(vars: Vars): Promise<void> {
  const client = new pg.Client({ connectionString: vars.DATABASE_URL });
  await client.connect();
  try {
    const { rows } = await client.query("SELECT current_user AS who, count(*)::int AS n FROM cryptocurrencies");
    expect(rows[0].who).toBe(vars.PGUSER);
  } finally {
    await client.end();
  }
  const parts = new pg.Client({ host: vars.PGHOST, port: Number(vars.PGPORT), database: vars.PGDATABASE, user: vars.PGUSER, password: vars.PGPASSWORD });
  await parts.connect();
  await parts.end();
  const redis = new Redis(vars.REDIS_URL!, { maxRetriesPerRequest: 1 });
  try {
    await redis.set("ci:probe:1:value", "ok", "EX", 60);
    expect(await redis.get("ci:probe:1:value")).toBe("ok");
    expect(await redis.acl("WHOAMI")).toBe(vars.REDIS_USERNAME);
  } finally {
    redis.disconnect();
  }
}

async function tearDown(id: string): Promise<void> {
  const result = await runCli("env-ci", ["--down", id, "--json"]);
  expect(result.code, result.stderr).toBe(0);
}

describe("env:ci --engine embedded", () => {
  it("two spin-ups at once get their own ids and ports, both work, and --down leaves nothing", async () => {
    const [a, b] = await Promise.all([spinUp("embedded"), spinUp("embedded", ["--seed"])]);
    try {
      expect(a.CPI_ENV_ID).not.toBe(b.CPI_ENV_ID);
      expect(new Set([a.PGPORT, a.REDIS_PORT, b.PGPORT, b.REDIS_PORT]).size).toBe(4);
      await Promise.all([assertUsable(a), assertUsable(b)]);
      const seeded = new pg.Client({ connectionString: b.DATABASE_URL });
      await seeded.connect();
      const { rows } = await seeded.query("SELECT count(*)::int AS n FROM market_data");
      await seeded.end();
      expect(rows[0].n).toBeGreaterThan(0);
    } finally {
      await Promise.all([tearDown(a.CPI_ENV_ID!), tearDown(b.CPI_ENV_ID!)]);
    }
    for (const vars of [a, b]) {
      expect(existsSync(envPaths(vars.CPI_ENV_ID!).dir)).toBe(false);
      expect(portOwner(Number(vars.PGPORT))).toBeUndefined();
      expect(portOwner(Number(vars.REDIS_PORT))).toBeUndefined();
    }
  });

  it("prints dotenv lines by default and refuses a bad --down id", async () => {
    const result = await runCli("env-ci", []);
    expect(result.code, result.stderr).toBe(0);
    const vars = Object.fromEntries(result.stdout.trim().split("\n").map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]));
    await tearDown(vars.CPI_ENV_ID!);
    expect(vars.DATABASE_URL).toMatch(/^postgresql:\/\/crypto_app:/);
    const bad = await runCli("env-ci", ["--down", "dev"]);
    expect(bad.code).toBe(64);
    expect(bad.stderr).toContain('"dev" is not a CI environment id');
  });
});

describeDocker("env:ci --engine docker", () => {
  // Two containers pairs start at once: on a loaded 2-core machine that alone can take a minute.
  it("two spin-ups at once do not collide, and --down removes containers, volumes, network and state", { timeout: 240_000 }, async () => {
    const [a, b] = await Promise.all([spinUp("docker"), spinUp("docker")]);
    const ids = [a.CPI_ENV_ID!, b.CPI_ENV_ID!];
    try {
      expect(a.CPI_ENGINE).toBe("docker");
      await Promise.all([assertUsable(a), assertUsable(b)]);
    } finally {
      await Promise.all(ids.map(tearDown));
    }
    const docker = dockerBinary();
    for (const id of ids) {
      const label = `label=crypto-prediction-infra.env=${id}`;
      const leftovers = [
        execFileSync(docker, ["ps", "-aq", "--filter", label], { encoding: "utf8" }),
        execFileSync(docker, ["volume", "ls", "-q", "--filter", label], { encoding: "utf8" }),
        execFileSync(docker, ["network", "ls", "-q", "--filter", label], { encoding: "utf8" }),
      ].join("").trim();
      expect(leftovers).toBe("");
      expect(existsSync(envPaths(id).dir)).toBe(false);
    }
  });
});
