// What only the WebGPU backend does (its parity with the reference on every primitive is in
// backend_conformance_test.ts): out-of-range ids give zero rows and NaN losses instead of errors,
// scatter-add sums in the reference's order (bit-identical), the buffer pool stops growing,
// queued work keeps a freed buffer's old contents, and an overlapping copy reads its source
// first; and the row-kernel compiler on a description that is none of the backend's ops. Skipped
// with a message where there is no WebGPU adapter.
import assert from "node:assert/strict";
import { contiguousView, type View } from "../kernels/backend.ts";
import { CpuBackend } from "../kernels/cpu/backend.ts";
import { adapterInfo } from "../kernels/webgpu/device.ts";
import { createWebGPUBackend, type WebGPUBackend } from "../kernels/webgpu/backend.ts";
import { seeded } from "./helpers/backends.ts";
import { assertClose } from "./helpers/close.ts";
import { openDevice } from "../kernels/webgpu/device.ts";
import { type BufferArg, Dispatcher } from "../kernels/webgpu/dispatch.ts";
import { rowKernelCalls } from "../kernels/webgpu/row_expr.ts";
import { add, div, eq, input, mul, select, sub } from "../kernels/expr.ts";
import { COL, COLS, type RowKernel } from "../kernels/row_kernels.ts";

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

// ---- the row-kernel compiler on a description that is none of the backend's ops ----

/** Every feature of a row kernel: a shared pass with a kept value, a max, a pick, row and
 * column values, a second pass reading the kept value, row outputs and column sums. */
const EVERYTHING: RowKernel = (() => {
  const [x, z, w, s, at, k] = ["x", "z", "w", "s", "at", "k"].map(input);
  return {
    rowInputs: ["x", "z"],
    colInputs: ["w"],
    perRow: ["s"],
    indices: ["at"],
    scalars: ["k"],
    steps: [
      { kind: "sum", name: "a", of: mul(x, w), keep: "xw" },
      { kind: "max", name: "m", of: z },
      { kind: "pick", name: "p", from: "x", at: "at" },
      { kind: "sum", name: "q", of: mul(sub(z, input("m")), input("xw")) },
    ],
    outputs: {
      y: add(mul(input("xw"), k), sub(input("a"), COL)),
      y2: mul(z, div(input("q"), COLS)),
    },
    rowOutputs: { r: add(mul(input("p"), s), input("m")), q: input("q") },
    colSums: { cs: mul(x, s), ct: add(z, at) },
  };
})();

/** A kernel without reductions (compiled one invocation per element). */
const PER_ELEMENT: RowKernel = {
  rowInputs: ["x"],
  colInputs: [],
  perRow: ["s"],
  indices: ["at"],
  scalars: ["k"],
  steps: [],
  outputs: { e: select(eq(COL, input("at")), input("s"), mul(input("x"), input("k"))) },
  rowOutputs: {},
  colSums: {},
};

/** Both in float64, written out. */
function everythingReference(
  rows: number,
  cols: number,
  d: Record<string, Float32Array | Int32Array>,
  k: number,
): Record<string, Float64Array> {
  const out = {
    xw: new Float64Array(rows * cols),
    y: new Float64Array(rows * cols),
    y2: new Float64Array(rows * cols),
    r: new Float64Array(rows),
    q: new Float64Array(rows),
    cs: new Float64Array(cols),
    ct: new Float64Array(cols),
    e: new Float64Array(rows * cols),
  };
  for (let r = 0; r < rows; r++) {
    let a = 0, m = -Infinity, q = 0;
    const o = r * cols, t = d.at[r];
    for (let c = 0; c < cols; c++) {
      out.xw[o + c] = Math.fround(d.x[o + c] * d.w[c]);
      a += out.xw[o + c];
      m = Math.max(m, d.z[o + c]);
    }
    for (let c = 0; c < cols; c++) q += (d.z[o + c] - m) * out.xw[o + c];
    for (let c = 0; c < cols; c++) {
      out.y[o + c] = out.xw[o + c] * k + (a - c);
      out.y2[o + c] = d.z[o + c] * (q / cols);
      out.cs[c] += d.x[o + c] * d.s[r];
      out.ct[c] += d.z[o + c] + t;
      out.e[o + c] = c === t ? d.s[r] : d.x[o + c] * k;
    }
    out.r[r] = (t >= 0 && t < cols ? d.x[o + t] : NaN) * d.s[r] + m;
    out.q[r] = q;
  }
  return out;
}

