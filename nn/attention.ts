/**
 * GPT-2's causal self-attention, MLP and transformer block, following Hugging Face's
 * `GPT2Attention` / `GPT2MLP` / `GPT2Block` (pre-LayerNorm, residual after each sub-layer).
 *
 * Attention takes optional past keys/values per layer (`{k, v}`, each [B, n_head, T_past,
 * head_dim]) — the KV cache during generation and the trainable prefix of prefix-tuning — and
 * an attention mask [B, T_past + T] (1 = attend, 0 = masked) over past and current positions.
 * Masked scores are set to the most negative f32 (Hugging Face's `finfo.min`), so a fully
 * masked row gives a uniform distribution instead of NaN.
 *
 * By default attention runs as one fused primitive ({@link attention} in autograd/ops.ts:
 * scores, mask, softmax, dropout and the weighted sum in one kernel per backend, the [T, S]
 * probabilities recomputed in the backward instead of stored). `fused = false` selects the
 * unfused sequence of ops, kept as the readable definition and for parity tests.
 *
 * @module
 */
import { isGradEnabled, type Tensor, tensor } from "../autograd/tensor.ts";
import { add, attention, cast, compare, concat, reshape, sub } from "../autograd/ops.ts";
import type { Backend } from "../kernels/backend.ts";
import { Conv1D, Dropout, GELU, type InitOptions, LayerNorm } from "./layers.ts";
import { Module } from "./module.ts";
import { type CacheSlot, writeAt } from "./kv_cache.ts";

/** Keys and values of one layer, each [B, n_head, T, head_dim]. */
export interface KV {
  /** Keys. */
  k: Tensor;
  /** Values. */
  v: Tensor;
}

/** The value masked attention scores get: the most negative f32, as Hugging Face uses. */
export const MASK_VALUE: number = -3.4028234663852886e38;

/** Hyperparameters of a GPT-2 block (a subset of `GPT2Config`). */
export interface BlockConfig {
  /** Width of the residual stream. */
  nEmbd: number;
  /** Number of attention heads (must divide nEmbd). */
  nHead: number;
  /** MLP width (default 4·nEmbd). */
  nInner?: number | null;
  /** LayerNorm epsilon. */
  layerNormEpsilon: number;
  /** Dropout on attention probabilities. */
  attnPdrop: number;
  /** Dropout on each sub-layer's output. */
  residPdrop: number;
  /** Divide scores by √head_dim (default true, as GPT-2). */
  scaleAttnWeights?: boolean;
  /** Std of the Conv1D weight init (default 0.02). */
  initializerRange?: number;
  /** Std of the output projections' init (GPT-2: initializerRange/√(2·n_layer)). */
  projInitStd?: number;
}

/** An attention mask as host rows or a tensor [B, T_past + T] (1 = attend, 0 = masked). */
export type MaskInput = Tensor | number[][];

/** What the mask builders need: batch, new length, past length, the mask and the backend. */
export interface MaskOptions {
  /** Batch size B. */
  batch: number;
  /** New positions T. */
  length: number;
  /** Past positions (KV cache or prefix). */
  pastLength: number;
  /** The padding mask [B, past + T] (1 = attend), if any. */
  attentionMask?: MaskInput;
  /** Where the mask tensor is created. */
  backend: Backend;
}

/** Throws, naming both shapes, unless the attention mask is [batch, past + current]. */
function checkMaskShape(o: MaskOptions): void {
  const am = o.attentionMask, S = o.pastLength + o.length;
  if (am === undefined) return;
  const shape = am instanceof Array ? [am.length, am[0]?.length ?? 0] : am.shape;
  if (shape.length !== 2 || shape[0] !== o.batch || shape[1] !== S) {
    throw new Error(
      `attention mask: shape [${
        shape.join(", ")
      }] must be [batch, past + current] = [${o.batch}, ${S}] (past ${o.pastLength}, current ${o.length})`,
    );
  }
}

/**
 * The combined causal + padding mask, 1 where a score must be masked, shaped to broadcast
 * against scores [B, n_head, T, T_past + T]: [1, 1, T, S] without a padding mask, [B, 1, T, S]
 * with one. Null when nothing is masked (one new position and no padding mask), so the
 * incremental decoding step skips masking entirely. Query i (0-based among the T new ones)
 * may see keys 0 .. T_past + i.
 */
