/**
 * One configuration system for training, pretraining and the ablation: a schema (type, default
 * and one line of help per key), YAML files over the defaults, and command-line flags over the
 * file (`prefix_len` ↔ `--prefix-len`; booleans as `--flag` / `--no-flag`). Unknown keys, wrong
 * types and stray positional arguments are rejected with the key's name and where it came from.
 *
 * @module
 */
// deno-lint-ignore no-import-prefix -- the import map does not apply to importers elsewhere
import { parse as parseYaml } from "npm:yaml@^2.6.0";
import { parseArgs } from "node:util";

/** A bad configuration value or command line; the message names the key and its source. */
export class ConfigError extends Error {
  /** A ConfigError with `message`. */
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

/**
 * Value types a key may have. `string?` accepts null; `integers` and `strings` are lists (a flag
 * gives them comma-separated).
 */
export type ConfigKind =
  | "string"
  | "string?"
  | "number"
  | "integer"
  | "boolean"
  | "integers"
  | "strings";

/** One key of a schema. */
export interface KeySpec {
  /** Value type. */
  kind: ConfigKind;
  /** One line of help. */
  doc: string;
  /** Allowed values (strings). */
  choices?: readonly string[];
  /** Smallest allowed value (numbers). */
  min?: number;
  /** Largest allowed value (numbers). */
  max?: number;
  /** Placeholder of the value in the help (`DIR`); default: the kind or the choices. */
  value?: string;
  /**
   * The key does not change what is computed (output folder, backend, checkpoint interval,
   * time budget, decoding): `--resume` accepts a new value without `--force`.
   */
  free?: boolean;
}

/** A schema: one {@linkcode KeySpec} per key of `T`. */
export type Schema<T> = { readonly [K in keyof T]: KeySpec };

/** The keys of the optimizer, its schedule and the backend, shared by every training config. */
export interface StepKeys {
  /** Peak learning rate. */
  lr: number;
  /** Linear warmup steps. */
  warmup_steps: number;
  /** AdamW decoupled weight decay. */
  weight_decay: number;
  /** Global gradient-norm clip (0: none). */
  max_grad_norm: number;
  /** Compute backend: auto, cpu, wasm or webgpu. */
  backend: string;
}

/** The schema of {@linkcode StepKeys}, spread into the training and pretraining schemas. */
export const STEP_SCHEMA: Schema<StepKeys> = {
  lr: { kind: "number", doc: "peak learning rate (linear warmup, then linear decay to 0)" },
  warmup_steps: { kind: "integer", min: 0, doc: "linear warmup steps" },
  weight_decay: { kind: "number", min: 0, doc: "AdamW decoupled weight decay" },
  max_grad_norm: { kind: "number", min: 0, doc: "global gradient-norm clip (0: none)" },
  backend: {
    kind: "string",
    free: true,
    choices: ["auto", "cpu", "wasm", "webgpu"],
    doc: "compute backend",
  },
};

/** Flag name of a key: `prefix_len` → `prefix-len`. */
export function flagName(key: string): string {
  return key.replaceAll("_", "-");
}

function coerce(key: string, spec: KeySpec, v: unknown, where: string): unknown {
  // A flag is named as typed (`--max-new-tokens`), a file's key as written (`'max_new_tokens'`).
  const name = where === "command line" ? `--${flagName(key)}` : `'${key}'`;
  const bad = (what: string) =>
    new ConfigError(`${where}: ${name} must be ${what}, got ${JSON.stringify(v)}`);
  const num = (x: unknown, integer: boolean): number => {
    const n = typeof x === "string" && x.trim() !== "" ? Number(x) : x;
    if (typeof n !== "number" || !Number.isFinite(n)) {
      throw bad(integer ? "an integer" : "a number");
    }
    if (integer && !Number.isInteger(n)) throw bad("an integer");
    if (spec.min !== undefined && n < spec.min) throw bad(`≥ ${spec.min}`);
    if (spec.max !== undefined && n > spec.max) throw bad(`≤ ${spec.max}`);
    return n;
  };
  switch (spec.kind) {
    case "string":
      if (typeof v !== "string" || v === "") throw bad("a non-empty string");
      if (spec.choices && !spec.choices.includes(v)) throw bad(`one of ${spec.choices.join(", ")}`);
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
      return num(v, false);
    case "integer":
      return num(v, true);
    case "integers": {
      const list = typeof v === "string"
        ? v.split(",").map((s) => s.trim()).filter(Boolean)
        : typeof v === "number"
        ? [v]
        : v;
      if (!Array.isArray(list) || list.length === 0) throw bad("a list of integers");
      return list.map((x) => num(x, true));
    }
    case "strings": {
      if (v === null || v === undefined || v === "") return [];
      const list = typeof v === "string" ? v.split(",").map((x) => x.trim()).filter(Boolean) : v;
      if (!Array.isArray(list) || !list.every((x) => typeof x === "string")) {
        throw bad("a list of names");
      }
      if (spec.choices) {
        for (const x of list) {
          if (!spec.choices.includes(x)) throw bad(`a list of ${spec.choices.join(", ")}`);
        }
      }
      return list;
    }
  }
}

/** Applies `values` (from YAML or flags) onto `base`, checking every key and type. */
export function applyConfig<T>(
  schema: Schema<T>,
  base: T,
  values: Record<string, unknown>,
  where: string,
): T {
  const out: Record<string, unknown> = { ...(base as Record<string, unknown>) };
  for (const [key, v] of Object.entries(values)) {
    if (!Object.hasOwn(schema, key)) {
      throw new ConfigError(
        `${where}: unknown key '${key}' (known: ${Object.keys(schema).join(", ")})`,
      );
    }
    out[key] = coerce(key, schema[key as keyof T], v, where);
  }
  return out as T;
}

/** Reads a YAML file as a mapping of keys to values (empty file: empty mapping). */
export async function readConfigFile(path: string): Promise<Record<string, unknown>> {
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
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== "object" || Array.isArray(doc)) {
    throw new ConfigError(`${path}: expected a mapping of keys to values`);
  }
  return doc as Record<string, unknown>;
}

