/**
 * The project's policies, as pure `validateResource` handlers (tests call them directly with
 * hand-built arguments; policy/index.ts puts them in a PolicyPack):
 *   - no public database: RDS not publicly accessible, no 0.0.0.0/0 or ::/0 ingress;
 *   - encryption on: RDS storage, ElastiCache at rest and in transit;
 *   - Docker containers publish ports on loopback only (no host network, no publish-all);
 *   - parameter groups hold exactly the spec's values (rdsParameters/elasticacheParameters of
 *     the stack's Pulumi.<stack>.yaml, loaded through the spec's one loader).
 */
import type { ReportViolation, ResourceValidation, ResourceValidationArgs, ResourceValidationPolicy } from "@pulumi/policy";
import { loadSpec } from "../lib/spec/load.js";
import { elasticacheParameters, rdsParameters } from "../lib/spec/render.js";
import type { Spec } from "../lib/spec/schema.js";

/** Resource type tokens the policies look at. */
export const TYPES = {
  rdsInstance: "aws:rds/instance:Instance",
  rdsClusterInstance: "aws:rds/clusterInstance:ClusterInstance",
  rdsCluster: "aws:rds/cluster:Cluster",
  rdsParameterGroup: "aws:rds/parameterGroup:ParameterGroup",
  replicationGroup: "aws:elasticache/replicationGroup:ReplicationGroup",
  cacheParameterGroup: "aws:elasticache/parameterGroup:ParameterGroup",
  securityGroup: "aws:ec2/securityGroup:SecurityGroup",
  securityGroupRule: "aws:ec2/securityGroupRule:SecurityGroupRule",
  ingressRule: "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
  container: "docker:index/container:Container",
} as const;

/** The arguments a handler reads; a subset of ResourceValidationArgs, so tests can build them by hand. */
export type PolicyArgs = Pick<ResourceValidationArgs, "type" | "props" | "urn" | "name">;
type Handler = (args: PolicyArgs, report: ReportViolation) => void;

const WORLD = new Set(["0.0.0.0/0", "::/0"]);
const LOOPBACK = new Set(["127.0.0.1", "::1"]);
const isTrue = (v: unknown) => v === true || v === "true";

/** The stack of a URN: `urn:pulumi:<stack>::<project>::<type>::<name>`. */
export function stackOfUrn(urn: string): string | undefined {
  return /^urn:pulumi:([^:]+)::/.exec(urn)?.[1];
}

/** No database reachable from the internet: RDS not publicly accessible, no world-open ingress. */
export const validateNoPublicDatabase: Handler = ({ type, props }, report) => {
  if ((type === TYPES.rdsInstance || type === TYPES.rdsClusterInstance) && isTrue(props.publiclyAccessible)) {
    report("the database is publicly accessible: set publiclyAccessible false and reach it from the VPC");
  }
  const world = (cidrs: unknown): string[] => (Array.isArray(cidrs) ? cidrs.filter((c): c is string => typeof c === "string" && WORLD.has(c)) : []);
  if (type === TYPES.securityGroup) {
    for (const rule of (props.ingress as Record<string, unknown>[] | undefined) ?? []) {
      for (const cidr of [...world(rule.cidrBlocks), ...world(rule.ipv6CidrBlocks)]) {
        report(`ingress on ports ${rule.fromPort}-${rule.toPort} is open to ${cidr}: list the application's CIDRs or security groups`);
      }
    }
  }
  if (type === TYPES.securityGroupRule && props.type === "ingress") {
    for (const cidr of [...world(props.cidrBlocks), ...world(props.ipv6CidrBlocks)]) {
      report(`ingress rule on ports ${props.fromPort}-${props.toPort} is open to ${cidr}`);
    }
  }
  if (type === TYPES.ingressRule) {
    for (const cidr of [props.cidrIpv4, props.cidrIpv6]) if (typeof cidr === "string" && WORLD.has(cidr)) report(`ingress rule on port ${props.fromPort} is open to ${cidr}`);
  }
};

/** Data encrypted at rest and in transit. */
export const validateEncryption: Handler = ({ type, props }, report) => {
  if ((type === TYPES.rdsInstance || type === TYPES.rdsCluster) && !isTrue(props.storageEncrypted) && props.replicateSourceDb === undefined) {
    report("storage is not encrypted: set storageEncrypted true (it cannot be turned on later without a restore)");
  }
  if (type === TYPES.replicationGroup) {
    if (!isTrue(props.atRestEncryptionEnabled)) report("ElastiCache at-rest encryption is off: set atRestEncryptionEnabled true");
    if (!isTrue(props.transitEncryptionEnabled)) report("ElastiCache in-transit encryption is off: set transitEncryptionEnabled true (and an auth token)");
  }
};

