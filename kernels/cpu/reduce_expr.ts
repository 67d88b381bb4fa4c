/**
 * Compiles the reductions of `../expr.ts` (`REDUCTIONS`: sum, max, min; argmax's rule
 * {@link ARGMAX_TAKES}) to JavaScript functions for the reference backend: one call reduces the
 * middle axis of an `[outer, size, inner]` array into `[outer, inner]`.
 *
 * Each output folds its elements in index order along the axis, from the reduction's `identity`,
 * in float64 (the reference computes in float64; the accumulator is a JavaScript number, or a
 * Float64Array slot), and stores the result in the output's precision; an empty axis gives the
 * reduction's `empty`. Argmax starts from the first element (index 0) and moves to a later one
 * where the rule holds; over an empty axis it is 0. With `inner` > 1 the loop walks the input
 * row by row with one accumulator per column, so it reads memory in order; each column still
 * folds in index order, so the results are those of a column-by-column loop.
 *
 * Like `expr.ts`, the whole loop is generated as source (the expression rendered by the same
 * {@link jsSource}), and built around closures where the host forbids generating code.
 *
 * @module
 */
import { ARGMAX_TAKES, type Bool, type Reduction, select } from "../expr.ts";
import { compileArgs, type CompileJsOptions, generateFunction, jsSource } from "./expr.ts";

/** The float arrays a reduction reads and writes. */
type Floats = Float32Array | Float64Array;

/**
 * A compiled reduction: reduces `x`, an `[outer, size, inner]` array, over its middle axis into
 * `out` (`[outer, inner]`, every element written).
 */
export type ReduceJs = (
  x: Floats,
  out: Floats,
  outer: number,
  size: number,
  inner: number,
) => void;

/**
 * A compiled argmax: writes to `out` (`[outer, inner]`) the index along the middle axis of
 * `x` (`[outer, size, inner]`) that the rule picks.
 */
export type ArgmaxJs = (
  x: Floats,
  out: Int32Array,
  outer: number,
  size: number,
  inner: number,
) => void;

/** The operand names of a reduction's `combine` (`ACC`, `X`) and of argmax's rule. */
const ACC_NAME = "acc", X_NAME = "x", BEST_NAME = "best";

/** A number as JavaScript source (NaN and ±Infinity are globals; −0 keeps its sign). */
const literal = (v: number) => (Object.is(v, -0) ? "(-0)" : `(${v})`);

/** The evaluator of a reduction (see the module doc). */
export function compileReduceJs(
  r: Reduction,
  o: Pick<CompileJsOptions, "closures"> = {},
): ReduceJs {
  return (o.closures ? null : generateReduce(r)) ?? closureReduce(r);
}

/** The evaluator of argmax with the rule `takes` (default {@link ARGMAX_TAKES}). */
export function compileArgmaxJs(
  takes: Bool = ARGMAX_TAKES,
  o: Pick<CompileJsOptions, "closures"> = {},
): ArgmaxJs {
  return (o.closures ? null : generateArgmax(takes)) ?? closureArgmax(takes);
}

/** The reduction as one generated function; null where the host forbids generating code. */
function generateReduce(r: Reduction): ReduceJs | null {
  // `acc` and `x` are locals of the loops below; the combine's temporaries live in its block.
  const names: Record<string, string> = { [ACC_NAME]: "acc", [X_NAME]: "x" };
  const { lines, exprs: [combine] } = jsSource([r.combine], (n) => {
    if (!(n in names)) throw new Error(`reduce: the combine reads '${n}', not acc or x`);
    return names[n];
  });
  const fold = ["{", ...lines, `acc = ${combine};`, "}"];
  const src = [
    `if (size === 0) { out.fill(${literal(r.empty)}, 0, outer * inner); return; }`,
    "if (inner === 1) {",
    "  for (let o = 0, b = 0; o < outer; o++, b += size) {",
    `    let acc = ${literal(r.identity)};`,
    "    for (let k = b, e = b + size; k < e; k++) {",
    "      const x = d[k];",
    ...fold,
    "    }",
    "    out[o] = acc;",
    "  }",
    "  return;",
    "}",
    "const A = new Float64Array(inner);",
    "for (let o = 0; o < outer; o++) {",
    `  A.fill(${literal(r.identity)});`,
    "  for (let k = 0, row = o * size * inner; k < size; k++, row += inner) {",
    "    for (let j = 0; j < inner; j++) {",
    "      const x = d[row + j];",
    "      let acc = A[j];",
    ...fold,
    "      A[j] = acc;",
    "    }",
    "  }",
    "  out.set(A, o * inner);",
    "}",
  ];
  return generateFunction(["d", "out", "outer", "size", "inner"], src.join("\n")) as
    | ReduceJs
    | null;
}

