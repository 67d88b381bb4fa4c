/**
 * Every differentiable op, defined once above the backends: the forward calls a backend
 * primitive; the backward is written with other ops (so it runs on any backend), except for the
 * fused row ops, whose backwards are backend primitives of their own: softmax and log-softmax
 * (`softmaxBackward`), layer norm (`layerNormBackward`), cross-entropy (`crossEntropyBackward`)
 * and attention (`attentionBackward`). The row ops' arithmetic, forward and backward, is written
 * once in `kernels/row_kernels.ts`, which every backend compiles.
 *
 * @module
 */
import {
  type AttentionParams,
  type BinaryOp,
  contiguousStrides,
  type DType,
  type MatmulParams,
  type ReduceOp,
  shapeSize,
  type Storage,
  type UnaryOp,
  type View,
} from "../kernels/backend.ts";
import { rng } from "./random.ts";
import { record, Tensor } from "./tensor.ts";

// ---------------------------------------------------------------------------------------------
// shape helpers

function fmt(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}

function checkLive(op: string, ...ts: Tensor[]): void {
  ts.forEach((t, i) => {
    if (t.disposed) throw new Error(`${op}: input ${i} (shape ${fmt(t.shape)}) was disposed`);
  });
  for (let i = 1; i < ts.length; i++) {
    if (ts[i].backend !== ts[0].backend) {
      throw new Error(
        `${op}: inputs live on different backends (${ts[0].backend.name} and ${
          ts[i].backend.name
        })`,
      );
    }
  }
}

function checkF32(op: string, t: Tensor): void {
  if (t.dtype !== "f32") {
    throw new Error(`${op}: expects an f32 tensor, got ${t.dtype} ${fmt(t.shape)}`);
  }
}

/** Normalises a possibly negative axis, with an error naming the op and shape. */
export function normAxis(op: string, axis: number, ndim: number): number {
  const a = axis < 0 ? axis + ndim : axis;
  if (!Number.isInteger(a) || a < 0 || a >= ndim) {
    throw new Error(`${op}: axis ${axis} is out of range for ${ndim}-d tensor`);
  }
  return a;
}

/** NumPy broadcasting of two shapes. */
export function broadcastShapes(op: string, a: readonly number[], b: readonly number[]): number[] {
  const n = Math.max(a.length, b.length);
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const x = a[a.length - n + i] ?? 1, y = b[b.length - n + i] ?? 1;
    if (x !== y && x !== 1 && y !== 1) {
      throw new Error(`${op}: shapes ${fmt(a)} and ${fmt(b)} cannot be broadcast together`);
    }
    out[i] = x === 1 ? y : x;
  }
  return out;
}

/** The view of `t` broadcast to `shape` (stride 0 on new or size-1 axes). */
function broadcastView(t: Tensor, shape: readonly number[]): View {
  const n = shape.length, k = t.shape.length;
  const strides = new Array<number>(n).fill(0);
  for (let i = 0; i < k; i++) {
    const d = n - k + i;
    strides[d] = t.shape[i] === shape[d] ? t.strides[i] : 0;
  }
  return { shape, strides, offset: t.offset };
}

/** Sums `g` down to `shape` (the inverse of broadcasting). */
export function sumTo(g: Tensor, shape: readonly number[]): Tensor {
  if (g.shape.join() === shape.join()) return g;
  const lead = g.ndim - shape.length;
  const axes: number[] = [];
  for (let i = 0; i < g.ndim; i++) {
    if (i < lead || (shape[i - lead] === 1 && g.shape[i] !== 1)) axes.push(i);
  }
  const s = sum(g, axes, true);
  return reshape(s, shape as number[]);
}

function fresh(s: Storage, shape: readonly number[]): Tensor {
  return Tensor.fromStorage(s, shape);
}

// ---------------------------------------------------------------------------------------------
// creation

/** Zeros of a shape on a tensor's backend. */
export function zerosLike(t: Tensor, shape: readonly number[] = t.shape): Tensor {
  return Tensor.fromStorage(t.backend.full(shapeSize(shape), 0, "f32"), shape);
}

/** Ones shaped like `t`. */
export function onesLike(t: Tensor): Tensor {
  return Tensor.fromStorage(t.backend.full(t.size, 1, "f32"), t.shape);
}

// ---------------------------------------------------------------------------------------------
// elementwise

function unaryRaw(op: UnaryOp, x: Tensor, param?: number): Tensor {
  return fresh(x.backend.unary(op, x.storage, x.view, param), x.shape);
}

function unary(
  name: string,
  op: UnaryOp,
  x: Tensor,
  grad: (g: Tensor, x: Tensor, y: Tensor) => Tensor,
  param?: number,
): Tensor {
  checkLive(name, x);
  checkF32(name, x);
  const y = unaryRaw(op, x, param);
  return record(y, name, [x], (g) => [grad(g, x, y)]);
}

