/**
 * Prefix-tuning (Li & Liang 2021): a trainable prefix of L activations per layer, prepended to
 * GPT-2's keys and values while GPT-2 itself stays frozen.
 *
 * Parameterisation as in the paper's code (`PrefixTuning` in train_control.py): an embedding
 * `wte` [L, n_embd] → Linear(n_embd, mid) → tanh → Linear(mid, 2·n_layer·n_embd), reshaped to
 * [B, L, 2·n_layer, n_head, head_dim] and permuted to per-layer keys/values
 * [B, n_head, L, head_dim] (even index = key, odd = value). The "no-MLP" variant trains the
 * [L, 2·n_layer·n_embd] matrix directly. After training only that computed matrix is needed;
 * it is exported as a small safetensors file, and in Hugging Face peft's PREFIX_TUNING format
 * (`prompt_embeddings`, the same layout peft's `get_prompt` reshapes).
 *
 * @module
 */
import { noGrad, Tensor, tidy } from "../autograd/tensor.ts";
import { concat, dropout, expand, reshape } from "../autograd/ops.ts";
import { Xoshiro128 } from "../autograd/random.ts";
import type { Backend } from "../kernels/backend.ts";
import { getBackend } from "../kernels/registry.ts";
import { Module } from "../nn/module.ts";
import { Embedding, initNormal, Linear, Sequential, Tanh } from "../nn/layers.ts";
import { atomicWriteBytes, atomicWriteText } from "../io/atomic.ts";
import {
  computedPrefixFiles,
  parseComputedPrefix,
  parsePeftPrefix,
  peftPrefixFiles,
  type PrefixFiles,
} from "./prefix_format.ts";

/** Per-layer past keys and values, each [B, n_head, T, head_dim]. */
export interface LayerPast {
  /** Keys. */
  k: Tensor;
  /** Values. */
  v: Tensor;
}

/** Shape of the prefix and its reparameterisation. */
export interface PrefixConfig {
  /** Prefix length L. */
  prefixLen: number;
  /** GPT-2 layers. */
  nLayer: number;
  /** GPT-2 heads. */
  nHead: number;
  /** GPT-2 width. */
  nEmbd: number;
  /** Hidden width of the reparameterisation MLP (paper: 512). */
  mid: number;
  /** Train through the MLP (true, the paper's method) or the matrix directly. */
  mlp: boolean;
  /** Dropout on the prefix activations (paper's `prefix_dropout`, default 0). */
  dropout: number;
}

/** Default reparameterisation values of the paper. */
export const PREFIX_DEFAULTS: Pick<PrefixConfig, "prefixLen" | "mid" | "mlp" | "dropout"> = {
  prefixLen: 5,
  mid: 512,
  mlp: true,
  dropout: 0,
};

/** Options of the {@link PrefixTuning} constructor. */
export interface PrefixTuningOptions {
  /** Seed of the initial values (default 0). */
  seed?: number;
  /** Backend of the parameters (default: the current one). */
  backend?: Backend;
}

/** What {@link PrefixTuning.forModel} needs to know about the model. */
export interface PrefixModelDims {
  /** GPT-2 layers. */
  nLayer: number;
  /** GPT-2 heads. */
  nHead: number;
  /** GPT-2 width. */
  nEmbd: number;
}

/**
 * The trainable prefix, an nn {@link Module}: `wte` (Embedding [L, n_embd]) and `control_trans`
 * (Sequential Linear → Tanh → Linear), or the single parameter `control_trans`
 * [L, 2·n_layer·n_embd] without the MLP. Parameter names follow the paper's code, so
 * `stateDict()` keys are its keys. Dropout on the prefix runs only in training mode
 * ({@link Module.train} / {@link Module.eval}).
 */
export class PrefixTuning extends Module {
  /** Configuration. */
  readonly config: PrefixConfig;
  /** The prefix embedding [L, n_embd] (MLP variant), else null. */
  readonly wte: Embedding | null;
  /** Linear(n_embd, mid) → tanh → Linear(mid, 2·n_layer·n_embd) (MLP variant), else null. */
  readonly controlTrans: Sequential | null;
  /** The directly trained matrix [L, 2·n_layer·n_embd] (no-MLP variant), else null. */
  readonly matrix: Tensor | null;

