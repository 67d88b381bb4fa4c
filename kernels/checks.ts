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
  if (a.length !== e.length || a.some((d, i) => d !== e[i])) {
    fail(b, op, `operand ${what} has shape [${a}], expected [${e}]`);
  }
}

function attentionOperands(
  b: Backend,
  op: string,
  q: Storage,
  k: Storage,
  v: Storage,
  mask: Storage | null,
  p: AttentionParams,
): void {
  checkAttentionParams(p, `${b.name} ${op}`);
  const { batch: B, heads: H, queries: T, keys: S, dim: D } = p;
  f32(b, q, op, `q [${B}, ${H}, ${T}, ${D}]`, B * H * T * D);
  f32(b, k, op, `k [${B}, ${H}, ${S}, ${D}]`, B * H * S * D);
  f32(b, v, op, `v [${B}, ${H}, ${S}, ${D}]`, B * H * S * D);
  if (mask !== null) f32(b, mask, op, `mask [${B}, ${S}]`, B * S);
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
    count(b, "full", { length });
    dtypeName(b, dtype, "full");
  },
  copy(b, src, srcView, dst, dstView) {
    inView(b, src, srcView, "copy", "source");
    inView(b, dst, dstView, "copy", "destination");
    if (src.dtype !== dst.dtype) fail(b, "copy", `from ${src.dtype} to ${dst.dtype} (use cast)`);
    sameShape(b, "copy", "destination", dstView, srcView);
  },
  unary(b, op: UnaryOp, x, xv, param) {
    if (!UNARY_OPS.includes(op)) fail(b, "unary", `unknown op '${op}'`);
    typed(b, x, "f32", op, "a");
    inView(b, x, xv, op, "a");
    if (param !== undefined && typeof param !== "number") {
      fail(b, op, `scalar parameter must be a number, got ${param}`);
    }
  },
  binary(b, op: BinaryOp, x, xv, y, yv) {
    if (!BINARY_OPS.includes(op)) fail(b, "binary", `unknown op '${op}'`);
    typed(b, x, "f32", op, "a");
    typed(b, y, "f32", op, "b");
    sameShape(b, op, "b", yv, xv);
    inView(b, x, xv, op, "a");
    inView(b, y, yv, op, "b");
  },
  where(b, cond, cv, x, xv, y, yv) {
    own(b, cond, "where", "c");
    typed(b, x, "f32", "where", "a");
    typed(b, y, "f32", "where", "b");
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
    count(b, `reduce.${op}`, { outer, size, inner });
    f32(b, x, `reduce.${op}`, `x [${outer}, ${size}, ${inner}]`, outer * size * inner);
  },
  argmax(b, x, outer, size, inner) {
    count(b, "argmax", { outer, size, inner });
    f32(b, x, "argmax", `x [${outer}, ${size}, ${inner}]`, outer * size * inner);
  },
  matmul(b, x, y, p: MatmulParams) {
    const { batch, m, n, k } = p;
    const aOffset = p.aOffset ?? 0, bOffset = p.bOffset ?? 0;
    const { aBatchStride, bBatchStride } = p;
    count(b, "matmul", { batch, m, n, k, aOffset, bOffset, aBatchStride, bBatchStride });
    typed(b, x, "f32", "matmul", "a");
    typed(b, y, "f32", "matmul", "b");
    if (batch > 0 && m * k > 0) {
      enough(
        b,
        x,
        aOffset + (batch - 1) * aBatchStride + m * k,
        "matmul",
        `a (batch ${batch}, m ${m}, k ${k})`,
      );
    }
    if (batch > 0 && k * n > 0) {
      enough(
        b,
        y,
        bOffset + (batch - 1) * bBatchStride + k * n,
        "matmul",
        `b (batch ${batch}, k ${k}, n ${n})`,
      );
    }
  },
  softmax(b, x, rows, cols) {
    count(b, "softmax", { rows, cols });
    f32(b, x, "softmax", `x [${rows}, ${cols}]`, rows * cols);
  },
  softmaxBackward(b, y, gy, rows, cols) {
    count(b, "softmaxBackward", { rows, cols });
    f32(b, y, "softmaxBackward", `y [${rows}, ${cols}]`, rows * cols);
    f32(b, gy, "softmaxBackward", `gy [${rows}, ${cols}]`, rows * cols);
  },
  layerNorm(b, x, w, bias, rows, cols) {
    count(b, "layerNorm", { rows, cols });
    f32(b, x, "layerNorm", `x [${rows}, ${cols}]`, rows * cols);
    f32(b, w, "layerNorm", `weight [${cols}]`, cols);
    f32(b, bias, "layerNorm", `bias [${cols}]`, cols);
  },
  layerNormBackward(b, x, w, mean, rstd, gy, rows, cols) {
    const op = "layerNormBackward";
    count(b, op, { rows, cols });
    f32(b, x, op, `x [${rows}, ${cols}]`, rows * cols);
    f32(b, w, op, `weight [${cols}]`, cols);
    f32(b, mean, op, `mean [${rows}]`, rows);
    f32(b, rstd, op, `rstd [${rows}]`, rows);
    f32(b, gy, op, `gy [${rows}, ${cols}]`, rows * cols);
  },
  crossEntropy(b, logits, targets, rows, cols, ignoreIndex) {
    count(b, "crossEntropy", { rows, cols });
    if (!Number.isInteger(ignoreIndex)) fail(b, "crossEntropy", `ignoreIndex ${ignoreIndex}`);
    f32(b, logits, "crossEntropy", `logits [${rows}, ${cols}]`, rows * cols);
    typed(b, targets, "i32", "crossEntropy", `targets [${rows}]`);
    enough(b, targets, rows, "crossEntropy", `targets [${rows}]`);
  },
  crossEntropyBackward(b, logits, targets, lse, gLoss, rows, cols, ignoreIndex) {
    const op = "crossEntropyBackward";
    count(b, op, { rows, cols });
    if (!Number.isInteger(ignoreIndex)) fail(b, op, `ignoreIndex ${ignoreIndex}`);
    f32(b, logits, op, `logits [${rows}, ${cols}]`, rows * cols);
    typed(b, targets, "i32", op, `targets [${rows}]`);
    enough(b, targets, rows, op, `targets [${rows}]`);
    f32(b, lse, op, `lse [${rows}]`, rows);
    f32(b, gLoss, op, `gLoss [${rows}]`, rows);
  },
  attention(b, q, k, v, mask, p) {
    attentionOperands(b, "attention", q, k, v, mask, p);
  },
  attentionBackward(b, q, k, v, mask, out, lse, gOut, p) {
    const op = "attentionBackward";
    attentionOperands(b, op, q, k, v, mask, p);
    const { batch: B, heads: H, queries: T, dim: D } = p;
    f32(b, out, op, `out [${B}, ${H}, ${T}, ${D}]`, B * H * T * D);
    f32(b, lse, op, `lse [${B}, ${H}, ${T}]`, B * H * T);
    f32(b, gOut, op, `gOut [${B}, ${H}, ${T}, ${D}]`, B * H * T * D);
  },
  gather(b, table, ids, n, cols) {
    count(b, "gather", { n, cols });
    typed(b, table, "f32", "gather", "table");
    typed(b, ids, "i32", "gather", `ids [${n}]`);
    enough(b, ids, n, "gather", `ids [${n}]`);
  },
  scatterAdd(b, g, ids, n, cols, vocab) {
    count(b, "scatterAdd", { n, cols, vocab });
    f32(b, g, "scatterAdd", `g [${n}, ${cols}]`, n * cols);
    typed(b, ids, "i32", "scatterAdd", `ids [${n}]`);
    enough(b, ids, n, "scatterAdd", `ids [${n}]`);
  },
  dropoutMask(b, length) {
    count(b, "dropoutMask", { length });
  },
  adamw(b, param, grad, m, v, _p: AdamWParams) {
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
    const c = check as (b: Backend, ...a: unknown[]) => void;
    Object.defineProperty(proto, name, {
      value: function (this: Backend, ...args: unknown[]) {
        c(this, ...args);
        return impl.apply(this, args);
      },
      writable: true,
      configurable: true,
    });
  }
}
