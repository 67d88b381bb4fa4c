// Parity of every WebGPU primitive with the CPU reference backend, on random shapes with odd
// sizes, plus memory (leaks, reuse hazards) and error messages. Runs on whatever adapter Deno's
// WebGPU offers (lavapipe on CI); skipped with a message where there is none.
import assert from "node:assert/strict";
import {
  type Backend,
  BINARY_OPS,
  type BinaryOp,
  contiguousStrides,
  contiguousView,
  hashUniform,
  type Storage,
  UNARY_OPS,
  type UnaryOp,
  type View,
} from "../kernels/backend.ts";
import { CpuBackend } from "../kernels/cpu/backend.ts";
import { adapterInfo } from "../kernels/webgpu/device.ts";
import { createWebGPUBackend, type WebGPUBackend } from "../kernels/webgpu/backend.ts";
import { assertClose } from "./helpers/close.ts";

const info = await adapterInfo();
const ignore = info === null;
if (ignore) console.log("webgpu tests skipped: no WebGPU adapter (install mesa-vulkan-drivers)");
else console.log(`webgpu tests on adapter '${info.name}' (fallback: ${info.isFallbackAdapter})`);
const gpu: WebGPUBackend | null = ignore ? null : await createWebGPUBackend();
const cpu = new CpuBackend();
// WebGPU keeps promises (device.lost, error scopes) that outlive a test by design.
const opts = { ignore, sanitizeOps: false, sanitizeResources: false };

/** Deterministic uniform numbers in [lo, hi) (mulberry32). */
function rng(seed: number): (lo?: number, hi?: number) => number {
  let a = seed >>> 0;
  return (lo = -1, hi = 1) => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return lo + (hi - lo) * (((t ^ (t >>> 14)) >>> 0) / 4294967296);
  };
}

function randArray(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  const r = rng(seed);
  return Float32Array.from({ length: n }, () => r(lo, hi));
}

/** Uploads the same host data to both backends. */
function both(data: Float32Array | Int32Array, dtype: "f32" | "i32" = "f32"): [Storage, Storage] {
  return [gpu!.fromHost(data, dtype), cpu.fromHost(data, dtype)];
}

async function compare(g: Storage, c: Storage, what: string, rtol = 1e-5, atol = 1e-6) {
  const [a, e] = [await gpu!.read(g), await cpu.read(c)];
  assertClose(a, e, what, rtol, atol);
  gpu!.dispose(g);
  cpu.dispose(c);
}

function disposeAll(b: Backend, ...s: Storage[]) {
  for (const x of s) b.dispose(x);
}

const ODD = [1, 7, 33, 65, 257];

// ---------------------------------------------------------------- elementwise

const UNARY: readonly UnaryOp[] = UNARY_OPS;

/** Views of one shape over a buffer: contiguous, transposed, broadcast, offset slice. */
function viewsOf(shape: [number, number]): { name: string; len: number; view: View }[] {
  const [r, c] = shape;
  return [
    { name: "contiguous", len: r * c, view: contiguousView(shape) },
    { name: "transposed", len: r * c, view: { shape, strides: [1, r], offset: 0 } },
    { name: "row-broadcast", len: c, view: { shape, strides: [0, 1], offset: 0 } },
    {
      name: "offset-slice",
      len: (r + 1) * (c + 3),
      view: { shape, strides: [c + 3, 1], offset: c + 5 },
    },
  ];
}

Deno.test("webgpu unary ops match the CPU on strided views", opts, async () => {
  for (const shape of [[7, 33], [1, 257], [65, 1]] as [number, number][]) {
    for (const { name, len, view } of viewsOf(shape)) {
      for (const op of UNARY) {
        const positive = op === "log" || op === "sqrt" || op === "powScalar";
        const data = randArray(len, len + op.length, positive ? 0.05 : -4, 4);
        const [g, c] = both(data);
        const param = op === "powScalar" ? 1.7 : op === "addScalar" ? 0.25 : -3;
        await compare(
          gpu!.unary(op, g, view, param),
          cpu.unary(op, c, view, param),
          `${op} ${name} [${shape}]`,
          2e-6,
          2e-6,
        );
        disposeAll(gpu!, g);
        disposeAll(cpu, c);
      }
    }
  }
});

