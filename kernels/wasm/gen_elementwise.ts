/**
 * Generators of the elementwise kernels: unary, binary and where over strided views, and the
 * strided copy. The unary and binary ops' arithmetic is the one table of `../expr.ts`, compiled
 * to f32x4 code by `gen_expr.ts`.
 *
 * Every op has a *row kernel* with one uniform signature
 *   (out, outStride, x0, s0, x1, s1, x2, s2, n, param: f32)
 * that processes one row of `n` elements, four at a time: operands with stride 1 are loaded as
 * vectors, stride 0 is a splat, other strides are gathered lane by lane, and a loop specialised
 * for "all contiguous" handles the common case. The 1–3 leftover elements go through the same
 * vector code on splatted scalars, so every element gets bit-identical arithmetic.
 *
 * One *driver* walks the outer dimensions with an odometer and calls the row kernel through the
 * function table. Its parameter block (written by the host) holds, as i32:
 *   [0] rank R, [1 + d] shape, [1 + 16·(1+k) + d] strides of operand k (k = 0 output, 1..3
 *   inputs), [1 + 16·5 + d] counters (scratch).
 * The host first merges dimensions that are contiguous for every operand, so most calls are a
 * single row.
 *
 * @module
 */

import {
  callIndirect,
  type Expr,
  type FunctionBuilder,
  type FunctionRef,
  i32,
  lane,
  load,
  type Local,
  memoryCopy,
  type ModuleBuilder,
  op,
  store,
  type ValType,
} from "./builder.ts";
import type { Gen } from "./gen.ts";
import { emitExpr } from "./gen_expr.ts";
import { kf32, type MathOptions } from "./gen_math.ts";
import { BINARY_EXPRS, isHeavy, mul, type Num, UNARY_EXPRS, X } from "../expr.ts";

/** Maximum rank the driver handles after dimension merging. */
export const EW_MAX_RANK = 16;
/** Bytes of one driver parameter block. */
export const EW_PARAM_BYTES = 4 * (1 + EW_MAX_RANK * 6);

/**
 * Unary row kernels: the backend's ops (`../expr.ts`) plus the exact powers that `powScalar`
 * specialises to.
 */
export const UNARY_KERNEL_EXPRS: Readonly<Record<string, Num>> = {
  ...UNARY_EXPRS,
  ident: X,
  sqr: mul(X, X),
  cube: mul(mul(X, X), X),
};

/**
 * Row kernels whose arithmetic calls a transcendental function (`unary:exp`, `binary:pow`, ...):
 * the dispatch splits them between threads at a lower size.
 */
export const HEAVY_KERNELS: ReadonlySet<string> = new Set([
  ...Object.entries(UNARY_KERNEL_EXPRS).filter(([, e]) => isHeavy(e)).map(([k]) => `unary:${k}`),
  ...Object.entries(BINARY_EXPRS).filter(([, e]) => isHeavy(e)).map(([k]) => `binary:${k}`),
]);

type VecFn = (f: FunctionBuilder, x: Local[], p: Local, o: MathOptions) => Expr;

const vecOf = (e: Num): VecFn => (f, [x, y], p, o) => emitExpr(f, e, { x, y, param: p }, o);

/** The uniform row-kernel parameter types for a Gen. */
export function rowParamTypes(g: Gen): ValType[] {
  const P = g.ptrParam;
  return [P, "i32", P, "i32", P, "i32", P, "i32", "i32", "f32"];
}

/** Indices into the function table of each row kernel, and the driver. */
export interface ElementwiseKernels {
  /** Table slot of each row kernel by name (`unary:exp`, `binary:add`, `where:f32`, `copy`). */
  slots: Map<string, number>;
  /** The exported driver. */
  driver: FunctionRef;
  /** All row kernels, in table order. */
  table: FunctionRef[];
}

/**
 * Adds the row kernels and the driver (exported as `ew`) to the module. The caller must put
 * `table` into the module's function table (at index 0 onward).
 */
export function addElementwise(mod: ModuleBuilder, g: Gen): ElementwiseKernels {
  const slots = new Map<string, number>();
  const table: FunctionRef[] = [];
  const add = (key: string, nIn: number, vec: VecFn) => {
    slots.set(key, table.length);
    table.push(addRow(mod, g, nIn, vec));
  };
  for (const [k, e] of Object.entries(UNARY_KERNEL_EXPRS)) add(`unary:${k}`, 1, vecOf(e));
  for (const [k, e] of Object.entries(BINARY_EXPRS)) add(`binary:${k}`, 2, vecOf(e));
  const whereVec = (i32cond: boolean): VecFn => (f, [c, a, b]) =>
    op(
      "v128.bitselect",
      a,
      b,
      i32cond ? op("i32x4.ne", c, kf32(f, 0)) : op("f32x4.ne", c, kf32(f, 0)),
    );
  add("where:f32", 3, whereVec(false));
  add("where:i32", 3, whereVec(true));
  slots.set("copy", table.length);
  table.push(addCopyRow(mod, g));
  const driver = addDriver(mod, g, mod.typeIndex(rowParamTypes(g), []));
  return { slots, driver, table };
}

