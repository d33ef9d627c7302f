/**
 * What every target shares about reaching the data layer, derived from the spec: resource names,
 * the roles and their login names, Redis's ACL lines, and the connection URLs (built with `URL`,
 * the way a started testcontainer hands out its URI). Targets import these; none imports another.
 */
import type { Spec } from "./schema.js";

/** PostgreSQL roles: superuser (toolkit admin), schema owner (migrations), application, read-only. */
export type PostgresRole = "admin" | "owner" | "app" | "readonly";
/** Redis users: default (toolkit admin) and the application's ACL user. */
export type RedisRole = "admin" | "app";

/** Redis's built-in user, the toolkit's admin. */
export const REDIS_ADMIN_USER = "default";

/** A resource's name: `<namePrefix>-<what>` (containers, volumes, RDS, ElastiCache, alarms…). */
export function resourceName(spec: Pick<Spec, "namePrefix">, what: string): string {
  return `${spec.namePrefix}-${what}`;
}

/** The login name of a PostgreSQL role; the superuser's name is the target's (embedded, the image, RDS's master). */
export function postgresUser(spec: Spec, role: PostgresRole, superuser: string): string {
  switch (role) {
    case "admin":
      return superuser;
    case "owner":
      return spec.postgres.user;
    case "app":
      return spec.postgres.appUser;
    case "readonly":
      return spec.postgres.readonlyUser;
  }
}

/** The login name of a Redis role. */
export function redisUser(spec: Spec, role: RedisRole): string {
  return role === "admin" ? REDIS_ADMIN_USER : spec.redis.appUser;
}

/**
 * Redis ACL: the admin (default user) may do everything; the app user reads and writes keys but
 * runs no dangerous or admin command (INFO aside, which the ioredis clients may send).
 */
export function redisAclLines(spec: Spec, adminPassword: string, appPassword: string): string[] {
  return [
    `user ${REDIS_ADMIN_USER} on >${adminPassword} ~* &* +@all`,
    `user ${spec.redis.appUser} on >${appPassword} ~* &* +@all -@dangerous -@admin -keys -flushall -flushdb -config -debug -shutdown -script +info`,
  ];
}

export interface PostgresUrlParts {
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  /** e.g. require (RDS). @default none */
  sslmode?: string;
}

/** postgresql://user:password@host:port/database[?sslmode=…], every part encoded by URL. */
export function postgresUrl(c: PostgresUrlParts): string {
  const url = new URL(`postgresql://${hostPart(c.host)}:${c.port}`);
  url.username = encodeURIComponent(c.user);
  url.password = encodeURIComponent(c.password);
  url.pathname = `/${encodeURIComponent(c.database)}`;
  if (c.sslmode) url.searchParams.set("sslmode", c.sslmode);
  return url.toString();
}

export interface RedisUrlParts {
  host: string;
  port: number;
  user: string;
  password: string;
  db: number;
  /** rediss:// (ElastiCache in transit). @default false */
  tls?: boolean;
}

/** redis[s]://user:password@host:port/db. */
export function redisUrl(c: RedisUrlParts): string {
  const url = new URL(`${c.tls ? "rediss" : "redis"}://${hostPart(c.host)}:${c.port}`);
  url.username = encodeURIComponent(c.user);
  url.password = encodeURIComponent(c.password);
  url.pathname = `/${c.db}`;
  return url.toString();
}

/** An IPv6 literal goes in brackets. */
function hostPart(host: string): string {
  return host.includes(":") && !host.startsWith("[") ? `[${host}]` : host;
}
