/**
 * Prefix-tuning and fine-tuning of GPT-2 on E2E with the one loop of {@linkcode fit}: the
 * training configuration (schema, defaults, checks) and {@linkcode trainE2E}, which trains with
 * the loss of `train/e2e_loss.ts` and writes a run folder:
 *
 * `config.yaml`, `log.jsonl`, `checkpoint/`, `loss.svg`, `summary.json`, and the result:
 * `prefix/` (computed prefix) and `peft/` (Hugging Face peft format) for prefix runs, `model/`
 * (Hugging Face GPT-2 folder) for fine-tuning runs.
 *
 * ```ts
 * import { TRAIN_DEFAULTS, trainE2E } from "./mod.ts";
 * await trainE2E({ ...TRAIN_DEFAULTS, model: "results/mini/pretrain/model", lr: 2e-3, max_steps: 100, out: "runs/try" });
 * ```
 *
 * @module
 */
import * as lf from "../autograd/mod.ts";
import { useBackend } from "../kernels/select.ts";
import { GPT2 } from "../models/gpt2.ts";
import { loadComputedPrefix, PrefixTuning, savePeftPrefix } from "../models/prefix.ts";
import { type Batch, makeBatches } from "../data/batching.ts";
import { e2eSplitPath, encodePairs, readE2ESplit, shippedE2EDir } from "../data/e2e.ts";
import { GPT2Tokenizer } from "../data/tokenizer.ts";
import { atomicWriteText } from "../io/atomic.ts";
import { cacheRoot, ensureModel } from "../hub/mod.ts";
import { ConfigError, type Schema, STEP_SCHEMA } from "./config.ts";
import { batchLoss, evalLoss } from "./e2e_loss.ts";
import { fit, type FitHooks } from "./loop.ts";
import { linePlot } from "./plot.ts";
import { readLog, RunDir, type RunOpenOptions, type Stateful } from "./run.ts";

/** Every setting of a prefix-tuning or fine-tuning run (and of its decoding and scoring). */
export interface TrainConfig {
  /** `prefix` (frozen GPT-2, trainable prefix) or `fine` (all weights). */
  tuner: "prefix" | "fine";
  /** GPT-2 folder or Hugging Face id. */
  model: string;
  /** Folder with train/valid/test `.txt` (or `.txt.gz`); null: cached download, else shipped. */
  data: string | null;
  /** Prefix length L. */
  prefix_len: number;
  /** Width of the reparameterisation MLP. */
  mid_dim: number;
  /** Train through the MLP (paper) or the prefix matrix directly. */
  prefix_mlp: boolean;
  /** Dropout on the prefix activations. */
  prefix_dropout: number;
  /** Passes over the training data. */
  epochs: number;
  /** Stop after this many optimizer steps (0: no limit). */
  max_steps: number;
  /** Examples per step. */
  batch_size: number;
  /** Peak learning rate. */
  lr: number;
  /** AdamW decoupled weight decay. */
  weight_decay: number;
  /** Linear warmup steps (then linear decay to 0). */
  warmup_steps: number;
  /** Global gradient-norm clip (0: none). */
  max_grad_norm: number;
  /** Seed of init, order and dropout. */
  seed: number;
  /** auto | cpu | wasm | webgpu. */
  backend: string;
  /** Run folder. */
  out: string;
  /** Length-bucketing chunk (0: none). */
  bucket_size: number;
  /** Use only the first N training pairs (0: all). */
  train_limit: number;
  /** Use only the first N validation pairs (0: all). */
  valid_limit: number;
  /** Cut examples longer than the model takes instead of failing. */
  truncate_long: boolean;
  /** Extra checkpoint every N steps (0: per epoch and at the end). */
  save_every: number;
  /** Wall-time budget of training in minutes (0: none). */
  max_minutes: number;
  /** Store the frozen weights as f16 where the backend can (prefix-tuning on WebGPU). */
  f16_frozen: boolean;
  /** After training, decode the test MRs and score them. */
  eval: boolean;
  /** Beam width for decoding. */
  beams: number;
  /** Decoding length limit. */
  max_new_tokens: number;
  /** Minimum generated length. */
  min_length: number;
  /** MRs per decoding batch. */
  gen_batch_size: number;
  /** Decode only the first N test MRs (0: all). */
  gen_limit: number;
  /** Score METEOR (needs its resource files). */
  meteor: boolean;
  /** METEOR resource folder (null: the cache). */
  meteor_dir: string | null;
}

