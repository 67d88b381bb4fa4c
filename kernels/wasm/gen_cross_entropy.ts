/**
 * Generators of the cross-entropy row kernels (+ backward) over rows [r0, r1) of logits, with
 * one target class index a row and an ignored index.
 *
 * @module
 */

import {
  f32,
  type FunctionBuilder,
  i32,
  lane,
  load,
  memoryFill,
  type ModuleBuilder,
  op,
  store,
} from "./builder.ts";
import type { Gen } from "./gen.ts";
import { expV, logV, type MathOptions } from "./gen_math.ts";
import { expSumLoop, F64Sum, rowLoopSteps, rowMax, rowPointers } from "./gen_row_loops.ts";

/** Adds `xent` and `xent_bwd` to the module. */
export function addCrossEntropyKernels(mod: ModuleBuilder, g: Gen, mo: MathOptions): void {
  const P = g.ptrParam;
  const I = "i32";

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
      const sum = F64Sum.local(f);
      const mxv = f.local("v128");
      const e = f.local("v128");
      const l = f.local("f32");
      const tr = f.local(I);
      f.forRange(r, r0, r1, 1, () => {
        rowPointers(f, g, r, cols, [[xr, x]]);
        const mx = rowMax(f, g, xr, cols);
        f.set(mxv, op("f32x4.splat", mx));
        sum.zero(f);
        expSumLoop(f, g, mo, c, cols, xr, mxv, e, sum);
        f.set(sum.s, sum.total());
        const ls = logV(f, op("f32x4.splat", op("f32.demote_f64", sum.s)), mo);
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
        rowPointers(f, g, r, cols, [[xr, x], [or, out]]);
        f.set(tr, load("i32.load", g.at(t, r)));
        f.if(
          op("i32.eq", tr, ignore),
          () => f.do(memoryFill(or, i32(0), g.idx(cols))),
          () => {
            // gx = softmax(x)·g, less g at the target.
            f.set(lv, load("v128.load32_splat", g.at(lse, r)));
            f.set(gv, load("v128.load32_splat", g.at(gl, r)));
            rowLoopSteps(f, g, c, cols, (step) =>
              step.st(
                or,
                op("f32x4.mul", expV(f, op("f32x4.sub", step.ld(xr), lv), mo), gv),
              ));
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
