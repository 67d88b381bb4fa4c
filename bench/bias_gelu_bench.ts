/**
 * The fused bias + GELU of GPT-2's MLP (`addGelu` / `addGeluGrad`) against the two kernels it
 * replaces, forward and backward, on the wasm backend at GPT-2 small's MLP width (640 tokens ×
 * 3072), one and two threads:
 *
 *   deno bench -A bench/bias_gelu_bench.ts
 */
import { type Backend, contiguousView } from "../kernels/backend.ts";
import { createWasmBackend } from "../kernels/wasm/backend.ts";

const T = 640, H = 3072;
const rnd = (n: number) => Float32Array.from({ length: n }, () => Math.random() * 8 - 4);
const cv = contiguousView([T, H]);
const bias = { shape: [T, H], strides: [0, 1], offset: 0 };

for (const threads of [1, 2]) {
  const be: Backend = await createWasmBackend({ threads });
  const x = be.fromHost(rnd(T * H), "f32"), b = be.fromHost(rnd(H), "f32");
  const g = be.fromHost(rnd(T * H), "f32");
  const group = (s: string) => `${s}, ${threads} thread${threads > 1 ? "s" : ""}`;
  Deno.bench({
    name: "add bias, then gelu",
    group: group("forward"),
    baseline: true,
    fn: () => {
      const h = be.binary("add", x, cv, b, bias);
      be.dispose(be.unary("gelu", h, cv));
      be.dispose(h);
    },
  });
  Deno.bench({
    name: "gelu(x + bias), fused",
    group: group("forward"),
    fn: () => be.dispose(be.binary("addGelu", x, cv, b, bias)),
  });
  // The unfused backward reads the stored pre-activation (x + bias); the fused one recomputes it.
  const h = be.binary("add", x, cv, b, bias);
  Deno.bench({
    name: "geluGrad(h), then · g",
    group: group("backward"),
    baseline: true,
    fn: () => {
      const d = be.unary("geluGrad", h, cv);
      be.dispose(be.binary("mul", g, cv, d, cv));
      be.dispose(d);
    },
  });
  Deno.bench({
    name: "geluGrad(x + bias) fused, then · g",
    group: group("backward"),
    fn: () => {
      const d = be.binary("addGeluGrad", x, cv, b, bias);
      be.dispose(be.binary("mul", g, cv, d, cv));
      be.dispose(d);
    },
  });
}
