/**
 * The one place the server imports the model library from: the frozen GPT-2, decoding,
 * prefix I/O, tokenizer, E2E prompt format and tensor lifetimes. Everything in `serve/` goes
 * through these names, so a move of the library touches only this file.
 *
 * @module
 */
export { GPT2, type GPT2Config } from "../models/gpt2.ts";
export {
  bannedTokens,
  banRule,
  generate,
  type GenerateOptions,
  greedyToken,
} from "../models/generate.ts";
export {
  type ComputedPrefix,
  loadComputedPrefix,
  loadPeftPrefix,
  prefixTensor,
  prefixToPast,
} from "../models/prefix.ts";
export { GPT2Tokenizer } from "../data/tokenizer.ts";
export { E2E_DECODING, e2eOutputText } from "../models/checkpoint.ts";
export { encodePrompt, OFFICIAL_TO_LINEAR_ATTRIBUTE, tokenizeMRValue } from "../data/e2e.ts";
export type { KV } from "../nn/attention.ts";
export type { Backend } from "../kernels/backend.ts";
export { keep, noGrad, type Tensor, tidy } from "../autograd/tensor.ts";
export { concat, slice } from "../autograd/ops.ts";
export { zeros } from "../autograd/creation.ts";
/** Most rows the WebAssembly matmul computes with its row-by-row (gemv) kernel. */
export { GEMV_MAX_M } from "../kernels/wasm/gen_gemv.ts";
/** Headers that make a page cross-origin isolated (shared with the browser demo's server). */
export { ISOLATION_HEADERS } from "../web/server.ts";
