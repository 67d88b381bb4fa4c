/**
 * The CPU reference backend: every primitive of {@link Backend} in TypeScript, computing in
 * float64.
 *
 * It is the oracle the other backends are tested against, so it favours obvious code over
 * speed. The ops described once for every backend are compiled from their descriptions: the
 * elementwise ops, AdamW and the dropout mask from `../expr.ts` (by `expr.ts`), the reductions
 * (sum, max, min) and argmax's rule from `../expr.ts` too (by `reduce_expr.ts`), the row ops
 * (softmax, layer norm, cross-entropy, forward and backward) from `../row_kernels.ts` (by
 * `row_expr.ts`); the rest (matmul, indexing, attention) are plain loops here.
 * With `precision: "f64"` it stores values in Float64Array; the gradient checks use that mode so
 * finite differences are not drowned in f32 rounding.
 *
 * @module
 */
import {
  type AdamWParams,
  ATTENTION_FULLY_MASKED_LSE,
  ATTENTION_MASK_VALUE,
  type AttentionParams,
  type Backend,
  type BinaryOp,
  type DType,
  type HostArray,
  type MatmulParams,
  type ReduceOp,
  type Storage,
  type UnaryOp,
  type View,
} from "../backend.ts";
import { installArgumentChecks } from "../checks.ts";
import {
  ADAMW,
  adamwScalars,
  ARGMAX_TAKES,
  BINARY_EXPRS,
  DROPOUT_MASK,
  dropoutThreshold,
  REDUCTIONS,
  UNARY_EXPRS,
} from "../expr.ts";
import {
  CROSS_ENTROPY,
  CROSS_ENTROPY_BACKWARD,
  LAYER_NORM,
  LAYER_NORM_BACKWARD,
  LOG_SOFTMAX,
  LOG_SOFTMAX_BACKWARD,
  type RowKernel,
  SOFTMAX,
  SOFTMAX_BACKWARD,
} from "../row_kernels.ts";
import { compileJs, compileMapJs, mapArgNames, type ScalarFn } from "./expr.ts";
import { type ArgmaxJs, compileArgmaxJs, compileReduceJs, type ReduceJs } from "./reduce_expr.ts";
import { compileRowJs, type RowKernelJs } from "./row_expr.ts";

/** The float arrays the CPU backend computes in. */
export type Floats = Float32Array | Float64Array;

/** A buffer of the CPU backend: a typed array on the JS heap. */
export class CpuStorage implements Storage {
  /** The element values. */
  data: Floats | Int32Array;
  /** Set once disposed. */
  disposed = false;
  /** Creates a storage around `data`. */
  constructor(
    readonly backend: CpuBackend,
    readonly dtype: DType,
    data: Floats | Int32Array,
  ) {
    this.data = data;
  }
  /** Number of elements. */
  get length(): number {
    return this.data.length;
  }
}

const compiled = new Map<string, ScalarFn>();
/** The float64 evaluator of an elementwise op, compiled from its expression on first use. */
function evaluator(op: UnaryOp | BinaryOp, unary: boolean): ScalarFn {
  const key = `${unary ? "unary" : "binary"}:${op}`;
  let f = compiled.get(key);
  if (f === undefined) {
    f = compileJs(unary ? UNARY_EXPRS[op as UnaryOp] : BINARY_EXPRS[op as BinaryOp]);
    compiled.set(key, f);
  }
  return f;
}

const reducers = new Map<ReduceOp, ReduceJs>();
/** The reduction of an op, compiled from {@link REDUCTIONS} on first use. */
function reducer(op: ReduceOp): ReduceJs {
  let f = reducers.get(op);
  if (f === undefined) {
    f = compileReduceJs(REDUCTIONS[op]);
    reducers.set(op, f);
  }
  return f;
}
/** Argmax, compiled from {@link ARGMAX_TAKES} on first use. */
let argmaxJs: ArgmaxJs | undefined;

