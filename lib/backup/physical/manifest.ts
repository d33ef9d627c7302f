/**
 * The toolkit's manifest of a base backup (physical.json), beside the server's own
 * backup_manifest: which cluster (system identifier, timeline, server version), which WAL range
 * (start/stop LSN and time), which spec and migration head, and the size and SHA-256 of every file
 * in the folder (the compressed tar, the server's manifest, the Redis RDB). Sealed with its own
 * checksum like manifest.json (lib/backup/manifest.ts), so a changed byte in it is caught too.
 */
import { z } from "zod";
import { manifestChecksum, parseSealed } from "../manifest.js";

export const PHYSICAL_MANIFEST_FILE = "physical.json";
export const PHYSICAL_MANIFEST_KIND = "crypto-prediction-infra/base-backup";
/** The server's manifest (per-file SHA-256 of the data folder), as BASE_BACKUP wrote it. */
export const SERVER_MANIFEST_FILE = "backup_manifest";
export const BASE_TAR_FILE = "base.tar.zst";

const fileName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, { error: "a plain file name" });
const count = z.number().int().min(0);
const lsn = z.string().regex(/^[0-9A-F]{1,8}\/[0-9A-F]{1,8}$/, { error: "an LSN such as 0/3000028" });

const fileEntry = z.strictObject({ name: fileName, bytes: count, sha256: z.string().regex(/^[0-9a-f]{64}$/) });

export const physicalManifestSchema = z.strictObject({
  kind: z.literal(PHYSICAL_MANIFEST_KIND),
  version: z.literal(1),
  id: z.string(),
  env: z.string(),
  engine: z.enum(["embedded", "docker"]),
  startedAt: z.iso.datetime(),
  completedAt: z.iso.datetime(),
  seconds: z.number().min(0),
  specHash: z.string(),
  toolkit: z.string(),
  postgres: z.strictObject({
    serverVersion: z.string(),
    /** pg_control_system(): every WAL segment of this cluster carries it. */
    systemIdentifier: z.string().regex(/^\d+$/),
    timeline: z.number().int().min(1),
    startLsn: lsn,
    stopLsn: lsn,
    /** The first WAL segment recovery needs (in the archive). */
    startWal: z.string(),
    /** Before BASE_BACKUP began / after it had ended: recovery from this backup can reach any time from stopTime on. */
    startTime: z.iso.datetime(),
    stopTime: z.iso.datetime(),
    /** zstd:1 (compressed by the toolkit after the server wrote the tar). */
    compression: z.string(),
    /** The uncompressed tar's size. */
    tarBytes: count,
    migrationHead: z.string().nullable(),
    /** The spec's database (the one a restore verifies). */
    database: z.string(),
  }),
  redis: z
    .strictObject({ serverVersion: z.string(), file: fileName, keys: count, expires: count })
    .optional(),
  files: z.array(fileEntry),
  checksum: z.string().regex(/^[0-9a-f]{64}$/),
});

export type PhysicalManifest = z.infer<typeof physicalManifestSchema>;
export type PhysicalManifestBody = Omit<PhysicalManifest, "checksum">;

export function sealPhysicalManifest(body: PhysicalManifestBody): PhysicalManifest {
  return { ...body, checksum: manifestChecksum(body) };
}

export function parsePhysicalManifest(text: string): { manifest?: PhysicalManifest; problems: string[] } {
  return parseSealed(text, physicalManifestSchema);
}

export function physicalManifestText(manifest: PhysicalManifest): string {
  return JSON.stringify(manifest, null, 2) + "\n";
}

/** The server's backup_manifest: its files with SHA-256, the WAL range, and its own checksum. */
export interface ServerManifest {
  files: { path: string; size: number; sha256?: string }[];
  walRanges: { timeline: number; startLsn: string; endLsn: string }[];
}

/**
 * Parses and checks backup_manifest (PostgreSQL's format, version 1): the Manifest-Checksum
 * (SHA-256 of everything before its line) must match. Returns the problem instead of throwing.
 */
export function parseServerManifest(text: string, sha256: (s: string) => string): { manifest?: ServerManifest; problem?: string } {
  const at = text.lastIndexOf('\n"Manifest-Checksum"');
  if (at < 0) return { problem: "has no Manifest-Checksum" };
  let raw: { Files?: { Path: string; Size: number; "Checksum-Algorithm"?: string; Checksum?: string }[]; "WAL-Ranges"?: { Timeline: number; "Start-LSN": string; "End-LSN": string }[]; "Manifest-Checksum"?: string };
  try {
    raw = JSON.parse(text);
  } catch (error) {
    return { problem: `is not valid JSON (${(error as Error).message})` };
  }
  if (sha256(text.slice(0, at + 1)) !== raw["Manifest-Checksum"]) return { problem: "its Manifest-Checksum does not match its content (changed or damaged)" };
  return {
    manifest: {
      files: (raw.Files ?? []).map((f) => ({ path: f.Path, size: f.Size, sha256: f["Checksum-Algorithm"] === "SHA256" ? f.Checksum : undefined })),
      walRanges: (raw["WAL-Ranges"] ?? []).map((r) => ({ timeline: r.Timeline, startLsn: r["Start-LSN"], endLsn: r["End-LSN"] })),
    },
  };
}
