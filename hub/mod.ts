/**
 * Downloads: Hugging Face hub models (read from and written to Hugging Face's own cache) and
 * the project's data sets, all streamed, resumable, verified and written atomically.
 *
 * @module
 */
export * from "./download.ts";
export * from "./hub.ts";
export * from "./datasets.ts";
