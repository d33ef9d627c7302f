/**
 * WAL archive arithmetic and checks: segment names, LSNs, timeline history files, and the long
 * page header at the start of every segment (its system identifier and its address), read from
 * the first 40 bytes only. These are what `restore --to` checks before it touches anything:
 * every segment from the base backup's start to the target is in the archive, in order, and
 * from this cluster.
 */
import { closeSync, existsSync, openSync, readdirSync, readFileSync, readSync, statSync } from "node:fs";
import path from "node:path";

/** 24 hex digits: timeline, log, segment (16 MB segments: the default wal_segment_size). */
export const SEGMENT_NAME = /^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$/;
const HISTORY_NAME = /^([0-9A-F]{8})\.history$/;
/** XLP_PAGE_MAGIC of PostgreSQL 16's WAL pages. */
export const WAL_PAGE_MAGIC_16 = 0xd113;
const XLP_LONG_HEADER = 0x0002;
export const DEFAULT_SEGMENT_BYTES = 16 * 1024 * 1024;

/** `0/3000028` → bigint. */
export function parseLsn(lsn: string): bigint {
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(lsn.trim());
  if (!m) throw new Error(`not an LSN: ${JSON.stringify(lsn)} (expected e.g. 0/3000028)`);
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}

export function formatLsn(value: bigint): string {
  return `${(value >> 32n).toString(16).toUpperCase()}/${(value & 0xffffffffn).toString(16).toUpperCase()}`;
}

export function isLsn(text: string): boolean {
  return /^[0-9A-Fa-f]{1,8}\/[0-9A-Fa-f]{1,8}$/.test(text.trim());
}

/** Segment number of an LSN. */
export function segmentOf(lsn: bigint, segmentBytes = DEFAULT_SEGMENT_BYTES): bigint {
  return lsn / BigInt(segmentBytes);
}

export function segmentName(tli: number, segno: bigint, segmentBytes = DEFAULT_SEGMENT_BYTES): string {
  const perLog = 0x100000000n / BigInt(segmentBytes);
  const hex = (n: bigint | number, w = 8) => n.toString(16).toUpperCase().padStart(w, "0");
  return `${hex(tli)}${hex(segno / perLog)}${hex(segno % perLog)}`;
}

export function parseSegmentName(name: string, segmentBytes = DEFAULT_SEGMENT_BYTES): { tli: number; segno: bigint } | undefined {
  const m = SEGMENT_NAME.exec(name);
  if (!m) return undefined;
  const perLog = 0x100000000n / BigInt(segmentBytes);
  return { tli: parseInt(m[1]!, 16), segno: BigInt(`0x${m[2]}`) * perLog + BigInt(`0x${m[3]}`) };
}

/** One archived segment. */
export interface ArchivedSegment {
  name: string;
  tli: number;
  segno: bigint;
  /** When it was archived (basic_archive renames a complete copy into place). */
  archivedAt: Date;
  bytes: number;
}

export interface ArchiveContents {
  dir: string;
  segments: ArchivedSegment[];
  /** Timeline history files, by timeline. */
  histories: Map<number, TimelineHistoryEntry[]>;
  /** Everything else basic_archive left there (backup history files, `.partial` segments). */
  other: string[];
}

/** A line of a timeline history file: `parentTLI switchpoint reason`. */
export interface TimelineHistoryEntry {
  tli: number;
  /** The first LSN that is NOT on `tli` any more (where the child timeline begins). */
  switchpoint: bigint;
}

export function readArchive(dir: string): ArchiveContents {
  const segments: ArchivedSegment[] = [];
  const histories = new Map<number, TimelineHistoryEntry[]>();
  const other: string[] = [];
  if (!existsSync(dir)) return { dir, segments, histories, other };
  for (const name of readdirSync(dir)) {
    const seg = parseSegmentName(name);
    if (seg) {
      const st = statSync(path.join(dir, name));
      segments.push({ name, ...seg, archivedAt: st.mtime, bytes: st.size });
      continue;
    }
    const h = HISTORY_NAME.exec(name);
    if (h) {
      histories.set(parseInt(h[1]!, 16), parseHistory(readFileSync(path.join(dir, name), "utf8")));
      continue;
    }
    if (!name.startsWith(".") && !name.startsWith("archtemp")) other.push(name);
  }
  segments.sort((a, b) => (a.segno === b.segno ? a.tli - b.tli : a.segno < b.segno ? -1 : 1));
  return { dir, segments, histories, other: other.sort() };
}

export function parseHistory(text: string): TimelineHistoryEntry[] {
  const entries: TimelineHistoryEntry[] = [];
  for (const line of text.split("\n")) {
    const m = /^\s*(\d+)\s+([0-9A-Fa-f]+\/[0-9A-Fa-f]+)/.exec(line);
    if (m) entries.push({ tli: Number(m[1]), switchpoint: parseLsn(m[2]!) });
  }
  return entries;
}

/**
 * The timeline recovery follows (recovery_target_timeline = 'latest'): the newest timeline whose
 * history descends from `fromTli` at or after `startLsn`.
 */
