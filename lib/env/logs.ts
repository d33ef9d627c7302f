/**
 * The servers' logs of a local environment: the embedded servers' log files (postgres.log,
 * redis.log in the state folder), or `docker logs` of the environment's containers.
 */
import { closeSync, existsSync, fstatSync, openSync, readSync } from "node:fs";
import { CliError, EXIT } from "../errors.js";

import { currentUserName } from "../state/paths.js";
import { run } from "../process.js";
import { openEnvironment } from "./environment.js";

export type LogService = "postgres" | "redis";

export interface ServiceLog {
  service: LogService;
  /** The file read, or `docker logs CONTAINER`. */
  source: string;
  lines: string[];
}

/** The last `lines` lines of each service's log (both services unless one is named). */
export async function environmentLogs(env: string, options: { service?: LogService; lines: number }): Promise<ServiceLog[]> {
  const opened = openEnvironment(env);
  const services: LogService[] = options.service ? [options.service] : ["postgres", "redis"];
  if (opened.record.engine === "docker") {
    const { requireEngine } = await import("../engines/docker/engine.js");
    const docker = requireEngine();
    const containers = opened.record.docker?.containers;
    if (!containers) throw new CliError(`state file ${opened.paths.record} names no containers`, EXIT.ERROR, `remove it: npm run env:ci -- --down ${env}`);
    return Promise.all(
      services.map(async (service) => {
        const name = containers[service];
        try {
          // Docker keeps a container's stdout and stderr apart: both are the server's log.
          const { stdout, stderr } = await run(docker, ["logs", "--tail", String(options.lines), name], {});
          return { service, source: `docker logs ${name}`, lines: lastLines(stdout + stderr, options.lines) };
        } catch (error) {
          const e = error as { stderr?: string; message: string };
          throw new CliError(`docker logs ${name} failed: ${(e.stderr || e.message).trim()}`, EXIT.ERROR, `is it there? npm run status -- --env ${env}`);
        }
      }),
    );
  }
  return services.map((service) => {
    const file = service === "postgres" ? opened.paths.pgLog : opened.paths.redisLog;
    return { service, source: file, lines: tailFile(file, options.lines) };
  });
}

/** The last `count` lines of a file, read from its end (a log may be large). */
export function tailFile(file: string, count: number): string[] {
  if (!existsSync(file)) return [];
  let fd: number;
  try {
    fd = openSync(file, "r");
  } catch (error) {
    throw new CliError(`${file} cannot be read by user '${currentUserName()}': ${(error as NodeJS.ErrnoException).code}`, EXIT.ERROR, "run as the user that brought the environment up (as root: sudo npm run logs …)");
  }
  try {
    const size = fstatSync(fd).size;
    const chunk = 64 * 1024;
    let position = size;
    let text = "";
    while (position > 0 && text.split("\n").length <= count + 1) {
      const length = Math.min(chunk, position);
      position -= length;
      const buffer = Buffer.alloc(length);
      readSync(fd, buffer, 0, length, position);
      text = buffer.toString("utf8") + text;
    }
    return lastLines(text, count);
  } finally {
    closeSync(fd);
  }
}

function lastLines(text: string, count: number): string[] {
  const lines = text.split("\n");
  if (lines.at(-1) === "") lines.pop();
  return lines.slice(-count);
}
