/**
 * ElastiCache RBAC instead of one static AUTH token: a user group with the admin (the `default`
 * user, as on the local targets) and the application user, whose access string is the local
 * targets' ACL (lib/aws/cache-acl.ts: no CONFIG, FLUSH*, KEYS). Passwords are generated here and
 * stay Pulumi secrets. Rotation: ElastiCache users hold up to two passwords; replace the
 * RandomPassword (`pulumi up --replace <urn>`) and clients reconnect with the new URL from the
 * stack outputs (README: Rotation).
 */
import * as aws from "@pulumi/aws";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import { cacheUserId, type CacheRole } from "../lib/aws/cache-acl.js";

/** One ElastiCache user: its Redis name and access string. */
export interface CacheUserDefinition {
  userName: string;
  /** ElastiCache's access string (`on ~* &* +@all -@dangerous …`). */
  accessString: string;
}

export interface AwsCacheUsersArgs {
  /** Prefix of the user and group ids (spec: namePrefix). */
  namePrefix: string;
  /** The admin (ElastiCache's `default`) and the application user (lib/aws/cache-acl.ts from the spec). */
  users: Record<CacheRole, CacheUserDefinition>;
  /**
   * Password length (ElastiCache: 16-128).
   * @default 64
   */
  passwordLength?: number;
}

/** The admin and app users of ElastiCache and their user group. */
export class AwsCacheUsers extends pulumi.ComponentResource {
  readonly passwords: Record<CacheRole, random.RandomPassword>;
  readonly users: Record<CacheRole, aws.elasticache.User>;
  readonly userGroup: aws.elasticache.UserGroup;
  /** Redis user name per role. */
  readonly userNames: Record<CacheRole, string>;

  constructor(name: string, args: AwsCacheUsersArgs, opts?: pulumi.ComponentResourceOptions) {
    super("crypto-prediction-infra:aws:CacheUsers", name, {}, opts);
    this.userNames = { admin: args.users.admin.userName, app: args.users.app.userName };
    const make = (role: CacheRole) => {
      const password = new random.RandomPassword(
        `${name}-${role}-password`,
        { length: args.passwordLength ?? 64, special: false, minLower: 1, minUpper: 1, minNumeric: 1 },
        { parent: this },
      );
      const user = new aws.elasticache.User(
        `${name}-${role}`,
        {
          userId: cacheUserId(args.namePrefix, `redis-${role}`),
          userName: this.userNames[role],
          engine: "redis",
          accessString: args.users[role].accessString,
          authenticationMode: { type: "password", passwords: [pulumi.secret(password.result)] },
        },
        { parent: this, additionalSecretOutputs: ["passwords"] },
      );
      return { password, user };
    };
    const admin = make("admin");
    const app = make("app");
    this.passwords = { admin: admin.password, app: app.password };
    this.users = { admin: admin.user, app: app.user };
    this.userGroup = new aws.elasticache.UserGroup(
      `${name}-group`,
      { userGroupId: cacheUserId(args.namePrefix, "redis-users"), engine: "redis", userIds: [admin.user.userId, app.user.userId] },
      { parent: this },
    );
    this.registerOutputs({ userGroupId: this.userGroup.userGroupId });
  }
}
