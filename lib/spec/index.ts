/** The spec: where every setting is defined and documented (schema.ts), loaded (load.ts), listed (keys.ts) and turned into each target's form (render.ts). */
export * from "./schema.js";
export * from "./load.js";
export * from "./render.js";
export * from "./units.js";
export * from "./keys.js";