export function latestTimeline(archive: ArchiveContents, fromTli: number, startLsn: bigint): number {
  let best = fromTli;
  for (const [tli, entries] of archive.histories) {
    if (tli <= best) continue;
    const fork = entries.find((e) => e.tli === fromTli);
    if (tli > fromTli && fork && fork.switchpoint >= startLsn) best = tli;
  }
  return best;
}

/**
 * The timelines a segment number may be read from on the way to `targetTli`, newest first. Each
 * timeline of the target's history is read from its begin until the next newer timeline of the
 * history begins (a timeline made by recovering to an earlier point can begin before its parent's
 * own switch, so the newer begins bound it, not its own switchpoint).
 */
export function timelineOfSegment(archive: ArchiveContents, targetTli: number, segno: bigint, segmentBytes = DEFAULT_SEGMENT_BYTES): number[] {
  const history = archive.histories.get(targetTli) ?? [];
  const begins: { tli: number; begin: bigint }[] = [];
  let begin = 0n;
  for (const e of history) {
    begins.push({ tli: e.tli, begin });
    begin = e.switchpoint;
  }
  begins.push({ tli: targetTli, begin });
  const segStart = segno * BigInt(segmentBytes);
  const segEnd = segStart + BigInt(segmentBytes);
  const result: number[] = [];
  let end = 1n << 64n;
  for (let i = begins.length - 1; i >= 0; i--) {
    const { tli, begin: b } = begins[i]!;
    if (b < segEnd && end > segStart && b < end) result.push(tli);
    if (b < end) end = b;
  }
  return result;
}

/** The archived segments recovery can read on its way to `targetTli` (not those of abandoned branches). */
export function segmentsOnPath(archive: ArchiveContents, targetTli: number): ArchivedSegment[] {
  return archive.segments.filter((s) => timelineOfSegment(archive, targetTli, s.segno).includes(s.tli));
}

/** The long page header of a segment file. */
export interface SegmentHeader {
  magic: number;
  pageAddress: bigint;
  systemIdentifier: string;
  segmentBytes: number;
}

export function readSegmentHeader(file: string): SegmentHeader {
  const fd = openSync(file, "r");
  const buf = Buffer.alloc(40);
  try {
    const n = readSync(fd, buf, 0, 40, 0);
    if (n < 40) throw new Error(`${file}: only ${n} bytes; a WAL segment starts with a 40-byte header`);
  } finally {
    closeSync(fd);
  }
  const info = buf.readUInt16LE(2);
  if (!(info & XLP_LONG_HEADER)) throw new Error(`${file}: its first page has no long header (not the start of a WAL segment)`);
  return { magic: buf.readUInt16LE(0), pageAddress: buf.readBigUInt64LE(8), systemIdentifier: buf.readBigUInt64LE(24).toString(), segmentBytes: buf.readUInt32LE(32) };
}

export interface ChainProblem {
  file: string;
  problem: string;
}

export interface ChainCheck {
  /** Segments recovery will read, in order. */
  segments: string[];
  timeline: number;
  problems: ChainProblem[];
}

/**
 * Checks the WAL recovery needs from `startLsn` (the base backup's start) up to segment `lastSegno`:
 * each segment is there (on the timeline recovery will look for), starts at its own address, and
 * carries `systemIdentifier`.
 */
export function checkChain(archive: ArchiveContents, options: { startTli: number; startLsn: bigint; lastSegno: bigint; systemIdentifier: string }): ChainCheck {
  const timeline = latestTimeline(archive, options.startTli, options.startLsn);
  const byName = new Map(archive.segments.map((s) => [s.name, s]));
  const problems: ChainProblem[] = [];
  const used: string[] = [];
  // Like PostgreSQL, once a segment of a newer timeline was read, no older timeline's is.
  let currentTli = 0;
  for (let segno = segmentOf(options.startLsn); segno <= options.lastSegno; segno++) {
    const tlis = timelineOfSegment(archive, timeline, segno).filter((tli) => tli >= currentTli);
    const candidates = (tlis.length ? tlis : [timeline]).map((tli) => segmentName(tli, segno));
    const found = candidates.find((n) => byName.has(n));
    if (found) currentTli = parseSegmentName(found)!.tli;
    if (!found) {
      problems.push({ file: path.join(archive.dir, candidates[0]!), problem: `missing: the WAL chain from ${formatLsn(options.startLsn)} has a gap here` });
      continue;
    }
    used.push(found);
    const file = path.join(archive.dir, found);
    try {
      const header = readSegmentHeader(file);
      if (header.magic !== WAL_PAGE_MAGIC_16) problems.push({ file, problem: `page magic 0x${header.magic.toString(16)} is not PostgreSQL 16's (0x${WAL_PAGE_MAGIC_16.toString(16)})` });
      else if (header.systemIdentifier !== options.systemIdentifier) problems.push({ file, problem: `from another cluster: system identifier ${header.systemIdentifier}, the base backup's is ${options.systemIdentifier}` });
      else if (header.pageAddress !== segno * BigInt(DEFAULT_SEGMENT_BYTES)) problems.push({ file, problem: `starts at ${formatLsn(header.pageAddress)}, not at ${formatLsn(segno * BigInt(DEFAULT_SEGMENT_BYTES))} (renamed or damaged)` });
    } catch (error) {
      problems.push({ file, problem: (error as Error).message });
    }
  }
  return { segments: used, timeline, problems };
}
