/**
 * Generator of the matrix-product kernel: operand packing, a register-blocked MR×NR micro-kernel
 * on f32x4 accumulators, and cache blocking over k (KC), n (NC) and m (MC), Goto/BLIS style.
 *
 * The exported function computes, for batches [b0, b1) and output columns [n0, n1),
 *   C[b][i, j] = Σ_p A(b, i, p) · B(b, p, j)
 * where `A(b, i, p)` lives at `a + b·sA + i·rsA + p·csA` (elements) and `B(b, p, j)` at
 * `b + b·sB + p·rsB + j·csB`; C is contiguous [batch, m, n]. Transposed operands are just other
 * strides. Threads call it on disjoint column or batch ranges with their own scratch.
 *
 * @module
 */

import {
  call,
  type Expr,
  f32,
  type FunctionRef,
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

/** Blocking parameters of the generated matmul. */
export interface MatmulConfig {
  /** Rows of the micro-tile. */
  mr: number;
  /** Columns of the micro-tile (a multiple of 4). */
  nr: number;
  /** Depth of a packed block. */
  kc: number;
  /** Rows of a packed A block (a multiple of mr). */
  mc: number;
  /** Columns of a packed B block (a multiple of nr). */
  nc: number;
  /** Unrolling of the micro-kernel's k loop. */
  unroll: number;
}

/** The blocking used by default (measured on a 2-core Sapphire Rapids VM, see the report). */
export const DEFAULT_MATMUL_CONFIG: MatmulConfig = {
  mr: 6,
  nr: 8,
  kc: 384,
  mc: 48,
  nc: 1024,
  unroll: 4,
};

/** Bytes of scratch one thread needs for a config. */
export function matmulScratchBytes(c: MatmulConfig): number {
  return 4 * (c.mc * c.kc + c.kc * c.nc + c.mr * c.nr) + 64;
}

/** Parameter list of the exported matmul (pointers first). */
export const MATMUL_PARAMS = [
  "a",
  "b",
  "c",
  "scratch",
  "m",
  "n",
  "k",
  "rsA",
  "csA",
  "rsB",
  "csB",
  "sA",
  "sB",
  "b0",
  "b1",
  "n0",
  "n1",
] as const;

/** Adds `matmul` (exported under `name`) to the module; returns its reference. */
export function addMatmul(
  mod: ModuleBuilder,
  g: Gen,
  cfg: MatmulConfig,
  name = "matmul",
): FunctionRef {
  const { mr, nr } = cfg;
  if (nr % 4 !== 0) throw new Error(`matmul config: nr=${nr} must be a multiple of 4`);
  if (cfg.mc % mr !== 0) throw new Error(`matmul config: mc=${cfg.mc} not a multiple of mr`);
  if (cfg.nc % nr !== 0) throw new Error(`matmul config: nc=${cfg.nc} not a multiple of nr`);
  const P = g.ptr;
  const I = "i32";

  // ---- micro-kernel: (pa, pb, pc, ldc, kc, accumulate) ----
  const kern = mod.addFunction(
    undefined,
    [P, P, P, I, I, I],
    [],
    (f, pa, pb, pc, ldc, kc, accum) => {
      const nv = nr / 4;
      const acc: Local[][] = [];
      for (let r = 0; r < mr; r++) {
        acc.push([]);
        for (let v = 0; v < nv; v++) acc[r].push(f.local("v128"));
      }
      const bv: Local[] = [];
      for (let v = 0; v < nv; v++) bv.push(f.local("v128"));
      const av = f.local("v128");
      const left = f.local(I);
      const step = (u: number) => {
        for (let v = 0; v < nv; v++) f.set(bv[v], load("v128.load", pb, 4 * (u * nr + 4 * v)));
        for (let r = 0; r < mr; r++) {
          f.set(av, load("v128.load32_splat", pa, 4 * (u * mr + r)));
          for (let v = 0; v < nv; v++) f.set(acc[r][v], g.madd(av, bv[v], acc[r][v]));
        }
      };
      const U = cfg.unroll;
      // Main unrolled loop over k in steps of U, then the remainder one at a time.
      f.set(left, op("i32.div_u", kc, i32(U)));
      f.if(left, () => {
        f.loop((cont) => {
          for (let u = 0; u < U; u++) step(u);
          f.set(pa, g.padd(pa, g.pconst(4 * U * mr)));
          f.set(pb, g.padd(pb, g.pconst(4 * U * nr)));
          f.set(left, op("i32.sub", left, i32(1)));
          f.brIf(cont, left);
        });
      });
      f.set(left, op("i32.rem_u", kc, i32(U)));
      f.if(left, () => {
        f.loop((cont) => {
          step(0);
          f.set(pa, g.padd(pa, g.pconst(4 * mr)));
          f.set(pb, g.padd(pb, g.pconst(4 * nr)));
          f.set(left, op("i32.sub", left, i32(1)));
          f.brIf(cont, left);
        });
      });
      const ldcB = f.local(P);
      f.set(ldcB, g.idx(ldc));
      const row = f.local(P);
      f.set(row, pc);
      f.if(
        accum,
        () => {
          for (let r = 0; r < mr; r++) {
            for (let v = 0; v < nv; v++) {
              f.do(store(
                "v128.store",
                row,
                op("f32x4.add", load("v128.load", row, 16 * v), acc[r][v]),
                16 * v,
              ));
            }
            if (r + 1 < mr) f.set(row, g.padd(row, ldcB));
          }
        },
        () => {
          for (let r = 0; r < mr; r++) {
            for (let v = 0; v < nv; v++) f.do(store("v128.store", row, acc[r][v], 16 * v));
            if (r + 1 < mr) f.set(row, g.padd(row, ldcB));
          }
        },
      );
    },
  );

  // ---- packing: panels of W elements along the "panel" axis, kc deep ----
  // dst[(q·kc + p)·W + w] = src[(q·W + w)·sW + p·sK], zero where q·W + w ≥ count.
  const addPack = (W: number) =>
    mod.addFunction(
      undefined,
      [P, I, I, I, I, P],
      [],
      (f, src, sW, sK, count, kc, dst) => {
        const q = f.local(I);
        const p = f.local(I);
        const w = f.local(I);
        const base = f.local(P);
        const s = f.local(P);
        const d = f.local(P);
        const sWB = f.local(P);
        const sKB = f.local(P);
        const full = f.local(I);
        f.set(sWB, g.sidx(sW));
        f.set(sKB, g.sidx(sK));
        f.set(full, op("i32.div_u", count, i32(W)));
        f.set(d, dst);
        f.set(base, src);
        const rows: Local[] = [];
        for (let x = 0; x < W; x++) rows.push(f.local(P));
        const vs: Local[] = [];
        for (let x = 0; x < W; x++) vs.push(f.local("v128"));
        const t: Local[] = [0, 1, 2, 3].map(() => f.local("v128"));
        // Full panels.
        f.forRange(q, i32(0), full, 1, () => {
          f.if(
            op("i32.eq", sW, i32(1)),
            () => {
              // Panel elements contiguous in the source: vector copies of W floats per p.
              f.set(s, base);
              f.forRange(p, i32(0), kc, 1, () => {
                let x = 0;
                for (; x + 4 <= W; x += 4) {
                  f.do(store("v128.store", d, load("v128.load", s, 4 * x, 0), 4 * x, 0));
                }
                for (; x < W; x++) f.do(store("f32.store", d, load("f32.load", s, 4 * x), 4 * x));
                f.set(s, g.padd(s, sKB));
                f.set(d, g.padd(d, g.pconst(4 * W)));
              });
            },
            () => {
              // W source streams (one per panel element), walked together along k.
              for (let x = 0; x < W; x++) {
                f.set(rows[x], x === 0 ? base : g.padd(rows[x - 1], sWB));
              }
              const scalarSteps = (from: Expr) =>
                f.forRange(p, from, kc, 1, () => {
                  for (let x = 0; x < W; x++) {
                    f.do(store("f32.store", d, load("f32.load", rows[x]), 4 * x));
                    f.set(rows[x], g.padd(rows[x], sKB));
                  }
                  f.set(d, g.padd(d, g.pconst(4 * W)));
                });
              f.if(
                op("i32.eq", sK, i32(1)),
                () => {
                  // Streams contiguous along k: load 4 steps of each stream and transpose
                  // in registers (4×4 blocks, then a 2-row and a 1-row remainder).
                  const kc4 = f.local(I);
                  f.set(kc4, op("i32.and", kc, i32(~3)));
                  f.forRange(p, i32(0), kc4, 4, () => {
                    for (let x = 0; x < W; x++) f.set(vs[x], load("v128.load", rows[x], 0, 0));
                    let x = 0;
                    for (; x + 4 <= W; x += 4) {
                      f.set(t[0], shuffle32(vs[x], vs[x + 1], [0, 4, 1, 5]));
                      f.set(t[1], shuffle32(vs[x + 2], vs[x + 3], [0, 4, 1, 5]));
                      f.set(t[2], shuffle32(vs[x], vs[x + 1], [2, 6, 3, 7]));
                      f.set(t[3], shuffle32(vs[x + 2], vs[x + 3], [2, 6, 3, 7]));
                      const outs = [
                        shuffle32(t[0], t[1], [0, 1, 4, 5]),
                        shuffle32(t[0], t[1], [2, 3, 6, 7]),
                        shuffle32(t[2], t[3], [0, 1, 4, 5]),
                        shuffle32(t[2], t[3], [2, 3, 6, 7]),
                      ];
                      outs.forEach((o, q) => f.do(store("v128.store", d, o, 4 * (q * W + x), 0)));
                    }
                    if (x + 2 <= W) {
                      f.set(t[0], shuffle32(vs[x], vs[x + 1], [0, 4, 1, 5]));
                      f.set(t[1], shuffle32(vs[x], vs[x + 1], [2, 6, 3, 7]));
                      for (let q = 0; q < 4; q++) {
                        f.do(
                          store(
                            "i64.store",
                            d,
                            lane("i64x2.extract_lane", t[q >> 1], q & 1),
                            4 * (q * W + x),
                            0,
                          ),
                        );
                      }
                      x += 2;
                    }
                    for (; x < W; x++) {
                      for (let q = 0; q < 4; q++) {
                        f.do(
                          store(
                            "i32.store",
                            d,
                            lane("i32x4.extract_lane", vs[x], q),
                            4 * (q * W + x),
                          ),
                        );
                      }
                    }
                    for (let y = 0; y < W; y++) f.set(rows[y], g.padd(rows[y], g.pconst(16)));
                    f.set(d, g.padd(d, g.pconst(16 * W)));
                  });
                  scalarSteps(kc4);
                },
                () => scalarSteps(i32(0)),
              );
            },
          );
          f.set(base, g.padd(base, g.pmul(sWB, g.pconst(W))));
        });
        // The last, partial panel: zero padding.
        const rest = f.local(I);
        f.set(rest, op("i32.sub", count, op("i32.mul", full, i32(W))));
        f.if(rest, () => {
          f.forRange(p, i32(0), kc, 1, () => {
            f.set(s, base);
            f.forRange(w, i32(0), i32(W), 1, () => {
              f.do(store(
                "f32.store",
                d,
                op(
                  "select",
                  load("f32.load", s),
                  f32(0),
                  op("i32.lt_u", w, rest),
                ),
              ));
              // Only advance the source while inside the valid range.
              f.if(op("i32.lt_u", op("i32.add", w, i32(1)), rest), () => {
                f.set(s, g.padd(s, sWB));
              });
              f.set(d, g.padd(d, g.pconst(4)));
            });
            f.set(base, g.padd(base, sKB));
          });
        });
      },
    );
  const packA = addPack(mr);
  const packB = nr === mr ? packA : addPack(nr);

  // ---- edge tile: C[0..mr', 0..nr'] (+)= tile ----
  const edge = mod.addFunction(
    undefined,
    [P, P, I, I, I, I],
    [],
    (f, tile, pc, ldc, mrr, nrr, accum) => {
      const r = f.local(I);
      const j = f.local(I);
      const t = f.local(P);
      const c = f.local(P);
      f.forRange(r, i32(0), mrr, 1, () => {
        f.set(t, g.at(tile, op("i32.mul", r, i32(nr))));
        f.set(c, g.at(pc, op("i32.mul", r, ldc)));
        f.forRange(j, i32(0), nrr, 1, () => {
          const cj = g.at(c, j);
          const tj = g.at(t, j);
          f.do(store(
            "f32.store",
            cj,
            op(
              "select",
              op("f32.add", load("f32.load", cj), load("f32.load", tj)),
              load("f32.load", tj),
              accum,
            ),
          ));
        });
      });
    },
  );

  // ---- driver ----
  const params = [P, P, P, P, I, I, I, I, I, I, I, I, I, I, I, I, I] as const;
  return mod.addFunction(name, params.map((t) => (t === P ? g.ptrParam : t)), [], (f, ...ps) => {
    const [aP, bP, cP, sP, m, n, k, rsA, csA, rsB, csB, sA, sB, b0, b1, n0, n1] = ps;
    const a = g.ptrLocal(f, aP);
    const b = g.ptrLocal(f, bP);
    const c = g.ptrLocal(f, cP);
    const scratch = g.ptrLocal(f, sP);
    const bufA = f.local(P);
    const bufB = f.local(P);
    const tile = f.local(P);
    f.set(bufA, scratch);
    f.set(bufB, g.padd(scratch, g.pconst(4 * cfg.mc * cfg.kc)));
    f.set(tile, g.padd(bufB, g.pconst(4 * cfg.kc * cfg.nc)));
    const bi = f.local(I);
    const jc = f.local(I);
    const pc = f.local(I);
    const ic = f.local(I);
    const jr = f.local(I);
    const ir = f.local(I);
    const ncur = f.local(I);
    const kcur = f.local(I);
    const mcur = f.local(I);
    const nrr = f.local(I);
    const mrr = f.local(I);
    const A = f.local(P);
    const B = f.local(P);
    const C = f.local(P);
    const cptr = f.local(P);
    const pa = f.local(P);
    const pb = f.local(P);
    const accum = f.local(I);
    const min = (x: Expr, y: Expr): Expr => op("select", x, y, op("i32.lt_s", x, y));
    f.forRange(bi, b0, b1, 1, () => {
      f.set(A, g.padd(a, g.idx(op("i32.mul", bi, sA))));
      f.set(B, g.padd(b, g.idx(op("i32.mul", bi, sB))));
      f.set(C, g.padd(c, g.pmul(g.idx(bi), g.pmul(g.idx(m, 0), g.idx(n, 0)))));
      f.forRange(jc, n0, n1, cfg.nc, () => {
        f.set(ncur, min(i32(cfg.nc), op("i32.sub", n1, jc)));
        f.forRange(pc, i32(0), k, cfg.kc, () => {
          f.set(kcur, min(i32(cfg.kc), op("i32.sub", k, pc)));
          f.set(accum, op("i32.gt_s", pc, i32(0)));
          f.do(call(
            packB,
            g.padd(B, g.padd(g.idx(op("i32.mul", pc, rsB)), g.idx(op("i32.mul", jc, csB)))),
            csB,
            rsB,
            ncur,
            kcur,
            bufB,
          ));
          f.forRange(ic, i32(0), m, cfg.mc, () => {
            f.set(mcur, min(i32(cfg.mc), op("i32.sub", m, ic)));
            f.do(call(
              packA,
              g.padd(A, g.padd(g.idx(op("i32.mul", ic, rsA)), g.idx(op("i32.mul", pc, csA)))),
              rsA,
              csA,
              mcur,
              kcur,
              bufA,
            ));
            f.forRange(jr, i32(0), ncur, nr, () => {
              f.set(nrr, min(i32(nr), op("i32.sub", ncur, jr)));
              f.set(pb, g.at(bufB, op("i32.mul", jr, kcur)));
              f.forRange(ir, i32(0), mcur, mr, () => {
                f.set(mrr, min(i32(mr), op("i32.sub", mcur, ir)));
                f.set(pa, g.at(bufA, op("i32.mul", ir, kcur)));
                f.set(
                  cptr,
                  g.padd(
                    C,
                    g.padd(
                      g.pmul(g.idx(op("i32.add", ic, ir)), g.idx(n, 0)),
                      g.idx(op("i32.add", jc, jr)),
                    ),
                  ),
                );
                f.if(
                  op("i32.and", op("i32.eq", mrr, i32(mr)), op("i32.eq", nrr, i32(nr))),
                  () => f.do(call(kern, pa, pb, cptr, n, kcur, accum)),
                  () => {
                    f.do(call(kern, pa, pb, tile, i32(nr), kcur, i32(0)));
                    f.do(call(edge, tile, cptr, n, mrr, nrr, accum));
                  },
                );
              });
            });
          });
        });
      });
    });
  });
}
