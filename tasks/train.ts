/**
 * `deno task train`: prefix-tuning (default) or full fine-tuning of GPT-2 on E2E.
 *
 * ```sh
 * deno task train                                  # configs/e2e_prefix.yaml (GPT-2 Medium)
 * deno task train --tuner fine                     # configs/e2e_finetune.yaml
 * deno task train --model DIR --data DIR --epochs 1 --max-steps 100 --out runs/try
 * deno task train --out runs/try --resume          # continue exactly where the last checkpoint was
 * ```
 *
 * Writes into `out`: `config.yaml` (the merged configuration), `log.jsonl` (one line per
 * step, plus validation lines), `checkpoint/` (each epoch and every `save_every` steps,
 * replaced atomically), `loss.svg`, `summary.json`, and the result: `prefix/` (computed prefix,
 * our format) and `peft/` (Hugging Face peft format) for prefix runs, `model/` (full HF-format
 * GPT-2) for fine-tuning runs. Ctrl-C stops after the current step; the last checkpoint stays.
 *
 * @module
 */
import { stringify as toYaml } from "yaml";
import * as lf from "../mod.ts";
import { GPT2 } from "../models/gpt2.ts";
import {
  atomicWriteText,
  type LayerPast,
  loadComputedPrefix,
  PrefixTuning,
  savePeftPrefix,
} from "../models/prefix.ts";
import { loadSafetensors, writeSafetensors } from "../models/safetensors.ts";
import { AdamW, clipGradNorm, linearWarmupDecay } from "../nn/optim.ts";
import { type Batch, makeBatches } from "../data/batching.ts";
import { encodeExample, readE2E } from "../data/e2e.ts";
import { GPT2Tokenizer } from "../data/tokenizer.ts";
import { downloadData, ensureModel } from "./download.ts";
import { useBackend } from "../kernels/select.ts";
import { contiguousView } from "../kernels/backend.ts";
import { ConfigError, parseTrainArgs, type TrainConfig, usage } from "./config.ts";
import { linePlot } from "./svg_plot.ts";
import { launchSweep, seedSweep, SWEEP_USAGE, takeSweepFlags } from "../train/sweep.ts";

/** One line of `log.jsonl`. */
export interface StepLog {
  /** Optimizer step (1-based). */
  step: number;
  /** Epoch (0-based). */
  epoch: number;
  /** Training loss of the step. */
  loss: number;
  /** Learning rate used. */
  lr: number;
  /** Gradient norm before clipping. */
  grad_norm: number;
  /** Tokens in the batch (non-pad). */
  tokens: number;
  /** Wall time of the step in ms. */
  ms: number;
}

/** What a finished (or stopped) run reports. */
export interface TrainResult {
  /** Losses of every step taken by this invocation and before it (from the log). */
  losses: number[];
  /** Validation loss after each finished epoch. */
  validLosses: number[];
  /** Trainable parameter count. */
  trainable: number;
  /** Parameters of the frozen (or tuned) GPT-2. */
  modelParams: number;
  /** Whether the run was interrupted. */
  interrupted: boolean;
  /** Output folder. */
  out: string;
}

/** Hooks for tests and callers. */
export interface TrainHooks {
  /** Progress and messages (default: stderr). */
  log?: (s: string) => void;
  /** Stop after this many steps of this invocation (simulates an interruption). */
  stopAfterSteps?: number;
  /** Continue from the checkpoint in `out`. */
  resume?: boolean;
  /** Called with the trained model and prefix before they are freed (tests). */
  inspect?: (model: GPT2, prefix: PrefixTuning | null) => Promise<void>;
}

interface Checkpoint {
  step: number;
  epoch: number;
  batchInEpoch: number;
  rng: number[];
  validLosses: number[];
  /** Training seconds before this invocation (time budgets span resumes). */
  seconds?: number;
}

const enc = new TextEncoder();

