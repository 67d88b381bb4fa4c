/**
 * Elementwise ops written once: a tiny scalar expression language, and the table giving every
 * unary and binary op of {@link Backend.unary} / {@link Backend.binary} its arithmetic in it.
 *
 * Each backend compiles the same table: the CPU reference to TypeScript closures in float64
 * (`cpu/expr.ts`), WebAssembly to f32x4 code through the module builder (`wasm/gen_expr.ts`),
 * WebGPU to WGSL functions (`webgpu/expr.ts`). Adding an elementwise op is its name in
 * {@link UNARY_OPS} or {@link BINARY_OPS} and its expression in the table, both here.
 *
 * An expression is a DAG of immutable nodes. A node used twice (a `const` bound once and used
 * twice) is computed once by the compilers that can share values (WASM and WGSL). Semantics are
 * IEEE float: NaN propagates through arithmetic; comparisons with NaN are false, so
 * `select(gt(x, 0), x, 0)` maps NaN to 0, as `x > 0 ? x : 0` does in TypeScript.
 *
 * The AdamW step and the dropout mask are {@link MapKernel}s here too (several buffers in,
 * several out, in place); dropout's counter-based hash is written in 32-bit integer nodes
 * ({@link U32}), and the fused attention kernels draw their masks from the same expression.
 * The row ops (softmax, layer norm, cross-entropy) are row kernels in this language
 * (`row_kernels.ts`). Matmul and attention are not expressed here: their cost is in how data
 * moves (blocking for registers and caches, workgroup-shared memory, online softmax across
 * key blocks), which these descriptions do not capture; they stay hand-written per backend.
 *
 * @module
 */
import type { AdamWParams, ReduceOp } from "./backend.ts";

/** Math functions of one argument. */
export type MathUnary = "neg" | "abs" | "sqrt" | "exp" | "log" | "tanh";
/** Arithmetic of two arguments (`pow` with `Math.pow` semantics). */
export type MathBinary = "add" | "sub" | "mul" | "div" | "pow";
/** Comparisons; false when either side is NaN (except `ne`, which is then true). */
export type CmpOp = "gt" | "ge" | "lt" | "le" | "eq" | "ne";

/** A numeric expression node. */
export type Num =
  | { readonly kind: "const"; readonly value: number }
  | { readonly kind: "input"; readonly name: string }
  | { readonly kind: "unary"; readonly op: MathUnary; readonly a: Num }
  | { readonly kind: "binary"; readonly op: MathBinary; readonly a: Num; readonly b: Num }
  | { readonly kind: "select"; readonly cond: Bool; readonly a: Num; readonly b: Num };

/** A boolean expression node (only as the condition of {@link select}). */
export type Bool =
  | { readonly kind: "cmp"; readonly op: CmpOp; readonly a: Num; readonly b: Num }
  | { readonly kind: "isnan"; readonly a: Num }
  | { readonly kind: "isinf"; readonly a: Num }
  | { readonly kind: "geu"; readonly a: U32; readonly b: U32 };

/** Wrapping 32-bit unsigned arithmetic (`mul` keeps the low 32 bits, as `Math.imul`). */
export type U32Binary = "add" | "mul" | "xor";

/**
 * A 32-bit unsigned integer node (dropout's counter-based hash): `u32input` names an integer
 * scalar, or `"index"`, the element's position in a {@link MapKernel}'s buffers.
 */
export type U32 =
  | { readonly kind: "u32const"; readonly value: number }
  | { readonly kind: "u32input"; readonly name: string }
  | { readonly kind: "u32binary"; readonly op: U32Binary; readonly a: U32; readonly b: U32 }
  | { readonly kind: "shr"; readonly a: U32; readonly bits: number };

/** Any node. */
export type Node = Num | Bool | U32;

/** An operand: a node, or a number for a constant. */
export type Arg = Num | number;
const num = (a: Arg): Num => (typeof a === "number" ? c(a) : a);

