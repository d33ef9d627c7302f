/** The DR drill (issue #7): `runDrill` for embedded and Docker targets, `awsDrillPlan` for AWS. See README.md. */
export { runDrill, resolveDrillOptions, DEFAULT_SCRATCH_ROWS, DEFAULT_WRITE_SECONDS, DEFAULT_WRITE_INTERVAL_MS, DRILL_ARCHIVE_TIMEOUT_SECONDS, type DrillMethod, type DrillOptions, type DrillHooks } from "./drill.js";
export { formatDrillMarkdown, formatDrillText, PHASES, DRILL_REPORT_KIND, type DrillReport, type PhaseRecord, type StoreRecovery } from "./report.js";
export { awsDrillPlan, formatAwsPlanMarkdown, type AwsDrillPlan } from "./aws-plan.js";
export type { DrillEngine } from "./subject.js";
