/**
 * Secret redaction: every password the process learns is registered, and nothing it prints (messages,
 * logs, reports) carries one or a URL password.
 */
const secrets = new Set<string>();

/** Remembers a secret so that no message or log line of this process ever prints it. */
export function registerSecret(value: string | undefined): void {
  if (value && value.length >= 6) secrets.add(value);
}

/** Replaces every registered secret (and URL passwords) in text with `***`. */
export function redact(text: string): string {
  let out = text;
  for (const secret of secrets) out = out.split(secret).join("***");
  for (const secret of secrets) out = out.split(encodeURIComponent(secret)).join("***");
  return out.replace(/(\b(?:postgres(?:ql)?|rediss?):\/\/[^:/@\s]*:)[^@\s]+@/g, "$1***@");
}
