/** What the figures were measured on: hardware, load, and the versions of everything timed. */
import os from "node:os";
import path from "node:path";
import { probeEngine } from "../engines/docker/engine.js";
import { embeddedPgBinDir } from "../engines/embedded/postgres-server.js";
import { commandLine } from "./process.js";
import type { Machine } from "./results.js";
import { run } from "../process.js";


export function loadAverage(): number[] {
  return os.loadavg().map((l) => Math.round(l * 100) / 100);
}

/** The machine as it is now; `end` load and `pgTools` are filled in when the run ends. */
export async function describeMachine(): Promise<Machine> {
  const cpus = os.cpus();
  const docker = probeEngine(10_000);
  const load = loadAverage();
  return {
    os: `${os.type()} ${os.release()} (${os.arch()})`,
    cpuModel: cpus[0]?.model.trim() ?? "unknown",
    cores: cpus.length || 1,
    memoryBytes: os.totalmem(),
    loadAverage: { start: load, end: load },
    node: process.version,
    postgres: await versionOf(path.join(embeddedPgBinDir(), "postgres"), /PostgreSQL\)?\s*([\d.]+)/),
    redis: await versionOf("redis-server", /v=([\d.]+)/),
    docker: docker.answering ? (docker.serverVersion ?? "unknown") : null,
    pgTools: null,
    launcher: commandLine("NAME").text,
  };
}

async function versionOf(binary: string, pattern: RegExp): Promise<string | null> {
  try {
    const { stdout } = await run(binary, ["--version"], { timeout: 10_000 });
    return pattern.exec(stdout)?.[1] ?? stdout.trim();
  } catch {
    return null;
  }
}
