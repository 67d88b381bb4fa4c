/**
 * Argument checks of every backend primitive, written once. {@link installArgumentChecks} puts
 * them in front of a backend class's methods, so every backend (the CPU reference included)
 * rejects the same calls with the same message before its implementation runs:
 * `<backend> <op>: <operand> <what is wrong>`.
 *
 * What is checked here needs only the {@link Storage} handles and the call's numbers: ownership,
 * dtypes, sizes, that views and shapes stay inside their buffers, attention and matmul shapes.
 * Checks that need the data (index ranges of gather, scatter-add and cross-entropy targets) or
 * a backend's own state (a disposed handle, device limits) stay in the backends.
 *
 * @module
 */
import {
  type AdamWParams,
  type AttentionParams,
  type Backend,
  BINARY_OPS,
  type BinaryOp,
  checkAttentionParams,
  type DType,
  type MatmulParams,
  type ReduceOp,
  type Storage,
  UNARY_OPS,
  type UnaryOp,
  type View,
} from "./backend.ts";

/** An argument error, named `<backend> <op>`. */
function fail(b: Backend, op: string, msg: string): never {
  throw new RangeError(`${b.name} ${op}: ${msg}`);
}

function own(b: Backend, s: Storage, op: string, what: string): void {
  if (s?.backend !== b) {
    fail(b, op, `${what} belongs to backend '${s?.backend?.name}', not this one`);
  }
}

function typed(b: Backend, s: Storage, dtype: DType, op: string, what: string): void {
  own(b, s, op, what);
  if (s.dtype !== dtype) fail(b, op, `${what} must be ${dtype}, got ${s.dtype}`);
}

function f32(b: Backend, s: Storage, op: string, what: string, need?: number): void {
  typed(b, s, "f32", op, what);
  if (need !== undefined) enough(b, s, need, op, what);
}

function enough(b: Backend, s: Storage, n: number, op: string, what: string): void {
  if (s.length < n) fail(b, op, `${what} has ${s.length} elements, needs ${n}`);
}

function count(b: Backend, op: string, sizes: Record<string, number>): void {
  for (const [k, v] of Object.entries(sizes)) {
    if (!Number.isInteger(v) || v < 0) fail(b, op, `${k} must be a non-negative integer, got ${v}`);
  }
}

function dtypeName(b: Backend, d: DType, op: string): void {
  if (d !== "f32" && d !== "i32") fail(b, op, `unknown dtype '${d}'`);
}

/** Throws unless every element of view `v` lies inside `s`. */
function inView(b: Backend, s: Storage, v: View, op: string, what: string): void {
  own(b, s, op, what);
  if (v.shape.length !== v.strides.length) {
    fail(b, op, `${what} view has shape [${v.shape}] but strides [${v.strides}]`);
  }
  let lo = v.offset, hi = v.offset, empty = false;
  for (let d = 0; d < v.shape.length; d++) {
    const n = v.shape[d];
    if (!Number.isInteger(n) || n < 0) fail(b, op, `${what} has bad shape [${v.shape}]`);
    if (!Number.isInteger(v.strides[d])) fail(b, op, `${what} has bad strides [${v.strides}]`);
    if (n === 0) empty = true;
    const ext = (n - 1) * v.strides[d];
    if (ext > 0) hi += ext;
    else lo += ext;
  }
  if (!Number.isInteger(v.offset)) fail(b, op, `${what} has offset ${v.offset}`);
  if (!empty && (lo < 0 || hi >= s.length)) {
    fail(
      b,
      op,
      `${what} view (shape [${v.shape}], strides [${v.strides}], offset ${v.offset}) reaches ` +
        `elements ${lo}..${hi} of a buffer of ${s.length}`,
    );
  }
}

function sameShape(b: Backend, op: string, what: string, got: View, want: View): void {
  const a = got.shape, e = want.shape;
  let same = a.length === e.length;
  for (let i = 0; same && i < a.length; i++) same = a[i] === e[i];
  if (!same) fail(b, op, `operand ${what} has shape [${a}], expected [${e}]`);
}

// Fast tests of the common case: the checks below build their messages (strings, objects) only
// when one fails, so that a valid call allocates nothing (decoding makes thousands of tiny calls).

/** A non-negative integer. */
function isCount(v: number): boolean {
  return Number.isInteger(v) && v >= 0;
}

/** `s` is an f32 buffer of this backend with at least `n` elements. */
function okF32(b: Backend, s: Storage, n: number): boolean {
  return s?.backend === b && s.dtype === "f32" && s.length >= n;
}

