/**
 * Test environments: each test file gets its own ephemeral embedded environment (free ports,
 * temp state), so files run in parallel without sharing servers, and nothing is left behind.
 */
import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll } from "vitest";
import { EmbeddedEnvironment, type StartedEmbeddedEnvironment } from "../../lib/engines/embedded/environment.js";
import { PROJECT_DIR } from "../../lib/spec/load.js";

/** Starts an ephemeral copy of a stack's spec (default dev) for the file; destroys it afterwards. */
export function useEphemeralEnvironment(baseEnv = "dev"): () => StartedEmbeddedEnvironment {
  let started: StartedEmbeddedEnvironment | undefined;
  beforeAll(async () => {
    started = await new EmbeddedEnvironment(baseEnv).withEphemeral().start();
  });
  afterAll(async () => {
    await started?.destroy();
  });
  return () => {
    if (!started) throw new Error("the ephemeral environment did not start");
    return started;
  };
}

const run = promisify(execFile);
/** The launcher npm's scripts use (bin/cpi.mjs): tests run commands exactly as users do. */
const LAUNCHER = path.join(PROJECT_DIR, "bin", "cpi.mjs");

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout parsed as JSON, when it is. */
  json: any;
}

/** Runs a command as a user would (`npm run NAME -- args` ≡ `node bin/cpi.mjs NAME args`). */
export async function runCli(name: string, args: string[], options: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<CliRun> {
  try {
    const { stdout, stderr } = await run(process.execPath, [LAUNCHER, name, ...args], {
      cwd: PROJECT_DIR,
      env: { ...process.env, ...options.env },
      timeout: options.timeoutMs ?? 120_000,
      maxBuffer: 64 * 1024 * 1024,
    });
    return { code: 0, stdout, stderr, json: parseJson(stdout) };
  } catch (error) {
    const e = error as { code?: number; stdout?: string; stderr?: string };
    if (typeof e.code !== "number") throw error;
    return { code: e.code, stdout: e.stdout ?? "", stderr: e.stderr ?? "", json: parseJson(e.stdout ?? "") };
  }
}

function parseJson(text: string): any {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
