/**
 * Configuration drift review: the live environment against what is declared — the spec for
 * settings, the migrations for the schema (derived in a scratch database, see ./schema.ts), the
 * Pulumi program for the infrastructure. Every part runs concurrently on its own connection.
 *
 *   const report = await reviewDrift(resolveEnvironment({ env: "dev" }));
 *   report.exitCode // 0 none, 1 drift, 2 a part could not be checked (and no drift found)
 */
import { EXIT, type ExitCode } from "../errors.js";
import { redact } from "../redact.js";
import { withPg, withRedis } from "../db/clients.js";
import type { Environment } from "../env/environment.js";
import type { Spec } from "../spec/schema.js";
import { errorText } from "../verify/report.js";
import { redisOptions } from "../verify/redis.js";
import { awsInfraDrift, infraDrift, type InfraDrift } from "./infra.js";
import { sqlIdent } from "../db/roles.js";
import { compareSchemas, DATABASE_PLACEHOLDER, expectedSchema, introspectSchema, type SchemaDrift } from "./schema.js";
import { postgresSettingsDrift, redisAclDrift, redisSettingsDrift, type DriftItem, type PostgresSettingRow, type RedisSettingRow } from "./settings.js";
import { mdCell } from "../markdown.js";

export type SectionId = "postgres-settings" | "redis-settings" | "redis-acl" | "schema" | "migrations" | "infra";

export interface DriftSection {
  id: SectionId;
  title: string;
  /** What was compared with what. */
  compared: string;
  status: "ok" | "drift" | "error" | "skipped";
  items: DriftItem[];
  /** Parts that could not be checked, or why the section was skipped. */
  notes: string[];
  ms: number;
}

export interface DriftReport {
  env: string;
  target: string;
  generatedAt: string;
  drift: boolean;
  exitCode: ExitCode;
  sections: DriftSection[];
  /** Every setting compared, drifted or not (the review's appendix). */
  settings: { postgres: PostgresSettingRow[]; redis: RedisSettingRow[] };
  ms: number;
}

export interface DriftOptions {
  /** Run `pulumi preview`: auto = when the CLI is on PATH and the servers were given by URL. */
  infra?: "auto" | "yes" | "no";
  log?: (message: string) => void;
}

async function section(id: SectionId, title: string, compared: string, work: () => Promise<{ items: DriftItem[]; notes?: string[]; skipped?: boolean }>): Promise<DriftSection> {
  const t = performance.now();
  try {
    const { items, notes = [], skipped } = await work();
    const status = skipped ? "skipped" : items.length ? "drift" : notes.length ? "error" : "ok";
    return { id, title, compared, status, items, notes, ms: Math.round(performance.now() - t) };
  } catch (error) {
    return { id, title, compared, status: "error", items: [], notes: [errorText(error)], ms: Math.round(performance.now() - t) };
  }
}

export async function reviewDrift(target: Environment, spec: Spec = target.spec, options: DriftOptions = {}): Promise<DriftReport> {
  const started = performance.now();
  const settings: DriftReport["settings"] = { postgres: [], redis: [] };
  const work: Promise<DriftSection | DriftSection[]>[] = [];
  const pgEndpoint = target.postgres;
  const redisEndpoint = target.redis;

  if (pgEndpoint) {
    work.push(
      section("postgres-settings", "PostgreSQL settings", `pg_settings, pg_file_settings (ALTER SYSTEM) and pg_db_role_setting vs the spec (${spec.env})`, () =>
        withPg(pgEndpoint.config("admin"), async (client) => {
          const r = await postgresSettingsDrift(client, spec, target);
          settings.postgres = r.rows;
          return { items: r.items, notes: r.errors };
        }),
      ),
    );
    work.push(schemaSections(target, spec));
  } else {
    work.push(section("postgres-settings", "PostgreSQL settings", "—", async () => ({ items: [], notes: ["no --database-url given: PostgreSQL not checked"], skipped: true })));
  }

  if (redisEndpoint) {
    const managed = target.kind === "urls" && spec.target === "aws";
    work.push(
      section("redis-settings", "Redis settings", `CONFIG GET vs the spec (${spec.env}) and Redis 7 defaults`, async () => {
        if (managed) return { items: [], notes: ["ElastiCache blocks CONFIG: its parameter group is compared by the infrastructure section"], skipped: true };
        return withRedis(redisOptions(redisEndpoint, "admin"), async (redis) => {
          const r = await redisSettingsDrift(redis, spec, target);
          settings.redis = r.rows;
          return { items: r.items, notes: r.errors };
        });
      }),
    );
    work.push(
      section("redis-acl", "Redis users", "ACL USERS / GETUSER / DRYRUN vs the toolkit's ACL lines", async () => {
        if (managed) return { items: [], notes: ["ElastiCache manages users with RBAC user groups: compared by the infrastructure section"], skipped: true };
        return { items: await withRedis(redisOptions(redisEndpoint, "admin"), (redis) => redisAclDrift(redis, spec)) };
      }),
    );
  } else {
    work.push(section("redis-settings", "Redis settings", "—", async () => ({ items: [], notes: ["no --redis-url given: Redis not checked"], skipped: true })));
  }

  const infraMode = options.infra ?? "auto";
  work.push(
    section("infra", "Infrastructure (Pulumi)", `pulumi preview --refresh --expect-no-changes --stack ${spec.env}${spec.target === "aws" ? ", and RDS pending reboots" : ""}`, async () => {
      if (infraMode === "no") return { items: [], notes: ["not requested (--infra no)"], skipped: true };
      if (infraMode === "auto" && target.kind !== "urls") {
        return { items: [], notes: [`${target.env} is a local ${target.kind} environment, not made by Pulumi: nothing to preview (give the servers' URLs, or --infra yes, to compare a Pulumi stack)`], skipped: true };
      }
      const r: InfraDrift = spec.target === "aws" ? await awsInfraDrift(spec, { log: options.log }) : await infraDrift(spec.env, { log: options.log });
      if (r.status === "skipped" && infraMode === "yes") return { items: [], notes: [r.note!] };
      return { items: r.items, notes: r.note ? [r.note] : [], skipped: r.status === "skipped" };
    }),
  );

  const sections = (await Promise.all(work)).flat();
  const order: SectionId[] = ["postgres-settings", "redis-settings", "redis-acl", "schema", "migrations", "infra"];
  sections.sort((a, b) => order.indexOf(a.id) - order.indexOf(b.id));
  const drift = sections.some((s) => s.status === "drift");
  const exitCode: ExitCode = drift ? EXIT.PROBLEM : sections.some((s) => s.status === "error") ? EXIT.ERROR : EXIT.OK;
  return { env: spec.env, target: target.label, generatedAt: new Date().toISOString(), drift, exitCode, sections, settings, ms: Math.round(performance.now() - started) };
}

