/**
 * The manifest of a backup folder (manifest.json): what was backed up, from where, with which
 * tools, how much, and the size and sha256 of every file. It carries its own checksum, so a
 * flipped byte in the manifest itself is caught like one in a dump.
 */
import { createHash } from "node:crypto";
import { z } from "zod";
import { canonicalJson } from "../canonical-json.js";

export const MANIFEST_FILE = "manifest.json";
export const MANIFEST_KIND = "crypto-prediction-infra/backup";

const fileName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, { error: "a plain file name" });
const count = z.number().int().min(0);

const fileEntry = z.strictObject({
  name: fileName,
  bytes: count,
  sha256: z.string().regex(/^[0-9a-f]{64}$/, { error: "64 hex digits" }),
});

const postgresPart = z.strictObject({
  /** `SHOW server_version`, e.g. 16.14. */
  serverVersion: z.string(),
  serverMajor: z.number().int(),
  database: z.string(),
  format: z.enum(["sql", "custom"]),
  /** `gzip:6`, `zstd:1`… */
  compression: z.string(),
  file: fileName,
  pgDump: z.strictObject({
    version: z.string(),
    major: z.number().int(),
    minor: z.number().int(),
    /** PG_BIN, PATH, docker-exec or docker-run, and where it ran. */
    source: z.string(),
    location: z.string(),
  }),
  /** The newest applied migration of the source database (null: none). */
  migrationHead: z.string().nullable(),
  migrations: z.array(z.string()),
  /** Rows per table, counted in the snapshot pg_dump dumped. */
  tables: z.record(z.string(), count),
});

const redisPart = z.strictObject({
  serverVersion: z.string(),
  file: fileName,
  /** Keys and keys with a TTL in the RDB file, every database (redis-check-rdb). */
  keys: count,
  expires: count,
  /** INFO keyspace when the snapshot was taken, per database. */
  keyspace: z.record(z.string(), z.strictObject({ keys: count, expires: count })),
  appendonly: z.boolean(),
});

const rdsSettings = z.strictObject({
  subnetGroup: z.string().optional(),
  securityGroupIds: z.array(z.string()),
  parameterGroup: z.string().optional(),
  port: z.number().int().optional(),
  multiAz: z.boolean().optional(),
});
const cacheSettings = z.strictObject({
  nodeType: z.string().optional(),
  subnetGroup: z.string().optional(),
  securityGroupIds: z.array(z.string()),
  parameterGroup: z.string().optional(),
  port: z.number().int().optional(),
  numCacheClusters: z.number().int().min(1),
  transitEncryption: z.boolean().optional(),
  atRestEncryption: z.boolean().optional(),
  engineVersion: z.string().optional(),
});

/** AWS target: the snapshots (no files), and what a restore needs to recreate the resources. */
const awsPart = z.strictObject({
  region: z.string(),
  rds: z.strictObject({ instanceIdentifier: z.string(), snapshotIdentifier: z.string(), snapshotArn: z.string().optional(), status: z.string(), settings: rdsSettings }),
  elasticache: z.strictObject({ replicationGroupId: z.string(), snapshotName: z.string(), status: z.string(), settings: cacheSettings }),
});

export const manifestSchema = z.strictObject({
  kind: z.literal(MANIFEST_KIND),
  version: z.literal(1),
  /** The folder's name: UTC time, e.g. 20251127T020000Z (plus -table-NAME for one table). */
  id: z.string(),
  env: z.string(),
  engine: z.enum(["embedded", "docker", "aws"]),
  scope: z.enum(["full", "table"]),
  startedAt: z.iso.datetime(),
  completedAt: z.iso.datetime(),
  seconds: z.number().min(0),
  specHash: z.string(),
  toolkit: z.string(),
  postgres: postgresPart.optional(),
  redis: redisPart.optional(),
  aws: awsPart.optional(),
  files: z.array(fileEntry),
  /** sha256 of the canonical JSON of every other field. */
  checksum: z.string().regex(/^[0-9a-f]{64}$/),
});

export type Manifest = z.infer<typeof manifestSchema>;
export type ManifestBody = Omit<Manifest, "checksum">;
export type ManifestFile = z.infer<typeof fileEntry>;

/** The manifest with its checksum. */
export function sealManifest(body: ManifestBody): Manifest {
  return { ...body, checksum: manifestChecksum(body) };
}

/** SHA-256 of a sealed document's canonical JSON, its own `checksum` left out. */
export function manifestChecksum(body: object): string {
  const { checksum: _ignored, ...rest } = body as { checksum?: string };
  return createHash("sha256").update(canonicalJson(rest)).digest("hex");
}

/**
 * Parses a sealed document (a backup's manifest.json or physical.json): JSON, the schema, then
 * its checksum; returns the problems (naming the key) instead of throwing.
 */
export function parseSealed<T extends { checksum: string }>(text: string, schema: z.ZodType<T>): { manifest?: T; problems: string[] } {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    return { problems: [`is not valid JSON (${(error as Error).message})`] };
  }
  const result = schema.safeParse(raw);
  if (!result.success) {
    return { problems: result.error.issues.slice(0, 5).map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`) };
  }
  if (manifestChecksum(result.data) !== result.data.checksum) return { problems: [`checksum does not match its content (the manifest was changed or damaged)`] };
  return { manifest: result.data, problems: [] };
}

/** Parses manifest text; returns the problems (naming the key) instead of throwing. */
export function parseManifest(text: string): { manifest?: Manifest; problems: string[] } {
  return parseSealed(text, manifestSchema);
}

export function manifestText(manifest: Manifest): string {
  return JSON.stringify(manifest, null, 2) + "\n";
}
