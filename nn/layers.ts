/**
 * Basic layers: Linear (torch layout), GPT-2's Conv1D (transposed layout), Embedding,
 * LayerNorm, Dropout, GELU, Tanh and Sequential. Parameter names match PyTorch / Hugging Face (`weight`, `bias`).
 *
 * Every constructor takes {@link InitOptions}: the backend to allocate on and a seeded
 * generator, so a seed fixes the initial weights.
 *
 * @module
 */
import { full, randn } from "../autograd/creation.ts";
import {
  add,
  dropout,
  embedding,
  gelu,
  layerNorm,
  matmul,
  tanh,
  transpose,
} from "../autograd/ops.ts";
import { rng, type Xoshiro128 } from "../autograd/random.ts";
import { Tensor } from "../autograd/tensor.ts";
import type { Backend } from "../kernels/backend.ts";
import { getBackend } from "../kernels/registry.ts";
import { Module } from "./module.ts";

/** Where and how parameters are initialised. */
export interface InitOptions {
  /** Backend of the parameters (default: the current one). */
  backend?: Backend;
  /** Generator for random init (default: the global one). */
  generator?: Xoshiro128;
  /** Allocate zeros and skip random init (weights about to be loaded from a checkpoint). */
  empty?: boolean;
}

/** Normal(0, std) values as a new leaf tensor. */
export function initNormal(shape: number[], std: number, opts: InitOptions = {}): Tensor {
  if (opts.empty) return initConstant(shape, 0, opts);
  return randn(shape, { std, backend: opts.backend ?? getBackend(), generator: opts.generator });
}

/** Uniform(−bound, bound) values as a new leaf tensor. */
export function initUniform(shape: number[], bound: number, opts: InitOptions = {}): Tensor {
  if (opts.empty) return initConstant(shape, 0, opts);
  const g = opts.generator ?? rng();
  const n = shape.reduce((p, d) => p * d, 1);
  const d = new Float32Array(n);
  for (let i = 0; i < n; i++) d[i] = (2 * g.uniform() - 1) * bound;
  const be = opts.backend ?? getBackend();
  return Tensor.fromStorage(be.fromHost(d, "f32"), shape);
}

/** A constant-filled leaf tensor. */
export function initConstant(shape: number[], value: number, opts: InitOptions = {}): Tensor {
  return full(shape, value, { backend: opts.backend ?? getBackend() });
}

/** Applies x·W + b over the last axis, flattening leading axes so W's gradient is one matmul. */
function affine(x: Tensor, w: Tensor, b: Tensor | null, wIsOutIn: boolean): Tensor {
  const inF = x.shape[x.ndim - 1];
  const lead = x.shape.slice(0, -1);
  const x2 = x.ndim === 2 ? x : x.reshape(-1, inF);
  let y = matmul(x2, wIsOutIn ? transpose(w, 0, 1) : w);
  if (b) y = add(y, b);
  const outF = y.shape[1];
  return x.ndim === 2 ? y : y.reshape(...lead, outF);
}

function checkLast(layer: string, x: Tensor, inF: number): void {
  if (x.ndim < 1 || x.shape[x.ndim - 1] !== inF) {
    throw new Error(`${layer}: input [${x.shape.join(", ")}] must end in ${inF} features`);
  }
}

/** Options of {@link Linear}. */
export interface LinearOptions extends InitOptions {
  /** Add a bias (default true). */
  bias?: boolean;
}

/**
 * y = x·Wᵀ + b with W [out, in] (PyTorch's layout). Init as PyTorch: U(±1/√in) for both.
 */
export class Linear extends Module {
  /** Weight [out, in]. */
  readonly weight: Tensor;
  /** Bias [out], or null. */
  readonly bias: Tensor | null;

  /** A fresh layer. */
  constructor(readonly inFeatures: number, readonly outFeatures: number, opts: LinearOptions = {}) {
    super();
    const bound = 1 / Math.sqrt(inFeatures);
    this.weight = this.registerParameter(
      "weight",
      initUniform([outFeatures, inFeatures], bound, opts),
    );
    this.bias = opts.bias === false
      ? null
      : this.registerParameter("bias", initUniform([outFeatures], bound, opts));
  }

  /** Applies the layer over the last axis of x [..., in] → [..., out]. */
  forward(x: Tensor): Tensor {
    checkLast("Linear", x, this.inFeatures);
    return affine(x, this.weight, this.bias, true);
  }
}

/** Options of {@link Conv1D}. */
export interface Conv1DOptions extends InitOptions {
  /** Std of the normal weight init (default 0.02, as Hugging Face). */
  std?: number;
}

