#!/usr/bin/env node
/**
 * Runs a command — `node bin/cpi.mjs NAME [args]` runs scripts/NAME.ts — as an ES module
 * bundled by esbuild into .build/commands/NAME/ (git-ignored). tsx's loader costs about half a
 * second per start on a 2-core machine, more than the whole of `verify`; a bundle starts like
 * plain Node.
 * The bundle is rebuilt (about 0.1 s) whenever a source under scripts/ or lib/ is newer, so
 * what runs is always the code in the tree. Dependencies stay in node_modules (not bundled).
 */
import { existsSync, readdirSync, renameSync, rmSync, statSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const [name, ...args] = process.argv.slice(2);
const entry = name && /^[a-z][a-z-]*$/.test(name) && path.join(root, "scripts", `${name}.ts`);
if (!entry || !existsSync(entry)) {
  const known = readdirSync(path.join(root, "scripts")).filter((f) => f.endsWith(".ts")).map((f) => f.slice(0, -3));
  if (name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(`Usage: cpi COMMAND [options]   (the same as npm run COMMAND -- [options]; cpi COMMAND --help)\nCommands: ${known.join(", ")}\n`);
    process.exit(0);
  }
  process.stderr.write(`cpi: unknown command ${JSON.stringify(name ?? "")}; commands: ${known.join(", ")}\n`);
  process.exit(64);
}
// One folder per command: its entry plus the chunks of its dynamic imports (code splitting keeps
// `await import()` lazy, so a local backup never loads the AWS SDK's modules).
const outdir = path.join(root, ".build", "commands", name);
const bundle = path.join(outdir, `${name}.mjs`);

if (!existsSync(bundle) || newestSource() > statSync(bundle).mtimeMs) {
  const esbuild = await import("esbuild");
  // A private temp folder, then rename: concurrent runs never import a half-written bundle.
  const temp = `${outdir}.${process.pid}.tmp`;
  rmSync(temp, { recursive: true, force: true });
  await esbuild.build({
    entryPoints: { [name]: entry },
    outdir: temp,
    bundle: true,
    splitting: true,
    chunkNames: "chunk-[hash]",
    outExtension: { ".js": ".mjs" },
    platform: "node",
    format: "esm",
    target: "node20",
    packages: "external",
    logLevel: "error",
  });
  replaceFolder(temp, outdir);
}
// The command sees the same argv as under tsx: [node, scripts/NAME.ts, ...args].
process.argv = [process.argv[0], entry, ...args];
await import(bundle);

/** The newest mtime of the command's possible sources (scripts/, lib/, package.json). */
function newestSource() {
  let newest = statSync(path.join(root, "package.json")).mtimeMs;
  const walk = (dir) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const file = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(file);
      else if (entry.name.endsWith(".ts")) newest = Math.max(newest, statSync(file).mtimeMs);
    }
  };
  walk(path.join(root, "scripts"));
  walk(path.join(root, "lib"));
  return newest;
}

/**
 * Puts a freshly built folder in place of `target`. A run that looks in between finds no bundle and
 * builds its own; when another run's build lands first, that one (as new as ours) is kept.
 */
function replaceFolder(fresh, target) {
  const old = `${target}.${process.pid}.old`;
  try {
    renameSync(target, old);
  } catch (error) {
    if (error.code !== "ENOENT") throw error;
  }
  try {
    renameSync(fresh, target);
  } catch (error) {
    if (!["ENOTEMPTY", "EEXIST"].includes(error.code)) throw error;
  }
  rmSync(old, { recursive: true, force: true });
  rmSync(fresh, { recursive: true, force: true });
}
