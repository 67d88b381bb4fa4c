/**
 * The contract between the tensor core (`autograd/`) and the compute backends (`kernels/*`).
 *
 * A backend owns opaque buffers ({@link Storage}) and implements a small set of primitives on
 * them. Every differentiable op is defined once in `autograd/ops.ts` in terms of these
 * primitives. The elementwise primitives' arithmetic (each op of {@link UNARY_OPS} and
 * {@link BINARY_OPS}), the AdamW step and dropout's hash are written once, as expressions in
 * `expr.ts`, and so are the reductions' ({@link Backend.reduce}: each op's combine, start and
 * value over an empty axis; {@link Backend.argmax}: its rule for taking a later element); the
 * row ops (softmax and log-softmax, layer norm, cross-entropy, and their backwards) once, as row
 * kernels in `row_kernels.ts`. Every backend compiles those descriptions (the reference:
 * `cpu/expr.ts`, `cpu/reduce_expr.ts` and `cpu/row_expr.ts`; WebAssembly and WebGPU: their
 * `*expr*` files), looping over the data its own way (vector lanes, threads, workgroups). Matmul,
 * attention and indexing are written per backend. A backward is
 * written with other ops, except for softmax, layer norm, cross-entropy and attention, whose
 * backwards are primitives too (`softmaxBackward`, `layerNormBackward`, `crossEntropyBackward`,
 * `attentionBackward`). Adding a backend never touches the ops. Arguments are checked once for
 * every backend (`checks.ts`).
 *
 * Conventions, shared by every backend:
 * - Buffers hold `f32` values or `i32` indices. A primitive returns a new, contiguous buffer
 *   (row-major) unless it says it works in place.
 * - Elementwise primitives read inputs through a {@link View} (shape, strides, offset), so
 *   broadcasting (stride 0), transposes and slices need no copies. All other primitives read
 *   contiguous inputs; the core makes them contiguous first.
 * - Work may be asynchronous (WebGPU queues it); only {@link Backend.read} waits.
 * - Random numbers for dropout come from {@link hashUniform}, a counter-based generator written
 *   once (`DROPOUT_BITS` in `expr.ts`) and compiled by every backend, so a seed gives the same
 *   mask on every backend, bit for bit.
 *
 * @module
 */
import { type BinaryOp, DROPOUT_BITS, type UnaryOp } from "./expr.ts";
import { compileU32Args } from "./cpu/expr.ts";

/** Element type of a buffer: `f32` for values, `i32` for token ids and indices. */
export type DType = "f32" | "i32";

/** Typed array of host data for a dtype. */
export type HostArray = Float32Array | Float64Array | Int32Array;

/** An opaque buffer owned by one backend. */
export interface Storage {
  /** The backend that owns the buffer. */
  readonly backend: Backend;
  /** Element type. */
  readonly dtype: DType;
  /** Number of elements. */
  readonly length: number;
}

/** A strided view of a buffer: element `(i0, ..., in)` lives at `offset + Σ ik·strides[k]`. */
export interface View {
  /** Logical shape. */
  readonly shape: readonly number[];
  /** Element strides; 0 broadcasts along that axis. */
  readonly strides: readonly number[];
  /** Offset of element (0, ..., 0), in elements. */
  readonly offset: number;
}

// The elementwise ops' names and arithmetic: one table for every backend.
export { BINARY_OPS, type BinaryOp, UNARY_OPS, type UnaryOp } from "./expr.ts";

/** Reductions over one axis. */
export type ReduceOp = "sum" | "max" | "min";

/** Shape of a (batched) matrix product `C[b] = op(A[b]) · op(B[b])`. */
export interface MatmulParams {
  /** Number of products. */
  batch: number;
  /** Rows of op(A) and C. */
  m: number;
  /** Columns of op(B) and C. */
  n: number;
  /** Columns of op(A) = rows of op(B). */
  k: number;
  /** A is stored as [k, m] (row-major) and used transposed. */
  transA: boolean;
  /** B is stored as [n, k] (row-major) and used transposed. */
  transB: boolean;
  /** Elements between consecutive A matrices; 0 reuses one A for every batch. */
  aBatchStride: number;
  /** Elements between consecutive B matrices; 0 reuses one B for every batch. */
  bBatchStride: number;
  /** Offset of the first A element. */
  aOffset?: number;
  /** Offset of the first B element. */
  bOffset?: number;
}

/** Hyperparameters of one AdamW step (PyTorch / Hugging Face semantics). */
export interface AdamWParams {
  /** Learning rate for this step. */
  lr: number;
  /** First-moment decay. */
  beta1: number;
  /** Second-moment decay. */
  beta2: number;
  /** Denominator epsilon. */
  eps: number;
  /** Decoupled weight decay (multiplied by lr). */
  weightDecay: number;
  /** 1-based step number, for bias correction. */
  step: number;
}