/** Runs training; see the module documentation. */
export async function train(cfg: TrainConfig, hooks: TrainHooks = {}): Promise<TrainResult> {
  const log = hooks.log ?? ((s: string) => Deno.stderr.writeSync(enc.encode(s + "\n")));
  const out = cfg.out;
  await Deno.mkdir(out, { recursive: true });
  const backend = await useBackend(cfg.backend, log);

  // ---- data and model ----
  const modelDir = await ensureModel(cfg.model);
  const dataDir = cfg.data ?? (await downloadData("e2e"));
  const tok = await GPT2Tokenizer.fromDir(modelDir).catch(() => GPT2Tokenizer.offlineDefault());
  let trainPairs = await readE2E(`${dataDir}/train.txt`);
  let validPairs = await readE2E(`${dataDir}/valid.txt`);
  if (cfg.train_limit > 0) trainPairs = trainPairs.slice(0, cfg.train_limit);
  if (cfg.valid_limit > 0) validPairs = validPairs.slice(0, cfg.valid_limit);
  const trainEx = trainPairs.map((p) => encodeExample(tok, p.mr, p.ref));
  const validEx = validPairs.map((p) => encodeExample(tok, p.mr, p.ref));
  log(`data: ${trainEx.length} training and ${validEx.length} validation pairs from ${dataDir}`);

  lf.manualSeed(cfg.seed);
  const model = await GPT2.fromPretrained(modelDir, { backend });
  const dims = model.config;
  const modelParams = model.parameters().reduce((s, p) => s + p.size, 0);
  let prefix: PrefixTuning | null = null;
  let params: lf.Tensor[];
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
    prefix = new PrefixTuning({
      prefixLen: cfg.prefix_len,
      nLayer: dims.nLayer,
      nHead: dims.nHead,
      nEmbd: dims.nEmbd,
      mid: cfg.mid_dim,
      mlp: cfg.prefix_mlp,
      dropout: cfg.prefix_dropout,
    }, { seed: cfg.seed, backend });
    params = prefix.parameters();
  } else {
    model.train();
    params = model.parameters();
  }
  const trainable = params.reduce((s, p) => s + p.size, 0);
  log(
    `model: ${modelDir} (${(modelParams / 1e6).toFixed(1)}M parameters); tuner ${cfg.tuner}: ` +
      `${trainable.toLocaleString("en")} trainable (${
        (100 * trainable / modelParams).toFixed(3)
      }%)`,
  );

  const batchesPerEpoch = Math.ceil(trainEx.length / cfg.batch_size);
  const totalSteps = cfg.max_steps > 0
    ? Math.min(cfg.max_steps, cfg.epochs * batchesPerEpoch || cfg.max_steps)
    : cfg.epochs * batchesPerEpoch;
  const epochs = Math.ceil(totalSteps / batchesPerEpoch);
  const opt = new AdamW(params, { lr: cfg.lr, weightDecay: cfg.weight_decay });

  // ---- resume ----
  let state: Checkpoint = {
    step: 0,
    epoch: 0,
    batchInEpoch: 0,
    rng: lf.rng().getState(),
    validLosses: [],
  };
  const ckDir = `${out}/checkpoint`;
  if (hooks.resume) {
    state = await loadCheckpoint(ckDir, prefix, model, opt);
    lf.rng().setState(state.rng);
    await truncateLog(`${out}/log.jsonl`, state.step);
    log(
      `resumed from ${ckDir} at step ${state.step} (epoch ${state.epoch}, batch ${state.batchInEpoch})`,
    );
  } else {
    await Deno.writeTextFile(`${out}/log.jsonl`, "");
  }
  await atomicWriteText(`${out}/config.yaml`, toYaml(cfg));

  let interrupted = false;
  const onSigint = () => {
    interrupted = true;
    log("\ninterrupt: stopping after this step; the last checkpoint is kept");
  };
  try {
    Deno.addSignalListener("SIGINT", onSigint);
  } catch { /* not supported on this platform */ }

  const logFile = await Deno.open(`${out}/log.jsonl`, { append: true, create: true });
  const startTime = performance.now();
  const baseSeconds = state.seconds ?? 0;
  const elapsed = () => baseSeconds + (performance.now() - startTime) / 1000;
  let budgetHit = false;
  let stepsThisRun = 0;
  const epochTimes: number[] = [];
  try {
    outer: for (let epoch = state.epoch; epoch < epochs; epoch++) {
      const epochStart = performance.now();
      const batches = makeBatches(trainEx, tok.eosTokenId, {
        batchSize: cfg.batch_size,
        seed: cfg.seed,
        epoch,
        bucketSize: cfg.bucket_size,
      });
      const first = epoch === state.epoch ? state.batchInEpoch : 0;
      for (let b = first; b < batches.length; b++) {
        if (state.step >= totalSteps) break outer;
        const t0 = performance.now();
        const lr = cfg.lr * linearWarmupDecay(state.step, cfg.warmup_steps, totalSteps);
        const lossT = lf.tidy(() => {
          const l = batchLoss(model, prefix, batches[b], backend);
          l.backward();
          return l;
        });
        const loss = await lossT.item();
        lossT.dispose();
        const gradNorm = cfg.max_grad_norm > 0
          ? await clipGradNorm(params, cfg.max_grad_norm)
          : NaN;
        opt.lr = lr;
        opt.step();
        opt.zeroGrad();
        state.step++;
        stepsThisRun++;
        const ms = performance.now() - t0;
        const tokens = batches[b].mask.flat().reduce((s, v) => s + v, 0);
        const rec: StepLog = {
          step: state.step,
          epoch,
          loss,
          lr,
          grad_norm: gradNorm,
          tokens,
          ms: Math.round(ms),
        };
        await logFile.write(enc.encode(JSON.stringify(rec) + "\n"));
        progress(
          log,
          state.step,
          totalSteps,
          epoch,
          epochs,
          loss,
          tokens,
          ms,
          performance.now() - startTime,
          stepsThisRun,
        );
        state.batchInEpoch = b + 1;
        state.epoch = epoch;
        if (!Number.isFinite(loss)) {
          throw new Error(`training diverged: loss ${loss} at step ${state.step}`);
        }
        const stopNow = interrupted ||
          (hooks.stopAfterSteps !== undefined && stepsThisRun >= hooks.stopAfterSteps);
        if (cfg.save_every > 0 && state.step % cfg.save_every === 0 && !stopNow) {
          state.seconds = elapsed();
          await saveCheckpoint(ckDir, state, prefix, model, opt);
        }
        if (stopNow) {
          interrupted = true;
          break outer;
        }
        if (cfg.max_minutes > 0 && elapsed() > cfg.max_minutes * 60) {
          budgetHit = true;
          log(
            `\ntime budget of ${cfg.max_minutes} min spent at step ${state.step}: finishing here`,
          );
          break;
        }
      }
      // End of epoch: validation loss and checkpoint.
      const vl = await validLoss(model, prefix, validEx, tok.eosTokenId, cfg.batch_size, backend);
      state.validLosses.push(vl);
      epochTimes.push((performance.now() - epochStart) / 1000);
      await logFile.write(enc.encode(JSON.stringify({ epoch, valid_loss: vl }) + "\n"));
      log(`\nepoch ${epoch + 1}/${epochs}: validation loss ${vl.toFixed(4)}`);
      state.epoch = epoch + 1;
      state.batchInEpoch = 0;
      state.seconds = elapsed();
      await saveCheckpoint(ckDir, state, prefix, model, opt);
      if (budgetHit) break;
    }
  } finally {
    logFile.close();
    try {
      Deno.removeSignalListener("SIGINT", onSigint);
    } catch { /* ignore */ }
  }

  const losses = await readLosses(`${out}/log.jsonl`);
  if (!interrupted) {
    await writeOutputs(cfg, out, prefix, model, modelDir);
    await Deno.writeTextFile(
      `${out}/loss.svg`,
      lossCurve(losses, state.validLosses, batchesPerEpoch, cfg),
    );
    const summary = {
      tuner: cfg.tuner,
      model: cfg.model,
      backend: backend.name,
      trainable_params: trainable,
      model_params: modelParams,
      trainable_percent: 100 * trainable / modelParams,
      steps: state.step,
      steps_per_epoch: batchesPerEpoch,
      epochs_run: epochTimes.length,
      time_budget_hit: budgetHit,
      seconds_total: elapsed(),
      seconds_per_epoch: epochTimes,
      valid_losses: state.validLosses,
      final_train_loss: losses.at(-1),
    };
    await atomicWriteText(`${out}/summary.json`, JSON.stringify(summary, null, 2) + "\n");
    log(`done: ${state.step} steps; outputs in ${out}`);
  }
  const result = {
    losses,
    validLosses: state.validLosses,
    trainable,
    modelParams,
    interrupted,
    out,
  };
  await hooks.inspect?.(model, prefix);
  prefix?.dispose();
  opt.dispose();
  model.dispose();
  return result;
}

