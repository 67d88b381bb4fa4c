/**
 * `deno task pretrain`: trains a small GPT-2 from scratch as a causal language model on the E2E
 * training references only (no MRs) — the miniature stand-in for GPT-2's pretraining, since
 * pretrained weights cannot be downloaded everywhere. Same architecture and tokenizer as GPT-2.
 *
 * ```sh
 * deno task pretrain [--config configs/mini_pretrain.yaml] [--KEY VALUE ...] [--resume]
 * ```
 *
 * Documents are `" {reference} <|endoftext|>"` (exactly the reference part of a fine-tuning
 * example), shuffled each epoch and packed into rows of `seq_len` tokens. With
 * `documents: grouped` (the miniature's choice) the shuffle keeps the references of one MR
 * together, so a row holds several descriptions of the same restaurant: the model sees names and
 * attributes recur within its context and learns to copy them — what GPT-2 learned from WebText's
 * long documents, and what prefix-tuning relies on to carry the MR's values into the output.
 * No MR text is ever shown. Writes a Hugging
 * Face-format folder `out/model/` (config.json, model.safetensors, vocab.json, merges.txt) that
 * `GPT2.fromPretrained` loads, plus `log.jsonl`, `loss.svg`, `summary.json`; checkpoints every
 * `save_every` steps and stops cleanly at `max_minutes` (a later `--resume` continues).
 *
 * @module
 */
import { parse as parseYaml } from "yaml";
import { parseArgs } from "node:util";
import * as lf from "../mod.ts";
import { GPT2, gpt2Config } from "../models/gpt2.ts";
import { atomicWriteText } from "../models/prefix.ts";
import { loadSafetensors, writeSafetensors } from "../models/safetensors.ts";
import { AdamW, clipGradNorm, linearWarmupDecay } from "../nn/optim.ts";
import { readE2E } from "../data/e2e.ts";
import { GPT2Tokenizer } from "../data/tokenizer.ts";
import { useBackend } from "../kernels/select.ts";
import { contiguousView } from "../kernels/backend.ts";
import { downloadData } from "./download.ts";
import { ConfigError } from "./config.ts";
import { linePlot } from "./svg_plot.ts";

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
  /** Passes over the references. */
  epochs: number;
  /** Stop after this many steps (0: none). */
  max_steps: number;
  /** Stop (with a checkpoint) after this much wall time (0: none). */
  max_minutes: number;
  /** Dropout of the model (embeddings, attention, residuals). */
  dropout: number;
  /** Seed. */
  seed: number;
  /** Backend. */
  backend: string;
  /** Folder with train.txt; null: the E2E download. */
  data: string | null;
  /** Output folder. */
  out: string;
  /** Checkpoint every N steps. */
  save_every: number;
  /** Use only the first N references (0: all; tests). */
  train_limit: number;
  /**
   * `shuffled`: every reference shuffled on its own; `grouped`: the references of one MR stay
   * adjacent (groups shuffled, and the order inside each group).
   */
  documents: string;
}

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

