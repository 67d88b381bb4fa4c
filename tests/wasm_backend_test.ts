/**
 * What only the wasm backend does (its parity with the reference on every primitive is in
 * `backend_conformance_test.ts`): threads that split work give the bits of one thread, a float64
 * accumulation of layer norm's weight gradients (repeatable for a thread count), a row kernel
 * compiler that follows any description, errors for out-of-range ids, the heap's
 * out-of-memory error and free-list reuse, and a thread pool that picks up its first job.
 */
import assert from "node:assert/strict";
import {
  type AttentionParams,
  type Backend,
  contiguousView,
  type MatmulParams,
  type Storage,
} from "../kernels/backend.ts";
import { CpuBackend } from "../kernels/cpu/backend.ts";
import { createWasmBackend, type WasmBackend } from "../kernels/wasm/backend.ts";
import { assertWithinSumBound } from "./helpers/close.ts";
import { seeded } from "./helpers/backends.ts";
import { ModuleBuilder } from "../kernels/wasm/builder.ts";
import { Gen } from "../kernels/wasm/gen.ts";
import { addAccFinish, addRowKernel, rowKernelBuffers } from "../kernels/wasm/gen_row_expr.ts";
import { add, div, eq, exp, gt, input, mul, select, sub } from "../kernels/expr.ts";
import { COL, COLS, type RowKernel } from "../kernels/row_kernels.ts";

const rand = seeded(987654321);
const randn = (n: number, lo = -2, hi = 2) =>
  Float32Array.from({ length: n }, () => lo + (hi - lo) * rand());
const f64 = new CpuBackend({ precision: "f64" });

async function matmulOn(w: Backend, p: MatmulParams, A: Float32Array, B: Float32Array) {
  const a = w.fromHost(A, "f32"), b = w.fromHost(B, "f32");
  const c = w.matmul(a, b, p);
  const r = (await w.read(c)) as Float32Array;
  for (const s of [a, b, c]) w.dispose(s);
  return r;
}

/** Asserts `w`'s product is within the f32 summation bound of the float64 one. */
async function checkMatmul(w: Backend, p: MatmulParams, A: Float32Array, B: Float32Array) {
  const got = await matmulOn(w, p, A, B);
  const want = await matmulOn(f64, p, A, B);
  const mag = await matmulOn(f64, p, A.map(Math.abs), B.map(Math.abs));
  assertWithinSumBound(got, want, mag, p.k, `matmul ${JSON.stringify(p)}`);
}

Deno.test("wasm matmul: large blocked sizes, two threads bit-identical to one", async () => {
  const w1 = await createWasmBackend({ threads: 1, blas: false });
  const w2 = await createWasmBackend({ threads: 2, blas: false });
  const p = {
    batch: 1,
    m: 300,
    n: 1100,
    k: 600,
    transA: false,
    transB: true,
    aBatchStride: 0,
    bBatchStride: 0,
  };
  const A = randn(p.m * p.k), B = randn(p.k * p.n);
  const one = await matmulOn(w1, p, A, B);
  assert.deepEqual(await matmulOn(w2, p, A, B), one);
  // Either way of splitting between threads (rows or columns) computes every element alike.
  for (const matmulSplitM of [true, false]) {
    const w = await createWasmBackend({ threads: 2, matmulSplitM, blas: false });
    assert.deepEqual(await matmulOn(w, p, A, B), one, `split rows: ${matmulSplitM}`);
    w.close();
  }
  w1.close();
  w2.close();
});

Deno.test("wasm threads: a job posted right after start-up is not lost", async () => {
  // Regression: a worker that read its sequence number after announcing readiness could miss
  // the first job and leave the caller waiting forever (now a "did not pick up" error).
  const p = {
    batch: 1,
    m: 64,
    n: 256,
    k: 128,
    transA: false,
    transB: false,
    aBatchStride: 0,
    bBatchStride: 0,
  };
  for (let i = 0; i < 6; i++) {
    const w = await createWasmBackend({ threads: 2, blas: false });
    assert.equal(w.threads, 2);
    await checkMatmul(w, p, randn(p.m * p.k), randn(p.k * p.n));
    w.close();
    assert.equal(w.threads, 1);
  }
});