/** Past keys/values of the prefix for a batch, and the attention mask over prefix + tokens. */
function prefixInputs(
  prefix: PrefixTuning | null,
  batch: Batch,
  backend: lf.Backend,
): { past?: LayerPast[]; mask: lf.Tensor } {
  const B = batch.ids.length;
  const L = prefix ? prefix.config.prefixLen : 0;
  const mask = lf.tensor(batch.mask.map((r) => [...new Array(L).fill(1), ...r]), { backend });
  return { past: prefix ? prefix.past(B) : undefined, mask };
}

/**
 * Mean next-token cross-entropy of a batch (Hugging Face semantics: position t predicts
 * label t+1; -100 labels are skipped). Only the positions that carry a label go through the
 * LM head (the [n_embd × 50257] product dominates a step): the MR half of each example and the
 * padding never reach it. The result equals the loss over all logits.
 */
export function batchLoss(
  model: GPT2,
  prefix: PrefixTuning | null,
  batch: Batch,
  backend: lf.Backend,
): lf.Tensor {
  const ids = lf.ids(batch.ids, { backend });
  const { past, mask } = prefixInputs(prefix, batch, backend);
  const { hidden } = model.hidden(ids, { past, attentionMask: mask });
  const [B, T, C] = hidden.shape;
  const rows: number[] = [], targets: number[] = [];
  for (let b = 0; b < B; b++) {
    for (let t = 0; t + 1 < T; t++) {
      const y = batch.labels[b][t + 1];
      if (y === -100) continue;
      rows.push(b * T + t);
      targets.push(y);
    }
  }
  if (rows.length === 0) throw new Error("batch has no labelled positions");
  const picked = lf.embedding(hidden.reshape(B * T, C), lf.ids(rows, { backend }));
  return model.lmHead(picked).crossEntropy(lf.ids(targets, { backend }));
}