Deno.test("webgpu powScalar follows Math.pow on signs and special exponents", opts, async () => {
  const data = new Float32Array([-3, -2, -1.5, -0.5, 0, 0.5, 1, 2, 3]);
  for (const p of [0, 1, 2, 3, -1, 0.5, -2, 5, 2.5]) {
    const [g, c] = both(data);
    const v = contiguousView([data.length]);
    await compare(
      gpu!.unary("powScalar", g, v, p),
      cpu.unary("powScalar", c, v, p),
      `pow ${p}`,
      2e-6,
    );
    disposeAll(gpu!, g);
    disposeAll(cpu, c);
  }
});

const BINARY: readonly BinaryOp[] = BINARY_OPS;

Deno.test("webgpu binary ops match the CPU with broadcasting", opts, async () => {
  for (const op of BINARY) {
    for (const [d0, d1, d2] of [[5, 7, 33], [1, 1, 65], [3, 257, 1]]) {
      const shape = [d0, d1, d2];
      // a: full tensor seen through a permuted layout; b: broadcast along axis 1.
      const aData = randArray(d0 * d1 * d2, d1, op === "pow" ? 0.1 : -2, 2);
      const bData = randArray(d0 * d2, d2, op === "pow" ? -2 : -2, 2);
      if (op === "eq" || op === "ge") {
        // Make some elements equal so the equality branch is exercised.
        for (let i = 0; i < bData.length; i += 3) aData[i] = bData[i % bData.length];
      }
      const av: View = { shape, strides: [d1 * d2, 1, d1], offset: 0 }; // axes 1,2 swapped
      const bv: View = { shape, strides: [d2, 0, 1], offset: 0 };
      const [ga, ca] = both(aData), [gb, cb] = both(bData);
      await compare(
        gpu!.binary(op, ga, av, gb, bv),
        cpu.binary(op, ca, av, cb, bv),
        `${op} [${shape}]`,
        4e-6,
        1e-6,
      );
      disposeAll(gpu!, ga, gb);
      disposeAll(cpu, ca, cb);
    }
  }
});

Deno.test("webgpu where matches the CPU for f32 and i32 conditions", opts, async () => {
  const shape = [33, 7];
  const n = 33 * 7;
  const r = rng(3);
  const condF = Float32Array.from({ length: n }, () => (r() > 0 ? 1 : 0));
  const condI = Int32Array.from(condF);
  const a = randArray(n, 1), b = randArray(7, 2);
  const bv: View = { shape, strides: [0, 1], offset: 0 };
  for (const [cond, dtype] of [[condF, "f32"], [condI, "i32"]] as const) {
    const [gc, cc] = both(cond, dtype), [ga, ca] = both(a), [gb, cb] = both(b);
    const cv = contiguousView(shape);
    await compare(
      gpu!.where(gc, cv, ga, cv, gb, bv),
      cpu.where(cc, cv, ca, cv, cb, bv),
      `where ${dtype}`,
      0,
      0,
    );
    disposeAll(gpu!, gc, ga, gb);
    disposeAll(cpu, cc, ca, cb);
  }
});

Deno.test("webgpu cast truncates toward zero and round-trips", opts, async () => {
  const data = new Float32Array([-2.7, -1.5, -0.5, 0, 0.5, 1.5, 2.7, 1e6 + 0.5, -123456.9]);
  const [g, c] = both(data);
  const gi = gpu!.cast(g, "i32"), ci = cpu.cast(c, "i32");
  assert.deepEqual(await gpu!.read(gi), await cpu.read(ci));
  await compare(gpu!.cast(gi, "f32"), cpu.cast(ci, "f32"), "i32 → f32", 0, 0);
  disposeAll(gpu!, g, gi);
  disposeAll(cpu, c, ci);
});

