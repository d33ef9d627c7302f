#!/usr/bin/env node
/**
 * The build: bundles each command, scripts/NAME.ts, with esbuild into .build/commands/NAME/
 * (git-ignored), which bin/cpi.mjs imports. `npm ci` runs it (package.json `prepare`), as do
 * `npm run build` and the test suite's global setup; the launcher builds a command whose bundle is
 * missing (an install with --ignore-scripts, a copied tree) on its first run.
 * Dependencies stay in node_modules (not bundled).
 *
 *   node bin/build.mjs            every command
 *   node bin/build.mjs NAME...    only these
 */
import { existsSync, readdirSync, renameSync, rmSync } from "node:fs";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

/** The commands: one per scripts/NAME.ts. */
export function commandNames() {
  return readdirSync(path.join(ROOT, "scripts")).filter((f) => /^[a-z][a-z-]*\.ts$/.test(f)).map((f) => f.slice(0, -3)).sort();
}

/** Where a command's bundle lives. */
export function bundlePath(name) {
  return path.join(ROOT, ".build", "commands", name, `${name}.mjs`);
}

/**
 * Bundles one command into its own folder: its entry plus the chunks of its dynamic imports (code
 * splitting keeps `await import()` lazy, so a local backup never loads the AWS SDK's modules).
 * Built in a private temp folder and renamed into place: a concurrent run never imports a
 * half-written bundle.
 */
export async function buildCommand(name) {
  const esbuild = await import("esbuild");
  const outdir = path.dirname(bundlePath(name));
  const temp = `${outdir}.${process.pid}.tmp`;
  rmSync(temp, { recursive: true, force: true });
  await esbuild.build({
    entryPoints: { [name]: path.join(ROOT, "scripts", `${name}.ts`) },
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

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const known = commandNames();
  const asked = process.argv.slice(2);
  const unknown = asked.filter((n) => !known.includes(n));
  if (unknown.length) {
    process.stderr.write(`build: unknown command ${unknown.map((n) => JSON.stringify(n)).join(", ")}; commands: ${known.join(", ")}\n`);
    process.exit(64);
  }
  const names = asked.length ? asked : known;
  const started = performance.now();
  try {
    // Two at a time: esbuild is itself parallel, and the machines have two cores.
    for (let i = 0; i < names.length; i += 2) await Promise.all(names.slice(i, i + 2).map(buildCommand));
  } catch (error) {
    process.stderr.write(`build: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  }
  const missing = names.filter((n) => !existsSync(bundlePath(n)));
  if (missing.length) {
    process.stderr.write(`build: no bundle for ${missing.join(", ")}\n`);
    process.exit(1);
  }
  process.stderr.write(`build: ${names.length} command(s) → .build/commands in ${((performance.now() - started) / 1000).toFixed(1)} s\n`);
}
