/**
 * Generators of the small-m matrix products (m ≤ 4 rows: token-by-token generation), which skip
 * the packing of the general matmul: packing B would cost as much as the product itself.
 *
 * - `gemv_n{M}(a, b, c, k, n, n0, n1)`: C[M, n] = A[M, k]·B[k, n], B row-major. Columns in blocks
 *   of 8 (two vectors), walking down B; leftover columns one at a time.
 * - `gemv_t{M}(a, b, c, k, n, n0, n1)`: C[M, n] = A[M, k]·Bᵀ with B stored [n, k]: dot products
 *   along k, two columns at a time.
 *
 * A is row-major [M, k] and C row-major [M, n]; threads split the columns [n0, n1).
 *
 * @module
 */

import {
  type Expr,
  f32,
  i32,
  lane,
  load,
  type Local,
  type ModuleBuilder,
  op,
  store,
} from "./builder.ts";
import type { Gen } from "./gen.ts";
import { kf32 } from "./gen_math.ts";

/** Largest row count handled by the small-m kernels. */
export const GEMV_MAX_M = 4;

function hsum(v: Local): Expr {
  return op(
    "f32.add",
    op("f32.add", lane("f32x4.extract_lane", v, 0), lane("f32x4.extract_lane", v, 1)),
    op("f32.add", lane("f32x4.extract_lane", v, 2), lane("f32x4.extract_lane", v, 3)),
  );
}