/** `s` is an i32 buffer of this backend with at least `n` elements. */
function okI32(b: Backend, s: Storage, n: number): boolean {
  return s?.backend === b && s.dtype === "i32" && s.length >= n;
}

const UNARY = new Set<string>(UNARY_OPS);
const BINARY = new Set<string>(BINARY_OPS);

function attentionOperands(
  b: Backend,
  op: string,
  q: Storage,
  k: Storage,
  v: Storage,
  mask: Storage | null,
  p: AttentionParams,
): void {
  const { batch: B, heads: H, queries: T, keys: S, dim: D } = p;
  if (!(isCount(B) && isCount(H) && isCount(T) && isCount(S) && isCount(D) && S >= T)) {
    checkAttentionParams(p, `${b.name} ${op}`);
  }
  if (!okF32(b, q, B * H * T * D)) f32(b, q, op, `q [${B}, ${H}, ${T}, ${D}]`, B * H * T * D);
  if (!okF32(b, k, B * H * S * D)) f32(b, k, op, `k [${B}, ${H}, ${S}, ${D}]`, B * H * S * D);
  if (!okF32(b, v, B * H * S * D)) f32(b, v, op, `v [${B}, ${H}, ${S}, ${D}]`, B * H * S * D);
  if (mask !== null && !okF32(b, mask, B * S)) f32(b, mask, op, `mask [${B}, ${S}]`, B * S);
}

