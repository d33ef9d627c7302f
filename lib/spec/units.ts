/**
 * Sizes in each server's own units.
 *
 * PostgreSQL: `B`, `kB`, `MB`, `GB`, `TB`, all powers of 1024, case-sensitive as the server is.
 * Redis: `k`/`m`/`g` are powers of 1000 and `kb`/`mb`/`gb` powers of 1024, case-insensitive;
 * a bare number is bytes.
 */

const PG_UNITS: Record<string, number> = { B: 1, kB: 1024, MB: 1024 ** 2, GB: 1024 ** 3, TB: 1024 ** 4 };
const REDIS_UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1e3,
  kb: 1024,
  m: 1e6,
  mb: 1024 ** 2,
  g: 1e9,
  gb: 1024 ** 3,
};

export const PG_SIZE_HELP = "a whole number with a PostgreSQL unit: B, kB, MB, GB or TB (powers of 1024), e.g. 256MB";
export const REDIS_SIZE_HELP =
  "a whole number of bytes, optionally with a Redis unit: kb/mb/gb (powers of 1024) or k/m/g (powers of 1000), e.g. 256mb";

/** Parses a PostgreSQL size such as `256MB` into bytes; undefined when it is not one. */
export function parsePgSize(text: string): number | undefined {
  const match = /^\s*(\d+)\s*(B|kB|MB|GB|TB)\s*$/.exec(text);
  if (!match) return undefined;
  return Number(match[1]) * PG_UNITS[match[2]!]!;
}

/** Formats bytes as PostgreSQL does in SHOW: the largest unit that divides exactly. */
export function formatPgSize(bytes: number): string {
  for (const unit of ["TB", "GB", "MB", "kB"]) {
    const size = PG_UNITS[unit]!;
    if (bytes >= size && bytes % size === 0) return `${bytes / size}${unit}`;
  }
  return `${bytes}B`;
}

/** Parses a Redis memory size such as `256mb` or `1g` into bytes; undefined when it is not one. */
export function parseRedisSize(text: string | number): number | undefined {
  if (typeof text === "number") return Number.isSafeInteger(text) && text >= 0 ? text : undefined;
  const match = /^\s*(\d+)\s*([a-z]*)\s*$/i.exec(text);
  if (!match) return undefined;
  const unit = REDIS_UNITS[match[2]!.toLowerCase()];
  return unit === undefined ? undefined : Number(match[1]) * unit;
}

/** Formats bytes in Redis's binary units (`mb`, `gb`), as redis.conf conventionally writes them. */
export function formatRedisSize(bytes: number): string {
  for (const unit of ["gb", "mb", "kb"]) {
    const size = REDIS_UNITS[unit]!;
    if (bytes >= size && bytes % size === 0) return `${bytes / size}${unit}`;
  }
  return String(bytes);
}

/** Bytes to a unit count, refusing sizes that are not a whole number of units (RDS wants integers). */
export function bytesToUnits(bytes: number, unitBytes: number, what: string): number {
  if (bytes % unitBytes !== 0) throw new Error(`${what}: ${bytes} bytes is not a whole number of ${unitBytes}-byte units`);
  return bytes / unitBytes;
}

/** Human size for reports (binary units). */
export function humanBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value >= 10 || unit === 0 ? Math.round(value) : value.toFixed(1)} ${units[unit]}`;
}