/** The schema of {@linkcode TrainConfig}: type and help of each key. */
export const TRAIN_SCHEMA: Schema<TrainConfig> = {
  ...STEP_SCHEMA,
  tuner: {
    kind: "string",
    choices: ["prefix", "fine"],
    doc: "prefix: frozen GPT-2, trainable prefix; fine: all weights",
  },
  model: { kind: "string", doc: "GPT-2 folder or Hugging Face id (gpt2-medium, org/name)" },
  data: {
    kind: "string?",
    free: true,
    doc: "folder with train/valid/test .txt; null: cached download, else the shipped files",
  },
  prefix_len: { kind: "integer", min: 1, doc: "prefix length L" },
  mid_dim: { kind: "integer", min: 1, doc: "width of the reparameterisation MLP" },
  prefix_mlp: { kind: "boolean", doc: "train through the MLP (paper) instead of the matrix" },
  prefix_dropout: { kind: "number", min: 0, doc: "dropout on the prefix activations" },
  epochs: { kind: "integer", min: 0, doc: "passes over the training data" },
  max_steps: { kind: "integer", min: 0, doc: "stop after N optimizer steps (0: no limit)" },
  batch_size: { kind: "integer", min: 1, doc: "examples per step" },
  seed: { kind: "integer", doc: "seed of init, data order and dropout" },
  out: { kind: "string", free: true, doc: "run folder" },
  bucket_size: {
    kind: "integer",
    min: 0,
    doc: "sort chunks of N examples by length (less padding; 0: off)",
  },
  train_limit: { kind: "integer", min: 0, doc: "use the first N training pairs (0: all)" },
  valid_limit: {
    kind: "integer",
    min: 0,
    free: true,
    doc: "validation loss on the first N pairs (0: all)",
  },
  truncate_long: { kind: "boolean", doc: "cut examples longer than the model takes" },
  save_every: { kind: "integer", min: 0, free: true, doc: "also checkpoint every N steps" },
  max_minutes: {
    kind: "number",
    min: 0,
    free: true,
    doc: "training time budget in minutes (0: none)",
  },
  f16_frozen: {
    kind: "boolean",
    free: true,
    doc: "frozen GPT-2 weights as f16 on WebGPU with shader-f16",
  },
  eval: { kind: "boolean", free: true, doc: "after training, decode the test MRs and score" },
  beams: { kind: "integer", min: 1, free: true, doc: "beam width for decoding" },
  max_new_tokens: { kind: "integer", min: 1, free: true, doc: "decoding length limit" },
  min_length: { kind: "integer", min: 0, free: true, doc: "minimum generated tokens" },
  gen_batch_size: { kind: "integer", min: 1, free: true, doc: "MRs per decoding batch" },
  gen_limit: { kind: "integer", min: 0, free: true, doc: "decode the first N test MRs (0: all)" },
  meteor: { kind: "boolean", free: true, doc: "score METEOR (needs its resource files)" },
  meteor_dir: { kind: "string?", free: true, doc: "METEOR resource folder (null: the cache)" },
};

/** Defaults: the paper's prefix-tuning values for GPT-2 Medium (Li & Liang 2021). */
export const TRAIN_DEFAULTS: TrainConfig = {
  tuner: "prefix",
  model: "gpt2-medium",
  data: null,
  prefix_len: 5,
  mid_dim: 512,
  prefix_mlp: true,
  prefix_dropout: 0,
  epochs: 5,
  max_steps: 0,
  batch_size: 10,
  lr: 8e-5,
  weight_decay: 0,
  warmup_steps: 0,
  max_grad_norm: 1,
  seed: 101,
  backend: "auto",
  out: "runs/e2e_prefix",
  bucket_size: 0,
  train_limit: 0,
  valid_limit: 0,
  truncate_long: false,
  save_every: 0,
  max_minutes: 0,
  f16_frozen: false,
  eval: true,
  beams: 5,
  max_new_tokens: 100,
  min_length: 5,
  gen_batch_size: 10,
  gen_limit: 0,
  meteor: true,
  meteor_dir: null,
};