Deno.test(
  "webgpu row-kernel compiler: kernels with every feature match float64, 2-D grids too",
  opts,
  async () => {
    const ctx = await openDevice();
    const disp = new Dispatcher(ctx, {
      maxBindingBytes: ctx.limits.maxStorageBufferBindingSize,
      maxBatch: 64,
    });
    const device = ctx.device;
    const made: GPUBuffer[] = [];
    const buffer = (
      name: string,
      data: Float32Array<ArrayBuffer> | Int32Array<ArrayBuffer>,
    ): BufferArg => {
      const size = Math.max(16, data.byteLength);
      const b = device.createBuffer({
        size,
        usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
      });
      device.queue.writeBuffer(b, 0, data);
      made.push(b);
      const format = data instanceof Int32Array ? "i32" : "f32";
      return {
        name,
        buf: { buffer: b, size, lastBatch: -1 },
        length: data.length,
        format,
        write: false,
      };
    };
    const read = async (arg: BufferArg): Promise<Float32Array> => {
      disp.flush();
      const st = device.createBuffer({
        size: arg.buf.size,
        usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      });
      const enc = device.createCommandEncoder();
      enc.copyBufferToBuffer(arg.buf.buffer, 0, st, 0, arg.buf.size);
      device.queue.submit([enc.finish()]);
      await st.mapAsync(GPUMapMode.READ);
      const out = new Float32Array(st.getMappedRange().slice(0, arg.length * 4));
      st.destroy();
      ctx.check();
      return out;
    };
    // 130 rows: three chunks of column sums; 300 columns: two strided loop turns per invocation.
    const rows = 130, cols = 300, k = 0.75;
    const data = {
      x: randArray(rows * cols),
      z: randArray(rows * cols),
      w: randArray(cols),
      s: randArray(rows),
      at: Int32Array.from(
        { length: rows },
        (_, r) => [-1, cols, 0, cols - 1][r % 4] + (r % 4 === 2 ? r : 0),
      ),
    };
    const want = everythingReference(rows, cols, data, k);
    // The device's grid limit, and 2 (every grid 2-D, with workgroups past the last row).
    for (const maxDim of [ctx.limits.maxComputeWorkgroupsPerDimension, 2]) {
      const outs: Record<string, BufferArg> = {};
      for (
        const [n, len] of [
          ["xw", rows * cols],
          ["y", rows * cols],
          ["y2", rows * cols],
          ["r", rows],
          ["q", rows],
          ["cs", cols],
          ["ct", cols],
          ["e", rows * cols],
        ] as const
      ) {
        outs[n] = buffer(n, new Float32Array(len).fill(NaN));
      }
      const ins = Object.fromEntries(Object.entries(data).map(([n, v]) => [n, buffer(n, v)]));
      const temp = (length: number, name: string) => ({
        ...buffer(name, new Float32Array(length)),
        write: true,
      });
      for (const kernel of [EVERYTHING, PER_ELEMENT]) {
        const args = { rows, cols, buffers: { ...ins, ...outs }, scalars: { k }, temp };
        for (const call of rowKernelCalls(kernel, "test", args, maxDim)) disp.run(call);
      }
      for (const [n, arg] of Object.entries(outs)) {
        const tol = n === "cs" || n === "ct" ? 1e-4 : 2e-5;
        assertClose(
          await read(arg),
          Float32Array.from(want[n as keyof typeof want]),
          `${n} (grid limit ${maxDim})`,
          tol,
          tol,
        );
      }
    }
    for (const b of made) b.destroy();
    device.destroy();
  },
);

