/**
 * Quick matmul throughput table of the wasm backend (and of jax-js's WASM backend when
 * `@jax-js/jax` can be imported), for the sizes quoted in the report:
 *
 *   deno run -A bench/matmul_perf.ts [--jax] [--shapes 256x256x256,640x768x2304T]
 *
 * A shape is m×k×n; a trailing `T` uses B transposed (stored [n, k]), as GPT-2's tied LM head.
 * Each entry is the best of a few runs after a warm-up; GFLOP/s = 2·m·n·k / time.
 *
 * @module
 */

import type { Storage } from "../kernels/backend.ts";
import { createWasmBackend, type WasmBackend } from "../kernels/wasm/backend.ts";

/** One benchmark shape. */
export interface PerfShape {
  /** Rows of A and C. */
  m: number;
  /** Inner dimension. */
  k: number;
  /** Columns of B and C. */
  n: number;
  /** B stored [n, k]. */
  transB: boolean;
}

/** Parses `m×k×n[T]` (x or ×). */
export function parseShape(s: string): PerfShape {
  const t = s.endsWith("T");
  const [m, k, n] = s.replace(/T$/, "").split(/[x×]/).map(Number);
  if (![m, k, n].every((v) => Number.isInteger(v) && v > 0)) throw new Error(`bad shape "${s}"`);
  return { m, k, n, transB: t };
}

/** The shapes of the report. */
export const REPORT_SHAPES: PerfShape[] = [
  "256x256x256",
  "512x512x512",
  "1024x1024x1024",
  "640x768x2304",
  "640x768x50257T",
].map(parseShape);

function reps(flops: number): number {
  return flops > 2e10 ? 3 : flops > 1e9 ? 5 : 20;
}

/** Best time (ms) of our matmul for a shape. */
export function timeWasm(w: WasmBackend, s: PerfShape): number {
  const A = new Float32Array(s.m * s.k).map(() => Math.random() - 0.5);
  const B = new Float32Array(s.k * s.n).map(() => Math.random() - 0.5);
  const a = w.fromHost(A, "f32"), b = w.fromHost(B, "f32");
  const p = {
    batch: 1,
    m: s.m,
    n: s.n,
    k: s.k,
    transA: false,
    transB: s.transB,
    aBatchStride: 0,
    bBatchStride: 0,
  };
  let c: Storage = w.matmul(a, b, p); // warm-up (tier-up of the kernels)
  w.dispose(c);
  let best = Infinity;
  for (let r = 0; r < reps(2 * s.m * s.n * s.k); r++) {
    const t0 = performance.now();
    c = w.matmul(a, b, p);
    best = Math.min(best, performance.now() - t0);
    w.dispose(c);
  }
  w.dispose(a);
  w.dispose(b);
  return best;
}

/** Best time (ms) of jax-js's WASM matmul for a shape, or null when jax-js is unavailable. */
export async function timeJax(s: PerfShape): Promise<number | null> {
  // deno-lint-ignore no-explicit-any
  let jax: any;
  try {
    jax = await import("@jax-js/jax");
  } catch {
    return null;
  }
  if (!jaxReady) {
    const devs: string[] = await jax.init("wasm");
    if (!devs.includes("wasm")) return null;
    jax.defaultDevice("wasm");
    jaxReady = true;
  }
  const np = jax.numpy;
  const a = np.array(new Float32Array(s.m * s.k).map(() => Math.random() - 0.5)).reshape([
    s.m,
    s.k,
  ]);
  const b = s.transB
    ? np.array(new Float32Array(s.k * s.n).map(() => Math.random() - 0.5)).reshape([s.n, s.k])
    : np.array(new Float32Array(s.k * s.n).map(() => Math.random() - 0.5)).reshape([s.k, s.n]);
  // deno-lint-ignore no-explicit-any
  const f = jax.jit((x: any, y: any) => np.matmul(x, s.transB ? np.matrixTranspose(y) : y));
  let c = f(a.ref, b.ref);
  await c.blockUntilReady();
  c.dispose();
  let best = Infinity;
  for (let r = 0; r < reps(2 * s.m * s.n * s.k); r++) {
    const t0 = performance.now();
    c = f(a.ref, b.ref);
    await c.blockUntilReady();
    best = Math.min(best, performance.now() - t0);
    c.dispose();
  }
  a.dispose();
  b.dispose();
  f.dispose?.();
  return best;
}
let jaxReady = false;

if (import.meta.main) {
  const args = Deno.args;
  const si = args.indexOf("--shapes");
  const shapes = si >= 0 ? args[si + 1].split(",").map(parseShape) : REPORT_SHAPES;
  const withJax = args.includes("--jax");
  const w1 = await createWasmBackend({ threads: 1 });
  const w2 = await createWasmBackend({ threads: 2 });
  console.log(
    `wasm backend: memory64=${w2.memory64} relaxedSimd=${w2.relaxedSimd} ` +
      `blocking=${JSON.stringify(w2.matmulConfig)}`,
  );
  console.log(
    "shape (m×k×n)        | wasm 1T GFLOP/s | wasm 2T GFLOP/s" +
      (withJax ? " | jax-js wasm GFLOP/s | 2T / jax" : ""),
  );
  for (const s of shapes) {
    const fl = 2 * s.m * s.n * s.k / 1e6;
    const t1 = timeWasm(w1, s);
    const t2 = timeWasm(w2, s);
    let line = `${`${s.m}×${s.k}×${s.n}${s.transB ? " (Bᵀ)" : ""}`.padEnd(20)} | ${
      (fl / t1).toFixed(1).padStart(15)
    } | ${(fl / t2).toFixed(1).padStart(15)}`;
    if (withJax) {
      const tj = await timeJax(s);
      line += tj === null
        ? " | unavailable"
        : ` | ${(fl / tj).toFixed(1).padStart(19)} | ${(tj / t2).toFixed(2).padStart(8)}`;
    }
    console.log(line);
  }
  w1.close();
  w2.close();
  // jax-js's workers would keep the process alive.
  Deno.exit(0);
}
