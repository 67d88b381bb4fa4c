/**
 * Vectorised (f32x4) transcendental functions for the generated kernels: exp, log, tanh and pow
 * (the primitives that `gen_expr.ts` maps the elementwise expressions' math onto). Each emitter writes its code into the
 * current function immediately and returns a local holding the result.
 *
 * Accuracy target ~1e-6 relative (a few f32 ulp); the polynomials are Taylor/atanh series with
 * enough terms for the reduced ranges, derived here rather than taken from a library:
 * - exp: x = n·ln2 + r, |r| ≤ ln2/2, e^r by its degree-7 Taylor polynomial (truncation r⁸/8! ≈
 *   6e-9), scaled by 2^n in two halves so that results in the subnormal range and up to f32 max
 *   need no special cases.
 * - log: x = m·2^e with m in [√½, √2), log m = 2·atanh(s), s = (m−1)/(m+1), |s| ≤ 0.172, series up
 *   to s⁹ (truncation ≈ 2e-9 relative).
 * - tanh: odd Taylor series up to x¹³ for |x| < 0.35 (next term ≈ 2e-10), else
 *   1 − 2/(e^{2|x|} + 1) with the sign of x.
 *
 * @module
 */

import { type Expr, f32x4, type FunctionBuilder, i32, i32x4, type Local, op } from "./builder.ts";

const LOG2E = 1.4426950408889634;
// ln 2 split so that n·LN2_HI is exact for |n| < 2^15 (LN2_HI has 9 significant bits).
const LN2_HI = 0.693359375;
const LN2_LO = -2.121944400546905827679e-4;
// 1.5·2^23: adding it to |y| < 2^22 rounds y to an integer held in the low mantissa bits.
const ROUND_MAGIC = 12582912;
const ROUND_MAGIC_BITS = 0x4b400000;

const key = (c: number) => (Object.is(c, -0) ? "-0" : String(c));

/** A hoisted f32x4 splat constant of the current function. */
export function kf32(f: FunctionBuilder, c: number): Local {
  return f.hoisted(`f32x4:${key(c)}`, "v128", f32x4(c));
}

/** A hoisted i32x4 splat constant of the current function. */
export function ki32(f: FunctionBuilder, c: number): Local {
  return f.hoisted(`i32x4:${c | 0}`, "v128", i32x4(c));
}

function v(f: FunctionBuilder, e: Expr): Local {
  const l = f.local("v128");
  f.set(l, e);
  return l;
}

/** Options of the math emitters. */
export interface MathOptions {
  /** Evaluate polynomials with `f32x4.relaxed_madd` (needs relaxed SIMD). */
  fma?: boolean;
}

function horner(f: FunctionBuilder, x: Expr, coeffs: number[], o: MathOptions): Expr {
  // coeffs from the highest degree down: ((c0·x + c1)·x + c2)...
  let acc: Expr = kf32(f, coeffs[0]);
  for (let i = 1; i < coeffs.length; i++) {
    acc = o.fma
      ? op("f32x4.relaxed_madd", acc, x, kf32(f, coeffs[i]))
      : op("f32x4.add", op("f32x4.mul", acc, x), kf32(f, coeffs[i]));
  }
  return acc;
}

/** e^x on four lanes. */
export function expV(f: FunctionBuilder, x: Expr, o: MathOptions = {}): Local {
  // Clamp with pmin/pmax (plain minps/maxps; NaN passes through as the first operand) rather
  // than the IEEE min/max, which need long instruction sequences on x64.
  const xc = v(f, op("f32x4.pmin", op("f32x4.pmax", x, kf32(f, -104)), kf32(f, 88.8)));
  // n = round(x·log2e) by the 1.5·2^23 trick: the sum's low mantissa bits hold n as an integer.
  const t = v(f, op("f32x4.add", op("f32x4.mul", xc, kf32(f, LOG2E)), kf32(f, ROUND_MAGIC)));
  const n = v(f, op("f32x4.sub", t, kf32(f, ROUND_MAGIC)));
  const r = v(
    f,
    op(
      "f32x4.sub",
      op("f32x4.sub", xc, op("f32x4.mul", n, kf32(f, LN2_HI))),
      op("f32x4.mul", n, kf32(f, LN2_LO)),
    ),
  );
  // 1/k! for k = 7..0
  const p = v(f, horner(f, r, [1 / 5040, 1 / 720, 1 / 120, 1 / 24, 1 / 6, 1 / 2, 1, 1], o));
  const ni = v(f, op("i32x4.sub", t, ki32(f, ROUND_MAGIC_BITS)));
  // 2^n as 2^e1·2^e2 with e1 = n >> 1, e2 = n − e1: both halves are normal numbers for every
  // clamped n, so subnormal results and results up to f32 max need no special case.
  const e1 = v(f, op("i32x4.shr_s", ni, i32(1)));
  const e2 = v(f, op("i32x4.sub", ni, e1));
  const s1 = op("i32x4.shl", op("i32x4.add", e1, ki32(f, 127)), i32(23));
  const s2 = op("i32x4.shl", op("i32x4.add", e2, ki32(f, 127)), i32(23));
  return v(f, op("f32x4.mul", op("f32x4.mul", p, s1), s2));
}

