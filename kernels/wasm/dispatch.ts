/**
 * How the wasm backend hands work to its kernels: the thresholds below which the calling thread
 * works alone, the split of flat ranges, rows and elementwise shapes between threads, and the
 * layout of the memory below the heap (the threads' control slots, the elementwise parameter
 * blocks). The primitives themselves are in `backend.ts`; the allocator in `heap.ts`; the worker
 * pool in `threads.ts`.
 *
 * @module
 */

import type { View } from "../backend.ts";
import { EW_MAX_RANK, EW_PARAM_BYTES } from "./gen_elementwise.ts";
import { elementIndex, type WasmHeap } from "./heap.ts";
import { SLOT_BYTES, type ThreadPool } from "./threads.ts";
import { collapseDims } from "./views.ts";

/** Most threads a backend uses. */
export const MAX_THREADS = 8;
/** Memory layout: the workers' control slots, then one elementwise parameter block per thread. */
export const SLOT_BASE = 1024;
const PARAM_BASE = SLOT_BASE + MAX_THREADS * SLOT_BYTES;
const PARAM_STRIDE = Math.ceil(EW_PARAM_BYTES / 64) * 64;
/** First byte the heap may hand out. */
export const HEAP_BASE = PARAM_BASE + MAX_THREADS * PARAM_STRIDE;

/** Work thresholds (elements, or flops for matmul) below which the caller's thread works alone. */
export const PAR_MATMUL_FLOPS = 2e6;
/** See {@link PAR_MATMUL_FLOPS}: matrix-vector products (memory-bound). */
export const PAR_GEMV_FLOPS = 2e7;
/** See {@link PAR_MATMUL_FLOPS}: elements of cheap elementwise or row work. */
export const PAR_CHEAP = 1 << 17;
/** See {@link PAR_MATMUL_FLOPS}: elements of transcendental work. */
export const PAR_HEAVY = 1 << 13;

/** The kernel module's exports. */
export type Exports = Record<string, (...args: number[]) => void>;

/** Runs kernels on the calling thread and the pool's workers. */
export class KernelDispatch {
  /** Dispatch over `ex` (the caller's instance), with `pool`'s workers (none: one thread). */
  constructor(
    readonly ex: Exports,
    private readonly heap: WasmHeap,
    private readonly slots: Map<string, number>,
    private pool: ThreadPool | null,
  ) {}

  /** Worker threads available (0 once closed, or after a lost worker closed the pool). */
  get workers(): number {
    return this.pool?.size ?? 0;
  }

  /** Stops the workers; later work runs on the caller alone. */
  close(): void {
    this.pool?.close();
    this.pool = null;
  }

  /** Runs `fn` over [0, total) split into per-thread ranges (multiples of 4 elements). */
  flat(
    fn: string,
    total: number,
    minPer: number,
    args: (i0: number, i1: number) => number[],
  ): void {
    const T = this.threadsFor(total, minPer);
    if (T <= 1) {
      this.ex[fn](...args(0, total));
      return;
    }
    const bounds: number[] = [];
    for (let t = 0; t <= T; t++) bounds.push(t === T ? total : Math.floor((total * t) / T / 4) * 4);
    this.run(fn, T, (t) => args(bounds[t], bounds[t + 1]));
  }

  /** Runs `fn` over rows [0, rows) split into per-thread ranges. */
  rows(
    fn: string,
    rows: number,
    work: number,
    minPer: number,
    args: (r0: number, r1: number) => number[],
  ): void {
    const T = Math.min(this.threadsFor(work, minPer), rows);
    if (T <= 1) {
      this.ex[fn](...args(0, rows));
      return;
    }
    this.run(fn, T, (t) => args(Math.floor((rows * t) / T), Math.floor((rows * (t + 1)) / T)));
  }

  /** Threads to use for `work` units, at least `minPer` each (1 without workers). */
  threadsFor(work: number, minPer: number): number {
    const workers = this.pool?.size ?? 0; // 0 once closed (by close() or a lost worker)
    if (workers === 0) return 1;
    return Math.max(1, Math.min(workers + 1, Math.floor(work / minPer)));
  }