/** The checks, by primitive: same parameters as the primitive, the backend first. */
const CHECKS: {
  [K in keyof Backend]?: Backend[K] extends (...a: infer A) => unknown
    ? (b: Backend, ...a: A) => void
    : never;
} = {
  fromHost(b, data, dtype) {
    dtypeName(b, dtype, "fromHost");
    if (!ArrayBuffer.isView(data)) fail(b, "fromHost", "data must be a typed array");
  },
  full(b, length, _value, dtype) {
    if (!isCount(length)) count(b, "full", { length });
    dtypeName(b, dtype, "full");
  },
  copy(b, src, srcView, dst, dstView) {
    inView(b, src, srcView, "copy", "source");
    inView(b, dst, dstView, "copy", "destination");
    if (src.dtype !== dst.dtype) fail(b, "copy", `from ${src.dtype} to ${dst.dtype} (use cast)`);
    sameShape(b, "copy", "destination", dstView, srcView);
  },
  unary(b, op: UnaryOp, x, xv, param) {
    if (!UNARY.has(op)) fail(b, "unary", `unknown op '${op}'`);
    if (!okF32(b, x, 0)) typed(b, x, "f32", op, "a");
    inView(b, x, xv, op, "a");
    if (param !== undefined && typeof param !== "number") {
      fail(b, op, `scalar parameter must be a number, got ${param}`);
    }
  },
  binary(b, op: BinaryOp, x, xv, y, yv) {
    if (!BINARY.has(op)) fail(b, "binary", `unknown op '${op}'`);
    if (!okF32(b, x, 0)) typed(b, x, "f32", op, "a");
    if (!okF32(b, y, 0)) typed(b, y, "f32", op, "b");
    sameShape(b, op, "b", yv, xv);
    inView(b, x, xv, op, "a");
    inView(b, y, yv, op, "b");
  },
  where(b, cond, cv, x, xv, y, yv) {
    own(b, cond, "where", "c");
    if (!okF32(b, x, 0)) typed(b, x, "f32", "where", "a");
    if (!okF32(b, y, 0)) typed(b, y, "f32", "where", "b");
    sameShape(b, "where", "a", xv, cv);
    sameShape(b, "where", "b", yv, cv);
    inView(b, cond, cv, "where", "c");
    inView(b, x, xv, "where", "a");
    inView(b, y, yv, "where", "b");
  },
  cast(b, x, dtype) {
    own(b, x, "cast", "a");
    dtypeName(b, dtype, "cast");
  },
  reduce(b, op: ReduceOp, x, outer, size, inner) {
    if (op !== "sum" && op !== "max" && op !== "min") fail(b, "reduce", `unknown op '${op}'`);
    if (!(isCount(outer) && isCount(size) && isCount(inner))) {
      count(b, `reduce.${op}`, { outer, size, inner });
    }
    if (!okF32(b, x, outer * size * inner)) {
      f32(b, x, `reduce.${op}`, `x [${outer}, ${size}, ${inner}]`, outer * size * inner);
    }
  },
  argmax(b, x, outer, size, inner) {
    if (!(isCount(outer) && isCount(size) && isCount(inner))) {
      count(b, "argmax", { outer, size, inner });
    }
    if (!okF32(b, x, outer * size * inner)) {
      f32(b, x, "argmax", `x [${outer}, ${size}, ${inner}]`, outer * size * inner);
    }
  },
  matmul(b, x, y, p: MatmulParams) {
    const { batch, m, n, k, aBatchStride, bBatchStride } = p;
    const aOffset = p.aOffset ?? 0, bOffset = p.bOffset ?? 0;
    if (
      !(isCount(batch) && isCount(m) && isCount(n) && isCount(k) && isCount(aOffset) &&
        isCount(bOffset) && isCount(aBatchStride) && isCount(bBatchStride))
    ) {
      count(b, "matmul", { batch, m, n, k, aOffset, bOffset, aBatchStride, bBatchStride });
    }
    const needA = batch > 0 && m * k > 0 ? aOffset + (batch - 1) * aBatchStride + m * k : 0;
    const needB = batch > 0 && k * n > 0 ? bOffset + (batch - 1) * bBatchStride + k * n : 0;
    if (!okF32(b, x, needA)) {
      typed(b, x, "f32", "matmul", "a");
      enough(b, x, needA, "matmul", `a (batch ${batch}, m ${m}, k ${k})`);
    }
    if (!okF32(b, y, needB)) {
      typed(b, y, "f32", "matmul", "b");
      enough(b, y, needB, "matmul", `b (batch ${batch}, k ${k}, n ${n})`);
    }
  },
  softmax(b, x, rows, cols) {
    if (!(isCount(rows) && isCount(cols))) count(b, "softmax", { rows, cols });
    if (!okF32(b, x, rows * cols)) f32(b, x, "softmax", `x [${rows}, ${cols}]`, rows * cols);
  },
  softmaxBackward(b, y, gy, rows, cols) {
    const op = "softmaxBackward", n = rows * cols;
    if (!(isCount(rows) && isCount(cols))) count(b, op, { rows, cols });
    if (!okF32(b, y, n)) f32(b, y, op, `y [${rows}, ${cols}]`, n);
    if (!okF32(b, gy, n)) f32(b, gy, op, `gy [${rows}, ${cols}]`, n);
  },
  layerNorm(b, x, w, bias, rows, cols) {
    const op = "layerNorm";
    if (!(isCount(rows) && isCount(cols))) count(b, op, { rows, cols });
    if (!okF32(b, x, rows * cols)) f32(b, x, op, `x [${rows}, ${cols}]`, rows * cols);
    if (!okF32(b, w, cols)) f32(b, w, op, `weight [${cols}]`, cols);
    if (!okF32(b, bias, cols)) f32(b, bias, op, `bias [${cols}]`, cols);
  },
  layerNormBackward(b, x, w, mean, rstd, gy, rows, cols) {
    const op = "layerNormBackward", n = rows * cols;
    if (!(isCount(rows) && isCount(cols))) count(b, op, { rows, cols });
    if (!okF32(b, x, n)) f32(b, x, op, `x [${rows}, ${cols}]`, n);
    if (!okF32(b, w, cols)) f32(b, w, op, `weight [${cols}]`, cols);
    if (!okF32(b, mean, rows)) f32(b, mean, op, `mean [${rows}]`, rows);
    if (!okF32(b, rstd, rows)) f32(b, rstd, op, `rstd [${rows}]`, rows);
    if (!okF32(b, gy, n)) f32(b, gy, op, `gy [${rows}, ${cols}]`, n);
  },
  crossEntropy(b, logits, targets, rows, cols, ignoreIndex) {
    const op = "crossEntropy";
    if (!(isCount(rows) && isCount(cols))) count(b, op, { rows, cols });
    if (!Number.isInteger(ignoreIndex)) fail(b, op, `ignoreIndex ${ignoreIndex}`);
    if (!okF32(b, logits, rows * cols)) {
      f32(b, logits, op, `logits [${rows}, ${cols}]`, rows * cols);
    }
    if (!okI32(b, targets, rows)) {
      typed(b, targets, "i32", op, `targets [${rows}]`);
      enough(b, targets, rows, op, `targets [${rows}]`);
    }
  },
  crossEntropyBackward(b, logits, targets, lse, gLoss, rows, cols, ignoreIndex) {
    const op = "crossEntropyBackward";
    if (!(isCount(rows) && isCount(cols))) count(b, op, { rows, cols });
    if (!Number.isInteger(ignoreIndex)) fail(b, op, `ignoreIndex ${ignoreIndex}`);
    if (!okF32(b, logits, rows * cols)) {
      f32(b, logits, op, `logits [${rows}, ${cols}]`, rows * cols);
    }
    if (!okI32(b, targets, rows)) {
      typed(b, targets, "i32", op, `targets [${rows}]`);
      enough(b, targets, rows, op, `targets [${rows}]`);
    }
    if (!okF32(b, lse, rows)) f32(b, lse, op, `lse [${rows}]`, rows);
    if (!okF32(b, gLoss, rows)) f32(b, gLoss, op, `gLoss [${rows}]`, rows);
  },
  attention(b, q, k, v, mask, p) {
    attentionOperands(b, "attention", q, k, v, mask, p);
  },
  attentionBackward(b, q, k, v, mask, out, lse, gOut, p) {
    const op = "attentionBackward";
    attentionOperands(b, op, q, k, v, mask, p);
    const { batch: B, heads: H, queries: T, dim: D } = p;
    const n = B * H * T * D;
    if (!okF32(b, out, n)) f32(b, out, op, `out [${B}, ${H}, ${T}, ${D}]`, n);
    if (!okF32(b, lse, B * H * T)) f32(b, lse, op, `lse [${B}, ${H}, ${T}]`, B * H * T);
    if (!okF32(b, gOut, n)) f32(b, gOut, op, `gOut [${B}, ${H}, ${T}, ${D}]`, n);
  },
  gather(b, table, ids, n, cols) {
    if (!(isCount(n) && isCount(cols))) count(b, "gather", { n, cols });
    if (!okF32(b, table, 0)) typed(b, table, "f32", "gather", "table");
    if (!okI32(b, ids, n)) {
      typed(b, ids, "i32", "gather", `ids [${n}]`);
      enough(b, ids, n, "gather", `ids [${n}]`);
    }
  },
  scatterAdd(b, g, ids, n, cols, vocab) {
    if (!(isCount(n) && isCount(cols) && isCount(vocab))) {
      count(b, "scatterAdd", { n, cols, vocab });
    }
    if (!okF32(b, g, n * cols)) f32(b, g, "scatterAdd", `g [${n}, ${cols}]`, n * cols);
    if (!okI32(b, ids, n)) {
      typed(b, ids, "i32", "scatterAdd", `ids [${n}]`);
      enough(b, ids, n, "scatterAdd", `ids [${n}]`);
    }
  },
  dropoutMask(b, length) {
    if (!isCount(length)) count(b, "dropoutMask", { length });
  },
  adamw(b, param, grad, m, v, _p: AdamWParams) {
    const n = param?.length;
    if (
      okF32(b, param, 0) && okF32(b, grad, n) && okF32(b, m, n) && okF32(b, v, n) &&
      grad.length === n && m.length === n && v.length === n && param !== grad && param !== m &&
      param !== v && grad !== m && grad !== v && m !== v
    ) return;
    const all = { param, grad, m, v };
    for (const [what, s] of Object.entries(all)) typed(b, s, "f32", "adamw", what);
    for (const [what, s] of Object.entries(all)) {
      if (s.length !== param.length) {
        fail(b, "adamw", `${what} has ${s.length} elements, param has ${param.length}`);
      }
    }
    if (new Set(Object.values(all)).size !== 4) {
      fail(b, "adamw", "param, grad, m and v must differ");
    }
  },
};

