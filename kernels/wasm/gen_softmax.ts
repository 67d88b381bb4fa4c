/**
 * Generators of the softmax and log-softmax row kernels (+ backward) over rows [r0, r1).
 *
 * @module
 */

import { f32, f64, lane, load, type ModuleBuilder, op, store } from "./builder.ts";
import type { Gen } from "./gen.ts";
import { expV, logV, type MathOptions } from "./gen_math.ts";
import { expSumLoop, F64Sum, rowLoop, rowLoopSteps, rowMax, rowPointers } from "./gen_row_loops.ts";

/** Adds `softmax` and `softmax_bwd` to the module. */
export function addSoftmaxKernels(mod: ModuleBuilder, g: Gen, mo: MathOptions): void {
  const P = g.ptrParam;
  const I = "i32";

  // ---- softmax / log-softmax of rows [r0, r1) ----
  mod.addFunction("softmax", [P, P, I, I, I, I], [], (f, xP, yP, cols, log, r0, r1) => {
    const x = g.ptrLocal(f, xP);
    const y = g.ptrLocal(f, yP);
    const r = f.local(I);
    const c = f.local(I);
    const xr = f.local(g.ptr);
    const yr = f.local(g.ptr);
    const sum = F64Sum.local(f);
    const mxv = f.local("v128");
    const e = f.local("v128");
    const k = f.local("v128");
    f.forRange(r, r0, r1, 1, () => {
      rowPointers(f, g, r, cols, [[xr, x], [yr, y]]);
      const mx = rowMax(f, g, xr, cols);
      // A fully masked row (all −∞): use 0 as the reference does.
      f.if(op("f32.eq", mx, f32(-Infinity)), () => {
        f.set(mx, f32(0));
      });
      f.set(mxv, op("f32x4.splat", mx));
      sum.zero(f);
      // Σ exp(x − max); softmax also keeps the exponentials in y (the branch is outside the
      // loops so that each loop body is straight-line code).
      f.if(
        log,
        () => expSumLoop(f, g, mo, c, cols, xr, mxv, e, sum),
        () => expSumLoop(f, g, mo, c, cols, xr, mxv, e, sum, yr),
      );
      f.set(sum.s, sum.total());
      f.if(
        log,
        () => {
          // y = (x − max) − log(sum)
          const ls = logV(f, op("f32x4.splat", op("f32.demote_f64", sum.s)), mo);
          f.set(k, op("f32x4.splat", lane("f32x4.extract_lane", ls, 0)));
          rowLoopSteps(
            f,
            g,
            c,
            cols,
            (step) => step.st(yr, op("f32x4.sub", op("f32x4.sub", step.ld(xr), mxv), k)),
          );
        },
        () => {
          f.set(k, op("f32x4.splat", op("f32.demote_f64", op("f64.div", f64(1), sum.s))));
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
    const sum = F64Sum.local(f);
    const sv = f.local("v128");
    const vy = f.local("v128");
    const vg = f.local("v128");
    const res = f.local("v128");
    f.forRange(r, r0, r1, 1, () => {
      rowPointers(f, g, r, cols, [[yr, y], [gr, gy], [orow, out]]);
      sum.zero(f);
      // Σ g (log-softmax) or Σ y·g (softmax).
      rowLoop(
        f,
        c,
        cols,
        () => {
          const gv = load("v128.load", g.at(gr, c), 0, 0);
          f.if(
            log,
            () => sum.addV(f, gv),
            () => sum.addV(f, op("f32x4.mul", gv, load("v128.load", g.at(yr, c), 0, 0))),
          );
        },
        () => {
          const gv = load("f32.load", g.at(gr, c));
          f.if(
            log,
            () => sum.addS(f, gv),
            () => sum.addS(f, op("f32.mul", gv, load("f32.load", g.at(yr, c)))),
          );
        },
      );
      f.set(sum.s, sum.total());
      f.set(sv, op("f32x4.splat", op("f32.demote_f64", sum.s)));
      rowLoopSteps(f, g, c, cols, (step) => {
        f.set(vy, step.ld(yr));
        f.set(vg, step.ld(gr));
        f.if(
          log,
          () => f.set(res, op("f32x4.sub", vg, op("f32x4.mul", expV(f, vy, mo), sv))),
          () => f.set(res, op("f32x4.mul", vy, op("f32x4.sub", vg, sv))),
        );
        step.st(orow, res);
      });
    });
  });
}
