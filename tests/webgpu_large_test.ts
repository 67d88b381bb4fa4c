// Tensors larger than one storage binding (bound as several windows of one buffer), f16 weight
// storage, and one real over-limit tensor of GPT-2's token-embedding size. Compared with the
// CPU reference backend; skipped with a message where there is no WebGPU adapter.
import assert from "node:assert/strict";
import {
  type AttentionParams,
  contiguousView,
  type Storage,
  type View,
} from "../kernels/backend.ts";
import { CpuBackend } from "../kernels/cpu/backend.ts";
import { adapterInfo } from "../kernels/webgpu/device.ts";
import { createWebGPUBackend, type WebGPUBackend } from "../kernels/webgpu/backend.ts";
import { assertClose, assertCloseScaled } from "./helpers/close.ts";

const info = await adapterInfo();
const ignore = info === null;
if (ignore) console.log("webgpu large-tensor tests skipped: no WebGPU adapter");
else {
  console.log(
    `webgpu large-tensor tests on '${info.name}' (fallback: ${info.isFallbackAdapter}, ` +
      `maxStorageBufferBindingSize ${info.limits.maxStorageBufferBindingSize})`,
  );
}
// 4 KiB windows: a 3300-element f32 tensor spans 4 bindings.
const WINDOW_BYTES = 4096;
const gpu: WebGPUBackend | null = ignore
  ? null
  : await createWebGPUBackend({ maxBindingBytes: WINDOW_BYTES });
const cpu = new CpuBackend();
const opts = { ignore, sanitizeOps: false, sanitizeResources: false };

function randArray(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  let a = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return lo + (hi - lo) * (((t ^ (t >>> 14)) >>> 0) / 4294967296);
  });
}

function both(be: WebGPUBackend, data: Float32Array | Int32Array, dtype: "f32" | "i32" = "f32") {
  return [be.fromHost(data, dtype), cpu.fromHost(data, dtype)] as const;
}

async function compare(g: Storage, c: Storage, what: string, rtol = 1e-5, atol = 1e-6) {
  assertClose(await gpu!.read(g), await cpu.read(c), what, rtol, atol);
  gpu!.dispose(g);
  cpu.dispose(c);
}

