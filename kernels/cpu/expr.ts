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

type Wrap = (f: ScalarFn) => ScalarFn;

/** The evaluator of `e`: float64 arithmetic, or f32 with `f32: true`. */
export function compileJs(e: Num, o: CompileJsOptions = {}): ScalarFn {
  return compile(e, o.f32 ? (f) => (x, y, p) => Math.fround(f(x, y, p)) : (f) => f);
}

function compile(e: Num, w: Wrap): ScalarFn {
  switch (e.kind) {
    case "const": {
      const v = e.value;
      return w(() => v);
    }
    case "input":
      return e.name === "x" ? (x) => x : e.name === "y" ? (_x, y) => y : (_x, _y, p) => p;
    case "unary": {
      const f = UNARY[e.op], a = compile(e.a, w);
      return w((x, y, p) => f(a(x, y, p)));
    }
    case "binary": {
      const f = BINARY[e.op], a = compile(e.a, w), b = compile(e.b, w);
      return w((x, y, p) => f(a(x, y, p), b(x, y, p)));
    }
    case "select": {
      const cond = compileBool(e.cond, w), a = compile(e.a, w), b = compile(e.b, w);
      return (x, y, p) => (cond(x, y, p) ? a(x, y, p) : b(x, y, p));
    }
  }
}

function compileBool(e: Bool, w: Wrap): (x: number, y: number, p: number) => boolean {
  const a = compile(e.a, w);
  switch (e.kind) {
    case "isnan":
      return (x, y, p) => Number.isNaN(a(x, y, p));
    case "isinf":
      return (x, y, p) => Math.abs(a(x, y, p)) === Infinity;
    case "cmp": {
      const f = CMP[e.op], b = compile(e.b, w);
      return (x, y, p) => f(a(x, y, p), b(x, y, p));
    }
  }
}
