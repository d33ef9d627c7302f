/**
 * One spec value, every target: changing postgres.sharedBuffers to 512MB in a stack's config
 * changes the Docker argument, the RDS parameter (65536 pages of 8 kB) and the embedded engine's
 * postgresql.conf together, and nothing else.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { resourceName } from "../../lib/spec/access.js";
import { loadSpec, specHash } from "../../lib/spec/load.js";
import { postgresConf } from "../../lib/spec/render.js";
import { runProgram, type Run } from "../support/pulumi.js";

const CHANGE = { postgres: { sharedBuffers: "512MB" } };
const CONTAINER = "docker:index/container:Container";
const RDS_PARAMS = "aws:rds/parameterGroup:ParameterGroup";

describe("a change to postgres.sharedBuffers reaches every target", () => {
  let devBefore: Run, devAfter: Run, stagingBefore: Run, stagingAfter: Run;
  beforeAll(async () => {
    devBefore = await runProgram("dev");
    devAfter = await runProgram("dev", CHANGE);
    stagingBefore = await runProgram("staging");
    stagingAfter = await runProgram("staging", CHANGE);
  });

  // The postgres container's command wraps the server's argv (a volume-setup shell step first).
  const isPostgres = (c: { inputs: Record<string, any> }) => c.inputs.name === resourceName(loadSpec("dev"), "postgres");
  const pgCommand = (run: Run) => run.one(CONTAINER, isPostgres).inputs.command as string[];
  const rdsParams = (run: Run) => run.one(RDS_PARAMS).inputs.parameters as { name: string; value: string; applyMethod: string }[];

  it("Docker: exactly the shared_buffers argument changes", () => {
    const before = pgCommand(devBefore);
    const after = pgCommand(devAfter);
    expect(before).toContain("shared_buffers=256MB");
    expect(after).toContain("shared_buffers=512MB");
    expect(after.filter((a, i) => a !== before[i])).toEqual(["shared_buffers=512MB"]);
    expect(after).toHaveLength(before.length);
  });

  it("AWS: exactly the shared_buffers parameter changes, to 65536 pages, still pending-reboot", () => {
    const before = rdsParams(stagingBefore);
    const after = rdsParams(stagingAfter);
    expect(before.find((p) => p.name === "shared_buffers")!.value).toBe("32768");
    expect(after.filter((p, i) => JSON.stringify(p) !== JSON.stringify(before[i]))).toEqual([
      { name: "shared_buffers", value: "65536", applyMethod: "pending-reboot" },
    ]);
  });

  it("embedded: postgresql.conf of the same spec says 512MB", () => {
    const before = loadSpec("dev");
    const after = loadSpec("dev", { overrides: CHANGE });
    expect(postgresConf(before)).toContain("shared_buffers = '256MB'");
    expect(postgresConf(after)).toContain("shared_buffers = '512MB'");
    const changed = postgresConf(after).split("\n").filter((line) => !postgresConf(before).split("\n").includes(line));
    expect(changed).toEqual(["shared_buffers = '512MB'"]);
  });

  it("the spec hash (labels, outputs) moves with it", () => {
    expect(devAfter.outputs.specHash!.value).toBe(specHash(loadSpec("dev", { overrides: CHANGE })));
    expect(devAfter.outputs.specHash!.value).not.toBe(devBefore.outputs.specHash!.value);
    const label = (run: Run) =>
      (run.one(CONTAINER, isPostgres).inputs.labels as { label: string; value: string }[]).find(
        (l) => l.label === "crypto-prediction-infra.spec-hash",
      )!.value;
    expect(label(devAfter)).toBe(devAfter.outputs.specHash!.value);
    expect(label(devAfter)).not.toBe(label(devBefore));
  });
});
