/**
 * What operators type, refused when it is not what it looks like (issue 14, item 11): integer
 * flags in decimal digits only (0x10, 1e3, 16.0 and " 16" were taken as numbers), the CPI_*
 * variables the toolkit reads (CPI_LOCK_WAIT_SECONDS=abc was silently ignored, CPI_STATE_DIR at a
 * file gave a raw EEXIST). Each: exit 64, one message naming the flag or variable and the value,
 * nothing created.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { EXIT } from "../../lib/errors.js";
import { parseDecimalInt, parseDecimalNumber } from "../../lib/input.js";
import { runScript } from "../support/commands.js";

const root = mkdtempSync(path.join(os.tmpdir(), "cpi-input-"));
const stateDir = path.join(root, "state");
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe("numbers in decimal digits only", () => {
  it("parses decimal and refuses hex, octal prefixes, exponents, fractions, spaces, signs where not whole", () => {
    expect(parseDecimalInt("16")).toBe(16);
    expect(parseDecimalInt("-1")).toBe(-1);
    for (const bad of ["0x10", "0o20", "0b10", "1e3", "16.0", " 16", "16 ", "+16", "", "abc", "Infinity", "1_000", "99999999999999999999"]) expect(parseDecimalInt(bad), bad).toBeUndefined();
    expect(parseDecimalNumber("0.5")).toBe(0.5);
    for (const bad of ["1e3", ".5", "5.", "0x1", "Infinity", "NaN", " 1"]) expect(parseDecimalNumber(bad), bad).toBeUndefined();
  });

  describe.concurrent("integer flags of the commands", () => {
    const cases: [string, string[], string][] = [
      ["seed", ["--hours", "0x10"], '--hours "0x10"'],
      ["seed", ["--hours", "1e3"], '--hours "1e3"'],
      ["seed", ["--hours", "16.0"], '--hours "16.0"'],
      ["seed", ["--hours", " 16"], '--hours " 16"'],
      ["seed", ["--rows", "1e6"], '--rows "1e6"'],
      ["seed", ["--workers", "0x2"], '--workers "0x2"'],
      ["migrate", ["down", "--count", "0x1"], '--count "0x1"'],
      ["backup", ["--level", "0x9"], '--level "0x9"'],
      ["drill", ["--write-seconds", "1e1"], '--write-seconds "1e1"'],
      ["monitor", ["--interval", "1e1"], '--interval "1e1"'],
    ];
    it.each(cases)("%s %j", async (name, args, says) => {
      const result = await runScript(name, [...args, "--env", "nosuch"], { env: { CPI_STATE_DIR: stateDir }, timeoutMs: 60_000 });
      expect(result.code, result.stderr).toBe(EXIT.USAGE);
      expect(result.stderr).toContain(says);
      expect(result.stderr.match(/: error: /g)).toHaveLength(1);
      expect(existsSync(stateDir)).toBe(false);
    });
  });
});

describe.concurrent("the CPI_* variables the toolkit reads", () => {
  const file = path.join(root, "a-file");
  writeFileSync(file, "not a folder");
  const cases: [string, NodeJS.ProcessEnv, RegExp][] = [
    ["CPI_LOCK_WAIT_SECONDS=abc", { CPI_LOCK_WAIT_SECONDS: "abc" }, /CPI_LOCK_WAIT_SECONDS="abc": expected a whole number of seconds from 0/],
    ["CPI_LOCK_WAIT_SECONDS=-5", { CPI_LOCK_WAIT_SECONDS: "-5" }, /CPI_LOCK_WAIT_SECONDS="-5"/],
    ["CPI_LOCK_WAIT_SECONDS=0x10", { CPI_LOCK_WAIT_SECONDS: "0x10" }, /CPI_LOCK_WAIT_SECONDS="0x10"/],
    ["CPI_STATE_DIR=a file", { CPI_STATE_DIR: file }, new RegExp(`CPI_STATE_DIR=${file}: is a file, not a folder`)],
    ["CPI_STATE_DIR=below a file", { CPI_STATE_DIR: path.join(file, "x") }, new RegExp(`CPI_STATE_DIR=${file}/x: ${file} is a file`)],
    ["CPI_STATE_DIR=/etc/passwd", { CPI_STATE_DIR: "/etc/passwd" }, /CPI_STATE_DIR=\/etc\/passwd: is a file, not a folder/],
    ["CPI_STATE_DIR=/proc/x", { CPI_STATE_DIR: "/proc/x" }, /CPI_STATE_DIR=\/proc\/x: is on a kernel file system/],
    ["CPI_SERVICE_USER=a name with spaces", { CPI_SERVICE_USER: "no body" }, /CPI_SERVICE_USER="no body": not an account name/],
  ];
  it.each(cases)("%s: exit 64, named, nothing done", async (_title, env, says) => {
    for (const [name, args] of [["status", []], ["up", ["--env", "nosuch"]]] as const) {
      const result = await runScript(name, [...args], { env: { CPI_STATE_DIR: stateDir, ...env }, timeoutMs: 60_000 });
      expect(result.code, `${name}: ${result.stderr}`).toBe(EXIT.USAGE);
      expect(result.stderr).toMatch(says);
      expect(result.stderr).not.toMatch(/EEXIST|ENOTDIR|NaN/);
    }
    expect(existsSync(stateDir)).toBe(false);
  });
});
