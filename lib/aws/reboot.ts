/**
 * Static RDS parameters (shared_buffers, max_connections, shared_preload_libraries) apply only
 * at a reboot, and AWS never reboots for them on its own: the parameter group shows
 * `pending-reboot` until someone does. `npm run reboot` does it, deliberately:
 *   - in the maintenance window (aws.maintenanceWindow), e.g. from a scheduled job, or
 *   - at once with `--now --yes`;
 *   - prod is refused without `--yes` in either case.
 * It reboots the primary and its read replicas that are pending, and waits until each is
 * available with its parameter group in sync. `drift` reports a pending reboot as drift
 * (pendingRebootDrift).
 */
import { DescribeDBInstancesCommand, RebootDBInstanceCommand, type DBInstance, type RDSClient } from "@aws-sdk/client-rds";
import { CliError, EXIT, type ExitCode } from "../errors.js";
import type { DriftItem } from "../drift/settings.js";
import { rdsParameters } from "../spec/render.js";
import type { Spec } from "../spec/schema.js";
import { awsIdentifiers } from "./snapshots.js";

/** Stacks where a reboot always needs --yes. */
export const CONFIRM_STACKS = new Set(["prod"]);

export interface InstanceRebootState {
  identifier: string;
  status: string;
  parameterGroup?: string;
  /** in-sync, applying, pending-reboot (RDS's ParameterApplyStatus). */
  applyStatus?: string;
  pendingReboot: boolean;
}

const DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/** Minutes since Sunday 00:00 UTC of `ddd:HH:MM`. */
function weekMinute(spec: string): number {
  const m = /^([a-z]{3}):(\d\d):(\d\d)$/i.exec(spec);
  const day = m ? DAYS.indexOf(m[1]!.toLowerCase()) : -1;
  if (!m || day < 0) throw new CliError(`aws.maintenanceWindow ${JSON.stringify(spec)} is not ddd:HH:MM-ddd:HH:MM`, EXIT.ERROR);
  return day * 1440 + Number(m[2]) * 60 + Number(m[3]);
}

/** Whether `now` lies inside a weekly window `ddd:HH:MM-ddd:HH:MM` (UTC, may wrap past Saturday). */
export function inMaintenanceWindow(window: string, now: Date): boolean {
  const [a, b] = window.split("-");
  const start = weekMinute(a ?? "");
  const end = weekMinute(b ?? "");
  const t = now.getUTCDay() * 1440 + now.getUTCHours() * 60 + now.getUTCMinutes();
  return start <= end ? t >= start && t < end : t >= start || t < end;
}

/** The next start of a weekly window after `now`. */
export function nextWindowStart(window: string, now: Date): Date {
  const start = weekMinute(window.split("-")[0] ?? "");
  const t = now.getUTCDay() * 1440 + now.getUTCHours() * 60 + now.getUTCMinutes();
  const ahead = (start - t + 7 * 1440) % (7 * 1440) || 7 * 1440;
  const base = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate(), now.getUTCHours(), now.getUTCMinutes());
  return new Date(base + ahead * 60_000);
}

function stateOf(instance: DBInstance): InstanceRebootState {
  const group = instance.DBParameterGroups?.[0];
  return {
    identifier: instance.DBInstanceIdentifier ?? "?",
    status: instance.DBInstanceStatus ?? "unknown",
    parameterGroup: group?.DBParameterGroupName,
    applyStatus: group?.ParameterApplyStatus,
    pendingReboot: (instance.DBParameterGroups ?? []).some((g) => g.ParameterApplyStatus === "pending-reboot"),
  };
}

async function describeOne(rds: RDSClient, identifier: string): Promise<DBInstance> {
  let instance: DBInstance | undefined;
  try {
    instance = (await rds.send(new DescribeDBInstancesCommand({ DBInstanceIdentifier: identifier }))).DBInstances?.[0];
  } catch (error) {
    throw new CliError(`RDS instance ${identifier} not found or not readable: ${(error as Error).message}`, EXIT.ERROR, "is the stack deployed (pulumi up) and are AWS credentials set?");
  }
  if (!instance) throw new CliError(`RDS instance ${identifier} not found`, EXIT.ERROR);
  return instance;
}

/** The primary and its read replicas, with their parameter groups' apply status. */
export async function rebootStates(spec: Spec, rds: RDSClient): Promise<InstanceRebootState[]> {
  const primary = await describeOne(rds, awsIdentifiers(spec).rdsInstance);
  const replicas = await Promise.all((primary.ReadReplicaDBInstanceIdentifiers ?? []).map((id) => describeOne(rds, id)));
  return [primary, ...replicas].map(stateOf);
}

/** Drift items for instances whose static parameters wait for a reboot. */
export function pendingRebootItems(spec: Spec, states: InstanceRebootState[]): DriftItem[] {
  const statics = rdsParameters(spec).filter((p) => p.applyMethod === "pending-reboot").map((p) => p.name);
  return states
    .filter((s) => s.pendingReboot)
    .map((s) => ({
      name: `rds ${s.identifier}`,
      expected: `parameter group ${s.parameterGroup ?? "?"} in effect (in-sync)`,
      actual: `pending-reboot: static parameters (${statics.join(", ")}) are not applied yet`,
      source: "DescribeDBInstances ParameterApplyStatus",
      fix: `npm run reboot -- --env ${spec.env}${CONFIRM_STACKS.has(spec.env) ? " --yes" : ""} (in aws.maintenanceWindow ${spec.aws.maintenanceWindow}), or --now --yes`,
    }));
}

