/**
 * Redis backup and restore.
 *
 * Backup: BGSAVE, then wait for that save to finish by watching INFO persistence (rdb_saves grows,
 * no save in progress, last status ok: no fixed sleep), then copy the RDB file Redis just wrote
 * (a file copy for the embedded engine, `docker cp` for a container) and check it with
 * redis-check-rdb, which also counts its keys for the manifest.
 *
 * Restore: with `appendonly yes`, Redis loads the AOF and ignores dump.rdb, so copying an RDB into
 * place restores nothing. The server is stopped, the old files are set aside, the RDB is placed,
 * and Redis starts with `appendonly no` so that it loads it; then `CONFIG SET appendonly yes`
 * writes a fresh AOF from the loaded data (waited for), and the spec's config is written back.
 * Any failure puts the old files back and restarts Redis on them.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, renameSync, rmSync } from "node:fs";
import path from "node:path";
import type { Redis } from "ioredis";
import { CliError, EXIT } from "../errors.js";
import { withRedis } from "../db/clients.js";
import { serviceUser, type ServiceUser } from "../state/paths.js";
import { embeddedRedisConf, findRedisServer, redisPid, setAsideDirs, SET_ASIDE_PREFIX, startRedis, stopRedis, writeRedisConf } from "../engines/embedded/redis-server.js";
import { type LocalEnvironment } from "../env/environment.js";
import { docker } from "../engines/docker/engine.js";
import type { Manifest } from "./manifest.js";
import { fsyncFile, hashFile } from "./files.js";
import type { ManifestFile } from "./manifest.js";
import { parseInfo, parseKeyspace, totalKeys } from "../db/redis-info.js";
import { run } from "../process.js";


export const RDB_FILE = "redis.rdb";

/** Time limits: a save or an AOF rewrite of a 256 MB dataset takes seconds; these only bound a hang. */
const SAVE_TIMEOUT_MS = 10 * 60_000;

export type RedisPart = NonNullable<Manifest["redis"]>;


async function persistence(redis: Redis): Promise<Map<string, string>> {
  return parseInfo(await redis.info("persistence"));
}

async function pause(ms: number): Promise<void> {
  await new Promise((r) => setTimeout(r, ms));
}

/** Polls INFO persistence until `done` holds, backing off from 20 ms to 250 ms. */
async function waitPersistence(redis: Redis, what: string, done: (info: Map<string, string>) => boolean): Promise<Map<string, string>> {
  const deadline = Date.now() + SAVE_TIMEOUT_MS;
  let delay = 20;
  for (;;) {
    const info = await persistence(redis);
    if (done(info)) return info;
    if (Date.now() > deadline) throw new CliError(`Redis: ${what} did not finish within ${SAVE_TIMEOUT_MS / 60_000} min`, EXIT.ERROR);
    await pause(delay);
    delay = Math.min(250, delay * 2);
  }
}

/** BGSAVE and wait until that save is on disk. Returns the save's INFO persistence. */
export async function bgsaveAndWait(redis: Redis): Promise<void> {
  const idle = (i: Map<string, string>) => i.get("rdb_bgsave_in_progress") === "0";
  for (let attempt = 0; ; attempt++) {
    const before = await waitPersistence(redis, "a running background save", idle);
    const saves = Number(before.get("rdb_saves") ?? NaN);
    const lastSave = Number(await redis.lastsave());
    let reply: unknown;
    try {
      // SCHEDULE: when an AOF rewrite runs, the save starts right after it instead of failing.
      reply = await redis.call("BGSAVE", "SCHEDULE");
    } catch (error) {
      if (/already in progress/i.test((error as Error).message) && attempt < 20) continue; // another save started meanwhile: ours comes after it
      throw new CliError(`Redis BGSAVE failed: ${(error as Error).message}`, EXIT.ERROR);
    }
    if (!/started|scheduled/i.test(String(reply))) throw new CliError(`Redis BGSAVE answered ${JSON.stringify(reply)}`, EXIT.ERROR);
    // Started: the save running now is ours. Scheduled (an AOF rewrite runs): no other save can
    // run before it ends, so the next save counted after this reply is ours.
    const baseline = /scheduled/i.test(String(reply)) ? Number((await persistence(redis)).get("rdb_saves") ?? NaN) : saves;
    const after = await waitPersistence(redis, "BGSAVE", (i) => idle(i) && (Number.isFinite(baseline) ? Number(i.get("rdb_saves")) > baseline : true));
    // Without rdb_saves (older servers), LASTSAVE moving on marks the end of our save.
    if (!Number.isFinite(saves)) await waitLastSave(redis, lastSave);
    if (after.get("rdb_last_bgsave_status") !== "ok") throw new CliError(`Redis background save failed (rdb_last_bgsave_status:${after.get("rdb_last_bgsave_status")}); see the server's log`, EXIT.ERROR);
    return;
  }
}

