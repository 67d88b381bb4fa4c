/**
 * Compiles an elementwise expression (`../expr.ts`) to a TypeScript function for the reference
 * backend: float64 arithmetic and `Math` functions, one closure per node. Shared nodes are
 * recomputed (the reference favours obvious code; the values are the same).
 *
 * @module
 */
import type { Bool, Num } from "../expr.ts";

/** A compiled expression: the value for operands `x`, `y` and the scalar `p`. */
export type ScalarFn = (x: number, y: number, p: number) => number;

/** Options of {@link compileJs}. */
export interface CompileJsOptions {
  /** Round every node's value to f32 (f32 arithmetic) instead of computing in float64. */
  f32?: boolean;
}

/** The evaluator of `e`: float64 arithmetic, or f32 with `f32: true`. */
export function compileJs(e: Num, o: CompileJsOptions = {}): ScalarFn {
  if (!o.f32) return compile(e, (f) => f);
  return compile(e, (f) => (x, y, p) => Math.fround(f(x, y, p)));
}

type Wrap = (f: ScalarFn) => ScalarFn;

function compile(e: Num, w: Wrap): ScalarFn {
  const f = compileNode(e, w);
  return e.kind === "input" ? f : w(f);
}

function compileNode(e: Num, w: Wrap): ScalarFn {
  switch (e.kind) {
    case "const": {
      const v = e.value;
      return () => v;
    }
    case "input":
      return e.name === "x" ? (x) => x : e.name === "y" ? (_x, y) => y : (_x, _y, p) => p;
    case "unary": {
      const a = compile(e.a, w);
      switch (e.op) {
        case "neg":
          return (x, y, p) => -a(x, y, p);
        case "abs":
          return (x, y, p) => Math.abs(a(x, y, p));
        case "sqrt":
          return (x, y, p) => Math.sqrt(a(x, y, p));
        case "exp":
          return (x, y, p) => Math.exp(a(x, y, p));
        case "log":
          return (x, y, p) => Math.log(a(x, y, p));
        case "tanh":
          return (x, y, p) => Math.tanh(a(x, y, p));
      }
      break;
    }
    case "binary": {
      const a = compile(e.a, w), b = compile(e.b, w);
      switch (e.op) {
        case "add":
          return (x, y, p) => a(x, y, p) + b(x, y, p);
        case "sub":
          return (x, y, p) => a(x, y, p) - b(x, y, p);
        case "mul":
          return (x, y, p) => a(x, y, p) * b(x, y, p);
        case "div":
          return (x, y, p) => a(x, y, p) / b(x, y, p);
        case "pow":
          return (x, y, p) => Math.pow(a(x, y, p), b(x, y, p));
      }
      break;
    }
    case "select": {
      const cond = compileBool(e.cond, w), a = compile(e.a, w), b = compile(e.b, w);
      return (x, y, p) => (cond(x, y, p) ? a(x, y, p) : b(x, y, p));
    }
  }
  throw new Error(`compileJs: unknown node ${JSON.stringify(e)}`);
}

function compileBool(e: Bool, w: Wrap): (x: number, y: number, p: number) => boolean {
  const a = compile(e.a, w);
  switch (e.kind) {
    case "isnan":
      return (x, y, p) => Number.isNaN(a(x, y, p));
    case "isinf":
      return (x, y, p) => Math.abs(a(x, y, p)) === Infinity;
    case "cmp": {
      const b = compile(e.b, w);
      switch (e.op) {
        case "gt":
          return (x, y, p) => a(x, y, p) > b(x, y, p);
        case "ge":
          return (x, y, p) => a(x, y, p) >= b(x, y, p);
        case "lt":
          return (x, y, p) => a(x, y, p) < b(x, y, p);
        case "le":
          return (x, y, p) => a(x, y, p) <= b(x, y, p);
        case "eq":
          return (x, y, p) => a(x, y, p) === b(x, y, p);
        case "ne":
          return (x, y, p) => a(x, y, p) !== b(x, y, p);
      }
    }
  }
  throw new Error(`compileJs: unknown condition ${JSON.stringify(e)}`);
}
