/**
 * Generators of the reductions and argmax over [outer, size, inner]. (Softmax, layer norm and
 * cross-entropy are row kernels compiled from their descriptions by `gen_row_expr.ts`.)
 *
 * Sums accumulate in f64 lanes, so results stay within an f32 rounding or two of the
 * f64-accumulating reference for any row length.
 *
 * @module
 */

import {
  type Expr,
  f64,
  f64x2,
  i32,
  load,
  type ModuleBuilder,
  op,
  shuffle32,
  store,
} from "./builder.ts";
import type { Gen } from "./gen.ts";
import { accF64, F64Sum, hreduce32, hsum64, rowLoop, rowSum } from "./gen_row_loops.ts";

/** Codes of the reduction ops in the generated kernels. */
export const REDUCE_CODES = { sum: 0, max: 1, min: 2 } as const;

/** Adds the reductions and argmax to the module (exported under the names used by the backend). */
export function addRowKernels(mod: ModuleBuilder, g: Gen): void {
  const P = g.ptrParam;
  const I = "i32";

  // ---- reduce over the middle axis; inner == 1: reduce_rows, else reduce_cols ----
  mod.addFunction("reduce_rows", [I, P, P, I, I], [], (f, code, xP, outP, outer, size) => {
    const x = g.ptrLocal(f, xP);
    const out = g.ptrLocal(f, outP);
    const o = f.local(I);
    const c = f.local(I);
    const row = f.local(g.ptr);
    const sum = F64Sum.local(f);
    const mv = f.local("v128");
    const m = f.local("f32");
    f.forRange(o, i32(0), outer, 1, () => {
      f.set(row, g.padd(x, g.pmul(g.idx(o), g.idx(size, 0))));
      f.if(
        op("i32.eqz", code),
        () => {
          sum.zero(f);
          rowSum(f, g, c, size, row, sum);
          // (Vector part first here, unlike F64Sum.total.)
          const total = op("f64.add", hsum64(sum.a0, sum.a1), sum.s);
          f.do(store("f32.store", g.at(out, o), op("f32.demote_f64", total)));
        },
        () => {
          // max (code 1) or min (code 2): NaN propagates, as in the reference.
          const isMax = op("i32.eq", code, i32(1));
          f.set(mv, load("v128.load32_splat", row));
          f.set(m, load("f32.load", row));
          rowLoop(
            f,
            c,
            size,
            () => {
              const v = load("v128.load", g.at(row, c), 0, 0);
              f.if(
                isMax,
                () => f.set(mv, op("f32x4.max", mv, v)),
                () => f.set(mv, op("f32x4.min", mv, v)),
              );
            },
            () => {
              const v = load("f32.load", g.at(row, c));
              f.if(isMax, () => f.set(m, op("f32.max", m, v)), () => f.set(m, op("f32.min", m, v)));
            },
          );
          f.if(
            isMax,
            () => f.set(m, op("f32.max", m, hreduce32(mv, "f32.max"))),
            () => f.set(m, op("f32.min", m, hreduce32(mv, "f32.min"))),
          );
          f.do(store("f32.store", g.at(out, o), m));
        },
      );
    });
  });

  mod.addFunction(
    "reduce_cols",
    [I, P, P, I, I, I],
    [],
    (f, code, xP, outP, outer, size, inner) => {
      const x = g.ptrLocal(f, xP);
      const out = g.ptrLocal(f, outP);
      const o = f.local(I);
      const j = f.local(I);
      const s = f.local(I);
      const base = f.local(g.ptr);
      const p = f.local(g.ptr);
      const stride = f.local(g.ptr);
      const a0 = f.local("v128");
      const a1 = f.local("v128");
      const mv = f.local("v128");
      const sc = f.local("f64");
      const m = f.local("f32");
      const j4 = f.local(I);
      f.set(stride, g.idx(inner));
      f.set(j4, op("i32.and", inner, i32(~3)));
      f.forRange(o, i32(0), outer, 1, () => {
        f.set(base, g.padd(x, g.pmul(g.idx(o), g.pmul(g.idx(size, 0), g.idx(inner, 0)))));
        const dst = (jj: Expr) => g.at(out, op("i32.add", op("i32.mul", o, inner), jj));
        // Four columns at a time, walking down the rows.
        f.forRange(j, i32(0), j4, 4, () => {
          f.set(p, g.at(base, j));
          f.if(
            op("i32.eqz", code),
            () => {
              f.set(a0, f64x2(0));
              f.set(a1, f64x2(0));
              f.forRange(s, i32(0), size, 1, () => {
                accF64(f, a0, a1, load("v128.load", p, 0, 0));
                f.set(p, g.padd(p, stride));
              });
              f.do(store(
                "v128.store",
                dst(j),
                shuffle32(
                  op("f32x4.demote_f64x2_zero", a0),
                  op("f32x4.demote_f64x2_zero", a1),
                  [0, 1, 4, 5],
                ),
                0,
                0,
              ));
            },
            () => {
              f.set(mv, load("v128.load", p, 0, 0));
              f.forRange(s, i32(1), size, 1, () => {
                f.set(p, g.padd(p, stride));
                f.if(
                  op("i32.eq", code, i32(1)),
                  () => f.set(mv, op("f32x4.max", mv, load("v128.load", p, 0, 0))),
                  () => f.set(mv, op("f32x4.min", mv, load("v128.load", p, 0, 0))),
                );
              });
              f.do(store("v128.store", dst(j), mv, 0, 0));
            },
          );
        });
        // Leftover columns one at a time.
        f.forRange(j, j4, inner, 1, () => {
          f.set(p, g.at(base, j));
          f.if(
            op("i32.eqz", code),
            () => {
              f.set(sc, f64(0));
              f.forRange(s, i32(0), size, 1, () => {
                f.set(sc, op("f64.add", sc, op("f64.promote_f32", load("f32.load", p))));
                f.set(p, g.padd(p, stride));
              });
              f.do(store("f32.store", dst(j), op("f32.demote_f64", sc)));
            },
            () => {
              f.set(m, load("f32.load", p));
              f.forRange(s, i32(1), size, 1, () => {
                f.set(p, g.padd(p, stride));
                f.if(
                  op("i32.eq", code, i32(1)),
                  () => f.set(m, op("f32.max", m, load("f32.load", p))),
                  () => f.set(m, op("f32.min", m, load("f32.load", p))),
                );
              });
              f.do(store("f32.store", dst(j), m));
            },
          );
        });
      });
    },
  );

  // ---- argmax: first index of the maximum along the middle axis ----
  mod.addFunction("argmax", [P, P, I, I, I], [], (f, xP, outP, outer, size, inner) => {
    const x = g.ptrLocal(f, xP);
    const out = g.ptrLocal(f, outP);
    const o = f.local(I);
    const j = f.local(I);
    const s = f.local(I);
    const p = f.local(g.ptr);
    const stride = f.local(g.ptr);
    const best = f.local(I);
    const bv = f.local("f32");
    const v = f.local("f32");
    f.set(stride, g.idx(inner));
    f.forRange(o, i32(0), outer, 1, () => {
      f.forRange(j, i32(0), inner, 1, () => {
        f.set(p, g.padd(x, g.idx(op("i32.add", op("i32.mul", op("i32.mul", o, size), inner), j))));
        f.set(bv, load("f32.load", p));
        f.set(best, i32(0));
        f.forRange(s, i32(1), size, 1, () => {
          f.set(p, g.padd(p, stride));
          f.set(v, load("f32.load", p));
          f.if(op("f32.gt", v, bv), () => {
            f.set(bv, v);
            f.set(best, s);
          });
        });
        f.do(store("i32.store", g.at(out, op("i32.add", op("i32.mul", o, inner), j)), best));
      });
    });
  });
}
