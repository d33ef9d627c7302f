#!/usr/bin/env node
/**
 * Runs a command — `node bin/cpi.mjs NAME [args]` runs scripts/NAME.ts — as the ES module that
 * the build (bin/build.mjs: `npm ci`'s prepare, `npm run build`) bundled into .build/commands/NAME/.
 * tsx's loader costs about half a second per start on a 2-core machine, more than the whole of
 * `verify`; a bundle starts like plain Node. A command with no bundle yet is built on its first run.
 */
import { existsSync } from "node:fs";
import path from "node:path";
import { ROOT, buildCommand, bundlePath, commandNames } from "./build.mjs";

const [name, ...args] = process.argv.slice(2);
const known = commandNames();
if (!name || !known.includes(name)) {
  if (name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(`Usage: cpi COMMAND [options]   (the same as npm run COMMAND -- [options]; cpi COMMAND --help)\nCommands: ${known.join(", ")}\n`);
    process.exit(0);
  }
  process.stderr.write(`cpi: unknown command ${JSON.stringify(name ?? "")}; commands: ${known.join(", ")}\n`);
  process.exit(64);
}
const bundle = bundlePath(name);
if (!existsSync(bundle)) await buildCommand(name);
// The command sees the same argv as under tsx: [node, scripts/NAME.ts, ...args].
process.argv = [process.argv[0], path.join(ROOT, "scripts", `${name}.ts`), ...args];
await import(bundle);
