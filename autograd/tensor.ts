/**
 * The `Tensor`: a strided view of a reference-counted backend buffer, plus the autograd tape.
 *
 * Lifetimes are explicit because GPU memory is not garbage collected: a tensor holds one
 * reference to its buffer; views share it; `dispose()` drops the reference and the buffer
 * is freed when the last one goes. `tidy(fn)` disposes every tensor created inside `fn` except
 * those it returns (or `keep`s); `using t = ...` disposes at the end of a block; a
 * FinalizationRegistry frees what the program forgot (late, but never leaks forever).
 *
 * @module
 */
import {
  type Backend,
  contiguousStrides,
  type DType,
  shapeSize,
  type Storage,
  type View,
} from "../kernels/backend.ts";
import { getBackend } from "../kernels/registry.ts";
import * as ops from "./ops.ts";

/** A backend buffer shared by a tensor and its views. */
export class Buffer {
  /** Number of live tensors using this buffer. */
  refs = 1;
  /** Creates the shared wrapper around a backend storage. */
  constructor(readonly storage: Storage) {}
  /** Drops one reference; frees the storage at zero. */
  release(): void {
    if (--this.refs === 0) this.storage.backend.dispose(this.storage);
  }
}

const finalizer = new FinalizationRegistry<Buffer>((buf) => buf.release());

/** How a tensor was made: its inputs and how to push a gradient back to them. */
export interface GradFn {
  /** Op name, for messages. */
  readonly op: string;
  /** Inputs the gradient flows to. */
  readonly inputs: readonly Tensor[];
  /** Gradients for each input (null where none flows), given the output gradient. */
  backward(g: Tensor): (Tensor | null)[];
}

let gradEnabled = true;
let nextId = 1;

/** Scopes opened by {@link tidy}; new tensors are tracked by the innermost one. */
const scopes: Set<Tensor>[] = [];

/** Options for creating a tensor from data. */
export interface TensorOptions {
  /** Element type, default f32 (i32 for Int32Array data). */
  dtype?: DType;
  /** Track gradients for this (leaf) tensor. */
  requiresGrad?: boolean;
  /** Backend, default the current one. */
  backend?: Backend;
  /** Shape, when data is flat. */
  shape?: readonly number[];
}

/** Nested arrays of numbers, as accepted by {@link tensor}. */
export type NestedArray = number | NestedArray[];

/** An n-dimensional array with reverse-mode autodiff. */
export class Tensor {
  /** Unique id (debugging, topological sort). */
  readonly id: number = nextId++;
  /** Logical shape. */
  readonly shape: readonly number[];
  /** Element strides into the buffer. */
  readonly strides: readonly number[];
  /** Element offset into the buffer. */
  readonly offset: number;
  /** Element type. */
  readonly dtype: DType;
  /** Whether gradients are tracked through this tensor. */
  requiresGrad: boolean;
  /** Accumulated gradient (leaf tensors), or null. */
  grad: Tensor | null = null;
  /** The op that produced this tensor, while the graph is alive. */
  gradFn: GradFn | null = null;
  #buf: Buffer | null;

  /** Low-level constructor: wraps a buffer (taking one reference) with a view. */
  constructor(
    buf: Buffer,
    view: View,
    dtype: DType,
    requiresGrad = false,
  ) {
    this.#buf = buf;
    this.shape = view.shape;
    this.strides = view.strides;
    this.offset = view.offset;
    this.dtype = dtype;
    this.requiresGrad = requiresGrad;
    finalizer.register(this, buf, this);
    scopes.at(-1)?.add(this);
  }

  /** A new tensor owning a fresh contiguous storage. */
  static fromStorage(s: Storage, shape: readonly number[], requiresGrad = false): Tensor {
    if (shapeSize(shape) !== s.length) {
      throw new Error(
        `tensor: shape [${shape}] needs ${shapeSize(shape)} elements, got ${s.length}`,
      );
    }
    return new Tensor(
      new Buffer(s),
      { shape, strides: contiguousStrides(shape), offset: 0 },
      s.dtype,
      requiresGrad,
    );
  }

  /** A new tensor sharing this one's buffer with another view. */
  viewAs(view: View): Tensor {
    const buf = this.buffer;
    buf.refs++;
    return new Tensor(buf, view, this.dtype);
  }

