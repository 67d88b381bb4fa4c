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
export type {
  AdamWParams,
  AttentionParams,
  Backend,
  BinaryOp,
  DType,
  HostArray,
  MatmulParams,
  ReduceOp,
  Storage,
  UnaryOp,
  View,
} from "./kernels/backend.ts";
export type { Factory } from "./kernels/registry.ts";
export type { Floats } from "./kernels/cpu/backend.ts";
export { BINARY_OPS, UNARY_OPS } from "./kernels/backend.ts";
export { contiguousView } from "./kernels/backend.ts";
export {
  backendNames,
  getBackend,
  loadBackend,
  registerBackend,
  setBackend,
} from "./kernels/registry.ts";
export { useBackend } from "./kernels/select.ts";
import { useBackend } from "./kernels/select.ts";
export { CpuBackend } from "./kernels/cpu/backend.ts";
export * as nn from "./nn/mod.ts";
export * from "./nn/mod.ts";
export {
  AdamW,
  type AdamWOptions,
  type AdamWState,
  clipGradNorm,
  linearWarmupDecay,
} from "./nn/optim.ts";
export {
  type ForwardOptions,
  GPT2,
  type GPT2Config,
  gpt2Config,
  GPT2Model,
  type GPT2Output,
  type HiddenOutput,
  type IdsInput,
  type LossOptions,
} from "./models/gpt2.ts";
export {
  bannedTokens,
  type BanRule,
  banRule,
  generate,
  type GenerateOptions,
  generateWithScores,
  type GenerationModel,
  type GenerationResult,
  greedyToken,
} from "./models/generate.ts";
export {
  type ComputedPrefix,
  type LayerPast,
  loadComputedPrefix,
  loadPeftPrefix,
  loadPrefix,
  PREFIX_DEFAULTS,
  type PrefixConfig,
  type PrefixModelDims,
  type PrefixOptions,
  prefixPast,
  type PrefixSource,
  prefixToPast,
  PrefixTuning,
  type PrefixTuningOptions,
  saveComputedPrefix,
  savePeftPrefix,
} from "./models/prefix.ts";
export {
  E2E_DECODING,
  e2eOutputText,
  generateForMRs,
  type GenerateTextOptions,
  generateTexts,
  loadCheckpoint,
  type LoadCheckpointOptions,
  type LoadedCheckpoint,
  NEWLINE_IDS,
  writeOutputsAndRefs,
} from "./models/checkpoint.ts";
export * as hub from "./hub/mod.ts";
// Loading without a file system (browsers): weights streamed from bytes, prefixes as bytes.
export { loadGPT2FromStream, type StreamLoadOptions } from "./models/gpt2_stream.ts";
export {
  readSafetensorsStream,
  type StreamedHeader,
  type StreamedTensor,
} from "./models/safetensors_stream.ts";
export type { HeaderEntry } from "./models/safetensors.ts";
export {
  computedPrefixFiles,
  parseComputedPrefix,
  parsePeftPrefix,
  peftPrefixFiles,
  type PrefixFiles,
} from "./models/prefix_format.ts";
export {
  loadSafetensors,
  type SafeTensor,
  type SafeTensors,
  type SafetensorsDtype,
  type TensorToWrite,
  writeSafetensors,
} from "./models/safetensors.ts";
export { GPT2Tokenizer } from "./data/tokenizer.ts";
export type { E2EPair, MRGroup } from "./data/e2e.ts";
export {
  type E2ESplit,
  e2eSplitPath,
  type EncodedExample,
  encodeExample,
  encodePairs,
  type EncodePairsOptions,
  encodePrompt,
  exampleText,
  groupByMR,
  parseE2ECsv,
  parseE2EText,
  promptText,
  readE2E,
  readE2ESplit,
  shippedE2EDir,
  type TextEncoderLike,
} from "./data/e2e.ts";
export {
  type Batch,
  type BatchOptions,
  type Example,
  IGNORE_INDEX,
  makeBatches,
  padBatch,
  type Rng32,
} from "./data/batching.ts";
export * from "./train/mod.ts";
export {
  ablationSweep,
  collectSweep,
  dropFlags,
  lastStep,
  type Launcher,
  launchSweep,
  missingRuns,
  readSlurmSection,
  type SeedRow,
  seedSweep,
  type Sweep,
  SWEEP_USAGE,
  SweepError,
  type SweepFlags,
  type SweepIO,
  type SweepRun,
  takeSweepFlags,
  writeSeedResults,
} from "./train/sweep.ts";
export {
  type ArrayScript,
  arrayScript,
  type ArrayTask,
  endedTask,
  mergeSlurmOptions,
  parseSlurmOptions,
  queuedTasks,
  requireSlurm,
  shellQuote,
  SLURM_KEYS,
  SlurmError,
  type SlurmOptions,
  submitArray,
  taskKey,
  type TaskState,
  writeArrayScript,
} from "./train/slurm.ts";
export * as serve from "./serve/mod.ts";
export { atomicReplaceDir, atomicWriteBytes, atomicWriteText, recoverDir } from "./io/atomic.ts";
export type { HubOptions } from "./hub/hub.ts";
export type { ProgressMode } from "./hub/download.ts";
export type { DecodeOptions } from "./data/tokenizer.ts";
export {
  bleu,
  cider,
  type E2EScores,
  meteor,
  nist,
  rougeL,
  scoreAll,
  type ScoreAllOptions,
} from "./metrics/mod.ts";
export type { CiderOptions } from "./metrics/cider.ts";
export type {
  MeteorOptions,
  MeteorParameters,
  MeteorResult,
  MeteorStats,
} from "./metrics/meteor.ts";
export type { MeteorModule } from "./metrics/meteor_aligner.ts";

/**
 * The library's default backend is the fastest correct one available, chosen as
 * `--backend auto` chooses (WebGPU on a hardware adapter, else WebAssembly SIMD, else the CPU
 * reference). `LF_BACKEND=cpu|wasm|webgpu|auto` overrides the choice; `setBackend` /
 * `useBackend` change it at any time.
 */
function defaultBackendName(): string {
  try {
    return Deno.env.get("LF_BACKEND") || "auto";
  } catch {
    return "auto"; // no --allow-env
  }
}
await useBackend(defaultBackendName());