/** −x. */
export function neg(x: Tensor): Tensor {
  return unary("neg", "neg", x, (g) => neg(g));
}
/** eˣ. */
export function exp(x: Tensor): Tensor {
  return unary("exp", "exp", x, (g, _x, y) => mul(g, y));
}
/** ln x. */
export function log(x: Tensor): Tensor {
  return unary("log", "log", x, (g, x) => div(g, x));
}
/** √x. */
export function sqrt(x: Tensor): Tensor {
  return unary("sqrt", "sqrt", x, (g, _x, y) => div(mul(g, 0.5), y));
}
/** tanh x. */
export function tanh(x: Tensor): Tensor {
  return unary("tanh", "tanh", x, (g, _x, y) => mul(g, sub(1, mul(y, y))));
}
/** max(x, 0). */
export function relu(x: Tensor): Tensor {
  return unary("relu", "relu", x, (g, x) => mul(g, unaryRaw("step", x)));
}
/** GPT-2's `gelu_new`: 0.5x(1 + tanh(√(2/π)(x + 0.044715x³))). */
export function gelu(x: Tensor): Tensor {
  return unary("gelu", "gelu", x, (g, x) => mul(g, unaryRaw("geluGrad", x)));
}
/**
 * softplus(x) = ln(1 + eˣ), as PyTorch's `softplus` with β = 1 and threshold 20 (x itself above
 * 20), computed without overflow. Its derivative is the logistic sigmoid, here e^{x − softplus(x)}
 * (exactly σ(x), and 1 above the threshold as in PyTorch; NaN at x = +∞).
 */
export function softplus(x: Tensor): Tensor {
  return unary("softplus", "softplus", x, (g, x, y) => mul(g, exp(sub(x, y))));
}
/** xᵖ for a scalar exponent p. */
export function pow(x: Tensor, p: number): Tensor {
  return unary("pow", "powScalar", x, (g, x) => mul(g, mul(pow(x, p - 1), p)), p);
}

function binary(
  name: string,
  op: BinaryOp,
  a: Tensor,
  b: Tensor,
  grad: (g: Tensor) => [Tensor | null, Tensor | null],
): Tensor {
  checkLive(name, a, b);
  checkF32(name, a);
  checkF32(name, b);
  const shape = broadcastShapes(name, a.shape, b.shape);
  const out = fresh(
    a.backend.binary(op, a.storage, broadcastView(a, shape), b.storage, broadcastView(b, shape)),
    shape,
  );
  return record(out, name, [a, b], (g) => {
    const [ga, gb] = grad(g);
    return [ga && sumTo(ga, a.shape), gb && sumTo(gb, b.shape)];
  });
}

function scalarOp(name: string, op: UnaryOp, x: Tensor, s: number, gradScale: number): Tensor {
  return unary(name, op, x, (g) => (gradScale === 1 ? g : mul(g, gradScale)), s);
}

/** a + b. */
export function add(a: Tensor | number, b: Tensor | number): Tensor {
  if (typeof b === "number") return scalarOp("add", "addScalar", a as Tensor, b, 1);
  if (typeof a === "number") return scalarOp("add", "addScalar", b, a, 1);
  return binary("add", "add", a, b, (g) => [g, g]);
}
/** a − b. */
export function sub(a: Tensor | number, b: Tensor | number): Tensor {
  if (typeof b === "number") return scalarOp("sub", "addScalar", a as Tensor, -b, 1);
  if (typeof a === "number") return add(neg(b), a);
  return binary("sub", "sub", a, b, (g) => [g, neg(g)]);
}
/** a · b. */
export function mul(a: Tensor | number, b: Tensor | number): Tensor {
  if (typeof b === "number") return scalarOp("mul", "mulScalar", a as Tensor, b, b);
  if (typeof a === "number") return scalarOp("mul", "mulScalar", b, a, a);
  return binary("mul", "mul", a, b, (g) => [
    a.requiresGrad ? mul(g, b) : null,
    b.requiresGrad ? mul(g, a) : null,
  ]);
}
/** a / b. */
export function div(a: Tensor | number, b: Tensor | number): Tensor {
  if (typeof b === "number") return scalarOp("div", "mulScalar", a as Tensor, 1 / b, 1 / b);
  if (typeof a === "number") {
    const r = unary("recip", "recip", b, (g, x) => neg(div(g, mul(x, x))));
    return a === 1 ? r : mul(r, a);
  }
  return binary("div", "div", a, b, (g) => [
    a.requiresGrad ? div(g, b) : null,
    b.requiresGrad ? neg(div(mul(g, a), mul(b, b))) : null,
  ]);
}

