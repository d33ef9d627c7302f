/**
 * `npm run drift` on real servers: a fresh environment has none; each kind of drift the issue
 * names is found, reported with a fix, and makes the command exit 1 — a setting changed with
 * ALTER SYSTEM + reload, one changed with CONFIG SET, a dropped index, an added column — and the
 * environment is put back after each. Plus what nobody declared (ALTER DATABASE … SET, an extra
 * ACL user), the markdown review, and the reading of `pulumi preview --json` documents.
 */
import { mkdtempSync, readFileSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { withPg, withRedis } from "../../lib/db/clients.js";
import { reviewDrift } from "../../lib/drift/drift.js";
import { interpretPreview } from "../../lib/drift/infra.js";
import { SCRATCH_PREFIX } from "../../lib/drift/schema.js";
import { resolveEnvironment } from "../../lib/env/resolve.js";
import { runCli, useEphemeralEnvironment } from "../support/embedded.js";

const env = useEphemeralEnvironment();

interface Item {
  name: string;
  expected: string;
  actual: string;
  fix: string;
}
type Sections = { id: string; status: string; items: Item[] }[];

const itemsOf = (sections: Sections, id: string) => sections.find((s) => s.id === id)!.items;

/** Runs the CLI, expects drift (exit 1) and returns the sections. */
async function driftFound(): Promise<Sections> {
  const result = await runCli("drift", ["--env", env().env, "--json"]);
  expect(result.code, result.stderr).toBe(1);
  expect(result.json.drift).toBe(true);
  return result.json.sections;
}

const admin = <T>(sql: string) => withPg(env().connections.postgresConfig("admin"), (c) => c.query(sql)) as Promise<T>;
const owner = (sql: string) => withPg(env().connections.postgresConfig("owner"), (c) => c.query(sql));

describe("drift", () => {
  it("a fresh environment has no drift (exit 0), and no scratch database is left behind", async () => {
    const result = await runCli("drift", ["--env", env().env, "--json"]);
    expect(result.code, JSON.stringify(result.json?.sections, null, 2)).toBe(0);
    const statuses = Object.fromEntries(result.json.sections.map((s: { id: string; status: string }) => [s.id, s.status]));
    expect(statuses).toEqual({ "postgres-settings": "ok", "redis-settings": "ok", "redis-acl": "ok", schema: "ok", migrations: "ok", infra: "skipped" });
    expect(result.json.settings.postgres.map((r: { name: string }) => r.name)).toContain("shared_buffers");
    const { rows } = await admin<{ rows: unknown[] }>(`SELECT datname FROM pg_database WHERE datname LIKE '${SCRATCH_PREFIX}%'`);
    expect(rows).toEqual([]);
  });

  it("finds a setting changed with ALTER SYSTEM + reload", async () => {
    await admin("ALTER SYSTEM SET work_mem = '32MB'");
    await admin("SELECT pg_reload_conf()");
    try {
      const items = itemsOf(await driftFound(), "postgres-settings");
      const item = items.find((i) => i.name === "work_mem")!;
      expect(item).toMatchObject({ expected: "16MB", actual: "32MB" });
      expect(item.fix).toContain("ALTER SYSTEM RESET work_mem");
    } finally {
      await admin("ALTER SYSTEM RESET work_mem");
      await admin("SELECT pg_reload_conf()");
    }
  });

  it("finds ALTER SYSTEM overrides outside the spec, loaded or not, and ALTER DATABASE … SET", async () => {
    await admin("ALTER SYSTEM SET random_page_cost = 1.1");
    await admin(`ALTER DATABASE ${env().spec.postgres.database} SET statement_timeout = '5s'`);
    try {
      const report = await reviewDrift(resolveEnvironment({ env: env().env }));
      const items = report.sections.find((s) => s.id === "postgres-settings")!.items;
      expect(items.find((i) => i.name === "random_page_cost")?.actual).toMatch(/1\.1 set by ALTER SYSTEM, not loaded yet/);
      expect(items.find((i) => i.name.startsWith("statement_timeout"))?.fix).toContain(`ALTER DATABASE ${env().spec.postgres.database} RESET statement_timeout`);
      expect(report.exitCode).toBe(1);
    } finally {
      await admin("ALTER SYSTEM RESET random_page_cost");
      await admin(`ALTER DATABASE ${env().spec.postgres.database} RESET statement_timeout`);
    }
  });

  it("finds a setting changed with CONFIG SET", async () => {
    const redis = env().connections.redisOptions("admin");
    await withRedis(redis, (r) => r.config("SET", "maxmemory", "300mb"));
    try {
      const item = itemsOf(await driftFound(), "redis-settings").find((i) => i.name === "maxmemory")!;
      expect(item).toMatchObject({ expected: String(256 * 1024 * 1024), actual: String(300 * 1024 * 1024) });
      expect(item.fix).toContain(`CONFIG SET maxmemory ${256 * 1024 * 1024}`);
    } finally {
      await withRedis(redis, (r) => r.config("SET", "maxmemory", "256mb"));
    }
  });

  it("finds a dropped index, with the statement that recreates it", async () => {
    await owner("DROP INDEX idx_market_data_timestamp");
    try {
      const items = itemsOf(await driftFound(), "schema");
      expect(items).toHaveLength(1);
      expect(items[0]).toMatchObject({ name: "index public.market_data.idx_market_data_timestamp", actual: "absent" });
      expect(items[0]!.fix).toBe('CREATE INDEX CONCURRENTLY idx_market_data_timestamp ON public.market_data USING btree ("timestamp");');
    } finally {
      await owner('CREATE INDEX idx_market_data_timestamp ON public.market_data USING btree ("timestamp")');
    }
  });

  it("finds privileges that differ from the roles bootstrap, each with the statement that puts it back", async () => {
    const { database, appUser, readonlyUser } = env().spec.postgres;
    const grants = [
      `GRANT DELETE ON market_data TO ${readonlyUser}`,
      `GRANT SELECT ON pgmigrations TO ${appUser}`,
      `REVOKE CONNECT ON DATABASE ${database} FROM ${readonlyUser}`,
      "GRANT CREATE ON SCHEMA public TO PUBLIC",
    ];
    const undo = [
      `REVOKE DELETE ON market_data FROM ${readonlyUser}`,
      `REVOKE ALL ON pgmigrations FROM ${appUser}`,
      `GRANT CONNECT ON DATABASE ${database} TO ${readonlyUser}`,
      "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
    ];
    for (const sql of grants) await admin(sql);
    try {
      await expectPrivilegeDrift();
    } finally {
      for (const sql of undo) await admin(sql); // the later tests start from no drift, whatever failed
    }
  });

  /** The four items, and their fixes: run as printed (without the advice after them), they undo the drift. */
  async function expectPrivilegeDrift(): Promise<void> {
    const { database, appUser, readonlyUser } = env().spec.postgres;
    const items = itemsOf(await driftFound(), "schema");
    expect(items.map((i) => [i.name, i.expected, i.actual])).toEqual([
      [`privilege ${appUser} on table pgmigrations`, "absent", "SELECT"],
      [`privilege ${readonlyUser} on database`, "CONNECT", "absent"],
      [`privilege ${readonlyUser} on table market_data`, "SELECT", "DELETE, SELECT"],
      ["privilege PUBLIC on schema public", "absent", "CREATE"],
    ]);
    for (const item of items) await admin(item.fix.split(" — ")[0]!);
    expect(items.map((i) => i.fix.split(" — ")[0])).toEqual([
      `REVOKE ALL ON TABLE public.pgmigrations FROM ${appUser};`,
      `GRANT CONNECT ON DATABASE "${database}" TO ${readonlyUser};`,
      `REVOKE ALL ON TABLE public.market_data FROM ${readonlyUser}; GRANT SELECT ON TABLE public.market_data TO ${readonlyUser};`,
      "REVOKE ALL ON SCHEMA public FROM PUBLIC;",
    ]);
    const clean = await runCli("drift", ["--env", env().env, "--json"]);
    expect(clean.code, JSON.stringify(itemsOf(clean.json.sections, "schema"))).toBe(0);
  }

  it("finds an added column, and writes a review in markdown (0600) with what, expected, actual and fix", async () => {
    await owner("ALTER TABLE predictions ADD COLUMN notes text");
    const dir = mkdtempSync(path.join(os.tmpdir(), "cpi-drift-"));
    const md = path.join(dir, "review.md");
    try {
      const result = await runCli("drift", ["--env", env().env, "--md", md]);
      expect(result.code).toBe(1);
      expect(result.stdout).toContain("column public.predictions.notes");
      const text = readFileSync(md, "utf8");
      expect(statSync(md).mode & 0o777).toBe(0o600);
      expect(text).toContain("| What | Expected | Actual | How to fix |");
      expect(text).toMatch(/\| column public\.predictions\.notes.*\| absent \| text \| ALTER TABLE public\.predictions DROP COLUMN notes;/);
    } finally {
      await owner("ALTER TABLE predictions DROP COLUMN notes");
    }
  });

  it("finds an undeclared Redis user and an application user allowed KEYS", async () => {
    const redis = env().connections.redisOptions("admin");
    const app = env().spec.redis.appUser;
    await withRedis(redis, async (r) => {
      await r.acl("SETUSER", "intruder", "off");
      await r.acl("SETUSER", app, "+keys");
    });
    try {
      const report = await reviewDrift(resolveEnvironment({ env: env().env }), undefined, { infra: "no" });
      const names = report.sections.find((s) => s.id === "redis-acl")!.items.map((i) => i.name);
      expect(names.sort()).toEqual([`ACL ${app}: KEYS`, "ACL user intruder"]);
    } finally {
      await withRedis(redis, async (r) => {
        await r.acl("DELUSER", "intruder");
        await r.acl("SETUSER", app, "-keys");
      });
    }
    const clean = await reviewDrift(resolveEnvironment({ env: env().env }));
    expect(clean.exitCode, JSON.stringify(clean.sections.filter((s) => s.status !== "ok" && s.status !== "skipped"), null, 2)).toBe(0);
  });

  it("--infra yes without the Pulumi CLI could not check the infrastructure (exit 2, not 'no drift')", async () => {
    const result = await runCli("drift", ["--env", env().env, "--infra", "yes", "--json"], { env: { PATH: path.dirname(process.execPath) } });
    expect(result.code).toBe(2);
    const infra = result.json.sections.find((s: { id: string }) => s.id === "infra");
    expect(infra.status).toBe("error");
    expect(infra.notes[0]).toContain("Pulumi CLI is not on PATH");
  });
});

describe("pulumi preview --json documents", () => {
  it("all resources the same: no drift", () => {
    const doc = { steps: [{ op: "same", urn: "urn:pulumi:dev::crypto-prediction-infra::docker:index/container:Container::pg" }], changeSummary: { same: 1 } };
    expect(interpretPreview(JSON.stringify(doc), 0)).toMatchObject({ status: "ok", items: [] });
  });

  it("an update is drift, naming the resource and the properties", () => {
    const doc = {
      steps: [
        { op: "same", urn: "urn:a::b::c::same-one" },
        { op: "update", urn: "urn:pulumi:prod::crypto-prediction-infra::aws:rds/parameterGroup:ParameterGroup::pg-params", detailedDiff: { parameters: { kind: "update" } } },
      ],
      diagnostics: [{ severity: "error", message: "error: no changes were expected but changes were proposed" }],
      changeSummary: { same: 1, update: 1 },
    };
    const result = interpretPreview(JSON.stringify(doc), 255);
    expect(result.status).toBe("drift");
    expect(result.items).toEqual([expect.objectContaining({ name: "pg-params", actual: "update (parameters): the real resource differs" })]);
  });

  it("a preview that failed is an error, never 'no drift'", () => {
    expect(interpretPreview("", 255, "error: no stack named 'prod' found").status).toBe("error");
    const doc = { steps: [], diagnostics: [{ severity: "error", message: "error: failed to refresh: AccessDenied" }] };
    expect(interpretPreview(JSON.stringify(doc), 255)).toMatchObject({ status: "error", note: expect.stringContaining("AccessDenied") });
  });
});