Deno.test(
  "webgpu row-kernel compiler: names that are not WGSL identifiers are refused",
  opts,
  () => {
    const bad: RowKernel = { ...EVERYTHING, scalars: ["k-1"], outputs: { y: input("k-1") } };
    assert.throws(
      () =>
        rowKernelCalls(bad, "bad", {
          rows: 1,
          cols: 1,
          buffers: {},
          temp: () => {
            throw new Error();
          },
        }),
      /webgpu bad: 'k-1' is not a WGSL identifier/,
    );
    const early: RowKernel = {
      ...EVERYTHING,
      outputs: {},
      rowOutputs: {},
      colSums: { c: input("a") },
    };
    assert.throws(
      () =>
        rowKernelCalls(early, "early", {
          rows: 1,
          cols: 1,
          buffers: {},
          temp: () => {
            throw new Error();
          },
        }),
      /webgpu early: an expression reads 'a', which is not an input, a scalar or an earlier step/,
    );
  },
);

Deno.test(
  "webgpu reduce and argmax: NaN and ±∞ at the edges of each invocation's slice match the reference",
  opts,
  async () => {
    // Rows of the tree kernel (size ≥ 32, inner 1: 256 invocations fold strided slices, then a
    // tree joins them) and of the column kernel (size < 32; inner > 1 with many outputs). A NaN
    // last in a slice (element 511 of 600 is the last of invocation 255's), NaN after the first
    // element (argmax skips it), first (argmax keeps index 0), a tie split across slices (argmax
    // takes the first index although its slice's partial joins later in the tree).
    const rowsOf = (size: number): Float32Array[] => {
      const row = (f: (k: number) => number) => Float32Array.from({ length: size }, (_, k) => f(k));
      const at = (pos: Record<number, number>, base: (k: number) => number = () => rand()) =>
        row((k) => (k in pos ? pos[k] : base(k)));
      const last = size - 1, mid = Math.min(511, last);
      return [
        at({ [mid]: NaN }),
        at({ [last]: NaN }),
        at({ 0: NaN }),
        at({ 1: NaN, [Math.min(257, last)]: 5 }),
        at({ 1: NaN, [Math.min(300, last)]: NaN, 2: 3 }),
        at({ [last]: NaN }, () => -Infinity),
        at({}, () => -Infinity),
        at({ 5: Infinity, [Math.min(300, last)]: Infinity, [Math.min(256, last)]: -Infinity }),
        at({ 10: 7, [Math.min(256, last)]: 7 }),
        at({}, () => NaN),
        at({ [last]: -Infinity, 0: Infinity }, () => Infinity),
        row(() => rand() - 0.5),
      ];
    };
    const cases: [Float32Array, number, number, number][] = [];
    for (const size of [600, 31]) {
      const rows = rowsOf(size);
      const x = new Float32Array(rows.length * size);
      rows.forEach((r, i) => x.set(r, i * size));
      cases.push([x, rows.length, size, 1]);
    }
    // Many outputs with inner > 1: the column kernel on strided columns.
    const [inner, size] = [4099, 40];
    const wide = Float32Array.from({ length: size * inner }, () => {
      const u = rand();
      return u < 0.02 ? NaN : u < 0.03 ? -Infinity : u < 0.04 ? Infinity : rand() - 0.5;
    });
    cases.push([wide, 1, size, inner]);
    for (const [x, outer, sz, inn] of cases) {
      const run = async (b: CpuBackend | WebGPUBackend, op: "sum" | "max" | "min" | "argmax") => {
        const xs = b.fromHost(x, "f32");
        const out = op === "argmax"
          ? b.argmax(xs, outer, sz, inn)
          : b.reduce(op, xs, outer, sz, inn);
        const r = Array.from(await b.read(out));
        for (const s of [xs, out]) b.dispose(s);
        return r;
      };
      for (const op of ["max", "min", "argmax"] as const) {
        assert.deepEqual(
          await run(gpu!, op),
          await run(cpu, op),
          `${op} [${outer}, ${sz}, ${inn}]`,
        );
      }
      const what = `sum [${outer}, ${sz}, ${inn}]`;
      assertClose(await run(gpu!, "sum"), await run(cpu, "sum"), what, 1e-5, 1e-4);
    }
  },
);
