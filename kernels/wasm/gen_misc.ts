/**
 * Generators of the remaining kernels: fill, cast, gather, scatter-add, the dropout mask (the
 * counter-based hash of `hashUniform`, bit for bit) and the AdamW step. Flat kernels take an
 * element range [i0, i1) so that threads can split them.
 *
 * @module
 */

import {
  type Expr,
  type FunctionBuilder,
  i32,
  i32x4,
  lane,
  load,
  type Local,
  memoryCopy,
  memoryFill,
  type ModuleBuilder,
  op,
  store,
} from "./builder.ts";
import type { Gen } from "./gen.ts";
import { ki32 } from "./gen_math.ts";

/**
 * Emits a flat loop over elements [i0, i1): `vec(i)` for each aligned group of four, `one(i)`
 * for the leftovers. Groups start at i0 (alignment of addresses is not needed in wasm).
 */
function flat(
  f: FunctionBuilder,
  i: Local,
  i0: Local,
  i1: Local,
  vec: () => void,
  one: () => void,
): void {
  const end4 = f.local("i32");
  f.set(end4, op("i32.sub", i1, op("i32.and", op("i32.sub", i1, i0), i32(3))));
  f.forRange(i, i0, end4, 4, vec);
  f.forRange(i, end4, i1, 1, one);
}

/** lowbias32 on four i32 lanes. */
function hash32x4(f: FunctionBuilder, x: Local): void {
  f.set(x, op("v128.xor", x, op("i32x4.shr_u", x, i32(16))));
  f.set(x, op("i32x4.mul", x, ki32(f, 0x7feb352d)));
  f.set(x, op("v128.xor", x, op("i32x4.shr_u", x, i32(15))));
  f.set(x, op("i32x4.mul", x, ki32(f, 0x846ca68b)));
  f.set(x, op("v128.xor", x, op("i32x4.shr_u", x, i32(16))));
}

/**
 * The dropout keep factor of four i32 counters `idx` (`hashUniform` bit for bit): `scalev`'s lane
 * where `(h(seed, i) >>> 8) ≥ thrv`, else 0. Emits the hash into the current function (through
 * the scratch local `x`) and returns the f32x4 expression. Shared by the dropout mask and the
 * fused attention kernels, so both draw the same mask for a seed.
 */
export function dropoutKeepV(
  f: FunctionBuilder,
  x: Local,
  idx: Expr,
  seedv: Local,
  thrv: Local,
  scalev: Local,
): Expr {
  // x = imul(i, φ) ^ seed; x = h(x); x = h(x + seed); keep (x >>> 8) ≥ threshold.
  f.set(x, op("v128.xor", op("i32x4.mul", idx, ki32(f, 0x9e3779b9)), seedv));
  hash32x4(f, x);
  f.set(x, op("i32x4.add", x, seedv));
  hash32x4(f, x);
  return op("v128.and", op("i32x4.ge_u", op("i32x4.shr_u", x, i32(8)), thrv), scalev);
}

