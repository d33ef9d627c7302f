/** The README's generated tables (config keys, capabilities, benchmark results) match the code. */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { README, generatedBlocks, renderReadme } from "../../lib/docs/readme.js";
import { configKeysMarkdown, schemaKeys } from "../../lib/spec/keys.js";
import { schema } from "../../lib/spec/schema.js";

/** Dotted paths of the leaves of a parsed spec (objects walked into, arrays and scalars are leaves). */
function leaves(value: unknown, prefix = ""): string[] {
  if (value === null || typeof value !== "object" || Array.isArray(value)) return [prefix.slice(0, -1)];
  return Object.entries(value).flatMap(([k, v]) => leaves(v, `${prefix}${k}.`));
}

describe("README", () => {
  it("documents every spec key: each setting's .meta() says what it is and where it applies", () => {
    const keys = schemaKeys();
    expect(keys.filter((k) => !k.doc?.about || !k.doc.appliesTo).map((k) => k.key)).toEqual([]);
    // The keys are the schema's settings: every default a parsed spec holds is one, and a key
    // absent from it is one without a default.
    const parsed = leaves(schema.parse({}));
    expect(parsed.filter((p) => !keys.some((k) => k.key === p))).toEqual([]);
    expect(keys.filter((k) => !parsed.includes(k.key) && k.default !== undefined).map((k) => k.key)).toEqual([]);
    expect(keys.find((k) => k.key === "postgres.workMem")).toMatchObject({ default: "16MB", doc: { about: "work_mem" } });
  });

  it("takes the RDS units and apply methods of the config keys table from rdsParameters", () => {
    const row = (key: string) => configKeysMarkdown().split("\n").find((l) => l.startsWith(`| \`${key}\` |`));
    expect(row("postgres.sharedBuffers")).toContain("(RDS: 8 kB pages, pending-reboot)");
    expect(row("postgres.effectiveCacheSize")).toContain("(RDS: 8 kB pages) |");
    expect(row("postgres.workMem")).toContain("(RDS: kB) |");
    expect(row("postgres.maxConnections")).not.toContain("RDS:");
  });

  it("has every generated block, up to date (run npm run docs when this fails)", () => {
    const text = readFileSync(README, "utf8");
    for (const name of Object.keys(generatedBlocks())) expect(text, name).toContain(`<!-- generated:${name} -->`);
    expect(renderReadme(text)).toBe(text);
  });
});