async function validLoss(
  model: GPT2,
  prefix: PrefixTuning | null,
  examples: { ids: number[]; labels: number[] }[],
  padId: number,
  batchSize: number,
  backend: lf.Backend,
): Promise<number> {
  if (examples.length === 0) return NaN;
  const wasTraining = model.training;
  model.eval();
  if (prefix) prefix.training = false;
  const batches = makeBatches(examples, padId, { batchSize, shuffle: false });
  let total = 0, count = 0;
  for (const b of batches) {
    const l = lf.noGrad(() => lf.tidy(() => batchLoss(model, prefix, b, backend)));
    const n = b.labels.reduce((s, r) => s + r.slice(1).filter((v) => v !== -100).length, 0);
    total += (await l.item()) * n;
    count += n;
    l.dispose();
  }
  if (wasTraining) model.train();
  if (prefix) prefix.training = true;
  return total / count;
}

function progress(
  log: (s: string) => void,
  step: number,
  total: number,
  epoch: number,
  epochs: number,
  loss: number,
  tokens: number,
  ms: number,
  elapsedMs: number,
  stepsThisRun: number,
): void {
  const frac = step / total;
  const w = 24, filled = Math.round(frac * w);
  const eta = (elapsedMs / stepsThisRun) * (total - step) / 1000;
  const line =
    `[${"#".repeat(filled)}${"-".repeat(w - filled)}] step ${step}/${total} epoch ${
      epoch + 1
    }/${epochs} ` +
    `loss ${loss.toFixed(4)} ${(tokens / (ms / 1000)).toFixed(0)} tok/s ETA ${fmtTime(eta)}`;
  if (Deno.stderr.isTerminal()) Deno.stderr.writeSync(enc.encode(`\r${line}`));
  else if (step === 1 || step % 10 === 0 || step === total) log(line);
}