/**
 * GPT-2's "Conv1D": y = x·W + b with W [in, out] (transposed relative to Linear), as stored
 * in GPT-2 checkpoints. Init: W ~ N(0, std), b = 0.
 */
export class Conv1D extends Module {
  /** Weight [in, out]. */
  readonly weight: Tensor;
  /** Bias [out]. */
  readonly bias: Tensor;

  /** A fresh layer mapping `inFeatures` → `outFeatures`. */
  constructor(readonly inFeatures: number, readonly outFeatures: number, opts: Conv1DOptions = {}) {
    super();
    this.weight = this.registerParameter(
      "weight",
      initNormal([inFeatures, outFeatures], opts.std ?? 0.02, opts),
    );
    this.bias = this.registerParameter("bias", initConstant([outFeatures], 0, opts));
  }

  /** Applies the layer over the last axis of x [..., in] → [..., out]. */
  forward(x: Tensor): Tensor {
    checkLast("Conv1D", x, this.inFeatures);
    return affine(x, this.weight, this.bias, false);
  }
}

/** Options of {@link Embedding}. */
export interface EmbeddingOptions extends InitOptions {
  /** Std of the normal init (default 1, as PyTorch; GPT-2 uses 0.02). */
  std?: number;
}

/** A lookup table [num, dim]: ids [...] → [..., dim]. */
export class Embedding extends Module {
  /** The table [num, dim]. */
  readonly weight: Tensor;

  /** A fresh table with N(0, std) entries. */
  constructor(readonly numEmbeddings: number, readonly dim: number, opts: EmbeddingOptions = {}) {
    super();
    this.weight = this.registerParameter(
      "weight",
      initNormal([numEmbeddings, dim], opts.std ?? 1, opts),
    );
  }

  /** Rows for i32 ids. */
  forward(ids: Tensor): Tensor {
    return embedding(this.weight, ids);
  }
}

/** Options of {@link LayerNorm}. */
export interface LayerNormOptions extends InitOptions {
  /** Added to the variance (default 1e-5). */
  eps?: number;
}

/** Layer normalisation over the last axis with weight (init 1) and bias (init 0). */
export class LayerNorm extends Module {
  /** Scale [dim]. */
  readonly weight: Tensor;
  /** Shift [dim]. */
  readonly bias: Tensor;
  /** Variance epsilon. */
  readonly eps: number;

  /** A fresh layer norm over `dim` features. */
  constructor(readonly dim: number, opts: LayerNormOptions = {}) {
    super();
    this.eps = opts.eps ?? 1e-5;
    this.weight = this.registerParameter("weight", initConstant([dim], 1, opts));
    this.bias = this.registerParameter("bias", initConstant([dim], 0, opts));
  }

  /** Normalises x [..., dim]. */
  forward(x: Tensor): Tensor {
    checkLast("LayerNorm", x, this.dim);
    return layerNorm(x, this.weight, this.bias, this.eps);
  }
}

/** Inverted dropout, active only in training mode. */
export class Dropout extends Module {
  /** A dropout layer with drop probability p in [0, 1). */
  constructor(readonly p: number) {
    super();
    if (!(p >= 0 && p < 1)) throw new Error(`Dropout: p must be in [0, 1), got ${p}`);
  }

  /** x in eval mode; x with dropped and rescaled elements in training mode. */
  forward(x: Tensor): Tensor {
    return dropout(x, this.p, this.training);
  }
}

/** GPT-2's tanh-approximated GELU (`gelu_new`). */
export class GELU extends Module {
  /** Applies 0.5x(1 + tanh(√(2/π)(x + 0.044715x³))). */
  forward(x: Tensor): Tensor {
    return gelu(x);
  }
}

/** Elementwise tanh, as `torch.nn.Tanh`. */
export class Tanh extends Module {
  /** Applies tanh. */
  forward(x: Tensor): Tensor {
    return tanh(x);
  }
}

/** A module that maps one tensor to one tensor (what {@link Sequential} chains). */
export interface TensorLayer extends Module {
  /** Applies the layer. */
  forward(x: Tensor): Tensor;
}

/**
 * Layers applied in order, registered as children "0", "1", ... like `torch.nn.Sequential`, so
 * parameter names are `0.weight`, `2.bias`, ...
 */
export class Sequential extends Module {
  /** The layers, in order. */
  readonly layers: readonly TensorLayer[];

  /** Chains `layers`. */
  constructor(...layers: TensorLayer[]) {
    super();
    layers.forEach((m, i) => this.registerModule(String(i), m));
    this.layers = layers;
  }

  /** Feeds x through every layer. */
  forward(x: Tensor): Tensor {
    for (const m of this.layers) x = m.forward(x);
    return x;
  }
}
