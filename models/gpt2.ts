/**
 * GPT-2 (Radford et al. 2019) as Hugging Face's `GPT2LMHeadModel` defines it, loading and
 * saving Hugging Face checkpoint folders (`config.json` + `model.safetensors`).
 *
 * Parameter names are Hugging Face's: the model holds a `transformer` child (wte, wpe, h.N,
 * ln_f), so `stateDict()` keys are `transformer.wte.weight`, `transformer.h.0.attn.c_attn.weight`,
 * ... — exactly the keys `save_pretrained` writes. The LM head is tied to `wte` (no
 * `lm_head.weight` parameter) and the causal-mask buffers (`attn.bias`, `attn.masked_bias`)
 * are not parameters.
 *
 * Numerics follow `modeling_gpt2.py`: h = wte[ids] + wpe[pos]; per block
 * h += attn(ln_1(h)), h += mlp(ln_2(h)) with gelu_new; ln_f; logits = h·wteᵀ; scores scaled
 * by 1/√head_dim; LayerNorm eps from the config. Position ids default to
 * `past length + arange(T)`, so with a prefix of length L given as past (prefix-tuning),
 * positions start at L, as with Hugging Face's GPT-2 in the paper's code.
 *
 * @module
 */
import { ids as idsTensor } from "../autograd/creation.ts";
import { crossEntropy, embedding, matmul, reshape, slice, transpose } from "../autograd/ops.ts";
import { Xoshiro128 } from "../autograd/random.ts";
import { isGradEnabled, Tensor, tidy } from "../autograd/tensor.ts";
import type { Backend } from "../kernels/backend.ts";
import { getBackend } from "../kernels/registry.ts";
import {
  Block,
  type BlockConfig,
  buildBlockedMask,
  buildPadMask,
  type KV,
  type MaskInput,
} from "../nn/attention.ts";
import { Dropout, Embedding, type InitOptions, LayerNorm } from "../nn/layers.ts";
import { Module, ModuleList, type StateEntry } from "../nn/module.ts";
import type { KVCache } from "../nn/kv_cache.ts";
import { loadSafetensors, type TensorToWrite, writeSafetensors } from "./safetensors.ts";
import { type HubOptions, resolveModel } from "../hub/hub.ts";
import { atomicWriteText } from "../io/atomic.ts";

/** GPT-2 hyperparameters (Hugging Face's `GPT2Config`, in camelCase). */
export interface GPT2Config extends BlockConfig {
  /** Vocabulary size (50257 for GPT-2). */
  vocabSize: number;
  /** Maximum sequence length (learned position embeddings). */
  nPositions: number;
  /** Number of blocks. */
  nLayer: number;
  /** Residual width. */
  nEmbd: number;
  /** Attention heads. */
  nHead: number;
  /** MLP width, null for 4·nEmbd. */
  nInner: number | null;
  /** "gelu_new" (the only activation GPT-2 uses; "gelu_pytorch_tanh" is the same function). */
  activationFunction: string;
  /** LayerNorm epsilon. */
  layerNormEpsilon: number;
  /** Dropout after the embeddings. */
  embdPdrop: number;
  /** Dropout on attention probabilities. */
  attnPdrop: number;
  /** Dropout on sub-layer outputs. */
  residPdrop: number;
  /** Std of the normal init. */
  initializerRange: number;
  /** Scale scores by 1/√head_dim. */
  scaleAttnWeights: boolean;
  /** Beginning-of-sequence token. */
  bosTokenId: number | null;
  /** End-of-sequence token (generation stops there). */
  eosTokenId: number | null;
}

const HF_DEFAULTS = {
  vocab_size: 50257,
  n_positions: 1024,
  n_embd: 768,
  n_layer: 12,
  n_head: 12,
  n_inner: null,
  activation_function: "gelu_new",
  resid_pdrop: 0.1,
  embd_pdrop: 0.1,
  attn_pdrop: 0.1,
  layer_norm_epsilon: 1e-5,
  initializer_range: 0.02,
  scale_attn_weights: true,
  bos_token_id: 50256,
  eos_token_id: 50256,
} as const;

