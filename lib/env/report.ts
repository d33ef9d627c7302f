/** What `up` prints: the environment, its URLs per role, and the settings check. */
import { redact } from "../redact.js";
import type { StartedEmbeddedEnvironment } from "../engines/embedded/environment.js";

export function upSummary(started: StartedEmbeddedEnvironment, showSecrets: boolean) {
  const c = started.connections;
  const url = (u: string) => (showSecrets ? u : redact(u));
  const { report, spec } = started;
  const data = {
    env: started.env,
    engine: "embedded",
    ephemeral: started.record.ephemeral,
    alreadyUp: report.alreadyUp,
    stateDir: started.paths.dir,
    credentialsFile: started.paths.credentials,
    postgres: {
      host: "127.0.0.1",
      port: spec.postgres.port,
      database: spec.postgres.database,
      role: spec.postgres.appUser,
      url: url(c.postgresUrl("app")),
      urls: { owner: url(c.postgresUrl("owner")), app: url(c.postgresUrl("app")), readonly: url(c.postgresUrl("readonly")) },
    },
    redis: {
      host: "127.0.0.1",
      port: spec.redis.port,
      db: spec.redis.db,
      user: spec.redis.appUser,
      url: url(c.redisUrl("app")),
      urls: { app: url(c.redisUrl("app")), admin: url(c.redisUrl("admin")) },
    },
    initialised: report.initialised,
    recoveredStalePid: report.recoveredStalePid,
    migrationsApplied: report.migrationsApplied,
    settings: report.settings,
    seconds: Math.round(report.seconds * 1000) / 1000,
  };
  const bad = report.settings.filter((s) => !s.ok);
  const human = [
    `${started.env}: ${report.alreadyUp ? "already up; re-verified" : "up"} in ${data.seconds}s (embedded${data.ephemeral ? ", ephemeral" : ""})`,
    `  PostgreSQL 16  127.0.0.1:${spec.postgres.port}  ${data.postgres.url}`,
    `  Redis 7        127.0.0.1:${spec.redis.port}  ${data.redis.url}`,
    `  settings: ${report.settings.length - bad.length}/${report.settings.length} as the spec says`,
    ...bad.map((s) => `    ${s.server} ${s.name}: expected ${s.expected}, live ${s.actual}${s.pendingRestart ? " (pending restart)" : ""}`),
    ...(report.migrationsApplied.length ? [`  migrations applied: ${report.migrationsApplied.join(", ")}`] : []),
    `  passwords: ${started.paths.credentials} (0600)${showSecrets ? "" : "; add --show-secrets to print URLs with them"}`,
    ...(data.ephemeral ? [`  remove with: npm run down -- --env ${started.env} --destroy --yes`] : []),
  ].join("\n");
  return { data, human };
}
