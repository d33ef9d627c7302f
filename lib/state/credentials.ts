/**
 * Generated passwords of a local environment, kept in a 0600 file next to its state. They are
 * registered with the redactor as soon as they are read, so no message ever prints them.
 */
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, statSync } from "node:fs";
import { z } from "zod";
import { CliError, EXIT } from "../errors.js";
import { registerSecret } from "../redact.js";
import { writeFileAtomicIfChanged } from "../fs.js";

const password = z.string().min(16);
const credentialsSchema = z.strictObject({
  postgres: z.strictObject({
    superuser: z.string().min(1),
    superuserPassword: password,
    ownerPassword: password,
    appPassword: password,
    readonlyPassword: password,
    /** The base-backup role's (postgres.backupUser); files made before it existed get one from `up`. */
    backupPassword: password.optional(),
  }),
  redis: z.strictObject({ adminPassword: password, appPassword: password }),
});

export type Credentials = z.infer<typeof credentialsSchema>;

/** A 32-character URL-safe random password (192 bits). */
export function generatePassword(): string {
  return randomBytes(24).toString("base64url");
}

export function generateCredentials(superuser = "postgres"): Credentials {
  const credentials: Credentials = {
    postgres: {
      superuser,
      superuserPassword: generatePassword(),
      ownerPassword: generatePassword(),
      appPassword: generatePassword(),
      readonlyPassword: generatePassword(),
      backupPassword: generatePassword(),
    },
    redis: { adminPassword: generatePassword(), appPassword: generatePassword() },
  };
  registerCredentials(credentials);
  return credentials;
}

export function registerCredentials(credentials: Credentials): void {
  const { postgres: p, redis: r } = credentials;
  for (const secret of [p.superuserPassword, p.ownerPassword, p.appPassword, p.readonlyPassword, p.backupPassword, r.adminPassword, r.appPassword]) if (secret) registerSecret(secret);
}

/** Reads and checks a credentials file: it must exist, parse, and be readable by its owner only. */
export function readCredentials(file: string, env: string): Credentials {
  const destroyHint = `if the data is expendable: npm run down -- --env ${env} --destroy --yes`;
  if (!existsSync(file)) {
    throw new CliError(`credentials file ${file} is missing; the environment's servers cannot be reached without it`, EXIT.ERROR, `restore it from where you keep it; ${destroyHint}`);
  }
  const mode = statSync(file).mode & 0o777;
  if (mode & 0o077) {
    throw new CliError(`credentials file ${file} has mode ${mode.toString(8)}; it must be readable by its owner only`, EXIT.ERROR, `chmod 600 ${file}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, "utf8"));
  } catch {
    throw new CliError(`credentials file ${file} is empty or not valid JSON`, EXIT.ERROR, `restore it from where you keep it; ${destroyHint}`);
  }
  const result = credentialsSchema.safeParse(parsed);
  if (!result.success) {
    const where = result.error.issues[0]?.path.join(".") ?? "";
    throw new CliError(`credentials file ${file} is corrupt (${where}: ${result.error.issues[0]?.message})`, EXIT.ERROR, `restore it from where you keep it; ${destroyHint}`);
  }
  registerCredentials(result.data);
  return result.data;
}

export function writeCredentials(file: string, credentials: Credentials): void {
  writeFileAtomicIfChanged(file, JSON.stringify(credentials, null, 2) + "\n", 0o600);
}