/** The reduction around a closure of its combine (hosts without code generation). */
function closureReduce(r: Reduction): ReduceJs {
  const f = compileArgs(r.combine, [ACC_NAME, X_NAME], { closures: true });
  const args = new Float64Array(2);
  return (d, out, outer, size, inner) => {
    if (size === 0) {
      out.fill(r.empty, 0, outer * inner);
      return;
    }
    const A = new Float64Array(inner);
    for (let o = 0; o < outer; o++) {
      A.fill(r.identity);
      for (let k = 0, row = o * size * inner; k < size; k++, row += inner) {
        for (let j = 0; j < inner; j++) {
          args[0] = A[j];
          args[1] = d[row + j];
          A[j] = f(args);
        }
      }
      out.set(A, o * inner);
    }
  };
}

/** Argmax as one generated function; null where the host forbids generating code. */
function generateArgmax(takes: Bool): ArgmaxJs | null {
  const names: Record<string, string> = { [BEST_NAME]: "best", [X_NAME]: "x" };
  const { lines, exprs: [cond] } = jsSource([takes], (n) => {
    if (!(n in names)) throw new Error(`argmax: the rule reads '${n}', not best or x`);
    return names[n];
  });
  const src = [
    "if (size === 0) { out.fill(0, 0, outer * inner); return; }",
    "if (inner === 1) {",
    "  for (let o = 0, b = 0; o < outer; o++, b += size) {",
    "    let best = d[b], at = 0;",
    "    for (let k = 1; k < size; k++) {",
    "      const x = d[b + k];",
    "      {",
    ...lines,
    `      if (${cond}) { best = x; at = k; }`,
    "      }",
    "    }",
    "    out[o] = at;",
    "  }",
    "  return;",
    "}",
    "const B = new Float64Array(inner);",
    "for (let o = 0; o < outer; o++) {",
    "  const b = o * size * inner, ob = o * inner;",
    "  for (let j = 0; j < inner; j++) { B[j] = d[b + j]; out[ob + j] = 0; }",
    "  for (let k = 1, row = b + inner; k < size; k++, row += inner) {",
    "    for (let j = 0; j < inner; j++) {",
    "      const x = d[row + j], best = B[j];",
    "      {",
    ...lines,
    `      if (${cond}) { B[j] = x; out[ob + j] = k; }`,
    "      }",
    "    }",
    "  }",
    "}",
  ];
  return generateFunction(["d", "out", "outer", "size", "inner"], src.join("\n")) as
    | ArgmaxJs
    | null;
}

/** Argmax around a closure of its rule (hosts without code generation). */
function closureArgmax(takes: Bool): ArgmaxJs {
  const f = compileArgs(select(takes, 1, 0), [BEST_NAME, X_NAME], { closures: true });
  const args = new Float64Array(2);
  return (d, out, outer, size, inner) => {
    if (size === 0) {
      out.fill(0, 0, outer * inner);
      return;
    }
    const B = new Float64Array(inner);
    for (let o = 0; o < outer; o++) {
      const b = o * size * inner, ob = o * inner;
      for (let j = 0; j < inner; j++) {
        B[j] = d[b + j];
        out[ob + j] = 0;
      }
      for (let k = 1, row = b + inner; k < size; k++, row += inner) {
        for (let j = 0; j < inner; j++) {
          args[0] = B[j];
          args[1] = d[row + j];
          if (f(args) !== 0) {
            B[j] = args[1];
            out[ob + j] = k;
          }
        }
      }
    }
  };
}
