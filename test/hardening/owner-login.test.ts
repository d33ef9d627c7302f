/**
 * Run as the guide's crypto_user by URL (issue 14, item 9): the schema owner is no superuser, and
 * PostgreSQL hides some settings and statistics from it. A check that cannot be made is "could
 * not check" (exit 2) with the reason, never drift or a failed check (exit 1), and monitor
 * measures what it can and says what it could not.
 */
import { describe, expect, it } from "vitest";
import { EXIT } from "../../lib/errors.js";
import { runCli, useEphemeralEnvironment } from "../support/embedded.js";

const environment = useEphemeralEnvironment();

describe("commands run by URL as the schema owner (crypto_user)", () => {
  const ownerUrl = () => environment().connections.postgresUrl("owner");

  it.each([["verify"], ["drift"], ["monitor"]])("%s: what crypto_user may not read is 'could not check' (exit 2), never drift", async (name) => {
    const args = [name === "monitor" ? [] : [], "--env", environment().env, "--database-url", ownerUrl(), "--json"].flat();
    if (name === "monitor") args.push("--interval", "0");
    const result = await runCli(name, args, { timeoutMs: 120_000 });
    expect(result.code, `${result.stdout}\n${result.stderr}`).toBe(EXIT.ERROR);
    const text = result.stdout + result.stderr;
    expect(text).toMatch(/could not check|could not be measured|not checked|may not read|permission/i);
    expect(text).not.toMatch(/"status": "fail"/);
    if (name === "drift") expect(result.json.drift).toBe(false);
  }, 180_000);
});
