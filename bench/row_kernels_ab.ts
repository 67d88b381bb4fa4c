/**
 * A/B timing of the wasm backend's row ops (softmax, log-softmax, layer norm, cross-entropy,
 * forward and backward), the dropout mask and fused attention with dropout between two
 * checkouts of this repository (e.g. a baseline and a change), in one process with the rounds
 * alternating, so a busy machine slows both sides alike. GPT-2 shapes: 640 token rows, 768
 * features, 1024 attention keys, a 50257-token vocabulary, 3072 MLP features; attention at the
 * prefix-tuning shape (batch 10, 12 heads, 64 queries, 69 keys, head size 64) with dropout 0.1.
 * Prints which kernels' generated code differs, then min and median ms per op and side and the
 * new/old ratios of both.
 *
 *   deno run -A bench/row_kernels_ab.ts --old ../baseline --new . [--rounds 5] [--threads 1,2]
 *     [--ms 150] [--only softmax,layerNorm]   # ops whose name contains one of these
 */
import { parseArgs } from "node:util";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type { AttentionParams, Backend, Storage } from "../kernels/backend.ts";
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

const T = 640, C = 768, S = 1024, V = 50257, H = 3072;
const AB = 10, AH = 12, AT = 64, AS = 69, AD = 64;
const rnd = (n: number, lo = -4, hi = 4) =>
  Float32Array.from({ length: n }, () => lo + Math.random() * (hi - lo));
const host = {
  x: rnd(T * C),
  w: rnd(C),
  b: rnd(C),
  gyC: rnd(T * C),
  s: rnd(T * S),
  gS: rnd(T * S),
  logits: rnd(T * V),
  gLoss: rnd(T, 0, 1),
  q: rnd(AB * AH * AT * AD, -1, 1),
  k: rnd(AB * AH * AS * AD, -1, 1),
  v: rnd(AB * AH * AS * AD, -1, 1),
  gO: rnd(AB * AH * AT * AD, -1, 1),
};
// Every 16th row ignored, as padding would be.
const targets = Int32Array.from({ length: T }, (_, i) => (i % 16 === 15 ? -100 : (i * 7919) % V));
const attn: AttentionParams = {
  batch: AB,
  heads: AH,
  queries: AT,
  keys: AS,
  dim: AD,
  scale: 1 / Math.sqrt(AD),
  dropP: 0.1,
  dropSeed: 1234,
};

type Bufs = Record<keyof typeof host | "targets" | "mean" | "rstd" | "y" | "ly" | "lse", Storage>;
type Op = (b: Backend, s: Bufs) => Storage[];
const OPS: [string, Op][] = [
  ["layerNorm [640,768]", (b, s) => Object.values(b.layerNorm(s.x, s.w, s.b, T, C, 1e-5))],
  [
    "layerNormBackward [640,768]",
    (b, s) => Object.values(b.layerNormBackward(s.x, s.w, s.mean, s.rstd, s.gyC, T, C)),
  ],
  ["softmax [640,1024]", (b, s) => [b.softmax(s.s, T, S, false)]],
  ["logSoftmax [640,1024]", (b, s) => [b.softmax(s.s, T, S, true)]],
  ["softmaxBackward [640,1024]", (b, s) => [b.softmaxBackward(s.y, s.gS, T, S, false)]],
  ["logSoftmaxBackward [640,1024]", (b, s) => [b.softmaxBackward(s.ly, s.gS, T, S, true)]],
  [
    "crossEntropy [640,50257]",
    (b, s) => Object.values(b.crossEntropy(s.logits, s.targets, T, V, -100)),
  ],
  [
    "crossEntropyBackward [640,50257]",
    (b, s) => [b.crossEntropyBackward(s.logits, s.targets, s.lse, s.gLoss, T, V, -100)],
  ],
  ["dropoutMask [640,3072]", (b) => [b.dropoutMask(T * H, 0.1, 42)]],
  [
    "attention fwd+bwd dropout 0.1",
    (b, s) => {
      const { out, lse } = b.attention(s.q, s.k, s.v, null, attn);
      const g = b.attentionBackward(s.q, s.k, s.v, null, out, lse, s.gO, attn);
      return [out, lse, g.gq, g.gk, g.gv];
    },
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
    ) as Partial<Bufs>;
    s.targets = be.fromHost(targets, "i32");
    const ln = be.layerNorm(s.x!, s.w!, s.b!, T, C, 1e-5);
    [s.mean, s.rstd] = [ln.mean, ln.rstd];
    s.y = be.softmax(s.s!, T, S, false);
    s.ly = be.softmax(s.s!, T, S, true);
    s.lse = be.crossEntropy(s.logits!, s.targets, T, V, -100).lse;
    setups.push({ side: side.name, t, be, s: s as Bufs });
  }
}

/** ms per call: as many calls as fit in the budget (at least 3), after a warm-up. */
function time(be: Backend, s: Bufs, op: Op): number {
  const run = () => {
    for (const o of op(be, s)) be.dispose(o);
  };
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
