/**
 * The page's prefix-tuning settings and their defaults, in a module of their own (no library
 * code) so that the page's script shares them with its engine worker without bundling the
 * library.
 *
 * @module
 */

/** Prefix-tuning settings; defaults follow the miniature's prefix runs. */
export interface TrainSettings {
  /** Optimizer steps. */
  steps: number;
  /** Training pairs used (the first N of the file). */
  pairs: number;
  /** Prefix length L. */
  prefixLen: number;
  /** Hidden size of the reparametrisation MLP. */
  midDim: number;
  /** Batch size. */
  batchSize: number;
  /** Peak learning rate. */
  lr: number;
  /** Linear warmup steps. */
  warmupSteps: number;
  /** Gradient-norm clipping (0: none). */
  maxGradNorm: number;
  /** Weight decay. */
  weightDecay: number;
  /** Dropout on the prefix activations. */
  dropout: number;
  /** Seed of the prefix initialisation, the batch order and dropout. */
  seed: number;
  /** Length-bucketing window of the batcher. */
  bucketSize: number;
}

/** Defaults of {@link TrainSettings} (those of `configs/mini_ablation.yaml`'s L=5 run). */
export const TRAIN_DEFAULTS: TrainSettings = {
  steps: 20,
  pairs: 200,
  prefixLen: 5,
  midDim: 512,
  batchSize: 10,
  lr: 0.002,
  warmupSteps: 0,
  maxGradNorm: 1,
  weightDecay: 0,
  dropout: 0,
  seed: 101,
  bucketSize: 200,
};