/** Calls `f(outIndex, srcIndices...)` for every element of a shape read through several views. */
function forEachStrided(
  shape: readonly number[],
  views: readonly View[],
  f: (i: number, idx: number[]) => void,
): void {
  const nd = shape.length;
  let n = 1;
  for (const d of shape) n *= d;
  if (n === 0) return;
  const idx = views.map((v) => v.offset);
  const counter = new Array<number>(nd).fill(0);
  for (let i = 0; i < n; i++) {
    f(i, idx);
    // Odometer increment of the multi-index, updating every view's offset incrementally.
    for (let d = nd - 1; d >= 0; d--) {
      counter[d]++;
      for (let v = 0; v < views.length; v++) idx[v] += views[v].strides[d];
      if (counter[d] < shape[d]) break;
      for (let v = 0; v < views.length; v++) idx[v] -= views[v].strides[d] * shape[d];
      counter[d] = 0;
    }
  }
}

/** Options of the CPU reference backend. */
export interface CpuBackendOptions {
  /** Storage precision of f32 tensors: "f32" (default) or "f64" (for gradient checks). */
  precision?: "f32" | "f64";
}

/** The plain-TypeScript reference implementation of every primitive. */
export class CpuBackend implements Backend {
  /** Backend name. */
  readonly name: string;
  #live = 0;
  #Float: Float32ArrayConstructor | Float64ArrayConstructor;

  /** Creates a CPU backend; `precision: "f64"` is for gradient checks. */
  constructor(opts: CpuBackendOptions = {}) {
    const f64 = opts.precision === "f64";
    this.name = f64 ? "cpu-f64" : "cpu";
    this.#Float = f64 ? Float64Array : Float32Array;
  }