export function buildBlockedMask(opts: MaskOptions): Tensor | null {
  const { batch, length: T, pastLength: P, attentionMask: am, backend } = opts;
  const S = P + T;
  checkMaskShape(opts);
  if (am instanceof Array) {
    const d = new Float32Array(batch * T * S);
    for (let b = 0; b < batch; b++) {
      const row = am[b];
      if (row.length !== S) {
        throw new Error(`attention mask: row ${b} has ${row.length} entries, expected ${S}`);
      }
      for (let i = 0; i < T; i++) {
        const o = (b * T + i) * S;
        for (let j = 0; j < S; j++) d[o + j] = j > P + i || row[j] === 0 ? 1 : 0;
      }
    }
    return tensor(d, { shape: [batch, 1, T, S], backend });
  }
  let causal: Tensor | null = null;
  if (T > 1) {
    const d = new Float32Array(T * S);
    for (let i = 0; i < T; i++) for (let j = P + i + 1; j < S; j++) d[i * S + j] = 1;
    causal = tensor(d, { shape: [1, 1, T, S], backend });
  }
  if (am === undefined) return causal;
  const amf = am.dtype === "f32" ? am : cast(am, "f32");
  const padBlocked = sub(1, reshape(amf, [batch, 1, 1, S]));
  return causal ? compare("max", causal, padBlocked) : padBlocked;
}

/**
 * The padding mask for fused attention: f32 [B, T_past + T] (1 = attend), or null without one
 * (the causal rule is applied inside the kernel).
 */
export function buildPadMask(opts: MaskOptions): Tensor | null {
  const { batch, length: T, pastLength: P, attentionMask: am, backend } = opts;
  if (am === undefined) return null;
  const S = P + T;
  checkMaskShape(opts);
  if (!(am instanceof Array)) return am.dtype === "f32" ? am : cast(am, "f32");
  const d = new Float32Array(batch * S);
  am.forEach((row, b) => {
    if (row.length !== S) {
      throw new Error(`attention mask: row ${b} has ${row.length} entries, expected ${S}`);
    }
    for (let j = 0; j < S; j++) d[b * S + j] = row[j] === 0 ? 0 : 1;
  });
  return tensor(d, { shape: [batch, S], backend });
}

/** Options of {@link CausalSelfAttention.forward} and {@link Block.forward}. */
export interface AttentionForwardOptions {
  /** Past keys/values [B, n_head, T_past, head_dim] (cache or prefix). */
  past?: KV;
  /** Attention mask [B, T_past + T] (1 = attend). Ignored when `blocked` is given. */
  attentionMask?: MaskInput;
  /**
   * A prebuilt mask from {@link buildBlockedMask} (null = nothing masked), so a model builds
   * it once for all layers. When undefined it is built from `attentionMask` and the causal rule.
   */
  blocked?: Tensor | null;
  /**
   * For fused attention: a prebuilt padding mask from {@link buildPadMask} (null = none). When
   * undefined it is built from `attentionMask`.
   */
  padMask?: Tensor | null;
  /**
   * A preallocated cache slot (a `KVCache` layer) instead of `past`: the new keys and values
   * (one position per row) are written into it at `cache.at`, in place, and attention reads all
   * its positions; the attention mask [B, capacity] must hide those not yet written. No gradient
   * flows through it.
   */
  cache?: CacheSlot;
}

/** Output of attention and blocks: the result and this layer's keys/values including the past. */
export interface LayerOutput {
  /** [B, T, n_embd]. */
  out: Tensor;
  /** Past ++ current keys/values, each [B, n_head, T_past + T, head_dim]. */
  present: KV;
}

