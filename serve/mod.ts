/**
 * Serving: one frozen GPT-2, many prefixes, mixed-prefix batches over HTTP (`deno task serve`).
 *
 * ```ts
 * import { GPT2, GPT2Tokenizer, serve } from "./mod.ts";
 * const model = (await GPT2.fromPretrained("results/mini/pretrain/model")).eval();
 * const tokenizer = await GPT2Tokenizer.fromDir("results/mini/pretrain/model");
 * const registry = new serve.PrefixRegistry(model.config, model.backend);
 * await registry.addFolder("results/mini/ablation");
 * const server = await serve.startServer({ model, tokenizer, registry, modelName: "mini", port: 0 });
 * console.log(server.url);
 * await server.shutdown();
 * ```
 *
 * @module
 */
export { type RunningServer, type ServeOptions, startServer } from "./server.ts";
export {
  ClientError,
  PrefixEntry,
  PrefixRegistry,
  type PrefixShape,
  readPrefixFolder,
} from "./registry.ts";
export {
  type DecodeSettings,
  Engine,
  type EngineOptions,
  type JobRequest,
  type JobResult,
  type StepInfo,
} from "./engine.ts";
export { Histogram, ServerMetrics } from "./metrics.ts";
export { E2E_DECODING, E2E_FIELDS, e2ePrompt } from "./e2e.ts";
