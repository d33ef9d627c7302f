/**
 * Backups in a repository (a bucket): uploaded from the folder the local backup wrote (every
 * file streamed from disk, checked against the manifest's SHA-256, the manifest LAST, so a
 * backup is complete in the bucket exactly when its manifest object exists), listed from their
 * manifests, downloaded into a local staging folder (each object checked while it streams)
 * for the existing restore and recovery paths, and pruned by the same retention rules.
 */
import { createReadStream, createWriteStream, mkdirSync, readFileSync, rmSync } from "node:fs";
import path from "node:path";
import { pipeline } from "node:stream/promises";
import { hashFile } from "../files.js";
import { MANIFEST_FILE, parseManifest, type Manifest } from "../manifest.js";
import { parsePhysicalManifest, PHYSICAL_MANIFEST_FILE, type PhysicalManifest } from "../physical/manifest.js";
import { planRetention, type BackupEntry } from "../retention.js";
import { repositoryKeys, RepositoryObjectError, type ObjectStore, type ObjectInfo } from "./objects.js";

/** Objects of a backup with no manifest this old are leftovers of a killed upload (a running one finishes well within it). */
export const INCOMPLETE_AFTER_MS = 3_600_000;

export interface UploadReport {
  id: string;
  location: string;
  files: { name: string; bytes: number; sha256: string }[];
  seconds: number;
}

/**
 * Uploads a finished local backup folder: its files, then its manifest (manifest.json or
 * physical.json). Resolves only once every object is stored and confirmed by HEAD.
 */
export async function uploadBackup(repo: ObjectStore, env: string, dir: string, progress?: (m: string) => void, uploader?: string): Promise<UploadReport> {
  const started = Date.now();
  const physical = readIfExists(path.join(dir, PHYSICAL_MANIFEST_FILE));
  const manifestName = physical !== undefined ? PHYSICAL_MANIFEST_FILE : MANIFEST_FILE;
  const text = physical ?? readFileSync(path.join(dir, MANIFEST_FILE), "utf8");
  const parsed = physical !== undefined ? parsePhysicalManifest(text) : parseManifest(text);
  if (!parsed.manifest) throw new Error(`${path.join(dir, manifestName)}: ${parsed.problems.join("; ")}`);
  const manifest = parsed.manifest as Manifest | PhysicalManifest;
  const id = path.basename(dir);
  const uploaded: UploadReport["files"] = [];
  for (const f of [...manifest.files, { ...(await hashFile(path.join(dir, manifestName))), name: manifestName }]) {
    const key = repositoryKeys.backupFile(env, id, f.name);
    progress?.(`backup: uploading ${f.name} (${(f.bytes / 1048576).toFixed(1)} MiB) to ${repo.locate(key)}`);
    await repo.put(key, createReadStream(path.join(dir, f.name)), { sha256: f.sha256, bytes: f.bytes, ...(uploader ? { metadata: { uploader } } : {}) });
    const head = await repo.head(key);
    if (!head || head.sha256 !== f.sha256 || head.bytes !== f.bytes) throw new RepositoryObjectError(repo.locate(key), `not confirmed after upload (HEAD: ${head ? `${head.bytes} bytes, sha256 ${head.sha256 ?? "none"}` : "no such object"})`);
    uploaded.push({ name: f.name, bytes: f.bytes, sha256: f.sha256 });
  }
  return { id, location: repo.locate(repositoryKeys.backup(env, id)), files: uploaded, seconds: (Date.now() - started) / 1000 };
}

function readIfExists(file: string): string | undefined {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return undefined;
  }
}

export interface RemoteBackup {
  id: string;
  location: string;
  kind: "logical" | "physical";
  objects: ObjectInfo[];
  bytes: number;
  logical?: Manifest;
  physical?: PhysicalManifest;
}

export interface RemoteListing {
  location: string;
  backups: RemoteBackup[];
  /** Backups whose manifest is missing (an upload under way, or killed). */
  incomplete: { id: string; location: string; objects: ObjectInfo[]; newest: Date }[];
  /** Manifests that do not parse, or another environment's. */
  unrecognised: { id: string; location: string; why: string }[];
}