/** Docker containers listen on loopback only: every published port has ip 127.0.0.1 (or ::1). */
export const validateLoopbackPorts: Handler = ({ type, props }, report) => {
  if (type !== TYPES.container) return;
  if (props.networkMode === "host") report("network mode host exposes every port the container opens on all interfaces");
  if (isTrue(props.publishAllPorts)) report("publishAllPorts publishes the image's ports on all interfaces");
  for (const port of (props.ports as Record<string, unknown>[] | undefined) ?? []) {
    const ip = port.ip as string | undefined;
    if (ip === undefined || !LOOPBACK.has(ip)) {
      report(`port ${port.internal} is published on ${ip ?? "0.0.0.0 (the default)"}: publish on 127.0.0.1 only`);
    }
  }
};

/**
 * Parameter groups hold the spec's values, in the target's units: a postgres16 RDS group equals
 * rdsParameters(spec) and a redis7 ElastiCache group elasticacheParameters(spec) (names, values
 * and, for RDS, apply methods), where spec is the stack's spec. `specOf` defaults to loadSpec.
 */
export function validateParametersMatchSpec(specOf: (stack: string) => Spec = (stack) => loadSpec(stack)): Handler {
  return ({ type, props, urn }, report) => {
    const isRds = type === TYPES.rdsParameterGroup && /^postgres\d+$/.test(String(props.family));
    const isCache = type === TYPES.cacheParameterGroup && /^redis\d+$/.test(String(props.family));
    if (!isRds && !isCache) return;
    const stack = stackOfUrn(urn);
    let spec: Spec;
    try {
      if (!stack) throw new Error(`no stack in URN ${urn}`);
      spec = specOf(stack);
    } catch (error) {
      report(`cannot load the spec of stack ${stack ?? "?"} to compare parameters: ${(error as Error).message}`);
      return;
    }
    const family = isRds ? `postgres${spec.postgres.version}` : `redis${spec.redis.version}`;
    if (props.family !== family) report(`family ${props.family} is not the spec's ${family}`);
    const expected = new Map(
      (isRds ? rdsParameters(spec) : elasticacheParameters(spec).map((p) => ({ ...p, applyMethod: undefined }))).map((p) => [p.name, p] as const),
    );
    const actual = new Map(((props.parameters as { name: string; value: unknown; applyMethod?: string }[] | undefined) ?? []).map((p) => [p.name, p] as const));
    for (const [name, want] of expected) {
      const got = actual.get(name);
      if (!got) report(`parameter ${name} is missing; the spec says ${want.value}`);
      else {
        if (String(got.value) !== want.value) report(`parameter ${name} = ${got.value}, the spec says ${want.value}`);
        if (isRds && (got.applyMethod ?? "immediate") !== want.applyMethod) report(`parameter ${name} applies ${got.applyMethod ?? "immediate"}, must be ${want.applyMethod}`);
      }
    }
    for (const name of actual.keys()) if (!expected.has(name)) report(`parameter ${name} is not in the spec: add it to lib/spec (schema + render) instead`);
  };
}

export const validateParametersMatchStackSpec = validateParametersMatchSpec();

const asValidation = (h: Handler): ResourceValidation => (args, report) => h(args, report);

export const policies: ResourceValidationPolicy[] = [
  {
    name: "no-public-database",
    description: "Databases are not publicly accessible and no security group admits 0.0.0.0/0 or ::/0.",
    enforcementLevel: "mandatory",
    validateResource: asValidation(validateNoPublicDatabase),
  },
  {
    name: "encryption-on",
    description: "RDS storage is encrypted; ElastiCache encrypts at rest and in transit.",
    enforcementLevel: "mandatory",
    validateResource: asValidation(validateEncryption),
  },
  {
    name: "loopback-ports-only",
    description: "Docker containers publish ports on 127.0.0.1 only.",
    enforcementLevel: "mandatory",
    validateResource: asValidation(validateLoopbackPorts),
  },
  {
    name: "parameters-match-spec",
    description: "RDS and ElastiCache parameter groups hold exactly the values of the stack's spec (Pulumi.<stack>.yaml).",
    enforcementLevel: "mandatory",
    validateResource: asValidation(validateParametersMatchStackSpec),
  },
];