/** Schema objects and migrations, from one live introspection and one scratch derivation. */
async function schemaSections(target: Environment, spec: Spec): Promise<DriftSection[]> {
  const endpoint = target.postgres!;
  // An AWS stack's roles come from `npm run bootstrap` (the same grants, as RDS runs them), so
  // its privileges are compared too, although its URL is one login.
  const aws = spec.target === "aws" && target.kind === "urls";
  const privileges = target.perRoleLogins || aws;
  const rdsPrivileges = aws ? (await import("../aws/bootstrap.js")).rdsPrivilegesSql : undefined;
  const t = performance.now();
  const migrationsModule = import("../db/migrate.js");
  const [live, expected] = await Promise.allSettled([
    withPg(endpoint.config("admin"), async (client) => {
      const { appliedMigrations } = await migrationsModule;
      const objects = await introspectSchema(client, { privileges });
      return { objects, applied: await appliedMigrations(client), database: (await client.query("SELECT current_database() AS db")).rows[0].db as string };
    }),
    expectedSchema(endpoint, spec, { perRoleLogins: privileges, privilegesSql: rdsPrivileges }),
  ]);
  const ms = Math.round(performance.now() - t);
  const compared =
    live.status === "fulfilled"
      ? `the live schema${privileges ? " and privileges" : ""} of ${live.value.database} vs what the migrations${privileges ? ` and the roles bootstrap${aws ? " (npm run bootstrap)" : ""}` : ""} make in an empty scratch database on the same server`
      : "the live schema vs the migrations";
  const schema: DriftSection = { id: "schema", title: "Schema", compared, status: "ok", items: [], notes: [], ms };
  const migrations: DriftSection = { id: "migrations", title: "Migrations", compared: "applied migrations (pgmigrations) vs migrations/", status: "ok", items: [], notes: [], ms };
  if (live.status === "rejected") {
    schema.status = migrations.status = "error";
    schema.notes.push(`could not read the live schema: ${errorText(live.reason)}`);
    migrations.notes.push(schema.notes[0]!);
    return [schema, migrations];
  }
  if (expected.status === "rejected") {
    schema.status = "error";
    schema.notes.push(`could not derive the migrations' schema in a scratch database: ${errorText(expected.reason)} (needs a login that may CREATE DATABASE)`);
  } else {
    const database = sqlIdent(live.value.database);
    schema.items = compareSchemas(expected.value.objects, live.value.objects).map((d) => schemaItem({ ...d, fix: d.fix.replaceAll(DATABASE_PLACEHOLDER, database) }));
    schema.status = schema.items.length ? "drift" : "ok";
  }
  const { knownMigrations } = await migrationsModule;
  const known = knownMigrations();
  for (const m of known.filter((k) => !live.value.applied.includes(k))) {
    migrations.items.push({ name: m, expected: "applied", actual: "pending", source: "pgmigrations", fix: `npm run migrate -- up --env ${target.env}` });
  }
  for (const m of live.value.applied.filter((a) => !known.includes(a))) {
    migrations.items.push({ name: m, expected: "not applied (unknown to this code)", actual: "applied", source: "pgmigrations", fix: `deploy the code that has this migration, or revert it with that code (npm run migrate -- down --env ${spec.env} --yes)` });
  }
  migrations.status = migrations.items.length ? "drift" : "ok";
  return [schema, migrations];
}

