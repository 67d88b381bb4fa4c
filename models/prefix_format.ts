/**
 * The two prefix file formats as bytes, for hosts without a file system (a browser page
 * downloading a prefix it trained, or fetching one): our format (`prefix.safetensors` with one
 * tensor `prefix` [L, 2·n_layer·n_embd] plus `prefix_config.json`) and Hugging Face peft's
 * PREFIX_TUNING adapter (`adapter_model.safetensors` with `prompt_embeddings` plus
 * `adapter_config.json`). This is the one description of both layouts: `saveComputedPrefix`,
 * `savePeftPrefix`, `loadComputedPrefix` and `loadPeftPrefix` (models/prefix.ts) write and read
 * these files.
 *
 * @module
 */
import type { ComputedPrefix } from "./prefix.ts";
import { encodeSafetensors, readSafetensors } from "./safetensors.ts";

/** Files of one prefix folder: name → contents. */
export type PrefixFiles = Record<string, Uint8Array<ArrayBuffer> | string>;

type Dims = ComputedPrefix["config"];

function shapeOf(c: Dims): number[] {
  return [c.prefixLen, 2 * c.nLayer * c.nEmbd];
}

/** Our format: `prefix.safetensors` and `prefix_config.json` (`meta` goes into both). */
export function computedPrefixFiles(
  p: ComputedPrefix,
  meta: Record<string, string> = {},
): PrefixFiles {
  const c = p.config;
  const conf = {
    prefix_len: c.prefixLen,
    n_layer: c.nLayer,
    n_head: c.nHead,
    n_embd: c.nEmbd,
    ...meta,
  };
  return {
    "prefix.safetensors": encodeSafetensors(
      { prefix: { dtype: "F32", shape: shapeOf(c), data: p.data } },
      meta,
    ),
    "prefix_config.json": JSON.stringify(conf, null, 2) + "\n",
  };
}

/** peft PREFIX_TUNING: `adapter_model.safetensors` and `adapter_config.json`. */
export function peftPrefixFiles(
  p: ComputedPrefix,
  baseModel: string,
  encoderHiddenSize = 512,
): PrefixFiles {
  const c = p.config;
  const conf = {
    peft_type: "PREFIX_TUNING",
    task_type: "CAUSAL_LM",
    base_model_name_or_path: baseModel,
    num_virtual_tokens: c.prefixLen,
    token_dim: c.nEmbd,
    num_transformer_submodules: 1,
    num_attention_heads: c.nHead,
    num_layers: c.nLayer,
    encoder_hidden_size: encoderHiddenSize,
    prefix_projection: false,
    inference_mode: true,
    revision: null,
  };
  return {
    "adapter_model.safetensors": encodeSafetensors(
      { prompt_embeddings: { dtype: "F32", shape: shapeOf(c), data: p.data } },
      { format: "pt" },
    ),
    "adapter_config.json": JSON.stringify(conf, null, 2) + "\n",
  };
}

function tensorOf(bytes: Uint8Array, name: string, want: number[], source: string): Float32Array {
  const t = readSafetensors(bytes, source).tensors.get(name);
  if (!t) throw new Error(`${source}: no tensor '${name}'`);
  if (t.shape.join() !== want.join()) {
    throw new Error(`${source}: '${name}' has shape [${t.shape}], the config says [${want}]`);
  }
  return t.data instanceof Float32Array ? t.data : Float32Array.from(t.data);
}

function positive(conf: Record<string, unknown>, key: string, source: string): number {
  const v = conf[key];
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1) {
    throw new Error(`${source}: "${key}" must be a positive integer, got ${JSON.stringify(v)}`);
  }
  return v;
}

function parseJson(text: string, source: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new Error(`${source}: cannot read the prefix config (${(e as Error).message})`);
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw new Error(`${source}: expected a JSON object`);
  }
  return v as Record<string, unknown>;
}

/**
 * Reads our format from the contents of `prefix_config.json` and `prefix.safetensors`;
 * `source` (a folder or URL) is named in errors.
 */
export function parseComputedPrefix(
  configText: string,
  safetensors: Uint8Array,
  source = "prefix",
): ComputedPrefix {
  const confSrc = `${source}/prefix_config.json`;
  const conf = parseJson(configText, confSrc);
  const config = {
    prefixLen: positive(conf, "prefix_len", confSrc),
    nLayer: positive(conf, "n_layer", confSrc),
    nHead: positive(conf, "n_head", confSrc),
    nEmbd: positive(conf, "n_embd", confSrc),
  };
  const data = tensorOf(safetensors, "prefix", shapeOf(config), `${source}/prefix.safetensors`);
  return { config, data };
}

/** Reads a peft PREFIX_TUNING adapter from the contents of its two files. */
export function parsePeftPrefix(
  configText: string,
  safetensors: Uint8Array,
  source = "peft",
): ComputedPrefix {
  const confSrc = `${source}/adapter_config.json`;
  const conf = parseJson(configText, confSrc);
  if (conf.peft_type !== "PREFIX_TUNING") {
    throw new Error(
      `${confSrc}: peft_type is ${JSON.stringify(conf.peft_type)}, expected "PREFIX_TUNING"`,
    );
  }
  const config = {
    prefixLen: positive(conf, "num_virtual_tokens", confSrc),
    nLayer: positive(conf, "num_layers", confSrc),
    nHead: positive(conf, "num_attention_heads", confSrc),
    nEmbd: positive(conf, "token_dim", confSrc),
  };
  const data = tensorOf(
    safetensors,
    "prompt_embeddings",
    shapeOf(config),
    `${source}/adapter_model.safetensors`,
  );
  return { config, data };
}
