/**
 * The allocator of the wasm backend: every buffer lives in one (shared) `WebAssembly.Memory`.
 *
 * Blocks are 16-byte aligned and rounded up to size classes (multiples of 16 up to 64 bytes,
 * then four classes per power of two, so at most 25% is wasted). Freed blocks go to a free list
 * per class and are reused first: training repeats the same shapes every step, and sequence
 * lengths that vary between batches still land in few classes. New blocks come from a bump
 * pointer that grows the memory page by page. When the memory limit is reached, free blocks are
 * coalesced (adjacent ones merged, the topmost returned to the bump pointer) and the allocation
 * retried first-fit in the merged spans before failing with a clear error.
 *
 * @module
 */

const PAGE = 65536;

/** Rounds a byte count up to its size class (≥ 16, multiple of 16). */
export function sizeClass(bytes: number): number {
  if (bytes <= 64) return Math.max(16, Math.ceil(bytes / 16) * 16);
  const e = Math.floor(Math.log2(bytes - 1)); // 2^e < bytes ≤ 2^(e+1)
  const step = 2 ** (e - 2);
  return Math.ceil(bytes / step) * step;
}

/**
 * Index of the 4-byte element at byte address `ptr`. A division, not `ptr >>> 2`: a shift
 * truncates to 32 bits and would wrap every address above 4 GiB.
 */
export function elementIndex(ptr: number): number {
  if (ptr % 4 !== 0 || ptr < 0) throw new RangeError(`wasm heap: misaligned address ${ptr}`);
  return ptr / 4;
}

/** A free range of memory. */
interface Span {
  ptr: number;
  bytes: number;
}

/** Allocation statistics. */
export interface HeapStats {
  /** Bytes in live blocks (after rounding). */
  liveBytes: number;
  /** Bytes held in free lists and spans. */
  freeBytes: number;
  /** The bump pointer: bytes ever handed out from the top. */
  topBytes: number;
  /** Current memory size in bytes. */
  memoryBytes: number;
}

/** A size-class allocator over a WebAssembly memory. */
export class WasmHeap {
  private top: number;
  private readonly lists = new Map<number, number[]>();
  private spans: Span[] = [];
  private liveBytes = 0;
  private freeBytes = 0;
  private bufferCache: ArrayBufferLike | null = null;
  private f32Cache: Float32Array<ArrayBufferLike> = new Float32Array(0);
  private i32Cache: Int32Array<ArrayBufferLike> = new Int32Array(0);
  private u8Cache: Uint8Array<ArrayBufferLike> = new Uint8Array(0);
  private f64Cache: Float64Array<ArrayBufferLike> = new Float64Array(0);

  /**
   * A heap over `memory`, handing out blocks from `base` upward, never beyond `limitBytes`.
   * `mem64` says whether `grow` takes a bigint.
   */
  constructor(
    readonly memory: WebAssembly.Memory,
    readonly mem64: boolean,
    readonly limitBytes: number,
    base: number,
  ) {
    this.top = Math.ceil(base / 16) * 16;
  }

  /** Current memory size in bytes. */
  get memoryBytes(): number {
    return this.memory.buffer.byteLength;
  }

  /**
   * Allocates a block of at least `bytes` bytes (16-byte aligned); `what` names the buffer in
   * the out-of-memory error.
   */
  alloc(bytes: number, what: string): number {
    if (!Number.isFinite(bytes) || bytes < 0) {
      throw new RangeError(`wasm backend: invalid allocation size ${bytes} for ${what}`);
    }
    const size = sizeClass(bytes);
    const list = this.lists.get(size);
    if (list && list.length) {
      this.freeBytes -= size;
      this.liveBytes += size;
      return list.pop()!;
    }
    let ptr = this.fromSpans(size);
    if (ptr < 0) ptr = this.bump(size);
    if (ptr < 0) {
      this.coalesce();
      ptr = this.fromSpans(size);
      if (ptr < 0) ptr = this.bump(size);
    }
    if (ptr < 0) {
      const gib = (this.limitBytes / 2 ** 30).toFixed(this.limitBytes % 2 ** 30 ? 2 : 0);
      throw new RangeError(
        `wasm backend: out of memory allocating ${bytes} bytes for ${what} (limit ${gib} GiB; ` +
          `${this.liveBytes} bytes live in buffers)`,
      );
    }
    this.liveBytes += size;
    return ptr;
  }

