/**
 * Runs the Pulumi program (index.ts) or a component under Pulumi's mock runtime and records what
 * reached each resource: inputs with secrets unwrapped (and where the secrets were), the URN
 * (whose type path shows the parent), and the stack's exported outputs with their secretness.
 *
 * Mocks apply no provider defaults and no autonaming: a resource's inputs are exactly what the
 * program gave, which is what these tests check. The few outputs the program reads (ids,
 * endpoints, generated passwords) are synthesized below.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { vi } from "vitest";
import { parse as parseYaml } from "yaml";
import { deepMerge, PROJECT, PROJECT_DIR } from "../../lib/spec/load.js";

export interface Recorded {
  type: string;
  name: string;
  custom: boolean;
  /** Provider reference (`urn::id`) the resource was registered with, if any. */
  provider?: string;
  /** Inputs with every secret unwrapped. */
  inputs: Record<string, any>;
  /** Dotted paths (array indexes as numbers) of the inputs that arrived as secrets. */
  secretPaths: string[];
  /** Filled in after the run, from the mock monitor. */
  urn?: string;
}

export interface OutputValue {
  value: unknown;
  secret: boolean;
}

export interface Run {
  stack: string;
  resources: Recorded[];
  outputs: Record<string, OutputValue>;
  calls: { token: string; inputs: Record<string, any> }[];
  all(type: string): Recorded[];
  /** The one resource of a type (optionally matching), failing clearly when there is not exactly one. */
  one(type: string, match?: (r: Recorded) => boolean): Recorded;
  isSecret(r: Recorded, dottedPath: string): boolean;
}

/** Mock password of a RandomPassword, distinct per resource name, letters and digits. */
export function mockPassword(name: string): string {
  return "Pw" + createHash("sha256").update(name).digest("hex").slice(0, 30);
}
export const MOCK_RDS_MASTER_PASSWORD = "MockRdsMasterPassword123";

/** The stack's config as Pulumi's runtime hands it to a program: namespaced keys, objects as JSON strings. */
export function runtimeConfig(stack: string, overrides: Record<string, unknown> = {}): Record<string, string> {
  const doc = parseYaml(readFileSync(path.join(PROJECT_DIR, `Pulumi.${stack}.yaml`), "utf8")) as { config?: Record<string, unknown> };
  const raw = doc.config ?? {};
  const ours: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(raw)) if (k.startsWith(`${PROJECT}:`)) ours[k.slice(PROJECT.length + 1)] = v;
  const merged = deepMerge(ours, overrides);
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(raw)) if (!k.startsWith(`${PROJECT}:`)) out[k] = typeof v === "object" ? JSON.stringify(v) : String(v);
  for (const [k, v] of Object.entries(merged)) out[`${PROJECT}:${k}`] = typeof v === "object" && v !== null ? JSON.stringify(v) : String(v);
  return out;
}

function unwrap(value: any, at: string, secrets: string[]): any {
  if (pulumi.runtime.isRpcSecret(value)) {
    secrets.push(at);
    return unwrap(pulumi.runtime.unwrapRpcSecret(value), at, secrets);
  }
  if (Array.isArray(value)) return value.map((v, i) => unwrap(v, at ? `${at}.${i}` : String(i), secrets));
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, unwrap(v, at ? `${at}.${k}` : k, secrets)]));
  }
  return value;
}

function synthesized(type: string, name: string, inputs: Record<string, any>): Record<string, unknown> {
  const arn = `arn:aws:mock:us-east-1:123456789012:${name}`;
  switch (type) {
    case "random:index/randomPassword:RandomPassword":
      return { result: mockPassword(name) };
    case "docker:index/remoteImage:RemoteImage":
      return { imageId: `sha256:${createHash("sha256").update(String(inputs.name)).digest("hex")}`, repoDigest: `${inputs.name}@sha256:mock` };
    case "aws:rds/instance:Instance": {
      const id = String(inputs.identifier);
      return {
        address: `${id}.mock.us-east-1.rds.amazonaws.com`,
        endpoint: `${id}.mock.us-east-1.rds.amazonaws.com:${inputs.port}`,
        arn,
        resourceId: `db-${createHash("sha256").update(id).digest("hex").slice(0, 26).toUpperCase()}`,
        masterUserSecrets: [{ secretArn: `arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!db-${id}`, secretStatus: "active", kmsKeyId: "mock" }],
      };
    }
    case "aws:elasticache/replicationGroup:ReplicationGroup": {
      const id = String(inputs.replicationGroupId);
      const count = Number(inputs.numCacheClusters ?? 1);
      return {
        arn,
        primaryEndpointAddress: `master.${id}.mock.use1.cache.amazonaws.com`,
        readerEndpointAddress: `replica.${id}.mock.use1.cache.amazonaws.com`,
        // The API's order is not guaranteed: reversed here so code that relies on it fails.
        memberClusters: Array.from({ length: count }, (_, i) => `${id}-${String(i + 1).padStart(3, "0")}`).reverse(),
      };
    }
    default:
      return type.startsWith("aws:") ? { arn } : {};
  }
}

