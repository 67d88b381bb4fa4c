/**
 * The WebGPU backend: every primitive of {@link Backend} as WGSL compute kernels.
 *
 * This file holds the primitives only: each checks out its operands and outputs from the heap
 * (`heap.ts`: storages, uploads, readback, disposal, over the size-bucketed pool of
 * `memory.ts`) and hands the kernel calls that the per-family files build (`elementwise.ts`,
 * `reduce.ts`, `matmul.ts`, `row_expr.ts`, `indexing.ts`, `optim.ts`, `attention.ts`) to the
 * dispatcher (`dispatch.ts`), which records them into batched command buffers; only
 * {@link read} waits. Tensors larger than one storage binding
 * (GPT-2's 154 MB token embedding on adapters with 128 MiB bindings) are bound as several
 * windows of one buffer, transparently to the kernels.
 *
 * Asynchronous WebGPU failures (out of memory, device loss, kernel compile errors) are thrown
 * by the next {@link read} with the allocation or kernel that caused them.
 *
 * @module
 */
import type {
  AdamWParams,
  AttentionParams,
  Backend,
  BinaryOp,
  DType,
  HostArray,
  MatmulParams,
  ReduceOp,
  Storage,
  UnaryOp,
  View,
} from "../backend.ts";
import { contiguousView } from "../backend.ts";
import { type AdapterDescription, type GpuContext, openDevice } from "./device.ts";
export { adapterInfo, hardwareAdapterAvailable } from "./device.ts";
import { type BufferArg, Dispatcher, type KernelCall } from "./dispatch.ts";
import {
  convertExpr,
  dropoutCall,
  elementwiseCall,
  type EwExpr,
  type EwOperand,
  fillCall,
  opWgsl,
  WHERE_WGSL,
} from "./elementwise.ts";
import type { PoolStats } from "./memory.ts";
import { GpuHeap, type WebGPUStorage } from "./heap.ts";
export { WebGPUStorage } from "./heap.ts";
import { reduceCall } from "./reduce.ts";
import { matmulCalls } from "./matmul.ts";
import { rowKernelCalls } from "./row_expr.ts";
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
import { REDUCTIONS } from "../expr.ts";
import { gatherCall, scatterLinksCall, scatterSumCall } from "./indexing.ts";
import { adamwCall } from "./optim.ts";
import { attentionBackwardCalls, attentionCall } from "./attention.ts";
import { installArgumentChecks } from "../checks.ts";

/** Options of {@link createWebGPUBackend}. */
export interface WebGPUBackendOptions {
  /**
   * Effective storage-binding limit in bytes, at most the device's
   * maxStorageBufferBindingSize. Lowering it makes small tensors take the multi-window path
   * that big tensors need (tests).
   */
  maxBindingBytes?: number;
  /** Dispatches recorded before an automatic submit (default 64). */
  maxBatch?: number;
  /**
   * Allow {@link WebGPUBackend.fromHostF16}: frozen weights stored as f16 (half the memory
   * and bandwidth), read by every kernel as f32 with f32 accumulation. Needs `shader-f16`.
   */
  f16Weights?: boolean;
}

/** Counters of a WebGPU backend. */
export interface WebGPUStats extends PoolStats {
  /** Live storages. */
  live: number;
  /** Kernel dispatches recorded. */
  dispatches: number;
  /** Command-buffer submits. */
  submits: number;
  /** Compiled pipelines. */
  pipelines: number;
}