/** A constant (float64 here; f32 where the target computes in f32). */
export function c(value: number): Num {
  return { kind: "const", value };
}
/** The first operand. */
export const X: Num = { kind: "input", name: "x" };
/** The second operand of a binary op. */
export const Y: Num = { kind: "input", name: "y" };
/** The scalar parameter of a unary op (`powScalar`, `addScalar`, `mulScalar`). */
export const P: Num = { kind: "input", name: "param" };
/** A named operand (an input buffer's element, or a scalar) of a {@link MapKernel}. */
export function input(name: string): Num {
  return { kind: "input", name };
}

const un = (op: MathUnary) => (a: Arg): Num => ({ kind: "unary", op, a: num(a) });
const bin = (op: MathBinary) => (a: Arg, b: Arg): Num => ({
  kind: "binary",
  op,
  a: num(a),
  b: num(b),
});
const cmp = (op: CmpOp) => (a: Arg, b: Arg): Bool => ({ kind: "cmp", op, a: num(a), b: num(b) });

/** −a. */
export const neg: (a: Arg) => Num = un("neg");
/** |a|. */
export const abs: (a: Arg) => Num = un("abs");
/** √a. */
export const sqrt: (a: Arg) => Num = un("sqrt");
/** eᵃ. */
export const exp: (a: Arg) => Num = un("exp");
/** ln a. */
export const log: (a: Arg) => Num = un("log");
/** tanh a. */
export const tanh: (a: Arg) => Num = un("tanh");
/** a + b. */
export const add: (a: Arg, b: Arg) => Num = bin("add");
/** a − b. */
export const sub: (a: Arg, b: Arg) => Num = bin("sub");
/** a · b. */
export const mul: (a: Arg, b: Arg) => Num = bin("mul");
/** a / b. */
export const div: (a: Arg, b: Arg) => Num = bin("div");
/** aᵇ with `Math.pow` semantics (signs, zeros, infinities, integer exponents). */
export const pow: (a: Arg, b: Arg) => Num = bin("pow");
/** a > b. */
export const gt: (a: Arg, b: Arg) => Bool = cmp("gt");
/** a ≥ b. */
export const ge: (a: Arg, b: Arg) => Bool = cmp("ge");
/** a < b. */
export const lt: (a: Arg, b: Arg) => Bool = cmp("lt");
/** a ≤ b. */
export const le: (a: Arg, b: Arg) => Bool = cmp("le");
/** a = b. */
export const eq: (a: Arg, b: Arg) => Bool = cmp("eq");
/** a ≠ b. */
export const ne: (a: Arg, b: Arg) => Bool = cmp("ne");
/** a is NaN. */
export function isnan(a: Arg): Bool {
  return { kind: "isnan", a: num(a) };
}
/** a is ±∞. */
export function isinf(a: Arg): Bool {
  return { kind: "isinf", a: num(a) };
}
/** A 32-bit unsigned constant. */
export function u32(value: number): U32 {
  return { kind: "u32const", value: value >>> 0 };
}
/** A named 32-bit unsigned scalar (`"index"`: the element's position). */
export function u32input(name: string): U32 {
  return { kind: "u32input", name };
}
const ubin = (op: U32Binary) => (a: U32, b: U32): U32 => ({ kind: "u32binary", op, a, b });
/** a + b mod 2³². */
export const uadd: (a: U32, b: U32) => U32 = ubin("add");
/** a · b mod 2³² (`Math.imul`). */
export const umul: (a: U32, b: U32) => U32 = ubin("mul");
/** a xor b. */
export const xor: (a: U32, b: U32) => U32 = ubin("xor");
/** a >>> bits (0 < bits < 32). */
export function shr(a: U32, bits: number): U32 {
  return { kind: "shr", a, bits };
}
/** a ≥ b, unsigned. */
export function geu(a: U32, b: U32): Bool {
  return { kind: "geu", a, b };
}

/** `cond ? a : b` (both sides are evaluated). */
export function select(cond: Bool, a: Arg, b: Arg): Num {
  return { kind: "select", cond, a: num(a), b: num(b) };
}