async function waitLastSave(redis: Redis, previous: number): Promise<void> {
  const deadline = Date.now() + SAVE_TIMEOUT_MS;
  while (Number(await redis.lastsave()) <= previous) {
    if (Date.now() > deadline) throw new CliError("Redis: LASTSAVE did not move after BGSAVE", EXIT.ERROR);
    await pause(100);
  }
}

export interface RedisSnapshot {
  part: RedisPart;
  file: ManifestFile;
}

/** BGSAVE, copy of the RDB into `dir`, check and count with redis-check-rdb. */
export async function snapshotRedis(local: LocalEnvironment, dir: string, onBytes?: (bytes: number) => void): Promise<RedisSnapshot> {
  const dest = path.join(dir, RDB_FILE);
  return withRedis(local.redisConnection("admin"), async (redis) => {
    const serverVersion = parseInfo(await redis.info("server")).get("redis_version") ?? "unknown";
    const [, dataDir] = (await redis.config("GET", "dir")) as string[];
    const [, dbfilename] = (await redis.config("GET", "dbfilename")) as string[];
    const [, appendonly] = (await redis.config("GET", "appendonly")) as string[];
    await bgsaveAndWait(redis);
    const keyspace = parseKeyspace(await redis.info("keyspace"));
    const source = path.posix.join(dataDir!, dbfilename!);
    let file: ManifestFile;
    if (local.docker) {
      await docker(local.docker.binary, ["cp", `${local.docker.redis}:${source}`, dest], { timeoutMs: 600_000 });
      chmodSync(dest, 0o600);
      await fsyncFile(dest);
      file = await hashFile(dest);
    } else {
      // Redis writes a temp file and renames it over dump.rdb: the copy is of one whole file even
      // if another save replaces it meanwhile.
      copyFileSync(source, dest);
      chmodSync(dest, 0o600);
      await fsyncFile(dest);
      file = await hashFile(dest);
      onBytes?.(file.bytes);
    }
    const check = await checkRdb(dest, local);
    return { file, part: { serverVersion, file: RDB_FILE, keys: check.keys, expires: check.expires, keyspace, appendonly: appendonly === "yes" } };
  });
}

// ---- redis-check-rdb -------------------------------------------------------------------------

export interface RdbCheck {
  keys: number;
  expires: number;
  alreadyExpired: number;
}

/**
 * Runs redis-check-rdb on a file: the CRC64 inside the RDB and its structure. Uses the host's
 * redis-check-rdb (or redis-server, which is the same binary), else the environment's Redis image.
 */
export async function checkRdb(file: string, local?: LocalEnvironment): Promise<RdbCheck> {
  const candidates = ["/usr/bin/redis-check-rdb", "/usr/local/bin/redis-check-rdb", ...(process.env.REDIS_SERVER_BIN ? [process.env.REDIS_SERVER_BIN] : []), "/usr/bin/redis-server", "/usr/local/bin/redis-server"];
  const local_ = candidates.find((c) => existsSync(c));
  let output: { code: number | null; text: string };
  if (local_) {
    // redis-server switches to its checker when argv[0] names redis-check-rdb.
    output = await runCapture(local_, [file], "redis-check-rdb");
  } else if (local?.docker) {
    const image = (await docker(local.docker.binary, ["inspect", "--format", "{{.Config.Image}}", local.docker.redis])).trim();
    output = await runCapture(local.docker.binary, ["run", "--rm", "--network", "none", "--log-driver", "none", "-v", `${path.resolve(file)}:/check/dump.rdb:ro`, "--entrypoint", "redis-check-rdb", image, "/check/dump.rdb"]);
  } else {
    throw new CliError("redis-check-rdb was not found (it checks RDB files before they are used)", EXIT.ERROR, "install Redis 7: apt-get install -y redis-server (or set REDIS_SERVER_BIN)");
  }
  const number = (label: string) => Number(new RegExp(`\\[info\\] (\\d+) ${label}`).exec(output.text)?.[1] ?? NaN);
  const keys = number("keys read");
  if (output.code !== 0 || !/RDB looks OK/.test(output.text) || !Number.isFinite(keys)) {
    const why = output.text.split("\n").find((l) => /error|unexpected|fail|wrong|invalid|checksum/i.test(l)) ?? output.text.trim().split("\n").slice(-2).join(" | ");
    throw new CliError(`${path.basename(file)} is not a valid RDB file: ${why.trim()}`, EXIT.PROBLEM);
  }
  return { keys, expires: number("expires") || 0, alreadyExpired: number("already expired") || 0 };
}