/** Checks across keys that types alone do not catch; returns `c`. */
export function checkTrainConfig(c: TrainConfig, where: string): TrainConfig {
  if (c.lr <= 0) throw new ConfigError(`${where}: 'lr' must be > 0, got ${c.lr}`);
  if (c.prefix_dropout >= 1) {
    throw new ConfigError(`${where}: 'prefix_dropout' must be < 1, got ${c.prefix_dropout}`);
  }
  if (c.epochs === 0 && c.max_steps === 0) {
    throw new ConfigError(`${where}: 'epochs' and 'max_steps' are both 0`);
  }
  if (c.bucket_size % c.batch_size !== 0) {
    throw new ConfigError(
      `${where}: 'bucket_size' must be a multiple of batch_size (${c.batch_size}), got ${c.bucket_size}`,
    );
  }
  return c;
}

/**
 * The E2E data folder: `data` when given, else the cached download of the official files,
 * else the files shipped with the library.
 */
export async function resolveE2EData(data: string | null): Promise<string> {
  if (data) return data;
  try {
    const cached = `${cacheRoot()}/e2e`;
    if (await Deno.stat(`${cached}/train.txt`).then(() => true, () => false)) return cached;
  } catch { /* no cache folder can be named */ }
  const shipped = shippedE2EDir();
  if (!shipped) throw new Error("no E2E data: pass data (a folder with train.txt)");
  return shipped;
}

/** Hooks and run-folder options of {@linkcode trainE2E}. */
export interface TrainOptions extends RunOpenOptions, FitHooks {
  /** Called with the trained model and prefix before they are freed (tests). */
  inspect?: (model: GPT2, prefix: PrefixTuning | null) => Promise<void>;
  /**
   * Time one step and print the estimated time per epoch before training. Default: for models
   * over 100M parameters off WebGPU (GPT-2 Medium on a CPU).
   */
  estimateEpoch?: boolean;
}

/** What {@linkcode trainE2E} did. */
export interface TrainResult {
  /** Losses of every step (all invocations). */
  losses: number[];
  /** Validation losses (after each epoch and at the end). */
  validLosses: number[];
  /** Trainable parameter count. */
  trainable: number;
  /** Parameters of GPT-2. */
  modelParams: number;
  /** Stopped by a signal or `stopAfterSteps`; resume continues. */
  interrupted: boolean;
  /** The signal that stopped it. */
  signal: "SIGINT" | "SIGTERM" | null;
  /** Run folder. */
  out: string;
  /** The folder of the GPT-2 that was trained or kept frozen. */
  modelDir: string;
  /** The E2E data folder used. */
  dataDir: string;
}

const stderr = (s: string) => Deno.stderr.writeSync(new TextEncoder().encode(s + "\n"));

