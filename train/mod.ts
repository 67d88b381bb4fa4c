/**
 * Training: one loop ({@linkcode fit}) for prefix-tuning, fine-tuning and pretraining, run
 * folders that resume exactly and cannot be corrupted ({@linkcode RunDir}), one configuration
 * schema for every task, the E2E pipeline (train → decode → score) and the ablation.
 *
 * Prefix-tuning the shipped miniature on the shipped E2E data:
 *
 * ```ts
 * import { runE2E, TRAIN_DEFAULTS } from "./mod.ts";
 * const r = await runE2E({
 *   ...TRAIN_DEFAULTS,
 *   model: "results/mini/pretrain/model",
 *   lr: 2e-3,
 *   max_steps: 200,
 *   out: "runs/mini",
 * });
 * console.log(r.report); // a row of the paper's Table 1
 * ```
 *
 * @module
 */
export {
  applyConfig,
  changedKeys,
  type CommandLine,
  ConfigError,
  type ConfigKind,
  type ExtraFlag,
  flagName,
  type KeySpec,
  loadConfigFile,
  parseCommandLine,
  readConfigFile,
  type Schema,
  usageText,
} from "./config.ts";
export {
  fit,
  type FitHooks,
  type FitResult,
  type FitSettings,
  type FitTask,
  formatDuration,
  ProgressBar,
  scheduleSteps,
  type StepRecord,
} from "./loop.ts";
export {
  type LoopState,
  readLog,
  RUN_FILES,
  RunDir,
  type RunOpenOptions,
  type Stateful,
} from "./run.ts";
export { batchLoss, evalLoss, labelledPositions } from "./e2e_loss.ts";
export { optimizerStep, type StepOutcome, type StepSettings } from "./step.ts";
export {
  checkTrainConfig,
  lossCurve,
  resolveE2EData,
  TRAIN_DEFAULTS,
  TRAIN_SCHEMA,
  type TrainConfig,
  trainE2E,
  type TrainOptions,
  type TrainResult,
} from "./e2e.ts";
export {
  decodeAndScore,
  type DecodeScoreResult,
  type E2EResultScores,
  type E2ERunResult,
  loadTrainConfig,
  PAPER_E2E_MEDIUM,
  runE2E,
  tableRow,
} from "./pipeline.ts";
export {
  checkPretrainConfig,
  epochDocuments,
  loadPretrainConfig,
  packRows,
  pretrain,
  PRETRAIN_DEFAULTS,
  PRETRAIN_SCHEMA,
  type PretrainConfig,
  type PretrainResult,
} from "./pretrain.ts";
export {
  ABLATION_DEFAULTS,
  ABLATION_SCHEMA,
  type AblationConfig,
  type AblationRow,
  type AblationRun,
  ablationRunDone,
  ablationRuns,
  type AblationSettings,
  loadAblationConfig,
  runAblation,
  runAblationRun,
  stepStats,
  writeResults,
} from "./ablation.ts";
export { linePlot, niceTicks, type PlotOptions, type Series } from "./plot.ts";
