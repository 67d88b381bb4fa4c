/**
 * Loading something to generate with, and decoding a list of E2E meaning representations the
 * paper's way.
 *
 * {@link loadCheckpoint} takes what training writes or what a user has: a `deno task train`
 * output folder (its `prefix/`, `peft/` or `model/`), a prefix folder in our format, a Hugging
 * Face peft PREFIX_TUNING folder, a fine-tuned model folder, or a hub id. A prefix's base model
 * comes from the prefix's own record (or `baseModel`).
 *
 * ```ts
 * import { generateForMRs, loadCheckpoint } from "../mod.ts";
 * const ck = await loadCheckpoint("runs/e2e_prefix");
 * const [text] = await generateForMRs(ck, ["name : The Eagle | Type : pub"]);
 * ```
 *
 * @module
 */
import type { Backend } from "../kernels/backend.ts";
import { atomicWriteText } from "../io/atomic.ts";
import type { HubOptions } from "../hub/hub.ts";
import { GPT2Tokenizer } from "../data/tokenizer.ts";
import { encodePrompt, type MRGroup } from "../data/e2e.ts";
import { GPT2 } from "./gpt2.ts";
import { generate, type GenerateOptions } from "./generate.ts";
import { type ComputedPrefix, loadPrefix } from "./prefix.ts";

/** A model ready to generate: GPT-2, its tokenizer, and the prefix steering it (if any). */
export interface LoadedCheckpoint {
  /** GPT-2 in evaluation mode (the frozen base of a prefix, or the fine-tuned weights). */
  model: GPT2;
  /** The prefix, for prefix-tuned checkpoints; null for a plain or fine-tuned model. */
  prefix: ComputedPrefix | null;
  /** The model's tokenizer. */
  tokenizer: GPT2Tokenizer;
  /** Folder the GPT-2 weights came from. */
  modelDir: string;
  /** Folder the prefix came from, or null. */
  prefixDir: string | null;
}

/** Options of {@link loadCheckpoint}. */
export interface LoadCheckpointOptions extends HubOptions {
  /** Backend of the model (default: the current one). */
  backend?: Backend;
  /** Base model (folder or hub id) of a prefix, overriding the one it records. */
  baseModel?: string;
}

async function exists(p: string): Promise<boolean> {
  return await Deno.stat(p).then(() => true, () => false);
}

/** The base model a prefix folder records: `prefix_config.json`'s `base_model`, a peft config's `base_model_name_or_path`, or `base_model.txt`. */
async function recordedBase(dir: string): Promise<string | undefined> {
  for (
    const [file, key] of [["prefix_config.json", "base_model"], [
      "adapter_config.json",
      "base_model_name_or_path",
    ]]
  ) {
    const text = await Deno.readTextFile(`${dir}/${file}`).catch(() => undefined);
    if (text === undefined) continue;
    let conf: Record<string, unknown>;
    try {
      conf = JSON.parse(text);
    } catch (e) {
      throw new Error(`${dir}/${file}: invalid JSON: ${(e as Error).message}`);
    }
    const base = conf[key];
    if (typeof base === "string" && base) {
      // An older run recorded the resolved folder separately; prefer it when it exists.
      const txt = await Deno.readTextFile(`${dir}/base_model.txt`).then((s) => s.trim(), () => "");
      return txt && await exists(txt) ? txt : base;
    }
  }
  return undefined;
}

/**
 * Loads a checkpoint for generation: a train output folder, a prefix folder (ours or peft's),
 * a model folder or a hub id. The model is in evaluation mode; a prefix must match its sizes.
 */
export async function loadCheckpoint(
  pathOrId: string,
  opts: LoadCheckpointOptions = {},
): Promise<LoadedCheckpoint> {
  const d = pathOrId.replace(/\/+$/, "");
  let prefixDir: string | null = null, modelRef = d;
  if (await exists(`${d}/prefix/prefix_config.json`)) prefixDir = `${d}/prefix`;
  else if (await exists(`${d}/peft/adapter_config.json`)) prefixDir = `${d}/peft`;
  else if (await exists(`${d}/prefix_config.json`) || await exists(`${d}/adapter_config.json`)) {
    prefixDir = d;
  } else if (await exists(`${d}/model/config.json`)) modelRef = `${d}/model`;
  let prefix: ComputedPrefix | null = null;
  if (prefixDir) {
    prefix = await loadPrefix(prefixDir);
    const base = opts.baseModel ?? await recordedBase(prefixDir);
    if (!base) {
      throw new Error(`${prefixDir}: the prefix does not record its base model; pass baseModel`);
    }
    modelRef = base;
  }
  const model = await GPT2.fromPretrained(modelRef, opts);
  const tokenizer = await GPT2Tokenizer.fromPretrained(modelRef, opts).catch((e) => {
    model.dispose();
    throw e;
  });
  if (prefix) {
    const c = model.config, p = prefix.config;
    if (c.nLayer !== p.nLayer || c.nEmbd !== p.nEmbd || c.nHead !== p.nHead) {
      model.dispose();
      throw new Error(
        `${prefixDir}: prefix is for n_layer ${p.nLayer}, n_embd ${p.nEmbd}, n_head ${p.nHead}, ` +
          `but ${modelRef} has ${c.nLayer}, ${c.nEmbd}, ${c.nHead}`,
      );
    }
  }
  return { model: model.eval(), prefix, tokenizer, modelDir: modelRef, prefixDir };
}

