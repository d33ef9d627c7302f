/**
 * Infrastructure drift through Pulumi: `pulumi preview --refresh --expect-no-changes --json`
 * reads the real resources (refresh) and says what `pulumi up` would change to match the
 * program. Changes are drift; a preview that could not run (no credentials, no stack, a
 * program error) is an error, never "no drift".
 */
import { existsSync } from "node:fs";
import path from "node:path";
import type { RDSClient } from "@aws-sdk/client-rds";
import { which } from "zx";
import { PROJECT_DIR } from "../spec/load.js";
import type { Spec } from "../spec/schema.js";
import type { DriftItem } from "./settings.js";

export interface InfraDrift {
  status: "ok" | "drift" | "error" | "skipped";
  /** Why it was skipped, or what failed. */
  note?: string;
  items: DriftItem[];
  /** Resource counts by operation, as Pulumi summarises them. */
  changeSummary?: Record<string, number>;
}

/** `pulumi` on PATH, if any. */
export function findPulumi(): string | undefined {
  return which.sync("pulumi", { nothrow: true }) ?? undefined;
}

/** Operations that change nothing. */
const NO_CHANGE = new Set(["same", "read", "refresh", "discard"]);

interface PreviewStep {
  op: string;
  urn: string;
  diffReasons?: string[];
  detailedDiff?: Record<string, { kind: string }>;
}

interface PreviewDocument {
  steps?: PreviewStep[];
  diagnostics?: { message?: string; severity?: string; urn?: string }[];
  changeSummary?: Record<string, number>;
}

/**
 * Reads `pulumi preview --json` output and its exit code. Exported for tests: the Pulumi CLI
 * cannot run on the project's machines, so the parsing is tested with documents of its format.
 */
export function interpretPreview(stdout: string, exitCode: number, stderr = ""): InfraDrift {
  let doc: PreviewDocument;
  try {
    doc = JSON.parse(stdout) as PreviewDocument;
  } catch {
    const why = (stderr || stdout).trim().split("\n").slice(-3).join(" ").slice(0, 500);
    return { status: "error", note: `pulumi preview failed (exit ${exitCode}) without a JSON result: ${why || "no output"}`, items: [] };
  }
  const changed = (doc.steps ?? []).filter((s) => !NO_CHANGE.has(s.op));
  const summaryChanges = Object.entries(doc.changeSummary ?? {}).filter(([op, n]) => !NO_CHANGE.has(op) && n > 0);
  // --expect-no-changes turns proposed changes into an error diagnostic; other errors are real failures.
  const errors = (doc.diagnostics ?? []).filter((d) => d.severity === "error" && !/no changes were expected/i.test(d.message ?? ""));
  if (errors.length) {
    return { status: "error", note: `pulumi preview reported errors: ${errors.map((e) => (e.message ?? "").trim().split("\n")[0]).join("; ")}`, items: [], changeSummary: doc.changeSummary };
  }
  if (changed.length || summaryChanges.length) {
    const items: DriftItem[] = changed.map((s) => {
      const props = Object.keys(s.detailedDiff ?? {}).length ? Object.keys(s.detailedDiff!) : (s.diffReasons ?? []);
      return {
        name: s.urn.split("::").slice(-1)[0] ?? s.urn,
        expected: "as the Pulumi program declares it",
        actual: `${s.op}${props.length ? ` (${props.join(", ")})` : ""}: the real resource differs`,
        source: s.urn,
        fix: s.op === "create" ? "the resource is gone: pulumi up recreates it" : "pulumi up puts it back as declared — or, if the change is wanted, declare it in the spec / program",
      };
    });
    if (!items.length) items.push({ name: "resources", expected: "no changes", actual: summaryChanges.map(([op, n]) => `${n} to ${op}`).join(", "), fix: "pulumi preview --diff shows what; pulumi up puts it back" });
    return { status: "drift", items, changeSummary: doc.changeSummary };
  }
  if (exitCode !== 0) return { status: "error", note: `pulumi preview exited ${exitCode} without proposing changes: ${stderr.trim().split("\n").slice(-1)[0] ?? ""}`, items: [], changeSummary: doc.changeSummary };
  return { status: "ok", items: [], changeSummary: doc.changeSummary };
}

/** Runs the preview for a stack (when the Pulumi CLI is present). */
export async function infraDrift(stack: string, options: { timeoutSeconds?: number; log?: (m: string) => void } = {}): Promise<InfraDrift> {
  const pulumi = findPulumi();
  if (!pulumi) return { status: "skipped", note: "the Pulumi CLI is not on PATH: infrastructure drift (pulumi preview --refresh --expect-no-changes) was not checked", items: [] };
  const { $ } = await import("zx");
  options.log?.(`pulumi preview --refresh --expect-no-changes --stack ${stack}`);
  const result = await $({ cwd: PROJECT_DIR, nothrow: true, quiet: true, timeout: `${options.timeoutSeconds ?? 600}s` })`${pulumi} preview --refresh --expect-no-changes --json --non-interactive --stack ${stack}`;
  return interpretPreview(result.stdout, result.exitCode ?? 1, result.stderr);
}

/**
 * AWS stacks: the preview, plus what a preview cannot show. A static parameter changed in the
 * parameter group is "done" for Pulumi, but AWS applies it only at a reboot it never does by
 * itself: an instance whose parameter group is pending-reboot is drift (lib/aws/reboot.ts).
 * `rds` defaults to an SDK client for the spec's region.
 */
export async function awsInfraDrift(
  spec: Spec,
  options: { timeoutSeconds?: number; log?: (m: string) => void; rds?: RDSClient; preview?: (stack: string) => Promise<InfraDrift> } = {},
): Promise<InfraDrift> {
  const [preview, reboot] = await Promise.allSettled([
    (options.preview ?? ((stack: string) => infraDrift(stack, options)))(spec.env),
    (async () => {
      const { pendingRebootDrift } = await import("../aws/reboot.js");
      const rds = options.rds ?? new (await import("@aws-sdk/client-rds")).RDSClient({ region: spec.aws.region });
      return pendingRebootDrift(spec, rds);
    })(),
  ]);
  const base: InfraDrift = preview.status === "fulfilled" ? preview.value : { status: "error", note: String(preview.reason), items: [] };
  const notes = [base.note].filter((n): n is string => !!n);
  if (reboot.status === "rejected") notes.push(`pending reboots not checked (DescribeDBInstances): ${(reboot.reason as Error).message ?? reboot.reason}`);
  const rebootItems = reboot.status === "fulfilled" ? reboot.value : [];
  const items = [...base.items, ...rebootItems];
  const status = items.length ? "drift" : base.status === "error" || reboot.status === "rejected" ? "error" : base.status;
  return { ...base, status, items, note: notes.length ? notes.join("; ") : undefined };
}
