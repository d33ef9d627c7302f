#!/usr/bin/env tsx
/** Runbook: regenerate the README's generated sections (config keys, capabilities, benchmark results). */
import { readFileSync } from "node:fs";
import { runCommand } from "../lib/cli.js";
import { writeFileAtomic } from "../lib/fs.js";
import { README, renderReadme } from "../lib/docs/readme.js";

await runCommand({
  name: "docs",
  summary: "Regenerate the README's generated tables from the code.",
  usage: "[--check] [--json]",
  flags: { check: { type: "boolean", help: "exit 1 when the README is out of date, without writing" } },
  async run(ctx) {
    const before = readFileSync(README, "utf8");
    const after = renderReadme(before);
    const stale = before !== after;
    if (!ctx.flags.check && stale) writeFileAtomic(README, after, 0o644);
    return { code: ctx.flags.check && stale ? 1 : 0, data: { stale, written: !ctx.flags.check && stale }, human: stale ? (ctx.flags.check ? "README is out of date: run npm run docs" : "README updated") : "README is up to date" };
  },
});
