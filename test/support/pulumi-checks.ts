/**
 * Checks shared by the per-stack tests: every generated secret stays secret, every custom resource
 * is a child of a component, and the policy pack finds nothing wrong in a stack.
 */
import { expect } from "vitest";
import {
  validateAlarmActions,
  validateBackupRetention,
  validateCacheRbac,
  validateCustomerManagedKeys,
  validateEnhancedMonitoring,
  validateEncryption,
  validateLoopbackPorts,
  validateNoPublicDatabase,
  validateParametersMatchStackSpec,
  stackHandlers,
} from "../../policy/policies.js";
import { MOCK_RDS_MASTER_PASSWORD, mockPassword, type Recorded, type Run } from "./pulumi.js";

/** The mock values of every generated secret in a run. */
export function generatedSecrets(run: Run): string[] {
  return [...run.all("random:index/randomPassword:RandomPassword").map((r) => mockPassword(r.name)), MOCK_RDS_MASTER_PASSWORD];
}

/** Every leaf of a value with its dotted path. */
export function leaves(value: unknown, at = ""): [string, unknown][] {
  if (Array.isArray(value)) return value.flatMap((v, i) => leaves(v, at ? `${at}.${i}` : String(i)));
  if (value && typeof value === "object") return Object.entries(value).flatMap(([k, v]) => leaves(v, at ? `${at}.${k}` : k));
  return [[at, value]];
}

/** No generated secret appears in a non-secret resource input or stack output. */
export function expectSecretsStaySecret(run: Run): void {
  const secrets = generatedSecrets(run);
  expect(secrets.length).toBeGreaterThan(1);
  const leaks: string[] = [];
  for (const r of run.resources) {
    for (const [p, v] of leaves(r.inputs)) {
      if (typeof v === "string" && secrets.some((s) => v.includes(s)) && !run.isSecret(r, p)) leaks.push(`${r.type} ${r.name}: ${p}`);
    }
  }
  for (const [key, out] of Object.entries(run.outputs)) {
    if (out.secret) continue;
    for (const [p, v] of leaves(out.value)) if (typeof v === "string" && secrets.some((s) => v.includes(s))) leaks.push(`output ${key}.${p}`);
  }
  expect(leaks).toEqual([]);
}

/** Every custom resource was registered with a component as parent (its URN type has a parent path). */
export function expectAllParented(run: Run): void {
  const orphans = run.resources.filter((r) => r.custom && !(r.urn ?? "").split("::")[2]!.includes("$"));
  expect(orphans.map((r) => `${r.type} ${r.name}`)).toEqual([]);
}

/** Violations the project's policies report for one resource of a run. */
export function violations(run: Run, r: Recorded): string[] {
  const found: string[] = [];
  const args = { type: r.type, props: r.inputs, urn: r.urn ?? `urn:pulumi:${run.stack}::crypto-prediction-infra::${r.type}::${r.name}`, name: r.name };
  const handlers = [
    validateNoPublicDatabase,
    validateEncryption,
    validateLoopbackPorts,
    validateParametersMatchStackSpec,
    validateAlarmActions,
    validateCustomerManagedKeys,
    validateBackupRetention,
    validateEnhancedMonitoring,
    validateCacheRbac,
  ];
  for (const handler of handlers) {
    handler(args, (message) => found.push(`${r.name}: ${message}`));
  }
  return found;
}

/** Violations the project's stack policies (the S3 bucket checks) report across a run. */
export function stackViolations(run: Run): string[] {
  const resources = run.resources.map((r) => ({ type: r.type, props: r.inputs, urn: r.urn ?? "", name: r.name }));
  const found: string[] = [];
  for (const [name, handler] of Object.entries(stackHandlers)) handler(resources, (message) => found.push(`${name}: ${message}`));
  return found;
}

export function expectPoliciesPass(run: Run): void {
  expect(run.resources.flatMap((r) => violations(run, r))).toEqual([]);
  expect(stackViolations(run)).toEqual([]);
}

/** The value of a container's envs entry `KEY=value`. */
export function envValue(container: Recorded, key: string): string | undefined {
  const entry = (container.inputs.envs as string[]).find((e) => e.startsWith(`${key}=`));
  return entry?.slice(key.length + 1);
}
