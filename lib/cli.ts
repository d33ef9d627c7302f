/**
 * What every command shares: flag parsing that refuses unknown flags, `--help`, `--json`,
 * progress on stderr; the exit codes (lib/errors.ts) and secret redaction (lib/redact.ts) it applies. Scripts in scripts/
 * declare a `Command` and call `runCommand`; their logic lives in typed modules under lib/.
 */
import { minimist } from "zx";
import { SpecError } from "./spec/load.js";
import { checkToolkitVariables, wholeNumberIn } from "./input.js";
import { installTerminationHandlers, terminationUnderWay } from "./signals.js";
import { shellWord } from "./shell.js";

import { CliError, EXIT, type ExitCode } from "./errors.js";
import { redact } from "./redact.js";

// ---- commands --------------------------------------------------------------------------------

export interface FlagSpec {
  type: "string" | "boolean";
  /** One line for --help. */
  help: string;
  default?: string | boolean;
  /** For string flags that take a fixed set of values. */
  choices?: readonly string[];
}

export interface CommandContext<F extends Record<string, FlagSpec>> {
  flags: { [K in keyof F]: F[K]["type"] extends "boolean" ? boolean : string | undefined };
  /** Positional arguments. */
  args: string[];
  json: boolean;
  /** A line for people, on stderr (stdout stays clean for --json). */
  log(message: string): void;
  /** A progress line on stderr; rewritten in place on a terminal. */
  progress(message: string): void;
  /** Parses an integer flag, refusing anything outside [min, max]. */
  intFlag(name: keyof F & string, fallback: number, min: number, max: number): number;
  /**
   * This very command line again plus `extra` (`--yes`), for hints: it names the environment
   * (`--env`, filled in when defaulted) and every target flag given, so the hint acts on what this
   * run acted on, never on dev by default.
   */
  rerun(extra: string[]): string;
}

export interface CommandResult {
  /** Default: OK. */
  code?: ExitCode;
  /** What --json prints. */
  data: unknown;
  /** What people read; default: the JSON, indented. */
  human?: string;
  /** The output holds secrets on purpose (--show-secrets, env:ci variables): do not redact stdout. */
  revealSecrets?: boolean;
}

export interface Command<F extends Record<string, FlagSpec>> {
  /** npm script name, e.g. `up`. */
  name: string;
  /** The subcommand word when this is one of a group's (`list` of `backup list`); set by the group. */
  subcommand?: string;
  summary: string;
  /** Usage line after `npm run NAME --`. */
  usage: string;
  flags: F;
  /** Words accepted as positional arguments (e.g. `up|down|status`); none when absent. */
  positional?: { min: number; max: number };
  /** Extra help text (examples). */
  details?: string;
  /** What this command's exit codes mean, where it differs from EXIT_MEANING (shown by --help). */
  exitCodes?: Partial<Record<number, string>>;
  run(ctx: CommandContext<F>): Promise<CommandResult>;
}

/**
 * A command with subcommands (`backup create|list|prune|schedule|push-wal`): the first word picks
 * one, each with its own flags, usage and --help, so a flag that belongs to another subcommand is
 * an unknown option rather than a combination checked by hand.
 */
export interface CommandGroup {
  /** npm script name, e.g. `backup`. */
  name: string;
  summary: string;
  /** Subcommands by their word; each one's `name` is the group's. */
  subcommands: Record<string, Subcommand<any>>;
  /** The subcommand run when the first word names none: `backup --env dev` is `backup create --env dev`. */
  default: string;
  /**
   * Mode flags from before the subcommands, still accepted so that crontabs and scripts keep
   * working: `backup --list` runs `backup list` (with a note on stderr).
   */
  formerFlags?: Record<string, string>;
  details?: string;
}

/** One subcommand of a group: a command without its own name. */
export type Subcommand<F extends Record<string, FlagSpec>> = Omit<Command<F>, "name" | "subcommand">;

/** Types a subcommand's flags from its table (the group's record cannot). */
export function subcommand<F extends Record<string, FlagSpec>>(definition: Subcommand<F>): Subcommand<any> {
  return definition;
}

const isGroup = (c: Command<any> | CommandGroup): c is CommandGroup => "subcommands" in c;

