/** Redis INFO, parsed once for every reader (verify, monitor, the exporter, cache, backup, drill). */

/** INFO's `key:value` lines as a map (section headers and blank lines skipped). */
export function parseInfo(text: string): Map<string, string> {
  const map = new Map<string, string>();
  for (const line of text.split(/\r?\n/)) {
    const at = line.indexOf(":");
    if (at > 0 && !line.startsWith("#")) map.set(line.slice(0, at), line.slice(at + 1).trim());
  }
  return map;
}

/** The keyspace section's `db0:keys=3,expires=1,avg_ttl=0` lines → { db0: { keys, expires } }. */
export function parseKeyspace(info: string | Map<string, string>): Record<string, { keys: number; expires: number }> {
  const out: Record<string, { keys: number; expires: number }> = {};
  for (const [db, value] of typeof info === "string" ? parseInfo(info) : info) {
    const keys = /(?:^|,)keys=(\d+)/.exec(value);
    const expires = /(?:^|,)expires=(\d+)/.exec(value);
    if (/^db\d+$/.test(db) && keys) out[db] = { keys: Number(keys[1]), expires: Number(expires?.[1] ?? 0) };
  }
  return out;
}

/** Keys in every database. */
export function totalKeys(info: string | Map<string, string>): number {
  return Object.values(parseKeyspace(info)).reduce((n, db) => n + db.keys, 0);
}
