/**
 * Generators of the reductions and argmax over [outer, size, inner], compiled from their
 * descriptions (`REDUCTIONS` and `ARGMAX_TAKES` of `../expr.ts`) by the f32x4 expression
 * compiler (`gen_expr.ts`). (Softmax, layer norm and cross-entropy are row kernels compiled by
 * `gen_row_expr.ts`.)
 *
 * One function per op and layout: `reduce_rows_<op>` (inner = 1: each row folded in four vector
 * lanes, the lanes joined with the same combine) and `reduce_cols_<op>` (inner > 1: four columns
 * at a time, one per lane, walking down the rows), `argmax_rows` and `argmax_cols` likewise. Each
 * takes its rows [0, outer) from pointers the backend offsets, so that threads split rows.
 *
 * @module
 */

import {
  type Expr,
  f32x4,
  type FunctionBuilder,
  i32,
  i32x4,
  lane,
  load,
  type Local,
  type ModuleBuilder,
  op,
  shuffle32,
  store,
} from "./builder.ts";
import type { Gen } from "./gen.ts";
import { emitCond, emitExpr } from "./gen_expr.ts";
import type { MathOptions } from "./gen_math.ts";
import { F64Sum, rowLoop, vl } from "./gen_row_loops.ts";
import type { ReduceOp } from "../backend.ts";
import { ARGMAX_TAKES, type Num, type Reduction, REDUCTIONS } from "../expr.ts";

/** The kernel module's function reducing with `op` over the middle axis, for a given `inner`. */
export function reduceFunction(op: ReduceOp, inner: number): string {
  return `${inner === 1 ? "reduce_rows" : "reduce_cols"}_${op}`;
}

/** The kernel module's argmax function for a given `inner`. */
export function argmaxFunction(inner: number): string {
  return inner === 1 ? "argmax_rows" : "argmax_cols";
}

/** Every function {@link addReduceKernels} adds. */
export function reduceKernelNames(): string[] {
  return [
    ...Object.keys(REDUCTIONS).flatMap((o) => [1, 2].map((i) => reduceFunction(o as ReduceOp, i))),
    argmaxFunction(1),
    argmaxFunction(2),
  ];
}

/**
 * An accumulator folding f32 values with a reduction: four lanes at a time, or one value (lane 0;
 * the other lanes stay as they are).
 */
interface Fold {
  /** Sets the accumulator to the identity. */
  start(): void;
  /** Folds the four lanes of an f32x4 into the accumulator's four lanes. */
  vec(v: Expr): void;
  /** Folds one f32 into lane 0. */
  one(x: Expr): void;
  /** The four lanes' results, as f32x4. */
  lanes(): Expr;
  /** The lanes joined, as an f32. */
  total(): Expr;
}

/** Whether a combine is the sum `add(ACC, X)` (either order). */
function isSum(e: Num): boolean {
  const is = (n: Num, name: string) => n.kind === "input" && n.name === name;
  return e.kind === "binary" && e.op === "add" &&
    ((is(e.a, "acc") && is(e.b, "x")) || (is(e.a, "x") && is(e.b, "acc")));
}

/** A fold computing `r` in f32x4 lanes: its combine compiled by `emitExpr`. */
function exprFold(f: FunctionBuilder, r: Reduction, o: MathOptions): Fold {
  const acc = f.local("v128");
  const ident = () => f32x4(r.identity);
  const combine = (x: Expr) => f.set(acc, emitExpr(f, r.combine, { acc, x: vl(f, x) }, o));
  return {
    start: () => f.set(acc, ident()),
    vec: combine,
    // The identity in the other lanes leaves them as they are.
    one: (x) => combine(lane("f32x4.replace_lane", ident(), 0, x)),
    lanes: () => acc,
    total: () => {
      // Lanes 0 and 2, 1 and 3, then 0 and 1, each pair joined with the combine.
      combine(shuffle32(acc, acc, [2, 3, 0, 1]));
      combine(shuffle32(acc, acc, [1, 0, 3, 2]));
      return lane("f32x4.extract_lane", acc, 0);
    },
  };
}

/**
 * A fold for a combine that is the sum: in f64 (two f64x2 accumulators for the lanes, a scalar
 * one for single values), so that results stay within an f32 rounding or two of the
 * f64-accumulating reference for any length. A precision choice: the arithmetic is still the
 * combine's addition, from its identity 0.
 */