  #make(dtype: DType, data: Floats | Int32Array): CpuStorage {
    this.#live++;
    return new CpuStorage(this, dtype, data);
  }
  #floats(n: number): Floats {
    return new this.#Float(n);
  }
  #get(s: Storage): Floats | Int32Array {
    const c = s as CpuStorage;
    if (!(c instanceof CpuStorage) || c.backend !== this) {
      throw new Error(`cpu backend: storage belongs to backend '${s.backend.name}'`);
    }
    if (c.disposed) throw new Error("cpu backend: use of a disposed buffer");
    return c.data;
  }
  #f(s: Storage): Floats {
    return this.#get(s) as Floats;
  }
  #i(s: Storage): Int32Array {
    return this.#get(s) as Int32Array;
  }

  /** Host data of a buffer without copying (CPU only; tests and loaders). */
  view(s: Storage): Floats | Int32Array {
    return this.#get(s);
  }

  fromHost(data: HostArray, dtype: DType): Storage {
    if (dtype === "i32") return this.#make("i32", Int32Array.from(data as ArrayLike<number>));
    const out = this.#floats(data.length);
    out.set(data);
    return this.#make("f32", out);
  }
  full(length: number, value: number, dtype: DType): Storage {
    const data = dtype === "i32" ? new Int32Array(length) : this.#floats(length);
    if (value !== 0) data.fill(value);
    return this.#make(dtype, data);
  }
  read(s: Storage): Promise<Float32Array | Int32Array> {
    const d = this.#get(s);
    if (d instanceof Int32Array) return Promise.resolve(d.slice());
    return Promise.resolve(Float32Array.from(d));
  }
  /** Synchronous read as float64 (gradient checks). */
  readF64(s: Storage): Float64Array {
    return Float64Array.from(this.#get(s));
  }
  dispose(s: Storage): void {
    const c = s as CpuStorage;
    if (c.disposed) return;
    c.disposed = true;
    c.data = new Int32Array(0);
    this.#live--;
  }
  liveCount(): number {
    return this.#live;
  }
  copy(src: Storage, srcView: View, dst: Storage, dstView: View): void {
    const s = this.#get(src), d = this.#get(dst);
    forEachStrided(srcView.shape, [srcView, dstView], (_i, idx) => {
      d[idx[1]] = s[idx[0]];
    });
  }

  unary(op: UnaryOp, x: Storage, xv: View, param = 0): Storage {
    const f = evaluator(op, true);
    const src = this.#f(x);
    const out = this.#floats(sizeOf(xv.shape));
    if (isDense(xv)) {
      for (let i = 0, o = xv.offset; i < out.length; i++) out[i] = f(src[o + i], 0, param);
      return this.#make("f32", out);
    }
    forEachStrided(xv.shape, [xv], (i, idx) => {
      out[i] = f(src[idx[0]], 0, param);
    });
    return this.#make("f32", out);
  }
  binary(op: BinaryOp, a: Storage, av: View, b: Storage, bv: View): Storage {
    const f = evaluator(op, false);
    const x = this.#f(a), y = this.#f(b);
    const out = this.#floats(sizeOf(av.shape));
    if (isDense(av) && isDense(bv)) {
      const oa = av.offset, ob = bv.offset;
      for (let i = 0; i < out.length; i++) out[i] = f(x[oa + i], y[ob + i], 0);
      return this.#make("f32", out);
    }
    forEachStrided(av.shape, [av, bv], (i, idx) => {
      out[i] = f(x[idx[0]], y[idx[1]], 0);
    });
    return this.#make("f32", out);
  }
  where(cond: Storage, cv: View, a: Storage, av: View, b: Storage, bv: View): Storage {
    const c = this.#get(cond), x = this.#f(a), y = this.#f(b);
    const out = this.#floats(sizeOf(cv.shape));
    forEachStrided(cv.shape, [cv, av, bv], (i, idx) => {
      out[i] = c[idx[0]] !== 0 ? x[idx[1]] : y[idx[2]];
    });
    return this.#make("f32", out);
  }
  cast(x: Storage, dtype: DType): Storage {
    const d = this.#get(x);
    if (dtype === "i32") {
      const out = new Int32Array(d.length);
      for (let i = 0; i < d.length; i++) out[i] = Math.trunc(d[i]);
      return this.#make("i32", out);
    }
    const out = this.#floats(d.length);
    out.set(d);
    return this.#make("f32", out);
  }

  reduce(op: ReduceOp, x: Storage, outer: number, size: number, inner: number): Storage {
    const out = this.#floats(outer * inner);
    reducer(op)(this.#f(x), out, outer, size, inner);
    return this.#make("f32", out);
  }
  argmax(x: Storage, outer: number, size: number, inner: number): Storage {
    const out = new Int32Array(outer * inner);
    (argmaxJs ??= compileArgmaxJs(ARGMAX_TAKES))(this.#f(x), out, outer, size, inner);
    return this.#make("i32", out);
  }

  matmul(a: Storage, b: Storage, p: MatmulParams): Storage {
    const A = this.#f(a), B = this.#f(b);
    const { batch, m, n, k } = p;
    const out = this.#floats(batch * m * n);
    // Element strides of op(A)[i, l] and op(B)[l, j].
    const [ai, al] = p.transA ? [1, m] : [k, 1];
    const [bl, bj] = p.transB ? [1, k] : [n, 1];
    const row = new Float64Array(n);
    for (let t = 0; t < batch; t++) {
      const aBase = (p.aOffset ?? 0) + t * p.aBatchStride;
      const bBase = (p.bOffset ?? 0) + t * p.bBatchStride;
      for (let i = 0; i < m; i++) {
        row.fill(0);
        for (let l = 0; l < k; l++) {
          const av = A[aBase + i * ai + l * al];
          if (av === 0) continue;
          const bRow = bBase + l * bl;
          for (let j = 0; j < n; j++) row[j] += av * B[bRow + j * bj];
        }
        out.set(row, (t * m + i) * n);
      }
    }
    return this.#make("f32", out);
  }

  softmax(x: Storage, rows: number, cols: number, log: boolean): Storage {
    return this.#rows(log ? LOG_SOFTMAX : SOFTMAX, { x }, {}, rows, cols).y;
  }
  softmaxBackward(y: Storage, gy: Storage, rows: number, cols: number, log: boolean): Storage {
    const k = log ? LOG_SOFTMAX_BACKWARD : SOFTMAX_BACKWARD;
    return this.#rows(k, { y, gy }, {}, rows, cols).gx;
  }
  layerNorm(
    x: Storage,
    w: Storage,
    b: Storage,
    rows: number,
    cols: number,
    eps: number,
  ): { y: Storage; mean: Storage; rstd: Storage } {
    const { y, mean, rstd } = this.#rows(LAYER_NORM, { x, w, b }, { eps }, rows, cols);
    return { y, mean, rstd };
  }
  layerNormBackward(
    x: Storage,
    w: Storage,
    mean: Storage,
    rstd: Storage,
    gy: Storage,
    rows: number,
    cols: number,
  ): { gx: Storage; gw: Storage; gb: Storage } {
    const k = LAYER_NORM_BACKWARD;
    const { gx, gw, gb } = this.#rows(k, { x, w, mean, rstd, gy }, {}, rows, cols);
    return { gx, gw, gb };
  }
  crossEntropy(
    logits: Storage,
    targets: Storage,
    rows: number,
    cols: number,
    ignoreIndex: number,
  ): { loss: Storage; lse: Storage } {
    this.#checkTargets("crossEntropy", targets, rows, cols, ignoreIndex);
    const ins = { logits, target: targets };
    const { loss, lse } = this.#rows(CROSS_ENTROPY, ins, { ignoreIndex }, rows, cols);
    return { loss, lse };
  }
  crossEntropyBackward(
    logits: Storage,
    targets: Storage,
    lse: Storage,
    gLoss: Storage,
    rows: number,
    cols: number,
    ignoreIndex: number,
  ): Storage {
    this.#checkTargets("crossEntropyBackward", targets, rows, cols, ignoreIndex);
    const ins = { logits, target: targets, lse, gLoss };
    return this.#rows(CROSS_ENTROPY_BACKWARD, ins, { ignoreIndex }, rows, cols).gx;
  }

  /** Runs a row kernel (compiled on first use) into new output buffers, by name. */
  #rows(
    k: RowKernel,
    inputs: Record<string, Storage>,
    scalars: Record<string, number>,
    rows: number,
    cols: number,
  ): Record<string, Storage> {
    const c = rowKernelJs(k);
    const bufs: Record<string, Floats | Int32Array> = {};
    for (const [n, s] of Object.entries(inputs)) bufs[n] = this.#get(s);
    const sizes: [readonly string[], number][] = [
      [c.elementOutputs, rows * cols],
      [c.rowOutputs, rows],
      [c.colOutputs, cols],
    ];
    for (const [names, n] of sizes) for (const name of names) bufs[name] = this.#floats(n);
    c.run(bufs, scalars, rows, cols);
    const out: Record<string, Storage> = {};
    for (const [names] of sizes) for (const n of names) out[n] = this.#make("f32", bufs[n]);
    return out;
  }

  /** Throws unless every target is `ignoreIndex` or a column in [0, cols). */
  #checkTargets(op: string, targets: Storage, rows: number, cols: number, ignoreIndex: number) {
    const T = this.#i(targets);
    for (let r = 0; r < rows; r++) {
      const t = T[r];
      if (t !== ignoreIndex && (t < 0 || t >= cols)) {
        throw new RangeError(`${op}: target ${t} at row ${r} is outside [0, ${cols})`);
      }
    }
  }

  gather(table: Storage, ids: Storage, n: number, cols: number): Storage {
    const W = this.#f(table), I = this.#i(ids);
    const rowsInTable = W.length / cols;
    const out = this.#floats(n * cols);
    for (let i = 0; i < n; i++) {
      const id = I[i];
      if (id < 0 || id >= rowsInTable) {
        throw new Error(`gather: index ${id} at position ${i} is outside [0, ${rowsInTable})`);
      }
      out.set(W.subarray(id * cols, id * cols + cols), i * cols);
    }
    return this.#make("f32", out);
  }
  scatterAdd(g: Storage, ids: Storage, n: number, cols: number, vocab: number): Storage {
    const G = this.#f(g), I = this.#i(ids);
    const out = this.#floats(vocab * cols);
    for (let i = 0; i < n; i++) {
      const o = I[i] * cols;
      for (let c = 0; c < cols; c++) out[o + c] += G[i * cols + c];
    }
    return this.#make("f32", out);
  }

  dropoutMask(length: number, p: number, seed: number): Storage {
    const out = this.#floats(length);
    const draw = dropoutDraw(p, seed);
    for (let i = 0; i < length; i++) out[i] = draw(i);
    return this.#make("f32", out);
  }

  attention(
    q: Storage,
    k: Storage,
    v: Storage,
    mask: Storage | null,
    p: AttentionParams,
  ): { out: Storage; lse: Storage } {
    const Q = this.#f(q), K = this.#f(k), V = this.#f(v), M = mask ? this.#f(mask) : null;
    const { batch: B, heads: H, queries: T, keys: S, dim: D, scale, dropP, dropSeed } = p;
    const out = this.#floats(B * H * T * D), lse = this.#floats(B * H * T);
    const prob = new Float64Array(S);
    const seen = new Uint8Array(S);
    const draw = dropP > 0 ? dropoutDraw(dropP, dropSeed) : null;
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        const kv = (b * H + h) * S * D;
        for (let i = 0; i < T; i++) {
          const row = (b * H + h) * T + i, qo = row * D;
          const { lse: l, visible } = attentionRow(
            Q,
            qo,
            K,
            kv,
            M,
            b * S,
            S - T + i,
            S,
            D,
            scale,
            prob,
            seen,
          );
          lse[row] = l;
          for (let j = 0; j < S; j++) {
            // A masked key never enters the row, not even as 0·v (v may be NaN or Inf there).
            if (visible && !seen[j]) continue;
            let pj = visible ? prob[j] : 1 / S;
            if (draw) pj *= draw(row * S + j);
            for (let c = 0; c < D; c++) out[qo + c] += pj * V[kv + j * D + c];
          }
        }
      }
    }
    return { out: this.#make("f32", out), lse: this.#make("f32", lse) };
  }

  attentionBackward(
    q: Storage,
    k: Storage,
    v: Storage,
    mask: Storage | null,
    out: Storage,
    lse: Storage,
    gOut: Storage,
    p: AttentionParams,
  ): { gq: Storage; gk: Storage; gv: Storage } {
    const Q = this.#f(q), K = this.#f(k), V = this.#f(v), M = mask ? this.#f(mask) : null;
    const O = this.#f(out), L = this.#f(lse), G = this.#f(gOut);
    const { batch: B, heads: H, queries: T, keys: S, dim: D, scale, dropP, dropSeed } = p;
    const gq = this.#floats(B * H * T * D), gk = this.#floats(B * H * S * D);
    const gv = this.#floats(B * H * S * D);
    const draw = dropP > 0 ? dropoutDraw(dropP, dropSeed) : null;
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < H; h++) {
        const kv = (b * H + h) * S * D;
        for (let i = 0; i < T; i++) {
          const row = (b * H + h) * T + i, qo = row * D;
          const last = S - T + i;
          const full = L[row] < ATTENTION_FULLY_MASKED_LSE;
          // D_i = Σ_j P_ij dP_ij = dO_i · O_i (dropout included).
          let di = 0;
          for (let c = 0; c < D; c++) di += G[qo + c] * O[qo + c];
          for (let j = 0; j < S; j++) {
            const seen = j <= last && (M === null || M[b * S + j] !== 0);
            let pj: number;
            if (full) pj = 1 / S;
            else if (!seen) continue;
            else {
              let s = 0;
              for (let c = 0; c < D; c++) s += Q[qo + c] * K[kv + j * D + c];
              pj = Math.exp(s * scale - L[row]);
            }
            const kf = draw ? draw(row * S + j) : 1;
            // dV_j += P̃_ij dO_i;  dP̃_ij = dO_i·v_j;  dS_ij = P_ij (keep·dP̃_ij − D_i).
            let dp = 0;
            for (let c = 0; c < D; c++) {
              gv[kv + j * D + c] += pj * kf * G[qo + c];
              dp += G[qo + c] * V[kv + j * D + c];
            }
            if (full) continue; // masked scores are constants: no gradient to q or k
            const ds = pj * (kf * dp - di) * scale;
            for (let c = 0; c < D; c++) {
              gq[qo + c] += ds * K[kv + j * D + c];
              gk[kv + j * D + c] += ds * Q[qo + c];
            }
          }
        }
      }
    }
    return {
      gq: this.#make("f32", gq),
      gk: this.#make("f32", gk),
      gv: this.#make("f32", gv),
    };
  }

  adamw(param: Storage, grad: Storage, m: Storage, v: Storage, p: AdamWParams): void {
    const bufs: Record<string, Floats> = {
      w: this.#f(param),
      g: this.#f(grad),
      m: this.#f(m),
      v: this.#f(v),
    };
    const ins = ADAMW.inputs.map((k) => bufs[k]);
    const outs = Object.keys(ADAMW.outputs).map((k) => bufs[k]);
    const args = new Float64Array(ins.length + ADAMW.scalars.length);
    args.set(adamwScalars(p), ins.length);
    const vals = new Float64Array(outs.length);
    const step = adamwFn();
    for (let i = 0; i < ins[0].length; i++) {
      for (let k = 0; k < ins.length; k++) args[k] = ins[k][i];
      step(args, vals);
      for (let k = 0; k < outs.length; k++) outs[k][i] = vals[k];
    }
  }
}

