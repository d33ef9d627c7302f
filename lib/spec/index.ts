/** The spec: where every setting is defined (schema.ts), loaded (load.ts) and turned into each target's form (render.ts). */
export * from "./schema.js";
export * from "./load.js";
export * from "./render.js";
export * from "./units.js";
