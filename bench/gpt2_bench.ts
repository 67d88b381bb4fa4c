/**
 * GPT-2 124M-shaped forward passes with random weights, on every backend that loads here:
 * the full forward (B=1, T=64, logits for all 64 positions) and one KV-cached decoding step
 * (B=5 beams, 64 cached positions, logits of the new position).
 *
 * Run: `deno bench -A bench/gpt2_bench.ts` (each backend builds its own model first;
 * building 124M random weights takes a few seconds). WebGPU is measured only on a hardware
 * adapter (a software rasteriser is far slower than the CPU), or when `BENCH_WEBGPU=1`.
 */
import * as lf from "../mod.ts";
import "../kernels/select.ts";
import { GPT2, GPT2_SIZES, gpt2Config } from "../models/gpt2.ts";
import type { Backend } from "../kernels/backend.ts";

const config = gpt2Config({ ...GPT2_SIZES["gpt2"], attnPdrop: 0, embdPdrop: 0, residPdrop: 0 });
const T = 64;
const ids = [Array.from({ length: T }, (_, i) => (i * 7919) % config.vocabSize)];

const backends: Backend[] = [lf.getBackend()];
const names = ["wasm"];
const { hardwareAdapterAvailable } = await import("../kernels/webgpu/device.ts");
if (Deno.env.get("BENCH_WEBGPU") === "1" || await hardwareAdapterAvailable().catch(() => false)) {
  names.push("webgpu");
} else {
  console.log("gpt2_bench: no hardware WebGPU adapter; skipping webgpu (BENCH_WEBGPU=1 forces it)");
}
for (const name of names) {
  try {
    backends.push(await lf.loadBackend(name));
  } catch (e) {
    console.log(`gpt2_bench: backend ${name} not available (${(e as Error).message})`);
  }
}

for (const be of backends) {
  const model = GPT2.random(config, 0, { backend: be }).eval();
  const slow = be.name === "cpu";
  Deno.bench(`gpt2-124M forward B=1 T=${T} (${be.name})`, {
    group: "forward",
    n: slow ? 1 : 5,
    warmup: slow ? 0 : 1,
  }, async () => {
    const { logits } = lf.noGrad(() => model.forward(ids));
    await logits.data();
    logits.dispose();
  });
  // A decoding step as beam search does it: 5 rows, 64 cached positions, one new token each.
  const beams = 5;
  const { past } = lf.noGrad(() => model.forward(Array(beams).fill(ids[0]), { useCache: true }));
  Deno.bench(`gpt2-124M cached decode step B=${beams} past=${T} (${be.name})`, {
    group: "decode",
    n: slow ? 2 : 10,
    warmup: slow ? 0 : 1,
  }, async () => {
    const out = lf.noGrad(() =>
      model.forward(Array(beams).fill([11]), { past, useCache: true, lastTokenOnly: true })
    );
    await out.logits.data();
    out.logits.dispose();
    for (const l of out.past!) {
      l.k.dispose();
      l.v.dispose();
    }
  });
}