let adamwStep: ((args: ArrayLike<number>, out: Float64Array) => void) | undefined;
/** The AdamW step (`ADAMW` of `../expr.ts`) as a float64 evaluator, compiled on first use. */
function adamwFn() {
  return (adamwStep ??= compileMapJs(ADAMW));
}

let dropoutStep: ((args: ArrayLike<number>, out: Float64Array) => void) | undefined;
/**
 * Dropout's factor at each position for a drop probability `p` and a seed: 1/(1 − p) where
 * `DROPOUT_KEEP` holds, else 0 (`DROPOUT_MASK` of `../expr.ts`, compiled on first use). The
 * mask and fused attention both draw from it, so they drop the same elements.
 */
function dropoutDraw(p: number, seed: number): (index: number) => number {
  const step = (dropoutStep ??= compileMapJs(DROPOUT_MASK));
  const values: Record<string, number> = {
    keep: 1 / (1 - p),
    seed,
    threshold: dropoutThreshold(p),
    index: 0,
  };
  const names = mapArgNames(DROPOUT_MASK);
  const args = Float64Array.from(names, (n) => values[n]);
  const at = names.indexOf("index"), out = new Float64Array(1);
  return (index) => {
    args[at] = index;
    step(args, out);
    return out[0];
  };
}

const rowCompiled = new Map<RowKernel, RowKernelJs>();
/** A row kernel's float64 evaluator, compiled on first use. */
function rowKernelJs(k: RowKernel): RowKernelJs {
  let c = rowCompiled.get(k);
  if (c === undefined) {
    c = compileRowJs(k);
    rowCompiled.set(k, c);
  }
  return c;
}