function schemaItem(d: SchemaDrift): DriftItem {
  const extra = d.kind === "privilege" ? "not granted by the roles bootstrap" : "not made by any migration";
  const what = d.difference === "missing" ? "missing" : d.difference === "extra" ? extra : d.difference === "invalid" ? "invalid" : "differs";
  return {
    name: `${d.kind} ${d.name}`,
    expected: d.difference === "extra" ? "absent" : (d.expected ?? ""),
    actual: d.difference === "missing" ? "absent" : (d.actual ?? ""),
    source: what,
    fix: d.fix,
  };
}

// ---- output ----------------------------------------------------------------------------------

const STATUS_WORD: Record<DriftSection["status"], string> = { ok: "no drift", drift: "DRIFT", error: "could not check", skipped: "skipped" };

/** The review for a terminal: one line per section, then every item. */
export function formatDriftReport(report: DriftReport): string {
  const count = report.sections.reduce((n, s) => n + s.items.length, 0);
  const lines = [
    `${report.env}: ${report.drift ? `${count} drift item${count > 1 ? "s" : ""}` : report.exitCode === EXIT.ERROR ? "no drift found, but some parts could not be checked" : "no drift"} (${report.ms} ms)`,
    `  target: ${report.target}`,
  ];
  for (const s of report.sections) {
    lines.push(`  ${s.title}: ${STATUS_WORD[s.status]}${s.items.length ? ` (${s.items.length})` : ""}`);
    for (const item of s.items) {
      lines.push(`    • ${item.name}: expected ${item.expected}; actual ${item.actual}${item.source ? ` [${item.source}]` : ""}`);
      lines.push(`      fix: ${item.fix}`);
    }
    for (const note of s.notes) lines.push(`    note: ${note}`);
  }
  return redact(lines.join("\n"));
}

const cell = (text: string) => mdCell(text, "<br>");

/** The review as markdown: a summary table, then per section what, expected, actual, how to fix. */
export function driftMarkdown(report: DriftReport): string {
  const out: string[] = [
    `# Configuration drift review: ${report.env}`,
    "",
    `- Environment: ${report.target}`,
    `- Generated: ${report.generatedAt} by \`npm run drift\` (${report.ms} ms)`,
    `- Result: **${report.drift ? "drift found" : report.exitCode === EXIT.ERROR ? "no drift found, but some parts could not be checked" : "no drift"}** (exit ${report.exitCode})`,
    "",
    "| Area | Compared | Result |",
    "| --- | --- | --- |",
    ...report.sections.map((s) => `| ${s.title} | ${cell(s.compared)} | ${STATUS_WORD[s.status]}${s.items.length ? ` (${s.items.length})` : ""} |`),
    "",
  ];
  for (const s of report.sections) {
    out.push(`## ${s.title}`, "", `Compared: ${s.compared}.`, "");
    if (s.items.length) {
      out.push("| What | Expected | Actual | How to fix |", "| --- | --- | --- | --- |");
      for (const i of s.items) out.push(`| ${cell(i.name)}${i.source ? `<br><sub>${cell(i.source)}</sub>` : ""} | ${cell(i.expected)} | ${cell(i.actual)} | ${cell(i.fix)} |`);
      out.push("");
    } else if (s.status === "ok") {
      out.push("No drift.", "");
    }
    for (const note of s.notes) out.push(`> ${s.status === "skipped" ? "Skipped" : "Not checked"}: ${note}`, "");
  }
  if (report.settings.postgres.length || report.settings.redis.length) {
    out.push("## Appendix: settings compared", "");
    if (report.settings.postgres.length) {
      out.push("| PostgreSQL setting | Spec | Live | pg_settings (unit) | Source | Pending restart |", "| --- | --- | --- | --- | --- | --- |");
      for (const r of report.settings.postgres) out.push(`| ${r.name} | ${r.expected ?? "—"} | ${cell(r.shown)} | ${cell(r.setting)}${r.unit ? ` (${r.unit})` : ""} | ${cell(r.sourcefile ? `${r.source}: ${r.sourcefile}` : r.source)} | ${r.pendingRestart ? "yes" : "no"} |`);
      out.push("");
    }
    if (report.settings.redis.length) {
      out.push("| Redis setting | Expected | Live | From |", "| --- | --- | --- | --- |");
      for (const r of report.settings.redis) out.push(`| ${r.name} | ${cell(r.expected || '""')} | ${cell(r.actual === undefined ? "(not reported)" : r.actual || '""')} | ${r.from === "spec" ? "spec" : "Redis 7 default"} |`);
      out.push("");
    }
  }
  return redact(out.join("\n"));
}
