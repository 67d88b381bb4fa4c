/**
 * Compiles an elementwise expression (`../expr.ts`) to a JavaScript function for the reference
 * backend: float64 arithmetic and `Math` functions. The function is generated as source (one
 * `const` per shared node, as fast as a hand-written loop body); where the host forbids
 * generating code (a page whose Content-Security-Policy has no 'unsafe-eval'), it is built of
 * one closure per node instead (same values, slower). The row kernels' compiler (`row_expr.ts`)
 * renders its expressions with the same {@link jsSource}; integer expressions (dropout's hash)
 * compile with {@link compileU32Args}.
 *
 * @module
 */
import {
  type Bool,
  type CmpOp,
  type MapKernel,
  type MathBinary,
  type MathUnary,
  type Node,
  type Num,
  renderSource,
  type U32,
} from "../expr.ts";

/** A compiled expression: the value for operands `x`, `y` and the scalar `p`. */
export type ScalarFn = (x: number, y: number, p: number) => number;

/** Options of {@link compileJs}. */
export interface CompileJsOptions {
  /** Round every node's value to f32 (f32 arithmetic) instead of computing in float64. */
  f32?: boolean;
  /** Build closures even where generating code is allowed (tests of the fallback). */
  closures?: boolean;
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
  const xyp: Record<string, string> = { x: "x", y: "y", param: "p" };
  const g = o.closures ? null : generate([e], (n) => xyp[n], ["x", "y", "p"], !!o.f32);
  if (g) return g as unknown as ScalarFn;
  const f = compileArgs(e, ["x", "y", "param"], { ...o, closures: true });
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
  const g = o.closures ? null : generate([e], (n) => arg(names, n), ["a"], !!o.f32);
  if (g) return g as unknown as ArgsFn;
  return compile(e, names, o.f32 ? (f) => (a) => Math.fround(f(a)) : (f) => f);
}

/**
 * The operands of a {@link MapKernel}'s evaluator in the order {@link compileMapJs} reads them:
 * its inputs, scalars, integer scalars, then `index` (the element's position).
 */
export function mapArgNames(k: MapKernel): string[] {
  return [...k.inputs, ...k.scalars, ...(k.u32Scalars ?? []), "index"];
}

/**
 * The evaluator of a {@link MapKernel}: `(args, out)` reads its operands from `args` in the
 * order of {@link mapArgNames} and writes its outputs to `out`, in the order of `k.outputs`.
 */
export function compileMapJs(
  k: MapKernel,
  o: CompileJsOptions = {},
): (args: ArrayLike<number>, out: Float64Array) => void {
  const names = mapArgNames(k), roots = Object.values(k.outputs);
  const g = o.closures ? null : generate(roots, (n) => arg(names, n), ["a", "out"], !!o.f32);
  if (g) return g as unknown as (args: ArrayLike<number>, out: Float64Array) => void;
  const fs = roots.map((e) => compileArgs(e, names, { ...o, closures: true }));
  return (args, out) => fs.forEach((f, j) => (out[j] = f(args)));
}

/**
 * The evaluator of an integer expression whose operands `names[k]` are read from `args[k]`:
 * its u32 value as a non-negative number.
 */
export function compileU32Args(e: U32, names: readonly string[], o: CompileJsOptions = {}): ArgsFn {
  const g = o.closures ? null : generate([e], (n) => arg(names, n), ["a"], false);
  if (g) return g as unknown as ArgsFn;
  return compileU32(e, (n) => compile(n, names, (f) => f));
}

function arg(names: readonly string[], n: string): string {
  const k = names.indexOf(n);
  if (k < 0) throw new Error(`compileJs: the expression reads '${n}', not given`);
  return `a[${k}]`;
}

/** Any generated function (cast to its signature by the caller). */
export type AnyFn = (...args: never[]) => unknown;

const JS_UNARY: Record<MathUnary, string> = {
  neg: "-",
  abs: "Math.abs",
  sqrt: "Math.sqrt",
  exp: "Math.exp",
  log: "Math.log",
  tanh: "Math.tanh",
};
const JS_BINARY = { add: "+", sub: "-", mul: "*", div: "/" } as const;
const JS_CMP: Record<CmpOp, string> = {
  gt: ">",
  ge: ">=",
  lt: "<",
  le: "<=",
  eq: "===",
  ne: "!==",
};

