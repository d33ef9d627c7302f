/**
 * The Prometheus exporter on real servers and with Prometheus's own tools: `promtool check
 * metrics` on a real scrape; the endpoint listens on 127.0.0.1 only (from the listening sockets)
 * and ends on SIGTERM; an unreachable or silent server is `cpi_*_up 0` within the scrape bound;
 * and end to end, a real `prometheus` scraping the exporter of this file's environment fires
 * CpiRedisEvictionsHigh once the test makes Redis evict, and not before.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, chmodSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { backupRoot } from "../../lib/backup/backup.js";
import { backupId } from "../../lib/backup/files.js";
import { MANIFEST_FILE, MANIFEST_KIND, manifestText, sealManifest, type ManifestBody } from "../../lib/backup/manifest.js";
import { withRedis } from "../../lib/db/clients.js";
import { freePort } from "../../lib/state/ports.js";
import { resolveEnvironment } from "../../lib/env/resolve.js";
import { scrapeMetrics } from "../../lib/monitor/exporter.js";
import { alertingRulesYaml } from "../../lib/monitor/rules.js";
import { isLoopbackHost, parseListenAddress } from "../../lib/monitor/server.js";
import { PROJECT_DIR } from "../../lib/spec/load.js";
import type { Spec } from "../../lib/spec/schema.js";
import { runCli, useEphemeralEnvironment } from "../support/embedded.js";
import { listeningAddressesOf } from "../support/listening.js";

const env = useEphemeralEnvironment();
const work = mkdtempSync(path.join(os.tmpdir(), "cpi-exporter-"));
chmodSync(work, 0o755);
const children: ChildProcess[] = [];
afterAll(async () => {
  for (const child of children) await stop(child);
  rmSync(work, { recursive: true, force: true });
});

/** Starts `monitor --serve 127.0.0.1:0` as a user does; resolves with the URL it prints (bounded). */
async function startExporter(envName: string): Promise<{ child: ChildProcess; url: string; stderr: () => string }> {
  const child = spawn(process.execPath, [path.join(PROJECT_DIR, "bin", "cpi.mjs"), "monitor", "--env", envName, "--serve", "127.0.0.1:0"], { cwd: PROJECT_DIR, stdio: ["ignore", "pipe", "pipe"] });
  children.push(child);
  let stderr = "";
  child.stderr!.on("data", (d) => (stderr += d));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the exporter printed no address within 60 s: ${stderr}`)), 60_000);
    child.stderr!.on("data", () => {
      const found = /on (http:\/\/\S+\/metrics)/.exec(stderr)?.[1];
      if (found) {
        clearTimeout(timer);
        resolve(found);
      }
    });
    child.once("exit", (code) => reject(new Error(`the exporter exited (${code}): ${stderr}`)));
  });
  return { child, url, stderr: () => stderr };
}

/** SIGTERM, then SIGKILL after 10 s; resolves with the exit code. */
function stop(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => {
    const kill = setTimeout(() => child.kill("SIGKILL"), 10_000);
    child.once("exit", (code) => {
      clearTimeout(kill);
      resolve(code);
    });
    child.kill("SIGTERM");
  });
}


const promtool = promisify(execFile);

describe("monitor --serve (Prometheus exporter)", () => {
  it("serves a scrape promtool accepts, on 127.0.0.1 only, with the spec's values; SIGTERM ends it (exit 0)", async () => {
    const exporter = await startExporter(env().env);
    const port = Number(new URL(exporter.url).port);
    expect(listeningAddressesOf(exporter.child.pid!)).toEqual([`127.0.0.1:${port}`]);
    const response = await fetch(exporter.url, { signal: AbortSignal.timeout(10_000) });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toContain("text/plain; version=0.0.4");
    const text = await response.text();
    const file = path.join(work, "scrape.txt");
    writeFileSync(file, text);
    // promtool reads the scrape on stdin and lints names, types, units and HELP.
    const check = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn("promtool", ["check", "metrics"], { stdio: ["pipe", "pipe", "pipe"] });
      let out = "";
      child.stdout.on("data", (d) => (out += d));
      child.stderr.on("data", (d) => (out += d));
      child.on("close", (code) => resolve({ code, out }));
      child.stdin.end(text);
    });
    expect(check.out).toBe("");
    expect(check.code).toBe(0);
    const e = `env="${env().env}"`;
    expect(text).toContain(`cpi_postgres_up{${e}} 1`);
    expect(text).toContain(`cpi_redis_up{${e}} 1`);
    expect(text).toContain(`cpi_postgres_max_connections{${e}} ${env().spec.postgres.maxConnections}`);
    expect(text).toMatch(new RegExp(`cpi_redis_memory_max_bytes\\{${e}\\} 268435456\\b`));
    expect(text).toContain(`cpi_postgres_table_dead_tuples{table="public.market_data",${e}}`);
    // The archiver's counters are there whether archiving is on or not; no backup yet: a count of 0 and no age.
    expect(text).toContain(`cpi_postgres_wal_archived_total{${e}} 0`);
    expect(text).toContain(`cpi_postgres_wal_archive_failed_total{${e}} 0`);
    expect(text).toContain(`cpi_backups{kind="logical",${e}} 0`);
    expect(text).not.toContain("cpi_backup_newest_age_seconds{");
    // Every family is ours, every counter ends in _total, units are base units.
    const families = [...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => ({ name: m[1]!, type: m[2]! }));
    expect(families.length).toBeGreaterThan(30);
    for (const f of families) {
      expect(f.name).toMatch(/^cpi_[a-z_]+$/);
      expect(f.name.endsWith("_total")).toBe(f.type === "counter");
      expect(f.name).not.toMatch(/_(ms|milliseconds|kb|mb|percent)(_|$)/);
    }
    expect(await (await fetch(exporter.url.replace("/metrics", "/nope"))).status).toBe(404);
    expect(await stop(exporter.child)).toBe(0);
  });

  it("an unreachable server is `up 0` in a normal answer; a silent one too, within the scrape bound", async () => {
    const [closedPg, closedRedis] = [await freePort(), await freePort()];
    const down = await scrapeMetrics(resolveEnvironment({ env: "dev", databaseUrl: `postgresql://postgres@127.0.0.1:${closedPg}/x`, redisUrl: `redis://127.0.0.1:${closedRedis}/0` }));
    expect(down.up).toEqual({ postgres: false, redis: false });
    expect(down.text).toContain('cpi_postgres_up{env="dev"} 0');
    expect(down.text).toContain('cpi_redis_up{env="dev"} 0');
    expect(down.text).not.toContain("cpi_postgres_max_connections");
    expect(down.errors.join(" ")).toMatch(/ECONNREFUSED/);

    // Servers that accept connections and never answer.
    const sockets: Socket[] = [];
    const silent = (): Promise<{ server: Server; port: number }> =>
      new Promise((resolve) => {
        const server = createServer((socket) => sockets.push(socket));
        server.listen(0, "127.0.0.1", () => resolve({ server, port: (server.address() as { port: number }).port }));
      });
    const [pgSilent, redisSilent] = [await silent(), await silent()];
    try {
      const started = performance.now();
      const hung = await scrapeMetrics(resolveEnvironment({ env: "dev", databaseUrl: `postgresql://postgres@127.0.0.1:${pgSilent.port}/x`, redisUrl: `redis://127.0.0.1:${redisSilent.port}/0` }), undefined, { timeoutSeconds: 1 });
      const seconds = (performance.now() - started) / 1000;
      expect(hung.up).toEqual({ postgres: false, redis: false });
      expect(seconds).toBeLessThan(3);
      expect(hung.errors.join(" ")).toMatch(/did not answer within 1 s|timeout/i);
    } finally {
      for (const s of sockets) s.destroy();
      pgSilent.server.close();
      redisSilent.server.close();
    }
  });

  it("exports the age and size of the newest full backup from the backup listing (a single-table one does not count)", async () => {
    const root = backupRoot(env().spec, env().env);
    const now = new Date("2026-12-01T12:00:00Z");
    const backup = (startedAt: Date, scope: "full" | "table", bytes: number) => {
      const id = backupId(startedAt) + (scope === "table" ? "-table-market_data" : "");
      const dir = path.join(root, id);
      mkdirSync(dir, { recursive: true });
      const body: ManifestBody = { kind: MANIFEST_KIND, version: 1, id, env: env().env, engine: "embedded", scope, startedAt: startedAt.toISOString(), completedAt: startedAt.toISOString(), seconds: 1, specHash: "x", toolkit: "test", files: [{ name: "postgres.sql.gz", bytes, sha256: "0".repeat(64) }] };
      writeFileSync(path.join(dir, MANIFEST_FILE), manifestText(sealManifest(body)), { mode: 0o600 });
    };
    try {
      backup(new Date(now.getTime() - 86_400_000), "full", 1000);
      backup(new Date(now.getTime() - 3_600_000), "full", 2048);
      backup(new Date(now.getTime() - 60_000), "table", 10);
      const scrape = await scrapeMetrics(resolveEnvironment({ env: env().env }), undefined, { now: () => now });
      const e = `env="${env().env}"`;
      expect(scrape.text).toContain(`cpi_backups{kind="logical",${e}} 2`);
      expect(scrape.text).toContain(`cpi_backup_newest_age_seconds{kind="logical",${e}} 3600`);
      expect(scrape.text).toContain(`cpi_backup_newest_size_bytes{kind="logical",${e}} 2048`);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it("refuses a non-loopback address unless --allow-non-loopback says so (64); a bad value names what is allowed", async () => {
    const refused = await runCli("monitor", ["--env", env().env, "--serve", "0.0.0.0:9187"]);
    expect(refused.code).toBe(64);
    expect(refused.stderr).toContain("0.0.0.0 is not a loopback address");
    expect(refused.stderr).toContain("--allow-non-loopback");
    const bad = await runCli("monitor", ["--env", env().env, "--serve", "127.0.0.1:99999"]);
    expect(bad.code).toBe(64);
    expect(bad.stderr).toContain("port 99999 is not 0-65535");
    expect(parseListenAddress("0.0.0.0:9187", 9187, { allowNonLoopback: true })).toEqual({ host: "0.0.0.0", port: 9187 });
    expect(parseListenAddress("9100", 9187)).toEqual({ host: "127.0.0.1", port: 9100 });
    expect(parseListenAddress("localhost", 9187)).toEqual({ host: "localhost", port: 9187 });
    expect(parseListenAddress("[::1]:9200", 9187)).toEqual({ host: "::1", port: 9200 });
    expect(isLoopbackHost("127.8.9.10")).toBe(true);
    expect(isLoopbackHost("10.0.0.1")).toBe(false);
    expect(isLoopbackHost("::")).toBe(false);
  });

  it("end to end: a real prometheus scrapes the exporter and fires CpiRedisEvictionsHigh once Redis evicts", async () => {
    const exporter = await startExporter(env().env);
    const promPort = await freePort();
    const dir = mkdtempSync(path.join(work, "prometheus-"));
    // The environment's rules with a short window and no `for:`, so the test need not wait minutes.
    const spec: Spec = { ...env().spec, monitor: { ...env().spec.monitor, rateWindowSeconds: 5, alertFor: { connectionPool: 0, queryTime: 0, deadTuples: 0, redisMemory: 0, redisHitRate: 0, redisEvictions: 1 } } };
    writeFileSync(path.join(dir, "rules.yml"), alertingRulesYaml(spec));
    await promtool("promtool", ["check", "rules", path.join(dir, "rules.yml")]);
    writeFileSync(
      path.join(dir, "prometheus.yml"),
      [
        "global: { scrape_interval: 1s, evaluation_interval: 1s, scrape_timeout: 1s }",
        "rule_files: [rules.yml]",
        "scrape_configs:",
        `  - job_name: cpi`,
        `    static_configs: [{ targets: ["${new URL(exporter.url).host}"] }]`,
        "",
      ].join("\n"),
    );
    const prometheus = spawn("prometheus", [`--config.file=${path.join(dir, "prometheus.yml")}`, `--storage.tsdb.path=${path.join(dir, "data")}`, `--web.listen-address=127.0.0.1:${promPort}`, "--log.level=warn"], { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
    children.push(prometheus);
    let promLog = "";
    prometheus.stderr!.on("data", (d) => (promLog += d));
    const api = async (p: string) => (await (await fetch(`http://127.0.0.1:${promPort}${p}`, { signal: AbortSignal.timeout(5_000) })).json()) as { data: any };
    const until = async <T>(what: string, seconds: number, probe: () => Promise<T | undefined>): Promise<T> => {
      const deadline = Date.now() + seconds * 1000;
      for (;;) {
        const value = await probe().catch(() => undefined);
        if (value !== undefined) return value;
        if (Date.now() > deadline || prometheus.exitCode !== null) throw new Error(`${what} not seen within ${seconds} s; prometheus: ${promLog.slice(-2000)}`);
        await new Promise((r) => setTimeout(r, 500));
      }
    };
    const evictionAlert = async () => ((await api("/api/v1/alerts")).data.alerts as { labels: { alertname: string }; state: string }[]).find((a) => a.labels.alertname === "CpiRedisEvictionsHigh");
    try {
      await until("prometheus ready", 60, async () => ((await fetch(`http://127.0.0.1:${promPort}/-/ready`)).ok ? true : undefined));
      // Scraped, both servers up, and the rule loaded but quiet.
      await until("cpi_redis_up 1 in prometheus", 30, async () => ((await api("/api/v1/query?query=cpi_redis_up")).data.result[0]?.value[1] === "1" ? true : undefined));
      await until("the eviction rule evaluated", 30, async () => ((await api("/api/v1/rules")).data.groups[0]?.rules.find((r: { name: string; health: string }) => r.name === "CpiRedisEvictionsHigh")?.health === "ok" ? true : undefined));
      await new Promise((r) => setTimeout(r, 3_000));
      expect(await evictionAlert()).toBeUndefined();

      const c = env().connections;
      await withRedis(c.redisOptions("admin"), (r) => r.config("SET", "maxmemory", "4mb"));
      let filling = true;
      const value = "x".repeat(2048);
      const filler = withRedis(c.redisOptions("app"), async (redis) => {
        let i = 0;
        const deadline = Date.now() + 90_000;
        while (filling && Date.now() < deadline) {
          const batch = redis.pipeline();
          for (let j = 0; j < 200; j++, i++) batch.set(`test:fill:${i}:value`, value, "EX", 300);
          await batch.exec();
        }
        return i;
      });
      try {
        const alert = await until("CpiRedisEvictionsHigh firing", 60, async () => {
          const a = await evictionAlert();
          return a?.state === "firing" ? a : undefined;
        });
        expect(alert).toMatchObject({ labels: { alertname: "CpiRedisEvictionsHigh", severity: spec.monitor.severity.redisEvictions, env: env().env, job: "cpi" } });
        const rate = Number((await api(`/api/v1/query?query=${encodeURIComponent("rate(cpi_redis_evicted_keys_total[5s])")}`)).data.result[0]?.value[1]);
        expect(rate).toBeGreaterThan(spec.alerts.redisEvictionsPerSecond);
      } finally {
        filling = false;
        expect(await filler).toBeGreaterThan(1000);
        await withRedis(c.redisOptions("admin"), async (r) => {
          await r.config("SET", "maxmemory", "256mb");
          await r.flushdb();
        });
      }
    } finally {
      expect(await stop(prometheus)).not.toBeUndefined();
      expect(await stop(exporter.child)).toBe(0);
    }
  }, 240_000);
});
