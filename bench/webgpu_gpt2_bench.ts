/**
 * One GPT-2 block (pre-LN attention + MLP, random weights, no dropout) on WebGPU: the forward
 * pass, and forward + backward (gradients for every weight of the block and the input), at
 * B=1, T=64, n_embd 768 / 12 heads (GPT-2 124M's block) by default. The WebAssembly backend
 * runs the same block in the same group for comparison.
 *
 * Run: `deno bench -A bench/webgpu_gpt2_bench.ts`. `BENCH_EMBD` / `BENCH_HEADS` /
 * `BENCH_T` change the shape (a software adapter such as lavapipe manages ~2 GFLOP/s, so a
 * forward at 768 takes about half a second there); `BENCH_WASM=0` leaves the WebAssembly
 * backend out. Each timed iteration waits for the GPU to finish (`sync`), so the figures are
 * wall time of the whole pass, with every kernel of it queued before the single wait.
 */
import * as lf from "../mod.ts";
import "../kernels/select.ts";
import type { Backend } from "../kernels/backend.ts";
import { Block } from "../nn/attention.ts";
import { Xoshiro128 } from "../autograd/random.ts";
import { adapterInfo } from "../kernels/webgpu/device.ts";
import type { WebGPUBackend } from "../kernels/webgpu/backend.ts";

const C = Number(Deno.env.get("BENCH_EMBD") ?? 768);
const H = Number(Deno.env.get("BENCH_HEADS") ?? 12);
const T = Number(Deno.env.get("BENCH_T") ?? 64);
const B = 1;
if (!(Number.isInteger(C / H) && T > 0)) {
  throw new Error(`webgpu_gpt2_bench: BENCH_EMBD ${C} must be divisible by BENCH_HEADS ${H}`);
}

/** Multiply-adds ×2 of the block's matrix products for one forward (for GFLOP/s). */
const FORWARD_FLOP = 2 * B * T * (3 * C * C + C * C + 8 * C * C) + 2 * 2 * B * T * T * C;

const info = await adapterInfo();
const backends: { be: Backend; wait: () => Promise<void> }[] = [];
if (info === null) {
  console.log("webgpu_gpt2_bench: no WebGPU adapter; measuring nothing on webgpu");
} else {
  const gpu = (await lf.loadBackend("webgpu")) as WebGPUBackend;
  console.log(
    `webgpu_gpt2_bench: adapter '${info.name}' (fallback: ${info.isFallbackAdapter}), ` +
      `block n_embd ${C}, ${H} heads, B=${B}, T=${T}, ` +
      `${(FORWARD_FLOP / 1e9).toFixed(3)} GFLOP per forward`,
  );
  backends.push({ be: gpu, wait: () => gpu.sync() });
}
if (Deno.env.get("BENCH_WASM") !== "0") {
  try {
    const wasm = await lf.loadBackend("wasm");
    backends.push({ be: wasm, wait: async () => {} });
  } catch (e) {
    console.log(`webgpu_gpt2_bench: wasm backend not available (${(e as Error).message})`);
  }
}

const config = {
  nEmbd: C,
  nHead: H,
  nInner: null,
  layerNormEpsilon: 1e-5,
  attnPdrop: 0,
  residPdrop: 0,
};

for (const { be, wait } of backends) {
  const block = new Block(config, { backend: be, generator: new Xoshiro128(1) });
  block.eval();
  const g = new Xoshiro128(2);
  const xData = Float32Array.from({ length: B * T * C }, () => g.normal());
  const x = lf.tensor(xData, { shape: [B, T, C], backend: be });
  const xg = lf.tensor(xData, { shape: [B, T, C], backend: be, requiresGrad: true });
  // The sum of out·w as loss: a fixed, non-uniform output gradient.
  const w = lf.tensor(Float32Array.from({ length: B * T * C }, () => g.normal()), {
    shape: [B, T, C],
    backend: be,
  });

  Deno.bench(`block forward n_embd ${C} T=${T} (${be.name})`, {
    group: "forward",
    baseline: be.name === "webgpu",
    n: 10,
    warmup: 2,
  }, async () => {
    const out = lf.noGrad(() => block.forward(x).out);
    await wait();
    out.dispose();
  });

  Deno.bench(`block forward+backward n_embd ${C} T=${T} (${be.name})`, {
    group: "forward+backward",
    baseline: be.name === "webgpu",
    n: 5,
    warmup: 1,
  }, async () => {
    lf.tidy(() => block.forward(xg).out.mul(w).sum().backward());
    await wait();
    block.zeroGrad();
    xg.zeroGrad();
  });

  if (be.name === "webgpu") {
    // The fused attention primitive alone at the block's shape (causal self-attention, T = S).
    const D = C / H;
    const ap = { batch: B, heads: H, queries: T, keys: T, dim: D, scale: 1 / Math.sqrt(D) };
    const [aq, ak, av, ag] = [0, 1, 2, 3].map(() =>
      be.fromHost(Float32Array.from({ length: B * H * T * D }, () => g.normal()), "f32")
    );
    Deno.bench(`fused attention forward+backward ${H}x${T}x${D} (${be.name})`, {
      group: "attention",
      n: 10,
      warmup: 2,
    }, async () => {
      const p = { ...ap, dropP: 0, dropSeed: 0 };
      const { out, lse } = be.attention(aq, ak, av, null, p);
      const r = be.attentionBackward(aq, ak, av, null, out, lse, ag, p);
      await wait();
      for (const s of [out, lse, r.gq, r.gk, r.gv]) be.dispose(s);
    });
  }
}
