/**
 * vitest's global setup: builds every command's bundle (bin/build.mjs) once before the suites, so
 * tests that run commands as users do (`node bin/cpi.mjs NAME`) run the code in the tree.
 */
import { execFileSync } from "node:child_process";
import path from "node:path";
import { PROJECT_DIR } from "../../lib/spec/load.js";

export default function setup(): void {
  execFileSync(process.execPath, [path.join(PROJECT_DIR, "bin", "build.mjs")], { stdio: ["ignore", "inherit", "inherit"], timeout: 300_000 });
}