Deno.test("wasm attention: thread count and memory mode do not change the bits", async () => {
  // Threads split rows (forward) and heads (backward); addresses must not matter either.
  const configs = [
    await createWasmBackend({ threads: 1 }),
    await createWasmBackend({ threads: 2 }),
    await createWasmBackend({ threads: 2, memory64: false }),
  ];
  const plain = [
    await createWasmBackend({ threads: 1, memory64: false, relaxedSimd: false }),
    await createWasmBackend({ threads: 2, relaxedSimd: false }),
  ];
  const shapes: [number, number, number, number, number, number][] = [
    [2, 3, 7, 7, 33, 0],
    [1, 2, 33, 65, 7, 0],
    [2, 65, 1, 7, 65, 0],
    [2, 3, 33, 33, 33, 0.3],
    [2, 2, 64, 69, 64, 0.1],
  ];
  for (const [B, H, T, S, D, drop] of shapes) {
    const p: AttentionParams = {
      batch: B,
      heads: H,
      queries: T,
      keys: S,
      dim: D,
      scale: 1 / Math.sqrt(D),
      dropP: drop,
      dropSeed: 99,
    };
    const host = [T, S, S, T].map((r) => randn(B * H * r * D));
    const mask = Float32Array.from({ length: B * S }, (_, i) => (i % S < 2 ? 0 : 1));
    const run = async (w: Backend) => {
      const [q, k, v, g] = host.map((h) => w.fromHost(h, "f32"));
      const m = w.fromHost(mask, "f32");
      const { out, lse } = w.attention(q, k, v, m, p);
      const { gq, gk, gv } = w.attentionBackward(q, k, v, m, out, lse, g, p);
      const res: (Float32Array | Int32Array)[] = [];
      for (const s of [out, lse, gq, gk, gv]) res.push(await w.read(s));
      for (const s of [q, k, v, g, m, out, lse, gq, gk, gv]) w.dispose(s);
      return res;
    };
    for (const group of [configs, plain]) {
      const first = await run(group[0]);
      for (const w of group.slice(1)) {
        const got = await run(w);
        got.forEach((a, i) => assert.deepEqual(a, first[i], `[${B},${H},${T},${S},${D}] ${i}`));
      }
    }
  }
  for (const w of [...configs, ...plain]) w.close();
});

Deno.test("wasm layer norm backward: gw and gb accumulate in float64", async () => {
  // gw and gb against float64 sums written here, within 3 (gw) and 1 (gb) roundings of the
  // magnitudes: tighter than an f32 sum over the rows could be.
  for (
    const w of [
      await createWasmBackend({ threads: 2 }),
      await createWasmBackend({ threads: 1, memory64: false, relaxedSimd: false }),
    ]
  ) {
    for (const [rows, cols] of [[7, 33], [1030, 257]]) {
      const x = randn(rows * cols, -3, 5), wt = randn(cols), gy = randn(rows * cols);
      const mean = new Float32Array(rows), rstd = new Float32Array(rows);
      for (let r = 0; r < rows; r++) {
        let s = 0, q = 0;
        for (let j = 0; j < cols; j++) s += x[r * cols + j];
        mean[r] = s / cols;
        for (let j = 0; j < cols; j++) q += (x[r * cols + j] - mean[r]) ** 2;
        rstd[r] = 1 / Math.sqrt(q / cols + 1e-5);
      }
      const ws = [x, wt, mean, rstd, gy].map((d) => w.fromHost(d, "f32"));
      const d = w.layerNormBackward(ws[0], ws[1], ws[2], ws[3], ws[4], rows, cols);
      const gw = await w.read(d.gw), gb = await w.read(d.gb);
      for (let j = 0; j < cols; j++) {
        let sw = 0, aw = 0, sb = 0, ab = 0;
        for (let r = 0; r < rows; r++) {
          const t = gy[r * cols + j] * (x[r * cols + j] - mean[r]) * rstd[r];
          sw += t;
          aw += Math.abs(t);
          sb += gy[r * cols + j];
          ab += Math.abs(gy[r * cols + j]);
        }
        assert.ok(
          Math.abs(gw[j] - sw) <= 3 * 2 ** -24 * aw + 1e-7,
          `gw[${j}] ${gw[j]}, want ${sw}`,
        );
        assert.ok(
          Math.abs(gb[j] - sb) <= 2 ** -24 * (ab + Math.abs(sb)),
          `gb[${j}] ${gb[j]}, want ${sb}`,
        );
      }
      for (const t of [...ws, d.gx, d.gw, d.gb] as Storage[]) w.dispose(t);
    }
    w.close();
  }
});

