/**
 * What the killed-backup and killed-restore tests share: an ephemeral environment filled with
 * enough data that a backup or restore can be killed in the middle, a scratch folder, and the
 * counts that show which data the environment holds.
 */
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Redis } from "ioredis";
import { afterAll, beforeAll } from "vitest";
import { withPg } from "../../lib/db/clients.js";
import type { StartedEmbeddedEnvironment } from "../../lib/engines/embedded/environment.js";
import { backupsPossible } from "./docker.js";
import { useEphemeralEnvironment } from "./embedded.js";
import { fillForBackup } from "./commands.js";

export interface KillFixture {
  environment(): StartedEmbeddedEnvironment;
  /** A scratch folder for the file's backups (removed after the file). */
  workDir(): string;
  /** market_data rows, whether the row written after the backup exists, Redis keys. */
  counts(): Promise<{ candles: number; after: boolean; redisKeys: number }>;
}

export function useKillFixture(): KillFixture {
  const environment = useEphemeralEnvironment();
  let work: string | undefined;
  beforeAll(async () => {
    if (!backupsPossible) return;
    await fillForBackup(environment().connections, 20_000);
    work = mkdtempSync(path.join(os.tmpdir(), "cpi-rel-killed-"));
  }, 120_000);
  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });
  return {
    environment,
    workDir() {
      if (!work) throw new Error("the fixture's folder was not made");
      return work;
    },
    async counts() {
      const env = environment();
      const { candles, after } = await withPg(env.connections.postgresConfig("admin"), async (c) => (await c.query("SELECT (SELECT count(*) FROM market_data)::int AS candles, EXISTS (SELECT 1 FROM cryptocurrencies WHERE symbol = 'AFTER') AS after")).rows[0]);
      const redis = new Redis({ ...env.connections.redisOptions("admin"), maxRetriesPerRequest: 1 });
      const redisKeys = await redis.dbsize();
      redis.disconnect();
      return { candles, after, redisKeys };
    },
  };
}