Deno.test(
  "webgpu strided copy matches the CPU, also for i32 and overlapping copies",
  opts,
  async () => {
    // Transpose a [7, 33] block into a slice of a [40, 9] destination (with a column stride).
    const src = randArray(7 * 33, 11);
    const dstInit = randArray(33 * 20, 12);
    const sv: View = { shape: [33, 7], strides: [1, 33], offset: 0 };
    const dv: View = { shape: [33, 7], strides: [20, 2], offset: 3 };
    const [gs, cs] = both(src), [gd, cd] = both(dstInit);
    gpu!.copy(gs, sv, gd, dv);
    cpu.copy(cs, sv, cd, dv);
    assertClose(await gpu!.read(gd), await cpu.read(cd), "f32 copy", 0, 0);
    // i32 copy with a broadcast source.
    const ids = Int32Array.from({ length: 65 }, (_, i) => i * 7 - 100);
    const [gi, ci] = both(ids, "i32"), [go, co] = both(new Int32Array(65 * 3), "i32");
    const bsv: View = { shape: [3, 65], strides: [0, 1], offset: 0 };
    gpu!.copy(gi, bsv, go, contiguousView([3, 65]));
    cpu.copy(ci, bsv, co, contiguousView([3, 65]));
    assert.deepEqual(await gpu!.read(go), await cpu.read(co));
    // Source and destination in the same buffer, overlapping (shift right by one).
    const v0: View = { shape: [32], strides: [1], offset: 0 };
    const v1: View = { shape: [32], strides: [1], offset: 1 };
    gpu!.copy(gs, v0, gs, v1);
    cpu.copy(cs, v0, cs, v1);
    const expectShift = Float32Array.from(src);
    expectShift.set(src.subarray(0, 32), 1); // as if the source were read before any write
    assertClose(await gpu!.read(gs), expectShift, "overlapping copy", 0, 0);
    disposeAll(gpu!, gs, gd, gi, go);
    disposeAll(cpu, cs, cd, ci, co);
  },
);

Deno.test("webgpu full and fromHost(Float64Array) give the right values", opts, async () => {
  const f = gpu!.full(257, -1.25, "f32"), i = gpu!.full(33, -7, "i32");
  assert.deepEqual(await gpu!.read(f), new Float32Array(257).fill(-1.25));
  assert.deepEqual(await gpu!.read(i), new Int32Array(33).fill(-7));
  const d = gpu!.fromHost(new Float64Array([0.1, 2.5, -3]), "f32");
  assert.deepEqual(await gpu!.read(d), new Float32Array([0.1, 2.5, -3]));
  const e = gpu!.fromHost(new Float32Array(0), "f32");
  assert.equal((await gpu!.read(e)).length, 0);
  disposeAll(gpu!, f, i, d, e);
});

// ---------------------------------------------------------------- reductions

Deno.test(
  "webgpu reductions and argmax match the CPU (tree and column kernels)",
  opts,
  async () => {
    const shapes: [number, number, number][] = [
      [1, 1, 1],
      [7, 33, 1],
      [3, 257, 5],
      [1, 5000, 1],
      [65, 7, 33],
      [2, 1000, 3],
      [1, 65, 257],
    ];
    for (const [o, s, n] of shapes) {
      const len = o * s * n;
      // Small integers make ties common, so argmax's first-index rule is tested.
      const ints = Float32Array.from(randArray(len, len), (v) => Math.round(v * 3));
      const reals = randArray(len, len + 1);
      for (const op of ["sum", "max", "min"] as const) {
        const [g, c] = both(reals);
        await compare(
          gpu!.reduce(op, g, o, s, n),
          cpu.reduce(op, c, o, s, n),
          `${op} [${o}, ${s}, ${n}]`,
          1e-5,
          // Sums of s terms in f32 (tree order) vs the CPU's f64 loop: rounding grows like √s.
          op === "sum" ? 2e-7 * s : 0,
        );
        disposeAll(gpu!, g);
        disposeAll(cpu, c);
      }
      const [g, c] = both(ints);
      const ga = gpu!.argmax(g, o, s, n), ca = cpu.argmax(c, o, s, n);
      assert.deepEqual(await gpu!.read(ga), await cpu.read(ca), `argmax [${o}, ${s}, ${n}]`);
      disposeAll(gpu!, g, ga);
      disposeAll(cpu, c, ca);
    }
  },
);