Deno.test("wasm: out-of-range ids and targets are errors naming the position", async () => {
  const w = await createWasmBackend({ threads: 1 });
  const x = w.fromHost(new Float32Array(6), "f32");
  const ids = w.fromHost(Int32Array.from([0, 5]), "i32");
  assert.throws(() => w.gather(x, ids, 2, 3), /index 5 at position 1 is outside \[0, 2\)/);
  assert.throws(() => w.crossEntropy(x, ids, 2, 3, -100), /target 5 at row 1 is outside \[0, 3\)/);
  assert.throws(() => w.scatterAdd(x, ids, 2, 3, 4), /index 5 at position 1/);
  assert.throws(() => w.unary("exp", x, contiguousView([7])), /shape \[7\].*buffer of 6/);
  w.close();
});

Deno.test("wasm: out of memory is a clear error, and freed memory is reused", async () => {
  const w: WasmBackend = await createWasmBackend({ threads: 1, maxMemoryBytes: 16 * 2 ** 20 });
  assert.throws(
    () => w.full(8 * 2 ** 20, 0, "f32"),
    /wasm backend: out of memory allocating 33554432 bytes for full .*limit 0\.02 GiB/,
  );
  // Fill most of the memory with small blocks, free them, then one large block must fit
  // (the allocator coalesces free blocks when the limit is reached).
  const small = [];
  for (let i = 0; i < 40; i++) small.push(w.full(60_000, 1, "f32"));
  for (const s of small) w.dispose(s);
  const big = w.full(2_000_000, 2, "f32");
  const r = await w.read(big);
  assert.equal(r[1_999_999], 2);
  w.dispose(big);
  // The same size class comes back from the free list.
  const a = w.full(1000, 0, "f32") as unknown as { ptr: number };
  w.dispose(a as never);
  const b = w.full(1001, 0, "f32") as unknown as { ptr: number };
  assert.equal(b.ptr, a.ptr);
  w.close();
});

