/**
 * npm run images: builds the offline equivalents of postgres:16 and redis:7 from Debian packages
 * (no registry is reachable). Existing, up-to-date images are kept unless --rebuild.
 *
 *   1. the Docker engine answers            (else: how to install or start it)
 *   2. debootstrap + Debian's mirror        (only when something must be built)
 *   3. debian:bookworm / debian:trixie      debootstrap --variant=minbase → docker import
 *   4. postgres:16-offline / redis:7-offline  docker build docker/postgres, docker/redis
 */
import { runCommand, type Command } from "../lib/cli.js";
import { EXIT } from "../lib/errors.js";
import { requireEngine } from "../lib/engines/docker/engine.js";
import { buildOfflineImages, OFFLINE_IMAGES } from "../lib/engines/docker/images.js";
import { humanBytes } from "../lib/spec/units.js";

const flags = {
  rebuild: { type: "boolean", help: "rebuild the base and service images even when present and up to date" },
} as const;

const command: Command<typeof flags> = {
  name: "images",
  summary: "Build the offline PostgreSQL 16 and Redis 7 images from Debian packages (no registry needed).",
  usage: "[--rebuild] [--json]",
  flags,
  details: [
    `Images: ${Object.values(OFFLINE_IMAGES).join(", ")} (Pulumi.ci.yaml's images).`,
    "Needs: a running Docker engine, root, debootstrap and http://deb.debian.org/debian.",
  ].join("\n"),
  async run(ctx) {
    const docker = requireEngine();
    ctx.log(`images: engine answers (${docker})`);
    const report = await buildOfflineImages({ docker, rebuild: ctx.flags.rebuild, log: ctx.log });
    const rows = report.images.map(
      (i) => `  ${i.tag.padEnd(46)} ${i.action.padEnd(7)} ${humanBytes(i.sizeBytes).padStart(8)}  ${i.action === "built" ? `${i.seconds} s` : i.reason}`,
    );
    const built = report.images.filter((i) => i.action === "built").length;
    return {
      code: EXIT.OK,
      data: report,
      human: [`${built ? `built ${built} image(s) in ${report.seconds} s` : "all images up to date"}:`, ...rows].join("\n"),
    };
  },
};

await runCommand(command);
