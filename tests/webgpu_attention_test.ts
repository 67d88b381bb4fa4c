// Fused causal attention on WebGPU (kernels/webgpu/attention.ts) against the CPU reference
// backend: out, lse and all three gradients on random inputs, over odd sizes, past keys, key
// chunks (> 64 keys), head sizes over 64, padding that leaves rows with nothing visible,
// dropout, and tensors bound as several windows; plus bitwise determinism of the backward.
// Skipped with a message where there is no WebGPU adapter.
import assert from "node:assert/strict";
import type { AttentionParams, Backend, Storage } from "../kernels/backend.ts";
import { CpuBackend } from "../kernels/cpu/backend.ts";
import { adapterInfo } from "../kernels/webgpu/device.ts";
import { createWebGPUBackend, type WebGPUBackend } from "../kernels/webgpu/backend.ts";
import { assertCloseScaled } from "./helpers/close.ts";

const info = await adapterInfo();
const ignore = info === null;
if (ignore) {
  console.log("webgpu attention tests skipped: no WebGPU adapter (install mesa-vulkan-drivers)");
} else {
  console.log(
    `webgpu attention tests on adapter '${info.name}' (fallback: ${info.isFallbackAdapter})`,
  );
}
const gpu: WebGPUBackend | null = ignore ? null : await createWebGPUBackend();
// 2 KiB windows: the tensors of the "windowed" case span several bindings each.
const gpuWindowed: WebGPUBackend | null = ignore
  ? null
  : await createWebGPUBackend({ maxBindingBytes: 2048 });
const cpu = new CpuBackend();
// WebGPU keeps promises (device.lost, error scopes) that outlive a test by design.
const opts = { ignore, sanitizeOps: false, sanitizeResources: false };

/** Deterministic uniform numbers in [lo, hi) (mulberry32). */
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

interface Case {
  name: string;
  B: number;
  H: number;
  T: number;
  S: number;
  D: number;
  /** Padding mask rows [B][S]. */
  mask?: number[][];
  /** Dropout probability. */
  p?: number;
}

const CASES: Case[] = [
  { name: "T = S = d = 1", B: 1, H: 1, T: 1, S: 1, D: 1 },
  { name: "7 × 7, d 33, 3 heads", B: 2, H: 3, T: 7, S: 7, D: 33 },
  { name: "past keys: T 7, S 33, d 65 (2 columns per invocation)", B: 1, H: 2, T: 7, S: 33, D: 65 },
  { name: "65 × 65 (two key and query chunks), d 7", B: 1, H: 1, T: 65, S: 65, D: 7 },
  { name: "65 heads", B: 1, H: 65, T: 2, S: 4, D: 3 },
  {
    name: "padding: fully masked rows, dropout 0.25",
    B: 2,
    H: 2,
    T: 5,
    S: 9,
    D: 16,
    // Batch 0: queries 0 and 1 see keys ≤ 4 and ≤ 5, all padded: nothing visible.
    mask: [[0, 0, 0, 0, 0, 0, 1, 1, 1], [1, 1, 0, 1, 1, 1, 1, 1, 1]],
    p: 0.25,
  },
  { name: "dropout 0.5, 130 keys (3 chunks)", B: 1, H: 2, T: 3, S: 130, D: 16, p: 0.5 },
  { name: "S 2048 (past keys), d 64", B: 1, H: 1, T: 2, S: 2048, D: 64 },
  {
    name: "d 256, mask, dropout 0.1",
    B: 1,
    H: 1,
    T: 3,
    S: 5,
    D: 256,
    mask: [[1, 1, 1, 1, 0]],
    p: 0.1,
  },
  // With 32 KiB of workgroup memory (lavapipe) these take 2 and 1 rows per workgroup.
  { name: "d 1024", B: 1, H: 1, T: 3, S: 5, D: 1024, p: 0.2 },
  { name: "d 2048", B: 1, H: 1, T: 2, S: 3, D: 2048, mask: [[1, 0, 1]] },
  {
    name: "everything masked, dropout 0.3",
    B: 1,
    H: 2,
    T: 2,
    S: 3,
    D: 5,
    mask: [[0, 0, 0]],
    p: 0.3,
  },
];

function paramsOf(c: Case, seed: number): AttentionParams {
  return {
    batch: c.B,
    heads: c.H,
    queries: c.T,
    keys: c.S,
    dim: c.D,
    scale: 1 / Math.sqrt(c.D),
    dropP: c.p ?? 0,
    dropSeed: seed * 7919 + 13,
  };
}