/** Adds gemv_n1..4 and gemv_t1..4 to the module. */
export function addGemv(mod: ModuleBuilder, g: Gen): string[] {
  const P = g.ptrParam;
  const I = "i32";
  const names: string[] = [];
  for (let M = 1; M <= GEMV_MAX_M; M++) {
    names.push(`gemv_n${M}`, `gemv_t${M}`);
    // ---- B row-major [k, n] ----
    mod.addFunction(`gemv_n${M}`, [P, P, P, I, I, I, I], [], (f, aP, bP, cP, k, n, n0, n1) => {
      const a = g.ptrLocal(f, aP);
      const b = g.ptrLocal(f, bP);
      const c = g.ptrLocal(f, cP);
      const j = f.local(I);
      const p = f.local(I);
      const rowB = f.local(g.ptr);
      const kB = f.local(g.ptr);
      const bp = f.local(g.ptr);
      const ap = f.local(g.ptr);
      const jEnd8 = f.local(I);
      f.set(rowB, g.idx(n));
      f.set(kB, g.idx(k));
      f.set(jEnd8, op("i32.sub", n1, op("i32.and", op("i32.sub", n1, n0), i32(7))));
      const acc: Local[][] = [];
      for (let i = 0; i < M; i++) acc.push([f.local("v128"), f.local("v128")]);
      const b0 = f.local("v128");
      const b1 = f.local("v128");
      const av = f.local("v128");
      const sc: Local[] = [];
      for (let i = 0; i < M; i++) sc.push(f.local("f32"));
      const zero = kf32(f, 0);
      f.forRange(j, n0, jEnd8, 8, () => {
        for (let i = 0; i < M; i++) for (const v of acc[i]) f.set(v, zero);
        f.set(bp, g.at(b, j));
        f.set(ap, a);
        f.forRange(p, i32(0), k, 1, () => {
          f.set(b0, load("v128.load", bp, 0, 0));
          f.set(b1, load("v128.load", bp, 16, 0));
          for (let i = 0; i < M; i++) {
            f.set(av, load("v128.load32_splat", g.padd(ap, g.pmul(kB, g.pconst(i)))));
            f.set(acc[i][0], g.madd(av, b0, acc[i][0]));
            f.set(acc[i][1], g.madd(av, b1, acc[i][1]));
          }
          f.set(bp, g.padd(bp, rowB));
          f.set(ap, g.padd(ap, g.pconst(4)));
        });
        for (let i = 0; i < M; i++) {
          const dst = g.at(g.padd(c, g.pmul(rowB, g.pconst(i))), j);
          f.do(store("v128.store", dst, acc[i][0], 0, 0));
          f.do(
            store("v128.store", g.at(g.padd(c, g.pmul(rowB, g.pconst(i))), j), acc[i][1], 16, 0),
          );
        }
      });
      // Leftover columns: scalar dot products down the column.
      f.forRange(j, jEnd8, n1, 1, () => {
        for (let i = 0; i < M; i++) f.set(sc[i], f32(0));
        f.set(bp, g.at(b, j));
        f.set(ap, a);
        f.forRange(p, i32(0), k, 1, () => {
          for (let i = 0; i < M; i++) {
            f.set(
              sc[i],
              op(
                "f32.add",
                sc[i],
                op(
                  "f32.mul",
                  load("f32.load", g.padd(ap, g.pmul(kB, g.pconst(i)))),
                  load("f32.load", bp),
                ),
              ),
            );
          }
          f.set(bp, g.padd(bp, rowB));
          f.set(ap, g.padd(ap, g.pconst(4)));
        });
        for (let i = 0; i < M; i++) {
          f.do(store("f32.store", g.at(g.padd(c, g.pmul(rowB, g.pconst(i))), j), sc[i]));
        }
      });
    });

    // ---- B stored [n, k] (used transposed) ----
    mod.addFunction(`gemv_t${M}`, [P, P, P, I, I, I, I], [], (f, aP, bP, cP, k, n, n0, n1) => {
      const a = g.ptrLocal(f, aP);
      const b = g.ptrLocal(f, bP);
      const c = g.ptrLocal(f, cP);
      const j = f.local(I);
      const p = f.local(I);
      const kB = f.local(g.ptr);
      const rowC = f.local(g.ptr);
      const q0 = f.local(g.ptr);
      const q1 = f.local(g.ptr);
      const k4 = f.local(I);
      const jEnd2 = f.local(I);
      f.set(kB, g.idx(k));
      f.set(rowC, g.idx(n));
      f.set(k4, op("i32.and", k, i32(~3)));
      f.set(jEnd2, op("i32.sub", n1, op("i32.and", op("i32.sub", n1, n0), i32(1))));
      const acc: Local[][] = [];
      for (let i = 0; i < M; i++) acc.push([f.local("v128"), f.local("v128")]);
      const b0 = f.local("v128");
      const b1 = f.local("v128");
      const av = f.local("v128");
      const s0: Local[] = [];
      const s1: Local[] = [];
      for (let i = 0; i < M; i++) {
        s0.push(f.local("f32"));
        s1.push(f.local("f32"));
      }
      const aRow = (i: number, pp: Local) => g.padd(g.at(a, pp), g.pmul(kB, g.pconst(i)));
      const body = (two: boolean) => {
        for (let i = 0; i < M; i++) {
          f.set(acc[i][0], kf32(f, 0));
          f.set(acc[i][1], kf32(f, 0));
        }
        f.set(q0, g.padd(b, g.pmul(g.idx(j), g.idx(k, 0))));
        f.set(q1, g.padd(q0, kB));
        f.forRange(p, i32(0), k4, 4, () => {
          f.set(b0, load("v128.load", g.at(q0, p), 0, 0));
          if (two) f.set(b1, load("v128.load", g.at(q1, p), 0, 0));
          for (let i = 0; i < M; i++) {
            f.set(av, load("v128.load", aRow(i, p), 0, 0));
            f.set(acc[i][0], g.madd(av, b0, acc[i][0]));
            if (two) f.set(acc[i][1], g.madd(av, b1, acc[i][1]));
          }
        });
        for (let i = 0; i < M; i++) {
          f.set(s0[i], hsum(acc[i][0]));
          if (two) f.set(s1[i], hsum(acc[i][1]));
        }
        f.forRange(p, k4, k, 1, () => {
          for (let i = 0; i < M; i++) {
            const ai = load("f32.load", aRow(i, p));
            f.set(s0[i], op("f32.add", s0[i], op("f32.mul", ai, load("f32.load", g.at(q0, p)))));
            if (two) {
              f.set(
                s1[i],
                op(
                  "f32.add",
                  s1[i],
                  op("f32.mul", load("f32.load", aRow(i, p)), load("f32.load", g.at(q1, p))),
                ),
              );
            }
          }
        });
        for (let i = 0; i < M; i++) {
          const dst = g.at(g.padd(c, g.pmul(rowC, g.pconst(i))), j);
          f.do(store("f32.store", dst, s0[i]));
          if (two) {
            f.do(store("f32.store", g.at(g.padd(c, g.pmul(rowC, g.pconst(i))), j), s1[i], 4));
          }
        }
      };
      f.forRange(j, n0, jEnd2, 2, () => body(true));
      f.forRange(j, jEnd2, n1, 1, () => body(false));
    });
  }
  return names;
}
