/**
 * GPU memory for the WebGPU backend: a size-bucketed pool of storage buffers and a pool of
 * staging buffers for readback.
 *
 * Creating and destroying GPU buffers is slow (and, in Deno, each is a round trip through the
 * runtime), while a training step allocates the same sizes again and again. Freed buffers go
 * back to a free list of their bucket at once (LIFO), so reuse is deterministic. Buckets are
 * quarter steps between powers of two, so the waste is under 25% (154 MB → 168 MB).
 *
 * @module
 */
import type { GpuContext } from "./device.ts";

/** A pooled GPU buffer. */
export interface PooledBuffer {
  /** The buffer (STORAGE | COPY_SRC | COPY_DST). */
  readonly buffer: GPUBuffer;
  /** Its size in bytes (the bucket size). */
  readonly size: number;
  /**
   * Id of the last command batch that used it. A `queue.writeBuffer` runs before the commands
   * still being recorded, so a buffer used by the open batch must not be written that way.
   */
  lastBatch: number;
}

const MIN_BYTES = 256;

/** The bucket size for a request of `bytes`: quarter steps between powers of two. */
export function bucketSize(bytes: number): number {
  if (bytes <= MIN_BYTES) return MIN_BYTES;
  const step = 2 ** (Math.floor(Math.log2(bytes)) - 2);
  return Math.ceil(bytes / step) * step;
}

/** Counters of a pool. */
export interface PoolStats {
  /** Buffers handed out and not yet released. */
  inUse: number;
  /** Buffers waiting in free lists. */
  pooled: number;
  /** Bytes of all buffers the pool owns (in use + pooled). */
  bytes: number;
  /** Buffers created since the start (misses). */
  created: number;
}

/** A size-bucketed pool of storage buffers. */
export class BufferPool {
  #free = new Map<number, PooledBuffer[]>();
  #inUse = 0;
  #pooled = 0;
  #bytes = 0;
  #created = 0;

  /** A pool on `ctx`'s device. */
  constructor(private readonly ctx: GpuContext) {}

  /**
   * A buffer of at least `bytes` bytes; `what` names the allocation in out-of-memory errors.
   * Out-of-memory is detected asynchronously (error scope) and thrown at the next read.
   */
  acquire(bytes: number, what: string): PooledBuffer {
    let size = bucketSize(bytes);
    const max = this.ctx.limits.maxBufferSize;
    if (size > max) size = Math.max(bytes, max - (max % 4));
    if (size > max) {
      throw new Error(
        `webgpu: ${what} needs ${bytes} bytes, over the device's maxBufferSize ${max}`,
      );
    }
    const list = this.#free.get(size);
    const hit = list?.pop();
    if (hit !== undefined) {
      this.#pooled--;
      this.#inUse++;
      return hit;
    }
    const device = this.ctx.device;
    device.pushErrorScope("out-of-memory");
    const buffer = device.createBuffer({
      size,
      usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
      label: what,
    });
    device.popErrorScope().then((err) => {
      if (err !== null) {
        this.ctx.fail(
          new Error(
            `webgpu: out of GPU memory allocating ${size} bytes for ${what} ` +
              `(pool holds ${this.#bytes} bytes): ${err.message}`,
          ),
        );
      }
    });
    this.#created++;
    this.#inUse++;
    this.#bytes += size;
    return { buffer, size, lastBatch: -1 };
  }

  /** Returns a buffer to its free list (immediately reusable; GPU order is kept by the queue). */
  release(b: PooledBuffer): void {
    let list = this.#free.get(b.size);
    if (list === undefined) this.#free.set(b.size, list = []);
    list.push(b);
    this.#inUse--;
    this.#pooled++;
  }

  /**
   * Destroys every pooled (free) buffer. Call only with no commands being recorded that use
   * them (the backend flushes first).
   */
  trim(): void {
    for (const list of this.#free.values()) {
      for (const b of list) {
        b.buffer.destroy();
        this.#bytes -= b.size;
      }
    }
    this.#pooled = 0;
    this.#free.clear();
  }

  /** Counters. */
  stats(): PoolStats {
    return { inUse: this.#inUse, pooled: this.#pooled, bytes: this.#bytes, created: this.#created };
  }
}

/** A pool of MAP_READ staging buffers for readback, by bucket size. */
export class StagingPool {
  #free = new Map<number, GPUBuffer[]>();

  /** A pool on `ctx`'s device. */
  constructor(private readonly ctx: GpuContext) {}

  /** A staging buffer of at least `bytes` bytes. */
  acquire(bytes: number): GPUBuffer {
    const size = bucketSize(bytes);
    const hit = this.#free.get(size)?.pop();
    if (hit !== undefined) return hit;
    const device = this.ctx.device;
    device.pushErrorScope("out-of-memory");
    const buffer = device.createBuffer({
      size,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      label: "readback staging",
    });
    device.popErrorScope().then((err) => {
      if (err !== null) {
        this.ctx.fail(
          new Error(
            `webgpu: out of memory allocating a ${size}-byte readback buffer: ${err.message}`,
          ),
        );
      }
    });
    return buffer;
  }

  /** Returns an unmapped staging buffer. */
  release(b: GPUBuffer): void {
    let list = this.#free.get(b.size);
    if (list === undefined) this.#free.set(b.size, list = []);
    list.push(b);
  }

  /** Destroys every pooled staging buffer. */
  trim(): void {
    for (const list of this.#free.values()) for (const b of list) b.destroy();
    this.#free.clear();
  }
}