Deno.test("wasm row kernels: any description compiles (passes, keep, pick, row and one-hot selects, column sums)", async () => {
  // A kernel unlike the eight of row_kernels.ts, against float64 arithmetic written here:
  // pass 1 = max and a kept sum (they do not read each other), pass 2 reads the max; the
  // output has a select decided per row and a one-hot column; picks fall outside [0, cols).
  const [a, b, wv, p, t, s] = ["a", "b", "w", "p", "t", "s"].map(input);
  const K: RowKernel = {
    rowInputs: ["a", "b"],
    colInputs: ["w"],
    perRow: ["p"],
    indices: ["t"],
    scalars: ["s"],
    steps: [
      { kind: "max", name: "m", of: a },
      { kind: "pick", name: "at", from: "b", at: "t" },
      { kind: "sum", name: "z", of: mul(a, b), keep: "ab" },
      { kind: "sum", name: "q", of: exp(sub(a, input("m"))) },
    ],
    outputs: {
      o: select(
        gt(p, 0),
        add(mul(input("ab"), wv), div(input("q"), COLS)),
        select(eq(COL, t), input("at"), sub(b, s)),
      ),
    },
    rowOutputs: { r: add(mul(input("m"), s), input("at")), z2: input("z") },
    colSums: { cs: mul(a, p), cb: b },
  };
  const g = new Gen({ mem64: false, relaxed: false });
  const mod = new ModuleBuilder();
  mod.importMemory({ module: "env", name: "memory", initial: 16, maximum: 16 });
  addRowKernel(mod, g, "k", K);
  addAccFinish(mod, g);
  const memory = new WebAssembly.Memory({ initial: 16, maximum: 16 });
  const { instance } = await WebAssembly.instantiate(mod.toBytes() as BufferSource, {
    env: { memory },
  });
  const ex = instance.exports as Record<string, (...args: number[]) => void>;
  assert.deepEqual(rowKernelBuffers(K), ["a", "b", "w", "p", "t", "o", "ab", "r", "z2"]);
  for (const [rows, cols] of [[5, 7], [6, 13], [3, 1]]) {
    const A = randn(rows * cols), B = randn(rows * cols), W = randn(cols);
    const Pr = Float32Array.from({ length: rows }, (_, r) => (r % 2 ? 1 : -1));
    const Tr = Int32Array.from({ length: rows }, (_, r) => [-1, 0, cols - 1, cols, 2][r % 5]);
    const S = 0.75;
    // Layout: each buffer at a 4 KiB boundary; the f64 accumulators last.
    let at = 0;
    const place = (n: number) =>
      (at += 4096 * Math.ceil((4 * n + 1) / 4096)) - 4096 * Math.ceil((4 * n + 1) / 4096);
    const ptr = {
      a: place(rows * cols),
      b: place(rows * cols),
      w: place(cols),
      p: place(rows),
      t: place(rows),
      o: place(rows * cols),
      ab: place(rows * cols),
      r: place(rows),
      z2: place(rows),
      cs: place(cols),
      cb: place(cols),
    };
    const acc = place(4 * cols);
    new Uint8Array(memory.buffer).fill(0);
    const F = new Float32Array(memory.buffer), I = new Int32Array(memory.buffer);
    F.set(A, ptr.a / 4);
    F.set(B, ptr.b / 4);
    F.set(W, ptr.w / 4);
    F.set(Pr, ptr.p / 4);
    I.set(Tr, ptr.t / 4);
    const bufPtrs = rowKernelBuffers(K).map((n) => ptr[n as keyof typeof ptr]);
    // Two row ranges, as two threads would take them, into two accumulators.
    const half = Math.floor(rows / 2);
    ex.k(...bufPtrs, cols, S, 0, half, acc);
    ex.k(...bufPtrs, cols, S, half, rows, acc + 16 * cols);
    ex.acc_finish(acc, cols, 2, 2 * cols, ptr.cs);
    ex.acc_finish(acc + 8 * cols, cols, 2, 2 * cols, ptr.cb);
    const close = (got: number, want: number, what: string) =>
      assert.ok(
        Number.isNaN(want)
          ? Number.isNaN(got)
          : Math.abs(got - want) <= 1e-5 * (1 + Math.abs(want)),
        `${what}: ${got}, want ${want}`,
      );
    const cs = new Float64Array(cols), cb = new Float64Array(cols);
    for (let r = 0; r < rows; r++) {
      const row = (X: Float32Array, j: number) => X[r * cols + j];
      let m = -Infinity, z = 0, q = 0;
      for (let j = 0; j < cols; j++) m = Math.max(m, row(A, j));
      for (let j = 0; j < cols; j++) {
        z += row(A, j) * row(B, j);
        q += Math.exp(row(A, j) - m);
        cs[j] += row(A, j) * Pr[r];
        cb[j] += row(B, j);
      }
      const picked = Tr[r] >= 0 && Tr[r] < cols ? row(B, Tr[r]) : NaN;
      close(F[ptr.r / 4 + r], m * S + picked, `r[${r}]`);
      close(F[ptr.z2 / 4 + r], z, `z[${r}]`);
      for (let j = 0; j < cols; j++) {
        const ab = row(A, j) * row(B, j);
        close(F[ptr.ab / 4 + r * cols + j], ab, `ab[${r},${j}]`);
        const want = Pr[r] > 0 ? ab * W[j] + q / cols : j === Tr[r] ? picked : row(B, j) - S;
        close(F[ptr.o / 4 + r * cols + j], want, `o[${r},${j}] of [${rows},${cols}]`);
      }
    }
    for (let j = 0; j < cols; j++) {
      close(F[ptr.cs / 4 + j], cs[j], `cs[${j}]`);
      close(F[ptr.cb / 4 + j], cb[j], `cb[${j}]`);
    }
  }
});

