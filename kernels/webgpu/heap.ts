/**
 * The WebGPU backend's storages: allocation from the buffer pool (`memory.ts`), the handles the
 * primitives bind ({@link BufferArg}), uploads, readback and disposal. The primitives in
 * `backend.ts` only ask this heap for their operands and outputs and hand kernel calls to the
 * dispatcher (`dispatch.ts`).
 *
 * @module
 */
import type { DType, HostArray, Storage } from "../backend.ts";
import type { WebGPUBackend } from "./backend.ts";
import type { GpuContext } from "./device.ts";
import type { BufferArg, Dispatcher, ElemFormat } from "./dispatch.ts";
import { BufferPool, type PooledBuffer, type PoolStats, StagingPool } from "./memory.ts";

/** A buffer of the WebGPU backend. */
export class WebGPUStorage implements Storage {
  /** The pooled GPU buffer; null once disposed. */
  buf: PooledBuffer | null;
  /** Creates a storage (use the backend's methods instead). */
  constructor(
    readonly backend: WebGPUBackend,
    readonly dtype: DType,
    readonly length: number,
    buf: PooledBuffer,
    /** How elements are stored: f32/i32, or f16 for frozen weights (read as f32). */
    readonly format: ElemFormat,
  ) {
    this.buf = buf;
  }
}

/** Storages of one WebGPU backend: allocation, binding handles, upload, readback, disposal. */
export class GpuHeap {
  #ctx: GpuContext;
  #disp: Dispatcher;
  #owner: WebGPUBackend;
  #pool: BufferPool;
  #staging: StagingPool;
  #live = 0;

  /** A heap for the storages of `owner`, whose work `disp` records. */
  constructor(ctx: GpuContext, disp: Dispatcher, owner: WebGPUBackend) {
    this.#ctx = ctx;
    this.#disp = disp;
    this.#owner = owner;
    this.#pool = new BufferPool(ctx);
    this.#staging = new StagingPool(ctx);
  }

  /** `s` as a live storage of this heap's backend, or an error naming `op` and `what`. */
  storage(s: Storage, op: string, what: string): WebGPUStorage {
    if (!(s instanceof WebGPUStorage) || s.backend !== this.#owner) {
      throw new Error(`webgpu ${op}: ${what} belongs to backend '${s.backend.name}', not this one`);
    }
    if (s.buf === null) throw new Error(`webgpu ${op}: ${what} is a disposed buffer`);
    return s;
  }

  /** The binding of operand `s` named `name` in a kernel (writable where `write`). */
  arg(s: Storage, op: string, name: string, write = false): BufferArg {
    const st = this.storage(s, op, name);
    if (write && st.format === "f16") {
      throw new Error(`webgpu ${op}: ${name} is a read-only f16 weight buffer`);
    }
    return { name, buf: st.buf!, length: st.length, format: st.format, write };
  }

  /** {@link arg} of an f32 operand. */
  f32(s: Storage, op: string, name: string): BufferArg {
    if (s.dtype !== "f32") throw new Error(`webgpu ${op}: ${name} must be f32, got ${s.dtype}`);
    return this.arg(s, op, name);
  }

  /** {@link arg} of an i32 operand. */
  i32(s: Storage, op: string, name: string): BufferArg {
    if (s.dtype !== "i32") throw new Error(`webgpu ${op}: ${name} must be i32, got ${s.dtype}`);
    return this.arg(s, op, name);
  }

