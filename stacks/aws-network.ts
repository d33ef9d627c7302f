/**
 * Where the AWS data layer lives: the spec's VPC and private subnets (aws.vpcId/subnetIds), or a
 * new VPC with two private subnets in two zones when absent (no internet gateway, no public IPs);
 * and one security group per service, admitting its port only from aws.allowedCidrs and
 * aws.allowedSecurityGroupIds (never 0.0.0.0/0: the spec refuses it, and so does the policy pack).
 */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import { resourceName } from "../lib/spec/access.js";
import type { Spec } from "../lib/spec/schema.js";

export interface AwsNetworkArgs {
  /** The environment's spec: aws.vpcId, aws.subnetIds, aws.vpcCidr, aws.allowed*, and the service ports. */
  spec: Spec;
  /** Private subnets to create when the spec names none. Default: 2 (RDS and Multi-AZ need two zones). */
  subnetCount?: number;
}

/** The VPC, private subnets and per-service security groups of the AWS target. */
export class AwsNetwork extends pulumi.ComponentResource {
  readonly vpcId: pulumi.Output<string>;
  readonly subnetIds: pulumi.Output<string[]>;
  readonly postgresSecurityGroup: aws.ec2.SecurityGroup;
  readonly redisSecurityGroup: aws.ec2.SecurityGroup;
  /** Created only when the spec names no VPC. */
  readonly vpc?: aws.ec2.Vpc;
  readonly subnets: aws.ec2.Subnet[] = [];
  /** Zones of the created subnets, in subnet order (undefined for the spec's existing subnets). */
  readonly zoneNames?: pulumi.Output<string[]>;