function fmtTime(s: number): string {
  if (!Number.isFinite(s)) return "?";
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = Math.floor(s % 60);
  return h ? `${h}h${String(m).padStart(2, "0")}m` : `${m}m${String(sec).padStart(2, "0")}s`;
}

async function paramsToTensors(
  named: [string, lf.Tensor][],
): Promise<Record<string, { dtype: "F32"; shape: number[]; data: Float32Array }>> {
  const out: Record<string, { dtype: "F32"; shape: number[]; data: Float32Array }> = {};
  for (const [name, t] of named) {
    out[name] = { dtype: "F32", shape: [...t.shape], data: (await t.data()) as Float32Array };
  }
  return out;
}

/** Writes the checkpoint into a fresh folder and swaps it in, so a crash never leaves half of one. */
async function saveCheckpoint(
  dir: string,
  state: Checkpoint,
  prefix: PrefixTuning | null,
  model: GPT2,
  opt: AdamW,
): Promise<void> {
  const tmp = `${dir}.tmp-${Deno.pid}`;
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
  await Deno.mkdir(tmp, { recursive: true });
  const named = prefix ? prefix.namedParameters() : model.namedParameters();
  await writeSafetensors(`${tmp}/trainable.safetensors`, await paramsToTensors(named));
  const os = await opt.state();
  const moments: Record<string, { dtype: "F32"; shape: number[]; data: Float32Array }> = {};
  os.moments.forEach((mv, i) => {
    moments[`m.${i}`] = { dtype: "F32", shape: [mv.m.length], data: mv.m };
    moments[`v.${i}`] = { dtype: "F32", shape: [mv.v.length], data: mv.v };
  });
  await writeSafetensors(`${tmp}/optimizer.safetensors`, moments, { step: String(os.step) });
  await Deno.writeTextFile(
    `${tmp}/state.json`,
    JSON.stringify({ ...state, rng: lf.rng().getState() }, null, 2),
  );
  const old = `${dir}.old-${Deno.pid}`;
  const had = await Deno.stat(dir).then(() => true, () => false);
  if (had) await Deno.rename(dir, old);
  await Deno.rename(tmp, dir);
  if (had) await Deno.remove(old, { recursive: true });
}

async function loadCheckpoint(
  dir: string,
  prefix: PrefixTuning | null,
  model: GPT2,
  opt: AdamW,
): Promise<Checkpoint> {
  let state: Checkpoint;
  try {
    state = JSON.parse(await Deno.readTextFile(`${dir}/state.json`));
  } catch (e) {
    throw new Error(`--resume: no usable checkpoint in ${dir} (${(e as Error).message})`);
  }
  const st = await loadSafetensors(`${dir}/trainable.safetensors`);
  const named = prefix ? prefix.namedParameters() : model.namedParameters();
  for (const [name, t] of named) {
    const s = st.tensors.get(name);
    if (!s) throw new Error(`${dir}/trainable.safetensors: missing '${name}'`);
    if (s.shape.join() !== t.shape.join()) {
      throw new Error(
        `${dir}/trainable.safetensors: '${name}' is [${s.shape}], expected [${t.shape}]`,
      );
    }
    // Overwrite in place so optimiser and model keep the same tensors.
    const src = t.backend.fromHost(s.data as Float32Array, "f32");
    t.backend.copy(src, contiguousView(t.shape), t.storage, t.view);
    t.backend.dispose(src);
  }
  const om = await loadSafetensors(`${dir}/optimizer.safetensors`);
  const n = opt.params.length;
  const moments = [];
  for (let i = 0; i < n; i++) {
    const m = om.tensors.get(`m.${i}`), v = om.tensors.get(`v.${i}`);
    if (!m || !v) {
      throw new Error(`${dir}/optimizer.safetensors: missing moments of parameter ${i}`);
    }
    moments.push({ m: m.data as Float32Array, v: v.data as Float32Array });
  }
  opt.loadState({ step: Number(om.metadata.step), moments });
  return state;
}

