/**
 * The `cpi` executable (package.json `bin`): it finds the project from its own location, so it
 * runs from any folder, through a symlink, through `npm link` and `npx cpi`.
 */
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, utimesSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { PROJECT_DIR } from "../../lib/spec/load.js";
import { makeSandbox } from "../support/commands.js";

const run = promisify(execFile);
const elsewhere = mkdtempSync(path.join(os.tmpdir(), "cpi-bin-"));
afterAll(() => rmSync(elsewhere, { recursive: true, force: true }));
const BIN = path.join(PROJECT_DIR, "bin", "cpi.mjs");
const exec = async (file: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}) => {
  try {
    const { stdout, stderr } = await run(file, args, { cwd: options.cwd ?? elsewhere, env: { ...process.env, ...options.env }, timeout: 120_000 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
};

describe("cpi (package.json bin)", () => {
  it("is declared and executable, lists its commands, and refuses an unknown one (64)", async () => {
    expect(JSON.parse(readFileSync(path.join(PROJECT_DIR, "package.json"), "utf8")).bin).toEqual({ cpi: "bin/cpi.mjs" });
    expect(statSync(BIN).mode & 0o111).toBe(0o111);
    const help = await exec(BIN, ["--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/Commands: .*compose.*monitor/);
    const unknown = await exec(BIN, ["nope"]);
    expect(unknown.code).toBe(64);
    expect(unknown.stderr).toContain('unknown command "nope"');
  });

  it("runs a command from another folder, and through a symlink as npm link makes; --out is relative to where it ran", async () => {
    const direct = await exec(BIN, ["compose", "--env", "dev", "--out", "made-here", "--json"]);
    expect(direct.code, direct.stderr).toBe(0);
    expect(JSON.parse(direct.stdout).composeFile).toBe(path.join(elsewhere, "made-here", "compose.yaml"));
    const link = path.join(elsewhere, "cpi");
    symlinkSync(BIN, link);
    const linked = await exec(link, ["compose", "--env", "dev", "--check", "--out", "made-here"]);
    expect(linked.stdout).toContain("matches the spec of dev");
    expect(linked.code).toBe(0);
  });

  it("works after a real `npm link` (into a throw-away prefix) and as `npx cpi` in the project", async () => {
    const prefix = path.join(elsewhere, "prefix");
    const npm = await exec("npm", ["link", "--offline", "--ignore-scripts", "--no-audit", "--no-fund"], { cwd: PROJECT_DIR, env: { npm_config_prefix: prefix } });
    expect(npm.code, npm.stderr).toBe(0);
    const linked = await exec(path.join(prefix, "bin", "cpi"), ["monitor", "--help"]);
    expect(linked.code).toBe(0);
    expect(linked.stdout).toContain("Usage: npm run monitor");
    const npx = await exec("npx", ["--no-install", "cpi", "compose", "--help"], { cwd: PROJECT_DIR });
    expect(npx.code, npx.stderr).toBe(0);
    expect(npx.stdout).toContain("Docker Compose project");
  });

  it("runs what the build made: npm run build bundles every command, a missing bundle is built on the first run, and a newer source alone rebuilds nothing", async () => {
    const sandbox = makeSandbox();
    try {
      const bundle = (name: string) => path.join(sandbox.projectDir, ".build", "commands", name, `${name}.mjs`);
      const first = await exec(path.join(sandbox.projectDir, "bin", "cpi.mjs"), ["docs", "--help"], { cwd: sandbox.projectDir });
      expect(first.code, first.stderr).toBe(0);
      expect(first.stdout).toContain("Usage: npm run docs");
      expect(existsSync(bundle("docs"))).toBe(true);
      expect(existsSync(bundle("verify"))).toBe(false);

      const built = await exec("npm", ["run", "-s", "build"], { cwd: sandbox.projectDir });
      expect(built.code, built.stderr).toBe(0);
      const commands = readdirSync(path.join(sandbox.projectDir, "scripts")).filter((f) => f.endsWith(".ts")).map((f) => f.slice(0, -3));
      expect(commands.filter((name) => !existsSync(bundle(name)))).toEqual([]);
      expect(built.stderr).toMatch(new RegExp(`build: ${commands.length} command\\(s\\)`));

      // The launcher does not walk the sources: a touched file is picked up by the next build, not by a run.
      const before = statSync(bundle("docs")).mtimeMs;
      const later = new Date(Date.now() + 60_000);
      utimesSync(path.join(sandbox.projectDir, "lib", "cli.ts"), later, later);
      expect((await exec(path.join(sandbox.projectDir, "bin", "cpi.mjs"), ["docs", "--help"], { cwd: sandbox.projectDir })).code).toBe(0);
      expect(statSync(bundle("docs")).mtimeMs).toBe(before);

      const unknown = await exec(process.execPath, [path.join(sandbox.projectDir, "bin", "build.mjs"), "nope"], { cwd: sandbox.projectDir });
      expect(unknown.code).toBe(64);
      expect(unknown.stderr).toContain('unknown command "nope"');
    } finally {
      sandbox.remove();
    }
  });
});
