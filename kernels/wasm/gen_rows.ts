/**
 * Generators of the row-wise kernels: reductions and argmax over [outer, size, inner], softmax
 * and log-softmax (+ backward), layer norm (+ backward) and cross-entropy (+ backward).
 *
 * Sums (reductions, softmax denominators, layer-norm statistics and gradients) accumulate in f64
 * lanes, so results stay within an f32 rounding or two of the f64-accumulating reference for any
 * row length. Row kernels take a row range [r0, r1) so that threads can split rows.
 *
 * @module
 */

import {
  type Expr,
  f32,
  f32x4,
  f64,
  f64x2,
  type FunctionBuilder,
  i32,
  lane,
  load,
  type Local,
  memoryFill,
  type ModuleBuilder,
  op,
  shuffle32,
  store,
} from "./builder.ts";
import type { Gen } from "./gen.ts";
import { expV, logV, type MathOptions } from "./gen_math.ts";

/** Codes of the reduction ops in the generated kernels. */
export const REDUCE_CODES = { sum: 0, max: 1, min: 2 } as const;

function vl(f: FunctionBuilder, e: Expr): Local {
  const l = f.local("v128");
  f.set(l, e);
  return l;
}

/** acc0 += f64(v[0..1]); acc1 += f64(v[2..3]). */
function accF64(f: FunctionBuilder, acc0: Local, acc1: Local, v: Expr): void {
  const t = vl(f, v);
  f.set(acc0, op("f64x2.add", acc0, op("f64x2.promote_low_f32x4", t)));
  f.set(acc1, op("f64x2.add", acc1, op("f64x2.promote_low_f32x4", shuffle32(t, t, [2, 3, 0, 1]))));
}

/** Sum of the lanes of two f64x2 accumulators, as an f64 expression. */
function hsum64(acc0: Local, acc1: Local): Expr {
  const s = op("f64x2.add", acc0, acc1);
  return op("f64.add", lane("f64x2.extract_lane", s, 0), lane("f64x2.extract_lane", s, 1));
}

/** Max (or min) of the four lanes. */
function hreduce32(v: Local, name: "f32.max" | "f32.min"): Expr {
  return op(
    name,
    op(name, lane("f32x4.extract_lane", v, 0), lane("f32x4.extract_lane", v, 1)),
    op(name, lane("f32x4.extract_lane", v, 2), lane("f32x4.extract_lane", v, 3)),
  );
}