function f64SumFold(f: FunctionBuilder): Fold {
  const sum = F64Sum.local(f);
  return {
    start: () => sum.zero(f),
    vec: (v) => sum.addV(f, v),
    one: (x) => sum.addS(f, x),
    lanes: () =>
      shuffle32(
        op("f32x4.demote_f64x2_zero", sum.a0),
        op("f32x4.demote_f64x2_zero", sum.a1),
        [0, 1, 4, 5],
      ),
    total: () => op("f32.demote_f64", sum.total()),
  };
}

/** The fold of reduction `r`. */
function foldOf(f: FunctionBuilder, r: Reduction, o: MathOptions): Fold {
  return isSum(r.combine) ? f64SumFold(f) : exprFold(f, r, o);
}

/** Adds the reductions and argmax to the module (names: {@link reduceKernelNames}). */
export function addReduceKernels(mod: ModuleBuilder, g: Gen): void {
  const P = g.ptrParam;
  const I = "i32";
  const mo: MathOptions = { fma: g.opts.relaxed };

  for (const [name, r] of Object.entries(REDUCTIONS)) {
    const rop = name as ReduceOp;
    // ---- inner = 1: out[o] = fold of the row x[o, :] ----
    mod.addFunction(reduceFunction(rop, 1), [P, P, I, I], [], (f, xP, outP, outer, size) => {
      const x = g.ptrLocal(f, xP);
      const out = g.ptrLocal(f, outP);
      const o = f.local(I);
      const c = f.local(I);
      const row = f.local(g.ptr);
      const fold = foldOf(f, r, mo);
      f.forRange(o, i32(0), outer, 1, () => {
        f.set(row, g.padd(x, g.pmul(g.idx(o), g.idx(size, 0))));
        fold.start();
        rowLoop(
          f,
          c,
          size,
          () => fold.vec(load("v128.load", g.at(row, c), 0, 0)),
          () => fold.one(load("f32.load", g.at(row, c))),
        );
        f.do(store("f32.store", g.at(out, o), fold.total()));
      });
    });

    // ---- inner > 1: out[o, j] = fold of the column x[o, :, j] ----
    mod.addFunction(
      reduceFunction(rop, 2),
      [P, P, I, I, I],
      [],
      (f, xP, outP, outer, size, inner) => {
        const x = g.ptrLocal(f, xP);
        const out = g.ptrLocal(f, outP);
        const o = f.local(I);
        const j = f.local(I);
        const s = f.local(I);
        const base = f.local(g.ptr);
        const p = f.local(g.ptr);
        const stride = f.local(g.ptr);
        const j4 = f.local(I);
        const fold = foldOf(f, r, mo);
        f.set(stride, g.idx(inner));
        f.set(j4, op("i32.and", inner, i32(~3)));
        f.forRange(o, i32(0), outer, 1, () => {
          f.set(base, g.padd(x, g.pmul(g.idx(o), g.pmul(g.idx(size, 0), g.idx(inner, 0)))));
          const dst = (jj: Expr) => g.at(out, op("i32.add", op("i32.mul", o, inner), jj));
          const column = (fold1: () => void) => {
            f.set(p, g.at(base, j));
            fold.start();
            f.forRange(s, i32(0), size, 1, () => {
              fold1();
              f.set(p, g.padd(p, stride));
            });
          };
          // Four columns at a time, one per lane, walking down the rows.
          f.forRange(j, i32(0), j4, 4, () => {
            column(() => fold.vec(load("v128.load", p, 0, 0)));
            f.do(store("v128.store", dst(j), fold.lanes(), 0, 0));
          });
          // Leftover columns one at a time.
          f.forRange(j, j4, inner, 1, () => {
            column(() => fold.one(load("f32.load", p)));
            f.do(store("f32.store", dst(j), fold.total()));
          });
        });
      },
    );
  }

  /**
   * The argmax step: where `ARGMAX_TAKES` holds for the lanes of `v` against the best values
   * `bv`, they and their indices `iv` replace `bv` and the best indices `bi`.
   */
  const taker = (f: FunctionBuilder, bv: Local, bi: Local) => (v: Expr, iv: Expr) => {
    const xv = vl(f, v);
    const t = vl(f, emitCond(f, ARGMAX_TAKES, { x: xv, best: bv }, mo));
    f.set(bv, op("v128.bitselect", xv, bv, t));
    f.set(bi, op("v128.bitselect", iv, bi, t));
  };

  // ---- argmax, inner = 1 ----
  // Lane k scans element 0 then elements k, k + 4, ... (and every element of the tail): each
  // lane's best is that of a subsequence in index order starting at element 0, so a NaN first
  // element keeps index 0 in every lane. The lanes are then joined in index order with the same
  // rule (the later index is taken when it takes over the earlier).
  mod.addFunction(argmaxFunction(1), [P, P, I, I], [], (f, xP, outP, outer, size) => {
    const x = g.ptrLocal(f, xP);
    const out = g.ptrLocal(f, outP);
    const o = f.local(I);
    const c = f.local(I);
    const row = f.local(g.ptr);
    const bv = f.local("v128");
    const bi = f.local("v128");
    const iv = f.local("v128");
    const take = taker(f, bv, bi);
    f.forRange(o, i32(0), outer, 1, () => {
      f.set(row, g.padd(x, g.pmul(g.idx(o), g.idx(size, 0))));
      f.set(bv, load("v128.load32_splat", row));
      f.set(bi, i32x4(0));
      f.set(iv, i32x4(0, 1, 2, 3));
      rowLoop(
        f,
        c,
        size,
        () => {
          take(load("v128.load", g.at(row, c), 0, 0), iv);
          f.set(iv, op("i32x4.add", iv, i32x4(4)));
        },
        () => take(load("v128.load32_splat", g.at(row, c)), op("i32x4.splat", c)),
      );
      for (const perm of [[2, 3, 0, 1], [1, 0, 3, 2]]) {
        const sv = vl(f, shuffle32(bv, bv, perm));
        const si = vl(f, shuffle32(bi, bi, perm));
        // Whether the other lane's best comes first, whether each takes over the other.
        const first = op("i32x4.lt_s", si, bi);
        const mine = emitCond(f, ARGMAX_TAKES, { x: bv, best: sv }, mo);
        const theirs = emitCond(f, ARGMAX_TAKES, { x: sv, best: bv }, mo);
        const pick = vl(f, op("v128.bitselect", op("v128.not", mine), theirs, first));
        f.set(bv, op("v128.bitselect", sv, bv, pick));
        f.set(bi, op("v128.bitselect", si, bi, pick));
      }
      f.do(store("i32.store", g.at(out, o), lane("i32x4.extract_lane", bi, 0)));
    });
  });

  // ---- argmax, inner > 1: four columns at a time, one per lane, then the leftover columns ----
  mod.addFunction(
    argmaxFunction(2),
    [P, P, I, I, I],
    [],
    (f, xP, outP, outer, size, inner) => {
      const x = g.ptrLocal(f, xP);
      const out = g.ptrLocal(f, outP);
      const o = f.local(I);
      const j = f.local(I);
      const s = f.local(I);
      const base = f.local(g.ptr);
      const p = f.local(g.ptr);
      const stride = f.local(g.ptr);
      const j4 = f.local(I);
      const bv = f.local("v128");
      const bi = f.local("v128");
      const take = taker(f, bv, bi);
      f.set(stride, g.idx(inner));
      f.set(j4, op("i32.and", inner, i32(~3)));
      f.forRange(o, i32(0), outer, 1, () => {
        f.set(base, g.padd(x, g.pmul(g.idx(o), g.pmul(g.idx(size, 0), g.idx(inner, 0)))));
        const dst = (jj: Expr) => g.at(out, op("i32.add", op("i32.mul", o, inner), jj));
        // From element 0 of the column(s), the next ones in order.
        const column = (ld: () => Expr) => {
          f.set(p, g.at(base, j));
          f.set(bv, ld());
          f.set(bi, i32x4(0));
          f.forRange(s, i32(1), size, 1, () => {
            f.set(p, g.padd(p, stride));
            take(ld(), op("i32x4.splat", s));
          });
        };
        f.forRange(j, i32(0), j4, 4, () => {
          column(() => load("v128.load", p, 0, 0));
          f.do(store("v128.store", dst(j), bi, 0, 0));
        });
        f.forRange(j, j4, inner, 1, () => {
          column(() => load("v128.load32_splat", p));
          f.do(store("i32.store", dst(j), lane("i32x4.extract_lane", bi, 0)));
        });
      });
    },
  );
}