/** Multi-head causal self-attention (`attn` in GPT-2: `c_attn`, `c_proj`). */
export class CausalSelfAttention extends Module {
  /** Fused q/k/v projection, n_embd → 3·n_embd. */
  readonly c_attn: Conv1D;
  /** Output projection. */
  readonly c_proj: Conv1D;
  /** Dropout on attention probabilities. */
  readonly attn_dropout: Dropout;
  /** Dropout on the output. */
  readonly resid_dropout: Dropout;
  /** Number of heads. */
  readonly nHead: number;
  /** Size of each head. */
  readonly headDim: number;
  /** Run as the fused attention primitive (default) or as the unfused sequence of ops. */
  fused = true;
  #scale: boolean;

  /** A fresh attention layer. */
  constructor(readonly config: BlockConfig, init: InitOptions = {}) {
    super();
    const { nEmbd: C, nHead: H } = config;
    if (!(Number.isInteger(C / H) && C > 0 && H > 0)) {
      throw new Error(`attention: n_embd ${C} is not divisible by n_head ${H}`);
    }
    this.nHead = H;
    this.headDim = C / H;
    this.#scale = config.scaleAttnWeights ?? true;
    const std = config.initializerRange ?? 0.02;
    this.c_attn = this.registerModule("c_attn", new Conv1D(C, 3 * C, { ...init, std }));
    this.c_proj = this.registerModule(
      "c_proj",
      new Conv1D(C, C, { ...init, std: config.projInitStd ?? std }),
    );
    this.attn_dropout = this.registerModule("attn_dropout", new Dropout(config.attnPdrop));
    this.resid_dropout = this.registerModule("resid_dropout", new Dropout(config.residPdrop));
  }

  /** Attends x [B, T, n_embd] to the past and to itself (causally). */
  forward(x: Tensor, opts: AttentionForwardOptions = {}): LayerOutput {
    const [B, T, C] = x.shape;
    const H = this.nHead, d = this.headDim;
    if (x.ndim !== 3 || C !== this.config.nEmbd) {
      throw new Error(
        `attention: input [${x.shape.join(", ")}] must be [B, T, ${this.config.nEmbd}]`,
      );
    }
    const past = opts.past;
    if (past) {
      for (const [name, t] of [["k", past.k], ["v", past.v]] as const) {
        if (t.ndim !== 4 || t.shape[0] !== B || t.shape[1] !== H || t.shape[3] !== d) {
          throw new Error(
            `attention: past ${name} [${t.shape.join(", ")}] must be [${B}, ${H}, T_past, ${d}]`,
          );
        }
      }
      if (past.k.shape[2] !== past.v.shape[2]) {
        throw new Error(
          `attention: past k [${past.k.shape.join(", ")}] and v [${
            past.v.shape.join(", ")
          }] differ in length`,
        );
      }
    }
    const cache = opts.cache;
    if (cache && past) throw new Error("attention: give past or cache, not both");
    if (cache) {
      const ok = cache.k.ndim === 4 && cache.k.shape[0] === B && cache.k.shape[1] === H &&
        cache.k.shape[3] === d && cache.v.shape.join() === cache.k.shape.join();
      if (!ok || T !== 1) {
        throw new Error(
          `attention: cache [${
            cache.k.shape.join(", ")
          }] must be [${B}, ${H}, capacity, ${d}] and take one position per row (got ${T})`,
        );
      }
    }
    // With a cache, the keys are its capacity (the mask hides what is not written yet).
    const P = past ? past.k.shape[2] : cache ? cache.k.shape[2] - T : 0;
    // One copy brings q, k and v to [3, B, H, T, d]; each is then a contiguous slice of it.
    const qkv = this.c_attn.forward(x).reshape(B, T, 3, H, d).permute(2, 0, 3, 1, 4).contiguous();
    let q = qkv.slice(0, 0, 1).reshape(B, H, T, d);
    let k = qkv.slice(0, 1, 2).reshape(B, H, T, d);
    let v = qkv.slice(0, 2, 3).reshape(B, H, T, d);
    if (past) {
      k = concat([past.k, k], 2);
      v = concat([past.v, v], 2);
    } else if (cache) {
      if (isGradEnabled() && (k.requiresGrad || v.requiresGrad)) {
        throw new Error("attention: a KV cache takes no gradient (run under noGrad)");
      }
      writeAt(cache.k, k, cache.at);
      writeAt(cache.v, v, cache.at);
      k = cache.k;
      v = cache.v;
    }
    if (this.fused) {
      const mask = opts.padMask !== undefined ? opts.padMask : buildPadMask({
        batch: B,
        length: T,
        pastLength: P,
        attentionMask: opts.attentionMask,
        backend: x.backend,
      });
      const a = attention(q, k, v, {
        mask,
        scale: this.#scale ? 1 / Math.sqrt(d) : 1,
        dropout: this.attn_dropout.p,
        training: this.attn_dropout.training,
      });
      const o = a.permute(0, 2, 1, 3).reshape(B, T, C);
      const out = this.resid_dropout.forward(this.c_proj.forward(o));
      return { out, present: { k, v } };
    }
    // Scaling q (T·d values) instead of the scores (T·S values): the same product, cheaper.
    if (this.#scale) q = q.mul(1 / Math.sqrt(d));
    let w = q.matmul(k.transpose(-1, -2)); // [B, H, T, S]; kᵀ is a view fed to matmul as is
    const blocked = opts.blocked !== undefined ? opts.blocked : buildBlockedMask({
      batch: B,
      length: T,
      pastLength: P,
      attentionMask: opts.attentionMask,
      backend: x.backend,
    });
    if (blocked) w = w.maskedFill(blocked, MASK_VALUE);
    const probs = this.attn_dropout.forward(w.softmax(-1));
    const o = probs.matmul(v).permute(0, 2, 1, 3).reshape(B, T, C);
    const out = this.resid_dropout.forward(this.c_proj.forward(o));
    return { out, present: { k, v } };
  }
}

/** GPT-2's MLP: c_fc → gelu_new → c_proj → dropout. */
export class MLP extends Module {
  /** n_embd → n_inner. */
  readonly c_fc: Conv1D;
  /** n_inner → n_embd. */
  readonly c_proj: Conv1D;
  /** The activation. */
  readonly act: GELU;
  /** Dropout on the output. */
  readonly dropout: Dropout;

