/**
 * Helpers shared by the kernel generators: the address type of the memory (32- or 64-bit),
 * pointer arithmetic, and the fused multiply-add that falls back to mul+add without relaxed SIMD.
 *
 * Pointers cross the JS boundary as f64 when the memory is 64-bit (no BigInt conversions per
 * call; f64 holds every address below 2^53 exactly) and as i32 otherwise.
 *
 * @module
 */

import {
  type Expr,
  f64,
  type FunctionBuilder,
  i32,
  i64,
  type Local,
  op,
  type ValType,
} from "./builder.ts";

/** What the generated code may use. */
export interface GenOptions {
  /** The memory is 64-bit (memory64): pointers are i64 inside kernels. */
  mem64: boolean;
  /** `f32x4.relaxed_madd` is available. */
  relaxed: boolean;
}

/** Pointer and arithmetic helpers for one {@link GenOptions}. */
export class Gen {
  /** Value type of pointers inside kernels. */
  readonly ptr: ValType;
  /** Value type of pointer parameters of exported kernels. */
  readonly ptrParam: ValType;

  /** Helpers for the given options. */
  constructor(readonly opts: GenOptions) {
    this.ptr = opts.mem64 ? "i64" : "i32";
    this.ptrParam = opts.mem64 ? "f64" : "i32";
  }

  /** A pointer-typed constant. */
  pconst(v: number): Expr {
    return this.opts.mem64 ? i64(v) : i32(v);
  }

  /** Pointer + pointer-typed offset. */
  padd(a: Expr, b: Expr): Expr {
    return op(this.opts.mem64 ? "i64.add" : "i32.add", a, b);
  }

  /** Pointer − pointer-typed offset. */
  psub(a: Expr, b: Expr): Expr {
    return op(this.opts.mem64 ? "i64.sub" : "i32.sub", a, b);
  }

  /** Product of two pointer-typed values. */
  pmul(a: Expr, b: Expr): Expr {
    return op(this.opts.mem64 ? "i64.mul" : "i32.mul", a, b);
  }

  /** Unsigned pointer comparison a < b. */
  plt(a: Expr, b: Expr): Expr {
    return op(this.opts.mem64 ? "i64.lt_u" : "i32.lt_u", a, b);
  }

  /** Byte offset of an i32 element index: zero-extended index << shift (2 for 4-byte elements). */
  idx(e: Expr, shift = 2): Expr {
    if (this.opts.mem64) return op("i64.shl", op("i64.extend_i32_u", e), i64(shift));
    return shift === 0 ? e : op("i32.shl", e, i32(shift));
  }

  /** Byte offset of a signed i32 element index (negative strides allowed). */
  sidx(e: Expr, shift = 2): Expr {
    if (this.opts.mem64) return op("i64.shl", op("i64.extend_i32_s", e), i64(shift));
    return shift === 0 ? e : op("i32.shl", e, i32(shift));
  }

  /** `base + idx(e)`: the address of element `e` of a 4-byte array at `base`. */
  at(base: Expr, e: Expr, shift = 2): Expr {
    return this.padd(base, this.idx(e, shift));
  }

  /** Converts a pointer parameter to the in-kernel pointer type. */
  fromParam(p: Expr): Expr {
    return this.opts.mem64 ? op("i64.trunc_f64_u", p) : p;
  }

  /** Declares a pointer local initialised from a pointer parameter. */
  ptrLocal(f: FunctionBuilder, p: Local): Local {
    const l = f.local(this.ptr);
    f.set(l, this.fromParam(p));
    return l;
  }

  /** `a·b + c` on f32x4, fused when relaxed SIMD is available. */
  madd(a: Expr, b: Expr, c: Expr): Expr {
    return this.opts.relaxed
      ? op("f32x4.relaxed_madd", a, b, c)
      : op("f32x4.add", op("f32x4.mul", a, b), c);
  }

  /** A pointer parameter's f64 zero, for generic code. */
  zeroParam(): Expr {
    return this.opts.mem64 ? f64(0) : i32(0);
  }
}