async function runCapture(file: string, args: string[], argv0?: string): Promise<{ code: number | null; text: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { argv0, stdio: ["ignore", "pipe", "pipe"] });
    let text = "";
    child.stdout.on("data", (d) => (text += d));
    child.stderr.on("data", (d) => (text += d));
    child.once("error", reject);
    child.once("close", (code) => resolve({ code, text }));
  });
}

// ---- restore ---------------------------------------------------------------------------------

export interface RedisRestoreReport {
  keysLoaded: number;
  keysExpiredOnLoad: number;
  keys: number;
  appendonly: boolean;
  aofRewritten: boolean;
  seconds: number;
}

/**
 * A Redis restore that is live but can still be undone: the previous files are kept aside until
 * `commit()` (the whole restore succeeded) or put back by `rollback()` (PostgreSQL's part failed).
 */
export interface RestoredRedis {
  report: RedisRestoreReport;
  commit(): Promise<void>;
  rollback(): Promise<void>;
}

/** Checks after a load: every key of the RDB was loaded or had expired meanwhile. */
function checkLoaded(info: Map<string, string>, expectedKeys: number | undefined): { loaded: number; expired: number } {
  const loaded = Number(info.get("rdb_last_load_keys_loaded") ?? NaN);
  const expired = Number(info.get("rdb_last_load_keys_expired") ?? 0);
  if (expectedKeys !== undefined && Number.isFinite(loaded) && loaded + expired !== expectedKeys) {
    throw new CliError(`Redis loaded ${loaded} keys (${expired} had expired) but the backup holds ${expectedKeys}`, EXIT.PROBLEM);
  }
  return { loaded, expired };
}

/** `CONFIG SET appendonly yes` and wait until the AOF rewrite it starts has finished. */
async function enableAof(redis: Redis): Promise<void> {
  const before = Number((await persistence(redis)).get("aof_rewrites") ?? 0);
  await redis.config("SET", "appendonly", "yes");
  const info = await waitPersistence(
    redis,
    "the AOF rewrite after CONFIG SET appendonly yes",
    (i) => i.get("aof_rewrite_in_progress") === "0" && i.get("aof_rewrite_scheduled") === "0" && Number(i.get("aof_rewrites") ?? 0) > before,
  );
  if (info.get("aof_last_bgrewrite_status") !== "ok" || info.get("aof_enabled") !== "1") {
    throw new CliError(`Redis: the AOF rewrite failed (aof_last_bgrewrite_status:${info.get("aof_last_bgrewrite_status")})`, EXIT.ERROR);
  }
}

