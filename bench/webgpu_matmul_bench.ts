// WebGPU matmul throughput at n = 256, 512, 1024 (square, f32), in GFLOP/s.
//
//   deno run -A bench/webgpu_matmul_bench.ts [sizes...]   prints one JSON line per size
//   deno bench -A bench/webgpu_matmul_bench.ts             the same kernels under Deno.bench
//
// Each timed run queues `reps` products and waits for the GPU once, so the per-call overhead of
// Deno's WebGPU is amortised the way a training step amortises it.
import { adapterInfo } from "../kernels/webgpu/device.ts";
import { createWebGPUBackend, type WebGPUBackend } from "../kernels/webgpu/backend.ts";
import type { MatmulParams, Storage } from "../kernels/backend.ts";

function square(n: number, transB = false): MatmulParams {
  return { batch: 1, m: n, n, k: n, transA: false, transB, aBatchStride: 0, bBatchStride: 0 };
}

function inputs(be: WebGPUBackend, n: number): [Storage, Storage] {
  const a = new Float32Array(n * n), b = new Float32Array(n * n);
  for (let i = 0; i < n * n; i++) {
    a[i] = Math.sin(i) * 0.5;
    b[i] = Math.cos(i * 0.7) * 0.5;
  }
  return [be.fromHost(a, "f32"), be.fromHost(b, "f32")];
}

async function timeMatmul(be: WebGPUBackend, n: number, transB: boolean): Promise<number> {
  const [a, b] = inputs(be, n);
  const p = square(n, transB);
  be.dispose(be.matmul(a, b, p)); // compile + warm up
  await be.sync();
  // Aim for about a second of GPU work at the speed of the warm-up estimate.
  let reps = 1;
  let ms = 0;
  for (;;) {
    const t0 = performance.now();
    for (let r = 0; r < reps; r++) be.dispose(be.matmul(a, b, p));
    await be.sync();
    ms = (performance.now() - t0) / reps;
    if (ms * reps > 500 || reps >= 64) break;
    reps *= 4;
  }
  be.dispose(a);
  be.dispose(b);
  return (2 * n ** 3) / ms / 1e6;
}

if (import.meta.main) {
  const info = await adapterInfo();
  if (info === null) {
    console.log(JSON.stringify({ skipped: "no WebGPU adapter" }));
    Deno.exit(0);
  }
  const be = await createWebGPUBackend();
  const sizes = Deno.args.length > 0 ? Deno.args.map(Number) : [256, 512, 1024];
  for (const n of sizes) {
    for (const transB of [false, true]) {
      const gflops = await timeMatmul(be, n, transB);
      console.log(JSON.stringify({
        adapter: info.name,
        fallback: info.isFallbackAdapter,
        n,
        transB,
        gflops: Number(gflops.toFixed(3)),
      }));
    }
  }
  be.destroy();
} else {
  const info = await adapterInfo();
  const be = info === null ? null : await createWebGPUBackend();
  for (const n of [256, 512, 1024]) {
    Deno.bench({
      name: `webgpu matmul ${n}³ (${info?.name ?? "no adapter"})`,
      ignore: be === null,
      async fn(b) {
        const [x, y] = inputs(be!, n);
        be!.dispose(be!.matmul(x, y, square(n)));
        await be!.sync();
        b.start();
        be!.dispose(be!.matmul(x, y, square(n)));
        await be!.sync();
        b.end();
        be!.dispose(x);
        be!.dispose(y);
      },
    });
  }
}