/** `npm run backup -- list`: how people start this command (the subcommand word when one was given). */
export function invocation(command: Pick<Command<any>, "name" | "subcommand">): string {
  return `npm run ${command.name} --${command.subcommand ? ` ${command.subcommand}` : ""}`;
}

/**
 * The subcommand an argv names, and the argv it parses: the first word when it is a subcommand,
 * a former mode flag (`--list`), or else the default.
 */
export function resolveSubcommand(group: CommandGroup, argv: string[]): { command: Command<any>; argv: string[]; note?: string } {
  const named = (word: string, rest: string[]): { command: Command<any>; argv: string[] } => ({ command: { ...group.subcommands[word]!, name: group.name, subcommand: word } as Command<any>, argv: rest });
  // The first word that is neither a flag nor a string flag's value (`backup --env dev list` works too).
  const takesValue = new Set(Object.values(group.subcommands).flatMap((c) => Object.entries(c.flags).filter(([, f]) => (f as FlagSpec).type === "string").map(([name]) => `--${name}`)));
  let at = 0;
  while (at < argv.length && argv[at]!.startsWith("-")) at += takesValue.has(argv[at]!) ? 2 : 1;
  const word = argv[at];
  if (word !== undefined) {
    if (Object.hasOwn(group.subcommands, word)) return named(word, [...argv.slice(0, at), ...argv.slice(at + 1)]);
    if (!group.subcommands[group.default]!.positional) {
      throw new CliError(`unknown subcommand ${JSON.stringify(word)}: expected ${Object.keys(group.subcommands).join(", ")}`, EXIT.USAGE, `see: npm run ${group.name} -- --help`);
    }
  }
  const former = Object.keys(group.formerFlags ?? {}).filter((flag) => argv.includes(`--${flag}`));
  if (former.length > 1) throw new CliError(`--${former.join(" and --")} cannot be combined: each is a subcommand (${former.map((f) => group.formerFlags![f]).join(", ")})`, EXIT.USAGE, `see: npm run ${group.name} -- --help`);
  if (former.length === 1) {
    const word = group.formerFlags![former[0]!]!;
    return { ...named(word, argv.filter((a) => a !== `--${former[0]}`)), note: `note: --${former[0]} is now a subcommand: npm run ${group.name} -- ${word} …` };
  }
  return { command: { ...group.subcommands[group.default]!, name: group.name } as Command<any>, argv };
}

/** Help of a group: its subcommands, then the options of the default one. */
export function groupHelpText(group: CommandGroup): string {
  const words = Object.entries(group.subcommands);
  const width = Math.max(...words.map(([w]) => w.length)) + 4;
  const defaults = { ...group.subcommands[group.default]!, name: group.name } as Command<any>;
  return [
    group.summary,
    "",
    `Usage: npm run ${group.name} -- [SUBCOMMAND] [options]   (npm run ${group.name} -- SUBCOMMAND --help for each)`,
    "",
    "Subcommands:",
    ...words.map(([word, c]) => `  ${word.padEnd(width)}${c.summary}${word === group.default ? " (the default)" : ""}`),
    "",
    `Options of ${group.default} (the default):`,
    ...optionRows(defaults),
    "",
    ...(group.details ? [group.details, ""] : []),
    ...exitHelp(Object.assign({}, ...words.map(([, c]) => c.exitCodes ?? {}))),
  ].join("\n");
}

const COMMON_FLAGS = {
  json: { type: "boolean", help: "print one JSON document on stdout (progress stays on stderr)" },
  help: { type: "boolean", help: "show this help" },
} satisfies Record<string, FlagSpec>;

/** What each exit code means for every command; a command's `exitCodes` says it for itself. */
export const EXIT_MEANING: Record<number, string> = {
  0: "done",
  1: "a problem found",
  2: "could not run (nothing changed)",
  3: "environment busy: another run holds its lock (nothing changed)",
  64: "bad usage (nothing changed)",
  130: "stopped by SIGINT (Ctrl-C), after its clean-ups (lock released, partial output removed)",
  143: "stopped by SIGTERM, after its clean-ups (lock released, partial output removed)",
};