/** Options of {@link generateForMRs} and {@link generateTexts}: generation settings plus batching. */
export interface GenerateTextOptions
  extends Omit<Partial<GenerateOptions>, "prefix" | "prefixPast"> {
  /** Prompts per batch (default 10). */
  batchSize?: number;
  /** Called after each batch with the number of prompts done and the total. */
  onBatch?: (done: number, total: number) => void;
}

/** GPT-2's newline tokens "\n" (198) and "\n\n" (628), banned in E2E outputs as in the paper. */
export const NEWLINE_IDS: readonly number[] = [198, 628];

/**
 * The paper's E2E decoding: beam 5, at most 100 new tokens, min length 5, newline tokens
 * banned, 10 prompts per batch.
 */
export const E2E_DECODING: Readonly<
  Required<
    Pick<
      GenerateTextOptions,
      "numBeams" | "maxNewTokens" | "minLength" | "badWordsIds" | "batchSize"
    >
  >
> = {
  numBeams: 5,
  maxNewTokens: 100,
  minLength: 5,
  badWordsIds: NEWLINE_IDS.map((t) => [t]),
  batchSize: 10,
};

/**
 * Decodes token-id prompts batch by batch with the checkpoint's prefix (if any), returning
 * texts decoded as the paper's scripts did: special tokens dropped, tokenisation spaces
 * cleaned up, newlines turned into spaces, trimmed. Defaults are {@link E2E_DECODING}.
 */
export async function generateTexts(
  ck: LoadedCheckpoint,
  prompts: readonly (string | number[])[],
  opts: GenerateTextOptions = {},
): Promise<string[]> {
  const { batchSize = E2E_DECODING.batchSize, onBatch, ...rest } = opts;
  const gen: GenerateOptions = {
    numBeams: E2E_DECODING.numBeams,
    maxNewTokens: E2E_DECODING.maxNewTokens,
    minLength: E2E_DECODING.minLength,
    badWordsIds: E2E_DECODING.badWordsIds,
    eosTokenId: ck.tokenizer.eosTokenId,
    padTokenId: ck.tokenizer.eosTokenId,
    ...rest,
  };
  if (!Number.isInteger(batchSize) || batchSize < 1) {
    throw new Error(`generate: batchSize must be an integer ≥ 1, got ${batchSize}`);
  }
  const outputs: string[] = [];
  for (let i = 0; i < prompts.length; i += batchSize) {
    const chunk = prompts.slice(i, i + batchSize).map((p) =>
      typeof p === "string" ? ck.tokenizer.encode(p) : p
    );
    const ids = await generate(ck.model, chunk, {
      ...gen,
      prefix: ck.prefix ?? undefined,
    });
    for (const t of ids) outputs.push(e2eOutputText(ck.tokenizer, t));
    onBatch?.(Math.min(i + batchSize, prompts.length), prompts.length);
  }
  return outputs;
}

/**
 * The output text of generated ids as the paper's scripts wrote it: special tokens dropped,
 * tokenisation spaces cleaned up, newlines turned into spaces, trimmed.
 */
export function e2eOutputText(tokenizer: GPT2Tokenizer, ids: readonly number[]): string {
  const text = tokenizer.decode(ids as number[], {
    skipSpecialTokens: true,
    cleanUpTokenizationSpaces: true,
  });
  return text.replaceAll("\n", " ").trim();
}

/**
 * One output per E2E meaning representation (strings in the paper's linearisation, or the
 * groups of a split), prompted as in training ({@link encodePrompt}) and decoded with
 * {@link generateTexts}.
 */
export async function generateForMRs(
  ck: LoadedCheckpoint,
  mrs: readonly (string | MRGroup)[],
  opts: GenerateTextOptions = {},
): Promise<string[]> {
  const prompts = mrs.map((m) => encodePrompt(ck.tokenizer, typeof m === "string" ? m : m.mr));
  return await generateTexts(ck, prompts, opts);
}

/**
 * Writes outputs (one per line) to `out` and the references (blank-line-separated blocks, the
 * official scorer's format) next to it as `<out without .txt>.refs.txt`, each atomically.
 */
export async function writeOutputsAndRefs(
  out: string,
  outputs: readonly string[],
  groups: readonly MRGroup[],
): Promise<void> {
  const dir = out.includes("/") ? out.slice(0, out.lastIndexOf("/")) : ".";
  await Deno.mkdir(dir, { recursive: true });
  const refsPath = out.replace(/\.txt$/, "") + ".refs.txt";
  await atomicWriteText(out, outputs.map((o) => o + "\n").join(""));
  await atomicWriteText(refsPath, groups.map((g) => g.refs.join("\n") + "\n").join("\n"));
}