  /** Returns a block of `bytes` (the size asked at allocation) to its free list. */
  free(ptr: number, bytes: number): void {
    const size = sizeClass(bytes);
    let list = this.lists.get(size);
    if (!list) this.lists.set(size, list = []);
    list.push(ptr);
    this.liveBytes -= size;
    this.freeBytes += size;
  }

  /** Usage figures. */
  stats(): HeapStats {
    return {
      liveBytes: this.liveBytes,
      freeBytes: this.freeBytes,
      topBytes: this.top,
      memoryBytes: this.memoryBytes,
    };
  }

  private fromSpans(size: number): number {
    for (let i = 0; i < this.spans.length; i++) {
      const s = this.spans[i];
      if (s.bytes >= size) {
        const ptr = s.ptr;
        s.ptr += size;
        s.bytes -= size;
        if (s.bytes === 0) this.spans.splice(i, 1);
        this.freeBytes -= size;
        return ptr;
      }
    }
    return -1;
  }

  private bump(size: number): number {
    const end = this.top + size;
    if (end > this.limitBytes) return -1;
    if (end > this.memoryBytes) {
      // Grow by what is needed, at least 1/8 of the current size, so that a sequence of
      // allocations does not grow page by page.
      const need = Math.ceil((end - this.memoryBytes) / PAGE);
      const maxPages = Math.floor((this.limitBytes - this.memoryBytes) / PAGE);
      const pages = Math.min(maxPages, Math.max(need, Math.ceil(this.memoryBytes / PAGE / 8)));
      try {
        if (this.mem64) (this.memory.grow as (d: unknown) => number)(BigInt(pages));
        else this.memory.grow(pages);
      } catch {
        return -1;
      }
    }
    const ptr = this.top;
    this.top = end;
    return ptr;
  }

  /** Merges all free blocks; the top one lowers the bump pointer. */
  private coalesce(): void {
    const all: Span[] = this.spans.slice();
    for (const [size, list] of this.lists) for (const ptr of list) all.push({ ptr, bytes: size });
    this.lists.clear();
    all.sort((a, b) => a.ptr - b.ptr);
    const merged: Span[] = [];
    for (const s of all) {
      const last = merged[merged.length - 1];
      if (last && last.ptr + last.bytes === s.ptr) last.bytes += s.bytes;
      else merged.push({ ...s });
    }
    const last = merged[merged.length - 1];
    if (last && last.ptr + last.bytes === this.top) {
      this.top = last.ptr;
      this.freeBytes -= last.bytes;
      merged.pop();
    }
    this.spans = merged;
  }

  private refresh(): void {
    const b = this.memory.buffer;
    if (b !== this.bufferCache) {
      this.bufferCache = b;
      this.f32Cache = new Float32Array(b);
      this.i32Cache = new Int32Array(b);
      this.u8Cache = new Uint8Array(b);
      this.f64Cache = new Float64Array(b);
    }
  }

  /**
   * The `length` f32 elements at byte address `ptr`, as a view into the memory (valid until the
   * memory grows). Addresses may exceed 2^32 with 64-bit memory: they are divided, never shifted,
   * so no 32-bit arithmetic ever touches them.
   */
  f32At(ptr: number, length: number): Float32Array<ArrayBufferLike> {
    const i = elementIndex(ptr);
    return this.f32.subarray(i, i + length);
  }

  /** The `length` i32 elements at byte address `ptr` (see {@link WasmHeap.f32At}). */
  i32At(ptr: number, length: number): Int32Array<ArrayBufferLike> {
    const i = elementIndex(ptr);
    return this.i32.subarray(i, i + length);
  }

  /** A Float32Array over the whole memory (refreshed after growth). */
  get f32(): Float32Array<ArrayBufferLike> {
    this.refresh();
    return this.f32Cache;
  }

  /** An Int32Array over the whole memory. */
  get i32(): Int32Array<ArrayBufferLike> {
    this.refresh();
    return this.i32Cache;
  }

  /** A Uint8Array over the whole memory. */
  get u8(): Uint8Array<ArrayBufferLike> {
    this.refresh();
    return this.u8Cache;
  }

  /** A Float64Array over the whole memory. */
  get f64(): Float64Array<ArrayBufferLike> {
    this.refresh();
    return this.f64Cache;
  }
}
