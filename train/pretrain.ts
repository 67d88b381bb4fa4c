/**
 * Pretraining a small GPT-2 from scratch as a causal language model on the E2E training
 * references only (no MRs): the miniature stand-in for GPT-2's pretraining. Same architecture
 * and tokenizer as GPT-2; the one loop of {@linkcode fit} and the run folder of
 * {@linkcode RunDir}.
 *
 * Documents are `" {reference} <|endoftext|>"` (exactly the reference part of a fine-tuning
 * example), shuffled each epoch and packed into rows of `seq_len` tokens. With
 * `documents: grouped` the shuffle keeps the references of one MR together, so a row holds
 * several descriptions of the same restaurant: the model sees names and attributes recur within
 * its context and learns to copy them, which prefix-tuning relies on to carry the MR's values
 * into the output. No MR text is ever shown. Writes a Hugging Face-format folder `out/model/`
 * plus `log.jsonl`, `loss.svg`, `summary.json` and `checkpoint/`.
 *
 * @module
 */
import * as lf from "../autograd/mod.ts";
import { useBackend } from "../kernels/select.ts";
import { GPT2, gpt2Config } from "../models/gpt2.ts";
import { readE2ESplit } from "../data/e2e.ts";
import { GPT2Tokenizer } from "../data/tokenizer.ts";
import { atomicWriteText } from "../io/atomic.ts";
import { applyConfig, ConfigError, readConfigFile, type Schema, STEP_SCHEMA } from "./config.ts";
import { lossCurve, resolveE2EData } from "./e2e.ts";
import { fit, type FitHooks } from "./loop.ts";
import { RunDir, type RunOpenOptions } from "./run.ts";

/** Pretraining settings. */
export interface PretrainConfig {
  /** Blocks. */
  n_layer: number;
  /** Heads. */
  n_head: number;
  /** Width. */
  n_embd: number;
  /** Learned positions (≥ seq_len and ≥ the longest fine-tuning example + prefix). */
  n_positions: number;
  /** Tokens per packed row. */
  seq_len: number;
  /** Rows per step. */
  batch_size: number;
  /** Peak learning rate (AdamW). */
  lr: number;
  /** Linear warmup steps, then linear decay to 0. */
  warmup_steps: number;
  /** AdamW weight decay. */
  weight_decay: number;
  /** Global gradient-norm clip (0: none). */
  max_grad_norm: number;
  /** Passes over the references. */
  epochs: number;
  /** Stop after this many steps (0: none). */
  max_steps: number;
  /** Stop (finished, with the model written) after this much wall time (0: none). */
  max_minutes: number;
  /** Dropout of the model (embeddings, attention, residuals). */
  dropout: number;
  /** Seed. */
  seed: number;
  /** Backend. */
  backend: string;
  /** Folder with train.txt; null: the cached download, else the shipped files. */
  data: string | null;
  /** Output folder. */
  out: string;
  /** Checkpoint every N steps. */
  save_every: number;
  /** Use only the first N references (0: all). */
  train_limit: number;
  /**
   * `shuffled`: every reference shuffled on its own; `grouped`: the references of one MR stay
   * adjacent (groups shuffled, and the order inside each group).
   */
  documents: "shuffled" | "grouped";
}

/** The schema of {@linkcode PretrainConfig}. */
export const PRETRAIN_SCHEMA: Schema<PretrainConfig> = {
  ...STEP_SCHEMA,
  n_layer: { kind: "integer", min: 1, doc: "transformer blocks" },
  n_head: { kind: "integer", min: 1, doc: "attention heads" },
  n_embd: { kind: "integer", min: 1, doc: "width" },
  n_positions: { kind: "integer", min: 1, doc: "learned positions (longest example + prefix)" },
  seq_len: { kind: "integer", min: 1, doc: "tokens per packed row" },
  batch_size: { kind: "integer", min: 1, doc: "rows per step" },
  epochs: { kind: "integer", min: 0, doc: "passes over the references" },
  max_steps: { kind: "integer", min: 0, doc: "stop after N steps (0: no limit)" },
  max_minutes: { kind: "number", min: 0, free: true, doc: "time budget in minutes (0: none)" },
  dropout: { kind: "number", min: 0, doc: "dropout of embeddings, attention and residuals" },
  seed: { kind: "integer", doc: "seed of init, order and dropout" },
  data: { kind: "string?", free: true, doc: "folder with train.txt; null: cached, else shipped" },
  out: { kind: "string", free: true, doc: "run folder (the model goes to OUT/model)" },
  save_every: { kind: "integer", min: 0, free: true, doc: "checkpoint every N steps" },
  train_limit: { kind: "integer", min: 0, doc: "use the first N references (0: all)" },
  documents: {
    kind: "string",
    choices: ["shuffled", "grouped"],
    doc: "grouped: one MR's references stay adjacent in the packed rows",
  },
};