// ---- derived functions (written with the primitives, so every target shares them) ----

/**
 * σ(z) and 1 − σ(z), both without overflow or cancellation: with e = e^{−|z|} ∈ (0, 1],
 * σ(|z|) = 1/(1+e) and σ(−|z|) = e/(1+e). One exponential for the pair.
 */
export function sigmoidPair(z: Num): { s: Num; c: Num } {
  const e = exp(neg(abs(z)));
  const hi = div(1, add(1, e));
  const lo = mul(e, hi);
  const pos = ge(z, 0);
  return { s: select(pos, hi, lo), c: select(pos, lo, hi) };
}

/**
 * ln(1 + a) without losing a's digits when |a| is small (Goldberg's correction: u − 1 is exact
 * for u = fl(1 + a), so log(u)·a/(u − 1) cancels the rounding of u). Finite a > −1 only.
 */
export function log1p(a: Num): Num {
  const u = add(1, a);
  return select(eq(u, 1), a, mul(log(u), div(a, sub(u, 1))));
}

/** max(a, 0), NaN → 0 (as `a > 0 ? a : 0`). */
function relu(a: Num): Num {
  return select(gt(a, 0), a, 0);
}

const GELU_K = Math.sqrt(2 / Math.PI);
const GELU_A = 0.044715;

/**
 * GPT-2's `gelu_new`, 0.5x(1 + tanh u) with u = √(2/π)(x + 0.044715x³), written x·σ(2u): the
 * same function, without the cancellation of 1 + tanh u for negative x.
 */
function gelu(x: Num): Num {
  return mul(x, sigmoidPair(twiceU(x, mul(x, x))).s);
}

/** 2u = x·(2k + 2k·a·x²) given x². */
function twiceU(x: Num, x2: Num): Num {
  return mul(x, add(2 * GELU_K, mul(2 * GELU_K * GELU_A, x2)));
}

/** d gelu_new / dx = σ + 2x·σ(1−σ)·u′ with σ = σ(2u), u′ = √(2/π)(1 + 3·0.044715x²). */
function geluGrad(x: Num): Num {
  const x2 = mul(x, x);
  const { s, c: comp } = sigmoidPair(twiceU(x, x2));
  const du = mul(GELU_K, add(1, mul(3 * GELU_A, x2)));
  const sc = mul(s, comp);
  const t = mul(mul(mul(2, x), sc), du);
  // Far in the tails σ(1−σ) underflows to 0 while x·u′ may overflow: the term is 0 there.
  const g = add(s, select(eq(sc, 0), 0, t));
  // At ±∞ the tanh formula is ∞·0, NaN (as PyTorch gives): kept, rather than the limit.
  return select(isinf(x), NaN, g);
}

/**
 * softplus(x) = ln(1 + eˣ) as PyTorch's `softplus` (β = 1, threshold 20: x itself above 20),
 * computed as max(x, 0) + ln(1 + e^{−|x|}) so neither side overflows.
 */
function softplus(x: Num): Num {
  return select(gt(x, 20), x, add(relu(x), log1p(exp(neg(abs(x))))));
}

/** 1 if the condition holds, else 0. */
const indicator = (cond: Bool): Num => select(cond, 1, 0);

/** The unary elementwise ops (each has its expression in {@link UNARY_EXPRS}). */
export const UNARY_OPS = [
  "neg",
  "exp",
  "log",
  "sqrt",
  "tanh",
  "relu",
  "gelu",
  "geluGrad",
  "abs",
  "sign",
  "step",
  "recip",
  "powScalar",
  "addScalar",
  "mulScalar",
  "softplus",
] as const;

/** One of {@link UNARY_OPS}. */
export type UnaryOp = (typeof UNARY_OPS)[number];

/** The binary elementwise ops (each has its expression in {@link BINARY_EXPRS}). */
export const BINARY_OPS = [
  "add",
  "sub",
  "mul",
  "div",
  "max",
  "min",
  "pow",
  "gt",
  "ge",
  "lt",
  "eq",
] as const;

