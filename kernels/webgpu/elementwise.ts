/**
 * Elementwise WGSL kernels: unary, binary, where, cast and strided copy share a single shader
 * template that reads every operand through a strided view. The unary and binary ops'
 * arithmetic is the one table of `../expr.ts`, compiled to WGSL by `expr.ts`, as is the
 * dropout mask (`DROPOUT_MASK`).
 *
 * Views are first canonicalised (size-1 axes dropped, axes merged where every view is contiguous
 * across them), so most calls become rank 1 or 2. An operand whose canonical view is contiguous
 * is read at `offset + i` with no index arithmetic (the fast path); the others decompose `i`
 * into coordinates once per invocation. Shape, offsets and strides are runtime parameters, so
 * the pipeline depends only on the op and on which operands are contiguous.
 *
 * @module
 */
import type { BinaryOp, UnaryOp, View } from "../backend.ts";
import { BINARY_EXPRS, DROPOUT_MASK, dropoutThreshold, UNARY_EXPRS } from "../expr.ts";
import { compileWgsl, compileWgslMap, EXPR_WGSL_PRELUDE } from "./expr.ts";
import { type BufferArg, type ElemFormat, entry1d, f32Bits, type KernelCall } from "./dispatch.ts";

/** Largest rank after canonicalisation. */
export const MAX_RANK = 8;
/** Workgroup size of the 1-D kernels. */
export const WG = 256;

/** WGSL of an elementwise kernel: an f32 expression of the loaded operands `a`, `b`, `c` and
 * the scalar parameter `p`, and the functions it calls. */
export interface EwExpr {
  /** The expression. */
  expr: string;
  /** WGSL functions the expression calls. */
  fns: string;
}

const opCache = new Map<string, EwExpr>();

/** The kernel expression of a unary or binary op, compiled from its entry in `../expr.ts`. */
export function opWgsl(op: UnaryOp | BinaryOp): EwExpr {
  let hit = opCache.get(op);
  if (hit === undefined) {
    const unary = Object.hasOwn(UNARY_EXPRS, op);
    const e = unary ? UNARY_EXPRS[op as UnaryOp] : BINARY_EXPRS[op as BinaryOp];
    if (e === undefined) throw new Error(`webgpu: unknown elementwise op '${op}'`);
    const name = `op_${op}`;
    hit = {
      expr: unary ? `${name}(a, 0.0, p)` : `${name}(a, b, 0.0)`,
      fns: `${EXPR_WGSL_PRELUDE}\n${compileWgsl(name, e)}`,
    };
    opCache.set(op, hit);
  }
  return hit;
}

/**
 * `where`: `ZERO` is replaced by the zero literal of the condition's dtype. Written with `==`:
 * drivers may compile `!=` as an ordered comparison, false for a NaN condition (which selects
 * `a`, as `c !== 0` in the reference).
 */
export const WHERE_WGSL = "select(a, b, c == ZERO)";

/** An operand view after canonicalisation. */
interface CanonView {
  offset: number;
  strides: number[];
}

/** Drops size-1 axes and merges axes that every view traverses contiguously. */
export function canonicalize(
  shape: readonly number[],
  views: readonly View[],
): { shape: number[]; views: CanonView[] } {
  const keep: number[] = [];
  for (let d = 0; d < shape.length; d++) if (shape[d] !== 1) keep.push(d);
  let cs = keep.map((d) => shape[d]);
  let cv = views.map((v) => ({ offset: v.offset, strides: keep.map((d) => v.strides[d]) }));
  // Merge from the innermost axis outwards.
  for (let d = cs.length - 2; d >= 0; d--) {
    if (cv.every((v) => v.strides[d] === v.strides[d + 1] * cs[d + 1])) {
      cs = [...cs.slice(0, d), cs[d] * cs[d + 1], ...cs.slice(d + 2)];
      cv = cv.map((v) => ({
        offset: v.offset,
        strides: [...v.strides.slice(0, d), v.strides[d + 1], ...v.strides.slice(d + 2)],
      }));
    }
  }
  return { shape: cs, views: cv };
}

