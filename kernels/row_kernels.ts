/**
 * The row ops written once: softmax, log-softmax, layer norm and cross-entropy (forward and
 * backward) as {@link RowKernel}s in the expression language of `expr.ts`.
 *
 * A row kernel works on a contiguous `[rows, cols]` matrix one row at a time: a few reductions
 * over the row (a sum or a maximum of an element expression), then one pass writing each output
 * element, plus values per row and sums per column. Each backend compiles the same descriptions:
 * the CPU reference to TypeScript in float64 (`cpu/row_expr.ts`), WebAssembly to f32x4 loops split
 * over threads by rows (`wasm/gen_row_expr.ts`), WebGPU to one workgroup per row with
 * shared-memory reductions (`webgpu/row_expr.ts`).
 *
 * ## What an expression may read
 * - Element values: `input(name)` for a name in {@link RowKernel.rowInputs} (the element of that
 *   `[rows, cols]` buffer), in {@link RowKernel.colInputs} (the column's value of that `[cols]`
 *   buffer), a kept reduction ({@link RowReduce.keep}), and {@link COL}, the column index.
 * - Row values: {@link RowKernel.perRow} and {@link RowKernel.indices} buffers (one value per row),
 *   {@link RowKernel.scalars}, the names of earlier {@link RowKernel.steps}, and {@link COLS}.
 *
 * A node that reads only row values is a row value itself: the compilers evaluate it once per
 * row (in f64 where the target has it), not once per element.
 *
 * ## Order and precision
 * Picks read only a row input and an index, so every compiler computes them first. Reductions
 * run in order, in the passes of {@link reductionPasses}. Sums accumulate in f64 on the CPU reference and WebAssembly, in f32 in a fixed
 * tree on WebGPU. A `max` reduction is used only as a shift inside `exp` here; whether it skips
 * or returns NaN differs by target, and a NaN element reaches the following sum either way.
 * Column sums ({@link RowKernel.colSums}) add rows in a fixed order, so they are deterministic.
 *
 * @module
 */
import {
  add,
  div,
  eq,
  exp,
  input,
  inputNames,
  log,
  mul,
  type Num,
  select,
  sqrt,
  sub,
} from "./expr.ts";

/** The column index of the element, as a number (exact below 2²⁴ columns). */
export const COL: Num = input("col");
/** The row length, as a number. */
export const COLS: Num = input("cols");

/** A reduction over the row: Σ or max of an element expression. */
export interface RowReduce {
  readonly kind: "sum" | "max";
  /** The name later expressions read the result by. */
  readonly name: string;
  /** The element expression reduced. */
  readonly of: Num;
  /**
   * Also store each element's value of `of` in this `[rows, cols]` output, which later
   * expressions read back as `input(keep)` (in the output's precision, f32).
   */
  readonly keep?: string;
}

/**
 * One element of the row: the row input `from` at the column given by the index input `at`;
 * NaN where that index is outside [0, cols) (an ignored target, whose value a select discards,
 * or a bad one, which then makes the result NaN on a target that cannot raise an error).
 */
export interface RowPick {
  readonly kind: "pick";
  readonly name: string;
  readonly from: string;
  readonly at: string;
}

/** A step of a row kernel. */
export type RowStep = RowReduce | RowPick;

/** A row kernel: see the module documentation. */
export interface RowKernel {
  /** f32 `[rows, cols]` buffers read at each element. */
  readonly rowInputs: readonly string[];
  /** f32 `[cols]` buffers read at each element's column. */
  readonly colInputs: readonly string[];
  /** f32 `[rows]` buffers, one value per row. */
  readonly perRow: readonly string[];
  /** i32 `[rows]` buffers of column indices (a number in expressions, a position in picks). */
  readonly indices: readonly string[];
  /** Scalars of the call. */
  readonly scalars: readonly string[];
  /** Reductions and picks, in order. */
  readonly steps: readonly RowStep[];
  /** f32 `[rows, cols]` outputs: each element's value, written in one pass after the steps. */
  readonly outputs: Readonly<Record<string, Num>>;
  /** f32 `[rows]` outputs: row expressions. */
  readonly rowOutputs: Readonly<Record<string, Num>>;
  /**
   * f32 `[cols]` outputs: the sum over rows of an element expression, which may read element
   * values, per-row inputs, indices and scalars (not the steps).
   */
  readonly colSums: Readonly<Record<string, Num>>;
}