/** Elementwise comparison or min/max without gradient (masks). */
export function compare(
  op: "gt" | "ge" | "lt" | "eq" | "max" | "min",
  a: Tensor,
  b: Tensor,
): Tensor {
  checkLive(op, a, b);
  const shape = broadcastShapes(op, a.shape, b.shape);
  return fresh(
    a.backend.binary(op, a.storage, broadcastView(a, shape), b.storage, broadcastView(b, shape)),
    shape,
  );
}

/** cond ≠ 0 ? a : b, broadcasting all three. */
export function where(cond: Tensor, a: Tensor, b: Tensor): Tensor {
  checkLive("where", cond, a, b);
  const shape = broadcastShapes("where", broadcastShapes("where", cond.shape, a.shape), b.shape);
  const out = fresh(
    a.backend.where(
      cond.storage,
      broadcastView(cond, shape),
      a.storage,
      broadcastView(a, shape),
      b.storage,
      broadcastView(b, shape),
    ),
    shape,
  );
  return record(out, "where", [a, b], (g) => {
    const z = zerosLike(g, []);
    return [
      a.requiresGrad ? sumTo(where(cond, g, z), a.shape) : null,
      b.requiresGrad ? sumTo(where(cond, z, g), b.shape) : null,
    ];
  });
}

/** x with positions where `mask` ≠ 0 replaced by `value`. */
export function maskedFill(x: Tensor, mask: Tensor, value: number): Tensor {
  checkLive("maskedFill", x, mask);
  const v = Tensor.fromStorage(x.backend.full(1, value, "f32"), []);
  return where(mask, v, x);
}

/** Converts dtypes (f32 → i32 truncates). No gradient. */
export function cast(x: Tensor, dtype: DType): Tensor {
  checkLive("cast", x);
  if (x.dtype === dtype) return x.detach();
  const c = contiguous(x);
  const out = Tensor.fromStorage(x.backend.cast(c.storage, dtype), x.shape);
  if (c !== x) c.dispose();
  return out;
}

// ---------------------------------------------------------------------------------------------
// views and copies

/** A contiguous tensor with x's values (x itself, as a new view, when already contiguous). */
export function contiguous(x: Tensor): Tensor {
  checkLive("contiguous", x);
  if (x.isContiguous && x.offset === 0 && x.storage.length === x.size) {
    const v = x.viewAs(x.view);
    return record(v, "contiguous", [x], (g) => [g]);
  }
  const s = x.backend.full(x.size, 0, x.dtype);
  x.backend.copy(x.storage, x.view, s, {
    shape: x.shape,
    strides: contiguousStrides(x.shape),
    offset: 0,
  });
  return record(Tensor.fromStorage(s, x.shape), "contiguous", [x], (g) => [g]);
}

/** Same data with a new shape; one axis may be -1. Copies only when x is not contiguous. */
export function reshape(x: Tensor, shape: number[]): Tensor {
  checkLive("reshape", x);
  const known = shape.filter((d) => d !== -1).reduce((p, d) => p * d, 1);
  const inferred = shape.map((d) => (d === -1 ? x.size / known : d));
  if (
    shape.filter((d) => d === -1).length > 1 || shapeSize(inferred) !== x.size ||
    inferred.some((d) => !Number.isInteger(d) || d < 0)
  ) {
    throw new Error(
      `reshape: cannot reshape ${fmt(x.shape)} (${x.size} elements) to ${fmt(shape)}`,
    );
  }
  const src = x.isContiguous ? x : contiguous(x);
  const out = src.viewAs({
    shape: inferred,
    strides: contiguousStrides(inferred),
    offset: src.offset,
  });
  if (src !== x) src.dispose();
  return record(out, "reshape", [x], (g) => [reshape(g, [...x.shape])]);
}

/** Reorders axes (a view). */
export function permute(x: Tensor, axes: number[]): Tensor {
  checkLive("permute", x);
  const ax = axes.map((a) => normAxis("permute", a, x.ndim));
  if (ax.length !== x.ndim || new Set(ax).size !== ax.length) {
    throw new Error(
      `permute: axes ${fmt(axes)} are not a permutation of ${x.ndim} axes (shape ${fmt(x.shape)})`,
    );
  }
  const out = x.viewAs({
    shape: ax.map((a) => x.shape[a]),
    strides: ax.map((a) => x.strides[a]),
    offset: x.offset,
  });
  const inv = new Array<number>(ax.length);
  ax.forEach((a, i) => (inv[a] = i));
  return record(out, "permute", [x], (g) => [permute(g, inv)]);
}