/** Sizes of the released GPT-2 checkpoints (everything else as Hugging Face's defaults). */
export const GPT2_SIZES: Readonly<
  Record<string, { nLayer: number; nHead: number; nEmbd: number }>
> = {
  "gpt2": { nLayer: 12, nHead: 12, nEmbd: 768 },
  "gpt2-medium": { nLayer: 24, nHead: 16, nEmbd: 1024 },
  "gpt2-large": { nLayer: 36, nHead: 20, nEmbd: 1280 },
  "gpt2-xl": { nLayer: 48, nHead: 25, nEmbd: 1600 },
};

/**
 * A config from a Hugging Face `config.json` object (missing fields take Hugging Face's
 * defaults, as `GPT2Config` does). Rejects what this implementation does not compute.
 */
export function parseGPT2Config(json: unknown, source = "config.json"): GPT2Config {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new Error(`${source}: expected a JSON object`);
  }
  const j = { ...HF_DEFAULTS, ...(json as Record<string, unknown>) } as Record<string, unknown>;
  const num = (key: string, integer: boolean, min: number): number => {
    const v = j[key];
    if (
      typeof v !== "number" || !Number.isFinite(v) || (integer && !Number.isInteger(v)) || v < min
    ) {
      throw new Error(
        `${source}: "${key}" must be ${integer ? "an integer" : "a number"} ≥ ${min}, got ${
          JSON.stringify(v)
        }`,
      );
    }
    return v;
  };
  const optInt = (
    key: string,
  ): number | null => (j[key] === null || j[key] === undefined ? null : num(key, true, 0));
  const act = j.activation_function;
  if (act !== "gelu_new" && act !== "gelu_pytorch_tanh") {
    throw new Error(
      `${source}: activation_function ${JSON.stringify(act)} is not supported (only gelu_new)`,
    );
  }
  for (const flag of ["scale_attn_by_inverse_layer_idx", "add_cross_attention"]) {
    if (j[flag] === true) throw new Error(`${source}: "${flag}": true is not supported`);
  }
  const cfg: GPT2Config = {
    vocabSize: num("vocab_size", true, 1),
    nPositions: num("n_positions", true, 1),
    nEmbd: num("n_embd", true, 1),
    nLayer: num("n_layer", true, 1),
    nHead: num("n_head", true, 1),
    nInner: optInt("n_inner"),
    activationFunction: act,
    layerNormEpsilon: num("layer_norm_epsilon", false, 0),
    embdPdrop: num("embd_pdrop", false, 0),
    attnPdrop: num("attn_pdrop", false, 0),
    residPdrop: num("resid_pdrop", false, 0),
    initializerRange: num("initializer_range", false, 0),
    scaleAttnWeights: j.scale_attn_weights !== false,
    bosTokenId: optInt("bos_token_id"),
    eosTokenId: optInt("eos_token_id"),
  };
  if (cfg.nEmbd % cfg.nHead !== 0) {
    throw new Error(`${source}: n_embd ${cfg.nEmbd} is not divisible by n_head ${cfg.nHead}`);
  }
  return cfg;
}

/** A complete config from partial fields (Hugging Face's defaults for the rest). */
export function gpt2Config(fields: Partial<GPT2Config> = {}): GPT2Config {
  return { ...parseGPT2Config({}), ...fields };
}

/** The Hugging Face `config.json` object for a config (merged over `extra` fields kept from a loaded file). */
export function gpt2ConfigToJSON(
  c: GPT2Config,
  extra: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    ...extra,
    activation_function: c.activationFunction,
    architectures: ["GPT2LMHeadModel"],
    attn_pdrop: c.attnPdrop,
    bos_token_id: c.bosTokenId,
    embd_pdrop: c.embdPdrop,
    eos_token_id: c.eosTokenId,
    initializer_range: c.initializerRange,
    layer_norm_epsilon: c.layerNormEpsilon,
    model_type: "gpt2",
    n_ctx: c.nPositions,
    n_embd: c.nEmbd,
    n_head: c.nHead,
    n_inner: c.nInner,
    n_layer: c.nLayer,
    n_positions: c.nPositions,
    resid_pdrop: c.residPdrop,
    scale_attn_weights: c.scaleAttnWeights,
    torch_dtype: "float32",
    vocab_size: c.vocabSize,
  };
}

