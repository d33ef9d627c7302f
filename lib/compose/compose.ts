/**
 * A Docker Compose project for an environment, derived from the SAME container definitions as
 * the Docker target (lib/engines/docker/containers.ts): command, environment, files, healthcheck, named
 * volumes, 127.0.0.1-only ports, shm size, images and labels. `compose.yaml` holds no secret and
 * depends only on the spec, so it can be committed and checked (`--check`) against the spec.
 *
 * Secrets live beside it in `secrets/` (a 0700 folder, git-ignored): the definitions' files
 * (password file, roles script, redis.conf) as Compose file secrets, bind-mounted read-only at the
 * definitions' paths, and environment values that carry a password in a 0600 `env_file`. The
 * passwords are generated once (secrets/credentials.json, the toolkit's credentials format) and
 * reused: a data volume keeps the passwords it was initialised with.
 *
 *   const project = composeProject(spec);   // project.yaml: what compose.yaml must hold
 *   writeComposeProject(spec, "compose/dev");
 */
import { chmodSync, existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { stringify } from "yaml";
import { generateCredentials, readCredentials, writeCredentials, type Credentials } from "../state/credentials.js";
import { ensureDir, writeFileAtomic, writeFileAtomicIfChanged } from "../fs.js";
import { specHash } from "../spec/load.js";
import type { Spec } from "../spec/schema.js";
import { dummyDefinitions, postgresContainer, redisContainer, type ContainerDefinition, type ContainerSecrets } from "../engines/docker/containers.js";
import { resourceName } from "../spec/access.js";

export const COMPOSE_FILE = "compose.yaml";
export const SECRETS_DIR = "secrets";
export const CREDENTIALS_FILE = "credentials.json";

type Build = (secrets: ContainerSecrets) => ContainerDefinition;

interface ServicePlan {
  service: "postgres" | "redis";
  build: Build;
  /** The definition rendered with dummy passwords (only its password-free fields are used). */
  plain: ContainerDefinition;
  /** Environment variables whose value carries a password: they go to the env file. */
  secretEnv: string[];
  /** Compose secret name of each file of the definition, by index. */
  fileSecrets: string[];
}

export interface ComposeProject {
  /** The text of compose.yaml. */
  yaml: string;
  /** `docker-compose -p` name (compose 1.x has no name key in the file). */
  projectName: string;
  services: ServicePlan[];
}

function planService(service: "postgres" | "redis", build: Build): ServicePlan {
  const [a, b] = dummyDefinitions(build);
  const secretEnv = Object.keys(a.env).filter((key) => a.env[key] !== b.env[key]);
  const fileSecrets = a.files.map((f) => `${service}-${path.basename(f.path).replace(/[^A-Za-z0-9]+/g, "-").replace(/^-|-$/g, "")}`);
  return { service, build, plain: a, secretEnv, fileSecrets };
}

function servicePlans(spec: Spec): ServicePlan[] {
  const hash = specHash(spec);
  return [planService("postgres", (s) => postgresContainer(spec, s, hash)), planService("redis", (s) => redisContainer(spec, s, hash))];
}

const seconds = (n: number) => `${n}s`;

/** Compose interpolates `$VAR` in every value: `$$` is its literal dollar (a shell's `"$@"`). */
const literal = (value: string) => value.replaceAll("$", "$$$$");

/**
 * compose.yaml of the spec (Compose file format 3.8, which docker-compose 1.29 and Compose v2
 * read). Written as YAML 1.1, the dialect of docker-compose 1.x's parser: `yes` and `on` are
 * quoted there, or they would reach Redis as `True`.
 */
export function composeProject(spec: Spec): ComposeProject {
  const plans = servicePlans(spec);
  const labels = plans[0]!.plain.labels;
  const services: Record<string, unknown> = {};
  const volumes: Record<string, unknown> = {};
  const secrets: Record<string, unknown> = {};
  for (const plan of plans) {
    const d = plan.plain;
    const volume = `${plan.service}-data`;
    volumes[volume] = { name: resourceName(spec, volume), labels: d.labels };
    for (const extra of d.volumes ?? []) volumes[extra.what] = { name: resourceName(spec, extra.what), labels: d.labels };
    plan.fileSecrets.forEach((name) => (secrets[name] = { file: `./${SECRETS_DIR}/${name}` }));
    const environment = Object.fromEntries(Object.entries(d.env).filter(([key]) => !plan.secretEnv.includes(key)));
    services[plan.service] = {
      image: d.image,
      container_name: d.name,
      command: d.command.map(literal),
      ...(Object.keys(environment).length ? { environment: Object.fromEntries(Object.entries(environment).map(([k, v]) => [k, literal(v)])) } : {}),
      ...(plan.secretEnv.length ? { env_file: [`./${SECRETS_DIR}/${plan.service}.env`] } : {}),
      ...(d.files.length ? { secrets: d.files.map((f, i) => ({ source: plan.fileSecrets[i], target: f.path })) } : {}),
      healthcheck: {
        test: d.healthcheck.test.map(literal),
        interval: seconds(d.healthcheck.intervalSeconds),
        timeout: seconds(d.healthcheck.timeoutSeconds),
        retries: d.healthcheck.retries,
        start_period: seconds(d.healthcheck.startPeriodSeconds),
      },
      restart: "unless-stopped",
      ports: d.ports.map((p) => `${p.hostIp}:${p.external}:${p.internal}`),
      volumes: [`${volume}:${d.dataPath}`, ...(d.volumes ?? []).map((v) => `${v.what}:${v.path}`)],
      ...(d.shmSizeBytes !== undefined ? { shm_size: d.shmSizeBytes } : {}),
      labels: d.labels,
    };
  }
  const document = {
    version: "3.8",
    services,
    networks: {
      // Ports published without an address bind to loopback too (defence in depth, as the Docker target).
      default: { name: resourceName(spec, "net"), driver: "bridge", driver_opts: { "com.docker.network.bridge.host_binding_ipv4": "127.0.0.1" }, labels },
    },
    volumes,
    secrets,
  };
  const projectName = spec.namePrefix;
  const header = [
    `# ${spec.env}: PostgreSQL ${spec.postgres.version} + Redis ${spec.redis.version}, generated from the spec (Pulumi.${spec.env}.yaml) by`,
    `#   npm run compose -- --env ${spec.env}`,
    `# Do not edit: change the spec and run that again (\`--check\` says when this file is stale).`,
    `# Passwords are not here: they are in ./${SECRETS_DIR}/ (0700, git-ignored), made by the same command.`,
    `#   docker-compose -p ${projectName} -f ${COMPOSE_FILE} up -d`,
    `#   docker-compose -p ${projectName} -f ${COMPOSE_FILE} down        # -v also removes the data volumes`,
    "",
  ].join("\n");
  return { yaml: header + stringify(document, { lineWidth: 0, aliasDuplicateObjects: false, version: "1.1" }), projectName, services: plans };
}

export interface WrittenProject {
  dir: string;
  composeFile: string;
  secretsDir: string;
  credentialsFile: string;
  /** The passwords were made now (false: the existing ones were kept). */
  generatedPasswords: boolean;
  projectName: string;
  /** Files written or rewritten this run. */
  written: string[];
}

/** The definitions' secrets from the toolkit's credentials. */
export function containerSecrets(credentials: Credentials): ContainerSecrets {
  return {
    postgresPassword: credentials.postgres.superuserPassword,
    roles: { owner: credentials.postgres.ownerPassword, app: credentials.postgres.appPassword, readonly: credentials.postgres.readonlyPassword, backup: credentials.postgres.backupPassword },
    redisPassword: credentials.redis.adminPassword,
    redisAppPassword: credentials.redis.appPassword,
  };
}

/**
 * Writes compose.yaml, a .gitignore for the secrets, and the secrets (passwords generated the
 * first time, kept after). Each file is written atomically and only when its content changed.
 */
export function writeComposeProject(spec: Spec, dir: string): WrittenProject {
  const project = composeProject(spec);
  const secretsDir = path.join(dir, SECRETS_DIR);
  ensureDir(dir, 0o755);
  ensureDir(secretsDir, 0o700);
  chmodSync(secretsDir, 0o700);
  const credentialsFile = path.join(secretsDir, CREDENTIALS_FILE);
  const generatedPasswords = !existsSync(credentialsFile);
  const credentials = generatedPasswords ? generateCredentials() : readCredentials(credentialsFile, spec.env);
  const written: string[] = [];
  const put = (file: string, content: string, mode: number) => {
    if (writeFileAtomicIfChanged(file, content, mode)) written.push(file);
    chmodSync(file, mode);
  };
  if (generatedPasswords) {
    writeCredentials(credentialsFile, credentials);
    written.push(credentialsFile);
  }
  const secrets = containerSecrets(credentials);
  for (const plan of project.services) {
    const real = plan.build(secrets);
    // Bind-mounted into the container, read by its own user (uid 999): readable there, while the
    // 0700 folder keeps every other user of this machine out.
    real.files.forEach((f, i) => put(path.join(secretsDir, plan.fileSecrets[i]!), f.content, 0o444));
    if (plan.secretEnv.length) put(path.join(secretsDir, `${plan.service}.env`), plan.secretEnv.map((k) => `${k}=${real.env[k]}`).join("\n") + "\n", 0o600);
  }
  put(path.join(dir, ".gitignore"), `# Generated passwords of this Compose project: never commit them.\n/${SECRETS_DIR}/\n`, 0o644);
  const composeFile = path.join(dir, COMPOSE_FILE);
  if (!existsSync(composeFile) || readFileSync(composeFile, "utf8") !== project.yaml) {
    writeFileAtomic(composeFile, project.yaml, 0o644);
    written.push(composeFile);
  }
  return { dir, composeFile, secretsDir, credentialsFile, generatedPasswords, projectName: project.projectName, written };
}

export interface ComposeCheck {
  file: string;
  /** missing: no file; stale: it differs from what the spec makes now. */
  status: "current" | "stale" | "missing";
  /** The first differing lines (`-` in the file, `+` from the spec). */
  differences: string[];
}

/** Compares a committed compose.yaml with the spec's. */
export function checkComposeFile(spec: Spec, file: string): ComposeCheck {
  if (!existsSync(file)) return { file, status: "missing", differences: [] };
  const actual = readFileSync(file, "utf8").split("\n");
  const expected = composeProject(spec).yaml.split("\n");
  const differences: string[] = [];
  const theirs = new Set(actual);
  const ours = new Set(expected);
  for (const line of actual) if (!ours.has(line)) differences.push(`- ${line.trim()}`);
  for (const line of expected) if (!theirs.has(line)) differences.push(`+ ${line.trim()}`);
  const same = actual.join("\n") === expected.join("\n");
  if (!same && !differences.length) differences.push("(the same lines in another order)");
  return { file, status: same ? "current" : "stale", differences: differences.slice(0, 20) };
}