Deno.test(
  "webgpu ops on tensors spanning several binding windows match the CPU",
  opts,
  async () => {
    const be = gpu!;
    assert.equal(be.windowElems, WINDOW_BYTES / 4);
    const vocab = 100, cols = 33, n = 65;
    const table = randArray(vocab * cols, 1); // 3300 elements: 4 windows
    const ids = Int32Array.from({ length: n }, (_, i) => (i * 37 + 11) % vocab);
    const [gt, ct] = both(be, table), [gi, ci] = both(be, ids, "i32");

    await compare(be.gather(gt, gi, n, cols), cpu.gather(ct, ci, n, cols), "gather", 0, 0);
    // LM-head shape: x [n, cols] · tableᵀ → [n, vocab] (6500 outputs: written through 7 windows).
    const x = randArray(n * cols, 2);
    const [gx, cx] = both(be, x);
    const mp = {
      batch: 1,
      m: n,
      n: vocab,
      k: cols,
      transA: false,
      transB: true,
      aBatchStride: 0,
      bBatchStride: 0,
    };
    const gl = be.matmul(gx, gt, mp), cl0 = cpu.matmul(cx, ct, mp);
    const logits = await be.read(gl);
    assertClose(logits, await cpu.read(cl0), "matmul tB", 1e-5, 1e-5);
    // From here on both backends work on the same logits, so exact ops can be compared exactly.
    cpu.dispose(cl0);
    const cl = cpu.fromHost(logits, "f32");
    // Its backward: d table = dlogitsᵀ · x (transA) and d x = dlogits · table.
    const gd = randArray(n * vocab, 3);
    const [gg, cg] = both(be, gd);
    const pw = {
      batch: 1,
      m: vocab,
      n: cols,
      k: n,
      transA: true,
      transB: false,
      aBatchStride: 0,
      bBatchStride: 0,
    };
    await compare(be.matmul(gg, gx, pw), cpu.matmul(cg, cx, pw), "matmul tA", 1e-5, 1e-5);
    const px = {
      batch: 1,
      m: n,
      n: cols,
      k: vocab,
      transA: false,
      transB: false,
      aBatchStride: 0,
      bBatchStride: 0,
    };
    await compare(be.matmul(gg, gt, px), cpu.matmul(cg, ct, px), "matmul", 1e-5, 1e-5);

    // Row ops over [n, vocab] logits that span windows.
    const t = Int32Array.from({ length: n }, (_, i) => (i * 13) % vocab);
    t[3] = -100;
    const [gtg, ctg] = both(be, t, "i32");
    const gce = be.crossEntropy(gl, gtg, n, vocab, -100),
      cce = cpu.crossEntropy(cl, ctg, n, vocab, -100);
    assertClose(await be.read(gce.loss), await cpu.read(cce.loss), "CE loss", 1e-5, 1e-5);
    const ones = randArray(n, 4, 0.5, 1.5);
    const [go, co] = both(be, ones);
    await compare(
      be.crossEntropyBackward(gl, gtg, gce.lse, go, n, vocab, -100),
      cpu.crossEntropyBackward(cl, ctg, cce.lse, co, n, vocab, -100),
      "CE backward",
      2e-5,
      1e-6,
    );
    await compare(
      be.softmax(gl, n, vocab, true),
      cpu.softmax(cl, n, vocab, true),
      "logSoftmax",
      1e-5,
      1e-5,
    );
    await compare(
      be.reduce("sum", gl, 1, n * vocab, 1),
      cpu.reduce("sum", cl, 1, n * vocab, 1),
      "sum",
      1e-4,
      1e-3,
    );
    await compare(
      be.reduce("max", gl, n, vocab, 1),
      cpu.reduce("max", cl, n, vocab, 1),
      "row max",
      0,
      0,
    );
    const ga = be.argmax(gl, 1, n, vocab), ca = cpu.argmax(cl, 1, n, vocab);
    assert.deepEqual(await be.read(ga), await cpu.read(ca), "argmax");
    // Elementwise through a transposed view of the big tensor, and a strided copy into it.
    const tv: View = { shape: [vocab, n], strides: [1, vocab], offset: 0 };
    await compare(
      be.unary("gelu", gl, tv),
      cpu.unary("gelu", cl, tv),
      "gelu transposed",
      1e-5,
      1e-6,
    );
    await compare(
      be.binary("mul", gl, contiguousView([n, vocab]), gl, contiguousView([n, vocab])),
      cpu.binary("mul", cl, contiguousView([n, vocab]), cl, contiguousView([n, vocab])),
      "mul",
      0,
      0,
    );
    const sv: View = { shape: [n, cols], strides: [cols, 1], offset: 0 };
    const dv: View = { shape: [n, cols], strides: [vocab, 1], offset: 50 };
    be.copy(gx, sv, gl, dv);
    cpu.copy(cx, sv, cl, dv);
    assertClose(await be.read(gl), await cpu.read(cl), "copy into windows", 0, 0);

    // scatterAdd into the [vocab, cols] table shape, layer norm over it, and adamw in place.
    const gx2 = randArray(n * cols, 5);
    const [gs, cs] = both(be, gx2);
    await compare(
      be.scatterAdd(gs, gi, n, cols, vocab),
      cpu.scatterAdd(cs, ci, n, cols, vocab),
      "scatterAdd",
      0,
      0,
    );
    const [gw, cw] = both(be, randArray(cols, 6, 0.5, 1.5)),
      [gb, cb] = both(be, randArray(cols, 7));
    const gln = be.layerNorm(gt, gw, gb, vocab, cols, 1e-5),
      cln = cpu.layerNorm(ct, cw, cb, vocab, cols, 1e-5);
    assertClose(await be.read(gln.y), await cpu.read(cln.y), "layerNorm", 1e-4, 1e-5);
    const hp = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1, step: 1 };
    const [gm, cm] = both(be, new Float32Array(vocab * cols)),
      [gv, cv] = both(be, new Float32Array(vocab * cols));
    const grad = randArray(vocab * cols, 8);
    const [ggr, cgr] = both(be, grad);
    be.adamw(gt, ggr, gm, gv, hp);
    cpu.adamw(ct, cgr, cm, cv, hp);
    assertClose(await be.read(gt), await cpu.read(ct), "adamw in place", 1e-5, 1e-6);
    const dm = be.dropoutMask(5000, 0.25, 9), cdm = cpu.dropoutMask(5000, 0.25, 9);
    assert.deepEqual(await be.read(dm), await cpu.read(cdm), "dropoutMask");

    for (
      const s of [
        gt,
        gi,
        gx,
        gl,
        gg,
        gtg,
        gce.loss,
        gce.lse,
        go,
        ga,
        gs,
        gw,
        gb,
        gln.y,
        gln.mean,
        gln.rstd,
        gm,
        gv,
        ggr,
        dm,
      ]
    ) {
      be.dispose(s);
    }
    assert.equal(be.liveCount(), 0);
  },
);