// ---------------------------------------------------------------- matmul

Deno.test(
  "webgpu matmul matches the CPU for every transpose, odd sizes and batches",
  opts,
  async () => {
    const r = rng(5);
    const cases = [
      [1, 1, 1, 1],
      [1, 7, 33, 65],
      [2, 65, 7, 33],
      [3, 33, 65, 7],
      [1, 257, 33, 65],
      [1, 64, 64, 64],
      [2, 1, 257, 33],
    ];
    for (const [batch, m, n, k] of cases) {
      for (const transA of [false, true]) {
        for (const transB of [false, true]) {
          // A with its own batch stride and an offset; B shared by every batch entry.
          const aOffset = 3, bOffset = 1;
          const aBatchStride = m * k + 2;
          const a = randArray(aOffset + batch * aBatchStride, Math.floor(r(0, 1e6)));
          const b = randArray(bOffset + k * n, Math.floor(r(0, 1e6)));
          const p = {
            batch,
            m,
            n,
            k,
            transA,
            transB,
            aBatchStride,
            bBatchStride: 0,
            aOffset,
            bOffset,
          };
          const [ga, ca] = both(a), [gb, cb] = both(b);
          await compare(
            gpu!.matmul(ga, gb, p),
            cpu.matmul(ca, cb, p),
            `matmul b${batch} ${m}x${n}x${k} tA=${transA} tB=${transB}`,
            1e-5,
            2e-6 * Math.sqrt(k),
          );
          disposeAll(gpu!, ga, gb);
          disposeAll(cpu, ca, cb);
        }
      }
    }
  },
);

// ---------------------------------------------------------------- row ops

Deno.test("webgpu softmax / log-softmax and their backward match the CPU", opts, async () => {
  for (const [rows, cols] of [[1, 1], [7, 33], [65, 257], [3, 1000], [2, 7]]) {
    const x = randArray(rows * cols, rows + cols, -6, 6);
    if (rows === 2) {
      x.fill(-Infinity, 0, cols); // a fully masked row
      x[cols + 2] = -Infinity; // a partly masked row
    }
    const gy = randArray(rows * cols, cols);
    for (const log of [false, true]) {
      const [gx, cx] = both(x), [gg, cg] = both(gy);
      const gs = gpu!.softmax(gx, rows, cols, log), cs = cpu.softmax(cx, rows, cols, log);
      assertClose(
        await gpu!.read(gs),
        await cpu.read(cs),
        `softmax log=${log} [${rows}, ${cols}]`,
        2e-5,
        1e-6,
      );
      if (rows !== 2) {
        await compare(
          gpu!.softmaxBackward(gs, gg, rows, cols, log),
          cpu.softmaxBackward(cs, cg, rows, cols, log),
          `softmaxBackward log=${log} [${rows}, ${cols}]`,
          2e-5,
          2e-6,
        );
      }
      disposeAll(gpu!, gx, gg, gs);
      disposeAll(cpu, cx, cg, cs);
    }
  }
});