  /** Thread 0 (the caller) runs job 0; workers run jobs 1..T−1. */
  run(fn: string, T: number, job: (t: number) => number[]): void {
    const jobs: number[][] = [];
    for (let t = 1; t < T; t++) jobs.push(job(t));
    this.pool!.post(fn, jobs);
    try {
      this.ex[fn](...job(0));
    } finally {
      this.pool!.wait();
    }
  }

  /**
   * Runs row kernel `slot` over `shape`, writing through strides `outStrides` (from element
   * `outOffset` of the buffer at `outPtr`) and reading the
   * inputs through their views. Dimensions of size 1 are dropped and dimensions contiguous for
   * every operand merged, so most calls are one row.
   */
  elementwise(
    slot: string,
    shape: readonly number[],
    outPtr: number,
    outStrides: readonly number[],
    outOffset: number,
    ins: { s: { ptr: number }; v: View }[],
    param: number,
    heavy: boolean,
  ): void {
    let total = 1;
    for (const d of shape) total *= d;
    if (total === 0) return;
    const ops = [
      { strides: outStrides, ptr: outPtr + 4 * outOffset },
      ...ins.map((x) => ({
        strides: x.v.strides,
        ptr: x.s.ptr + 4 * x.v.offset,
      })),
    ];
    const { dims, strides } = collapseDims(shape, ops.map((o) => o.strides));
    const R = dims.length;
    if (R > EW_MAX_RANK) {
      throw new Error(`wasm backend: elementwise op on rank ${R} (after merging) > ${EW_MAX_RANK}`);
    }
    const rowLen = dims[R - 1];
    const outer = total / rowLen;
    const ptrs = [0, 1, 2, 3].map((k) => (k < ops.length ? ops[k].ptr : 0));
    const writeParams = (pp: number, d: number[], st: number[][]) => {
      const i32 = this.heap.i32;
      const b = elementIndex(pp);
      i32[b] = d.length;
      for (let j = 0; j < d.length; j++) {
        i32[b + 1 + j] = d[j];
        for (let k = 0; k < 4; k++) {
          i32[b + 1 + EW_MAX_RANK * (1 + k) + j] = k < st.length ? st[k][j] : 0;
        }
      }
    };
    const slotIdx = this.slots.get(slot);
    if (slotIdx === undefined) throw new Error(`wasm backend: no kernel ${slot}`);
    const T = this.threadsFor(total, heavy ? PAR_HEAVY : PAR_CHEAP);
    if (T > 1 && outer >= T) {
      // Split the outer rows; each thread has its own parameter block (counters are scratch).
      for (let t = 0; t < T; t++) writeParams(PARAM_BASE + t * PARAM_STRIDE, dims, strides);
      this.run("ew", T, (t) => [
        slotIdx,
        PARAM_BASE + t * PARAM_STRIDE,
        ...ptrs,
        param,
        Math.floor((outer * t) / T),
        Math.floor((outer * (t + 1)) / T),
      ]);
    } else if (T > 1 && R === 1) {
      // One long row: split it into T pieces.
      const bounds: number[] = [];
      for (let t = 0; t <= T; t++) {
        bounds.push(t === T ? rowLen : Math.floor((rowLen * t) / T / 4) * 4);
      }
      for (let t = 0; t < T; t++) {
        writeParams(PARAM_BASE + t * PARAM_STRIDE, [bounds[t + 1] - bounds[t]], strides);
      }
      this.run("ew", T, (t) => [
        slotIdx,
        PARAM_BASE + t * PARAM_STRIDE,
        ...ptrs.map((p, k) => (k < ops.length ? p + 4 * bounds[t] * strides[k][0] : 0)),
        param,
        0,
        1,
      ]);
    } else {
      writeParams(PARAM_BASE, dims, strides);
      this.ex.ew(slotIdx, PARAM_BASE, ...ptrs, param, 0, outer);
    }
  }
}
