/**
 * Training configuration: a YAML file (see `configs/`) whose every key can be overridden by a
 * command-line flag (`prefix_len` ↔ `--prefix-len`). Unknown keys and wrong types are rejected
 * with the key's name and where it came from.
 *
 * @module
 */
import { parse as parseYaml } from "yaml";
import { parseArgs } from "node:util";

/** Every training setting. */
export interface TrainConfig {
  /** `prefix` (frozen GPT-2, trainable prefix) or `fine` (all weights). */
  tuner: "prefix" | "fine";
  /** GPT-2 folder or a known name downloaded on first use. */
  model: string;
  /** Folder with train.txt / valid.txt / test.txt; null → the cached E2E download. */
  data: string | null;
  /** Prefix length L. */
  prefix_len: number;
  /** Reparameterisation MLP width. */
  mid_dim: number;
  /** Train through the MLP (paper) or the matrix directly. */
  prefix_mlp: boolean;
  /** Dropout on prefix activations. */
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
  /** Linear warmup steps. */
  warmup_steps: number;
  /** Global gradient-norm clip (0: none). */
  max_grad_norm: number;
  /** Seed of init, order and dropout. */
  seed: number;
  /** auto | cpu | wasm | webgpu. */
  backend: string;
  /** Output folder. */
  out: string;
  /** Length-bucketing chunk (0: none). */
  bucket_size: number;
  /** Use only the first N training pairs (0: all). */
  train_limit: number;
  /** Use only the first N validation pairs (0: all). */
  valid_limit: number;
  /** Extra checkpoint every N steps (0: only per epoch). */
  save_every: number;
  /** Wall-time budget in minutes: training ends (as finished, with outputs) once spent; 0 = none. */
  max_minutes: number;
  /** Beam width for decoding. */
  num_beams: number;
  /** Decoding length limit. */
  max_new_tokens: number;
  /** Minimum generated length. */
  min_length: number;
  /**
   * Prefix-tuning: store the frozen GPT-2 weights as f16 where the backend can (WebGPU with
   * `shader-f16`; computation stays f32). Halves the model's memory; ignored elsewhere.
   */
  f16_frozen: boolean;
}

type Kind = "string" | "number" | "integer" | "boolean" | "string?";

/** Type of each key (the schema). */
export const CONFIG_SCHEMA: Readonly<Record<keyof TrainConfig, Kind>> = {
  tuner: "string",
  model: "string",
  data: "string?",
  prefix_len: "integer",
  mid_dim: "integer",
  prefix_mlp: "boolean",
  prefix_dropout: "number",
  epochs: "integer",
  max_steps: "integer",
  batch_size: "integer",
  lr: "number",
  weight_decay: "number",
  warmup_steps: "integer",
  max_grad_norm: "number",
  seed: "integer",
  backend: "string",
  out: "string",
  bucket_size: "integer",
  train_limit: "integer",
  valid_limit: "integer",
  save_every: "integer",
  max_minutes: "number",
  num_beams: "integer",
  max_new_tokens: "integer",
  min_length: "integer",
  f16_frozen: "boolean",
};

/** Defaults: the paper's prefix-tuning values. */
export const DEFAULT_CONFIG: TrainConfig = {
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
  save_every: 0,
  max_minutes: 0,
  num_beams: 5,
  max_new_tokens: 100,
  min_length: 5,
  f16_frozen: false,
};

/** A bad configuration value; the message names the key and its source. */
export class ConfigError extends Error {}

function coerce(key: string, kind: Kind, v: unknown, where: string): unknown {
  const bad = (what: string) =>
    new ConfigError(`${where}: '${key}' must be ${what}, got ${JSON.stringify(v)}`);
  switch (kind) {
    case "string":
      if (typeof v !== "string" || v === "") throw bad("a non-empty string");
      return v;
    case "string?":
      if (v === null || v === undefined || v === "null" || v === "") return null;
      if (typeof v !== "string") throw bad("a string or null");
      return v;
    case "boolean":
      if (v === "true") return true;
      if (v === "false") return false;
      if (typeof v !== "boolean") throw bad("true or false");
      return v;
    case "number":
    case "integer": {
      const n = typeof v === "string" && v.trim() !== "" ? Number(v) : v;
      if (typeof n !== "number" || !Number.isFinite(n)) throw bad("a number");
      if (kind === "integer" && !Number.isInteger(n)) throw bad("an integer");
      return n;
    }
  }
}