installArgumentChecks(CpuBackend);

/** Whether a view is row-major contiguous (any offset): the loops can skip index arithmetic. */
function isDense(v: View): boolean {
  let acc = 1;
  for (let i = v.shape.length - 1; i >= 0; i--) {
    if (v.shape[i] !== 1 && v.strides[i] !== acc) return false;
    acc *= v.shape[i];
  }
  return true;
}

function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/**
 * Softmax of one attention row into `prob` over the keys it may see (`seen[j]` = 1; the others
 * are left out, whatever their scores); returns its log-sum-exp and whether any key was visible
 * (else the caller attends uniformly). A NaN or +Inf score, or only −Inf ones, give NaN
 * probabilities and log-sum-exp, as softmax does: NaN in, NaN out.
 */
function attentionRow(
  Q: ArrayLike<number>,
  qo: number,
  K: ArrayLike<number>,
  kv: number,
  M: ArrayLike<number> | null,
  mo: number,
  last: number,
  S: number,
  D: number,
  scale: number,
  prob: Float64Array,
  seen: Uint8Array,
): { lse: number; visible: boolean } {
  let mx = -Infinity, any = false;
  for (let j = 0; j < S; j++) {
    seen[j] = j > last || (M !== null && M[mo + j] === 0) ? 0 : 1;
    if (!seen[j]) continue;
    any = true;
    let s = 0;
    for (let c = 0; c < D; c++) s += Q[qo + c] * K[kv + j * D + c];
    prob[j] = s * scale;
    mx = Math.max(mx, prob[j]); // NaN-propagating
  }
  if (!any) return { lse: ATTENTION_MASK_VALUE, visible: false };
  let sum = 0;
  for (let j = 0; j < S; j++) {
    if (!seen[j]) continue;
    prob[j] = Math.exp(prob[j] - mx); // NaN when mx is NaN or ±Inf (−Inf − −Inf, Inf − Inf)
    sum += prob[j];
  }
  for (let j = 0; j < S; j++) if (seen[j]) prob[j] /= sum;
  return { lse: mx + Math.log(sum), visible: true };
}
