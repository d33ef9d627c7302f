/**
 * The drill's record: what ran, how long each phase took, RTO and RPO against the spec's
 * objectives, the backup (size, checksums), the data comparison and the health checks. One
 * structure, printed as JSON (--json) and as markdown for a compliance file (--report FILE.md).
 */
import { redact } from "../redact.js";
import { humanBytes } from "../spec/units.js";
import type { Check, VerifyReport } from "../verify/report.js";
import type { DrillEngine } from "./subject.js";
import { mdCell } from "../markdown.js";

export const DRILL_REPORT_KIND = "crypto-prediction-infra/dr-drill";

export const PHASES = [
  { name: "prepare", title: "Prepare: environment, seed rows, marker row and key" },
  { name: "backup", title: "Back up (the backup command's function)" },
  { name: "writes", title: "Keep writing after the backup (the RPO exposure)" },
  { name: "disaster", title: "Disaster: stop the servers, delete their data" },
  { name: "recreate", title: "Recreate the environment from the spec" },
  { name: "restore", title: "Restore the newest backup" },
  { name: "verify", title: "Verify: health checks, data against the backup's manifest" },
] as const;
export type PhaseName = (typeof PHASES)[number]["name"];

export type PhaseStatus = "ok" | "failed" | "skipped";

export interface PhaseRecord {
  /** 1-7. */
  number: number;
  name: PhaseName;
  title: string;
  status: PhaseStatus;
  startedAt?: string;
  seconds?: number;
  /** One line: what happened. */
  detail: string;
  error?: string;
}

/** What one store acknowledged before the disaster and still holds after the restore. */
export interface StoreRecovery {
  /** Writes acknowledged before the disaster (the prepare marker included). */
  acknowledged: number;
  /** Of them, acknowledged after the backup completed (exposed by design). */
  acknowledgedAfterBackup: number;
  failedWrites: number;
  lastAcknowledgedAt?: string;
  /** Marker writes found after the restore. */
  present: number;
  newestPresentAt?: string;
  /** Writes 0..newest all present: the store came back as one consistent point in time. */
  contiguous: boolean;
  /** Acknowledged writes not present after the restore. */
  lost: number;
  /** lastAcknowledgedAt − newestPresentAt, seconds; absent when nothing survived. */
  rpoSeconds?: number;
}

export interface TableComparison {
  table: string;
  /** Rows in the backup's manifest. */
  expected: number;
  /** Rows after the restore. */
  actual?: number;
  ok: boolean;
}