/** Restores an embedded environment's Redis from an RDB file (see the module comment). */
export async function restoreRedisEmbedded(local: LocalEnvironment, rdb: string, expectedKeys: number | undefined, log: (m: string) => void): Promise<RestoredRedis> {
  const started = Date.now();
  const { spec, paths, connections } = local;
  const credentials = connections.credentials.redis;
  const user = serviceUser();
  const bin = findRedisServer(log);
  const port = spec.redis.port;
  const confOptions = { port, adminPassword: credentials.adminPassword, appPassword: credentials.appPassword };
  const aside = path.join(paths.redisDir, `${SET_ASIDE_PREFIX}${randomBytes(4).toString("hex")}`);
  const live = { rdb: path.join(paths.redisDir, "dump.rdb"), aof: path.join(paths.redisDir, "appendonlydir") };

  const wasRunning = redisPid(paths) !== undefined;
  log("redis: stopping the server to place the RDB");
  await stopRedis(paths, port, credentials.adminPassword);
  mkdirSync(aside, { mode: 0o700 });
  for (const f of Object.values(live)) if (existsSync(f)) renameSync(f, path.join(aside, path.basename(f)));
  try {
    const staging = `${live.rdb}.restore-${randomBytes(4).toString("hex")}`;
    copyFileSync(rdb, staging);
    chmodSync(staging, 0o600);
    chownTo(staging, user);
    renameSync(staging, live.rdb);
    writeRedisConf(paths, embeddedRedisConf(spec, paths, { ...confOptions, appendonly: false }), user);
    await startRedis(bin, paths, port, credentials.adminPassword, user);
    const report = await withRedis(local.redisConnection("admin"), async (redis) => {
      const info = await persistence(redis);
      const { loaded, expired } = checkLoaded(info, expectedKeys);
      if (spec.redis.appendonly) {
        log("redis: RDB loaded; writing a new AOF from it (CONFIG SET appendonly yes)");
        await enableAof(redis);
      }
      const keys = totalKeys(await redis.info("keyspace"));
      return { keysLoaded: loaded, keysExpiredOnLoad: expired, keys };
    });
    // Persist: the spec's own config (appendonly as the spec says) for every later start.
    writeRedisConf(paths, embeddedRedisConf(spec, paths, confOptions), user);
    return {
      report: { ...report, appendonly: spec.redis.appendonly, aofRewritten: spec.redis.appendonly, seconds: (Date.now() - started) / 1000 },
      // This restore supersedes any set aside by earlier, interrupted ones.
      commit: async () => {
        for (const dir of [aside, ...setAsideDirs(paths)]) rmSync(dir, { recursive: true, force: true });
      },
      rollback,
    };
  } catch (error) {
    await rollback();
    throw error;
  }

  async function rollback(): Promise<void> {
    log("redis: putting the previous data back");
    await stopRedis(paths, port, credentials.adminPassword).catch(() => undefined);
    for (const f of Object.values(live)) rmSync(f, { recursive: true, force: true });
    for (const f of Object.values(live)) if (existsSync(path.join(aside, path.basename(f)))) renameSync(path.join(aside, path.basename(f)), f);
    rmSync(aside, { recursive: true, force: true });
    writeRedisConf(paths, embeddedRedisConf(spec, paths, confOptions), user);
    if (wasRunning) await startRedis(bin, paths, port, credentials.adminPassword, user).catch(() => undefined);
  }
}

function chownTo(file: string, user: ServiceUser | undefined): void {
  if (user) chownSync(file, user.uid, user.gid);
}

/**
 * Restores a docker target's Redis: the container is stopped; a helper container on the same
 * volume sets the old files aside, places the RDB, runs redis-server with appendonly no (and,
 * when the spec wants AOF, CONFIG SET appendonly yes until the rewrite is done) and shuts down;
 * then the environment's container starts again on the new files.
 */