function exitHelp(codes: Partial<Record<number, string>> = {}): string[] {
  const all = { ...EXIT_MEANING, ...codes };
  return ["Exit codes:", ...Object.keys(all).map(Number).sort((a, b) => a - b).map((code) => `  ${String(code).padEnd(4)}${all[code]}`)];
}

function optionRows(command: Command<any>): string[] {
  const flags = { ...command.flags, ...COMMON_FLAGS } as Record<string, FlagSpec>;
  return Object.entries(flags).map(([name, f]) => {
    const arg = f.type === "string" ? ` ${f.choices ? f.choices.join("|") : name.toUpperCase()}` : "";
    const def = f.default !== undefined && f.type === "string" ? ` (default: ${f.default})` : "";
    return `  --${name}${arg}`.padEnd(34) + f.help + def;
  });
}

/** Help text of a command, generated from its flag table. */
export function helpText<F extends Record<string, FlagSpec>>(command: Command<F>): string {
  const usage = `npm run ${command.name} -- ${command.subcommand ? `${command.subcommand} ` : ""}${command.usage}`;
  return [`${command.summary}`, "", `Usage: ${usage}`, "", "Options:", ...optionRows(command), "", ...(command.details ? [command.details, ""] : []), ...exitHelp(command.exitCodes)].join("\n");
}

/** Parses argv, runs the command, prints its result and exits with its code. Never returns. */
export async function runCommand<F extends Record<string, FlagSpec>>(command: Command<F> | CommandGroup, argv = process.argv.slice(2)): Promise<never> {
  const wantsJson = argv.includes("--json");
  installTerminationHandlers((message) => process.stderr.write(`${command.name}: ${redact(message)}\n`));
  const code = await executeCommand(command, argv, wantsJson);
  await terminationUnderWay();
  // Let stdout drain before exiting (large --json documents into a pipe).
  await new Promise<void>((resolve) => process.stdout.write("", () => resolve()));
  process.exit(code);
}

/** Parses and runs a command, printing its output; returns the exit code (tests call this). */
export async function executeCommand<F extends Record<string, FlagSpec>>(target: Command<F> | CommandGroup, argv: string[], wantsJson = argv.includes("--json")): Promise<ExitCode> {
  const isTty = process.stderr.isTTY === true;
  let progressShown = false;
  const log = (message: string) => {
    if (progressShown && isTty) process.stderr.write("\r\x1b[K");
    progressShown = false;
    process.stderr.write(redact(message) + "\n");
  };
  let env: string | undefined;
  let command = target as Command<F>;
  try {
    if (isGroup(target)) {
      const resolved = resolveSubcommand(target, argv);
      if (resolved.command.subcommand === undefined && argv.includes("--help")) {
        process.stdout.write(groupHelpText(target) + "\n");
        return EXIT.OK;
      }
      command = resolved.command as Command<F>;
      argv = resolved.argv;
      if (resolved.note) log(resolved.note);
    }
    const { flags, args } = parseFlags(command, argv);
    if ("env" in command.flags && typeof flags.env === "string") env = flags.env;
    if (flags.help) {
      process.stdout.write(helpText(command) + "\n");
      return EXIT.OK;
    }
    checkToolkitVariables();
    const json = flags.json === true;
    const ctx: CommandContext<F> = {
      flags: flags as CommandContext<F>["flags"],
      args,
      json,
      log,
      progress(message) {
        if (isTty) {
          process.stderr.write(`\r\x1b[K${redact(message)}`);
          progressShown = true;
        } else {
          process.stderr.write(redact(message) + "\n");
        }
      },
      rerun(extra) {
        const given = argv.filter((a) => a !== "--json");
        const envMissing = "env" in command.flags && !given.some((a) => a === "--env" || a.startsWith("--env="));
        const words = [...given, ...(envMissing ? ["--env", String(flags.env ?? "dev")] : []), ...extra.filter((e) => !given.includes(e))];
        return `${invocation(command)} ${words.map(shellWord).join(" ")}`;
      },
      intFlag(name, fallback, min, max) {
        const raw = (flags as Record<string, unknown>)[name];
        if (raw === undefined || raw === "") return fallback;
        return wholeNumberIn(`--${name}`, String(raw), min, max);
      },
    };
    const result = await command.run(ctx);
    if (progressShown && isTty) process.stderr.write("\r\x1b[K");
    const out = json ? JSON.stringify(result.data, null, 2) : (result.human ?? JSON.stringify(result.data, null, 2));
    process.stdout.write((result.revealSecrets ? out : redact(out)) + "\n");
    return result.code ?? EXIT.OK;
  } catch (error) {
    // Stopped by a signal: what failed meanwhile is the clean-up's doing, and the signal decides the exit.
    await terminationUnderWay();
    if (progressShown && isTty) process.stderr.write("\r\x1b[K");
    const { message, code, hint } = describeError(error, env);
    if (wantsJson) {
      process.stdout.write(JSON.stringify({ ok: false, error: { message: redact(message), exitCode: code, ...(hint ? { hint: redact(hint) } : {}) } }, null, 2) + "\n");
    }
    process.stderr.write(`${target.name}: error: ${redact(message)}\n${hint ? `  hint: ${redact(hint)}\n` : ""}`);
    if (process.env.CPI_DEBUG && error instanceof Error && error.stack) process.stderr.write(redact(error.stack) + "\n");
    return code;
  }
}