/** Token ids: host rows (equal lengths) or an i32 tensor [B, T]. */
export type IdsInput = number[][] | Tensor;

/** Options of {@link GPT2.forward}, {@link GPT2.hidden} and {@link GPT2.loss}. */
export interface ForwardOptions {
  /** Past keys/values per layer, each [B, n_head, T_past, head_dim] (KV cache or prefix). */
  past?: KV[];
  /** [B, T_past + T], 1 = attend, 0 = masked (padding). Default: attend to everything allowed. */
  attentionMask?: MaskInput;
  /** Position ids [B, T] (or [1, T]); default `T_past + arange(T)` for every row. */
  positionIds?: IdsInput;
  /** Return past ++ current keys/values per layer as `past` (holds memory; off by default). */
  useCache?: boolean;
  /** Compute logits only for the last position ([B, 1, vocab]); for generation. */
  lastTokenOnly?: boolean;
  /**
   * A preallocated cache instead of `past` (decoding, no gradient): the one new position per
   * row is written into it in place and the cache advances; `attentionMask` [B, capacity] must
   * hide its positions not yet written (call `cache.reserve(1)` before building it). Positions
   * default to `cache.length`. No `past` is returned for it.
   */
  cache?: KVCache;
}

/** Output of {@link GPT2.hidden}. */
export interface HiddenOutput {
  /** Final hidden states after ln_f, [B, T, n_embd]. */
  hidden: Tensor;
  /** With `useCache`: past ++ current keys/values per layer. */
  past?: KV[];
}

/** Output of {@link GPT2.forward}. */
export interface GPT2Output {
  /** [B, T, vocab] (or [B, 1, vocab] with `lastTokenOnly`). */
  logits: Tensor;
  /** With `useCache`: past ++ current keys/values per layer. */
  past?: KV[];
}

/** Options of {@link GPT2.loss}. */
export interface LossOptions extends ForwardOptions {
  /** `mean` over non-ignored targets (default), `sum`, or `none` ([B, T−1]). */
  reduction?: "mean" | "sum" | "none";
}

/**
 * The key rule of Hugging Face GPT-2 checkpoints (files and streams alike): the model's key of a
 * checkpoint tensor (`transformer.` added where missing), `"buffer"` for the causal-mask buffers
 * (`attn.bias`, `attn.masked_bias`, not loaded) or `"lm_head"` for `lm_head.weight` (accepted
 * only when equal to `wte`). Throws, naming `source`, on a dtype that is not a float.
 */
export function checkpointKey(name: string, dtype: string, source: string): string {
  if (/(^|\.)attn\.(bias|masked_bias)$/.test(name)) return "buffer";
  if (name === "lm_head.weight") return "lm_head";
  if (dtype !== "F32" && dtype !== "F16" && dtype !== "BF16" && dtype !== "F64") {
    throw new Error(`${source}: tensor "${name}" has dtype ${dtype}, expected a float dtype`);
  }
  return name.startsWith("transformer.") ? name : `transformer.${name}`;
}

/** The transformer body (`transformer.*` in Hugging Face): embeddings, blocks, final norm. */
export class GPT2Model extends Module {
  /** Token embeddings [vocab, n_embd] (also the tied LM head). */
  readonly wte: Embedding;
  /** Position embeddings [n_positions, n_embd]. */
  readonly wpe: Embedding;
  /** Dropout after the embeddings. */
  readonly drop: Dropout;
  /** The blocks. */
  readonly h: ModuleList<Block>;
  /** Final LayerNorm. */
  readonly ln_f: LayerNorm;