export async function restoreRedisDocker(local: LocalEnvironment, rdb: string, expectedKeys: number | undefined, log: (m: string) => void): Promise<RestoredRedis> {
  const started = Date.now();
  const { binary, redis: container } = local.docker!;
  const { spec } = local;
  const inspect = JSON.parse(await docker(binary, ["inspect", container]))[0] as { Config: { Image: string }; Mounts: { Name?: string; Source: string; Destination: string; Type: string }[] };
  const mount = inspect.Mounts.find((m) => m.Destination === "/data");
  if (!mount) throw new CliError(`container ${container} has no volume on /data`, EXIT.ERROR);
  const volume = mount.Type === "volume" ? mount.Name! : mount.Source;
  const image = inspect.Config.Image;
  const tag = randomBytes(4).toString("hex");
  const aside = `/data/.restore-old-${tag}`;
  const helper = `${container}-restore-${tag}`;
  const helperRun = (script: string, extra: string[] = []) =>
    docker(binary, ["run", "--rm", "--network", "none", "--log-driver", "none", "-v", `${volume}:/data`, ...extra, "--entrypoint", "sh", image, "-c", script], { timeoutMs: 300_000 });

  log(`redis: stopping ${container} to place the RDB`);
  await docker(binary, ["stop", container]);
  let placed = false;
  try {
    await helperRun(
      `set -e; mkdir -p ${aside}; for f in dump.rdb appendonlydir; do if [ -e /data/$f ]; then mv /data/$f ${aside}/; fi; done; ` +
        `cp /restore/dump.rdb /data/dump.rdb; chown -R redis:redis /data; chmod 600 /data/dump.rdb`,
      ["-v", `${path.resolve(rdb)}:/restore/dump.rdb:ro`],
    );
    placed = true;
    // The helper: the image's entrypoint drops to the redis user; no password (no network at all).
    await docker(binary, ["run", "-d", "--name", helper, "--network", "none", "--log-driver", "none", "-v", `${volume}:/data`, image, "redis-server", "--port", "6379", "--bind", "127.0.0.1", "--dir", "/data", "--appendonly", "no", "--save", ""]);
    const cli = async (...args: string[]) => (await docker(binary, ["exec", helper, "redis-cli", ...args])).trim();
    const deadline = Date.now() + 60_000;
    while ((await cli("PING").catch(() => "")) !== "PONG") {
      if (Date.now() > deadline) throw new CliError(`Redis restore helper ${helper} did not answer`, EXIT.ERROR);
      await pause(50);
    }
    const loadedInfo = parseInfo(await cli("INFO", "persistence"));
    const { loaded, expired } = checkLoaded(loadedInfo, expectedKeys);
    if (spec.redis.appendonly) {
      log("redis: RDB loaded; writing a new AOF from it (CONFIG SET appendonly yes)");
      const before = Number(loadedInfo.get("aof_rewrites") ?? 0);
      await cli("CONFIG", "SET", "appendonly", "yes");
      const limit = Date.now() + SAVE_TIMEOUT_MS;
      for (;;) {
        const i = parseInfo(await cli("INFO", "persistence"));
        if (i.get("aof_rewrite_in_progress") === "0" && i.get("aof_rewrite_scheduled") === "0" && Number(i.get("aof_rewrites") ?? 0) > before) {
          if (i.get("aof_last_bgrewrite_status") !== "ok") throw new CliError("Redis: the AOF rewrite failed in the restore helper", EXIT.ERROR);
          break;
        }
        if (Date.now() > limit) throw new CliError("Redis: the AOF rewrite did not finish", EXIT.ERROR);
        await pause(50);
      }
    }
    await cli("SHUTDOWN").catch(() => undefined); // the connection drops as the server exits
    await docker(binary, ["wait", helper], { timeoutMs: 60_000 });
    await docker(binary, ["rm", "-f", helper]);
    await docker(binary, ["start", container]);
    const keys = await waitRedisKeys(local);
    return {
      report: { keysLoaded: loaded, keysExpiredOnLoad: expired, keys, appendonly: spec.redis.appendonly, aofRewritten: spec.redis.appendonly, seconds: (Date.now() - started) / 1000 },
      commit: async () => void (await docker(binary, ["exec", container, "rm", "-rf", aside]).catch(() => undefined)),
      rollback,
    };
  } catch (error) {
    await rollback();
    throw error;
  }

  async function rollback(): Promise<void> {
    log("redis: putting the previous data back");
    await run(binary, ["rm", "-f", helper]).catch(() => undefined);
    await run(binary, ["stop", container]).catch(() => undefined);
    if (placed) {
      await helperRun(`rm -rf /data/dump.rdb /data/appendonlydir; for f in dump.rdb appendonlydir; do if [ -e ${aside}/$f ]; then mv ${aside}/$f /data/; fi; done; rm -rf ${aside}`).catch(() => undefined);
    }
    await run(binary, ["start", container]).catch(() => undefined);
  }
}

/** Waits until the container's Redis answers (it may still be LOADING) and returns its key count. */
async function waitRedisKeys(local: LocalEnvironment): Promise<number> {
  const deadline = Date.now() + 60_000;
  let last = "";
  while (Date.now() < deadline) {
    try {
      return await withRedis({ ...local.redisConnection("admin"), connectTimeout: 2_000 }, async (redis) => {
        await redis.ping();
        return totalKeys(await redis.info("keyspace"));
      });
    } catch (error) {
      last = (error as Error).message;
      await pause(100);
    }
  }
  throw new CliError(`Redis did not come back after the restore: ${last}`, EXIT.ERROR);
}
