/**
 * The wasm backend with buffers at addresses above 4 GiB (64-bit memory) and above 2 GiB
 * (32-bit memory, where an address no longer fits a signed 32-bit integer), against the CPU
 * reference backend: host round trips, one buffer straddling the 4 GiB boundary, every primitive
 * (cross-entropy, gather and scatter included), on one and two threads, and a GPT-2 training
 * step (loss, every gradient, the AdamW update).
 *
 * The backends leave the address space below their first buffer unused (`reserveBytes`), so the
 * memory is large but almost none of it is ever written: the process stays near 100 MB.
 * Skipped, with the reason, where the runtime has no 64-bit memory or cannot reserve ~4.2 GiB
 * of address space.
 */
import assert from "node:assert/strict";
import * as lf from "../mod.ts";
import {
  type Backend,
  contiguousView,
  type Storage,
  type UnaryOp,
  type View,
} from "../kernels/backend.ts";
import { CpuBackend } from "../kernels/cpu/backend.ts";
import { detectFeatures } from "../kernels/wasm/builder.ts";
import { createWasmBackend, type WasmBackend, type WasmStorage } from "../kernels/wasm/backend.ts";
import { GPT2, gpt2Config } from "../models/gpt2.ts";
import { AdamW } from "../nn/optim.ts";
import { assertClose } from "./helpers/close.ts";

const GiB = 2 ** 30;
const cpu = new CpuBackend();

/** A backend variant: how it is made, and the address its buffers must lie above. */
interface Variant {
  label: string;
  memory64: boolean;
  threads: number;
  /** Address space left unused below the first buffer. */
  reserve: number;
  /** Every buffer after the first (the straddling one) lies at or above this address. */
  above: number;
}

const VARIANTS: Variant[] = [
  // 16 MiB below 4 GiB: the first buffer of the test straddles the boundary.
  {
    label: "wasm64×1",
    memory64: true,
    threads: 1,
    reserve: 4 * GiB - 16 * 2 ** 20,
    above: 4 * GiB,
  },
  {
    label: "wasm64×2",
    memory64: true,
    threads: 2,
    reserve: 4 * GiB - 16 * 2 ** 20,
    above: 4 * GiB,
  },
  // 32-bit memory, above 2 GiB: addresses are negative as signed 32-bit integers.
  {
    label: "wasm32×2",
    memory64: false,
    threads: 2,
    reserve: 2 * GiB - 16 * 2 ** 20,
    above: 2 * GiB,
  },
];

/** Why the tests cannot run here, or null. */
async function skipReason(): Promise<string | null> {
  if (!detectFeatures().memory64) return "this runtime has no WebAssembly memory64";
  try {
    const b = await createWasmBackend({ threads: 1, reserveBytes: 4 * GiB + GiB / 8 });
    b.dispose(b.full(4, 0, "f32"));
    b.close();
  } catch (e) {
    return `cannot reserve 4.2 GiB of WebAssembly memory here (${(e as Error).message})`;
  }
  return null;
}
const skip = await skipReason();
if (skip) console.log(`wasm high-memory tests skipped: ${skip}`);

const backends = new Map<string, WasmBackend>();
/**
 * Buffers that hold the space below each boundary for the later tests of the file. Referenced
 * here, not only by a test's locals: the backend frees unreachable buffers from a finalizer, and
 * a collected straddling buffer would let later allocations land below the boundary.
 */
const held: unknown[] = [];

async function backendOf(v: Variant): Promise<WasmBackend> {
  let b = backends.get(v.label);
  if (!b) {
    b = await createWasmBackend({
      memory64: v.memory64,
      threads: v.threads,
      reserveBytes: v.reserve,
    });
    backends.set(v.label, b);
  }
  return b;
}