const installed = new WeakSet<object>();

/**
 * Puts the argument checks in front of the primitives of backend class `cls` (once per class;
 * each backend module calls it right after its class). Implementations may then assume valid
 * arguments as far as these checks go.
 */
export function installArgumentChecks(cls: { prototype: Backend }): void {
  const proto = cls.prototype as unknown as Record<string, (...a: unknown[]) => unknown>;
  if (installed.has(proto)) return;
  installed.add(proto);
  for (const [name, check] of Object.entries(CHECKS)) {
    const impl = proto[name];
    if (typeof impl !== "function") continue;
    if (impl.length > 8) throw new Error(`installArgumentChecks: ${name} takes over 8 arguments`);
    const c = check as (b: Backend, ...a: unknown[]) => void;
    // Fixed arity (the longest primitive takes 8 arguments): no rest array per call.
    Object.defineProperty(proto, name, {
      value: function (
        this: Backend,
        a0?: unknown,
        a1?: unknown,
        a2?: unknown,
        a3?: unknown,
        a4?: unknown,
        a5?: unknown,
        a6?: unknown,
        a7?: unknown,
      ) {
        c(this, a0, a1, a2, a3, a4, a5, a6, a7);
        return impl.call(this, a0, a1, a2, a3, a4, a5, a6, a7);
      },
      writable: true,
      configurable: true,
    });
  }
}
