/**
 * `deno task generate`: decodes one output per distinct MR of an E2E split with a trained
 * prefix or a fine-tuned model, the paper's way (beam 5, at most 100 new tokens, min length 5,
 * newline tokens banned, cut at `<|endoftext|>`), batched.
 *
 * ```sh
 * deno task generate --checkpoint runs/e2e_prefix --split test [--data DIR] [--beams 5] [--out FILE] [--limit N]
 * ```
 *
 * `--checkpoint` is a `deno task train` output folder (its `prefix/` or `model/` is used) or a
 * prefix / model folder itself. Writes `FILE` (default `<checkpoint>/outputs/<split>.txt`, one
 * line per MR in order) and `FILE` with `.refs.txt` (the references, blank-line-separated blocks,
 * the official scorer's format).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { parse as parseYaml } from "yaml";
import type * as lf from "../mod.ts";
import { GPT2 } from "../models/gpt2.ts";
import { generate } from "../models/generate.ts";
import {
  type ComputedPrefix,
  loadComputedPrefix,
  prefixTensor,
  prefixToPast,
} from "../models/prefix.ts";
import { encodePrompt, groupByMR, type MRGroup, readE2E } from "../data/e2e.ts";
import { GPT2Tokenizer } from "../data/tokenizer.ts";
import { downloadData, ensureModel } from "./download.ts";
import { useBackend } from "../kernels/select.ts";

/** Decoding settings (the paper's defaults). */
export interface GenerateOptions {
  /** Beam width (5). */
  beams: number;
  /** New tokens at most (100). */
  maxNewTokens: number;
  /** Minimum generated tokens before EOS may end a hypothesis (5). */
  minLength: number;
  /** MRs per batch. */
  batchSize: number;
  /** Only the first N MRs (0: all). */
  limit: number;
}

/** Default decoding settings. */
export const GENERATE_DEFAULTS: GenerateOptions = {
  beams: 5,
  maxNewTokens: 100,
  minLength: 5,
  batchSize: 10,
  limit: 0,
};

/** GPT-2's newline tokens "\n" (198) and "\n\n" (628), banned as in the paper. */
export const NEWLINE_IDS = [198, 628];

/** A loaded checkpoint: the model, and a computed prefix for prefix runs. */
export interface LoadedCheckpoint {
  /** GPT-2 (frozen base for prefix runs, tuned weights for fine-tuning runs). */
  model: GPT2;
  /** The prefix, for prefix runs. */
  prefix: ComputedPrefix | null;
  /** Tokenizer. */
  tokenizer: GPT2Tokenizer;
  /** Folder the GPT-2 weights came from. */
  modelDir: string;
}

async function exists(p: string): Promise<boolean> {
  return await Deno.stat(p).then(() => true, () => false);
}

/** Loads a train output folder, a prefix folder or a model folder. */
export async function loadCheckpoint(
  dir: string,
  backend: lf.Backend,
  baseModel?: string,
): Promise<LoadedCheckpoint> {
  let prefixDir: string | null = null, modelDir: string | null = null;
  if (await exists(`${dir}/prefix/prefix.safetensors`)) prefixDir = `${dir}/prefix`;
  else if (await exists(`${dir}/prefix.safetensors`)) prefixDir = dir;
  else if (await exists(`${dir}/model/model.safetensors`)) modelDir = `${dir}/model`;
  else if (await exists(`${dir}/model.safetensors`)) modelDir = dir;
  else {throw new Error(
      `${dir}: no prefix (prefix/prefix.safetensors) or model (model/model.safetensors) found`,
    );}
  let prefix: ComputedPrefix | null = null;
  if (prefixDir) {
    prefix = await loadComputedPrefix(prefixDir);
    let base = baseModel;
    if (!base) {
      const conf = JSON.parse(await Deno.readTextFile(`${prefixDir}/prefix_config.json`));
      base = conf.base_model;
      const recorded = await Deno.readTextFile(`${prefixDir}/base_model.txt`).then(
        (s) => s.trim(),
        () => "",
      );
      if (recorded && await exists(recorded)) base = recorded;
    }
    if (!base) throw new Error(`${prefixDir}: the base model is not recorded; pass --model`);
    modelDir = await ensureModel(base);
  }
  const model = await GPT2.fromPretrained(modelDir!, { backend });
  model.eval();
  if (prefix) {
    const c = model.config;
    if (
      c.nLayer !== prefix.config.nLayer || c.nEmbd !== prefix.config.nEmbd ||
      c.nHead !== prefix.config.nHead
    ) {
      throw new Error(
        `${prefixDir}: prefix is for n_layer ${prefix.config.nLayer}, n_embd ${prefix.config.nEmbd}, ` +
          `n_head ${prefix.config.nHead}, but ${modelDir} has ${c.nLayer}, ${c.nEmbd}, ${c.nHead}`,
      );
    }
  }
  const tokenizer = await GPT2Tokenizer.fromDir(modelDir!).catch(() =>
    GPT2Tokenizer.offlineDefault()
  );
  return { model, prefix, tokenizer, modelDir: modelDir! };
}

/**
 * Generates one output per MR group, batched; `onBatch` reports progress.
 * Returns the decoded outputs in order.
 */
