/**
 * One optimizer step of the training loop, shared by {@linkcode fit} (`train/loop.ts`, which adds
 * run folders, checkpoints, signals and logs) and the in-browser engine: the learning rate of the
 * paper's schedule (linear warmup, then linear decay to 0), forward and backward, global
 * gradient-norm clipping, the AdamW update. Nothing here touches files or the environment, so it
 * runs unchanged in a browser.
 *
 * @module
 */
import { type Tensor, tidy } from "../autograd/tensor.ts";
import { type AdamW, clipGradNorm, linearWarmupDecay } from "../nn/optim.ts";

/** The settings one step needs. */
export interface StepSettings {
  /** Peak learning rate. */
  lr: number;
  /** Linear warmup steps. */
  warmupSteps: number;
  /** Global gradient-norm clip (0: none). */
  maxGradNorm: number;
}

/** What one step did. */
export interface StepOutcome {
  /** Training loss of the batch. */
  loss: number;
  /** Learning rate used. */
  lr: number;
  /** Gradient norm before clipping (null without clipping). */
  gradNorm: number | null;
}

/**
 * Step `step` (0-based) of a schedule of `totalSteps`: `loss` (called inside `tidy`) is
 * differentiated, the gradients of `opt`'s parameters are clipped to `maxGradNorm`, AdamW
 * updates them with the scheduled learning rate, and the gradients are cleared.
 */
export async function optimizerStep(
  opt: AdamW,
  loss: () => Tensor,
  step: number,
  totalSteps: number,
  s: StepSettings,
): Promise<StepOutcome> {
  const lr = s.lr * linearWarmupDecay(step, s.warmupSteps, totalSteps);
  const lossT = tidy(() => {
    const l = loss();
    l.backward();
    return l;
  });
  const value = await lossT.item();
  lossT.dispose();
  const gradNorm = s.maxGradNorm > 0 ? await clipGradNorm(opt.params, s.maxGradNorm) : null;
  opt.lr = lr;
  opt.step();
  opt.zeroGrad();
  return { loss: value, lr, gradNorm };
}
