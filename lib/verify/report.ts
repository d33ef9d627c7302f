/**
 * The result of a health check run, shared by `verify` and the DR drill: one line per check,
 * each ok, failed (a problem found), could not be checked, or skipped (not applicable).
 */
import { EXIT, type ExitCode } from "../errors.js";
import { redact } from "../redact.js";

/** `warn`: worth fixing, not a failure (exit 0): e.g. a backup bucket without versioning. */
export type CheckStatus = "ok" | "warn" | "fail" | "error" | "skip";

/** The guide's health endpoints: /health/db, /health/cache, /health/detailed (= both). */
export type CheckGroup = "db" | "cache";

export interface Check {
  /** Stable id, e.g. `db.setting.work_mem`. */
  id: string;
  group: CheckGroup;
  title: string;
  status: CheckStatus;
  /** One line: what was found. */
  detail: string;
  expected?: string;
  actual?: string;
  /** What to do about a failure or an error. */
  hint?: string;
  /** Time the check took, ms (checks run concurrently, so these overlap). */
  ms?: number;
}

export interface VerifyReport {
  env: string;
  target: string;
  /** Every check passed (skipped ones aside). */
  ok: boolean;
  /** 0 all ok, 1 a problem found, 2 something could not be checked (and nothing failed). */
  exitCode: ExitCode;
  summary: { ok: number; warn: number; fail: number; error: number; skip: number };
  checks: Check[];
  ms: number;
}

/** Exit code of a set of checks: a found problem (1) outranks a check that could not run (2). */
export function exitCodeOf(checks: Pick<Check, "status">[]): ExitCode {
  if (checks.some((c) => c.status === "fail")) return EXIT.PROBLEM;
  if (checks.some((c) => c.status === "error")) return EXIT.ERROR;
  return EXIT.OK;
}

export function summarise(checks: Check[]): VerifyReport["summary"] {
  const count = (s: CheckStatus) => checks.filter((c) => c.status === s).length;
  return { ok: count("ok"), warn: count("warn"), fail: count("fail"), error: count("error"), skip: count("skip") };
}

const MARK: Record<CheckStatus, string> = { ok: "ok  ", warn: "WARN", fail: "FAIL", error: "ERR ", skip: "skip" };

/** The report for people: a headline, then one line per check, hints under the bad ones. */
export function formatVerifyReport(report: VerifyReport): string {
  const { summary: s } = report;
  const headline = report.ok
    ? `${report.env}: healthy — ${s.ok} checks ok${s.warn ? `, ${s.warn} warning${s.warn > 1 ? "s" : ""}` : ""}${s.skip ? `, ${s.skip} skipped` : ""} (${report.ms} ms)`
    : `${report.env}: ${s.fail ? `${s.fail} problem${s.fail > 1 ? "s" : ""}` : ""}${s.fail && s.error ? ", " : ""}${s.error ? `${s.error} could not be checked` : ""} — ${s.ok} ok (${report.ms} ms)`;
  const lines = [headline, `  target: ${report.target}`];
  for (const group of ["db", "cache"] as const) {
    const checks = report.checks.filter((c) => c.group === group);
    if (!checks.length) continue;
    lines.push(group === "db" ? "  PostgreSQL (health/db)" : "  Redis (health/cache)");
    for (const c of checks) {
      lines.push(`    ${MARK[c.status]} ${c.title.padEnd(34)} ${c.detail}`);
      if (c.status === "fail" || c.status === "error" || c.status === "warn") {
        if (c.expected !== undefined && c.actual !== undefined && !c.detail.includes(c.expected)) lines.push(`         expected ${c.expected}, actual ${c.actual}`);
        if (c.hint) lines.push(`         → ${c.hint}`);
      }
    }
  }
  return redact(lines.join("\n"));
}

/** A failure's message without the stack, for a check's detail. */
export function errorText(error: unknown): string {
  const e = error as { message?: string; code?: string };
  const message = (e?.message ?? String(error)).split("\n")[0]!;
  return redact(e?.code && !message.includes(e.code) ? `${message} (${e.code})` : message);
}
