/**
 * Matmul throughput of the wasm backend (1 and 2 threads) against jax-js's WebAssembly backend,
 * at square sizes and GPT-2 shapes:
 *
 *   deno bench -A bench/wasm_matmul_bench.ts
 *
 * GFLOP/s = 2·m·n·k / time. `640×768×50257ᵀ` is GPT-2's tied LM head (B stored [vocab, 768]).
 * jax-js is skipped when `@jax-js/jax` cannot be loaded.
 */
import type { Storage } from "../kernels/backend.ts";
import { createWasmBackend, type WasmBackend } from "../kernels/wasm/backend.ts";
import { parseShape, type PerfShape } from "./matmul_perf.ts";

const shapes = ["256x256x256", "512x512x512", "1024x1024x1024", "640x768x2304", "640x768x50257T"]
  .map(parseShape);
const w2 = await createWasmBackend({ threads: 2 });
const w1 = await createWasmBackend({ threads: 1 });

// deno-lint-ignore no-explicit-any
let jax: any = null;
try {
  jax = await import("@jax-js/jax");
  const devs: string[] = await jax.init("wasm");
  if (devs.includes("wasm")) jax.defaultDevice("wasm");
  else jax = null;
} catch (e) {
  console.log(`jax-js unavailable (${(e as Error).message}): its benches are skipped`);
  jax = null;
}

const label = (s: PerfShape) => `${s.m}×${s.k}×${s.n}${s.transB ? "ᵀ" : ""}`;
const big = (s: PerfShape) => 2 * s.m * s.n * s.k > 1e10;

function ours(w: WasmBackend, s: PerfShape): () => void {
  const a = w.fromHost(new Float32Array(s.m * s.k).map(() => Math.random() - 0.5), "f32");
  const b = w.fromHost(new Float32Array(s.k * s.n).map(() => Math.random() - 0.5), "f32");
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
  return () => {
    const c: Storage = w.matmul(a, b, p);
    w.dispose(c);
  };
}

function theirs(s: PerfShape): () => Promise<void> {
  const np = jax.numpy;
  const a = np.array(new Float32Array(s.m * s.k).map(() => Math.random() - 0.5)).reshape([
    s.m,
    s.k,
  ]);
  const b = np.array(new Float32Array(s.k * s.n).map(() => Math.random() - 0.5))
    .reshape(s.transB ? [s.n, s.k] : [s.k, s.n]);
  // deno-lint-ignore no-explicit-any
  const f = jax.jit((x: any, y: any) => np.matmul(x, s.transB ? np.matrixTranspose(y) : y));
  return async () => {
    const c = f(a.ref, b.ref);
    await c.blockUntilReady();
    c.dispose();
  };
}

for (const s of shapes) {
  const group = label(s);
  const opts = big(s) ? { n: 3, warmup: 1 } : {};
  Deno.bench({ name: `wasm 2 threads ${group}`, group, baseline: true, ...opts, fn: ours(w2, s) });
  Deno.bench({ name: `wasm 1 thread ${group}`, group, ...opts, fn: ours(w1, s) });
  if (jax) Deno.bench({ name: `jax-js wasm ${group}`, group, ...opts, fn: theirs(s) });
}