export interface DrillReport {
  kind: typeof DRILL_REPORT_KIND;
  version: 1;
  /** The run's id (UTC start time + random suffix): also the tag of its markers. */
  runId: string;
  /** The environment named with --env. */
  env: string;
  /** scratch: an ephemeral copy of env's spec; in-place: env itself. */
  mode: "scratch" | "in-place";
  engine: DrillEngine;
  /** The stack whose spec the drilled environment runs. */
  specEnv: string;
  specHash?: string;
  /** The environment the drill worked on, and its id after the recreate (Docker: a new id). */
  subject?: { env: string; recreatedAs?: string; ports?: { postgres: number; redis: number } };
  startedAt: string;
  completedAt: string;
  /** pass (exit 0), fail (exit 1: recovery failed or missed an objective), error (exit 2: the drill could not run up to the disaster). */
  status: "pass" | "fail" | "error";
  exitCode: 0 | 1 | 2;
  /** Why it did not pass, one line each (empty on a pass). */
  reasons: string[];
  objectives: { rtoSeconds: number; rpoSeconds: number };
  /** From the start of the disaster to the end of verification. */
  /** `measured` false: the drill did not reach the disaster, so no objective was scored (`ok` absent). */
  rto: { seconds?: number; objectiveSeconds: number; measured: boolean; ok?: boolean };
  /** The worse of the two stores. */
  rpo: { seconds?: number; objectiveSeconds: number; measured: boolean; ok?: boolean; postgres?: StoreRecovery; redis?: StoreRecovery };
  phases: PhaseRecord[];
  /** pitr: base backup + archived WAL, recovered to the latest; logical: the backup command's dump. */
  method: "pitr" | "logical";
  settings: {
    rows: number;
    format: string;
    writeSeconds: number;
    writeIntervalMs: number;
    keep: boolean;
    /** PITR: the drilled servers' archive_timeout (a scratch copy's is shorter than the spec's, to span several segments in seconds). */
    archiveTimeoutSeconds?: number;
    /** PITR: backup.archive.timeoutSeconds of the drilled environment's spec. */
    specArchiveTimeoutSeconds?: number;
  };
  /** PITR: what the recovery used and reached. */
  pitr?: {
    window: { earliest: string; latest: string };
    backupId: string;
    /** Archived WAL segments from the base backup's start to the end of the archive. */
    walSegments: number;
    timeline: number;
    /** The last transaction replayed. */
    recoveredTo?: string;
    endLsn?: string;
    archiveTimeoutSeconds: number;
    /** Marker rows acknowledged after the base backup that came back (replayed from archived WAL). */
    writesRecoveredAfterBackup: number;
  };
  seed?: { rows: number; inserted: number; seconds: number; rowsPerSecond: number };
  backup?: {
    id: string;
    dir: string;
    bytes: number;
    seconds: number;
    /** The manifest's own checksum (sha256 of its canonical JSON). */
    manifestChecksum: string;
    files: { name: string; bytes: number; sha256: string }[];
    postgres?: { format: string; compression: string; pgDump: string; tables: Record<string, number> };
    /** A base backup (PITR drill). */
    physical?: { startLsn: string; stopLsn: string; stopTime: string; timeline: number; systemIdentifier: string; compression: string; tarBytes: number };
    redis?: { keys: number };
  };
  disaster?: { destroyed: string[]; bytes?: number };
  restore?: { backupId: string; dir: string; isDrillBackup: boolean; seconds: number; tool?: string; warnings: string[] };
  comparison?: { ok: boolean; tables: TableComparison[]; redisKeys: { expected: number; actual?: number; ok: boolean } };
  verify?: { ok: boolean; summary: VerifyReport["summary"]; failed: Pick<Check, "id" | "title" | "status" | "detail" | "hint">[]; ms: number };
  /** In-place: the drill's marker rows and keys removed afterwards. */
  cleanup?: { removed: string[]; markers?: { rows: number; keys: number }; error?: string };
  /** --keep: the scratch environment was left up. */
  kept?: { env: string; backupsDir?: string; removeWith: string };
  machine: { cpus: number; node: string; toolkit: string };
}

const number = (n: number) => n.toLocaleString("en-US");
const secs = (s: number | undefined) => (s === undefined ? "—" : `${s.toFixed(s < 10 ? 2 : 1)} s`);
/** An objective's verdict; a drill that could not run scores none. */
function verdict(objective: { measured: boolean; ok?: boolean }, met: string, missed: string): string {
  return !objective.measured ? "not measured (the drill could not run)" : objective.ok ? met : missed;
}
function statusWord(report: DrillReport): string {
  return report.status === "pass" ? "PASS" : report.status === "fail" ? "FAIL" : "COULD NOT RUN";
}

/** Plain text for the terminal. */
export function formatDrillText(report: DrillReport): string {
  const lines = [
    `DR drill of '${report.env}' (${report.mode === "scratch" ? `scratch ${report.engine} copy ${report.subject?.env ?? ""}` : "in place"}): ${statusWord(report)}`,
    `  RTO ${secs(report.rto.seconds)} (objective ${secs(report.rto.objectiveSeconds)}) ${verdict(report.rto, "ok", "MISSED")}   ` +
      `RPO ${secs(report.rpo.seconds)} (objective ${secs(report.rpo.objectiveSeconds)}) ${verdict(report.rpo, "ok", "MISSED")}`,
  ];
  for (const p of report.phases) {
    lines.push(`  ${p.number}. ${p.name.padEnd(9)} ${p.status === "ok" ? "ok  " : p.status === "failed" ? "FAIL" : "skip"} ${secs(p.seconds).padStart(8)}  ${p.detail}`);
    if (p.error) lines.push(`       ${p.error}`);
  }
  if (report.backup) lines.push(`  backup ${report.backup.id}: ${humanBytes(report.backup.bytes)}, ${report.backup.files.map((f) => `${f.name} sha256 ${f.sha256.slice(0, 16)}…`).join(", ")}`);
  if (report.pitr) lines.push(`  ${pitrLine(report)}`);
  for (const reason of report.reasons) lines.push(`  ✗ ${reason}`);
  if (report.kept) lines.push(`  kept: ${report.kept.env} is still up; remove it with: ${report.kept.removeWith}`);
  return redact(lines.join("\n"));
}

