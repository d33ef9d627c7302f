#!/usr/bin/env tsx
/**
 * Runbook: a Docker Compose project of an environment, from the spec — the same containers the
 * Docker target runs (lib/engines/docker/containers.ts). Writes DIR/compose.yaml (no secrets; commit it)
 * and DIR/secrets/ (0700, git-ignored: generated passwords as Compose file secrets and a 0600
 * env file). --check: does the committed compose.yaml still match the spec?
 */
import path from "node:path";
import { ENV_FLAG, runCommand } from "../lib/cli.js";
import { CliError, EXIT } from "../lib/errors.js";
import { checkComposeFile, COMPOSE_FILE, writeComposeProject } from "../lib/compose/compose.js";
import { specOf } from "../lib/state/record.js";
import { PROJECT_DIR } from "../lib/spec/load.js";

await runCommand({
  name: "compose",
  summary: "Write a Docker Compose project (compose.yaml + secrets/) of an environment from the spec, or --check that a committed one still matches it.",
  usage: "[--env NAME] [--out DIR] [--check] [--json]",
  flags: {
    env: ENV_FLAG,
    out: { type: "string", help: "folder of compose.yaml and secrets/ (default: compose/<env> in the project; relative: to where you ran the command)" },
    check: { type: "boolean", help: "write nothing; exit 1 when DIR/compose.yaml differs from what the spec makes (2: it is missing)" },
  },
  details: [
    "Examples:",
    "  npm run compose -- --env dev                     # compose/dev/compose.yaml + compose/dev/secrets/",
    "  docker-compose -p crypto-prediction -f compose/dev/compose.yaml up -d",
    "  npm run compose -- --env dev --check             # in CI: the committed file matches Pulumi.dev.yaml",
    "",
    "Exit: 0 written (or --check: current); 1 --check: stale; 2 --check: missing, or the spec is invalid; 64 bad usage.",
  ].join("\n"),
  async run(ctx) {
    const env = ctx.flags.env || "dev";
    const spec = specOf(env);
    // `npm run` starts commands in the project; INIT_CWD is where the user was.
    const base = process.cwd() === PROJECT_DIR && process.env.INIT_CWD ? process.env.INIT_CWD : process.cwd();
    const dir = ctx.flags.out ? path.resolve(base, ctx.flags.out) : path.join(PROJECT_DIR, "compose", env);
    if (ctx.flags.out === "") throw new CliError("--out needs a folder", EXIT.USAGE);
    const file = path.join(dir, COMPOSE_FILE);
    if (ctx.flags.check) {
      const check = checkComposeFile(spec, file);
      const human =
        check.status === "current"
          ? `${file} matches the spec of ${env}`
          : check.status === "missing"
            ? `${file} does not exist; make it: npm run compose -- --env ${env}${ctx.flags.out ? ` --out ${ctx.flags.out}` : ""}`
            : [`${file} no longer matches the spec of ${env} (Pulumi.${env}.yaml); regenerate it: npm run compose -- --env ${env}${ctx.flags.out ? ` --out ${ctx.flags.out}` : ""}`, ...check.differences.map((d) => `  ${d}`)].join("\n");
      return { code: check.status === "current" ? EXIT.OK : check.status === "stale" ? EXIT.PROBLEM : EXIT.ERROR, data: check, human };
    }
    const written = writeComposeProject(spec, dir);
    const rel = path.relative(base, written.composeFile) || written.composeFile;
    const commands = {
      up: `docker-compose -p ${written.projectName} -f ${rel} up -d`,
      down: `docker-compose -p ${written.projectName} -f ${rel} down`,
    };
    const human = [
      `${env}: ${written.written.length ? `wrote ${written.written.length} file(s)` : "nothing changed"} in ${dir}`,
      `  compose file: ${written.composeFile} (no secrets: commit it)`,
      `  secrets:      ${written.secretsDir}/ (0700; ${written.generatedPasswords ? "passwords generated now" : "existing passwords kept"}; never commit it)`,
      `  start:        ${commands.up}`,
      `  stop:         ${commands.down}   (add -v to remove the data volumes)`,
    ].join("\n");
    return { data: { ...written, commands }, human };
  },
});