  /**
   * A fresh prefix. Initialisation is PyTorch's default for the paper's modules:
   * embedding N(0, 1), Linear weight and bias U(±1/√fan_in), drawn from a generator seeded
   * with `opts.seed` in the order wte, first Linear, second Linear.
   */
  constructor(config: PrefixConfig, opts: PrefixTuningOptions = {}) {
    super();
    if (config.nEmbd % config.nHead !== 0) {
      throw new Error(
        `PrefixTuning: n_embd ${config.nEmbd} is not divisible by n_head ${config.nHead}`,
      );
    }
    if (!(Number.isInteger(config.prefixLen) && config.prefixLen >= 1)) {
      throw new Error(
        `PrefixTuning: prefix length must be a positive integer, got ${config.prefixLen}`,
      );
    }
    if (!(config.dropout >= 0 && config.dropout < 1)) {
      throw new Error(`PrefixTuning: dropout must be in [0, 1), got ${config.dropout}`);
    }
    this.config = { ...config };
    const init = {
      backend: opts.backend ?? getBackend(),
      generator: new Xoshiro128(opts.seed ?? 0),
    };
    const out = 2 * config.nLayer * config.nEmbd;
    if (config.mlp) {
      this.wte = this.registerModule(
        "wte",
        new Embedding(config.prefixLen, config.nEmbd, { ...init, std: 1 }),
      );
      this.controlTrans = this.registerModule(
        "control_trans",
        new Sequential(
          new Linear(config.nEmbd, config.mid, init),
          new Tanh(),
          new Linear(config.mid, out, init),
        ),
      );
      this.matrix = null;
    } else {
      this.wte = null;
      this.controlTrans = null;
      this.matrix = this.registerParameter(
        "control_trans",
        initNormal([config.prefixLen, out], 1, init),
      );
    }
  }

  /**
   * A prefix for `model` (a GPT-2, its config, or just its sizes) with the paper's defaults
   * ({@link PREFIX_DEFAULTS}: L = 5, MLP width 512, MLP on, no dropout) for whatever `opts`
   * leaves out. Parameters go to the model's backend.
   */
  static forModel(
    model: PrefixModelDims | { readonly config: PrefixModelDims; readonly backend?: Backend },
    opts: PrefixOptions = {},
  ): PrefixTuning {
    const dims = "config" in model ? model.config : model;
    const backend = opts.backend ?? ("config" in model ? model.backend : undefined);
    return new PrefixTuning({
      prefixLen: opts.prefixLen ?? PREFIX_DEFAULTS.prefixLen,
      nLayer: dims.nLayer,
      nHead: dims.nHead,
      nEmbd: dims.nEmbd,
      mid: opts.mid ?? PREFIX_DEFAULTS.mid,
      mlp: opts.mlp ?? PREFIX_DEFAULTS.mlp,
      dropout: opts.dropout ?? PREFIX_DEFAULTS.dropout,
    }, { seed: opts.seed, backend });
  }

  /** The prefix activations [L, 2·n_layer·n_embd] (differentiable). */
  computed(): Tensor {
    if (this.matrix) return this.matrix;
    return this.controlTrans!.forward(this.wte!.weight);
  }

  /**
   * Per-layer past keys/values for a batch of `batch` rows (all rows share the prefix), with
   * the prefix dropout in training mode.
   */
  past(batch: number): LayerPast[] {
    return prefixToPast(
      this.computed(),
      batch,
      this.config,
      this.training ? this.config.dropout : 0,
    );
  }

  /** Same as {@link PrefixTuning.past}. */
  forward(batch: number): LayerPast[] {
    return this.past(batch);
  }

  /** A host copy of the computed prefix: what generation and the saved files need. */
  async toComputed(): Promise<ComputedPrefix> {
    const t = noGrad(() => tidy(() => this.computed().detach().contiguous()));
    try {
      const data = new Float32Array(await t.data() as Float32Array);
      const { prefixLen, nLayer, nHead, nEmbd } = this.config;
      return { config: { prefixLen, nLayer, nHead, nEmbd }, data };
    } finally {
      if (t !== this.matrix) t.dispose();
    }
  }

  /**
   * Writes the computed prefix as `prefix.safetensors` plus `prefix_config.json` into `dir`
   * (read back by {@link loadPrefix}); `meta` is stored in both (e.g. `base_model`).
   */
  async export(dir: string, meta: Record<string, string> = {}): Promise<void> {
    const p = await this.toComputed();
    await saveComputedPrefix(dir, p.data, this.config, meta);
  }