/** One of {@link BINARY_OPS}. */
export type BinaryOp = (typeof BINARY_OPS)[number];

/**
 * Every unary op: `x` is the input, `param` the scalar operand.
 * - `powScalar`: x^param; `addScalar`: x + param; `mulScalar`: x·param;
 * - `gelu`: GPT-2's `gelu_new`; `geluGrad`: its derivative; `step`: 1 if x > 0 else 0;
 * - `softplus`: ln(1 + eˣ) (PyTorch's, threshold 20).
 */
export const UNARY_EXPRS: Readonly<Record<UnaryOp, Num>> = {
  neg: neg(X),
  exp: exp(X),
  log: log(X),
  sqrt: sqrt(X),
  tanh: tanh(X),
  relu: relu(X),
  gelu: gelu(X),
  geluGrad: geluGrad(X),
  abs: abs(X),
  // Math.sign: ±1, and x itself for ±0 and NaN.
  sign: select(gt(X, 0), 1, select(lt(X, 0), -1, X)),
  step: indicator(gt(X, 0)),
  recip: div(1, X),
  powScalar: pow(X, P),
  addScalar: add(X, P),
  mulScalar: mul(X, P),
  softplus: softplus(X),
};

const ADAMW_SCALARS = ["decay", "b1", "c1", "b2", "c2", "stepSize", "invBc2", "eps"];

/** Every binary op of `x` and `y`; comparisons give 1 or 0. */
export const BINARY_EXPRS: Readonly<Record<BinaryOp, Num>> = {
  add: add(X, Y),
  sub: sub(X, Y),
  mul: mul(X, Y),
  div: div(X, Y),
  // x >= y ? x : y and x <= y ? x : y: NaN on the right passes, on the left it gives y.
  max: select(ge(X, Y), X, Y),
  min: select(le(X, Y), X, Y),
  pow: pow(X, Y),
  gt: indicator(gt(X, Y)),
  ge: indicator(ge(X, Y)),
  lt: indicator(lt(X, Y)),
  eq: indicator(eq(X, Y)),
};

/**
 * An elementwise kernel over several buffers of one length: reads `inputs[k][i]` and the
 * `scalars`, writes each of `outputs` (an output may be an input: updated in place). Every
 * output is computed from the old input values.
 */
export interface MapKernel {
  /** Buffers read at every element. */
  readonly inputs: readonly string[];
  /** Scalars, the same for every element (f32 where the target computes in f32). */
  readonly scalars: readonly string[];
  /** What each written buffer receives, in order. */
  readonly outputs: Readonly<Record<string, Num>>;
  /** Integer scalars (read by {@link U32} nodes; `"index"`, the element's position, is implicit). */
  readonly u32Scalars?: readonly string[];
}

/**
 * One AdamW step (PyTorch semantics: decoupled decay first, then the Adam update with
 * bias-corrected moments), in place on the weight `w` and the moments `m`, `v`, given the
 * gradient `g`. The step's scalars are {@link adamwScalars}.
 */
export const ADAMW: MapKernel = (() => {
  const [w, g, m, v] = ["w", "g", "m", "v"].map(input);
  const [decay, b1, c1, b2, c2, stepSize, invBc2, eps] = ADAMW_SCALARS.map(input);
  const m1 = add(mul(b1, m), mul(c1, g));
  const v1 = add(mul(b2, v), mul(c2, mul(g, g)));
  const denom = add(sqrt(mul(v1, invBc2)), eps);
  return {
    inputs: ["w", "g", "m", "v"],
    scalars: ADAMW_SCALARS,
    outputs: { m: m1, v: v1, w: sub(mul(w, decay), mul(stepSize, div(m1, denom))) },
  };
})();

/** The hyperparameters of an AdamW step as the scalars of {@link ADAMW}, in order (float64). */
export function adamwScalars(p: AdamWParams): number[] {
  const bc1 = 1 - Math.pow(p.beta1, p.step), bc2 = 1 - Math.pow(p.beta2, p.step);
  return [
    1 - p.lr * p.weightDecay,
    p.beta1,
    1 - p.beta1,
    p.beta2,
    1 - p.beta2,
    p.lr / bc1,
    1 / bc2,
    p.eps,
  ];
}

