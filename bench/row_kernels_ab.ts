/**
 * A/B timing of the wasm backend's row ops (softmax, log-softmax, layer norm, cross-entropy,
 * forward and backward), the dropout mask and fused attention with dropout between two
 * checkouts of this repository (see `kernel_ab.ts`). GPT-2 shapes: 640 token rows, 768
 * features, 1024 attention keys, a 50257-token vocabulary, 3072 MLP features; attention at the
 * prefix-tuning shape (batch 10, 12 heads, 64 queries, 69 keys, head size 64) with dropout 0.1.
 *
 *   deno run -A bench/row_kernels_ab.ts --old ../baseline --new . [--rounds 5] [--threads 1,2]
 *     [--ms 150] [--only softmax,layerNorm]   # ops whose name contains one of these
 */
import type { AttentionParams, Backend, Storage } from "../kernels/backend.ts";
import { type AbOp, runKernelAb } from "./kernel_ab.ts";

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
type Op = AbOp<Backend, Bufs, Storage>;
const OPS: Op[] = [
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

await runKernelAb<Backend, Bufs, Storage>(OPS, (be) => {
  const s = Object.fromEntries(
    Object.entries(host).map(([k, v]) => [k, be.fromHost(v, "f32")]),
  ) as Partial<Bufs>;
  s.targets = be.fromHost(targets, "i32");
  const ln = be.layerNorm(s.x!, s.w!, s.b!, T, C, 1e-5);
  [s.mean, s.rstd] = [ln.mean, ln.rstd];
  s.y = be.softmax(s.s!, T, S, false);
  s.ly = be.softmax(s.s!, T, S, true);
  s.lse = be.crossEntropy(s.logits!, s.targets, T, V, -100).lse;
  return s as Bufs;
});
Deno.exit(0);
