/**
 * Words for a POSIX shell (/bin/sh, bash, a crontab line, a hint to copy): bare when safe, else
 * in single quotes. zx's `quote` answers with bash's $'…', which /bin/sh and cron do not read.
 */
export function shellWord(word: string): string {
  // `%` is quoted too: a crontab line escapes it, and a quoted word reads the same everywhere.
  return /^[A-Za-z0-9_@+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}