/** Runs (or resumes) a prefix-tuning or fine-tuning run; see the module documentation. */
export async function trainE2E(cfg: TrainConfig, opts: TrainOptions = {}): Promise<TrainResult> {
  const log = opts.log ?? stderr;
  checkTrainConfig(cfg, "config");
  // Everything that can fail for want of files happens before the run folder is touched.
  const modelDir = await ensureModel(cfg.model).catch((e) => {
    throw new ConfigError(
      `cannot get the model '${cfg.model}': ${(e as Error).message.split("\n")[0]}\n` +
        `This configuration needs it from the Hugging Face hub (or its cache); nothing was written.\n` +
        `Offline, the default runs on the shipped miniature GPT-2 and E2E data: deno task train`,
    );
  });
  const dataDir = await resolveE2EData(cfg.data);
  const tok = await GPT2Tokenizer.fromPretrained(modelDir);
  let trainPairs = await readE2ESplit(dataDir, "train");
  let validPairs = await readE2ESplit(dataDir, "valid");
  if (cfg.train_limit > 0) trainPairs = trainPairs.slice(0, cfg.train_limit);
  if (cfg.valid_limit > 0) validPairs = validPairs.slice(0, cfg.valid_limit);
  const backend = await useBackend(cfg.backend, log);
  lf.manualSeed(cfg.seed);
  const model = await GPT2.fromPretrained(modelDir, { backend });
  const L = cfg.tuner === "prefix" ? cfg.prefix_len : 0;
  const maxLength = model.config.nPositions - L;
  const trainEx = encodePairs(tok, trainPairs, {
    maxLength,
    truncate: cfg.truncate_long,
    source: await e2eSplitPath(dataDir, "train"),
  });
  const validEx = encodePairs(tok, validPairs, {
    maxLength,
    truncate: cfg.truncate_long,
    source: await e2eSplitPath(dataDir, "valid"),
  });
  log(`data: ${trainEx.length} training and ${validEx.length} validation pairs from ${dataDir}`);

  const modelParams = model.numParameters();
  let prefix: PrefixTuning | null = null;
  let run: RunDir | null = null;
  try {
    let params: lf.Tensor[];
    let trainable: Stateful;
    if (cfg.tuner === "prefix") {
      model.freeze();
      model.eval(); // as in the paper's code: the frozen GPT-2 runs without dropout
      if (cfg.f16_frozen) {
        const r = await model.storeFrozenAsF16();
        log(
          r.parameters > 0
            ? `f16_frozen: ${r.parameters} frozen tensors stored as f16 (${
              (r.bytesSaved / 2 ** 20).toFixed(1)
            } MiB saved)`
            : `f16_frozen: backend ${backend.name} cannot store f16 weights; they stay f32`,
        );
      }
      const d = model.config;
      prefix = new PrefixTuning({
        prefixLen: cfg.prefix_len,
        nLayer: d.nLayer,
        nHead: d.nHead,
        nEmbd: d.nEmbd,
        mid: cfg.mid_dim,
        mlp: cfg.prefix_mlp,
        dropout: cfg.prefix_dropout,
      }, { seed: cfg.seed, backend });
      params = prefix.parameters();
      trainable = prefix;
    } else {
      model.train();
      params = model.parameters();
      trainable = model;
    }
    const nTrainable = params.reduce((s, p) => s + p.size, 0);
    log(
      `model: ${modelDir} (${(modelParams / 1e6).toFixed(1)}M parameters); tuner ${cfg.tuner}: ` +
        `${nTrainable.toLocaleString("en")} trainable (${
          (100 * nTrainable / modelParams).toFixed(3)
        }%)`,
    );
    const stepsPerEpoch = Math.ceil(trainEx.length / cfg.batch_size);
    const batchesOf = (epoch: number) =>
      makeBatches(trainEx, tok.eosTokenId, {
        batchSize: cfg.batch_size,
        seed: cfg.seed,
        epoch,
        bucketSize: cfg.bucket_size,
      });
    const lossOf = (b: Batch) => batchLoss(model, prefix, b, backend);

    run = await RunDir.open(cfg.out, TRAIN_SCHEMA, cfg, { ...opts, log });
    const estimate = opts.estimateEpoch ?? (backend.name !== "webgpu" && modelParams > 100e6);
    if (!run.resumable && estimate) {
      await estimateEpoch(batchesOf(0)[0], lossOf, params, stepsPerEpoch, backend.name, log);
    }
    const t0 = performance.now();
    const r = await fit({
      run,
      trainable,
      params,
      stepsPerEpoch,
      batches: batchesOf,
      loss: lossOf,
      tokens: (b) => b.mask.flat().reduce((s, v) => s + v, 0),
      validate: () => evalLoss(model, prefix, validEx, tok.eosTokenId, cfg.batch_size),
      setTraining: (t) => {
        if (prefix) prefix.training = t;
        else model.train(t);
      },
    }, {
      lr: cfg.lr,
      weightDecay: cfg.weight_decay,
      warmupSteps: cfg.warmup_steps,
      maxGradNorm: cfg.max_grad_norm,
      epochs: cfg.epochs,
      maxSteps: cfg.max_steps,
      maxMinutes: cfg.max_minutes,
      saveEvery: cfg.save_every,
    }, { ...opts, log });

    if (!r.interrupted) {
      model.eval();
      if (prefix) prefix.training = false;
      await writeOutputs(cfg, cfg.out, prefix, model, modelDir);
      await atomicWriteText(
        `${cfg.out}/loss.svg`,
        lossCurve(
          r.losses,
          r.state.validLosses,
          `${
            cfg.tuner === "prefix" ? `prefix-tuning (L=${cfg.prefix_len})` : "fine-tuning"
          } — ${cfg.model}`,
        ),
      );
      const stepRecs = (await readLog(run.logPath)).filter((x) => typeof x.step === "number");
      const ms = stepRecs.map((x) => x.ms as number).sort((a, b) => a - b);
      const summary = {
        tuner: cfg.tuner,
        model: cfg.model,
        backend: backend.name,
        trainable_params: nTrainable,
        model_params: modelParams,
        trainable_percent: 100 * nTrainable / modelParams,
        steps: r.state.step,
        steps_per_epoch: stepsPerEpoch,
        schedule_steps: r.totalSteps,
        time_budget_hit: r.budgetHit,
        seconds_total: r.state.seconds,
        seconds_this_invocation: (performance.now() - t0) / 1000,
        median_step_seconds: ms.length ? ms[ms.length >> 1] / 1000 : null,
        valid_losses: r.state.validLosses,
        final_train_loss: r.losses.at(-1) ?? null,
      };
      await atomicWriteText(`${cfg.out}/summary.json`, JSON.stringify(summary, null, 2) + "\n");
      log(`done: ${r.state.step} steps; outputs in ${cfg.out}`);
    }
    await opts.inspect?.(model, prefix);
    return {
      losses: r.losses,
      validLosses: r.state.validLosses.map((v) => v.loss),
      trainable: nTrainable,
      modelParams,
      interrupted: r.interrupted,
      signal: r.signal,
      out: cfg.out,
      modelDir,
      dataDir,
    };
  } finally {
    await run?.close();
    prefix?.dispose();
    model.dispose();
  }
}

