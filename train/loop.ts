/**
 * The one training loop, shared by prefix-tuning, fine-tuning and pretraining: AdamW with the
 * paper's schedule (linear warmup, then linear decay to 0), global gradient-norm clipping (each
 * step is {@linkcode optimizerStep}, which the in-browser engine uses too),
 * checkpoints in a {@linkcode RunDir} (each epoch, every `saveEvery` steps, at the end and on
 * SIGINT/SIGTERM), exact resume, a validation loss after each epoch and at the end, `log.jsonl`,
 * a wall-time budget and a progress bar.
 *
 * @module
 */
import { rng } from "../autograd/random.ts";
import type { Tensor } from "../autograd/tensor.ts";
import { AdamW } from "../nn/optim.ts";
import type { LoopState, RunDir, Stateful } from "./run.ts";
import { optimizerStep, type StepSettings } from "./step.ts";

/** Optimisation settings of {@linkcode fit}. */
export interface FitSettings extends StepSettings {
  /** AdamW decoupled weight decay. */
  weightDecay: number;
  /** Passes over the data. */
  epochs: number;
  /** Stop after this many optimizer steps (0: no limit); the schedule decays to 0 there. */
  maxSteps: number;
  /** Wall-time budget in minutes (0: none); the run then ends as finished. */
  maxMinutes: number;
  /** Extra checkpoint every N steps (0: only per epoch and at the end). */
  saveEvery: number;
}

/** What {@linkcode fit} trains. */
export interface FitTask<B> {
  /** The run folder (checkpoints, log). */
  run: RunDir;
  /** What a checkpoint holds: the trainable module. */
  trainable: Stateful;
  /** Parameters the optimizer updates. */
  params: Tensor[];
  /** Batches per epoch. */
  stepsPerEpoch: number;
  /** The batches of an epoch (deterministic for a given epoch: resume relies on it). */
  batches(epoch: number): B[];
  /** Scalar loss of a batch (called inside `tidy`; `fit` calls `backward`). */
  loss(batch: B): Tensor;
  /** Tokens a batch trains on (for tok/s). */
  tokens(batch: B): number;
  /** Validation loss (NaN: none); called after each epoch and when the run ends. */
  validate?(): Promise<number>;
  /** Sets training (true) or evaluation mode around validation. */
  setTraining?(training: boolean): void;
}

/** Hooks of {@linkcode fit}. */
export interface FitHooks {
  /** Messages (default: stderr). */
  log?: (s: string) => void;
  /** Stop (with a checkpoint, as an interruption) after this many steps of this invocation. */
  stopAfterSteps?: number;
  /** Called after every step (tests: e.g. send a signal mid-epoch). */
  onStep?: (step: number) => void | Promise<void>;
  /** Show the progress bar (default: when stderr is a terminal; else a line every 10 steps). */
  progress?: boolean;
}

/** One step line of `log.jsonl`. */
export interface StepRecord {
  /** Optimizer step (1-based). */
  step: number;
  /** Epoch (0-based). */
  epoch: number;
  /** Training loss. */
  loss: number;
  /** Learning rate used. */
  lr: number;
  /** Gradient norm before clipping (null without clipping). */
  grad_norm: number | null;
  /** Tokens in the batch. */
  tokens: number;
  /** Wall time of the step in ms. */
  ms: number;
}

/** What {@linkcode fit} did. */
export interface FitResult {
  /** Loop state at the end (saved in the checkpoint). */
  state: LoopState;
  /** Training loss of every step so far (all invocations). */
  losses: number[];
  /** Steps the schedule spans. */
  totalSteps: number;
  /** Stopped by a signal or `stopAfterSteps` (a checkpoint was written; resume continues). */
  interrupted: boolean;
  /** The signal that stopped it, if any. */
  signal: "SIGINT" | "SIGTERM" | null;
  /** The time budget ended the run. */
  budgetHit: boolean;
  /** Median wall time of a step of this invocation (seconds). */
  medianStepSeconds: number;
}

const enc = new TextEncoder();

/** Steps a schedule spans: `epochs × stepsPerEpoch`, capped by `maxSteps`. */
export function scheduleSteps(s: FitSettings, stepsPerEpoch: number): number {
  const all = s.epochs * stepsPerEpoch;
  if (s.maxSteps > 0) return all > 0 ? Math.min(s.maxSteps, all) : s.maxSteps;
  return all;
}

