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
import { Tensor } from "../autograd/tensor.ts";
import { concat, dropout, expand, matmul, reshape, tanh } from "../autograd/ops.ts";
import { keep, noGrad, tidy } from "../autograd/tensor.ts";
import { Xoshiro128 } from "../autograd/random.ts";
import type { Backend } from "../kernels/backend.ts";
import { getBackend } from "../kernels/registry.ts";
import { loadSafetensors, writeSafetensors } from "./safetensors.ts";

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

function uniform(shape: number[], bound: number, g: Xoshiro128, backend: Backend): Tensor {
  const n = shape.reduce((p, d) => p * d, 1);
  const d = new Float32Array(n);
  for (let i = 0; i < n; i++) d[i] = (2 * g.uniform() - 1) * bound;
  return Tensor.fromStorage(backend.fromHost(d, "f32"), shape, true);
}

function normal(shape: number[], g: Xoshiro128, backend: Backend): Tensor {
  const n = shape.reduce((p, d) => p * d, 1);
  const d = new Float32Array(n);
  for (let i = 0; i < n; i++) d[i] = g.normal();
  return Tensor.fromStorage(backend.fromHost(d, "f32"), shape, true);
}

/** The trainable prefix. Parameter names follow the paper's code. */
export class PrefixTuning {
  /** Configuration. */
  readonly config: PrefixConfig;
  /** Whether dropout is active. */
  training = true;
  #params: Map<string, Tensor>;

