/**
 * Non-matmul primitives of the wasm backend at GPT-2 small sizes (640 tokens × 768, LM head
 * 640 × 50257), with 2 threads / 64-bit memory, 1 thread / 64-bit memory and 1 thread / 32-bit
 * memory (the memory64 cost), against the CPU reference backend:
 *
 *   deno bench -A bench/wasm_ops_bench.ts
 */
import { type Backend, contiguousView, type Storage } from "../kernels/backend.ts";
import { CpuBackend } from "../kernels/cpu/backend.ts";
import { createWasmBackend } from "../kernels/wasm/backend.ts";

const backends: [string, Backend][] = [
  ["wasm64×2", await createWasmBackend({ threads: 2 })],
  ["wasm64×1", await createWasmBackend({ threads: 1 })],
  ["wasm32×1", await createWasmBackend({ threads: 1, memory64: false })],
  ["cpu", new CpuBackend()],
];

const T = 640, C = 768, V = 50257;
const rnd = (n: number) => Float32Array.from({ length: n }, () => Math.random() * 4 - 2);
const xh = rnd(T * C), yh = rnd(T * C), wh = rnd(C), lh = rnd(T * V);
const th = Int32Array.from({ length: T }, (_, i) => (i * 7919) % V);

type Op = (b: Backend, s: Record<string, Storage>) => Storage[];
const ops: [string, Op][] = [
  [
    "add [640,768]",
    (b, s) => [b.binary("add", s.x, contiguousView([T, C]), s.y, contiguousView([T, C]))],
  ],
  [
    "add bias [640,768]+[768]",
    (
      b,
      s,
    ) => [
      b.binary("add", s.x, contiguousView([T, C]), s.w, {
        shape: [T, C],
        strides: [0, 1],
        offset: 0,
      }),
    ],
  ],
  ["gelu [640,768]", (b, s) => [b.unary("gelu", s.x, contiguousView([T, C]))]],
  ["transpose copy [768,640]", (b, s) => {
    const d = b.full(T * C, 0, "f32");
    b.copy(s.x, { shape: [C, T], strides: [1, C], offset: 0 }, d, contiguousView([C, T]));
    return [d];
  }],
  ["layerNorm [640,768]", (b, s) => {
    const r = b.layerNorm(s.x, s.w, s.w, T, C, 1e-5);
    return [r.y, r.mean, r.rstd];
  }],
  ["softmax [640,768]", (b, s) => [b.softmax(s.x, T, C, false)]],
  ["sum over rows [640,768]→[768]", (b, s) => [b.reduce("sum", s.x, 1, T, C)]],
  ["crossEntropy [640,50257]", (b, s) => {
    const r = b.crossEntropy(s.l, s.t, T, V, -100);
    return [r.loss, r.lse];
  }],
  ["dropoutMask 640·768", (b) => [b.dropoutMask(T * C, 0.1, 42)]],
];

for (const [name, b] of backends) {
  const s: Record<string, Storage> = {
    x: b.fromHost(xh, "f32"),
    y: b.fromHost(yh, "f32"),
    w: b.fromHost(wh, "f32"),
    l: b.fromHost(lh, "f32"),
    t: b.fromHost(th, "i32"),
  };
  for (const [opName, op] of ops) {
    // The reference backend is slow on the LM-head sizes: a few iterations are enough.
    const few = name === "cpu" && opName.startsWith("crossEntropy") ? { n: 3, warmup: 1 } : {};
    Deno.bench({
      name: `${opName} ${name}`,
      group: opName,
      baseline: name === "wasm64×2",
      ...few,
      fn: () => {
        for (const r of op(b, s)) b.dispose(r);
      },
    });
  }
}