/**
 * The reductions of a kernel in passes over the row: consecutive reductions that read neither
 * each other's results nor their kept values share one pass. Every compiler runs these passes.
 */
export function reductionPasses(k: RowKernel): RowReduce[][] {
  const passes: RowReduce[][] = [];
  let cur: RowReduce[] = [];
  for (const s of k.steps) {
    if (s.kind === "pick") continue;
    const reads = inputNames(s.of);
    if (cur.some((p) => reads.has(p.name) || (p.keep !== undefined && reads.has(p.keep)))) {
      passes.push(cur);
      cur = [];
    }
    cur.push(s);
  }
  if (cur.length > 0) passes.push(cur);
  return passes;
}

const x = input("x");
const sumOf = (name: string, of: Num, keep?: string): RowReduce => ({
  kind: "sum",
  name,
  of,
  keep,
});
const maxOf = (name: string, of: Num): RowReduce => ({ kind: "max", name, of });
const NONE = { perRow: [], indices: [], scalars: [], rowOutputs: {}, colSums: {} } as const;

/** The row maximum, 0 for a row of −∞ only (a fully masked row), as a shift for `exp`. */
const shift = select(eq(input("max"), -Infinity), 0, input("max"));

/** Softmax of each row of `x` into `y`: e^{x − max} / Σ e^{x − max}. */
export const SOFTMAX: RowKernel = {
  ...NONE,
  rowInputs: ["x"],
  colInputs: [],
  steps: [maxOf("max", x), sumOf("sum", exp(sub(x, shift)), "y")],
  outputs: { y: mul(input("y"), div(1, input("sum"))) },
};

/** Log-softmax of each row of `x` into `y`: (x − max) − ln Σ e^{x − max}. */
export const LOG_SOFTMAX: RowKernel = {
  ...NONE,
  rowInputs: ["x"],
  colInputs: [],
  steps: [maxOf("max", x), sumOf("sum", exp(sub(x, shift)))],
  outputs: { y: sub(sub(x, shift), log(input("sum"))) },
};

const y = input("y"), gy = input("gy");

/** Gradient of softmax wrt its input, from its output `y` and the gradient `gy`: y(gy − Σ y·gy). */
export const SOFTMAX_BACKWARD: RowKernel = {
  ...NONE,
  rowInputs: ["y", "gy"],
  colInputs: [],
  steps: [sumOf("dot", mul(y, gy))],
  outputs: { gx: mul(y, sub(gy, input("dot"))) },
};

/** Gradient of log-softmax wrt its input, from its output `y` and `gy`: gy − e^y Σ gy. */
export const LOG_SOFTMAX_BACKWARD: RowKernel = {
  ...NONE,
  rowInputs: ["y", "gy"],
  colInputs: [],
  steps: [sumOf("sum", gy)],
  outputs: { gx: sub(gy, mul(exp(y), input("sum"))) },
};

const mean = div(input("sumX"), COLS);
const centred = sub(x, mean);
const rstd = div(1, sqrt(add(div(input("sumSq"), COLS), input("eps"))));

/**
 * Layer norm of each row of `x` with weight `w` and bias `b` (scalar `eps`):
 * y = (x − μ)·rstd·w + b with μ the row mean and rstd = 1/√(Σ(x − μ)²/cols + eps), the two-pass
 * variance. Also writes μ and rstd per row for the backward.
 */