/** Sets the mocks (recording into the returned arrays). */
async function installMocks(stack: string, resources: Recorded[], calls: Run["calls"]): Promise<void> {
  await pulumi.runtime.setMocks(
    {
      newResource(args) {
        const secretPaths: string[] = [];
        const inputs = unwrap(args.inputs, "", secretPaths) as Record<string, any>;
        resources.push({ type: args.type, name: args.name, custom: args.custom ?? true, provider: args.provider, inputs, secretPaths });
        return { id: args.custom === false ? undefined : `${args.name}-id`, state: { ...args.inputs, ...synthesized(args.type, args.name, inputs) } };
      },
      call(args) {
        const inputs = unwrap(args.inputs, "", []) as Record<string, any>;
        calls.push({ token: args.token, inputs });
        switch (args.token) {
          case "aws:index/getAvailabilityZones:getAvailabilityZones":
            return { names: ["us-east-1c", "us-east-1a", "us-east-1b"], zoneIds: ["use1-az3", "use1-az1", "use1-az2"], id: "us-east-1" };
          case "aws:index/getCallerIdentity:getCallerIdentity":
            return { accountId: "123456789012", arn: "arn:aws:iam::123456789012:user/mock", userId: "AIDAMOCK", id: "123456789012" };
          case "aws:secretsmanager/getSecretVersion:getSecretVersion":
            return { arn: inputs.secretId, secretString: JSON.stringify({ username: "master", password: MOCK_RDS_MASTER_PASSWORD }), versionId: "v1" };
          default:
            throw new Error(`unexpected invoke ${args.token}`);
        }
      },
    },
    PROJECT,
    stack,
    false,
  );
}

async function settle(resources: Recorded[]): Promise<void> {
  const waitForRPCs = (pulumi.runtime as unknown as { waitForRPCs?: () => Promise<void> }).waitForRPCs;
  // Registrations finish asynchronously; wait until nothing new arrives for a while.
  let last = -1;
  let quiet = 0;
  while (quiet < 20) {
    if (waitForRPCs) await waitForRPCs();
    await new Promise((r) => setTimeout(r, 5));
    if (resources.length === last) quiet++;
    else {
      quiet = 0;
      last = resources.length;
    }
  }
}

async function resolve(value: unknown): Promise<OutputValue> {
  if (pulumi.Output.isInstance(value)) {
    const output = value as pulumi.Output<unknown>;
    const [v, secret] = await Promise.all([new Promise((r) => output.apply((x) => r(x))), pulumi.isSecret(output)]);
    const inner = await resolve(v);
    return { value: inner.value, secret: secret || inner.secret };
  }
  if (Array.isArray(value)) {
    const items = await Promise.all(value.map(resolve));
    return { value: items.map((i) => i.value), secret: items.some((i) => i.secret) };
  }
  if (value && typeof value === "object") {
    const entries = await Promise.all(Object.entries(value).map(async ([k, v]) => [k, await resolve(v)] as const));
    return { value: Object.fromEntries(entries.map(([k, v]) => [k, v.value])), secret: entries.some(([, v]) => v.secret) };
  }
  return { value, secret: false };
}

function makeRun(stack: string, resources: Recorded[], calls: Run["calls"], outputs: Record<string, OutputValue>): Run {
  const monitor = pulumi.runtime.getMonitor() as unknown as { resources?: Map<string, { urn: string }> };
  const urns = [...(monitor.resources?.keys() ?? [])];
  for (const r of resources) r.urn = urns.find((u) => u.endsWith(`::${r.name}`) && u.split("::")[2]!.split("$").pop() === r.type);
  return {
    stack,
    resources,
    outputs,
    calls,
    all: (type) => resources.filter((r) => r.type === type),
    one(type, match) {
      const found = resources.filter((r) => r.type === type && (!match || match(r)));
      if (found.length !== 1) throw new Error(`expected one ${type}, found ${found.length}: ${found.map((f) => f.name).join(", ")}`);
      return found[0]!;
    },
    isSecret: (r, dotted) => r.secretPaths.some((p) => dotted === p || dotted.startsWith(`${p}.`)),
  };
}

/**
 * Runs index.ts for a stack: its Pulumi.<stack>.yaml config (deep-merged with `overrides`, spec
 * keys without namespace) through Pulumi's runtime config, then imports the program afresh.
 */
export async function runProgram(stack: string, overrides: Record<string, unknown> = {}): Promise<Run> {
  const resources: Recorded[] = [];
  const calls: Run["calls"] = [];
  pulumi.runtime.setAllConfig(runtimeConfig(stack, overrides));
  await installMocks(stack, resources, calls);
  vi.resetModules();
  const program = (await import("../../index.js")) as Record<string, unknown>;
  await settle(resources);
  const outputs: Record<string, OutputValue> = {};
  for (const [key, value] of Object.entries(program)) outputs[key] = await resolve(value);
  await settle(resources);
  return makeRun(stack, resources, calls, outputs);
}

/** Runs `build` (which creates components) under mocks for a stack name; returns what registered. */
export async function runComponents<T>(stack: string, build: () => T | Promise<T>): Promise<Run & { built: T }> {
  const resources: Recorded[] = [];
  const calls: Run["calls"] = [];
  pulumi.runtime.setAllConfig({});
  await installMocks(stack, resources, calls);
  const built = await build();
  await settle(resources);
  return { ...makeRun(stack, resources, calls, {}), built };
}

/** Resolves an output (or plain value) under the mocks. */
export async function valueOf(value: unknown): Promise<OutputValue> {
  return resolve(value);
}
