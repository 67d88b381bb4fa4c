/**
 * Compiles an elementwise expression (`../expr.ts`) to a TypeScript function for the reference
 * backend: float64 arithmetic and `Math` functions, one closure per node. Shared nodes are
 * recomputed (the reference favours obvious code; the values are the same).
 *
 * @module
 */
import type { Bool, CmpOp, MathBinary, MathUnary, Num } from "../expr.ts";

/** A compiled expression: the value for operands `x`, `y` and the scalar `p`. */
export type ScalarFn = (x: number, y: number, p: number) => number;

/** Options of {@link compileJs}. */
export interface CompileJsOptions {
  /** Round every node's value to f32 (f32 arithmetic) instead of computing in float64. */
  f32?: boolean;
}

const UNARY: Record<MathUnary, (a: number) => number> = {
  neg: (a) => -a,
  abs: Math.abs,
  sqrt: Math.sqrt,
  exp: Math.exp,
  log: Math.log,
  tanh: Math.tanh,
};
const BINARY: Record<MathBinary, (a: number, b: number) => number> = {
  add: (a, b) => a + b,
  sub: (a, b) => a - b,
  mul: (a, b) => a * b,
  div: (a, b) => a / b,
  pow: Math.pow,
};
const CMP: Record<CmpOp, (a: number, b: number) => boolean> = {
  gt: (a, b) => a > b,
  ge: (a, b) => a >= b,
  lt: (a, b) => a < b,
  le: (a, b) => a <= b,
  eq: (a, b) => a === b,
  ne: (a, b) => a !== b,
};

/** A compiled expression of named operands, read from `args` in the order they were given. */
export type ArgsFn = (args: ArrayLike<number>) => number;
type Wrap = (f: ArgsFn) => ArgsFn;

/** The evaluator of `e` (of `x`, `y`, `param`): float64 arithmetic, or f32 with `f32: true`. */
export function compileJs(e: Num, o: CompileJsOptions = {}): ScalarFn {
  const f = compileArgs(e, ["x", "y", "param"], o);
  const args = new Float64Array(3);
  return (x, y, p) => {
    args[0] = x;
    args[1] = y;
    args[2] = p;
    return f(args);
  };
}

/** The evaluator of `e` whose operands `names[k]` are read from `args[k]`. */
export function compileArgs(e: Num, names: readonly string[], o: CompileJsOptions = {}): ArgsFn {
  return compile(e, names, o.f32 ? (f) => (a) => Math.fround(f(a)) : (f) => f);
}

function compile(e: Num, names: readonly string[], w: Wrap): ArgsFn {
  const go = (n: Num) => compile(n, names, w);
  switch (e.kind) {
    case "const": {
      const v = e.value;
      return w(() => v);
    }
    case "input": {
      const k = names.indexOf(e.name);
      if (k < 0) throw new Error(`compileJs: the expression reads '${e.name}', not given`);
      return (a) => a[k];
    }
    case "unary": {
      const f = UNARY[e.op], a = go(e.a);
      return w((args) => f(a(args)));
    }
    case "binary": {
      const f = BINARY[e.op], a = go(e.a), b = go(e.b);
      return w((args) => f(a(args), b(args)));
    }
    case "select": {
      const cond = compileBool(e.cond, go), a = go(e.a), b = go(e.b);
      return (args) => (cond(args) ? a(args) : b(args));
    }
  }
}

function compileBool(e: Bool, go: (n: Num) => ArgsFn): (args: ArrayLike<number>) => boolean {
  const a = go(e.a);
  switch (e.kind) {
    case "isnan":
      return (args) => Number.isNaN(a(args));
    case "isinf":
      return (args) => Math.abs(a(args)) === Infinity;
    case "cmp": {
      const f = CMP[e.op], b = go(e.b);
      return (args) => f(a(args), b(args));
    }
  }
}
