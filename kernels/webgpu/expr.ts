/**
 * Compiles expressions (`../expr.ts`) to WGSL, with a `let` for every node used more than once:
 * {@link wgslRoots} renders several roots under a naming of their inputs (the elementwise ops,
 * the AdamW step, the dropout mask and keep test, the reductions of `reduce.ts` and the row
 * kernels of `row_expr.ts` all go through it). The math it calls beyond WGSL's builtins (`tanh_`, `pow_`, the NaN and infinity
 * tests) is {@link EXPR_WGSL_PRELUDE}.
 *
 * @module
 */
import type { Bool, MapKernel, Node, Num } from "../expr.ts";
import { renderSource } from "../expr.ts";

/** Helpers the compiled functions call. */
export const EXPR_WGSL_PRELUDE = `
// NaN and ±∞ by the bits: WGSL lets compilers assume floats are finite, so x != x may fold away.
fn isnan_(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u; }
fn isinf_(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) == 0x7f800000u; }
// Built at run time: WGSL forbids non-finite values in constant expressions.
fn inf_() -> f32 { var b = 0x7f800000u; return bitcast<f32>(b); }
fn nan_() -> f32 { var b = 0x7fc00000u; return bitcast<f32>(b); }
// tanh saturates to ±1 in f32 beyond |x| = 9.1; clamping keeps exp-based implementations finite
// (and would turn NaN into a number: NaN passes through).
fn tanh_(x: f32) -> f32 {
  if (isnan_(x)) { return x; }
  return tanh(clamp(x, -15.0, 15.0));
}
// Math.pow semantics where WGSL's pow (exp2(y·log2 x)) differs: y = 0, negative bases with
// integer exponents, and exact small powers.
fn pow_(x: f32, y: f32) -> f32 {
  if (y == 0.0) { return 1.0; }
  if (isnan_(x) || isnan_(y)) { return x + y; }
  let odd = floor(y) == y && abs(y) < 16777216.0 && (i32(y) & 1) != 0;
  if (bitcast<u32>(x) == 0xff800000u) {
    // x = −∞: ±∞ for y > 0, ±0 for y < 0, negative for odd integers (−x is +∞).
    if (y > 0.0) { return select(-x, x, odd); }
    return select(0.0, -0.0, odd);
  }
  if (x == 0.0) {
    // ±0: ±0 for y > 0, ±∞ for y < 0, the sign kept for odd integers (as Math.pow).
    let r = select(inf_(), 0.0, y > 0.0);
    return select(r, select(r, -r, bitcast<u32>(x) != 0u), odd);
  }
  if (y == 1.0) { return x; }
  if (y == 2.0) { return x * x; }
  if (y == 3.0) { return x * x * x; }
  if (y == 0.5) { return sqrt(x); }
  if (y == -1.0) { return 1.0 / x; }
  if (x < 0.0 && floor(y) == y) {
    let r = exp2(y * log2(-x));
    if (odd) { return -r; }
    return r;
  }
  return pow(x, y);
}
`;

const UNARY_FN = { abs: "abs", sqrt: "sqrt", exp: "exp", log: "log", tanh: "tanh_" } as const;
const BINARY_OP = { add: "+", sub: "-", mul: "*", div: "/" } as const;
const U32_OP = { add: "+", mul: "*", xor: "^" } as const;
const CMP_OP = { gt: ">", ge: ">=", lt: "<", le: "<=", eq: "==" } as const;

/** A WGSL literal (an f32 once it meets f32 operands), or a run-time NaN/∞. */
function literal(v: number): string {
  if (Number.isNaN(v)) return "nan_()";
  if (v === Infinity) return "inf_()";
  if (v === -Infinity) return "(-inf_())";
  if (Object.is(v, -0)) return "-0.0";
  const s = String(v);
  return /[.e]/.test(s) ? s : `${s}.0`;
}

/** `fn name(x: f32, y: f32, p: f32) -> f32` computing `e`. */
export function compileWgsl(name: string, e: Num): string {
  const f32 = (input: string, param: string) => ({ input, param, type: "f32" });
  return wgslFunction(name, e, [f32("x", "x"), f32("y", "y"), f32("param", "p")], "f32");
}

/** A parameter of {@link wgslFunction}: the expression input it carries, its name and type. */
export interface WgslParam {
  /** The expression input it carries. */
  readonly input: string;
  /** Its WGSL name. */
  readonly param: string;
  /** Its WGSL type (`f32`, `u32`). */
  readonly type: string;
}