  /** A fresh MLP. */
  constructor(config: BlockConfig, init: InitOptions = {}) {
    super();
    const inner = config.nInner ?? 4 * config.nEmbd;
    const std = config.initializerRange ?? 0.02;
    this.c_fc = this.registerModule("c_fc", new Conv1D(config.nEmbd, inner, { ...init, std }));
    this.c_proj = this.registerModule(
      "c_proj",
      new Conv1D(inner, config.nEmbd, { ...init, std: config.projInitStd ?? std }),
    );
    this.act = this.registerModule("act", new GELU());
    this.dropout = this.registerModule("dropout", new Dropout(config.residPdrop));
  }

  /** Applies the MLP over the last axis. */
  forward(x: Tensor): Tensor {
    return this.dropout.forward(this.c_proj.forward(this.act.forward(this.c_fc.forward(x))));
  }
}

/** One transformer block: x + attn(ln_1(x)), then h + mlp(ln_2(h)). */
export class Block extends Module {
  /** LayerNorm before attention. */
  readonly ln_1: LayerNorm;
  /** Self-attention. */
  readonly attn: CausalSelfAttention;
  /** LayerNorm before the MLP. */
  readonly ln_2: LayerNorm;
  /** The MLP. */
  readonly mlp: MLP;

  /** A fresh block. */
  constructor(config: BlockConfig, init: InitOptions = {}) {
    super();
    const eps = config.layerNormEpsilon;
    this.ln_1 = this.registerModule("ln_1", new LayerNorm(config.nEmbd, { ...init, eps }));
    this.attn = this.registerModule("attn", new CausalSelfAttention(config, init));
    this.ln_2 = this.registerModule("ln_2", new LayerNorm(config.nEmbd, { ...init, eps }));
    this.mlp = this.registerModule("mlp", new MLP(config, init));
  }

  /** Applies the block to x [B, T, n_embd]. */
  forward(x: Tensor, opts: AttentionForwardOptions = {}): LayerOutput {
    const a = this.attn.forward(this.ln_1.forward(x), opts);
    const h = add(x, a.out);
    const out = add(h, this.mlp.forward(this.ln_2.forward(h)));
    return { out, present: a.present };
  }
}