/** Reads a YAML config file of `schema` onto `base`. */
export async function loadConfigFile<T>(schema: Schema<T>, path: string, base: T): Promise<T> {
  return applyConfig(schema, base, await readConfigFile(path), path);
}

/** A flag that is not a config key (`--resume`, `--config`, ...). */
export interface ExtraFlag {
  /** `boolean` flags take no value; `string` flags take one. */
  type: "boolean" | "string";
  /** One line of help. */
  doc: string;
  /** Placeholder of the value in the help (`FILE`). */
  value?: string;
}

/** A parsed command line. */
export interface CommandLine {
  /** Config keys given as flags (raw values, not yet checked against the schema). */
  keys: Record<string, unknown>;
  /** Extra flags given (by their flag name). */
  extras: Record<string, string | boolean | undefined>;
}

/**
 * Parses flags: every key of `schema` (booleans as `--key`/`--no-key`, others `--key VALUE`),
 * plus `extras`. Positional arguments are rejected.
 */
export function parseCommandLine(
  args: string[],
  schema: Schema<unknown> | Record<string, KeySpec>,
  extras: Record<string, ExtraFlag> = {},
): CommandLine {
  const options: Record<string, { type: "string" | "boolean" }> = {};
  for (const [f, e] of Object.entries(extras)) options[f] = { type: e.type };
  const specs = schema as Record<string, KeySpec>;
  for (const [k, spec] of Object.entries(specs)) {
    const f = flagName(k);
    if (options[f]) continue;
    if (spec.kind === "boolean") {
      options[f] = { type: "boolean" };
      options[`no-${f}`] = { type: "boolean" };
    } else options[f] = { type: "string" };
  }
  let parsed;
  try {
    parsed = parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new ConfigError(`command line: ${(e as Error).message}`);
  }
  if (parsed.positionals.length) {
    throw new ConfigError(
      `command line: unexpected argument '${
        parsed.positionals[0]
      }' (every setting is a --flag; see --help)`,
    );
  }
  const v = parsed.values as Record<string, string | boolean | undefined>;
  const keys: Record<string, unknown> = {};
  for (const [k, spec] of Object.entries(specs)) {
    const f = flagName(k);
    if (Object.hasOwn(extras, f)) continue;
    if (spec.kind === "boolean") {
      if (v[f] && v[`no-${f}`]) {
        throw new ConfigError(`command line: both --${f} and --no-${f} given`);
      }
      if (v[f]) keys[k] = true;
      if (v[`no-${f}`]) keys[k] = false;
    } else if (v[f] !== undefined) keys[k] = v[f];
  }
  const ex: Record<string, string | boolean | undefined> = {};
  for (const f of Object.keys(extras)) ex[f] = v[f];
  return { keys, extras: ex };
}

function show(v: unknown): string {
  if (Array.isArray(v)) return v.join(",");
  return v === null ? "null" : String(v);
}