/** Times one forward/backward step and prints the estimated time per epoch (large CPU runs). */
async function estimateEpoch(
  batch: Batch,
  lossOf: (b: Batch) => lf.Tensor,
  params: lf.Tensor[],
  stepsPerEpoch: number,
  backendName: string,
  log: (s: string) => void,
): Promise<void> {
  const saved = lf.rng().getState();
  const t = performance.now();
  const l = lf.tidy(() => {
    const x = lossOf(batch);
    x.backward();
    return x;
  });
  await l.item();
  l.dispose();
  for (const p of params) p.zeroGrad();
  lf.rng().setState(saved);
  const s = (performance.now() - t) / 1000;
  const h = s * stepsPerEpoch / 3600;
  log(
    `note: training runs on the ${backendName} backend, not a GPU: one step took ${
      s.toFixed(1)
    } s, so one epoch (${stepsPerEpoch} steps) takes about ${
      h >= 1 ? `${h.toFixed(1)} h` : `${(h * 60).toFixed(0)} min`
    }`,
  );
}

async function writeOutputs(
  cfg: TrainConfig,
  out: string,
  prefix: PrefixTuning | null,
  model: GPT2,
  modelDir: string,
): Promise<void> {
  if (prefix) {
    const meta = { base_model: cfg.model, tuner: "prefix", mid_dim: String(cfg.mid_dim) };
    await prefix.export(`${out}/prefix`, meta);
    await savePeftPrefix(
      `${out}/peft`,
      await loadComputedPrefix(`${out}/prefix`),
      cfg.model,
      cfg.mid_dim,
    );
    await atomicWriteText(`${out}/prefix/base_model.txt`, modelDir + "\n");
  } else {
    await model.save(`${out}/model`);
    for (const f of ["vocab.json", "merges.txt", "tokenizer.json"]) {
      await Deno.copyFile(`${modelDir}/${f}`, `${out}/model/${f}`).catch(() => {});
    }
  }
}

/** The loss curve: a running mean of the step losses and the validation points. */
export function lossCurve(
  losses: number[],
  valid: { step: number; loss: number }[],
  title: string,
): string {
  const k = Math.max(1, Math.floor(losses.length / 200));
  const smooth: [number, number][] = [];
  for (let i = 0; i < losses.length; i += k) {
    const w = losses.slice(i, i + k);
    smooth.push([i + w.length, w.reduce((a, b) => a + b, 0) / w.length]);
  }
  const series = [{ name: "train loss", points: smooth, markers: false }];
  if (valid.length) {
    series.push({
      name: "validation loss",
      points: valid.map((v) => [v.step, v.loss] as [number, number]),
      markers: true,
    });
  }
  return linePlot(series, { title, xLabel: "step", yLabel: "cross-entropy" });
}