  /**
   * Swaps this tensor's storage for `s` (same length; this tensor must be contiguous). Used to
   * re-store frozen weights (e.g. as f16); views made earlier keep the old buffer.
   */
  replaceStorage(s: Storage): void {
    const old = this.buffer;
    if (s.length !== this.size || !this.isContiguous || this.offset !== 0) {
      throw new Error(
        `replaceStorage: tensor #${this.id} [${this.shape}] (contiguous ${this.isContiguous}) cannot take a storage of ${s.length} elements`,
      );
    }
    finalizer.unregister(this);
    this.#buf = new Buffer(s);
    finalizer.register(this, this.#buf, this);
    old.release();
  }

  /** The shared buffer; throws if disposed. */
  get buffer(): Buffer {
    if (!this.#buf) throw new Error(`tensor #${this.id} [${this.shape}] was disposed`);
    return this.#buf;
  }
  /** The backend storage. */
  get storage(): Storage {
    return this.buffer.storage;
  }
  /** The backend holding the data. */
  get backend(): Backend {
    return this.buffer.storage.backend;
  }
  /** This tensor's view (shape, strides, offset). */
  get view(): View {
    return { shape: this.shape, strides: this.strides, offset: this.offset };
  }
  /** Whether {@link dispose} was called. */
  get disposed(): boolean {
    return this.#buf === null;
  }
  /** Number of elements. */
  get size(): number {
    return shapeSize(this.shape);
  }
  /** Number of dimensions. */
  get ndim(): number {
    return this.shape.length;
  }
  /** Whether the view is row-major contiguous with offset 0 over the whole buffer. */
  get isContiguous(): boolean {
    const s = contiguousStrides(this.shape);
    for (let i = 0; i < s.length; i++) {
      if (this.shape[i] !== 1 && s[i] !== this.strides[i]) return false;
    }
    return true;
  }

  /** Releases this tensor's reference to its buffer (idempotent). Its grad is disposed too. */
  dispose(): void {
    if (!this.#buf) return;
    finalizer.unregister(this);
    const b = this.#buf;
    this.#buf = null;
    b.release();
    if (this.gradFn) disposedInGraph.set(this, this.gradFn.op);
    this.gradFn = null;
    this.grad?.dispose();
    this.grad = null;
  }
  /** `using t = ...` support. */
  [Symbol.dispose](): void {
    this.dispose();
  }

  // ---- readback ----
  /** The values as a flat typed array (row-major), after queued work finishes. */
  async data(): Promise<Float32Array | Int32Array> {
    if (this.isContiguous && this.offset === 0 && this.storage.length === this.size) {
      return await this.backend.read(this.storage);
    }
    using c = ops.contiguous(this);
    return await c.backend.read(c.storage);
  }
  /** The values as nested arrays. */
  async toArray(): Promise<NestedArray> {
    const d = await this.data();
    return nest(Array.from(d), this.shape);
  }
  /** The single value of a one-element tensor. */
  async item(): Promise<number> {
    if (this.size !== 1) throw new Error(`item: tensor has shape [${this.shape}], not one element`);
    return (await this.data())[0];
  }

  // ---- autograd ----
  /** Back-propagates from this tensor (a scalar unless `gradient` is given) to the leaves. */
  backward(gradient?: Tensor): void {
    backward(this, gradient);
  }
  /** A tensor sharing the data but cut from the graph. */
  detach(): Tensor {
    return this.viewAs(this.view);
  }
  /** Drops the accumulated gradient. */
  zeroGrad(): void {
    this.grad?.dispose();
    this.grad = null;
  }

  // ---- ops as methods (definitions in ops.ts) ----
  /** Elementwise a + b (broadcasting). */
  add(b: Tensor | number): Tensor {
    return ops.add(this, b);
  }
  /** Elementwise a − b. */
  sub(b: Tensor | number): Tensor {
    return ops.sub(this, b);
  }
  /** Elementwise a · b. */
  mul(b: Tensor | number): Tensor {
    return ops.mul(this, b);
  }
  /** Elementwise a / b. */
  div(b: Tensor | number): Tensor {
    return ops.div(this, b);
  }
  /** −x. */
  neg(): Tensor {
    return ops.neg(this);
  }
  /** eˣ. */
  exp(): Tensor {
    return ops.exp(this);
  }
  /** ln x. */
  log(): Tensor {
    return ops.log(this);
  }
  /** √x. */
  sqrt(): Tensor {
    return ops.sqrt(this);
  }
  /** tanh x. */
  tanh(): Tensor {
    return ops.tanh(this);
  }
  /** xᵖ for a scalar exponent. */
  pow(p: number): Tensor {
    return ops.pow(this, p);
  }
  /** max(x, 0). */
  relu(): Tensor {
    return ops.relu(this);
  }
  /** GPT-2's tanh-approximated GELU. */
  gelu(): Tensor {
    return ops.gelu(this);
  }
  /** softplus(x) = ln(1 + eˣ) (PyTorch's, threshold 20). */
  softplus(): Tensor {
    return ops.softplus(this);
  }
  /** Sum over axes (all by default). */
  sum(axis?: number | number[], keepdim = false): Tensor {
    return ops.sum(this, axis, keepdim);
  }
  /** Mean over axes (all by default). */
  mean(axis?: number | number[], keepdim = false): Tensor {
    return ops.mean(this, axis, keepdim);
  }
  /** Maximum over axes (all by default); ties share the gradient. */
  max(axis?: number | number[], keepdim = false): Tensor {
    return ops.max(this, axis, keepdim);
  }
  /** Index of the maximum along an axis (i32, no gradient). */
  argmax(axis: number, keepdim = false): Tensor {
    return ops.argmax(this, axis, keepdim);
  }
  /** Matrix product over the last two axes, batch axes broadcast. */
  matmul(b: Tensor): Tensor {
    return ops.matmul(this, b);
  }
  /** Same data, new shape (-1 infers one axis). */
  reshape(...shape: number[]): Tensor {
    return ops.reshape(this, shape);
  }
  /** Reorders axes. */
  permute(...axes: number[]): Tensor {
    return ops.permute(this, axes);
  }
  /** Swaps two axes. */
  transpose(dim0: number, dim1: number): Tensor {
    return ops.transpose(this, dim0, dim1);
  }
  /** Sub-range [start, end) along an axis. */
  slice(axis: number, start: number, end?: number): Tensor {
    return ops.slice(this, axis, start, end);
  }
  /** Splits along an axis into pieces of the given sizes (or n equal pieces). */
  split(sizes: number | number[], axis = 0): Tensor[] {
    return ops.split(this, sizes, axis);
  }
  /** Broadcasts to a larger shape without copying. */
  expand(...shape: number[]): Tensor {
    return ops.expand(this, shape);
  }
  /** A contiguous copy (or this data, if already contiguous). */
  contiguous(): Tensor {
    return ops.contiguous(this);
  }
  /** Softmax along an axis. */
  softmax(axis = -1): Tensor {
    return ops.softmax(this, axis);
  }
  /** Log-softmax along an axis. */
  logSoftmax(axis = -1): Tensor {
    return ops.logSoftmax(this, axis);
  }
  /** Layer norm over the last axis. */
  layerNorm(w: Tensor, b: Tensor, eps = 1e-5): Tensor {
    return ops.layerNorm(this, w, b, eps);
  }
  /** Cross-entropy of logits [..., C] against i32 targets [...]. */
  crossEntropy(targets: Tensor, opts?: ops.CrossEntropyOptions): Tensor {
    return ops.crossEntropy(this, targets, opts);
  }
  /** Fills positions where `mask` is non-zero with `value`. */
  maskedFill(mask: Tensor, value: number): Tensor {
    return ops.maskedFill(this, mask, value);
  }
  /** Inverted dropout with probability p (identity when p = 0 or not training). */
  dropout(p: number, training = true): Tensor {
    return ops.dropout(this, p, training);
  }
  /** Converts to another dtype. */
  cast(dtype: DType): Tensor {
    return ops.cast(this, dtype);
  }
  /** A copy on another backend. */
  async to(backend: Backend): Promise<Tensor> {
    if (backend === this.backend) return this;
    const d = await this.data();
    return Tensor.fromStorage(backend.fromHost(d, this.dtype), this.shape, this.requiresGrad);
  }
  /** Short description. */
  toString(): string {
    return `Tensor(${this.dtype}[${this.shape}] on ${this.backend.name}${
      this.requiresGrad ? ", grad" : ""
    })`;
  }
}

function nest(flat: number[], shape: readonly number[]): NestedArray {
  if (shape.length === 0) return flat[0];
  let i = 0;
  const build = (d: number): NestedArray => {
    const out: NestedArray[] = [];
    for (let k = 0; k < shape[d]; k++) out.push(d === shape.length - 1 ? flat[i++] : build(d + 1));
    return out;
  };
  return build(0);
}

function flatten(data: NestedArray, shape: number[], out: number[], depth: number): void {
  if (typeof data === "number") {
    if (depth !== shape.length) throw new Error(`tensor: ragged nested array at depth ${depth}`);
    out.push(data);
    return;
  }
  if (depth === shape.length) shape.push(data.length);
  else if (shape[depth] !== data.length) {
    throw new Error(
      `tensor: ragged nested array: length ${data.length} at depth ${depth}, expected ${
        shape[depth]
      }`,
    );
  }
  for (const x of data) flatten(x, shape, out, depth + 1);
}

/** Creates a tensor from nested arrays or a flat typed array (with `shape`). */
export function tensor(
  data: NestedArray | Float32Array | Float64Array | Int32Array | number[],
  opts: TensorOptions = {},
): Tensor {
  const backend = opts.backend ?? getBackend();
  let flat: ArrayLike<number>;
  let shape: readonly number[];
  if (ArrayBuffer.isView(data)) {
    flat = data;
    shape = opts.shape ?? [data.length];
  } else {
    const s: number[] = [];
    const f: number[] = [];
    flatten(data, s, f, 0);
    flat = f;
    shape = opts.shape ?? s;
  }
  if (shapeSize(shape) !== flat.length) {
    throw new Error(
      `tensor: shape [${shape}] needs ${shapeSize(shape)} elements, got ${flat.length}`,
    );
  }
  const dtype = opts.dtype ?? (data instanceof Int32Array ? "i32" : "f32");
  const host = dtype === "i32" ? Int32Array.from(flat) : Float32Array.from(flat);
  if (opts.requiresGrad && dtype !== "f32") {
    throw new Error("tensor: only f32 tensors can require grad");
  }
  return Tensor.fromStorage(backend.fromHost(host, dtype), shape, opts.requiresGrad ?? false);
}

/** Whether ops record the graph right now. */
export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Runs `fn` without recording the graph. */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

/** Stops a tensor from being disposed by the enclosing {@link tidy} scopes. */
export function keep<T extends Tensor>(t: T): T {
  for (const s of scopes) s.delete(t);
  return t;
}

/** Tensors (possibly nested in arrays / plain objects) in a value. */
function collect(v: unknown, out: Set<Tensor>): void {
  if (v instanceof Tensor) out.add(v);
  else if (Array.isArray(v)) { for (const x of v) collect(x, out); }
  else if (v && typeof v === "object" && Object.getPrototypeOf(v) === Object.prototype) {
    for (const x of Object.values(v)) collect(x, out);
  }
}

/**
 * Runs `fn` and disposes every tensor it created except those in its result (which move to
 * the enclosing scope). Async functions are not supported: the scope would close too early.
 */
export function tidy<T>(fn: () => T): T {
  const scope = new Set<Tensor>();
  scopes.push(scope);
  let result: T;
  try {
    result = fn();
  } catch (e) {
    scopes.pop();
    for (const t of scope) t.dispose();
    throw e;
  }
  scopes.pop();
  if (result instanceof Promise) {
    throw new Error("tidy: fn returned a Promise; use an explicit scope");
  }
  const kept = new Set<Tensor>();
  collect(result, kept);
  for (const t of scope) {
    if (kept.has(t)) scopes.at(-1)?.add(t);
    else t.dispose();
  }
  return result;
}

/** Records `fn` as the creator of `out` when gradients are on and an input needs them. */
export function record(
  out: Tensor,
  op: string,
  inputs: Tensor[],
  backwardFn: (g: Tensor) => (Tensor | null)[],
): Tensor {
  if (gradEnabled && inputs.some((t) => t.requiresGrad)) {
    out.requiresGrad = true;
    out.gradFn = { op, inputs, backward: backwardFn };
  }
  return out;
}

/**
 * Non-leaf tensors whose graph a backward pass already released (PyTorch frees it too), and
 * non-leaf tensors disposed while still part of a graph (with their op): reaching either in a
 * later backward is an error, not a silent missing gradient.
 */
const releasedGraph = new WeakSet<Tensor>();
const disposedInGraph = new WeakMap<Tensor, string>();

function checkReachable(t: Tensor): void {
  if (t.gradFn) return;
  if (releasedGraph.has(t)) {
    throw new Error(
      `backward: the graph through tensor [${t.shape}] was already freed by an earlier backward(); ` +
        `as in PyTorch, run the forward again to differentiate a second time`,
    );
  }
  const op = disposedInGraph.get(t);
  if (op !== undefined) {
    throw new Error(
      `backward: an intermediate tensor [${t.shape}] (output of ${op}) was disposed before ` +
        `backward(), so the gradients of its inputs cannot be computed; keep it (or call ` +
        `backward() inside the tidy scope that made it)`,
    );
  }
}

/** Reverse-mode sweep from `root`; accumulates into `.grad` of leaves and releases the graph. */
function backward(root: Tensor, gradient?: Tensor): void {
  if (!root.requiresGrad) throw new Error(`backward: tensor [${root.shape}] does not require grad`);
  if (!gradient && root.size !== 1) {
    throw new Error(
      `backward: output has shape [${root.shape}]; pass a gradient of that shape or reduce it to a scalar`,
    );
  }
  if (gradient && gradient.shape.join() !== root.shape.join()) {
    throw new Error(
      `backward: gradient shape [${gradient.shape}] differs from output shape [${root.shape}]`,
    );
  }
  // Topological order by iterative DFS.
  const order: Tensor[] = [];
  const seen = new Set<number>();
  const stack: [Tensor, boolean][] = [[root, false]];
  while (stack.length) {
    const [t, done] = stack.pop()!;
    if (done) {
      order.push(t);
      continue;
    }
    if (seen.has(t.id)) continue;
    seen.add(t.id);
    checkReachable(t);
    stack.push([t, true]);
    for (const i of t.gradFn?.inputs ?? []) {
      if (i.requiresGrad && !seen.has(i.id)) stack.push([i, false]);
    }
  }
  const grads = new Map<number, Tensor>();
  const owned = new Set<Tensor>();
  // Every gradient in the map is its own Tensor object (views share buffers by refcount), so
  // each can be disposed as soon as it has been pushed back. `owned` holds every tensor that
  // is (or was) a map entry: a backward returning one of them gets a fresh view instead.
  const own = (g: Tensor): Tensor => {
    const mine = owned.has(g) ? g.viewAs(g.view) : g;
    owned.add(mine);
    return mine;
  };
  const seed = gradient ? gradient.viewAs(gradient.view) : ops.onesLike(root);
  keep(seed);
  grads.set(root.id, own(seed));
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    for (let k = order.length - 1; k >= 0; k--) {
      const t = order[k];
      const g = grads.get(t.id);
      if (!g) continue;
      grads.delete(t.id);
      const fn = t.gradFn;
      if (!fn) {
        // Leaf: accumulate into .grad, kept beyond any tidy scope.
        const gc = g.isContiguous && g.offset === 0 && g.storage.length === g.size
          ? g
          : ops.contiguous(g);
        if (gc !== g) g.dispose();
        if (t.grad) {
          const sum = keep(ops.add(t.grad, gc));
          t.grad.dispose();
          gc.dispose();
          t.grad = sum;
        } else {
          t.grad = keep(gc);
        }
        continue;
      }
      const inGrads = tidy(() => fn.backward(g));
      for (let i = 0; i < fn.inputs.length; i++) {
        const x = fn.inputs[i];
        const gi = inGrads[i];
        if (!gi || !x.requiresGrad) continue;
        if (gi.shape.join() !== x.shape.join()) {
          throw new Error(
            `backward of ${fn.op}: gradient [${gi.shape}] for input ${i} of shape [${x.shape}]`,
          );
        }
        const mine = keep(own(gi));
        const have = grads.get(x.id);
        if (have) {
          const sum = keep(ops.add(have, mine));
          owned.add(sum);
          grads.set(x.id, sum);
          have.dispose();
          mine.dispose();
        } else grads.set(x.id, mine);
      }
      for (const gi of inGrads) if (gi && !owned.has(gi)) gi.dispose();
      g.dispose();
      t.gradFn = null; // release the graph as we go
      releasedGraph.add(t);
    }
  } finally {
    gradEnabled = prev;
    for (const g of grads.values()) g.dispose();
  }
}