/**
 * Shape and options of fused causal attention over one batch of heads.
 * q is [batch, heads, queries, dim]; k and v are [batch, heads, keys, dim] (past ++ current);
 * all contiguous. Query i (0-based among the new ones) may see key j iff
 * j ≤ keys − queries + i and the padding mask (if any) is non-zero at [b, j].
 * Scores are `scale · q·k`; masked scores count as the most negative f32, as in Hugging Face,
 * so a row with nothing visible attends uniformly to all keys instead of giving NaN.
 *
 * Non-finite values: a row with a visible NaN or +Inf score, or with only −Inf visible scores,
 * is NaN (output, log-sum-exp and the gradients it reaches), as softmax gives. A masked key never
 * enters a row, neither its score nor its value (not even as 0·v), so NaN or Inf there leaves
 * the row unchanged; a visible key whose probability is 0 (dropped out, or underflowed) enters
 * as 0·v, as in the unfused matmul.
 */
export interface AttentionParams {
  /** Batch size B. */
  batch: number;
  /** Heads H. */
  heads: number;
  /** Query rows T (the new positions). */
  queries: number;
  /** Key/value rows S = past + T. */
  keys: number;
  /** Head size d. */
  dim: number;
  /** Score scale (1/√d in GPT-2). */
  scale: number;
  /**
   * Dropout probability on the attention probabilities (0: none). The keep mask is
   * `hashUniform(dropSeed, ((b·H + h)·T + i)·S + j) ≥ dropP`, exactly {@link Backend.dropoutMask}
   * over [B, H, T, S], so fused and unfused attention agree for a seed.
   */
  dropP: number;
  /** Seed of the dropout mask. */
  dropSeed: number;
}

/** What every backend implements. */
export interface Backend {
  /** Name used by `--backend` and in messages: `cpu`, `wasm`, `webgpu`. */
  readonly name: string;

  // ---- memory ----
  /** A new buffer holding a copy of `data`. */
  fromHost(data: HostArray, dtype: DType): Storage;
  /** Whether {@link Backend.fromHostF16} may be called (WebGPU created with `f16Weights`). */
  readonly f16Weights?: boolean;
  /**
   * Optional: a read-only f32 buffer stored as f16 (frozen weights; kernels read it as f32).
   * Usable only where {@link Backend.f16Weights} is true.
   */
  fromHostF16?(data: HostArray): Storage;
  /** A new buffer of `length` elements, all `value`. */
  full(length: number, value: number, dtype: DType): Storage;
  /** Reads a whole buffer back (waits for queued work). f32 buffers give Float32Array. */
  read(s: Storage): Promise<Float32Array | Int32Array>;
  /** Frees a buffer. Using it afterwards is an error. Idempotent. */
  dispose(s: Storage): void;
  /** Buffers currently alive (leak checks). */
  liveCount(): number;
  /** Writes `src` (seen through `srcView`) into `dst` (seen through `dstView`, same shape). */
  copy(src: Storage, srcView: View, dst: Storage, dstView: View): void;

  // ---- elementwise (f32) ----
  /** out[i] = op(x[view(i)]); out has x's view shape, contiguous. */
  unary(op: UnaryOp, x: Storage, xv: View, param?: number): Storage;
  /** out = op(a, b); both views already broadcast to the output shape. */
  binary(op: BinaryOp, a: Storage, av: View, b: Storage, bv: View): Storage;
  /** out = cond != 0 ? a : b; all three views broadcast to the output shape. */
  where(cond: Storage, cv: View, a: Storage, av: View, b: Storage, bv: View): Storage;
  /** Converts between dtypes (f32 → i32 truncates toward zero). */
  cast(x: Storage, dtype: DType): Storage;

  // ---- reductions (contiguous x seen as [outer, size, inner]) ----
  /** Reduces the middle axis: result [outer, inner]. */
  reduce(op: ReduceOp, x: Storage, outer: number, size: number, inner: number): Storage;
  /** Index of the maximum along the middle axis (first on ties), as i32 [outer, inner]. */
  argmax(x: Storage, outer: number, size: number, inner: number): Storage;

  // ---- linear algebra ----
  /** C [batch, m, n] contiguous. */
  matmul(a: Storage, b: Storage, p: MatmulParams): Storage;