let seed = 20260412;
function rand(): number {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const randn = (n: number, lo = -2, hi = 2) =>
  Float32Array.from({ length: n }, () => lo + (hi - lo) * rand());
const randInt = (n: number, hi: number) =>
  Int32Array.from({ length: n }, () => Math.floor(rand() * hi));

const ptrOf = (s: Storage) => (s as WasmStorage).ptr;

/** One computation run on the CPU and on the high-memory backend with the same inputs. */
interface Case {
  name: string;
  inputs: (Float32Array | Int32Array)[];
  run: (b: Backend, xs: Storage[]) => Storage[];
  rtol?: number;
  atol?: number;
}

const view = (shape: number[], strides: number[], offset = 0): View => ({ shape, strides, offset });
const LONG = 300_001; // long enough for two threads to split cheap elementwise work

function cases(): Case[] {
  const attn = {
    batch: 2,
    heads: 3,
    queries: 5,
    keys: 7,
    dim: 9,
    scale: 1 / 3,
    dropP: 0,
    dropSeed: 0,
  };
  const qkvLen = [2 * 3 * 5 * 9, 2 * 3 * 7 * 9, 2 * 3 * 7 * 9];
  const unary: UnaryOp[] = ["exp", "gelu", "tanh", "neg"];
  return [
    {
      name: "full",
      inputs: [],
      run: (b) => [b.full(4, 7, "f32"), b.full(LONG, -3, "f32"), b.full(5, 9, "i32")],
    },
    {
      name: "fromHost → read (f32, i32)",
      inputs: [randn(LONG), randInt(1001, 1 << 30)],
      run: (_b, xs) => xs,
    },
    ...unary.map((op): Case => ({
      name: `unary ${op} (contiguous, long)`,
      inputs: [randn(LONG)],
      run: (b, [x]) => [b.unary(op, x, contiguousView([LONG]))],
    })),
    {
      name: "unary on a transposed view",
      inputs: [randn(37 * 41)],
      run: (b, [x]) => [b.unary("exp", x, view([41, 37], [1, 41]))],
    },
    {
      name: "binary with broadcast and a long row",
      inputs: [randn(LONG), randn(LONG), randn(301)],
      run: (b, [x, y, r]) => [
        b.binary("add", x, contiguousView([LONG]), y, contiguousView([LONG])),
        b.binary("mul", x, view([996, 301], [301, 1]), r, view([996, 301], [0, 1])),
      ],
    },
    {
      name: "where, copy, cast",
      inputs: [randInt(513, 2), randn(513), randn(513), randn(33 * 17, -100, 100)],
      run: (b, [c, x, y, z]) => {
        const out = b.full(33 * 17, 0, "f32");
        b.copy(z, view([17, 33], [1, 17]), out, contiguousView([17, 33]));
        const v = contiguousView([513]);
        return [b.where(c, v, x, v, y, v), out, b.cast(z, "i32"), b.cast(c, "f32")];
      },
    },
    {
      name: "reduce rows and columns, argmax",
      inputs: [randn(129 * 2051)],
      run: (b, [x]) => [
        b.reduce("sum", x, 129, 2051, 1),
        b.reduce("max", x, 1, 129, 2051),
        b.argmax(x, 129, 2051, 1),
      ],
      rtol: 1e-4,
      atol: 1e-4,
    },
    {
      name: "matmul (packed, batched, transposed, vector)",
      inputs: [randn(2 * 67 * 131), randn(2 * 131 * 59), randn(131)],
      run: (b, [a, w, v]) => [
        b.matmul(a, w, {
          batch: 2,
          m: 67,
          n: 59,
          k: 131,
          transA: false,
          transB: false,
          aBatchStride: 67 * 131,
          bBatchStride: 131 * 59,
        }),
        b.matmul(w, a, {
          batch: 1,
          m: 59,
          n: 67,
          k: 131,
          transA: true,
          transB: true,
          aBatchStride: 0,
          bBatchStride: 0,
        }),
        b.matmul(v, w, {
          batch: 1,
          m: 1,
          n: 59,
          k: 131,
          transA: false,
          transB: false,
          aBatchStride: 0,
          bBatchStride: 0,
        }),
      ],
      rtol: 1e-4,
      atol: 1e-4,
    },
    {
      name: "softmax and log-softmax, forward and backward",
      inputs: [randn(67 * 301, -5, 5), randn(67 * 301)],
      run: (b, [x, g]) => {
        const y = b.softmax(x, 67, 301, false), ly = b.softmax(x, 67, 301, true);
        return [
          y,
          ly,
          b.softmaxBackward(y, g, 67, 301, false),
          b.softmaxBackward(ly, g, 67, 301, true),
        ];
      },
      rtol: 1e-4,
      atol: 1e-6,
    },
    {
      name: "layer norm, forward and backward",
      inputs: [randn(67 * 129), randn(129), randn(129), randn(67 * 129)],
      run: (b, [x, w, bias, g]) => {
        const { y, mean, rstd } = b.layerNorm(x, w, bias, 67, 129, 1e-5);
        const { gx, gw, gb } = b.layerNormBackward(x, w, mean, rstd, g, 67, 129);
        return [y, mean, rstd, gx, gw, gb];
      },
      rtol: 1e-4,
      atol: 1e-5,
    },
    {
      name: "cross-entropy with ignored rows, forward and backward",
      inputs: [
        randn(61 * 1031, -4, 4),
        Int32Array.from({ length: 61 }, (_, i) => (i % 7 === 3 ? -100 : (i * 97) % 1031)),
        randn(61),
      ],
      run: (b, [logits, t, g]) => {
        const { loss, lse } = b.crossEntropy(logits, t, 61, 1031, -100);
        return [loss, lse, b.crossEntropyBackward(logits, t, lse, g, 61, 1031, -100)];
      },
      rtol: 1e-5,
      atol: 1e-6,
    },
    {
      name: "gather and scatter-add",
      inputs: [randn(1031 * 68), randInt(4001, 1031), randn(4001 * 68)],
      run: (b, [table, ids, g]) => [
        b.gather(table, ids, 4001, 68),
        b.scatterAdd(g, ids, 4001, 68, 1031),
      ],
      rtol: 1e-5,
      atol: 1e-5,
    },
    {
      name: "attention with a padding mask, forward and backward",
      inputs: [
        ...qkvLen.map((n) => randn(n)),
        Float32Array.from([1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1]),
        randn(qkvLen[0]),
      ],
      run: (b, [q, k, v, m, g]) => {
        const { out, lse } = b.attention(q, k, v, m, attn);
        const { gq, gk, gv } = b.attentionBackward(q, k, v, m, out, lse, g, attn);
        return [out, lse, gq, gk, gv];
      },
      rtol: 1e-4,
      atol: 1e-5,
    },
    {
      name: "dropout mask and AdamW (in place)",
      inputs: [randn(LONG), randn(LONG), randn(LONG, 0, 0.1), randn(LONG, 0, 0.1)],
      run: (b, [p, g, m, v]) => {
        b.adamw(p, g, m, v, {
          lr: 1e-3,
          beta1: 0.9,
          beta2: 0.999,
          eps: 1e-8,
          weightDecay: 0.01,
          step: 3,
        });
        return [p, m, v, b.dropoutMask(LONG, 0.25, 77)];
      },
    },
  ];
}

for (const v of VARIANTS) {
  Deno.test({
    name: `${v.label} above ${v.above / GiB} GiB: a buffer straddling the boundary round-trips`,
    ignore: skip !== null,
    fn: async () => {
      const b = await backendOf(v);
      const probe = b.full(4, 0, "f32");
      const p0 = ptrOf(probe); // kept: freed, its block below the boundary would be reused
      assert.ok(p0 < v.above, `${v.label}: first buffer at ${p0}, expected below ${v.above}`);
      const n = Math.ceil((v.above - p0) / 4) + 4099;
      const data = randn(n);
      const s = b.fromHost(data, "f32");
      const p = ptrOf(s);
      assert.ok(p < v.above && p + 4 * n > v.above, `buffer [${p}, ${p + 4 * n}) straddles`);
      assertClose(await b.read(s), data, `${v.label}: straddling buffer read back`, 0, 0);
      assertClose(b.readSync(s), data, `${v.label}: straddling buffer readSync`, 0, 0);
      const want = cpu.unary("exp", cpu.fromHost(data, "f32"), contiguousView([n]));
      const got = b.unary("exp", s, contiguousView([n]));
      assert.ok(ptrOf(got) >= v.above, "the next buffer lies above the boundary");
      assertClose(await b.read(got), await cpu.read(want), `${v.label}: exp of straddling`);
      const sum = b.reduce("sum", s, 1, n, 1);
      assertClose(
        await b.read(sum),
        await cpu.read(cpu.reduce("sum", cpu.fromHost(data, "f32"), 1, n, 1)),
        `${v.label}: sum of straddling`,
        1e-4,
        1e-3,
      );
      // Kept alive on purpose: it holds the boundary, so later tests allocate above it.
      held.push(probe, s);
      b.dispose(got);
      b.dispose(sum);
    },
  });

  Deno.test({
    name: `${v.label} above ${v.above / GiB} GiB: every primitive matches the CPU`,
    ignore: skip !== null,
    fn: async () => {
      const b = await backendOf(v);
      // Make sure the boundary is below the heap top even when run alone.
      const hold = b.fromHost(new Float32Array(Math.ceil(16 * 2 ** 20 / 4) + 4096), "f32");
      for (const c of cases()) {
        const xc = c.inputs.map((x) => cpu.fromHost(x, x instanceof Int32Array ? "i32" : "f32"));
        const xw = c.inputs.map((x) => b.fromHost(x, x instanceof Int32Array ? "i32" : "f32"));
        for (const s of xw) assert.ok(ptrOf(s) >= v.above, `${c.name}: input at ${ptrOf(s)}`);
        const want = c.run(cpu, xc);
        const got = c.run(b, xw);
        for (let i = 0; i < want.length; i++) {
          assert.ok(ptrOf(got[i]) >= v.above, `${c.name}: output ${i} at ${ptrOf(got[i])}`);
          assertClose(
            await b.read(got[i]),
            await cpu.read(want[i]),
            `${v.label} ${c.name}: output ${i}`,
            c.rtol ?? 1e-5,
            c.atol ?? 1e-6,
          );
        }
      }
      b.dispose(hold);
    },
  });
}

Deno.test({
  name: "wasm64×2 above 4 GiB: a GPT-2 training step matches the CPU (loss, gradients, AdamW)",
  ignore: skip !== null,
  fn: async () => {
    const b = await backendOf(VARIANTS[1]);
    const hold = b.fromHost(new Float32Array(Math.ceil(16 * 2 ** 20 / 4) + 4096), "f32");
    const cfg = gpt2Config({
      vocabSize: 97,
      nPositions: 16,
      nEmbd: 32,
      nHead: 4,
      nLayer: 2,
      embdPdrop: 0.1,
      attnPdrop: 0.1,
      residPdrop: 0.1,
    });
    const ids = [[3, 14, 15, 92, 65, 35, 89, 79], [32, 38, 46, 26, 43, 38, 32, 79]];
    const targets = ids.flatMap((r) => [...r.slice(1), -100]);
    const step = async (be: Backend) => {
      const model = GPT2.random(cfg, 3, { backend: be }).train();
      // eps well above the gradients' rounding noise: Adam's first step is lr·g/(|g| + eps), so
      // with eps 1e-8 a gradient of 1e-9 (noise) would move its weight by almost lr.
      const opt = new AdamW(model.parameters(), { lr: 1e-2, weightDecay: 0.01, eps: 1e-3 });
      lf.manualSeed(5);
      const loss = lf.tidy(() => {
        const { logits } = model.forward(ids);
        const l = logits.reshape(16, cfg.vocabSize).crossEntropy(lf.ids(targets, { backend: be }));
        l.backward();
        return l;
      });
      const value = await loss.item();
      const grads: Float32Array[] = [];
      for (const p of model.parameters()) grads.push((await p.grad!.data()) as Float32Array);
      opt.step();
      const params: Float32Array[] = [];
      for (const p of model.parameters()) params.push((await p.data()) as Float32Array);
      if (be === b) {
        for (const p of model.parameters()) {
          assert.ok(ptrOf(p.storage) >= 4 * GiB, `parameter at ${ptrOf(p.storage)}`);
        }
      }
      loss.dispose();
      model.dispose();
      return { value, grads, params };
    };
    const w = await step(b);
    const c = await step(cpu);
    assert.ok(Number.isFinite(c.value) && c.value > 0, `CPU loss ${c.value}`);
    assertClose([w.value], [c.value], "loss", 1e-5, 0);
    c.grads.forEach((g, i) => assertClose(w.grads[i], g, `gradient ${i}`, 1e-3, 1e-5));
    c.params.forEach((p, i) => assertClose(w.params[i], p, `updated parameter ${i}`, 1e-4, 1e-5));
    b.dispose(hold);
  },
});

globalThis.addEventListener("unload", () => {
  for (const b of backends.values()) b.close();
});
