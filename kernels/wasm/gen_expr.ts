/**
 * Compiles an elementwise expression (`../expr.ts`) to f32x4 code through the module builder:
 * arithmetic to the SIMD instructions, exp/log/tanh/pow to the vectorised emitters of
 * `gen_math.ts`. A node used more than once is computed once into a local.
 *
 * @module
 */
import { type Expr, type FunctionBuilder, i32, type Local, op } from "./builder.ts";
import type { Bool, Node, Num } from "../expr.ts";
import { useCounts } from "../expr.ts";
import { expV, kf32, ki32, logV, type MathOptions, powV, tanhV } from "./gen_math.ts";

/** The f32x4 values of the operands by name (`x`, `y`, `param` splatted, ...); integer
 * operands (`U32` inputs such as `index`) as i32x4. */
export type ExprInputs = Readonly<Record<string, Expr | undefined>>;

const UNARY_SIMD = { neg: "f32x4.neg", abs: "f32x4.abs", sqrt: "f32x4.sqrt" } as const;
const BINARY_SIMD = {
  add: "f32x4.add",
  sub: "f32x4.sub",
  mul: "f32x4.mul",
  div: "f32x4.div",
} as const;
const U32_SIMD = { add: "i32x4.add", mul: "i32x4.mul", xor: "v128.xor" } as const;
const CMP_SIMD = {
  gt: "f32x4.gt",
  ge: "f32x4.ge",
  lt: "f32x4.lt",
  le: "f32x4.le",
  eq: "f32x4.eq",
  ne: "f32x4.ne",
} as const;

/**
 * Emits `e` on four lanes into `f` (statements for the transcendental parts now, the rest as
 * the returned expression). `in_` gives the operands; each is read as often as it is used, so
 * pass locals.
 */
export function emitExpr(f: FunctionBuilder, e: Num, in_: ExprInputs, o: MathOptions): Expr {
  return emitExprs(f, [e], in_, o)[0];
}

/** {@link emitExpr} for several roots sharing their common nodes. */
export function emitExprs(
  f: FunctionBuilder,
  roots: readonly Num[],
  in_: ExprInputs,
  o: MathOptions,
): Expr[] {
  return emitNodes(f, roots, in_, o);
}

/** A condition on four lanes, as an i32x4 mask (all ones where it holds), as {@link emitExpr}. */
export function emitCond(f: FunctionBuilder, b: Bool, in_: ExprInputs, o: MathOptions): Expr {
  return emitNodes(f, [b], in_, o)[0];
}

function emitNodes(
  f: FunctionBuilder,
  roots: readonly Node[],
  in_: ExprInputs,
  o: MathOptions,
): Expr[] {
  const uses = useCounts(...roots);
  const done = new Map<Node, Expr>();
  const local = (x: Expr): Local => {
    const l = f.local("v128");
    f.set(l, x);
    return l;
  };
  const go = (n: Node): Expr => {
    const hit = done.get(n);
    if (hit !== undefined) return hit;
    let r = build(n);
    if ((uses.get(n) ?? 0) > 1 && n.kind !== "const" && n.kind !== "input") r = local(r);
    done.set(n, r);
    return r;
  };
  const input = (name: string): Expr => {
    const v = in_[name];
    if (v === undefined) throw new Error(`emitExpr: the expression reads '${name}', not given`);
    return v;
  };
  const build = (n: Node): Expr => {
    switch (n.kind) {
      case "const":
        return kf32(f, n.value);
      case "input":
        return input(n.name);
      case "unary":
        switch (n.op) {
          case "exp":
            return expV(f, go(n.a), o);
          case "log":
            return logV(f, go(n.a), o);
          case "tanh":
            return tanhV(f, go(n.a), o);
          default:
            return op(UNARY_SIMD[n.op], go(n.a));
        }
      case "binary":
        if (n.op === "pow") return powV(f, go(n.a), go(n.b), o);
        return op(BINARY_SIMD[n.op], go(n.a), go(n.b));
      case "select":
        return select(n.cond, n.a, n.b);
      case "cmp":
        return op(CMP_SIMD[n.op], go(n.a), go(n.b));
      case "isnan": {
        const a = asLocal(go(n.a));
        return op("f32x4.ne", a, a);
      }
      case "isinf":
        return op("f32x4.eq", op("f32x4.abs", go(n.a)), kf32(f, Infinity));
      // Integer nodes: i32x4 lanes holding u32 values (the inputs are i32x4 too).
      case "geu":
        return op("i32x4.ge_u", go(n.a), go(n.b));
      case "u32const":
        return ki32(f, n.value);
      case "u32input":
        return input(n.name);
      case "u32binary":
        return op(U32_SIMD[n.op], go(n.a), go(n.b));
      case "shr":
        return op("i32x4.shr_u", go(n.a), i32(n.bits));
    }
  };
  const asLocal = (x: Expr): Local => (typeof x === "function" ? local(x) : x);
  const select = (cond: Bool, a: Num, b: Num): Expr => {
    if (cond.kind === "cmp" && same(cond.a, a) && same(cond.b, b)) {
      // a > b ? a : b is pmax(b, a), a < b ? a : b is pmin(b, a): one instruction each, with
      // the same NaN and ±0 behaviour (pmax(b, a) = b < a ? a : b).
      if (cond.op === "gt") return op("f32x4.pmax", go(b), go(a));
      if (cond.op === "lt") return op("f32x4.pmin", go(b), go(a));
    }
    if (same(b, ZERO)) {
      // cond ? a : +0 is a bit mask of a.
      return op("v128.and", go(cond), go(a));
    }
    return op("v128.bitselect", go(a), go(b), go(cond));
  };
  return roots.map(go);
}

const ZERO: Num = { kind: "const", value: 0 };

/** The same node, or equal constants (`Object.is`: +0 and −0 differ). */
function same(p: Num, q: Num): boolean {
  return p === q || (p.kind === "const" && q.kind === "const" && Object.is(p.value, q.value));
}