/** Natural log on four lanes (NaN for x < 0, −∞ for ±0, +∞ for +∞). */
export function logV(f: FunctionBuilder, x: Expr, o: MathOptions = {}): Local {
  const xin = v(f, x);
  // Subnormals: scale up by 2^24 first and correct the exponent.
  const tiny = v(f, op("f32x4.lt", op("f32x4.abs", xin), kf32(f, 1.1754943508222875e-38)));
  const xs = v(f, op("v128.bitselect", op("f32x4.mul", xin, kf32(f, 16777216)), xin, tiny));
  const bits = xs; // reinterpretation is free on v128
  let e = v(
    f,
    op(
      "i32x4.sub",
      op("i32x4.shr_u", op("v128.and", bits, ki32(f, 0x7f800000)), i32(23)),
      ki32(f, 127),
    ),
  );
  e = v(f, op("i32x4.sub", e, op("v128.and", tiny, ki32(f, 24))));
  let m = v(f, op("v128.or", op("v128.and", bits, ki32(f, 0x007fffff)), ki32(f, 0x3f800000)));
  const big = v(f, op("f32x4.gt", m, kf32(f, Math.SQRT2)));
  m = v(f, op("v128.bitselect", op("f32x4.mul", m, kf32(f, 0.5)), m, big));
  // e += 1 where m was halved (big is all-ones = −1 as i32).
  e = v(f, op("i32x4.sub", e, big));
  const s = v(
    f,
    op("f32x4.div", op("f32x4.sub", m, kf32(f, 1)), op("f32x4.add", m, kf32(f, 1))),
  );
  const z = v(f, op("f32x4.mul", s, s));
  const series = horner(f, z, [1 / 9, 1 / 7, 1 / 5, 1 / 3, 1], o);
  const logm = v(f, op("f32x4.mul", op("f32x4.mul", s, kf32(f, 2)), series));
  const ef = v(f, op("f32x4.convert_i32x4_s", e));
  const r = v(
    f,
    op(
      "f32x4.add",
      op("f32x4.mul", ef, kf32(f, LN2_HI)),
      op("f32x4.add", logm, op("f32x4.mul", ef, kf32(f, LN2_LO))),
    ),
  );
  // Specials: x = ±0 → −∞; x < 0 → NaN; x = +∞ → +∞; NaN stays NaN.
  let out = v(f, op("v128.bitselect", kf32(f, -Infinity), r, op("f32x4.eq", xin, kf32(f, 0))));
  out = v(f, op("v128.bitselect", kf32(f, NaN), out, op("f32x4.lt", xin, kf32(f, 0))));
  out = v(f, op("v128.bitselect", kf32(f, Infinity), out, op("f32x4.eq", xin, kf32(f, Infinity))));
  return v(f, op("v128.bitselect", xin, out, op("f32x4.ne", xin, xin)));
}

/** tanh on four lanes. */
export function tanhV(f: FunctionBuilder, x: Expr, o: MathOptions = {}): Local {
  const xin = v(f, x);
  const ax = v(f, op("f32x4.abs", xin));
  const z = v(f, op("f32x4.mul", xin, xin));
  // Taylor coefficients of tanh: 1, −1/3, 2/15, −17/315, 62/2835, −1382/155925, 21844/6081075.
  const poly = horner(f, z, [
    21844 / 6081075,
    -1382 / 155925,
    62 / 2835,
    -17 / 315,
    2 / 15,
    -1 / 3,
  ], o);
  const small = v(f, op("f32x4.add", xin, op("f32x4.mul", op("f32x4.mul", xin, z), poly)));
  const e = expV(f, op("f32x4.add", ax, ax), o);
  const large = v(
    f,
    op("f32x4.sub", kf32(f, 1), op("f32x4.div", kf32(f, 2), op("f32x4.add", e, kf32(f, 1)))),
  );
  // copysign(large, x)
  const signed = v(
    f,
    op(
      "v128.or",
      op("v128.and", large, ki32(f, 0x7fffffff)),
      op("v128.and", xin, ki32(f, -0x80000000)),
    ),
  );
  return v(f, op("v128.bitselect", small, signed, op("f32x4.lt", ax, kf32(f, 0.35))));
}

/** a^b on four lanes with JS `Math.pow` semantics for signs, zeros and integer exponents. */
export function powV(f: FunctionBuilder, a: Expr, b: Expr, o: MathOptions = {}): Local {
  const av = v(f, a);
  const bv = v(f, b);
  const la = logV(f, op("f32x4.abs", av), o);
  const r = expV(f, op("f32x4.mul", bv, la), o);
  const isInt = v(f, op("f32x4.eq", op("f32x4.trunc", bv), bv));
  const half = v(f, op("f32x4.mul", bv, kf32(f, 0.5)));
  const odd = v(f, op("v128.and", isInt, op("f32x4.ne", op("f32x4.trunc", half), half)));
  const negBase = v(f, op("i32x4.lt_s", av, ki32(f, 0))); // sign bit set (includes −0)
  const flip = op("v128.and", op("v128.and", odd, negBase), ki32(f, -0x80000000));
  let out = v(f, op("v128.xor", r, flip));
  // Negative (non-zero, finite) base with a non-integer exponent: NaN. (−∞ to such a power
  // is +∞ or +0, as Math.pow gives: exp(b·log ∞) already is.)
  const negFinite = op(
    "v128.and",
    op("f32x4.lt", av, kf32(f, 0)),
    op("f32x4.ne", av, kf32(f, -Infinity)),
  );
  out = v(f, op("v128.bitselect", kf32(f, NaN), out, op("v128.andnot", negFinite, isInt)));
  // x^0 = 1 for every x.
  return v(f, op("v128.bitselect", kf32(f, 1), out, op("f32x4.eq", bv, kf32(f, 0))));
}
