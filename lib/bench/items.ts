/** The benchmark's items, in the order. */
import { archivingItem } from "./archiving.js";
import { backupItem } from "./backup.js";
import { bucketItem } from "./bucket.js";
import { drillItem } from "./drill.js";
import type { BenchItem } from "./harness.js";
import { operationsItem } from "./operations.js";
import { queriesItem } from "./queries.js";
import { scrapeItem } from "./scrape.js";
import { seedItem } from "./seed.js";
import { startupItem } from "./startup.js";

export const BENCH_ITEMS: BenchItem[] = [startupItem, seedItem, backupItem, operationsItem, drillItem, queriesItem, archivingItem, bucketItem, scrapeItem];