Deno.test("webgpu attention on tensors spanning several binding windows", opts, async () => {
  // 2 KiB windows: q is 576 f32 (2 windows of 512), k and v 2560 (5 windows).
  const be = await createWebGPUBackend({ maxBindingBytes: 2048 });
  try {
    const B = 2, H = 2, T = 9, S = 40, D = 16;
    assert.ok(B * H * S * D > 4 * be.windowElems);
    const p: AttentionParams = {
      batch: B,
      heads: H,
      queries: T,
      keys: S,
      dim: D,
      scale: 0.25,
      dropP: 0.2,
      dropSeed: 77,
    };
    const host = [T, S, S, T].map((r, i) => randArray(B * H * r * D, 70 + i, -2, 2));
    const mask = Float32Array.from({ length: B * S }, (_, i) => (i < 35 ? 0 : 1));
    const run = async (b: typeof cpu | WebGPUBackend) => {
      const [q, k, v, g] = host.map((h) => b.fromHost(h, "f32"));
      const m = b.fromHost(mask, "f32");
      const { out, lse } = b.attention(q, k, v, m, p);
      const { gq, gk, gv } = b.attentionBackward(q, k, v, m, out, lse, g, p);
      const res = [];
      for (const s of [out, lse, gq, gk, gv]) res.push(await b.read(s));
      for (const s of [q, k, v, g, m, out, lse, gq, gk, gv]) b.dispose(s);
      return res;
    };
    const want = await run(cpu), got = await run(be);
    ["out", "lse", "gq", "gk", "gv"].forEach((name, i) =>
      assertCloseScaled(got[i], want[i], `windowed attention ${name}`, {
        atolScale: 1e-5,
        atol: 1e-30,
        exactBelow: -1e38,
      })
    );
    assert.equal(be.liveCount(), 0);
  } finally {
    be.destroy();
  }
});

Deno.test(
  "webgpu names the op when a tensor needs more bindings than the device has",
  opts,
  async () => {
    const be = await createWebGPUBackend({ maxBindingBytes: 64 });
    try {
      const a = be.fromHost(new Float32Array(16 * 40), "f32"); // 40 windows of 16 elements
      assert.throws(
        () => be.unary("exp", a, contiguousView([640])),
        /webgpu exp: needs \d+ storage bindings/,
      );
    } finally {
      be.destroy();
    }
  },
);

