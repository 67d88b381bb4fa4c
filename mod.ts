/**
 * lf: a small deep-learning library for Deno — tensors with reverse-mode autodiff on CPU,
 * WebAssembly SIMD and WebGPU backends, nn modules, GPT-2, prefix-tuning, and the E2E metrics.
 *
 * ```ts
 * import * as lf from "./mod.ts";
 * const x = lf.tensor([[1, 2], [3, 4]], { requiresGrad: true });
 * const y = x.matmul(x).tanh().sum();
 * y.backward();
 * console.log(await x.grad!.toArray());
 * ```
 *
 * @module
 */
export * from "./autograd/mod.ts";
export type { Backend, DType, Storage, View } from "./kernels/backend.ts";
export { contiguousView } from "./kernels/backend.ts";
export {
  backendNames,
  getBackend,
  loadBackend,
  registerBackend,
  setBackend,
} from "./kernels/registry.ts";
export { useBackend } from "./kernels/select.ts";
export { CpuBackend } from "./kernels/cpu/backend.ts";
export * as nn from "./nn/mod.ts";
export { AdamW, clipGradNorm, linearWarmupDecay } from "./nn/optim.ts";
export { GPT2, type GPT2Config, gpt2Config } from "./models/gpt2.ts";
export { generate, generateWithScores } from "./models/generate.ts";
export { prefixToPast, PrefixTuning } from "./models/prefix.ts";
export { loadSafetensors, writeSafetensors } from "./models/safetensors.ts";
export { GPT2Tokenizer } from "./data/tokenizer.ts";
export { bleu, cider, meteor, nist, rougeL, scoreAll } from "./data/metrics/mod.ts";
// Loading without a file system (browsers): weights streamed from bytes, prefixes as bytes.
export { loadGPT2FromStream, type StreamLoadOptions } from "./models/gpt2_stream.ts";
export {
  readSafetensorsStream,
  type StreamedHeader,
  type StreamedTensor,
} from "./models/safetensors_stream.ts";
export type { HeaderEntry, SafetensorsDtype } from "./models/safetensors.ts";
export type { ComputedPrefix, PrefixConfig } from "./models/prefix.ts";
export {
  computedPrefixFiles,
  parseComputedPrefix,
  parsePeftPrefix,
  peftPrefixFiles,
  type PrefixFiles,
} from "./models/prefix_format.ts";