  /** A fresh body with Hugging Face's init (see {@link GPT2.random}). */
  constructor(readonly config: GPT2Config, init: InitOptions = {}) {
    super();
    const c = config;
    const std = c.initializerRange;
    this.wte = this.registerModule("wte", new Embedding(c.vocabSize, c.nEmbd, { ...init, std }));
    this.wpe = this.registerModule("wpe", new Embedding(c.nPositions, c.nEmbd, { ...init, std }));
    this.drop = this.registerModule("drop", new Dropout(c.embdPdrop));
    const projInitStd = std / Math.sqrt(2 * c.nLayer);
    const blocks: Block[] = [];
    for (let i = 0; i < c.nLayer; i++) blocks.push(new Block({ ...c, projInitStd }, init));
    this.h = this.registerModule("h", new ModuleList(blocks));
    this.ln_f = this.registerModule(
      "ln_f",
      new LayerNorm(c.nEmbd, { ...init, eps: c.layerNormEpsilon }),
    );
  }

  /** Final hidden states [B, T, n_embd] for token ids. */
  forward(ids: IdsInput, opts: ForwardOptions = {}): HiddenOutput {
    // Without a graph to keep alive, every intermediate can be freed as soon as it is used:
    // the whole pass runs in a tidy scope and each block in its own.
    const free = !this.recordsGraph(opts.past);
    return free ? tidy(() => this.#run(ids, opts, true)) : this.#run(ids, opts, false);
  }

  /** Whether a pass with this past records a graph (gradients on, and something needs them). */
  recordsGraph(past?: KV[]): boolean {
    return isGradEnabled() &&
      (this.parameters().some((p) => p.requiresGrad) ||
        !!past?.some((l) => l.k.requiresGrad || l.v.requiresGrad));
  }

  #run(ids: IdsInput, opts: ForwardOptions, free: boolean): HiddenOutput {
    const c = this.config;
    const be = this.wte.weight.backend;
    const x = toIds(ids, be, c.vocabSize, "ids");
    if (x.ndim !== 2) throw new Error(`GPT2: ids must be [B, T], got [${x.shape.join(", ")}]`);
    const [B, T] = x.shape;
    if (T === 0) throw new Error("GPT2: ids have no positions (T = 0)");
    const past = opts.past;
    if (past && past.length !== c.nLayer) {
      throw new Error(`GPT2: past has ${past.length} layers, the model ${c.nLayer}`);
    }
    const cache = opts.cache;
    if (cache) {
      if (past) throw new Error("GPT2: give past or cache, not both");
      if (cache.nLayer !== c.nLayer || cache.rows !== B || T !== 1) {
        throw new Error(
          `GPT2: cache of ${cache.nLayer} layers × ${cache.rows} rows must match the model's ${c.nLayer} layers and ids [${B}, 1] (got [${B}, ${T}])`,
        );
      }
      if (cache.length + T > cache.capacity) {
        throw new Error(`GPT2: cache full (${cache.length} of ${cache.capacity}); reserve first`);
      }
      if (opts.attentionMask === undefined && cache.length + T < cache.capacity) {
        throw new Error("GPT2: a cache needs an attention mask hiding its unwritten positions");
      }
    }
    // Positions before the new ones; with a cache, attention sees its whole capacity.
    const P = past ? past[0].k.shape[2] : cache ? cache.length : 0;
    const keysBefore = cache ? cache.capacity - T : P;
    let pos: Tensor;
    if (opts.positionIds === undefined) {
      if (P + T > c.nPositions) {
        throw new Error(`GPT2: past ${P} + length ${T} exceeds n_positions ${c.nPositions}`);
      }
      pos = idsTensor([Array.from({ length: T }, (_, i) => P + i)], { backend: be });
    } else {
      pos = toIds(opts.positionIds, be, c.nPositions, "positionIds");
      const ok = pos.ndim === 2 && (pos.shape[0] === B || pos.shape[0] === 1) &&
        pos.shape[1] === T;
      if (!ok) {
        throw new Error(
          `GPT2: positionIds [${pos.shape.join(", ")}] must be [${B}, ${T}] or [1, ${T}]`,
        );
      }
    }
    // Masks are built once for all layers: the padding mask for fused attention, the combined
    // causal + padding mask for the unfused path.
    const maskOpts = {
      batch: B,
      length: T,
      pastLength: keysBefore,
      attentionMask: opts.attentionMask,
      backend: be,
    };
    const fused = this.h.items.every((b) => b.attn.fused);
    const padMask = fused ? buildPadMask(maskOpts) : undefined;
    const blocked = fused ? undefined : buildBlockedMask(maskOpts);
    const useCache = !cache && (opts.useCache ?? false);
    let h = this.drop.forward(this.wte.forward(x).add(this.wpe.forward(pos)));
    const presents: KV[] = [];
    this.h.items.forEach((block, i) => {
      const step = (): { out: Tensor; present?: KV } => {
        const r = block.forward(h, { past: past?.[i], cache: cache?.slot(i), blocked, padMask });
        return useCache ? r : { out: r.out };
      };
      const r = free ? tidy(step) : step();
      if (free) h.dispose(); // the block's input is no longer needed without a graph
      h = r.out;
      if (r.present) presents.push(r.present);
    });
    cache?.advance(T);
    const out = this.ln_f.forward(h);
    return useCache ? { hidden: out, past: presents } : { hidden: out };
  }
}