/** The backups of an environment in the repository (manifests downloaded and checked). */
export async function listRemoteBackups(repo: ObjectStore, env: string): Promise<RemoteListing> {
  const prefix = repositoryKeys.backups(env);
  const byId = new Map<string, ObjectInfo[]>();
  for (const o of await repo.list(prefix)) {
    const id = o.key.slice(prefix.length).split("/")[0]!;
    if (!id) continue;
    byId.set(id, [...(byId.get(id) ?? []), o]);
  }
  const listing: RemoteListing = { location: repo.locate(prefix), backups: [], incomplete: [], unrecognised: [] };
  for (const [id, objects] of [...byId].sort(([a], [b]) => a.localeCompare(b))) {
    const location = repo.locate(repositoryKeys.backup(env, id));
    const names = new Set(objects.map((o) => o.key.split("/").at(-1)!));
    const manifestName = names.has(PHYSICAL_MANIFEST_FILE) ? PHYSICAL_MANIFEST_FILE : names.has(MANIFEST_FILE) ? MANIFEST_FILE : undefined;
    if (!manifestName) {
      listing.incomplete.push({ id, location, objects, newest: new Date(Math.max(...objects.map((o) => o.lastModified.getTime()))) });
      continue;
    }
    let text: string;
    try {
      text = await readSmall(repo, repositoryKeys.backupFile(env, id, manifestName));
    } catch (error) {
      if (error instanceof RepositoryObjectError) {
        listing.unrecognised.push({ id, location, why: error.message });
        continue;
      }
      throw error;
    }
    const bytes = objects.reduce((n, o) => n + o.bytes, 0);
    if (manifestName === PHYSICAL_MANIFEST_FILE) {
      const { manifest, problems } = parsePhysicalManifest(text);
      if (!manifest) listing.unrecognised.push({ id, location, why: `${PHYSICAL_MANIFEST_FILE}: ${problems.join("; ")}` });
      else if (manifest.env !== env) listing.unrecognised.push({ id, location, why: `a backup of '${manifest.env}'` });
      else listing.backups.push({ id, location, kind: "physical", objects, bytes, physical: manifest });
    } else {
      const { manifest, problems } = parseManifest(text);
      if (!manifest) listing.unrecognised.push({ id, location, why: `${MANIFEST_FILE}: ${problems.join("; ")}` });
      else if (manifest.env !== env) listing.unrecognised.push({ id, location, why: `a backup of '${manifest.env}'` });
      else listing.backups.push({ id, location, kind: "logical", objects, bytes, logical: manifest });
    }
  }
  return listing;
}

/** A small object's text, checked against its SHA-256. */
export async function readSmall(repo: ObjectStore, key: string): Promise<string> {
  const { body } = await repo.get(key);
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

/** Downloads one object to a file, checked as it streams; a bad one leaves no file. */
export async function downloadObject(repo: ObjectStore, key: string, file: string, expectSha256?: string): Promise<{ metadata: Record<string, string> }> {
  const temp = path.join(path.dirname(file), `.${path.basename(file)}.download-${process.pid}`);
  try {
    const { body, head } = await repo.get(key, { expectSha256 });
    await pipeline(body, createWriteStream(temp, { mode: 0o600 }));
    const { renameSync } = await import("node:fs");
    renameSync(temp, file);
    return { metadata: head.metadata };
  } catch (error) {
    rmSync(temp, { force: true });
    throw error;
  }
}

/**
 * Downloads a backup into `dir` (created): every file its manifest lists, checked against the
 * manifest's SHA-256 and the object's, then the manifest. Refuses, naming the object, a backup
 * without a manifest.
 */
export async function downloadBackup(repo: ObjectStore, env: string, id: string, dir: string, progress?: (m: string) => void, only?: "manifest"): Promise<"logical" | "physical"> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const physicalKey = repositoryKeys.backupFile(env, id, PHYSICAL_MANIFEST_FILE);
  const logicalKey = repositoryKeys.backupFile(env, id, MANIFEST_FILE);
  const physical = await repo.head(physicalKey);
  const key = physical ? physicalKey : logicalKey;
  if (!physical && !(await repo.head(logicalKey))) {
    const parts = await repo.list(repositoryKeys.backup(env, id));
    throw new RepositoryObjectError(repo.locate(logicalKey), parts.length ? `no such object: backup ${id} is incomplete (${parts.length} object(s) without a manifest: an upload that did not finish); not used` : `no such object: there is no backup ${id}`);
  }
  const text = await readSmall(repo, key);
  const parsed = physical ? parsePhysicalManifest(text) : parseManifest(text);
  if (!parsed.manifest) throw new RepositoryObjectError(repo.locate(key), parsed.problems.join("; "));
  if (only !== "manifest") {
    for (const f of parsed.manifest.files) {
      progress?.(`restore: downloading ${repo.locate(repositoryKeys.backupFile(env, id, f.name))} (${(f.bytes / 1048576).toFixed(1)} MiB)`);
      await downloadObject(repo, repositoryKeys.backupFile(env, id, f.name), path.join(dir, f.name), f.sha256);
    }
  }
  const { writeFileAtomic } = await import("../../fs.js");
  writeFileAtomic(path.join(dir, physical ? PHYSICAL_MANIFEST_FILE : MANIFEST_FILE), text, 0o600);
  return physical ? "physical" : "logical";
}

/** The id `--from latest` means: the newest complete full logical backup. */
export function latestLogical(listing: RemoteListing): RemoteBackup | undefined {
  return listing.backups.filter((b) => b.kind === "logical" && b.logical!.scope === "full").sort((a, b) => a.logical!.startedAt.localeCompare(b.logical!.startedAt)).at(-1);
}

