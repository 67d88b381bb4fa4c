/**
 * Shared emitters of the row kernels (`gen_rows.ts`, `gen_row_expr.ts`): the f32x4 main loop
 * with its scalar tail over a contiguous row, f64 sums of f32 values, horizontal reductions.
 *
 * The emitters declare their locals at the point where they are called, so a kernel's locals (and
 * thus its code) depend only on the order of the calls.
 *
 * @module
 */

import {
  type Expr,
  f64,
  f64x2,
  type FunctionBuilder,
  i32,
  lane,
  load,
  type Local,
  op,
  shuffle32,
  store,
} from "./builder.ts";
import type { Gen } from "./gen.ts";

/** A new v128 local holding `e`. */
export function vl(f: FunctionBuilder, e: Expr): Local {
  const l = f.local("v128");
  f.set(l, e);
  return l;
}

/** acc0 += f64(v[0..1]); acc1 += f64(v[2..3]). */
export function accF64(f: FunctionBuilder, acc0: Local, acc1: Local, v: Expr): void {
  const t = vl(f, v);
  f.set(acc0, op("f64x2.add", acc0, op("f64x2.promote_low_f32x4", t)));
  f.set(acc1, op("f64x2.add", acc1, op("f64x2.promote_low_f32x4", shuffle32(t, t, [2, 3, 0, 1]))));
}

/** Sum of the lanes of two f64x2 accumulators, as an f64 expression. */
export function hsum64(acc0: Local, acc1: Local): Expr {
  const s = op("f64x2.add", acc0, acc1);
  return op("f64.add", lane("f64x2.extract_lane", s, 0), lane("f64x2.extract_lane", s, 1));
}

/** Max (or min) of the four lanes. */
export function hreduce32(v: Local, name: "f32.max" | "f32.min"): Expr {
  return op(
    name,
    op(name, lane("f32x4.extract_lane", v, 0), lane("f32x4.extract_lane", v, 1)),
    op(name, lane("f32x4.extract_lane", v, 2), lane("f32x4.extract_lane", v, 3)),
  );
}

/** Emits: for c in [0, n) step 4 (vector part) then [n4, n) one at a time (tail). */
export function rowLoop(
  f: FunctionBuilder,
  c: Local,
  n: Local,
  vec: () => void,
  tail: () => void,
): void {
  const n4 = f.local("i32");
  f.set(n4, op("i32.and", n, i32(~3)));
  f.forRange(c, i32(0), n4, 4, vec);
  f.forRange(c, n4, n, 1, tail);
}

/**
 * How one step of {@link rowLoopSteps} reads and writes f32 rows at column c: four lanes in the
 * main loop; in the tail, element c splatted to all lanes on load and lane 0 on store, so that
 * one f32x4 body serves both loops.
 */
export interface RowLoopStep {
  /** Whether this is the main (four-lane) loop. */
  vector: boolean;
  /** The step's values of the f32 row at `base`, as f32x4. */
  ld(base: Local): Expr;
  /** Stores the step's values of `v` (f32x4) into the f32 row at `base`. */
  st(base: Local, v: Expr): void;
}

/** {@link rowLoop} with one f32x4 body for the main loop and the tail (see {@link RowLoopStep}). */
export function rowLoopSteps(
  f: FunctionBuilder,
  g: Gen,
  c: Local,
  n: Local,
  body: (step: RowLoopStep) => void,
): void {
  rowLoop(
    f,
    c,
    n,
    () =>
      body({
        vector: true,
        ld: (base) => load("v128.load", g.at(base, c), 0, 0),
        st: (base, v) => f.do(store("v128.store", g.at(base, c), v, 0, 0)),
      }),
    () =>
      body({
        vector: false,
        ld: (base) => load("v128.load32_splat", g.at(base, c)),
        st: (base, v) => f.do(store("f32.store", g.at(base, c), lane("f32x4.extract_lane", v, 0))),
      }),
  );
}

/**
 * An f64 sum of f32 values: two f64x2 accumulators for the main loop of a row and a scalar one
 * for its tail.
 */
export class F64Sum {
  /** A sum kept in the given locals (v128, v128, f64). */
  constructor(readonly a0: Local, readonly a1: Local, readonly s: Local) {}

  /** A sum in three new locals, declared in the order a0, a1, s. */
  static local(f: FunctionBuilder): F64Sum {
    const a0 = f.local("v128");
    const a1 = f.local("v128");
    return new F64Sum(a0, a1, f.local("f64"));
  }

  /** Sets the sum to 0. */
  zero(f: FunctionBuilder): void {
    f.set(this.a0, f64x2(0));
    f.set(this.a1, f64x2(0));
    f.set(this.s, f64(0));
  }

  /** Adds the four lanes of the f32x4 `v` (main loop). */
  addV(f: FunctionBuilder, v: Expr): void {
    accF64(f, this.a0, this.a1, v);
  }

  /** Adds the f32 `x` (tail). */
  addS(f: FunctionBuilder, x: Expr): void {
    f.set(this.s, op("f64.add", this.s, op("f64.promote_f32", x)));
  }

  /** Adds a step's values of the f32x4 `v`: its four lanes in the main loop, lane 0 in the tail. */
  add(f: FunctionBuilder, step: RowLoopStep, v: Expr): void {
    if (step.vector) this.addV(f, v);
    else this.addS(f, lane("f32x4.extract_lane", v, 0));
  }

  /** The sum, as an f64 expression (tail part first). */
  total(): Expr {
    return op("f64.add", this.s, hsum64(this.a0, this.a1));
  }
}

/** Sets each pointer local to its base plus the offset of row r of a [rows, cols] f32 matrix. */
export function rowPointers(
  f: FunctionBuilder,
  g: Gen,
  r: Local,
  cols: Local,
  pointers: [Local, Expr][],
): void {
  const off = g.pmul(g.idx(r), g.idx(cols, 0));
  for (const [p, base] of pointers) f.set(p, g.padd(base, off));
}