function describeError(error: unknown, env: string | undefined): { message: string; code: ExitCode; hint?: string } {
  if (error instanceof CliError) return { message: error.message, code: error.code, hint: error.hint };
  if (error instanceof SpecError) return { message: error.message, code: EXIT.ERROR, hint: "fix the stack file; nothing was started or changed" };
  const e = error as NodeJS.ErrnoException & { code?: string };
  if (e && typeof e === "object" && "code" in e && (e.code === "ECONNREFUSED" || e.code === "ETIMEDOUT")) {
    return { message: `could not connect: ${e.message}`, code: EXIT.ERROR, hint: `is the environment up? (npm run status${env ? ` -- --env ${env}` : ""})` };
  }
  return { message: e instanceof Error ? e.message : String(e), code: EXIT.ERROR };
}

/** Flag parsing with minimist, refusing unknown flags and values outside a flag's choices. */
export function parseFlags<F extends Record<string, FlagSpec>>(command: Command<F>, argv: string[]): { flags: Record<string, unknown>; args: string[] } {
  const all = { ...command.flags, ...COMMON_FLAGS } as Record<string, FlagSpec>;
  const unknown: string[] = [];
  const parsed = minimist(argv, {
    string: Object.keys(all).filter((k) => all[k]!.type === "string"),
    boolean: Object.keys(all).filter((k) => all[k]!.type === "boolean"),
    default: Object.fromEntries(Object.entries(all).filter(([, f]) => f.default !== undefined).map(([k, f]) => [k, f.default])),
    unknown: (arg: string) => {
      if (arg.startsWith("-")) unknown.push(arg);
      return !arg.startsWith("-");
    },
  });
  if (unknown.length) {
    throw new CliError(`unknown option ${[...new Set(unknown)].join(", ")}`, EXIT.USAGE, `see: ${invocation(command)} --help`);
  }
  for (const [name, flag] of Object.entries(all)) {
    const value = parsed[name];
    if (flag.type === "string" && Array.isArray(value)) throw new CliError(`--${name} was given more than once`, EXIT.USAGE);
    if (flag.type === "string" && value === "" && argv.some((a) => a === `--${name}`)) {
      throw new CliError(`--${name} needs a value`, EXIT.USAGE, `see: ${invocation(command)} --help`);
    }
    if (flag.choices && typeof value === "string" && value !== "" && !flag.choices.includes(value)) {
      throw new CliError(`--${name} ${JSON.stringify(value)}: expected one of ${flag.choices.join(", ")}`, EXIT.USAGE);
    }
  }
  const args = parsed._.map(String);
  const { min, max } = command.positional ?? { min: 0, max: 0 };
  if (!parsed.help && (args.length < min || args.length > max)) {
    throw new CliError(
      args.length > max ? `unexpected argument ${JSON.stringify(args[max])}` : `missing argument`,
      EXIT.USAGE,
      `usage: ${invocation(command)} ${command.usage}`,
    );
  }
  return { flags: parsed, args };
}

/** The `--env` flag every environment command takes. */
export const ENV_FLAG = { type: "string", help: "environment: a Pulumi.<env>.yaml stack or an ephemeral id", default: "dev" } as const satisfies FlagSpec;
