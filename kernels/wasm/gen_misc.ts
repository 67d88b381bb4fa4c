/**
 * Generators of the remaining kernels: fill, cast, gather, scatter-add, and the dropout mask and
 * the AdamW step (both compiled from their expressions in `../expr.ts`: `DROPOUT_MASK` draws
 * `hashUniform` bit for bit). Flat kernels take an element range [i0, i1) so that threads can
 * split them.
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
  type ValType,
} from "./builder.ts";
import type { Gen } from "./gen.ts";
import type { MathOptions } from "./gen_math.ts";
import { emitExprs } from "./gen_expr.ts";
import { ADAMW, DROPOUT_MASK, type MapKernel, useCounts } from "../expr.ts";

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

  // dropout(mask, i0, i1, keep, seed, threshold): the dropout mask's expression
  addMapKernel(mod, g, "dropout", DROPOUT_MASK);
  addMapKernel(mod, g, "adamw", ADAMW);
}

/**
 * A flat kernel `name(in_0, ..., in_k, out_0, ..., i0, i1, scalar_0, ..., u32_0, ...)` computing
 * a {@link MapKernel} over elements [i0, i1): four at a time, then one at a time through the
 * same vector code. Outputs that are inputs are updated in place; the others (`out_j`) come after
 * the inputs. Scalars are f32, integer scalars i32; `index` is the element's position.
 */
function addMapKernel(mod: ModuleBuilder, g: Gen, name: string, k: MapKernel): void {
  const P = g.ptrParam, I = "i32" as const;
  const outs = Object.keys(k.outputs);
  const u32s = k.u32Scalars ?? [];
  const buffers = [...k.inputs, ...outs.filter((o) => !k.inputs.includes(o))];
  const params: ValType[] = [
    ...buffers.map(() => P),
    I,
    I,
    ...k.scalars.map(() => "f32" as const),
    ...u32s.map(() => I),
  ];
  const usesIndex = [...useCounts(...outs.map((o) => k.outputs[o])).keys()].some((n) =>
    n.kind === "u32input" && n.name === "index"
  );
  mod.addFunction(name, params, [], (f, ...ps) => {
    const ptrs = buffers.map((_, j) => g.ptrLocal(f, ps[j]));
    const [i0, i1] = [ps[buffers.length], ps[buffers.length + 1]];
    const env: Record<string, Expr> = {};
    k.scalars.forEach((s, j) => {
      const l = f.local("v128");
      f.set(l, op("f32x4.splat", ps[buffers.length + 2 + j]));
      env[s] = l;
    });
    u32s.forEach((s, j) => {
      const l = f.local("v128");
      f.set(l, op("i32x4.splat", ps[buffers.length + 2 + k.scalars.length + j]));
      env[s] = l;
    });
    const vals = k.inputs.map((s) => (env[s] = f.local("v128")) as Local);
    const mo: MathOptions = { fma: g.opts.relaxed };
    const i = f.local(I);
    const body = (vector: boolean) => () => {
      vals.forEach((v, j) =>
        f.set(
          v,
          load(
            vector ? "v128.load" : "v128.load32_splat",
            g.at(ptrs[j], i),
            0,
            vector ? 0 : undefined,
          ),
        )
      );
      if (usesIndex) {
        env.index = vector
          ? op("i32x4.add", op("i32x4.splat", i), f.hoisted("iota4", "v128", i32x4(0, 1, 2, 3)))
          : op("i32x4.splat", i);
      }
      const res = emitExprs(f, outs.map((o) => k.outputs[o]), env, mo);
      outs.forEach((o, j) => {
        const at = g.at(ptrs[buffers.indexOf(o)], i);
        if (vector) f.do(store("v128.store", at, res[j], 0, 0));
        else f.do(store("f32.store", at, lane("f32x4.extract_lane", res[j], 0)));
      });
    };
    flat(f, i, i0, i1, body(true), body(false));
  });
}