/** Drift of the AWS stack that Pulumi's preview cannot show: a reboot AWS will never do by itself. */
export async function pendingRebootDrift(spec: Spec, rds: RDSClient): Promise<DriftItem[]> {
  return pendingRebootItems(spec, await rebootStates(spec, rds));
}

export interface RebootOptions {
  now?: boolean;
  yes?: boolean;
  dryRun?: boolean;
  /** The clock (tests). */
  at?: Date;
  waitSeconds?: number;
  /** Delay between polls, ms (default 15 s; tests use 0). */
  pollMs?: number;
  log?: (m: string) => void;
}

export interface RebootReport {
  env: string;
  code: ExitCode;
  decision: "nothing pending" | "rebooted" | "outside the maintenance window" | "dry run";
  maintenanceWindow: string;
  nextWindow?: string;
  instances: (InstanceRebootState & { rebooted: boolean })[];
  seconds: number;
}

export async function rebootPending(spec: Spec, rds: RDSClient, options: RebootOptions = {}): Promise<RebootReport> {
  const started = Date.now();
  const at = options.at ?? new Date();
  const log = options.log ?? (() => undefined);
  const window = spec.aws.maintenanceWindow;
  if (options.now && !options.yes) {
    throw new CliError("--now reboots the database at once (a few minutes of downtime; Multi-AZ: a failover)", EXIT.USAGE, `confirm with: npm run reboot -- --env ${spec.env} --now --yes`);
  }
  if (CONFIRM_STACKS.has(spec.env) && !options.yes && !options.dryRun) {
    throw new CliError(`${spec.env} is a production stack: a reboot needs --yes, in the maintenance window too`, EXIT.USAGE, `npm run reboot -- --env ${spec.env} --yes (in ${window}), or --now --yes`);
  }
  const states = await rebootStates(spec, rds);
  const pending = states.filter((s) => s.pendingReboot);
  const report = (decision: RebootReport["decision"], code: ExitCode, rebooted: Set<string>, extra: Partial<RebootReport> = {}): RebootReport => ({
    env: spec.env,
    code,
    decision,
    maintenanceWindow: window,
    instances: states.map((s) => ({ ...s, rebooted: rebooted.has(s.identifier) })),
    seconds: (Date.now() - started) / 1000,
    ...extra,
  });
  if (pending.length === 0) return report("nothing pending", EXIT.OK, new Set());
  if (options.dryRun) return report("dry run", EXIT.PROBLEM, new Set(), { nextWindow: nextWindowStart(window, at).toISOString() });
  if (!options.now && !inMaintenanceWindow(window, at)) {
    return report("outside the maintenance window", EXIT.PROBLEM, new Set(), { nextWindow: nextWindowStart(window, at).toISOString() });
  }
  const busy = pending.find((s) => s.status !== "available");
  if (busy) throw new CliError(`RDS instance ${busy.identifier} is ${busy.status}, not available: it cannot be rebooted now`, EXIT.ERROR, "wait until it is available and run again");

  const done = new Set<string>();
  for (const s of pending) {
    log(`aws: rebooting ${s.identifier} (parameter group ${s.parameterGroup}: pending-reboot)`);
    await rds.send(new RebootDBInstanceCommand({ DBInstanceIdentifier: s.identifier }));
    done.add(s.identifier);
  }
  const deadline = Date.now() + (options.waitSeconds ?? 1800) * 1000;
  const pollMs = options.pollMs ?? 15_000;
  for (const s of pending) {
    for (;;) {
      await new Promise((r) => setTimeout(r, pollMs));
      const now = stateOf(await describeOne(rds, s.identifier));
      log(`aws: ${s.identifier}: ${now.status}, parameters ${now.applyStatus ?? "?"}`);
      if (now.status === "available" && !now.pendingReboot) {
        Object.assign(s, now);
        break;
      }
      if (Date.now() > deadline) throw new CliError(`${s.identifier} is ${now.status} (parameters ${now.applyStatus}) after ${options.waitSeconds ?? 1800} s`, EXIT.ERROR, "check its events in the RDS console");
    }
  }
  return report("rebooted", EXIT.OK, done);
}

export function describeReboot(r: RebootReport): string {
  const lines = [
    `${r.env}: ${r.decision}${r.nextWindow ? ` (next window ${r.nextWindow}, aws.maintenanceWindow ${r.maintenanceWindow})` : ""}`,
    ...r.instances.map((i) => `  ${i.identifier.padEnd(40)} ${i.status.padEnd(10)} parameters ${i.applyStatus ?? "?"}${i.rebooted ? "  rebooted" : ""}`),
  ];
  if (r.decision === "outside the maintenance window") lines.push(`  run it again in the window (e.g. a scheduled job), or now: npm run reboot -- --env ${r.env} --now --yes`);
  return lines.join("\n");
}