/** A row kernel applying `vec` to `nIn` inputs; the output is contiguous. */
function addRow(mod: ModuleBuilder, g: Gen, nIn: number, vec: VecFn): FunctionRef {
  const P = g.ptr;
  return mod.addFunction(undefined, rowParamTypes(g), [], (f, ...ps) => {
    const [outP, , x0P, s0, x1P, s1, x2P, s2, n, param] = ps;
    const out = g.ptrLocal(f, outP);
    const xs = [g.ptrLocal(f, x0P), g.ptrLocal(f, x1P), g.ptrLocal(f, x2P)].slice(0, nIn);
    const ss = [s0, s1, s2].slice(0, nIn);
    const sb = ss.map((s) => {
      const l = f.local(P);
      f.set(l, g.sidx(s));
      return l;
    });
    const pv = f.local("v128");
    f.set(pv, op("f32x4.splat", param));
    const mo: MathOptions = { fma: g.opts.relaxed };
    const i = f.local("i32");
    const n4 = f.local("i32");
    f.set(n4, op("i32.and", n, i32(~3)));
    const vin = xs.map(() => f.local("v128"));
    const allUnit = ss.reduce<Expr>(
      (acc, s) => op("i32.and", acc, op("i32.eq", s, i32(1))),
      i32(1),
    );
    f.if(
      allUnit,
      () => {
        f.forRange(i, i32(0), n4, 4, () => {
          for (let k = 0; k < nIn; k++) f.set(vin[k], load("v128.load", xs[k], 0, 0));
          f.do(store("v128.store", out, vec(f, vin, pv, mo), 0, 0));
          for (let k = 0; k < nIn; k++) f.set(xs[k], g.padd(xs[k], g.pconst(16)));
          f.set(out, g.padd(out, g.pconst(16)));
        });
      },
      () => {
        const q = f.local(P);
        f.forRange(i, i32(0), n4, 4, () => {
          for (let k = 0; k < nIn; k++) {
            loadStrided(f, g, vin[k], xs[k], ss[k], sb[k], q);
            f.set(
              xs[k],
              g.padd(xs[k], op(g.ptr === "i64" ? "i64.shl" : "i32.shl", sb[k], g.pconst(2))),
            );
          }
          f.do(store("v128.store", out, vec(f, vin, pv, mo), 0, 0));
          f.set(out, g.padd(out, g.pconst(16)));
        });
      },
    );
    // Tail: one element at a time through the same vector code.
    f.forRange(i, n4, n, 1, () => {
      for (let k = 0; k < nIn; k++) {
        f.set(vin[k], load("v128.load32_splat", xs[k]));
        f.set(xs[k], g.padd(xs[k], sb[k]));
      }
      f.do(store("f32.store", out, lane("f32x4.extract_lane", vec(f, vin, pv, mo), 0)));
      f.set(out, g.padd(out, g.pconst(4)));
    });
  });
}

/** v ← four elements at p with element stride s (byte stride sb): vector, splat or gather. */
function loadStrided(
  f: FunctionBuilder,
  g: Gen,
  v: Local,
  p: Local,
  s: Local,
  sb: Local,
  q: Local,
) {
  f.if(
    op("i32.eq", s, i32(1)),
    () => f.set(v, load("v128.load", p, 0, 0)),
    () =>
      f.if(
        op("i32.eqz", s),
        () => f.set(v, load("v128.load32_splat", p)),
        () => {
          f.set(v, load("v128.load32_splat", p));
          f.set(q, g.padd(p, sb));
          f.set(v, lane("f32x4.replace_lane", v, 1, load("f32.load", q)));
          f.set(q, g.padd(q, sb));
          f.set(v, lane("f32x4.replace_lane", v, 2, load("f32.load", q)));
          f.set(q, g.padd(q, sb));
          f.set(v, lane("f32x4.replace_lane", v, 3, load("f32.load", q)));
        },
      ),
  );
}

/** Strided copy of 4-byte elements (bit patterns; works for f32 and i32). */
function addCopyRow(mod: ModuleBuilder, g: Gen): FunctionRef {
  const P = g.ptr;
  return mod.addFunction(undefined, rowParamTypes(g), [], (f, ...ps) => {
    const [outP, os, x0P, s0, , , , , n] = ps;
    const out = g.ptrLocal(f, outP);
    const x = g.ptrLocal(f, x0P);
    const ob = f.local(P);
    const xb = f.local(P);
    f.set(ob, g.sidx(os));
    f.set(xb, g.sidx(s0));
    const i = f.local("i32");
    f.if(
      op("i32.and", op("i32.eq", os, i32(1)), op("i32.eq", s0, i32(1))),
      () => {
        f.do(memoryCopy(out, x, g.idx(n)));
      },
      () => {
        f.forRange(i, i32(0), n, 1, () => {
          f.do(store("i32.store", out, load("i32.load", x)));
          f.set(out, g.padd(out, ob));
          f.set(x, g.padd(x, xb));
        });
      },
    );
  });
}

