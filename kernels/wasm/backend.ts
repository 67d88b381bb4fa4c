/**
 * The fast CPU backend: WebAssembly SIMD kernels generated at run time (see `kernels.ts`), all
 * buffers in one shared `WebAssembly.Memory`, and worker threads for the heavy primitives.
 *
 * Memory: 64-bit (memory64) when the runtime supports it, so a run may use up to 16 GiB (V8's
 * limit); measured no slower than 32-bit memory for these kernels. Otherwise 32-bit memory with a
 * 4 GiB limit. Running out gives "wasm backend: out of memory allocating N bytes for ...".
 *
 * Threads: the calling thread plus `threads − 1` workers share the memory. Calls stay synchronous:
 * the caller posts jobs through `Atomics.notify`, runs its share, then `Atomics.wait`s (Deno
 * allows that on the main thread). Work below a size threshold runs on the caller alone.
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
import { type Blas, openBlas } from "./blas.ts";
import { detectFeatures, type WasmFeatures } from "./builder.ts";
import { HEAVY_KERNELS } from "./gen_elementwise.ts";
import { adamwScalars, dropoutThreshold, isHeavy, REDUCTIONS } from "../expr.ts";
import { ROW_KERNELS } from "../row_kernels.ts";
import { rowKernelBuffers, rowKernelExprs } from "./gen_row_expr.ts";
import { GEMV_MAX_M } from "./gen_gemv.ts";
import { DEFAULT_MATMUL_CONFIG, type MatmulConfig, matmulScratchBytes } from "./gen_matmul.ts";
import { type HeapStats, WasmHeap } from "./heap.ts";
import { buildKernelModule, type KernelModule, rowKernelFunction } from "./kernels.ts";
import { argmaxFunction, reduceFunction } from "./gen_rows.ts";
import { ThreadPool } from "./threads.ts";
import {
  type Exports,
  HEAP_BASE,
  KernelDispatch,
  MAX_THREADS,
  PAR_CHEAP,
  PAR_GEMV_FLOPS,
  PAR_HEAVY,
  PAR_MATMUL_FLOPS,
  SLOT_BASE,
} from "./dispatch.ts";
import { contiguousStridesOf, sizeOfShape } from "./views.ts";
import { installArgumentChecks } from "../checks.ts";

/**
 * What the backend needs of each row kernel at a call, worked out once: its function, the order
 * of its buffer arguments and scalars, its threading threshold (transcendental or not), its
 * column sums.
 */
const ROW_PLANS = Object.fromEntries(
  Object.entries(ROW_KERNELS).map(([name, k]) => [name, {
    fn: rowKernelFunction(name),
    order: rowKernelBuffers(k),
    scalarNames: k.scalars,
    minPer: rowKernelExprs(k).some(isHeavy) ? PAR_HEAVY : PAR_CHEAP,
    colSums: Object.keys(k.colSums),
  }]),
);

/** Options of {@link createWasmBackend}. */
export interface WasmBackendOptions {
  /** Threads to use, the caller's included (default: the number of cores, at most 8). */
  threads?: number;
  /** Force 64-bit (true) or 32-bit (false) memory; default: 64-bit when supported. */
  memory64?: boolean;
  /** Use relaxed-SIMD fused multiply-add when available (default true). */
  relaxedSimd?: boolean;
  /** Upper limit of the memory in bytes (default: 16 GiB with memory64, else 4 GiB). */
  maxMemoryBytes?: number;
  /** Matmul blocking (for tuning experiments). */
  matmul?: Partial<MatmulConfig>;
  /** Use the packed matmul even for m ≤ 4 rows (for measurements and tests). */
  disableGemv?: boolean;
  /**
   * How two or more threads split a matmul: rows (true), columns (false), or by the smaller
   * duplicated packing (default: rows when n < m). For measurements and tests.
   */
  matmulSplitM?: boolean;
  /**
   * Script of the worker threads (default: `worker.ts` next to this module). A bundled page
   * passes the URL of its built copy.
   */
  workerUrl?: URL;
  /**
   * Bytes of address space left unused below the first buffer (default 0). Tests use it to put
   * buffers above 4 GiB without writing gigabytes: memory that is never written is never
   * committed by the operating system.
   */
  reserveBytes?: number;
  /**
   * The system BLAS for matmul (see `blas.ts`): `false` for the WebAssembly kernels, a library
   * path, `true` to require one; default: `LF_BLAS`, then OpenBLAS / Accelerate where found.
   */
  blas?: boolean | string;
}

/** A buffer of the wasm backend: a block of the shared memory. */
export class WasmStorage implements Storage {
  /** Set once disposed. */
  disposed = false;
  /** Creates a storage handle (the block is already allocated). */
  constructor(
    readonly backend: WasmBackend,
    readonly dtype: DType,
    readonly length: number,
    /** Byte address of element 0. */
    readonly ptr: number,
    /** Bytes asked of the allocator. */
    readonly bytes: number,
  ) {}
}

/**
 * Elements of the largest buffer. Kernels take element counts and strides as signed 32-bit
 * integers and turn them into byte offsets in 64-bit arithmetic, so element offsets within one
 * buffer must stay below 2^31; addresses themselves are never 32-bit with 64-bit memory.
 */
const MAX_BUFFER_ELEMENTS = 2 ** 31 - 1;