/** Applies `values` (from YAML or flags) onto `base`, checking keys and types. */
export function applyConfig(
  base: TrainConfig,
  values: Record<string, unknown>,
  where: string,
): TrainConfig {
  const out: Record<string, unknown> = { ...base };
  for (const [key, v] of Object.entries(values)) {
    if (!Object.hasOwn(CONFIG_SCHEMA, key)) {
      throw new ConfigError(
        `${where}: unknown key '${key}' (known: ${Object.keys(CONFIG_SCHEMA).join(", ")})`,
      );
    }
    out[key] = coerce(key, CONFIG_SCHEMA[key as keyof TrainConfig], v, where);
  }
  return validate(out as unknown as TrainConfig, where);
}

/** Range checks that types alone do not catch. */
export function validate(c: TrainConfig, where: string): TrainConfig {
  const fail = (key: string, what: string) => {
    throw new ConfigError(
      `${where}: '${key}' ${what}, got ${JSON.stringify(c[key as keyof TrainConfig])}`,
    );
  };
  if (c.tuner !== "prefix" && c.tuner !== "fine") fail("tuner", "must be 'prefix' or 'fine'");
  for (const k of ["prefix_len", "mid_dim", "batch_size", "num_beams"] as const) {
    if (c[k] < 1) fail(k, "must be ≥ 1");
  }
  for (
    const k of [
      "epochs",
      "max_steps",
      "warmup_steps",
      "bucket_size",
      "train_limit",
      "valid_limit",
      "save_every",
      "max_minutes",
      "min_length",
    ] as const
  ) {
    if (c[k] < 0) fail(k, "must be ≥ 0");
  }
  if (c.lr <= 0) fail("lr", "must be > 0");
  if (c.prefix_dropout < 0 || c.prefix_dropout >= 1) fail("prefix_dropout", "must be in [0, 1)");
  if (c.epochs === 0 && c.max_steps === 0) fail("epochs", "and max_steps are both 0");
  if (c.bucket_size % c.batch_size !== 0) {
    fail("bucket_size", `must be a multiple of batch_size (${c.batch_size})`);
  }
  return c;
}

/** Reads a YAML config file onto the defaults. */
export async function loadConfigFile(
  path: string,
  base: TrainConfig = DEFAULT_CONFIG,
): Promise<TrainConfig> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    throw new ConfigError(`${path}: cannot read config (${(e as Error).message})`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (e) {
    throw new ConfigError(`${path}: invalid YAML (${(e as Error).message})`);
  }
  if (doc === null || doc === undefined) return base;
  if (typeof doc !== "object" || Array.isArray(doc)) {
    throw new ConfigError(`${path}: expected a mapping of keys to values`);
  }
  return applyConfig(base, doc as Record<string, unknown>, path);
}

/** Result of parsing a train/ablation command line. */
export interface ParsedArgs {
  /** The merged configuration. */
  config: TrainConfig;
  /** `--resume`: continue from the last checkpoint in `out`. */
  resume: boolean;
  /** `--help`. */
  help: boolean;
  /** Positional arguments. */
  positionals: string[];
}

/** Flag name of a config key: `prefix_len` → `prefix-len`. */
export function flagName(key: string): string {
  return key.replaceAll("_", "-");
}

/**
 * Parses `[--config FILE] [--KEY VALUE ...] [--resume]`: the file's values over the defaults,
 * then the flags over those. `defaultFile` is used when `--config` is absent (if it exists).
 */
export async function parseTrainArgs(
  args: string[],
  defaultFile?: string,
  base: TrainConfig = DEFAULT_CONFIG,
): Promise<ParsedArgs> {
  const options: Record<string, { type: "string" | "boolean" }> = {
    config: { type: "string" },
    resume: { type: "boolean" },
    help: { type: "boolean" },
  };
  for (const k of Object.keys(CONFIG_SCHEMA)) options[flagName(k)] = { type: "string" };
  let parsed;
  try {
    parsed = parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new ConfigError(`command line: ${(e as Error).message}`);
  }
  const v = parsed.values as Record<string, string | boolean | undefined>;
  const flags: Record<string, unknown> = {};
  for (const k of Object.keys(CONFIG_SCHEMA)) {
    const f = v[flagName(k)];
    if (f !== undefined) flags[k] = f;
  }
  // The tuner flag picks its own default file when no --config is given.
  let file = v.config as string | undefined;
  if (!file && defaultFile) file = defaultFile;
  let config = base;
  if (file) config = await loadConfigFile(file, base);
  config = applyConfig(config, flags, "command line");
  return { config, resume: !!v.resume, help: !!v.help, positionals: parsed.positionals };
}

/** Usage text listing every key with its default. */
export function usage(task: string): string {
  const lines = Object.entries(DEFAULT_CONFIG).map(([k, d]) =>
    `  --${flagName(k)} <${CONFIG_SCHEMA[k as keyof TrainConfig]}>  (default ${JSON.stringify(d)})`
  );
  return `usage: deno task ${task} [--config FILE.yaml] [--resume] [flags]\n` +
    `every config key is a flag:\n${lines.join("\n")}`;
}