  /** A new storage of `length` elements (contents undefined); `what` names it in errors. */
  alloc(length: number, dtype: DType, what: string, format: ElemFormat = dtype): WebGPUStorage {
    this.#ctx.check();
    const bytes = Math.max(4, length * (format === "f16" ? 2 : 4));
    const buf = this.#pool.acquire(bytes, `${what} (${length} ${format})`);
    this.#live++;
    return new WebGPUStorage(this.#owner, dtype, length, buf, format);
  }

  /** The writable binding of a new output storage. */
  out(s: WebGPUStorage, name = "out"): BufferArg {
    return { name, buf: s.buf!, length: s.length, format: s.format, write: true };
  }

  /** A scratch buffer for one primitive's kernels; give it back with {@link release}. */
  temp(length: number, format: ElemFormat, what: string, name: string): BufferArg {
    const buf = this.#pool.acquire(Math.max(4, length * 4), what);
    return { name, buf, length, format, write: true };
  }

  /** Returns a scratch buffer of {@link temp} to the pool. */
  release(t: BufferArg): void {
    this.#pool.release(t.buf);
  }

  /** Uploads `data` to the start of `buf`. */
  write(buf: PooledBuffer, data: ArrayBufferView): void {
    // queue.writeBuffer runs before the commands still being recorded: submit them first if
    // they use this buffer (it may have been freed and reused within the open batch).
    if (buf.lastBatch === this.#disp.batchId && this.#disp.hasPending) this.#disp.flush();
    this.#ctx.device.queue.writeBuffer(buf.buffer, 0, data as unknown as BufferSource);
  }

  /** A new storage holding a copy of `data`. */
  fromHost(data: HostArray, dtype: DType): WebGPUStorage {
    const host = dtype === "i32"
      ? (data instanceof Int32Array ? data : Int32Array.from(data as ArrayLike<number>))
      : (data instanceof Float32Array ? data : Float32Array.from(data as ArrayLike<number>));
    const s = this.alloc(host.length, dtype, "fromHost");
    if (host.length > 0) this.write(s.buf!, host);
    return s;
  }

  /** A new f32 storage kept as f16 (frozen weights). */
  fromHostF16(data: HostArray): WebGPUStorage {
    const half = new Float16Array(data.length + (data.length % 2));
    half.set(data);
    const s = this.alloc(data.length, "f32", "fromHostF16", "f16");
    if (data.length > 0) this.write(s.buf!, half);
    return s;
  }

  /**
   * Reads a whole storage back (submits queued work and waits). An f16 storage is first
   * converted by `toF32` into a temporary f32 one.
   */
  async read(
    s: Storage,
    toF32: (s: WebGPUStorage) => WebGPUStorage,
  ): Promise<Float32Array | Int32Array> {
    let st = this.storage(s, "read", "buffer");
    this.#ctx.check();
    let temp: WebGPUStorage | null = null;
    if (st.format === "f16") {
      temp = toF32(st);
      st = temp;
    }
    const bytes = st.length * 4;
    const out = st.dtype === "i32" ? new Int32Array(st.length) : new Float32Array(st.length);
    if (bytes > 0) {
      const staging = this.#staging.acquire(bytes);
      this.#disp.copyBufferToBuffer(st.buf!.buffer, 0, staging, 0, bytes);
      if (temp !== null) this.dispose(temp);
      this.#disp.flush();
      try {
        await staging.mapAsync(GPUMapMode.READ, 0, bytes);
      } catch (e) {
        this.#ctx.check();
        throw new Error(`webgpu read of ${st.length} ${st.dtype}: ${(e as Error).message}`);
      }
      const mapped = staging.getMappedRange(0, bytes);
      new Uint8Array(out.buffer).set(new Uint8Array(mapped));
      staging.unmap();
      this.#staging.release(staging);
    }
    this.#ctx.check();
    return out;
  }

  /** Frees a storage (returns its buffer to the pool). Idempotent; foreign storages are ignored. */
  dispose(s: Storage): void {
    const st = s as WebGPUStorage;
    if (!(st instanceof WebGPUStorage) || st.backend !== this.#owner || st.buf === null) return;
    this.#pool.release(st.buf);
    st.buf = null;
    this.#live--;
  }

  /** Storages alive. */
  get live(): number {
    return this.#live;
  }

  /** Frees the pooled (unused) GPU buffers. */
  trim(): void {
    this.#pool.trim();
    this.#staging.trim();
  }

  /** Counters of the buffer pool. */
  poolStats(): PoolStats {
    return this.#pool.stats();
  }
}
