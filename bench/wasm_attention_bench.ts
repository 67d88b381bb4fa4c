/**
 * Fused causal attention (`lf.attention`: the wasm `attn_fwd`/`attn_bwd` kernels) against the
 * unfused sequence GPT-2's attention used before (scale q → q·kᵀ → maskedFill → softmax →
 * dropout → ·v, see nn/attention.ts), forward + backward of q, k and v, on the wasm backend at
 * the GPT-2 prefix-tuning shape: batch 10, 12 heads, 64 tokens after a 5-position prefix
 * (S = 69), head size 64, right padding. Without dropout (prefix-tuning keeps GPT-2 in eval
 * mode) and with 0.1 (fine-tuning), on 1 and 2 threads:
 *
 *   deno bench -A bench/wasm_attention_bench.ts
 */
import * as lf from "../mod.ts";
import type { Backend } from "../kernels/backend.ts";
import { createWasmBackend } from "../kernels/wasm/backend.ts";
import { buildBlockedMask, MASK_VALUE } from "../nn/attention.ts";

const B = 10, H = 12, T = 64, PREFIX = 5, S = T + PREFIX, D = 64;
// Right padding as in training batches: sequence b has 64 − 4b real tokens.
const maskRows = Array.from(
  { length: B },
  (_, b) => Array.from({ length: S }, (_, j) => (j < S - 4 * b ? 1 : 0)),
);

const rnd = (n: number) => Float32Array.from({ length: n }, () => Math.random() * 2 - 1);
const qh = rnd(B * H * T * D), kh = rnd(B * H * S * D), vh = rnd(B * H * S * D);
const gh = rnd(B * H * T * D);

for (const threads of [1, 2]) {
  const be: Backend = await createWasmBackend({ threads });
  const leaf = (d: Float32Array, shape: number[]) =>
    lf.tensor(d, { shape, backend: be, requiresGrad: true });
  const q = leaf(qh, [B, H, T, D]), k = leaf(kh, [B, H, S, D]), v = leaf(vh, [B, H, S, D]);
  const gOut = lf.tensor(gh, { shape: [B, H, T, D], backend: be });
  const mask = lf.tensor(Float32Array.from(maskRows.flat()), { shape: [B, S], backend: be });
  const blocked = buildBlockedMask({
    batch: B,
    length: T,
    pastLength: PREFIX,
    attentionMask: mask,
    backend: be,
  })!;

  const step = (fused: boolean, p: number) => {
    lf.tidy(() => {
      const o = fused ? lf.attention(q, k, v, { mask, dropout: p }) : lf.dropout(
        q.mul(1 / Math.sqrt(D)).matmul(k.transpose(-1, -2)).maskedFill(blocked, MASK_VALUE)
          .softmax(-1),
        p,
      ).matmul(v);
      o.backward(gOut);
    });
    for (const t of [q, k, v]) t.zeroGrad();
  };

  for (const p of [0, 0.1]) {
    const group =
      `attention fwd+bwd B=${B} H=${H} T=${T} S=${S} d=${D} dropout ${p}, ${threads} thread(s)`;
    Deno.bench(`unfused (wasm×${threads}, dropout ${p})`, { group, baseline: true }, () => {
      step(false, p);
    });
    Deno.bench(`fused (wasm×${threads}, dropout ${p})`, { group }, () => {
      step(true, p);
    });
  }
}