function pitrLine(report: DrillReport): string {
  const p = report.pitr!;
  return (
    `point-in-time recovery: window ${p.window.earliest} → ${p.window.latest}; base backup ${p.backupId}; ${p.walSegments} archived WAL segments replayed (timeline ${p.timeline})` +
    `${p.recoveredTo ? `, last transaction ${p.recoveredTo}` : ""}; ${p.writesRecoveredAfterBackup} writes made after the base backup came back from the archive; ` +
    `archive_timeout ${p.archiveTimeoutSeconds} s${report.settings.specArchiveTimeoutSeconds !== undefined && report.settings.specArchiveTimeoutSeconds !== p.archiveTimeoutSeconds ? ` (scratch copy; the spec's is ${report.settings.specArchiveTimeoutSeconds} s)` : ""}`
  );
}

/** Markdown for a compliance record. */
export function formatDrillMarkdown(report: DrillReport): string {
  const md: string[] = [];
  const cell = (s: string) => mdCell(s);
  md.push(`# DR drill: ${report.env} — ${statusWord(report)}`, "");
  md.push(
    `- Run: \`${report.runId}\`, ${report.startedAt} → ${report.completedAt}`,
    `- Environment: \`${report.env}\` (spec \`Pulumi.${report.specEnv}.yaml\`${report.specHash ? `, hash \`${report.specHash.slice(0, 12)}\`` : ""}); ` +
      (report.mode === "scratch" ? `drilled on a scratch ${report.engine} copy \`${report.subject?.env ?? "?"}\`${report.subject?.recreatedAs ? `, recreated as \`${report.subject.recreatedAs}\`` : ""}` : `drilled in place (${report.engine})`),
    `- Method: ${report.method === "pitr" ? "point-in-time recovery (base backup + archived WAL, to the latest)" : "logical backup and restore"}`,
    `- Settings: ${number(report.settings.rows)} seeded market_data rows, backup format ${report.settings.format}${report.settings.archiveTimeoutSeconds !== undefined ? `, archive_timeout ${report.settings.archiveTimeoutSeconds} s (spec: ${report.settings.specArchiveTimeoutSeconds} s)` : ""}, writes for ${report.settings.writeSeconds} s after the backup (one every ${report.settings.writeIntervalMs} ms per store)`,
    `- Machine: ${report.machine.cpus} CPUs, Node ${report.machine.node}, ${report.machine.toolkit}`,
    `- Result: **${statusWord(report)}** (exit ${report.exitCode})`,
    "",
  );
  md.push("## Objectives", "", "| | Measured | Objective (spec) | Result |", "|---|---|---|---|");
  md.push(`| RTO (disaster → verified) | ${secs(report.rto.seconds)} | ${secs(report.rto.objectiveSeconds)} (\`dr.rtoSeconds\`) | ${verdict(report.rto, "met", "**missed**")} |`);
  md.push(`| RPO (newest acknowledged write − newest restored write) | ${secs(report.rpo.seconds)} | ${secs(report.rpo.objectiveSeconds)} (\`dr.rpoSeconds\`) | ${verdict(report.rpo, "met", "**missed**")} |`, "");
  if (report.reasons.length) md.push("## Why it did not pass", "", ...report.reasons.map((r) => `- ${cell(r)}`), "");

  md.push("## Phases", "", "| # | Phase | Status | Duration | Detail |", "|---|---|---|---|---|");
  for (const p of report.phases) md.push(`| ${p.number} | ${p.title} | ${p.status} | ${secs(p.seconds)} | ${cell(p.detail + (p.error ? ` — ${p.error}` : ""))} |`);
  md.push("");

  const stores = [
    ["PostgreSQL", report.rpo.postgres],
    ["Redis", report.rpo.redis],
  ] as const;
  if (stores.some(([, s]) => s)) {
    md.push("## Recovery point", "", "| Store | Acknowledged | After the backup | Present after restore | Lost | Contiguous | Last acknowledged | Newest restored | RPO |", "|---|---|---|---|---|---|---|---|---|");
    for (const [name, s] of stores) {
      if (!s) continue;
      md.push(`| ${name} | ${number(s.acknowledged)}${s.failedWrites ? ` (+${s.failedWrites} failed)` : ""} | ${number(s.acknowledgedAfterBackup)} | ${number(s.present)} | ${number(s.lost)} | ${s.contiguous ? "yes" : "**no**"} | ${s.lastAcknowledgedAt ?? "—"} | ${s.newestPresentAt ?? "—"} | ${secs(s.rpoSeconds)} |`);
    }
    md.push("");
  }

  if (report.backup) {
    const b = report.backup;
    md.push("## Backup", "", `- Id: \`${b.id}\` (${b.dir})`, `- Size: ${humanBytes(b.bytes)} (${number(b.bytes)} bytes), made in ${secs(b.seconds)}`, `- Manifest checksum (sha256): \`${b.manifestChecksum}\``);
    if (b.postgres) md.push(`- PostgreSQL: ${b.postgres.format}, ${b.postgres.compression}, ${b.postgres.pgDump}`);
    if (b.redis) md.push(`- Redis: ${number(b.redis.keys)} keys`);
    md.push("", "| File | Bytes | sha256 |", "|---|---|---|", ...b.files.map((f) => `| ${f.name} | ${number(f.bytes)} | \`${f.sha256}\` |`), "");
  }
  if (report.pitr) md.push("## Point-in-time recovery", "", `- ${cell(pitrLine(report))}`, ...(report.backup?.physical ? [`- Base backup WAL range: ${report.backup.physical.startLsn} → ${report.backup.physical.stopLsn} (ended ${report.backup.physical.stopTime}), system identifier ${report.backup.physical.systemIdentifier}, ${report.backup.physical.compression}`] : []), ...(report.pitr.endLsn ? [`- Recovery ended at ${report.pitr.endLsn}`] : []), "");
  if (report.restore) {
    md.push("## Restore", "", `- Restored \`${report.restore.backupId}\`${report.restore.isDrillBackup ? " (this drill's backup, the newest)" : " (**not this drill's backup**)"} in ${secs(report.restore.seconds)}${report.restore.tool ? ` with ${report.restore.tool}` : ""}`);
    for (const w of report.restore.warnings) md.push(`- Warning: ${cell(w)}`);
    md.push("");
  }
  if (report.comparison) {
    const c = report.comparison;
    md.push("## Data against the manifest", "", "| Table / store | In the backup | After the restore | Match |", "|---|---|---|---|");
    for (const t of c.tables) md.push(`| ${t.table} | ${number(t.expected)} | ${t.actual === undefined ? "—" : number(t.actual)} | ${t.ok ? "yes" : "**no**"} |`);
    md.push(`| Redis keys | ${number(c.redisKeys.expected)} | ${c.redisKeys.actual === undefined ? "—" : number(c.redisKeys.actual)} | ${c.redisKeys.ok ? "yes" : "**no**"} |`, "");
  }
  if (report.verify) {
    const v = report.verify;
    md.push("## Health checks (npm run verify)", "", `- ${v.ok ? "All passed" : "**Problems found**"}: ${v.summary.ok} ok, ${v.summary.fail} failed, ${v.summary.error} could not be checked, ${v.summary.skip} skipped (${v.ms} ms)`);
    for (const f of v.failed) md.push(`- ${f.status === "fail" ? "FAIL" : "ERROR"} ${f.title}: ${cell(f.detail)}${f.hint ? ` → ${cell(f.hint)}` : ""}`);
    md.push("");
  }
  if (report.disaster) md.push("## Disaster", "", ...report.disaster.destroyed.map((d) => `- ${cell(d)}`), ...(report.disaster.bytes !== undefined ? [`- Data deleted: ${humanBytes(report.disaster.bytes)}`] : []), "");
  if (report.cleanup) {
    md.push("## Clean-up", "");
    if (report.cleanup.markers) md.push(`- Drill markers removed: ${number(report.cleanup.markers.rows)} rows, ${number(report.cleanup.markers.keys)} keys`);
    for (const r of report.cleanup.removed) md.push(`- Removed: ${cell(r)}`);
    if (report.cleanup.error) md.push(`- **Clean-up problem**: ${cell(report.cleanup.error)}`);
    md.push("");
  }
  if (report.kept) md.push("## Kept", "", `- The scratch environment \`${report.kept.env}\` was left up (--keep).`, `- Remove it with: \`${report.kept.removeWith}\``, "");
  return redact(md.join("\n"));
}
