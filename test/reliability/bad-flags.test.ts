/**
 * Bad input, part 3: flags and arguments. Every command in package.json's scripts is run as an
 * operator types it (`npm run -s NAME -- --bogus-flag`): exit 64, one message naming the flag and
 * pointing at --help, nothing on stdout, and nothing created (the runs get an empty
 * $CPI_STATE_DIR that must stay absent). Then the other usage mistakes: flags without values,
 * repeated flags, stray arguments, unknown actions, and --destroy without --yes.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EXIT } from "../../lib/errors.js";
import { PROJECT_DIR } from "../../lib/spec/load.js";
import { makeSandbox, runNpmScript, runScript, snapshot, type Sandbox } from "../support/commands.js";

const scripts: Record<string, string> = JSON.parse(readFileSync(path.join(PROJECT_DIR, "package.json"), "utf8")).scripts;

/** Scripts that run third-party tools with their own flag rules, not toolkit commands. */
const NOT_TOOLKIT_COMMANDS: Record<string, string> = {
  typecheck: "tsc's own flags",
  test: "tsc and vitest's own flags",
  build: "the build (bin/build.mjs): command names, no flags",
  prepare: "npm's install hook: the build",
};

/** The toolkit command a script runs: `node bin/cpi.mjs NAME` (or `tsx scripts/NAME.ts`). */
const TOOLKIT_COMMAND = /^(?:node bin\/cpi\.mjs ([a-z-]+)|tsx scripts\/([a-z-]+)\.ts)$/;
const commandOf = (script: string) => {
  const match = TOOLKIT_COMMAND.exec(scripts[script] ?? "");
  return match?.[1] ?? match?.[2];
};

const commands = Object.entries(scripts).filter(([name]) => !(name in NOT_TOOLKIT_COMMANDS));

let sandbox: Sandbox;
beforeAll(() => {
  sandbox = makeSandbox();
});
afterAll(() => sandbox?.remove());

describe("package.json scripts", () => {
  it("are all toolkit commands (node bin/cpi.mjs NAME → scripts/NAME.ts) except the listed third-party ones", () => {
    for (const [name, command] of commands) {
      expect(command, `script ${name}`).toMatch(TOOLKIT_COMMAND);
      expect(existsSync(path.join(PROJECT_DIR, "scripts", `${commandOf(name)}.ts`)), `script ${name}: scripts/${commandOf(name)}.ts`).toBe(true);
    }
    for (const name of Object.keys(NOT_TOOLKIT_COMMANDS)) expect(scripts[name], `script ${name}`).toBeDefined();
    expect(commands.length).toBeGreaterThanOrEqual(4);
  });
});

describe.concurrent("every command refuses an unknown flag: exit 64, the flag named, nothing changed", () => {
  it.each(commands.map(([name]) => [name]))("npm run %s -- --bogus-flag", async (name) => {
    const result = await runNpmScript(name, ["--bogus-flag"], { env: sandbox.env, timeoutMs: 60_000 });
    expect(result.code, result.stderr).toBe(EXIT.USAGE);
    expect(result.stderr).toContain(`${name}: error: unknown option --bogus-flag`);
    expect(result.stderr).toContain(`npm run ${name} -- --help`);
    expect(result.stdout).toBe("");
    expect(existsSync(sandbox.stateDir), "state was created").toBe(false);
  });
});

describe.concurrent("other usage mistakes: exit 64, one message, nothing changed", () => {
  const cases: { title: string; script: string; args: string[]; says: string }[] = [
    { title: "a flag without its value", script: "up", args: ["--env"], says: "--env needs a value" },
    { title: "a flag given twice", script: "up", args: ["--env", "dev", "--env", "ci"], says: "--env was given more than once" },
    { title: "a stray argument", script: "up", args: ["now"], says: 'unexpected argument "now"' },
    { title: "a missing action", script: "migrate", args: [], says: "missing argument" },
    { title: "an unknown action", script: "migrate", args: ["sideways"], says: 'unknown action "sideways"' },
    { title: "a single-dash typo of a flag", script: "status", args: ["-all"], says: "unknown option -all\n" },
    { title: "an environment name with a path in it", script: "status", args: ["--env", "../dev"], says: '--env "../dev": not an environment name' },
  ];
  it.each(cases.map((c) => [c.title, c] as const))("%s", async (_title, c) => {
    const result = await runScript(c.script, c.args, { env: sandbox.env, timeoutMs: 60_000 });
    expect(result.code, result.stderr).toBe(EXIT.USAGE);
    expect(result.stderr.match(/: error: /g)).toHaveLength(1);
    expect(result.stderr).toContain(c.says);
    expect(existsSync(sandbox.stateDir)).toBe(false);
  });
});

