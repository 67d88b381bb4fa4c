/**
 * A/B timing of the wasm backend's reductions (sum, max, min) and argmax between two checkouts
 * of this repository (see `kernel_ab.ts`). GPT-2 shapes: bias gradients [1, 640, 768] (over the
 * 640 token rows, 768 columns), row sums [640, 768, 1], and the [640, 50257, 1] logits (argmax
 * and max over the vocabulary).
 *
 *   deno run -A bench/reduce_ab.ts --old ../baseline --new . [--rounds 5] [--threads 1,2]
 *     [--ms 150] [--only sum,argmax]   # ops whose name contains one of these
 */
import type { Backend, ReduceOp, Storage } from "../kernels/backend.ts";
import { type AbOp, runKernelAb } from "./kernel_ab.ts";

const T = 640, C = 768, V = 50257;
const rnd = (n: number, lo = -4, hi = 4) =>
  Float32Array.from({ length: n }, () => lo + Math.random() * (hi - lo));
const host = { x: rnd(T * C), logits: rnd(T * V) };

type Bufs = Record<keyof typeof host, Storage>;
type Op = AbOp<Backend, Bufs, Storage>;
const reduce = (op: ReduceOp, buf: keyof Bufs, [o, n, i]: number[]): Op => [
  `${op} [${o},${n},${i}]`,
  (b, s) => b.reduce(op, s[buf], o, n, i),
];
const OPS: Op[] = [
  ...(["sum", "max", "min"] as const).flatMap((op) => [
    reduce(op, "x", [1, T, C]),
    reduce(op, "x", [T, C, 1]),
  ]),
  reduce("max", "logits", [T, V, 1]),
  [`argmax [${T},${V},1]`, (b, s) => b.argmax(s.logits, T, V, 1)],
  [`argmax [1,${T},${C}]`, (b, s) => b.argmax(s.x, 1, T, C)],
];

await runKernelAb<Backend, Bufs, Storage>(
  OPS,
  (be) =>
    Object.fromEntries(Object.entries(host).map(([k, v]) => [k, be.fromHost(v, "f32")])) as Bufs,
);
Deno.exit(0);