/** Adds the misc kernels to the module. */
export function addMiscKernels(mod: ModuleBuilder, g: Gen): void {
  const P = g.ptrParam;
  const I = "i32";

  // fill(out, bits, i0, i1): 4-byte pattern `bits` into out[i0..i1)
  mod.addFunction("fill", [P, I, I, I], [], (f, outP, bits, i0, i1) => {
    const out = g.ptrLocal(f, outP);
    const i = f.local(I);
    const v = f.local("v128");
    f.set(v, op("i32x4.splat", bits));
    flat(
      f,
      i,
      i0,
      i1,
      () => f.do(store("v128.store", g.at(out, i), v, 0, 0)),
      () => f.do(store("i32.store", g.at(out, i), bits)),
    );
  });

  // cast(x, out, toI32, i0, i1): f32 → i32 truncates toward zero (saturating; NaN → 0)
  mod.addFunction("cast", [P, P, I, I, I], [], (f, xP, outP, toI32, i0, i1) => {
    const x = g.ptrLocal(f, xP);
    const out = g.ptrLocal(f, outP);
    const i = f.local(I);
    f.if(
      toI32,
      () =>
        flat(
          f,
          i,
          i0,
          i1,
          () =>
            f.do(store(
              "v128.store",
              g.at(out, i),
              op("i32x4.trunc_sat_f32x4_s", load("v128.load", g.at(x, i), 0, 0)),
              0,
              0,
            )),
          () =>
            f.do(
              store(
                "i32.store",
                g.at(out, i),
                op("i32.trunc_sat_f32_s", load("f32.load", g.at(x, i))),
              ),
            ),
        ),
      () =>
        flat(
          f,
          i,
          i0,
          i1,
          () =>
            f.do(store(
              "v128.store",
              g.at(out, i),
              op("f32x4.convert_i32x4_s", load("v128.load", g.at(x, i), 0, 0)),
              0,
              0,
            )),
          () =>
            f.do(
              store(
                "f32.store",
                g.at(out, i),
                op("f32.convert_i32_s", load("i32.load", g.at(x, i))),
              ),
            ),
        ),
    );
  });

  // gather(table, ids, out, cols, i0, i1): out[i, :] = table[ids[i], :] (ids checked by the host)
  mod.addFunction("gather", [P, P, P, I, I, I], [], (f, tP, idsP, outP, cols, i0, i1) => {
    const table = g.ptrLocal(f, tP);
    const ids = g.ptrLocal(f, idsP);
    const out = g.ptrLocal(f, outP);
    const i = f.local(I);
    const rowB = f.local(g.ptr);
    f.set(rowB, g.idx(cols));
    f.forRange(i, i0, i1, 1, () => {
      f.do(memoryCopy(
        g.padd(out, g.pmul(g.idx(i, 0), rowB)),
        g.padd(table, g.pmul(g.idx(load("i32.load", g.at(ids, i)), 0), rowB)),
        rowB,
      ));
    });
  });

  // scatter_add(g, ids, out, n, cols, c0, c1): out[ids[i], c0..c1) += g[i, c0..c1) in order of i;
  // out must be zeroed. Threads split columns, so each element keeps the same summation order.
  mod.addFunction(
    "scatter_add",
    [P, P, P, I, I, I, I],
    [],
    (f, gP, idsP, outP, n, cols, c0, c1) => {
      const gp = g.ptrLocal(f, gP);
      const ids = g.ptrLocal(f, idsP);
      const out = g.ptrLocal(f, outP);
      const i = f.local(I);
      const c = f.local(I);
      const src = f.local(g.ptr);
      const dst = f.local(g.ptr);
      f.forRange(i, i32(0), n, 1, () => {
        f.set(src, g.padd(gp, g.pmul(g.idx(i), g.idx(cols, 0))));
        f.set(dst, g.padd(out, g.pmul(g.idx(load("i32.load", g.at(ids, i))), g.idx(cols, 0))));
        flat(
          f,
          c,
          c0,
          c1,
          () =>
            f.do(store(
              "v128.store",
              g.at(dst, c),
              op(
                "f32x4.add",
                load("v128.load", g.at(dst, c), 0, 0),
                load("v128.load", g.at(src, c), 0, 0),
              ),
              0,
              0,
            )),
          () =>
            f.do(store(
              "f32.store",
              g.at(dst, c),
              op("f32.add", load("f32.load", g.at(dst, c)), load("f32.load", g.at(src, c))),
            )),
        );
      });
    },
  );

  // zero(out, bytes)
  mod.addFunction("zero", [P, P], [], (f, outP, nP) => {
    f.do(memoryFill(g.fromParam(outP), i32(0), g.fromParam(nP)));
  });

  // dropout(out, threshold, scale, seed, i0, i1): out[i] = (h(seed, i) >>> 8) ≥ threshold ? scale : 0
  mod.addFunction("dropout", [P, I, "f32", I, I, I], [], (f, outP, thr, scale, seed, i0, i1) => {
    const out = g.ptrLocal(f, outP);
    const i = f.local(I);
    const x = f.local("v128");
    const sv = f.local("v128");
    const tv = f.local("v128");
    const seedv = f.local("v128");
    f.set(sv, op("f32x4.splat", scale));
    f.set(tv, op("i32x4.splat", thr));
    f.set(seedv, op("i32x4.splat", seed));
    const maskOf = (idx: Expr): Expr => dropoutKeepV(f, x, idx, seedv, tv, sv);
    flat(
      f,
      i,
      i0,
      i1,
      () =>
        f.do(store(
          "v128.store",
          g.at(out, i),
          maskOf(
            op("i32x4.add", op("i32x4.splat", i), f.hoisted("iota4", "v128", i32x4(0, 1, 2, 3))),
          ),
          0,
          0,
        )),
      () =>
        f.do(
          store(
            "f32.store",
            g.at(out, i),
            lane("f32x4.extract_lane", maskOf(op("i32x4.splat", i)), 0),
          ),
        ),
    );
  });

  // adamw(p, g, m, v, i0, i1, decay, b1, c1, b2, c2, stepSize, invBc2, eps), in place:
  //   p ← p·decay; m ← b1·m + c1·g; v ← b2·v + c2·g²; p ← p − stepSize·m/(√(v·invBc2) + eps)
  mod.addFunction(
    "adamw",
    [P, P, P, P, I, I, "f32", "f32", "f32", "f32", "f32", "f32", "f32", "f32"],
    [],
    (f, pP, gP, mP, vP, i0, i1, decay, b1, c1, b2, c2, step, invBc2, eps) => {
      const pp = g.ptrLocal(f, pP);
      const gp = g.ptrLocal(f, gP);
      const mp = g.ptrLocal(f, mP);
      const vp = g.ptrLocal(f, vP);
      const i = f.local(I);
      const S = [decay, b1, c1, b2, c2, step, invBc2, eps].map((s) => {
        const l = f.local("v128");
        f.set(l, op("f32x4.splat", s));
        return l;
      });
      const [dv, b1v, c1v, b2v, c2v, stv, ibv, epv] = S;
      const gv = f.local("v128");
      const mv = f.local("v128");
      const vv = f.local("v128");
      const pv = f.local("v128");
      const upd = () => {
        f.set(mv, op("f32x4.add", op("f32x4.mul", b1v, mv), op("f32x4.mul", c1v, gv)));
        f.set(
          vv,
          op("f32x4.add", op("f32x4.mul", b2v, vv), op("f32x4.mul", c2v, op("f32x4.mul", gv, gv))),
        );
        const denom = op("f32x4.add", op("f32x4.sqrt", op("f32x4.mul", vv, ibv)), epv);
        f.set(
          pv,
          op(
            "f32x4.sub",
            op("f32x4.mul", pv, dv),
            op("f32x4.mul", stv, op("f32x4.div", mv, denom)),
          ),
        );
      };
      flat(
        f,
        i,
        i0,
        i1,
        () => {
          f.set(gv, load("v128.load", g.at(gp, i), 0, 0));
          f.set(mv, load("v128.load", g.at(mp, i), 0, 0));
          f.set(vv, load("v128.load", g.at(vp, i), 0, 0));
          f.set(pv, load("v128.load", g.at(pp, i), 0, 0));
          upd();
          f.do(store("v128.store", g.at(mp, i), mv, 0, 0));
          f.do(store("v128.store", g.at(vp, i), vv, 0, 0));
          f.do(store("v128.store", g.at(pp, i), pv, 0, 0));
        },
        () => {
          f.set(gv, load("v128.load32_splat", g.at(gp, i)));
          f.set(mv, load("v128.load32_splat", g.at(mp, i)));
          f.set(vv, load("v128.load32_splat", g.at(vp, i)));
          f.set(pv, load("v128.load32_splat", g.at(pp, i)));
          upd();
          f.do(store("f32.store", g.at(mp, i), lane("f32x4.extract_lane", mv, 0)));
          f.do(store("f32.store", g.at(vp, i), lane("f32x4.extract_lane", vv, 0)));
          f.do(store("f32.store", g.at(pp, i), lane("f32x4.extract_lane", pv, 0)));
        },
      );
    },
  );
}
