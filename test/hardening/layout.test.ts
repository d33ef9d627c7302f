/**
 * The folder map of the README's design section, enforced: each folder imports only the folders
 * its row allows, so a target never reaches into another target and the spec depends on nothing.
 * The rule list is here, next to the check; the README states the same rows in words.
 */
import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { PROJECT_DIR } from "../../lib/spec/load.js";

/** The shared modules at the top of lib/: they import each other and lib/spec only. */
const SHARED = "lib/*.ts";
const ALLOWED: Record<string, string[]> = {
  "lib/spec": [SHARED],
  [SHARED]: ["lib/spec"],
  "lib/db": ["lib/spec", SHARED],
  "lib/state": ["lib/spec", SHARED],
  // The engines: each builds and runs its servers from the spec and the state; neither imports the other.
  "lib/engines/embedded": ["lib/spec", "lib/db", "lib/state", SHARED],
  "lib/engines/docker": ["lib/spec", "lib/db", "lib/state", SHARED],
  "lib/pgtools": ["lib/spec", "lib/state", "lib/engines/docker", SHARED],
  // The one Environment interface, over both engines and servers given by URL.
  "lib/env": ["lib/spec", "lib/state", "lib/engines/embedded", "lib/engines/docker", "lib/pgtools", SHARED],
  "lib/aws": ["lib/spec", "lib/db", "lib/state", "lib/drift", SHARED],
  "lib/backup": ["lib/spec", "lib/db", "lib/state", "lib/env", "lib/engines/embedded", "lib/engines/docker", "lib/pgtools", "lib/aws", "lib/drift", SHARED],
  "lib/verify": ["lib/spec", "lib/db", "lib/state", "lib/env", "lib/engines/embedded", "lib/engines/docker", "lib/backup", "lib/drift", SHARED],
  "lib/drift": ["lib/spec", "lib/db", "lib/env", "lib/aws", "lib/verify", SHARED],
  "lib/monitor": ["lib/spec", "lib/db", "lib/env", "lib/backup", "lib/verify", SHARED],
  "lib/maintain": ["lib/spec", "lib/db", "lib/env", "lib/verify", SHARED],
  "lib/cache": ["lib/spec", "lib/db", SHARED],
  "lib/ci-env": ["lib/spec", "lib/db", "lib/state", "lib/engines/embedded", "lib/engines/docker", SHARED],
  "lib/compose": ["lib/spec", "lib/state", "lib/engines/docker", SHARED],
  "lib/docs": ["lib/spec", "lib/aws", SHARED],
  "lib/drill": ["lib/spec", "lib/db", "lib/state", "lib/env", "lib/engines/embedded", "lib/engines/docker", "lib/aws", "lib/backup", "lib/cache", "lib/ci-env", "lib/verify", SHARED],
  "lib/bench": ["lib/spec", "lib/db", "lib/state", "lib/env", "lib/engines/embedded", "lib/engines/docker", "lib/pgtools", "lib/backup", "lib/ci-env", "lib/drift", "lib/monitor", "lib/verify", SHARED],
  stacks: ["lib/spec", "lib/aws", "lib/engines/docker"],
  policy: ["lib/spec"],
  "index.ts": ["lib/spec", "lib/docs", "stacks"],
  // scripts/ may import any of lib/; nothing imports scripts/.
  scripts: ["lib/*"],
};


function folderOf(file: string): string {
  const rel = path.relative(PROJECT_DIR, file).split(path.sep);
  if (rel[0] === "lib") return rel.length === 2 ? SHARED : rel[1] === "engines" ? `lib/engines/${rel[2]}` : `lib/${rel[1]}`;
  return rel[0]!;
}

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sources(path.join(dir, e.name)) : e.name.endsWith(".ts") ? [path.join(dir, e.name)] : []));
}

/** Every relative import (static, `import type`, and `await import()`) that crosses a folder. */
function crossings(): { from: string; to: string; where: string }[] {
  const files = [...["lib", "scripts", "stacks", "policy"].flatMap((d) => sources(path.join(PROJECT_DIR, d))), path.join(PROJECT_DIR, "index.ts")];
  return files.flatMap((file) =>
    [...readFileSync(file, "utf8").matchAll(/(?:from\s+|import\()\s*"(\.{1,2}\/[^"]+)"/g)].flatMap((m) => {
      const target = path.resolve(path.dirname(file), m[1]!);
      const [from, to] = [folderOf(file), folderOf(target)];
      return from === to ? [] : [{ from, to, where: `${path.relative(PROJECT_DIR, file)} → ${m[1]}` }];
    }),
  );
}

describe("the folder map", () => {
  const all = crossings();

  it("covers every folder that imports across folders", () => {
    expect(all.length).toBeGreaterThan(100);
    expect([...new Set(all.map((c) => c.from))].filter((f) => !(f in ALLOWED))).toEqual([]);
  });

  it("holds: no folder imports what its row does not allow (no target imports another target)", () => {
    const allowed = (from: string, to: string) => ALLOWED[from]!.some((a) => a === to || (a === "lib/*" && (to.startsWith("lib/") || to === SHARED)));
    expect(all.filter((c) => !allowed(c.from, c.to)).map((c) => `${c.from} may not import ${c.to}: ${c.where}`)).toEqual([]);
  });

  it("nothing imports scripts/, and the Pulumi stacks import no command-side folder", () => {
    expect(all.filter((c) => c.to === "scripts").map((c) => c.where)).toEqual([]);
    expect(all.filter((c) => c.from === "stacks" && /^lib\/(env|state|backup|verify|drift|drill|bench)$/.test(c.to)).map((c) => c.where)).toEqual([]);
  });
});
