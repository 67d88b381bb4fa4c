/**
 * Generators of the fused causal-attention kernels (`Backend.attention` and its backward), with
 * the semantics of the CPU reference (`kernels/cpu/backend.ts`): scores `scale·q·k`, key j
 * visible to query i iff j ≤ S − T + i and the padding mask is non-zero, a row with nothing
 * visible attends uniformly to all S keys (log-sum-exp: the most negative f32), dropout on the
 * probabilities with the keep mask of `dropoutMask` (`DROPOUT_KEEP`, compiled by `gen_expr.ts`).
 *
 * - `attn_fwd` takes query rows [r0, r1) of all B·H·T: four scores at a time (one f32x4
 *   accumulator per key, reduced by a transpose), softmax in a per-thread scratch row of S
 *   floats, then o = Σ p_j v_j in column blocks of up to 32 floats held in registers.
 * - `attn_bwd` takes heads [h0, h1): a pass over the head's query rows recomputes P from the
 *   log-sum-exp and writes P̃ = P·keep and dS = P(keep·dP − D_i)·scale into a per-thread
 *   scratch [2, T, S] (rows padded to 4) and dQ row by row; a pass over its key rows then sums
 *   dK_j = Σ_i dS_ij q_i and dV_j = Σ_i P̃_ij dO_i. Every output element is written by one
 *   thread, in a fixed order.
 *
 * Non-finite values (see `AttentionParams`): visibility is tracked apart from the scores, the
 * maximum propagates NaN, and masked (query, key) pairs are marked −0 in the scratch so that the
 * weighted sums skip them instead of adding 0·NaN; rows and heads without a padding-masked pair
 * take the sums without that test.
 *
 * Dot products over d and the weighted row sums accumulate in f32 (d and S are small); the
 * softmax denominator in f64 lanes, as the softmax kernel does.
 *
 * @module
 */

import {
  type Expr,
  f32,
  f64,
  f64x2,
  type FunctionBuilder,
  i32,
  i32x4,
  lane,
  load,
  type Local,
  memoryFill,
  type ModuleBuilder,
  op,
  select,
  shuffle32,
  store,
} from "./builder.ts";
import type { Gen } from "./gen.ts";
import { expV, kf32, logV, type MathOptions } from "./gen_math.ts";
import { emitExpr } from "./gen_expr.ts";
import { DROPOUT_MASK } from "../expr.ts";

/**
 * The dropout factors of four counters `index` ([B, H, T, S] positions): `keep` (1/(1 − p)) where
 * `DROPOUT_KEEP` holds, else 0, the expression of `dropoutMask`, so both draw the same mask.
 */
function dropoutKeep(
  f: FunctionBuilder,
  mo: MathOptions,
  index: Expr,
  seed: Local,
  threshold: Local,
  keep: Local,
): Expr {
  return emitExpr(f, DROPOUT_MASK.outputs.mask, { index, seed, threshold, keep }, mo);
}

/** Widths (f32x4 vectors) of the column blocks of the weighted row sums, widest first. */
const BLOCKS = [8, 4, 1];

/** What the helpers of one kernel share. */
interface Ctx {
  f: FunctionBuilder;
  g: Gen;
  mo: MathOptions;
}

function vl(f: FunctionBuilder, e: Expr): Local {
  const l = f.local("v128");
  f.set(l, e);
  return l;
}

/** Signed a > b on pointer-typed values (byte offsets, never near the sign bit). */
function pgt(g: Gen, a: Expr, b: Expr): Expr {
  return op(g.opts.mem64 ? "i64.gt_s" : "i32.gt_s", a, b);
}

/**
 * Emits four dot products at once for each pair: lane k of result p is `xs[p] · ys[p][k]` over
 * the row length (`dBytes` bytes; `dBytes4` of them in whole vectors). One accumulator per key
 * keeps four independent chains; a 4×4 transpose adds them up; the d % 4 tail adds a vector
 * gathered from the four keys.
 */