  /**
   * A fresh prefix. Initialisation is PyTorch's default for the paper's modules:
   * embedding N(0, 1), Linear weight and bias U(±1/√fan_in).
   */
  constructor(config: PrefixConfig, opts: { seed?: number; backend?: Backend } = {}) {
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
    this.config = config;
    const be = opts.backend ?? getBackend();
    const g = new Xoshiro128(opts.seed ?? 0);
    const out = 2 * config.nLayer * config.nEmbd;
    this.#params = new Map();
    if (config.mlp) {
      this.#params.set("wte.weight", normal([config.prefixLen, config.nEmbd], g, be));
      const b1 = 1 / Math.sqrt(config.nEmbd), b2 = 1 / Math.sqrt(config.mid);
      this.#params.set("control_trans.0.weight", uniform([config.mid, config.nEmbd], b1, g, be));
      this.#params.set("control_trans.0.bias", uniform([config.mid], b1, g, be));
      this.#params.set("control_trans.2.weight", uniform([out, config.mid], b2, g, be));
      this.#params.set("control_trans.2.bias", uniform([out], b2, g, be));
    } else {
      this.#params.set("control_trans", normal([config.prefixLen, out], g, be));
    }
    for (const p of this.#params.values()) keep(p);
  }

  /** Trainable parameters by name. */
  namedParameters(): [string, Tensor][] {
    return [...this.#params.entries()];
  }

  /** Trainable parameters. */
  parameters(): Tensor[] {
    return [...this.#params.values()];
  }

  /** Number of trainable values. */
  numParameters(): number {
    return this.parameters().reduce((s, p) => s + p.size, 0);
  }

  /** The prefix activations [L, 2·n_layer·n_embd] (differentiable). */
  computed(): Tensor {
    const p = this.#params;
    if (!this.config.mlp) return p.get("control_trans")!;
    const h = tanh(
      linear(
        p.get("wte.weight")!,
        p.get("control_trans.0.weight")!,
        p.get("control_trans.0.bias")!,
      ),
    );
    return linear(h, p.get("control_trans.2.weight")!, p.get("control_trans.2.bias")!);
  }

  /** Per-layer past keys/values for a batch of `batch` rows (all rows share the prefix). */
  past(batch: number): LayerPast[] {
    return prefixToPast(
      this.computed(),
      batch,
      this.config,
      this.training ? this.config.dropout : 0,
    );
  }

  /** Frees the parameters. */
  dispose(): void {
    for (const p of this.#params.values()) p.dispose();
  }

  /** Writes the computed prefix as a small safetensors file plus `prefix_config.json`. */
  async export(dir: string, meta: Record<string, string> = {}): Promise<void> {
    const data = await noGrad(() => tidy(() => this.computed().detach())).data() as Float32Array;
    await saveComputedPrefix(dir, data, this.config, meta);
  }

  /** Writes a resumable checkpoint of the trainable parameters. */
  async saveParameters(path: string): Promise<void> {
    const tensors: Record<string, { dtype: "F32"; shape: number[]; data: Float32Array }> = {};
    for (const [name, t] of this.#params) {
      tensors[name] = { dtype: "F32", shape: [...t.shape], data: (await t.data()) as Float32Array };
    }
    await writeSafetensors(path, tensors, {
      format: "pt",
      prefix_config: JSON.stringify(this.config),
    });
  }

  /** Loads parameters written by {@link saveParameters} (shapes must match). */
  async loadParameters(path: string): Promise<void> {
    const st = await loadSafetensors(path);
    for (const [name, t] of this.#params) {
      const s = st.tensors.get(name);
      if (!s) throw new Error(`${path}: missing prefix parameter '${name}'`);
      if (s.shape.join() !== t.shape.join()) {
        throw new Error(`${path}: '${name}' has shape [${s.shape}], expected [${t.shape}]`);
      }
      const fresh = Tensor.fromStorage(
        t.backend.fromHost(s.data as Float32Array, "f32"),
        t.shape,
        true,
      );
      t.dispose();
      this.#params.set(name, keep(fresh));
    }
  }
}

/** y = x·Wᵀ + b with torch's Linear layout (W [out, in]). */
function linear(x: Tensor, w: Tensor, b: Tensor): Tensor {
  return matmul(x, w.transpose(0, 1)).add(b);
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

/** Stacks several computed prefixes [L, D] into one [B, L, D] for a mixed-task batch. */
export function stackPrefixes(prefixes: Tensor[], rows: number[]): Tensor {
  return concat(rows.map((r) => reshape(prefixes[r], [1, ...prefixes[r].shape])), 0);
}

/** A computed prefix read back from disk. */
export interface ComputedPrefix {
  /** Shape information. */
  config: Pick<PrefixConfig, "prefixLen" | "nLayer" | "nHead" | "nEmbd">;
  /** Values [L, 2·n_layer·n_embd], row-major. */
  data: Float32Array;
}

/** Writes `prefix.safetensors` (one tensor `prefix`) and `prefix_config.json`. */
export async function saveComputedPrefix(
  dir: string,
  data: Float32Array,
  cfg: Pick<PrefixConfig, "prefixLen" | "nLayer" | "nHead" | "nEmbd">,
  meta: Record<string, string> = {},
): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  const shape = [cfg.prefixLen, 2 * cfg.nLayer * cfg.nEmbd];
  await writeSafetensors(
    `${dir}/prefix.safetensors`,
    { prefix: { dtype: "F32", shape, data } },
    meta,
  );
  const conf = {
    prefix_len: cfg.prefixLen,
    n_layer: cfg.nLayer,
    n_head: cfg.nHead,
    n_embd: cfg.nEmbd,
    ...meta,
  };
  await atomicWriteText(`${dir}/prefix_config.json`, JSON.stringify(conf, null, 2) + "\n");
}

/** Reads a prefix written by {@link saveComputedPrefix}. */
export async function loadComputedPrefix(dir: string): Promise<ComputedPrefix> {
  const confPath = `${dir}/prefix_config.json`;
  let conf: Record<string, unknown>;
  try {
    conf = JSON.parse(await Deno.readTextFile(confPath));
  } catch (e) {
    throw new Error(`${confPath}: cannot read prefix config (${(e as Error).message})`);
  }
  const num = (k: string): number => {
    const v = conf[k];
    if (typeof v !== "number" || !Number.isInteger(v) || v < 1) {
      throw new Error(`${confPath}: '${k}' must be a positive integer`);
    }
    return v;
  };
  const config = {
    prefixLen: num("prefix_len"),
    nLayer: num("n_layer"),
    nHead: num("n_head"),
    nEmbd: num("n_embd"),
  };
  const st = await loadSafetensors(`${dir}/prefix.safetensors`);
  const t = st.tensors.get("prefix");
  const want = [config.prefixLen, 2 * config.nLayer * config.nEmbd];
  if (!t) throw new Error(`${dir}/prefix.safetensors: no tensor 'prefix'`);
  if (t.shape.join() !== want.join()) {
    throw new Error(
      `${dir}/prefix.safetensors: 'prefix' has shape [${t.shape}], config says [${want}]`,
    );
  }
  return { config, data: t.data as Float32Array };
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
  await Deno.mkdir(dir, { recursive: true });
  const c = prefix.config;
  await writeSafetensors(
    `${dir}/adapter_model.safetensors`,
    {
      prompt_embeddings: {
        dtype: "F32",
        shape: [c.prefixLen, 2 * c.nLayer * c.nEmbd],
        data: prefix.data,
      },
    },
    { format: "pt" },
  );
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
  await atomicWriteText(`${dir}/adapter_config.json`, JSON.stringify(conf, null, 2) + "\n");
}

/** Reads a peft PREFIX_TUNING adapter folder back as a computed prefix. */
export async function loadPeftPrefix(dir: string): Promise<ComputedPrefix> {
  const confPath = `${dir}/adapter_config.json`;
  const conf = JSON.parse(await Deno.readTextFile(confPath));
  if (conf.peft_type !== "PREFIX_TUNING") {
    throw new Error(
      `${confPath}: peft_type is ${JSON.stringify(conf.peft_type)}, expected "PREFIX_TUNING"`,
    );
  }
  const config = {
    prefixLen: conf.num_virtual_tokens,
    nLayer: conf.num_layers,
    nHead: conf.num_attention_heads,
    nEmbd: conf.token_dim,
  };
  const st = await loadSafetensors(`${dir}/adapter_model.safetensors`);
  const t = st.tensors.get("prompt_embeddings");
  if (!t) throw new Error(`${dir}/adapter_model.safetensors: no tensor 'prompt_embeddings'`);
  const want = [config.prefixLen, 2 * config.nLayer * config.nEmbd];
  if (t.shape.join() !== want.join()) {
    throw new Error(
      `${dir}/adapter_model.safetensors: 'prompt_embeddings' is [${t.shape}], expected [${want}]`,
    );
  }
  return { config, data: t.data as Float32Array };
}

/** A computed prefix as a (frozen) tensor on a backend. */
export function prefixTensor(p: ComputedPrefix, backend: Backend = getBackend()): Tensor {
  return Tensor.fromStorage(backend.fromHost(p.data, "f32"), [
    p.config.prefixLen,
    2 * p.config.nLayer * p.config.nEmbd,
  ]);
}

/** Writes text to a temp file and renames it into place. */
export async function atomicWriteText(path: string, text: string): Promise<void> {
  const tmp = `${path}.tmp-${Deno.pid}`;
  await Deno.writeTextFile(tmp, text);
  await Deno.rename(tmp, path);
}