/** Runs (or resumes) the loop; see the module documentation. */
export async function fit<B>(
  task: FitTask<B>,
  s: FitSettings,
  hooks: FitHooks = {},
): Promise<FitResult> {
  const log = hooks.log ?? ((m: string) => Deno.stderr.writeSync(enc.encode(m + "\n")));
  if (task.stepsPerEpoch < 1) throw new Error("training data gives no batch");
  const totalSteps = scheduleSteps(s, task.stepsPerEpoch);
  if (totalSteps < 1) throw new Error("the schedule has no step (epochs and max_steps are 0)");
  const epochs = Math.ceil(totalSteps / task.stepsPerEpoch);
  const opt = new AdamW(task.params, { lr: s.lr, weightDecay: s.weightDecay });
  const run = task.run;
  let state: LoopState = {
    step: 0,
    epoch: 0,
    batchInEpoch: 0,
    rng: rng().getState(),
    validLosses: [],
    seconds: 0,
    finished: false,
  };
  let losses: number[] = [];
  if (run.resumable) {
    state = await run.loadTrainingState(task.trainable, opt);
    rng().setState(state.rng);
    const recs = await run.truncateLog(state.step);
    losses = recs.filter((r) => typeof r.step === "number").map((r) => r.loss as number);
    log(
      `resumed from ${run.checkpointDir} at step ${state.step} (epoch ${
        state.epoch + 1
      }, batch ${state.batchInEpoch})`,
    );
  } else await Deno.writeTextFile(run.logPath, "");

  let signal: "SIGINT" | "SIGTERM" | null = null;
  const handlers = (["SIGINT", "SIGTERM"] as const).map((sig) => {
    const h = () => {
      if (signal === null) log(`\n${sig}: saving a checkpoint after this step, then stopping`);
      signal = sig;
    };
    try {
      Deno.addSignalListener(sig, h);
    } catch { /* not supported on this platform */ }
    return [sig, h] as const;
  });

  const logFile = await Deno.open(run.logPath, { append: true, create: true });
  const writeRec = async (r: unknown) => {
    await logFile.write(enc.encode(JSON.stringify(r) + "\n"));
  };
  const bar = new ProgressBar(hooks.progress ?? Deno.stderr.isTerminal(), log);
  const t0 = performance.now();
  const base = state.seconds;
  const elapsed = () => base + (performance.now() - t0) / 1000;
  let stepsThisRun = 0, interrupted = false, budgetHit = false;
  const stepMs: number[] = [];
  const stopRequested = () =>
    signal !== null ||
    (hooks.stopAfterSteps !== undefined && stepsThisRun >= hooks.stopAfterSteps);

  const save = async () => {
    state.seconds = elapsed();
    state.rng = rng().getState();
    await run.saveTrainingState(state, task.trainable, opt);
  };
  const validate = async () => {
    if (!task.validate) return;
    task.setTraining?.(false);
    const vl = await task.validate();
    task.setTraining?.(true);
    if (Number.isNaN(vl)) return;
    state.validLosses.push({ step: state.step, loss: vl });
    await writeRec({ valid_step: state.step, epoch: state.epoch, valid_loss: vl });
    bar.clear();
    log(`step ${state.step}: validation loss ${vl.toFixed(4)}`);
  };

  try {
    if (state.finished) log("the run had finished; nothing left to train");
    outer: while (!state.finished) {
      const epoch = state.epoch;
      const batches = task.batches(epoch);
      for (let b = state.batchInEpoch; b < batches.length; b++) {
        const ts = performance.now();
        const { loss, lr, gradNorm } = await optimizerStep(
          opt,
          () => task.loss(batches[b]),
          state.step,
          totalSteps,
          s,
        );
        state.step++;
        state.batchInEpoch = b + 1;
        stepsThisRun++;
        const ms = performance.now() - ts;
        stepMs.push(ms);
        const tokens = task.tokens(batches[b]);
        losses.push(loss);
        const rec: StepRecord = {
          step: state.step,
          epoch,
          loss,
          lr,
          grad_norm: gradNorm,
          tokens,
          ms: Math.round(ms),
        };
        await writeRec(rec);
        bar.update(
          `step ${state.step}/${totalSteps} epoch ${epoch + 1}/${epochs} loss ${loss.toFixed(4)} ${
            (tokens / (ms / 1000)).toFixed(0)
          } tok/s`,
          state.step / totalSteps,
          (performance.now() - t0) / stepsThisRun * (totalSteps - state.step) / 1000,
          state.step,
        );
        if (!Number.isFinite(loss)) {
          throw new Error(`training diverged: loss ${loss} at step ${state.step}`);
        }
        await hooks.onStep?.(state.step);
        const endOfEpoch = state.batchInEpoch >= batches.length;
        if (state.step >= totalSteps) {
          state.finished = true;
        } else if (s.maxMinutes > 0 && elapsed() > s.maxMinutes * 60) {
          bar.clear();
          log(`time budget of ${s.maxMinutes} min spent at step ${state.step}: finishing here`);
          budgetHit = true;
          state.finished = true;
        }
        if (endOfEpoch && !state.finished) {
          state.epoch++;
          state.batchInEpoch = 0;
          await validate();
          await save();
          if (stopRequested()) {
            interrupted = true;
            log(`stopped at step ${state.step}; checkpoint saved: continue with --resume`);
            break outer;
          }
          continue outer;
        }
        if (state.finished) break outer;
        if (stopRequested()) {
          interrupted = true;
          await save();
          bar.clear();
          log(`stopped at step ${state.step}; checkpoint saved: continue with --resume`);
          break outer;
        }
        if (s.saveEvery > 0 && state.step % s.saveEvery === 0) await save();
      }
      // An epoch that had no batch left (resumed exactly at its end).
      state.epoch++;
      state.batchInEpoch = 0;
    }
    if (state.finished && !interrupted && stepsThisRun > 0) {
      bar.clear();
      await validate();
      await save();
    }
  } finally {
    bar.clear();
    logFile.close();
    for (const [sig, h] of handlers) {
      try {
        Deno.removeSignalListener(sig, h);
      } catch { /* ignore */ }
    }
    opt.dispose();
  }
  stepMs.sort((a, b) => a - b);
  return {
    state,
    losses,
    totalSteps,
    interrupted,
    signal,
    budgetHit,
    medianStepSeconds: stepMs.length ? stepMs[stepMs.length >> 1] / 1000 : NaN,
  };
}