/** Forward and backward of one case on one backend; returns the host results. */
async function run(
  be: Backend,
  c: Case,
  host: { q: Float32Array; k: Float32Array; v: Float32Array; g: Float32Array },
  p: AttentionParams,
): Promise<Record<"out" | "lse" | "gq" | "gk" | "gv", Float32Array>> {
  const up = (a: Float32Array) => be.fromHost(a, "f32");
  const q = up(host.q), k = up(host.k), v = up(host.v), g = up(host.g);
  const mask = c.mask ? up(Float32Array.from(c.mask.flat())) : null;
  const { out, lse } = be.attention(q, k, v, mask, p);
  const { gq, gk, gv } = be.attentionBackward(q, k, v, mask, out, lse, g, p);
  const all: Storage[] = [out, lse, gq, gk, gv];
  const [o, l, a, b, d] = await Promise.all(all.map((s) => be.read(s)));
  for (const s of [...all, q, k, v, g, ...(mask ? [mask] : [])]) be.dispose(s);
  return {
    out: o as Float32Array,
    lse: l as Float32Array,
    gq: a as Float32Array,
    gk: b as Float32Array,
    gv: d as Float32Array,
  };
}

function inputs(c: Case, seed: number) {
  return {
    q: randArray(c.B * c.H * c.T * c.D, seed, -2, 2),
    k: randArray(c.B * c.H * c.S * c.D, seed + 1, -2, 2),
    v: randArray(c.B * c.H * c.S * c.D, seed + 2),
    g: randArray(c.B * c.H * c.T * c.D, seed + 3),
  };
}

async function checkCase(be: WebGPUBackend, c: Case, seed: number): Promise<void> {
  const host = inputs(c, seed), p = paramsOf(c, seed);
  const live = be.liveCount();
  const want = await run(cpu, c, host, p);
  const got = await run(be, c, host, p);
  for (const key of ["out", "lse", "gq", "gk", "gv"] as const) {
    assertCloseScaled(got[key], want[key], `${c.name}: ${key}`, {
      atolScale: 1e-5,
      atol: 1e-30,
      exactBelow: -1e38,
    });
  }
  assert.equal(be.liveCount(), live, `${c.name}: leaked storages`);
}

Deno.test("webgpu attention: forward and gradients equal the CPU reference", opts, async () => {
  let seed = 1;
  for (const c of CASES) await checkCase(gpu!, c, seed++ * 10);
});

Deno.test("webgpu attention: tensors spanning several binding windows", opts, async () => {
  const c: Case = {
    name: "windowed",
    B: 2,
    H: 2,
    T: 9,
    S: 40,
    D: 16,
    mask: [Array.from({ length: 40 }, (_, j) => (j < 35 ? 0 : 1)), new Array(40).fill(1)],
    p: 0.2,
  };
  // q is 576 f32 (2 windows of 512), k and v 2560 (5 windows).
  assert.ok(c.B * c.H * c.S * c.D > 4 * gpuWindowed!.windowElems);
  await checkCase(gpuWindowed!, c, 77);
});

Deno.test("webgpu attention: the backward is deterministic (bitwise)", opts, async () => {
  const c = CASES.find((c) => c.name.startsWith("dropout 0.5"))!;
  const host = inputs(c, 5), p = paramsOf(c, 5);
  const a = await run(gpu!, c, host, p), b = await run(gpu!, c, host, p);
  for (const key of ["out", "lse", "gq", "gk", "gv"] as const) {
    assert.deepEqual(a[key], b[key], `${key} differs between two runs`);
  }
});

Deno.test("webgpu attention: argument errors", opts, () => {
  const be = gpu!;
  const p: AttentionParams = {
    batch: 1,
    heads: 1,
    queries: 2,
    keys: 3,
    dim: 4,
    scale: 0.5,
    dropP: 0,
    dropSeed: 0,
  };
  const q = be.fromHost(new Float32Array(8), "f32"), k = be.fromHost(new Float32Array(11), "f32");
  const m = be.fromHost(new Float32Array(1), "f32");
  assert.throws(() => be.attention(q, k, k, null, p), /k \[1, 1, 3, 4\] has 11 elements, needs 12/);
  assert.throws(
    () => be.attention(q, q, q, m, { ...p, keys: 2 }),
    /mask \[1, 2\] has 1 elements, needs 2/,
  );
  assert.throws(() => be.attention(q, q, q, null, { ...p, dim: 1.5 }), /dim must be/);
  assert.throws(
    () => be.attention(q, q, q, null, { ...p, keys: 1 }),
    /webgpu attention: needs keys S ≥ queries T, got S 1, T 2/,
  );
  for (const s of [q, k, m]) be.dispose(s);
});