async function truncateLog(path: string, step: number): Promise<void> {
  const text = await Deno.readTextFile(path).catch(() => "");
  const kept: string[] = [];
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    const r = JSON.parse(line);
    if (r.step !== undefined && r.step > step) break;
    kept.push(line);
  }
  await atomicWriteText(path, kept.map((l) => l + "\n").join(""));
}

async function readLosses(path: string): Promise<number[]> {
  const text = await Deno.readTextFile(path);
  return text.split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l)).filter((r) =>
    r.step !== undefined
  ).map((r) => r.loss);
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

function lossCurve(losses: number[], valid: number[], perEpoch: number, cfg: TrainConfig): string {
  // A running mean keeps the curve readable at thousands of steps.
  const k = Math.max(1, Math.floor(losses.length / 200));
  const smooth: [number, number][] = [];
  for (let i = 0; i < losses.length; i += k) {
    const w = losses.slice(i, i + k);
    smooth.push([i + w.length, w.reduce((a, b) => a + b, 0) / w.length]);
  }
  const series = [{ name: "train loss", points: smooth }];
  if (valid.length) {
    series.push({ name: "validation loss", points: valid.map((v, i) => [(i + 1) * perEpoch, v]) });
  }
  return linePlot(series.map((s, i) => ({ ...s, markers: i === 1 })), {
    title: `${
      cfg.tuner === "prefix" ? `prefix-tuning (L=${cfg.prefix_len})` : "fine-tuning"
    } — ${cfg.model}`,
    xLabel: "step",
    yLabel: "cross-entropy",
  });
}

/** The config file a command line asks for: `--config`, else by `--tuner`. */
function defaultConfigFile(args: string[]): string {
  let tuner = "prefix";
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--tuner") tuner = args[i + 1];
    else if (args[i].startsWith("--tuner=")) tuner = args[i].slice(8);
  }
  const name = tuner === "fine" ? "e2e_finetune.yaml" : "e2e_prefix.yaml";
  return new URL(`../configs/${name}`, import.meta.url).pathname;
}

/** CLI entry point; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  try {
    // ---- seed sweep (train/sweep.ts): --seeds 101,102,103 [--launcher local|slurm] [--collect] ----
    const sweep = takeSweepFlags(args);
    if (sweep.flags.given) {
      if (!sweep.flags.seeds) {
        throw new ConfigError("the sweep flags (--launcher, --collect, ...) need --seeds");
      }
      const { config } = await parseTrainArgs(sweep.rest, defaultConfigFile(sweep.rest));
      return await launchSweep(seedSweep(config.out, sweep.flags.seeds, sweep.rest), sweep.flags);
    }
    // ---- end seed sweep ----
    const parsed = await parseTrainArgs(args, defaultConfigFile(args));
    if (parsed.help) {
      console.log(
        usage("train") + "\nseed " + SWEEP_USAGE.replace("sweep:", "sweep: [--seeds 101,102,103]"),
      );
      return 0;
    }
    const r = await train(parsed.config, { resume: parsed.resume });
    return r.interrupted ? 130 : 0;
  } catch (e) {
    if (e instanceof ConfigError) {
      console.error(`error: ${e.message}`);
      return 2;
    }
    console.error(`error: ${(e as Error).message}`);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