/** Swaps two axes (a view). */
export function transpose(x: Tensor, dim0: number, dim1: number): Tensor {
  const a = normAxis("transpose", dim0, x.ndim), b = normAxis("transpose", dim1, x.ndim);
  const axes = [...Array(x.ndim).keys()];
  [axes[a], axes[b]] = [axes[b], axes[a]];
  return permute(x, axes);
}

/** Broadcasts x to `shape` (a view with stride 0). */
export function expand(x: Tensor, shape: number[]): Tensor {
  checkLive("expand", x);
  const target = broadcastShapes("expand", x.shape, shape);
  if (target.join() !== shape.join()) {
    throw new Error(`expand: cannot expand ${fmt(x.shape)} to ${fmt(shape)}`);
  }
  const out = x.viewAs(broadcastView(x, shape));
  return record(out, "expand", [x], (g) => [sumTo(g, x.shape)]);
}

/** Elements [start, end) along an axis (a view). Negative indices count from the end. */
export function slice(x: Tensor, axis: number, start: number, end?: number): Tensor {
  checkLive("slice", x);
  const a = normAxis("slice", axis, x.ndim);
  const n = x.shape[a];
  const s = start < 0 ? start + n : start;
  const e = end === undefined ? n : end < 0 ? end + n : end;
  if (s < 0 || e > n || s > e) {
    throw new Error(
      `slice: range [${start}, ${end ?? n}) is out of bounds for axis ${axis} of ${fmt(x.shape)}`,
    );
  }
  const shape = [...x.shape];
  shape[a] = e - s;
  const out = x.viewAs({ shape, strides: x.strides, offset: x.offset + s * x.strides[a] });
  return record(out, "slice", [x], (g) => [padInto(g, x.shape, a, s)]);
}

/** Zeros of `shape` with g written at offset `start` along `axis` (slice's backward). */
function padInto(g: Tensor, shape: readonly number[], axis: number, start: number): Tensor {
  const out = zerosLike(g, shape);
  const strides = contiguousStrides(shape);
  out.backend.copy(g.storage, g.view, out.storage, {
    shape: g.shape,
    strides,
    offset: start * strides[axis],
  });
  return out;
}

/** Joins tensors along an axis. */
export function concat(xs: Tensor[], axis = 0): Tensor {
  if (xs.length === 0) throw new Error("concat: no tensors");
  checkLive("concat", ...xs);
  const a = normAxis("concat", axis, xs[0].ndim);
  for (const x of xs) {
    if (x.ndim !== xs[0].ndim || x.shape.some((d, i) => i !== a && d !== xs[0].shape[i])) {
      throw new Error(
        `concat: shapes ${xs.map((t) => fmt(t.shape)).join(", ")} differ outside axis ${axis}`,
      );
    }
  }
  const shape = [...xs[0].shape];
  shape[a] = xs.reduce((p, x) => p + x.shape[a], 0);
  const be = xs[0].backend;
  const s = be.full(shapeSize(shape), 0, xs[0].dtype);
  const strides = contiguousStrides(shape);
  let off = 0;
  for (const x of xs) {
    be.copy(x.storage, x.view, s, { shape: x.shape, strides, offset: off * strides[a] });
    off += x.shape[a];
  }
  const out = Tensor.fromStorage(s, shape);
  return record(out, "concat", xs, (g) => {
    let o = 0;
    return xs.map((x) => {
      const piece = slice(g, a, o, o + x.shape[a]);
      o += x.shape[a];
      return piece;
    });
  });
}

/** Splits along an axis into pieces of the given sizes, or `n` equal pieces. */
export function split(x: Tensor, sizes: number | number[], axis = 0): Tensor[] {
  const a = normAxis("split", axis, x.ndim);
  const n = x.shape[a];
  let parts: number[];
  if (typeof sizes === "number") {
    if (n % sizes !== 0) {
      throw new Error(`split: axis ${axis} of ${fmt(x.shape)} does not divide into ${sizes}`);
    }
    parts = new Array(sizes).fill(n / sizes);
  } else parts = sizes;
  if (parts.reduce((p, q) => p + q, 0) !== n) {
    throw new Error(
      `split: sizes ${fmt(parts)} do not add up to ${n} (axis ${axis} of ${fmt(x.shape)})`,
    );
  }
  let o = 0;
  return parts.map((p) => {
    const t = slice(x, a, o, o + p);
    o += p;
    return t;
  });
}

// ---------------------------------------------------------------------------------------------
// reductions

function axesOf(op: string, x: Tensor, axis?: number | number[]): number[] {
  if (axis === undefined) return [...Array(x.ndim).keys()];
  const list = (Array.isArray(axis) ? axis : [axis]).map((a) => normAxis(op, a, x.ndim));
  if (new Set(list).size !== list.length) throw new Error(`${op}: repeated axis in ${fmt(list)}`);
  return list.sort((p, q) => p - q);
}

