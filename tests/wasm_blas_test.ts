/**
 * The wasm backend's two matmul paths — the system BLAS through FFI on the heap, and the
 * WebAssembly kernels — against the CPU reference backend: odd sizes, every transpose, batch
 * strides (broadcast and offset operands), the one-row (GEMV) path, strided tensor views, NaN and
 * Inf, memory growth between calls, and addresses above 4 GiB in a 64-bit memory.
 *
 * The BLAS cases skip, saying why, where no CBLAS library can be loaded (`libopenblas0` on
 * Debian; `LF_BLAS` may name one).
 */
import assert from "node:assert/strict";
import type { MatmulParams } from "../kernels/backend.ts";
import { CpuBackend } from "../kernels/cpu/backend.ts";
import { Blas, openBlas } from "../kernels/wasm/blas.ts";
import { createWasmBackend, type WasmBackend } from "../kernels/wasm/backend.ts";
import * as lf from "../mod.ts";
import { assertWithinSumBound } from "./helpers/close.ts";

const cpu = new CpuBackend();
const probe = (() => {
  try {
    return openBlas(new WebAssembly.Memory({ initial: 1 }), undefined);
  } catch (e) {
    return { blas: null, reason: (e as Error).message };
  }
})();
const blasPath = probe.blas?.path;
probe.blas?.close();
const noBlas = blasPath ? false : `no BLAS: ${probe.reason}`;
if (noBlas) console.log(`wasm_blas_test: BLAS cases skipped (${noBlas})`);

const paths: [string, WasmBackend][] = [
  ["wasm kernels ×2", await createWasmBackend({ threads: 2, blas: false })],
];
if (blasPath) {
  paths.push(["BLAS ×2", await createWasmBackend({ threads: 2, blas: blasPath })]);
  paths.push([
    "BLAS ×1, 32-bit memory",
    await createWasmBackend({ threads: 1, memory64: false, blas: blasPath }),
  ]);
}