Deno.test("webgpu layer norm and its backward match the CPU", opts, async () => {
  for (const [rows, cols] of [[1, 7], [33, 65], [257, 33], [5, 768], [130, 1]]) {
    const x = randArray(rows * cols, rows * 3 + cols, -3, 5);
    const w = randArray(cols, cols + 1, 0.5, 1.5), b = randArray(cols, cols + 2);
    const gy = randArray(rows * cols, rows + 9);
    const [gx, cx] = both(x), [gw, cw] = both(w), [gb, cb] = both(b), [gg, cg] = both(gy);
    const g = gpu!.layerNorm(gx, gw, gb, rows, cols, 1e-5);
    const c = cpu.layerNorm(cx, cw, cb, rows, cols, 1e-5);
    const tag = `[${rows}, ${cols}]`;
    assertClose(await gpu!.read(g.y), await cpu.read(c.y), `layerNorm y ${tag}`, 1e-4, 1e-5);
    assertClose(
      await gpu!.read(g.mean),
      await cpu.read(c.mean),
      `layerNorm mean ${tag}`,
      1e-5,
      1e-6,
    );
    assertClose(
      await gpu!.read(g.rstd),
      await cpu.read(c.rstd),
      `layerNorm rstd ${tag}`,
      1e-4,
      1e-6,
    );
    const gB = gpu!.layerNormBackward(gx, gw, g.mean, g.rstd, gg, rows, cols);
    const cB = cpu.layerNormBackward(cx, cw, c.mean, c.rstd, cg, rows, cols);
    await compare(gB.gx, cB.gx, `layerNorm gx ${tag}`, 1e-4, 1e-4);
    await compare(gB.gw, cB.gw, `layerNorm gw ${tag}`, 1e-4, 1e-5 * Math.sqrt(rows));
    await compare(gB.gb, cB.gb, `layerNorm gb ${tag}`, 1e-5, 1e-6 * Math.sqrt(rows));
    disposeAll(gpu!, gx, gw, gb, gg, g.y, g.mean, g.rstd);
    disposeAll(cpu, cx, cw, cb, cg, c.y, c.mean, c.rstd);
  }
});

Deno.test(
  "webgpu cross-entropy and its backward match the CPU, with ignored rows",
  opts,
  async () => {
    for (const [rows, cols] of [[1, 1], [7, 33], [65, 257], [4, 5000]]) {
      const x = randArray(rows * cols, rows * cols, -8, 8);
      const r = rng(rows);
      const t = Int32Array.from({ length: rows }, () => Math.floor(r(0, cols)));
      if (rows > 1) t[1] = -100;
      const gl = randArray(rows, rows + 4, 0.5, 2);
      const [gx, cx] = both(x), [gt, ct] = both(t, "i32"), [gg, cg] = both(gl);
      const g = gpu!.crossEntropy(gx, gt, rows, cols, -100);
      const c = cpu.crossEntropy(cx, ct, rows, cols, -100);
      const tag = `[${rows}, ${cols}]`;
      assertClose(await gpu!.read(g.loss), await cpu.read(c.loss), `CE loss ${tag}`, 1e-5, 2e-6);
      assertClose(await gpu!.read(g.lse), await cpu.read(c.lse), `CE lse ${tag}`, 1e-5, 2e-6);
      await compare(
        gpu!.crossEntropyBackward(gx, gt, g.lse, gg, rows, cols, -100),
        cpu.crossEntropyBackward(cx, ct, c.lse, cg, rows, cols, -100),
        `CE backward ${tag}`,
        2e-5,
        1e-6,
      );
      disposeAll(gpu!, gx, gt, gg, g.loss, g.lse);
      disposeAll(cpu, cx, ct, cg, c.loss, c.lse);
    }
  },
);

Deno.test("webgpu cross-entropy gives NaN for an out-of-range target", opts, async () => {
  const x = gpu!.fromHost(new Float32Array([0, 1, 2, 3, 4, 5]), "f32");
  const t = gpu!.fromHost(new Int32Array([1, 7]), "i32");
  const { loss, lse } = gpu!.crossEntropy(x, t, 2, 3, -100);
  const l = await gpu!.read(loss);
  assert.ok(Number.isFinite(l[0]) && Number.isNaN(l[1]), `loss ${l}`);
  disposeAll(gpu!, x, t, loss, lse);
});

// ---------------------------------------------------------------- indexing

Deno.test("webgpu gather matches the CPU and scatterAdd is bit-identical", opts, async () => {
  for (const [vocab, cols, n] of [[1, 1, 1], [257, 33, 65], [7, 65, 257], [33, 7, 1000]]) {
    const table = randArray(vocab * cols, vocab + cols);
    const r = rng(n);
    const ids = Int32Array.from({ length: n }, () => Math.floor(r(0, vocab)));
    const [gt, ct] = both(table), [gi, ci] = both(ids, "i32");
    await compare(
      gpu!.gather(gt, gi, n, cols),
      cpu.gather(ct, ci, n, cols),
      `gather ${vocab}x${cols} n${n}`,
      0,
      0,
    );
    const g = randArray(n * cols, n + 1);
    const [gg, cg] = both(g);
    // Same summation order as the CPU loop: equal to the last bit.
    await compare(
      gpu!.scatterAdd(gg, gi, n, cols, vocab),
      cpu.scatterAdd(cg, ci, n, cols, vocab),
      `scatterAdd ${vocab}x${cols} n${n}`,
      0,
      0,
    );
    disposeAll(gpu!, gt, gi, gg);
    disposeAll(cpu, ct, ci, cg);
  }
});

