/**
 * README sections generated from code: the config keys table (schema + key docs) and the
 * capability table (lib/docs/capabilities.ts). `npm run docs` rewrites them; a test fails when
 * the README is behind the code.
 */
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { capabilities, capabilitiesMarkdown } from "./capabilities.js";
import { configKeysMarkdown } from "../spec/keys.js";
import { PROJECT_DIR, parseSpec } from "../spec/load.js";

export const README = path.join(PROJECT_DIR, "README.md");

/** Generated blocks by name. */
export function generatedBlocks(): Record<string, string> {
  // The guide's defaults, independent of any stack's overrides and of this machine's memory.
  const defaults = parseSpec("dev", {}, { memoryBytes: Number.MAX_SAFE_INTEGER });
  const blocks: Record<string, string> = {
    "config-keys": configKeysMarkdown(),
    capabilities: capabilitiesMarkdown(capabilities(defaults)),
  };
  const results = path.join(PROJECT_DIR, "bench", "results.md");
  if (existsSync(results)) blocks.bench = readFileSync(results, "utf8").trim();
  return blocks;
}

/** The README with every generated block replaced by its current content. */
export function renderReadme(text: string, blocks = generatedBlocks()): string {
  let out = text;
  for (const [name, content] of Object.entries(blocks)) {
    const pattern = new RegExp(`<!-- generated:${name} -->[\\s\\S]*?<!-- /generated:${name} -->`);
    out = out.replace(pattern, () => `<!-- generated:${name} -->\n${content}\n<!-- /generated:${name} -->`);
  }
  return out;
}