describe("the launcher", () => {
  it("refuses an unknown command name (exit 64) listing the commands", async () => {
    const result = spawnSync(process.execPath, [path.join(PROJECT_DIR, "bin", "cpi.mjs"), "no-such-command"], { cwd: PROJECT_DIR, env: { ...process.env, ...sandbox.env }, encoding: "utf8", timeout: 60_000 });
    expect(result.status, result.stderr).toBe(EXIT.USAGE);
    expect(result.stderr).toContain('unknown command "no-such-command"; commands: ');
    expect(existsSync(sandbox.stateDir)).toBe(false);
  });
});

describe("subcommands (backup create|list|prune|schedule|push-wal)", () => {
  it("each has its own flags: a flag of another subcommand is an unknown option, pointing at that subcommand's --help", async () => {
    for (const [args, says, hint] of [
      [["list", "--table", "t"], "unknown option --table", "npm run backup -- list --help"],
      [["create", "--dry-run"], "unknown option --dry-run", "npm run backup -- create --help"],
      [["--env", "dev", "prune", "--physical"], "unknown option --physical", "npm run backup -- prune --help"],
      [["sideways"], 'unknown subcommand "sideways": expected create, list, prune, schedule, push-wal', "npm run backup -- --help"],
      [["--list", "--prune"], "--list and --prune cannot be combined", "npm run backup -- --help"],
    ] as const) {
      const result = await runScript("backup", [...args], { env: sandbox.env, timeoutMs: 60_000 });
      expect(result.code, `${args.join(" ")}: ${result.stderr}`).toBe(EXIT.USAGE);
      expect(result.stderr.match(/: error: /g)).toHaveLength(1);
      expect(result.stderr).toContain(says);
      expect(result.stderr).toContain(hint);
    }
    expect(existsSync(sandbox.stateDir)).toBe(false);
  });

  it("--help is made from the same definitions: the group lists every subcommand, each subcommand its own options", async () => {
    const group = await runScript("backup", ["--help"], { env: sandbox.env });
    expect(group.code).toBe(0);
    for (const word of ["create", "list", "prune", "schedule", "push-wal"]) expect(group.stdout).toMatch(new RegExp(`^  ${word} +\\S`, "m"));
    expect(group.stdout).toContain("Options of create (the default):");
    const prune = await runScript("backup", ["prune", "--help"], { env: sandbox.env });
    expect(prune.stdout).toContain("Usage: npm run backup -- prune [--env NAME] [--out DIR] [--dry-run]");
    expect(prune.stdout).toContain("--dry-run");
    expect(prune.stdout).not.toContain("--physical");
  });

  it("a former mode flag still runs its subcommand, with the same output, and says what it is now", async () => {
    const now = await runScript("backup", ["schedule", "--env", "dev", "--json"], { env: sandbox.env });
    const before = await runScript("backup", ["--env", "dev", "--schedule", "--json"], { env: sandbox.env });
    expect(now.code, now.stderr).toBe(0);
    expect(before.code, before.stderr).toBe(0);
    expect(before.json).toEqual(now.json);
    expect((now.json as { cron: string }).cron).toContain("npm run -s backup -- create --env dev && npm run -s backup -- prune --env dev;");
    expect(before.stderr).toContain("note: --schedule is now a subcommand: npm run backup -- schedule");
    expect(now.stderr).toBe("");
  });
});

describe("--json", () => {
  it("a refused flag is reported as one JSON document on stdout (exitCode 64), not as a partial result", async () => {
    const result = await runScript("up", ["--json", "--bogus-flag"], { env: sandbox.env, timeoutMs: 60_000 });
    expect(result.code, result.stderr).toBe(EXIT.USAGE);
    expect(result.json).toEqual({ ok: false, error: { message: "unknown option --bogus-flag", exitCode: EXIT.USAGE, hint: "see: npm run up -- --help" } });
    expect(existsSync(sandbox.stateDir)).toBe(false);
  });
});

describe("down --destroy without --yes", () => {
  it("refuses (exit 64) with the command to confirm, and deletes nothing", async () => {
    const dir = path.join(sandbox.root, "state-keep", "keep");
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, "env.json"), JSON.stringify({ env: "keep", engine: "embedded", ephemeral: false, baseEnv: "dev", createdAt: new Date().toISOString() }));
    const before = snapshot(path.dirname(dir));
    const result = await runScript("down", ["--env", "keep", "--destroy"], { env: { CPI_STATE_DIR: path.dirname(dir) } });
    expect(result.code, result.stderr).toBe(EXIT.USAGE);
    expect(result.stderr).toContain("--destroy deletes every file of environment 'keep'");
    expect(result.stderr).toContain("npm run down -- --env keep --destroy --yes");
    expect(snapshot(path.dirname(dir))).toEqual(before);
  });
});