let seed = 12345;
function rand(): number {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const randn = (n: number) => Float32Array.from({ length: n }, () => 4 * rand() - 2);

async function check(
  w: WasmBackend,
  label: string,
  p: MatmulParams,
  A: Float32Array,
  B: Float32Array,
) {
  const want =
    (await cpu.read(cpu.matmul(cpu.fromHost(A, "f32"), cpu.fromHost(B, "f32"), p))) as Float32Array;
  const absA = A.map(Math.abs), absB = B.map(Math.abs);
  const mag = (await cpu.read(
    cpu.matmul(cpu.fromHost(absA, "f32"), cpu.fromHost(absB, "f32"), p),
  )) as Float32Array;
  const a = w.fromHost(A, "f32"), b = w.fromHost(B, "f32");
  const c = w.matmul(a, b, p);
  const got = (await w.read(c)) as Float32Array;
  for (const s of [a, b, c]) w.dispose(s);
  assertWithinSumBound(got, want, mag, p.k, `${label} ${JSON.stringify(p)}`, 2);
}

const lenA = (p: MatmulParams) => (p.aOffset ?? 0) + (p.batch - 1) * p.aBatchStride + p.m * p.k;
const lenB = (p: MatmulParams) => (p.bOffset ?? 0) + (p.batch - 1) * p.bBatchStride + p.k * p.n;

Deno.test({
  name: "wasm matmul paths: odd sizes and every transpose against the reference",
  fn: async () => {
    for (const [label, w] of paths) {
      for (const m of [1, 2, 5, 33, 130]) {
        for (const n of [1, 3, 17, 129]) {
          for (const k of [1, 7, 65, 300]) {
            for (
              const [transA, transB] of [[false, false], [true, false], [false, true], [true, true]]
            ) {
              const p = { batch: 1, m, n, k, transA, transB, aBatchStride: 0, bBatchStride: 0 };
              await check(w, label, p, randn(m * k), randn(k * n));
            }
          }
        }
      }
    }
  },
});

Deno.test("wasm matmul paths: batch strides, broadcast operands and offsets", async () => {
  const cases: MatmulParams[] = [
    {
      batch: 5,
      m: 7,
      n: 33,
      k: 65,
      transA: false,
      transB: false,
      aBatchStride: 7 * 65,
      bBatchStride: 65 * 33 + 3,
      aOffset: 2,
      bOffset: 1,
    },
    {
      batch: 4,
      m: 33,
      n: 9,
      k: 17,
      transA: true,
      transB: false,
      aBatchStride: 33 * 17,
      bBatchStride: 0,
    },
    {
      batch: 12,
      m: 20,
      n: 20,
      k: 64,
      transA: false,
      transB: true,
      aBatchStride: 0,
      bBatchStride: 20 * 64,
    },
    {
      batch: 24,
      m: 64,
      n: 64,
      k: 64,
      transA: true,
      transB: true,
      aBatchStride: 64 * 64,
      bBatchStride: 64 * 64,
    },
    // one-row products (decoding): the GEMV path, batched, with an offset
    {
      batch: 3,
      m: 1,
      n: 257,
      k: 7,
      transA: false,
      transB: false,
      aBatchStride: 7,
      bBatchStride: 7 * 257,
      aOffset: 3,
    },
    {
      batch: 2,
      m: 1,
      n: 1001,
      k: 130,
      transA: true,
      transB: true,
      aBatchStride: 131,
      bBatchStride: 0,
    },
  ];
  for (const [label, w] of paths) {
    for (const p of cases) await check(w, label, p, randn(lenA(p)), randn(lenB(p)));
  }
});

Deno.test("wasm matmul paths: NaN and Inf propagate as in the reference", async () => {
  for (const [label, w] of paths) {
    for (const [m, transB] of [[1, false], [1, true], [5, false], [9, false], [9, true]] as const) {
      const k = 13, n = 11;
      const A = randn(m * k), B = randn(k * n);
      A[0] = NaN; // row 0 of C all NaN
      A[k + 2] = Infinity; // row 1 (if any): ±Inf, or NaN where a B entry is 0
      B[transB ? 3 * k + 5 : 5 * n + 3] = -Infinity; // column 3
      B[transB ? 4 * k + 2 : 2 * n + 4] = 0; // Inf·0 = NaN in row 1, column 4
      const p = { batch: 1, m, n, k, transA: false, transB, aBatchStride: 0, bBatchStride: 0 };
      await check(w, label, p, A, B);
    }
  }
});

Deno.test("wasm matmul paths: strided tensor views (transposed, sliced, broadcast batch)", async () => {
  const X = randn(2 * 3 * 37 * 21), Y = randn(3 * 29 * 21);
  const views = (a: lf.Tensor, b: lf.Tensor) => [
    lf.matmul(a, b.transpose(-1, -2)), // B transposed, broadcast over the first batch axis
    lf.matmul(a.transpose(-1, -2), a), // A transposed
    lf.matmul(lf.slice(a, 2, 3, 30), b.transpose(-1, -2)), // row slice (offset view)
    lf.matmul(lf.slice(a, 3, 1, 20), lf.slice(b, 2, 2, 21).transpose(-1, -2)), // strided rows
  ];
  const want = views(
    lf.tensor(X, { shape: [2, 3, 37, 21], backend: cpu }),
    lf.tensor(Y, { shape: [3, 29, 21], backend: cpu }),
  );
  for (const [label, w] of paths) {
    const x = lf.tensor(X, { shape: [2, 3, 37, 21], backend: w });
    const y = lf.tensor(Y, { shape: [3, 29, 21], backend: w });
    const got = views(x, y);
    for (let i = 0; i < got.length; i++) {
      assert.deepEqual(got[i].shape, want[i].shape);
      const g = await got[i].data(), r = await want[i].data();
      for (let j = 0; j < r.length; j++) {
        assert.ok(
          Math.abs(g[j] - r[j]) <= 1e-4 * (1 + Math.abs(r[j])),
          `${label} view ${i} [${j}]: ${g[j]} vs ${r[j]}`,
        );
      }
    }
    for (const t of [x, y, ...got]) t.dispose();
  }
});

Deno.test({
  name: "wasm BLAS: the heap's address is taken again after the memory grows",
  ignore: !!noBlas,
  fn: async () => {
    const w = await createWasmBackend({ threads: 1, blas: blasPath, memory64: false });
    const p = {
      batch: 1,
      m: 6,
      n: 5,
      k: 4,
      transA: false,
      transB: false,
      aBatchStride: 0,
      bBatchStride: 0,
    };
    await check(w, "before growth", p, randn(24), randn(20));
    const before = w.memoryStats().memoryBytes;
    const big = w.fromHost(new Float32Array(16 * 2 ** 20), "f32"); // 64 MiB: the memory grows
    assert.ok(w.memoryStats().memoryBytes > before, "the memory grew");
    await check(w, "after growth", p, randn(24), randn(20));
    w.dispose(big);
    w.close();
  },
});

Deno.test({
  name: "wasm BLAS: operands and output above 4 GiB in a 64-bit memory",
  ignore: !!noBlas,
  fn: () => {
    // Untouched pages cost no physical memory: grow past 4 GiB, write only the operands.
    let memory: WebAssembly.Memory;
    try {
      memory = new WebAssembly.Memory(
        {
          initial: 1n,
          maximum: 81920n,
          address: "i64",
          shared: true,
        } as unknown as WebAssembly.MemoryDescriptor,
      );
      memory.grow(81000n as unknown as number); // ≈ 5.3 GB
    } catch (e) {
      console.log(`  skipped: a memory over 4 GiB cannot be made here (${(e as Error).message})`);
      return;
    }
    const blas = Blas.open(blasPath!, memory);
    blas.setThreads(1);
    const m = 9, n = 7, k = 5;
    const A = randn(m * k), B = randn(k * n);
    const base = 2 ** 32 + 4096 * 3;
    assert.ok(memory.buffer.byteLength > base + 3 * 4096, "the memory reaches past 4 GiB"); // above 4 GiB
    const aOff = base, bOff = base + 4096, cOff = base + 8192;
    new Float32Array(memory.buffer, aOff, m * k).set(A);
    new Float32Array(memory.buffer, bOff, k * n).set(B);
    for (const m1 of [m, 1]) {
      new Float32Array(memory.buffer, cOff, m * n).fill(NaN);
      blas.gemm({ m: m1, n, k, transA: false, transB: false, a: aOff, b: bOff, c: cOff });
      const C = new Float32Array(memory.buffer, cOff, m1 * n);
      for (let i = 0; i < m1; i++) {
        for (let j = 0; j < n; j++) {
          let s = 0;
          for (let l = 0; l < k; l++) s += A[i * k + l] * B[l * n + j];
          assert.ok(
            Math.abs(C[i * n + j] - s) < 1e-5,
            `C[${i}, ${j}] = ${C[i * n + j]}, want ${s}`,
          );
        }
      }
    }
    blas.close();
  },
});

Deno.test("wasm BLAS: LF_BLAS=off and an explicit bad path", async () => {
  const mem = new WebAssembly.Memory({ initial: 1 });
  const prev = Deno.env.get("LF_BLAS");
  try {
    Deno.env.set("LF_BLAS", "off");
    const off = openBlas(mem, undefined);
    assert.equal(off.blas, null);
    assert.match(off.reason, /LF_BLAS=off/);
    const w = await createWasmBackend({ threads: 1 });
    assert.match(w.matmulPath, /WebAssembly kernels \(no BLAS: LF_BLAS=off\)/);
    w.close();
  } finally {
    if (prev === undefined) Deno.env.delete("LF_BLAS");
    else Deno.env.set("LF_BLAS", prev);
  }
  assert.equal(openBlas(mem, false).blas, null);
  assert.throws(
    () => openBlas(mem, "/nonexistent/libnoblas.so"),
    /libnoblas\.so.*cannot be loaded/,
  );
  if (blasPath) {
    const w = await createWasmBackend({ threads: 2, blas: blasPath });
    assert.match(w.matmulPath, /^BLAS .*, 2 thread\(s\)$/);
    w.close();
    // One setting caps both: LF_WASM_THREADS=1 gives one worker thread and one BLAS thread.
    const prevThreads = Deno.env.get("LF_WASM_THREADS");
    try {
      Deno.env.set("LF_WASM_THREADS", "1");
      const w1 = await createWasmBackend({ blas: blasPath });
      assert.equal(w1.threads, 1);
      assert.match(w1.matmulPath, /, 1 thread\(s\)$/);
      w1.close();
    } finally {
      if (prevThreads === undefined) Deno.env.delete("LF_WASM_THREADS");
      else Deno.env.set("LF_WASM_THREADS", prevThreads);
    }
  }
});

Deno.test("wasm BLAS: no FFI permission falls back to the WebAssembly kernels, saying why", async () => {
  const file = await Deno.makeTempFile({ prefix: "blas_noffi_", suffix: ".ts" });
  try {
    await Deno.writeTextFile(
      file,
      `const { createWasmBackend } = await import(${
        JSON.stringify(new URL("../kernels/wasm/backend.ts", import.meta.url).href)
      });
      const w = await createWasmBackend({ threads: 1 });
      console.log(w.matmulPath);
      w.close();`,
    );
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-lock", "--allow-read", "--allow-env", file],
      env: { LF_BLAS: "" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(out.success, new TextDecoder().decode(out.stderr));
    const text = new TextDecoder().decode(out.stdout).trim();
    assert.match(text, /WebAssembly kernels \(no BLAS: .*FFI permission/);
  } finally {
    await Deno.remove(file);
  }
});

Deno.test({
  name: "wasm BLAS: the few-row product with B stored [n, k] runs in column blocks, same bits",
  ignore: !!noBlas,
  fn: async () => {
    const w = paths[1][1];
    // Offsets of the blocks against the reference (a remainder block that is not a multiple).
    for (const n of [2 * 2048 + 37, 3 * 2048]) {
      const p = { batch: 1, m: 5, n, k: 33, transA: false, transB: true, aBatchStride: 0 };
      await check(w, "BLAS ×2", { ...p, bBatchStride: 0 }, randn(5 * 33), randn(33 * n));
    }
    // The LM head of GPT-2 during beam search: the blocked product gives one call's bits.
    const m = 5, n = 50257, k = 768;
    const A = randn(m * k), B = randn(n * k);
    const lib = Deno.dlopen(blasPath!, {
      cblas_sgemm: {
        parameters: [
          "i32",
          "i32",
          "i32",
          "i32",
          "i32",
          "i32",
          "f32",
          "buffer",
          "i32",
          "buffer",
          "i32",
          "f32",
          "buffer",
          "i32",
        ],
        result: "void",
      },
      openblas_set_num_threads: { parameters: ["i32"], result: "void" },
    });
    try {
      for (const [label, threads] of [["BLAS ×2", 2], ["BLAS ×1, 32-bit memory", 1]] as const) {
        const be = paths.find(([l]) => l === label)![1];
        const a = be.fromHost(A, "f32"), b = be.fromHost(B, "f32");
        const c = be.matmul(a, b, {
          batch: 1,
          m,
          n,
          k,
          transA: false,
          transB: true,
          aBatchStride: 0,
          bBatchStride: 0,
        });
        const got = (await be.read(c)) as Float32Array;
        for (const s of [a, b, c]) be.dispose(s);
        lib.symbols.openblas_set_num_threads(threads);
        const want = new Float32Array(m * n);
        lib.symbols.cblas_sgemm(101, 111, 112, m, n, k, 1, A, k, B, k, 0, want, n);
        let differ = 0;
        for (let i = 0; i < want.length; i++) if (!Object.is(got[i], want[i])) differ++;
        assert.equal(differ, 0, `${label}: ${differ} of ${want.length} values differ`);
      }
    } finally {
      lib.close();
    }
  },
});