function flagRows<T>(
  schema: Schema<T>,
  defaults: T,
  skip: Record<string, unknown>,
  showNull = true,
): [string, string][] {
  const rows: [string, string][] = [];
  for (const [k, spec] of Object.entries(schema) as [string, KeySpec][]) {
    const f = flagName(k);
    if (Object.hasOwn(skip, f)) continue;
    const d = (defaults as Record<string, unknown>)[k];
    const flag = spec.kind === "boolean"
      ? `--${f} / --no-${f}`
      : `--${f} ${
        spec.value
          ? spec.value
          : spec.choices
          ? spec.choices.join("|")
          : spec.kind === "string?"
          ? "VALUE|null"
          : spec.kind.toUpperCase()
      }`;
    rows.push([
      flag,
      !showNull && (d === null || d === undefined) ? spec.doc : `${spec.doc} (default ${show(d)})`,
    ]);
  }
  return rows;
}

function table(...groups: [string, [string, string][]][]): string {
  const all = groups.flatMap(([, rows]) => rows);
  const w = Math.max(...all.map(([a]) => a.length)) + 2;
  const fmt = ([a, b]: [string, string]) => `  ${a.padEnd(w)}${b}`;
  return groups.filter(([, rows]) => rows.length).map(([title, rows]) =>
    [...(title ? [title] : []), ...rows.map(fmt)].join("\n")
  ).join("\n\n");
}

function extraRows(extras: Record<string, ExtraFlag>): [string, string][] {
  return Object.entries(extras).map((
    [f, e],
  ) => [`--${f}${e.type === "string" ? ` ${e.value ?? "VALUE"}` : ""}`, e.doc]);
}

/**
 * Help text: the usage line, the extra flags, then every key with what it does and its default
 * (from `defaults`, e.g. the config file the command would use).
 */
export function usageText<T>(
  usage: string,
  schema: Schema<T>,
  defaults: T,
  extras: Record<string, ExtraFlag> = {},
  defaultsFrom = "",
): string {
  return `usage: ${usage}\n\n` + table(
    ["", extraRows(extras)],
    [
      `settings (config keys; a flag overrides the config file${
        defaultsFrom ? `; defaults from ${defaultsFrom}` : ""
      }):`,
      flagRows(schema, defaults, extras),
    ],
  );
}

/** The flags of a command without a config file, parsed by {@linkcode parseFlags}. */
export interface Flags<T> {
  /** Every key: its flag's value, else its default; checked against the schema. */
  values: T;
  /** `--help` was given. */
  help: boolean;
  /** The help text: `usage`, then every flag with its help and default. */
  usage: string;
}

/**
 * Parses the flags of a command that has no config file (`generate`, `serve`, `web`): every key
 * of `schema` is a flag (`max_new_tokens` ↔ `--max-new-tokens`), checked for type, choices and
 * range, over `defaults`. Keys whose default is null are optional; `--help` is always known.
 * Throws a {@linkcode ConfigError} naming the flag.
 */
export function parseFlags<T>(
  args: string[],
  schema: Schema<T>,
  defaults: T,
  usage: string,
): Flags<T> {
  const help = { help: { type: "boolean", doc: "show this help" } } as const;
  const text = `usage: ${usage}\n\n` +
    table(["", [...flagRows(schema, defaults, help, false), ...extraRows(help)]]);
  const cl = parseCommandLine(args, schema, help);
  const values = applyConfig(schema, defaults, cl.keys, "command line");
  return { values, help: !!cl.extras.help, usage: text };
}

/** Keys whose values differ between two configs (`free` keys excluded), for `--resume` checks. */
export function changedKeys<T>(
  schema: Schema<T>,
  before: T,
  after: T,
): { key: string; before: unknown; after: unknown }[] {
  const out: { key: string; before: unknown; after: unknown }[] = [];
  for (const [k, spec] of Object.entries(schema) as [string, KeySpec][]) {
    if (spec.free) continue;
    const a = (before as Record<string, unknown>)[k], b = (after as Record<string, unknown>)[k];
    if (JSON.stringify(a) !== JSON.stringify(b)) out.push({ key: k, before: a, after: b });
  }
  return out;
}

/**
 * The body of a command without a config file: parses `args` with {@linkcode parseFlags}, prints
 * the help for `--help`, runs `body` with the checked flags, and turns errors into exit codes —
 * 2 with the message and the help for a bad command line ({@linkcode ConfigError}), 1 with the
 * message for anything else.
 */
export async function runCommand<T>(
  args: string[],
  schema: Schema<T>,
  defaults: T,
  usage: string,
  body: (flags: T) => Promise<number>,
): Promise<number> {
  let help = "";
  try {
    const flags = parseFlags(args, schema, defaults, usage);
    help = flags.usage;
    if (flags.help) {
      console.log(help);
      return 0;
    }
    return await body(flags.values);
  } catch (e) {
    console.error(`error: ${(e as Error).message}`);
    if (e instanceof ConfigError) console.error(help || `usage: ${usage} (see --help)`);
    return e instanceof ConfigError ? 2 : 1;
  }
}