function keptShape(shape: readonly number[], axes: number[]): number[] {
  return shape.map((d, i) => (axes.includes(i) ? 1 : d));
}

/** Reduces `axes` of contiguous x with the backend, one axis at a time; keepdim shape. */
function reduceRaw(op: ReduceOp, x: Tensor, axes: number[]): Tensor {
  let cur = contiguous(x);
  let shape = [...x.shape];
  for (const a of axes) {
    const outer = shapeSize(shape.slice(0, a)),
      size = shape[a],
      inner = shapeSize(shape.slice(a + 1));
    const s = cur.backend.reduce(op, cur.storage, outer, size, inner);
    shape = [...shape];
    shape[a] = 1;
    cur.dispose();
    cur = Tensor.fromStorage(s, shape);
  }
  return cur;
}

function finishReduce(r: Tensor, x: Tensor, axes: number[], keepdim: boolean): Tensor {
  if (keepdim) return r;
  const shape = x.shape.filter((_d, i) => !axes.includes(i));
  return r.viewAs({ shape, strides: contiguousStrides(shape), offset: 0 });
}

/** Sum over axes (all by default). */
export function sum(x: Tensor, axis?: number | number[], keepdim = false): Tensor {
  checkLive("sum", x);
  checkF32("sum", x);
  const axes = axesOf("sum", x, axis);
  const r = reduceRaw("sum", x, axes);
  const out = finishReduce(r, x, axes, keepdim);
  if (out !== r) r.dispose();
  return record(
    out,
    "sum",
    [x],
    (g) => [expand(reshape(g, keptShape(x.shape, axes)), [...x.shape])],
  );
}

/** Mean over axes (all by default). */
export function mean(x: Tensor, axis?: number | number[], keepdim = false): Tensor {
  const axes = axesOf("mean", x, axis);
  const n = axes.reduce((p, a) => p * x.shape[a], 1);
  return mul(sum(x, axes, keepdim), 1 / n);
}

/** Maximum over axes; the gradient is shared evenly between tied maxima (like torch.amax). */
export function max(x: Tensor, axis?: number | number[], keepdim = false): Tensor {
  checkLive("max", x);
  checkF32("max", x);
  const axes = axesOf("max", x, axis);
  const r = reduceRaw("max", x, axes);
  const out = finishReduce(r, x, axes, keepdim);
  return record(out, "max", [x], (g) => {
    const mask = compare("eq", x, r);
    const count = reduceRaw("sum", mask, axes);
    return [div(mul(mask, reshape(g, keptShape(x.shape, axes))), count)];
  });
}

/** Index of the maximum along one axis (i32, first on ties). */
export function argmax(x: Tensor, axis: number, keepdim = false): Tensor {
  checkLive("argmax", x);
  const a = normAxis("argmax", axis, x.ndim);
  const c = contiguous(x);
  const s = x.backend.argmax(
    c.storage,
    shapeSize(x.shape.slice(0, a)),
    x.shape[a],
    shapeSize(x.shape.slice(a + 1)),
  );
  if (c !== x) c.dispose();
  const shape = keepdim ? keptShape(x.shape, [a]) : x.shape.filter((_d, i) => i !== a);
  return Tensor.fromStorage(s, shape);
}

// ---------------------------------------------------------------------------------------------
// matmul

/** How a [.., r, c] operand can be fed to the backend without a copy: transposed flag and batch stride. */
function matLayout(
  t: Tensor,
  batchShape: number[],
): { trans: boolean; batchStride: number } | null {
  const nd = t.ndim, r = t.shape[nd - 2], c = t.shape[nd - 1];
  const sr = t.strides[nd - 2], sc = t.strides[nd - 1];
  let trans: boolean;
  if ((sc === 1 || c === 1) && (sr === c || r === 1)) trans = false;
  else if ((sr === 1 || r === 1) && (sc === r || c === 1)) trans = true;
  else return null;
  // Batch axes (broadcast to batchShape) must collapse to one stride: all 0, or uniform.
  const bv = broadcastView(t, [...batchShape, r, c]);
  const bs = bv.strides.slice(0, -2);
  const dims = batchShape.map((d, i) => [d, bs[i]]).filter(([d]) => d !== 1);
  if (dims.length === 0) return { trans, batchStride: 0 };
  if (dims.every(([, s]) => s === 0)) return { trans, batchStride: 0 };
  for (let i = 0; i < dims.length - 1; i++) {
    if (dims[i][1] !== dims[i + 1][1] * dims[i + 1][0]) return null;
  }
  const inner = dims[dims.length - 1][1];
  if (inner === 0) return null;
  return { trans, batchStride: inner };
}