/**
 * `LF_WASM_THREADS=N` caps the worker threads of backends created without an explicit `threads`
 * (e.g. one thread each when two trainings share a 2-core machine). Unset or invalid: ignored.
 */
function envThreads(): number | undefined {
  const deno = (globalThis as { Deno?: { env: { get(k: string): string | undefined } } }).Deno;
  if (!deno) return undefined; // a browser: no environment variables
  let v: string | undefined;
  try {
    v = deno.env.get("LF_WASM_THREADS");
  } catch {
    return undefined; // no env permission
  }
  const n = Number(v);
  return v && Number.isInteger(n) && n >= 1 ? n : undefined;
}
const PAGE = 65536;

/** The WebAssembly SIMD backend. */
export class WasmBackend implements Backend {
  /** Backend name. */
  readonly name = "wasm";
  /** Whether the memory is 64-bit. */
  readonly memory64: boolean;
  /** Whether matmul uses relaxed-SIMD FMA. */
  readonly relaxedSimd: boolean;
  /** Features of the runtime. */
  readonly features: WasmFeatures;
  /** The matmul blocking in use. */
  readonly matmulConfig: MatmulConfig;
  #heap: WasmHeap;
  #ex: Exports;
  #slots: Map<string, number>;
  #d: KernelDispatch;
  #live = 0;
  #noGemv: boolean;
  /** Test hook: force (true) or forbid (false) splitting matmul rows between threads. */
  #splitM: boolean | undefined;
  #scratch: number[];
  #blas: Blas | null;
  /** Which matmul this backend runs and why: the BLAS library, or the reason for none. */
  readonly matmulPath: string;
  #finalizer: FinalizationRegistry<{ ptr: number; bytes: number; live: { v: boolean } }>;