export const LAYER_NORM: RowKernel = {
  ...NONE,
  rowInputs: ["x"],
  colInputs: ["w", "b"],
  scalars: ["eps"],
  steps: [sumOf("sumX", x), sumOf("sumSq", mul(centred, centred))],
  outputs: { y: add(mul(mul(centred, rstd), input("w")), input("b")) },
  rowOutputs: { mean, rstd },
};

/**
 * Gradients of layer norm from `x`, the weight `w`, the forward's per-row `mean` and `rstd`, and
 * `gy`. With x̂ = (x − μ)·rstd and g = gy·w: gx = rstd·(g − Σg/cols − x̂·Σ(g·x̂)/cols); the
 * weight's gradient gw = Σ_rows gy·x̂ and the bias's gb = Σ_rows gy.
 */
export const LAYER_NORM_BACKWARD: RowKernel = (() => {
  const rs = input("rstd");
  const xhat = mul(sub(x, input("mean")), rs);
  const g = mul(gy, input("w"));
  return {
    ...NONE,
    rowInputs: ["x", "gy"],
    colInputs: ["w"],
    perRow: ["mean", "rstd"],
    steps: [sumOf("sumG", g), sumOf("sumGX", mul(g, xhat))],
    outputs: {
      gx: mul(rs, sub(sub(g, div(input("sumG"), COLS)), mul(xhat, div(input("sumGX"), COLS)))),
    },
    colSums: { gw: mul(gy, xhat), gb: gy },
  };
})();

const target = input("target");
const ignored = eq(target, input("ignoreIndex"));
const logits = input("logits");

/**
 * Cross-entropy of each row of `logits` against the i32 `target` column: loss = lse − logits[t]
 * with lse = max + ln Σ e^{logits − max}; 0 on rows whose target is the scalar `ignoreIndex`.
 * Writes `loss` and `lse` per row. A target outside [0, cols) other than the ignored one gives a
 * NaN loss (the CPU and WebAssembly backends refuse it before running the kernel).
 */
export const CROSS_ENTROPY: RowKernel = (() => {
  const lse = add(input("max"), log(input("sum")));
  return {
    ...NONE,
    rowInputs: ["logits"],
    colInputs: [],
    indices: ["target"],
    scalars: ["ignoreIndex"],
    steps: [
      maxOf("max", logits),
      sumOf("sum", exp(sub(logits, input("max")))),
      { kind: "pick", name: "picked", from: "logits", at: "target" },
    ],
    outputs: {},
    rowOutputs: { loss: select(ignored, 0, sub(lse, input("picked"))), lse },
  };
})();

/**
 * Gradient of {@link CROSS_ENTROPY} wrt the logits, given the forward's `lse` and the loss's
 * gradient `gLoss` per row: (e^{logits − lse} − [col = target])·gLoss, 0 on ignored rows.
 */
export const CROSS_ENTROPY_BACKWARD: RowKernel = {
  ...NONE,
  rowInputs: ["logits"],
  colInputs: [],
  perRow: ["lse", "gLoss"],
  indices: ["target"],
  scalars: ["ignoreIndex"],
  steps: [],
  outputs: {
    gx: select(
      ignored,
      0,
      mul(sub(exp(sub(logits, input("lse"))), select(eq(COL, target), 1, 0)), input("gLoss")),
    ),
  },
};

/** Every row kernel by name (for compilers that build them all up front, and for tests). */
export const ROW_KERNELS: Readonly<Record<string, RowKernel>> = {
  softmax: SOFTMAX,
  logSoftmax: LOG_SOFTMAX,
  softmaxBackward: SOFTMAX_BACKWARD,
  logSoftmaxBackward: LOG_SOFTMAX_BACKWARD,
  layerNorm: LAYER_NORM,
  layerNormBackward: LAYER_NORM_BACKWARD,
  crossEntropy: CROSS_ENTROPY,
  crossEntropyBackward: CROSS_ENTROPY_BACKWARD,
};