/** Matrix product over the last two axes; batch axes broadcast (1-D inputs are not promoted). */
export function matmul(a: Tensor, b: Tensor): Tensor {
  checkLive("matmul", a, b);
  checkF32("matmul", a);
  checkF32("matmul", b);
  if (a.ndim < 2 || b.ndim < 2) {
    throw new Error(`matmul: inputs must be at least 2-d, got ${fmt(a.shape)} and ${fmt(b.shape)}`);
  }
  const m = a.shape[a.ndim - 2],
    k = a.shape[a.ndim - 1],
    k2 = b.shape[b.ndim - 2],
    n = b.shape[b.ndim - 1];
  if (k !== k2) {
    throw new Error(
      `matmul: shapes ${fmt(a.shape)} and ${fmt(b.shape)} do not align (${k} ≠ ${k2})`,
    );
  }
  const batchShape = broadcastShapes("matmul", a.shape.slice(0, -2), b.shape.slice(0, -2));
  const batch = shapeSize(batchShape);
  const prep = (t: Tensor): [Tensor, { trans: boolean; batchStride: number }] => {
    const l = matLayout(t, batchShape);
    if (l) return [t, l];
    const full = contiguous(expand(t, [...batchShape, t.shape[t.ndim - 2], t.shape[t.ndim - 1]]));
    return [full, matLayout(full, batchShape)!];
  };
  const [A, la] = prep(a), [B, lb] = prep(b);
  const p: MatmulParams = {
    batch,
    m,
    n,
    k,
    transA: la.trans,
    transB: lb.trans,
    aBatchStride: la.batchStride,
    bBatchStride: lb.batchStride,
    aOffset: A.offset,
    bOffset: B.offset,
  };
  const s = a.backend.matmul(A.storage, B.storage, p);
  if (A !== a) A.dispose();
  if (B !== b) B.dispose();
  const out = Tensor.fromStorage(s, [...batchShape, m, n]);
  // A 2-d operand stored transposed (e.g. the tied LM head's wteᵀ) gets its gradient in its
  // storage's layout, (gᵀ·a)ᵀ rather than aᵀ·g: it then adds to the stored tensor's other
  // gradients (the embedding's) contiguously instead of through a transposed, cache-hostile view.
  const flat = a.ndim === 2 && b.ndim === 2;
  return record(out, "matmul", [a, b], (g) => [
    a.requiresGrad
      ? flat && la.trans
        ? transpose(matmul(b, transpose(g, 0, 1)), 0, 1)
        : sumTo(matmul(g, transpose(b, -1, -2)), a.shape)
      : null,
    b.requiresGrad
      ? flat && lb.trans
        ? transpose(matmul(transpose(g, 0, 1), a), 0, 1)
        : sumTo(matmul(transpose(a, -1, -2), g), b.shape)
      : null,
  ]);
}

// ---------------------------------------------------------------------------------------------
// fused row ops

/** Moves `axis` last and makes x contiguous; returns the rows×cols layout and the undo. */
function rowsLast(
  x: Tensor,
  axis: number,
): { t: Tensor; rows: number; cols: number; back: (y: Tensor) => Tensor } {
  const a = normAxis("softmax", axis, x.ndim);
  if (a === x.ndim - 1) {
    const t = contiguous(x);
    return { t, rows: x.size / x.shape[a], cols: x.shape[a], back: (y) => y };
  }
  const t = contiguous(transpose(x, a, -1));
  return {
    t,
    rows: x.size / x.shape[a],
    cols: x.shape[a],
    back: (y) => contiguous(transpose(y, a, -1)),
  };
}

function softmaxImpl(x: Tensor, axis: number, log: boolean): Tensor {
  const name = log ? "logSoftmax" : "softmax";
  checkLive(name, x);
  checkF32(name, x);
  const { t, rows, cols, back } = rowsLast(x, axis);
  const y = Tensor.fromStorage(x.backend.softmax(t.storage, rows, cols, log), t.shape);
  const out = back(y);
  return record(out, name, [x], (g) => {
    const gl = rowsLast(g, axis);
    const gx = Tensor.fromStorage(
      x.backend.softmaxBackward(y.storage, gl.t.storage, rows, cols, log),
      t.shape,
    );
    return [gl.back(gx)];
  });
}

/** Softmax along an axis (max-subtracted). */
export function softmax(x: Tensor, axis = -1): Tensor {
  return softmaxImpl(x, axis, false);
}
/** Log-softmax along an axis. */
export function logSoftmax(x: Tensor, axis = -1): Tensor {
  return softmaxImpl(x, axis, true);
}