/** The accumulator of a {@link Reduction}'s `combine` (the element is {@link X}). */
export const ACC: Num = { kind: "input", name: "acc" };

/**
 * A reduction over an axis (`Backend.reduce`): `combine` folds the element `x` into the
 * accumulator `acc`, starting from `identity`; a reduction over no elements is `empty`. Each
 * combine is associative and commutative (up to rounding for the sum), so a backend may fold in
 * any tree order (vector lanes, threads, workgroups) and join two partial accumulators with the
 * same expression (one as `acc`, the other as `x`).
 */
export interface Reduction {
  readonly combine: Num;
  readonly identity: number;
  readonly empty: number;
}

/**
 * Every reduce op. Max and min are NaN if any element is NaN (as PyTorch's); over no elements
 * they are NaN, the sum 0.
 */
export const REDUCTIONS: Readonly<Record<ReduceOp, Reduction>> = {
  sum: { combine: add(ACC, X), identity: 0, empty: 0 },
  max: {
    combine: select(isnan(X), X, select(gt(X, ACC), X, ACC)),
    identity: -Infinity,
    empty: NaN,
  },
  min: { combine: select(isnan(X), X, select(lt(X, ACC), X, ACC)), identity: Infinity, empty: NaN },
};

/**
 * Argmax's rule (`Backend.argmax`): the element `x` replaces the best so far, `best`, when this
 * holds, scanning from the first element (index 0 with an empty axis). Strictly greater, so ties
 * keep the first index and a NaN is never taken (unless it is the first element). A split axis
 * (lanes, invocations) gives the same index when every part starts from the axis's first element
 * and the parts' results are joined in index order with the same rule.
 */
export const ARGMAX_TAKES: Bool = gt(X, input("best"));

/** lowbias32 (Chris Wellons): a 32-bit integer hash with good avalanche. */
function hash32(v: U32): U32 {
  const x1 = xor(v, shr(v, 16));
  const x2 = umul(x1, u32(0x7feb352d));
  const x3 = xor(x2, shr(x2, 15));
  const x4 = umul(x3, u32(0x846ca68b));
  return xor(x4, shr(x4, 16));
}

/**
 * Dropout's random bits: a counter-based hash of the integer scalar `seed` and the element's
 * position `index`, h(h(index·φ xor seed) + seed) with h = lowbias32. Its top 24 bits over 2²⁴
 * are `hashUniform(seed, index)`, uniform in [0, 1).
 */
export const DROPOUT_BITS: U32 = (() => {
  const seed = u32input("seed");
  return hash32(uadd(hash32(xor(umul(u32input("index"), u32(0x9e3779b9)), seed)), seed));
})();

/**
 * Whether dropout keeps the element at `index`: `hashUniform(seed, index) ≥ p`, in the integer
 * form `(bits >>> 8) ≥ threshold` with the integer scalar `threshold` = {@link dropoutThreshold}(p).
 * Shared by the dropout mask and the fused attention kernels, so both draw the same mask.
 */
export const DROPOUT_KEEP: Bool = geu(shr(DROPOUT_BITS, 8), u32input("threshold"));

/**
 * The dropout mask: `keep` (1/(1−p)) where {@link DROPOUT_KEEP} holds, else 0. Integer
 * scalars `seed`, `threshold`; `index` is the element's position.
 */
export const DROPOUT_MASK: MapKernel = {
  inputs: [],
  scalars: ["keep"],
  u32Scalars: ["seed", "threshold"],
  outputs: { mask: select(DROPOUT_KEEP, input("keep"), 0) },
};

/**
 * The integer threshold of {@link DROPOUT_KEEP} for a drop probability p: ceil(p·2²⁴), computed
 * in f64 on the host, so that rounding p to f32 cannot flip an element.
 */
