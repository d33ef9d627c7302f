/**
 * Which addresses servers listen on, read from the kernel's socket tables (/proc/net/tcp and
 * tcp6) instead of by connecting to the machine's other addresses: tests send traffic only to
 * loopback. A socket bound to 0.0.0.0 or :: (every address) is not loopback.
 */
import { readdirSync, readFileSync, readlinkSync } from "node:fs";

export interface ListeningSocket {
  /** 127.0.0.1, ::1, 0.0.0.0, ::, or another address. */
  address: string;
  port: number;
  inode: string;
}

function ipv6(hex: string): string {
  // /proc writes IPv6 as four 32-bit words, each in host (little-endian) byte order.
  const words = hex.match(/.{8}/g)!.map((w) => w.match(/../g)!.reverse().join(""));
  const groups = words.join("").match(/.{4}/g)!.map((g) => parseInt(g, 16).toString(16));
  const text = groups.join(":");
  if (text === "0:0:0:0:0:0:0:0") return "::";
  if (text === "0:0:0:0:0:0:0:1") return "::1";
  if (text.startsWith("0:0:0:0:0:ffff:")) {
    const [a, b] = groups.slice(6).map((g) => parseInt(g, 16));
    return `::ffff:${a! >> 8}.${a! & 255}.${b! >> 8}.${b! & 255}`;
  }
  return text;
}

/** Every listening TCP socket of the machine (IPv4 and IPv6). */
export function listeningSockets(): ListeningSocket[] {
  const out: ListeningSocket[] = [];
  for (const [table, v6] of [["/proc/net/tcp", false], ["/proc/net/tcp6", true]] as const) {
    let text: string;
    try {
      text = readFileSync(table, "utf8");
    } catch {
      continue; // no IPv6 in this kernel
    }
    for (const line of text.split("\n").slice(1)) {
      const cols = line.trim().split(/\s+/);
      if (cols.length < 10 || cols[3] !== "0A") continue; // 0A: LISTEN
      const [hex, port] = cols[1]!.split(":");
      const address = v6 ? ipv6(hex!) : hex!.match(/../g)!.reverse().map((b) => parseInt(b, 16)).join(".");
      out.push({ address, port: parseInt(port!, 16), inode: cols[9]! });
    }
  }
  return out;
}

/** The listening sockets a process holds (its fds' socket inodes). */
export function listeningSocketsOf(pid: number): ListeningSocket[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const inode = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1];
      if (inode) inodes.add(inode);
    } catch {
      // closed meanwhile
    }
  }
  return listeningSockets().filter((s) => inodes.has(s.inode));
}

/** `ADDRESS:PORT` of each listening socket of a process (`[v6]:PORT` for IPv6). */
export function listeningAddressesOf(pid: number): string[] {
  return listeningSocketsOf(pid).map((s) => (s.address.includes(":") ? `[${s.address}]:${s.port}` : `${s.address}:${s.port}`));
}

/** 127.0.0.0/8, ::1, or IPv4-mapped loopback. */
export function isLoopback(address: string): boolean {
  return /^127\./.test(address) || address === "::1" || /^::ffff:127\./.test(address);
}