/** Layer norm over the last axis with weight and bias [C]; fused forward and analytic backward. */
export function layerNorm(x: Tensor, w: Tensor, b: Tensor, eps = 1e-5): Tensor {
  checkLive("layerNorm", x, w, b);
  const cols = x.shape[x.ndim - 1];
  if (w.shape.join() !== String(cols) || b.shape.join() !== String(cols)) {
    throw new Error(
      `layerNorm: weight ${fmt(w.shape)} and bias ${fmt(b.shape)} must be [${cols}] for input ${
        fmt(x.shape)
      }`,
    );
  }
  const xc = contiguous(x), wc = contiguous(w), bc = contiguous(b);
  const rows = x.size / cols;
  const r = x.backend.layerNorm(xc.storage, wc.storage, bc.storage, rows, cols, eps);
  const mean = Tensor.fromStorage(r.mean, [rows]), rstd = Tensor.fromStorage(r.rstd, [rows]);
  const out = Tensor.fromStorage(r.y, x.shape);
  return record(out, "layerNorm", [x, w, b], (g) => {
    const gc = contiguous(g);
    const gr = x.backend.layerNormBackward(
      xc.storage,
      wc.storage,
      mean.storage,
      rstd.storage,
      gc.storage,
      rows,
      cols,
    );
    return [
      Tensor.fromStorage(gr.gx, x.shape),
      Tensor.fromStorage(gr.gw, [cols]),
      Tensor.fromStorage(gr.gb, [cols]),
    ];
  });
}

/** Options of {@link crossEntropy}. */
export interface CrossEntropyOptions {
  /** Targets equal to this are skipped (default -100, as in PyTorch). */
  ignoreIndex?: number;
  /** `mean` over non-ignored targets (default), `sum`, or `none` (per position). */
  reduction?: "mean" | "sum" | "none";
}

/** Cross-entropy of logits [..., C] against i32 targets [...], fused and numerically stable. */
export function crossEntropy(
  logits: Tensor,
  targets: Tensor,
  opts: CrossEntropyOptions = {},
): Tensor {
  checkLive("crossEntropy", logits, targets);
  const ignoreIndex = opts.ignoreIndex ?? -100, reduction = opts.reduction ?? "mean";
  if (targets.dtype !== "i32") {
    throw new Error(`crossEntropy: targets must be i32, got ${targets.dtype}`);
  }
  const cols = logits.shape[logits.ndim - 1];
  if (targets.shape.join() !== logits.shape.slice(0, -1).join()) {
    throw new Error(
      `crossEntropy: targets ${fmt(targets.shape)} do not match logits ${
        fmt(logits.shape)
      } (expected ${fmt(logits.shape.slice(0, -1))})`,
    );
  }
  const rows = targets.size;
  const lc = contiguous(logits), tc = contiguous(targets);
  const r = logits.backend.crossEntropy(lc.storage, tc.storage, rows, cols, ignoreIndex);
  const lse = Tensor.fromStorage(r.lse, [rows]);
  const perRow = Tensor.fromStorage(r.loss, targets.shape);
  const withGrad = record(perRow, "crossEntropy", [logits], (g) => {
    const gc = contiguous(g);
    const s = logits.backend.crossEntropyBackward(
      lc.storage,
      tc.storage,
      lse.storage,
      gc.storage,
      rows,
      cols,
      ignoreIndex,
    );
    return [Tensor.fromStorage(s, logits.shape)];
  });
  if (reduction === "none") return withGrad;
  const total = sum(withGrad);
  if (reduction === "sum") return total;
  // Count of real targets, computed on the backend (no sync readback): Σ (target ≠ ignore).
  const tf = cast(tc, "f32");
  const ign = Tensor.fromStorage(logits.backend.full(1, ignoreIndex, "f32"), []);
  const count = sum(sub(1, compare("eq", tf, ign)));
  return div(
    total,
    compare("max", count, Tensor.fromStorage(logits.backend.full(1, 1, "f32"), [])),
  );
}

/** Options of {@link attention}. */
export interface AttentionOptions {
  /** Padding mask [B, S] (1 = attend, 0 = masked), f32; null or absent: none. */
  mask?: Tensor | null;
  /** Score scale (default 1/√d). */
  scale?: number;
  /** Dropout on the attention probabilities (default 0). */
  dropout?: number;
  /** Apply the dropout (training mode; default true). */
  training?: boolean;
}

/**
 * Fused causal attention: softmax(scale · q kᵀ, causal + padding mask) · v, with q [B, H, T, d]
 * and k, v [B, H, S, d] where the first S − T keys are the past (KV cache or prefix): query i
 * sees keys 0 .. S − T + i. Masked scores count as the most negative f32 (Hugging Face's rule;
 * a row with nothing visible attends uniformly). Dropout on the probabilities uses the same
 * mask as {@link dropout} over [B, H, T, S] with the next seed, so this equals the unfused
 * sequence matmul → maskedFill → softmax → dropout → matmul. The [T, S] probabilities are never
 * stored: the backward recomputes them from each row's log-sum-exp.
 */