  private constructor(init: {
    heap: WasmHeap;
    exports: Exports;
    km: KernelModule;
    pool: ThreadPool | null;
    threads: number;
    memory64: boolean;
    relaxed: boolean;
    features: WasmFeatures;
    noGemv: boolean;
    splitM?: boolean;
    blas: Blas | null;
    matmulPath: string;
  }) {
    this.#blas = init.blas;
    this.matmulPath = init.matmulPath;
    this.#noGemv = init.noGemv;
    this.#splitM = init.splitM;
    this.#heap = init.heap;
    this.#ex = init.exports;
    this.#slots = init.km.slots;
    this.#d = new KernelDispatch(init.exports, init.heap, init.km.slots, init.pool);
    this.memory64 = init.memory64;
    this.relaxedSimd = init.relaxed;
    this.features = init.features;
    this.matmulConfig = init.km.matmul;
    const sb = matmulScratchBytes(this.matmulConfig);
    this.#scratch = [];
    for (let t = 0; t < init.threads; t++) {
      this.#scratch.push(this.#heap.alloc(sb, "matmul scratch"));
    }
    // Buffers dropped without dispose() return their memory when collected.
    this.#finalizer = new FinalizationRegistry((h) => {
      if (!h.live.v) return;
      h.live.v = false;
      this.#heap.free(h.ptr, h.bytes);
      this.#live--;
    });
  }

  /** Creates a backend (compiles the kernels, starts the workers). */
  static async create(opts: WasmBackendOptions = {}): Promise<WasmBackend> {
    const features = detectFeatures();
    if (!features.simd) throw new Error("wasm backend: this runtime has no WebAssembly SIMD");
    const memory64 = opts.memory64 ?? features.memory64;
    if (memory64 && !features.memory64) {
      throw new Error("wasm backend: memory64 requested but not supported by this runtime");
    }
    const relaxed = (opts.relaxedSimd ?? true) && features.relaxedSimd;
    const cores = (globalThis.navigator?.hardwareConcurrency ?? 1) | 0;
    let threads = Math.max(
      1,
      Math.min(MAX_THREADS, opts.threads ?? envThreads() ?? Math.min(cores, MAX_THREADS)),
    );
    if (!features.threads) threads = 1;
    const hardMax = memory64 ? 2 ** 34 : 2 ** 32;
    const limit = Math.min(hardMax, opts.maxMemoryBytes ?? hardMax);
    const maxPages = Math.floor(limit / PAGE);
    if (maxPages < 2) throw new Error(`wasm backend: maxMemoryBytes ${limit} is below 128 KiB`);
    const shared = features.threads;
    const km = buildKernelModule({
      mem64: memory64,
      relaxed,
      shared,
      maxPages,
      matmul: { ...DEFAULT_MATMUL_CONFIG, ...opts.matmul },
    });
    const desc = memory64
      ? { initial: 1n, maximum: BigInt(maxPages), shared, address: "i64" }
      : { initial: 1, maximum: maxPages, shared };
    const memory = new WebAssembly.Memory(desc as unknown as WebAssembly.MemoryDescriptor);
    const module = await WebAssembly.compile(km.bytes as BufferSource);
    const instance = await WebAssembly.instantiate(module, { env: { memory } });
    const reserve = opts.reserveBytes ?? 0;
    if (!Number.isInteger(reserve) || reserve < 0) {
      throw new RangeError(
        `wasm backend: reserveBytes must be a non-negative integer, got ${reserve}`,
      );
    }
    const heap = new WasmHeap(memory, memory64, maxPages * PAGE, HEAP_BASE + reserve);
    const bl = openBlas(memory, opts.blas);
    // One thread count for both: the library's threads run while our workers are parked.
    const blasThreads = bl.blas?.setThreads(threads);
    const matmulPath = bl.blas
      ? `BLAS ${bl.reason}${blasThreads ? `, ${blasThreads} thread(s)` : ""}`
      : `WebAssembly kernels (no BLAS: ${bl.reason})`;
    const pool = threads > 1
      ? await ThreadPool.create(module, memory, SLOT_BASE, threads - 1, km.exports, opts.workerUrl)
      : null;
    return new WasmBackend({
      heap,
      exports: instance.exports as unknown as Exports,
      km,
      pool,
      threads,
      memory64,
      relaxed,
      features,
      noGemv: opts.disableGemv ?? false,
      splitM: opts.matmulSplitM,
      blas: bl.blas,
      matmulPath,
    });
  }

  /** Stops the worker threads (the backend keeps working on one thread). */
  close(): void {
    this.#d.close();
    // Leave the library open (other backends may share it), but stop its extra threads.
    this.#blas?.setThreads(1);
  }

  /** Threads used, the caller's included. */
  get threads(): number {
    return 1 + this.#d.workers;
  }

  /** Allocator statistics. */
  memoryStats(): HeapStats {
    return this.#heap.stats();
  }

  // ------------------------------------------------------------------------------------------
  // buffers

  #alloc(dtype: DType, length: number, what: string): WasmStorage {
    if (!Number.isInteger(length) || length < 0) {
      throw new RangeError(`wasm backend: invalid buffer length ${length} for ${what}`);
    }
    if (length > MAX_BUFFER_ELEMENTS) {
      throw new RangeError(
        `wasm backend: ${what} needs ${length} elements; one buffer holds at most ` +
          `${MAX_BUFFER_ELEMENTS} (8 GiB)`,
      );
    }
    const bytes = Math.max(4 * length, 16);
    const ptr = this.#heap.alloc(bytes, `${what} (${length} × ${dtype})`);
    const s = new WasmStorage(this, dtype, length, ptr, bytes);
    const live = { v: true };
    liveFlags.set(s, live);
    this.#finalizer.register(s, { ptr, bytes, live }, s);
    this.#live++;
    return s;
  }

  #get(s: Storage, what: string): WasmStorage {
    if (!(s instanceof WasmStorage) || s.backend !== this) {
      throw new Error(`wasm backend: ${what} belongs to backend '${s?.backend?.name}'`);
    }
    if (s.disposed) throw new Error(`wasm backend: ${what} is a disposed buffer`);
    return s;
  }

  #f32(s: Storage, what: string): WasmStorage {
    const w = this.#get(s, what);
    if (w.dtype !== "f32") throw new Error(`wasm backend: ${what} must be f32, got ${w.dtype}`);
    return w;
  }

  #i32(s: Storage, what: string): WasmStorage {
    const w = this.#get(s, what);
    if (w.dtype !== "i32") throw new Error(`wasm backend: ${what} must be i32, got ${w.dtype}`);
    return w;
  }

  fromHost(data: HostArray, dtype: DType): Storage {
    const s = this.#alloc(dtype, data.length, "fromHost");
    if (dtype === "f32") this.#heap.f32At(s.ptr, data.length).set(data);
    else this.#heap.i32At(s.ptr, data.length).set(data);
    return s;
  }

  full(length: number, value: number, dtype: DType): Storage {
    const s = this.#alloc(dtype, length, "full");
    const bits = dtype === "f32" ? new Int32Array(new Float32Array([value]).buffer)[0] : value | 0;
    this.#flat("fill", length, PAR_CHEAP, (i0, i1) => [s.ptr, bits, i0, i1]);
    return s;
  }

  read(s: Storage): Promise<Float32Array | Int32Array> {
    return Promise.resolve(this.readSync(s));
  }

  /** Synchronous read (tests, loaders). */
  readSync(s: Storage): Float32Array | Int32Array {
    const w = this.#get(s, "read()");
    return w.dtype === "f32"
      ? this.#heap.f32At(w.ptr, w.length).slice()
      : this.#heap.i32At(w.ptr, w.length).slice();
  }

  dispose(s: Storage): void {
    if (!(s instanceof WasmStorage) || s.backend !== this) {
      throw new Error(`wasm backend: dispose() of a buffer of backend '${s?.backend?.name}'`);
    }
    if (s.disposed) return;
    s.disposed = true;
    const live = liveFlags.get(s);
    if (live?.v) {
      live.v = false;
      this.#finalizer.unregister(s);
      this.#heap.free(s.ptr, s.bytes);
      this.#live--;
    }
  }

  liveCount(): number {
    return this.#live;
  }

  // ------------------------------------------------------------------------------------------
  // dispatch (work splitting between threads: dispatch.ts)

  #flat(fn: string, total: number, minPer: number, args: (i0: number, i1: number) => number[]) {
    this.#d.flat(fn, total, minPer, args);
  }

  #rows(
    fn: string,
    rows: number,
    work: number,
    minPer: number,
    args: (r0: number, r1: number) => number[],
  ): void {
    this.#d.rows(fn, rows, work, minPer, args);
  }

  #threadsFor(work: number, minPer: number): number {
    return this.#d.threadsFor(work, minPer);
  }

  #run(fn: string, T: number, job: (t: number) => number[]): void {
    this.#d.run(fn, T, job);
  }

  #elementwise(
    slot: string,
    shape: readonly number[],
    out: WasmStorage,
    outStrides: readonly number[],
    outOffset: number,
    ins: { s: WasmStorage; v: View }[],
    param: number,
    heavy: boolean,
  ): void {
    this.#d.elementwise(slot, shape, out.ptr, outStrides, outOffset, ins, param, heavy);
  }

  copy(src: Storage, srcView: View, dst: Storage, dstView: View): void {
    const s = this.#get(src, "copy source");
    const d = this.#get(dst, "copy destination");
    this.#elementwise(
      "copy",
      dstView.shape,
      d,
      dstView.strides,
      dstView.offset,
      [{ s, v: srcView }],
      0,
      false,
    );
  }

  unary(op: UnaryOp, x: Storage, xv: View, param = 0): Storage {
    const xs = this.#f32(x, `unary ${op} input`);
    let kernel: string = op;
    if (op === "powScalar") {
      // Exact special cases (and the reference's Math.pow(x, 0) = 1 for every x).
      // Not 0.5 → sqrt nor −0.5 → 1/sqrt: Math.pow(−∞, 0.5) is +∞ and Math.pow(−0, −0.5) +∞.
      const special: Record<number, string> = {
        1: "ident",
        2: "sqr",
        3: "cube",
        [-1]: "recip",
      };
      if (param === 0) return this.full(sizeOfShape(xv.shape), 1, "f32");
      kernel = special[param] ?? "powScalar";
    }
    const n = sizeOfShape(xv.shape);
    const out = this.#alloc("f32", n, `unary ${op} output`);
    this.#elementwise(
      `unary:${kernel}`,
      xv.shape,
      out,
      contiguousStridesOf(xv.shape),
      0,
      [{ s: xs, v: xv }],
      param,
      HEAVY_KERNELS.has(`unary:${kernel}`),
    );
    return out;
  }

  binary(op: BinaryOp, a: Storage, av: View, b: Storage, bv: View): Storage {
    const as = this.#f32(a, `binary ${op} left input`);
    const bs = this.#f32(b, `binary ${op} right input`);
    const out = this.#alloc("f32", sizeOfShape(av.shape), `binary ${op} output`);
    this.#elementwise(
      `binary:${op}`,
      av.shape,
      out,
      contiguousStridesOf(av.shape),
      0,
      [{ s: as, v: av }, { s: bs, v: bv }],
      0,
      HEAVY_KERNELS.has(`binary:${op}`),
    );
    return out;
  }

  where(cond: Storage, cv: View, a: Storage, av: View, b: Storage, bv: View): Storage {
    const cs = this.#get(cond, "where condition");
    const as = this.#f32(a, "where first input");
    const bs = this.#f32(b, "where second input");
    const out = this.#alloc("f32", sizeOfShape(cv.shape), "where output");
    this.#elementwise(
      `where:${cs.dtype}`,
      cv.shape,
      out,
      contiguousStridesOf(cv.shape),
      0,
      [{ s: cs, v: cv }, { s: as, v: av }, { s: bs, v: bv }],
      0,
      false,
    );
    return out;
  }

  cast(x: Storage, dtype: DType): Storage {
    const xs = this.#get(x, "cast input");
    const out = this.#alloc(dtype, xs.length, "cast output");
    if (xs.dtype === dtype) {
      this.#heap.u8.copyWithin(out.ptr, xs.ptr, xs.ptr + 4 * xs.length);
      return out;
    }
    this.#flat(
      "cast",
      xs.length,
      PAR_CHEAP,
      (i0, i1) => [xs.ptr, out.ptr, dtype === "i32" ? 1 : 0, i0, i1],
    );
    return out;
  }

  // ------------------------------------------------------------------------------------------
  // reductions

  reduce(op: ReduceOp, x: Storage, outer: number, size: number, inner: number): Storage {
    const xs = this.#f32(x, `reduce ${op} input`);
    const out = this.#alloc("f32", outer * inner, `reduce ${op} output`);
    const r = REDUCTIONS[op];
    if (r === undefined) throw new Error(`wasm backend: unknown reduction ${op}`);
    if (outer * inner === 0) return out;
    if (size === 0) {
      const bits = new Int32Array(new Float32Array([r.empty]).buffer)[0];
      this.#flat("fill", outer * inner, PAR_CHEAP, (i0, i1) => [out.ptr, bits, i0, i1]);
      return out;
    }
    this.#reduceRows(reduceFunction(op, inner), xs, out, outer, size, inner);
    return out;
  }

  argmax(x: Storage, outer: number, size: number, inner: number): Storage {
    const xs = this.#f32(x, "argmax input");
    const out = this.#alloc("i32", outer * inner, "argmax output");
    if (outer * inner === 0) return out;
    if (size === 0) {
      // As the reference: index 0 for an empty axis.
      this.#flat("fill", outer * inner, PAR_CHEAP, (i0, i1) => [out.ptr, 0, i0, i1]);
      return out;
    }
    this.#reduceRows(argmaxFunction(inner), xs, out, outer, size, inner);
    return out;
  }

  /** Runs a reduction kernel of `gen_rows.ts` over [outer, size, inner], threads splitting `outer`. */
  #reduceRows(
    fn: string,
    xs: WasmStorage,
    out: WasmStorage,
    outer: number,
    size: number,
    inner: number,
  ): void {
    this.#rows(fn, outer, outer * size * inner, PAR_CHEAP, (r0, r1) => [
      xs.ptr + 4 * r0 * size * inner,
      out.ptr + 4 * r0 * inner,
      r1 - r0,
      size,
      ...(inner === 1 ? [] : [inner]),
    ]);
  }

  // ------------------------------------------------------------------------------------------
  // matmul

  matmul(a: Storage, b: Storage, p: MatmulParams): Storage {
    const as = this.#f32(a, "matmul A");
    const bs = this.#f32(b, "matmul B");
    const { batch, m, n, k } = p;
    for (const [key, v] of Object.entries({ batch, m, n, k })) {
      if (!Number.isInteger(v) || v < 0) throw new Error(`wasm backend: matmul ${key}=${v}`);
    }
    const aOff = p.aOffset ?? 0, bOff = p.bOffset ?? 0;
    const span = (off: number, stride: number, size: number) =>
      batch === 0 || size === 0 ? 0 : off + (batch - 1) * stride + size;
    if (span(aOff, p.aBatchStride, m * k) > as.length || aOff < 0 || p.aBatchStride < 0) {
      throw new RangeError(
        `wasm backend: matmul A (batch ${batch}, ${p.transA ? `[${k}, ${m}]` : `[${m}, ${k}]`}, ` +
          `offset ${aOff}, batch stride ${p.aBatchStride}) exceeds its buffer of ${as.length}`,
      );
    }
    if (span(bOff, p.bBatchStride, k * n) > bs.length || bOff < 0 || p.bBatchStride < 0) {
      throw new RangeError(
        `wasm backend: matmul B (batch ${batch}, ${p.transB ? `[${n}, ${k}]` : `[${k}, ${n}]`}, ` +
          `offset ${bOff}, batch stride ${p.bBatchStride}) exceeds its buffer of ${bs.length}`,
      );
    }
    const out = this.#alloc("f32", batch * m * n, `matmul output [${batch}, ${m}, ${n}]`);
    if (batch * m * n === 0) return out;
    if (k === 0) {
      this.#flat("fill", batch * m * n, PAR_CHEAP, (i0, i1) => [out.ptr, 0, i0, i1]);
      return out;
    }
    if (this.#blas) {
      // System BLAS on the heap itself, one call per batch entry.
      for (let t = 0; t < batch; t++) {
        this.#blas.gemm({
          m,
          n,
          k,
          transA: p.transA,
          transB: p.transB,
          a: as.ptr + 4 * (aOff + t * p.aBatchStride),
          b: bs.ptr + 4 * (bOff + t * p.bBatchStride),
          c: out.ptr + 4 * t * m * n,
        });
      }
      return out;
    }
    const rsA = p.transA ? 1 : k, csA = p.transA ? m : 1;
    const rsB = p.transB ? 1 : n, csB = p.transB ? k : 1;
    const aPtr = as.ptr + 4 * aOff, bPtr = bs.ptr + 4 * bOff;
    const call = (t: number, b0: number, b1: number, n0: number, n1: number) => [
      aPtr,
      bPtr,
      out.ptr,
      this.#scratch[t],
      m,
      n,
      k,
      rsA,
      csA,
      rsB,
      csB,
      p.aBatchStride,
      p.bBatchStride,
      b0,
      b1,
      n0,
      n1,
    ];
    const flops = 2 * batch * m * n * k;
    if (m <= GEMV_MAX_M && !p.transA && !this.#noGemv) {
      // Few rows (generation): products without packing, threads split the columns.
      const fn = `gemv_${p.transB ? "t" : "n"}${m}`;
      // Memory-bound: a second thread pays only for large B (768×50257 yes, 768×2304 no).
      const Tg = Math.min(
        this.#threadsFor(flops / batch, PAR_GEMV_FLOPS),
        Math.floor(n / 64) || 1,
      );
      for (let t = 0; t < batch; t++) {
        const args = (n0: number, n1: number) => [
          aPtr + 4 * t * p.aBatchStride,
          bPtr + 4 * t * p.bBatchStride,
          out.ptr + 4 * t * m * n,
          k,
          n,
          n0,
          n1,
        ];
        if (Tg > 1) {
          const nb = (i: number) => (i === Tg ? n : Math.floor((n * i) / Tg / 8) * 8);
          this.#run(fn, Tg, (i) => args(nb(i), nb(i + 1)));
        } else this.#ex[fn](...args(0, n));
      }
      return out;
    }
    let T = this.#threadsFor(flops, PAR_MATMUL_FLOPS);
    const nr = this.matmulConfig.nr;
    const nBlocks = Math.ceil(n / nr);
    if (T > 1 && batch >= 2 * T) {
      this.#run(
        "matmul",
        T,
        (t) => call(t, Math.floor((batch * t) / T), Math.floor((batch * (t + 1)) / T), 0, n),
      );
      return out;
    }
    // Threads splitting n each pack A once per NC-wide column block they own (all of A when
    // n ≤ NC); threads splitting m each pack all of B. Pick the split that packs less per thread.
    const { mr, nc } = this.matmulConfig;
    const packN = Math.ceil(n / T / nc) * m * k + (k * n) / T;
    const packM = Math.ceil(n / nc) * (m / T) * k + k * n;
    if (T > 1 && batch === 1 && (this.#splitM ?? packM < packN) && m >= 2 * T * mr) {
      const mb = (t: number) => (t === T ? m : Math.floor((m * t) / T / mr) * mr);
      this.#run("matmul", T, (t) => {
        const args = call(t, 0, 1, 0, n);
        args[0] = aPtr + 4 * mb(t) * rsA; // A rows from mb(t)
        args[2] = out.ptr + 4 * mb(t) * n; // C rows from mb(t)
        args[4] = mb(t + 1) - mb(t); // m
        return args;
      });
      return out;
    }
    T = Math.min(T, nBlocks);
    if (T > 1) {
      const nb = (t: number) => Math.min(n, Math.floor((nBlocks * t) / T) * nr);
      this.#run("matmul", T, (t) => call(t, 0, batch, nb(t), nb(t + 1)));
      return out;
    }
    this.#ex.matmul(...call(0, 0, batch, 0, n));
    return out;
  }

  // ------------------------------------------------------------------------------------------
  // fused row ops

  /**
   * Runs the row kernel `name` of `ROW_KERNELS` (compiled by `gen_row_expr.ts`) over `rows`
   * rows of `cols`, threads splitting rows; column sums go through per-thread f64 accumulators
   * added in thread order.
   */
  #rowKernel(
    name: keyof typeof ROW_KERNELS,
    buffers: Readonly<Record<string, WasmStorage>>,
    rows: number,
    cols: number,
    scalars: Readonly<Record<string, number>> = {},
  ): void {
    const { fn, order, scalarNames, minPer, colSums } = ROW_PLANS[name];
    const ptrs = order.map((b) => buffers[b].ptr);
    const sc = scalarNames.map((s) => scalars[s]);
    if (colSums.length === 0) {
      this.#rows(fn, rows, rows * cols, minPer, (r0, r1) => [...ptrs, cols, ...sc, r0, r1]);
      return;
    }
    const T = Math.max(1, Math.min(this.#threadsFor(rows * cols, minPer), rows));
    // Per-thread f64 accumulators [colSums, cols], summed in thread order afterwards.
    const accBytes = 8 * colSums.length * cols;
    const acc = this.#heap.alloc(T * accBytes, `${name} accumulators`);
    try {
      this.#ex.zero(acc, T * accBytes);
      const job = (t: number) => [
        ...ptrs,
        cols,
        ...sc,
        Math.floor((rows * t) / T),
        Math.floor((rows * (t + 1)) / T),
        acc + t * accBytes,
      ];
      if (T > 1) this.#run(fn, T, job);
      else this.#ex[fn](...job(0));
      colSums.forEach((s, j) => {
        this.#ex.acc_finish(acc + 8 * j * cols, cols, T, colSums.length * cols, buffers[s].ptr);
      });
    } finally {
      this.#heap.free(acc, T * accBytes);
    }
  }

  softmax(x: Storage, rows: number, cols: number, log: boolean): Storage {
    const xs = this.#f32(x, "softmax input");
    const y = this.#alloc("f32", rows * cols, "softmax output");
    if (rows * cols === 0) return y;
    this.#rowKernel(log ? "logSoftmax" : "softmax", { x: xs, y }, rows, cols);
    return y;
  }

  softmaxBackward(y: Storage, gy: Storage, rows: number, cols: number, log: boolean): Storage {
    const ys = this.#f32(y, "softmaxBackward y");
    const gs = this.#f32(gy, "softmaxBackward gy");
    const gx = this.#alloc("f32", rows * cols, "softmaxBackward output");
    if (rows * cols === 0) return gx;
    this.#rowKernel(
      log ? "logSoftmaxBackward" : "softmaxBackward",
      { y: ys, gy: gs, gx },
      rows,
      cols,
    );
    return gx;
  }

  layerNorm(
    x: Storage,
    w: Storage,
    b: Storage,
    rows: number,
    cols: number,
    eps: number,
  ): { y: Storage; mean: Storage; rstd: Storage } {
    const xs = this.#f32(x, "layerNorm x");
    const ws = this.#f32(w, "layerNorm weight");
    const bs = this.#f32(b, "layerNorm bias");
    const y = this.#alloc("f32", rows * cols, "layerNorm y");
    const mean = this.#alloc("f32", rows, "layerNorm mean");
    const rstd = this.#alloc("f32", rows, "layerNorm rstd");
    // With cols = 0 the row outputs are still defined (a mean of nothing is NaN).
    if (rows > 0) {
      this.#rowKernel("layerNorm", { x: xs, w: ws, b: bs, y, mean, rstd }, rows, cols, { eps });
    }
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
    const xs = this.#f32(x, "layerNormBackward x");
    const ws = this.#f32(w, "layerNormBackward weight");
    const ms = this.#f32(mean, "layerNormBackward mean");
    const rs = this.#f32(rstd, "layerNormBackward rstd");
    const gs = this.#f32(gy, "layerNormBackward gy");
    const gx = this.#alloc("f32", rows * cols, "layerNormBackward gx");
    const gw = this.#alloc("f32", cols, "layerNormBackward gw");
    const gb = this.#alloc("f32", cols, "layerNormBackward gb");
    if (cols === 0) return { gx, gw, gb };
    this.#rowKernel(
      "layerNormBackward",
      { x: xs, w: ws, mean: ms, rstd: rs, gy: gs, gx, gw, gb },
      rows,
      cols,
    );
    return { gx, gw, gb };
  }

  #checkTargets(
    t: WasmStorage,
    rows: number,
    cols: number,
    ignoreIndex: number,
    what: string,
  ): void {
    const ids = this.#heap.i32At(t.ptr, rows);
    for (let r = 0; r < rows; r++) {
      const v = ids[r];
      if (v !== ignoreIndex && (v < 0 || v >= cols)) {
        throw new RangeError(`${what}: target ${v} at row ${r} is outside [0, ${cols})`);
      }
    }
  }

  crossEntropy(
    logits: Storage,
    targets: Storage,
    rows: number,
    cols: number,
    ignoreIndex: number,
  ): { loss: Storage; lse: Storage } {
    const ls = this.#f32(logits, "crossEntropy logits");
    const ts = this.#i32(targets, "crossEntropy targets");
    this.#checkTargets(ts, rows, cols, ignoreIndex, "crossEntropy");
    const loss = this.#alloc("f32", rows, "crossEntropy loss");
    const lse = this.#alloc("f32", rows, "crossEntropy lse");
    if (rows > 0) {
      this.#rowKernel("crossEntropy", { logits: ls, target: ts, loss, lse }, rows, cols, {
        ignoreIndex,
      });
    }
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
    const ls = this.#f32(logits, "crossEntropyBackward logits");
    const ts = this.#i32(targets, "crossEntropyBackward targets");
    const ss = this.#f32(lse, "crossEntropyBackward lse");
    const gs = this.#f32(gLoss, "crossEntropyBackward gLoss");
    this.#checkTargets(ts, rows, cols, ignoreIndex, "crossEntropyBackward");
    const gx = this.#alloc("f32", rows * cols, "crossEntropyBackward output");
    if (rows > 0 && cols > 0) {
      this.#rowKernel(
        "crossEntropyBackward",
        { logits: ls, target: ts, lse: ss, gLoss: gs, gx },
        rows,
        cols,
        { ignoreIndex },
      );
    }
    return gx;
  }

  // ------------------------------------------------------------------------------------------
  // indexing

  gather(table: Storage, ids: Storage, n: number, cols: number): Storage {
    const tab = this.#f32(table, "gather table");
    const is = this.#i32(ids, "gather ids");
    const rowsInTable = cols > 0 ? Math.floor(tab.length / cols) : 0;
    const idv = this.#heap.i32At(is.ptr, n);
    for (let i = 0; i < n; i++) {
      const id = idv[i];
      if (id < 0 || id >= rowsInTable) {
        throw new RangeError(`gather: index ${id} at position ${i} is outside [0, ${rowsInTable})`);
      }
    }
    const out = this.#alloc("f32", n * cols, "gather output");
    if (n * cols > 0) {
      this.#rows(
        "gather",
        n,
        n * cols,
        PAR_CHEAP,
        (i0, i1) => [tab.ptr, is.ptr, out.ptr, cols, i0, i1],
      );
    }
    return out;
  }

  scatterAdd(g: Storage, ids: Storage, n: number, cols: number, vocab: number): Storage {
    const gs = this.#f32(g, "scatterAdd values");
    const is = this.#i32(ids, "scatterAdd ids");
    const idv = this.#heap.i32At(is.ptr, n);
    for (let i = 0; i < n; i++) {
      const id = idv[i];
      if (id < 0 || id >= vocab) {
        throw new RangeError(`scatterAdd: index ${id} at position ${i} is outside [0, ${vocab})`);
      }
    }
    const out = this.#alloc("f32", vocab * cols, "scatterAdd output");
    if (vocab * cols === 0) return out;
    this.#ex.zero(out.ptr, 4 * vocab * cols);
    // Threads split columns: every element is still summed in the order of i.
    const T = Math.min(this.#threadsFor(n * cols, PAR_CHEAP), Math.floor(cols / 4));
    if (T > 1) {
      const c = (t: number) => (t === T ? cols : Math.floor((cols * t) / T / 4) * 4);
      this.#run("scatter_add", T, (t) => [gs.ptr, is.ptr, out.ptr, n, cols, c(t), c(t + 1)]);
    } else {
      this.#ex.scatter_add(gs.ptr, is.ptr, out.ptr, n, cols, 0, cols);
    }
    return out;
  }

  // ------------------------------------------------------------------------------------------
  // random, optimizer

  dropoutMask(length: number, p: number, seed: number): Storage {
    const out = this.#alloc("f32", length, "dropout mask");
    // DROPOUT_MASK (its threshold keeps nothing for a NaN p, as hashUniform ≥ NaN is false).
    const thr = Number.isNaN(p) ? 0x7fffffff : dropoutThreshold(p);
    const scale = 1 / (1 - p);
    this.#flat("dropout", length, PAR_HEAVY, (i0, i1) => [out.ptr, i0, i1, scale, seed, thr]);
    return out;
  }

  /** The storages of fused attention's operands (checked by `kernels/checks.ts`). */
  #attentionInputs(
    q: Storage,
    k: Storage,
    v: Storage,
    mask: Storage | null,
    what: string,
  ): { qs: WasmStorage; ks: WasmStorage; vs: WasmStorage; ms: WasmStorage | null } {
    const qs = this.#f32(q, `${what} q`), ks = this.#f32(k, `${what} k`);
    const vs = this.#f32(v, `${what} v`);
    const ms = mask ? this.#f32(mask, `${what} mask`) : null;
    return { qs, ks, vs, ms };
  }

  /** The kernels' dropout arguments: threshold on the hash's top 24 bits, keep scale, seed. */
  #attentionDropout(p: AttentionParams): [number, number, number] {
    if (!(p.dropP > 0)) return [0, 1, 0];
    // DROPOUT_KEEP's threshold, as in dropoutMask.
    return [dropoutThreshold(p.dropP), 1 / (1 - p.dropP), p.dropSeed | 0];
  }

  attention(
    q: Storage,
    k: Storage,
    v: Storage,
    mask: Storage | null,
    p: AttentionParams,
  ): { out: Storage; lse: Storage } {
    const { qs, ks, vs, ms } = this.#attentionInputs(q, k, v, mask, "attention");
    const { batch: B, heads: H, queries: T, keys: S, dim: D } = p;
    const rows = B * H * T;
    const out = this.#alloc("f32", rows * D, `attention output [${B}, ${H}, ${T}, ${D}]`);
    const lse = this.#alloc("f32", rows, `attention lse [${B}, ${H}, ${T}]`);
    if (rows === 0) return { out, lse };
    const [thr, keep, seed] = this.#attentionDropout(p);
    // Query rows split between threads; each thread softmaxes in its own scratch row.
    const Tn = Math.min(this.#threadsFor(4 * rows * S * D, PAR_MATMUL_FLOPS), rows);
    const rowBytes = 16 * Math.ceil(S / 4);
    const scratch = this.#heap.alloc(Tn * rowBytes, "attention scratch");
    try {
      const job = (t: number) => [
        qs.ptr,
        ks.ptr,
        vs.ptr,
        ms?.ptr ?? 0,
        out.ptr,
        lse.ptr,
        scratch + t * rowBytes,
        H,
        T,
        S,
        D,
        p.scale,
        thr,
        keep,
        seed,
        ms ? 1 : 0,
        Math.floor((rows * t) / Tn),
        Math.floor((rows * (t + 1)) / Tn),
      ];
      if (Tn > 1) this.#run("attn_fwd", Tn, job);
      else this.#ex.attn_fwd(...job(0));
    } finally {
      this.#heap.free(scratch, Tn * rowBytes);
    }
    return { out, lse };
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
    const what = "attentionBackward";
    const { qs, ks, vs, ms } = this.#attentionInputs(q, k, v, mask, what);
    const { batch: B, heads: H, queries: T, keys: S, dim: D } = p;
    const os = this.#f32(out, `${what} out`), ls = this.#f32(lse, `${what} lse`);
    const gs = this.#f32(gOut, `${what} gOut`);
    const gq = this.#alloc("f32", B * H * T * D, `${what} gq [${B}, ${H}, ${T}, ${D}]`);
    const gk = this.#alloc("f32", B * H * S * D, `${what} gk [${B}, ${H}, ${S}, ${D}]`);
    const gv = this.#alloc("f32", B * H * S * D, `${what} gv [${B}, ${H}, ${S}, ${D}]`);
    const heads = B * H;
    if (heads * S * D === 0) return { gq, gk, gv };
    const [thr, keep, seed] = this.#attentionDropout(p);
    // Heads split between threads: a head's query pass fills its thread's scratch [2, T, S],
    // which the head's key pass reads, so each gradient element has one writer.
    const Tn = Math.min(this.#threadsFor(10 * heads * T * S * D, PAR_MATMUL_FLOPS), heads);
    const scrBytes = Math.max(16, 2 * T * 16 * Math.ceil(S / 4));
    const scratch = this.#heap.alloc(Tn * scrBytes, `${what} scratch`);
    try {
      const job = (t: number) => [
        qs.ptr,
        ks.ptr,
        vs.ptr,
        ms?.ptr ?? 0,
        os.ptr,
        ls.ptr,
        gs.ptr,
        gq.ptr,
        gk.ptr,
        gv.ptr,
        scratch + t * scrBytes,
        H,
        T,
        S,
        D,
        p.scale,
        thr,
        keep,
        seed,
        ms ? 1 : 0,
        Math.floor((heads * t) / Tn),
        Math.floor((heads * (t + 1)) / Tn),
      ];
      if (Tn > 1) this.#run("attn_bwd", Tn, job);
      else this.#ex.attn_bwd(...job(0));
    } finally {
      this.#heap.free(scratch, Tn * scrBytes);
    }
    return { gq, gk, gv };
  }

  adamw(param: Storage, grad: Storage, m: Storage, v: Storage, p: AdamWParams): void {
    const ps = this.#f32(param, "adamw param");
    const gs = this.#f32(grad, "adamw grad");
    const ms = this.#f32(m, "adamw m");
    const vs = this.#f32(v, "adamw v");
    const n = ps.length;
    // In the order of ADAMW.inputs (w, g, m, v), then its scalars.
    const scalars = adamwScalars(p);
    this.#flat(
      "adamw",
      n,
      PAR_CHEAP,
      (i0, i1) => [ps.ptr, gs.ptr, ms.ptr, vs.ptr, i0, i1, ...scalars],
    );
  }
}

installArgumentChecks(WasmBackend);

const liveFlags = new WeakMap<WasmStorage, { v: boolean }>();

/** Creates the WebAssembly backend (kernels compiled, worker threads started). */
export async function createWasmBackend(opts: WasmBackendOptions = {}): Promise<WasmBackend> {
  return await WasmBackend.create(opts);
}