export function entryOf(b: RemoteBackup): BackupEntry {
  const m = b.logical!;
  const scope = m.scope === "table" ? `table:${Object.keys(m.postgres?.tables ?? {}).join(",")}` : "full";
  return { dir: b.location, id: b.id, scope, createdAt: new Date(m.startedAt), bytes: m.files.reduce((n, f) => n + f.bytes, 0) };
}

export interface RemotePruneReport {
  location: string;
  dryRun: boolean;
  kept: { id: string; reasons: string[] }[];
  removed: { id: string; location: string; bytes: number }[];
  removedIncomplete: { id: string; location: string; objects: number }[];
  keptBase: string[];
  removedBase: { id: string; location: string; bytes: number }[];
  removedWal: { name: string; bytes: number }[];
  keepWalFrom?: string;
  unrecognised: { id: string; location: string; why: string }[];
}

/**
 * Retention in the bucket: logical backups by keepDaily/keepWeekly, base backups by keepBase and
 * the WAL objects older than the oldest kept base backup's start; the objects of an incomplete
 * backup once its newest object is an hour old (a running upload is never swept).
 */
export async function pruneRemote(
  repo: ObjectStore,
  env: string,
  policy: { keepDaily: number; keepWeekly: number; keepBase: number },
  options: { dryRun?: boolean; now?: number; /** Whether the upload that wrote an object (its `uploader` metadata) has ended: a killed one on this host. */ uploadEnded?: (uploader: string) => boolean } = {},
): Promise<RemotePruneReport> {
  const listing = await listRemoteBackups(repo, env);
  const now = options.now ?? Date.now();
  const logical = listing.backups.filter((b) => b.kind === "logical");
  const decisions = planRetention(logical.map(entryOf), policy.keepDaily, policy.keepWeekly);
  const removed = decisions.filter((d) => !d.keep).map((d) => logical.find((b) => b.id === d.entry.id)!);
  const physical = listing.backups.filter((b) => b.kind === "physical").sort((a, b) => a.physical!.postgres.stopTime.localeCompare(b.physical!.postgres.stopTime));
  const keptBase = physical.slice(-policy.keepBase);
  const removedBase = physical.slice(0, Math.max(0, physical.length - policy.keepBase));
  const incomplete: RemoteListing["incomplete"] = [];
  for (const i of listing.incomplete) {
    if (now - i.newest.getTime() > INCOMPLETE_AFTER_MS) incomplete.push(i);
    else if (options.uploadEnded) {
      const uploader = (await repo.head(i.objects[0]!.key))?.metadata.uploader;
      if (uploader && options.uploadEnded(uploader)) incomplete.push(i);
    }
  }
  const removedWal: { name: string; bytes: number }[] = [];
  const oldest = keptBase[0]?.physical!.postgres.startWal;
  if (oldest) {
    // Segment names sort by timeline first; compare the log/segment part (the last 16 digits) as the recovery does.
    const from = oldest.slice(8);
    for (const o of await repo.list(repositoryKeys.wal(env))) {
      const name = o.key.split("/").at(-1)!;
      const m = /^[0-9A-F]{8}([0-9A-F]{16})(?:\.[0-9A-F]{8}\.backup|\.partial)?$/.exec(name);
      if (m && m[1]! < from) removedWal.push({ name, bytes: o.bytes });
    }
  }
  if (!options.dryRun) {
    for (const b of [...removed, ...removedBase]) await repo.delete(manifestFirst(b.objects.map((o) => o.key)));
    for (const i of incomplete) await repo.delete(i.objects.map((o) => o.key));
    await repo.delete(removedWal.map((w) => repositoryKeys.walFile(env, w.name)));
  }
  return {
    location: listing.location,
    dryRun: options.dryRun === true,
    kept: decisions.filter((d) => d.keep).map((d) => ({ id: d.entry.id, reasons: d.reasons })),
    removed: removed.map((b) => ({ id: b.id, location: b.location, bytes: b.bytes })),
    removedIncomplete: incomplete.map((i) => ({ id: i.id, location: i.location, objects: i.objects.length })),
    keptBase: keptBase.map((b) => b.id),
    removedBase: removedBase.map((b) => ({ id: b.id, location: b.location, bytes: b.bytes })),
    removedWal,
    keepWalFrom: oldest,
    unrecognised: listing.unrecognised,
  };
}

/** The manifest goes first: a deletion cut short leaves an incomplete backup, never a complete-looking one with parts missing. */
function manifestFirst(keys: string[]): string[] {
  const isManifest = (k: string) => k.endsWith(`/${MANIFEST_FILE}`) || k.endsWith(`/${PHYSICAL_MANIFEST_FILE}`);
  return [...keys.filter(isManifest), ...keys.filter((k) => !isManifest(k))];
}
