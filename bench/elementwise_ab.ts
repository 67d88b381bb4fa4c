/**
 * A/B timing of the wasm backend's elementwise kernels between two checkouts of this
 * repository (see `kernel_ab.ts`): GELU and its gradient, exp, tanh, adds with and without
 * broadcasting, a row-broadcast multiply and the AdamW step, at GPT-2 shapes.
 *
 *   deno run -A bench/elementwise_ab.ts --old ../baseline --new . [--rounds 5] [--threads 1,2]
 *     [--ms 150] [--only gelu,adamw]   # ops whose name contains one of these
 */
import { type AbOp, runKernelAb } from "./kernel_ab.ts";

interface View {
  shape: number[];
  strides: number[];
  offset: number;
}
interface Storage {
  length: number;
}
interface Be {
  fromHost(d: Float32Array, t: "f32"): Storage;
  unary(op: string, x: Storage, v: View, p?: number): Storage;
  binary(op: string, a: Storage, av: View, b: Storage, bv: View): Storage;
  dispose(s: Storage): void;
  adamw(w: Storage, g: Storage, m: Storage, v: Storage, p: Record<string, number>): void;
}

const T = 640, H = 3072, C = 768;
const cv = (shape: number[]): View => {
  const strides = shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
  return { shape, strides, offset: 0 };
};
const rnd = (n: number) => Float32Array.from({ length: n }, () => Math.random() * 8 - 4);
const host = {
  big: rnd(T * H),
  big2: rnd(T * H),
  m: rnd(T * H),
  v: rnd(T * H).map(Math.abs),
  row: rnd(H),
  col: rnd(T),
  x: rnd(T * C),
};

type Bufs = Record<keyof typeof host, Storage>;
type Op = AbOp<Be, Bufs, Storage>;
const adamw = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, step: 3 };
const OPS: Op[] = [
  ["gelu [640,3072]", (b, s) => b.unary("gelu", s.big, cv([T, H]))],
  ["geluGrad [640,3072]", (b, s) => b.unary("geluGrad", s.big, cv([T, H]))],
  ["exp [640,3072]", (b, s) => b.unary("exp", s.big, cv([T, H]))],
  ["tanh [640,3072]", (b, s) => b.unary("tanh", s.big, cv([T, H]))],
  ["add [640,3072]", (b, s) => b.binary("add", s.big, cv([T, H]), s.big2, cv([T, H]))],
  [
    "add bias [640,3072]+[3072]",
    (b, s) =>
      b.binary("add", s.big, cv([T, H]), s.row, { shape: [T, H], strides: [0, 1], offset: 0 }),
  ],
  [
    "adamw 2M values",
    (b, s) => (b.adamw(s.big, s.big2, s.m, s.v, adamw), null),
  ],
  [
    "mul [640,768]·[640,1]",
    (b, s) =>
      b.binary("mul", s.x, cv([T, C]), s.col, { shape: [T, C], strides: [1, 0], offset: 0 }),
  ],
];

await runKernelAb<Be, Bufs, Storage>(
  OPS,
  (be) =>
    Object.fromEntries(Object.entries(host).map(([k, v]) => [k, be.fromHost(v, "f32")])) as Bufs,
);
Deno.exit(0);
