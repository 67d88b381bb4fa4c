// What only the WebGPU backend does (its parity with the reference on every primitive is in
// backend_conformance_test.ts): out-of-range ids give zero rows and NaN losses instead of errors,
// scatter-add sums in the reference's order (bit-identical), the buffer pool stops growing,
// queued work keeps a freed buffer's old contents, and an overlapping copy reads its source
// first. Skipped with a message where there is no WebGPU adapter.
import assert from "node:assert/strict";
import { contiguousView, type View } from "../kernels/backend.ts";
import { CpuBackend } from "../kernels/cpu/backend.ts";
import { adapterInfo } from "../kernels/webgpu/device.ts";
import { createWebGPUBackend, type WebGPUBackend } from "../kernels/webgpu/backend.ts";
import { seeded } from "./helpers/backends.ts";

const info = await adapterInfo();
const ignore = info === null;
if (ignore) console.log("webgpu tests skipped: no WebGPU adapter (install mesa-vulkan-drivers)");
else console.log(`webgpu tests on adapter '${info.name}' (fallback: ${info.isFallbackAdapter})`);
const gpu: WebGPUBackend | null = ignore ? null : await createWebGPUBackend();
const cpu = new CpuBackend();
// WebGPU keeps promises (device.lost, error scopes) that outlive a test by design.
const opts = { ignore, sanitizeOps: false, sanitizeResources: false };

const rand = seeded(2024);
const randArray = (n: number) => Float32Array.from({ length: n }, () => 2 * rand() - 1);

Deno.test("webgpu cross-entropy gives NaN for an out-of-range target", opts, async () => {
  const x = gpu!.fromHost(new Float32Array([0, 1, 2, 3, 4, 5]), "f32");
  const t = gpu!.fromHost(new Int32Array([1, 7]), "i32");
  const { loss, lse } = gpu!.crossEntropy(x, t, 2, 3, -100);
  const l = await gpu!.read(loss);
  assert.ok(Number.isFinite(l[0]) && Number.isNaN(l[1]), `loss ${l}`);
  for (const s of [x, t, loss, lse]) gpu!.dispose(s);
});

Deno.test("webgpu gather gives zero rows for out-of-range ids", opts, async () => {
  const t = gpu!.fromHost(new Float32Array([1, 2, 3, 4]), "f32");
  const ids = gpu!.fromHost(new Int32Array([1, -1, 2, 0]), "i32");
  const out = gpu!.gather(t, ids, 4, 2);
  assert.deepEqual(await gpu!.read(out), new Float32Array([3, 4, 0, 0, 0, 0, 1, 2]));
  for (const s of [t, ids, out]) gpu!.dispose(s);
});

Deno.test("webgpu scatterAdd sums in the reference's order (bit-identical)", opts, async () => {
  for (const [vocab, cols, n] of [[1, 1, 1], [257, 33, 65], [7, 65, 257], [33, 7, 1000]]) {
    const ids = Int32Array.from({ length: n }, () => Math.floor(rand() * vocab));
    const g = randArray(n * cols);
    const run = async (b: CpuBackend | WebGPUBackend) => {
      const gs = b.fromHost(g, "f32"), is = b.fromHost(ids, "i32");
      const out = b.scatterAdd(gs, is, n, cols, vocab);
      const r = await b.read(out);
      for (const s of [gs, is, out]) b.dispose(s);
      return r;
    };
    assert.deepEqual(await run(gpu!), await run(cpu), `scatterAdd ${vocab}×${cols} n ${n}`);
  }
});

Deno.test("webgpu liveCount is exact and the pool stops growing in a loop", opts, async () => {
  const be = gpu!;
  const start = be.liveCount();
  const host = randArray(33 * 65);
  const step = async () => {
    const a = be.fromHost(host, "f32");
    const b = be.unary("exp", a, contiguousView([33, 65]));
    const mm = { batch: 1, m: 33, n: 33, k: 65, transA: false, transB: true };
    const c = be.matmul(a, b, { ...mm, aBatchStride: 0, bBatchStride: 0 });
    const w = be.full(33, 1, "f32"), bias = be.full(33, 0, "f32");
    const ln = be.layerNorm(c, w, bias, 33, 33, 1e-5);
    assert.equal(be.liveCount(), start + 8);
    await be.read(ln.y);
    for (const s of [a, b, c, w, bias, ln.y, ln.mean, ln.rstd]) be.dispose(s);
    assert.equal(be.liveCount(), start);
  };
  await step();
  const created = be.stats().created;
  for (let i = 0; i < 5; i++) await step();
  // Freed buffers are reused: the same sequence of sizes creates no new GPU buffers.
  assert.equal(be.stats().created, created, JSON.stringify(be.stats()));
});

Deno.test("webgpu use after dispose names the op and operand", opts, () => {
  const a = gpu!.fromHost(new Float32Array([1, 2, 3]), "f32");
  gpu!.dispose(a);
  assert.throws(
    () => gpu!.unary("exp", a, contiguousView([3])),
    /webgpu exp: a is a disposed buffer/,
  );
});

Deno.test(
  "webgpu fromHost after dispose within an open batch keeps the old data for queued work",
  opts,
  async () => {
    // A kernel reading `a` is queued (not submitted); `a` is freed and its buffer reused by
    // fromHost. The queued kernel must still see the old contents.
    const a = gpu!.fromHost(new Float32Array(64).fill(1), "f32");
    const y = gpu!.unary("mulScalar", a, contiguousView([64]), 2);
    gpu!.dispose(a);
    const b = gpu!.fromHost(new Float32Array(64).fill(5), "f32");
    assert.deepEqual(await gpu!.read(y), new Float32Array(64).fill(2));
    assert.deepEqual(await gpu!.read(b), new Float32Array(64).fill(5));
    for (const s of [y, b]) gpu!.dispose(s);
  },
);

Deno.test("webgpu copy within one buffer reads the source before writing", opts, async () => {
  const src = randArray(7 * 33);
  const gs = gpu!.fromHost(src, "f32");
  // Overlapping source and destination (shift right by one).
  const v0: View = { shape: [32], strides: [1], offset: 0 };
  const v1: View = { shape: [32], strides: [1], offset: 1 };
  gpu!.copy(gs, v0, gs, v1);
  const want = Float32Array.from(src);
  want.set(src.subarray(0, 32), 1);
  assert.deepEqual(await gpu!.read(gs), want);
  gpu!.dispose(gs);
});