function dots4(
  c: Ctx,
  pairs: { x: Local; ys: Local[] }[],
  dBytes4: Local,
  dBytes: Local,
): Local[] {
  const { f, g } = c;
  const o = f.local(g.ptr);
  const accs = pairs.map(() => [0, 1, 2, 3].map(() => f.local("v128")));
  const tails = pairs.map(() => f.local("v128"));
  const xv = f.local("v128");
  const zero = kf32(f, 0);
  for (const [p, a] of accs.entries()) {
    for (const l of a) f.set(l, zero);
    f.set(tails[p], zero);
  }
  f.forRange(o, g.pconst(0), dBytes4, 16, () => {
    for (const [p, { x, ys }] of pairs.entries()) {
      f.set(xv, load("v128.load", g.padd(x, o), 0, 0));
      for (let k = 0; k < 4; k++) {
        f.set(accs[p][k], g.madd(xv, load("v128.load", g.padd(ys[k], o), 0, 0), accs[p][k]));
      }
    }
  });
  f.forRange(o, dBytes4, dBytes, 4, () => {
    for (const [p, { x, ys }] of pairs.entries()) {
      let t: Expr = load("v128.load32_splat", g.padd(ys[0], o));
      for (let k = 1; k < 4; k++) {
        t = lane("f32x4.replace_lane", t, k, load("f32.load", g.padd(ys[k], o)));
      }
      f.set(tails[p], g.madd(load("v128.load32_splat", g.padd(x, o)), t, tails[p]));
    }
  });
  return accs.map(([a0, a1, a2, a3], p) => {
    // [a0₀+a0₂, a1₀+a1₂, a0₁+a0₃, a1₁+a1₃] and the same for a2, a3; then the halves.
    const t0 = vl(
      f,
      op("f32x4.add", shuffle32(a0, a1, [0, 4, 1, 5]), shuffle32(a0, a1, [2, 6, 3, 7])),
    );
    const t1 = vl(
      f,
      op("f32x4.add", shuffle32(a2, a3, [0, 4, 1, 5]), shuffle32(a2, a3, [2, 6, 3, 7])),
    );
    return vl(
      f,
      op(
        "f32x4.add",
        op("f32x4.add", shuffle32(t0, t1, [0, 1, 4, 5]), shuffle32(t0, t1, [2, 3, 6, 7])),
        tails[p],
      ),
    );
  });
}

/**
 * Bits of −0.0, the mark a kernel writes into its scratch for a masked (query, key) pair. No
 * probability is −0 (exp and its products with positive factors give +0 at least), so the mark
 * is never a value; a masked pair's weight is −0, and the sums below skip it.
 */
const MASKED = 0x80000000 | 0;

/**
 * Emits out[c] = Σ_{t<n} coef[t·cstep] · row_t[c] for the row length (`dBytes` bytes), with
 * row_t = rows + t·rstep (strides in bytes). Column blocks of up to 8 vectors stay in registers
 * while t runs, so each output element is summed in the order of t and stored once.
 *
 * With `mark` (a byte offset from each coefficient to its pair's probability), terms whose
 * probability is {@link MASKED} are skipped rather than added as 0·row: a masked key's row may
 * hold NaN or Inf, and 0·NaN is NaN. Without it every term is added (no masked pair in range).
 */