/**
 * JavaScript source of expression roots (float64 arithmetic, or f32 with `f32`): the `const`
 * statements binding shared nodes (`t_<k>`, so each call's statements belong in a block of their
 * own) and each root's text; `input(name)` gives an operand's text.
 */
export function jsSource(
  roots: Node[],
  input: (name: string) => string,
  f32 = false,
): { lines: string[]; exprs: string[] } {
  const num = (s: string) => (f32 ? `Math.fround(${s})` : s);
  const literal = (v: number) => {
    const r = f32 ? Math.fround(v) : v;
    return Object.is(r, -0) ? "(-0)" : `(${r})`; // NaN, Infinity, -Infinity are globals
  };
  const build = (n: Node, go: (child: Node) => string): string => {
    switch (n.kind) {
      case "const":
        return literal(n.value);
      case "input":
        return input(n.name);
      case "unary":
        return num(n.op === "neg" ? `(-${go(n.a)})` : `${JS_UNARY[n.op]}(${go(n.a)})`);
      case "binary":
        if (n.op === "pow") return num(`Math.pow(${go(n.a)}, ${go(n.b)})`);
        return num(`(${go(n.a)} ${JS_BINARY[n.op]} ${go(n.b)})`);
      case "select":
        return `(${go(n.cond)} ? ${go(n.a)} : ${go(n.b)})`;
      case "cmp":
        return `(${go(n.a)} ${JS_CMP[n.op]} ${go(n.b)})`;
      case "isnan":
        return `Number.isNaN(${go(n.a)})`;
      case "isinf":
        return `(Math.abs(${go(n.a)}) === Infinity)`;
      case "geu":
        return `(${go(n.a)} >= ${go(n.b)})`;
      case "u32const":
        return `(${n.value >>> 0})`;
      case "u32input":
        return `(${input(n.name)} >>> 0)`;
      case "u32binary":
        if (n.op === "mul") return `(Math.imul(${go(n.a)}, ${go(n.b)}) >>> 0)`;
        return `((${go(n.a)} ${n.op === "add" ? "+" : "^"} ${go(n.b)}) >>> 0)`;
      case "shr":
        return `(${go(n.a)} >>> ${n.bits})`;
    }
  };
  return renderSource(roots, build, (t, v) => `const ${t} = ${v};`);
}

/**
 * A function of `params` with body `body`, or null where the host forbids generating code
 * (a Content-Security-Policy without 'unsafe-eval' makes `new Function` throw an EvalError).
 */
export function generateFunction(params: readonly string[], body: string): AnyFn | null {
  try {
    return new Function(...params, body) as AnyFn;
  } catch (e) {
    if (e instanceof EvalError) return null;
    throw e;
  }
}

/**
 * A function of `params` computing the roots (returned, or for several roots written to
 * `out[j]`), generated as source; null where the host forbids generating code.
 */
function generate(
  roots: Node[],
  input: (n: string) => string,
  params: string[],
  f32: boolean,
): AnyFn | null {
  const { lines, exprs: values } = jsSource(roots, input, f32);
  const ret = roots.length === 1 && !params.includes("out")
    ? [`return ${values[0]};`]
    : values.map((v, j) => `out[${j}] = ${v};`);
  return generateFunction(params, [...lines, ...ret].join("\n"));
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
  if (e.kind === "geu") {
    const a = compileU32(e.a, go), b = compileU32(e.b, go);
    return (args) => a(args) >= b(args);
  }
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

/** Closures of an integer expression: u32 values as non-negative numbers. */
function compileU32(e: U32, go: (n: Num) => ArgsFn): ArgsFn {
  switch (e.kind) {
    case "u32const": {
      const v = e.value >>> 0;
      return () => v;
    }
    case "u32input": {
      const a = go({ kind: "input", name: e.name });
      return (args) => a(args) >>> 0;
    }
    case "u32binary": {
      const a = compileU32(e.a, go), b = compileU32(e.b, go);
      if (e.op === "mul") return (args) => Math.imul(a(args), b(args)) >>> 0;
      if (e.op === "add") return (args) => (a(args) + b(args)) >>> 0;
      return (args) => (a(args) ^ b(args)) >>> 0;
    }
    case "shr": {
      const a = compileU32(e.a, go), k = e.bits;
      return (args) => a(args) >>> k;
    }
  }
}
