/**
 * Generators of the layer-norm row kernels: forward, backward over rows [r0, r1) with f64
 * accumulators of the weight and bias gradients, and the finishing sum of those accumulators.
 *
 * @module
 */

import {
  type Expr,
  f64,
  f64x2,
  i32,
  lane,
  load,
  type Local,
  type ModuleBuilder,
  op,
  shuffle32,
  store,
} from "./builder.ts";
import type { Gen } from "./gen.ts";
import { F64Sum, rowLoop, rowLoopSteps, rowPointers, rowSum, vl } from "./gen_row_loops.ts";

/** Adds `layernorm`, `layernorm_bwd` and `acc_finish` to the module. */
export function addLayerNormKernels(mod: ModuleBuilder, g: Gen): void {
  const P = g.ptrParam;
  const I = "i32";

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
      const sum = F64Sum.local(f);
      const { a0, a1, s: sc } = sum;
      const mu = f.local("f64");
      const muv = f.local("v128");
      const rs = f.local("f64");
      const mu32 = f.local("v128");
      const rs32 = f.local("v128");
      const t = f.local("v128");
      const d = f.local("f64");
      f.forRange(r, r0, r1, 1, () => {
        rowPointers(f, g, r, cols, [[xr, x], [yr, y]]);
        sum.zero(f);
        rowSum(f, g, c, cols, xr, sum);
        f.set(mu, op("f64.div", sum.total(), op("f64.convert_i32_u", cols)));
        // Second pass: Σ(x − μ)² in f64.
        f.set(muv, op("f64x2.splat", mu));
        sum.zero(f);
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
              op("f64.add", op("f64.div", sum.total(), op("f64.convert_i32_u", cols)), eps),
            ),
          ),
        );
        f.do(store("f32.store", g.at(mean, r), op("f32.demote_f64", mu)));
        f.do(store("f32.store", g.at(rstd, r), op("f32.demote_f64", rs)));
        f.set(mu32, op("f32x4.splat", op("f32.demote_f64", mu)));
        f.set(rs32, op("f32x4.splat", op("f32.demote_f64", rs)));
        // y = (x − μ)·rstd·w + b
        rowLoopSteps(f, g, c, cols, (step) =>
          step.st(
            yr,
            op(
              "f32x4.add",
              op(
                "f32x4.mul",
                op("f32x4.mul", op("f32x4.sub", step.ld(xr), mu32), rs32),
                step.ld(w),
              ),
              step.ld(b),
            ),
          ));
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
      // Σ g·w and Σ g·w·x̂ over the row.
      const sumA = new F64Sum(a0, a1, s1);
      const sumB = new F64Sum(b0, b1, s2);
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
        rowPointers(f, g, r, cols, [[xr, x], [gr, gy], [or, gx]]);
        f.set(mv, load("v128.load32_splat", g.at(mean, r)));
        f.set(rv, load("v128.load32_splat", g.at(rstd, r)));
        // (Zeroed in this order, which the sums' own zero() would not keep.)
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
        rowLoopSteps(f, g, c, cols, (step) => {
          stats(step.ld);
          sumA.add(f, step, gw);
          sumB.add(f, step, op("f32x4.mul", gw, xh));
          const pw = g.padd(acc, g.idx(c, 3));
          const pb = g.padd(accB, g.idx(c, 3));
          if (step.vector) {
            const gx2 = vl(f, op("f32x4.mul", gv, xh));
            addAcc(pw, gx2, false, 0);
            addAcc(pw, gx2, true, 16);
            addAcc(pb, gv, false, 0);
            addAcc(pb, gv, true, 16);
          } else {
            const l0 = (v: Expr) => op("f64.promote_f32", lane("f32x4.extract_lane", v, 0));
            f.do(
              store(
                "f64.store",
                pw,
                op("f64.add", load("f64.load", pw), l0(op("f32x4.mul", gv, xh))),
              ),
            );
            f.do(store("f64.store", pb, op("f64.add", load("f64.load", pb), l0(gv))));
          }
        });
        // gx = rstd·(g·w − mean(g·w) − x̂·mean(g·w·x̂))
        f.set(m1, op("f32x4.splat", op("f32.demote_f64", op("f64.mul", sumA.total(), inv))));
        f.set(m2, op("f32x4.splat", op("f32.demote_f64", op("f64.mul", sumB.total(), inv))));
        rowLoopSteps(f, g, c, cols, (step) => {
          stats(step.ld);
          step.st(
            or,
            op("f32x4.mul", rv, op("f32x4.sub", op("f32x4.sub", gw, m1), op("f32x4.mul", xh, m2))),
          );
        });
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
}
