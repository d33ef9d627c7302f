/**
 * Numbers and names that operators type, in flags and in the CPI_* environment variables: decimal
 * only, nothing silently ignored. `Number()` alone takes `0x10` as 16, `1e3` as 1000, ` 16` and
 * `16.0` as 16, and `abc` as NaN (which a `??` default never replaces): every such value is
 * refused here with a message that names where it came from.
 */
import { existsSync, statSync } from "node:fs";
import path from "node:path";
import { CliError, EXIT } from "./errors.js";

const DECIMAL_INT = /^-?\d+$/;
const DECIMAL_NUMBER = /^-?\d+(\.\d+)?$/;

/** A whole decimal number (`16`, `-1`), or undefined for anything else (`0x10`, `1e3`, `16.0`, ` 16`). */
export function parseDecimalInt(text: string): number | undefined {
  if (!DECIMAL_INT.test(text)) return undefined;
  const value = Number(text);
  return Number.isSafeInteger(value) ? value : undefined;
}

/** A decimal number with an optional fraction (`0.5`, `30`), or undefined (`1e3`, `.5`, `0x1`, `Infinity`). */
export function parseDecimalNumber(text: string): number | undefined {
  return DECIMAL_NUMBER.test(text) ? Number(text) : undefined;
}

/** A whole number in [min, max] typed by the operator as `source` (`--count`, `CPI_LOCK_WAIT_SECONDS`). */
export function wholeNumberIn(source: string, raw: string, min: number, max: number, unit = ""): number {
  const value = parseDecimalInt(raw);
  if (value === undefined || value < min || value > max) {
    throw new CliError(`${source} ${JSON.stringify(raw)}: expected a whole number${unit ? ` of ${unit}` : ""} from ${min} to ${max}, in decimal digits (no 0x, exponent, fraction or spaces)`, EXIT.USAGE);
  }
  return value;
}

/** A decimal number in [min, max] typed by the operator as `source`. */
export function decimalNumberIn(source: string, raw: string, min: number, max: number, unit = ""): number {
  const value = parseDecimalNumber(raw);
  if (value === undefined || value < min || value > max) {
    throw new CliError(`${source} ${JSON.stringify(raw)}: expected a decimal number${unit ? ` of ${unit}` : ""} from ${min} to ${max} (e.g. 1 or 0.5)`, EXIT.USAGE);
  }
  return value;
}

/** A CPI_* variable holding a whole number; `fallback` when unset or empty. */
export function envWholeNumber(name: string, fallback: number, min: number, max: number, unit = ""): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = parseDecimalInt(raw);
  if (value === undefined || value < min || value > max) {
    throw new CliError(`${name}=${JSON.stringify(raw)}: expected a whole number${unit ? ` of ${unit}` : ""} from ${min} to ${max}, in decimal digits`, EXIT.USAGE, `fix or unset ${name}`);
  }
  return value;
}

/** OS account names (the service user): what useradd accepts. */
const ACCOUNT_NAME = /^[a-z_][a-z0-9_-]{0,31}$/;

/** A CPI_* variable naming an OS account; `fallback` when unset or empty. */
export function envAccountName(name: string, fallback: string): string {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  if (!ACCOUNT_NAME.test(raw)) {
    throw new CliError(`${name}=${JSON.stringify(raw)}: not an account name; use lowercase letters, digits, _ and - (at most 32, starting with a letter or _)`, EXIT.USAGE, `fix or unset ${name}`);
  }
  return raw;
}

/**
 * A CPI_* variable naming a folder (CPI_STATE_DIR), resolved; undefined when unset or empty. It
 * must be a folder or not exist yet (then it is created), and not on a kernel file system.
 */
export function envFolder(name: string): string | undefined {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return undefined;
  const dir = path.resolve(raw);
  const fix = `point ${name} at a folder (it is created when absent), or unset it`;
  let existing = dir;
  while (!existsSync(existing) && path.dirname(existing) !== existing) existing = path.dirname(existing);
  if (!statSync(existing).isDirectory()) {
    throw new CliError(`${name}=${raw}: ${existing === dir ? "is a file, not a folder" : `${existing} is a file, not a folder`}`, EXIT.USAGE, fix);
  }
  if (/^\/(proc|sys|dev)(\/|$)/.test(dir)) throw new CliError(`${name}=${raw}: is on a kernel file system (/proc, /sys, /dev)`, EXIT.USAGE, fix);
  return dir;
}

/** Every CPI_* variable the toolkit reads as settings, checked before a command does anything. */
export function checkToolkitVariables(): void {
  envWholeNumber("CPI_LOCK_WAIT_SECONDS", 120, 0, 86_400, "seconds");
  envAccountName("CPI_SERVICE_USER", "postgres");
  envFolder("CPI_STATE_DIR");
}