export function attention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  const mask = opts.mask ?? null;
  checkLive("attention", q, k, v, ...(mask ? [mask] : []));
  for (const [n, t] of [["q", q], ["k", k], ["v", v]] as const) checkF32(`attention ${n}`, t);
  if (q.ndim !== 4 || k.ndim !== 4 || v.ndim !== 4) {
    throw new Error(
      `attention: q ${fmt(q.shape)}, k ${fmt(k.shape)}, v ${fmt(v.shape)} must be 4-d [B, H, T, d]`,
    );
  }
  const [B, H, T, D] = q.shape, S = k.shape[2];
  if (
    k.shape[0] !== B || k.shape[1] !== H || k.shape[3] !== D ||
    v.shape.join() !== k.shape.join() || S < T
  ) {
    throw new Error(
      `attention: q ${fmt(q.shape)}, k ${fmt(k.shape)}, v ${
        fmt(v.shape)
      } must be [B, H, T, d], [B, H, S, d], [B, H, S, d] with S ≥ T`,
    );
  }
  if (mask && (mask.ndim !== 2 || mask.shape[0] !== B || mask.shape[1] !== S)) {
    throw new Error(`attention: mask ${fmt(mask.shape)} must be [B, S] = [${B}, ${S}]`);
  }
  if (mask) checkF32("attention mask", mask);
  const pDrop = opts.training === false ? 0 : opts.dropout ?? 0;
  if (!(pDrop >= 0 && pDrop < 1)) {
    throw new Error(`attention: dropout must be in [0, 1), got ${pDrop}`);
  }
  const p: AttentionParams = {
    batch: B,
    heads: H,
    queries: T,
    keys: S,
    dim: D,
    scale: opts.scale ?? 1 / Math.sqrt(D),
    dropP: pDrop,
    dropSeed: pDrop > 0 ? rng().nextU32() : 0,
  };
  const qc = contiguous(q), kc = contiguous(k), vc = contiguous(v);
  const mc = mask ? contiguous(mask) : null;
  const be = q.backend;
  const r = be.attention(qc.storage, kc.storage, vc.storage, mc?.storage ?? null, p);
  const lse = Tensor.fromStorage(r.lse, [B, H, T]);
  const out = Tensor.fromStorage(r.out, [B, H, T, D]);
  return record(out, "attention", [q, k, v], (g) => {
    const gc = contiguous(g);
    const gr = be.attentionBackward(
      qc.storage,
      kc.storage,
      vc.storage,
      mc?.storage ?? null,
      out.storage,
      lse.storage,
      gc.storage,
      p,
    );
    return [
      Tensor.fromStorage(gr.gq, q.shape),
      Tensor.fromStorage(gr.gk, k.shape),
      Tensor.fromStorage(gr.gv, v.shape),
    ];
  });
}

// ---------------------------------------------------------------------------------------------
// indexing and randomness

/** Rows of `table` [V, C] at i32 `ids` [...] → [..., C]; backward scatter-adds into the table. */
export function embedding(table: Tensor, ids: Tensor): Tensor {
  checkLive("embedding", table, ids);
  if (ids.dtype !== "i32") throw new Error(`embedding: ids must be i32, got ${ids.dtype}`);
  if (table.ndim !== 2) throw new Error(`embedding: table must be 2-d, got ${fmt(table.shape)}`);
  const [vocab, cols] = table.shape;
  const tc = contiguous(table), ic = contiguous(ids);
  const s = table.backend.gather(tc.storage, ic.storage, ids.size, cols);
  if (tc !== table) tc.dispose();
  const out = Tensor.fromStorage(s, [...ids.shape, cols]);
  return record(out, "embedding", [table], (g) => {
    const gc = contiguous(g);
    return [
      Tensor.fromStorage(table.backend.scatterAdd(gc.storage, ic.storage, ids.size, cols, vocab), [
        vocab,
        cols,
      ]),
    ];
  });
}

/** Inverted dropout: zeroes elements with probability p and scales the rest by 1/(1−p). */
export function dropout(x: Tensor, p: number, training = true): Tensor {
  if (!training || p === 0) return x;
  if (!(p > 0 && p < 1)) throw new Error(`dropout: p must be in [0, 1), got ${p}`);
  checkLive("dropout", x);
  const seed = rng().nextU32();
  const mask = Tensor.fromStorage(x.backend.dropoutMask(x.size, p, seed), x.shape);
  return mul(x, mask);
}