/** Defaults (the miniature's choices; see configs/mini_pretrain.yaml). */
export const PRETRAIN_DEFAULTS: PretrainConfig = {
  n_layer: 6,
  n_head: 4,
  n_embd: 128,
  n_positions: 256,
  seq_len: 128,
  batch_size: 16,
  lr: 2e-3,
  warmup_steps: 100,
  weight_decay: 0.01,
  max_grad_norm: 1,
  epochs: 3,
  max_steps: 0,
  max_minutes: 60,
  dropout: 0.1,
  seed: 101,
  backend: "auto",
  data: null,
  out: "results/mini/pretrain",
  save_every: 200,
  train_limit: 0,
  documents: "grouped",
};

/** Checks across keys; returns `c`. */
export function checkPretrainConfig(c: PretrainConfig, where: string): PretrainConfig {
  if (c.n_embd % c.n_head !== 0) {
    throw new ConfigError(
      `${where}: 'n_embd' (${c.n_embd}) must be divisible by 'n_head' (${c.n_head})`,
    );
  }
  if (c.seq_len > c.n_positions) {
    throw new ConfigError(
      `${where}: 'seq_len' (${c.seq_len}) exceeds 'n_positions' (${c.n_positions})`,
    );
  }
  if (c.epochs === 0 && c.max_steps === 0) {
    throw new ConfigError(`${where}: 'epochs' and 'max_steps' are both 0`);
  }
  return c;
}

/**
 * Reference documents for one epoch: groups in a shuffled order, each group's documents shuffled
 * too (a group is one MR's references, or a single reference).
 */
export function epochDocuments(groups: readonly number[][][], rng: lf.Xoshiro128): number[][] {
  const out: number[][] = [];
  for (const g of rng.shuffle(groups.slice())) out.push(...rng.shuffle(g.slice()));
  return out;
}

/** Packs token documents into rows of `len` tokens (the tail that does not fill a row is dropped). */
export function packRows(docs: number[][], len: number): number[][] {
  const rows: number[][] = [];
  let cur: number[] = [];
  for (const d of docs) {
    for (const t of d) {
      cur.push(t);
      if (cur.length === len) {
        rows.push(cur);
        cur = [];
      }
    }
  }
  return rows;
}

/** What {@linkcode pretrain} did. */
export interface PretrainResult {
  /** The model folder (written when the run finished). */
  modelDir: string;
  /** Stopped by a signal (a checkpoint was written; resume continues). */
  interrupted: boolean;
  /** The signal that stopped it. */
  signal: "SIGINT" | "SIGTERM" | null;
}

