import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Commands run from their bundles (bin/cpi.mjs): build them from the tree first.
    globalSetup: ["test/support/build.ts"],
    // forks: Pulumi's runtime keeps global state that threads would share between files.
    pool: "forks",
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 120_000,
    reporters: ["default"],
  },
});
