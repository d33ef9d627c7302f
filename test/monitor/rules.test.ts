/**
 * `monitor --rules` with Prometheus's own tools: `promtool check rules` accepts the file, and
 * `promtool test rules` proves that each rule fires just past its threshold once its `for:` has
 * elapsed, and neither before that nor at the threshold itself — for the guide's defaults and
 * for a spec with other thresholds, windows, `for:` and severities.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { stringify } from "yaml";
import { ALERT_NAMES, alertingRules, alertingRulesYaml, type AlertKey } from "../../lib/monitor/rules.js";
import { HIT_RATE_MIN_LOOKUPS } from "../../lib/monitor/monitor.js";
import { parseSpec } from "../../lib/spec/load.js";
import type { Spec } from "../../lib/spec/schema.js";
import { runCli } from "../support/embedded.js";

const run = promisify(execFile);
const dir = mkdtempSync(path.join(os.tmpdir(), "cpi-rules-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const STEP = 15; // seconds between input samples
const JOB = { instance: "127.0.0.1:9187", job: "cpi" };

interface Scenario {
  /** Series (name{labels} → values in promtool's expanding notation). */
  series: Record<string, string>;
  /** The alert's expected $value as its annotation prints it, when it fires. */
  value?: string;
  /** Extra labels the alert carries (e.g. table). */
  labels?: Record<string, string>;
}

/** For each rule: input just past the threshold (fires) and at the threshold (must not). */
function scenarios(spec: Spec): Record<AlertKey, { past: Scenario; at: Scenario; also?: Scenario[] }> {
  const a = spec.alerts;
  const n = 200; // samples
  const sel = (name: string, labels: Record<string, string> = {}) => `${name}{${Object.entries({ env: spec.env, ...JOB, ...labels }).map(([k, v]) => `${k}="${v}"`).join(",")}}`;
  const constant = (v: number) => `${v}x${n}`;
  const perStep = (perSecond: number) => `0+${perSecond * STEP}x${n}`;
  const f0 = (v: number) => v.toFixed(0);
  return {
    connectionPool: {
      past: { series: { [sel("cpi_postgres_connections", { state: "active" })]: constant(a.connectionPoolPercent + 1), [sel("cpi_postgres_connections", { state: "idle" })]: constant(0), [sel("cpi_postgres_max_connections")]: constant(100) }, value: f0(a.connectionPoolPercent + 1) },
      at: { series: { [sel("cpi_postgres_connections", { state: "active" })]: constant(a.connectionPoolPercent - 10), [sel("cpi_postgres_connections", { state: "idle" })]: constant(10), [sel("cpi_postgres_max_connections")]: constant(100) } },
    },
    queryTime: {
      past: { series: { [sel("cpi_postgres_longest_query_seconds")]: constant(a.queryTimeSeconds * 1.5) }, value: (a.queryTimeSeconds * 1.5).toFixed(2) },
      at: { series: { [sel("cpi_postgres_longest_query_seconds")]: constant(a.queryTimeSeconds), [sel("cpi_postgres_statements_exec_seconds_total")]: perStep(a.queryTimeSeconds * 4), [sel("cpi_postgres_statements_calls_total")]: perStep(4) } },
      // Statements that are slow on average, though none runs at the moment of a scrape.
      also: [{ series: { [sel("cpi_postgres_longest_query_seconds")]: constant(0), [sel("cpi_postgres_statements_exec_seconds_total")]: perStep(a.queryTimeSeconds * 6), [sel("cpi_postgres_statements_calls_total")]: perStep(4) }, value: (a.queryTimeSeconds * 1.5).toFixed(2) }],
    },
    deadTuples: {
      past: { series: { [sel("cpi_postgres_table_dead_tuples", { table: "public.market_data" })]: constant(a.deadTuplePercent * 10 + 10), [sel("cpi_postgres_table_live_tuples", { table: "public.market_data" })]: constant(1000) }, value: f0(a.deadTuplePercent + 1), labels: { table: "public.market_data" } },
      at: { series: { [sel("cpi_postgres_table_dead_tuples", { table: "public.market_data" })]: constant(a.deadTuplePercent * 10), [sel("cpi_postgres_table_live_tuples", { table: "public.market_data" })]: constant(1000) } },
    },
    redisMemory: {
      past: { series: { [sel("cpi_redis_memory_used_bytes")]: constant((a.redisMemoryPercent + 1) * 1024 * 1024), [sel("cpi_redis_memory_max_bytes")]: constant(100 * 1024 * 1024) }, value: f0(a.redisMemoryPercent + 1) },
      at: { series: { [sel("cpi_redis_memory_used_bytes")]: constant(a.redisMemoryPercent * 1024 * 1024), [sel("cpi_redis_memory_max_bytes")]: constant(100 * 1024 * 1024) } },
      // maxmemory 0 is "unbounded", not "full".
      also: [{ series: { [sel("cpi_redis_memory_used_bytes")]: constant(1024 * 1024), [sel("cpi_redis_memory_max_bytes")]: constant(0) } }],
    },
    redisHitRate: {
      past: { series: { [sel("cpi_redis_keyspace_hits_total")]: perStep(a.redisHitRatePercent - 1), [sel("cpi_redis_keyspace_misses_total")]: perStep(101 - a.redisHitRatePercent) }, value: f0(a.redisHitRatePercent - 1) },
      at: { series: { [sel("cpi_redis_keyspace_hits_total")]: perStep(a.redisHitRatePercent), [sel("cpi_redis_keyspace_misses_total")]: perStep(100 - a.redisHitRatePercent) } },
      // A low rate over too few lookups to judge is no alert.
      also: [{ series: { [sel("cpi_redis_keyspace_hits_total")]: `0+1x${n}`, [sel("cpi_redis_keyspace_misses_total")]: `0+${Math.max(1, Math.floor((HIT_RATE_MIN_LOOKUPS * STEP) / spec.monitor.rateWindowSeconds) - 2)}x${n}` } }],
    },
    redisEvictions: {
      past: { series: { [sel("cpi_redis_evicted_keys_total")]: perStep(a.redisEvictionsPerSecond + 1) }, value: f0(a.redisEvictionsPerSecond + 1) },
      at: { series: { [sel("cpi_redis_evicted_keys_total")]: perStep(a.redisEvictionsPerSecond) } },
    },
  };
}