/** Runs (or resumes) pretraining. */
export async function pretrain(
  cfg: PretrainConfig,
  opts: RunOpenOptions & FitHooks = {},
): Promise<PretrainResult> {
  const log = opts.log ?? ((s: string) => console.error(s));
  checkPretrainConfig(cfg, "config");
  const out = cfg.out;
  const modelDir = `${out}/model`;
  const done = await Deno.stat(`${out}/summary.json`).then(() => true, () => false) &&
    await Deno.stat(`${modelDir}/model.safetensors`).then(() => true, () => false);
  if (done && opts.resume) {
    log(`pretrain: ${modelDir} is finished; skipping`);
    return { modelDir, interrupted: false, signal: null };
  }
  const tok = await GPT2Tokenizer.offlineDefault();
  const dataDir = await resolveE2EData(cfg.data);
  let pairs = await readE2ESplit(dataDir, "train");
  if (cfg.train_limit > 0) pairs = pairs.slice(0, cfg.train_limit);
  // References only; each distinct reference once, grouped by MR when asked.
  const byKey = new Map<string, string[]>();
  const seen = new Set<string>();
  for (const p of pairs) {
    if (p.ref === "" || seen.has(p.ref)) continue;
    seen.add(p.ref);
    const key = cfg.documents === "grouped" ? p.mr : p.ref;
    const g = byKey.get(key);
    if (g) g.push(p.ref);
    else byKey.set(key, [p.ref]);
  }
  const groups = [...byKey.values()].map((g) => g.map((r) => tok.encode(` ${r} <|endoftext|>`)));
  const totalTokens = groups.flat().reduce((s, d) => s + d.length, 0);
  const stepsPerEpoch = Math.floor(Math.floor(totalTokens / cfg.seq_len) / cfg.batch_size);
  if (stepsPerEpoch < 1) {
    throw new Error(
      `${dataDir}: ${totalTokens} reference tokens fill no batch of ${cfg.batch_size} rows × ${cfg.seq_len} tokens`,
    );
  }
  log(
    `pretrain: ${seen.size} references (${cfg.documents}: ${groups.length} groups), ${totalTokens} tokens, ${stepsPerEpoch} steps/epoch`,
  );
  const backend = await useBackend(cfg.backend, log);
  lf.manualSeed(cfg.seed);
  const model = GPT2.random(
    gpt2Config({
      nLayer: cfg.n_layer,
      nHead: cfg.n_head,
      nEmbd: cfg.n_embd,
      nPositions: cfg.n_positions,
      embdPdrop: cfg.dropout,
      attnPdrop: cfg.dropout,
      residPdrop: cfg.dropout,
    }),
    cfg.seed,
    { backend },
  );
  model.train();
  log(
    `pretrain: GPT-2 n_layer ${cfg.n_layer}, n_head ${cfg.n_head}, n_embd ${cfg.n_embd}: ${
      (model.numParameters() / 1e6).toFixed(2)
    }M parameters`,
  );
  let run: RunDir | null = null;
  try {
    run = await RunDir.open(out, PRETRAIN_SCHEMA, cfg, { ...opts, log });
    const rowsOf = (epoch: number) => {
      const g = new lf.Xoshiro128((cfg.seed ^ Math.imul(epoch + 1, 0x9e3779b9)) >>> 0);
      const rows = packRows(epochDocuments(groups, g), cfg.seq_len);
      const batches: number[][][] = [];
      for (let b = 0; b < stepsPerEpoch; b++) {
        batches.push(rows.slice(b * cfg.batch_size, (b + 1) * cfg.batch_size));
      }
      return batches;
    };
    const r = await fit({
      run,
      trainable: model,
      params: model.parameters(),
      stepsPerEpoch,
      batches: rowsOf,
      loss: (batch) => {
        const ids = lf.ids(batch, { backend });
        return model.loss(ids, ids);
      },
      tokens: (batch) => batch.length * cfg.seq_len,
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
    if (r.interrupted) return { modelDir, interrupted: true, signal: r.signal };
    await model.save(modelDir);
    await tok.save(modelDir);
    await atomicWriteText(
      `${out}/loss.svg`,
      lossCurve(r.losses, [], "Miniature GPT-2 pretraining on E2E references"),
    );
    await atomicWriteText(
      `${out}/summary.json`,
      JSON.stringify(
        {
          ...cfg,
          parameters: model.numParameters(),
          steps: r.state.step,
          seconds: r.state.seconds,
          final_loss: r.losses.at(-1) ?? null,
          time_budget_hit: r.budgetHit,
          backend: backend.name,
        },
        null,
        2,
      ) + "\n",
    );
    log(
      `pretrain: saved ${modelDir} after ${r.state.step} steps (${
        (r.state.seconds / 60).toFixed(1)
      } min)`,
    );
    return { modelDir, interrupted: false, signal: null };
  } finally {
    await run?.close();
    model.dispose();
  }
}

/**
 * The pretraining configuration of a command line: `path` (if any) over the defaults (on
 * `resume`, the run folder's own `config.yaml` instead), then `flags`.
 */
export async function loadPretrainConfig(
  path: string | null,
  flags: Record<string, unknown> = {},
  opts: { resume?: boolean } = {},
): Promise<PretrainConfig> {
  let base = PRETRAIN_DEFAULTS;
  if (path) base = applyConfig(PRETRAIN_SCHEMA, base, await readConfigFile(path), path);
  const out = typeof flags.out === "string" ? flags.out : base.out;
  const own = `${out}/config.yaml`;
  if (opts.resume && await Deno.stat(own).then(() => true, () => false)) {
    base = applyConfig(PRETRAIN_SCHEMA, PRETRAIN_DEFAULTS, await readConfigFile(own), own);
  }
  return checkPretrainConfig(
    applyConfig(PRETRAIN_SCHEMA, base, flags, "command line"),
    path ?? "config",
  );
}