function isContiguous(shape: number[], strides: number[]): boolean {
  let acc = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    if (strides[d] !== acc) return false;
    acc *= shape[d];
  }
  return true;
}

/** An operand of an elementwise kernel. */
export interface EwOperand {
  /** Buffer binding (its `name` must be `a`, `b`, `c` or `out`). */
  arg: BufferArg;
  /** How the kernel sees it. */
  view: View;
}

const bodyCache = new Map<string, string>();

function ewBody(
  expr: string,
  fns: string,
  names: string[],
  contiguous: boolean[],
  outType: string,
): string {
  const key = `${expr}|${names.join(",")}|${contiguous.join(",")}|${outType}`;
  const hit = bodyCache.get(key);
  if (hit !== undefined) return hit;
  const lines: string[] = [
    fns,
    entry1d(WG),
    "  let n = prm(0u);",
    "  if (gid >= n) { return; }",
  ];
  lines.push("  let p = prmf(1u);");
  names.forEach((nm, v) => {
    lines.push(`  var o_${nm}: i32 = prmi(${12 + v * (MAX_RANK + 1)}u);`);
  });
  const strided = names.map((nm, v) => ({ nm, v })).filter(({ v }) => !contiguous[v]);
  names.forEach((nm, v) => {
    if (contiguous[v]) lines.push(`  o_${nm} += i32(gid);`);
  });
  if (strided.length > 0) {
    lines.push(
      "  var rem = gid;",
      "  for (var d = i32(prm(2u)) - 1; d >= 0; d--) {",
      "    let sz = prm(4u + u32(d));",
      "    let c = i32(rem % sz);",
      "    rem = rem / sz;",
    );
    for (const { nm, v } of strided) {
      lines.push(`    o_${nm} += c * prmi(${12 + v * (MAX_RANK + 1) + 1}u + u32(d));`);
    }
    lines.push("  }");
  }
  for (const nm of names) if (nm !== "out") lines.push(`  let ${nm} = ${nm}_ld(u32(o_${nm}));`);
  lines.push(`  out_st(u32(o_out), ${outType}(${expr}));`, "}");
  const body = lines.join("\n");
  bodyCache.set(key, body);
  return body;
}

/**
 * A kernel computing `out[view] = expr(a, b, c, p)` over a common shape. `out` is the first
 * operand; `expr` is WGSL over the inputs' loaded values (a string: it calls no functions).
 */
export function elementwiseCall(
  label: string,
  expr: string | EwExpr,
  shape: readonly number[],
  operands: readonly EwOperand[],
  scalar = 0,
  maxDim = 65535,
): KernelCall {
  const canon = canonicalize(shape, operands.map((o) => o.view));
  if (canon.shape.length > MAX_RANK) {
    throw new Error(
      `webgpu ${label}: shape [${shape.join(", ")}] has rank ${canon.shape.length} after merging ` +
        `contiguous axes, over ${MAX_RANK}`,
    );
  }
  let n = 1;
  for (const d of shape) n *= d;
  const params = new Uint32Array(12 + operands.length * (MAX_RANK + 1));
  params[0] = n;
  params[1] = f32Bits(scalar);
  params[2] = canon.shape.length;
  canon.shape.forEach((s, d) => (params[4 + d] = s));
  const i32 = new Int32Array(params.buffer);
  canon.views.forEach((v, k) => {
    const base = 12 + k * (MAX_RANK + 1);
    i32[base] = v.offset;
    v.strides.forEach((s, d) => (i32[base + 1 + d] = s));
  });
  const contiguous = canon.views.map((v) => isContiguous(canon.shape, v.strides));
  const outType = operands[0].arg.format === "i32" ? "i32" : "f32";
  const { expr: e, fns } = typeof expr === "string" ? { expr, fns: "" } : expr;
  const body = ewBody(e, fns, operands.map((o) => o.arg.name), contiguous, outType);
  return {
    label,
    body,
    buffers: operands.map((o) => o.arg),
    params,
    grid: grid(Math.ceil(n / WG), maxDim),
  };
}

