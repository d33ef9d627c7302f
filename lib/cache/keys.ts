/**
 * The guide's key naming convention, `{domain}:{entity}:{id}:{attribute}` (e.g. `crypto:BTC:price`,
 * `market:BTC:ohlcv:latest`, `stats:daily:2024-01-01`), and its TTL tiers.
 *
 * A key has 2 to 4 parts. A part may not contain `:` (it would shift every later part), whitespace
 * or control characters, or a glob character (`* ? [ ] \`), so a key is never mistaken for a
 * pattern and `crypto:BTC:*` matches exactly the keys built under `crypto, BTC`. The domain is
 * lowercase (letters, digits, `_`, `-`); other parts keep their case (`BTC`).
 */
import type { Spec } from "../spec/schema.js";

export type KeyPart = string | number;

/** A key or pattern that breaks the naming convention; says which part and why. */
export class CacheKeyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CacheKeyError";
  }
}

const DOMAIN = /^[a-z][a-z0-9_-]*$/;
// eslint-disable-next-line no-control-regex
const FORBIDDEN = /[:\s*?[\]\\\x00-\x1f\x7f]/;

function checkPart(part: KeyPart, index: number, allowWildcard: boolean): string {
  const text = typeof part === "number" ? (Number.isFinite(part) ? String(part) : "") : part;
  const where = index === 0 ? "domain" : `part ${index + 1}`;
  if (allowWildcard && text === "*") return text;
  if (text === "") throw new CacheKeyError(`cache key ${where} is empty`);
  if (index === 0 && !DOMAIN.test(text)) throw new CacheKeyError(`cache key domain ${JSON.stringify(text)}: use lowercase letters, digits, _ and - (starting with a letter)`);
  const bad = FORBIDDEN.exec(text);
  if (bad) {
    const what = bad[0] === ":" ? "':' (the separator)" : /\s/.test(bad[0]) ? "whitespace" : /[*?[\]\\]/.test(bad[0]) ? `the glob character ${JSON.stringify(bad[0])}` : "a control character";
    throw new CacheKeyError(`cache key ${where} ${JSON.stringify(text)} contains ${what}; parts of {domain}:{entity}:{id}:{attribute} may not`);
  }
  return text;
}

/**
 * Builds a key from 2-4 parts: `cacheKey("crypto", "BTC", "price")` → `crypto:BTC:price`.
 * Throws CacheKeyError for a part that breaks the convention.
 */
export function cacheKey(domain: string, ...parts: [KeyPart, ...KeyPart[]]): string {
  const all = [domain, ...parts];
  if (all.length < 2 || all.length > 4) throw new CacheKeyError(`a cache key has 2 to 4 parts ({domain}:{entity}:{id}:{attribute}); got ${all.length}`);
  return all.map((p, i) => checkPart(p, i, false)).join(":");
}

/**
 * A SCAN pattern for every key under a prefix: `cachePattern("crypto", "BTC")` → `crypto:BTC:*`.
 * A whole part may be `*` (`cachePattern("prediction", "*", "1h")` → `prediction:*:1h:*`); the
 * domain never may, so a pattern cannot match the whole cache.
 */
export function cachePattern(domain: string, ...parts: KeyPart[]): string {
  if (parts.length > 3) throw new CacheKeyError(`a cache key has at most 4 parts; a pattern prefix at most 3 (got ${parts.length + 1})`);
  return [checkPart(domain, 0, false), ...parts.map((p, i) => checkPart(p, i + 1, true)), "*"].join(":");
}

/**
 * Checks a raw pattern from the command line: it must start with a literal domain
 * (`crypto:BTC:*`, `market:*`), so that nothing short of an admin's FLUSHDB empties the cache.
 */
export function checkInvalidationPattern(pattern: string): string {
  if (!/^[a-z][a-z0-9_-]*:/.test(pattern)) {
    throw new CacheKeyError(`pattern ${JSON.stringify(pattern)} must start with a literal domain and ':' (e.g. crypto:BTC:* or market:*)`);
  }
  if (/\s/.test(pattern)) throw new CacheKeyError(`pattern ${JSON.stringify(pattern)} contains whitespace`);
  return pattern;
}

/** The guide's TTL tiers: short (frequently updated), medium, long (relatively static). */
export type TtlTier = "short" | "medium" | "long";

/** The tiers' seconds from the spec (guide: 5 min, 30 min, 1 h). */
export function ttlTiers(spec: Pick<Spec, "cache">): Record<TtlTier, number> {
  return { short: spec.cache.ttlShortSeconds, medium: spec.cache.ttlMediumSeconds, long: spec.cache.ttlLongSeconds };
}