const f16 = !ignore && info!.features.includes("shader-f16");
Deno.test(
  "webgpu f16 weights are read as f32 by gather and matmul (over several windows)",
  { ...opts, ignore: !f16 },
  async () => {
    const be = await createWebGPUBackend({ f16Weights: true, maxBindingBytes: WINDOW_BYTES });
    try {
      const vocab = 100, cols = 65, n = 33; // 6500 halves: 4 windows of 2048
      const table = randArray(vocab * cols, 21, -4, 4);
      const rounded = new Float32Array(new Float16Array(table)); // what f16 storage keeps
      const gt = be.fromHostF16(table), ct = cpu.fromHost(rounded, "f32");
      const ids = Int32Array.from({ length: n }, (_, i) => (i * 31) % vocab);
      const gi = be.fromHost(ids, "i32"), ci = cpu.fromHost(ids, "i32");
      assertClose(
        await be.read(be.gather(gt, gi, n, cols)),
        await cpu.read(cpu.gather(ct, ci, n, cols)),
        "f16 gather",
        0,
        0,
      );
      const x = randArray(n * cols, 22);
      const gx = be.fromHost(x, "f32"), cx = cpu.fromHost(x, "f32");
      const mp = {
        batch: 1,
        m: n,
        n: vocab,
        k: cols,
        transA: false,
        transB: true,
        aBatchStride: 0,
        bBatchStride: 0,
      };
      assertClose(
        await be.read(be.matmul(gx, gt, mp)),
        await cpu.read(cpu.matmul(cx, ct, mp)),
        "f16 matmul",
        1e-5,
        1e-5,
      );
      assert.deepEqual(await be.read(gt), rounded, "reading an f16 buffer gives its f32 values");
      assert.throws(
        () => be.copy(gx, contiguousView([10]), gt, contiguousView([10])),
        /read-only f16/,
      );
    } finally {
      be.destroy();
    }
  },
);

// GPT-2's token embedding / LM head: 50257 × 768 f32 = 154 MB, over lavapipe's 128 MiB binding.
const VOCAB = 50257, D = 768;
const overLimit = !ignore && VOCAB * D * 4 > info!.limits.maxStorageBufferBindingSize;
Deno.test(
  "webgpu gathers from and multiplies by a real 154 MB embedding over the binding limit",
  { ...opts, ignore: !overLimit },
  async () => {
    const be = await createWebGPUBackend();
    try {
      const wte = randArray(VOCAB * D, 31, -0.1, 0.1);
      const gw = be.fromHost(wte, "f32");
      const ids = new Int32Array([0, 1, 40000, 50256]);
      const gi = be.fromHost(ids, "i32");
      const rows = await be.read(be.gather(gw, gi, ids.length, D));
      for (let i = 0; i < ids.length; i++) {
        assert.deepEqual(
          rows.subarray(i * D, (i + 1) * D),
          wte.subarray(ids[i] * D, ids[i] * D + D),
          `row ${ids[i]}`,
        );
      }
      // Logits of 2 positions against every token: h · wteᵀ, checked on a strided sample.
      const h = randArray(2 * D, 32);
      const gh = be.fromHost(h, "f32");
      const mp = {
        batch: 1,
        m: 2,
        n: VOCAB,
        k: D,
        transA: false,
        transB: true,
        aBatchStride: 0,
        bBatchStride: 0,
      };
      const logits = await be.read(be.matmul(gh, gw, mp));
      for (let r = 0; r < 2; r++) {
        for (let v = 0; v < VOCAB; v += 997) {
          let s = 0;
          for (let k = 0; k < D; k++) s += h[r * D + k] * wte[v * D + k];
          const got = logits[r * VOCAB + v];
          assert.ok(
            Math.abs(got - s) <= 1e-5 + 1e-5 * Math.abs(s),
            `logit [${r}, ${v}] is ${got}, expected ${s}`,
          );
        }
        const last = logits[r * VOCAB + VOCAB - 1];
        let s = 0;
        for (let k = 0; k < D; k++) s += h[r * D + k] * wte[(VOCAB - 1) * D + k];
        assert.ok(Math.abs(last - s) <= 1e-5 + 1e-5 * Math.abs(s), `last logit ${last} vs ${s}`);
      }
    } finally {
      be.destroy();
    }
  },
);

Deno.test("webgpu reports allocations over maxBufferSize and use after destroy", opts, async () => {
  const be = await createWebGPUBackend();
  const tooBig = Math.floor(info!.limits.maxBufferSize / 4) + 1;
  assert.throws(
    () => be.full(tooBig, 0, "f32"),
    /full \(\d+ f32\) needs \d+ bytes, over the device's maxBufferSize/,
  );
  be.destroy();
  await new Promise((r) => setTimeout(r, 20)); // device.lost resolves asynchronously
  assert.throws(() => be.full(4, 0, "f32"), /device was destroyed or lost/);
});