function grid(workgroups: number, maxDim: number): [number, number, number] {
  if (workgroups <= maxDim) return [workgroups, 1, 1];
  const y = Math.ceil(workgroups / maxDim);
  return [Math.ceil(workgroups / y), y, 1];
}

/** The expression converting a loaded `a` of `from` to the storage type of `to`. */
export function convertExpr(from: ElemFormat, to: ElemFormat): string {
  const fromInt = from === "i32" || from === "u32";
  const toInt = to === "i32" || to === "u32";
  if (fromInt === toInt) return "a";
  // f32 → i32 truncates toward zero like Math.trunc (WGSL conversion rounds toward zero). WGSL
  // leaves i32(NaN) indeterminate (lavapipe gives −2³¹); the reference gives 0. The NaN test is
  // on the bits: some drivers compile `a != a` as an ordered comparison, false for NaN.
  return toInt ? "select(i32(a), 0i, (bitcast<u32>(a) & 0x7fffffffu) > 0x7f800000u)" : "f32(a)";
}

/** A kernel filling `length` elements of `out` with a constant. */
export function fillCall(
  out: BufferArg,
  length: number,
  value: number,
  maxDim = 65535,
): KernelCall {
  const isInt = out.format === "i32";
  const bits = isInt ? value | 0 : f32Bits(value);
  const v = isInt ? "prmi(1u)" : "prmf(1u)";
  return {
    label: "full",
    body: `${entry1d(WG)}\n  if (gid >= prm(0u)) { return; }\n  out_st(gid, ${v});\n}`,
    buffers: [out],
    params: [length, bits >>> 0],
    grid: grid(Math.ceil(length / WG), maxDim),
  };
}

/**
 * The dropout mask kernel, compiled from {@link DROPOUT_MASK} (`index` is the element's
 * position; integer scalars, then float scalars, follow the length in the parameters).
 */
const DROPOUT_WGSL = (() => {
  const k = DROPOUT_MASK, ints = k.u32Scalars ?? [];
  return [
    EXPR_WGSL_PRELUDE,
    entry1d(WG),
    "  if (gid >= prm(0u)) { return; }",
    "  let index = gid;",
    ...ints.map((s, j) => `  let ${s} = prm(${1 + j}u);`),
    ...k.scalars.map((s, j) => `  let ${s} = prmf(${1 + ints.length + j}u);`),
    ...compileWgslMap(k),
    ...Object.keys(k.outputs).map((o) => `  ${o}_st(gid, out_${o});`),
    "}",
  ].join("\n");
})();

/**
 * The dropout mask: `hashUniform(seed, i) ≥ p ? 1/(1−p) : 0` ({@link DROPOUT_MASK}),
 * bit-identical to `hashUniform` in `kernels/backend.ts`; `out` is bound as its output `mask`.
 */
export function dropoutCall(
  out: BufferArg,
  length: number,
  p: number,
  seed: number,
  maxDim = 65535,
): KernelCall {
  if (!Number.isInteger(seed)) {
    throw new Error(`webgpu dropoutMask: seed ${seed} is not an integer`);
  }
  const values: Record<string, number> = {
    seed: seed >>> 0,
    threshold: dropoutThreshold(p),
    keep: f32Bits(p >= 1 ? 0 : Math.fround(1 / (1 - p))),
  };
  const names = [...(DROPOUT_MASK.u32Scalars ?? []), ...DROPOUT_MASK.scalars];
  return {
    label: "dropoutMask",
    body: DROPOUT_WGSL,
    buffers: [{ ...out, name: "mask" }],
    params: [length, ...names.map((n) => values[n])],
    grid: grid(Math.ceil(length / WG), maxDim),
  };
}
