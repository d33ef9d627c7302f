/** Ports on 127.0.0.1: is one free, who holds it, and a free one for ephemeral environments. */
import { readFileSync, readdirSync, readlinkSync } from "node:fs";
import net from "node:net";
import { CliError, EXIT } from "../errors.js";

/** Resolves true when nothing listens on 127.0.0.1:port (or on all addresses). */
export function isPortFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once("error", () => resolve(false));
    server.listen({ port, host: "127.0.0.1", exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/** A port the OS reports free now (ephemeral range). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen({ port: 0, host: "127.0.0.1" }, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** "name (pid N)" of the local process listening on a TCP port, when /proc tells. */
export function portOwner(port: number): string | undefined {
  const hex = port.toString(16).toUpperCase().padStart(4, "0");
  const inodes = new Set<string>();
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    try {
      for (const line of readFileSync(table, "utf8").split("\n").slice(1)) {
        const cols = line.trim().split(/\s+/);
        if (cols[1]?.endsWith(`:${hex}`) && cols[3] === "0A") inodes.add(cols[9]!);
      }
    } catch {
      // no procfs
    }
  }
  if (!inodes.size) return undefined;
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    try {
      for (const fd of readdirSync(`/proc/${pid}/fd`)) {
        const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
        const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1];
        if (inode && inodes.has(inode)) {
          const name = readFileSync(`/proc/${pid}/comm`, "utf8").trim();
          return `${name} (pid ${pid})`;
        }
      }
    } catch {
      // process gone or not ours to read
    }
  }
  return undefined;
}

/** Fails naming the port, the setting and the process that holds it. */
export async function assertPortFree(port: number, key: string, env: string): Promise<void> {
  if (await isPortFree(port)) return;
  const owner = portOwner(port);
  throw new CliError(
    `port ${port} on 127.0.0.1 (${key}) is already in use${owner ? ` by ${owner}` : ""}`,
    EXIT.ERROR,
    `stop that process, or choose another port: set ${key} in Pulumi.${env}.yaml (or use --ephemeral for free ports)`,
  );
}
