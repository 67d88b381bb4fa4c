/**
 * CPU reference backend: matmul GFLOP/s at 256/512/1024 and elementwise throughput.
 * Run: `deno bench -A bench/cpu_ops_bench.ts` (GFLOP/s = 2n³ / time).
 */
import { CpuBackend } from "../kernels/cpu/backend.ts";
import { contiguousView } from "../kernels/backend.ts";

const be = new CpuBackend();
const rand = (n: number) => {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.sin(i * 12.9898) * 0.5;
  return a;
};

for (const n of [256, 512, 1024]) {
  const a = be.fromHost(rand(n * n), "f32"), b = be.fromHost(rand(n * n), "f32");
  Deno.bench(`cpu matmul ${n}³ (${(2 * n ** 3 / 1e9).toFixed(3)} GFLOP per call)`, {
    group: "matmul",
    n: n === 1024 ? 2 : undefined,
    warmup: n === 1024 ? 1 : undefined,
  }, () => {
    const c = be.matmul(a, b, {
      batch: 1,
      m: n,
      n,
      k: n,
      transA: false,
      transB: false,
      aBatchStride: 0,
      bBatchStride: 0,
    });
    be.dispose(c);
  });
}

const N = 1 << 20;
const x = be.fromHost(rand(N), "f32"), y = be.fromHost(rand(N), "f32");
const v = contiguousView([N]);
Deno.bench(
  "cpu add 1M f32",
  { group: "elementwise" },
  () => be.dispose(be.binary("add", x, v, y, v)),
);
Deno.bench(
  "cpu mul 1M f32",
  { group: "elementwise" },
  () => be.dispose(be.binary("mul", x, v, y, v)),
);
Deno.bench("cpu gelu 1M f32", { group: "elementwise" }, () => be.dispose(be.unary("gelu", x, v)));
Deno.bench("cpu exp 1M f32", { group: "elementwise" }, () => be.dispose(be.unary("exp", x, v)));