export function dropoutThreshold(p: number): number {
  return Math.min(Math.max(Math.ceil(p * 16777216), 0), 16777216);
}

/** Whether an expression calls a transcendental function (exp, log, tanh, pow): the backends'
 * threading thresholds treat such ops as heavy. */
export function isHeavy(e: Node): boolean {
  switch (e.kind) {
    case "const":
    case "input":
      return false;
    case "unary":
      return e.op === "exp" || e.op === "log" || e.op === "tanh" || isHeavy(e.a);
    case "binary":
      return e.op === "pow" || isHeavy(e.a) || isHeavy(e.b);
    case "select":
      return isHeavy(e.cond) || isHeavy(e.a) || isHeavy(e.b);
    case "cmp":
      return isHeavy(e.a) || isHeavy(e.b);
    case "isnan":
    case "isinf":
      return isHeavy(e.a);
    case "geu":
    case "u32const":
    case "u32input":
    case "u32binary":
    case "shr":
      return false;
  }
}

/** The operands of a node, in order. */
export function children(e: Node): Node[] {
  switch (e.kind) {
    case "const":
    case "input":
    case "u32const":
    case "u32input":
      return [];
    case "unary":
    case "isnan":
    case "isinf":
    case "shr":
      return [e.a];
    case "binary":
    case "cmp":
    case "geu":
    case "u32binary":
      return [e.a, e.b];
    case "select":
      return [e.cond, e.a, e.b];
  }
}

/** Whether a node has no operands (a constant or an input). */
export function isLeaf(n: Node): boolean {
  return n.kind === "const" || n.kind === "input" || n.kind === "u32const" || n.kind === "u32input";
}

/** A copy of `n` with its operands replaced by `kids` (in the order of {@link children}). */
export function withChildren(n: Node, kids: readonly Node[]): Node {
  const [a, b, c] = kids;
  switch (n.kind) {
    case "const":
    case "input":
    case "u32const":
    case "u32input":
      return n;
    case "unary":
    case "isnan":
    case "isinf":
    case "shr":
      return { ...n, a } as Node;
    case "binary":
    case "cmp":
    case "geu":
    case "u32binary":
      return { ...n, a, b } as Node;
    case "select":
      return { ...n, cond: a, a: b, b: c } as Node;
  }
}

/** The names of the inputs (numeric and integer) the roots read. */
export function inputNames(...roots: Node[]): Set<string> {
  const names = new Set<string>();
  for (const n of useCounts(...roots).keys()) {
    if (n.kind === "input" || n.kind === "u32input") names.add(n.name);
  }
  return names;
}

/** How many times each node is used within the roots (nodes used more than once are shared). */
export function useCounts(...roots: Node[]): Map<Node, number> {
  const uses = new Map<Node, number>();
  const visit = (n: Node) => {
    const k = uses.get(n) ?? 0;
    uses.set(n, k + 1);
    if (k === 0) { for (const ch of children(n)) visit(ch); }
  };
  for (const r of roots) visit(r);
  return uses;
}

/**
 * Source text of expression roots for a language target (the reference's JavaScript, WGSL):
 * `render(n, sub)` writes one node from its children's text (`sub(child)`); a node used more
 * than once is computed once, bound to a temporary `t_<k>` by the statement `bind(name, text)`
 * returns. Returns those statements in order and each root's text.
 */
export function renderSource(
  roots: Node[],
  render: (n: Node, sub: (child: Node) => string) => string,
  bind: (name: string, text: string) => string,
): { lines: string[]; exprs: string[] } {
  const uses = useCounts(...roots);
  const done = new Map<Node, string>();
  const lines: string[] = [];
  const go = (n: Node): string => {
    const hit = done.get(n);
    if (hit !== undefined) return hit;
    let s = render(n, go);
    if ((uses.get(n) ?? 0) > 1 && !isLeaf(n)) {
      const t = `t_${lines.length}`;
      lines.push(bind(t, s));
      s = t;
    }
    done.set(n, s);
    return s;
  };
  return { lines, exprs: roots.map(go) };
}