/** GPT-2 with its language-modelling head tied to the token embeddings (`GPT2LMHeadModel`). */
export class GPT2 extends Module {
  /** The transformer body. */
  readonly transformer: GPT2Model;
  /** `config.json` fields this implementation does not use, kept for {@link save}. */
  extraConfig: Record<string, unknown> = {};

  /** A model with fresh weights (Hugging Face init unless `init.empty`). */
  constructor(readonly config: GPT2Config, init: InitOptions = {}) {
    super();
    this.transformer = this.registerModule("transformer", new GPT2Model(config, init));
  }

  /**
   * Fused attention primitive (default, true) or the unfused sequence of ops (false) in every
   * layer; both compute the same function (tests/gpt2_test.ts checks it).
   */
  setFusedAttention(on: boolean): this {
    for (const b of this.transformer.h.items) b.attn.fused = on;
    return this;
  }

  /** The backend holding the weights. */
  get backend(): Backend {
    return this.transformer.wte.weight.backend;
  }

  /**
   * A randomly initialised model, as Hugging Face initialises GPT-2: every weight N(0,
   * initializer_range), the output projections (`c_proj`) N(0, initializer_range/√(2·n_layer)),
   * biases 0, LayerNorm weight 1 and bias 0. Same seed, same weights.
   */
  static random(config: GPT2Config, seed = 0, opts: { backend?: Backend } = {}): GPT2 {
    return new GPT2(config, {
      backend: opts.backend ?? getBackend(),
      generator: new Xoshiro128(seed),
    });
  }