Deno.test("wasm layer norm backward: column sums repeat bit for bit; 1 and 2 threads agree", async () => {
  // Per-thread float64 accumulators added in thread order: the same bits on every call for a
  // thread count, and within an f32 rounding across thread counts.
  const one = await createWasmBackend({ threads: 1 }),
    two = await createWasmBackend({ threads: 2 });
  const rows = 1030, cols = 257;
  const host = [
    randn(rows * cols),
    randn(cols),
    randn(rows),
    randn(rows, 0.5, 2),
    randn(rows * cols),
  ];
  const run = async (w: Backend) => {
    const s = host.map((h) => w.fromHost(h, "f32"));
    const d = w.layerNormBackward(s[0], s[1], s[2], s[3], s[4], rows, cols);
    const out = [await w.read(d.gw), await w.read(d.gb)] as Float32Array[];
    for (const t of [...s, d.gx, d.gw, d.gb]) w.dispose(t);
    return out;
  };
  const [a, b, c] = [await run(two), await run(two), await run(one)];
  assert.deepEqual(a, b);
  for (let k = 0; k < 2; k++) {
    for (let j = 0; j < cols; j++) {
      assert.ok(Math.abs(a[k][j] - c[k][j]) <= 2 ** -23 * Math.abs(c[k][j]), `${k} ${j}`);
    }
  }
  one.close();
  two.close();
});

Deno.test("wasm reduce and argmax: NaN, ±Inf and ties in each vector lane and in the tail, rows split over threads", async () => {
  // 70 rows of 4099 (four-lane loop to 4096, a tail of 3): enough work for two threads.
  const R = 70, S = 4099;
  const x = randn(R * S);
  const put = (r: number, at: number[], v: number) => at.forEach((i) => (x[r * S + i] = v));
  for (let r = 0; r < R; r++) {
    switch (r % 12) {
      case 1: // NaN first: max, min NaN, argmax 0
        put(r, [0], NaN);
        break;
      case 2: // NaN in lane 1, then in lane 2 near the end, then in the tail
        put(r, [1], NaN);
        break;
      case 3:
        put(r, [4094], NaN);
        break;
      case 4:
        put(r, [4097], NaN);
        break;
      case 5: // +∞ tied in lanes 3 and 1, −∞ in lanes 0 and 2
        put(r, [3, 5], Infinity);
        put(r, [4, 6], -Infinity);
        break;
      case 6: // all −∞: max −∞, argmax 0
        put(r, [...Array(S).keys()], -Infinity);
        break;
      case 7: // the maximum tied at 8 (lane 0) and 7 (lane 3): index 7
        put(r, [8, 7], 9);
        break;
      case 8: // tied at 4095 (lane 3) and in the tail
        put(r, [4098, 4095], 9);
        break;
      case 9: // NaN first, a maximum later: argmax still 0
        put(r, [0], NaN);
        put(r, [5], 9);
        break;
      case 10: // NaN inside, maxima tied at 6 and 100: index 6
        put(r, [2], NaN);
        put(r, [100, 6], 9);
        break;
      case 11: // the minimum tied in lanes 1 and 2, and in the tail
        put(r, [9, 10, 4096], -9);
        break;
    }
  }
  // The same values as [10, 4099, 7] (columns: four lanes and three left over).
  const shapes = [[R, S, 1], [10, S, 7]];
  const want: (Float32Array | Int32Array)[][] = [];
  const ref = f64.fromHost(x, "f32");
  for (const [o, s, i] of shapes) {
    want.push(
      await Promise.all([
        ...(["sum", "max", "min"] as const).map((op) => f64.read(f64.reduce(op, ref, o, s, i))),
        f64.read(f64.argmax(ref, o, s, i)),
      ]),
    );
  }
  for (const threads of [1, 2]) {
    const w = await createWasmBackend({ threads });
    const xs = w.fromHost(x, "f32");
    for (const [k, [o, s, i]] of shapes.entries()) {
      const what = `${threads} thread(s), [${o}, ${s}, ${i}]`;
      const [sum, max, min, arg] = await Promise.all([
        ...(["sum", "max", "min"] as const).map((op) => w.read(w.reduce(op, xs, o, s, i))),
        w.read(w.argmax(xs, o, s, i)),
      ]);
      const [wSum, wMax, wMin, wArg] = want[k];
      assert.deepEqual(max, wMax, `max, ${what}`);
      assert.deepEqual(min, wMin, `min, ${what}`);
      assert.deepEqual(arg, wArg, `argmax, ${what}`);
      for (let j = 0; j < sum.length; j++) {
        const [a, b] = [sum[j], wSum[j]];
        if (Number.isNaN(b) || !Number.isFinite(b)) {
          assert.ok(Object.is(a, b), `sum[${j}], ${what}`);
        } else assert.ok(Math.abs(a - b) <= 1e-6 * S * 2, `sum[${j}] ${a} vs ${b}, ${what}`);
      }
    }
    w.close();
  }
});
