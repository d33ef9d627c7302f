/**
 * The exporter's HTTP endpoint (`npm run monitor -- --serve [HOST:]PORT`): GET /metrics runs one
 * bounded scrape (./exporter.ts); requests that arrive while one runs share it, so a burst of
 * scrapers costs the servers one set of queries. Binds 127.0.0.1 unless told otherwise: the page
 * is unauthenticated and names tables and sizes, so a non-loopback address needs
 * `allowNonLoopback` (`--allow-non-loopback`).
 */
import http from "node:http";
import { isIP } from "node:net";
import { CliError, EXIT } from "../errors.js";
import type { Environment } from "../env/environment.js";
import type { Spec } from "../spec/schema.js";
import { MetricsCollector, type Scrape } from "./exporter.js";

export interface ListenAddress {
  host: string;
  port: number;
}

/** 127.0.0.0/8, ::1 and localhost. */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, "").toLowerCase();
  if (h === "localhost" || h === "::1" || h === "0:0:0:0:0:0:0:1") return true;
  return isIP(h) === 4 && h.split(".")[0] === "127";
}

/**
 * `--serve` values: `PORT`, `HOST:PORT`, `[IPV6]:PORT`, or `HOST` alone (port: spec.monitor.port).
 * PORT 0 takes a free port (printed when listening).
 */
export function parseListenAddress(value: string, defaultPort: number, options: { allowNonLoopback?: boolean } = {}): ListenAddress {
  const allowed = "expected PORT, HOST:PORT or [IPV6]:PORT, e.g. 9187 or 127.0.0.1:9187";
  const text = value.trim();
  let host = "127.0.0.1";
  let portText: string | undefined;
  const bracketed = /^\[([^\]]+)\](?::(\d*))?$/.exec(text);
  if (/^\d+$/.test(text)) portText = text;
  else if (bracketed) [host, portText] = [bracketed[1]!, bracketed[2] || undefined];
  else if ((text.match(/:/g) ?? []).length === 1) [host, portText] = text.split(":") as [string, string];
  else if (text) host = text;
  if (!host || (portText !== undefined && !/^\d+$/.test(portText))) throw new CliError(`--serve ${JSON.stringify(value)}: ${allowed}`, EXIT.USAGE);
  const port = portText === undefined || portText === "" ? defaultPort : Number(portText);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new CliError(`--serve ${JSON.stringify(value)}: port ${port} is not 0-65535 (0: any free port)`, EXIT.USAGE);
  if (!/^[A-Za-z0-9.:-]+$/.test(host)) throw new CliError(`--serve ${JSON.stringify(value)}: ${JSON.stringify(host)} is not a host name or IP address`, EXIT.USAGE);
  if (!isLoopbackHost(host) && !options.allowNonLoopback) {
    throw new CliError(
      `--serve ${JSON.stringify(value)}: ${host} is not a loopback address; the metrics page has no authentication and names tables, sizes and load`,
      EXIT.USAGE,
      "serve on 127.0.0.1 and let Prometheus reach it locally (or through a proxy with TLS and auth); to bind another address anyway add --allow-non-loopback",
    );
  }
  return { host, port };
}

export interface MetricsServer {
  /** http://HOST:PORT/metrics as bound (the real port when 0 was asked for). */
  url: string;
  address: ListenAddress;
  close(): Promise<void>;
}

export interface ServeOptions {
  /** Called after each scrape (the command logs failures). */
  onScrape?: (scrape: Scrape) => void;
}

/** Starts the endpoint; resolves once it listens. */
export async function serveMetrics(target: Environment, spec: Spec, address: ListenAddress, options: ServeOptions = {}): Promise<MetricsServer> {
  const collector = new MetricsCollector(target, spec);
  let inFlight: Promise<Scrape> | undefined;
  const scrape = () =>
    (inFlight ??= collector
      .scrape()
      .then((result) => {
        options.onScrape?.(result);
        return result;
      })
      .finally(() => (inFlight = undefined)));
  const server = http.createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain" }).end("method not allowed\n");
      return;
    }
    if (path === "/metrics") {
      scrape().then(
        (result) => res.writeHead(200, { "content-type": result.contentType }).end(req.method === "HEAD" ? undefined : result.text),
        (error: unknown) => res.writeHead(500, { "content-type": "text/plain" }).end(`scrape failed: ${(error as Error).message}\n`),
      );
      return;
    }
    if (path === "/") {
      res.writeHead(200, { "content-type": "text/plain" }).end(`crypto-prediction-infra exporter for ${spec.env}: GET /metrics\n`);
      return;
    }
    res.writeHead(404, { "content-type": "text/plain" }).end("not found: GET /metrics\n");
  });
  // Scrapers keep connections alive; close() must not wait for them.
  server.keepAliveTimeout = 15_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", (error: NodeJS.ErrnoException) =>
      reject(
        error.code === "EADDRINUSE"
          ? new CliError(`--serve: ${address.host}:${address.port} is already in use`, EXIT.ERROR, "choose another port (0: any free one), or stop what listens there")
          : error.code === "EADDRNOTAVAIL"
            ? new CliError(`--serve: ${address.host} is not an address of this machine`, EXIT.USAGE)
            : error,
      ),
    );
    server.listen({ host: address.host, port: address.port }, resolve);
  });
  const bound = server.address() as { address: string; port: number };
  const shownHost = bound.address.includes(":") ? `[${bound.address}]` : bound.address;
  return {
    url: `http://${shownHost}:${bound.port}/metrics`,
    address: { host: bound.address, port: bound.port },
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await inFlight?.catch(() => undefined);
      await collector.close();
    },
  };
}