function size(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Every primitive of the Backend contract on a WebGPU device. */
export class WebGPUBackend implements Backend {
  /** Backend name. */
  readonly name = "webgpu";
  /** The adapter the device was opened on. */
  readonly adapter: AdapterDescription;
  #ctx: GpuContext;
  #disp: Dispatcher;
  #heap: GpuHeap;
  #maxDim: number;
  #f16Weights: boolean;

  /** Wraps an opened device; use {@link createWebGPUBackend}. */
  constructor(ctx: GpuContext, opts: WebGPUBackendOptions = {}) {
    this.#ctx = ctx;
    this.adapter = ctx.adapter;
    this.#disp = new Dispatcher(ctx, {
      maxBindingBytes: opts.maxBindingBytes ?? ctx.limits.maxStorageBufferBindingSize,
      maxBatch: opts.maxBatch ?? 64,
    });
    this.#heap = new GpuHeap(ctx, this.#disp, this);
    this.#maxDim = ctx.limits.maxComputeWorkgroupsPerDimension;
    this.#f16Weights = opts.f16Weights === true;
    if (this.#f16Weights && !ctx.f16) {
      throw new Error(
        `webgpu: f16Weights needs the shader-f16 feature, which adapter '${ctx.adapter.name}' lacks`,
      );
    }
  }

  /** Whether f16 weight storage is available ({@link fromHostF16}). */
  get f16Weights(): boolean {
    return this.#f16Weights;
  }

  #run(call: KernelCall): void {
    this.#disp.run(call);
  }

  // ---- memory ----

  /** A new buffer holding a copy of `data`. */
  fromHost(data: HostArray, dtype: DType): Storage {
    return this.#heap.fromHost(data, dtype);
  }

  /**
   * A read-only f32 tensor stored as f16 on the GPU (frozen weights). Kernels read it as f32;
   * writing to it (copy destination, adamw) is an error. Needs `f16Weights: true`.
   */
  fromHostF16(data: HostArray): Storage {
    if (!this.#f16Weights) {
      throw new Error("webgpu fromHostF16: create the backend with { f16Weights: true }");
    }
    return this.#heap.fromHostF16(data);
  }

  /** A new buffer of `length` elements, all `value`. */
  full(length: number, value: number, dtype: DType): Storage {
    const s = this.#heap.alloc(length, dtype, "full");
    this.#run(fillCall(this.#heap.out(s), length, value, this.#maxDim));
    return s;
  }

  /** Reads a whole buffer back (submits queued work and waits). */
  read(s: Storage): Promise<Float32Array | Int32Array> {
    return this.#heap.read(s, (h) => this.cast(h, "f32") as WebGPUStorage);
  }

  /** Frees a buffer (returns it to the pool). Idempotent. */
  dispose(s: Storage): void {
    this.#heap.dispose(s);
  }

  /** Storages alive. */
  liveCount(): number {
    return this.#heap.live;
  }

  /** Writes `src` seen through `srcView` into `dst` seen through `dstView`. */
  copy(src: Storage, srcView: View, dst: Storage, dstView: View): void {
    let a = this.#heap.arg(src, "copy", "a");
    const out = this.#heap.arg(dst, "copy", "out", true);
    let temp: BufferArg | null = null;
    if (src === dst) {
      // One dispatch cannot bind a buffer both read-only and writable: copy the source first.
      temp = this.#heap.temp(a.length, a.format === "f16" ? "f32" : a.format, "copy temp", "a");
      this.#disp.copyBufferToBuffer(a.buf.buffer, 0, temp.buf.buffer, 0, Math.max(4, a.length * 4));
      a = { ...temp, write: false };
    }
    this.#run(
      elementwiseCall(
        "copy",
        convertExpr(a.format, out.format),
        srcView.shape,
        [{ arg: out, view: dstView }, { arg: a, view: srcView }],
        0,
        this.#maxDim,
      ),
    );
    if (temp !== null) this.#heap.release(temp);
  }

  // ---- elementwise ----

  #elementwise(
    op: string,
    expr: string | EwExpr,
    shape: readonly number[],
    inputs: { s: Storage; v: View; name: string; f32: boolean }[],
    scalar = 0,
  ): Storage {
    const operands: EwOperand[] = [];
    for (const i of inputs) {
      const arg = i.f32 ? this.#heap.f32(i.s, op, i.name) : this.#heap.arg(i.s, op, i.name);
      operands.push({ arg, view: i.v });
    }
    const n = size(shape);
    const out = this.#heap.alloc(n, "f32", op);
    operands.unshift({ arg: this.#heap.out(out), view: contiguousView(shape) });
    this.#run(elementwiseCall(op, expr, shape, operands, scalar, this.#maxDim));
    return out;
  }

  /** out = op(x[view]). */
  unary(op: UnaryOp, x: Storage, xv: View, param = 0): Storage {
    return this.#elementwise(
      op,
      opWgsl(op),
      xv.shape,
      [{ s: x, v: xv, name: "a", f32: true }],
      param,
    );
  }

  /** out = op(a, b). */
  binary(op: BinaryOp, a: Storage, av: View, b: Storage, bv: View): Storage {
    return this.#elementwise(op, opWgsl(op), av.shape, [
      { s: a, v: av, name: "a", f32: true },
      { s: b, v: bv, name: "b", f32: true },
    ]);
  }

  /** out = cond != 0 ? a : b. */
  where(cond: Storage, cv: View, a: Storage, av: View, b: Storage, bv: View): Storage {
    const expr = WHERE_WGSL.replace("ZERO", cond.dtype === "i32" ? "0" : "0.0");
    return this.#elementwise("where", expr, cv.shape, [
      { s: cond, v: cv, name: "c", f32: false },
      { s: a, v: av, name: "a", f32: true },
      { s: b, v: bv, name: "b", f32: true },
    ]);
  }

  /** Converts between dtypes (f32 → i32 truncates toward zero). */
  cast(x: Storage, dtype: DType): Storage {
    const a = this.#heap.arg(x, "cast", "a");
    const out = this.#heap.alloc(x.length, dtype, "cast");
    const shape = [x.length];
    this.#run(
      elementwiseCall(
        "cast",
        convertExpr(a.format, dtype),
        shape,
        [{ arg: this.#heap.out(out), view: contiguousView(shape) }, {
          arg: a,
          view: contiguousView(shape),
        }],
        0,
        this.#maxDim,
      ),
    );
    return out;
  }

  // ---- reductions ----

  #reduce(op: ReduceOp | "argmax", x: Storage, outer: number, sz: number, inner: number): Storage {
    const name = op === "argmax" ? "argmax" : `reduce.${op}`;
    const xa = this.#heap.f32(x, name, "x");
    const dtype: DType = op === "argmax" ? "i32" : "f32";
    if (sz === 0) {
      // Empty axis: the reduction's `empty`; argmax gives index 0.
      return this.full(outer * inner, op === "argmax" ? 0 : REDUCTIONS[op].empty, dtype);
    }
    const out = this.#heap.alloc(outer * inner, dtype, name);
    this.#run(reduceCall(op, xa, this.#heap.out(out), outer, sz, inner, this.#maxDim));
    return out;
  }

  /** Reduces the middle axis of [outer, size, inner]. */
  reduce(op: ReduceOp, x: Storage, outer: number, size: number, inner: number): Storage {
    return this.#reduce(op, x, outer, size, inner);
  }

  /** First index of the maximum along the middle axis. */
  argmax(x: Storage, outer: number, size: number, inner: number): Storage {
    return this.#reduce("argmax", x, outer, size, inner);
  }

  // ---- linear algebra ----

  /** C [batch, m, n] = op(A) · op(B). */
  matmul(a: Storage, b: Storage, p: MatmulParams): Storage {
    const aa = this.#heap.f32(a, "matmul", "a");
    const ba = this.#heap.f32(b, "matmul", "b");
    const out = this.#heap.alloc(p.batch * p.m * p.n, "f32", "matmul");
    if (p.batch * p.m * p.n === 0) return out;
    for (const call of matmulCalls(aa, ba, this.#heap.out(out), p, this.#maxDim)) this.#run(call);
    return out;
  }

  // ---- fused row ops: the descriptions of `../row_kernels.ts`, compiled by `row_expr.ts` ----

  /** Runs row kernel `k` on the named buffers, with scratch buffers for its column sums. */
  #rowKernel(
    k: RowKernel,
    label: string,
    rows: number,
    cols: number,
    buffers: Record<string, BufferArg>,
    scalars: Record<string, number> = {},
  ): void {
    const temps: BufferArg[] = [];
    const temp = (length: number, name: string) => {
      temps.push(this.#heap.temp(length, "f32", `${label} partial column sums`, name));
      return temps[temps.length - 1];
    };
    const args = { rows, cols, buffers, scalars, temp };
    for (const call of rowKernelCalls(k, label, args, this.#maxDim)) this.#run(call);
    for (const t of temps) this.#heap.release(t);
  }

  /** Softmax or log-softmax of each row. */
  softmax(x: Storage, rows: number, cols: number, log: boolean): Storage {
    const xa = this.#heap.f32(x, "softmax", "x");
    const out = this.#heap.alloc(rows * cols, "f32", "softmax");
    if (cols > 0) {
      const [k, label] = log ? [LOG_SOFTMAX, "logSoftmax"] : [SOFTMAX, "softmax"];
      this.#rowKernel(k, label, rows, cols, { x: xa, y: this.#heap.out(out) });
    }
    return out;
  }

  /** Input gradient of softmax / log-softmax given its output. */
  softmaxBackward(y: Storage, gy: Storage, rows: number, cols: number, log: boolean): Storage {
    const ya = this.#heap.f32(y, "softmaxBackward", "y");
    const ga = this.#heap.f32(gy, "softmaxBackward", "gy");
    const out = this.#heap.alloc(rows * cols, "f32", "softmaxBackward");
    if (cols > 0) {
      const [k, label] = log
        ? [LOG_SOFTMAX_BACKWARD, "logSoftmaxBackward"]
        : [SOFTMAX_BACKWARD, "softmaxBackward"];
      this.#rowKernel(k, label, rows, cols, { y: ya, gy: ga, gx: this.#heap.out(out) });
    }
    return out;
  }

  /** Layer norm of each row, with per-row mean and 1/std. */
  layerNorm(
    x: Storage,
    w: Storage,
    b: Storage,
    rows: number,
    cols: number,
    eps: number,
  ): { y: Storage; mean: Storage; rstd: Storage } {
    const op = "layerNorm";
    const xa = this.#heap.f32(x, op, "x"),
      wa = this.#heap.f32(w, op, "w"),
      ba = this.#heap.f32(b, op, "b");
    const y = this.#heap.alloc(rows * cols, "f32", "layerNorm y");
    const mean = this.#heap.alloc(rows, "f32", "layerNorm mean");
    const rstd = this.#heap.alloc(rows, "f32", "layerNorm rstd");
    // With cols = 0 the row outputs are still defined (e.g. a mean of nothing is NaN).
    if (rows > 0) {
      const out = this.#heap.out.bind(this.#heap);
      const buffers = { x: xa, w: wa, b: ba, y: out(y), mean: out(mean), rstd: out(rstd) };
      this.#rowKernel(LAYER_NORM, op, rows, cols, buffers, { eps });
    }
    return { y, mean, rstd };
  }

  /** Gradients of layer norm wrt x, w and b. */
  layerNormBackward(
    x: Storage,
    w: Storage,
    mean: Storage,
    rstd: Storage,
    gy: Storage,
    rows: number,
    cols: number,
  ): { gx: Storage; gw: Storage; gb: Storage } {
    const op = "layerNormBackward";
    const xa = this.#heap.f32(x, op, "x"), wa = this.#heap.f32(w, op, "w");
    const ma = this.#heap.f32(mean, op, "mean"), ra = this.#heap.f32(rstd, op, "rstd");
    const ga = this.#heap.f32(gy, op, "gy");
    const gx = this.#heap.alloc(rows * cols, "f32", "layerNormBackward gx");
    if (rows === 0 || cols === 0) {
      return { gx, gw: this.full(cols, 0, "f32"), gb: this.full(cols, 0, "f32") };
    }
    const gw = this.#heap.alloc(cols, "f32", "layerNormBackward gw");
    const gb = this.#heap.alloc(cols, "f32", "layerNormBackward gb");
    const out = this.#heap.out.bind(this.#heap);
    this.#rowKernel(LAYER_NORM_BACKWARD, op, rows, cols, {
      x: xa,
      w: wa,
      mean: ma,
      rstd: ra,
      gy: ga,
      gx: out(gx),
      gw: out(gw),
      gb: out(gb),
    });
    return { gx, gw, gb };
  }

  /** Cross-entropy per row (loss 0 on ignored rows; NaN for out-of-range targets). */
  crossEntropy(
    logits: Storage,
    targets: Storage,
    rows: number,
    cols: number,
    ignoreIndex: number,
  ): { loss: Storage; lse: Storage } {
    const op = "crossEntropy";
    const xa = this.#heap.f32(logits, op, "logits"), ta = this.#heap.i32(targets, op, "targets");
    const loss = this.#heap.alloc(rows, "f32", "crossEntropy loss");
    const lse = this.#heap.alloc(rows, "f32", "crossEntropy lse");
    // With cols = 0 the row outputs are still defined (e.g. a mean of nothing is NaN).
    if (rows > 0) {
      const out = this.#heap.out.bind(this.#heap);
      const buffers = { logits: xa, target: ta, loss: out(loss), lse: out(lse) };
      this.#rowKernel(CROSS_ENTROPY, op, rows, cols, buffers, { ignoreIndex });
    }
    return { loss, lse };
  }

  /** d loss / d logits = (softmax − onehot) · gLoss[row]; zero on ignored rows. */
  crossEntropyBackward(
    logits: Storage,
    targets: Storage,
    lse: Storage,
    gLoss: Storage,
    rows: number,
    cols: number,
    ignoreIndex: number,
  ): Storage {
    const op = "crossEntropyBackward";
    const xa = this.#heap.f32(logits, op, "logits"), ta = this.#heap.i32(targets, op, "targets");
    const la = this.#heap.f32(lse, op, "lse"), ga = this.#heap.f32(gLoss, op, "gLoss");
    const out = this.#heap.alloc(rows * cols, "f32", op);
    const buffers = { logits: xa, target: ta, lse: la, gLoss: ga, gx: this.#heap.out(out) };
    this.#rowKernel(CROSS_ENTROPY_BACKWARD, op, rows, cols, buffers, { ignoreIndex });
    return out;
  }

  // ---- indexing ----

  /** out[i, :] = table[ids[i], :]; out-of-range ids give zero rows. */
  gather(table: Storage, ids: Storage, n: number, cols: number): Storage {
    const ta = this.#heap.f32(table, "gather", "table"), ia = this.#heap.i32(ids, "gather", "ids");
    const vocab = cols > 0 ? Math.floor(table.length / cols) : 0;
    const out = this.#heap.alloc(n * cols, "f32", "gather");
    this.#run(gatherCall(ta, ia, this.#heap.out(out), n, cols, vocab, this.#maxDim));
    return out;
  }

  /** out[v, :] = Σ_{i: ids[i]=v} g[i, :], summed in increasing i (deterministic). */
  scatterAdd(g: Storage, ids: Storage, n: number, cols: number, vocab: number): Storage {
    const ga = this.#heap.f32(g, "scatterAdd", "g"), ia = this.#heap.i32(ids, "scatterAdd", "ids");
    const out = this.#heap.alloc(vocab * cols, "f32", "scatterAdd");
    this.#run(fillCall(this.#heap.out(out), vocab * cols, 0, this.#maxDim));
    if (n > 0 && cols > 0) {
      const links = this.#heap.temp(2 * n, "i32", "scatterAdd links", "links");
      this.#run(scatterLinksCall(ia, links, n, this.#maxDim));
      this.#run(
        scatterSumCall(
          ga,
          ia,
          { ...links, write: false },
          this.#heap.out(out),
          n,
          cols,
          vocab,
          this.#maxDim,
        ),
      );
      this.#heap.release(links);
    }
    return out;
  }

  // ---- random ----

  /** Dropout mask, bit-identical to the CPU backend for the same seed. */
  dropoutMask(length: number, p: number, seed: number): Storage {
    const out = this.#heap.alloc(length, "f32", "dropoutMask");
    this.#run(dropoutCall(this.#heap.out(out), length, p, seed, this.#maxDim));
    return out;
  }

  // ---- attention ----

  /** Fused causal attention: out [B, H, T, d] and the row log-sum-exps [B, H, T]. */
  attention(
    q: Storage,
    k: Storage,
    v: Storage,
    mask: Storage | null,
    p: AttentionParams,
  ): { out: Storage; lse: Storage } {
    const op = "attention";
    const { batch: B, heads: H, queries: T, dim: D } = p;
    const qa = this.#heap.f32(q, op, "q"),
      ka = this.#heap.f32(k, op, "k"),
      va = this.#heap.f32(v, op, "v");
    let ma: BufferArg | null = null;
    if (mask !== null) ma = this.#heap.f32(mask, op, "msk");
    const out = this.#heap.alloc(B * H * T * D, "f32", "attention out");
    const lse = this.#heap.alloc(B * H * T, "f32", "attention lse");
    this.#run(attentionCall(
      { q: qa, k: ka, v: va, msk: ma, out: this.#heap.out(out), lse: this.#heap.out(lse, "lse") },
      p,
      this.#ctx.limits.maxComputeWorkgroupStorageSize,
      this.#maxDim,
    ));
    return { out, lse };
  }

  /** Gradients of {@link attention} wrt q, k and v (deterministic: no atomics). */
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
    const op = "attentionBackward";
    const { batch: B, heads: H, queries: T, keys: S, dim: D } = p;
    const qa = this.#heap.f32(q, op, "q"),
      ka = this.#heap.f32(k, op, "k"),
      va = this.#heap.f32(v, op, "v");
    const oa = this.#heap.f32(out, op, "o"), la = this.#heap.f32(lse, op, "lse");
    const ga = this.#heap.f32(gOut, op, "g");
    let ma: BufferArg | null = null;
    if (mask !== null) ma = this.#heap.f32(mask, op, "msk");
    const gq = this.#heap.alloc(B * H * T * D, "f32", "attentionBackward gq");
    const gk = this.#heap.alloc(B * H * S * D, "f32", "attentionBackward gk");
    const gv = this.#heap.alloc(B * H * S * D, "f32", "attentionBackward gv");
    const dd = this.#heap.temp(B * H * T, "f32", "attentionBackward D", "dd");
    for (
      const call of attentionBackwardCalls(
        {
          q: qa,
          k: ka,
          v: va,
          msk: ma,
          o: oa,
          lse: la,
          g: ga,
          gq: this.#heap.out(gq, "gq"),
          gk: this.#heap.out(gk, "gk"),
          gv: this.#heap.out(gv, "gv"),
          dd,
        },
        p,
        this.#ctx.limits.maxComputeWorkgroupStorageSize,
        this.#maxDim,
      )
    ) this.#run(call);
    this.#heap.release(dd);
    return { gq, gk, gv };
  }

  // ---- optimizer ----

  /** One AdamW step in place on param, m and v. */
  adamw(param: Storage, grad: Storage, m: Storage, v: Storage, p: AdamWParams): void {
    const op = "adamw";
    this.#run(adamwCall(
      {
        param: this.#heap.arg(param, op, "param", true),
        grad: this.#heap.arg(grad, op, "grad"),
        m: this.#heap.arg(m, op, "m", true),
        v: this.#heap.arg(v, op, "v", true),
      },
      param.length,
      p,
      this.#maxDim,
    ));
  }

  // ---- extras (not part of the Backend contract) ----

  /** Submits queued work and waits until the GPU has finished it (benchmarks). */
  async sync(): Promise<void> {
    this.#disp.flush();
    await this.#ctx.device.queue.onSubmittedWorkDone();
    this.#ctx.check();
  }

  /** Submits queued work without waiting. */
  flush(): void {
    this.#disp.flush();
  }

  /** Frees the pooled (unused) GPU buffers. */
  trim(): void {
    this.#disp.flush();
    this.#heap.trim();
  }

  /** Counters: live storages, pool, dispatches, submits, pipelines. */
  stats(): WebGPUStats {
    return {
      live: this.#heap.live,
      ...this.#heap.poolStats(),
      dispatches: this.#disp.dispatches,
      submits: this.#disp.submits,
      pipelines: this.#disp.pipelines,
    };
  }

  /** Elements of an f32 tensor in one binding window (the chunking threshold). */
  get windowElems(): number {
    return this.#disp.windowElems("f32");
  }

  /** Destroys the device; every later call fails. */
  destroy(): void {
    this.#disp.flush();
    this.#ctx.device.destroy();
  }
}

installArgumentChecks(WebGPUBackend);

/**
 * Opens the high-performance WebGPU adapter and returns a backend on it. Throws when there is
 * no adapter (see `hardwareAdapterAvailable` in `device.ts` to decide before calling).
 */
export async function createWebGPUBackend(opts: WebGPUBackendOptions = {}): Promise<WebGPUBackend> {
  const ctx = await openDevice({ disableF16: false });
  return new WebGPUBackend(ctx, opts);
}
