/**
 * Clean-up of the scheduled ElastiCache snapshots: manual snapshots never expire, so the ones the
 * hourly schedule made (name prefix `<replication group>-sched-`) and that are older than
 * aws.cacheSnapshots.keepHours are deleted. Automatic snapshots and snapshots made by hand (other
 * names) are never touched. This module is also the Lambda function's code: the stack bundles
 * `handler` with esbuild (the AWS SDK is the runtime's own).
 */
import { DeleteSnapshotCommand, DescribeSnapshotsCommand, ElastiCacheClient, type Snapshot } from "@aws-sdk/client-elasticache";

export interface PruneOptions {
  replicationGroupId: string;
  /** Only snapshots whose names start with this. */
  namePrefix: string;
  keepHours: number;
  now?: Date;
  /** List only. */
  dryRun?: boolean;
}

export interface PruneResult {
  deleted: string[];
  kept: string[];
}

/** The name prefix of the schedule's snapshots. */
export function scheduledSnapshotPrefix(replicationGroupId: string): string {
  return `${replicationGroupId}-sched-`;
}

/** When a snapshot was taken: its oldest node snapshot's creation time. */
function takenAt(s: Snapshot): number | undefined {
  const times = (s.NodeSnapshots ?? []).map((n) => n.SnapshotCreateTime?.getTime()).filter((t): t is number => t !== undefined);
  return times.length ? Math.min(...times) : undefined;
}

export async function pruneCacheSnapshots(client: ElastiCacheClient, options: PruneOptions): Promise<PruneResult> {
  const cutoff = (options.now ?? new Date()).getTime() - options.keepHours * 3600_000;
  const result: PruneResult = { deleted: [], kept: [] };
  let marker: string | undefined;
  for (let page = 0; page < 100; page++) {
    const r = await client.send(new DescribeSnapshotsCommand({ ReplicationGroupId: options.replicationGroupId, SnapshotSource: "manual", Marker: marker, MaxRecords: 50 }));
    for (const s of r.Snapshots ?? []) {
      const name = s.SnapshotName ?? "";
      if (!name.startsWith(options.namePrefix)) continue;
      const t = takenAt(s);
      if (t === undefined || t >= cutoff || s.SnapshotStatus !== "available") {
        result.kept.push(name);
        continue;
      }
      if (!options.dryRun) await client.send(new DeleteSnapshotCommand({ SnapshotName: name }));
      result.deleted.push(name);
    }
    marker = r.Marker;
    if (!marker) break;
  }
  return result;
}

/** The Lambda entry point: configured by environment variables the stack sets. */
export async function handler(): Promise<PruneResult> {
  const replicationGroupId = process.env.REPLICATION_GROUP_ID!;
  const result = await pruneCacheSnapshots(new ElastiCacheClient({}), {
    replicationGroupId,
    namePrefix: scheduledSnapshotPrefix(replicationGroupId),
    keepHours: Number(process.env.KEEP_HOURS),
  });
  console.log(JSON.stringify(result));
  return result;
}
