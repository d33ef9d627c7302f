/**
 * A local environment as the scripts see it: its record (what runs it, where), its spec, its
 * credentials, and connection URLs per role. Commands never assemble a URL by hand: they ask the
 * environment (testcontainers' "Started…" objects work the same way).
 */
import { existsSync, readFileSync } from "node:fs";
import type { ClientConfig } from "pg";
import type { RedisOptions } from "ioredis";
import { z } from "zod";
import { CliError, EXIT } from "../errors.js";
import { writeFileAtomicIfChanged } from "../fs.js";
import { listEnvironments, loadSpec } from "../spec/load.js";
import type { Spec } from "../spec/schema.js";
import { readCredentials, type Credentials } from "./credentials.js";
import { currentUserName, envPaths, isEphemeralId, type EnvPaths } from "./paths.js";
import { postgresUrl, postgresUser, redisUrl, redisUser, type PostgresRole, type RedisRole } from "../spec/access.js";


const recordSchema = z.object({
  env: z.string(),
  engine: z.enum(["embedded", "docker"]),
  ephemeral: z.boolean(),
  /** The stack file whose spec this environment runs. */
  baseEnv: z.string(),
  /** Merged over the stack file's values (ephemeral environments: free ports, own names). */
  specOverrides: z.record(z.string(), z.unknown()).default({}),
  createdAt: z.string(),
  docker: z
    .object({
      containers: z.object({ postgres: z.string(), redis: z.string() }),
      volumes: z.array(z.string()),
      network: z.string().optional(),
      /** The WAL archive on the backup volume, as this host reads it (the volume's folder). */
      archiveDir: z.string().optional(),
    })
    .optional(),
});
export type EnvironmentRecord = z.infer<typeof recordSchema>;

export function writeRecord(paths: EnvPaths, record: EnvironmentRecord): void {
  writeFileAtomicIfChanged(paths.record, JSON.stringify(record, null, 2) + "\n", 0o600);
}

export function readRecord(env: string): EnvironmentRecord | undefined {
  const paths = envPaths(env);
  if (!existsSync(paths.record)) return undefined;
  let text: string;
  try {
    text = readFileSync(paths.record, "utf8");
  } catch (error) {
    throw new CliError(`state file ${paths.record} cannot be read by user '${currentUserName()}': ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`, EXIT.ERROR, "run as the user that brought it up (as root: sudo npm run …)");
  }
  try {
    return recordSchema.parse(JSON.parse(text));
  } catch (error) {
    // A zod error's message is a JSON dump: name the first bad field instead.
    const detail = error instanceof z.ZodError ? `${error.issues[0]?.path.join(".") || "(root)"}: ${error.issues[0]?.message}` : (error as Error).message.split("\n")[0];
    throw new CliError(
      `state file ${paths.record} is corrupt: ${detail}`,
      EXIT.ERROR,
      `restore it from where you keep it; to stop the servers anyway (found by their pid files in ${paths.dir}, data kept): npm run down -- --env ${env} --by-pid-files; if the data is expendable: npm run down -- --env ${env} --destroy --yes`,
    );
  }
}

/** The spec an environment runs: its stack file, plus its recorded overrides. */
export function specOf(env: string, record = readRecord(env)): Spec {
  if (record) return { ...loadSpec(record.baseEnv, { overrides: record.specOverrides }), env };
  if (isEphemeralId(env)) {
    throw new CliError(`ephemeral environment '${env}' does not exist (it was removed, or never made)`, EXIT.ERROR, "list local environments: npm run status -- --all");
  }
  return loadSpec(env);
}

/** Connection URLs and client options of an environment, per role. */
export class EnvironmentConnections {
  constructor(
    readonly spec: Spec,
    readonly credentials: Credentials,
    readonly host = "127.0.0.1",
  ) {}

  private postgresLogin(role: PostgresRole): { user: string; password: string } {
    const { postgres: pg } = this.credentials;
    const password = { admin: pg.superuserPassword, owner: pg.ownerPassword, app: pg.appPassword, readonly: pg.readonlyPassword }[role];
    return { user: postgresUser(this.spec, role, pg.superuser), password };
  }

  /** node-postgres options for a role (default database: the spec's). */
  postgresConfig(role: PostgresRole, database = this.spec.postgres.database): ClientConfig {
    return { host: this.host, port: this.spec.postgres.port, database, ...this.postgresLogin(role), connectionTimeoutMillis: 10_000 };
  }

  /**
   * A physical replication session as the base-backup role (BASE_BACKUP): no database, and
   * pg_hba admits it from 127.0.0.1 only.
   */
  replicationConfig(): ClientConfig & { replication: string } {
    const password = this.credentials.postgres.backupPassword;
    if (!password) {
      throw new CliError(`environment '${this.spec.env}' has no base-backup role yet (its credentials predate it)`, EXIT.ERROR, `run: npm run up -- --env ${this.spec.env} (it adds the role and keeps the data)`);
    }
    return { host: this.host, port: this.spec.postgres.port, user: this.spec.postgres.backupUser, password, replication: "true", connectionTimeoutMillis: 10_000 };
  }

  /** postgresql:// URL for a role. */
  postgresUrl(role: PostgresRole, database = this.spec.postgres.database): string {
    return postgresUrl({ host: this.host, port: this.spec.postgres.port, ...this.postgresLogin(role), database });
  }

  private redisLogin(role: RedisRole): { username: string; password: string } {
    return { username: redisUser(this.spec, role), password: role === "admin" ? this.credentials.redis.adminPassword : this.credentials.redis.appPassword };
  }

  /** ioredis options for a role. */
  redisOptions(role: RedisRole): RedisOptions {
    return { host: this.host, port: this.spec.redis.port, db: this.spec.redis.db, ...this.redisLogin(role), connectTimeout: 10_000 };
  }

  /** redis:// URL for a role. */
  redisUrl(role: RedisRole): string {
    const { username, password } = this.redisLogin(role);
    return redisUrl({ host: this.host, port: this.spec.redis.port, user: username, password, db: this.spec.redis.db });
  }
}

/** An existing local environment, opened from its state (it need not be running). */
export interface EnvironmentState {
  env: string;
  record: EnvironmentRecord;
  spec: Spec;
  paths: EnvPaths;
  connections: EnvironmentConnections;
}

/** Opens an environment made by `up` or `env:ci`; fails clearly when there is none. */
export function readEnvironmentState(env: string): EnvironmentState {
  const record = readRecord(env);
  if (!record) {
    const known = isEphemeralId(env) ? [] : listEnvironments();
    throw new CliError(
      `environment '${env}' has no local state (it was never brought up here${known.includes(env) ? "" : `, and there is no Pulumi.${env}.yaml`})`,
      EXIT.ERROR,
      known.includes(env) ? `bring it up: npm run up -- --env ${env}` : isEphemeralId(env) ? "list local environments: npm run status -- --all" : `known environments: ${known.join(", ")}`,
    );
  }
  const paths = envPaths(env);
  const spec = specOf(env, record);
  const credentials = readCredentials(paths.credentials, env);
  return { env, record, spec, paths, connections: new EnvironmentConnections(spec, credentials) };
}