  /** Writes the computed prefix in Hugging Face peft's format ({@link savePeftPrefix}). */
  async savePeft(dir: string, baseModel: string): Promise<void> {
    await savePeftPrefix(dir, await this.toComputed(), baseModel, this.config.mid);
  }
}

/** Options of {@link PrefixTuning.forModel}: any of the paper's defaults, seed and backend. */
export interface PrefixOptions extends PrefixTuningOptions {
  /** Prefix length L (default 5). */
  prefixLen?: number;
  /** Hidden width of the reparameterisation MLP (default 512). */
  mid?: number;
  /** Train through the MLP (default true). */
  mlp?: boolean;
  /** Dropout on the prefix activations (default 0). */
  dropout?: number;
}

/**
 * Turns computed prefixes into per-layer past keys/values.
 * `computed` is [L, 2·n_layer·n_embd] (shared by all rows) or [B, L, 2·n_layer·n_embd]
 * (one prefix per row: mixed-task batches).
 */
export function prefixToPast(
  computed: Tensor,
  batch: number,
  cfg: Pick<PrefixConfig, "prefixLen" | "nLayer" | "nHead" | "nEmbd">,
  dropoutP = 0,
): LayerPast[] {
  const { prefixLen: L, nLayer, nHead, nEmbd } = cfg;
  const hd = nEmbd / nHead;
  const per = computed.ndim === 2
    ? expand(reshape(computed, [1, L, 2 * nLayer * nEmbd]), [batch, L, 2 * nLayer * nEmbd])
    : computed;
  if (per.shape[0] !== batch) {
    throw new Error(`prefix: ${per.shape[0]} prefixes for a batch of ${batch}`);
  }
  let x = reshape(per.contiguous(), [batch, L, 2 * nLayer, nHead, hd]);
  if (dropoutP > 0) x = dropout(x, dropoutP);
  // [B, L, 2·n_layer, H, hd] → [2·n_layer, B, H, L, hd]
  const kv = x.permute(2, 0, 3, 1, 4);
  const out: LayerPast[] = [];
  for (let l = 0; l < nLayer; l++) {
    out.push({
      k: kv.slice(0, 2 * l, 2 * l + 1).reshape(batch, nHead, L, hd),
      v: kv.slice(0, 2 * l + 1, 2 * l + 2).reshape(batch, nHead, L, hd),
    });
  }
  return out;
}

/** Text of a prefix config file; errors name the file. */
async function readConfigText(path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    throw new Error(`${path}: cannot read the prefix config (${(e as Error).message})`);
  }
}

/** Writes the files of a prefix folder ({@link PrefixFiles}), each atomically. */
async function writePrefixFiles(dir: string, files: PrefixFiles): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  for (const [name, contents] of Object.entries(files)) {
    if (typeof contents === "string") await atomicWriteText(`${dir}/${name}`, contents);
    else await atomicWriteBytes(`${dir}/${name}`, contents);
  }
}

/** A computed prefix read back from disk. */
export interface ComputedPrefix {
  /** Shape information. */
  config: Pick<PrefixConfig, "prefixLen" | "nLayer" | "nHead" | "nEmbd">;
  /** Values [L, 2·n_layer·n_embd], row-major. */
  data: Float32Array;
}

/**
 * Writes `prefix.safetensors` (one tensor `prefix`) and `prefix_config.json`
 * ({@link computedPrefixFiles}).
 */
export async function saveComputedPrefix(
  dir: string,
  data: Float32Array,
  cfg: Pick<PrefixConfig, "prefixLen" | "nLayer" | "nHead" | "nEmbd">,
  meta: Record<string, string> = {},
): Promise<void> {
  await writePrefixFiles(dir, computedPrefixFiles({ config: cfg, data }, meta));
}

/** Reads a prefix written by {@link saveComputedPrefix} ({@link parseComputedPrefix}). */
export async function loadComputedPrefix(dir: string): Promise<ComputedPrefix> {
  const text = await readConfigText(`${dir}/prefix_config.json`);
  return parseComputedPrefix(text, await Deno.readFile(`${dir}/prefix.safetensors`), dir);
}

/**
 * Hugging Face peft PREFIX_TUNING export: `adapter_model.safetensors` with `prompt_embeddings`
 * [L, 2·n_layer·n_embd] (what peft saves for prefix tuning and loads in inference mode) and
 * `adapter_config.json`.
 */