/**
 * `fn name(<param>: <type>, …) -> ret` computing `e`, each input it reads passed as a parameter
 * (an input not among them is an error naming the function).
 */
export function wgslFunction(
  name: string,
  e: Node,
  params: readonly WgslParam[],
  ret: string,
): string {
  const input = (n: string) => {
    const p = params.find((q) => q.input === n);
    if (p === undefined) {
      throw new Error(`webgpu: ${name} reads '${n}', not one of ${params.map((q) => q.input)}`);
    }
    return p.param;
  };
  const { lines, exprs } = wgslRoots([e], { input });
  const args = params.map((p) => `${p.param}: ${p.type}`).join(", ");
  return [`fn ${name}(${args}) -> ${ret} {`, ...lines, `  return ${exprs[0]};`, "}"].join("\n");
}

/**
 * Statements computing the outputs of a {@link MapKernel} from WGSL values named as its
 * inputs and scalars: `let` lines, then `out_<name>` for each output, all computed before any
 * is stored.
 */
export function compileWgslMap(k: MapKernel): string[] {
  const outs = Object.keys(k.outputs);
  const { lines, exprs } = wgslRoots(outs.map((o) => k.outputs[o]), { input: (n) => n });
  return [...lines, ...outs.map((o, j) => `  let out_${o} = ${exprs[j]};`)];
}

/**
 * `fn name(<args>: u32, …) -> bool` computing a condition of integer inputs (dropout's keep
 * test), the arguments being the inputs it reads, named and ordered by `args`.
 */
export function compileWgslCondition(name: string, cond: Bool, args: readonly string[]): string {
  const params = args.map((a) => ({ input: a, param: `a_${a}`, type: "u32" }));
  return wgslFunction(name, cond, params, "bool");
}

/** How {@link wgslRoots} names what the expressions read. */
export interface WgslNames {
  /** The WGSL value of an input (f32 for a number input, u32 for an integer one). */
  input: (name: string) => string;
  /** Nodes already computed, each as the WGSL value of that name (its operands unread). */
  bound?: ReadonlyMap<Node, string>;
}

/**
 * WGSL of several expression roots (numbers, conditions or integers): `let` statements for the
 * nodes they share (named `t_<k>`, so two renderings must not share one scope), then each
 * root's expression.
 */
export function wgslRoots(roots: Node[], names: WgslNames): { lines: string[]; exprs: string[] } {
  const nameOf = names.input, bound = names.bound;
  const build = (n: Node, go: (child: Node) => string): string => {
    const named = bound?.get(n);
    if (named !== undefined) return named;
    switch (n.kind) {
      case "const":
        return literal(n.value);
      case "input":
        return nameOf(n.name);
      case "unary":
        return n.op === "neg" ? `(-(${go(n.a)}))` : `${UNARY_FN[n.op]}(${go(n.a)})`;
      case "binary":
        if (n.op === "pow") return `pow_(${go(n.a)}, ${go(n.b)})`;
        return `(${go(n.a)} ${BINARY_OP[n.op]} ${go(n.b)})`;
      case "select": {
        const a = go(n.a), b = go(n.b), cond = go(n.cond);
        return `select(${b}, ${a}, ${cond})`;
      }
      case "cmp":
        // Not `!=`: drivers may compile it as an ordered comparison, false for NaN.
        if (n.op === "ne") return `(!(${go(n.a)} == ${go(n.b)}))`;
        return `(${go(n.a)} ${CMP_OP[n.op]} ${go(n.b)})`;
      case "isnan":
        return `isnan_(${go(n.a)})`;
      case "isinf":
        return `isinf_(${go(n.a)})`;
      // Integer nodes: WGSL u32 arithmetic wraps like Math.imul and `>>> 0`.
      case "geu":
        return `(${go(n.a)} >= ${go(n.b)})`;
      case "u32const":
        return `${n.value >>> 0}u`;
      case "u32input":
        return nameOf(n.name);
      case "u32binary":
        return `(${go(n.a)} ${U32_OP[n.op]} ${go(n.b)})`;
      case "shr":
        return `(${go(n.a)} >> ${n.bits}u)`;
    }
  };
  return renderSource(roots, build, (t, v) => `  let ${t} = ${v};`);
}
