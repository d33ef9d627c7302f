/**
 * ElastiCache RBAC from the local targets' ACL: the same two users (the default user is the
 * admin, postgres-style `redis.appUser` the application) with the same rules, so the app cannot
 * run CONFIG, FLUSH* or KEYS on AWS either. The rules come from redisAclLines (the Docker and
 * embedded targets' ACL), so the two cannot drift apart.
 */
import { redisAclLines } from "../spec/access.js";
import type { Spec } from "../spec/schema.js";

export type CacheRole = "admin" | "app";

/** An ElastiCache access string (`on ~* &* +@all …`) per role, from the local ACL lines. */
export function elasticacheAccessStrings(spec: Spec): Record<CacheRole, string> {
  const [admin, app] = redisAclLines(spec, "placeholder-admin", "placeholder-app").map((line) => {
    const m = /^user \S+ on >\S+ (.+)$/.exec(line);
    if (!m) throw new Error(`unexpected ACL line shape: ${line.replace(/>\S+/, ">***")}`);
    return `on ${m[1]}`;
  });
  return { admin: admin!, app: app! };
}

/** Both users as the AWS component takes them: Redis name and access string. */
export function cacheUsers(spec: Spec): Record<CacheRole, { userName: string; accessString: string }> {
  const names = cacheUserNames(spec);
  const access = elasticacheAccessStrings(spec);
  return { admin: { userName: names.admin, accessString: access.admin }, app: { userName: names.app, accessString: access.app } };
}

/** Redis user names: ElastiCache requires a user named `default` in every group; it is the admin, as locally. */
export function cacheUserNames(spec: Spec): Record<CacheRole, string> {
  return { admin: "default", app: spec.redis.appUser };
}

/** ElastiCache user/group ids: letters, digits and single hyphens, at most 40 characters, unique per region. */
export function cacheUserId(namePrefix: string, what: string): string {
  const room = 40 - what.length - 1;
  return `${namePrefix.slice(0, room).replace(/-+$/, "")}-${what}`.replace(/--+/g, "-");
}