function weightedSum(
  c: Ctx,
  out: Expr,
  coef: Expr,
  cstep: Expr,
  rows: Expr,
  rstep: Expr,
  n: Local,
  dBytes4: Local,
  dBytes: Local,
  mark: Expr | null = null,
): void {
  const { f, g } = c;
  const cb = f.local(g.ptr);
  const t = f.local("i32");
  const cp = f.local(g.ptr);
  const rp = f.local(g.ptr);
  const cv = f.local("v128");
  const o = f.local(g.ptr);
  const cs = f.local(g.ptr);
  const rs = f.local(g.ptr);
  const c0 = f.local(g.ptr);
  const r0 = f.local(g.ptr);
  const mo = mark === null ? null : f.local(g.ptr);
  if (mo !== null) f.set(mo, mark!);
  const unlessMasked = (body: () => void) => {
    if (mo === null) body();
    else f.if(op("i32.ne", load("i32.load", g.padd(cp, mo)), i32(MASKED)), body);
  };
  f.set(o, out);
  f.set(c0, coef);
  f.set(cs, cstep);
  f.set(r0, rows);
  f.set(rs, rstep);
  f.set(cb, g.pconst(0));
  for (const W of BLOCKS) {
    const accs = Array.from({ length: W }, () => f.local("v128"));
    f.block((brk) =>
      f.loop((cont) => {
        f.brIf(brk, pgt(g, g.padd(cb, g.pconst(16 * W)), dBytes4));
        for (const a of accs) f.set(a, kf32(f, 0));
        f.set(cp, c0);
        f.set(rp, g.padd(r0, cb));
        f.forRange(t, i32(0), n, 1, () => {
          unlessMasked(() => {
            f.set(cv, load("v128.load32_splat", cp));
            for (let m = 0; m < W; m++) {
              f.set(accs[m], g.madd(cv, load("v128.load", rp, 16 * m, 0), accs[m]));
            }
          });
          f.set(cp, g.padd(cp, cs));
          f.set(rp, g.padd(rp, rs));
        });
        const dst = g.padd(o, cb);
        for (let m = 0; m < W; m++) f.do(store("v128.store", dst, accs[m], 16 * m, 0));
        f.set(cb, g.padd(cb, g.pconst(16 * W)));
        f.br(cont);
      })
    );
  }
  // The d % 4 leftover columns, one at a time.
  const s = f.local("f32");
  f.forRange(cb, cb, dBytes, 4, () => {
    f.set(s, f32(0));
    f.set(cp, c0);
    f.set(rp, g.padd(r0, cb));
    f.forRange(t, i32(0), n, 1, () => {
      unlessMasked(() =>
        f.set(s, op("f32.add", s, op("f32.mul", load("f32.load", cp), load("f32.load", rp))))
      );
      f.set(cp, g.padd(cp, cs));
      f.set(rp, g.padd(rp, rs));
    });
    f.do(store("f32.store", g.padd(o, cb), s));
  });
}

/**
 * Sets `ptrs[k]` to the row of key min(j + k, last) (rows of `rowBytes` from `base`): a group of
 * four keys that runs past the last visible one reads that key again instead of memory beyond
 * it; the caller masks those lanes out.
 */
function keyRows(
  c: Ctx,
  ptrs: Local[],
  base: Local,
  j: Local,
  last: Local,
  rowBytes: Local,
): void {
  const { f, g } = c;
  const jk = f.local("i32");
  for (let k = 0; k < ptrs.length; k++) {
    f.set(jk, op("i32.add", j, i32(k)));
    f.set(jk, select(jk, last, op("i32.le_s", jk, last)));
    f.set(ptrs[k], g.padd(base, g.pmul(g.idx(jk, 0), rowBytes)));
  }
}

/** {@link MASKED} in every lane. */
function kMasked(f: FunctionBuilder): Local {
  return f.hoisted("masked4", "v128", i32x4(MASKED, MASKED, MASKED, MASKED));
}

/** All-ones lanes for the keys j..j+3 that are causally in range: j + k ≤ last. */
function inRange(c: Ctx, j: Local, last: Local): Expr {
  const iota = c.f.hoisted("iota4", "v128", i32x4(0, 1, 2, 3));
  return op("i32x4.le_s", op("i32x4.add", op("i32x4.splat", j), iota), op("i32x4.splat", last));
}

/**
 * The visibility of keys j..j+3 (all-ones lanes): j + k ≤ last, and the padding mask at the key
 * non-zero when there is one (read lane by lane at clamped keys: no read past the mask).
 */
function visible(
  c: Ctx,
  j: Local,
  last: Local,
  hasMask: Local,
  maskRow: Local,
): Local {
  const { f, g } = c;
  const iota = f.hoisted("iota4", "v128", i32x4(0, 1, 2, 3));
  const vis = vl(
    f,
    op("i32x4.le_s", op("i32x4.add", op("i32x4.splat", j), iota), op("i32x4.splat", last)),
  );
  const zero = kf32(f, 0);
  const jk = f.local("i32");
  f.if(hasMask, () =>
    f.if(
      op("i32.le_s", op("i32.add", j, i32(3)), last),
      // All four keys inside the row: one vector load.
      () =>
        f.set(
          vis,
          op("v128.and", vis, op("f32x4.ne", load("v128.load", g.at(maskRow, j), 0, 0), zero)),
        ),
      () => {
        const mk = (k: number) => {
          f.set(jk, op("i32.add", j, i32(k)));
          f.set(jk, select(jk, last, op("i32.le_s", jk, last)));
          return load("f32.load", g.at(maskRow, jk));
        };
        let m: Expr = op("f32x4.splat", mk(0));
        for (let k = 1; k < 4; k++) {
          const mv = vl(f, m);
          m = lane("f32x4.replace_lane", mv, k, mk(k));
        }
        f.set(vis, op("v128.and", vis, op("f32x4.ne", m, zero)));
      },
    ));
  return vis;
}

