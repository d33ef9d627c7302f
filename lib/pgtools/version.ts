/** Versions of PostgreSQL client tools and servers, as `--version` and `SHOW server_version` print them. */

export interface PgVersion {
  major: number;
  minor: number;
  /** As printed, e.g. `17.12 (Debian 17.12-0+deb13u1)`. */
  text: string;
}

/** Parses `pg_dump (PostgreSQL) 17.12 (Debian …)`, `psql (PostgreSQL) 15.18`, or a bare `16.14`. */
export function parsePgVersion(output: string): PgVersion | undefined {
  const match = /(?:\(PostgreSQL\)\s+)?(\d+)(?:\.(\d+))?(?:\.\d+)?((?:beta|rc|devel)\d*)?(\s+\([^)]*\))?/.exec(output.trim());
  if (!match) return undefined;
  const major = Number(match[1]);
  // 9.6-style versions: the first two numbers are the major. Nothing that old is supported anyway.
  return { major, minor: Number(match[2] ?? 0), text: output.trim().replace(/^.*\(PostgreSQL\)\s+/, "").split("\n")[0]! };
}

/**
 * Whether a psql understands the `\restrict` / `\unrestrict` meta-commands that pg_dump writes
 * since the August 2025 minor releases (17.6, 16.10, 15.14, 14.19, 13.22; 18 from the start).
 */
export function psqlSupportsRestrict(version: PgVersion): boolean {
  const firstMinor: Record<number, number> = { 13: 22, 14: 19, 15: 14, 16: 10, 17: 6 };
  if (version.major >= 18) return true;
  const needed = firstMinor[version.major];
  return needed !== undefined && version.minor >= needed;
}

/** "17.12" for messages. */
export function shortVersion(version: PgVersion): string {
  return `${version.major}.${version.minor}`;
}
