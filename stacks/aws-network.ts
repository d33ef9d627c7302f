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

/** Who may connect to the services. */
export interface AllowedSources {
  /** IPv4 or IPv6 CIDRs (spec: aws.allowedCidrs; never 0.0.0.0/0). */
  cidrs: string[];
  /** Security groups (spec: aws.allowedSecurityGroupIds). */
  securityGroupIds: string[];
}

export interface AwsNetworkArgs {
  /** Prefix of the resources' names (spec: namePrefix). */
  namePrefix: string;
  /**
   * An existing VPC and its private subnets (spec: aws.vpcId, aws.subnetIds; `existingNetwork` checks them).
   * @default none: a VPC with private subnets is created
   */
  existing?: { vpcId: string; subnetIds: string[] };
  /** CIDR of a created VPC (spec: aws.vpcCidr). */
  vpcCidr: string;
  /** Who may reach PostgreSQL and Redis. */
  allowed: AllowedSources;
  /** PostgreSQL's port (spec: postgres.port). */
  postgresPort: number;
  /** Redis's port (spec: redis.port). */
  redisPort: number;
  /**
   * Private subnets to create when there is no existing network.
   * @default 2 (RDS and Multi-AZ need two zones)
   */
  subnetCount?: number;
}

/** The VPC, private subnets and per-service security groups of the AWS target. */
export class AwsNetwork extends pulumi.ComponentResource {
  readonly vpcId: pulumi.Output<string>;
  readonly subnetIds: pulumi.Output<string[]>;
  readonly postgresSecurityGroup: aws.ec2.SecurityGroup;
  readonly redisSecurityGroup: aws.ec2.SecurityGroup;
  /** Created only when there is no `existing` network. */
  readonly vpc?: aws.ec2.Vpc;
  readonly subnets: aws.ec2.Subnet[] = [];
  /** Zones of the created subnets, in subnet order (undefined for the spec's existing subnets). */
  readonly zoneNames?: pulumi.Output<string[]>;

  constructor(name: string, args: AwsNetworkArgs, opts?: pulumi.ComponentResourceOptions) {
    super("crypto-prediction-infra:aws:Network", name, {}, opts);
    const child = { parent: this };
    const existing = args.existing;

    if (existing) {
      this.vpcId = pulumi.output(existing.vpcId);
      this.subnetIds = pulumi.output(existing.subnetIds);
    } else {
      const count = args.subnetCount ?? 2;
      this.vpc = new aws.ec2.Vpc(
        `${name}-vpc`,
        { cidrBlock: args.vpcCidr, enableDnsHostnames: true, enableDnsSupport: true, tags: { Name: resourceName(args, "vpc") } },
        child,
      );
      const zones = aws.getAvailabilityZonesOutput({ state: "available" }, child);
      for (let i = 0; i < count; i++) {
        this.subnets.push(
          new aws.ec2.Subnet(
            `${name}-private-${i}`,
            {
              vpcId: this.vpc.id,
              cidrBlock: subnetCidr(args.vpcCidr, i),
              availabilityZone: zones.names.apply((names) => pickZone(names, i)),
              mapPublicIpOnLaunch: false,
              tags: { Name: resourceName(args, `private-${i}`) },
            },
            child,
          ),
        );
      }
      this.vpcId = this.vpc.id;
      this.subnetIds = pulumi.all(this.subnets.map((s) => s.id));
      this.zoneNames = zones.names.apply((names) => Array.from({ length: count }, (_, i) => pickZone(names, i)));
    }

    if (args.allowed.cidrs.length === 0 && args.allowed.securityGroupIds.length === 0) {
      pulumi.log.warn("aws.allowedCidrs and aws.allowedSecurityGroupIds are empty: nothing can reach PostgreSQL or Redis", this);
    }
    this.postgresSecurityGroup = new aws.ec2.SecurityGroup(
      `${name}-postgres-sg`,
      {
        name: resourceName(args, "postgres"),
        description: `PostgreSQL ${args.postgresPort} from the allowed sources only`,
        vpcId: this.vpcId,
        ingress: ingressRules(args.allowed, args.postgresPort, "PostgreSQL"),
        tags: { Name: resourceName(args, "postgres") },
      },
      child,
    );
    this.redisSecurityGroup = new aws.ec2.SecurityGroup(
      `${name}-redis-sg`,
      {
        name: resourceName(args, "redis"),
        description: `Redis ${args.redisPort} from the allowed sources only`,
        vpcId: this.vpcId,
        ingress: ingressRules(args.allowed, args.redisPort, "Redis"),
        tags: { Name: resourceName(args, "redis") },
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
export function ingressRules(allowed: AllowedSources, port: number, service: string): aws.types.input.ec2.SecurityGroupIngress[] {
  const rules: aws.types.input.ec2.SecurityGroupIngress[] = [];
  for (const cidr of allowed.cidrs) {
    rules.push({
      protocol: "tcp",
      fromPort: port,
      toPort: port,
      ...(cidr.includes(":") ? { ipv6CidrBlocks: [cidr] } : { cidrBlocks: [cidr] }),
      description: `${service} from ${cidr}`,
    });
  }
  for (const group of allowed.securityGroupIds) {
    rules.push({ protocol: "tcp", fromPort: port, toPort: port, securityGroups: [group], description: `${service} from ${group}` });
  }
  return rules;
}
