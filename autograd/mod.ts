/**
 * The tensor core: tensors, lifetimes, the tape, every differentiable op, seeded randomness.
 *
 * @module
 */
export * from "./tensor.ts";
export * from "./ops.ts";
export * from "./random.ts";
export * from "./creation.ts";