/** Emits: for c in [0, n) step 4 (vector part) then [n4, n) one at a time (tail). */
function rowLoop(
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

/** Max of a contiguous row of n f32 at `row` (f32 result local). */
function rowMax(f: FunctionBuilder, g: Gen, row: Local, n: Local): Local {
  const c = f.local("i32");
  const mv = f.local("v128");
  const m = f.local("f32");
  f.set(mv, f32x4(-Infinity));
  f.set(m, f32(-Infinity));
  // pmax (plain maxps) skips NaN, unlike the IEEE max; callers feed the maximum into sums of
  // exponentials, which turn NaN inputs into NaN results anyway.
  rowLoop(
    f,
    c,
    n,
    () => f.set(mv, op("f32x4.pmax", mv, load("v128.load", g.at(row, c), 0, 0))),
    () => f.set(m, op("f32.max", m, load("f32.load", g.at(row, c)))),
  );
  f.set(m, op("f32.max", m, hreduce32(mv, "f32.max")));
  return m;
}

/** Adds all row kernels to the module (exported under the names used by the backend). */
export function addRowKernels(mod: ModuleBuilder, g: Gen): void {
  const mo: MathOptions = { fma: g.opts.relaxed };
  const P = g.ptrParam;
  const I = "i32";

  // ---- reduce over the middle axis; inner == 1: reduce_rows, else reduce_cols ----
  mod.addFunction("reduce_rows", [I, P, P, I, I], [], (f, code, xP, outP, outer, size) => {
    const x = g.ptrLocal(f, xP);
    const out = g.ptrLocal(f, outP);
    const o = f.local(I);
    const c = f.local(I);
    const row = f.local(g.ptr);
    const a0 = f.local("v128");
    const a1 = f.local("v128");
    const s = f.local("f64");
    const mv = f.local("v128");
    const m = f.local("f32");
    f.forRange(o, i32(0), outer, 1, () => {
      f.set(row, g.padd(x, g.pmul(g.idx(o), g.idx(size, 0))));
      f.if(
        op("i32.eqz", code),
        () => {
          f.set(a0, f64x2(0));
          f.set(a1, f64x2(0));
          f.set(s, f64(0));
          rowLoop(
            f,
            c,
            size,
            () => accF64(f, a0, a1, load("v128.load", g.at(row, c), 0, 0)),
            () => f.set(s, op("f64.add", s, op("f64.promote_f32", load("f32.load", g.at(row, c))))),
          );
          f.do(
            store(
              "f32.store",
              g.at(out, o),
              op("f32.demote_f64", op("f64.add", hsum64(a0, a1), s)),
            ),
          );
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

  // ---- softmax / log-softmax of rows [r0, r1) ----
  mod.addFunction("softmax", [P, P, I, I, I, I], [], (f, xP, yP, cols, log, r0, r1) => {
    const x = g.ptrLocal(f, xP);
    const y = g.ptrLocal(f, yP);
    const r = f.local(I);
    const c = f.local(I);
    const xr = f.local(g.ptr);
    const yr = f.local(g.ptr);
    const a0 = f.local("v128");
    const a1 = f.local("v128");
    const sc = f.local("f64");
    const mxv = f.local("v128");
    const e = f.local("v128");
    const k = f.local("v128");
    f.forRange(r, r0, r1, 1, () => {
      const off = g.pmul(g.idx(r), g.idx(cols, 0));
      f.set(xr, g.padd(x, off));
      f.set(yr, g.padd(y, off));
      const mx = rowMax(f, g, xr, cols);
      // A fully masked row (all −∞): use 0 as the reference does.
      f.if(op("f32.eq", mx, f32(-Infinity)), () => {
        f.set(mx, f32(0));
      });
      f.set(mxv, op("f32x4.splat", mx));
      f.set(a0, f64x2(0));
      f.set(a1, f64x2(0));
      f.set(sc, f64(0));
      // Σ exp(x − max); softmax also keeps the exponentials in y (the branch is outside the
      // loops so that each loop body is straight-line code).
      const expLoop = (keep: boolean) =>
        rowLoop(
          f,
          c,
          cols,
          () => {
            f.set(e, expV(f, op("f32x4.sub", load("v128.load", g.at(xr, c), 0, 0), mxv), mo));
            if (keep) f.do(store("v128.store", g.at(yr, c), e, 0, 0));
            accF64(f, a0, a1, e);
          },
          () => {
            f.set(e, expV(f, op("f32x4.sub", load("v128.load32_splat", g.at(xr, c)), mxv), mo));
            if (keep) f.do(store("f32.store", g.at(yr, c), lane("f32x4.extract_lane", e, 0)));
            f.set(sc, op("f64.add", sc, op("f64.promote_f32", lane("f32x4.extract_lane", e, 0))));
          },
        );
      f.if(log, () => expLoop(false), () => expLoop(true));
      f.set(sc, op("f64.add", sc, hsum64(a0, a1)));
      f.if(
        log,
        () => {
          // y = (x − max) − log(sum)
          const ls = logV(f, op("f32x4.splat", op("f32.demote_f64", sc)), mo);
          f.set(k, op("f32x4.splat", lane("f32x4.extract_lane", ls, 0)));
          rowLoop(
            f,
            c,
            cols,
            () =>
              f.do(store(
                "v128.store",
                g.at(yr, c),
                op("f32x4.sub", op("f32x4.sub", load("v128.load", g.at(xr, c), 0, 0), mxv), k),
                0,
                0,
              )),
            () =>
              f.do(store(
                "f32.store",
                g.at(yr, c),
                lane(
                  "f32x4.extract_lane",
                  op("f32x4.sub", op("f32x4.sub", load("v128.load32_splat", g.at(xr, c)), mxv), k),
                  0,
                ),
              )),
          );
        },
        () => {
          f.set(k, op("f32x4.splat", op("f32.demote_f64", op("f64.div", f64(1), sc))));
          rowLoop(
            f,
            c,
            cols,
            () =>
              f.do(store(
                "v128.store",
                g.at(yr, c),
                op("f32x4.mul", load("v128.load", g.at(yr, c), 0, 0), k),
                0,
                0,
              )),
            () =>
              f.do(store(
                "f32.store",
                g.at(yr, c),
                op("f32.mul", load("f32.load", g.at(yr, c)), lane("f32x4.extract_lane", k, 0)),
              )),
          );
        },
      );
    });
  });

  // ---- softmax backward: softmax y(g − Σ y·g); log-softmax g − e^y Σ g ----
  mod.addFunction("softmax_bwd", [P, P, P, I, I, I, I], [], (f, yP, gP, oP, cols, log, r0, r1) => {
    const y = g.ptrLocal(f, yP);
    const gy = g.ptrLocal(f, gP);
    const out = g.ptrLocal(f, oP);
    const r = f.local(I);
    const c = f.local(I);
    const yr = f.local(g.ptr);
    const gr = f.local(g.ptr);
    const orow = f.local(g.ptr);
    const a0 = f.local("v128");
    const a1 = f.local("v128");
    const sc = f.local("f64");
    const sv = f.local("v128");
    const vy = f.local("v128");
    const vg = f.local("v128");
    const res = f.local("v128");
    f.forRange(r, r0, r1, 1, () => {
      const off = g.pmul(g.idx(r), g.idx(cols, 0));
      f.set(yr, g.padd(y, off));
      f.set(gr, g.padd(gy, off));
      f.set(orow, g.padd(out, off));
      f.set(a0, f64x2(0));
      f.set(a1, f64x2(0));
      f.set(sc, f64(0));
      rowLoop(
        f,
        c,
        cols,
        () => {
          const gv = load("v128.load", g.at(gr, c), 0, 0);
          f.if(
            log,
            () => accF64(f, a0, a1, gv),
            () => accF64(f, a0, a1, op("f32x4.mul", gv, load("v128.load", g.at(yr, c), 0, 0))),
          );
        },
        () => {
          const gv = load("f32.load", g.at(gr, c));
          f.if(
            log,
            () => f.set(sc, op("f64.add", sc, op("f64.promote_f32", gv))),
            () =>
              f.set(
                sc,
                op(
                  "f64.add",
                  sc,
                  op("f64.promote_f32", op("f32.mul", gv, load("f32.load", g.at(yr, c)))),
                ),
              ),
          );
        },
      );
      f.set(sc, op("f64.add", sc, hsum64(a0, a1)));
      f.set(sv, op("f32x4.splat", op("f32.demote_f64", sc)));
      const body = () => {
        f.if(
          log,
          () => f.set(res, op("f32x4.sub", vg, op("f32x4.mul", expV(f, vy, mo), sv))),
          () => f.set(res, op("f32x4.mul", vy, op("f32x4.sub", vg, sv))),
        );
      };
      rowLoop(
        f,
        c,
        cols,
        () => {
          f.set(vy, load("v128.load", g.at(yr, c), 0, 0));
          f.set(vg, load("v128.load", g.at(gr, c), 0, 0));
          body();
          f.do(store("v128.store", g.at(orow, c), res, 0, 0));
        },
        () => {
          f.set(vy, load("v128.load32_splat", g.at(yr, c)));
          f.set(vg, load("v128.load32_splat", g.at(gr, c)));
          body();
          f.do(store("f32.store", g.at(orow, c), lane("f32x4.extract_lane", res, 0)));
        },
      );
    });
  });

  // ---- layer norm forward ----
  mod.addFunction(
    "layernorm",
    [P, P, P, P, P, P, I, "f64", I, I],
    [],
    (f, xP, wP, bP, yP, meanP, rstdP, cols, eps, r0, r1) => {
      const x = g.ptrLocal(f, xP);
      const w = g.ptrLocal(f, wP);
      const b = g.ptrLocal(f, bP);
      const y = g.ptrLocal(f, yP);
      const mean = g.ptrLocal(f, meanP);
      const rstd = g.ptrLocal(f, rstdP);
      const r = f.local(I);
      const c = f.local(I);
      const xr = f.local(g.ptr);
      const yr = f.local(g.ptr);
      const a0 = f.local("v128");
      const a1 = f.local("v128");
      const sc = f.local("f64");
      const mu = f.local("f64");
      const muv = f.local("v128");
      const rs = f.local("f64");
      const mu32 = f.local("v128");
      const rs32 = f.local("v128");
      const t = f.local("v128");
      const d = f.local("f64");
      f.forRange(r, r0, r1, 1, () => {
        const off = g.pmul(g.idx(r), g.idx(cols, 0));
        f.set(xr, g.padd(x, off));
        f.set(yr, g.padd(y, off));
        f.set(a0, f64x2(0));
        f.set(a1, f64x2(0));
        f.set(sc, f64(0));
        rowLoop(
          f,
          c,
          cols,
          () => accF64(f, a0, a1, load("v128.load", g.at(xr, c), 0, 0)),
          () => f.set(sc, op("f64.add", sc, op("f64.promote_f32", load("f32.load", g.at(xr, c))))),
        );
        f.set(mu, op("f64.div", op("f64.add", sc, hsum64(a0, a1)), op("f64.convert_i32_u", cols)));
        // Second pass: Σ(x − μ)² in f64.
        f.set(muv, op("f64x2.splat", mu));
        f.set(a0, f64x2(0));
        f.set(a1, f64x2(0));
        f.set(sc, f64(0));
        rowLoop(
          f,
          c,
          cols,
          () => {
            f.set(t, load("v128.load", g.at(xr, c), 0, 0));
            const lo = vl(f, op("f64x2.sub", op("f64x2.promote_low_f32x4", t), muv));
            const hi = vl(
              f,
              op("f64x2.sub", op("f64x2.promote_low_f32x4", shuffle32(t, t, [2, 3, 0, 1])), muv),
            );
            f.set(a0, op("f64x2.add", a0, op("f64x2.mul", lo, lo)));
            f.set(a1, op("f64x2.add", a1, op("f64x2.mul", hi, hi)));
          },
          () => {
            f.set(d, op("f64.sub", op("f64.promote_f32", load("f32.load", g.at(xr, c))), mu));
            f.set(sc, op("f64.add", sc, op("f64.mul", d, d)));
          },
        );
        f.set(
          rs,
          op(
            "f64.div",
            f64(1),
            op(
              "f64.sqrt",
              op(
                "f64.add",
                op("f64.div", op("f64.add", sc, hsum64(a0, a1)), op("f64.convert_i32_u", cols)),
                eps,
              ),
            ),
          ),
        );
        f.do(store("f32.store", g.at(mean, r), op("f32.demote_f64", mu)));
        f.do(store("f32.store", g.at(rstd, r), op("f32.demote_f64", rs)));
        f.set(mu32, op("f32x4.splat", op("f32.demote_f64", mu)));
        f.set(rs32, op("f32x4.splat", op("f32.demote_f64", rs)));
        const yv = (xv: Expr, wv: Expr, bv: Expr) =>
          op(
            "f32x4.add",
            op("f32x4.mul", op("f32x4.mul", op("f32x4.sub", xv, mu32), rs32), wv),
            bv,
          );
        rowLoop(
          f,
          c,
          cols,
          () =>
            f.do(store(
              "v128.store",
              g.at(yr, c),
              yv(
                load("v128.load", g.at(xr, c), 0, 0),
                load("v128.load", g.at(w, c), 0, 0),
                load("v128.load", g.at(b, c), 0, 0),
              ),
              0,
              0,
            )),
          () =>
            f.do(store(
              "f32.store",
              g.at(yr, c),
              lane(
                "f32x4.extract_lane",
                yv(
                  load("v128.load32_splat", g.at(xr, c)),
                  load("v128.load32_splat", g.at(w, c)),
                  load("v128.load32_splat", g.at(b, c)),
                ),
                0,
              ),
            )),
        );
      });
    },
  );

  // ---- layer norm backward over rows [r0, r1): gx, and Σ gy·x̂, Σ gy into f64 acc [2·cols] ----
  mod.addFunction(
    "layernorm_bwd",
    [P, P, P, P, P, P, P, I, I, I],
    [],
    (f, xP, wP, meanP, rstdP, gyP, gxP, accP, cols, r0, r1) => {
      const x = g.ptrLocal(f, xP);
      const w = g.ptrLocal(f, wP);
      const mean = g.ptrLocal(f, meanP);
      const rstd = g.ptrLocal(f, rstdP);
      const gy = g.ptrLocal(f, gyP);
      const gx = g.ptrLocal(f, gxP);
      const acc = g.ptrLocal(f, accP);
      const accB = f.local(g.ptr);
      f.set(accB, g.padd(acc, g.idx(cols, 3)));
      const r = f.local(I);
      const c = f.local(I);
      const xr = f.local(g.ptr);
      const gr = f.local(g.ptr);
      const or = f.local(g.ptr);
      const a0 = f.local("v128");
      const a1 = f.local("v128");
      const b0 = f.local("v128");
      const b1 = f.local("v128");
      const s1 = f.local("f64");
      const s2 = f.local("f64");
      const mv = f.local("v128");
      const rv = f.local("v128");
      const xh = f.local("v128");
      const gv = f.local("v128");
      const gw = f.local("v128");
      const m1 = f.local("v128");
      const m2 = f.local("v128");
      const inv = f.local("f64");
      f.set(inv, op("f64.div", f64(1), op("f64.convert_i32_u", cols)));
      // Adds lanes 0..1 (lo) or 2..3 (hi) of v, as f64, to the f64 accumulator at p.
      const addAcc = (p: Expr, v: Local, hi: boolean, offset: number) =>
        f.do(store(
          "v128.store",
          p,
          op(
            "f64x2.add",
            load("v128.load", p, offset, 0),
            op("f64x2.promote_low_f32x4", hi ? shuffle32(v, v, [2, 3, 0, 1]) : v),
          ),
          offset,
          0,
        ));
      f.forRange(r, r0, r1, 1, () => {
        const off = g.pmul(g.idx(r), g.idx(cols, 0));
        f.set(xr, g.padd(x, off));
        f.set(gr, g.padd(gy, off));
        f.set(or, g.padd(gx, off));
        f.set(mv, load("v128.load32_splat", g.at(mean, r)));
        f.set(rv, load("v128.load32_splat", g.at(rstd, r)));
        f.set(a0, f64x2(0));
        f.set(a1, f64x2(0));
        f.set(b0, f64x2(0));
        f.set(b1, f64x2(0));
        f.set(s1, f64(0));
        f.set(s2, f64(0));
        const stats = (ld: (base: Local) => Expr) => {
          f.set(xh, op("f32x4.mul", op("f32x4.sub", ld(xr), mv), rv));
          f.set(gv, ld(gr));
          f.set(gw, op("f32x4.mul", gv, ld(w)));
        };
        rowLoop(
          f,
          c,
          cols,
          () => {
            stats((base) => load("v128.load", g.at(base, c), 0, 0));
            accF64(f, a0, a1, gw);
            accF64(f, b0, b1, op("f32x4.mul", gw, xh));
            const pw = g.padd(acc, g.idx(c, 3));
            const pb = g.padd(accB, g.idx(c, 3));
            const gx2 = vl(f, op("f32x4.mul", gv, xh));
            addAcc(pw, gx2, false, 0);
            addAcc(pw, gx2, true, 16);
            addAcc(pb, gv, false, 0);
            addAcc(pb, gv, true, 16);
          },
          () => {
            stats((base) => load("v128.load32_splat", g.at(base, c)));
            const l0 = (v: Expr) => op("f64.promote_f32", lane("f32x4.extract_lane", v, 0));
            f.set(s1, op("f64.add", s1, l0(gw)));
            f.set(s2, op("f64.add", s2, l0(op("f32x4.mul", gw, xh))));
            const pw = g.padd(acc, g.idx(c, 3));
            const pb = g.padd(accB, g.idx(c, 3));
            f.do(
              store(
                "f64.store",
                pw,
                op("f64.add", load("f64.load", pw), l0(op("f32x4.mul", gv, xh))),
              ),
            );
            f.do(store("f64.store", pb, op("f64.add", load("f64.load", pb), l0(gv))));
          },
        );
        // gx = rstd·(g·w − mean(g·w) − x̂·mean(g·w·x̂))
        f.set(
          m1,
          op(
            "f32x4.splat",
            op("f32.demote_f64", op("f64.mul", op("f64.add", s1, hsum64(a0, a1)), inv)),
          ),
        );
        f.set(
          m2,
          op(
            "f32x4.splat",
            op("f32.demote_f64", op("f64.mul", op("f64.add", s2, hsum64(b0, b1)), inv)),
          ),
        );
        const gxv = () =>
          op("f32x4.mul", rv, op("f32x4.sub", op("f32x4.sub", gw, m1), op("f32x4.mul", xh, m2)));
        rowLoop(
          f,
          c,
          cols,
          () => {
            stats((base) => load("v128.load", g.at(base, c), 0, 0));
            f.do(store("v128.store", g.at(or, c), gxv(), 0, 0));
          },
          () => {
            stats((base) => load("v128.load32_splat", g.at(base, c)));
            f.do(store("f32.store", g.at(or, c), lane("f32x4.extract_lane", gxv(), 0)));
          },
        );
      });
    },
  );

  // ---- out[i] = f32(Σ_k acc[k·stride + i]) for i < len, k < parts (f64 accumulators) ----
  mod.addFunction("acc_finish", [P, I, I, I, P], [], (f, accP, len, parts, stride, outP) => {
    const acc = g.ptrLocal(f, accP);
    const out = g.ptrLocal(f, outP);
    const i = f.local(I);
    const k = f.local(I);
    const s = f.local("f64");
    f.forRange(i, i32(0), len, 1, () => {
      f.set(s, f64(0));
      f.forRange(k, i32(0), parts, 1, () => {
        f.set(
          s,
          op(
            "f64.add",
            s,
            load("f64.load", g.padd(acc, g.idx(op("i32.add", op("i32.mul", k, stride), i), 3))),
          ),
        );
      });
      f.do(store("f32.store", g.at(out, i), op("f32.demote_f64", s)));
    });
  });

  // ---- cross-entropy forward of rows [r0, r1) ----
  mod.addFunction(
    "xent",
    [P, P, P, P, I, I, I, I],
    [],
    (f, xP, tP, lossP, lseP, cols, ignore, r0, r1) => {
      const x = g.ptrLocal(f, xP);
      const t = g.ptrLocal(f, tP);
      const loss = g.ptrLocal(f, lossP);
      const lse = g.ptrLocal(f, lseP);
      const r = f.local(I);
      const c = f.local(I);
      const xr = f.local(g.ptr);
      const a0 = f.local("v128");
      const a1 = f.local("v128");
      const sc = f.local("f64");
      const mxv = f.local("v128");
      const e = f.local("v128");
      const l = f.local("f32");
      const tr = f.local(I);
      f.forRange(r, r0, r1, 1, () => {
        f.set(xr, g.padd(x, g.pmul(g.idx(r), g.idx(cols, 0))));
        const mx = rowMax(f, g, xr, cols);
        f.set(mxv, op("f32x4.splat", mx));
        f.set(a0, f64x2(0));
        f.set(a1, f64x2(0));
        f.set(sc, f64(0));
        rowLoop(
          f,
          c,
          cols,
          () => {
            f.set(e, expV(f, op("f32x4.sub", load("v128.load", g.at(xr, c), 0, 0), mxv), mo));
            accF64(f, a0, a1, e);
          },
          () => {
            f.set(e, expV(f, op("f32x4.sub", load("v128.load32_splat", g.at(xr, c)), mxv), mo));
            f.set(sc, op("f64.add", sc, op("f64.promote_f32", lane("f32x4.extract_lane", e, 0))));
          },
        );
        f.set(sc, op("f64.add", sc, hsum64(a0, a1)));
        const ls = logV(f, op("f32x4.splat", op("f32.demote_f64", sc)), mo);
        f.set(l, op("f32.add", mx, lane("f32x4.extract_lane", ls, 0)));
        f.do(store("f32.store", g.at(lse, r), l));
        f.set(tr, load("i32.load", g.at(t, r)));
        f.do(store(
          "f32.store",
          g.at(loss, r),
          op(
            "select",
            f32(0),
            (ff: FunctionBuilder) =>
              ff.emit(
                op(
                  "f32.sub",
                  l,
                  load("f32.load", g.at(xr, op("select", i32(0), tr, op("i32.eq", tr, ignore)))),
                ),
              ),
            op("i32.eq", tr, ignore),
          ),
        ));
      });
    },
  );

  // ---- cross-entropy backward of rows [r0, r1) ----
  mod.addFunction(
    "xent_bwd",
    [P, P, P, P, P, I, I, I, I],
    [],
    (f, xP, tP, lseP, glP, oP, cols, ignore, r0, r1) => {
      const x = g.ptrLocal(f, xP);
      const t = g.ptrLocal(f, tP);
      const lse = g.ptrLocal(f, lseP);
      const gl = g.ptrLocal(f, glP);
      const out = g.ptrLocal(f, oP);
      const r = f.local(I);
      const c = f.local(I);
      const xr = f.local(g.ptr);
      const or = f.local(g.ptr);
      const lv = f.local("v128");
      const gv = f.local("v128");
      const tr = f.local(I);
      const pt = f.local(g.ptr);
      f.forRange(r, r0, r1, 1, () => {
        const off = g.pmul(g.idx(r), g.idx(cols, 0));
        f.set(xr, g.padd(x, off));
        f.set(or, g.padd(out, off));
        f.set(tr, load("i32.load", g.at(t, r)));
        f.if(
          op("i32.eq", tr, ignore),
          () => f.do(memoryFill(or, i32(0), g.idx(cols))),
          () => {
            f.set(lv, load("v128.load32_splat", g.at(lse, r)));
            f.set(gv, load("v128.load32_splat", g.at(gl, r)));
            rowLoop(
              f,
              c,
              cols,
              () =>
                f.do(store(
                  "v128.store",
                  g.at(or, c),
                  op(
                    "f32x4.mul",
                    expV(f, op("f32x4.sub", load("v128.load", g.at(xr, c), 0, 0), lv), mo),
                    gv,
                  ),
                  0,
                  0,
                )),
              () =>
                f.do(store(
                  "f32.store",
                  g.at(or, c),
                  lane(
                    "f32x4.extract_lane",
                    op(
                      "f32x4.mul",
                      expV(f, op("f32x4.sub", load("v128.load32_splat", g.at(xr, c)), lv), mo),
                      gv,
                    ),
                    0,
                  ),
                )),
            );
            f.set(pt, g.at(or, tr));
            f.do(
              store(
                "f32.store",
                pt,
                op("f32.sub", load("f32.load", pt), lane("f32x4.extract_lane", gv, 0)),
              ),
            );
          },
        );
      });
    },
  );
}
