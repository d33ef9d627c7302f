/**
 * The spec's keys as data, read from the schema itself: its JSON Schema (`z.toJSONSchema`) gives
 * each key, its default and the keys an object accepts; each setting's `.meta()` (SettingDoc in
 * ./schema.ts) gives its unit, where it applies and what it is; the RDS units come from
 * ./render.ts. The README's config keys table is made from these, so nothing here restates a key.
 */
import { z } from "zod";
import { rdsParameters } from "./render.js";
import { schema, type SettingDoc, type Spec } from "./schema.js";

/** The parts of a JSON Schema node the walks below read. */
interface JsonSchemaNode extends Partial<SettingDoc> {
  default?: unknown;
  properties?: Record<string, JsonSchemaNode>;
  anyOf?: JsonSchemaNode[];
}

let jsonSchema: JsonSchemaNode | undefined;

/** The spec's JSON Schema as an operator writes it (defaults, metadata; refinements are not representable and left out). */
export function specJsonSchema(): JsonSchemaNode {
  jsonSchema ??= z.toJSONSchema(schema, { io: "input", unrepresentable: "any" }) as JsonSchemaNode;
  return jsonSchema;
}

/** One documented setting: its dotted key, its default (undefined when it has none) and its documentation. */
export interface SpecKey {
  key: string;
  default: unknown;
  /** Undefined for a key whose setting has no `.meta()` (a test refuses that). */
  doc: SettingDoc | undefined;
}

/** Every setting of the schema, dotted, in schema order: an object without `.meta()` is a group and is walked into. */
export function schemaKeys(): SpecKey[] {
  const out: SpecKey[] = [];
  const walk = (node: JsonSchemaNode, prefix: string) => {
    for (const [name, field] of Object.entries(node.properties ?? {})) {
      const key = prefix + name;
      if (field.properties && field.about === undefined) walk(field, `${key}.`);
      else out.push({ key, default: field.default, doc: field.about === undefined ? undefined : { about: field.about, unit: field.unit, appliesTo: field.appliesTo ?? "?" } });
    }
  };
  walk(specJsonSchema(), "");
  return out;
}

/** The keys the schema accepts at a path (the root: []), for "unknown key" messages. A union (backup.repository) gives its object's keys. */
export function knownKeysAt(keyPath: readonly PropertyKey[]): string[] {
  const objectOf = (node: JsonSchemaNode | undefined) => (node?.properties ? node : node?.anyOf?.find((o) => o.properties));
  let node: JsonSchemaNode | undefined = specJsonSchema();
  for (const key of keyPath) node = objectOf(node)?.properties?.[String(key)];
  return Object.keys(objectOf(node)?.properties ?? {});
}

/** " (RDS: unit[, pending-reboot])" of a key RDS takes in its own unit, from rdsParameters. */
function rdsNote(spec: Spec): Map<string, string> {
  return new Map(
    rdsParameters(spec)
      .filter((p) => p.key && p.unit)
      .map((p) => [p.key!, ` (RDS: ${p.unit}${p.applyMethod === "pending-reboot" ? ", pending-reboot" : ""})`]),
  );
}

/** The README's config keys table (markdown). */
export function configKeysMarkdown(): string {
  const rds = rdsNote({ ...schema.parse({}), env: "defaults" });
  const rows = schemaKeys().map(({ key, default: d, doc }) => {
    const shown = d === undefined ? "—" : `\`${JSON.stringify(d)}\``;
    return `| \`${key}\` | ${shown} | ${doc?.unit ?? ""} | ${doc ? doc.appliesTo + (rds.get(key) ?? "") : "?"} | ${doc?.about ?? "?"} |`;
  });
  return ["| key | default | unit | applies to | what |", "| --- | --- | --- | --- | --- |", ...rows].join("\n");
}