/** Checks and merges `values` onto `base`, naming the key at fault. */
export function applyPretrainConfig(
  base: PretrainConfig,
  values: Record<string, unknown>,
  where: string,
): PretrainConfig {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(values)) {
    if (!Object.hasOwn(base, k)) {
      throw new ConfigError(
        `${where}: unknown key '${k}' (known: ${Object.keys(base).join(", ")})`,
      );
    }
    const d = base[k as keyof PretrainConfig];
    if (typeof d === "number") {
      const n = typeof v === "string" ? Number(v) : v;
      if (typeof n !== "number" || !Number.isFinite(n) || n < 0) {
        throw new ConfigError(
          `${where}: '${k}' must be a non-negative number, got ${JSON.stringify(v)}`,
        );
      }
      out[k] = n;
    } else if (k === "data") {
      out[k] = v === null || v === "null" || v === "" ? null : String(v);
    } else {
      if (typeof v !== "string" || !v) {
        throw new ConfigError(
          `${where}: '${k}' must be a non-empty string, got ${JSON.stringify(v)}`,
        );
      }
      out[k] = v;
    }
  }
  const c = out as unknown as PretrainConfig;
  if (c.documents !== "shuffled" && c.documents !== "grouped") {
    throw new ConfigError(
      `${where}: 'documents' must be 'shuffled' or 'grouped', got ${JSON.stringify(c.documents)}`,
    );
  }
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
  for (const k of ["n_layer", "n_head", "n_embd", "seq_len", "batch_size"] as const) {
    if (!Number.isInteger(c[k]) || c[k] < 1) {
      throw new ConfigError(`${where}: '${k}' must be a positive integer`);
    }
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

interface State {
  step: number;
  epoch: number;
  batchInEpoch: number;
  rng: number[];
  seconds: number;
}

/** Runs pretraining; returns the model folder. */
export async function pretrain(
  cfg: PretrainConfig,
  opts: { resume?: boolean; log?: (s: string) => void } = {},
): Promise<string> {
  const log = opts.log ?? ((s: string) => console.error(s));
  const out = cfg.out;
  const modelDir = `${out}/model`;
  if (await Deno.stat(`${modelDir}/model.safetensors`).then(() => true, () => false)) {
    log(`pretrain: ${modelDir} exists (finished); skipping`);
    return modelDir;
  }
  await Deno.mkdir(out, { recursive: true });
  const backend = await useBackend(cfg.backend, log);
  const tok = await GPT2Tokenizer.offlineDefault();
  const dataDir = cfg.data ?? (await downloadData("e2e"));
  let pairs = await readE2E(`${dataDir}/train.txt`);
  if (cfg.train_limit > 0) pairs = pairs.slice(0, cfg.train_limit);
  // References only; each distinct reference once, grouped by MR when asked.
  const byMR = new Map<string, string[]>();
  const seen = new Set<string>();
  for (const p of pairs) {
    if (p.ref === "" || seen.has(p.ref)) continue;
    seen.add(p.ref);
    const key = cfg.documents === "grouped" ? p.mr : p.ref;
    const g = byMR.get(key);
    if (g) g.push(p.ref);
    else byMR.set(key, [p.ref]);
  }
  const refs = [...seen];
  const groups = [...byMR.values()].map((g) => g.map((r) => tok.encode(` ${r} <|endoftext|>`)));
  const totalTokens = groups.flat().reduce((s, d) => s + d.length, 0);
  const rowsPerEpoch = Math.floor(totalTokens / cfg.seq_len);
  const stepsPerEpoch = Math.max(1, Math.floor(rowsPerEpoch / cfg.batch_size));
  const totalSteps = cfg.max_steps > 0
    ? Math.min(cfg.max_steps, cfg.epochs * stepsPerEpoch)
    : cfg.epochs * stepsPerEpoch;
  log(
    `pretrain: ${refs.length} references (${cfg.documents}: ${groups.length} groups), ${totalTokens} tokens, ${stepsPerEpoch} steps/epoch, ${totalSteps} steps`,
  );

  lf.manualSeed(cfg.seed);
  const config = gpt2Config({
    nLayer: cfg.n_layer,
    nHead: cfg.n_head,
    nEmbd: cfg.n_embd,
    nPositions: cfg.n_positions,
    embdPdrop: cfg.dropout,
    attnPdrop: cfg.dropout,
    residPdrop: cfg.dropout,
  });
  const model = GPT2.random(config, cfg.seed, { backend });
  model.train();
  const params = model.parameters();
  log(
    `pretrain: GPT-2 n_layer ${cfg.n_layer}, n_head ${cfg.n_head}, n_embd ${cfg.n_embd}: ${
      (model.numParameters() / 1e6).toFixed(2)
    }M parameters`,
  );
  const opt = new AdamW(params, { lr: cfg.lr, weightDecay: cfg.weight_decay });
  let state: State = { step: 0, epoch: 0, batchInEpoch: 0, rng: lf.rng().getState(), seconds: 0 };
  const ck = `${out}/checkpoint`;
  if (opts.resume && await Deno.stat(`${ck}/state.json`).then(() => true, () => false)) {
    state = JSON.parse(await Deno.readTextFile(`${ck}/state.json`));
    const st = await loadSafetensors(`${ck}/model.safetensors`);
    for (const [name, t] of model.namedParameters()) {
      const s = st.tensors.get(name);
      if (!s) throw new Error(`${ck}/model.safetensors: missing '${name}'`);
      const src = backend.fromHost(s.data as Float32Array, "f32");
      backend.copy(src, contiguousView(t.shape), t.storage, t.view);
      backend.dispose(src);
    }
    const om = await loadSafetensors(`${ck}/optimizer.safetensors`);
    opt.loadState({
      step: Number(om.metadata.step),
      moments: params.map((_, i) => ({
        m: om.tensors.get(`m.${i}`)!.data as Float32Array,
        v: om.tensors.get(`v.${i}`)!.data as Float32Array,
      })),
    });
    lf.rng().setState(state.rng);
    log(`pretrain: resumed at step ${state.step}`);
  } else await Deno.writeTextFile(`${out}/log.jsonl`, "");
  const saveCk = async () => {
    const tmp = `${ck}.tmp-${Deno.pid}`;
    await Deno.mkdir(tmp, { recursive: true });
    const tensors: Record<string, { dtype: "F32"; shape: number[]; data: Float32Array }> = {};
    for (const [name, t] of model.namedParameters()) {
      tensors[name] = { dtype: "F32", shape: [...t.shape], data: (await t.data()) as Float32Array };
    }
    await writeSafetensors(`${tmp}/model.safetensors`, tensors);
    const os = await opt.state();
    const mom: typeof tensors = {};
    os.moments.forEach((mv, i) => {
      mom[`m.${i}`] = { dtype: "F32", shape: [mv.m.length], data: mv.m };
      mom[`v.${i}`] = { dtype: "F32", shape: [mv.v.length], data: mv.v };
    });
    await writeSafetensors(`${tmp}/optimizer.safetensors`, mom, { step: String(os.step) });
    await Deno.writeTextFile(
      `${tmp}/state.json`,
      JSON.stringify({ ...state, rng: lf.rng().getState() }),
    );
    await Deno.remove(ck, { recursive: true }).catch(() => {});
    await Deno.rename(tmp, ck);
  };

  const logFile = await Deno.open(`${out}/log.jsonl`, { append: true, create: true });
  const enc = new TextEncoder();
  const t0 = performance.now() - state.seconds * 1000;
  let timeUp = false;
  try {
    outer: for (let epoch = state.epoch; epoch < cfg.epochs; epoch++) {
      const g = new lf.Xoshiro128((cfg.seed ^ Math.imul(epoch + 1, 0x9e3779b9)) >>> 0);
      const rows = packRows(epochDocuments(groups, g), cfg.seq_len);
      for (let b = epoch === state.epoch ? state.batchInEpoch : 0; b < stepsPerEpoch; b++) {
        if (state.step >= totalSteps) break outer;
        const batch = rows.slice(b * cfg.batch_size, (b + 1) * cfg.batch_size);
        const ts = performance.now();
        const lossT = lf.tidy(() => {
          const ids = lf.ids(batch, { backend });
          const l = model.loss(ids, ids);
          l.backward();
          return l;
        });
        const loss = await lossT.item();
        lossT.dispose();
        await clipGradNorm(params, 1);
        opt.lr = cfg.lr * linearWarmupDecay(state.step, cfg.warmup_steps, totalSteps);
        opt.step();
        opt.zeroGrad();
        state.step++;
        state.batchInEpoch = b + 1;
        state.epoch = epoch;
        state.seconds = (performance.now() - t0) / 1000;
        const ms = performance.now() - ts;
        await logFile.write(
          enc.encode(
            JSON.stringify({ step: state.step, epoch, loss, lr: opt.lr, ms: Math.round(ms) }) +
              "\n",
          ),
        );
        if (state.step % 10 === 0 || state.step === 1) {
          const eta = state.seconds / state.step * (totalSteps - state.step);
          log(
            `pretrain step ${state.step}/${totalSteps} epoch ${epoch + 1} loss ${loss.toFixed(3)} ${
              (batch.length * cfg.seq_len / (ms / 1000)).toFixed(0)
            } tok/s ETA ${(eta / 60).toFixed(1)} min`,
          );
        }
        if (!Number.isFinite(loss)) {
          throw new Error(`pretraining diverged at step ${state.step} (loss ${loss})`);
        }
        if (cfg.max_minutes > 0 && state.seconds > cfg.max_minutes * 60) {
          timeUp = true;
          break outer;
        }
        if (cfg.save_every > 0 && state.step % cfg.save_every === 0) await saveCk();
      }
      state.epoch = epoch + 1;
      state.batchInEpoch = 0;
    }
  } finally {
    logFile.close();
  }
  if (timeUp) {
    log(
      `pretrain: time budget of ${cfg.max_minutes} min reached at step ${state.step}; saving the model as it is`,
    );
  }
  await saveCk();
  await model.save(modelDir);
  await tok.save(modelDir);
  const losses = (await Deno.readTextFile(`${out}/log.jsonl`)).trim().split("\n").map((l) =>
    JSON.parse(l).loss as number
  );
  const pts: [number, number][] = [];
  const k = Math.max(1, Math.floor(losses.length / 200));
  for (let i = 0; i < losses.length; i += k) {
    const w = losses.slice(i, i + k);
    pts.push([i + w.length, w.reduce((a, v) => a + v, 0) / w.length]);
  }
  await atomicWriteText(
    `${out}/loss.svg`,
    linePlot([{ name: "train loss", points: pts }], {
      title: "Miniature GPT-2 pretraining on E2E references",
      xLabel: "step",
      yLabel: "cross-entropy",
    }),
  );
  await atomicWriteText(
    `${out}/summary.json`,
    JSON.stringify(
      {
        ...cfg,
        parameters: model.numParameters(),
        steps: state.step,
        seconds: state.seconds,
        final_loss: losses.at(-1),
        time_budget_hit: timeUp,
        backend: backend.name,
      },
      null,
      2,
    ) + "\n",
  );
  log(
    `pretrain: saved ${modelDir} after ${state.step} steps (${
      (state.seconds / 60).toFixed(1)
    } min)`,
  );
  opt.dispose();
  model.dispose();
  return modelDir;
}

/** Reads a pretraining YAML config onto the defaults. */
export async function loadPretrainConfig(
  path: string | null,
  overrides: Record<string, unknown> = {},
): Promise<PretrainConfig> {
  let cfg = PRETRAIN_DEFAULTS;
  if (path) {
    const doc = parseYaml(await Deno.readTextFile(path));
    if (doc && (typeof doc !== "object" || Array.isArray(doc))) {
      throw new ConfigError(`${path}: expected a mapping`);
    }
    cfg = applyPretrainConfig(cfg, (doc ?? {}) as Record<string, unknown>, path);
  }
  return applyPretrainConfig(cfg, overrides, "command line");
}

/** CLI entry point; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const options: Record<string, { type: "string" | "boolean" }> = {
    config: { type: "string" },
    resume: { type: "boolean" },
    help: { type: "boolean" },
  };
  for (const k of Object.keys(PRETRAIN_DEFAULTS)) {
    options[k.replaceAll("_", "-")] = { type: "string" };
  }
  try {
    const { values } = parseArgs({ args, options, strict: true });
    const v = values as Record<string, string | boolean | undefined>;
    if (v.help) {
      console.log(
        `usage: deno task pretrain [--config FILE] [--resume] ${
          Object.keys(PRETRAIN_DEFAULTS).map((k) => `[--${k.replaceAll("_", "-")} V]`).join(" ")
        }`,
      );
      return 0;
    }
    const over: Record<string, unknown> = {};
    for (const k of Object.keys(PRETRAIN_DEFAULTS)) {
      if (v[k.replaceAll("_", "-")] !== undefined) over[k] = v[k.replaceAll("_", "-")];
    }
    const file = (v.config as string | undefined) ??
      new URL("../configs/mini_pretrain.yaml", import.meta.url).pathname;
    await pretrain(await loadPretrainConfig(file, over), { resume: !!v.resume });
    return 0;
  } catch (e) {
    console.error(`error: ${(e as Error).message}`);
    return e instanceof ConfigError ? 2 : 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