  constructor(name: string, args: AwsNetworkArgs, opts?: pulumi.ComponentResourceOptions) {
    super("crypto-prediction-infra:aws:Network", name, {}, opts);
    const { spec } = args;
    const child = { parent: this };
    const existing = existingNetwork(spec);

    if (existing) {
      this.vpcId = pulumi.output(existing.vpcId);
      this.subnetIds = pulumi.output(existing.subnetIds);
    } else {
      const count = args.subnetCount ?? 2;
      this.vpc = new aws.ec2.Vpc(
        `${name}-vpc`,
        { cidrBlock: spec.aws.vpcCidr, enableDnsHostnames: true, enableDnsSupport: true, tags: { Name: resourceName(spec, "vpc") } },
        child,
      );
      const zones = aws.getAvailabilityZonesOutput({ state: "available" }, child);
      for (let i = 0; i < count; i++) {
        this.subnets.push(
          new aws.ec2.Subnet(
            `${name}-private-${i}`,
            {
              vpcId: this.vpc.id,
              cidrBlock: subnetCidr(spec.aws.vpcCidr, i),
              availabilityZone: zones.names.apply((names) => pickZone(names, i)),
              mapPublicIpOnLaunch: false,
              tags: { Name: resourceName(spec, `private-${i}`) },
            },
            child,
          ),
        );
      }
      this.vpcId = this.vpc.id;
      this.subnetIds = pulumi.all(this.subnets.map((s) => s.id));
      this.zoneNames = zones.names.apply((names) => Array.from({ length: count }, (_, i) => pickZone(names, i)));
    }

    if (spec.aws.allowedCidrs.length === 0 && spec.aws.allowedSecurityGroupIds.length === 0) {
      pulumi.log.warn("aws.allowedCidrs and aws.allowedSecurityGroupIds are empty: nothing can reach PostgreSQL or Redis", this);
    }
    this.postgresSecurityGroup = new aws.ec2.SecurityGroup(
      `${name}-postgres-sg`,
      {
        name: resourceName(spec, "postgres"),
        description: `PostgreSQL ${spec.postgres.port} from the allowed sources only`,
        vpcId: this.vpcId,
        ingress: ingressRules(spec, spec.postgres.port, "PostgreSQL"),
        tags: { Name: resourceName(spec, "postgres") },
      },
      child,
    );
    this.redisSecurityGroup = new aws.ec2.SecurityGroup(
      `${name}-redis-sg`,
      {
        name: resourceName(spec, "redis"),
        description: `Redis ${spec.redis.port} from the allowed sources only`,
        vpcId: this.vpcId,
        ingress: ingressRules(spec, spec.redis.port, "Redis"),
        tags: { Name: resourceName(spec, "redis") },
      },
      child,
    );

    this.registerOutputs({
      vpcId: this.vpcId,
      subnetIds: this.subnetIds,
      postgresSecurityGroupId: this.postgresSecurityGroup.id,
      redisSecurityGroupId: this.redisSecurityGroup.id,
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Pure helpers
// ---------------------------------------------------------------------------------------------

/** The spec's existing VPC and subnets, or undefined to create them. Throws when only half is given. */
export function existingNetwork(spec: Spec): { vpcId: string; subnetIds: string[] } | undefined {
  const { vpcId, subnetIds } = spec.aws;
  if (vpcId === undefined && (subnetIds === undefined || subnetIds.length === 0)) return undefined;
  if (vpcId === undefined) throw new Error("crypto-prediction-infra:aws.subnetIds is set without aws.vpcId: give both, or neither to create a VPC");
  if (!subnetIds || subnetIds.length < 2) {
    throw new Error("crypto-prediction-infra:aws.vpcId needs aws.subnetIds: at least two private subnets in different zones (RDS subnet groups need two)");
  }
  return { vpcId, subnetIds };
}

/** The i-th subnet of a VPC CIDR, 4 bits longer (a /16 gives /20s): 10.42.0.0/16, 1 → 10.42.16.0/20. */
export function subnetCidr(vpcCidr: string, index: number, newBits = 4): string {
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)\/(\d+)$/.exec(vpcCidr);
  if (!m) throw new Error(`crypto-prediction-infra:aws.vpcCidr ${JSON.stringify(vpcCidr)} is not an IPv4 CIDR`);
  const prefix = Number(m[5]);
  const length = prefix + newBits;
  if (length > 28) throw new Error(`crypto-prediction-infra:aws.vpcCidr ${vpcCidr} is too small to split into /${length} subnets`);
  if (index >= 2 ** newBits) throw new Error(`subnet ${index} does not fit in ${vpcCidr}`);
  const base = ((Number(m[1]) << 24) | (Number(m[2]) << 16) | (Number(m[3]) << 8) | Number(m[4])) >>> 0;
  const network = (base & (prefix === 0 ? 0 : (~0 << (32 - prefix)) >>> 0)) >>> 0;
  const addr = (network + index * 2 ** (32 - length)) >>> 0;
  return `${addr >>> 24}.${(addr >>> 16) & 255}.${(addr >>> 8) & 255}.${addr & 255}/${length}`;
}

/** The i-th available zone, wrapping around. */
export function pickZone(names: string[], index: number): string {
  if (names.length === 0) throw new Error("no available zones in the region");
  return [...names].sort()[index % names.length]!;
}

/** TCP ingress on one port from each allowed CIDR (IPv4 or IPv6) and security group. */
export function ingressRules(spec: Spec, port: number, service: string): aws.types.input.ec2.SecurityGroupIngress[] {
  const rules: aws.types.input.ec2.SecurityGroupIngress[] = [];
  for (const cidr of spec.aws.allowedCidrs) {
    rules.push({
      protocol: "tcp",
      fromPort: port,
      toPort: port,
      ...(cidr.includes(":") ? { ipv6CidrBlocks: [cidr] } : { cidrBlocks: [cidr] }),
      description: `${service} from ${cidr}`,
    });
  }
  for (const group of spec.aws.allowedSecurityGroupIds) {
    rules.push({ protocol: "tcp", fromPort: port, toPort: port, securityGroups: [group], description: `${service} from ${group}` });
  }
  return rules;
}
