/**
 * Neural-network building blocks: the {@link Module} tree, basic layers, GPT-2's attention,
 * MLP and block.
 *
 * ```ts
 * import { Linear } from "./mod.ts";
 * import * as lf from "../mod.ts";
 * const layer = new Linear(4, 2);
 * const y = layer.forward(lf.ones([3, 4])); // [3, 2]
 * ```
 *
 * @module
 */
export * from "./module.ts";
export * from "./layers.ts";
export * from "./attention.ts";
export * from "./kv_cache.ts";
export * from "./optim.ts";