/** Formats seconds as `1h02m` or `3m07s`. */
export function formatDuration(s: number): string {
  if (!Number.isFinite(s)) return "?";
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = Math.floor(s % 60);
  return h ? `${h}h${String(m).padStart(2, "0")}m` : `${m}m${String(sec).padStart(2, "0")}s`;
}

/**
 * A one-line progress bar on a terminal (redrawn in place, cleared before any other message),
 * or a plain line every 10 updates elsewhere.
 */
export class ProgressBar {
  #tty: boolean;
  #log: (s: string) => void;
  #write: (s: string) => void;
  #shown = false;

  /** A bar drawn with `write` (default: stderr) when `tty`, else plain lines through `log`. */
  constructor(
    tty: boolean,
    log: (s: string) => void,
    write: (s: string) => void = (s) => Deno.stderr.writeSync(enc.encode(s)),
  ) {
    this.#tty = tty;
    this.#log = log;
    this.#write = write;
  }

  /** Shows `text` with the fraction done and the seconds left. */
  update(text: string, frac: number, etaSeconds: number, count: number): void {
    const w = 24, filled = Math.max(0, Math.min(w, Math.round(frac * w)));
    const line = `[${"#".repeat(filled)}${"-".repeat(w - filled)}] ${text} ETA ${
      formatDuration(etaSeconds)
    }`;
    if (this.#tty) {
      // \r back to the start, \x1b[K erases what a longer previous line left.
      this.#write(`\r${line}\x1b[K`);
      this.#shown = true;
    } else if (count === 1 || count % 10 === 0 || frac >= 1) this.#log(line);
  }

  /** Erases the bar so that the next message starts on a clean line. */
  clear(): void {
    if (this.#tty && this.#shown) {
      this.#write("\r\x1b[K");
      this.#shown = false;
    }
  }
}
