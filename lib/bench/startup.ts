/**
 * Item 1, startup: `up` cold (fresh state: initdb, migrations) and warm (initialised, servers
 * stopped), as the user runs it (`tsx scripts/up.ts`, process start included) and in-process (the
 * JSON's `seconds`), so the cost of starting a command shows; `env:ci --engine embedded` to its
 * printed variables; and the same two servers as Docker containers from local images, when an
 * engine answers.
 */
import { downEmbedded } from "../engines/embedded/environment.js";
import { removeCiEnvironment } from "../ci-env/environment.js";
import { probeEngine } from "../engines/docker/engine.js";
import { loadSpec } from "../spec/load.js";
import type { BenchContext, BenchItem } from "./harness.js";
import { failureText, type TimedRun } from "./process.js";
import { atMost, measuredRow, skippedRow, type Row } from "./results.js";

export const startupItem: BenchItem = {
  name: "startup",
  title: "1. Startup",
  async run(ctx) {
    // Compile-cache warm-up (tsx caches under this run's $TMPDIR): a user's second run, not a measurement.
    await ctx.warmUp("up");
    await ctx.warmUp("env-ci");
    return [...(await measureUp(ctx)), ...(await measureCiEmbedded(ctx)), ...(await measureDocker(ctx))];
  },
};

async function measureUp(ctx: BenchContext): Promise<Row[]> {
  const cold = { command: [] as number[], inProcess: [] as number[] };
  const warm = { command: [] as number[], inProcess: [] as number[] };
  const exitCodes = new Set<number>();
  for (let i = 1; i <= ctx.plan.repetitions; i++) {
    ctx.progress(`up: cold start ${i}/${ctx.plan.repetitions}`);
    const first = await ctx.children.script("up", ["--ephemeral", "--json"]);
    const id = upEnvId(first, "up --ephemeral");
    const destroy = ctx.defer(`destroy ${id}`, () => downEmbedded(id, { destroy: true }));
    if (first.json.initialised !== true) throw new Error(`up --ephemeral reused an initialised cluster (${id}): not a cold start`);
    exitCodes.add(first.code);
    cold.command.push(first.seconds);
    cold.inProcess.push(Number(first.json.seconds));

    await downEmbedded(id, { destroy: false });
    ctx.progress(`up: warm start ${i}/${ctx.plan.repetitions}`);
    const second = await ctx.children.script("up", ["--env", id, "--json"]);
    upEnvId(second, `up --env ${id}`);
    if (second.json.initialised !== false || second.json.alreadyUp !== false) throw new Error(`up --env ${id}: expected an initialised environment with its servers stopped`);
    exitCodes.add(second.code);
    warm.command.push(second.seconds);
    warm.inProcess.push(Number(second.json.seconds));
    await destroy();
  }
  const details = exitCodes.has(1) ? { note: "up exited 1 (a setting differs from the spec) in some runs" } : undefined;
  return [
    measuredRow({ id: "up.cold.command", label: "up, cold (initdb + migrations): command wall time", unit: "s", samples: cold.command, target: atMost(3, "s"), details }),
    measuredRow({ id: "up.cold.in-process", label: "up, cold: in-process (the JSON's seconds)", unit: "s", samples: cold.inProcess, target: atMost(3, "s") }),
    measuredRow({ id: "up.warm.command", label: "up, warm (initialised, servers stopped): command wall time", unit: "s", samples: warm.command, target: atMost(1, "s") }),
    measuredRow({ id: "up.warm.in-process", label: "up, warm: in-process (the JSON's seconds)", unit: "s", samples: warm.inProcess, target: atMost(1, "s") }),
    measuredRow({
      id: "up.command-overhead",
      label: "command start-up overhead (warm up: wall − in-process)",
      unit: "s",
      samples: warm.command.map((wall, i) => wall - warm.inProcess[i]!),
    }),
  ];
}

/** The environment id of an `up --json` run, or an error naming the failure. */
function upEnvId(run: TimedRun, what: string): string {
  const id = run.json?.env;
  if ((run.code !== 0 && run.code !== 1) || typeof id !== "string") throw new Error(`${what}: ${failureText(run)}`);
  return id;
}