export async function savePeftPrefix(
  dir: string,
  prefix: ComputedPrefix,
  baseModel: string,
  encoderHiddenSize = 512,
): Promise<void> {
  await writePrefixFiles(dir, peftPrefixFiles(prefix, baseModel, encoderHiddenSize));
}

/** Reads a peft PREFIX_TUNING adapter folder back as a computed prefix ({@link parsePeftPrefix}). */
export async function loadPeftPrefix(dir: string): Promise<ComputedPrefix> {
  const text = await readConfigText(`${dir}/adapter_config.json`);
  return parsePeftPrefix(text, await Deno.readFile(`${dir}/adapter_model.safetensors`), dir);
}

/**
 * Reads a saved prefix in either format: our `prefix.safetensors` + `prefix_config.json`
 * ({@link PrefixTuning.export}) or a peft `adapter_model.safetensors` + `adapter_config.json`
 * ({@link savePeftPrefix}).
 */
export async function loadPrefix(dir: string): Promise<ComputedPrefix> {
  const has = (f: string) => Deno.stat(`${dir}/${f}`).then(() => true, () => false);
  if (await has("prefix_config.json")) return await loadComputedPrefix(dir);
  if (await has("adapter_config.json")) return await loadPeftPrefix(dir);
  throw new Error(
    `${dir}: not a prefix folder (no prefix_config.json and no peft adapter_config.json)`,
  );
}

/** A computed prefix as a (frozen) tensor on a backend. */
export function prefixTensor(p: ComputedPrefix, backend: Backend = getBackend()): Tensor {
  return Tensor.fromStorage(backend.fromHost(p.data, "f32"), [
    p.config.prefixLen,
    2 * p.config.nLayer * p.config.nEmbd,
  ]);
}

/** Atomic text write, kept here for existing importers; see `io/atomic.ts`. */
export { atomicWriteText };

/** A prefix generation can use: a trained module or one read from disk. */
export type PrefixSource = PrefixTuning | ComputedPrefix;

/**
 * Past keys/values for a batch of `batch` rows from one prefix (shared by every row) or one
 * prefix per row (a mixed-task batch: each row is steered by its own prefix). Prefixes of one
 * batch must have the same length and model sizes. Modules are evaluated without gradient and
 * without dropout. The caller disposes the returned tensors.
 */
export async function prefixPast(
  prefix: PrefixSource | readonly PrefixSource[],
  batch: number,
  backend: Backend = getBackend(),
): Promise<LayerPast[]> {
  const list = Array.isArray(prefix) ? prefix as readonly PrefixSource[] : [prefix as PrefixSource];
  if (Array.isArray(prefix) && list.length !== batch) {
    throw new Error(`prefix: ${list.length} prefixes for a batch of ${batch} rows`);
  }
  const conf = (p: PrefixSource) => p.config;
  const first = conf(list[0]);
  list.forEach((p, i) => {
    const c = conf(p);
    if (
      c.prefixLen !== first.prefixLen || c.nLayer !== first.nLayer || c.nHead !== first.nHead ||
      c.nEmbd !== first.nEmbd
    ) {
      throw new Error(
        `prefix: row ${i} has a prefix of length ${c.prefixLen} for n_layer ${c.nLayer}, n_embd ${c.nEmbd}; ` +
          `row 0 has length ${first.prefixLen} for n_layer ${first.nLayer}, n_embd ${first.nEmbd}`,
      );
    }
  });
  // Modules on another backend are copied through the host; the rest stays on the device.
  const host = new Map<PrefixSource, ComputedPrefix>();
  for (const p of list) {
    if (p instanceof PrefixTuning && p.parameters()[0].backend !== backend && !host.has(p)) {
      host.set(p, await p.toComputed());
    }
  }
  const { prefixLen: L, nLayer, nEmbd } = first;
  return noGrad(() =>
    tidy(() => {
      const tensorOf = (p: PrefixSource): Tensor =>
        p instanceof PrefixTuning && !host.has(p)
          ? p.computed()
          : prefixTensor(host.get(p) ?? p as ComputedPrefix, backend);
      if (!Array.isArray(prefix)) return prefixToPast(tensorOf(list[0]), batch, first);
      const made = new Map<PrefixSource, Tensor>();
      const rows = list.map((p) => {
        if (!made.has(p)) made.set(p, reshape(tensorOf(p), [1, L, 2 * nLayer * nEmbd]));
        return made.get(p)!;
      });
      return prefixToPast(concat(rows, 0), batch, first);
    })
  );
}