/**
 * The driver: `ew(slot, params, out, x0, x1, x2, param, o0, o1)` runs rows o0..o1 of the outer
 * index space (row-major over dims 0..R−2) through row kernel `slot`.
 */
function addDriver(mod: ModuleBuilder, g: Gen, rowType: number): FunctionRef {
  const PP = g.ptrParam;
  return mod.addFunction(
    "ew",
    ["i32", PP, PP, PP, PP, PP, "f32", "i32", "i32"],
    [],
    (f, slot, ppP, outP, x0P, x1P, x2P, param, o0, o1) => {
      const pp = g.ptrLocal(f, ppP);
      const ptr = [g.ptrLocal(f, outP), g.ptrLocal(f, x0P), g.ptrLocal(f, x1P), g.ptrLocal(f, x2P)];
      const R = f.local("i32");
      const n = f.local("i32");
      const d = f.local("i32");
      const o = f.local("i32");
      const rem = f.local("i32");
      const c = f.local("i32");
      const inner = [0, 1, 2, 3].map(() => f.local("i32"));
      f.set(R, load("i32.load", pp));
      const shapeAt = (dim: Expr) => g.padd(pp, g.idx(op("i32.add", dim, i32(1))));
      const strideAt = (k: number, dim: Expr) =>
        g.padd(pp, g.idx(op("i32.add", dim, i32(1 + EW_MAX_RANK * (1 + k)))));
      const cntAt = (dim: Expr) => g.padd(pp, g.idx(op("i32.add", dim, i32(1 + EW_MAX_RANK * 5))));
      const last = op("i32.sub", R, i32(1));
      f.set(n, load("i32.load", shapeAt(last)));
      for (let k = 0; k < 4; k++) f.set(inner[k], load("i32.load", strideAt(k, last)));
      // Counters of dims 0..R−2 for row o0 (row-major decomposition), pointers advanced to it.
      f.set(rem, o0);
      f.set(d, op("i32.sub", R, i32(2)));
      f.block((brk) => {
        f.loop((cont) => {
          f.brIf(brk, op("i32.lt_s", d, i32(0)));
          const sh = f.local("i32");
          f.set(sh, load("i32.load", shapeAt(d)));
          f.set(c, op("i32.rem_u", rem, sh));
          f.set(rem, op("i32.div_u", rem, sh));
          f.do(store("i32.store", cntAt(d), c));
          for (let k = 0; k < 4; k++) {
            f.set(
              ptr[k],
              g.padd(ptr[k], g.sidx(op("i32.mul", c, load("i32.load", strideAt(k, d))))),
            );
          }
          f.set(d, op("i32.sub", d, i32(1)));
          f.br(cont);
        });
      });
      f.forRange(o, o0, o1, 1, () => {
        f.do(callIndirect(
          rowType,
          slot,
          g.opts.mem64 ? op("f64.convert_i64_u", ptr[0]) : ptr[0],
          inner[0],
          g.opts.mem64 ? op("f64.convert_i64_u", ptr[1]) : ptr[1],
          inner[1],
          g.opts.mem64 ? op("f64.convert_i64_u", ptr[2]) : ptr[2],
          inner[2],
          g.opts.mem64 ? op("f64.convert_i64_u", ptr[3]) : ptr[3],
          inner[3],
          n,
          param,
        ));
        // Odometer step over dims R−2..0.
        f.set(d, op("i32.sub", R, i32(2)));
        f.block((brk) => {
          f.loop((cont) => {
            f.brIf(brk, op("i32.lt_s", d, i32(0)));
            f.set(c, op("i32.add", load("i32.load", cntAt(d)), i32(1)));
            for (let k = 0; k < 4; k++) {
              f.set(ptr[k], g.padd(ptr[k], g.sidx(load("i32.load", strideAt(k, d)))));
            }
            f.if(op("i32.lt_s", c, load("i32.load", shapeAt(d))), () => {
              f.do(store("i32.store", cntAt(d), c));
              f.br(brk);
            });
            f.do(store("i32.store", cntAt(d), i32(0)));
            for (let k = 0; k < 4; k++) {
              f.set(
                ptr[k],
                g.psub(
                  ptr[k],
                  g.sidx(op("i32.mul", c, load("i32.load", strideAt(k, d)))),
                ),
              );
            }
            f.set(d, op("i32.sub", d, i32(1)));
            f.br(cont);
          });
        });
      });
    },
  );
}
