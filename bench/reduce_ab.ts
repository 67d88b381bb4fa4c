/**
 * A/B timing of the wasm backend's reductions (sum, max, min) and argmax between two checkouts
 * of this repository (e.g. a baseline and a change), in one process with the rounds alternating,
 * so a busy machine slows both sides alike. GPT-2 shapes: bias gradients [1, 640, 768] (over
 * the 640 token rows, 768 columns), row sums [640, 768, 1], and the [640, 50257, 1] logits
 * (argmax and max over the vocabulary). Prints which kernels' generated code differs, then min
 * and median ms per op and side and the new/old ratios of both.
 *
 *   deno run -A bench/reduce_ab.ts --old ../baseline --new . [--rounds 5] [--threads 1,2]
 *     [--ms 150] [--only sum,argmax]   # ops whose name contains one of these
 */
import { parseArgs } from "node:util";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type { Backend, ReduceOp, Storage } from "../kernels/backend.ts";
import { printKernelDiff } from "./wasm_kernel_code.ts";

const { values } = parseArgs({
  options: {
    old: { type: "string" },
    new: { type: "string", default: "." },
    rounds: { type: "string", default: "5" },
    threads: { type: "string", default: "1,2" },
    ms: { type: "string", default: "150" },
    only: { type: "string", default: "" },
  },
});
if (!values.old) throw new Error("--old <checkout> is required");
const rounds = Number(values.rounds), budget = Number(values.ms);
const threads = values.threads.split(",").map(Number);

await printKernelDiff(values.old, values.new);

type Create = (o: { threads: number }) => Promise<Backend>;
async function load(root: string): Promise<Create> {
  const url = pathToFileURL(resolve(root, "kernels/wasm/backend.ts")).href;
  return ((await import(url)) as { createWasmBackend: Create }).createWasmBackend;
}

const T = 640, C = 768, V = 50257;
const rnd = (n: number, lo = -4, hi = 4) =>
  Float32Array.from({ length: n }, () => lo + Math.random() * (hi - lo));
const host = { x: rnd(T * C), logits: rnd(T * V) };

type Bufs = Record<keyof typeof host, Storage>;
type Op = (b: Backend, s: Bufs) => Storage;
const reduce = (op: ReduceOp, buf: keyof Bufs, [o, n, i]: number[]): [string, Op] => [
  `${op} [${o},${n},${i}]`,
  (b, s) => b.reduce(op, s[buf], o, n, i),
];
const OPS: [string, Op][] = [
  ...(["sum", "max", "min"] as const).flatMap((op) => [
    reduce(op, "x", [1, T, C]),
    reduce(op, "x", [T, C, 1]),
  ]),
  reduce("max", "logits", [T, V, 1]),
  [`argmax [${T},${V},1]`, (b, s) => b.argmax(s.logits, T, V, 1)],
  [`argmax [1,${T},${C}]`, (b, s) => b.argmax(s.x, 1, T, C)],
];
const only = values.only.split(",").filter(Boolean);
if (only.length) OPS.splice(0, OPS.length, ...OPS.filter(([n]) => only.some((o) => n.includes(o))));

const sides = [
  { name: "old", create: await load(values.old) },
  { name: "new", create: await load(values.new) },
];
const setups = [];
for (const side of sides) {
  for (const t of threads) {
    const be = await side.create({ threads: t });
    const s = Object.fromEntries(
      Object.entries(host).map(([k, v]) => [k, be.fromHost(v, "f32")]),
    ) as Bufs;
    setups.push({ side: side.name, t, be, s });
  }
}

/** ms per call: as many calls as fit in the budget (at least 3), after a warm-up. */
function time(be: Backend, s: Bufs, op: Op): number {
  const run = () => be.dispose(op(be, s));
  for (let i = 0; i < 2; i++) run();
  let n = 0;
  const t0 = performance.now();
  let t1 = t0;
  while (t1 - t0 < budget || n < 3) {
    run();
    n++;
    t1 = performance.now();
  }
  return (t1 - t0) / n;
}

const results = new Map<string, number[]>();
for (let r = 0; r < rounds; r++) {
  // Alternate the order each round too.
  const order = r % 2 === 0 ? setups : [...setups].reverse();
  for (const [name, op] of OPS) {
    for (const st of order) {
      const key = `${name}|${st.t}|${st.side}`;
      results.set(key, [...(results.get(key) ?? []), time(st.be, st.s, op)]);
    }
  }
}

const min = (a: number[]) => Math.min(...a);
const median = (a: number[]) => {
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
console.log(`rounds ${rounds}, ${budget} ms per measurement; times in ms per call`);
console.log(
  "op | threads | old min | new min | new/old min | old median | new median | new/old median",
);
for (const [name] of OPS) {
  for (const t of threads) {
    const o = results.get(`${name}|${t}|old`)!, n = results.get(`${name}|${t}|new`)!;
    console.log(
      [
        name,
        t,
        min(o).toFixed(3),
        min(n).toFixed(3),
        (min(n) / min(o)).toFixed(3),
        median(o).toFixed(3),
        median(n).toFixed(3),
        (median(n) / median(o)).toFixed(3),
      ].join(" | "),
    );
  }
}
Deno.exit(0);