/** A promtool unit-test file for every rule of the spec. */
function unitTests(spec: Spec, rulesFile: string): string {
  const rules = new Map(alertingRules(spec).groups[0]!.rules.map((r) => [r.alert, r]));
  const tests: unknown[] = [];
  // Evaluated once the window holds enough samples and the rule's `for:` has passed, and just before.
  const settle = spec.monitor.rateWindowSeconds + STEP;
  for (const [key, cases] of Object.entries(scenarios(spec)) as [AlertKey, ReturnType<typeof scenarios>[AlertKey]][]) {
    const rule = rules.get(ALERT_NAMES[key])!;
    const forSeconds = spec.monitor.alertFor[key];
    const expected = (c: Scenario) => {
      const fill = (text: string) => text.replace(/\{\{ \$value \| printf "[^"]+" \}\}/g, c.value!).replace(/\{\{ \$labels\.table \}\}/g, c.labels?.table ?? "");
      return [{ exp_labels: { ...rule.labels, ...JOB, ...c.labels }, exp_annotations: { summary: fill(rule.annotations.summary), description: fill(rule.annotations.description) } }];
    };
    const group = (c: Scenario, checks: { at: number; fires: boolean }[]) => ({
      interval: `${STEP}s`,
      input_series: Object.entries(c.series).map(([series, values]) => ({ series, values })),
      alert_rule_test: checks.map((check) => ({ eval_time: `${check.at}s`, alertname: rule.alert, exp_alerts: check.fires ? expected(c) : [] })),
    });
    tests.push(group(cases.past, [{ at: settle + forSeconds + 2 * STEP, fires: true }, ...(forSeconds >= 2 * STEP ? [{ at: forSeconds - STEP, fires: false }] : [])]));
    tests.push(group(cases.at, [{ at: settle + forSeconds + 2 * STEP, fires: false }]));
    for (const c of cases.also ?? []) tests.push(group(c, [{ at: settle + forSeconds + 2 * STEP, fires: c.value !== undefined }]));
  }
  return stringify({ rule_files: [path.basename(rulesFile)], evaluation_interval: `${STEP}s`, tests }, { lineWidth: 0 });
}

async function promtool(args: string[]): Promise<{ code: number; out: string }> {
  try {
    const { stdout, stderr } = await run("promtool", args, { cwd: dir, timeout: 60_000 });
    return { code: 0, out: stdout + stderr };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === "number" ? e.code : -1, out: `${e.stdout ?? ""}${e.stderr ?? ""}` };
  }
}

const defaults = parseSpec("dev", {});
const custom = parseSpec("staging", {
  alerts: { connectionPoolPercent: 50, queryTimeSeconds: 2.5, deadTuplePercent: 20, redisMemoryPercent: 75, redisHitRatePercent: 90, redisEvictionsPerSecond: 10 },
  monitor: { rateWindowSeconds: 120, alertFor: { connectionPool: 60, queryTime: 0, deadTuples: 30, redisMemory: 45, redisHitRate: 90, redisEvictions: 15 }, severity: { connectionPool: "info", redisEvictions: "critical" } },
});

describe("monitor --rules", () => {
  for (const [label, spec] of [["the guide's defaults", defaults], ["other thresholds, windows, for: and severities", custom]] as const) {
    it(`promtool accepts the rules, and each fires past its threshold after its for:, not at it (${label})`, async () => {
      const rulesFile = path.join(dir, `${spec.env}.rules.yml`);
      writeFileSync(rulesFile, alertingRulesYaml(spec));
      const check = await promtool(["check", "rules", rulesFile]);
      expect(check.out).toContain("SUCCESS: 6 rules found");
      expect(check.code).toBe(0);
      const testFile = path.join(dir, `${spec.env}.test.yml`);
      writeFileSync(testFile, unitTests(spec, rulesFile));
      const tested = await promtool(["test", "rules", testFile]);
      expect(tested.out).toContain("SUCCESS");
      expect(tested.code, tested.out).toBe(0);
    });
  }

  it("a broken threshold makes promtool's test fail (the tests can fail)", async () => {
    const rulesFile = path.join(dir, "broken.rules.yml");
    // Rules of a spec whose threshold is off by one, checked against the scenarios of the defaults.
    const off = parseSpec("dev", { alerts: { redisEvictionsPerSecond: 101 } });
    writeFileSync(rulesFile, alertingRulesYaml(off));
    const testFile = path.join(dir, "broken.test.yml");
    writeFileSync(testFile, unitTests(defaults, rulesFile));
    const tested = await promtool(["test", "rules", testFile]);
    expect(tested.code).not.toBe(0);
    expect(tested.out).toContain("CpiRedisEvictionsHigh");
  });

  it("prints YAML by default and JSON with --json, with the spec's for: and severity", async () => {
    const yaml = await runCli("monitor", ["--env", "dev", "--rules"]);
    expect(yaml.code, yaml.stderr).toBe(0);
    expect(yaml.stdout).toContain("alert: CpiRedisEvictionsHigh");
    expect(yaml.stdout).toContain('rate(cpi_redis_evicted_keys_total{env="dev"}[300s]) > 100');
    const json = await runCli("monitor", ["--env", "dev", "--rules", "--json"]);
    const pool = json.json.groups[0].rules.find((r: { alert: string }) => r.alert === "CpiPostgresConnectionPoolHigh");
    expect(pool).toMatchObject({ for: "300s", labels: { severity: "critical", env: "dev" } });
    const both = await runCli("monitor", ["--env", "dev", "--rules", "--serve", "0"]);
    expect(both.code).toBe(64);
    expect(both.stderr).toContain("--serve and --rules do not go together");
  });
});