  /**
   * Loads a Hugging Face GPT-2 from a folder or a hub id (`"gpt2-medium"`, `"org/name"`: read
   * from Hugging Face's cache, downloaded into it when missing; see `hub/`): `config.json` (which
   * must state n_embd, n_layer and n_head) and `model.safetensors` (keys with or without the
   * `transformer.` prefix; `attn.bias` / `attn.masked_bias` buffers ignored; `lm_head.weight`, if
   * present, must equal `wte`). Errors name the file and the keys at fault. Like Hugging Face,
   * the model is returned in evaluation mode (dropout off); call `train()` to fine-tune.
   */
  static async fromPretrained(
    idOrDir: string,
    opts: { backend?: Backend } & HubOptions = {},
  ): Promise<GPT2> {
    const dir = await resolveModel(idOrDir, opts);
    const cfgPath = `${dir}/config.json`;
    let text: string;
    try {
      text = await Deno.readTextFile(cfgPath);
    } catch (e) {
      throw new Error(`GPT2.fromPretrained: cannot read ${cfgPath}: ${(e as Error).message}`);
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (e) {
      throw new Error(`${cfgPath}: invalid JSON: ${(e as Error).message}`);
    }
    for (const key of ["n_embd", "n_layer", "n_head"]) {
      if (!(key in (json as Record<string, unknown>))) {
        throw new Error(`${cfgPath}: "${key}" is missing (a GPT-2 config.json states its sizes)`);
      }
    }
    const config = parseGPT2Config(json, cfgPath);
    const stPath = `${dir}/model.safetensors`;
    try {
      await Deno.stat(stPath);
    } catch {
      throw new Error(
        `GPT2.fromPretrained: ${stPath} not found (only safetensors checkpoints are supported)`,
      );
    }
    const st = await loadSafetensors(stPath);
    const model = new GPT2(config, { backend: opts.backend ?? getBackend(), empty: true });
    model.extraConfig = json as Record<string, unknown>;
    const entries = new Map<string, StateEntry>();
    let lmHead: string | null = null;
    for (const [name, t] of st.tensors) {
      const key = checkpointKey(name, t.dtype, stPath);
      if (key === "buffer") continue;
      if (key === "lm_head") {
        lmHead = name;
        continue;
      }
      if (entries.has(key)) {
        throw new Error(`${stPath}: "${name}" appears with and without the transformer. prefix`);
      }
      // Decode on first read and drop the decoded copy from the file's cache right after,
      // so a large checkpoint is never held twice on the host.
      entries.set(key, {
        shape: t.shape,
        get data() {
          const d = t.data;
          st.tensors.delete(name);
          return d;
        },
      });
    }
    if (lmHead) {
      const wteKey = st.tensors.has("transformer.wte.weight")
        ? "transformer.wte.weight"
        : "wte.weight";
      const head = st.tensors.get(lmHead)!, wte = st.tensors.get(wteKey);
      if (!wte || head.shape.join() !== wte.shape.join() || !sameValues(head.data, wte.data)) {
        throw new Error(
          `${stPath}: lm_head.weight differs from ${wteKey}; only a tied LM head is supported`,
        );
      }
      st.tensors.delete(lmHead);
    }
    model.loadStateDict(entries, { source: stPath });
    return model.eval();
  }

  /**
   * Writes `config.json` and `model.safetensors` (Hugging Face names, f32, metadata
   * `format: pt`) into `dir`, each atomically; a Hugging Face `GPT2LMHeadModel` loads the folder.
   */
  async save(dir: string): Promise<void> {
    await Deno.mkdir(dir, { recursive: true });
    const tensors: Record<string, TensorToWrite> = {};
    for (const [name, p] of this.stateDict()) {
      tensors[name] = { dtype: "F32", shape: p.shape, data: await p.data() };
    }
    await writeSafetensors(`${dir}/model.safetensors`, tensors, { format: "pt" });
    const cfg = JSON.stringify(gpt2ConfigToJSON(this.config, this.extraConfig), null, 2) + "\n";
    await atomicWriteText(`${dir}/config.json`, cfg);
  }

  /** Final hidden states (after ln_f) [B, T, n_embd], and the new past with `useCache`. */
  hidden(ids: IdsInput, opts: ForwardOptions = {}): HiddenOutput {
    return this.transformer.forward(ids, opts);
  }

  /** Logits from hidden states [..., n_embd] through the tied head: h·wteᵀ → [..., vocab]. */
  lmHead(hidden: Tensor): Tensor {
    const C = this.config.nEmbd;
    const lead = hidden.shape.slice(0, -1);
    const flat = matmul(reshape(hidden, [-1, C]), transpose(this.transformer.wte.weight, 0, 1));
    return reshape(flat, [...lead, this.config.vocabSize]);
  }

  /** Logits [B, T, vocab] for ids [B, T] (see {@link ForwardOptions}). */
  forward(ids: IdsInput, opts: ForwardOptions = {}): GPT2Output {
    // Without a graph, only the outputs survive the call (the head's views would otherwise keep
    // hidden states alive until garbage collection).
    if (!this.transformer.recordsGraph(opts.past)) return tidy(() => this.#forward(ids, opts));
    return this.#forward(ids, opts);
  }

  #forward(ids: IdsInput, opts: ForwardOptions): GPT2Output {
    const { hidden, past } = this.hidden(ids, opts);
    let h = hidden;
    if (opts.lastTokenOnly && hidden.shape[1] > 1) {
      h = slice(hidden, 1, hidden.shape[1] - 1);
    }
    const logits = this.lmHead(h);
    return past ? { logits, past } : { logits };
  }

  /**
   * Causal-LM loss with Hugging Face's semantics: logits[:, :-1] against labels[:, 1:]
   * (labels are the ids with -100 where no loss is wanted), mean over non-ignored targets.
   * With labels given as host arrays (`number[][]`), only labelled positions go through the LM
   * head (same loss, less work); with a labels tensor, every position does.
   */
  loss(ids: IdsInput, labels: IdsInput, opts: LossOptions = {}): Tensor {
    if (!this.transformer.recordsGraph(opts.past)) return tidy(() => this.#loss(ids, labels, opts));
    return this.#loss(ids, labels, opts);
  }

  #loss(ids: IdsInput, labels: IdsInput, opts: LossOptions): Tensor {
    const { hidden } = this.hidden(ids, { ...opts, useCache: false });
    const [B, T] = hidden.shape;
    if (T < 2) throw new Error(`GPT2.loss: need at least 2 positions, got ${T}`);
    const lshape = labels instanceof Tensor
      ? labels.shape
      : [labels.length, labels[0]?.length ?? 0];
    if (lshape.length !== 2 || lshape[0] !== B || lshape[1] !== T) {
      throw new Error(`GPT2.loss: labels [${lshape.join(", ")}] must match ids [${B}, ${T}]`);
    }
    const reduction = opts.reduction ?? "mean";
    if (!(labels instanceof Tensor) && reduction !== "none") {
      // Labels known on the host: only the positions that carry one go through the head (the
      // [n_embd × vocab] product dominates a step; an E2E example's MR and padding are -100).
      const rows: number[] = [], targets: number[] = [];
      for (let b = 0; b < B; b++) {
        for (let t = 0; t + 1 < T; t++) {
          const y = labels[b][t + 1];
          if (y === -100) continue;
          rows.push(b * T + t);
          targets.push(y);
        }
      }
      if (rows.length === 0) {
        throw new Error("GPT2.loss: no labelled positions (every label is -100)");
      }
      const C = hidden.shape[2];
      const picked = embedding(
        reshape(hidden, [B * T, C]),
        idsTensor(rows, { backend: this.backend }),
      );
      return crossEntropy(this.lmHead(picked), idsTensor(targets, { backend: this.backend }), {
        reduction,
      });
    }
    // Only positions 0..T-2 predict a label: skip the last one before the (large) head.
    const logits = this.lmHead(slice(hidden, 1, 0, T - 1));
    const targets = labels instanceof Tensor
      ? slice(labels, 1, 1, T)
      : idsTensor(labels.map((r) => r.slice(1)), { backend: this.backend });
    if (targets.dtype !== "i32") {
      throw new Error(`GPT2.loss: labels must be i32, got ${targets.dtype}`);
    }
    return crossEntropy(logits, targets, {
      ignoreIndex: -100,
      reduction,
    });
  }
}

/** Host ids → i32 tensor with range checks naming row and column; tensors pass through. */
function toIds(x: IdsInput, be: Backend, limit: number, what: string): Tensor {
  if (x instanceof Tensor) {
    if (x.dtype !== "i32") throw new Error(`GPT2: ${what} must be an i32 tensor, got ${x.dtype}`);
    return x;
  }
  if (!Array.isArray(x) || !x.every(Array.isArray)) {
    throw new Error(`GPT2: ${what} must be number[][] or an i32 tensor`);
  }
  const T = x[0]?.length ?? 0;
  x.forEach((row, b) => {
    if (row.length !== T) {
      throw new Error(`GPT2: ${what} row ${b} has length ${row.length}, row 0 has ${T}`);
    }
    row.forEach((v, t) => {
      if (!Number.isInteger(v) || v < 0 || v >= limit) {
        throw new Error(`GPT2: ${what}[${b}][${t}] = ${v} is outside [0, ${limit})`);
      }
    });
  });
  return idsTensor(x, { backend: be });
}

function sameValues(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