export async function generateForMRs(
  ck: LoadedCheckpoint,
  groups: MRGroup[],
  opts: GenerateOptions,
  backend: lf.Backend,
  onBatch: (done: number, total: number) => void = () => {},
): Promise<string[]> {
  const outputs: string[] = [];
  const pt = ck.prefix ? prefixTensor(ck.prefix, backend) : null;
  for (let i = 0; i < groups.length; i += opts.batchSize) {
    const chunk = groups.slice(i, i + opts.batchSize);
    const prompts = chunk.map((g) => encodePrompt(ck.tokenizer, g.mr));
    const past = pt ? prefixToPast(pt, chunk.length, ck.prefix!.config) : undefined;
    const gen = await generate(ck.model, prompts, {
      numBeams: opts.beams,
      maxNewTokens: opts.maxNewTokens,
      minLength: opts.minLength,
      eosTokenId: ck.tokenizer.eosTokenId,
      padTokenId: ck.tokenizer.eosTokenId,
      badWordsIds: NEWLINE_IDS.map((t) => [t]),
      prefixPast: past,
    });
    past?.forEach((p) => {
      p.k.dispose();
      p.v.dispose();
    });
    for (const ids of gen) {
      const text = ck.tokenizer.decode(ids, {
        skipSpecialTokens: true,
        cleanUpTokenizationSpaces: true,
      });
      outputs.push(text.replaceAll("\n", " ").trim());
    }
    onBatch(Math.min(i + opts.batchSize, groups.length), groups.length);
  }
  pt?.dispose();
  return outputs;
}

/** Writes the outputs (one per line) and references (blank-line-separated blocks), atomically. */
export async function writeOutputsAndRefs(
  out: string,
  outputs: string[],
  groups: MRGroup[],
): Promise<void> {
  const dir = out.includes("/") ? out.slice(0, out.lastIndexOf("/")) : ".";
  await Deno.mkdir(dir, { recursive: true });
  const refsPath = out.replace(/\.txt$/, "") + ".refs.txt";
  for (
    const [path, text] of [
      [out, outputs.map((o) => o + "\n").join("")],
      [refsPath, groups.map((g) => g.refs.join("\n") + "\n").join("\n")],
    ]
  ) {
    const tmp = `${path}.tmp-${Deno.pid}`;
    await Deno.writeTextFile(tmp, text);
    await Deno.rename(tmp, path);
  }
}

const USAGE =
  `usage: deno task generate --checkpoint DIR --split test|valid [--data DIR] [--beams 5]
       [--max-new-tokens 100] [--min-length 5] [--batch-size 10] [--limit N] [--out FILE]
       [--model DIR|NAME (base model of a prefix)] [--backend auto|cpu|wasm|webgpu]`;

/** CLI entry point; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  let v;
  try {
    v = parseArgs({
      args,
      options: {
        checkpoint: { type: "string" },
        split: { type: "string", default: "test" },
        data: { type: "string" },
        beams: { type: "string" },
        "max-new-tokens": { type: "string" },
        "min-length": { type: "string" },
        "batch-size": { type: "string" },
        limit: { type: "string" },
        out: { type: "string" },
        model: { type: "string" },
        backend: { type: "string", default: "auto" },
        help: { type: "boolean" },
      },
    }).values;
  } catch (e) {
    console.error(`error: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  if (v.help) {
    console.log(USAGE);
    return 0;
  }
  try {
    if (!v.checkpoint) throw new UsageError("--checkpoint is required");
    if (v.split !== "test" && v.split !== "valid") {
      throw new UsageError(`--split must be test or valid, got '${v.split}'`);
    }
    const int = (name: string, s: string | undefined, d: number, min: number) => {
      if (s === undefined) return d;
      const n = Number(s);
      if (!Number.isInteger(n) || n < min) {
        throw new UsageError(`--${name} must be an integer ≥ ${min}, got '${s}'`);
      }
      return n;
    };
    const opts: GenerateOptions = {
      beams: int("beams", v.beams, GENERATE_DEFAULTS.beams, 1),
      maxNewTokens: int("max-new-tokens", v["max-new-tokens"], GENERATE_DEFAULTS.maxNewTokens, 1),
      minLength: int("min-length", v["min-length"], GENERATE_DEFAULTS.minLength, 0),
      batchSize: int("batch-size", v["batch-size"], GENERATE_DEFAULTS.batchSize, 1),
      limit: int("limit", v.limit, 0, 0),
    };
    const log = (s: string) => console.error(s);
    const backend = await useBackend(v.backend!, log);
    let dataDir = v.data;
    if (!dataDir) {
      const conf = await Deno.readTextFile(`${v.checkpoint}/config.yaml`).then(
        (t) => parseYaml(t) as { data?: string },
        () => null,
      );
      dataDir = conf?.data ?? (await downloadData("e2e"));
    }
    const pairs = await readE2E(`${dataDir}/${v.split}.txt`);
    let groups = groupByMR(pairs);
    if (opts.limit > 0) groups = groups.slice(0, opts.limit);
    const ck = await loadCheckpoint(v.checkpoint, backend, v.model);
    log(
      `generating ${groups.length} outputs (${v.split}) with ${
        ck.prefix ? "prefix" : "fine-tuned model"
      } from ${v.checkpoint}`,
    );
    const t0 = performance.now();
    const outputs = await generateForMRs(ck, groups, opts, backend, (done, total) => {
      const s = (performance.now() - t0) / 1000;
      log(
        `  ${done}/${total} MRs, ${s.toFixed(0)} s elapsed, ETA ${
          ((s / done) * (total - done)).toFixed(0)
        } s`,
      );
    });
    const out = v.out ?? `${v.checkpoint}/outputs/${v.split}.txt`;
    await writeOutputsAndRefs(out, outputs, groups);
    log(
      `wrote ${outputs.length} outputs to ${out} and references to ${
        out.replace(/\.txt$/, "")
      }.refs.txt`,
    );
    ck.model.dispose();
    return 0;
  } catch (e) {
    console.error(`error: ${(e as Error).message}`);
    if (e instanceof UsageError) console.error(USAGE);
    return e instanceof UsageError ? 2 : 1;
  }
}

class UsageError extends Error {}

if (import.meta.main) Deno.exit(await main(Deno.args));
