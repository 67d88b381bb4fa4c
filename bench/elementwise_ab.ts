/**
 * A/B timing of the wasm backend's elementwise kernels between two checkouts of this
 * repository (e.g. a baseline and a change), in one process with the rounds alternating, so a
 * busy machine slows both sides alike. Prints which kernels' generated code differs between the
 * two (the elementwise row kernels and every exported kernel), then min and median per op and side, and new/old ratios of both.
 *
 *   deno run -A bench/elementwise_ab.ts --old ../baseline --new . [--rounds 5] [--threads 1,2]
 *     [--ms 150] [--only gelu,adamw]   # ops whose name contains one of these
 */
import { parseArgs } from "node:util";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
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
type Create = (o: { threads: number }) => Promise<Be>;

await printKernelDiff(values.old, values.new);

async function load(root: string): Promise<Create> {
  const url = pathToFileURL(resolve(root, "kernels/wasm/backend.ts")).href;
  return ((await import(url)) as { createWasmBackend: Create }).createWasmBackend;
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

type Op = (b: Be, s: Record<keyof typeof host, Storage>) => Storage | null;
const adamw = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, step: 3 };
const OPS: [string, Op][] = [
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
    ) as Record<keyof typeof host, Storage>;
    setups.push({ side: side.name, t, be, s });
  }
}

/** ms per call: as many calls as fit in the budget, after a warm-up. */
function time(be: Be, s: Record<keyof typeof host, Storage>, op: Op): number {
  const run = () => {
    const out = op(be, s);
    if (out) be.dispose(out);
  };
  for (let i = 0; i < 3; i++) run();
  let n = 0;
  const t0 = performance.now();
  let t1 = t0;
  while (t1 - t0 < budget) {
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
      const ms = time(st.be, st.s, op);
      results.set(key, [...(results.get(key) ?? []), ms]);
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
