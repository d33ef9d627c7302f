#!/usr/bin/env tsx
/**
 * Runbook: give an AWS stack's database the toolkit's roles (run where the private endpoint is
 * reachable: a bastion, a VPN, a CI runner in the VPC).
 *   1. connect as the RDS master user (the stack's postgresUrl; password in $PGPASSWORD);
 *   2. create the app and read-only roles if missing (IAM-token logins, no passwords);
 *   3. grant what the local targets grant (lib/db/roles.ts privilegesSql), in one transaction.
 * Idempotent; `npm run drift` then compares the privileges like on the local targets.
 */
import { runCommand } from "../lib/cli.js";
import { CliError, EXIT } from "../lib/errors.js";

await runCommand({
  name: "bootstrap",
  summary: "Create the app and read-only PostgreSQL roles on an AWS stack's RDS (the local targets' roles SQL), idempotently.",
  usage: "--env staging|prod --database-url URL [--json]",
  flags: {
    env: { type: "string", help: "the AWS stack whose spec names the roles", default: "staging" },
    "database-url": { type: "string", help: "the master user's URL (pulumi stack output postgresUrl; password in $PGPASSWORD)" },
  },
  details: [
    "Examples:",
    "  PGPASSWORD=… npm run bootstrap -- --env prod --database-url 'postgresql://crypto_user@HOST:5432/crypto_prediction_db?sslmode=verify-full'",
    "",
    "Exit: 0 done; 2 could not connect or a statement was refused (nothing changed: one transaction).",
  ].join("\n"),
  async run(ctx) {
    const url = ctx.flags["database-url"];
    if (!url) throw new CliError("--database-url is required: the RDS master user's URL", EXIT.USAGE, `pulumi stack output postgresUrl --stack ${ctx.flags.env} --show-secrets (put the password in $PGPASSWORD, not in the URL)`);
    const [{ specOf }, { postgresFromUrl }, { withPg }, { bootstrapRds }] = await Promise.all([
      import("../lib/state/record.js"),
      import("../lib/env/resolve.js"),
      import("../lib/db/clients.js"),
      import("../lib/aws/bootstrap.js"),
    ]);
    const spec = specOf(ctx.flags.env ?? "staging");
    const endpoint = postgresFromUrl(url, spec, ctx.log);
    ctx.progress(`bootstrap: roles ${spec.postgres.appUser}, ${spec.postgres.readonlyUser} on ${endpoint.label}`);
    const r = await withPg(endpoint.config("owner", spec.postgres.database), (client) => bootstrapRds(client, spec));
    const human = [
      `${spec.env}: roles ready on ${r.database} (owner ${r.owner}) in ${r.seconds.toFixed(1)} s`,
      ...r.roles.map((x) => `  ${x.name.padEnd(20)} ${x.created ? "created" : "existed"}${x.iam ? ", IAM authentication (rds_iam)" : ""}`),
    ].join("\n");
    return { data: { ok: true, env: spec.env, ...r }, human };
  },
});
