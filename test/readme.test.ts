/** The README's generated tables (config keys, capabilities, benchmark results) match the code. */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { README, generatedBlocks, renderReadme } from "../lib/docs/readme.js";
import { KEY_DOCS, schemaKeys } from "../lib/spec/keys.js";

describe("README", () => {
  it("documents every spec key (unit, where it applies) and no key that does not exist", () => {
    const keys = schemaKeys().map((k) => k.key);
    expect(keys.filter((k) => !KEY_DOCS[k])).toEqual([]);
    expect(Object.keys(KEY_DOCS).filter((k) => !keys.includes(k))).toEqual([]);
  });

  it("has every generated block, up to date (run npm run docs when this fails)", () => {
    const text = readFileSync(README, "utf8");
    for (const name of Object.keys(generatedBlocks())) expect(text, name).toContain(`<!-- generated:${name} -->`);
    expect(renderReadme(text)).toBe(text);
  });
});