async function measureCiEmbedded(ctx: BenchContext): Promise<Row[]> {
  const command: number[] = [];
  const inProcess: number[] = [];
  for (let i = 1; i <= ctx.plan.repetitions; i++) {
    ctx.progress(`env:ci --engine embedded ${i}/${ctx.plan.repetitions}`);
    const run = await ctx.children.script("env-ci", ["--engine", "embedded", "--json"]);
    const id = run.json?.CPI_ENV_ID;
    if (run.code !== 0 || typeof id !== "string" || !run.json?.DATABASE_URL) throw new Error(`env:ci --engine embedded: ${failureText(run)}`);
    const remove = ctx.defer(`remove ${id}`, () => removeCiEnvironment(id, () => undefined));
    command.push(run.seconds);
    inProcess.push(Number(run.json.seconds));
    await remove();
  }
  return [
    measuredRow({
      id: "env-ci.embedded.command",
      label: "env:ci --engine embedded: command to printed variables",
      unit: "s",
      samples: command,
      target: atMost(3, "s"),
      details: { inProcessSeconds: inProcess },
    }),
  ];
}

async function measureDocker(ctx: BenchContext): Promise<Row[]> {
  const rows = {
    healthy: { id: "docker.healthy", label: "Docker containers (local images) to healthy, in-process", unit: "s" as const, target: atMost(5, "s") },
    migrated: { id: "docker.migrated", label: "Docker containers to healthy + migrated, in-process", unit: "s" as const },
    command: { id: "env-ci.docker.command", label: "env:ci --engine docker: command to printed variables", unit: "s" as const },
  };
  const engine = probeEngine();
  const images = loadSpec("ci").images;
  let reason: string | undefined;
  if (!engine.answering || !engine.binary) reason = `no Docker engine (${engine.problem})`;
  else {
    const { inspectImage } = await import("../engines/docker/images.js");
    const missing = [];
    for (const image of [images.postgres, images.redis]) if (!(await inspectImage(engine.binary, image))) missing.push(image);
    if (missing.length) reason = `image ${missing.join(", ")} not built (npm run images)`;
  }
  if (reason) return Object.values(rows).map((r) => skippedRow({ ...r, reason }));

  const { DockerEnvironment, removeDockerEnvironment } = await import("../engines/docker/environment.js");
  const healthy: number[] = [];
  const migrated: number[] = [];
  const command: number[] = [];
  for (let i = 1; i <= ctx.plan.repetitions; i++) {
    ctx.progress(`Docker environment ${i}/${ctx.plan.repetitions} (in-process)`);
    const started = performance.now();
    let healthyAt: number | undefined;
    const env = await new DockerEnvironment("ci")
      .withLog((message) => {
        if (/\bhealthy in\b/.test(message)) healthyAt ??= performance.now();
      })
      .start();
    const done = performance.now();
    const remove = ctx.defer(`remove ${env.env}`, () => removeDockerEnvironment(env.env, () => undefined));
    migrated.push((done - started) / 1000);
    if (healthyAt !== undefined) healthy.push((healthyAt - started) / 1000);
    await remove();

    if (ctx.plan.mode === "quick") continue; // the in-process start covers the code path
    ctx.progress(`env:ci --engine docker ${i}/${ctx.plan.repetitions}`);
    const run = await ctx.children.script("env-ci", ["--engine", "docker", "--json"]);
    const id = run.json?.CPI_ENV_ID;
    // A failed run removes what it made; the sweep at the end catches anything else.
    if (run.code !== 0 || typeof id !== "string") throw new Error(`env:ci --engine docker: ${failureText(run)}`);
    const removeCi = ctx.defer(`remove ${id}`, () => removeCiEnvironment(id, () => undefined));
    command.push(run.seconds);
    await removeCi();
  }
  return [
    healthy.length ? measuredRow({ ...rows.healthy, samples: healthy }) : skippedRow({ ...rows.healthy, reason: "DockerEnvironment no longer logs when its containers are healthy", status: "error" }),
    measuredRow({ ...rows.migrated, samples: migrated }),
    command.length ? measuredRow({ ...rows.command, samples: command }) : skippedRow({ ...rows.command, reason: "not in --quick" }),
  ];
}