  // ---- fused row ops (contiguous [rows, cols]) ----
  /** Softmax (or log-softmax) of each row, numerically stable. */
  softmax(x: Storage, rows: number, cols: number, log: boolean): Storage;
  /** Gradient wrt the input of softmax/log-softmax, given its output `y` and `gy`. */
  softmaxBackward(y: Storage, gy: Storage, rows: number, cols: number, log: boolean): Storage;
  /** Layer norm of each row; also returns per-row mean and 1/std for the backward. */
  layerNorm(
    x: Storage,
    w: Storage,
    b: Storage,
    rows: number,
    cols: number,
    eps: number,
  ): { y: Storage; mean: Storage; rstd: Storage };
  /** Gradients of layer norm wrt x, w and b. */
  layerNormBackward(
    x: Storage,
    w: Storage,
    mean: Storage,
    rstd: Storage,
    gy: Storage,
    rows: number,
    cols: number,
  ): { gx: Storage; gw: Storage; gb: Storage };
  /**
   * Cross-entropy per row against i32 `targets`; rows whose target equals `ignoreIndex`
   * give loss 0. Returns the loss [rows] and the row log-sum-exp [rows] for the backward.
   */
  crossEntropy(
    logits: Storage,
    targets: Storage,
    rows: number,
    cols: number,
    ignoreIndex: number,
  ): { loss: Storage; lse: Storage };
  /** d loss / d logits = (softmax − onehot) · gLoss[row]; zero on ignored rows. */
  crossEntropyBackward(
    logits: Storage,
    targets: Storage,
    lse: Storage,
    gLoss: Storage,
    rows: number,
    cols: number,
    ignoreIndex: number,
  ): Storage;

  // ---- attention ----
  /**
   * Fused causal attention (see {@link AttentionParams}); `mask` is an optional f32 [B, S]
   * padding mask (1 = attend). Returns out [B, H, T, d] and each row's log-sum-exp of its
   * visible scores, [B, H, T] (the most negative f32 for a row with nothing visible).
   */
  attention(
    q: Storage,
    k: Storage,
    v: Storage,
    mask: Storage | null,
    p: AttentionParams,
  ): { out: Storage; lse: Storage };
  /**
   * Gradients of {@link Backend.attention} wrt q, k and v given the output's gradient `gOut`;
   * probabilities are recomputed from `lse`, nothing [T, S]-sized is kept between the passes.
   */
  attentionBackward(
    q: Storage,
    k: Storage,
    v: Storage,
    mask: Storage | null,
    out: Storage,
    lse: Storage,
    gOut: Storage,
    p: AttentionParams,
  ): { gq: Storage; gk: Storage; gv: Storage };

  // ---- indexing ----
  /** out[i, :] = table[ids[i], :]; ids i32 [n], table [vocab, cols]. Out of range is an error or zeros. */
  gather(table: Storage, ids: Storage, n: number, cols: number): Storage;
  /** out[v, :] = Σ_{i: ids[i]=v} g[i, :]; out [vocab, cols]. Deterministic order (no float atomics). */
  scatterAdd(g: Storage, ids: Storage, n: number, cols: number, vocab: number): Storage;

  // ---- random ----
  /** Dropout mask: 1/(1−p) where hashUniform(seed, i) ≥ p, else 0. */
  dropoutMask(length: number, p: number, seed: number): Storage;

  // ---- optimizer ----
  /** One AdamW step, in place on param, m and v. */
  adamw(param: Storage, grad: Storage, m: Storage, v: Storage, p: AdamWParams): void;
}

let dropoutBits: ((args: ArrayLike<number>) => number) | undefined;
const hashArgs = new Float64Array(2);

/**
 * Counter-based uniform random number in [0, 1) from a 32-bit seed and an index: the top 24
 * bits of `DROPOUT_BITS` (`expr.ts`, the hash every backend compiles) over 2²⁴, so masks agree
 * bit for bit across backends. Evaluated by the reference compiler (`cpu/expr.ts`).
 */
export function hashUniform(seed: number, index: number): number {
  dropoutBits ??= compileU32Args(DROPOUT_BITS, ["seed", "index"]);
  hashArgs[0] = seed;
  hashArgs[1] = index;
  return (dropoutBits(hashArgs) >>> 8) / 16777216;
}

/** The value masked attention scores take (the most negative f32, Hugging Face's `finfo.min`). */
export const ATTENTION_MASK_VALUE = -3.4028234663852886e38;

/**
 * Throws, naming `where` (e.g. "wasm attention"), unless the sizes of `p` are non-negative
 * integers with keys ≥ queries. Backends call it before touching buffers.
 */
export function checkAttentionParams(p: AttentionParams, where: string): void {
  for (const k of ["batch", "heads", "queries", "keys", "dim"] as const) {
    if (!Number.isInteger(p[k]) || p[k] < 0) {
      throw new RangeError(`${where}: ${k} must be a non-negative integer, got ${p[k]}`);
    }
  }
  if (p.keys < p.queries) {
    throw new RangeError(`${where}: needs keys S ≥ queries T, got S ${p.keys}, T ${p.queries}`);
  }
}

/** Row log-sum-exps below this mark a row with no visible key (uniform attention). */
export const ATTENTION_FULLY_MASKED_LSE = -1e38;

/** Row-major contiguous strides of a shape. */
export function contiguousStrides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

/** Number of elements of a shape. */
export function shapeSize(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** A contiguous view of a whole shape. */
export function contiguousView(shape: readonly number[], offset = 0): View {
  return { shape, strides: contiguousStrides(shape), offset };
}