Deno.test("webgpu gather gives zero rows for out-of-range ids", opts, async () => {
  const t = gpu!.fromHost(new Float32Array([1, 2, 3, 4]), "f32");
  const ids = gpu!.fromHost(new Int32Array([1, -1, 2, 0]), "i32");
  const out = gpu!.gather(t, ids, 4, 2);
  assert.deepEqual(await gpu!.read(out), new Float32Array([3, 4, 0, 0, 0, 0, 1, 2]));
  disposeAll(gpu!, t, ids, out);
});

// ---------------------------------------------------------------- random / optimizer

Deno.test("webgpu dropoutMask equals hashUniform bit for bit", opts, async () => {
  for (
    const [len, p, seed] of [[1, 0.5, 0], [1000, 0.1, 42], [4097, 1 / 3, -7], [257, 0, 2 ** 31 + 5]]
  ) {
    const m = gpu!.dropoutMask(len, p, seed);
    const got = await gpu!.read(m);
    // Independent expectation straight from the shared generator.
    const keep = Math.fround(1 / (1 - p));
    const want = Float32Array.from(
      { length: len },
      (_, i) => (hashUniform(seed, i) >= p ? keep : 0),
    );
    assert.deepEqual(got, want, `dropout len ${len} p ${p} seed ${seed}`);
    gpu!.dispose(m);
  }
});

Deno.test("webgpu adamw matches the CPU over several steps", opts, async () => {
  const n = 1000;
  const param = randArray(n, 1), m0 = new Float32Array(n), v0 = new Float32Array(n);
  const [gp, cp] = both(param), [gm, cm] = both(m0), [gv, cv] = both(v0);
  for (let step = 1; step <= 3; step++) {
    const grad = randArray(n, 100 + step);
    const [gg, cg] = both(grad);
    const hp = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, step };
    gpu!.adamw(gp, gg, gm, gv, hp);
    cpu.adamw(cp, cg, cm, cv, hp);
    disposeAll(gpu!, gg);
    disposeAll(cpu, cg);
  }
  assertClose(await gpu!.read(gp), await cpu.read(cp), "adamw param", 1e-5, 1e-6);
  assertClose(await gpu!.read(gm), await cpu.read(cm), "adamw m", 1e-5, 1e-7);
  assertClose(await gpu!.read(gv), await cpu.read(cv), "adamw v", 1e-5, 1e-9);
  disposeAll(gpu!, gp, gm, gv);
  disposeAll(cpu, cp, cm, cv);
});

// ---------------------------------------------------------------- memory