/** Adds `attn_fwd` and `attn_bwd` to the module. */
export function addAttentionKernels(mod: ModuleBuilder, g: Gen): void {
  const mo: MathOptions = { fma: g.opts.relaxed };
  const P = g.ptrParam;
  const I = "i32";
  const F = "f32";

  // attn_fwd(q, k, v, mask, out, lse, scratch, H, T, S, D, scale, thr, keepScale, seed, hasMask,
  //          r0, r1): query rows [r0, r1) of [B·H·T]; scratch holds S (rounded up to 4) floats.
  mod.addFunction(
    "attn_fwd",
    [P, P, P, P, P, P, P, I, I, I, I, F, I, F, I, I, I, I],
    [],
    (
      f,
      qP,
      kP,
      vP,
      mP,
      oP,
      lP,
      sP,
      H,
      T,
      S,
      D,
      scale,
      thr,
      keepScale,
      seed,
      hasMask,
      r0,
      r1,
    ) => {
      const c: Ctx = { f, g, mo };
      const q = g.ptrLocal(f, qP);
      const k = g.ptrLocal(f, kP);
      const v = g.ptrLocal(f, vP);
      const mask = g.ptrLocal(f, mP);
      const out = g.ptrLocal(f, oP);
      const lse = g.ptrLocal(f, lP);
      const scr = g.ptrLocal(f, sP);
      const rowBytes = f.local(g.ptr);
      const dBytes4 = f.local(g.ptr);
      const headBytes = f.local(g.ptr);
      f.set(rowBytes, g.idx(D));
      f.set(dBytes4, g.idx(op("i32.and", D, i32(~3))));
      f.set(headBytes, g.pmul(g.idx(S, 0), rowBytes));
      const scalev = vl(f, op("f32x4.splat", scale));
      const seedv = vl(f, op("i32x4.splat", seed));
      const thrv = vl(f, op("i32x4.splat", thr));
      const keepv = vl(f, op("f32x4.splat", keepScale));
      const iota = f.hoisted("iota4", "v128", i32x4(0, 1, 2, 3));
      const r = f.local(I);
      const bh = f.local(I);
      const last = f.local(I);
      const nj = f.local(I);
      const j = f.local(I);
      const qr = f.local(g.ptr);
      const kb = f.local(g.ptr);
      const vb = f.local(g.ptr);
      const mrow = f.local(g.ptr);
      const kp = [0, 1, 2, 3].map(() => f.local(g.ptr));
      const s = f.local("v128");
      const mxv = f.local("v128");
      const mx = f.local(F);
      const a0 = f.local("v128");
      const a1 = f.local("v128");
      const sum = f.local("f64");
      const e = f.local("v128");
      const inv = f.local("v128");
      const pv = f.local("v128");
      const hx = f.local("v128");
      const anyVis = f.local("v128");
      const hidden = f.local("v128");
      const rowHidden = f.local(I);
      const negInf = kf32(f, -Infinity);
      f.forRange(r, r0, r1, 1, () => {
        f.set(bh, op("i32.div_u", r, T));
        // last visible key: S − T + i with i = r − bh·T
        f.set(last, op("i32.add", op("i32.sub", S, T), op("i32.sub", r, op("i32.mul", bh, T))));
        f.set(qr, g.padd(q, g.pmul(g.idx(r, 0), rowBytes)));
        f.set(kb, g.padd(k, g.pmul(g.idx(bh, 0), headBytes)));
        f.set(vb, g.padd(v, g.pmul(g.idx(bh, 0), headBytes)));
        f.set(mrow, g.padd(mask, g.pmul(g.idx(op("i32.div_u", bh, H), 0), g.idx(S))));
        // Scores of the keys that can be visible, −∞ where masked; their maximum, NaN if any
        // visible score is NaN (f32x4.max propagates NaN). Which keys are visible is tracked
        // apart from the scores: a visible score may itself be −∞.
        f.set(mxv, negInf);
        f.set(anyVis, i32x4(0, 0, 0, 0));
        f.set(hidden, i32x4(0, 0, 0, 0));
        f.forRange(j, i32(0), op("i32.add", last, i32(1)), 4, () => {
          keyRows(c, kp, kb, j, last, rowBytes);
          const [d] = dots4(c, [{ x: qr, ys: kp }], dBytes4, rowBytes);
          const vis = visible(c, j, last, hasMask, mrow);
          f.set(anyVis, op("v128.or", anyVis, vis));
          f.set(hidden, op("v128.or", hidden, op("v128.andnot", inRange(c, j, last), vis)));
          f.set(s, op("v128.bitselect", op("f32x4.mul", d, scalev), negInf, vis));
          f.do(store("v128.store", g.at(scr, j), s, 0, 0));
          f.set(mxv, op("f32x4.max", mxv, s));
        });
        f.set(rowHidden, op("v128.any_true", hidden));
        f.set(
          mx,
          op(
            "f32.max",
            op("f32.max", lane("f32x4.extract_lane", mxv, 0), lane("f32x4.extract_lane", mxv, 1)),
            op("f32.max", lane("f32x4.extract_lane", mxv, 2), lane("f32x4.extract_lane", mxv, 3)),
          ),
        );
        f.if(
          op("i32.eqz", op("v128.any_true", anyVis)),
          () => {
            // Nothing visible: uniform over all S keys, as the masked scores of Hugging Face give.
            f.do(store("f32.store", g.at(lse, r), f32(-3.4028234663852886e38)));
            f.set(nj, S);
            f.set(rowHidden, i32(0));
            f.forRange(j, i32(0), S, 4, () => {
              f.do(store("v128.store", g.at(scr, j), kf32(f, 1), 0, 0));
            });
            f.set(inv, op("f32x4.splat", op("f32.div", f32(1), op("f32.convert_i32_u", S))));
          },
          () => {
            f.set(nj, op("i32.add", last, i32(1)));
            f.set(a0, f64x2(0));
            f.set(a1, f64x2(0));
            f.set(hx, op("f32x4.splat", mx));
            f.forRange(j, i32(0), nj, 4, () => {
              f.set(s, load("v128.load", g.at(scr, j), 0, 0));
              // exp(s − max): NaN for every key when max is NaN or ±∞ (NaN in, NaN out); only
              // tiny, not 0, for masked lanes after expV's clamp, so they are cleared for the
              // sum and marked in the scratch.
              const vis = visible(c, j, last, hasMask, mrow);
              f.set(e, op("v128.and", expV(f, op("f32x4.sub", s, hx), mo), vis));
              f.do(
                store("v128.store", g.at(scr, j), op("v128.bitselect", e, kMasked(f), vis), 0, 0),
              );
              f.set(a0, op("f64x2.add", a0, op("f64x2.promote_low_f32x4", e)));
              f.set(
                a1,
                op("f64x2.add", a1, op("f64x2.promote_low_f32x4", shuffle32(e, e, [2, 3, 0, 1]))),
              );
            });
            const t = op("f64x2.add", a0, a1);
            f.set(
              sum,
              op("f64.add", lane("f64x2.extract_lane", t, 0), lane("f64x2.extract_lane", t, 1)),
            );
            const ls = logV(f, op("f32x4.splat", op("f32.demote_f64", sum)), mo);
            f.do(
              store(
                "f32.store",
                g.at(lse, r),
                op("f32.add", mx, lane("f32x4.extract_lane", ls, 0)),
              ),
            );
            f.set(inv, op("f32x4.splat", op("f32.demote_f64", op("f64.div", f64(1), sum))));
          },
        );
        // Normalise, then dropout (the same counters as dropoutMask over [B, H, T, S]).
        f.if(
          op("i32.eqz", thr),
          () =>
            f.forRange(j, i32(0), nj, 4, () => {
              f.do(store(
                "v128.store",
                g.at(scr, j),
                op("f32x4.mul", load("v128.load", g.at(scr, j), 0, 0), inv),
                0,
                0,
              ));
            }),
          () =>
            f.forRange(j, i32(0), nj, 4, () => {
              f.set(pv, op("f32x4.mul", load("v128.load", g.at(scr, j), 0, 0), inv));
              const idx = op(
                "i32x4.add",
                op("i32x4.splat", op("i32.add", op("i32.mul", r, S), j)),
                iota,
              );
              const keep = dropoutKeep(f, mo, idx, seedv, thrv, keepv);
              f.do(store("v128.store", g.at(scr, j), op("f32x4.mul", pv, keep), 0, 0));
            }),
        );
        // Rows with a padding-masked key skip its (possibly non-finite) value; the others add
        // every term up to their last key, without the test.
        const sumRow = (mark: Expr | null) =>
          weightedSum(
            c,
            g.padd(out, g.pmul(g.idx(r, 0), rowBytes)),
            scr,
            g.pconst(4),
            vb,
            rowBytes,
            nj,
            dBytes4,
            rowBytes,
            mark,
          );
        f.if(rowHidden, () => sumRow(g.pconst(0)), () => sumRow(null));
      });
    },
  );

  // attn_bwd(q, k, v, mask, out, lse, gOut, gq, gk, gv, scratch, H, T, S, D, scale, thr,
  //          keepScale, seed, hasMask, h0, h1): heads [h0, h1) of [B·H]; scratch holds 2·T·S4
  //          floats (S4 = S rounded up to 4): P̃ then dS, row-major [T, S4].
  mod.addFunction(
    "attn_bwd",
    [P, P, P, P, P, P, P, P, P, P, P, I, I, I, I, F, I, F, I, I, I, I],
    [],
    (
      f,
      qP,
      kP,
      vP,
      mP,
      oP,
      lP,
      goP,
      gqP,
      gkP,
      gvP,
      sP,
      H,
      T,
      S,
      D,
      scale,
      thr,
      keepScale,
      seed,
      hasMask,
      h0,
      h1,
    ) => {
      const c: Ctx = { f, g, mo };
      const q = g.ptrLocal(f, qP);
      const k = g.ptrLocal(f, kP);
      const v = g.ptrLocal(f, vP);
      const mask = g.ptrLocal(f, mP);
      const out = g.ptrLocal(f, oP);
      const lse = g.ptrLocal(f, lP);
      const go = g.ptrLocal(f, goP);
      const gq = g.ptrLocal(f, gqP);
      const gk = g.ptrLocal(f, gkP);
      const gv = g.ptrLocal(f, gvP);
      const scr = g.ptrLocal(f, sP);
      const S4 = f.local(I);
      f.set(S4, op("i32.and", op("i32.add", S, i32(3)), i32(~3)));
      const rowBytes = f.local(g.ptr);
      const dBytes4 = f.local(g.ptr);
      const kvHead = f.local(g.ptr);
      const qHead = f.local(g.ptr);
      const sRow = f.local(g.ptr);
      const dsOff = f.local(g.ptr);
      f.set(rowBytes, g.idx(D));
      f.set(dBytes4, g.idx(op("i32.and", D, i32(~3))));
      f.set(kvHead, g.pmul(g.idx(S, 0), rowBytes));
      f.set(qHead, g.pmul(g.idx(T, 0), rowBytes));
      f.set(sRow, g.idx(S4));
      f.set(dsOff, g.pmul(g.idx(T, 0), sRow));
      const scalev = vl(f, op("f32x4.splat", scale));
      const seedv = vl(f, op("i32x4.splat", seed));
      const thrv = vl(f, op("i32x4.splat", thr));
      const keepv = vl(f, op("f32x4.splat", keepScale));
      const iota = f.hoisted("iota4", "v128", i32x4(0, 1, 2, 3));
      const bh = f.local(I);
      const i = f.local(I);
      const j = f.local(I);
      const r = f.local(I);
      const last = f.local(I);
      const nvis = f.local(I);
      const j4 = f.local(I);
      const i0 = f.local(I);
      const n = f.local(I);
      const anyFull = f.local(I);
      const hidden = f.local("v128");
      const headHidden = f.local(I);
      const lsei = f.local(F);
      const qb = f.local(g.ptr);
      const ob = f.local(g.ptr);
      const gob = f.local(g.ptr);
      const gqb = f.local(g.ptr);
      const kb = f.local(g.ptr);
      const vb = f.local(g.ptr);
      const gkb = f.local(g.ptr);
      const gvb = f.local(g.ptr);
      const mrow = f.local(g.ptr);
      const qr = f.local(g.ptr);
      const orow = f.local(g.ptr);
      const gor = f.local(g.ptr);
      const gqr = f.local(g.ptr);
      const pr = f.local(g.ptr);
      const kp = [0, 1, 2, 3].map(() => f.local(g.ptr));
      const vp = [0, 1, 2, 3].map(() => f.local(g.ptr));
      const dv = f.local("v128");
      const lv = f.local("v128");
      const pv = f.local("v128");
      const kv = f.local("v128");
      const uni = f.local("v128");
      f.forRange(bh, h0, h1, 1, () => {
        const headOf = (base: Local, bytes: Local) => g.padd(base, g.pmul(g.idx(bh, 0), bytes));
        f.set(qb, headOf(q, qHead));
        f.set(ob, headOf(out, qHead));
        f.set(gob, headOf(go, qHead));
        f.set(gqb, headOf(gq, qHead));
        f.set(kb, headOf(k, kvHead));
        f.set(vb, headOf(v, kvHead));
        f.set(gkb, headOf(gk, kvHead));
        f.set(gvb, headOf(gv, kvHead));
        f.set(mrow, g.padd(mask, g.pmul(g.idx(op("i32.div_u", bh, H), 0), g.idx(S))));
        f.set(anyFull, i32(0));
        f.set(headHidden, i32(0));
        // ---- query rows: P̃ and dS into the scratch, dQ ----
        f.forRange(i, i32(0), T, 1, () => {
          f.set(r, op("i32.add", op("i32.mul", bh, T), i));
          f.set(last, op("i32.add", op("i32.sub", S, T), i));
          const rowOff = g.pmul(g.idx(i, 0), rowBytes);
          f.set(qr, g.padd(qb, rowOff));
          f.set(orow, g.padd(ob, rowOff));
          f.set(gor, g.padd(gob, rowOff));
          f.set(gqr, g.padd(gqb, rowOff));
          f.set(pr, g.padd(scr, g.pmul(g.idx(i, 0), sRow)));
          f.set(lsei, load("f32.load", g.at(lse, r)));
          const keepAt = (p: Expr): Expr => {
            const idx = op(
              "i32x4.add",
              op("i32x4.splat", op("i32.add", op("i32.mul", r, S), j)),
              iota,
            );
            return op("f32x4.mul", p, dropoutKeep(f, mo, idx, seedv, thrv, keepv));
          };
          f.if(
            op("f32.lt", lsei, f32(-1e38)),
            () => {
              // Nothing visible: P̃ = keep/S on every key, no gradient to q or k.
              f.set(anyFull, i32(1));
              // Its dS are all marked: the key pass adds nothing of this row to dK.
              f.forRange(j, i32(0), S4, 4, () => {
                f.do(store("v128.store", g.padd(g.at(pr, j), dsOff), kMasked(f), 0, 0));
              });
              f.do(memoryFill(gqr, i32(0), rowBytes));
              f.set(uni, op("f32x4.splat", op("f32.div", f32(1), op("f32.convert_i32_u", S))));
              f.if(
                op("i32.eqz", thr),
                () =>
                  f.forRange(j, i32(0), S, 4, () => {
                    f.do(store("v128.store", g.at(pr, j), uni, 0, 0));
                  }),
                () =>
                  f.forRange(j, i32(0), S, 4, () => {
                    f.do(store("v128.store", g.at(pr, j), keepAt(uni), 0, 0));
                  }),
              );
            },
            () => {
              // D_i = dO_i · O_i (dropout included in O).
              const [di] = dots4(
                c,
                [{ x: gor, ys: [orow, orow, orow, orow] }],
                dBytes4,
                rowBytes,
              );
              f.set(dv, op("f32x4.splat", lane("f32x4.extract_lane", di, 0)));
              f.set(lv, op("f32x4.splat", lsei));
              f.set(nvis, op("i32.add", last, i32(1)));
              f.set(hidden, i32x4(0, 0, 0, 0));
              const body = (drop: boolean) =>
                f.forRange(j, i32(0), nvis, 4, () => {
                  keyRows(c, kp, kb, j, last, rowBytes);
                  keyRows(c, vp, vb, j, last, rowBytes);
                  const [sc, dp] = dots4(
                    c,
                    [{ x: qr, ys: kp }, { x: gor, ys: vp }],
                    dBytes4,
                    rowBytes,
                  );
                  const vis = visible(c, j, last, hasMask, mrow);
                  f.set(hidden, op("v128.or", hidden, op("v128.andnot", inRange(c, j, last), vis)));
                  f.set(
                    pv,
                    op(
                      "v128.and",
                      expV(f, op("f32x4.sub", op("f32x4.mul", sc, scalev), lv), mo),
                      vis,
                    ),
                  );
                  f.set(kv, drop ? keepAt(kf32(f, 1)) : kf32(f, 1));
                  // Masked pairs are marked, for the sums below to skip (P̃ for dV, dS for dQ, dK).
                  f.do(store(
                    "v128.store",
                    g.at(pr, j),
                    op("v128.bitselect", op("f32x4.mul", pv, kv), kMasked(f), vis),
                    0,
                    0,
                  ));
                  const ds = op(
                    "f32x4.mul",
                    op("f32x4.mul", pv, op("f32x4.sub", op("f32x4.mul", kv, dp), dv)),
                    scalev,
                  );
                  f.do(
                    store(
                      "v128.store",
                      g.padd(g.at(pr, j), dsOff),
                      // + 0 turns a −0 (from P = 0) into +0: only masked pairs are −0.
                      op("v128.bitselect", op("f32x4.add", ds, kf32(f, 0)), kMasked(f), vis),
                      0,
                      0,
                    ),
                  );
                });
              f.if(op("i32.eqz", thr), () => body(false), () => body(true));
              // Keys past the last visible one: masked, for the key pass (which reads them when
              // some row attends uniformly).
              f.set(j4, op("i32.and", op("i32.add", nvis, i32(3)), i32(~3)));
              f.forRange(j, j4, S4, 4, () => {
                f.do(store("v128.store", g.at(pr, j), kMasked(f), 0, 0));
                f.do(store("v128.store", g.padd(g.at(pr, j), dsOff), kMasked(f), 0, 0));
              });
              // dQ_i = Σ_j dS_ij k_j, skipping padding-masked keys (their k may be NaN).
              const rowHidden = op("v128.any_true", hidden);
              f.set(headHidden, op("i32.or", headHidden, rowHidden));
              const sumDq = (mark: Expr | null) =>
                weightedSum(
                  c,
                  gqr,
                  g.padd(pr, dsOff),
                  g.pconst(4),
                  kb,
                  rowBytes,
                  nvis,
                  dBytes4,
                  rowBytes,
                  mark,
                );
              f.if(op("v128.any_true", hidden), () => sumDq(g.pconst(0)), () => sumDq(null));
            },
          );
        });
        // ---- key rows: dV_j = Σ_i P̃_ij dO_i, dK_j = Σ_i dS_ij q_i ----
        f.forRange(j, i32(0), S, 1, () => {
          // Query i sees key j only from i = j − (S − T) on, unless some row attends uniformly.
          f.set(i0, op("i32.sub", j, op("i32.sub", S, T)));
          f.set(i0, select(i0, i32(0), op("i32.gt_s", i0, i32(0))));
          f.set(i0, select(i32(0), i0, anyFull));
          f.set(n, op("i32.sub", T, i0));
          const col = g.padd(g.pmul(g.idx(i0, 0), sRow), g.idx(j));
          const rows = g.pmul(g.idx(i0, 0), rowBytes);
          const keyOff = g.pmul(g.idx(j, 0), rowBytes);
          // Masked pairs in range (padding, or rows before the causal start when some row
          // attends uniformly) are skipped: their q or dO may be NaN.
          const sums = (marked: boolean) => {
            weightedSum(
              c,
              g.padd(gvb, keyOff),
              g.padd(scr, col),
              sRow,
              g.padd(gob, rows),
              rowBytes,
              n,
              dBytes4,
              rowBytes,
              marked ? g.pconst(0) : null,
            );
            weightedSum(
              c,
              g.padd(gkb, keyOff),
              g.padd(g.padd(scr, dsOff), col),
              sRow,
              g.padd(qb, rows),
              rowBytes,
              n,
              dBytes4,
              rowBytes,
              marked ? g.pconst(0) : null,
            );
          };
          f.if(op("i32.or", headHidden, anyFull), () => sums(true), () => sums(false));
        });
      });
    },
  );
}
