/**
 * Hints that do what they say (issue 14, item 12). Every `npm run …` hint the code prints names
 * the environment it is about (a hint without --env runs against dev); the restore hint of a
 * backup carries --yes; env:ci's example exports its variables; --help shows the command's own
 * exit codes; the README's relative links resolve inside the repository (a clone outside the
 * workspace has nothing else).
 */
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { EXIT_MEANING, helpText, type Command } from "../../lib/cli.js";
import { PROJECT_DIR } from "../../lib/spec/load.js";
import { runScript } from "../support/commands.js";

/** Commands that act on one environment: a hint to run one must say which. */
const ENV_COMMANDS = ["up", "down", "status", "backup", "restore", "migrate", "verify", "drift", "monitor", "maintain", "cache", "seed", "drill", "connect", "logs", "restart"];
/** Hints that are about no single environment. */
const ENV_FREE = [/npm run status -- --all/, /npm run (-s )?backup -- ([a-z-]+ )?\$\{args\}/];

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sources(path.join(dir, e.name)) : e.name.endsWith(".ts") ? [path.join(dir, e.name)] : []));
}

/** Lines of code (not comments, not help examples or flag descriptions) that contain an `npm run CMD` hint. */
function hintLines(): { where: string; line: string }[] {
  const found: { where: string; line: string }[] = [];
  for (const file of [...sources(path.join(PROJECT_DIR, "lib")), ...sources(path.join(PROJECT_DIR, "scripts"))]) {
    readFileSync(file, "utf8")
      .split("\n")
      .forEach((line, i) => {
        const code = line.trim();
        if (code.startsWith("*") || code.startsWith("/*") || code.startsWith("//")) return;
        if (/^"\s{2}/.test(code) || /^help:|\bhelp: "/.test(code) || /^usage:/.test(code)) return; // --help examples and flag texts
        // A hint is a command to run: `npm run CMD -- args`, or a bare `(npm run CMD)` in a message.
        const names = ENV_COMMANDS.join("|");
        const hint = new RegExp(`npm run (-s )?(${names}) --|\\(npm run (${names})\\)`).exec(code);
        if (!hint || ENV_FREE.some((r) => r.test(code)) || /usage: npm run|"## /.test(code)) return;
        found.push({ where: `${path.relative(PROJECT_DIR, file)}:${i + 1}`, line: code });
      });
  }
  return found;
}

describe("hints", () => {
  it("every printed `npm run CMD` hint for an environment command names the environment (--env)", () => {
    const hints = hintLines();
    expect(hints.length).toBeGreaterThan(10);
    const missing = hints.filter((h) => !/--env\b/.test(h.line) && !/rerun\(/.test(h.line));
    expect(missing.map((m) => `${m.where}: ${m.line}`)).toEqual([]);
  });

  it("a destructive hint carries --yes: the restore hint of backup, the cache invalidation, migrate down", () => {
    const backup = readFileSync(path.join(PROJECT_DIR, "scripts", "backup.ts"), "utf8");
    expect(backup).toMatch(/restore with: npm run restore -- --env \$\{env\} --from \$\{shellWord\(rel\)\} --yes/);
    for (const script of ["cache", "migrate"]) expect(readFileSync(path.join(PROJECT_DIR, "scripts", `${script}.ts`), "utf8")).toMatch(/ctx\.rerun\(\["--yes"\]\)/);
  });

  it("env:ci's example exports the variables it evals", async () => {
    const help = await runScript("env-ci", ["--help"]);
    expect(help.code).toBe(0);
    const example = help.stdout.split("\n").find((l) => l.includes("eval"))!;
    expect(example).toBeDefined();
    // Run the example's shell part on a dotenv line: the variable must reach a child process.
    const shell = /eval "\$\((.*)\)"/.exec(example)![1]!.replace(/npm run -s env:ci/, "printf 'CPI_ENV_ID=eph-abc123\\n'");
    const out = execFileSync("bash", ["-c", `eval "$(${shell})"; bash -c 'echo "$CPI_ENV_ID"'`], { encoding: "utf8" });
    expect(out.trim()).toBe("eph-abc123");
  });

  it("--help shows the command's own exit codes, never a generic list that contradicts them", async () => {
    const command = { name: "x", summary: "s", usage: "", flags: {}, exitCodes: { 1: "drift found", 64: "unconfirmed drop" }, run: async () => ({ data: 0 }) } satisfies Command<{}>;
    const text = helpText(command);
    expect(text).toMatch(/Exit codes:\n {2}0 {3}done\n {2}1 {3}drift found\n/);
    expect(text).toContain("64  unconfirmed drop");
    expect(text).toContain(`143 ${EXIT_MEANING[143]}`);
    for (const [name, says] of [["drift", "1   drift found"], ["monitor", "1   a threshold crossed"], ["migrate", "64  bad usage, or migrations that would drop data"]] as const) {
      const help = await runScript(name, ["--help"]);
      expect(help.stdout, name).toContain(says);
      expect(help.stdout, name).not.toContain("1 problem found");
    }
  });
});

describe("README links", () => {
  it("every relative link resolves to a file in the repository (the guide is shipped in docs/)", () => {
    const readme = readFileSync(path.join(PROJECT_DIR, "README.md"), "utf8");
    const links = [...readme.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]!).filter((l) => !/^(https?:|mailto:|#)/.test(l));
    expect(links).toContain("docs/database-setup-guide.md");
    for (const link of links) {
      const file = path.resolve(PROJECT_DIR, link.split("#")[0]!);
      expect(file.startsWith(PROJECT_DIR + path.sep), `${link} leaves the repository`).toBe(true);
      expect(existsSync(file), `${link} does not exist`).toBe(true);
    }
  });
});