Deno.test("webgpu liveCount is exact and the pool stops growing in a loop", opts, async () => {
  const be = gpu!;
  const start = be.liveCount();
  const host = randArray(33 * 65, 1);
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

Deno.test("webgpu dispose is idempotent, use after dispose names the op", opts, () => {
  const a = gpu!.fromHost(new Float32Array([1, 2, 3]), "f32");
  const before = gpu!.liveCount();
  gpu!.dispose(a);
  gpu!.dispose(a);
  assert.equal(gpu!.liveCount(), before - 1);
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
    disposeAll(gpu!, y, b);
  },
);

Deno.test(
  "webgpu rejects views outside the buffer and mismatched shapes, naming them",
  opts,
  () => {
    const a = gpu!.fromHost(new Float32Array(10), "f32");
    assert.throws(
      () => gpu!.unary("neg", a, { shape: [3, 4], strides: [4, 1], offset: 0 }),
      /neg: a view \(shape \[3,4\], strides \[4,1\], offset 0\) reaches elements 0\.\.11 of a buffer of 10/,
    );
    assert.throws(
      () => gpu!.binary("add", a, contiguousView([2, 5]), a, contiguousView([5, 2])),
      /add: operand b has shape \[5,2\], expected \[2,5\]/,
    );
    assert.throws(
      () =>
        gpu!.matmul(a, a, {
          batch: 1,
          m: 4,
          n: 4,
          k: 4,
          transA: false,
          transB: false,
          aBatchStride: 0,
          bBatchStride: 0,
        }),
      /matmul: a \(batch 1, m 4, k 4\) has 10 elements, needs 16/,
    );
    gpu!.dispose(a);
  },
);

Deno.test(
  "webgpu views with strides of every kind agree with contiguousStrides",
  opts,
  async () => {
    // A rank-4 permuted view that cannot be merged exercises the general index decomposition.
    const shape = [3, 5, 7, 2];
    const data = randArray(3 * 5 * 7 * 2, 77);
    const st = contiguousStrides([2, 7, 5, 3]); // stored as [2, 7, 5, 3]
    const v: View = { shape, strides: [st[3], st[2], st[1], st[0]], offset: 0 };
    const [g, c] = both(data);
    await compare(gpu!.unary("abs", g, v), cpu.unary("abs", c, v), "rank-4 permuted", 0, 0);
    disposeAll(gpu!, g);
    disposeAll(cpu, c);
  },
);

Deno.test("webgpu random odd shapes: broadcast binary, reduce, matmul, softmax", opts, async () => {
  const r = rng(2024);
  const pick = () => ODD[Math.floor(r(0, ODD.length))];
  for (let trial = 0; trial < 12; trial++) {
    // Three dims from the odd sizes, capped so lavapipe stays fast.
    let shape = [pick(), pick(), pick()];
    while (shape[0] * shape[1] * shape[2] > 70000) shape = [pick(), pick(), 1];
    const n = shape[0] * shape[1] * shape[2];
    const tag = `trial ${trial} [${shape}]`;
    // b broadcasts along a random axis.
    const axis = Math.floor(r(0, 3));
    const bShape = shape.map((d, i) => (i === axis ? 1 : d));
    const bStrides = contiguousStrides(bShape).map((s, i) => (i === axis ? 0 : s));
    const op = BINARY[Math.floor(r(0, BINARY.length))];
    const [ga, ca] = both(randArray(n, trial, 0.1, 2));
    const [gb, cb] = both(randArray(n / shape[axis], trial + 50, 0.1, 2));
    const av = contiguousView(shape), bv: View = { shape, strides: bStrides, offset: 0 };
    await compare(
      gpu!.binary(op, ga, av, gb, bv),
      cpu.binary(op, ca, av, cb, bv),
      `${op} ${tag}`,
      4e-6,
      1e-6,
    );
    await compare(
      gpu!.reduce("sum", ga, shape[0], shape[1], shape[2]),
      cpu.reduce("sum", ca, shape[0], shape[1], shape[2]),
      `sum ${tag}`,
      1e-5,
      4e-7 * shape[1],
    );
    await compare(
      gpu!.softmax(ga, shape[0] * shape[1], shape[2], trial % 2 === 0),
      cpu.softmax(ca, shape[0] * shape[1], shape[2], trial % 2 === 0),
      `softmax ${tag}`,
      2e-5,
      1e-6,
    );
    const mp = {
      batch: shape[0] > 33 ? 1 : shape[0],
      m: shape[1],
      n: pick(),
      k: shape[2],
      transA: r() > 0,
      transB: r() > 0,
      aBatchStride: shape[1] * shape[2],
      bBatchStride: 0,
    };
    const [gm, cm] = both(randArray(mp.k * mp.n, trial + 9));
    await compare(
      gpu!.matmul(ga, gm, mp),
      cpu.matmul(ca, cm, mp),
      `matmul ${tag} ${JSON.stringify(mp)}`,
      1e-5,
      4e-6 * Math.sqrt(mp.k),
    );
    disposeAll(gpu!, ga, gb, gm);
    disposeAll(cpu, ca, cb, cm);
  }
});
